//! The dispatcher: claims due deliveries in batches and runs each handler's in order, each
//! delivery in a `tidings.dispatch` span. It completes a batch's successful deliveries, with the
//! integration rows they produced, and claims the next batch in one store step (a group commit,
//! in a `tidings.complete` span); a failure is recorded on its own, and a handler that takes the
//! store's transaction completes in it.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{Instrument, info_span};

use super::Shared;
use crate::call::{FutureSlot, HandlerContext, TransactionSlot, emitted};
use crate::envelope;
use crate::error::{ErrorKind, StoreError, error_chain};
use crate::handler::HandlerError;
use crate::measure::{self, HandlerMeters, Outcome};
use crate::publish::DomainEvents;
use crate::store::{Completion, Delivery, DeliveryId, NewIntegrationRow, StoredEvent};
use crate::trace;
use crate::wiring::{Route, Target};

/// Runs due deliveries until told to stop: claims batches and runs them until none is due,
/// then sleeps until woken, until the next delivery is due, or for the poll interval. A batch's
/// completions go with the claim of the next batch, in one store step.
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let handlers: Vec<String> = shared.wiring.route_names().map(str::to_owned).collect();
    let mut completions = Vec::new();
    let mut timer = std::pin::pin!(tokio::time::sleep(shared.poll_interval));
    loop {
        let mut claimed_at;
        loop {
            claimed_at = Utc::now();
            let batch = if completions.is_empty() {
                let claimed = shared
                    .store
                    .claim_deliveries(claimed_at, shared.batch_size, &handlers)
                    .await;
                match claimed {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::error!(%error, "could not claim deliveries");
                        shared.observed.store_failed(&error);
                        break;
                    }
                }
            } else {
                let completed = std::mem::take(&mut completions);
                complete_and_claim(&shared, completed, claimed_at, &handlers).await
            };
            if batch.is_empty() {
                break;
            }
            shared.activity.start(batch.len());
            completions = run_batch(&shared, batch).await;
        }
        let next_due = shared.store.next_delivery_due();
        if shared
            .idle(
                &shared.dispatch_wake,
                next_due,
                claimed_at,
                &mut stop,
                timer.as_mut(),
            )
            .await
        {
            return;
        }
    }
}

/// Runs a batch: handlers run concurrently; each one's deliveries run one at a time, in the
/// order the events were recorded, so a handler sees the events in that order (a delivery that
/// failed and waits for its retry is overtaken by later ones). Returns the completions of those
/// that succeeded, for the batch's commit.
async fn run_batch(shared: &Arc<Shared>, batch: Vec<Delivery>) -> Vec<Completion> {
    // Only a store whose claims expire needs them, to extend them.
    let claims: Vec<(DeliveryId, u32)> = match shared.store.lease() {
        Some(_) => batch.iter().map(|d| (d.id, d.attempt)).collect(),
        None => Vec::new(),
    };
    if batch.iter().all(|d| d.handler == batch[0].handler) {
        // One handler: the batch is its group, and there is no join to set up.
        let run = std::pin::pin!(run_group(shared, batch));
        return holding_claims(shared, claims, run).await;
    }
    let mut by_handler: Vec<Vec<Delivery>> = Vec::new();
    for delivery in batch {
        match by_handler
            .iter_mut()
            .find(|g| g[0].handler == delivery.handler)
        {
            Some(group) => group.push(delivery),
            None => by_handler.push(vec![delivery]),
        }
    }
    let runs = by_handler.into_iter().map(|group| run_group(shared, group));
    let runs = std::pin::pin!(futures_util::future::join_all(runs));
    let completions = holding_claims(shared, claims, runs).await;
    completions.into_iter().flatten().collect()
}

/// Why a delivery failed, and whether to try again.
struct Failure {
    retryable: bool,
    /// The error with its chain of causes, as the store keeps it.
    text: String,
}

impl Failure {
    /// A failure that running the handler again cannot cure.
    fn fatal(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        let error = error.into();
        Failure {
            retryable: false,
            text: error_chain(&*error),
        }
    }
}

impl From<Box<HandlerError>> for Failure {
    fn from(error: Box<HandlerError>) -> Self {
        let text = match &*error {
            // Its message is the handler's error's: the chain starts there.
            HandlerError::Failed { error, .. } => error_chain(&**error),
            other => error_chain(other),
        };
        Failure {
            retryable: error.is_retryable(),
            text,
        }
    }
}

/// Runs `work`, extending the claims on a batch's deliveries every third of the store's lease
/// meanwhile, so that no claim expires while the batch runs: another process would run its
/// deliveries again.
///
/// `work` is pinned by the caller: a batch's future holds its deliveries' handler calls and is
/// large, and passed by value it would be copied into this future's state, and again on await.
async fn holding_claims<F: Future>(
    shared: &Shared,
    claims: Vec<(DeliveryId, u32)>,
    mut work: Pin<&mut F>,
) -> F::Output {
    let Some(lease) = shared.store.lease() else {
        return work.await;
    };
    let every = (lease / 3).max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = tick.tick() => {
                if let Err(error) = shared.store.extend_claims(claims.clone()).await {
                    tracing::warn!(%error, "could not extend the claim on deliveries");
                }
            }
        }
    }
}

/// Runs one handler's claimed deliveries one after the other, in order; returns the
/// completions of those that succeeded, for the batch's commit.
///
/// If the store could not record that a delivery completed in the handler's transaction, the
/// rest wait: run now, they would complete before it, and the integration events they produce
/// would be published before its own, out of order per key. Their claims, and the failed one's,
/// expire with the lease, and all of them are claimed again, in order. (A batch whose commit
/// fails stays claimed as a whole, in the same way.)
async fn run_group(shared: &Arc<Shared>, group: Vec<Delivery>) -> Vec<Completion> {
    // Every delivery of the group is of one handler: its route and metrics are looked up once.
    let Some(handler) = group.first().map(|d| d.handler.as_str()) else {
        return Vec::new();
    };
    let route = shared.wiring.route(handler);
    let meters = shared.meters.handler(handler);
    let count = group.len();
    let mut completions = Vec::with_capacity(count);
    for (i, delivery) in group.into_iter().enumerate() {
        match deliver(shared, route, &meters, delivery).await {
            Delivered::Completed(completion) => completions.push(completion),
            Delivered::Recorded => {}
            Delivered::Unrecorded => {
                let waiting = count - i - 1;
                if waiting > 0 {
                    tracing::warn!(
                        waiting,
                        "the handler's next deliveries wait for their claims to expire, so that \
                         they do not complete before the one whose completion was not recorded"
                    );
                    shared.activity.finish(waiting);
                }
                break;
            }
        }
    }
    completions
}

/// How a delivery ended, for its handler's next one.
enum Delivered {
    /// Its handler succeeded outside the store's transaction: it completes with the batch.
    Completed(Completion),
    /// Its outcome is recorded; or it failed and waits for its retry, which the handler's next
    /// deliveries overtake.
    Recorded,
    /// The store failed to record that it completed: the handler's next deliveries wait.
    Unrecorded,
}

/// Completes a batch's successful deliveries, with the rows they produced, and claims the next
/// batch due at `now`, in one store step: the group commit. A step that fails is logged; it
/// leaves the deliveries claimed (they run again once the claim expires) and claims nothing.
async fn complete_and_claim(
    shared: &Shared,
    completions: Vec<Completion>,
    now: DateTime<Utc>,
    handlers: &[String],
) -> Vec<Delivery> {
    let count = completions.len();
    let produced = completions.iter().any(|c| !c.produced.is_empty());
    let span = info_span!("tidings.complete", deliveries = count);
    let stepped = shared
        .store
        .complete_and_claim(completions, now, shared.batch_size, handlers)
        .instrument(span.clone())
        .await;
    shared.activity.finish(count);
    match stepped {
        Ok(claimed) => {
            if produced {
                shared.relay_wake.notify_one();
            }
            claimed
        }
        Err(error) => {
            span.in_scope(|| {
                shared.observed.store_failed(&error);
                tracing::error!(
                    %error,
                    "could not record that {count} deliveries completed and claim the next: \
                     those not recorded run again, in order, once their claims expire"
                );
            });
            Vec::new()
        }
    }
}

/// Runs one delivery with its handler's `route` (`None` if the app has no handler of that
/// name) and `meters`. A success outside the store's transaction is returned, for the batch's
/// commit: the delivery is in flight until then. Any other outcome is recorded here.
async fn deliver(
    shared: &Arc<Shared>,
    route: Option<&Route>,
    meters: &HandlerMeters,
    delivery: Delivery,
) -> Delivered {
    let Delivery {
        id,
        event,
        handler,
        attempt,
    } = delivery;
    let span = info_span!(
        "tidings.dispatch",
        handler,
        event = %event.name,
        event_id = %event.meta.id,
        correlation_id = %event.meta.correlation_id,
        attempt,
    );
    // Each attempt is a span of its own, in the trace of the event's publication.
    trace::follow(&span, event.meta.traceparent.as_deref());
    let started = Instant::now();
    if attempt == 1 {
        let waited = (Utc::now() - event.meta.occurred_at).to_std();
        measure::latency(meters, waited.unwrap_or_default());
    }
    let measured = |outcome| measure::delivery(meters, attempt, outcome, started.elapsed());
    let delivered = async {
        let Some(route) = route else {
            let failure = Failure::fatal(format!(
                "no handler named `{handler}` in the `{}` app",
                shared.context
            ));
            measured(record_failure(shared, id, attempt, &handler, failure).await);
            return Delivered::Recorded;
        };
        let (slot, outcome) = match begin(shared, route, id, attempt).await {
            Ok(Some(slot)) => {
                let outcome = handle(shared, &event, route, attempt, slot.as_ref()).await;
                (slot, outcome)
            }
            Ok(None) => {
                tracing::info!("the delivery's lease passed to another process; skipped");
                return Delivered::Recorded;
            }
            Err(failure) => (None, Err(failure)),
        };
        match outcome {
            Ok(produced) => {
                let count = produced.len();
                let stored = match slot.map(TransactionSlot::into_inner) {
                    None => {
                        measured(Outcome::Handled);
                        return Delivered::Completed(Completion {
                            id,
                            attempt,
                            produced,
                        });
                    }
                    Some(Some(transaction)) => {
                        shared.store.complete_in(transaction, id, produced).await
                    }
                    // The handler's entry always gives the transaction back when it returns:
                    // without it, its effect is gone, so the delivery stays due.
                    Some(None) => Err(StoreError::new(
                        ErrorKind::Invalid,
                        "the handler did not give its transaction back",
                        None,
                    )),
                };
                match stored {
                    Ok(()) => {
                        measured(Outcome::Handled);
                        if count > 0 {
                            shared.relay_wake.notify_one();
                        }
                        Delivered::Recorded
                    }
                    Err(error) => {
                        tracing::error!(%error, "could not record a delivery's outcome");
                        shared.observed.store_failed(&error);
                        Delivered::Unrecorded
                    }
                }
            }
            Err(failure) => {
                // The handler's transaction rolls back before the failure is recorded.
                drop(slot);
                measured(record_failure(shared, id, attempt, &handler, failure).await);
                Delivered::Recorded
            }
        }
    }
    .instrument(span)
    .await;
    if !matches!(delivered, Delivered::Completed(_)) {
        shared.activity.finish(1);
    }
    delivered
}

/// Reschedules a failed delivery, or dead-letters it if it may not run again; returns which.
/// `handler` names the handler, for the report of a dead letter nobody would see otherwise.
async fn record_failure(
    shared: &Shared,
    id: DeliveryId,
    attempt: u32,
    handler: &str,
    failure: Failure,
) -> Outcome {
    let Failure { retryable, text } = failure;
    let (outcome, stored) = if retryable && !shared.retry.gives_up_after(attempt) {
        let delay = shared.retry.delay(attempt);
        tracing::warn!(error = %text, ?delay, "handler failed; will retry");
        let at = Utc::now() + delay;
        let stored = shared.store.retry_delivery(id, attempt, text, at).await;
        (Outcome::Failed, stored)
    } else {
        tracing::error!(error = %text, "handler failed; dead-lettered");
        super::report_unseen_dead_letter(&shared.context, &format!("handler `{handler}`"), &text);
        let stored = shared.store.dead_letter_delivery(id, attempt, text).await;
        (Outcome::DeadLettered, stored)
    };
    if let Err(error) = stored {
        tracing::error!(%error, "could not record a delivery's outcome");
        shared.observed.store_failed(&error);
    }
    outcome
}

/// The store's transaction for a handler that takes one, holding the delivery: `Ok(None)` if
/// the delivery is no longer this claim's, `Ok(Some(None))` for a handler that takes none.
async fn begin(
    shared: &Shared,
    route: &Route,
    id: DeliveryId,
    attempt: u32,
) -> Result<Option<Option<TransactionSlot>>, Failure> {
    let takes_transaction =
        matches!(route.target, Target::Handler(info) if info.transaction().is_some());
    if !takes_transaction {
        return Ok(Some(None));
    }
    match shared.store.begin(id, attempt).await {
        Ok(Some(transaction)) => Ok(Some(Some(TransactionSlot::new(transaction)))),
        Ok(None) => Ok(None),
        Err(error) => Err(Failure {
            retryable: true,
            text: format!(
                "could not begin the handler's transaction: {}",
                error_chain(&error)
            ),
        }),
    }
}

/// Runs the handler of one delivery, in the store's transaction `slot` if it takes it; returns
/// the integration rows it produced.
async fn handle(
    shared: &Shared,
    event: &StoredEvent,
    route: &Route,
    attempt: u32,
    slot: Option<&TransactionSlot>,
) -> Result<Vec<NewIntegrationRow>, Failure> {
    let typed = shared.wiring.typed(event).map_err(Failure::fatal)?;
    let handler = route.name.as_str();
    let span = match route.target {
        Target::Handler(info) if info.produces().is_none() => {
            info_span!("tidings.handler", handler, event = %event.name, event_id = %event.meta.id, correlation_id = %event.meta.correlation_id, attempt)
        }
        _ => {
            info_span!("tidings.translation", handler, event = %event.name, event_id = %event.meta.id, correlation_id = %event.meta.correlation_id, attempt)
        }
    };
    let publisher = DomainEvents::new(Arc::clone(&shared.outbox), slot.is_some());
    let emitted = async {
        match route.target {
            Target::Handler(info) => {
                let mut ctx =
                    HandlerContext::new(&shared.deps, &event.meta).with_publisher(&publisher);
                if let Some(slot) = slot {
                    ctx = ctx.with_transaction(slot);
                }
                // A panicking handler fails its delivery (`call` catches the panic). An
                // `async fn` handler's future runs in `slot`, pinned here, in this delivery's
                // own state: no allocation.
                let slot = std::pin::pin!(FutureSlot::new());
                info.handler_fn().call(typed.event(), &ctx, slot).await
            }
            Target::From {
                translation,
                source,
            } => match translation.translate(typed.event()) {
                Some(produced) => Ok(emitted(vec![produced])),
                None => Err(HandlerError::wrong_event("From translation", source)),
            },
        }
    }
    .instrument(span.clone())
    .await?;
    let Some(emitted) = emitted else {
        return Ok(Vec::new());
    };
    let traceparent = trace::of(&span, event.meta.traceparent.as_deref());
    emitted
        .iter()
        .map(|produced| {
            envelope::produced(&event.meta, &shared.context, &traceparent, &**produced).map_err(
                |error| {
                    Failure::fatal(format!(
                        "`{}` could not be encoded as JSON: {error}",
                        produced.contract()
                    ))
                },
            )
        })
        .collect()
}
