//! Handler parameters written with type aliases run as their spelled forms do: the dependency
//! behind an alias is provided and checked at `build()`, and a handler that takes the store's
//! transaction through an alias commits its effect with its delivery.

use std::sync::Mutex;

use support::TempDb;
use tidings::prelude::*;
use tidings::{Problem, SqliteStore};

mod support;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShelfRestocked {
    pub sku: String,
    pub count: u32,
}

/// What the handlers saw.
#[derive(Debug, Default)]
pub struct Ledger(Mutex<Vec<String>>);

type Books = Dep<Ledger>;
type Envelope = EventMeta;
type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

#[handles]
async fn record_restock(
    event: &ShelfRestocked,
    tx: &mut Tx<'_>,
    books: Books,
    meta: &Envelope,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO restocks (sku, count) VALUES (?, ?)")
        .bind(&event.sku)
        .bind(event.count)
        .execute(&mut **tx)
        .await?;
    books
        .0
        .lock()
        .unwrap()
        .push(format!("{} from {}", event.sku, meta.source));
    Ok(())
}

#[tokio::test]
async fn aliased_parameters_receive_what_their_types_stand_for() {
    let db = TempDb::new();
    let store = SqliteStore::open(&db.0).await.unwrap();
    sqlx::query("CREATE TABLE restocks (sku TEXT NOT NULL, count INTEGER NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    let pool = store.pool().clone();
    let app = Tidings::builder("warehouse")
        .store(store)
        .provide(Ledger::default())
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    let event = ShelfRestocked {
        sku: "sku-1".into(),
        count: 3,
    };
    app.domain_events().publish(event).await.unwrap();
    running.settle().await;

    let rows: Vec<(String, u32)> = sqlx::query_as("SELECT sku, count FROM restocks")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows, [("sku-1".to_owned(), 3)]);
    let ledger = app.dependency::<Ledger>().unwrap();
    assert_eq!(*ledger.0.lock().unwrap(), ["sku-1 from warehouse"]);
    assert!(app.dead_letters().await.unwrap().is_empty());
    running.shutdown().await.unwrap();
}

#[test]
fn an_aliased_dependency_that_is_not_provided_is_named_at_build() {
    let error = Tidings::builder("warehouse").validate().unwrap_err();
    assert!(error.problems().iter().any(|problem| matches!(
        problem,
        Problem::MissingDependency {
            handler: "record_restock",
            dependency: "Ledger",
            ..
        }
    )));
    assert!(
        error
            .to_string()
            .contains("takes `Dep<Ledger>`, and no value of that type was provided"),
        "{error}"
    );
}

#[test]
fn an_aliased_transaction_needs_a_store_on_its_database() {
    let handler = tidings::registry()
        .handlers()
        .iter()
        .find(|h| h.name() == "record_restock")
        .unwrap();
    let db = handler.transaction().unwrap();
    assert!(db.is::<sqlx::Sqlite>());
    let error = Tidings::builder("warehouse")
        .provide(Ledger::default())
        .validate()
        .unwrap_err();
    assert!(matches!(
        error.problems(),
        [Problem::TransactionOfAnotherDatabase {
            handler: "record_restock",
            ..
        }]
    ));
}
