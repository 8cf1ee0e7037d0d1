//! The store seam: where events, per-handler deliveries, integration rows, the inbox and dead
//! letters are kept. [`InMemoryStore`] is the implementation for tests and the default when an
//! app names none.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::event::EventKind;
use crate::meta::EventMeta;

/// A boxed future, the return type of the seams' methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[error("store: {message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error described by `message`, caused by `source`.
    pub fn new(
        message: impl Into<String>,
        source: impl Into<Option<Box<dyn std::error::Error + Send + Sync>>>,
    ) -> Self {
        StoreError {
            message: message.into(),
            source: source.into(),
        }
    }
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
    /// The JSON form.
    pub payload: Arc<serde_json::Value>,
    /// The typed event, if this process recorded it.
    pub typed: Option<Arc<dyn Any + Send + Sync>>,
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

/// The identity of one delivery: one event for one handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub u64);

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

/// An integration event to put in the outbox, for the relay.
#[derive(Debug, Clone)]
pub struct NewIntegrationRow {
    /// The event, `kind` Integration and `name` the contract.
    pub event: StoredEvent,
    /// The ordering key.
    pub key: Option<String>,
}

/// The identity of one integration row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowId(pub u64);

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

/// The identity of one dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeadLetterId(pub u64);

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
    /// The last error.
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

    /// Completes a delivery and records the integration events it produced, in one step, if
    /// the delivery is still claimed at `attempt`; otherwise (another process took it over)
    /// nothing changes.
    fn complete_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        produced: Vec<NewIntegrationRow>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

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
    /// handler whose claimed deliveries take long to run one after the other. Default: nothing
    /// to extend.
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

    /// Reschedules a row that could not be published; its key waits until `at`.
    fn retry_row(
        &self,
        id: RowId,
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
        Box::pin(std::future::ready(Err(StoreError::new(
            "this store keeps no database: record events in a transaction with a SQLite or PostgreSQL store",
            None,
        ))))
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
        Box::pin(std::future::ready(Err(StoreError::new(
            "this store has no transactions",
            None,
        ))))
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
        Box::pin(std::future::ready(Err(StoreError::new(
            "this store has no transactions",
            None,
        ))))
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

/// How one delivery ended, as [`InMemoryStore::outcomes`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler completed, at this attempt.
    Completed {
        /// The handler's route name.
        handler: String,
        /// The event's id.
        event_id: Uuid,
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// The handler failed and will run again.
    Retrying {
        /// The handler's route name.
        handler: String,
        /// The event's id.
        event_id: Uuid,
        /// The attempt that failed.
        attempt: u32,
        /// Its error.
        error: String,
    },
    /// The handler failed for the last time.
    DeadLettered {
        /// The handler's route name.
        handler: String,
        /// The event's id.
        event_id: Uuid,
        /// The attempt that failed.
        attempt: u32,
        /// Its error.
        error: String,
    },
}

/// The in-memory store: for tests, and the default when an app names no store. Nothing survives
/// the process. Clones share the same state, so a test can keep one to inspect.
///
/// ```
/// use tidings::InMemoryStore;
///
/// let store = InMemoryStore::default();
/// let inspect = store.clone(); // pass `store` to the builder, keep `inspect`
/// assert!(inspect.outcomes().is_empty());
/// ```
#[derive(Clone, Default)]
pub struct InMemoryStore {
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Default)]
struct MemoryState {
    next_id: u64,
    deliveries: BTreeMap<DeliveryId, MemoryDelivery>,
    /// When each (handler, event id) was received.
    inbox: HashMap<(String, Uuid), DateTime<Utc>>,
    rows: BTreeMap<RowId, MemoryRow>,
    /// Published rows kept in the archive, with when they were published.
    archive: Vec<(DateTime<Utc>, StoredEvent)>,
    /// Rows by key, in order; rows with no key are in no queue.
    keys: BTreeMap<String, VecDeque<RowId>>,
    /// Dead letters with the events they hold.
    dead: Vec<(DeadLetter, StoredEvent)>,
    outcomes: Vec<Outcome>,
}

struct MemoryDelivery {
    event: StoredEvent,
    handler: String,
    attempts: u32,
    due: DateTime<Utc>,
    claimed: bool,
}

struct MemoryRow {
    event: StoredEvent,
    key: Option<String>,
    attempts: u32,
    due: DateTime<Utc>,
    claimed: bool,
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("InMemoryStore")
            .field("deliveries", &state.deliveries.len())
            .field("rows", &state.rows.len())
            .field("dead_letters", &state.dead.len())
            .finish()
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // A panic while holding the lock cannot leave the state half-changed: every method
        // changes it in one statement block, so the state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How every delivery went so far, in order.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.lock().outcomes.clone()
    }

    /// How many deliveries and integration rows are still waiting.
    pub fn pending(&self) -> (usize, usize) {
        let state = self.lock();
        (state.deliveries.len(), state.rows.len())
    }

    /// How many inbox entries and archived rows the store keeps: what retention bounds.
    pub fn retained(&self) -> (usize, usize) {
        let state = self.lock();
        (state.inbox.len(), state.archive.len())
    }

    fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, T> {
        Box::pin(std::future::ready(value))
    }
}

impl MemoryState {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Takes delivery `id` out, if it is still claimed at `attempt`.
    fn take_delivery(&mut self, id: DeliveryId, attempt: u32) -> Option<MemoryDelivery> {
        let held = self
            .deliveries
            .get(&id)
            .is_some_and(|d| d.claimed && d.attempts == attempt);
        held.then(|| self.deliveries.remove(&id)).flatten()
    }
}

impl Store for InMemoryStore {
    fn record(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<usize, StoreError>> {
        let mut state = self.lock();
        let now = Utc::now();
        let mut created = 0;
        for NewEvent { event, handlers } in events {
            for handler in handlers {
                if event.kind == EventKind::Integration
                    && state
                        .inbox
                        .insert((handler.clone(), event.meta.id), now)
                        .is_some()
                {
                    continue;
                }
                let id = DeliveryId(state.next());
                let delivery = MemoryDelivery {
                    event: event.clone(),
                    handler,
                    attempts: 0,
                    due: now,
                    claimed: false,
                };
                state.deliveries.insert(id, delivery);
                created += 1;
            }
        }
        Self::ready(Ok(created))
    }

    fn claim_deliveries<'a>(
        &'a self,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        let mut state = self.lock();
        let held: HashSet<String> = state
            .deliveries
            .values()
            .filter(|d| d.claimed)
            .map(|d| d.handler.clone())
            .collect();
        let claimed = state
            .deliveries
            .iter_mut()
            .filter(|(_, d)| {
                !d.claimed
                    && d.due <= now
                    && !held.contains(&d.handler)
                    && handlers.contains(&d.handler)
            })
            .take(limit)
            .map(|(id, d)| {
                d.claimed = true;
                d.attempts += 1;
                Delivery {
                    id: *id,
                    event: d.event.clone(),
                    handler: d.handler.clone(),
                    attempt: d.attempts,
                }
            })
            .collect();
        Self::ready(Ok(claimed))
    }

    fn complete_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        produced: Vec<NewIntegrationRow>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        if let Some(delivery) = state.take_delivery(id, attempt) {
            state.outcomes.push(Outcome::Completed {
                handler: delivery.handler,
                event_id: delivery.event.meta.id,
                attempt: delivery.attempts,
            });
            let now = Utc::now();
            for NewIntegrationRow { event, key } in produced {
                let id = RowId(state.next());
                if let Some(key) = &key {
                    state.keys.entry(key.clone()).or_default().push_back(id);
                }
                let row = MemoryRow {
                    event,
                    key,
                    attempts: 0,
                    due: now,
                    claimed: false,
                };
                state.rows.insert(id, row);
            }
        }
        Self::ready(Ok(()))
    }

    fn retry_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        error: String,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        let state = &mut *state;
        let held = state
            .deliveries
            .get_mut(&id)
            .filter(|d| d.claimed && d.attempts == attempt);
        if let Some(delivery) = held {
            delivery.claimed = false;
            delivery.due = at;
            state.outcomes.push(Outcome::Retrying {
                handler: delivery.handler.clone(),
                event_id: delivery.event.meta.id,
                attempt: delivery.attempts,
                error,
            });
        }
        Self::ready(Ok(()))
    }

    fn dead_letter_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        error: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        if let Some(delivery) = state.take_delivery(id, attempt) {
            state.outcomes.push(Outcome::DeadLettered {
                handler: delivery.handler.clone(),
                event_id: delivery.event.meta.id,
                attempt: delivery.attempts,
                error: error.clone(),
            });
            let letter = DeadLetter {
                id: DeadLetterId(state.next()),
                event_id: delivery.event.meta.id,
                event_name: delivery.event.name.clone(),
                handler: Some(delivery.handler),
                attempts: delivery.attempts,
                error,
                at: Utc::now(),
            };
            state.dead.push((letter, delivery.event));
        }
        Self::ready(Ok(()))
    }

    fn dead_letter_message(
        &self,
        event: StoredEvent,
        error: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        let letter = DeadLetter {
            id: DeadLetterId(state.next()),
            event_id: event.meta.id,
            event_name: event.name.clone(),
            handler: None,
            attempts: 0,
            error,
            at: Utc::now(),
        };
        state.dead.push((letter, event));
        Self::ready(Ok(()))
    }

    fn replay_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut state = self.lock();
        let position = state
            .dead
            .iter()
            .position(|(letter, _)| letter.id == id && letter.handler.is_some());
        let replayed = position.is_some_and(|position| {
            let (letter, event) = state.dead.remove(position);
            let delivery = MemoryDelivery {
                event,
                handler: letter.handler.unwrap_or_default(),
                attempts: 0,
                due: Utc::now(),
                claimed: false,
            };
            let id = DeliveryId(state.next());
            state.deliveries.insert(id, delivery);
            true
        });
        Self::ready(Ok(replayed))
    }

    fn discard_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut state = self.lock();
        let before = state.dead.len();
        state.dead.retain(|(letter, _)| letter.id != id);
        let discarded = state.dead.len() < before;
        Self::ready(Ok(discarded))
    }

    fn next_delivery_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        let state = self.lock();
        let due = state
            .deliveries
            .values()
            .filter(|d| {
                !d.claimed
                    && !state
                        .deliveries
                        .values()
                        .any(|c| c.claimed && c.handler == d.handler)
            })
            .map(|d| d.due)
            .min();
        Self::ready(Ok(due))
    }

    fn claim_rows(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<IntegrationRow>, StoreError>> {
        let mut state = self.lock();
        let state = &mut *state;
        let heads: HashSet<RowId> = state
            .keys
            .values()
            .filter_map(|q| q.front().copied())
            .collect();
        let claimed = state
            .rows
            .iter_mut()
            .filter(|(id, row)| {
                !row.claimed && row.due <= now && (row.key.is_none() || heads.contains(id))
            })
            .take(limit)
            .map(|(id, row)| {
                row.claimed = true;
                row.attempts += 1;
                IntegrationRow {
                    id: *id,
                    event: row.event.clone(),
                    key: row.key.clone(),
                    attempt: row.attempts,
                }
            })
            .collect();
        Self::ready(Ok(claimed))
    }

    fn row_published(&self, id: RowId, archive: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        let result = match state.rows.remove(&id) {
            Some(row) => {
                if archive {
                    state.archive.push((Utc::now(), row.event));
                }
                if let Some(key) = row.key {
                    let emptied = state.keys.get_mut(&key).is_some_and(|queue| {
                        queue.retain(|queued| *queued != id);
                        queue.is_empty()
                    });
                    if emptied {
                        state.keys.remove(&key);
                    }
                }
                Ok(())
            }
            None => Err(StoreError::new(
                format!("no integration row {}", id.0),
                None,
            )),
        };
        Self::ready(result)
    }

    fn retry_row(
        &self,
        id: RowId,
        _error: String,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        let result = match state.rows.get_mut(&id) {
            Some(row) => {
                row.claimed = false;
                row.due = at;
                Ok(())
            }
            None => Err(StoreError::new(
                format!("no integration row {}", id.0),
                None,
            )),
        };
        Self::ready(result)
    }

    fn next_row_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        let state = self.lock();
        let due = state
            .rows
            .iter()
            .filter(|(id, r)| {
                !r.claimed
                    && r.key
                        .as_ref()
                        .is_none_or(|key| state.keys.get(key).and_then(|q| q.front()) == Some(*id))
            })
            .map(|(_, r)| r.due)
            .min();
        Self::ready(Ok(due))
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        let letters = self
            .lock()
            .dead
            .iter()
            .map(|(letter, _)| letter.clone())
            .collect();
        Self::ready(Ok(letters))
    }

    fn count_pending(&self) -> BoxFuture<'_, Result<(usize, usize), StoreError>> {
        Self::ready(Ok(self.pending()))
    }

    fn prune(
        &self,
        inbox_before: DateTime<Utc>,
        archive_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize, StoreError>> {
        let mut state = self.lock();
        let expired: Vec<(String, Uuid)> = state
            .inbox
            .iter()
            .filter(|(_, received)| **received < inbox_before)
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        for key in &expired {
            state.inbox.remove(key);
        }
        let archived = state
            .archive
            .iter()
            .take(limit)
            .take_while(|(published, _)| *published < archive_before)
            .count();
        state.archive.drain(..archived);
        Self::ready(Ok(expired.len() + archived))
    }
}
