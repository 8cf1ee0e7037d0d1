//! The store seam, for people who write a store: where events, per-handler deliveries, the
//! integration outbox, the inbox and dead letters are kept, and the records that cross it.
//!
//! An application names a store ([`InMemoryStore`], [`SqliteStore`](crate::SqliteStore),
//! [`PostgresStore`](crate::PostgresStore)) and never calls it. A store of your own implements
//! [`Store`]; the conformance suite in `tidings::testing` (feature `testing`) checks it.

use std::any::{Any, TypeId};
use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use crate::call::TypedEvent;
use crate::event::EventKind;
use crate::meta::EventMeta;

pub use crate::envelope::Payload;
pub use crate::error::{ErrorKind, StoreError};
pub use crate::future::BoxFuture;
pub use memory::{InMemoryStore, Outcome};
pub use waiting::{ContractWaiting, HandlerWaiting, WaitCounts, Waiting};

mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod waiting;

/// An opaque identity that a store gives to what it keeps.
macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// The identity a store knows as `raw`.
            pub const fn new(raw: u64) -> Self {
                $name(raw)
            }

            /// The store's own number for it.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

/// An event as recorded: its envelope, its name and its JSON form, plus the typed value when it
/// was recorded in this process (so the dispatcher need not decode it).
#[derive(Clone)]
pub struct StoredEvent {
    /// The envelope.
    pub meta: EventMeta,
    /// Domain or integration event.
    pub kind: EventKind,
    /// The type's name for a domain event; the contract's name for an integration event.
    pub name: String,
    /// The contract's version (1 for a domain event).
    pub version: u32,
    /// The event's data, as JSON.
    pub payload: Payload,
    /// The typed event, if this process recorded it.
    pub typed: Option<TypedEvent>,
}

impl fmt::Debug for StoredEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEvent")
            .field("id", &self.meta.id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An event to record, with the handlers that must each handle it once.
#[derive(Debug)]
pub struct NewEvent {
    /// The event.
    pub event: StoredEvent,
    /// The handlers, by route name. For an integration event received from a broker, a handler
    /// that already has a delivery of this event id is skipped: that is the inbox.
    pub handlers: Vec<String>,
}

id!(
    /// The identity of one delivery: one event for one handler. Ids of one store grow in the
    /// order the deliveries were recorded.
    DeliveryId
);

/// One event for one handler, claimed for a run.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its identity.
    pub id: DeliveryId,
    /// The event.
    pub event: StoredEvent,
    /// The handler's route name.
    pub handler: String,
    /// This run's number, from 1.
    pub attempt: u32,
}

/// A delivery whose handler succeeded, to complete with what it produced.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The delivery.
    pub id: DeliveryId,
    /// The claim's attempt: the delivery completes only if it is still claimed at it.
    pub attempt: u32,
    /// The integration events its handler produced, for the outbox.
    pub produced: Vec<NewIntegrationRow>,
}

/// An integration event to put in the outbox, for the relay.
#[derive(Debug, Clone)]
pub struct NewIntegrationRow {
    /// The event, `kind` Integration and `name` the contract.
    pub event: StoredEvent,
    /// The ordering key.
    pub key: Option<String>,
}

id!(
    /// The identity of one integration row. Ids of one store grow in the order the rows were
    /// recorded.
    RowId
);

/// An integration row claimed by the relay.
#[derive(Debug, Clone)]
pub struct IntegrationRow {
    /// Its identity.
    pub id: RowId,
    /// The event.
    pub event: StoredEvent,
    /// The ordering key.
    pub key: Option<String>,
    /// This publication attempt's number, from 1.
    pub attempt: u32,
}

id!(
    /// The identity of one dead letter.
    DeadLetterId
);

/// What ended up in the dead letters: a delivery that kept failing, or a message that could not
/// be decoded.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its identity, to replay or discard it.
    pub id: DeadLetterId,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's name (type or contract).
    pub event_name: String,
    /// The handler's route name, or `None` for a message that reached no handler.
    pub handler: Option<String>,
    /// How many runs were made.
    pub attempts: u32,
    /// The last error, with its chain of causes (`error: cause: cause`).
    pub error: String,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
}

/// Where tidings keeps its state. Every method is one atomic step: an implementation on a
/// database runs each in one transaction.
pub trait Store: Send + Sync + 'static {
    /// Records events and one delivery per listed handler. For an integration event, a handler
    /// that already has a delivery of the same event id gets none (the inbox). Returns how many
    /// deliveries were created.
    fn record(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// Claims up to `limit` deliveries of the handlers named in `handlers`, due at `now`, in
    /// the order they were recorded; a claimed delivery is not returned again until it is
    /// completed, rescheduled or dead-lettered, or its claim expires. A handler whose
    /// deliveries another claim holds gets none: each handler's deliveries run in one process
    /// at a time, in order.
    fn claim_deliveries<'a>(
        &'a self,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>>;

    /// Completes deliveries and records the integration events each produced, all in one step:
    /// the dispatcher's group commit, one transaction for a batch of deliveries. Each completes
    /// only if it is still claimed at its attempt; one that is not (another process took it
    /// over, or it is unknown or already completed) changes nothing, and the others complete.
    fn complete_deliveries(
        &self,
        completions: Vec<Completion>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Completes deliveries as [`complete_deliveries`](Self::complete_deliveries) does, then
    /// claims the next as [`claim_deliveries`](Self::claim_deliveries) does: the dispatcher's
    /// step between two batches. A store on a database does both in one transaction, so that a
    /// batch costs one commit, and then an error means that neither happened. Default: the two
    /// calls in turn (an error may then come from the claim, after the completion).
    fn complete_and_claim<'a>(
        &'a self,
        completions: Vec<Completion>,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        Box::pin(async move {
            self.complete_deliveries(completions).await?;
            self.claim_deliveries(now, limit, handlers).await
        })
    }

    /// Reschedules a failed delivery for `at`, keeping its error, if it is still claimed at
    /// `attempt`.
    fn retry_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        error: String,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Moves a failed delivery to the dead letters, if it is still claimed at `attempt`.
    fn dead_letter_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        error: String,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// How long a claim holds before another process may take the work over, for a store whose
    /// claims expire. Default: `None`, claims that hold until the process lets go.
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }

    /// Extends the claims on deliveries, each `(id, attempt)`, by a lease from now: for a
    /// handler whose claimed deliveries take long to run one after the other. Only a claim
    /// still held is extended: one that expired, or was let go when its delivery was
    /// rescheduled, is not brought back. Default: nothing to extend.
    fn extend_claims(
        &self,
        claims: Vec<(DeliveryId, u32)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = claims;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Records a message that reached no handler, such as one that could not be decoded, as a
    /// dead letter.
    fn dead_letter_message(
        &self,
        event: StoredEvent,
        error: String,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Turns a dead letter back into a delivery due now, with its attempts counted from zero.
    /// Returns `false`, changing nothing, if there is no such dead letter or it has no handler
    /// to run again (a message that could not be decoded).
    fn replay_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Deletes a dead letter; returns `false` if there is no such dead letter.
    fn discard_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// When the earliest delivery a claim could take is due, if any is waiting: deliveries of a
    /// handler another claim holds do not count.
    fn next_delivery_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>>;

    /// Claims up to `limit` integration rows due at `now`, at most one per key (the oldest
    /// unpublished one), so that each key is published in order.
    fn claim_rows(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<IntegrationRow>, StoreError>>;

    /// Marks a row published (the broker acknowledged it): it leaves the outbox, deleted or, with
    /// `archive`, moved to the archive.
    fn row_published(&self, id: RowId, archive: bool) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Marks rows published, as [`row_published`](Self::row_published) marks each: what the
    /// relay calls with the rows the broker acknowledged, gathered while other publications were
    /// in flight, so that marking costs one step (one statement) per batch instead of one per
    /// row. A row that is no longer in the outbox (another process published it after this
    /// one's claim expired) is marked by nobody twice: a store that cannot tell skips it, one
    /// that can (the in-memory store) marks the others and returns its error.
    ///
    /// Default: [`row_published`](Self::row_published) for each row in turn, each its own
    /// step; every row is tried, and the first error is returned. A store on a database should
    /// mark them all in one statement.
    fn rows_published(
        &self,
        ids: Vec<RowId>,
        archive: bool,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut first_error = None;
            for id in ids {
                if let Err(error) = self.row_published(id, archive).await {
                    first_error.get_or_insert(error);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    /// Reschedules a row that could not be published, if it is still claimed at `attempt`
    /// (otherwise, another relay took it over, and nothing changes); its key waits until `at`.
    fn retry_row(
        &self,
        id: RowId,
        attempt: u32,
        error: String,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// When the earliest row a claim could take is due, if any is waiting: only the head of each
    /// key counts.
    fn next_row_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>>;

    /// The dead letters, oldest first.
    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>>;

    /// How many deliveries and integration rows are waiting, claimed or not.
    fn count_pending(&self) -> BoxFuture<'_, Result<(usize, usize), StoreError>>;

    /// What waits, as [`count_pending`](Self::count_pending) counts it, told apart: the
    /// deliveries by handler and the integration rows by contract, each as due now, scheduled
    /// for later or claimed. For a report of what an app still waits for, such as
    /// [`Running::settle_for`](crate::Running::settle_for)'s; a store answers it in one read.
    ///
    /// Default: the totals of `count_pending`, of no known handler, contract or state
    /// ([`Waiting::from_totals`]).
    ///
    /// ```
    /// use tidings::InMemoryStore;
    /// use tidings::store::Store;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tidings::StoreError> {
    /// let store = InMemoryStore::new();
    /// let waiting = store.waiting().await?;
    /// for handler in &waiting.deliveries {
    ///     println!("{:?}: {}", handler.handler, handler.counts);
    /// }
    /// assert!(waiting.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn waiting(&self) -> BoxFuture<'_, Result<Waiting, StoreError>> {
        Box::pin(async move {
            let (deliveries, rows) = self.count_pending().await?;
            Ok(Waiting::from_totals(deliveries, rows))
        })
    }

    /// Deletes expired rows, at most `limit` of each table: inbox entries received before
    /// `inbox_before` and archived rows published before `archive_before`. Returns how many were
    /// deleted; a caller repeats while that is `limit` or more.
    fn prune(
        &self,
        inbox_before: DateTime<Utc>,
        archive_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// A stream of wake-ups for work recorded by other processes (PostgreSQL's `LISTEN`), if
    /// the store has one. Default: none; the app then polls.
    fn listen(&self) -> BoxFuture<'_, Result<Option<Box<dyn StoreListener>>, StoreError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Records events as [`record`](Self::record) does, on `connection`: a database connection
    /// inside the caller's transaction (`sqlx::SqliteConnection`, `sqlx::PgConnection`), so
    /// that the events commit or roll back with it. Default: an error, for a store with no
    /// database.
    fn record_in<'c>(
        &'c self,
        connection: &'c mut (dyn Any + Send),
        events: Vec<NewEvent>,
    ) -> BoxFuture<'c, Result<usize, StoreError>> {
        let _ = (connection, events);
        unsupported("record events in the caller's transaction")
    }

    /// The `TypeId` of the `sqlx::Database` whose transactions this store works in, if any:
    /// what a handler's `&mut Transaction<'_, DB>` parameter needs.
    fn transaction_database(&self) -> Option<TypeId> {
        None
    }

    /// Begins a transaction for a handler that takes one, holding delivery `id` at attempt
    /// `attempt`: returns the `sqlx::Transaction<'static, DB>`, or `None` if the delivery is no
    /// longer this claim's (its lease expired and another process claimed it).
    fn begin(
        &self,
        id: DeliveryId,
        attempt: u32,
    ) -> BoxFuture<'_, Result<Option<Box<dyn Any + Send>>, StoreError>> {
        let _ = (id, attempt);
        unsupported("begin a handler's transaction")
    }

    /// Completes delivery `id` and records the integration rows it produced in `transaction`
    /// (from [`begin`](Self::begin)), then commits: the handler's effect, the completion and the
    /// rows commit together.
    fn complete_in(
        &self,
        transaction: Box<dyn Any + Send>,
        id: DeliveryId,
        produced: Vec<NewIntegrationRow>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = (transaction, id, produced);
        unsupported("complete a delivery in a handler's transaction")
    }
}

/// What a [`StoreListener`] heard of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// New deliveries were committed.
    Deliveries,
    /// New integration rows were committed.
    Rows,
    /// Anything may have been committed (the listener reconnected and may have missed news).
    All,
}

/// Wake-ups from a store, for work that other processes record.
pub trait StoreListener: Send {
    /// Waits for the next wake-up.
    fn next(&mut self) -> BoxFuture<'_, Result<Wake, StoreError>>;
}

/// The error of a transactional method on a store that keeps no database.
fn unsupported<T: Send + 'static>(what: &str) -> BoxFuture<'static, Result<T, StoreError>> {
    let error = StoreError::new(
        ErrorKind::Invalid,
        format!(
            "this store keeps no database, so it cannot {what}: use a SQLite or PostgreSQL store"
        ),
        None,
    );
    Box::pin(std::future::ready(Err(error)))
}
