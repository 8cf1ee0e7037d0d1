//! [`Running`]: a started app, its shutdown, and `settle` for tests, with [`Unsettled`], what
//! `settle_for` reports when the time it was given ran out.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::health::{ComponentHealth, Health, HealthStatus};
use crate::activity::Activity;
use crate::error::Error;
use crate::handler::panic_message;
use crate::store::{ContractWaiting, HandlerWaiting, StoreError, WaitCounts, Waiting};
use crate::worker::Shared;

/// A started app: [`shutdown`](Self::shutdown) stops it, [`settle`](Self::settle) waits for it.
pub struct Running {
    pub(super) shared: Arc<Shared>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("context", &self.shared.context)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Stops the app gracefully: the dispatcher, the relay and the consumers finish the work
    /// they hold, then stop. What is not done yet stays in the store.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.stop.send_replace(true);
        let mut panicked = None;
        for task in self.tasks {
            if let Err(error) = task.await
                && error.is_panic()
            {
                panicked.get_or_insert(panic_message(error.into_panic()));
            }
        }
        match panicked {
            None => Ok(()),
            Some(message) => Err(Error::TaskPanicked {
                context: self.shared.context.clone(),
                message,
            }),
        }
    }

    /// How the app is, for a liveness and a readiness probe: whether its workers run, whether
    /// its store and its broker answer (and their last errors), and how much work waits, with
    /// the age of the oldest. It asks the store once, and the transport for its connection's
    /// state. A broker that does not answer makes the app [degraded](crate::HealthStatus), not
    /// unready: use cases still publish, and integration events wait in the outbox.
    ///
    /// ```no_run
    /// # async fn probe(running: &tidings::Running) {
    /// let health = running.health().await;
    /// let status = if health.is_ready() { 200 } else { 503 };
    /// println!("{status}\n{health}");
    /// # }
    /// ```
    pub async fn health(&self) -> Health {
        let shared = &self.shared;
        let workers_running = self.tasks.iter().all(|task| !task.is_finished());
        let waiting = shared.store.waiting().await;
        if let Err(error) = &waiting {
            shared.observed.store_failed(error);
        }
        let broker_answers = shared.broker_answers().await;
        let now = chrono::Utc::now();
        let age = |oldest: Option<chrono::DateTime<chrono::Utc>>| {
            oldest.map(|t| (now - t).to_std().unwrap_or_default())
        };
        let (deliveries, rows) = waiting.as_ref().map(Waiting::totals).unwrap_or_default();
        let (oldest_delivery, oldest_row) =
            waiting.as_ref().map(Waiting::oldest).unwrap_or_default();
        let store = ComponentHealth {
            answers: waiting.is_ok(),
            last_error: shared.observed.last_store_error(),
        };
        let broker = ComponentHealth {
            answers: broker_answers,
            last_error: shared.observed.last_broker_error(),
        };
        let status = if !workers_running || !store.answers {
            HealthStatus::Unhealthy
        } else if !broker.answers {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        Health {
            context: shared.context.clone(),
            status,
            workers_running,
            store,
            broker,
            deliveries_waiting: (deliveries, age(oldest_delivery)),
            rows_waiting: (rows, age(oldest_row)),
        }
    }

    /// Resolves once the app is idle: nothing in flight, every delivery in its store completed
    /// or dead-lettered, every integration row published, and (on a transport that can tell)
    /// every message it sent received. For tests, with no sleeps: it asks the store how much
    /// work waits each time the work in flight of an app of the process (this one or another)
    /// drops to none, and every poll interval while the waiting work is not this process's to
    /// do.
    ///
    /// It waits with no bound: work that no process takes (deliveries of a handler this app
    /// does not run, a claim another process never lets go) keeps it waiting forever. Use
    /// [`settle_for`](Self::settle_for) to give up after a time and be told what still waits.
    pub async fn settle(&self) {
        Running::settle_all(&[self]).await;
    }

    /// Resolves once every app in `apps` is idle at the same moment: for apps that talk to each
    /// other, such as two contexts on one [`InMemoryTransport`](crate::InMemoryTransport).
    ///
    /// Like [`settle`](Self::settle), it waits with no bound; [`settle_all_for`](Self::settle_all_for)
    /// gives up after a time and says what still waits.
    pub async fn settle_all(apps: &[&Running]) {
        let idle = || {
            apps.iter().all(|running| {
                let shared = &running.shared;
                shared.activity.is_idle()
                    && shared
                        .transport_activity
                        .as_deref()
                        .is_none_or(Activity::is_idle)
            })
        };
        let stores_empty = || async {
            for running in apps {
                match running.shared.store.count_pending().await {
                    Ok((0, 0)) => {}
                    Ok(_) => return false,
                    Err(error) => {
                        tracing::warn!(%error, "could not count the work waiting in the store");
                        return false;
                    }
                }
            }
            true
        };
        let recheck = apps
            .iter()
            .map(|running| running.shared.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(1));
        Activity::settle(idle, recheck, stores_empty).await;
    }

    /// Resolves `Ok(())` once the app is idle, as [`settle`](Self::settle) does, or, if it is
    /// not idle within `timeout`, an [`Unsettled`] error that says what still waits: the
    /// deliveries of each handler (due now, scheduled for later, claimed), the integration rows
    /// of each contract, the work and the messages in flight, and, called out apart, the
    /// deliveries of handlers this app does not run, which it can never take.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tidings::prelude::*;
    ///
    /// #[domain_event]
    /// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// pub struct OrderConfirmed { pub order_id: u64 }
    ///
    /// #[handles]
    /// fn send_confirmation_mail(event: &OrderConfirmed) {}
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = Tidings::builder("sales").build()?;
    /// let running = app.start().await?;
    /// app.domain_events().publish(OrderConfirmed { order_id: 7 }).await?;
    /// if let Err(unsettled) = running.settle_for(Duration::from_secs(5)).await {
    ///     panic!("{unsettled}"); // the list of what still waits, app by app
    /// }
    /// running.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn settle_for(&self, timeout: Duration) -> Result<(), Unsettled> {
        Running::settle_all_for(&[self], timeout).await
    }

    /// Resolves `Ok(())` once every app in `apps` is idle at the same moment, as
    /// [`settle_all`](Self::settle_all) does, or, if they are not within `timeout`, an
    /// [`Unsettled`] error that says what each of them still waits for. A delivery of a handler
    /// that one app does not run and another of `apps` does is reported with the app that runs
    /// it.
    ///
    /// ```no_run
    /// # async fn example(catalog: tidings::Running, search: tidings::Running) {
    /// use std::time::Duration;
    /// use tidings::Running;
    ///
    /// let settled = Running::settle_all_for(&[&catalog, &search], Duration::from_secs(5)).await;
    /// if let Err(unsettled) = settled {
    ///     for app in &unsettled.apps {
    ///         eprintln!("{app}");
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn settle_all_for(apps: &[&Running], timeout: Duration) -> Result<(), Unsettled> {
        if tokio::time::timeout(timeout, Running::settle_all(apps))
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut waiting = Vec::with_capacity(apps.len());
        for running in apps {
            waiting.push(running.waiting(apps).await);
        }
        // The apps may have settled between the timeout and the look.
        if waiting.iter().all(AppWaiting::is_settled) {
            return Ok(());
        }
        Err(Unsettled {
            timeout,
            apps: waiting,
        })
    }

    /// What this app waits for now, the handlers it does not run sorted out, each with the app
    /// of `apps` that runs it, if any.
    async fn waiting(&self, apps: &[&Running]) -> AppWaiting {
        let shared = &self.shared;
        // Read before the store, as `settle` does: idle then, and nothing in the store after,
        // is settled.
        let in_flight = !shared.activity.is_idle();
        let transport_in_flight = shared
            .transport_activity
            .as_ref()
            .map(|activity| !activity.is_idle());
        let (stored, store_error) = match shared.store.waiting().await {
            Ok(stored) => (stored, None),
            Err(error) => (Waiting::default(), Some(error)),
        };
        let runs: HashSet<&str> = shared.wiring.route_names().collect();
        let mut handlers = Vec::new();
        let mut not_run = Vec::new();
        for entry in stored.deliveries {
            match entry.handler {
                Some(handler) if !runs.contains(handler.as_str()) => {
                    let run_by = apps
                        .iter()
                        .find(|other| other.shared.wiring.route_names().any(|n| n == handler))
                        .map(|other| other.shared.context.clone());
                    not_run.push(NotRunHandler {
                        handler,
                        counts: entry.counts,
                        run_by,
                    });
                }
                handler => handlers.push(HandlerWaiting {
                    handler,
                    counts: entry.counts,
                    oldest: entry.oldest,
                }),
            }
        }
        AppWaiting {
            context: shared.context.clone(),
            not_run,
            handlers,
            rows: stored.rows,
            in_flight,
            transport_in_flight,
            store_error,
        }
    }
}

/// What kept apps from settling within the time that [`Running::settle_for`] or
/// [`Running::settle_all_for`] gave them: for each app, what it still waited for when the time
/// ran out. Its `Display` is that list, one line each, such as:
///
/// ```text
/// the app did not settle within 200ms; still waiting:
/// - the `shipping` app:
///   - handler `billing::send_invoice` is not run by the `shipping` app: 3 deliveries (3 due now) will wait for an app that runs it
///   - handler `shipping::pack_parcel`: 1 delivery (1 scheduled for later)
///   - contract `shipping.parcel-sent`: 1 integration row (1 due now)
///   - work in flight in the app
/// ```
///
/// ```no_run
/// # async fn example(running: tidings::Running) {
/// use std::time::Duration;
///
/// if let Err(unsettled) = running.settle_for(Duration::from_secs(5)).await {
///     let app = &unsettled.apps[0];
///     for handler in &app.not_run {
///         eprintln!("nothing here runs `{}`", handler.handler);
///     }
///     panic!("{unsettled}");
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(*.timeout, .apps))]
#[non_exhaustive]
pub struct Unsettled {
    /// The time the apps were given.
    pub timeout: Duration,
    /// What each app still waited for, in the order the apps were given.
    pub apps: Vec<AppWaiting>,
}

/// The text of an [`Unsettled`] error.
fn describe(timeout: Duration, apps: &[AppWaiting]) -> String {
    let which = if apps.len() == 1 {
        "the app"
    } else {
        "the apps"
    };
    let mut text = format!("{which} did not settle within {timeout:?}; still waiting:");
    for app in apps {
        text.push('\n');
        text.push_str(&app.to_string());
    }
    text
}

/// What one app still waited for, in an [`Unsettled`] error. Its `Display` is the app's part of
/// the error's list.
///
/// ```no_run
/// # async fn example(running: tidings::Running) {
/// use std::time::Duration;
///
/// if let Err(unsettled) = running.settle_for(Duration::from_secs(5)).await {
///     let app = &unsettled.apps[0];
///     assert_eq!(app.context, "shipping");
///     assert!(!app.is_settled());
///     let due: usize = app.handlers.iter().map(|h| h.counts.due).sum();
///     eprintln!("{due} deliveries due now; in flight: {}", app.in_flight);
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct AppWaiting {
    /// The app's bounded context.
    pub context: String,
    /// The deliveries in its store of handlers this app does not run: it never takes them.
    /// They wait for an app that runs them, on the same store.
    pub not_run: Vec<NotRunHandler>,
    /// The deliveries in its store of handlers this app runs, by handler (with no handler
    /// named, from a store that only counts them).
    pub handlers: Vec<HandlerWaiting>,
    /// The integration rows in its store's outbox, by contract.
    pub rows: Vec<ContractWaiting>,
    /// Whether the app had work in flight: deliveries or integration rows it had claimed and
    /// was running or publishing.
    pub in_flight: bool,
    /// Whether the transport had messages in flight, sent and not yet received; `None` for a
    /// transport that does not tell (only the in-memory one does).
    pub transport_in_flight: Option<bool>,
    /// Why the store could not tell what waits, if it could not.
    pub store_error: Option<StoreError>,
}

impl AppWaiting {
    /// Whether nothing waited: no delivery, no integration row, nothing in flight, and a store
    /// that could tell.
    pub fn is_settled(&self) -> bool {
        self.not_run.is_empty()
            && self.handlers.iter().all(|h| h.counts.is_empty())
            && self.rows.iter().all(|r| r.counts.is_empty())
            && !self.in_flight
            && self.transport_in_flight != Some(true)
            && self.store_error.is_none()
    }

    /// Whether a delivery or a row waiting in the store was claimed while this app had nothing
    /// in flight: then the claim is another process's (or another app's).
    fn claimed_elsewhere(&self) -> bool {
        let claimed = |counts: &WaitCounts| counts.claimed > 0;
        !self.in_flight
            && (self.handlers.iter().any(|h| claimed(&h.counts))
                || self.rows.iter().any(|r| claimed(&r.counts)))
    }
}

impl fmt::Display for AppWaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = &self.context;
        write!(f, "- the `{context}` app:")?;
        if self.is_settled() {
            return f.write_str(" nothing waits");
        }
        if let Some(error) = &self.store_error {
            write!(f, "\n  - its store could not tell what waits: {error}")?;
        }
        for handler in &self.not_run {
            let name = &handler.handler;
            let counts = &handler.counts;
            let deliveries = plural(counts.total(), "delivery", "deliveries");
            write!(
                f,
                "\n  - handler `{name}` is not run by the `{context}` app: {deliveries} ({counts})"
            )?;
            match &handler.run_by {
                Some(other) => write!(f, " wait for the `{other}` app, which runs it")?,
                None => f.write_str(" will wait for an app that runs it")?,
            }
        }
        for handler in &self.handlers {
            let counts = &handler.counts;
            let deliveries = plural(counts.total(), "delivery", "deliveries");
            match &handler.handler {
                Some(name) => write!(f, "\n  - handler `{name}`: {deliveries} ({counts})")?,
                None => write!(
                    f,
                    "\n  - {deliveries} of handlers the store does not name ({counts})"
                )?,
            }
        }
        for rows in &self.rows {
            let counts = &rows.counts;
            let total = plural(counts.total(), "integration row", "integration rows");
            match &rows.contract {
                Some(name) => write!(f, "\n  - contract `{name}`: {total} ({counts})")?,
                None => write!(
                    f,
                    "\n  - {total} of contracts the store does not name ({counts})"
                )?,
            }
        }
        if self.claimed_elsewhere() {
            f.write_str(
                "\n  - the claims above are not this app's (it has no work in flight): another \
                 process holds them until it finishes or its claim expires",
            )?;
        }
        if self.in_flight {
            f.write_str("\n  - work in flight in the app")?;
        }
        if self.transport_in_flight == Some(true) {
            f.write_str("\n  - messages in flight in the transport, sent and not yet received")?;
        }
        Ok(())
    }
}

/// `n` and the word for that many.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The deliveries of a handler that an app does not run, waiting in its store: that app never
/// takes them. They are another app's (on the same store), or of a handler this program no
/// longer has.
///
/// ```no_run
/// # async fn example(running: tidings::Running) {
/// use std::time::Duration;
///
/// if let Err(unsettled) = running.settle_for(Duration::from_secs(5)).await {
///     for app in &unsettled.apps {
///         for handler in &app.not_run {
///             let runner = handler.run_by.as_deref().unwrap_or("no app here");
///             eprintln!("`{}`: {} waiting, run by {runner}", handler.handler, handler.counts.total());
///         }
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotRunHandler {
    /// The handler's route name.
    pub handler: String,
    /// How many of its deliveries wait, in each state.
    pub counts: WaitCounts,
    /// The bounded context of the app, among those settled together, that runs it, if any.
    pub run_by: Option<String>,
}
