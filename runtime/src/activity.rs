//! Counts the work in progress, so that tests can wait until everything has settled without
//! sleeping or polling.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;

/// Work in flight: claimed deliveries and integration rows, and messages not yet received.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    busy: AtomicUsize,
}

/// Notified each time an activity of the process becomes idle while a `settle` waits: a
/// `settle` waits on this one notification, whatever the number of apps and transports it
/// watches, and looks again.
static BECAME_IDLE: Notify = Notify::const_new();

/// How many `settle`s wait, so that an activity that becomes idle notifies only then.
///
/// Sound with sequentially consistent operations: `settle` counts itself before it first looks
/// at the activities, and `finish` lowers its activity's count before it reads this one. If
/// `finish` reads no `settle` here, its lowered count came first, and the `settle` sees it.
static SETTLING: AtomicUsize = AtomicUsize::new(0);

/// Counts one waiting `settle` while it lives: dropped with it, however it ends.
struct Settling;

impl Settling {
    fn new() -> Self {
        SETTLING.fetch_add(1, Ordering::SeqCst);
        Settling
    }
}

impl Drop for Settling {
    fn drop(&mut self) {
        SETTLING.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    /// `n` more units of work started. Nobody waits for that: more work never settles anything.
    pub(crate) fn start(&self, n: usize) {
        self.busy.fetch_add(n, Ordering::SeqCst);
    }

    /// `n` units of work are done; those waiting in [`settle`](Self::settle) look again if that
    /// was the last.
    pub(crate) fn finish(&self, n: usize) {
        if n > 0
            && self.busy.fetch_sub(n, Ordering::SeqCst) == n
            && SETTLING.load(Ordering::SeqCst) > 0
        {
            BECAME_IDLE.notify_waiters();
        }
    }

    /// Whether no work is in progress.
    pub(crate) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Waits until `idle` says that every activity watched is idle and, at that moment,
    /// `quiet` says nothing else waits (such as work recorded in a store and not yet claimed).
    /// Both are asked again each time an activity of the process becomes idle (its own apps'
    /// or another's: the notification is one for all), and every `recheck` while none does (the
    /// work may be another process's).
    pub(crate) async fn settle<F, Q>(idle: impl Fn() -> bool, recheck: Duration, mut quiet: Q)
    where
        Q: FnMut() -> F,
        F: Future<Output = bool>,
    {
        let _settling = Settling::new();
        let mut became_idle = std::pin::pin!(BECAME_IDLE.notified());
        // One timer for the whole wait, set again only once it fired.
        let mut timer = std::pin::pin!(tokio::time::sleep(recheck));
        loop {
            // Listening before looking: an activity that becomes idle after the look wakes it.
            became_idle.as_mut().enable();
            if idle() && quiet().await {
                return;
            }
            tokio::select! {
                () = became_idle.as_mut() => {}
                () = timer.as_mut() => {
                    timer.as_mut().reset(tokio::time::Instant::now() + recheck);
                }
            }
            became_idle.set(BECAME_IDLE.notified());
        }
    }
}
