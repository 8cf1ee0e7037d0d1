//! What the durable outbox costs a use case's transaction (B3: 1 event, B4: 10 events).
//!
//! One use case's transaction inserts one aggregate row (`items`), records 1 or 10 domain
//! events (each with exactly one handler, so one delivery row each), and commits. The arms, on
//! the same connection and the same tables:
//!
//! - `publish_in`: each event through [`DomainEvents::publish_in`], as a user of tidings does.
//! - `raw`: the same rows written by hand into the store's own `tidings_deliveries` table, one
//!   `INSERT ... VALUES` per event as the store writes one statement per event, with the same
//!   column values (a new UUIDv7 envelope, a `traceparent`, the JSON payload, the handler's
//!   name, `due_at`): what a hand-written outbox costs.
//! - `raw+notify` (PostgreSQL only): the raw `INSERT` with a `pg_notify` in the same statement,
//!   as the store sends one per event: the difference to `raw` is the cost of the wake-up, the
//!   rest of the difference to `publish_in` is tidings' own (its Rust code, and the shape of its
//!   statement: `INSERT ... SELECT ... FROM UNNEST($handlers)` in a CTE).
//!
//! On SQLite the store is [`SqliteStore::open`] on a WAL file in a temporary directory; the use
//! case's transactions come from a separate `SqlitePool` on the same file (WAL,
//! `synchronous = FULL`, `BEGIN IMMEDIATE` as the store's documentation asks), as an application
//! opens its own. On PostgreSQL (`DATABASE_URL`; skipped, with a line saying so, when it is unset
//! or does not answer) the store is in the `bench_outbox` schema, dropped and re-created at the
//! start. The apps are never started: no dispatcher competes for the database, only the write
//! path is measured. Every commit is durable (an fsync), so the figures are mostly the disk's.
//!
//! Before measuring, each arm runs `WARM_TRANSACTIONS` unmeasured transactions, so that the WAL
//! and the tables have grown to their steady size. Every criterion sample starts with empty
//! `tidings_deliveries` and `items` tables (emptied outside the timing). Sampling is flat, so the
//! criterion columns of the summary (transactions over time of the measurement samples) are
//! criterion's means.
//!
//! Criterion measures one arm after the other, and on a VM the fsync time drifts by tens of
//! percent over seconds: swapping the order of the arms swapped the verdict. So the ratio is
//! taken from an interleaved comparison, run after criterion's: `ROUNDS` rounds of `BATCH`
//! transactions per arm, the arm that goes first rotating, the tables emptied between rounds.
//!
//! Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p tidings-benches
//! --bench outbox -- --warm-up-time 1 --measurement-time 5`.
#![allow(missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{PgConnection, SqliteConnection};
use tidings::prelude::*;
use tidings::{PostgresStore, SqliteStore};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// The event, its one handler, and the rows.

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ItemStocked {
    pub sku: String,
    pub quantity: i64,
}

/// The event's only handler: never run here (no app is started), it gives each event one
/// delivery.
#[handles]
fn note_stock(event: &ItemStocked) {
    black_box(event.quantity);
}

/// The PostgreSQL schema of this bench.
const SCHEMA: &str = "bench_outbox";

/// The context of the apps, the `source` of their events.
const CONTEXT: &str = "bench";

/// Events per transaction: B3, then B4.
const EVENT_COUNTS: [usize; 2] = [1, 10];

/// Transactions of each arm run before the benchmarks, unmeasured, to grow the files.
const WARM_TRANSACTIONS: u64 = 1_000;

/// Samples per benchmark, all of the same number of transactions (flat sampling).
const SAMPLES: usize = 30;

/// The columns the store writes for one delivery, in the order both raw statements bind them.
macro_rules! delivery_columns {
    () => {
        "kind, handler, due_at, event_id, name, version, occurred_at, correlation_id, \
         causation_id, traceparent, source, payload"
    };
}

const SQLITE_RAW: &str = concat!(
    "INSERT INTO tidings_deliveries (",
    delivery_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);

/// On PostgreSQL the store takes `due_at` from the database's clock, `now()`.
const POSTGRES_RAW: &str = concat!(
    "INSERT INTO bench_outbox.tidings_deliveries (",
    delivery_columns!(),
    ") VALUES ($1, $2, now(), $3, $4, $5, $6, $7, $8, $9, $10, $11)"
);

/// The raw `INSERT` with the store's wake-up in the same statement.
const POSTGRES_RAW_NOTIFY: &str = concat!(
    "WITH inserted AS (INSERT INTO bench_outbox.tidings_deliveries (",
    delivery_columns!(),
    ") VALUES ($1, $2, now(), $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING 1) \
     SELECT pg_notify($12, 'd') FROM inserted"
);

/// The `k`-th event of transaction `seq`.
fn event(seq: u64, k: usize) -> ItemStocked {
    ItemStocked {
        sku: format!("sku-{seq}"),
        quantity: i64::try_from(k).expect("a small count"),
    }
}

/// What the store computes for one event: a new envelope, a trace, the JSON payload.
struct RawEvent {
    meta: EventMeta,
    traceparent: String,
    due_at: chrono::DateTime<Utc>,
}

impl RawEvent {
    fn new() -> Self {
        let meta = EventMeta::new(CONTEXT);
        let traceparent = format!(
            "00-{:032x}-{:016x}-01",
            Uuid::now_v7().as_u128(),
            meta.id.as_u128() as u64 | 1
        );
        RawEvent {
            meta,
            traceparent,
            due_at: Utc::now(),
        }
    }
}

/// The hand-written delivery of `event` on SQLite: the store's columns, its text encodings.
async fn raw_sqlite(connection: &mut SqliteConnection, event: &ItemStocked, handler: &str) {
    let raw = RawEvent::new();
    let payload = serde_json::to_string(event).expect("the event encodes as JSON");
    sqlx::query(SQLITE_RAW)
        .bind("domain")
        .bind(handler)
        .bind(raw.due_at.timestamp_micros())
        .bind(raw.meta.id.to_string())
        .bind(<ItemStocked as Event>::NAME)
        .bind(1_i64)
        .bind(raw.meta.occurred_at.to_rfc3339())
        .bind(raw.meta.correlation_id.to_string())
        .bind(raw.meta.causation_id.map(|id| id.to_string()))
        .bind(raw.traceparent)
        .bind(raw.meta.source)
        .bind(payload)
        .execute(connection)
        .await
        .expect("the raw delivery is inserted");
}

/// The hand-written delivery of `event` on PostgreSQL, with the store's notification if
/// `notify`.
async fn raw_postgres(
    connection: &mut PgConnection,
    event: &ItemStocked,
    handler: &str,
    notify: bool,
) {
    let raw = RawEvent::new();
    let query = sqlx::query(if notify {
        POSTGRES_RAW_NOTIFY
    } else {
        POSTGRES_RAW
    })
    .bind("domain")
    .bind(handler)
    .bind(raw.meta.id)
    .bind(<ItemStocked as Event>::NAME)
    .bind(1_i32)
    .bind(raw.meta.occurred_at)
    .bind(raw.meta.correlation_id)
    .bind(raw.meta.causation_id)
    .bind(raw.traceparent)
    .bind(raw.meta.source)
    .bind(Json(event));
    let query = if notify {
        query.bind(format!("tidings_{SCHEMA}"))
    } else {
        query
    };
    query
        .execute(connection)
        .await
        .expect("the raw delivery is inserted");
}

// ---------------------------------------------------------------------------------------------
// The two databases.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Arm {
    PublishIn,
    Raw,
    RawNotify,
}

impl Arm {
    fn name(self) -> &'static str {
        match self {
            Arm::PublishIn => "publish_in",
            Arm::Raw => "raw",
            Arm::RawNotify => "raw+notify",
        }
    }
}

enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One database with an app on it (never started) and the use case's pool.
struct Bench {
    database: Database,
    publisher: DomainEvents,
    /// The handler's name, as the store writes it in `tidings_deliveries.handler`.
    handler: String,
}

impl Bench {
    fn name(&self) -> &'static str {
        match self.database {
            Database::Sqlite(_) => "SQLite",
            Database::Postgres(_) => "PostgreSQL",
        }
    }

    fn arms(&self) -> &'static [Arm] {
        match self.database {
            Database::Sqlite(_) => &[Arm::PublishIn, Arm::Raw],
            Database::Postgres(_) => &[Arm::PublishIn, Arm::Raw, Arm::RawNotify],
        }
    }

    /// Empties the deliveries and the aggregates.
    async fn clear(&self) {
        match &self.database {
            Database::Sqlite(pool) => {
                sqlx::raw_sql("DELETE FROM tidings_deliveries; DELETE FROM items")
                    .execute(pool)
                    .await
                    .expect("the SQLite tables are emptied");
            }
            Database::Postgres(pool) => {
                sqlx::raw_sql(
                    "DELETE FROM bench_outbox.tidings_deliveries; DELETE FROM bench_outbox.items",
                )
                .execute(pool)
                .await
                .expect("the PostgreSQL tables are emptied");
            }
        }
    }

    /// Brings the files to their steady size before anything is measured, so that the arm
    /// measured first does not pay alone for growing the WAL and the tables.
    async fn warm(&self) {
        for seq in 0..WARM_TRANSACTIONS {
            for &arm in self.arms() {
                self.transaction(arm, 10, seq).await;
            }
        }
        self.clear().await;
    }

    /// One use case's transaction: the aggregate row `seq` and `events` events, committed.
    async fn transaction(&self, arm: Arm, events: usize, seq: u64) {
        match &self.database {
            Database::Sqlite(pool) => {
                // As `SqliteStore`'s documentation asks of a pool of the application's own.
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .expect("a SQLite transaction begins");
                sqlx::query("INSERT INTO items (sku, quantity) VALUES (?, ?)")
                    .bind(format!("sku-{seq}"))
                    .bind(i64::try_from(events).expect("a small count"))
                    .execute(&mut *tx)
                    .await
                    .expect("the aggregate row is inserted");
                for k in 0..events {
                    let event = event(seq, k);
                    match arm {
                        Arm::PublishIn => {
                            self.publisher
                                .publish_in(&mut tx, event)
                                .await
                                .expect("the event is recorded");
                        }
                        Arm::Raw | Arm::RawNotify => {
                            raw_sqlite(&mut tx, &event, &self.handler).await
                        }
                    }
                }
                tx.commit().await.expect("the SQLite transaction commits");
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("a PostgreSQL transaction begins");
                sqlx::query("INSERT INTO bench_outbox.items (sku, quantity) VALUES ($1, $2)")
                    .bind(format!("sku-{seq}"))
                    .bind(i64::try_from(events).expect("a small count"))
                    .execute(&mut *tx)
                    .await
                    .expect("the aggregate row is inserted");
                for k in 0..events {
                    let event = event(seq, k);
                    match arm {
                        Arm::PublishIn => {
                            self.publisher
                                .publish_in(&mut tx, event)
                                .await
                                .expect("the event is recorded");
                        }
                        Arm::Raw => raw_postgres(&mut tx, &event, &self.handler, false).await,
                        Arm::RawNotify => raw_postgres(&mut tx, &event, &self.handler, true).await,
                    }
                }
                tx.commit()
                    .await
                    .expect("the PostgreSQL transaction commits");
            }
        }
    }
}

/// The name the store records for the event's handler.
fn handler_name() -> String {
    let mut handlers = tidings::registry().handlers_of::<ItemStocked>();
    let handler = handlers.next().expect("`note_stock` is registered");
    assert!(handlers.next().is_none(), "one handler per event");
    handler.path()
}

fn app(store: impl tidings::store::Store) -> Tidings {
    Tidings::builder(CONTEXT)
        .store(store)
        .build()
        .expect("the bench's handler needs nothing")
}

/// The temporary directory of the SQLite file.
fn sqlite_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tidings-bench-outbox-{}", std::process::id()))
}

async fn sqlite() -> Bench {
    let dir = sqlite_dir();
    std::fs::create_dir_all(&dir).expect("the temporary directory is created");
    let path = dir.join("outbox.db");
    let store = SqliteStore::open(&path)
        .await
        .expect("the SQLite store opens");
    // The application's own pool on the store's file, as a user opens it.
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("the application's SQLite pool opens");
    sqlx::query(
        "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, sku TEXT NOT NULL, \
         quantity INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("the aggregate table is created");
    Bench {
        database: Database::Sqlite(pool),
        publisher: app(store).domain_events(),
        handler: handler_name(),
    }
}

/// The PostgreSQL bench, or `None` (and why, printed) without a database.
async fn postgres() -> Option<Bench> {
    let pool = support::postgres(4).await?;
    support::drop_schema(&pool, SCHEMA).await;
    let store = PostgresStore::connect_with(pool.clone(), SCHEMA)
        .await
        .expect("the PostgreSQL store connects");
    sqlx::query(
        "CREATE TABLE bench_outbox.items (id BIGSERIAL PRIMARY KEY, sku TEXT NOT NULL, \
         quantity BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("the aggregate table is created");
    Some(Bench {
        database: Database::Postgres(pool),
        publisher: app(store).domain_events(),
        handler: handler_name(),
    })
}

// ---------------------------------------------------------------------------------------------
// What each benchmark measured, for the summary.

/// `(database, events, arm)`.
type Key = (&'static str, usize, Arm);

/// Every timed run of each benchmark, `(transactions, time)`, warm-up included.
static RUNS: Mutex<BTreeMap<Key, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());

fn note_run(key: Key, transactions: u64, time: Duration) {
    RUNS.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(key)
        .or_default()
        .push((transactions, time));
}

/// Transactions per second over the last `SAMPLES` runs of `key` (criterion's measurement
/// samples; the runs before them are its warm-up), if it was measured.
fn criterion_throughput(key: Key) -> Option<f64> {
    let runs = RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let runs = runs.get(&key)?;
    let samples = runs.get(runs.len().checked_sub(SAMPLES)?..)?;
    let transactions: u64 = samples.iter().map(|(n, _)| n).sum();
    let time: Duration = samples.iter().map(|(_, t)| *t).sum();
    Some(transactions as f64 / time.as_secs_f64())
}

/// The interleaved comparison of one database and number of events: transactions per second
/// of each arm.
struct Interleaved {
    database: &'static str,
    events: usize,
    throughput: BTreeMap<Arm, f64>,
}

/// Rounds of the interleaved comparison.
const ROUNDS: u64 = 100;

/// Transactions of each arm in one round of the interleaved comparison.
const BATCH: u64 = 10;

impl Bench {
    /// The arms measured in turns, `BATCH` transactions each, the first arm rotating from one
    /// round to the next: the disk's drift (fsync times vary by tens of percent over seconds on
    /// this kind of machine) falls on every arm alike, which criterion's one-arm-after-the-other
    /// cannot promise.
    async fn interleaved(&self, events: usize) -> Interleaved {
        let arms = self.arms();
        let mut time = vec![Duration::ZERO; arms.len()];
        for round in 0..ROUNDS {
            self.clear().await;
            for turn in 0..arms.len() {
                let arm = (round as usize + turn) % arms.len();
                let start = Instant::now();
                for seq in 0..BATCH {
                    self.transaction(arms[arm], events, round * BATCH + seq)
                        .await;
                }
                time[arm] += start.elapsed();
            }
        }
        Interleaved {
            database: self.name(),
            events,
            throughput: arms
                .iter()
                .zip(time)
                .map(|(&arm, time)| (arm, (ROUNDS * BATCH) as f64 / time.as_secs_f64()))
                .collect(),
        }
    }
}

fn summary(interleaved: &[Interleaved]) -> String {
    let rate = |rate: Option<f64>| rate.map_or("-".to_owned(), |rate| format!("{rate:.0}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    };
    let mut out = String::from(
        "\nB3/B4 summary: transactions/s (each: 1 aggregate row + N events, committed); \
         target publish_in/raw >= 0.90x\n",
    );
    let _ = writeln!(
        out,
        "{:<11} {:>6} | {:>10} {:>10} {:>10} {:>7} | {:>10} {:>10} {:>10} {:>7} {:>9}",
        "", "", "criterion:", "", "", "", "interleaved:", "", "", "", ""
    );
    let _ = writeln!(
        out,
        "{:<11} {:>6} | {:>10} {:>10} {:>10} {:>7} | {:>10} {:>10} {:>10} {:>7} {:>9}",
        "database",
        "events",
        "publish_in",
        "raw",
        "raw+notify",
        "ratio",
        "publish_in",
        "raw",
        "raw+notify",
        "ratio",
        "vs notify"
    );
    for row in interleaved {
        let of = |arm| criterion_throughput((row.database, row.events, arm));
        let mine = |arm| row.throughput.get(&arm).copied();
        let _ = writeln!(
            out,
            "{:<11} {:>6} | {:>10} {:>10} {:>10} {:>7} | {:>10} {:>10} {:>10} {:>7} {:>9}",
            row.database,
            row.events,
            rate(of(Arm::PublishIn)),
            rate(of(Arm::Raw)),
            rate(of(Arm::RawNotify)),
            ratio(of(Arm::PublishIn), of(Arm::Raw)),
            rate(mine(Arm::PublishIn)),
            rate(mine(Arm::Raw)),
            rate(mine(Arm::RawNotify)),
            ratio(mine(Arm::PublishIn), mine(Arm::Raw)),
            ratio(mine(Arm::PublishIn), mine(Arm::RawNotify)),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.

/// Criterion's benchmarks of `bench`, then (unless criterion only tests that they run) the
/// interleaved comparison.
fn outbox(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    bench: &Bench,
    measuring: bool,
) -> Vec<Interleaved> {
    if measuring {
        runtime.block_on(bench.warm());
    }
    for events in EVENT_COUNTS {
        let label = if events == 1 { "B3" } else { "B4" };
        let mut group = c.benchmark_group(format!(
            "{label} {} aggregate + {events} event(s) per transaction",
            bench.name()
        ));
        group
            .throughput(Throughput::Elements(1))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(SAMPLES);
        for &arm in bench.arms() {
            let key = (bench.name(), events, arm);
            group.bench_function(BenchmarkId::new(arm.name(), events), |b| {
                b.to_async(runtime).iter_custom(|transactions| async move {
                    bench.clear().await;
                    let start = Instant::now();
                    for seq in 0..transactions {
                        bench.transaction(arm, events, seq).await;
                    }
                    let time = start.elapsed();
                    note_run(key, transactions, time);
                    time
                })
            });
        }
        group.finish();
    }
    if !measuring {
        return Vec::new();
    }
    EVENT_COUNTS
        .iter()
        .map(|&events| runtime.block_on(bench.interleaved(events)))
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; without it criterion runs each benchmark once, as a test.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a multi-thread runtime");
    let mut criterion = Criterion::default().configure_from_args();

    let sqlite = runtime.block_on(sqlite());
    let mut interleaved = outbox(&mut criterion, &runtime, &sqlite, measuring);
    drop(sqlite);
    let _ = std::fs::remove_dir_all(sqlite_dir());

    if let Some(postgres) = runtime.block_on(postgres()) {
        interleaved.extend(outbox(&mut criterion, &runtime, &postgres, measuring));
    }

    criterion.final_summary();
    if measuring {
        println!("{}", summary(&interleaved));
    }
}
