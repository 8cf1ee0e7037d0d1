//! A consumer: records the messages of one subscription for the context's inbound handlers (the
//! inbox skips what a handler already received) and acknowledges them only once recorded. It
//! takes what the transport has ready, up to `TidingsBuilder::inbox_batch` messages, and records
//! them in one store call: one transaction for many messages, never a wait for a batch to fill.
//! Each message has a `tidings.consume` span; a message that cannot be decoded is dead-lettered,
//! and the consumer goes on.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::join_all;
use tokio::sync::watch;
use tracing::{Instrument, Span, info_span};

use super::{Shared, pause};
use crate::envelope;
use crate::error::{StoreError, TransportError, error_chain};
use crate::measure;
use crate::store::{NewEvent, StoredEvent};
use crate::trace;
use crate::transport::{Inbound, Message, Received};

/// Records the messages of one subscription until told to stop.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut inbound: Box<dyn Inbound>,
    routes: Vec<usize>,
    mut stop: watch::Receiver<bool>,
) {
    let handlers: Vec<String> = routes
        .iter()
        .map(|&i| shared.wiring.route_at(i).name.clone())
        .collect();
    let mut failures = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let first = tokio::select! {
            next = inbound.next() => next,
            // A dropped `Running` drops the sender: that stops the consumer too.
            changed = stop.changed() => if changed.is_err() { return } else { continue },
        };
        let (batch, next) = match first {
            Some(Ok(received)) => take_ready(inbound.as_mut(), received, shared.inbox_batch),
            Some(Err(error)) => (Vec::new(), Some(Some(Err(error)))),
            None => return,
        };
        if !batch.is_empty() {
            if failures > 0 {
                tracing::info!(failures, "receiving again");
                shared.observed.consumer_failing(false);
            }
            failures = 0;
            receive(&shared, batch, &handlers, &mut stop).await;
        }
        match next {
            Some(Some(Err(error))) => {
                failures += 1;
                let delay = shared.retry.delay(failures);
                shared.observed.broker_failed(&error);
                // One line when receiving starts to fail, not one per retry.
                if failures == 1 {
                    shared.observed.consumer_failing(true);
                    tracing::error!(%error, "could not receive messages: retrying with backoff");
                } else {
                    tracing::debug!(%error, failures, ?delay, "could not receive a message");
                }
                pause(delay, &mut stop).await;
            }
            Some(None) => return,
            Some(Some(Ok(_))) | None => {}
        }
    }
}

/// What `next` gave after a batch stopped growing: `None` when nothing was ready.
type After = Option<Option<Result<Received, TransportError>>>;

/// `first` and the messages the transport has ready after it, up to `limit` in all, without
/// waiting; and what ended the batch early, if not a message: an error, or the end.
fn take_ready(inbound: &mut dyn Inbound, first: Received, limit: usize) -> (Vec<Received>, After) {
    let mut batch = vec![first];
    while batch.len() < limit {
        // `next` is cancel-safe (the seam's contract): dropping it unresolved loses nothing.
        match inbound.next().now_or_never() {
            Some(Some(Ok(received))) => batch.push(received),
            ended @ (Some(_) | None) => return (batch, ended),
        }
    }
    (batch, None)
}

/// Records a batch of received messages for the context's inbound handlers, then acknowledges
/// them. A batch whose recording fails is tried again, with backoff, before the next messages
/// are taken: a transport that does not redeliver loses nothing, and order per key holds. Told
/// to stop, it leaves the messages unacknowledged.
async fn receive(
    shared: &Shared,
    batch: Vec<Received>,
    handlers: &[String],
    stop: &mut watch::Receiver<bool>,
) {
    let mut events = Vec::with_capacity(batch.len());
    let mut undecodable = Vec::new();
    let mut spans = Vec::with_capacity(batch.len());
    for received in &batch {
        let message = &received.message;
        let span = consume_span(&shared.context, message);
        // The hop's trace: the publishing relay's span, or where the chain started.
        trace::follow(&span, message.traceparent.as_deref());
        let traceparent = trace::of(&span, message.traceparent.as_deref());
        match span.in_scope(|| decode(shared, message, traceparent)) {
            Decoded::Event(event) => events.push(event),
            Decoded::Undecodable(event, error) => undecodable.push((event, error)),
        }
        spans.push(span);
    }
    let span = info_span!(
        "tidings.inbox",
        context = %shared.context,
        contract = %batch[0].message.contract,
        messages = batch.len(),
    );
    for each in &spans {
        span.follows_from(each);
    }
    let messages = batch.len();
    let contract = batch[0].message.contract.clone();
    let dead_lettered = undecodable.len();
    async {
        let mut failures = 0;
        loop {
            match record(shared, &events, &mut undecodable, handlers).await {
                Ok(created) => {
                    // The inbox skips what a handler already received: a whole message, as
                    // every handler of the contract gets it at once.
                    let new = created.checked_div(handlers.len()).unwrap_or(events.len());
                    let duplicates = events.len().saturating_sub(new);
                    let system = shared.transport.system();
                    measure::consumed(
                        system,
                        &shared.context,
                        &contract,
                        messages,
                        duplicates,
                        dead_lettered,
                    );
                    break;
                }
                Err(error) => {
                    shared.observed.store_failed(&error);
                    failures += 1;
                    let delay = shared.retry.delay(failures);
                    if failures == 1 {
                        tracing::error!(%error, "could not record messages; trying again");
                    } else {
                        tracing::debug!(%error, failures, ?delay, "could not record messages");
                    }
                    if pause(delay, stop).await {
                        return;
                    }
                }
            }
        }
        let acks = batch.into_iter().zip(spans).map(|(received, span)| {
            received.ack().map(move |acked| {
                if let Err(error) = acked {
                    let _entered = span.enter();
                    tracing::warn!(%error, "could not acknowledge a message; it may come again");
                }
            })
        });
        join_all(acks).await;
    }
    .instrument(span)
    .await;
}

/// The span of one received message.
fn consume_span(context: &str, message: &Message) -> Span {
    info_span!(
        "tidings.consume",
        contract = %message.contract,
        event_id = %message.id,
        correlation_id = %message.correlation_id,
        context = %context,
    )
}

/// A received message, ready to record.
enum Decoded {
    /// An event for the inbound handlers.
    Event(StoredEvent),
    /// A message to dead-letter, with the reason it cannot be decoded.
    Undecodable(StoredEvent, String),
}

/// `message` as an event to record, with the `traceparent` its handlers continue, or, if it
/// cannot be decoded, as a dead letter.
fn decode(shared: &Shared, message: &Message, traceparent: String) -> Decoded {
    let mut event = envelope::received(message, None);
    event.meta.traceparent = Some(traceparent);
    match shared.wiring.typed(&event) {
        Ok(typed) => {
            event.typed = Some(typed);
            Decoded::Event(event)
        }
        Err(error) => {
            let error = error_chain(&error);
            tracing::error!(%error, "undecodable message; dead-lettered");
            let what = format!("a `{}` message", message.contract);
            super::report_unseen_dead_letter(&shared.context, &what, &error);
            Decoded::Undecodable(event, error)
        }
    }
}

/// Records the dead letters not yet recorded, then `events` with a delivery per handler, in one
/// store call; returns how many deliveries were created.
async fn record(
    shared: &Shared,
    events: &[StoredEvent],
    undecodable: &mut Vec<(StoredEvent, String)>,
    handlers: &[String],
) -> Result<usize, StoreError> {
    while let Some((event, error)) = undecodable.last() {
        shared
            .store
            .dead_letter_message(event.clone(), error.clone())
            .await?;
        undecodable.pop();
    }
    if events.is_empty() {
        return Ok(0);
    }
    let events = events
        .iter()
        .map(|event| NewEvent {
            event: event.clone(),
            handlers: handlers.to_vec(),
        })
        .collect();
    shared.outbox.record(events).await
}
