//! [`InMemoryStore`]: the store for tests, and the default when an app names none.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    BoxFuture, Completion, DeadLetter, DeadLetterId, Delivery, DeliveryId, ErrorKind,
    IntegrationRow, NewEvent, NewIntegrationRow, RowId, Store, StoreError, StoredEvent,
};
use super::{ContractWaiting, HandlerWaiting, WaitCounts, Waiting};
use crate::event::EventKind;
use crate::recent::Recent;

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
/// [`outcomes`](Self::outcomes) keeps the last [`capture`](Self::capture) outcomes
/// ([`DEFAULT_CAPTURE`](Self::DEFAULT_CAPTURE) unless set), so a long-running process does not
/// grow with every delivery.
///
/// ```
/// use tidings::InMemoryStore;
///
/// let store = InMemoryStore::default();
/// let inspect = store.clone(); // pass `store` to the builder, keep `inspect`
/// assert!(inspect.outcomes().is_empty());
/// ```
#[derive(Clone)]
pub struct InMemoryStore {
    state: Arc<Mutex<MemoryState>>,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        let state = MemoryState {
            outcomes: Recent::new(InMemoryStore::DEFAULT_CAPTURE),
            next_id: 0,
            deliveries: BTreeMap::new(),
            held: HashMap::new(),
            inbox: HashMap::new(),
            rows: HashMap::new(),
            archive: Vec::new(),
            keys: BTreeMap::new(),
            unkeyed: BTreeSet::new(),
            dead: Vec::new(),
        };
        InMemoryStore {
            state: Arc::new(Mutex::new(state)),
        }
    }
}

struct MemoryState {
    next_id: u64,
    deliveries: BTreeMap<DeliveryId, MemoryDelivery>,
    /// How many claimed deliveries each handler has: a handler counted here is held, and a
    /// claim takes none of its deliveries. Kept as deliveries are claimed and let go, so that
    /// neither a claim nor `next_delivery_due` looks through every delivery to find out. A
    /// handler keeps its entry at zero, so that each claim does not name it again.
    held: HashMap<String, usize>,
    /// When each (handler, event id) was received.
    inbox: HashMap<(String, Uuid), DateTime<Utc>>,
    /// The outbox, by id: its order is that of `keys` and `unkeyed`. A map that keeps its
    /// entries in place, as a B-tree does not, for rows that are large to move.
    rows: HashMap<RowId, MemoryRow>,
    /// Published rows kept in the archive, with when they were published.
    archive: Vec<(DateTime<Utc>, StoredEvent)>,
    /// Rows by key, in order; rows with no key are in no queue.
    keys: BTreeMap<String, VecDeque<RowId>>,
    /// The rows with no key that are not claimed, in order: a claim takes the first of them
    /// without walking past those in flight.
    unkeyed: BTreeSet<RowId>,
    /// Dead letters with the events they hold.
    dead: Vec<(DeadLetter, StoredEvent)>,
    /// The last outcomes, as many as `capture` says.
    outcomes: Recent<Outcome>,
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
    /// How many outcomes [`outcomes`](Self::outcomes) keeps, unless [`capture`](Self::capture)
    /// says otherwise.
    ///
    /// ```
    /// assert_eq!(tidings::InMemoryStore::DEFAULT_CAPTURE, 10_000);
    /// ```
    pub const DEFAULT_CAPTURE: usize = 10_000;

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the last `capacity` outcomes for [`outcomes`](Self::outcomes) (default
    /// [`DEFAULT_CAPTURE`](Self::DEFAULT_CAPTURE)). `0` keeps none. It applies to every clone.
    ///
    /// ```
    /// use tidings::InMemoryStore;
    ///
    /// // A long-running process that never asserts on what its handlers did.
    /// let store = InMemoryStore::new().capture(0);
    /// assert!(store.outcomes().is_empty());
    /// ```
    pub fn capture(self, capacity: usize) -> Self {
        self.lock().outcomes.set_capacity(capacity);
        self
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        crate::sync::lock(&self.state)
    }

    /// How the last deliveries went (as many as [`capture`](Self::capture) keeps), in order.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.lock().outcomes.to_vec()
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

    /// Adds the delivery of `event` to `handler`, due at `now`; returns how many it added: none
    /// for an integration event the handler already received (the inbox).
    fn add_delivery(&mut self, event: StoredEvent, handler: String, now: DateTime<Utc>) -> usize {
        if event.kind == EventKind::Integration
            && self
                .inbox
                .insert((handler.clone(), event.meta.id), now)
                .is_some()
        {
            return 0;
        }
        let id = DeliveryId::new(self.next());
        let delivery = MemoryDelivery {
            event,
            handler,
            attempts: 0,
            due: now,
            claimed: false,
        };
        self.deliveries.insert(id, delivery);
        1
    }

    /// Claims up to `limit` due deliveries of `handlers`, skipping the handlers a claim holds.
    fn claim_deliveries(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &[String],
    ) -> Vec<Delivery> {
        let MemoryState {
            deliveries, held, ..
        } = self;
        // The handlers held before this claim: it may take many deliveries of one handler.
        let claimed: Vec<Delivery> = deliveries
            .iter_mut()
            .filter(|(_, d)| {
                !d.claimed
                    && d.due <= now
                    && !is_held(held, &d.handler)
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
        for delivery in &claimed {
            match held.get_mut(&delivery.handler) {
                Some(count) => *count += 1,
                None => {
                    held.insert(delivery.handler.clone(), 1);
                }
            }
        }
        claimed
    }

    /// Completes the deliveries still claimed at their attempts, with the rows they produced.
    fn complete_deliveries(&mut self, completions: Vec<Completion>) {
        let mut now = None;
        for Completion {
            id,
            attempt,
            produced,
        } in completions
        {
            let Some(delivery) = self.take_delivery(id, attempt) else {
                continue;
            };
            self.outcomes.push(Outcome::Completed {
                handler: delivery.handler,
                event_id: delivery.event.meta.id,
                attempt: delivery.attempts,
            });
            for NewIntegrationRow { event, key } in produced {
                let now = *now.get_or_insert_with(Utc::now);
                let id = RowId::new(self.next());
                match &key {
                    Some(key) => self.keys.entry(key.clone()).or_default().push_back(id),
                    None => {
                        self.unkeyed.insert(id);
                    }
                }
                let row = MemoryRow {
                    event,
                    key,
                    attempts: 0,
                    due: now,
                    claimed: false,
                };
                self.rows.insert(id, row);
            }
        }
    }

    /// Takes delivery `id` out, if it is still claimed at `attempt`.
    fn take_delivery(&mut self, id: DeliveryId, attempt: u32) -> Option<MemoryDelivery> {
        let held = self
            .deliveries
            .get(&id)
            .is_some_and(|d| d.claimed && d.attempts == attempt);
        let delivery = held.then(|| self.deliveries.remove(&id)).flatten()?;
        let_go(&mut self.held, &delivery.handler);
        Some(delivery)
    }

    /// Takes row `id` out of the outbox (into the archive, with `archive`) and out of its key's
    /// queue.
    fn publish_row(
        &mut self,
        id: RowId,
        archive: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let row = self.rows.remove(&id).ok_or_else(|| no_row(id))?;
        if archive {
            self.archive.push((now, row.event));
        }
        match row.key {
            Some(key) => {
                let emptied = self.keys.get_mut(&key).is_some_and(|queue| {
                    // The head, unless a row was published out of turn.
                    if queue.front() == Some(&id) {
                        queue.pop_front();
                    } else {
                        queue.retain(|queued| *queued != id);
                    }
                    queue.is_empty()
                });
                if emptied {
                    self.keys.remove(&key);
                }
            }
            None => {
                self.unkeyed.remove(&id);
            }
        }
        Ok(())
    }

    /// The rows a claim may take, in no order: the head of each key, and the first `unkeyed`
    /// rows with no key that are due at `now` (every one of them is unclaimed).
    fn claimable(&self, now: DateTime<Utc>, unkeyed: usize) -> Vec<RowId> {
        let mut ids: Vec<RowId> = self
            .keys
            .values()
            .filter_map(|queue| queue.front().copied())
            .collect();
        ids.extend(
            self.unkeyed
                .iter()
                .filter(|id| self.rows.get(id).is_some_and(|row| row.due <= now))
                .take(unkeyed),
        );
        ids
    }
}

/// One claimed delivery of `handler` was let go (completed, dead-lettered or rescheduled):
/// `held` counts it no more.
fn let_go(held: &mut HashMap<String, usize>, handler: &str) {
    match held.get_mut(handler) {
        Some(count) if *count > 0 => *count -= 1,
        _ => debug_assert!(false, "a claimed delivery of `{handler}` was not counted"),
    }
}

/// Whether a claim holds deliveries of `handler`.
fn is_held(held: &HashMap<String, usize>, handler: &str) -> bool {
    held.get(handler).is_some_and(|&count| count > 0)
}

impl Store for InMemoryStore {
    fn record(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<usize, StoreError>> {
        let mut state = self.lock();
        let now = Utc::now();
        let mut created = 0;
        for NewEvent {
            event,
            mut handlers,
        } in events
        {
            // Each delivery holds the event: the last one takes it, the others a copy.
            let Some(last) = handlers.pop() else {
                continue;
            };
            for handler in handlers {
                created += state.add_delivery(event.clone(), handler, now);
            }
            created += state.add_delivery(event, last, now);
        }
        Self::ready(Ok(created))
    }

    fn claim_deliveries<'a>(
        &'a self,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        Self::ready(Ok(self.lock().claim_deliveries(now, limit, handlers)))
    }

    fn complete_deliveries(
        &self,
        completions: Vec<Completion>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.lock().complete_deliveries(completions);
        Self::ready(Ok(()))
    }

    fn complete_and_claim<'a>(
        &'a self,
        completions: Vec<Completion>,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        let mut state = self.lock();
        state.complete_deliveries(completions);
        Self::ready(Ok(state.claim_deliveries(now, limit, handlers)))
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
            let outcome = Outcome::Retrying {
                handler: delivery.handler.clone(),
                event_id: delivery.event.meta.id,
                attempt: delivery.attempts,
                error,
            };
            let_go(&mut state.held, &delivery.handler);
            state.outcomes.push(outcome);
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
                id: DeadLetterId::new(state.next()),
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
            id: DeadLetterId::new(state.next()),
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
            let id = DeliveryId::new(state.next());
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
            .filter(|d| !d.claimed && !is_held(&state.held, &d.handler))
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
        // The oldest of the heads and of the rows with no key: the outbox is not walked.
        let mut ids = state.claimable(now, limit);
        ids.sort_unstable();
        let mut claimed = Vec::with_capacity(ids.len().min(limit));
        for id in ids {
            if claimed.len() >= limit {
                break;
            }
            let Some(row) = state.rows.get_mut(&id) else {
                continue;
            };
            if row.claimed || row.due > now {
                continue;
            }
            row.claimed = true;
            row.attempts += 1;
            if row.key.is_none() {
                state.unkeyed.remove(&id);
            }
            claimed.push(IntegrationRow {
                id,
                event: row.event.clone(),
                key: row.key.clone(),
                attempt: row.attempts,
            });
        }
        Self::ready(Ok(claimed))
    }

    fn row_published(&self, id: RowId, archive: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        let result = self.lock().publish_row(id, archive, Utc::now());
        Self::ready(result)
    }

    fn rows_published(
        &self,
        ids: Vec<RowId>,
        archive: bool,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        let now = Utc::now();
        let mut result = Ok(());
        for id in ids {
            if let Err(error) = state.publish_row(id, archive, now)
                && result.is_ok()
            {
                result = Err(error);
            }
        }
        Self::ready(result)
    }

    fn retry_row(
        &self,
        id: RowId,
        attempt: u32,
        _error: String,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        let state = &mut *state;
        let held = state
            .rows
            .get_mut(&id)
            .filter(|row| row.claimed && row.attempts == attempt);
        if let Some(row) = held {
            row.claimed = false;
            row.due = at;
            if row.key.is_none() {
                state.unkeyed.insert(id);
            }
        }
        Self::ready(Ok(()))
    }

    fn next_row_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        let state = self.lock();
        let heads = state.keys.values().filter_map(|queue| queue.front());
        let due = heads
            .chain(&state.unkeyed)
            .filter_map(|id| state.rows.get(id))
            .filter(|row| !row.claimed)
            .map(|row| row.due)
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

    fn waiting(&self) -> BoxFuture<'_, Result<Waiting, StoreError>> {
        let state = self.lock();
        let now = Utc::now();
        type Entry = (WaitCounts, Option<DateTime<Utc>>);
        let count = |(counts, oldest): &mut Entry, claimed: bool, due, occurred_at| {
            if claimed {
                counts.claimed += 1;
            } else if due <= now {
                counts.due += 1;
            } else {
                counts.scheduled += 1;
            }
            *oldest = Some(oldest.map_or(occurred_at, |o: DateTime<Utc>| o.min(occurred_at)));
        };
        let mut handlers: BTreeMap<&str, Entry> = BTreeMap::new();
        for d in state.deliveries.values() {
            let entry = handlers.entry(&d.handler).or_default();
            count(entry, d.claimed, d.due, d.event.meta.occurred_at);
        }
        let mut contracts: BTreeMap<&str, Entry> = BTreeMap::new();
        for r in state.rows.values() {
            let entry = contracts.entry(&r.event.name).or_default();
            count(entry, r.claimed, r.due, r.event.meta.occurred_at);
        }
        let waiting = Waiting {
            deliveries: handlers
                .into_iter()
                .map(|(handler, (counts, oldest))| HandlerWaiting {
                    handler: Some(handler.to_owned()),
                    counts,
                    oldest,
                })
                .collect(),
            rows: contracts
                .into_iter()
                .map(|(contract, (counts, oldest))| ContractWaiting {
                    contract: Some(contract.to_owned()),
                    counts,
                    oldest,
                })
                .collect(),
        };
        Self::ready(Ok(waiting))
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

/// The error for a row that is not in the outbox.
fn no_row(id: RowId) -> StoreError {
    StoreError::new(ErrorKind::Invalid, format!("no integration row {id}"), None)
}
