//! Bounded memory at scale: a started app drains a backlog of 1,000,000 deliveries on SQLite,
//! and the process's resident memory is reported along the way.
//!
//! A [`SqliteStore`] (or a [`PostgresStore`], below) on a fresh file (WAL, `synchronous = FULL`, in a temporary directory)
//! receives `EVENTS` `ParcelScanned` events, each with one no-op `fn` handler (one delivery
//! each), recorded with [`DomainEvents::publish_in`] in transactions of `RECORD_CHUNK` events on
//! the store's pool, before the app starts. The app is then started and drained: the handler
//! counts its runs in a ledger (one atomic add per delivery, by event), which afterwards tells
//! how many deliveries ran twice or never.
//!
//! Memory, read at each step: `VmHWM` (the peak resident set since the process started) and
//! `VmRSS` from `/proc/self/status`, and the Rust heap as a counting global allocator sees it
//! (bytes live now, and their peak). SQLite allocates with the C library's `malloc`, which the
//! counting allocator does not see: resident memory minus the Rust heap is mostly SQLite's page
//! cache, the C heap, the threads' stacks and the program's code. The steps: before the store
//! opens, before the backlog is recorded, after, every tenth of the drain, once
//! the app is settled, and after its shutdown. The ledger (4 bytes per delivery, 3.8 MiB) is
//! written before the first reading, so that it is in every one.
//!
//! Bounded memory means the readings during the drain stay flat while the backlog shrinks from
//! 1,000,000 to 0, and the peak does not scale with the backlog: it is what recording a chunk
//! and claiming a batch take, whatever waits behind them.
//!
//! The progress readings also give the drain's rate over each tenth: a rate that
//! climbs as the backlog shrinks is work per claim that grows with the backlog.
//!
//! `TIDINGS_MILLION_DATABASE=postgres` drains on PostgreSQL instead (`DATABASE_URL`, the schema
//! `bench_million`, dropped before and after), recorded with `publish_in` on the same pool. The
//! readings are still this process's alone; the database's own work shows in one more line: the
//! temporary files PostgreSQL wrote during the drain (`pg_stat_database`, the whole database's,
//! so other sessions' sorts count too), which is where a sort bigger than `work_mem` goes.
//!
//! `TIDINGS_MILLION_DATABASE=memory` drains on the [`InMemoryStore`](tidings::InMemoryStore),
//! the store of an app that names none, the backlog published with [`DomainEvents::publish`].
//! That store keeps its backlog in the process's memory by nature, so the readings show what
//! the backlog weighs there; the rate shows whether a claim's work grows with the backlog.
//!
//! `TIDINGS_MILLION_ANALYZE=1` runs `ANALYZE` on the deliveries once the backlog is recorded,
//! which the store never does: the claims' plans must not depend on statistics, and the option
//! shows that they do not (a claim that read and sorted every row of its handlers took about
//! 2 s per batch of 64 at 1,000,000 rows without statistics, before the claims walked a
//! `(handler, id)` index).
//!
//! Without `--bench` (as `cargo test --benches` runs it) it drains `SMOKE_EVENTS` instead.
//! `TIDINGS_MILLION_EVENTS` sets another backlog size (at most 1,000,000).
//!
//! Run: `cargo bench -p tidings-benches --bench drain_million`, or
//! `TIDINGS_MILLION_DATABASE=postgres DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
//! TIDINGS_MILLION_EVENTS=100000 cargo bench -p tidings-benches --bench drain_million`.
#![allow(missing_docs)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use tidings::prelude::*;
use tidings::{PostgresStore, SqliteStore};

// ---------------------------------------------------------------------------------------------
// The Rust heap, counted.

/// The system allocator, counting the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }

    fn shrank(size: usize) {
        LIVE.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Counting::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Counting::grew(layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            Counting::shrank(layout.size());
            Counting::grew(new_size);
        }
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        Counting::shrank(layout.size());
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Memory readings.

/// The memory of the process at one step, in kB.
struct Reading {
    step: String,
    /// Peak resident set since the start (`VmHWM`).
    hwm: u64,
    /// Resident set now (`VmRSS`).
    rss: u64,
    /// Rust heap live now, and its peak since the start.
    heap: usize,
    heap_peak: usize,
}

/// The value in kB of `field` in `/proc/self/status`.
fn status_kb(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("/proc/self/status has no {field} in kB"))
}

impl Reading {
    fn now(step: impl Into<String>) -> Self {
        let status = std::fs::read_to_string("/proc/self/status")
            .expect("/proc/self/status is readable (Linux)");
        Reading {
            step: step.into(),
            hwm: status_kb(&status, "VmHWM"),
            rss: status_kb(&status, "VmRSS"),
            heap: LIVE.load(Ordering::Relaxed) / 1024,
            heap_peak: PEAK.load(Ordering::Relaxed) / 1024,
        }
    }
}

/// kB (as `/proc` counts them, 1024 bytes) in MiB.
fn mb(kb: impl Into<u64>) -> f64 {
    kb.into() as f64 / 1024.0
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<44} VmHWM {:>7.1} MiB  VmRSS {:>7.1} MiB  Rust heap {:>6.2} MiB (peak {:>6.2} MiB)",
            self.step,
            mb(self.hwm),
            mb(self.rss),
            mb(self.heap as u64),
            mb(self.heap_peak as u64),
        )
    }
}

/// Prints `reading` as it is taken, and keeps it for the summary.
fn note(readings: &mut Vec<Reading>, reading: Reading) {
    println!("{reading}");
    readings.push(reading);
}

// ---------------------------------------------------------------------------------------------
// The event, its handler and the ledger.

/// The deliveries of the backlog.
const EVENTS: usize = 1_000_000;

/// The deliveries of the smoke run.
const SMOKE_EVENTS: usize = 2_000;

/// Events recorded per transaction when the backlog is built.
const RECORD_CHUNK: usize = 10_000;

/// Readings taken during the drain, evenly spaced.
const PROGRESS_READINGS: usize = 10;

/// How long the drain may take before the bench gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(4 * 3_600);

/// How many times each event's handler ran, by `seq`.
static RUNS: [AtomicU32; EVENTS] = [const { AtomicU32::new(0) }; EVENTS];

/// Runs of the handler since the start.
static TOTAL: AtomicUsize = AtomicUsize::new(0);

/// When the last expected run happened.
static LAST: Mutex<Option<Instant>> = Mutex::new(None);

/// The runs expected.
static EXPECTED: AtomicUsize = AtomicUsize::new(usize::MAX);

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParcelScanned {
    pub seq: usize,
}

#[handles]
fn note_scan(event: &ParcelScanned) {
    RUNS[event.seq].fetch_add(1, Ordering::Relaxed);
    if TOTAL.fetch_add(1, Ordering::AcqRel) + 1 == EXPECTED.load(Ordering::Acquire) {
        *LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
    }
}

/// The backlog size: `TIDINGS_MILLION_EVENTS` if set, else `EVENTS`, or `SMOKE_EVENTS` in the
/// smoke run.
fn events(measuring: bool) -> usize {
    if !measuring {
        return SMOKE_EVENTS;
    }
    match std::env::var("TIDINGS_MILLION_EVENTS") {
        Ok(value) => {
            let events: usize = value.parse().expect("TIDINGS_MILLION_EVENTS is a number");
            assert!(
                events > 0 && events <= EVENTS,
                "TIDINGS_MILLION_EVENTS is at most {EVENTS}"
            );
            events
        }
        Err(_) => EVENTS,
    }
}

/// The size in MiB of the SQLite file at `path` and of its WAL.
fn file_sizes(path: &Path) -> (f64, f64) {
    let size = |path: &Path| std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / MIB);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    (size(path), size(Path::new(&wal)))
}

const MIB: f64 = 1024.0 * 1024.0;

/// The PostgreSQL schema of the store, dropped before and after.
const SCHEMA: &str = "bench_million";

/// Where the backlog is kept.
enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL schema, `SCHEMA`.
    Postgres(PgPool),
    /// The in-memory store.
    Memory,
}

impl Database {
    /// `TIDINGS_MILLION_DATABASE`: `sqlite` (the default), `postgres` (on `DATABASE_URL`) or
    /// `memory`.
    async fn chosen() -> Option<Self> {
        match std::env::var("TIDINGS_MILLION_DATABASE").as_deref() {
            Err(_) | Ok("sqlite") => {
                let dir = std::env::temp_dir()
                    .join(format!("tidings-bench-million-{}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("the temporary directory is created");
                Some(Database::Sqlite(dir.join("million.db")))
            }
            Ok("postgres") => {
                let pool = support::postgres(8).await?;
                support::drop_schema(&pool, SCHEMA).await;
                Some(Database::Postgres(pool))
            }
            Ok("memory") => Some(Database::Memory),
            Ok(other) => {
                panic!(
                    "TIDINGS_MILLION_DATABASE is `sqlite`, `postgres` or `memory`, not `{other}`"
                )
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "SQLite",
            Database::Postgres(_) => "PostgreSQL",
            Database::Memory => "in-memory",
        }
    }

    /// The app on a fresh store, and the backlog recorded in it.
    async fn app_with_backlog(&self, events: usize, readings: &mut Vec<Reading>) -> Tidings {
        let (app, recording) = match self {
            Database::Sqlite(path) => {
                let store = SqliteStore::open(path)
                    .await
                    .expect("the SQLite store opens");
                let pool = store.pool().clone();
                let app = builder().store(store).build().expect("the app builds");
                note(readings, Reading::now("before the backlog is recorded"));
                let began = Instant::now();
                record(&app.domain_events(), &pool, events).await;
                let recording = began.elapsed();
                if analyze() {
                    sqlx::query("ANALYZE")
                        .execute(&pool)
                        .await
                        .expect("the file is analyzed");
                }
                (app, recording)
            }
            Database::Postgres(pool) => {
                let store = PostgresStore::connect_with(pool.clone(), SCHEMA)
                    .await
                    .expect("the PostgreSQL store connects");
                let app = builder().store(store).build().expect("the app builds");
                note(readings, Reading::now("before the backlog is recorded"));
                let began = Instant::now();
                record(&app.domain_events(), pool, events).await;
                let recording = began.elapsed();
                if analyze() {
                    sqlx::query("ANALYZE bench_million.tidings_deliveries")
                        .execute(pool)
                        .await
                        .expect("the table is analyzed");
                }
                (app, recording)
            }
            Database::Memory => {
                let app = builder().build().expect("the app builds");
                note(readings, Reading::now("before the backlog is recorded"));
                let began = Instant::now();
                let publisher = app.domain_events();
                for seq in 0..events {
                    publisher
                        .publish(ParcelScanned { seq })
                        .await
                        .expect("the event is recorded");
                }
                (app, began.elapsed())
            }
        };
        let size = match self {
            Database::Sqlite(path) => {
                let (db, wal) = file_sizes(path);
                format!("file {db:.0} MiB, WAL {wal:.0} MiB")
            }
            Database::Postgres(pool) => {
                let bytes: i64 = sqlx::query_scalar(
                    "SELECT pg_total_relation_size('bench_million.tidings_deliveries')",
                )
                .fetch_one(pool)
                .await
                .expect("the table's size is read");
                format!("table and indexes {:.0} MiB", bytes as f64 / MIB)
            }
            Database::Memory => "in the process's memory".to_owned(),
        };
        let how = match self {
            Database::Memory => "one `publish` each".to_owned(),
            _ => format!("in transactions of {RECORD_CHUNK}"),
        };
        println!(
            "recorded {events} deliveries in {:.1} s ({:.0}/s), {how}; {size}",
            recording.as_secs_f64(),
            events as f64 / recording.as_secs_f64()
        );
        note(readings, Reading::now("after the backlog is recorded"));
        app
    }

    /// PostgreSQL's temporary files so far, `(files, bytes)`, over the whole database: what
    /// sorts too big for `work_mem` wrote to disk.
    async fn temp_files(&self) -> Option<(i64, i64)> {
        let Database::Postgres(pool) = self else {
            return None;
        };
        // The statistics of other sessions reach the view within a second or so.
        tokio::time::sleep(Duration::from_secs(2)).await;
        Some(
            sqlx::query_as(
                "SELECT temp_files, temp_bytes FROM pg_stat_database \
                 WHERE datname = current_database()",
            )
            .fetch_one(pool)
            .await
            .expect("the database's statistics are read"),
        )
    }

    async fn remove(&self) {
        match self {
            Database::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Database::Postgres(pool) => support::drop_schema(pool, SCHEMA).await,
            Database::Memory => {}
        }
    }
}

/// Whether to `ANALYZE` the deliveries once the backlog is recorded (`TIDINGS_MILLION_ANALYZE`
/// set, not empty): the store never does, and without statistics the query planners pick other plans for
/// the dispatcher's claim.
fn analyze() -> bool {
    std::env::var_os("TIDINGS_MILLION_ANALYZE").is_some_and(|value| !value.is_empty())
}

fn builder() -> tidings::TidingsBuilder {
    Tidings::builder("parcels")
}

/// Records the backlog of `events` with `publish_in`, in transactions of `RECORD_CHUNK` events
/// on `pool`.
async fn record<DB>(publisher: &DomainEvents, pool: &sqlx::Pool<DB>, events: usize)
where
    DB: sqlx::Database,
    DB::Connection: Any,
{
    for first in (0..events).step_by(RECORD_CHUNK) {
        let mut tx = pool.begin().await.expect("a transaction begins");
        for seq in first..events.min(first + RECORD_CHUNK) {
            publisher
                .publish_in(&mut tx, ParcelScanned { seq })
                .await
                .expect("the event is recorded");
        }
        tx.commit()
            .await
            .expect("the backlog's transaction commits");
    }
}

async fn run(database: Database, events: usize) {
    let mut readings = Vec::new();
    for runs in &RUNS {
        runs.store(0, Ordering::Relaxed);
    }
    EXPECTED.store(events, Ordering::SeqCst);
    note(&mut readings, Reading::now("before the store opens"));
    let app = database.app_with_backlog(events, &mut readings).await;
    let temp_before = database.temp_files().await;

    let began = Instant::now();
    let running = app.start().await.expect("the app starts");
    let progress = (events / PROGRESS_READINGS).max(1);
    let mut next = progress;
    let mut last_lap = (0, began);
    while TOTAL.load(Ordering::SeqCst) < events {
        assert!(
            began.elapsed() < DRAIN_TIMEOUT,
            "only {} of {events} deliveries ran within {DRAIN_TIMEOUT:?}",
            TOTAL.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let total = TOTAL.load(Ordering::SeqCst);
        if total >= next {
            let now = Instant::now();
            let rate = (total - last_lap.0) as f64 / (now - last_lap.1).as_secs_f64();
            last_lap = (total, now);
            note(
                &mut readings,
                Reading::now(format!("drain: {total} run, {rate:.0}/s")),
            );
            next = (total / progress + 1) * progress;
        }
    }
    let last = LAST
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .expect("the last run was stamped");
    running.settle().await;
    let drained = began.elapsed();
    note(&mut readings, Reading::now("after the drain (settled)"));
    running.shutdown().await.expect("the app shuts down");
    drop(app);
    note(&mut readings, Reading::now("after the shutdown"));
    let temp_after = database.temp_files().await;
    database.remove().await;

    let mut duplicates = 0;
    let mut missing = 0;
    for runs in &RUNS[..events] {
        match runs.load(Ordering::SeqCst) {
            0 => missing += 1,
            1 => {}
            n => duplicates += n as usize - 1,
        }
    }

    let to_last = last - began;
    let peak = |at: usize| readings[at].hwm;
    let drain_rss: Vec<u64> = readings
        .iter()
        .filter(|r| r.step.starts_with("drain:"))
        .map(|r| r.rss)
        .collect();
    println!(
        "\ndrain_million summary: {events} deliveries, 1 handler, {}{}; drained in {:.1} s \
         ({:.0}/s to the last handler run, {:.0}/s to settled); run twice {duplicates}, never \
         run {missing}",
        database.name(),
        if analyze() { ", ANALYZEd" } else { "" },
        drained.as_secs_f64(),
        events as f64 / to_last.as_secs_f64(),
        events as f64 / drained.as_secs_f64(),
    );
    println!(
        "peak resident memory (VmHWM): {:.1} MiB before the backlog, {:.1} MiB after recording \
         it, {:.1} MiB after the drain; VmRSS during the drain {:.1}..{:.1} MiB; Rust heap peak \
         {:.2} MiB",
        mb(peak(1)),
        mb(peak(2)),
        mb(readings[readings.len() - 2].hwm),
        mb(drain_rss.iter().copied().min().unwrap_or_default()),
        mb(drain_rss.iter().copied().max().unwrap_or_default()),
        mb(readings[readings.len() - 1].heap_peak as u64),
    );
    if let (Some((files_before, bytes_before)), Some((files_after, bytes_after))) =
        (temp_before, temp_after)
    {
        println!(
            "PostgreSQL temporary files during the drain (the whole database's): {} files, \
             {:.0} MiB",
            files_after - files_before,
            (bytes_after - bytes_before) as f64 / MIB
        );
    }
    assert_eq!(missing, 0, "every delivery ran");
}

fn main() {
    // `cargo bench` passes `--bench`; without it, a smoke run.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let events = events(measuring);
    if !measuring {
        println!("smoke run (pass --bench, as `cargo bench` does, for the figures)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a multi-thread runtime");
    runtime.block_on(async {
        match Database::chosen().await {
            Some(database) => run(database, events).await,
            None => println!("skipping: no PostgreSQL to drain on"),
        }
    });
}
