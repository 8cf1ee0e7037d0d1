//! Counts the work in progress, so that tests can wait until everything has settled without
//! sleeping or polling.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;

/// Work in flight: claimed deliveries and integration rows, and messages not yet received.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    busy: AtomicUsize,
    changed: Notify,
}

impl Activity {
    /// `n` more units of work started. Nobody waits for that: more work never settles anything.
    pub(crate) fn start(&self, n: usize) {
        self.busy.fetch_add(n, Ordering::SeqCst);
    }

    /// `n` units of work are done; those waiting in [`settle`](Self::settle) look again if that
    /// was the last.
    pub(crate) fn finish(&self, n: usize) {
        if n > 0 && self.busy.fetch_sub(n, Ordering::SeqCst) == n {
            self.changed.notify_waiters();
        }
    }

    /// Whether no work is in progress.
    pub(crate) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Waits until every activity in `all` is idle and, at that moment, `quiet` says nothing
    /// else waits (such as work recorded in a store and not yet claimed). `quiet` is asked again
    /// each time an activity becomes idle, and every `recheck` while none does (the work may be
    /// another process's).
    pub(crate) async fn settle<F, Q>(all: &[&Activity], recheck: Duration, mut quiet: Q)
    where
        Q: FnMut() -> F,
        F: Future<Output = bool>,
    {
        // Built once, and renewed in place after each wake-up: no allocation per round.
        let mut waits: Vec<_> = all.iter().map(|a| Box::pin(a.changed.notified())).collect();
        loop {
            for wait in &mut waits {
                wait.as_mut().enable();
            }
            if all.iter().all(|a| a.is_idle()) && quiet().await {
                return;
            }
            let changed = std::future::poll_fn(|cx| {
                let mut changed = false;
                for wait in &mut waits {
                    changed |= wait.as_mut().poll(cx).is_ready();
                }
                if changed {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(recheck) => {}
            }
            for (wait, activity) in waits.iter_mut().zip(all) {
                wait.set(activity.changed.notified());
            }
        }
    }
}
