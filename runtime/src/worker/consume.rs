//! A consumer: records each message of one subscription for the context's inbound handlers (the
//! inbox skips what a handler already received), in a `tidings.consume` span, and acknowledges
//! it only once recorded. A message that cannot be decoded is dead-lettered, and the consumer
//! goes on.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{Instrument, info_span};

use super::{Shared, pause};
use crate::envelope;
use crate::error::{StoreError, error_chain};
use crate::store::NewEvent;
use crate::transport::{Inbound, Message, Received};

/// Records the messages of one subscription until told to stop.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut inbound: Box<dyn Inbound>,
    routes: Vec<usize>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            next = inbound.next() => match next {
                Some(Ok(received)) => {
                    if failures > 0 {
                        tracing::info!(failures, "receiving again");
                    }
                    failures = 0;
                    receive(&shared, received, &routes, &mut stop).await;
                }
                Some(Err(error)) => {
                    failures += 1;
                    let delay = shared.retry.delay(failures);
                    // One line when receiving starts to fail, not one per retry.
                    if failures == 1 {
                        tracing::error!(%error, "could not receive messages: retrying with backoff");
                    } else {
                        tracing::debug!(%error, failures, ?delay, "could not receive a message");
                    }
                    pause(delay, &mut stop).await;
                }
                None => return,
            },
            // A dropped `Running` drops the sender: that stops the consumer too.
            changed = stop.changed() => if changed.is_err() { return; }
        }
    }
}

/// Records one received message for the context's inbound handlers, then acknowledges it. A
/// message whose recording fails is tried again, with backoff, before the next one is taken: a
/// transport that does not redeliver loses nothing, and order per key holds. Told to stop, it
/// leaves the message unacknowledged.
async fn receive(
    shared: &Shared,
    received: Received,
    routes: &[usize],
    stop: &mut watch::Receiver<bool>,
) {
    let message = &received.message;
    let span = info_span!(
        "tidings.consume",
        contract = %message.contract,
        event_id = %message.id,
        correlation_id = %message.correlation_id,
        context = %shared.context,
    );
    async {
        let mut failures = 0;
        loop {
            match record(shared, &received.message, routes).await {
                Ok(()) => {
                    if let Err(error) = received.ack().await {
                        tracing::warn!(%error, "could not acknowledge a message; it may come again");
                    }
                    return;
                }
                Err(error) => {
                    failures += 1;
                    let delay = shared.retry.delay(failures);
                    if failures == 1 {
                        tracing::error!(%error, "could not record a message; trying again");
                    } else {
                        tracing::debug!(%error, failures, ?delay, "could not record a message");
                    }
                    if pause(delay, stop).await {
                        return;
                    }
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Records `message` with a delivery per route, or as a dead letter if it cannot be decoded.
async fn record(shared: &Shared, message: &Message, routes: &[usize]) -> Result<(), StoreError> {
    let mut event = envelope::received(message, None);
    match shared.wiring.typed(&event) {
        Ok(typed) => event.typed = Some(typed),
        Err(error) => {
            let error = error_chain(&error);
            tracing::error!(%error, "undecodable message; dead-lettered");
            let what = format!("a `{}` message", message.contract);
            super::report_unseen_dead_letter(&shared.context, &what, &error);
            return shared.store.dead_letter_message(event, error).await;
        }
    }
    let handlers = routes
        .iter()
        .map(|&i| shared.wiring.route_at(i).name.clone())
        .collect();
    shared
        .outbox
        .record(vec![NewEvent { event, handlers }])
        .await
}
