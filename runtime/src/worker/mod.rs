//! The background loops of a started app, one file each, over what they share (the app's state,
//! the wait for work nobody announced):
//!
//! - [`dispatch`]: runs due deliveries, each handler's in order, in a claim–run–sleep loop;
//! - [`relay`]: publishes due integration rows to the transport, in order per key, through a
//!   sliding window of publications;
//! - [`consume`]: records the messages of one subscription for the inbound handlers;
//! - [`listen`]: wakes the dispatcher and the relay for work that other processes commit;
//! - [`sweep`]: deletes what retention no longer keeps.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::activity::Activity;
use crate::app::Observed;
use crate::deps::Deps;
use crate::error::StoreError;
use crate::publish::Outbox;
use crate::retention::Retention;
use crate::retry::RetryPolicy;
use crate::store::{BoxFuture, Store, StoreListener};
use crate::transport::{Inbound, Transport};
use crate::wiring::Wiring;

mod consume;
mod dispatch;
mod listen;
mod observe;
mod relay;
mod sweep;

/// What the workers of one app share: its configuration, its wiring and its wake-ups.
pub(crate) struct Shared {
    /// The bounded context.
    pub(crate) context: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) transport: Arc<dyn Transport>,
    /// Where the context's domain events are recorded: the publisher handlers receive.
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) deps: Deps,
    pub(crate) retry: RetryPolicy,
    pub(crate) retention: Retention,
    pub(crate) poll_interval: Duration,
    /// How often the backlog gauges are read.
    pub(crate) metrics_interval: Duration,
    pub(crate) batch_size: usize,
    /// How many publications the relay keeps in flight, at most: also how many claimed rows
    /// it holds.
    pub(crate) relay_window: usize,
    /// How many received messages a consumer records in one store call, at most.
    pub(crate) inbox_batch: usize,
    pub(crate) wiring: Wiring,
    /// The work in flight in this app.
    pub(crate) activity: Arc<Activity>,
    /// The messages in flight in the transport, for a transport that can tell (in-memory).
    pub(crate) transport_activity: Option<Arc<Activity>>,
    pub(crate) dispatch_wake: Arc<Notify>,
    pub(crate) relay_wake: Notify,
    /// Whether the last publication reached the transport: the relay says so when it changes.
    pub(crate) transport_available: AtomicBool,
    /// What the workers note for the app's health.
    pub(crate) observed: Observed,
    /// The metrics recorded per delivery and per publication.
    pub(crate) meters: crate::measure::Meters,
}

/// The subscriptions of an app, each with the routes of its contract.
pub(crate) type Inbounds = Vec<(Box<dyn Inbound>, Vec<usize>)>;

/// Starts every worker of an app: one consumer per subscription, the dispatcher, the store's
/// listener if it has one, the retention sweep and the relay. Each stops when `stop` says so.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    inbounds: Inbounds,
    listener: Option<Box<dyn StoreListener>>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (inbound, routes) in inbounds {
        let consumer = consume::run(Arc::clone(shared), inbound, routes, stop.clone());
        tasks.push(tokio::spawn(consumer));
    }
    tasks.push(tokio::spawn(dispatch::run(
        Arc::clone(shared),
        stop.clone(),
    )));
    if let Some(listener) = listener {
        let listening = listen::run(Arc::clone(shared), listener, stop.clone());
        tasks.push(tokio::spawn(listening));
    }
    tasks.push(tokio::spawn(sweep::run(Arc::clone(shared), stop.clone())));
    tasks.push(tokio::spawn(observe::run(Arc::clone(shared), stop.clone())));
    tasks.push(tokio::spawn(relay::run(Arc::clone(shared), stop.clone())));
    tasks
}

impl Shared {
    /// Whether the broker answers: the transport's own check, the relay's last publication and
    /// every consumer's last attempt to receive.
    pub(crate) async fn broker_answers(&self) -> bool {
        let checked = match self.transport.check().await {
            Ok(()) => true,
            Err(error) => {
                self.observed.broker_failed(&error);
                false
            }
        };
        checked
            && self
                .transport_available
                .load(std::sync::atomic::Ordering::Relaxed)
            && !self.observed.consumers_failing()
    }

    /// Once a worker found nothing more to claim: returns `true` at once if the app stops, else
    /// sleeps until `wake` is notified, until the next item is due (`next_due`, read after the
    /// last claim, at `claimed_at`: see [`wait_for`](Self::wait_for)), or for the poll
    /// interval, and returns whether the app stopped meanwhile (a dropped `Running` drops
    /// `stop`'s sender).
    ///
    /// `timer` is the worker's own, kept from one sleep to the next: it is set again only once
    /// it fired, or when the next item is due before the poll interval ends. A timer left
    /// running fires no later than the poll interval asks; if it was set for an item due
    /// sooner, the worker only looks for work early. A worker woken for each new item, with
    /// nothing scheduled sooner than the poll interval, thus neither reads the clock nor
    /// touches the runtime's timers to go back to sleep.
    async fn idle(
        &self,
        wake: &Notify,
        next_due: BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>>,
        claimed_at: DateTime<Utc>,
        stop: &mut watch::Receiver<bool>,
        mut timer: Pin<&mut Sleep>,
    ) -> bool {
        if *stop.borrow() {
            return true;
        }
        let wait = self.wait_for(next_due.await, claimed_at);
        if timer.is_elapsed() || wait < self.poll_interval {
            timer.as_mut().reset(tokio::time::Instant::now() + wait);
        }
        tokio::select! {
            () = wake.notified() => false,
            () = timer => false,
            changed = stop.changed() => changed.is_err(),
        }
    }

    /// How long to wait for work that nobody announced: until the next scheduled item, at most
    /// the poll interval. An item that was already due when the last claim (at `claimed_at`)
    /// found nothing is held back (by another instance's claim, or behind the head of its key):
    /// it is waited for by polling, not by spinning.
    fn wait_for(
        &self,
        next_due: Result<Option<DateTime<Utc>>, StoreError>,
        claimed_at: DateTime<Utc>,
    ) -> Duration {
        match next_due {
            Ok(Some(due)) if due > claimed_at => (due - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.poll_interval),
            Ok(_) => self.poll_interval,
            Err(error) => {
                tracing::warn!(%error, "could not read the next due time");
                self.poll_interval
            }
        }
    }
}

/// Reports a dead letter on standard error when no tracing subscriber listens to errors, so that
/// a failure is never silent: `what` went to the dead letters of `context` with `error`. The
/// first report says how to see them all.
fn report_unseen_dead_letter(context: &str, what: &str, error: &str) {
    static HINTED: std::sync::Once = std::sync::Once::new();
    if tracing::enabled!(tracing::Level::ERROR) {
        return;
    }
    eprintln!("tidings: the `{context}` app dead-lettered {what}: {error}");
    HINTED.call_once(|| {
        eprintln!(
            "tidings: (no tracing subscriber is installed: install one, such as \
             `tracing_subscriber::fmt::init()`, to see every failure and retry; \
             `app.dead_letters()` lists the dead letters)"
        );
    });
}

/// Sleeps for `delay`, or until `stop` changes; returns whether it was told to stop.
async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stop.changed() => true,
    }
}
