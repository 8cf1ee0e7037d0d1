//! B-drain: how fast a started app burns down a backlog of deliveries, against the best loop a
//! user could write by hand with sqlx on the same database; and B9: two app instances draining
//! one PostgreSQL schema, with the deliveries run twice counted.
//!
//! Throughput is measured by draining a backlog, so that no polling cadence or wake-up is in the
//! figure. Each drain starts from a fresh database: a new SQLite file (WAL, `synchronous =
//! FULL`, in a temporary directory), or a new PostgreSQL schema (`DATABASE_URL`; skipped, with
//! a line saying so, when it is unset or does not answer), dropped after the drain. Two shapes of
//! backlog, each of `DELIVERIES` deliveries (50,000):
//!
//! - `1 handler`: 50,000 `ParcelScanned` events, each with one no-op `fn` handler: every
//!   delivery goes to one hot handler, whose deliveries the app runs in order.
//! - `4 handlers`: 12,500 `ParcelSorted` events, each with four no-op `fn` handlers: 50,000
//!   deliveries spread over four handlers, which the app runs concurrently.
//!
//! The handlers only count their run in a ledger (one atomic add per delivery, by event and
//! handler), which stamps the moment the last expected run happens and, after the drain, tells
//! how many deliveries ran twice or never.
//!
//! The arms, one after the other on the same database server or disk:
//!
//! - `tidings`: the backlog is recorded with [`DomainEvents::publish_in`], in transactions of
//!   `RECORD_CHUNK` events on the store's own pool, before the app starts (unmeasured). The time
//!   runs from `Tidings::start` to the last handler run; the app is then settled
//!   (`Running::settle_all`: every delivery completed in the store), which gives the second
//!   figure, "drained", and shut down.
//! - `tidings x2` (B9, PostgreSQL only): the same backlog drained by two apps of the same
//!   context on the same schema, each with its own `PostgresStore` on its own pool, as two
//!   processes would; started one after the other, timed from the first start. A claim takes
//!   only handlers that no other claim holds, so that each handler's deliveries run in one
//!   process at a time, in order: with one hot handler the second instance finds nothing to
//!   take, with four the two split the handlers between them.
//! - `sqlx loop`: a job-queue table of the same number of rows (`id` primary key, `handler`,
//!   `payload` as JSON, `due_at`), filled with one `INSERT ... SELECT` (unmeasured), drained by
//!   one loop that claims `BATCH` rows in id order (PostgreSQL: `SELECT ... ORDER BY id LIMIT
//!   64 FOR UPDATE SKIP LOCKED`; SQLite: `BEGIN IMMEDIATE` and the same `SELECT`), decodes each
//!   payload into the event and calls the same handler functions through a
//!   `Vec<(name, Box<dyn Fn(&str)>)>` looked up by the row's handler name, deletes the batch
//!   and commits. Timed from the start of the loop to the last handler run ("drained": to the
//!   last commit). It completes with the dispatcher's batch size, so that the ratio is about
//!   what tidings does per batch, not about how big the batches are.
//!
//! Each benchmark is `iter_custom` over whole drains (one drain per iteration: criterion's
//! warm-up is one drain, then `SAMPLES` drains), with `Throughput::Elements` of the backlog.
//! After criterion's report, one summary line per case: the medians of the measured drains in
//! deliveries per second, the ratio `tidings / sqlx loop` (target >= 0.8x, and >= 10,000/s on
//! PostgreSQL), and for B9 the ratio of two instances to one, with the duplicates.
//!
//! Without `--bench` (as `cargo test --benches` runs it) every benchmark drains once a backlog
//! of `SMOKE_DELIVERIES`, as a test. `TIDINGS_DRAIN_DELIVERIES` sets another backlog size (a
//! multiple of 4, at most 50,000), for a quicker look; so does criterion's `--test`, which
//! drains each full backlog once (the summary then says `drains 1/1`): while the dispatcher
//! completes one delivery per commit, eleven drains of 50,000 per arm take hours.
//!
//! Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p tidings-benches
//! --bench drain` (one drain per arm: append `-- --test`).
#![allow(missing_docs)]

mod support;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tidings::prelude::*;
use tidings::{PostgresStore, SqliteStore};
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------------
// Sizes.

/// The deliveries of a backlog.
const DELIVERIES: usize = 50_000;

/// The deliveries of a backlog in the smoke run.
const SMOKE_DELIVERIES: usize = 256;

/// Rows one claim takes, in both arms: the dispatcher's default `batch_size`, 64, set on the
/// app explicitly. The `sqlx loop` claims and completes the same number.
const BATCH: i64 = 64;

/// Events recorded per transaction when the backlog is built.
const RECORD_CHUNK: usize = 5_000;

/// Measured drains per benchmark.
const SAMPLES: usize = 10;

/// How long a drain may take before the bench gives up on it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1_800);

/// The PostgreSQL schema of the apps' store, dropped before and after each drain.
const SCHEMA: &str = "bench_drain";

/// The PostgreSQL schema of the hand-written queue, dropped before and after each drain.
const SQLX_SCHEMA: &str = "bench_drain_sqlx";

/// The context of the apps, the `source` of their events.
const CONTEXT: &str = "parcels";

// ---------------------------------------------------------------------------------------------
// The ledger of handler runs.

/// How many times each delivery's handler ran, by delivery index (event `seq` x handlers +
/// handler), and when the last expected run happened. One for the whole binary: the handlers are
/// free functions, and the drains run one at a time.
struct Ledger {
    runs: [AtomicU32; DELIVERIES],
    total: AtomicUsize,
    expected: AtomicUsize,
    last: Mutex<Option<Instant>>,
    done: Notify,
}

static LEDGER: Ledger = Ledger {
    runs: [const { AtomicU32::new(0) }; DELIVERIES],
    total: AtomicUsize::new(0),
    expected: AtomicUsize::new(usize::MAX),
    last: Mutex::new(None),
    done: Notify::const_new(),
};

impl Ledger {
    /// Forgets the last drain; `expected` runs are to come.
    fn reset(&self, expected: usize) {
        for runs in &self.runs[..expected] {
            runs.store(0, Ordering::Relaxed);
        }
        self.total.store(0, Ordering::SeqCst);
        self.expected.store(expected, Ordering::SeqCst);
        *self.last() = None;
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delivery `index` ran.
    fn ran(&self, index: usize) {
        self.runs[index].fetch_add(1, Ordering::Relaxed);
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        if total == self.expected.load(Ordering::Acquire) {
            *self.last() = Some(Instant::now());
            self.done.notify_one();
        }
    }

    /// Waits until as many runs as expected happened; returns when the last of them did.
    async fn wait(&self) -> Instant {
        let expected = self.expected.load(Ordering::SeqCst);
        let waiting = async {
            while self.total.load(Ordering::SeqCst) < expected {
                self.done.notified().await;
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, waiting).await.is_err() {
            panic!(
                "only {} of {expected} deliveries ran within {DRAIN_TIMEOUT:?}",
                self.total.load(Ordering::SeqCst)
            );
        }
        self.last().expect("the last expected run was stamped")
    }

    /// `(run twice or more, never run)` among the first `expected` deliveries: each extra run of
    /// a delivery counts once.
    fn check(&self, expected: usize) -> (usize, usize) {
        let mut duplicates = 0;
        let mut missing = 0;
        for runs in &self.runs[..expected] {
            match runs.load(Ordering::SeqCst) {
                0 => missing += 1,
                1 => {}
                n => duplicates += n as usize - 1,
            }
        }
        (duplicates, missing)
    }
}

// ---------------------------------------------------------------------------------------------
// The events and their no-op handlers.

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParcelScanned {
    pub seq: usize,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParcelSorted {
    pub seq: usize,
}

/// The hot handler: every delivery of the `1 handler` backlog.
#[handles]
fn note_scan(event: &ParcelScanned) {
    LEDGER.ran(event.seq);
}

#[handles]
fn sort_a(event: &ParcelSorted) {
    LEDGER.ran(event.seq * 4);
}

#[handles]
fn sort_b(event: &ParcelSorted) {
    LEDGER.ran(event.seq * 4 + 1);
}

#[handles]
fn sort_c(event: &ParcelSorted) {
    LEDGER.ran(event.seq * 4 + 2);
}

#[handles]
fn sort_d(event: &ParcelSorted) {
    LEDGER.ran(event.seq * 4 + 3);
}

/// A hand-written handler table: the handler's name in the queue, and the call that decodes the
/// row's payload and runs it.
type HandlerTable = Vec<(&'static str, Box<dyn Fn(&str) + Send + Sync>)>;

fn decode<E: serde::de::DeserializeOwned>(payload: &str) -> E {
    serde_json::from_str(payload).expect("the payload decodes into the event")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// Every delivery to one handler.
    Hot,
    /// Four handlers per event.
    Spread,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Shape::Hot => "1 handler",
            Shape::Spread => "4 handlers",
        }
    }

    fn handlers(self) -> usize {
        match self {
            Shape::Hot => 1,
            Shape::Spread => 4,
        }
    }

    /// The handler table of the `sqlx loop`, calling the same functions as the app.
    fn table(self) -> HandlerTable {
        match self {
            Shape::Hot => vec![("note_scan", Box::new(|p: &str| note_scan(&decode(p))))],
            Shape::Spread => vec![
                ("sort_a", Box::new(|p: &str| sort_a(&decode(p)))),
                ("sort_b", Box::new(|p: &str| sort_b(&decode(p)))),
                ("sort_c", Box::new(|p: &str| sort_c(&decode(p)))),
                ("sort_d", Box::new(|p: &str| sort_d(&decode(p)))),
            ],
        }
    }

    /// The handler names of the table, in order, as a JSON array: the `handler` of queue row `n`
    /// is the `n % handlers`-th, its event's `seq` is `n / handlers`.
    fn names(self) -> Vec<&'static str> {
        self.table().into_iter().map(|(name, _)| name).collect()
    }

    /// Records the backlog of `deliveries` with `publish_in`, in transactions of
    /// `RECORD_CHUNK` events on `pool`.
    async fn record<DB>(self, events: &DomainEvents, pool: &sqlx::Pool<DB>, deliveries: usize)
    where
        DB: sqlx::Database,
        DB::Connection: Any,
    {
        let count = deliveries / self.handlers();
        for first in (0..count).step_by(RECORD_CHUNK) {
            let mut tx = pool.begin().await.expect("a transaction begins");
            for seq in first..count.min(first + RECORD_CHUNK) {
                let recorded = match self {
                    Shape::Hot => events.publish_in(&mut tx, ParcelScanned { seq }).await,
                    Shape::Spread => events.publish_in(&mut tx, ParcelSorted { seq }).await,
                };
                recorded.expect("the event is recorded");
            }
            tx.commit()
                .await
                .expect("the backlog's transaction commits");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One drain.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Arm {
    Tidings,
    /// B9: two instances on one schema.
    TidingsTwo,
    Sqlx,
}

impl Arm {
    fn name(self) -> &'static str {
        match self {
            Arm::Tidings => "tidings",
            Arm::TidingsTwo => "tidings x2 instances",
            Arm::Sqlx => "sqlx loop",
        }
    }
}

/// What one drain took.
#[derive(Clone, Copy, Debug)]
struct Drain {
    deliveries: usize,
    /// From the start to the last handler run.
    to_last: Duration,
    /// From the start to every delivery completed in the database.
    drained: Duration,
    duplicates: usize,
    missing: usize,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.deliveries as f64 / self.to_last.as_secs_f64()
    }

    fn drained_rate(&self) -> f64 {
        self.deliveries as f64 / self.drained.as_secs_f64()
    }
}

enum Database {
    /// A directory for the files.
    Sqlite(PathBuf),
    /// One pool per instance.
    Postgres([PgPool; 2]),
}

/// The SQLite files of a process, numbered.
static FILES: AtomicUsize = AtomicUsize::new(0);

impl Database {
    fn name(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "SQLite",
            Database::Postgres(_) => "PostgreSQL",
        }
    }

    fn arms(&self) -> &'static [Arm] {
        match self {
            Database::Sqlite(_) => &[Arm::Sqlx, Arm::Tidings],
            Database::Postgres(_) => &[Arm::Sqlx, Arm::Tidings, Arm::TidingsTwo],
        }
    }

    /// The path of a new SQLite file in `dir`, named after `what` it holds.
    fn new_file(dir: &std::path::Path, what: &str) -> PathBuf {
        dir.join(format!(
            "{what}-{}.db",
            FILES.fetch_add(1, Ordering::Relaxed)
        ))
    }

    async fn drain(&self, arm: Arm, shape: Shape, deliveries: usize) -> Drain {
        match arm {
            Arm::Tidings => self.drain_tidings(shape, 1, deliveries).await,
            Arm::TidingsTwo => self.drain_tidings(shape, 2, deliveries).await,
            Arm::Sqlx => match self {
                Database::Sqlite(dir) => sqlx_sqlite(dir, shape, deliveries).await,
                Database::Postgres([pool, _]) => sqlx_postgres(pool, shape, deliveries).await,
            },
        }
    }

    /// The backlog recorded, then drained by `instances` started apps.
    async fn drain_tidings(&self, shape: Shape, instances: usize, deliveries: usize) -> Drain {
        let mut apps = Vec::new();
        let mut file = None;
        match self {
            Database::Sqlite(dir) => {
                assert_eq!(instances, 1, "one app per SQLite file here");
                let path = Self::new_file(dir, "tidings");
                let store = SqliteStore::open(&path)
                    .await
                    .expect("the SQLite store opens");
                let pool = store.pool().clone();
                apps.push(app(store));
                shape
                    .record(&apps[0].domain_events(), &pool, deliveries)
                    .await;
                file = Some(path);
            }
            Database::Postgres(pools) => {
                support::drop_schema(&pools[0], SCHEMA).await;
                for pool in &pools[..instances] {
                    let store = PostgresStore::connect_with(pool.clone(), SCHEMA)
                        .await
                        .expect("the PostgreSQL store connects");
                    apps.push(app(store));
                }
                shape
                    .record(&apps[0].domain_events(), &pools[0], deliveries)
                    .await;
            }
        }
        LEDGER.reset(deliveries);

        let began = Instant::now();
        let mut running = Vec::new();
        for app in &apps {
            running.push(app.start().await.expect("the app starts"));
        }
        let last = LEDGER.wait().await;
        let all: Vec<&Running> = running.iter().collect();
        Running::settle_all(&all).await;
        let drained = began.elapsed();

        for running in running {
            running.shutdown().await.expect("the app shuts down");
        }
        let (duplicates, missing) = LEDGER.check(deliveries);
        drop(apps);
        match self {
            Database::Sqlite(_) => remove_sqlite(file.as_deref()),
            Database::Postgres(pools) => support::drop_schema(&pools[0], SCHEMA).await,
        }
        Drain {
            deliveries,
            to_last: last - began,
            drained,
            duplicates,
            missing,
        }
    }
}

fn app(store: impl tidings::store::Store) -> Tidings {
    Tidings::builder(CONTEXT)
        .store(store)
        .batch_size(BATCH as usize)
        .build()
        .expect("the bench's handlers need nothing")
}

/// Removes a SQLite file and its WAL.
fn remove_sqlite(path: Option<&std::path::Path>) {
    let Some(path) = path else { return };
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

/// The hand-written queue on SQLite: its own file, one connection, WAL and `synchronous =
/// FULL` as the store has.
async fn sqlx_sqlite(dir: &std::path::Path, shape: Shape, deliveries: usize) -> Drain {
    let path = Database::new_file(dir, "sqlx");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("the queue's SQLite file opens");
    sqlx::query(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, handler TEXT NOT NULL, \
         payload TEXT NOT NULL, due_at INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("the queue's table is created");
    let names = serde_json::to_string(&shape.names()).expect("names encode as JSON");
    sqlx::query(
        "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?1) \
         INSERT INTO jobs (handler, payload, due_at) \
         SELECT json_extract(?2, '$[' || (n % ?3) || ']'), json_object('seq', n / ?3), ?4 FROM g",
    )
    .bind(i64::try_from(deliveries).expect("a small backlog"))
    .bind(names)
    .bind(i64::try_from(shape.handlers()).expect("a few handlers"))
    .bind(Utc::now().timestamp_micros())
    .execute(&pool)
    .await
    .expect("the queue is filled");
    let table = shape.table();
    LEDGER.reset(deliveries);

    let began = Instant::now();
    loop {
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("a SQLite transaction begins");
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, handler, payload FROM jobs WHERE due_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(Utc::now().timestamp_micros())
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await
        .expect("a batch is claimed");
        if rows.is_empty() {
            tx.commit().await.expect("the empty claim commits");
            break;
        }
        let mut ids = Vec::with_capacity(rows.len());
        for (id, handler, payload) in &rows {
            call(&table, handler, payload);
            ids.push(*id);
        }
        sqlx::query("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))")
            .bind(serde_json::to_string(&ids).expect("ids encode as JSON"))
            .execute(&mut *tx)
            .await
            .expect("the batch is deleted");
        tx.commit().await.expect("the batch commits");
    }
    let drained = began.elapsed();
    let last = LEDGER.wait().await;
    let (duplicates, missing) = LEDGER.check(deliveries);
    pool.close().await;
    remove_sqlite(Some(&path));
    Drain {
        deliveries,
        to_last: last - began,
        drained,
        duplicates,
        missing,
    }
}

/// The hand-written queue on PostgreSQL, in a schema of its own.
async fn sqlx_postgres(pool: &PgPool, shape: Shape, deliveries: usize) -> Drain {
    support::drop_schema(pool, SQLX_SCHEMA).await;
    sqlx::raw_sql(
        "CREATE SCHEMA bench_drain_sqlx; \
         CREATE TABLE bench_drain_sqlx.jobs (id BIGSERIAL PRIMARY KEY, handler TEXT NOT NULL, \
         payload JSONB NOT NULL, due_at TIMESTAMPTZ NOT NULL)",
    )
    .execute(pool)
    .await
    .expect("the queue's table is created");
    sqlx::query(
        "INSERT INTO bench_drain_sqlx.jobs (handler, payload, due_at) \
         SELECT ($1::text[])[g % $2 + 1], jsonb_build_object('seq', g / $2), now() \
         FROM generate_series(0, $3 - 1) AS g",
    )
    .bind(shape.names())
    .bind(i64::try_from(shape.handlers()).expect("a few handlers"))
    .bind(i64::try_from(deliveries).expect("a small backlog"))
    .execute(pool)
    .await
    .expect("the queue is filled");
    let table = shape.table();
    LEDGER.reset(deliveries);

    let began = Instant::now();
    loop {
        let mut tx = pool.begin().await.expect("a PostgreSQL transaction begins");
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, handler, payload::text FROM bench_drain_sqlx.jobs WHERE due_at <= now() \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await
        .expect("a batch is claimed");
        if rows.is_empty() {
            tx.commit().await.expect("the empty claim commits");
            break;
        }
        let mut ids = Vec::with_capacity(rows.len());
        for (id, handler, payload) in &rows {
            call(&table, handler, payload);
            ids.push(*id);
        }
        sqlx::query("DELETE FROM bench_drain_sqlx.jobs WHERE id = ANY($1)")
            .bind(ids)
            .execute(&mut *tx)
            .await
            .expect("the batch is deleted");
        tx.commit().await.expect("the batch commits");
    }
    let drained = began.elapsed();
    let last = LEDGER.wait().await;
    let (duplicates, missing) = LEDGER.check(deliveries);
    support::drop_schema(pool, SQLX_SCHEMA).await;
    Drain {
        deliveries,
        to_last: last - began,
        drained,
        duplicates,
        missing,
    }
}

/// Runs the handler named `handler` of `table` on `payload`.
fn call(table: &HandlerTable, handler: &str, payload: &str) {
    let (_, run) = table
        .iter()
        .find(|(name, _)| *name == handler)
        .expect("every row names a handler of the table");
    run(payload);
}

// ---------------------------------------------------------------------------------------------
// What each benchmark measured, for the summary.

/// `(database, shape, arm)`.
type Key = (&'static str, Shape, Arm);

/// Every drain of each benchmark, criterion's warm-up included.
static RUNS: Mutex<BTreeMap<Key, Vec<Drain>>> = Mutex::new(BTreeMap::new());

fn note_run(key: Key, drain: Drain) {
    RUNS.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(key)
        .or_default()
        .push(drain);
}

/// The measured drains of `key`: the last `SAMPLES` (the runs before them are criterion's
/// warm-up), or all of them if there are fewer.
fn measured(key: Key) -> Vec<Drain> {
    let runs = RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let runs = runs.get(&key).map(Vec::as_slice).unwrap_or_default();
    runs[runs.len().saturating_sub(SAMPLES)..].to_vec()
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Medians of the measured drains of `key`: `(to the last handler run, drained)` in deliveries
/// per second, and the duplicates and missing deliveries over all of them.
struct Figures {
    rate: Option<f64>,
    drained: Option<f64>,
    runs: usize,
    duplicates: usize,
    missing: usize,
}

fn figures(key: Key) -> Figures {
    let runs = measured(key);
    Figures {
        rate: median(runs.iter().map(Drain::rate).collect()),
        drained: median(runs.iter().map(Drain::drained_rate).collect()),
        runs: runs.len(),
        duplicates: runs.iter().map(|d| d.duplicates).sum(),
        missing: runs.iter().map(|d| d.missing).sum(),
    }
}

fn rate(rate: Option<f64>) -> String {
    rate.map_or("-".to_owned(), |rate| format!("{rate:.0}/s"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    }
}

fn summary(databases: &[&'static str], deliveries: usize) -> String {
    let mut out = format!(
        "\nB-drain summary: a backlog of {deliveries} deliveries, medians of the measured drains \
         (deliveries/s to the last handler run; 'drained': to every delivery completed); \
         target tidings/sqlx >= 0.80x, and >= 10000/s on PostgreSQL\n"
    );
    for &database in databases {
        for shape in [Shape::Hot, Shape::Spread] {
            let ours = figures((database, shape, Arm::Tidings));
            let theirs = figures((database, shape, Arm::Sqlx));
            let _ = writeln!(
                out,
                "B-drain {database} {}: tidings {} sqlx loop {} ratio {} | drained: tidings {} \
                 sqlx loop {} ratio {} | drains {}/{}, duplicates {}/{}, never run {}/{}",
                shape.label(),
                rate(ours.rate),
                rate(theirs.rate),
                ratio(ours.rate, theirs.rate),
                rate(ours.drained),
                rate(theirs.drained),
                ratio(ours.drained, theirs.drained),
                ours.runs,
                theirs.runs,
                ours.duplicates,
                theirs.duplicates,
                ours.missing,
                theirs.missing,
            );
        }
    }
    if databases.contains(&"PostgreSQL") {
        for shape in [Shape::Hot, Shape::Spread] {
            let one = figures(("PostgreSQL", shape, Arm::Tidings));
            let two = figures(("PostgreSQL", shape, Arm::TidingsTwo));
            let _ = writeln!(
                out,
                "B9 PostgreSQL {}: 1 instance {} 2 instances {} ratio {} | drained: {} {} | \
                 drains {}, run twice {}, never run {}",
                shape.label(),
                rate(one.rate),
                rate(two.rate),
                ratio(two.rate, one.rate),
                rate(one.drained),
                rate(two.drained),
                two.runs,
                two.duplicates,
                two.missing,
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.

fn drains(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    database: &Database,
    deliveries: usize,
) {
    for shape in [Shape::Hot, Shape::Spread] {
        let mut group = c.benchmark_group(format!("B-drain {} {}", database.name(), shape.label()));
        group
            .throughput(Throughput::Elements(deliveries as u64))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(SAMPLES)
            // One drain of warm-up; criterion then takes one drain per sample, however long.
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(1));
        for &arm in database.arms() {
            let key = (database.name(), shape, arm);
            group.bench_function(BenchmarkId::new(arm.name(), deliveries), |b| {
                b.to_async(runtime).iter_custom(|iters| async move {
                    let mut time = Duration::ZERO;
                    for _ in 0..iters {
                        let drain = database.drain(arm, shape, deliveries).await;
                        assert_eq!(
                            drain.missing,
                            0,
                            "{} {} {}: every delivery runs",
                            database.name(),
                            shape.label(),
                            arm.name()
                        );
                        note_run(key, drain);
                        time += drain.to_last;
                    }
                    time
                })
            });
        }
        group.finish();
    }
}

/// The backlog size: `TIDINGS_DRAIN_DELIVERIES` if set, else `DELIVERIES`, or
/// `SMOKE_DELIVERIES` in the smoke run.
fn deliveries(measuring: bool) -> usize {
    if !measuring {
        return SMOKE_DELIVERIES;
    }
    match std::env::var("TIDINGS_DRAIN_DELIVERIES") {
        Ok(value) => {
            let deliveries: usize = value.parse().expect("TIDINGS_DRAIN_DELIVERIES is a number");
            assert!(
                deliveries > 0 && deliveries <= DELIVERIES && deliveries.is_multiple_of(4),
                "TIDINGS_DRAIN_DELIVERIES is a multiple of 4, at most {DELIVERIES}"
            );
            deliveries
        }
        Err(_) => DELIVERIES,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; without it criterion runs each benchmark once, as a test.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let deliveries = deliveries(measuring);
    if !measuring {
        println!("smoke run (pass --bench, as `cargo bench` does, for the figures)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a multi-thread runtime");
    let mut criterion = Criterion::default().configure_from_args();
    let mut databases = Vec::new();

    let dir = std::env::temp_dir().join(format!("tidings-bench-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the temporary directory is created");
    let sqlite = Database::Sqlite(dir.clone());
    drains(&mut criterion, &runtime, &sqlite, deliveries);
    databases.push(sqlite.name());
    let _ = std::fs::remove_dir_all(&dir);

    let pools = runtime.block_on(async {
        let first = support::postgres(8).await?;
        let second = support::postgres(8).await?;
        Some([first, second])
    });
    if let Some(pools) = pools {
        let postgres = Database::Postgres(pools);
        drains(&mut criterion, &runtime, &postgres, deliveries);
        databases.push(postgres.name());
    }

    criterion.final_summary();
    println!("{}", summary(&databases, deliveries));
}
