//! The PostgreSQL store on the machine's PostgreSQL (`DATABASE_URL`), each test in a schema of
//! its own: recording in the use case's transaction, NOTIFY across instances, handlers in the
//! store's transaction, several instances sharing the work, parked keys, lease takeover,
//! retention and migrations.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use tidings::prelude::*;
use tidings::store::Store;
use tidings::transport::Transport;
use tidings::{PostgresStore, Retention};
use tokio::sync::Notify;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ItemStocked {
    pub sku: String,
    pub seq: u32,
    /// How many times the projection fails (after writing its effect) before it succeeds.
    pub fail_times: u32,
}

#[integration_event(name = "stock.changed", from = ItemStocked, key = sku)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StockChangedIntegrationEvent {
    pub sku: String,
    pub seq: u32,
}

/// The test's schema, where the projection's table is.
#[derive(Debug)]
pub struct Schema(String);

/// What the handlers saw, and how often the projection ran.
#[derive(Debug, Default)]
pub struct Seen {
    noted: Mutex<Vec<(String, u32)>>,
    runs: Mutex<HashMap<(String, u32), u32>>,
    changed: Notify,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("the projection failed on purpose")]
    OnPurpose,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// In the store's transaction: its row, its completion and the integration event it returns
/// commit together, or not at all.
#[handles]
async fn project_stock(
    event: &ItemStocked,
    tx: &mut Transaction<'_, Postgres>,
    schema: Dep<Schema>,
    seen: Dep<Seen>,
) -> Result<StockChangedIntegrationEvent, ProjectionError> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".stock_projection (sku, seq) VALUES ($1, $2)",
        schema.0
    )))
    .bind(&event.sku)
    .bind(i32::try_from(event.seq).unwrap())
    .execute(&mut **tx)
    .await?;
    let run = {
        let mut runs = seen.runs.lock().unwrap();
        let run = runs.entry((event.sku.clone(), event.seq)).or_default();
        *run += 1;
        *run
    };
    if run <= event.fail_times {
        return Err(ProjectionError::OnPurpose);
    }
    Ok(StockChangedIntegrationEvent {
        sku: event.sku.clone(),
        seq: event.seq,
    })
}

#[handles]
fn note_stock(event: &ItemStocked, seen: Dep<Seen>) {
    seen.noted
        .lock()
        .unwrap()
        .push((event.sku.clone(), event.seq));
    seen.changed.notify_waiters();
}

fn stocked(sku: &str, seq: u32) -> ItemStocked {
    ItemStocked {
        sku: sku.to_owned(),
        seq,
        fail_times: 0,
    }
}

/// A store in the test's schema, with the projection's table beside it.
async fn store(pool: &PgPool, schema: &str) -> PostgresStore {
    let store = PostgresStore::connect_with(pool.clone(), schema)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".stock_projection (sku TEXT NOT NULL, seq INTEGER NOT NULL)"
    )))
    .execute(pool)
    .await
    .unwrap();
    store
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(3)
        .initial_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
}

fn app(store: PostgresStore, schema: &str, transport: impl Transport) -> Tidings {
    Tidings::builder("stock")
        .store(store)
        .transport(transport)
        .provide(Schema(schema.to_owned()))
        .provide(Seen::default())
        .retry(fast_retries())
        .build()
        .unwrap()
}

fn noted(app: &Tidings) -> Vec<(String, u32)> {
    app.dependency::<Seen>()
        .unwrap()
        .noted
        .lock()
        .unwrap()
        .clone()
}

async fn projected(pool: &PgPool, schema: &str) -> Vec<(String, i32)> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT sku, seq FROM \"{schema}\".stock_projection ORDER BY sku, seq"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn publish_in_commits_with_the_aggregate_or_not_at_all() {
    let Some(url) = support::database_url("publish_in_commits_with_the_aggregate_or_not_at_all")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "publish_in").await;
    let app = app(
        store(&pool, &schema).await,
        &schema,
        InMemoryTransport::default(),
    );
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE \"{schema}\".items (sku TEXT PRIMARY KEY)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let running = app.start().await.unwrap();
    let events = app.domain_events();
    for (sku, commit) in [("kept", true), ("rolled-back", false)] {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".items (sku) VALUES ($1)"
        )))
        .bind(sku)
        .execute(&mut *tx)
        .await
        .unwrap();
        events.publish_in(&mut tx, stocked(sku, 1)).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }
    running.settle().await;
    assert_eq!(noted(&app), [("kept".to_owned(), 1)]);
    assert_eq!(projected(&pool, &schema).await, [("kept".to_owned(), 1)]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn another_instance_is_woken_by_notify_not_by_polling() {
    let Some(url) = support::database_url("another_instance_is_woken_by_notify_not_by_polling")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "notify").await;
    // The instance that handles polls once an hour: only the notification can wake it.
    let handling = Tidings::builder("stock")
        .store(store(&pool, &schema).await)
        .provide(Schema(schema.clone()))
        .provide(Seen::default())
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let running = handling.start().await.unwrap();
    // The instance that publishes never starts: like a process that only runs use cases.
    let publishing = app(
        store(&pool, &schema).await,
        &schema,
        InMemoryTransport::default(),
    );
    let seen = handling.dependency::<Seen>().unwrap();
    let noticed = seen.changed.notified();
    let mut tx = pool.begin().await.unwrap();
    publishing
        .domain_events()
        .publish_in(&mut tx, stocked("woken", 1))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), noticed)
        .await
        .expect("the handling instance was woken by the commit's NOTIFY");
    assert_eq!(noted(&handling), [("woken".to_owned(), 1)]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_handler_in_the_stores_transaction_commits_its_effect_once() {
    let Some(url) =
        support::database_url("a_handler_in_the_stores_transaction_commits_its_effect_once")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "handler_tx").await;
    let transport = InMemoryTransport::default();
    let app = app(store(&pool, &schema).await, &schema, transport.clone());
    let running = app.start().await.unwrap();
    // Fails twice after writing its row: both rows roll back with the failed attempts.
    let flaky = ItemStocked {
        sku: "flaky".into(),
        seq: 7,
        fail_times: 2,
    };
    app.domain_events().publish(flaky).await.unwrap();
    running.settle().await;
    let seen = app.dependency::<Seen>().unwrap();
    assert_eq!(seen.runs.lock().unwrap()[&("flaky".to_owned(), 7)], 3);
    assert_eq!(projected(&pool, &schema).await, [("flaky".to_owned(), 7)]);
    let published = transport.published_of::<StockChangedIntegrationEvent>();
    assert_eq!(published.len(), 1);
    assert_eq!((published[0].sku.as_str(), published[0].seq), ("flaky", 7));
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_instances_share_the_work_and_keep_order_per_key() {
    let Some(url) = support::database_url("two_instances_share_the_work_and_keep_order_per_key")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "two_instances").await;
    let transport = InMemoryTransport::default();
    let first = app(store(&pool, &schema).await, &schema, transport.clone());
    let second = app(store(&pool, &schema).await, &schema, transport.clone());
    let running_first = first.start().await.unwrap();
    let running_second = second.start().await.unwrap();
    for seq in 0..20 {
        for sku in ["a", "b", "c"] {
            let by = if seq % 2 == 0 { &first } else { &second };
            by.domain_events().publish(stocked(sku, seq)).await.unwrap();
        }
    }
    Running::settle_all(&[&running_first, &running_second]).await;
    let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for event in transport.published_of::<StockChangedIntegrationEvent>() {
        by_key.entry(event.sku).or_default().push(event.seq);
    }
    let in_order: Vec<u32> = (0..20).collect();
    for sku in ["a", "b", "c"] {
        assert_eq!(by_key[sku], in_order, "key {sku}");
    }
    let handled = noted(&first).len() + noted(&second).len();
    assert_eq!(
        handled, 60,
        "each event handled once by one of the instances"
    );
    assert_eq!(projected(&pool, &schema).await.len(), 60);
    running_first.shutdown().await.unwrap();
    running_second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_key_whose_head_keeps_failing_is_parked_while_other_keys_flow() {
    let Some(url) =
        support::database_url("a_key_whose_head_keeps_failing_is_parked_while_other_keys_flow")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "parked").await;
    let inner = InMemoryTransport::default();
    let transport = support::RefusesKey::new("stuck", inner.clone());
    let app = app(store(&pool, &schema).await, &schema, transport);
    let running = app.start().await.unwrap();
    for seq in 0..5 {
        for sku in ["stuck", "x", "y"] {
            app.domain_events()
                .publish(stocked(sku, seq))
                .await
                .unwrap();
        }
    }
    // The other keys flow while the stuck key's head is retried, past the policy's attempts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let flowed = inner.published_of::<StockChangedIntegrationEvent>().len();
        let (attempts,): (Option<i32>,) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT MAX(attempts) FROM \"{schema}\".tidings_outbox WHERE ordering_key = 'stuck'"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        if flowed == 10 && attempts.unwrap_or(0) > 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flowed {flowed} of 10, stuck head tried {attempts:?} times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting: (i64,) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM \"{schema}\".tidings_outbox WHERE ordering_key = 'stuck'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(waiting.0, 5, "the stuck key keeps all its rows, in order");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lease_held_by_a_dead_process_expires_and_is_taken_over() {
    let Some(url) =
        support::database_url("a_lease_held_by_a_dead_process_expires_and_is_taken_over")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "lease").await;
    let lease = Duration::from_millis(300);
    let recording = app(
        store(&pool, &schema).await,
        &schema,
        InMemoryTransport::default(),
    );
    recording
        .domain_events()
        .publish(stocked("leased", 1))
        .await
        .unwrap();
    // A process claims both deliveries and dies before running them.
    let dead = store(&pool, &schema).await.lease(lease);
    let handlers = [
        "postgres::project_stock".to_owned(),
        "postgres::note_stock".to_owned(),
    ];
    let claimed = dead
        .claim_deliveries(Utc::now(), 10, &handlers)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    drop(dead);
    let survivor = Tidings::builder("stock")
        .store(store(&pool, &schema).await.lease(lease))
        .provide(Schema(schema.clone()))
        .provide(Seen::default())
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let running = survivor.start().await.unwrap();
    running.settle().await;
    assert_eq!(noted(&survivor), [("leased".to_owned(), 1)]);
    assert_eq!(projected(&pool, &schema).await, [("leased".to_owned(), 1)]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn retention_archives_published_rows_and_expires_them_in_bounded_batches() {
    let Some(url) = support::database_url(
        "retention_archives_published_rows_and_expires_them_in_bounded_batches",
    ) else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "retention").await;
    let store = store(&pool, &schema).await;
    let app = Tidings::builder("stock")
        .store(store.clone())
        .provide(Schema(schema.clone()))
        .provide(Seen::default())
        .retention(Retention::default().archive_published(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    for seq in 0..25 {
        app.domain_events()
            .publish(stocked("kept", seq))
            .await
            .unwrap();
    }
    running.settle().await;
    let count = |table: &'static str| {
        let pool = pool.clone();
        let schema = schema.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM \"{schema}\".{table}"
            )))
            .fetch_one(&pool)
            .await
            .unwrap();
            n
        }
    };
    assert_eq!(count("tidings_outbox").await, 0);
    assert_eq!(count("tidings_outbox_archive").await, 25);
    // Within the window nothing expires; past it, at most one batch per call.
    let window_start = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        store.prune(window_start, window_start, 10).await.unwrap(),
        0
    );
    let later = Utc::now() + chrono::Duration::hours(2);
    let mut batches = Vec::new();
    for _ in 0..4 {
        batches.push(store.prune(later, later, 10).await.unwrap());
    }
    assert_eq!(batches.iter().sum::<usize>(), 25);
    assert!(batches.iter().all(|&n| n <= 10), "{batches:?}");
    assert_eq!(count("tidings_outbox_archive").await, 0);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_discarded_on_postgres() {
    let Some(url) =
        support::database_url("dead_letters_are_listed_replayed_and_discarded_on_postgres")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "dead_letters").await;
    let app = app(
        store(&pool, &schema).await,
        &schema,
        InMemoryTransport::default(),
    );
    let running = app.start().await.unwrap();
    let hopeless = ItemStocked {
        sku: "hopeless".into(),
        seq: 1,
        fail_times: 4,
    };
    app.domain_events().publish(hopeless).await.unwrap();
    running.settle().await;
    let letters = app.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0].error.contains("on purpose"),
        "{}",
        letters[0].error
    );
    // Replayed from its first attempt: its fourth run fails again, its fifth succeeds.
    assert!(app.replay_dead_letter(letters[0].id).await.unwrap());
    running.settle().await;
    assert!(app.dead_letters().await.unwrap().is_empty());
    assert_eq!(
        projected(&pool, &schema).await,
        [("hopeless".to_owned(), 1)]
    );
    assert!(!app.replay_dead_letter(letters[0].id).await.unwrap());
    // One that would never succeed is discarded.
    let never = ItemStocked {
        sku: "never".into(),
        seq: 1,
        fail_times: u32::MAX,
    };
    app.domain_events().publish(never).await.unwrap();
    running.settle().await;
    let letters = app.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(app.discard_dead_letter(letters[0].id).await.unwrap());
    assert!(app.dead_letters().await.unwrap().is_empty());
    assert!(!app.discard_dead_letter(letters[0].id).await.unwrap());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn migrations_apply_once_from_processes_starting_together() {
    let Some(url) = support::database_url("migrations_apply_once_from_processes_starting_together")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "migrations").await;
    let starts = (0..4).map(|_| PostgresStore::connect_with(pool.clone(), &schema));
    for started in futures_util::future::join_all(starts).await {
        started.unwrap();
    }
    PostgresStore::connect_with(pool.clone(), &schema)
        .await
        .unwrap();
    let (applied,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM \"{schema}\"._tidings_migrations"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(applied, 6, "each of the six migrations once");
    let refused = PostgresStore::connect_with(pool.clone(), "Bad-Name").await;
    let error = refused.unwrap_err().to_string();
    assert!(error.contains("not a schema name"), "{error}");
}

#[test]
fn a_handler_in_a_transaction_needs_a_store_of_that_database() {
    let error = Tidings::builder("stock")
        .provide(Schema("unused".into()))
        .provide(Seen::default())
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("takes `&mut Transaction<'_, Postgres>`, and the app's store does not work in that database"),
        "{error}"
    );
}

/// Stores can be opened from a spawned task, such as a service's start-up task.
#[test]
fn stores_open_in_spawned_tasks() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    spawnable(async {
        let pool = sqlx::PgPool::connect_lazy("postgres://localhost/unused").unwrap();
        PostgresStore::connect_with(pool, "spawned").await
    });
    spawnable(PostgresStore::connect("postgres://localhost/unused"));
    spawnable(tidings::SqliteStore::open("unused.db"));
}

/// An event with a single handler: recorded by the store's shorter statement.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ItemCounted {
    pub sku: String,
}

#[handles]
fn note_count(event: &ItemCounted, seen: Dep<Seen>) {
    seen.noted.lock().unwrap().push((event.sku.clone(), 0));
}

#[tokio::test]
async fn an_event_with_one_handler_is_recorded_and_handled() {
    let Some(url) = support::database_url("an_event_with_one_handler_is_recorded_and_handled")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "one_handler").await;
    let app = app(
        store(&pool, &schema).await,
        &schema,
        InMemoryTransport::default(),
    );
    let running = app.start().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let counted = ItemCounted { sku: "one".into() };
    app.domain_events()
        .publish_in(&mut tx, counted)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    running.settle().await;
    assert_eq!(noted(&app), [("one".to_owned(), 0)]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn publish_in_refuses_a_transaction_on_another_database() {
    let Some(url) = support::database_url("publish_in_refuses_a_transaction_on_another_database")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "publish_in_elsewhere").await;
    let app = app(
        store(&pool, &schema).await,
        &schema,
        InMemoryTransport::default(),
    );
    // The server's `postgres` database: the same server, not the store's database.
    let (server, _) = url.rsplit_once('/').expect("the URL names a database");
    let elsewhere = sqlx::PgPool::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let mut tx = elsewhere.begin().await.unwrap();
    let refused = app
        .domain_events()
        .publish_in(&mut tx, stocked("elsewhere", 1))
        .await
        .expect_err("a transaction on another database is refused");
    let text = refused.to_string();
    assert!(
        text.contains("the transaction is not on the database of the app's store"),
        "{text}"
    );
    tx.rollback().await.unwrap();
    let pending = store(&pool, &schema).await.count_pending().await.unwrap();
    assert_eq!(pending, (0, 0));
}

/// A handler that a process of the release before holds, its claim kept in its deliveries alone,
/// stays held once the store is upgraded: the migration that brings `tidings_handler_claims`
/// records that claim, and the handler's next delivery waits for it.
#[tokio::test]
async fn a_claim_made_before_the_handler_claims_table_still_holds_its_handler() {
    let Some(url) = support::database_url(
        "a_claim_made_before_the_handler_claims_table_still_holds_its_handler",
    ) else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "upgrade").await;
    let store = PostgresStore::connect_with(pool.clone(), &schema)
        .await
        .unwrap();
    let handlers = support::hold_one_of_two(&store, "shipping::weigh_parcel").await;
    // As the release before left it, and as the migration finds it.
    let migration = include_str!("../runtime/migrations/postgres/0004_claims_in_place.sql");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN; SET LOCAL search_path TO \"{schema}\"; DELETE FROM tidings_handler_claims; \
         {migration}; COMMIT;"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let next = store
        .claim_deliveries(Utc::now(), 1, &handlers)
        .await
        .unwrap();
    assert!(
        next.is_empty(),
        "the handler's second delivery was claimed while its first is held: {next:?}"
    );
}

/// While a backlog drains, a claim starts each handler's walk at the first id of the handler's
/// claim before; a delivery below that start is still claimed, at the latest after a short
/// while: one whose transaction committed after a claim took higher ids, and a retry that came
/// due.
#[tokio::test]
async fn a_draining_claim_still_takes_deliveries_below_the_ids_it_reached() {
    let Some(url) =
        support::database_url("a_draining_claim_still_takes_deliveries_below_the_ids_it_reached")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "walk_start").await;
    let store = PostgresStore::connect_with(pool.clone(), &schema)
        .await
        .unwrap();
    let handlers = ["shipping::weigh_parcel".to_owned()];
    let events = |parcels| support::parcels_weighed(parcels, &handlers);
    let parcel = |delivery: &tidings::store::Delivery| {
        let payload: serde_json::Value =
            serde_json::from_str(delivery.event.payload.get()).unwrap();
        payload["parcel"].as_u64().unwrap()
    };
    let done = |batch: &[tidings::store::Delivery]| -> Vec<tidings::store::Completion> {
        batch
            .iter()
            .map(|delivery| tidings::store::Completion {
                id: delivery.id,
                attempt: delivery.attempt,
                produced: Vec::new(),
            })
            .collect()
    };

    // Parcel 0 takes the lowest id, and commits after parcels 1 and 2 are claimed.
    let mut late = pool.begin().await.unwrap();
    let connection: &mut sqlx::PgConnection = &mut late;
    store.record_in(connection, events(0..1)).await.unwrap();
    store.record(events(1..3)).await.unwrap();
    let first = store
        .claim_deliveries(Utc::now(), 2, &handlers)
        .await
        .unwrap();
    assert_eq!(first.iter().map(parcel).collect::<Vec<_>>(), [1, 2]);
    late.commit().await.unwrap();
    let next = store
        .complete_and_claim(done(&first), Utc::now(), 2, &handlers)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(parcel).collect::<Vec<_>>(),
        [0],
        "the claim after a full one found nothing above where it started, and did not look below"
    );
    store.complete_deliveries(done(&next)).await.unwrap();

    // A backlog of six: the claims come back full while parcel 3's retry waits.
    store.record(events(3..9)).await.unwrap();
    let first = store
        .claim_deliveries(Utc::now(), 2, &handlers)
        .await
        .unwrap();
    let retry_at = Utc::now() + chrono::TimeDelta::milliseconds(300);
    store
        .retry_delivery(first[0].id, first[0].attempt, "not yet".into(), retry_at)
        .await
        .unwrap();
    let second = store
        .complete_and_claim(done(&first[1..]), Utc::now(), 2, &handlers)
        .await
        .unwrap();
    assert_eq!(second.iter().map(parcel).collect::<Vec<_>>(), [5, 6]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let third = store
        .complete_and_claim(done(&second), Utc::now(), 2, &handlers)
        .await
        .unwrap();
    assert_eq!(
        third.iter().map(parcel).collect::<Vec<_>>(),
        [3, 7],
        "the retry that came due was left behind while the backlog drained"
    );
}
