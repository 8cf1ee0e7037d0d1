//! What the fault tests of every broker share: the publishing `orders` context and the
//! consuming `billing` and `audit` contexts, the ledger that records what the consuming handlers
//! saw, its tally against what was published (lost, duplicates, order per key), a transport
//! wrapper that records every publication the relay attempted, and a watch that no order leaves
//! the publisher's store without the broker's acknowledgement. Each fault test file includes it
//! with `#[path = "faults/mod.rs"] mod faults;`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings::prelude::*;
use tidings::store::Store;
use tidings::transport::{BoxFuture, Inbound, Message, Subscription, Transport};
use tidings::{ErrorKind, RetryPolicy, Running, TransportError};
use uuid::Uuid;

/// The longest wait for what must happen; no test asserts how long anything takes.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// The contract the tests publish.
pub(crate) const CONTRACT: &str = "orders.order-placed";

/// An order: its key, and its place among the orders of that key.
pub(crate) type Order = (String, u32);

pub(crate) mod orders {
    tidings::context!("orders");

    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct OrderPlaced {
        pub(crate) key: String,
        pub(crate) seq: u32,
    }

    #[integration_event(name = "orders.order-placed", from = OrderPlaced, key = key)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct OrderPlacedIntegrationEvent {
        pub(crate) key: String,
        pub(crate) seq: u32,
    }

    impl From<&OrderPlaced> for OrderPlacedIntegrationEvent {
        fn from(event: &OrderPlaced) -> Self {
            OrderPlacedIntegrationEvent {
                key: event.key.clone(),
                seq: event.seq,
            }
        }
    }
}

pub(crate) mod billing {
    tidings::context!("billing");

    use super::Ledger;
    use super::orders::OrderPlacedIntegrationEvent;
    use tidings::prelude::*;

    #[handles]
    fn bill(event: &OrderPlacedIntegrationEvent, ledger: Dep<Ledger>, meta: &EventMeta) {
        ledger.saw("bill", &event.key, event.seq, meta.id);
    }
}

pub(crate) mod audit {
    tidings::context!("audit");

    use super::Ledger;
    use super::orders::OrderPlacedIntegrationEvent;
    use tidings::prelude::*;

    /// The key that `audit_strict` refuses every time.
    pub(crate) const POISON: &str = "poison";

    #[derive(Debug, thiserror::Error)]
    #[error("audit refuses every order of key `poison`")]
    pub(crate) struct Refused;

    #[handles]
    fn audit_all(event: &OrderPlacedIntegrationEvent, ledger: Dep<Ledger>, meta: &EventMeta) {
        ledger.saw("audit_all", &event.key, event.seq, meta.id);
    }

    /// Fails on every run for the poison key; records the others.
    #[handles]
    fn audit_strict(
        event: &OrderPlacedIntegrationEvent,
        ledger: Dep<Ledger>,
        meta: &EventMeta,
    ) -> Result<(), Refused> {
        if event.key == POISON {
            ledger.saw("audit_strict refused", &event.key, event.seq, meta.id);
            return Err(Refused);
        }
        ledger.saw("audit_strict", &event.key, event.seq, meta.id);
        Ok(())
    }
}

/// What the consuming handlers saw, every run, in order.
#[derive(Debug, Default)]
pub(crate) struct Ledger(Mutex<Vec<Seen>>);

/// One run of a handler on one order.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) handler: &'static str,
    pub(crate) order: Order,
    pub(crate) id: Uuid,
}

impl Ledger {
    pub(crate) fn saw(&self, handler: &'static str, key: &str, seq: u32, id: Uuid) {
        self.0.lock().unwrap().push(Seen {
            handler,
            order: (key.to_owned(), seq),
            id,
        });
    }

    /// The orders `handler` saw, in the order it saw them, every run.
    pub(crate) fn orders(&self, handler: &str) -> Vec<Order> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|s| s.handler == handler)
            .map(|s| s.order.clone())
            .collect()
    }

    /// The event ids `handler` saw, every run.
    pub(crate) fn ids(&self, handler: &str) -> Vec<Uuid> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|s| s.handler == handler)
            .map(|s| s.id)
            .collect()
    }

    /// Whether `handler` saw every order of `expected`.
    pub(crate) fn has_all(&self, handler: &str, expected: &BTreeSet<Order>) -> bool {
        let seen: BTreeSet<Order> = self.orders(handler).into_iter().collect();
        expected.is_subset(&seen)
    }
}

/// The count of a ledger: what was published against what one handler saw.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) published: usize,
    /// Distinct orders seen.
    pub(crate) received: usize,
    pub(crate) lost: Vec<Order>,
    /// Runs beyond the first of one order.
    pub(crate) duplicates: usize,
    /// Orders seen that were never published.
    pub(crate) unexpected: Vec<Order>,
    /// Orders seen (first runs) after a later order of their key.
    pub(crate) out_of_order: Vec<String>,
}

impl Tally {
    pub(crate) fn new(published: &[Order], seen: &[Order]) -> Self {
        let published_set: BTreeSet<&Order> = published.iter().collect();
        let mut first_runs: BTreeSet<&Order> = BTreeSet::new();
        let mut duplicates = 0;
        let mut last: BTreeMap<&str, u32> = BTreeMap::new();
        let mut out_of_order = Vec::new();
        for order in seen {
            if !first_runs.insert(order) {
                duplicates += 1;
                continue;
            }
            let (key, seq) = order;
            if let Some(&before) = last.get(key.as_str())
                && before > *seq
            {
                out_of_order.push(format!("key {key}: {seq} after {before}"));
            }
            let entry = last.entry(key.as_str()).or_insert(*seq);
            *entry = (*entry).max(*seq);
        }
        Tally {
            published: published.len(),
            received: first_runs.len(),
            lost: published_set
                .iter()
                .filter(|order| !first_runs.contains(*order))
                .map(|order| (*order).clone())
                .collect(),
            duplicates,
            unexpected: first_runs
                .iter()
                .filter(|order| !published_set.contains(*order))
                .map(|order| (*order).clone())
                .collect(),
            out_of_order,
        }
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "published {}, received {}, lost {}, duplicates {}",
            self.published,
            self.received,
            self.lost.len(),
            self.duplicates
        )
    }

    /// Asserts lost = 0 and nothing seen that was not published.
    pub(crate) fn assert_nothing_lost(&self, test: &str) {
        assert!(self.lost.is_empty(), "{test}: lost {:?}", self.lost);
        assert!(
            self.unexpected.is_empty(),
            "{test}: seen, never published: {:?}",
            self.unexpected
        );
    }

    pub(crate) fn assert_in_order(&self, test: &str, what: &str) {
        assert!(
            self.out_of_order.is_empty(),
            "{test}: {what} out of order per key: {:?}",
            self.out_of_order
        );
    }
}

/// Quick backoff, so that the relay and the consumers come back soon after the broker does.
pub(crate) fn quick_retry() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
}

/// The publishing app: the `orders` context on `store`, with a quick relay.
pub(crate) async fn publisher(transport: impl Transport, store: impl Store) -> (Tidings, Running) {
    let app = Tidings::builder("orders")
        .store(store)
        .transport(transport)
        .retry(quick_retry())
        .poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running)
}

/// A consuming app of `context`, in memory, writing to `ledger`.
pub(crate) async fn consumer(
    context: &str,
    transport: impl Transport,
    ledger: &Dep<Ledger>,
    retry: RetryPolicy,
) -> (Tidings, Running) {
    let app = Tidings::builder(context)
        .transport(transport)
        .provide_dep(ledger.clone())
        .retry(retry)
        .poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running)
}

/// A use case places an order; with the broker away, it must still succeed: it only writes the
/// outbox.
pub(crate) async fn place(app: &Tidings, committed: &Mutex<Vec<Order>>, key: &str, seq: u32) {
    app.domain_events()
        .publish(orders::OrderPlaced {
            key: key.to_owned(),
            seq,
        })
        .await
        .expect("a use case publishes whatever the broker does: it only writes the outbox");
    committed.lock().unwrap().push((key.to_owned(), seq));
}

/// Waits for the apps to settle, or fails with what still waits.
pub(crate) async fn settle(apps: &[&Running]) {
    if let Err(unsettled) = Running::settle_all_for(apps, PATIENCE).await {
        panic!("{unsettled}");
    }
}

/// One publication the relay attempted: the event's id, its order, how it went.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) id: Uuid,
    pub(crate) order: Option<Order>,
    pub(crate) outcome: Result<(), ErrorKind>,
}

/// The order a message carries.
pub(crate) fn order_of(message: &Message) -> Option<Order> {
    order_in(&message.data.decode().ok()?)
}

/// The order of an event's JSON form (the domain event's or the contract's).
pub(crate) fn order_in(data: &serde_json::Value) -> Option<Order> {
    let key = data.get("key")?.as_str()?.to_owned();
    let seq = u32::try_from(data.get("seq")?.as_u64()?).ok()?;
    Some((key, seq))
}

/// The NATS transport, recording every publication attempted through it and its outcome.
#[derive(Debug, Clone)]
pub(crate) struct Recording<T> {
    pub(crate) inner: T,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl<T: Transport + Clone> Recording<T> {
    pub(crate) fn new(inner: T) -> Self {
        Recording {
            inner,
            attempts: Arc::default(),
        }
    }

    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    /// The orders the broker acknowledged.
    pub(crate) fn acknowledged(&self) -> BTreeSet<Order> {
        self.attempts()
            .into_iter()
            .filter(|a| a.outcome.is_ok())
            .filter_map(|a| a.order)
            .collect()
    }

    /// Asserts that every publication that failed was ambiguous ([`ErrorKind::Unavailable`]:
    /// worth retrying) and was later acknowledged under the same event id.
    pub(crate) fn assert_failures_retried(&self, test: &str) {
        let attempts = self.attempts();
        let acknowledged: BTreeSet<Uuid> = attempts
            .iter()
            .filter(|a| a.outcome.is_ok())
            .map(|a| a.id)
            .collect();
        for attempt in attempts.iter().filter(|a| a.outcome.is_err()) {
            assert_eq!(
                attempt.outcome,
                Err(ErrorKind::Unavailable),
                "{test}: a publication that failed this way is worth retrying"
            );
            assert!(
                acknowledged.contains(&attempt.id),
                "{test}: event {} failed and was never acknowledged under its id",
                attempt.id
            );
        }
    }
}

impl<T: Transport + Clone> Transport for Recording<T> {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let id = message.id;
            let order = order_of(&message);
            let result = self.inner.publish(message).await;
            self.attempts.lock().unwrap().push(Attempt {
                id,
                order,
                outcome: result.as_ref().map(drop).map_err(TransportError::kind),
            });
            result
        })
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        self.inner.subscribe(subscription)
    }
}

pub(crate) fn keys(count: usize) -> Vec<String> {
    (0..count).map(|k| format!("k{k}")).collect()
}

/// The orders of events' JSON forms.
pub(crate) fn orders_in<'a>(
    payloads: impl IntoIterator<Item = &'a serde_json::Value>,
) -> BTreeSet<Order> {
    payloads.into_iter().filter_map(order_in).collect()
}

/// The orders waiting in a publisher's SQLite store, in one read (one snapshot): as deliveries
/// of the domain event, not yet turned into outbox rows, or as outbox rows, not yet marked
/// published. `None` if the file could not be read.
pub(crate) fn waiting_in_sqlite(
    pool: &sqlx::SqlitePool,
) -> BoxFuture<'static, Option<BTreeSet<Order>>> {
    let pool = pool.clone();
    Box::pin(async move {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT payload FROM tidings_deliveries UNION ALL SELECT payload FROM tidings_outbox",
        )
        .fetch_all(&pool)
        .await
        .ok()?;
        let payloads: Vec<serde_json::Value> = rows
            .iter()
            .filter_map(|(payload,)| serde_json::from_str(payload).ok())
            .collect();
        Some(orders_in(&payloads))
    })
}

/// The orders waiting in a publisher's PostgreSQL store in `schema`, in one statement (one
/// snapshot), as [`waiting_in_sqlite`] reads them.
pub(crate) fn waiting_in_postgres(
    pool: &sqlx::PgPool,
    schema: &str,
) -> BoxFuture<'static, Option<BTreeSet<Order>>> {
    let pool = pool.clone();
    let query = format!(
        "SELECT payload FROM \"{schema}\".tidings_deliveries \
         UNION ALL SELECT payload FROM \"{schema}\".tidings_outbox"
    );
    Box::pin(async move {
        let rows: Vec<(sqlx::types::Json<serde_json::Value>,)> =
            sqlx::query_as(sqlx::AssertSqlSafe(query))
                .fetch_all(&pool)
                .await
                .ok()?;
        Some(orders_in(rows.iter().map(|(payload,)| &payload.0)))
    })
}

/// Looks, again and again until finished, whether an order left the publisher's store without
/// the broker's acknowledgement: at each look, every order committed before it must still wait
/// in the store (as a delivery or an outbox row), or the transport must have seen the broker
/// acknowledge it. The store is read before the acknowledgements, so that a row acknowledged
/// and marked between the two reads is never taken for one marked without an acknowledgement.
pub(crate) struct AckWatch {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, BTreeSet<Order>)>,
}

impl AckWatch {
    pub(crate) fn start<T, F>(
        committed: Arc<Mutex<Vec<Order>>>,
        publishing: Recording<T>,
        waiting: F,
    ) -> Self
    where
        T: Transport + Clone,
        F: Fn() -> BoxFuture<'static, Option<BTreeSet<Order>>> + Send + 'static,
    {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut looks = 0;
            let mut unacknowledged = BTreeSet::new();
            loop {
                let before: Vec<Order> = committed.lock().unwrap().clone();
                if let Some(waiting) = waiting().await {
                    let acknowledged = publishing.acknowledged();
                    looks += 1;
                    unacknowledged.extend(
                        before
                            .into_iter()
                            .filter(|o| !waiting.contains(o) && !acknowledged.contains(o)),
                    );
                }
                if *stopped.borrow() {
                    return (looks, unacknowledged);
                }
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        AckWatch { stop, task }
    }

    /// Takes a last look; how many looks were taken, and the orders that were gone from the
    /// store, never acknowledged.
    pub(crate) async fn finish(self) -> (usize, BTreeSet<Order>) {
        let _ = self.stop.send(true);
        self.task.await.expect("the watch on the outbox ran")
    }
}

/// F7, on any broker: on the contract's queue or stream, bytes that are not a CloudEvent (put
/// there by `garbage`, another client) and a CloudEvent whose data is not the contract's (from
/// `publishing`); in the consuming `audit` context on `consuming`, a handler that fails every
/// time on one key, next to a healthy one. The undecodable messages and the poison key's
/// deliveries of the failing handler are dead-lettered in the context's store; every other
/// message flows to both handlers, in order per key. `setting` names the broker's setting in
/// the ledger line.
pub(crate) async fn f7_undecodable_and_failing<P, C, G>(
    test: &str,
    setting: &str,
    publishing: P,
    consuming: C,
    garbage: G,
) where
    P: Transport + Clone,
    C: Transport,
    G: std::future::Future<Output = ()>,
{
    const ATTEMPTS: u32 = 3;
    let ledger = Dep::new(Ledger::default());
    let (audit, audit_running) = consumer(
        "audit",
        consuming,
        &ledger,
        quick_retry()
            .max_attempts(ATTEMPTS)
            .max_delay(Duration::from_millis(50)),
    )
    .await;
    let (orders, orders_running) = publisher(publishing.clone(), InMemoryStore::new()).await;
    // Bytes that are not a CloudEvent, from another client, first.
    garbage.await;

    let committed = Mutex::new(Vec::new());
    let mut all_keys = keys(3);
    all_keys.push(audit::POISON.to_owned());
    for seq in 0..5 {
        for key in &all_keys {
            place(&orders, &committed, key, seq).await;
        }
        if seq == 2 {
            // A CloudEvent of the contract whose data is not an order, mid-stream.
            let id = Uuid::now_v7();
            let unreadable = Message {
                id,
                source: "elsewhere".to_owned(),
                contract: CONTRACT.to_owned(),
                version: 1,
                key: Some("k1".to_owned()),
                time: chrono::Utc::now(),
                correlation_id: id,
                causation_id: None,
                traceparent: None,
                data: serde_json::json!({ "unexpected": true }).into(),
            };
            publishing.publish(unreadable).await.unwrap();
        }
    }
    let committed = committed.into_inner().unwrap();
    let expected: BTreeSet<Order> = committed.iter().cloned().collect();
    let healthy: Vec<Order> = committed
        .iter()
        .filter(|(key, _)| key != audit::POISON)
        .cloned()
        .collect();
    let poison = committed.len() - healthy.len();
    let healthy_set: BTreeSet<Order> = healthy.iter().cloned().collect();

    let flowed = crate::support::eventually(PATIENCE, || async {
        ledger.has_all("audit_all", &expected) && ledger.has_all("audit_strict", &healthy_set)
    })
    .await;
    let dead_lettered = crate::support::eventually(PATIENCE, || async {
        audit.dead_letters().await.unwrap().len() == 2 + poison
    })
    .await;
    settle(&[&orders_running, &audit_running]).await;

    let dead = audit.dead_letters().await.unwrap();
    let all = Tally::new(&committed, &ledger.orders("audit_all"));
    let strict = Tally::new(&healthy, &ledger.orders("audit_strict"));
    let refused = ledger.orders("audit_strict refused").len();
    println!(
        "{test} ({setting}): audit_all {}; audit_strict (without key {}) {}; dead letters {} \
         (2 undecodable, {poison} refused {refused} times in all)",
        all.line(),
        audit::POISON,
        strict.line(),
        dead.len()
    );
    assert!(flowed, "{test}: the other messages did not all flow");
    all.assert_nothing_lost(test);
    all.assert_in_order(test, "audit_all");
    strict.assert_nothing_lost(test);
    strict.assert_in_order(test, "audit_strict");
    assert!(dead_lettered, "{test}: dead letters {dead:#?}");

    let undecodable: Vec<_> = dead.iter().filter(|d| d.handler.is_none()).collect();
    assert_eq!(undecodable.len(), 2, "{dead:#?}");
    assert!(
        undecodable
            .iter()
            .any(|d| d.error.contains("hello, not an event")),
        "{undecodable:#?}"
    );
    let refusals: Vec<_> = dead.iter().filter(|d| d.handler.is_some()).collect();
    assert_eq!(refusals.len(), poison, "{dead:#?}");
    let poison_ids: BTreeSet<Uuid> = ledger.ids("audit_strict refused").into_iter().collect();
    for letter in &refusals {
        let handler = letter.handler.as_deref().unwrap_or_default();
        assert!(handler.contains("audit_strict"), "{letter:#?}");
        assert_eq!(letter.attempts, ATTEMPTS, "{letter:#?}");
        assert!(letter.error.contains("refuses"), "{letter:#?}");
        assert!(poison_ids.contains(&letter.event_id), "{letter:#?}");
    }
    assert_eq!(refused, poison * usize::try_from(ATTEMPTS).unwrap());

    orders_running.shutdown().await.unwrap();
    audit_running.shutdown().await.unwrap();
}

/// What F4 and F5 set up on any broker: the consuming `billing` app on `consuming`, then the
/// publishing `orders` app on `publishing` (recorded) and a SQLite file, the orders committed
/// so far, and the watch that no order leaves the outbox without the broker's acknowledgement.
pub(crate) struct OutboxRun<T> {
    pub(crate) orders: Tidings,
    pub(crate) orders_running: Running,
    pub(crate) billing_running: Running,
    pub(crate) ledger: Dep<Ledger>,
    pub(crate) publishing: Recording<T>,
    pub(crate) committed: Arc<Mutex<Vec<Order>>>,
    /// A pool of the test's own on the publisher's SQLite file.
    pub(crate) reader: sqlx::SqlitePool,
    /// The keys of each round of orders.
    pub(crate) keys: Vec<String>,
    watch: Option<AckWatch>,
    _db: crate::support::TempDb,
}

/// How an [`OutboxRun`] ended.
pub(crate) struct Drained {
    /// Every order committed, in order.
    pub(crate) committed: Vec<Order>,
    /// Whether the consumer saw every one.
    pub(crate) arrived: bool,
    /// How many times the watch read the outbox.
    pub(crate) looks: usize,
    /// The orders that left the outbox without the broker's acknowledgement.
    pub(crate) unacknowledged: BTreeSet<Order>,
}

impl<T: Transport + Clone> OutboxRun<T> {
    pub(crate) async fn start(publishing: T, consuming: impl Transport) -> Self {
        let db = crate::support::TempDb::new();
        let ledger = Dep::new(Ledger::default());
        let publishing = Recording::new(publishing);
        let (_billing, billing_running) =
            consumer("billing", consuming, &ledger, quick_retry()).await;
        let store = tidings::SqliteStore::open(&db.0)
            .await
            .expect("the SQLite file opens");
        let (orders, orders_running) = publisher(publishing.clone(), store).await;
        let reader = sqlx::SqlitePool::connect_with(tidings::SqliteStore::connect_options(&db.0))
            .await
            .expect("a pool of the test's own on the SQLite file");
        let committed = Arc::new(Mutex::new(Vec::new()));
        let watch = AckWatch::start(Arc::clone(&committed), publishing.clone(), {
            let reader = reader.clone();
            move || waiting_in_sqlite(&reader)
        });
        OutboxRun {
            orders,
            orders_running,
            billing_running,
            ledger,
            publishing,
            committed,
            reader,
            keys: keys(4),
            watch: Some(watch),
            _db: db,
        }
    }

    /// Places one order per key for each of `seqs`.
    pub(crate) async fn place_rounds(&self, seqs: std::ops::Range<u32>) {
        for seq in seqs {
            for key in &self.keys {
                place(&self.orders, &self.committed, key, seq).await;
            }
        }
    }

    /// The orders committed so far.
    pub(crate) fn placed(&self) -> BTreeSet<Order> {
        self.committed.lock().unwrap().iter().cloned().collect()
    }

    /// Waits until the consumer saw every order placed so far, or fails saying `what`.
    pub(crate) async fn all_arrive(&self, test: &str, what: &str) {
        let placed = self.placed();
        assert!(
            crate::support::eventually(PATIENCE, || async { self.ledger.has_all("bill", &placed) })
                .await,
            "{test}: {what}"
        );
    }

    /// The publications that failed so far.
    pub(crate) fn failed(&self) -> usize {
        self.publishing
            .attempts()
            .iter()
            .filter(|a| a.outcome.is_err())
            .count()
    }

    /// F5's blackhole: `blackhole()` holds the publisher's link, rounds `seqs` are placed, the
    /// relay's publications time out; the orders placed meanwhile must all still wait in the
    /// outbox, none acknowledged, when `heal()` ends it. Returns those orders.
    pub(crate) async fn through_a_blackhole(
        &self,
        test: &str,
        blackhole: impl FnOnce(),
        heal: impl FnOnce(),
        seqs: std::ops::Range<u32>,
    ) -> BTreeSet<Order> {
        blackhole();
        let failed_before = self.failed();
        let from = self.committed.lock().unwrap().len();
        self.place_rounds(seqs).await;
        let during: BTreeSet<Order> = self.committed.lock().unwrap()[from..]
            .iter()
            .cloned()
            .collect();
        assert!(
            crate::support::eventually(PATIENCE, || async {
                self.failed() >= failed_before + self.keys.len()
            })
            .await,
            "{test}: publications timed out in the blackhole"
        );
        let waiting = waiting_in_sqlite(&self.reader)
            .await
            .expect("the SQLite file reads");
        let acknowledged = self.publishing.acknowledged();
        heal();
        assert!(
            during.is_subset(&waiting),
            "{test}: orders placed in the blackhole left the outbox: {:?}",
            during.difference(&waiting).collect::<Vec<_>>()
        );
        assert!(
            during.is_disjoint(&acknowledged),
            "{test}: the broker acknowledged through a blackhole"
        );
        during
    }

    /// Lets the publisher drain, stops the watch, waits for the consumer to see every order and
    /// both apps to settle.
    pub(crate) async fn drain(&mut self) -> Drained {
        settle(&[&self.orders_running]).await;
        let watch = self.watch.take().expect("the run is drained once");
        let (looks, unacknowledged) = watch.finish().await;
        let committed = self.committed.lock().unwrap().clone();
        let expected: BTreeSet<Order> = committed.iter().cloned().collect();
        let arrived = crate::support::eventually(PATIENCE, || async {
            self.ledger.has_all("bill", &expected)
        })
        .await;
        settle(&[&self.orders_running, &self.billing_running]).await;
        Drained {
            committed,
            arrived,
            looks,
            unacknowledged,
        }
    }

    pub(crate) async fn shutdown(self) {
        self.orders_running.shutdown().await.unwrap();
        self.billing_running.shutdown().await.unwrap();
    }
}
