//! [`Health`]: what [`Running::health`](super::Running::health) tells an operator, shaped for
//! a liveness and a readiness probe; and [`Observed`], what the workers note for it as they go.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How a started app is.
///
/// - [`is_live`](Self::is_live): its workers run. A probe that fails on it restarts the process.
/// - [`is_ready`](Self::is_ready): it is live and its store answers, so use cases can publish.
///   A broker that does not answer leaves it ready: integration events wait in the outbox and
///   go out once it is back. That is [`HealthStatus::Degraded`], not dead.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// The bounded context of the app.
    pub context: String,
    /// Healthy, degraded (the broker is away, or work waits on errors) or unhealthy.
    pub status: HealthStatus,
    /// Whether every worker of the app (dispatcher, relay, consumers) still runs.
    pub workers_running: bool,
    /// The store: whether it answered now, and its last error.
    pub store: ComponentHealth,
    /// The broker: whether it answers (the transport's own check, the last publication and
    /// the consumers), and its last error.
    pub broker: ComponentHealth,
    /// How many deliveries wait for their handlers, and how long ago the oldest was published.
    pub deliveries_waiting: (usize, Option<Duration>),
    /// How many integration rows wait for the broker, and how long ago the oldest was
    /// published.
    pub rows_waiting: (usize, Option<Duration>),
}

/// How one component of an app (its store, its broker) is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ComponentHealth {
    /// Whether it answers.
    pub answers: bool,
    /// Its last error, and when it happened, if any.
    pub last_error: Option<(DateTime<Utc>, String)>,
}

/// The overall state of an app, for a dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Everything answers.
    Healthy,
    /// The app works, but its broker does not answer: integration events wait in the outbox.
    Degraded,
    /// A worker stopped, or the store does not answer.
    Unhealthy,
}

impl Health {
    /// Whether the app's workers run: for a liveness probe.
    pub fn is_live(&self) -> bool {
        self.workers_running
    }

    /// Whether the app can take work: live, and its store answers. A broker outage does not
    /// make it unready. For a readiness probe.
    pub fn is_ready(&self) -> bool {
        self.workers_running && self.store.answers
    }
}

impl fmt::Display for Health {
    /// One line per component, for a probe's body or a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        };
        writeln!(f, "{}: {status}", self.context)?;
        writeln!(
            f,
            "workers: {}",
            if self.workers_running {
                "running"
            } else {
                "stopped"
            }
        )?;
        for (name, component) in [("store", &self.store), ("broker", &self.broker)] {
            let answers = if component.answers {
                "answers"
            } else {
                "does not answer"
            };
            write!(f, "{name}: {answers}")?;
            if let Some((at, error)) = &component.last_error {
                write!(f, "; last error at {at}: {error}")?;
            }
            writeln!(f)?;
        }
        for (name, (count, oldest)) in [
            ("deliveries waiting", self.deliveries_waiting),
            ("integration rows waiting", self.rows_waiting),
        ] {
            write!(f, "{name}: {count}")?;
            if let Some(oldest) = oldest {
                write!(
                    f,
                    ", the oldest published {:.1} s ago",
                    oldest.as_secs_f64()
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// What the workers of an app note for its health as they go: the last error of each
/// component, and how many consumers cannot receive.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    store_error: Mutex<Option<(DateTime<Utc>, String)>>,
    broker_error: Mutex<Option<(DateTime<Utc>, String)>>,
    /// The consumers whose last attempt to receive failed.
    consumers_failing: AtomicUsize,
}

impl Observed {
    /// The store failed with `error`.
    pub(crate) fn store_failed(&self, error: &(dyn std::error::Error + 'static)) {
        note(&self.store_error, error);
    }

    /// The broker failed with `error`.
    pub(crate) fn broker_failed(&self, error: &(dyn std::error::Error + 'static)) {
        note(&self.broker_error, error);
    }

    /// A consumer could not receive (`true`), or receives again (`false`).
    pub(crate) fn consumer_failing(&self, failing: bool) {
        if failing {
            self.consumers_failing.fetch_add(1, Ordering::Relaxed);
        } else {
            self.consumers_failing.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn consumers_failing(&self) -> bool {
        self.consumers_failing.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn last_store_error(&self) -> Option<(DateTime<Utc>, String)> {
        lock(&self.store_error).clone()
    }

    pub(crate) fn last_broker_error(&self) -> Option<(DateTime<Utc>, String)> {
        lock(&self.broker_error).clone()
    }
}

fn note(slot: &Mutex<Option<(DateTime<Utc>, String)>>, error: &(dyn std::error::Error + 'static)) {
    *lock(slot) = Some((Utc::now(), crate::error::error_chain(error)));
}

/// The slot, even if a thread panicked holding it: what it holds is a plain value.
fn lock<T>(slot: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
