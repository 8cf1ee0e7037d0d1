//! The publisher of one context's domain events: [`DomainEvents`], with `publish` and
//! `publish_in`, and the causation it carries from the event a handler handles.

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tracing::{Instrument, info_span};
use uuid::Uuid;

use crate::envelope;
use crate::error::{Error, StoreError};
use crate::event::DomainEvent;
use crate::meta::EventMeta;
use crate::registry::registry;
use crate::store::{NewEvent, Store};
use crate::trace;

/// Where one context's domain events are recorded, and which handlers each one has.
pub(crate) struct Outbox {
    /// The bounded context, the source of the events.
    pub(crate) context: String,
    pub(crate) store: Arc<dyn Store>,
    /// The route names of each domain event type the context handles.
    pub(crate) routes: HashMap<TypeId, Vec<String>>,
    /// The domain event types declared in the context, handled or not.
    pub(crate) owned: HashSet<TypeId>,
    /// Wakes the dispatcher.
    pub(crate) dispatch_wake: Arc<Notify>,
}

impl Outbox {
    /// Records events with their deliveries, and wakes the dispatcher; returns how many
    /// deliveries were created.
    pub(crate) async fn record(&self, events: Vec<NewEvent>) -> Result<usize, StoreError> {
        let created = self.store.record(events).await?;
        self.dispatch_wake.notify_one();
        Ok(created)
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
    outbox: Arc<Outbox>,
    cause: Option<Cause>,
    /// Whether it is the parameter of a handler that holds the store's transaction.
    in_transaction: bool,
}

impl fmt::Debug for DomainEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainEvents")
            .field("context", &self.outbox.context)
            .finish_non_exhaustive()
    }
}

impl DomainEvents {
    /// The publisher of a use case of the context of `outbox`; `in_transaction` for the
    /// parameter of a handler that holds the store's transaction.
    pub(crate) fn new(outbox: Arc<Outbox>, in_transaction: bool) -> Self {
        DomainEvents {
            outbox,
            cause: None,
            in_transaction,
        }
    }

    /// This publisher, for events caused by the event described by `meta`.
    pub(crate) fn caused_by(&self, meta: &EventMeta) -> DomainEvents {
        DomainEvents {
            outbox: Arc::clone(&self.outbox),
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
        let outbox = &self.outbox;
        let in_transaction = self.in_transaction;
        let recording = async move {
            if in_transaction {
                return Err(Error::PublishInTransaction(E::NAME));
            }
            if let Some(new_event) = recorded? {
                outbox.record(vec![new_event]).await?;
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
    /// A transaction on another file or database is refused with an error that says so: each
    /// store carries an id of its own, which the insert itself checks, at no extra query.
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
        DB::Connection: std::any::Any,
    {
        let (meta, span, recorded) = self.prepare(event);
        let outbox = &self.outbox;
        let connection: &'t mut DB::Connection = transaction;
        let recording = async move {
            if let Some(new_event) = recorded? {
                outbox.store.record_in(connection, vec![new_event]).await?;
                // On SQLite the dispatcher's claim waits for the commit; on PostgreSQL the
                // commit's notification wakes it again.
                outbox.dispatch_wake.notify_one();
            }
            Ok(meta)
        };
        Publishing(Box::pin(recording.instrument(span)))
    }

    /// The envelope, the span and the record of a publication of `event`: `None` for an event
    /// of this context that no handler handles (nothing reacts to it, so nothing is recorded),
    /// an error for an event of another context.
    fn prepare<E: DomainEvent>(
        &self,
        event: E,
    ) -> (EventMeta, tracing::Span, Result<Option<NewEvent>, Error>) {
        let outbox = &self.outbox;
        let mut meta = EventMeta::new(outbox.context.clone());
        if let Some(cause) = &self.cause {
            meta.correlation_id = cause.correlation_id;
            meta.causation_id = Some(cause.causation_id);
        }
        // A child of the caller's span: the use case's, or the handler's.
        let span = info_span!(
            "tidings.publish",
            event = E::NAME,
            event_id = %meta.id,
            correlation_id = %meta.correlation_id,
            context = %outbox.context,
        );
        let inherited = self.cause.as_ref().and_then(|c| c.traceparent.as_deref());
        meta.traceparent = Some(trace::of(&span, inherited));
        let Some(handlers) = outbox.routes.get(&TypeId::of::<E>()) else {
            let refused = if outbox.owned.contains(&TypeId::of::<E>()) {
                tracing::debug!("no handler of this context handles it: nothing recorded");
                Ok(None)
            } else {
                Err(Error::NotThisContext {
                    event: E::NAME,
                    owner: owner_of::<E>(),
                    context: outbox.context.clone(),
                })
            };
            return (meta, span, refused);
        };
        let recorded = envelope::domain(meta.clone(), event)
            .map(|event| {
                Some(NewEvent {
                    event,
                    handlers: handlers.clone(),
                })
            })
            .map_err(|source| Error::Encode {
                event: E::NAME,
                source,
            });
        (meta, span, recorded)
    }
}

/// The context that declares domain event `E`, if the program declares contexts.
fn owner_of<E: DomainEvent>() -> Option<&'static str> {
    let registry = registry();
    let event = registry.domain_event::<E>()?;
    registry.context_of(event.origin().module_path())
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
