//! The relay: publishes due integration rows to the transport, in order per key, each in a
//! `tidings.relay` span, and marks a row published only on the broker's acknowledgement.
//!
//! Publications go out in a sliding window (`TidingsBuilder::relay_window`) rather than batch by
//! batch: up to the window's size are in flight at once, across keys, and as they end the relay
//! marks what the broker acknowledged and claims more, without waiting for the slowest of a
//! batch. The relay polls its publications itself, and keeps them going while it waits for the
//! store: a broker's acknowledgement wakes the relay alone, without a task of its own to
//! schedule first. Within a key there is one publication at a time: a claim returns at most the
//! oldest unpublished row of each key, and the next row of a key only once its head has left
//! the outbox, which the relay marks before it claims again.
//!
//! Store calls go by batches, so that a store that commits each call (PostgreSQL) does not pay
//! a commit per row: acknowledged rows are marked in one call
//! ([`Store::rows_published`](crate::store::Store::rows_published)) when they fill a batch
//! (`batch_size`), or before a claim; a claim waits, while publications are in flight, until
//! the window has room for a batch, and takes up to a batch. A row acknowledged and not
//! yet marked when the process dies is published again after its claim expires, with the same
//! event id, as it always was: the broker's dedupe or the consumer's inbox absorbs it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Utc;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tracing::{Instrument, info_span};

use super::Shared;
use crate::envelope;
use crate::error::{ErrorKind, error_chain};
use crate::measure;
use crate::store::{IntegrationRow, RowId};
use crate::trace;

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
    /// The rows the broker acknowledged, to mark published.
    acknowledged: Vec<RowId>,
    /// How many rows a store call takes at most: what `acknowledged` holds before it is marked.
    batch: usize,
}

/// Publishes due integration rows, in order per key, until told to stop.
///
/// The loop: take in every publication that has ended, without waiting; when the window has
/// room for a batch (or nothing is in flight) and a claim may find rows (after an
/// acknowledgement, a wake-up, the poll interval, or a claim that came back full), mark the
/// acknowledged rows and claim as many rows as the window has room for, a batch at most; else
/// mark them if they fill a batch; then wait for the next publication to end, or, with none in
/// flight, sleep as the dispatcher does. Store calls thus move a batch at a time while the
/// broker keeps up, and claims follow each other when the store is the slower of the two:
/// what ends while the relay waits for the store is marked by the next call. It stops only
/// when nothing is in flight and nothing was due at the last claim, as before: what was due
/// when the app was told to stop is published first. A publication that panics (in the
/// transport) panics the relay.
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let window = shared.relay_window.max(1);
    let batch = shared.batch_size.max(1);
    // The room a claim waits for while publications are in flight.
    let refill = batch.min(window);
    let mut relay = Relay {
        shared: &shared,
        acknowledged: Vec::with_capacity(batch),
        batch,
    };
    let mut in_flight = FuturesUnordered::new();
    // Publications that ended while the relay waited for the store.
    let mut ended = VecDeque::new();
    let mut timer = std::pin::pin!(tokio::time::sleep(shared.poll_interval));
    let mut may_claim = true;
    let mut claimed_at = Utc::now();
    loop {
        while let Some(end) = ended
            .pop_front()
            .or_else(|| in_flight.next().now_or_never().flatten())
        {
            relay.ended(end);
        }
        let room = window - in_flight.len();
        // A row acknowledged may let the claim take the next row of its key, once it is marked.
        let claimable = may_claim || !relay.acknowledged.is_empty();
        if claimable && (room >= refill || in_flight.is_empty()) {
            // The acknowledged rows are marked before the claim, which can then take the next
            // row of their keys.
            alongside(relay.mark(), &mut in_flight, &mut ended).await;
            claimed_at = Utc::now();
            let limit = room.min(batch);
            let claim = shared.store.claim_rows(claimed_at, limit);
            match alongside(claim, &mut in_flight, &mut ended).await {
                Ok(rows) => {
                    may_claim = rows.len() >= limit;
                    if !rows.is_empty() {
                        measure::relay_batch(&shared.context, rows.len());
                    }
                    shared.activity.start(rows.len());
                    let claimed = !rows.is_empty();
                    // A row can come back while the end of its last publication is not yet
                    // taken in here: after that publication rescheduled it, or (at least once)
                    // when its claim expired while the broker took its time. Either way it is
                    // published again, as the store asks.
                    for row in rows {
                        in_flight.push(publish(&shared, row));
                    }
                    if claimed {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "could not claim integration rows");
                    shared.observed.store_failed(&error);
                    may_claim = false;
                }
            }
        } else if relay.acknowledged.len() >= batch {
            alongside(relay.mark(), &mut in_flight, &mut ended).await;
            continue;
        }
        if !ended.is_empty() {
            continue;
        }
        if in_flight.is_empty() {
            // Whatever a failed claim left acknowledged is marked before the relay sleeps.
            relay.mark().await;
            let next_due = shared.store.next_row_due();
            if shared
                .idle(
                    &shared.relay_wake,
                    next_due,
                    claimed_at,
                    &mut stop,
                    timer.as_mut(),
                )
                .await
            {
                return;
            }
            may_claim = true;
        } else {
            tokio::select! {
                Some(end) = in_flight.next() => relay.ended(end),
                // New rows were announced, or rows scheduled for later may be due.
                () = shared.relay_wake.notified() => may_claim = true,
                () = tokio::time::sleep(shared.poll_interval) => may_claim = true,
            }
        }
    }
}

/// Awaits `call` while the publications `in_flight` go on; those that end meanwhile are kept in
/// `ended`, in the order they ended.
async fn alongside<T, P: Future<Output = Ended>>(
    call: impl Future<Output = T>,
    in_flight: &mut FuturesUnordered<P>,
    ended: &mut VecDeque<Ended>,
) -> T {
    let mut call = std::pin::pin!(call);
    loop {
        tokio::select! {
            biased;
            output = &mut call => return output,
            Some(end) = in_flight.next(), if !in_flight.is_empty() => ended.push_back(end),
        }
    }
}

impl Relay<'_> {
    /// Takes in a publication's end.
    fn ended(&mut self, ended: Ended) {
        match ended {
            Ended::Acknowledged(id) => self.acknowledged.push(id),
            Ended::Failed => {}
        }
    }

    /// Marks the acknowledged rows published, in one store call.
    async fn mark(&mut self) {
        if self.acknowledged.is_empty() {
            return;
        }
        let rows = std::mem::replace(&mut self.acknowledged, Vec::with_capacity(self.batch));
        let archive = self.shared.retention.archive_window().is_some();
        let count = rows.len();
        if let Err(error) = self.shared.store.rows_published(rows, archive).await {
            // The rows stay claimed until their claims expire, then are published again.
            tracing::error!(%error, rows = count, "could not record publications' outcome");
            self.shared.observed.store_failed(&error);
        }
        self.shared.activity.finish(count);
    }
}

/// Publishes one integration row; on failure reschedules it, and on acknowledgement leaves it
/// to be marked.
///
/// The row becomes the transport's publication here, before the returned future: that future
/// holds the publication's box and little else, and stays small, as every row in flight has
/// one (and a future of over a kilobyte made the allocator slow).
fn publish(shared: &Shared, row: IntegrationRow) -> impl Future<Output = Ended> + '_ {
    let span = info_span!(
        "tidings.relay",
        contract = %row.event.name,
        event_id = %row.event.meta.id,
        correlation_id = %row.event.meta.correlation_id,
        attempt = row.attempt,
    );
    // Each attempt is a span of its own, in the trace of the span that produced the row.
    trace::follow(&span, row.event.meta.traceparent.as_deref());
    let IntegrationRow {
        id,
        event,
        key,
        attempt,
    } = row;
    // Only a failure's log line names the key again.
    let message = envelope::message(event, key.clone());
    let contract = message.contract.clone();
    // In the span, for a transport that does some of its work as it makes the future.
    let publication = span.in_scope(|| shared.transport.publish(message));
    async move {
        let started = Instant::now();
        let published = publication.await;
        let kind = published.as_ref().err().map(|error| error.kind().to_string());
        measure::sent(&shared.meters, &contract, started.elapsed(), kind.as_deref());
        let error = match published {
            Ok(()) => {
                if !shared.transport_available.swap(true, Ordering::Relaxed) {
                    tracing::info!("the transport is available again: the outbox drains");
                }
                return Ended::Acknowledged(id);
            }
            Err(error) => error,
        };
        shared.observed.broker_failed(&error);
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
            shared.observed.store_failed(&error);
        }
        shared.activity.finish(1);
        Ended::Failed
    }
    .instrument(span)
}
