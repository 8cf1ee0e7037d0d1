//! The relay: claims due integration rows, at most one per key, publishes each to the transport
//! in a `tidings.relay` span, and marks it published only on the broker's acknowledgement.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;
use tracing::{Instrument, info_span};

use super::{Shared, claim_run_sleep};
use crate::envelope;
use crate::error::error_chain;
use crate::store::IntegrationRow;

/// Publishes due integration rows, in order per key, until told to stop.
pub(super) async fn run(shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let claim = |now| shared.store.claim_rows(now, shared.batch_size);
    let run = |batch: Vec<IntegrationRow>| async {
        let publications = batch.into_iter().map(|row| publish(&shared, row));
        futures_util::future::join_all(publications).await;
    };
    let next_due = || shared.store.next_row_due();
    claim_run_sleep(
        &shared,
        &shared.relay_wake,
        stop,
        claim,
        run,
        next_due,
        "integration rows",
    )
    .await;
}

/// Publishes one integration row, and records the outcome.
async fn publish(shared: &Shared, row: IntegrationRow) {
    let span = info_span!(
        "tidings.relay",
        contract = %row.event.name,
        event_id = %row.event.meta.id,
        correlation_id = %row.event.meta.correlation_id,
        attempt = row.attempt,
    );
    let message = envelope::message(&row);
    let IntegrationRow {
        id, key, attempt, ..
    } = row;
    async {
        let outcome = match shared.transport.publish(message).await {
            Ok(()) => {
                let archive = shared.retention.archive_window().is_some();
                shared.store.row_published(id, archive).await
            }
            Err(error) => {
                let delay = shared.retry.delay(attempt);
                let kind = error.kind();
                if shared.retry.gives_up_after(attempt) {
                    // Order per key forbids skipping the head: the key is parked, retried at
                    // the policy's longest delays, while the other keys flow.
                    tracing::error!(%error, %kind, attempt, ?delay, key = ?key, "publication keeps failing; its key is parked");
                } else {
                    tracing::warn!(%error, %kind, attempt, ?delay, "publication failed; will retry");
                }
                let at = Utc::now() + delay;
                shared.store.retry_row(id, error_chain(&error), at).await
            }
        };
        if let Err(error) = outcome {
            tracing::error!(%error, "could not record a publication's outcome");
        }
    }
    .instrument(span)
    .await;
    shared.activity.finish(1);
}
