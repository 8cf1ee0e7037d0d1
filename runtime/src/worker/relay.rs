//! The relay: publishes due integration rows to the transport, in order per key, each in a
//! `tidings.relay` span, and marks a row published only on the broker's acknowledgement.
//!
//! Publications go out in a sliding window (`TidingsBuilder::relay_window`) rather than batch by
//! batch: up to the window's size are in flight at once, across keys, each a task of its own so
//! that it makes progress while the relay marks and claims, and as each ends the relay marks
//! what the broker acknowledged and claims more, without waiting for the slowest of a batch.
//! Within a key there is one publication at a time: a claim returns at most the oldest
//! unpublished row of each key, and the next row of a key only once its head has left the
//! outbox, which the relay marks before it claims again.
//!
//! Acknowledged rows are marked in batches, one store call each
//! ([`Store::rows_published`](crate::store::Store::rows_published)): a batch is marked when it
//! holds `batch_size` rows, or when no other publication has ended, before the relay awaits
//! anything else. A row acknowledged and not yet marked when the process dies is published
//! again after its claim expires, with the same event id, as it always was: the broker's
//! dedupe or the consumer's inbox absorbs it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tracing::{Instrument, info_span};

use super::Shared;
use crate::envelope;
use crate::error::{ErrorKind, error_chain};
use crate::store::{IntegrationRow, RowId};

/// How one publication ended.
enum Ended {
    /// The broker acknowledged the row: it is to be marked published.
    Acknowledged(RowId),
    /// The broker refused it, or was away: the row is rescheduled already.
    Failed,
}

/// What the relay holds between its steps.
struct Relay<'a> {
    shared: &'a Shared,
    /// How many acknowledged rows are marked in one store call, at most.
    batch: usize,
    /// The rows the broker acknowledged, to mark published.
    acknowledged: Vec<RowId>,
}

/// Publishes due integration rows, in order per key, until told to stop.
///
/// The loop: take every publication that has ended, without waiting; mark the acknowledged
/// rows; claim as many rows as the window has room for (when a claim may find any: after a
/// mark, a wake-up, the poll interval, or a claim that came back full); then wait for the next
/// publication to end, or, with none in flight, sleep as the dispatcher does. It stops only
/// when nothing is in flight and nothing was due at the last claim, as before: what was due
/// when the app was told to stop is published first.
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let window = shared.relay_window.max(1);
    let mut relay = Relay {
        shared: &shared,
        batch: shared.batch_size.max(1),
        acknowledged: Vec::new(),
    };
    let mut in_flight = JoinSet::new();
    let mut may_claim = true;
    let mut claimed_at = Utc::now();
    loop {
        while let Some(ended) = in_flight.try_join_next() {
            may_claim |= relay.ended(ended).await;
        }
        // Nothing else has ended: the acknowledged rows are marked before anything is awaited
        // again, and before the claim, which can then take the next row of their keys.
        may_claim |= relay.mark().await;
        // The claimed rows held: in flight (the acknowledged ones are marked by now).
        let held = in_flight.len();
        if may_claim && held < window {
            let limit = (window - held).min(relay.batch);
            claimed_at = Utc::now();
            match shared.store.claim_rows(claimed_at, limit).await {
                Ok(rows) => {
                    may_claim = rows.len() >= limit;
                    shared.activity.start(rows.len());
                    let claimed = !rows.is_empty();
                    // A row can come back while the end of its last publication is not yet
                    // taken in here: after that publication rescheduled it, or (at least once)
                    // when its claim expired while the broker took its time. Either way it is
                    // published again, as the store asks.
                    for row in rows {
                        in_flight.spawn(publish(Arc::clone(&shared), row));
                    }
                    if claimed {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "could not claim integration rows");
                    may_claim = false;
                }
            }
        }
        if in_flight.is_empty() {
            if *stop.borrow() {
                return;
            }
            let wait = shared.wait_for(shared.store.next_row_due().await, claimed_at);
            tokio::select! {
                () = shared.relay_wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                // A dropped `Running` drops the sender: that stops the relay too.
                changed = stop.changed() => if changed.is_err() { return; }
            }
            may_claim = true;
        } else {
            let ended = tokio::select! {
                ended = in_flight.join_next() => ended,
                () = shared.relay_wake.notified() => None,
                () = tokio::time::sleep(shared.poll_interval) => None,
            };
            match ended {
                Some(ended) => may_claim |= relay.ended(ended).await,
                // New rows were announced, or rows scheduled for later may be due.
                None => may_claim = true,
            }
        }
    }
}

impl Relay<'_> {
    /// Takes in a publication's end; marks the acknowledged rows if they fill a batch. Returns
    /// whether it marked any. A publication that panicked (in the transport) panics the relay,
    /// as it did when the relay awaited its publications itself.
    async fn ended(&mut self, ended: Result<Ended, JoinError>) -> bool {
        let ended = match ended {
            Ok(ended) => ended,
            Err(error) => match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only a runtime that shuts down cancels a publication, taking the relay along.
                Err(error) => {
                    tracing::error!(%error, "a publication was cancelled");
                    return false;
                }
            },
        };
        match ended {
            Ended::Acknowledged(id) => {
                self.acknowledged.push(id);
                if self.acknowledged.len() >= self.batch {
                    return self.mark().await;
                }
            }
            Ended::Failed => {}
        }
        false
    }

    /// Marks the acknowledged rows published, in one store call. Returns
    /// whether there were any.
    async fn mark(&mut self) -> bool {
        if self.acknowledged.is_empty() {
            return false;
        }
        let rows = std::mem::take(&mut self.acknowledged);
        let archive = self.shared.retention.archive_window().is_some();
        let count = rows.len();
        if let Err(error) = self.shared.store.rows_published(rows, archive).await {
            // The rows stay claimed until their claims expire, then are published again.
            tracing::error!(%error, rows = count, "could not record publications' outcome");
        }
        self.shared.activity.finish(count);
        true
    }
}

/// Publishes one integration row; on failure reschedules it, and on acknowledgement leaves it
/// to be marked.
async fn publish(shared: Arc<Shared>, row: IntegrationRow) -> Ended {
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
        let error = match shared.transport.publish(message).await {
            Ok(()) => {
                if !shared.transport_available.swap(true, Ordering::Relaxed) {
                    tracing::info!("the transport is available again: the outbox drains");
                }
                return Ended::Acknowledged(id);
            }
            Err(error) => error,
        };
        let delay = shared.retry.delay(attempt);
        let kind = error.kind();
        if kind == ErrorKind::Unavailable {
            // One line when the transport goes away, not one per row and retry.
            if shared.transport_available.swap(false, Ordering::Relaxed) {
                tracing::error!(%error, "the transport is unavailable: integration events wait in the outbox, and the relay retries");
            }
            tracing::debug!(%error, attempt, ?delay, "publication failed; will retry");
        } else if shared.retry.gives_up_after(attempt) {
            // Order per key forbids skipping the head: the key is parked, retried with backoff
            // capped at the policy's `max_delay`, while the other keys flow.
            tracing::error!(%error, %kind, attempt, ?delay, key = ?key, "publication keeps failing; its key is parked");
        } else {
            tracing::warn!(%error, %kind, attempt, ?delay, "publication failed; will retry");
        }
        let at = Utc::now() + delay;
        if let Err(error) = shared.store.retry_row(id, attempt, error_chain(&error), at).await {
            tracing::error!(%error, "could not record a publication's outcome");
        }
        shared.activity.finish(1);
        Ended::Failed
    }
    .instrument(span)
    .await
}
