//! [`TidingsBuilder`]: what an app is made of, and the check of its wiring.

use crate::app::Observed;
use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::Notify;

use super::Tidings;
use crate::activity::Activity;
use crate::deps::{Dep, Deps};
use crate::error::{BuildError, Error};
use crate::publish::Outbox;
use crate::registry::registry;
use crate::retention::Retention;
use crate::retry::RetryPolicy;
use crate::store::{InMemoryStore, Store};
use crate::transport::{InMemoryTransport, Transport};
use crate::wiring::wire;
use crate::worker::Shared;

/// The builder of an app: [`Tidings::builder`].
pub struct TidingsBuilder {
    context: String,
    store: Option<Arc<dyn Store>>,
    transport: Option<Arc<dyn Transport>>,
    /// The messages in flight in the transport, if it can tell.
    transport_activity: Option<Arc<Activity>>,
    deps: Deps,
    retry: RetryPolicy,
    retention: Retention,
    poll_interval: Duration,
    metrics_interval: Duration,
    batch_size: usize,
    relay_window: usize,
    inbox_batch: usize,
}

impl fmt::Debug for TidingsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TidingsBuilder")
            .field("context", &self.context)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl TidingsBuilder {
    /// Where the app keeps events, deliveries and its outbox. Default: an [`InMemoryStore`].
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// How the app's integration events reach other contexts, and theirs reach it. Default: an
    /// [`InMemoryTransport`] of its own.
    pub fn transport<T: Transport>(mut self, transport: T) -> Self {
        // The in-process transport can tell what is in flight, for `settle`; brokers cannot.
        self.transport_activity = (&transport as &dyn Any)
            .downcast_ref::<InMemoryTransport>()
            .map(InMemoryTransport::activity);
        self.transport = Some(Arc::new(transport));
        self
    }

    /// Provides `value` to every `Dep<T>` parameter of type `T`.
    pub fn provide<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.deps.insert(value);
        self
    }

    /// Provides a dependency that is already shared, such as one that several apps of one
    /// process use.
    pub fn provide_dep<T: Send + Sync + 'static>(mut self, value: Dep<T>) -> Self {
        self.deps.insert_arc(value.into_arc());
        self
    }

    /// How failed handlers and publications are retried. Default: [`RetryPolicy::default`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long published rows and inbox entries are kept. Default: [`Retention::default`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How often the dispatcher and the relay look for work nobody woke them for. Default: 1 s.
    /// Work recorded in this process wakes them at once, and so does work recorded by another
    /// process on a store that can tell (PostgreSQL's `LISTEN/NOTIFY`): polling is the fallback.
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// How often the app reads what waits in its store for the backlog gauges
    /// (`tidings.outbox.*`, see the README's metrics table). Default: 10 s. Each reading is
    /// one query that counts the waiting work.
    pub fn metrics_interval(mut self, metrics_interval: Duration) -> Self {
        self.metrics_interval = metrics_interval;
        self
    }

    /// How many items one store step takes, at most. Default: 64.
    ///
    /// The dispatcher claims up to this many due deliveries at once, runs each handler's in
    /// order (handlers concurrently), and completes the successful ones, with the integration
    /// events they produced, in one transaction that claims the next batch too: a group commit,
    /// one commit for the batch instead of one per delivery. The relay marks up to this many
    /// acknowledged rows at once, and claims more rows once its window has room for this many.
    /// A larger batch drains a backlog faster; a smaller one lets the next claim, and so other
    /// handlers' new work, start sooner after slow handlers. A batch of 0 is taken as 1.
    ///
    /// ```
    /// // Handlers that take microseconds and a deep backlog: fewer, larger commits.
    /// let builder = tidings::Tidings::builder("shipping").batch_size(256);
    /// ```
    pub fn batch_size(mut self, batch: usize) -> Self {
        self.batch_size = batch.max(1);
        self
    }

    /// How many publications the relay keeps in flight at once, across keys. Default: 256.
    ///
    /// The relay publishes the head of each key, one at a time per key so that each key stays
    /// in order, and does not wait for the slowest: as the broker acknowledges publications it
    /// marks their rows published (in batches, one statement each) and claims more, never
    /// holding more claimed rows than the window. A larger window hides more of the broker's
    /// round trip when many keys are waiting; 1 publishes one row at a time. A window of 0 is
    /// taken as 1.
    ///
    /// ```
    /// // Up to 1024 publications in flight, for a broker far away and many keys.
    /// let builder = tidings::Tidings::builder("catalog").relay_window(1024);
    /// ```
    pub fn relay_window(mut self, window: usize) -> Self {
        self.relay_window = window.max(1);
        self
    }

    /// How many received integration events a consumer records in one store transaction, at
    /// most. Default: 64.
    ///
    /// A consumer takes the messages its transport already holds, up to this many, records them
    /// in the inbox together and acknowledges them once recorded: one commit for the batch
    /// instead of one per message. It never waits for a batch to fill, so a lone message is
    /// recorded at once. 1 records one message at a time. A batch of 0 is taken as 1.
    ///
    /// ```
    /// // Fewer, larger commits for a context that receives bursts.
    /// let builder = tidings::Tidings::builder("search").inbox_batch(256);
    /// ```
    pub fn inbox_batch(mut self, batch: usize) -> Self {
        self.inbox_batch = batch.max(1);
        self
    }

    /// Checks the wiring exactly as [`build`](Self::build) does, without building: for a
    /// one-line test in a user's suite.
    ///
    /// ```standalone_crate
    /// use tidings::prelude::*;
    ///
    /// #[domain_event]
    /// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// pub struct ProductPutOnSale { pub product_id: String }
    ///
    /// pub struct Recommendations;
    ///
    /// #[handles]
    /// fn recalculate(event: &ProductPutOnSale, recs: Dep<Recommendations>) {}
    ///
    /// let error = Tidings::builder("catalog").validate().unwrap_err();
    /// assert!(error.to_string().contains("takes `Dep<Recommendations>`"));
    /// ```
    pub fn validate(&self) -> Result<(), BuildError> {
        wire(&self.context, registry(), &self.deps, self.transactions()).map(drop)
    }

    /// The database in whose transactions the store works, if any.
    fn transactions(&self) -> Option<TypeId> {
        self.store.as_ref().and_then(|s| s.transaction_database())
    }

    /// Builds the app, checking its wiring: every problem is listed in one error.
    pub fn build(self) -> Result<Tidings, Error> {
        let wiring = wire(&self.context, registry(), &self.deps, self.transactions())?;
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(InMemoryStore::default()));
        let (transport, transport_activity) = match self.transport {
            Some(transport) => (transport, self.transport_activity),
            None => {
                let transport = InMemoryTransport::default();
                let activity = transport.activity();
                (Arc::new(transport) as Arc<dyn Transport>, Some(activity))
            }
        };
        let dispatch_wake = Arc::new(Notify::new());
        let outbox = Outbox {
            context: self.context.clone(),
            store: Arc::clone(&store),
            routes: wiring.routes_by_event(),
            owned: wiring.domain_event_types(),
            dispatch_wake: Arc::clone(&dispatch_wake),
        };
        let shared = Shared {
            meters: crate::measure::Meters::new(&self.context, transport.system()),
            context: self.context,
            store,
            transport,
            outbox: Arc::new(outbox),
            deps: self.deps,
            retry: self.retry,
            retention: self.retention,
            poll_interval: self.poll_interval,
            metrics_interval: self.metrics_interval,
            batch_size: self.batch_size,
            relay_window: self.relay_window,
            inbox_batch: self.inbox_batch,
            wiring,
            activity: Arc::new(Activity::default()),
            transport_activity,
            dispatch_wake,
            relay_wake: Notify::new(),
            transport_available: AtomicBool::new(true),
            observed: Observed::default(),
        };
        Ok(Tidings {
            shared: Arc::new(shared),
            started: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl TidingsBuilder {
    /// The builder of the app of `context`, with the defaults.
    pub(super) fn new(context: String) -> Self {
        TidingsBuilder {
            context,
            store: None,
            transport: None,
            transport_activity: None,
            deps: Deps::new(),
            retry: RetryPolicy::default(),
            retention: Retention::default(),
            poll_interval: Duration::from_secs(1),
            metrics_interval: Duration::from_secs(10),
            batch_size: 64,
            relay_window: 256,
            inbox_batch: 64,
        }
    }
}
