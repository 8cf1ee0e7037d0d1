//! Counts the work in progress, so that tests can wait until everything has settled without
//! sleeping or polling.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Work in progress: deliveries, integration rows and messages not yet done.
#[derive(Debug, Default)]
pub struct Activity {
    busy: AtomicUsize,
    changed: Notify,
}

impl Activity {
    /// `n` more units of work started.
    pub fn start(&self, n: usize) {
        if n > 0 {
            self.busy.fetch_add(n, Ordering::SeqCst);
            self.changed.notify_waiters();
        }
    }

    /// `n` units of work are done.
    pub fn finish(&self, n: usize) {
        if n > 0 {
            self.busy.fetch_sub(n, Ordering::SeqCst);
            self.changed.notify_waiters();
        }
    }

    /// `n` units of work are in progress, whatever was counted before: for an app that starts on
    /// a store holding work from an earlier run.
    pub fn reset(&self, n: usize) {
        self.busy.store(n, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Whether no work is in progress.
    pub fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Waits until every activity in `all` is idle at the same moment.
    pub async fn settle(all: &[&Activity]) {
        loop {
            let waits: Vec<_> = all.iter().map(|a| Box::pin(a.changed.notified())).collect();
            let mut waits = waits;
            for wait in &mut waits {
                wait.as_mut().enable();
            }
            if all.iter().all(|a| a.is_idle()) {
                return;
            }
            futures_util::future::select_all(waits).await;
        }
    }
}
