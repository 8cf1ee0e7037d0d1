//! The retention sweep: deletes expired inbox entries and archived rows, in bounded batches
//! (one transaction each), every retention interval.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{Shared, pause};

/// Sweeps every retention interval until told to stop.
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let retention = shared.retention;
    loop {
        if pause(retention.sweep_interval(), &mut stop).await {
            return;
        }
        let now = Utc::now();
        let before = |window: Duration| {
            chrono::Duration::from_std(window)
                .ok()
                .and_then(|window| now.checked_sub_signed(window))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        let inbox_before = before(retention.inbox_window());
        let archive_before = before(retention.archive_window().unwrap_or_default());
        loop {
            let pruned = shared
                .store
                .prune(inbox_before, archive_before, retention.batch_size())
                .await;
            match pruned {
                Ok(deleted) if deleted >= retention.batch_size() && !*stop.borrow() => {}
                Ok(deleted) => {
                    tracing::debug!(deleted, "retention sweep done");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "the retention sweep failed");
                    break;
                }
            }
        }
    }
}
