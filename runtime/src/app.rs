//! The app of one bounded context: its builder, its domain publisher, and the running
//! dispatcher, relay and consumers.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};
use uuid::Uuid;

use crate::activity::Activity;
use crate::event::{DomainEvent, EventKind};
use crate::handler::{Dep, Deps, HandlerContext, HandlerError, TransactionSlot, panic_message};
use crate::meta::EventMeta;
use crate::registry::registry;
use crate::retention::Retention;
use crate::retry::RetryPolicy;
use crate::store::{
    DeadLetter, DeadLetterId, Delivery, InMemoryStore, IntegrationRow, NewEvent, NewIntegrationRow,
    Store, StoreError, StoreListener, StoredEvent, Wake,
};
use crate::transport::{
    InMemoryTransport, Message, Received, Subscription, Transport, TransportError,
};
use crate::wiring::{BuildError, Target, Wiring, wire};

/// What can go wrong with an app.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The wiring is wrong; the error lists every problem.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An event could not be turned into JSON.
    #[error("event `{event}` could not be encoded as JSON: {source}")]
    Encode {
        /// The event's name.
        event: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `start()` was called on an app that is already running.
    #[error("the `{0}` app is already started: `start()` runs it once")]
    AlreadyStarted(String),
    /// `publish` was called in a handler that holds the store's transaction.
    #[error(
        "`{0}` was published with `publish` in a handler that holds the store's transaction: use `publish_in(tx, event)` with that transaction, so that the event commits with the handler's effect"
    )]
    PublishInTransaction(&'static str),
    /// A background task of the app panicked.
    #[error("a task of the `{context}` app panicked: {message}")]
    TaskPanicked {
        /// The app's context.
        context: String,
        /// What the panic said.
        message: String,
    },
}

/// The builder of an app: [`Tidings::builder`].
pub struct TidingsBuilder {
    context: String,
    store: Option<Arc<dyn Store>>,
    transport: Option<Arc<dyn Transport>>,
    deps: Deps,
    retry: RetryPolicy,
    retention: Retention,
    poll_interval: Duration,
    batch_size: usize,
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
    pub fn transport(mut self, transport: impl Transport) -> Self {
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
        let inner = AppInner {
            context: self.context,
            store: self
                .store
                .unwrap_or_else(|| Arc::new(InMemoryStore::default())),
            transport: self
                .transport
                .unwrap_or_else(|| Arc::new(InMemoryTransport::default())),
            deps: self.deps,
            retry: self.retry,
            retention: self.retention,
            poll_interval: self.poll_interval,
            batch_size: self.batch_size,
            wiring,
            activity: Arc::new(Activity::default()),
            dispatch_wake: Notify::new(),
            relay_wake: Notify::new(),
            started: Mutex::new(false),
        };
        Ok(Tidings {
            inner: Arc::new(inner),
        })
    }
}

struct AppInner {
    context: String,
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    deps: Deps,
    retry: RetryPolicy,
    retention: Retention,
    poll_interval: Duration,
    batch_size: usize,
    wiring: Wiring,
    activity: Arc<Activity>,
    dispatch_wake: Notify,
    relay_wake: Notify,
    started: Mutex<bool>,
}

/// The app of one bounded context: publish its domain events with
/// [`domain_events`](Self::domain_events), run its handlers with [`start`](Self::start).
///
/// ```standalone_crate
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
/// # async fn main() -> Result<(), tidings::Error> {
/// let app = Tidings::builder("sales").build()?;
/// let running = app.start().await?;
/// app.domain_events().publish(OrderConfirmed { order_id: 7 }).await?;
/// running.settle().await;
/// running.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Tidings {
    inner: Arc<AppInner>,
}

impl fmt::Debug for Tidings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tidings")
            .field("context", &self.inner.context)
            .finish_non_exhaustive()
    }
}

impl Tidings {
    /// The builder of the app of bounded context `context`, the `source` of its integration
    /// events.
    pub fn builder(context: impl Into<String>) -> TidingsBuilder {
        TidingsBuilder {
            context: context.into(),
            store: None,
            transport: None,
            deps: Deps::new(),
            retry: RetryPolicy::default(),
            retention: Retention::default(),
            poll_interval: Duration::from_secs(1),
            batch_size: 64,
        }
    }

    /// The bounded context.
    pub fn context(&self) -> &str {
        &self.inner.context
    }

    /// The provided dependency of type `T`, as handlers receive it.
    pub fn dependency<T: Send + Sync + 'static>(&self) -> Option<Dep<T>> {
        self.inner.deps.get::<T>()
    }

    /// The publisher of this context's domain events.
    pub fn domain_events(&self) -> DomainEvents {
        DomainEvents {
            app: Arc::clone(&self.inner),
            cause: None,
            in_transaction: false,
        }
    }

    /// The dead letters: deliveries that kept failing, and messages that could not be decoded.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, Error> {
        Ok(self.inner.store.dead_letters().await?)
    }

    /// Runs a dead letter's handler again, from its first attempt: for a handler whose cause of
    /// failure was fixed. Returns `false` if there is no such dead letter, or it has no handler
    /// (a message that could not be decoded); discard those.
    pub async fn replay_dead_letter(&self, id: DeadLetterId) -> Result<bool, Error> {
        let replayed = self.inner.store.replay_dead_letter(id).await?;
        if replayed {
            self.inner.dispatch_wake.notify_one();
        }
        Ok(replayed)
    }

    /// Deletes a dead letter; returns `false` if there is no such dead letter.
    pub async fn discard_dead_letter(&self, id: DeadLetterId) -> Result<bool, Error> {
        Ok(self.inner.store.discard_dead_letter(id).await?)
    }

    /// Starts the dispatcher, the relay, one consumer per consumed contract, the store's
    /// listener (if it has one) and the retention sweep.
    pub async fn start(&self) -> Result<Running, Error> {
        {
            let mut started = self
                .inner
                .started
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if *started {
                return Err(Error::AlreadyStarted(self.inner.context.clone()));
            }
            *started = true;
        }
        let (inbounds, listener) = match self.prepare().await {
            Ok(prepared) => prepared,
            Err(error) => {
                // Nothing runs yet: `start` may be called again.
                *self
                    .inner
                    .started
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = false;
                return Err(error);
            }
        };
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for (inbound, routes) in inbounds {
            let app = Arc::clone(&self.inner);
            tasks.push(tokio::spawn(consume(app, inbound, routes, stopped.clone())));
        }
        tasks.push(tokio::spawn(dispatch(
            Arc::clone(&self.inner),
            stopped.clone(),
        )));
        if let Some(listener) = listener {
            let app = Arc::clone(&self.inner);
            tasks.push(tokio::spawn(listen(app, listener, stopped.clone())));
        }
        tasks.push(tokio::spawn(sweep(
            Arc::clone(&self.inner),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(relay(Arc::clone(&self.inner), stopped)));
        Ok(Running {
            app: Arc::clone(&self.inner),
            stop,
            tasks,
        })
    }
}

/// The subscriptions of an app, each with the routes of its contract.
type Inbounds = Vec<(Box<dyn crate::transport::Inbound>, Vec<usize>)>;

impl Tidings {
    /// What `start` needs before it spawns anything: every subscription, and the store's
    /// listener.
    async fn prepare(&self) -> Result<(Inbounds, Option<Box<dyn StoreListener>>), Error> {
        let listener = self.inner.store.listen().await?;
        let mut inbounds = Vec::new();
        for (&(contract, version), routes) in &self.inner.wiring.consumed {
            let subscription = Subscription {
                contract: contract.to_owned(),
                version,
                context: self.inner.context.clone(),
            };
            let inbound = self.inner.transport.subscribe(subscription).await?;
            inbounds.push((inbound, routes.clone()));
        }
        Ok((inbounds, listener))
    }
}

/// A started app: [`shutdown`](Self::shutdown) stops it, [`settle`](Self::settle) waits for it.
pub struct Running {
    app: Arc<AppInner>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("context", &self.app.context)
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
                context: self.app.context.clone(),
                message,
            }),
        }
    }

    /// Resolves once the app is idle: nothing in flight, every delivery in its store completed
    /// or dead-lettered, every integration row published, and (on a transport that can tell)
    /// every message it sent received. For tests, with no sleeps: it asks the store how much
    /// work waits each time the app's work in flight drops to none, and every poll interval
    /// while the waiting work is not this process's to do.
    pub async fn settle(&self) {
        Running::settle_all(&[self]).await;
    }

    /// Resolves once every app in `apps` is idle at the same moment: for apps that talk to each
    /// other, such as two contexts on one [`InMemoryTransport`].
    pub async fn settle_all(apps: &[&Running]) {
        let transports: Vec<Arc<Activity>> = apps
            .iter()
            .filter_map(|running| running.app.transport.activity())
            .collect();
        let mut all: Vec<&Activity> = apps.iter().map(|running| &*running.app.activity).collect();
        all.extend(transports.iter().map(|a| &**a));
        let stores_empty = || async {
            for running in apps {
                match running.app.store.count_pending().await {
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
            .map(|running| running.app.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(1));
        Activity::settle(&all, recheck, stores_empty).await;
    }
}

/// What a publication carries from the event being handled, if any.
#[derive(Clone)]
struct Cause {
    correlation_id: Uuid,
    causation_id: Uuid,
    traceparent: Option<String>,
}

/// The publisher of one bounded context's domain events. Cheap to clone.
///
/// Use cases publish domain events only: [`publish`](Self::publish) does not accept an
/// integration event (those are published as the reaction to domain events). Taken as a
/// `#[handles]` parameter, it publishes events caused by the handled event, with its correlation
/// id.
#[derive(Clone)]
pub struct DomainEvents {
    app: Arc<AppInner>,
    cause: Option<Cause>,
    /// Whether it is the parameter of a handler that holds the store's transaction.
    in_transaction: bool,
}

impl fmt::Debug for DomainEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainEvents")
            .field("context", &self.app.context)
            .finish_non_exhaustive()
    }
}

impl DomainEvents {
    /// This publisher, for events caused by the event described by `meta`.
    pub(crate) fn caused_by(&self, meta: &EventMeta) -> DomainEvents {
        DomainEvents {
            app: Arc::clone(&self.app),
            cause: Some(Cause {
                correlation_id: meta.correlation_id,
                causation_id: meta.id,
                traceparent: meta.traceparent.clone(),
            }),
            in_transaction: self.in_transaction,
        }
    }

    /// Records `event` and wakes the dispatcher, which runs each of its handlers; returns the
    /// event's envelope.
    ///
    /// Returns a [`Publishing`] future rather than being an `async fn`, so that passing anything
    /// but a domain event is one compile error, not three.
    ///
    /// In a handler that takes the store's transaction, use [`publish_in`](Self::publish_in)
    /// with that transaction: `publish` fails there, as it would wait for the transaction's own
    /// connection and commit apart from it.
    pub fn publish<E: DomainEvent>(&self, event: E) -> Publishing<'_> {
        let (meta, span, recorded) = self.prepare(event);
        let app = &self.app;
        let in_transaction = self.in_transaction;
        let recording = async move {
            if in_transaction {
                return Err(Error::PublishInTransaction(E::NAME));
            }
            match recorded {
                None => tracing::debug!("no handler in this context"),
                Some(new_event) => app.record(vec![new_event?]).await?,
            }
            Ok(meta)
        };
        Publishing(Box::pin(recording.instrument(span)))
    }

    /// Records `event` in `transaction`, the caller's own database transaction, with the
    /// aggregate change it describes: if the transaction commits, each of the event's handlers
    /// runs; if it rolls back, nothing happens. Returns the event's envelope.
    ///
    /// The transaction is on the app's store's database: a `sqlx::Transaction<'_, Sqlite>` on
    /// the [`SqliteStore`](crate::SqliteStore)'s file, or a `sqlx::Transaction<'_, Postgres>` on
    /// the [`PostgresStore`](crate::PostgresStore)'s database. The dispatcher starts on the
    /// commit: in this process at once, in others through the store's wake-up (`LISTEN/NOTIFY`
    /// on PostgreSQL) or the poll interval.
    ///
    /// ```standalone_crate
    /// use tidings::prelude::*;
    ///
    /// #[domain_event]
    /// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// pub struct ProductPutOnSale { pub product_id: String, pub price_cents: i64 }
    ///
    /// #[handles]
    /// fn announce(event: &ProductPutOnSale) {}
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("tidings-publish-in-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let store = tidings::SqliteStore::open(dir.join("catalog.db")).await?;
    /// let pool = store.pool().clone();
    /// let app = Tidings::builder("catalog").store(store).build()?;
    /// let running = app.start().await?;
    /// # sqlx::query("CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, price_cents INTEGER)").execute(&pool).await?;
    ///
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO products (id, price_cents) VALUES (?, ?)")
    ///     .bind("p-1")
    ///     .bind(1_999)
    ///     .execute(&mut *tx)
    ///     .await?;
    /// app.domain_events()
    ///     .publish_in(&mut tx, ProductPutOnSale { product_id: "p-1".into(), price_cents: 1_999 })
    ///     .await?;
    /// tx.commit().await?; // now `announce` runs
    ///
    /// running.settle().await;
    /// running.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn publish_in<'t, E, DB>(
        &'t self,
        transaction: &'t mut sqlx::Transaction<'_, DB>,
        event: E,
    ) -> Publishing<'t>
    where
        E: DomainEvent,
        DB: sqlx::Database,
        DB::Connection: Any,
    {
        let (meta, span, recorded) = self.prepare(event);
        let app = &self.app;
        let connection: &'t mut DB::Connection = transaction;
        let recording = async move {
            match recorded {
                None => tracing::debug!("no handler in this context"),
                Some(new_event) => {
                    app.store.record_in(connection, vec![new_event?]).await?;
                    // On SQLite the dispatcher's claim waits for the commit; on PostgreSQL the
                    // commit's notification wakes it again.
                    app.dispatch_wake.notify_one();
                }
            }
            Ok(meta)
        };
        Publishing(Box::pin(recording.instrument(span)))
    }

    /// The envelope, the span and the record of a publication of `event`: `None` when no
    /// handler of this context handles it.
    fn prepare<E: DomainEvent>(
        &self,
        event: E,
    ) -> (EventMeta, tracing::Span, Option<Result<NewEvent, Error>>) {
        let app = &self.app;
        let mut meta = EventMeta::new(app.context.clone());
        match &self.cause {
            Some(cause) => {
                meta.correlation_id = cause.correlation_id;
                meta.causation_id = Some(cause.causation_id);
                meta.traceparent = cause.traceparent.clone();
            }
            None => meta.traceparent = Some(new_traceparent()),
        }
        let span = info_span!(
            "tidings.publish",
            event = E::NAME,
            event_id = %meta.id,
            correlation_id = %meta.correlation_id,
            context = %app.context,
        );
        let handlers: Vec<String> = app
            .wiring
            .routes_of(TypeId::of::<E>())
            .map(|route| route.name.clone())
            .collect();
        if handlers.is_empty() {
            return (meta, span, None);
        }
        let payload = serde_json::to_value(&event).map_err(|source| Error::Encode {
            event: E::NAME,
            source,
        });
        let recorded = payload.map(|payload| NewEvent {
            event: StoredEvent {
                meta: meta.clone(),
                kind: EventKind::Domain,
                name: E::NAME.to_owned(),
                version: 1,
                payload: Arc::new(payload),
                typed: Some(Arc::new(event)),
            },
            handlers,
        });
        (meta, span, Some(recorded))
    }
}

/// The future of [`DomainEvents::publish`]: resolves to the event's envelope once the event is
/// recorded.
#[must_use = "the event is recorded only when the future is awaited"]
pub struct Publishing<'a>(Pin<Box<dyn Future<Output = Result<EventMeta, Error>> + Send + 'a>>);

impl Future for Publishing<'_> {
    type Output = Result<EventMeta, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for Publishing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Publishing")
    }
}

/// A W3C `traceparent` for a trace that starts here.
fn new_traceparent() -> String {
    format!(
        "00-{:032x}-{:016x}-01",
        Uuid::now_v7().as_u128(),
        fastrand::u64(1..)
    )
}

impl AppInner {
    /// Records events with their deliveries, and wakes the dispatcher.
    async fn record(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        self.store.record(events).await?;
        self.dispatch_wake.notify_one();
        Ok(())
    }

    /// How long to wait for work that nobody announced: until the next scheduled item, at most
    /// the poll interval. An item that was already due when the last claim (at `claimed_at`)
    /// found nothing is held back (by another instance's claim, or behind the head of its key):
    /// it is waited for by polling, not by spinning.
    fn wait_for(
        &self,
        next_due: Result<Option<chrono::DateTime<Utc>>, StoreError>,
        claimed_at: chrono::DateTime<Utc>,
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

    /// The typed event of a delivery: as recorded in this process, or decoded from its JSON.
    fn typed(&self, event: &StoredEvent) -> Result<Arc<dyn Any + Send + Sync>, String> {
        if let Some(typed) = &event.typed {
            return Ok(Arc::clone(typed));
        }
        let decoder = match event.kind {
            EventKind::Domain => self
                .wiring
                .domain_event(&event.name)
                .and_then(|e| e.decoder()),
            EventKind::Integration => self
                .wiring
                .contract(&event.name, event.version)
                .and_then(|c| c.decoder()),
        };
        let decoder = decoder
            .ok_or_else(|| format!("no {} named `{}` in this program", event.kind, event.name))?;
        decoder
            .decode(&event.payload)
            .map_err(|error| format!("`{}` could not be decoded: {error}", event.name))
    }

    /// Runs one handler's claimed deliveries one after the other, in order, extending the claim
    /// on those still waiting so that it does not expire while the earlier ones run.
    async fn run_group(self: &Arc<Self>, group: Vec<Delivery>) {
        let claims: Vec<(crate::store::DeliveryId, u32)> =
            group.iter().map(|d| (d.id, d.attempt)).collect();
        let mut extended = tokio::time::Instant::now();
        for (i, delivery) in group.into_iter().enumerate() {
            if let Some(lease) = self.store.lease()
                && extended.elapsed() >= lease / 3
            {
                if let Err(error) = self.store.extend_claims(claims[i..].to_vec()).await {
                    tracing::warn!(%error, "could not extend the claim on deliveries");
                }
                extended = tokio::time::Instant::now();
            }
            self.deliver(delivery).await;
        }
    }

    /// Runs one delivery and records how it went. The delivery is in flight until then.
    async fn deliver(self: &Arc<Self>, delivery: Delivery) {
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
        async {
            let (slot, outcome) = match self.begin(&handler, id, attempt).await {
                Ok(Some(slot)) => {
                    let outcome = self.run(&event, &handler, attempt, slot.as_ref()).await;
                    (slot, outcome)
                }
                Ok(None) => {
                    tracing::info!("the delivery's lease passed to another process; skipped");
                    return;
                }
                Err(failure) => (None, Err(failure)),
            };
            let stored = match outcome {
                Ok(produced) => {
                    let count = produced.len();
                    let stored = match slot.map(TransactionSlot::into_inner) {
                        None => self.store.complete_delivery(id, attempt, produced).await,
                        Some(Some(transaction)) => {
                            self.store.complete_in(transaction, id, produced).await
                        }
                        // The handler's entry always gives the transaction back when it
                        // returns: without it, its effect is gone, so the delivery stays due.
                        Some(None) => Err(StoreError::new(
                            "the handler did not give its transaction back",
                            None,
                        )),
                    };
                    if stored.is_ok() && count > 0 {
                        self.relay_wake.notify_one();
                    }
                    stored
                }
                Err(failure) => {
                    // The handler's transaction rolls back before the failure is recorded.
                    drop(slot);
                    if failure.retryable && !self.retry.gives_up_after(attempt) {
                        let delay = self.retry.delay(attempt);
                        tracing::warn!(error = %failure.message, ?delay, "handler failed; will retry");
                        let at = Utc::now() + delay;
                        self.store.retry_delivery(id, attempt, failure.message, at).await
                    } else {
                        tracing::error!(error = %failure.message, "handler failed; dead-lettered");
                        self.store.dead_letter_delivery(id, attempt, failure.message).await
                    }
                }
            };
            if let Err(error) = stored {
                tracing::error!(%error, "could not record a delivery's outcome");
            }
        }
        .instrument(span)
        .await;
        self.activity.finish(1);
    }

    /// The store's transaction for a handler that takes one, holding the delivery: `Ok(None)`
    /// if the delivery is no longer this claim's, `Ok(Some(None))` for a handler that takes
    /// none.
    async fn begin(
        &self,
        handler: &str,
        id: crate::store::DeliveryId,
        attempt: u32,
    ) -> Result<Option<Option<TransactionSlot>>, Failure> {
        let takes_transaction = self.wiring.route(handler).is_some_and(
            |route| matches!(route.target, Target::Handler(info) if info.transaction().is_some()),
        );
        if !takes_transaction {
            return Ok(Some(None));
        }
        match self.store.begin(id, attempt).await {
            Ok(Some(transaction)) => Ok(Some(Some(TransactionSlot::new(transaction)))),
            Ok(None) => Ok(None),
            Err(error) => Err(Failure {
                retryable: true,
                message: format!("could not begin the handler's transaction: {error}"),
            }),
        }
    }

    /// Runs the handler of one delivery, in the store's transaction `slot` if it takes it;
    /// returns the integration rows it produced.
    async fn run(
        self: &Arc<Self>,
        event: &StoredEvent,
        handler: &str,
        attempt: u32,
        slot: Option<&TransactionSlot>,
    ) -> Result<Vec<NewIntegrationRow>, Failure> {
        let route = self.wiring.route(handler).ok_or_else(|| {
            Failure::fatal(format!(
                "no handler named `{handler}` in the `{}` app",
                self.context
            ))
        })?;
        let typed = self.typed(event).map_err(Failure::fatal)?;
        let publisher = DomainEvents {
            app: Arc::clone(self),
            cause: None,
            in_transaction: slot.is_some(),
        };
        let span_name = match route.target {
            Target::Handler(h) if h.produces().is_none() => "handler",
            _ => "translation",
        };
        let span = if span_name == "handler" {
            info_span!("tidings.handler", handler, event = %event.name, event_id = %event.meta.id, correlation_id = %event.meta.correlation_id, attempt)
        } else {
            info_span!("tidings.translation", handler, event = %event.name, event_id = %event.meta.id, correlation_id = %event.meta.correlation_id, attempt)
        };
        let emitted = async {
            match route.target {
                Target::Handler(info) => {
                    let mut ctx =
                        HandlerContext::new(&self.deps, &event.meta).with_publisher(&publisher);
                    if let Some(slot) = slot {
                        ctx = ctx.with_transaction(slot);
                    }
                    // A panicking handler fails its delivery (`call` catches the panic).
                    info.call(&*typed, ctx).await
                }
                Target::From {
                    translation,
                    source,
                } => translation.translate(&*typed).map(|e| vec![e]).ok_or(
                    HandlerError::WrongEvent {
                        handler: "From translation",
                        expected: source,
                    },
                ),
            }
        }
        .instrument(span)
        .await
        .map_err(|error| Failure {
            retryable: error.is_retryable(),
            message: error.to_string(),
        })?;
        emitted
            .into_iter()
            .map(|produced| {
                let payload = produced.to_json().map_err(|error| {
                    Failure::fatal(format!(
                        "`{}` could not be encoded as JSON: {error}",
                        produced.contract()
                    ))
                })?;
                let meta = event.meta.caused(self.context.clone());
                Ok(NewIntegrationRow {
                    key: produced.key(),
                    event: StoredEvent {
                        meta,
                        kind: EventKind::Integration,
                        name: produced.contract().to_owned(),
                        version: produced.version(),
                        payload: Arc::new(payload),
                        typed: None,
                    },
                })
            })
            .collect()
    }

    /// Publishes one integration row, and records the outcome.
    async fn publish_row(&self, row: IntegrationRow) {
        let IntegrationRow {
            id,
            event,
            key,
            attempt,
        } = row;
        let span = info_span!(
            "tidings.relay",
            contract = %event.name,
            event_id = %event.meta.id,
            correlation_id = %event.meta.correlation_id,
            attempt,
        );
        let message = Message {
            id: event.meta.id,
            source: event.meta.source.clone(),
            contract: event.name.clone(),
            version: event.version,
            key: key.clone(),
            time: event.meta.occurred_at,
            correlation_id: event.meta.correlation_id,
            causation_id: event.meta.causation_id,
            traceparent: event.meta.traceparent.clone(),
            data: (*event.payload).clone(),
        };
        async {
            let outcome = match self.transport.publish(message).await {
                Ok(()) => {
                    let archive = self.retention.archive_window().is_some();
                    self.store.row_published(id, archive).await
                }
                Err(error) => {
                    let delay = self.retry.delay(attempt);
                    if self.retry.gives_up_after(attempt) {
                        // Order per key forbids skipping the head: the key is parked, retried at
                        // the policy's longest delays, while the other keys flow.
                        tracing::error!(%error, attempt, ?delay, key = ?key, "publication keeps failing; its key is parked");
                    } else {
                        tracing::warn!(%error, attempt, ?delay, "publication failed; will retry");
                    }
                    self.store
                        .retry_row(id, error.to_string(), Utc::now() + delay)
                        .await
                }
            };
            if let Err(error) = outcome {
                tracing::error!(%error, "could not record a publication's outcome");
            }
        }
        .instrument(span)
        .await;
        self.activity.finish(1);
    }

    /// Records one received message for this context's inbound handlers, then acknowledges it.
    async fn receive(&self, received: Received, routes: &[usize]) {
        let message = &received.message;
        let span = info_span!(
            "tidings.consume",
            contract = %message.contract,
            event_id = %message.id,
            correlation_id = %message.correlation_id,
            context = %self.context,
        );
        async {
            let recorded = self.record_received(&received.message, routes).await;
            match recorded {
                Ok(()) => {
                    if let Err(error) = received.ack().await {
                        tracing::warn!(%error, "could not acknowledge a message; it will come again");
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "could not record a message; it will come again");
                }
            }
        }
        .instrument(span)
        .await;
    }

    async fn record_received(&self, message: &Message, routes: &[usize]) -> Result<(), StoreError> {
        let meta = EventMeta {
            id: message.id,
            occurred_at: message.time,
            correlation_id: message.correlation_id,
            causation_id: message.causation_id,
            traceparent: message.traceparent.clone(),
            source: message.source.clone(),
        };
        let decoded = self
            .wiring
            .contract(&message.contract, message.version)
            .and_then(|c| c.decoder())
            .ok_or_else(|| {
                format!(
                    "no contract `{}` version {} in this program",
                    message.contract, message.version
                )
            })
            .and_then(|decoder| {
                decoder.decode(&message.data).map_err(|error| {
                    format!("`{}` could not be decoded: {error}", message.contract)
                })
            });
        let typed = match decoded {
            Ok(typed) => typed,
            Err(error) => {
                tracing::error!(%error, "undecodable message; dead-lettered");
                let event = StoredEvent {
                    meta,
                    kind: EventKind::Integration,
                    name: message.contract.clone(),
                    version: message.version,
                    payload: Arc::new(message.data.clone()),
                    typed: None,
                };
                return self.store.dead_letter_message(event, error).await;
            }
        };
        let handlers = routes
            .iter()
            .map(|&i| self.wiring.route_at(i).name.clone())
            .collect();
        let event = StoredEvent {
            meta,
            kind: EventKind::Integration,
            name: message.contract.clone(),
            version: message.version,
            payload: Arc::new(message.data.clone()),
            typed: Some(typed),
        };
        self.record(vec![NewEvent { event, handlers }]).await
    }
}

/// Why a delivery failed, and whether to try again.
struct Failure {
    retryable: bool,
    message: String,
}

impl Failure {
    fn fatal(message: String) -> Self {
        Failure {
            retryable: false,
            message,
        }
    }
}

/// The dispatcher: runs due deliveries until told to stop.
async fn dispatch(app: Arc<AppInner>, stop: watch::Receiver<bool>) {
    let handlers: Vec<String> = app.wiring.route_names().map(str::to_owned).collect();
    let claim = |now| app.store.claim_deliveries(now, app.batch_size, &handlers);
    let run = |batch: Vec<Delivery>| async {
        // Handlers run concurrently; each one's deliveries run one at a time, in the order
        // the events were recorded, so a handler sees the events in that order (a delivery
        // that failed and waits for its retry is overtaken by later ones).
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
        let runs = by_handler.into_iter().map(|group| app.run_group(group));
        futures_util::future::join_all(runs).await;
    };
    let next_due = || app.store.next_delivery_due();
    work(
        &app,
        &app.dispatch_wake,
        stop,
        claim,
        run,
        next_due,
        "deliveries",
    )
    .await;
}

/// The relay: publishes due integration rows, in order per key, until told to stop.
async fn relay(app: Arc<AppInner>, stop: watch::Receiver<bool>) {
    let claim = |now| app.store.claim_rows(now, app.batch_size);
    let run = |batch: Vec<IntegrationRow>| async {
        futures_util::future::join_all(batch.into_iter().map(|row| app.publish_row(row))).await;
    };
    let next_due = || app.store.next_row_due();
    work(
        &app,
        &app.relay_wake,
        stop,
        claim,
        run,
        next_due,
        "integration rows",
    )
    .await;
}

/// The loop of the dispatcher and the relay: claims batches and runs them until none is due,
/// then sleeps until woken, until the next item is due, or for the poll interval.
async fn work<'a, T, C, R, N, Fut>(
    app: &'a AppInner,
    wake: &'a Notify,
    mut stop: watch::Receiver<bool>,
    claim: C,
    run: R,
    next_due: N,
    what: &str,
) where
    C: Fn(chrono::DateTime<Utc>) -> crate::store::BoxFuture<'a, Result<Vec<T>, StoreError>>,
    R: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = ()>,
    N: Fn() -> crate::store::BoxFuture<'a, Result<Option<chrono::DateTime<Utc>>, StoreError>>,
{
    loop {
        let mut claimed_at;
        loop {
            claimed_at = Utc::now();
            let batch = match claim(claimed_at).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(%error, "could not claim {what}");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            app.activity.start(batch.len());
            run(batch).await;
        }
        if *stop.borrow() {
            return;
        }
        let wait = app.wait_for(next_due().await, claimed_at);
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// A consumer: records the messages of one subscription until told to stop.
async fn consume(
    app: Arc<AppInner>,
    mut inbound: Box<dyn crate::transport::Inbound>,
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
                    failures = 0;
                    app.receive(received, &routes).await;
                }
                Some(Err(error)) => {
                    failures += 1;
                    let delay = app.retry.delay(failures);
                    tracing::warn!(%error, ?delay, "could not receive a message");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                    }
                }
                None => return,
            },
            _ = stop.changed() => {}
        }
    }
}

/// The store's listener: wakes the dispatcher and the relay for work other processes commit.
async fn listen(
    app: Arc<AppInner>,
    mut listener: Box<dyn StoreListener>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0;
    loop {
        tokio::select! {
            heard = listener.next() => match heard {
                Ok(wake) => {
                    failures = 0;
                    if matches!(wake, Wake::Deliveries | Wake::All) {
                        app.dispatch_wake.notify_one();
                    }
                    if matches!(wake, Wake::Rows | Wake::All) {
                        app.relay_wake.notify_one();
                    }
                }
                Err(error) => {
                    // Polling covers the gap; whatever was missed is found then.
                    failures += 1;
                    let delay = app.retry.delay(failures);
                    tracing::warn!(%error, ?delay, "the store's listener failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// The retention sweep: deletes expired inbox entries and archived rows, in bounded batches.
async fn sweep(app: Arc<AppInner>, mut stop: watch::Receiver<bool>) {
    let retention = app.retention;
    loop {
        tokio::select! {
            () = tokio::time::sleep(retention.sweep_interval()) => {}
            _ = stop.changed() => return,
        }
        let now = Utc::now();
        let before = |window: Duration| {
            chrono::Duration::from_std(window)
                .ok()
                .and_then(|window| now.checked_sub_signed(window))
                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
        };
        let inbox_before = before(retention.inbox_window());
        let archive_before = before(retention.archive_window().unwrap_or_default());
        loop {
            match app
                .store
                .prune(inbox_before, archive_before, retention.batch_size())
                .await
            {
                Ok(deleted) if deleted >= retention.batch_size() && !*stop.borrow() => {}
                Ok(deleted) => {
                    tracing::debug!(deleted, "retention sweep done");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "the retention sweep failed");
                    break;
                }
            }
        }
    }
}
