//! The metrics tidings emits, in one place, through the [`metrics`] facade: whatever recorder
//! the application installs (Prometheus, OpenTelemetry, StatsD) receives them; with none, each
//! call costs next to nothing. Names and attributes follow OpenTelemetry's messaging semantic
//! conventions where one applies (`messaging.*`), and are tidings' own (`tidings.*`) for what
//! happens in the process. The README's table lists them all.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Label, SharedString, counter, gauge, histogram};

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

/// The attributes naming a handler of a context, for the metrics of its deliveries: built once
/// per handler, so that recording a delivery copies two reference counts where building them
/// would allocate two strings.
#[derive(Debug, Clone)]
pub(crate) struct HandlerLabels([Label; 2]);

impl HandlerLabels {
    /// The attributes of `handler` (its route name) in `context`.
    pub(crate) fn new(context: &str, handler: &str) -> Self {
        let shared = |value: &str| SharedString::from(Arc::<str>::from(value));
        HandlerLabels([
            Label::new(CONTEXT, shared(context)),
            Label::new(HANDLER, shared(handler)),
        ])
    }
}

/// A delivery to the handler of `labels` ran (its `attempt`) and ended with `outcome`, after
/// `took`.
pub(crate) fn delivery(labels: &HandlerLabels, attempt: u32, outcome: Outcome, took: Duration) {
    let labels = &labels.0;
    if attempt > 1 {
        counter!("tidings.handler.retries", labels.iter()).increment(1);
    }
    histogram!("tidings.handler.duration", labels.iter()).record(took.as_secs_f64());
    let [context, handler] = labels.clone();
    counter!(
        "tidings.handler.deliveries",
        vec![
            context,
            handler,
            Label::from_static_parts("outcome", outcome.name())
        ]
    )
    .increment(1);
}

/// A first attempt of a delivery to the handler of `labels` started `waited` after its event was
/// published.
pub(crate) fn latency(labels: &HandlerLabels, waited: Duration) {
    histogram!("tidings.delivery.latency", labels.0.iter()).record(waited.as_secs_f64());
}

/// The relay sent a message of `contract` through `system`, which took `took` and failed with
/// an error of kind `error`, if any.
pub(crate) fn sent(system: &str, contract: &str, took: Duration, error: Option<&str>) {
    let mut labels = vec![
        ("messaging.system", system.to_owned()),
        ("messaging.operation.name", "send".to_owned()),
        ("messaging.destination.name", contract.to_owned()),
    ];
    if let Some(error) = error {
        labels.push(("error.type", error.to_owned()));
    }
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
