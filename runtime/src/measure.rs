//! The metrics tidings emits, in one place, through the [`metrics`] facade: whatever recorder
//! the application installs (Prometheus, OpenTelemetry, StatsD) receives them; with none, each
//! call costs next to nothing. Names and attributes follow OpenTelemetry's messaging semantic
//! conventions where one applies (`messaging.*`), and are tidings' own (`tidings.*`) for what
//! happens in the process. The README's table lists them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};

use crate::store::Waiting;

/// The attribute naming the bounded context.
const CONTEXT: &str = "tidings.context";
/// The attribute naming a handler (its route name).
const HANDLER: &str = "tidings.handler";

/// How a delivery ended, the `outcome` of `tidings.handler.deliveries`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// The handler succeeded.
    Handled,
    /// The handler failed; the delivery waits for its retry.
    Failed,
    /// The handler failed for the last time: the delivery is a dead letter.
    DeadLettered,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Failed => "failed",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// The metrics of one app that are recorded per delivery and per publication, registered once
/// for each handler and each contract, at their first use, and recorded through their handles
/// after: a handle records without building its labels again, where the macros allocate them
/// on every call, recorder or not. (A recorder installed after a metric's first use does not
/// receive it: install it before the app starts.)
#[derive(Debug)]
pub(crate) struct Meters {
    context: String,
    /// The transport's `messaging.system`.
    system: &'static str,
    handlers: Mutex<HashMap<String, Arc<HandlerMeters>>>,
    sent: Mutex<HashMap<String, Arc<SentMeters>>>,
}

/// One handler's metrics: [`Meters::handler`] finds them, [`delivery`] and [`latency`] record
/// through them.
#[derive(Debug)]
pub(crate) struct HandlerMeters {
    retries: Counter,
    duration: Histogram,
    latency: Histogram,
    /// `tidings.handler.deliveries`, by [`Outcome`].
    handled: Counter,
    failed: Counter,
    dead_lettered: Counter,
}

/// The metrics of successful publications of one contract through one system.
#[derive(Debug)]
struct SentMeters {
    sent: Counter,
    duration: Histogram,
}

impl Meters {
    /// The metrics of the app of `context`, which publishes through `system`.
    pub(crate) fn new(context: &str, system: &'static str) -> Self {
        Meters {
            context: context.to_owned(),
            system,
            handlers: Mutex::default(),
            sent: Mutex::default(),
        }
    }

    /// The metrics of `handler`, registered at the first call for it.
    pub(crate) fn handler(&self, handler: &str) -> Arc<HandlerMeters> {
        let mut handlers = crate::sync::lock(&self.handlers);
        if let Some(meters) = handlers.get(handler) {
            return Arc::clone(meters);
        }
        let labels = [
            (CONTEXT, self.context.clone()),
            (HANDLER, handler.to_owned()),
        ];
        let deliveries = |outcome: Outcome| {
            let [context, handler] = labels.clone();
            counter!(
                "tidings.handler.deliveries",
                &[context, handler, ("outcome", outcome.name().to_owned())]
            )
        };
        let meters = Arc::new(HandlerMeters {
            retries: counter!("tidings.handler.retries", &labels),
            duration: histogram!("tidings.handler.duration", &labels),
            latency: histogram!("tidings.delivery.latency", &labels),
            handled: deliveries(Outcome::Handled),
            failed: deliveries(Outcome::Failed),
            dead_lettered: deliveries(Outcome::DeadLettered),
        });
        handlers.insert(handler.to_owned(), Arc::clone(&meters));
        meters
    }

    fn sent(&self, contract: &str) -> Arc<SentMeters> {
        let mut sent = crate::sync::lock(&self.sent);
        if let Some(meters) = sent.get(contract) {
            return Arc::clone(meters);
        }
        let labels = sent_labels(self.system, contract);
        let meters = Arc::new(SentMeters {
            sent: counter!("messaging.client.sent.messages", &labels),
            duration: histogram!("messaging.client.operation.duration", &labels),
        });
        sent.insert(contract.to_owned(), Arc::clone(&meters));
        meters
    }
}

/// A delivery to the handler of `meters` ran (its `attempt`) and ended with `outcome`, after
/// `took`.
pub(crate) fn delivery(meters: &HandlerMeters, attempt: u32, outcome: Outcome, took: Duration) {
    if attempt > 1 {
        meters.retries.increment(1);
    }
    meters.duration.record(took.as_secs_f64());
    match outcome {
        Outcome::Handled => &meters.handled,
        Outcome::Failed => &meters.failed,
        Outcome::DeadLettered => &meters.dead_lettered,
    }
    .increment(1);
}

/// A first attempt of a delivery to the handler of `meters` started `waited` after its event was
/// published.
pub(crate) fn latency(meters: &HandlerMeters, waited: Duration) {
    meters.latency.record(waited.as_secs_f64());
}

/// The labels of a publication of `contract` through `system`.
fn sent_labels(system: &str, contract: &str) -> Vec<(&'static str, String)> {
    vec![
        ("messaging.system", system.to_owned()),
        ("messaging.operation.name", "send".to_owned()),
        ("messaging.destination.name", contract.to_owned()),
    ]
}

/// The relay sent a message of `contract`, which took `took` and failed with an error of kind
/// `error`, if any.
pub(crate) fn sent(meters: &Meters, contract: &str, took: Duration, error: Option<&str>) {
    let Some(error) = error else {
        let meters = meters.sent(contract);
        meters.sent.increment(1);
        meters.duration.record(took.as_secs_f64());
        return;
    };
    // A failure's error type is a label of its own; failures are rare.
    let mut labels = sent_labels(meters.system, contract);
    labels.push(("error.type", error.to_owned()));
    counter!("messaging.client.sent.messages", &labels).increment(1);
    histogram!("messaging.client.operation.duration", &labels).record(took.as_secs_f64());
}

/// The relay of `context` claimed `rows` integration rows at once.
pub(crate) fn relay_batch(context: &str, rows: usize) {
    histogram!("tidings.relay.batch_size", CONTEXT => context.to_owned()).record(rows as f64);
}

/// Whether the broker of `context`, through `system`, answers.
pub(crate) fn broker_available(context: &str, system: &str, available: bool) {
    let labels = [
        (CONTEXT, context.to_owned()),
        ("messaging.system", system.to_owned()),
    ];
    gauge!("tidings.broker.available", &labels).set(if available { 1.0 } else { 0.0 });
}

/// A consumer of `context` received `messages` messages of `contract` through `system`:
/// `duplicates` of them were in the inbox already, `dead_lettered` could not be decoded.
pub(crate) fn consumed(
    system: &str,
    context: &str,
    contract: &str,
    messages: usize,
    duplicates: usize,
    dead_lettered: usize,
) {
    let labels = [
        ("messaging.system", system.to_owned()),
        ("messaging.consumer.group.name", context.to_owned()),
        ("messaging.destination.name", contract.to_owned()),
    ];
    counter!("messaging.client.consumed.messages", &labels).increment(messages as u64);
    if duplicates > 0 {
        counter!("tidings.consumer.duplicates", &labels).increment(duplicates as u64);
    }
    if dead_lettered > 0 {
        counter!("tidings.consumer.dead_lettered", &labels).increment(dead_lettered as u64);
    }
}

/// What waits in the store of `context`, as gauges: the deliveries of each handler and the
/// integration rows of each contract, with the age of the oldest. `before` is what the last
/// call reported: a handler or contract that no longer waits goes back to zero.
pub(crate) fn backlog(context: &str, waiting: &Waiting, before: &Waiting) {
    let now = chrono::Utc::now();
    let age = |oldest: Option<chrono::DateTime<chrono::Utc>>| {
        oldest.map_or(0.0, |t| {
            (now - t).to_std().unwrap_or_default().as_secs_f64()
        })
    };
    let set = |kind: &str, name: Option<&str>, count: usize, oldest: f64| {
        let (key, name) = if kind == "deliveries" {
            (HANDLER, name.unwrap_or("").to_owned())
        } else {
            ("messaging.destination.name", name.unwrap_or("").to_owned())
        };
        let labels = [(CONTEXT, context.to_owned()), (key, name)];
        gauge!(format!("tidings.outbox.{kind}"), &labels).set(count as f64);
        gauge!(format!("tidings.outbox.{kind}.oldest_age"), &labels).set(oldest);
    };
    for gone in &before.deliveries {
        if waiting.deliveries.iter().all(|d| d.handler != gone.handler) {
            set("deliveries", gone.handler.as_deref(), 0, 0.0);
        }
    }
    for gone in &before.rows {
        if waiting.rows.iter().all(|r| r.contract != gone.contract) {
            set("integration_rows", gone.contract.as_deref(), 0, 0.0);
        }
    }
    for d in &waiting.deliveries {
        set(
            "deliveries",
            d.handler.as_deref(),
            d.counts.total(),
            age(d.oldest),
        );
    }
    for r in &waiting.rows {
        set(
            "integration_rows",
            r.contract.as_deref(),
            r.counts.total(),
            age(r.oldest),
        );
    }
}
