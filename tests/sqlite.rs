//! The SQLite store: the same behaviour as in memory, state that survives a restart, events
//! recorded in the use case's transaction, and a handler in the store's transaction.

use std::sync::Mutex;
use std::time::Duration;

use support::TempDb;
use tidings::SqliteStore;
use tidings::prelude::*;
use tidings::transport::{Message, Transport};
use uuid::Uuid;

mod support;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PriceReduced {
    pub sku: String,
    pub step: u32,
}

#[integration_event(name = "catalog.price-changed", from = PriceReduced, key = sku)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PriceChangedIntegrationEvent {
    pub sku: String,
    pub step: u32,
}

impl From<&PriceReduced> for PriceChangedIntegrationEvent {
    fn from(event: &PriceReduced) -> Self {
        PriceChangedIntegrationEvent {
            sku: event.sku.clone(),
            step: event.step,
        }
    }
}

/// What the handlers saw.
#[derive(Debug, Default)]
pub struct Seen {
    repriced: Mutex<Vec<(String, u32)>>,
    audits: Mutex<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("the audit log is full")]
pub struct AuditFull;

#[handles]
async fn reprice_listing(event: &PriceChangedIntegrationEvent, seen: Dep<Seen>) {
    tokio::task::yield_now().await;
    seen.repriced
        .lock()
        .unwrap()
        .push((event.sku.clone(), event.step));
}

/// Fails for step 13, always.
#[handles]
fn audit_price(event: &PriceReduced, seen: Dep<Seen>) -> Result<(), AuditFull> {
    *seen.audits.lock().unwrap() += 1;
    if event.step == 13 {
        Err(AuditFull)
    } else {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] tidings::Error),
}

/// In the store's transaction: the price row commits with the delivery's completion. Step 99
/// tries to publish apart from the transaction, which fails.
#[handles]
async fn record_price(
    event: &PriceReduced,
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    events: DomainEvents,
) -> Result<(), PriceError> {
    sqlx::query("INSERT INTO prices (sku, step) VALUES (?, ?)")
        .bind(&event.sku)
        .bind(event.step)
        .execute(&mut **tx)
        .await?;
    if event.step == 99 {
        let again = PriceReduced {
            sku: event.sku.clone(),
            step: 100,
        };
        events.publish(again).await?;
    }
    Ok(())
}

async fn app(db: &TempDb, transport: &InMemoryTransport) -> Tidings {
    app_on(SqliteStore::open(&db.0).await.unwrap(), transport).await
}

async fn app_on(store: SqliteStore, transport: &InMemoryTransport) -> Tidings {
    sqlx::query("CREATE TABLE IF NOT EXISTS prices (sku TEXT NOT NULL, step INTEGER NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    Tidings::builder("catalog")
        .store(store)
        .transport(transport.clone())
        .provide(Seen::default())
        .retry(
            RetryPolicy::default()
                .max_attempts(3)
                .initial_delay(Duration::from_millis(1))
                .max_delay(Duration::from_millis(5)),
        )
        .build()
        .unwrap()
}

fn repriced(app: &Tidings) -> Vec<(String, u32)> {
    app.dependency::<Seen>()
        .unwrap()
        .repriced
        .lock()
        .unwrap()
        .clone()
}

/// Claims commit without waiting for the disk (a claim is a lease), and the store's connection,
/// which the application's transactions share (`store.pool()`), is back at `synchronous =
/// FULL` after each: what the application commits on it is durable.
#[tokio::test]
async fn the_stores_connection_is_durable_again_after_claims() {
    let db = TempDb::new();
    let transport = InMemoryTransport::default();
    let store = SqliteStore::open(&db.0).await.unwrap();
    let pool = store.pool().clone();
    let app = app_on(store, &transport).await;
    let running = app.start().await.unwrap();
    for step in 0..5 {
        let event = PriceReduced {
            sku: "a".into(),
            step,
        };
        app.domain_events().publish(event).await.unwrap();
    }
    running.settle().await;
    assert_eq!(repriced(&app).len(), 5, "claimed, handled and relayed");
    let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(synchronous, 2, "the store's connection is at FULL (2)");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_recorded_before_a_restart_are_handled_after_it() {
    let db = TempDb::new();
    let transport = InMemoryTransport::default();
    {
        let first = app(&db, &transport).await;
        first
            .domain_events()
            .publish(PriceReduced {
                sku: "a".into(),
                step: 1,
            })
            .await
            .unwrap();
        // The process stops here without ever starting its dispatcher.
    }
    let second = app(&db, &transport).await;
    let running = second.start().await.unwrap();
    running.settle().await;
    assert_eq!(repriced(&second), [("a".to_owned(), 1)]);
    assert_eq!(
        *second.dependency::<Seen>().unwrap().audits.lock().unwrap(),
        1
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn order_per_key_retries_and_dead_letters_hold_on_sqlite() {
    let db = TempDb::new();
    let transport = InMemoryTransport::default();
    let app = app(&db, &transport).await;
    let running = app.start().await.unwrap();
    let events = app.domain_events();
    for step in 0..15 {
        for sku in ["a", "b"] {
            events
                .publish(PriceReduced {
                    sku: sku.into(),
                    step,
                })
                .await
                .unwrap();
        }
    }
    running.settle().await;

    let seen = repriced(&app);
    for sku in ["a", "b"] {
        let steps: Vec<u32> = seen.iter().filter(|s| s.0 == sku).map(|s| s.1).collect();
        assert_eq!(steps, (0..15).collect::<Vec<_>>(), "order of key {sku}");
    }
    let dead = app.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2, "step 13 of each key");
    assert!(
        dead.iter()
            .all(|d| d.attempts == 3 && d.error == "the audit log is full")
    );
    assert_eq!(dead[0].handler.as_deref(), Some("sqlite::audit_price"));
    running.shutdown().await.unwrap();

    // The dead letters are in the file, and can be replayed from it by the next process.
    let reopened = SqliteStore::open(&db.0).await.unwrap();
    let store: &dyn tidings::store::Store = &reopened;
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(store.count_pending().await.unwrap(), (0, 0));
    assert!(store.replay_dead_letter(dead[0].id).await.unwrap());
    assert!(store.discard_dead_letter(dead[1].id).await.unwrap());
    assert!(store.dead_letters().await.unwrap().is_empty());
    let handlers = ["sqlite::audit_price".to_owned()];
    let claimed = store
        .claim_deliveries(chrono::Utc::now(), 10, &handlers)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].handler, "sqlite::audit_price");
    assert_eq!(claimed[0].attempt, 1, "attempts count from zero again");
    assert_eq!(claimed[0].event.meta.id, dead[0].event_id);
    assert_eq!(
        claimed[0]
            .event
            .payload
            .decode::<serde_json::Value>()
            .unwrap()["step"],
        13
    );
}

#[tokio::test]
async fn the_inbox_absorbs_a_duplicate_on_sqlite() {
    let db = TempDb::new();
    let transport = InMemoryTransport::default();
    let app = app(&db, &transport).await;
    let running = app.start().await.unwrap();
    let message = Message {
        id: Uuid::now_v7(),
        source: "catalog".into(),
        contract: "catalog.price-changed".into(),
        version: 1,
        key: Some("z".into()),
        time: chrono::Utc::now(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        traceparent: None,
        data: serde_json::json!({ "sku": "z", "step": 9 }).into(),
    };
    transport.publish(message.clone()).await.unwrap();
    transport.publish(message).await.unwrap();
    running.settle().await;
    assert_eq!(repriced(&app), [("z".to_owned(), 9)]);
    running.shutdown().await.unwrap();
}

/// A pool of the application's own on the store's file, as a use case would have.
async fn user_pool(db: &TempDb) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db.0)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    sqlx::SqlitePool::connect_with(options).await.unwrap()
}

async fn prices(db: &TempDb) -> Vec<(String, u32)> {
    sqlx::query_as("SELECT sku, step FROM prices ORDER BY sku, step")
        .fetch_all(&user_pool(db).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn publish_in_commits_with_the_aggregate_or_not_at_all_on_sqlite() {
    let db = TempDb::new();
    let transport = InMemoryTransport::default();
    let app = app(&db, &transport).await;
    let running = app.start().await.unwrap();
    let pool = user_pool(&db).await;
    sqlx::query("CREATE TABLE listings (sku TEXT PRIMARY KEY, price INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    for (sku, commit) in [("kept", true), ("rolled-back", false)] {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO listings (sku, price) VALUES (?, 900)")
            .bind(sku)
            .execute(&mut *tx)
            .await
            .unwrap();
        let event = PriceReduced {
            sku: sku.into(),
            step: 1,
        };
        app.domain_events()
            .publish_in(&mut tx, event)
            .await
            .unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }
    running.settle().await;
    assert_eq!(repriced(&app), [("kept".to_owned(), 1)]);
    assert_eq!(prices(&db).await, [("kept".to_owned(), 1)]);
    let listings: Vec<(String,)> = sqlx::query_as("SELECT sku FROM listings")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(listings, [("kept".to_owned(),)]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_handler_in_the_stores_transaction_leaves_no_effect() {
    let db = TempDb::new();
    let transport = InMemoryTransport::default();
    let app = app(&db, &transport).await;
    // The price row's table is missing for a while: the handler's insert fails, then succeeds.
    sqlx::query("ALTER TABLE prices RENAME TO prices_away")
        .execute(&user_pool(&db).await)
        .await
        .unwrap();
    let running = app.start().await.unwrap();
    let event = PriceReduced {
        sku: "late".into(),
        step: 2,
    };
    app.domain_events().publish(event).await.unwrap();
    running.settle().await;
    let dead = app.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].handler.as_deref(), Some("sqlite::record_price"));
    sqlx::query("ALTER TABLE prices_away RENAME TO prices")
        .execute(&user_pool(&db).await)
        .await
        .unwrap();
    assert!(prices(&db).await.is_empty());
    assert!(app.replay_dead_letter(dead[0].id).await.unwrap());
    running.settle().await;
    assert_eq!(prices(&db).await, [("late".to_owned(), 2)]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn migrations_apply_once_from_processes_opening_the_file_together() {
    let db = TempDb::new();
    let opens = (0..4).map(|_| SqliteStore::open(&db.0));
    let stores: Vec<SqliteStore> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let again = SqliteStore::open(&db.0).await.unwrap();
    for store in stores.iter().chain([&again]) {
        assert_eq!(
            tidings::store::Store::count_pending(store).await.unwrap(),
            (0, 0)
        );
    }
    let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _tidings_migrations")
        .fetch_one(again.pool())
        .await
        .unwrap();
    assert_eq!(applied, 6, "each of the six migrations once");
    let theirs: Option<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE name = '_sqlx_migrations'")
            .fetch_optional(again.pool())
            .await
            .unwrap();
    assert!(
        theirs.is_none(),
        "the application's migrations table is its own"
    );
}

#[tokio::test]
async fn a_handler_in_the_stores_transaction_cannot_publish_apart_from_it() {
    let db = TempDb::new();
    let transport = InMemoryTransport::default();
    let app = app(&db, &transport).await;
    let running = app.start().await.unwrap();
    let event = PriceReduced {
        sku: "apart".into(),
        step: 99,
    };
    app.domain_events().publish(event).await.unwrap();
    running.settle().await;
    let dead = app.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].error.contains("use `publish_in(tx, event)`"),
        "{}",
        dead[0].error
    );
    assert!(prices(&db).await.is_empty(), "its row rolled back");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn publish_in_refuses_a_transaction_on_another_file() {
    let db = TempDb::new();
    let transport = InMemoryTransport::default();
    let app = app(&db, &transport).await;
    let running = app.start().await.unwrap();
    // Another context's store, and a file with no store at all.
    let shipping_db = TempDb::new();
    let shipping = SqliteStore::open(&shipping_db.0).await.unwrap();
    let plain_db = TempDb::new();
    let plain = sqlx::SqlitePool::connect_with(SqliteStore::connect_options(&plain_db.0))
        .await
        .unwrap();

    for pool in [shipping.pool(), &plain] {
        let mut tx = pool.begin().await.unwrap();
        let event = PriceReduced {
            sku: "elsewhere".into(),
            step: 1,
        };
        let refused = app
            .domain_events()
            .publish_in(&mut tx, event)
            .await
            .expect_err("a transaction on another file is refused");
        let text = refused.to_string();
        assert!(
            text.contains("the transaction is not on the app's store's SQLite file")
                && text.contains("store.pool().begin()"),
            "{text}"
        );
        tx.commit().await.unwrap();
    }

    let stray = tidings::store::Store::count_pending(&shipping)
        .await
        .unwrap();
    assert_eq!(stray, (0, 0), "nothing landed in the other store's file");
    running.settle().await;
    assert!(repriced(&app).is_empty());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn publish_while_the_caller_holds_the_write_lock_says_to_use_publish_in() {
    let db = TempDb::new();
    let options = SqliteStore::connect_options(&db.0).busy_timeout(Duration::from_millis(100));
    let store = SqliteStore::open_with(options).await.unwrap();
    let app = Tidings::builder("catalog")
        .store(store)
        .provide(Seen::default())
        .build()
        .unwrap();
    // The use case's own transaction on the file, holding its write lock.
    let pool = sqlx::SqlitePool::connect_with(SqliteStore::connect_options(&db.0))
        .await
        .unwrap();
    let tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();

    let refused = app
        .domain_events()
        .publish(PriceReduced {
            sku: "locked".into(),
            step: 1,
        })
        .await
        .expect_err("the store cannot write while the caller holds the lock");
    tx.rollback().await.unwrap();

    let mut text = refused.to_string();
    let mut cause = std::error::Error::source(&refused);
    while let Some(error) = cause {
        text = format!("{text}: {error}");
        cause = error.source();
    }
    assert!(
        text.contains("stayed locked") && text.contains("publish_in(&mut tx, event)"),
        "{text}"
    );
    assert!(
        text.contains("database is locked"),
        "the cause is kept: {text}"
    );
}

/// A handler that a process of the release before holds, its claim kept in its deliveries alone,
/// stays held once the store is upgraded: the migration that brings `tidings_handler_claims`
/// records that claim, and the handler's next delivery waits for it.
#[tokio::test]
async fn a_claim_made_before_the_handler_claims_table_still_holds_its_handler() {
    use tidings::store::Store;
    let db = TempDb::new();
    let store = SqliteStore::open(&db.0).await.unwrap();
    let handlers = support::hold_one_of_two(&store, "shipping::weigh_parcel").await;
    // As the release before left it, and as the migration finds it.
    sqlx::query("DELETE FROM tidings_handler_claims")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::raw_sql(include_str!(
        "../runtime/migrations/sqlite/0006_handler_claims.sql"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let next = store
        .claim_deliveries(chrono::Utc::now(), 1, &handlers)
        .await
        .unwrap();
    assert!(
        next.is_empty(),
        "the handler's second delivery was claimed while its first is held: {next:?}"
    );
}
