//! B5: how long after a commit the event's handler starts, at a fixed offered rate.
//!
//! A publisher task records one `Timed { seq }` event per tick of a tokio interval (10 ms for
//! 100 events/s, 1 ms for 1,000 events/s, `MissedTickBehavior::Burst`, for 3 s), and stamps
//! `Instant::now()` right after the commit returns (after `publish(..).await` for the
//! non-transactional case). The event's only handler stamps `Instant::now()` as it starts, in a
//! shared map by `seq` (`Dep<Starts>`). Latency = handler start - commit; the percentiles are
//! nearest-rank over the sorted samples. The publisher is sequential: when a commit takes
//! longer than a tick, the interval bursts to catch up, and the rate actually achieved is
//! printed beside the offered one.
//!
//! Cases:
//!
//! - in-process (SQLite): a started app on a [`SqliteStore`] file (WAL, `synchronous = FULL`),
//!   events recorded with `publish` (the store's own transaction), with `publish_in` in a
//!   transaction of the store's pool (`store.pool()`, one connection, as the store's
//!   documentation asks: the application and the store take turns on it), and with
//!   `publish_in` in a transaction of a separate `SqlitePool` on the same file (`BEGIN
//!   IMMEDIATE`), then committed. The publisher wakes the dispatcher directly.
//! - LISTEN/NOTIFY (PostgreSQL, `DATABASE_URL`; skipped when it is unset or does not answer):
//!   app A is started with a poll interval of one hour, so that only the commit's `NOTIFY` can
//!   wake it; app B, on the same schema and never started, records the events with
//!   `publish_in` in transactions of the pool, as another process would. One more row has A
//!   publish with `publish_in` itself (one process on PostgreSQL).
//! - polling (SQLite): app A is started with a poll interval of 100 ms; app B, another store on
//!   the same file, never started, records the events with `publish_in`. Nothing wakes A: it
//!   finds the work only when its poll interval elapses.
//!
//! Each run has a fresh SQLite file, or a fresh PostgreSQL schema (`bench_latency_<n>`, dropped
//! before and after). After the cases, a diagnostic line per database: the dispatcher's
//! capacity, deliveries per second that a started app alone drains from a backlog of
//! `BACKLOG` events (up to the start of the last handler): the rate beyond which an offered
//! load queues.
//!
//! The whole run is on a multi-thread tokio runtime (one worker per core). Without `--bench`
//! (as `cargo test --benches` runs it) it does a short smoke run of every case instead.
//!
//! Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p tidings-benches
//! --bench latency`.
#![allow(missing_docs)]

mod support;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tidings::prelude::*;
use tidings::{PostgresStore, SqliteStore};
use tokio::time::MissedTickBehavior;

// ---------------------------------------------------------------------------------------------
// The event and its handler.

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Timed {
    pub seq: u64,
}

/// When the handler started, per `seq`.
#[derive(Debug, Default)]
pub struct Starts(Mutex<HashMap<u64, Instant>>);

impl Starts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The event's only handler: notes when it started (the first time, should it run again).
#[handles]
fn stamp(event: &Timed, starts: Dep<Starts>) {
    let now = Instant::now();
    starts.lock().entry(event.seq).or_insert(now);
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// The prefix of the PostgreSQL schemas of this bench: each run has a fresh one, so that no
/// run works on the dead rows of another (a queue table bloated by the deliveries of earlier
/// runs slowed the dispatcher's claims about fourfold until it was vacuumed).
const SCHEMA: &str = "bench_latency";

/// The poll interval of the polling case.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long to wait for the last handlers once publishing is done.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// A started app on SQLite, `publish`.
    SqlitePublish,
    /// A started app on SQLite, `publish_in` on the store's pool, as its documentation asks.
    SqliteStorePool,
    /// A started app on SQLite, `publish_in` on a separate pool.
    SqlitePublishIn,
    /// App A started on PostgreSQL (polls hourly), app B records with `publish_in`.
    PostgresNotify,
    /// A started app on PostgreSQL records with `publish_in` itself.
    PostgresPublishIn,
    /// App A started on SQLite (polls every `POLL_INTERVAL`), app B records with `publish_in`.
    SqlitePolling,
}

/// What a case's figures are held to.
enum Target {
    /// In-process wake-up: p50 < 1 ms, p99 < 10 ms.
    InProcess,
    /// LISTEN/NOTIFY: p50 < 5 ms, p99 < 10 ms.
    Notify,
    /// Polling: no target; it is about half the poll interval.
    None,
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::SqlitePublish => "in-process publish (SQLite)".to_owned(),
            Case::SqliteStorePool => "in-process publish_in (SQLite, store's pool)".to_owned(),
            Case::SqlitePublishIn => "in-process publish_in (SQLite, own pool)".to_owned(),
            Case::PostgresNotify => "LISTEN/NOTIFY publish_in by B (PostgreSQL)".to_owned(),
            Case::PostgresPublishIn => "in-process publish_in (PostgreSQL)".to_owned(),
            Case::SqlitePolling => format!(
                "polling {} ms, publish_in by B (SQLite)",
                POLL_INTERVAL.as_millis()
            ),
        }
    }

    fn target(self) -> Target {
        match self {
            Case::SqlitePublish | Case::SqliteStorePool | Case::SqlitePublishIn => {
                Target::InProcess
            }
            Case::PostgresNotify | Case::PostgresPublishIn => Target::Notify,
            Case::SqlitePolling => Target::None,
        }
    }

    fn on_postgres(self) -> bool {
        matches!(self, Case::PostgresNotify | Case::PostgresPublishIn)
    }
}

/// How the events are recorded.
enum Publisher {
    /// `publish`: the store's own transaction.
    Plain(DomainEvents),
    /// `publish_in` on a transaction of a SQLite pool: the store's or the application's own.
    Sqlite(DomainEvents, SqlitePool),
    /// `publish_in` on a transaction of the PostgreSQL pool.
    Postgres(DomainEvents, PgPool),
}

impl Publisher {
    /// Records event `seq`; returns when its commit returned.
    async fn publish(&self, seq: u64) -> Instant {
        let event = Timed { seq };
        match self {
            Publisher::Plain(events) => {
                events.publish(event).await.expect("the event is recorded");
            }
            Publisher::Sqlite(events, pool) => {
                // As `SqliteStore`'s documentation asks of a pool of the application's own (on
                // the store's pool, with its one connection, it changes nothing).
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .expect("a SQLite transaction begins");
                events
                    .publish_in(&mut tx, event)
                    .await
                    .expect("the event is recorded");
                tx.commit().await.expect("the SQLite transaction commits");
            }
            Publisher::Postgres(events, pool) => {
                let mut tx = pool.begin().await.expect("a PostgreSQL transaction begins");
                events
                    .publish_in(&mut tx, event)
                    .await
                    .expect("the event is recorded");
                tx.commit()
                    .await
                    .expect("the PostgreSQL transaction commits");
            }
        }
        Instant::now()
    }
}

/// Where the cases keep their SQLite files.
fn sqlite_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tidings-bench-latency-{}", std::process::id()))
}

/// The application's own pool on a store's file, as a user opens it.
async fn user_sqlite_pool(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("the application's SQLite pool opens")
}

fn app(store: impl tidings::store::Store, poll_interval: Duration) -> Tidings {
    Tidings::builder("bench")
        .store(store)
        .provide(Starts::default())
        .poll_interval(poll_interval)
        .build()
        .expect("the bench's handler needs `Starts`, provided")
}

/// A case, ready: the started handling app and how to record its events.
struct Setup {
    handling: Tidings,
    running: Running,
    publisher: Publisher,
}

async fn setup(case: Case, file: PathBuf, postgres: Option<PgPool>, schema: &str) -> Setup {
    let default_poll = Duration::from_secs(1);
    let (handling, publisher) = match case {
        Case::SqlitePublish | Case::SqliteStorePool | Case::SqlitePublishIn => {
            let store = SqliteStore::open(&file)
                .await
                .expect("the SQLite store opens");
            let pool = store.pool().clone();
            let handling = app(store, default_poll);
            let events = handling.domain_events();
            let publisher = match case {
                Case::SqlitePublish => Publisher::Plain(events),
                Case::SqliteStorePool => Publisher::Sqlite(events, pool),
                _ => Publisher::Sqlite(events, user_sqlite_pool(&file).await),
            };
            (handling, publisher)
        }
        Case::SqlitePolling => {
            let store = SqliteStore::open(&file)
                .await
                .expect("the SQLite store opens");
            let handling = app(store, POLL_INTERVAL);
            let other = SqliteStore::open(&file)
                .await
                .expect("the second SQLite store opens");
            let recording = app(other, default_poll);
            let publisher =
                Publisher::Sqlite(recording.domain_events(), user_sqlite_pool(&file).await);
            (handling, publisher)
        }
        Case::PostgresNotify | Case::PostgresPublishIn => {
            let pool = postgres.expect("PostgreSQL cases run with a pool");
            let store = PostgresStore::connect_with(pool.clone(), schema)
                .await
                .expect("the PostgreSQL store connects");
            let handling = app(store, Duration::from_secs(3600));
            let events = if case == Case::PostgresNotify {
                let other = PostgresStore::connect_with(pool.clone(), schema)
                    .await
                    .expect("the second PostgreSQL store connects");
                app(other, default_poll).domain_events()
            } else {
                handling.domain_events()
            };
            (handling, Publisher::Postgres(events, pool.clone()))
        }
    };
    let running = handling.start().await.expect("the handling app starts");
    Setup {
        handling,
        running,
        publisher,
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement.

/// The figures of one case at one rate.
struct Figures {
    case: Case,
    rate: u64,
    /// Events published.
    published: usize,
    /// Latencies of the events handled, sorted.
    latencies: Vec<Duration>,
    /// Handlers that started before the publisher's stamp (counted as 0).
    early: usize,
    /// Events published per second, as achieved.
    achieved: f64,
}

impl Figures {
    /// The nearest-rank percentile `p` (0-100).
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    fn missing(&self) -> usize {
        self.published - self.latencies.len()
    }

    /// Whether the figures meet the case's target, if it has one.
    fn verdict(&self) -> &'static str {
        let (p50, p99) = match self.case.target() {
            Target::InProcess => (Duration::from_millis(1), Duration::from_millis(10)),
            Target::Notify => (Duration::from_millis(5), Duration::from_millis(10)),
            Target::None => return "n/a",
        };
        if self.missing() == 0 && self.percentile(50.0) < p50 && self.percentile(99.0) < p99 {
            "met"
        } else {
            "MISSED"
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "B5 {} @{}/s: p50 {:.2} ms p99 {:.2} ms max {:.2} ms (n={}",
            self.case.label(),
            self.rate,
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
            ms(self.max()),
            self.latencies.len(),
        )?;
        if self.missing() > 0 {
            write!(f, ", {} never handled", self.missing())?;
        }
        write!(f, ", achieved {:.0}/s)", self.achieved)
    }
}

/// Runs `case`, set up, at `rate` events per second for `duration`.
async fn measure(case: Case, setup: Setup, rate: u64, duration: Duration) -> Figures {
    let Setup {
        handling,
        running,
        publisher,
    } = setup;
    let starts = handling
        .dependency::<Starts>()
        .expect("the handling app has `Starts`");
    let count = (duration.as_secs_f64() * rate as f64).round() as u64;
    let mut interval =
        tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX));
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut commits = Vec::with_capacity(count as usize);
    let began = Instant::now();
    for seq in 0..count {
        interval.tick().await;
        commits.push(publisher.publish(seq).await);
    }
    let achieved = count as f64 / began.elapsed().as_secs_f64();

    let draining = Instant::now();
    while starts.lock().len() < commits.len() && draining.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running
        .shutdown()
        .await
        .expect("the handling app shuts down");

    let started = starts.lock();
    let mut early = 0;
    let mut latencies: Vec<Duration> = commits
        .iter()
        .zip(0..)
        .filter_map(|(commit, seq)| {
            let start = started.get(&seq)?;
            Some(start.checked_duration_since(*commit).unwrap_or_else(|| {
                early += 1;
                Duration::ZERO
            }))
        })
        .collect();
    latencies.sort_unstable();
    Figures {
        case,
        rate,
        published: commits.len(),
        latencies,
        early,
        achieved,
    }
}

async fn run(full: bool) {
    let (rates, duration): (&[u64], _) = if full {
        (&[100, 1_000], Duration::from_secs(3))
    } else {
        println!("smoke run (pass --bench, as `cargo bench` does, for the figures)");
        (&[100], Duration::from_millis(300))
    };
    let postgres = support::postgres(8).await;
    let dir = sqlite_dir();
    std::fs::create_dir_all(&dir).expect("the temporary directory is created");
    let cases = [
        Case::SqlitePublish,
        Case::SqliteStorePool,
        Case::SqlitePublishIn,
        Case::PostgresNotify,
        Case::PostgresPublishIn,
        Case::SqlitePolling,
    ];
    let mut all = Vec::new();
    let mut schemas = Vec::new();
    for case in cases {
        if case.on_postgres() && postgres.is_none() {
            continue;
        }
        for &rate in rates {
            let file = dir.join(format!("case-{}-{rate}.db", all.len()));
            let schema = format!("{SCHEMA}_{}", all.len());
            if let Some(pool) = postgres.as_ref().filter(|_| case.on_postgres()) {
                support::drop_schema(pool, &schema).await;
                schemas.push(schema.clone());
            }
            // Set up here: the future of `PostgresStore::connect_with` cannot be spawned (its
            // migrator's `Acquire` bound is not general enough for `tokio::spawn`'s `Send`).
            let setup = setup(case, file, postgres.clone(), &schema).await;
            // The publisher runs on a worker, as a request handler of the application would.
            let figures = tokio::spawn(measure(case, setup, rate, duration))
                .await
                .expect("the case ran to its end");
            println!("{figures}");
            all.push(figures);
        }
    }
    let mut capacities = Vec::new();
    if full {
        capacities.push((
            "SQLite",
            capacity(Some(dir.join("capacity.db")), None).await,
        ));
        if let Some(pool) = &postgres {
            let schema = format!("{SCHEMA}_capacity");
            support::drop_schema(pool, &schema).await;
            schemas.push(schema);
            capacities.push(("PostgreSQL", capacity(None, Some(pool.clone())).await));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(pool) = &postgres {
        for schema in &schemas {
            support::drop_schema(pool, schema).await;
        }
    }

    println!(
        "\nB5 commit -> first handler start; targets: p50 < 1 ms in-process, < 5 ms with \
         LISTEN/NOTIFY; p99 < 10 ms; polling has none (poll interval {} ms)",
        POLL_INTERVAL.as_millis()
    );
    println!(
        "{:<44} {:>6} {:>9} {:>6} {:>9} {:>9} {:>9} {:>6} {:>8}",
        "case", "rate/s", "achieved", "n", "p50 ms", "p99 ms", "max ms", "early", "target"
    );
    for figures in &all {
        println!(
            "{:<44} {:>6} {:>9.0} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>8}",
            figures.case.label(),
            figures.rate,
            figures.achieved,
            figures.latencies.len(),
            ms(figures.percentile(50.0)),
            ms(figures.percentile(99.0)),
            ms(figures.max()),
            figures.early,
            figures.verdict(),
        );
    }
    for (database, rate) in capacities {
        println!(
            "dispatcher capacity on {database}: {rate:.0} deliveries/s (a backlog of {BACKLOG} \
             events, one handler, drained by a started app alone)"
        );
    }
}

/// Events recorded before the app starts, to measure how fast its dispatcher drains them.
const BACKLOG: u64 = 2_000;

/// How many deliveries per second a started app runs, with nothing else on the database: a
/// backlog of `BACKLOG` events recorded first, then the app started; the rate is up to the
/// start of the last handler. On SQLite (`file`) or else PostgreSQL (`postgres`).
async fn capacity(file: Option<PathBuf>, postgres: Option<PgPool>) -> f64 {
    let handling = match (file, postgres) {
        (Some(file), _) => app(
            SqliteStore::open(&file)
                .await
                .expect("the SQLite store opens"),
            Duration::from_secs(1),
        ),
        (None, Some(pool)) => app(
            PostgresStore::connect_with(pool, &format!("{SCHEMA}_capacity"))
                .await
                .expect("the PostgreSQL store connects"),
            Duration::from_secs(1),
        ),
        (None, None) => unreachable!("a database to measure"),
    };
    let events = handling.domain_events();
    for seq in 0..BACKLOG {
        events
            .publish(Timed { seq })
            .await
            .expect("the event is recorded");
    }
    let starts = handling
        .dependency::<Starts>()
        .expect("the handling app has `Starts`");
    let began = Instant::now();
    let running = handling.start().await.expect("the app starts");
    while (starts.lock().len() as u64) < BACKLOG && began.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let last = starts.lock().values().max().copied();
    running.shutdown().await.expect("the app shuts down");
    let handled = starts.lock().len();
    let elapsed = last.map_or(DRAIN_TIMEOUT, |last| last - began);
    handled as f64 / elapsed.as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a multi-thread runtime");
    runtime.block_on(run(full));
}
