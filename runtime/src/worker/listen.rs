//! The store's listener: wakes the dispatcher and the relay for work that other processes
//! commit (PostgreSQL's `LISTEN`). Polling covers whatever it misses.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Shared, pause};
use crate::store::{StoreListener, Wake};

/// Passes the store's wake-ups on until told to stop.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut listener: Box<dyn StoreListener>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0;
    loop {
        tokio::select! {
            heard = listener.next() => match heard {
                Ok(wake) => {
                    failures = 0;
                    if matches!(wake, Wake::Deliveries | Wake::All) {
                        shared.dispatch_wake.notify_one();
                    }
                    if matches!(wake, Wake::Rows | Wake::All) {
                        shared.relay_wake.notify_one();
                    }
                }
                Err(error) => {
                    // Polling covers the gap; whatever was missed is found then.
                    failures += 1;
                    let delay = shared.retry.delay(failures);
                    tracing::warn!(%error, ?delay, "the store's listener failed");
                    if pause(delay, &mut stop).await {
                        return;
                    }
                }
            },
            _ = stop.changed() => return,
        }
    }
}
