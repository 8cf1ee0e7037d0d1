//! A crash test on SQLite with a real process: a child process (this test binary started again)
//! commits orders with their events in a stream of transactions and is killed with SIGKILL by
//! the test in the middle of it. The file is intact, and every committed order's event is
//! handled once after the restart: lost 0.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};
use tidings::SqliteStore;
use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderPlaced {
    pub order: i64,
}

/// In the store's transaction: each order's event is counted exactly once.
#[handles]
async fn count_order(
    event: &OrderPlaced,
    tx: &mut Transaction<'_, Sqlite>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ledger (order_id) VALUES (?)")
        .bind(event.order)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// A pool of the application's own on the file, as the use cases have, with the store's
/// settings.
async fn user_pool(path: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteStore::connect_options(path))
        .await
        .unwrap()
}

async fn app(path: &Path) -> Tidings {
    let store = SqliteStore::open(path).await.unwrap();
    for table in [
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)",
        "CREATE TABLE IF NOT EXISTS ledger (order_id INTEGER NOT NULL)",
    ] {
        sqlx::query(table).execute(store.pool()).await.unwrap();
    }
    Tidings::builder("orders").store(store).build().unwrap()
}

/// The child process: commits orders, one transaction each, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash test, started by it"]
async fn child() {
    let path = PathBuf::from(support::child_env("CRASH_DB"));
    let app = app(&path).await;
    let pool = user_pool(&path).await;
    for order in 0.. {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO orders (id) VALUES (?)")
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

#[tokio::test]
async fn sqlite_killed_during_a_stream_of_writes_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("tidings-crash-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("orders.db");
    let db = path.display().to_string();
    let committed = tokio::task::spawn_blocking(move || {
        let mut child = support::spawn_child("child", &[("CRASH_DB", db.as_str())]);
        let mut committed = BTreeSet::new();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.map_while(Result::ok) {
            // The harness prints `test child ... ` with no line end before the first order.
            if let Some(order) = line.split("committed ").nth(1) {
                committed.insert(order.parse::<i64>().unwrap());
            }
            if committed.len() == 300 {
                child.kill().unwrap();
                break;
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );
        committed
    })
    .await
    .unwrap();
    assert_eq!(committed.len(), 300);

    let pool = user_pool(&path).await;
    let (integrity,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");

    let app = app(&path).await;
    let running = app.start().await.unwrap();
    running.settle().await;
    running.shutdown().await.unwrap();

    let orders: Vec<(i64,)> = sqlx::query_as("SELECT id FROM orders ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let handled: Vec<(i64,)> = sqlx::query_as("SELECT order_id FROM ledger ORDER BY order_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let lost: Vec<&i64> = committed
        .iter()
        .filter(|order| !handled.contains(&(**order,)))
        .collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    // Every order that committed (some after the last line the test read) has its event
    // handled exactly once, and no event was handled without its order.
    assert_eq!(handled, orders);
    let _ = std::fs::remove_dir_all(&dir);
}
