//! Crash tests on PostgreSQL with real processes: a child process (this test binary started
//! again) is killed with SIGKILL at an exact step, by a fail point of its own or by the test.
//! A fresh app then recovers the store, and a ledger of orders shows that nothing was lost;
//! duplicates are counted, and the consumer's inbox absorbs them.
//!
//! The steps: after the use case's commit and before dispatch; after a handler's effect and
//! before its completion; inside a handler's transaction; after the broker's acknowledgement and
//! before the row is marked; one of two relays killed in the middle of its batch.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use tidings::prelude::*;
use tidings::transport::{BoxFuture, Inbound, Message, Subscription, Transport};
use tidings::{PostgresStore, TransportError};

/// Where a child process kills itself: `CRASH_AT`.
fn crash_at(step: &str) -> bool {
    std::env::var("CRASH_AT").is_ok_and(|at| at == step)
}

pub mod orders {
    tidings::context!("orders");

    use super::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct OrderPlaced {
        pub order: i64,
    }

    #[integration_event(name = "orders.order-placed", from = OrderPlaced, key = order)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct OrderPlacedIntegrationEvent {
        pub order: i64,
    }

    impl From<&OrderPlaced> for OrderPlacedIntegrationEvent {
        fn from(event: &OrderPlaced) -> Self {
            OrderPlacedIntegrationEvent { order: event.order }
        }
    }

    /// An effect outside the store's transaction: run twice, it is written twice.
    #[handles]
    async fn write_effect(event: &OrderPlaced, ledger: Dep<Ledger>) -> Result<(), sqlx::Error> {
        ledger.write(event.order, "effect").await?;
        if crash_at("after_effect") {
            support::die();
        }
        Ok(())
    }

    /// An effect in the store's transaction: it commits once, with the completion.
    #[handles]
    async fn write_effect_in_transaction(
        event: &OrderPlaced,
        tx: &mut Transaction<'_, Postgres>,
        ledger: Dep<Ledger>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{}\".ledger (order_id, what) VALUES ($1, 'tx_effect')",
            ledger.schema
        )))
        .bind(event.order)
        .execute(&mut **tx)
        .await?;
        if crash_at("in_transaction") {
            support::die();
        }
        Ok(())
    }
}

pub mod billing {
    tidings::context!("billing");

    use super::*;
    use crate::orders::OrderPlacedIntegrationEvent;

    #[handles]
    async fn bill_order(
        event: &OrderPlacedIntegrationEvent,
        ledger: Dep<Ledger>,
    ) -> Result<(), sqlx::Error> {
        ledger.write(event.order, "billed").await
    }
}

use orders::OrderPlaced;

/// The test's ledger: what the handlers did, one row per time they did it.
#[derive(Debug)]
pub struct Ledger {
    pool: PgPool,
    schema: String,
}

impl Ledger {
    async fn write(&self, order: i64, what: &str) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{}\".ledger (order_id, what) VALUES ($1, $2)",
            self.schema
        )))
        .bind(order)
        .bind(what)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// How many times each order got `what`.
    async fn counts(&self, what: &str) -> BTreeMap<i64, i64> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT order_id, COUNT(*) FROM \"{}\".ledger WHERE what = $1 GROUP BY order_id",
            self.schema
        )))
        .bind(what)
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
    }
}

/// The broker: a table. A message is acknowledged once its row is committed.
#[derive(Clone)]
struct TableBroker {
    pool: PgPool,
    schema: String,
    /// How long each publication takes, so that a kill can land in the middle of a batch.
    delay: Duration,
}

impl Transport for TableBroker {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO \"{}\".broker (message) VALUES ($1)",
                self.schema
            )))
            .bind(sqlx::types::Json(&message))
            .execute(&self.pool)
            .await
            .map_err(|e| {
                TransportError::new(
                    tidings::ErrorKind::Unavailable,
                    "the broker table refused",
                    Some(Box::new(e) as _),
                )
            })?;
            if crash_at("after_ack") {
                support::die();
            }
            Ok(())
        })
    }

    fn subscribe(
        &self,
        _subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        Box::pin(std::future::ready(Err(TransportError::new(
            tidings::ErrorKind::Invalid,
            "the broker table has no consumers",
            None,
        ))))
    }
}

impl TableBroker {
    /// Every message the broker acknowledged, in order, duplicates included.
    async fn messages(&self) -> Vec<Message> {
        let rows: Vec<(sqlx::types::Json<Message>,)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT message FROM \"{}\".broker ORDER BY seq",
            self.schema
        )))
        .fetch_all(&self.pool)
        .await
        .unwrap();
        rows.into_iter().map(|(message,)| message.0).collect()
    }
}

const LEASE: Duration = Duration::from_millis(800);

/// The orders app on the test's schema, as each process builds it.
async fn orders_app(pool: &PgPool, schema: &str, broker_delay: Duration) -> Tidings {
    let store = PostgresStore::connect_with(pool.clone(), schema)
        .await
        .unwrap()
        .lease(LEASE);
    Tidings::builder("orders")
        .store(store)
        .transport(TableBroker {
            pool: pool.clone(),
            schema: schema.to_owned(),
            delay: broker_delay,
        })
        .provide(Ledger {
            pool: pool.clone(),
            schema: schema.to_owned(),
        })
        .poll_interval(Duration::from_millis(100))
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(100)),
        )
        .build()
        .unwrap()
}

/// A fresh schema with the ledger, the broker and the orders tables.
async fn setup(url: &str, test: &str) -> (PgPool, String) {
    let (pool, schema) = support::fresh_schema(url, test).await;
    PostgresStore::connect_with(pool.clone(), &schema)
        .await
        .unwrap();
    for table in [
        "ledger (order_id BIGINT NOT NULL, what TEXT NOT NULL)",
        "broker (seq BIGSERIAL PRIMARY KEY, message JSONB NOT NULL)",
        "orders (id BIGINT PRIMARY KEY)",
    ] {
        sqlx::query(AssertSqlSafe(format!("CREATE TABLE \"{schema}\".{table}")))
            .execute(&pool)
            .await
            .unwrap();
    }
    (pool, schema)
}

/// Records `orders` as a use case would, each in its own transaction with its order row.
async fn place(app: &Tidings, pool: &PgPool, schema: &str, orders: std::ops::Range<i64>) {
    for order in orders {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".orders (id) VALUES ($1)"
        )))
        .bind(order)
        .execute(&mut *tx)
        .await
        .unwrap();
        app.domain_events()
            .publish_in(&mut tx, OrderPlaced { order })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        println!("committed {order}");
    }
}

/// The child process: `CRASH_ROLE` says what it does until it dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash tests, started by them"]
async fn child() {
    let url = support::child_env("DATABASE_URL");
    let schema = support::child_env("CRASH_SCHEMA");
    let delay = Duration::from_millis(
        std::env::var("CRASH_BROKER_DELAY_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0),
    );
    let pool = PgPool::connect(&url).await.unwrap();
    let app = orders_app(&pool, &schema, delay).await;
    match support::child_env("CRASH_ROLE").as_str() {
        // Commits orders, never dispatches, and dies right after the last commit.
        "place_and_die" => {
            place(&app, &pool, &schema, 0..20).await;
            support::die();
        }
        // Runs the app until a fail point or the test kills it.
        "run" => {
            let _running = app.start().await.unwrap();
            // Killed long before this, by its fail point or by the test.
            tokio::time::sleep(Duration::from_secs(120)).await;
            panic!("the child was never killed");
        }
        role => panic!("unknown CRASH_ROLE {role}"),
    }
}

/// Runs the child with `role` (and `CRASH_AT` = `at`, if any) and waits for it to die.
fn run_child_to_its_death(schema: &str, url: &str, role: &str, at: &str) -> Vec<String> {
    let mut child = support::spawn_child(
        "child",
        &[
            ("DATABASE_URL", url),
            ("CRASH_SCHEMA", schema),
            ("CRASH_ROLE", role),
            ("CRASH_AT", at),
        ],
    );
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the child died by SIGKILL at `{at}`: {status}"
    );
    lines
}

/// Runs a fresh orders app on the store until nothing waits, as the next process would.
async fn recover(pool: &PgPool, schema: &str) {
    let app = orders_app(pool, schema, Duration::ZERO).await;
    let running = app.start().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), running.settle())
        .await
        .expect("the recovered app settles");
    running.shutdown().await.unwrap();
}

/// How many times the broker acknowledged each order.
async fn acknowledged(pool: &PgPool, schema: &str) -> BTreeMap<i64, i64> {
    let broker = TableBroker {
        pool: pool.clone(),
        schema: schema.to_owned(),
        delay: Duration::ZERO,
    };
    let mut counts = BTreeMap::new();
    for message in broker.messages().await {
        *counts
            .entry(
                message.data.decode::<serde_json::Value>().unwrap()["order"]
                    .as_i64()
                    .unwrap(),
            )
            .or_default() += 1;
    }
    counts
}

fn all_once(orders: std::ops::Range<i64>) -> BTreeMap<i64, i64> {
    orders.map(|order| (order, 1)).collect()
}

fn ledger(pool: &PgPool, schema: &str) -> Ledger {
    Ledger {
        pool: pool.clone(),
        schema: schema.to_owned(),
    }
}

#[tokio::test]
async fn killed_after_commit_before_dispatch_loses_nothing() {
    let Some(url) = support::database_url("killed_after_commit_before_dispatch_loses_nothing")
    else {
        return;
    };
    let (pool, schema) = setup(&url, "crash_after_commit").await;
    let lines = tokio::task::spawn_blocking({
        let (schema, url) = (schema.clone(), url.clone());
        move || run_child_to_its_death(&schema, &url, "place_and_die", "")
    })
    .await
    .unwrap();
    // The harness prints `test child ... ` with no line end before the first order.
    let committed = lines.iter().filter(|l| l.contains("committed ")).count();
    assert_eq!(committed, 20);
    assert!(ledger(&pool, &schema).counts("effect").await.is_empty());

    recover(&pool, &schema).await;
    let ledger = ledger(&pool, &schema);
    assert_eq!(ledger.counts("effect").await, all_once(0..20), "lost 0");
    assert_eq!(ledger.counts("tx_effect").await, all_once(0..20));
    assert_eq!(acknowledged(&pool, &schema).await, all_once(0..20));
}

#[tokio::test]
async fn killed_after_a_handlers_effect_before_its_completion_runs_it_again() {
    let Some(url) =
        support::database_url("killed_after_a_handlers_effect_before_its_completion_runs_it_again")
    else {
        return;
    };
    let (pool, schema) = setup(&url, "crash_after_effect").await;
    let recording = orders_app(&pool, &schema, Duration::ZERO).await;
    place(&recording, &pool, &schema, 0..1).await;
    tokio::task::spawn_blocking({
        let (schema, url) = (schema.clone(), url.clone());
        move || run_child_to_its_death(&schema, &url, "run", "after_effect")
    })
    .await
    .unwrap();
    assert_eq!(
        ledger(&pool, &schema).counts("effect").await,
        all_once(0..1)
    );

    recover(&pool, &schema).await;
    let ledger = ledger(&pool, &schema);
    // At least once: the effect outside the transaction is written again, a duplicate counted.
    assert_eq!(ledger.counts("effect").await, BTreeMap::from([(0, 2)]));
    // Exactly once: the effect in the store's transaction.
    assert_eq!(ledger.counts("tx_effect").await, all_once(0..1));
    assert_eq!(acknowledged(&pool, &schema).await, all_once(0..1));
}

#[tokio::test]
async fn killed_inside_a_handlers_transaction_leaves_its_effect_once() {
    let Some(url) =
        support::database_url("killed_inside_a_handlers_transaction_leaves_its_effect_once")
    else {
        return;
    };
    let (pool, schema) = setup(&url, "crash_in_tx").await;
    let recording = orders_app(&pool, &schema, Duration::ZERO).await;
    place(&recording, &pool, &schema, 0..1).await;
    tokio::task::spawn_blocking({
        let (schema, url) = (schema.clone(), url.clone());
        move || run_child_to_its_death(&schema, &url, "run", "in_transaction")
    })
    .await
    .unwrap();
    // The transaction died with the process: its effect is not there.
    assert!(ledger(&pool, &schema).counts("tx_effect").await.is_empty());

    recover(&pool, &schema).await;
    let ledger = ledger(&pool, &schema);
    assert_eq!(ledger.counts("tx_effect").await, all_once(0..1));
    let effects = ledger.counts("effect").await;
    assert!(matches!(effects.get(&0), Some(1 | 2)), "{effects:?}");
}

#[tokio::test]
async fn killed_after_the_brokers_ack_before_the_row_is_marked_publishes_again() {
    let Some(url) = support::database_url(
        "killed_after_the_brokers_ack_before_the_row_is_marked_publishes_again",
    ) else {
        return;
    };
    let (pool, schema) = setup(&url, "crash_after_ack").await;
    let recording = orders_app(&pool, &schema, Duration::ZERO).await;
    place(&recording, &pool, &schema, 0..1).await;
    tokio::task::spawn_blocking({
        let (schema, url) = (schema.clone(), url.clone());
        move || run_child_to_its_death(&schema, &url, "run", "after_ack")
    })
    .await
    .unwrap();
    assert_eq!(acknowledged(&pool, &schema).await, all_once(0..1));

    recover(&pool, &schema).await;
    // The row was not marked: it is published again, a duplicate.
    assert_eq!(acknowledged(&pool, &schema).await, BTreeMap::from([(0, 2)]));
    // The consumer receives both copies; its inbox lets the handler run once.
    let billed = consume_broker(&pool, &schema).await;
    assert_eq!(billed, all_once(0..1));
}

/// Delivers every message the broker holds, duplicates included, to the billing context;
/// returns how many times each order was billed.
async fn consume_broker(pool: &PgPool, schema: &str) -> BTreeMap<i64, i64> {
    let billing_schema = format!("{schema}_billing");
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{billing_schema}\" CASCADE"
    )))
    .execute(pool)
    .await
    .unwrap();
    let transport = InMemoryTransport::default();
    let billing = Tidings::builder("billing")
        .store(
            PostgresStore::connect_with(pool.clone(), &billing_schema)
                .await
                .unwrap(),
        )
        .transport(transport.clone())
        .provide(ledger(pool, schema))
        .build()
        .unwrap();
    let running = billing.start().await.unwrap();
    let broker = TableBroker {
        pool: pool.clone(),
        schema: schema.to_owned(),
        delay: Duration::ZERO,
    };
    for message in broker.messages().await {
        transport.publish(message).await.unwrap();
    }
    running.settle().await;
    running.shutdown().await.unwrap();
    ledger(pool, schema).counts("billed").await
}

#[tokio::test]
async fn one_of_two_relays_killed_mid_batch_loses_nothing() {
    let Some(url) = support::database_url("one_of_two_relays_killed_mid_batch_loses_nothing")
    else {
        return;
    };
    let (pool, schema) = setup(&url, "crash_two_relays").await;
    let recording = orders_app(&pool, &schema, Duration::ZERO).await;
    place(&recording, &pool, &schema, 0..200).await;
    let env = |schema: &str| {
        [
            ("DATABASE_URL", url.clone()),
            ("CRASH_SCHEMA", schema.to_owned()),
            ("CRASH_ROLE", "run".to_owned()),
            ("CRASH_BROKER_DELAY_MS", "3".to_owned()),
        ]
    };
    let spawn = |env: [(&'static str, String); 4]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        support::spawn_child("child", &env)
    };
    let mut doomed = spawn(env(&schema));
    let mut survivor = spawn(env(&schema));
    // Killed by the test once the relays are well into the batches.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acknowledged(&pool, &schema).await.len() < 40 {
        assert!(tokio::time::Instant::now() < deadline, "the relays publish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.kill().unwrap();
    let status = doomed.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    // The survivor takes over the dead relay's leases and finishes.
    let store = PostgresStore::connect_with(pool.clone(), &schema)
        .await
        .unwrap();
    loop {
        if tidings::store::Store::count_pending(&store).await.unwrap() == (0, 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the surviving relay finishes the work"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    survivor.kill().unwrap();
    survivor.wait().unwrap();

    let acknowledged = acknowledged(&pool, &schema).await;
    let lost: Vec<i64> = (0..200).filter(|o| !acknowledged.contains_key(o)).collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    let duplicates: i64 = acknowledged.values().map(|n| n - 1).sum();
    eprintln!("two relays, one killed: 200 orders, lost 0, {duplicates} duplicates");
    let billed = consume_broker(&pool, &schema).await;
    assert_eq!(billed, all_once(0..200), "the inbox absorbs the duplicates");
    let ledger = ledger(&pool, &schema);
    assert_eq!(ledger.counts("tx_effect").await, all_once(0..200));
    assert_eq!(ledger.counts("effect").await.len(), 200);
}
