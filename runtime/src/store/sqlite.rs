//! [`SqliteStore`]: the embedded default, a SQLite file that survives the process.

use std::any::{Any, TypeId};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::MigrateError;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::sql::{
    self, Columns, DEAD_LETTERS, DEFAULT_LEASE, DELIVERIES, OUTBOX, StoredValues, error,
    event_columns, id_param, invalid, kind_name, micros_of, migrator, unreadable,
};
use crate::event::EventKind;
use crate::store::Waiting;
use crate::store::{
    BoxFuture, Completion, DeadLetter, DeadLetterId, Delivery, DeliveryId, ErrorKind,
    IntegrationRow, NewEvent, NewIntegrationRow, Payload, RowId, Store, StoreError, StoredEvent,
};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// A store in a SQLite file (WAL mode, `synchronous = FULL`): deliveries, the integration
/// outbox, the inbox and dead letters survive a crash or a restart. The crate's migrations are
/// applied when it opens (recorded in `_tidings_migrations`, apart from the application's).
///
/// Use cases record domain events in their own transaction on the same file with
/// [`DomainEvents::publish_in`](crate::DomainEvents::publish_in); a handler can take the store's
/// transaction as a `&mut sqlx::Transaction<'_, Sqlite>` parameter.
///
/// SQLite has one writer at a time, and the store keeps one connection. The application's
/// transactions can run on [`pool`](Self::pool), taking turns with the store, or on a pool of
/// its own on the same file (WAL, a busy timeout), where a write waits for the store's up to
/// that timeout; begin those with `pool.begin_with("BEGIN IMMEDIATE")`, so that a transaction
/// that reads before it writes is not refused when the store wrote in between.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tidings::StoreError> {
/// let dir = std::env::temp_dir().join(format!("tidings-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = tidings::SqliteStore::open(dir.join("catalog.db")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    lease: Duration,
    /// The file's store id (`tidings_store`), which `publish_in` checks the caller's file by.
    identity: Arc<str>,
}

/// Why one try at opening the file failed.
enum Opening {
    Connect(sqlx::Error),
    Migrate(MigrateError),
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// Binds an event's columns, in the order of [`event_columns!`].
fn bind_event<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    event: &StoredEvent,
) -> Query<'q, Sqlite, SqliteArguments> {
    query
        .bind(event.meta.id.to_string())
        .bind(event.name.clone())
        .bind(i64::from(event.version))
        .bind(event.meta.occurred_at.to_rfc3339())
        .bind(event.meta.correlation_id.to_string())
        .bind(event.meta.causation_id.map(|id| id.to_string()))
        .bind(event.meta.traceparent.clone())
        .bind(event.meta.source.clone())
        .bind(event.payload.get().to_owned())
}

impl SqliteStore {
    /// Opens (creating it if needed) the SQLite file at `path` and applies the migrations, with
    /// the [`connect_options`](Self::connect_options) of that file.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::connect(Self::connect_options(path)).await
    }

    /// The options the store opens the file at `path` with: created if missing, WAL mode,
    /// `synchronous = FULL` and a busy timeout of 10 s. An application that opens a pool of its
    /// own on the same file takes them, so that both agree on the file's settings.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tidings::SqliteStore;
    ///
    /// let dir = std::env::temp_dir().join(format!("tidings-options-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("catalog.db");
    /// let store = SqliteStore::open(&path).await?;
    /// // The application's own pool on the store's file, with the store's settings.
    /// let pool = sqlx::SqlitePool::connect_with(SqliteStore::connect_options(&path)).await?;
    /// let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    /// sqlx::query("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)")
    ///     .execute(&mut *tx)
    ///     .await?;
    /// tx.commit().await?;
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
    }

    /// Opens a SQLite database by URL, such as `sqlite://catalog.db?mode=rwc`.
    pub async fn connect_url(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(error("invalid SQLite URL"))?
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options).await
    }

    /// Opens the store with `options`: [`connect_options`](Self::connect_options) with
    /// settings of your own, such as a shorter busy timeout, which bounds how long the store
    /// waits for the file's write lock before it reports an error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tidings::StoreError> {
    /// use std::time::Duration;
    /// use tidings::SqliteStore;
    ///
    /// let path = std::env::temp_dir().join(format!("tidings-open-with-{}.db", std::process::id()));
    /// let options = SqliteStore::connect_options(&path).busy_timeout(Duration::from_secs(2));
    /// let store = SqliteStore::open_with(options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        // Processes opening a new file at the same moment race: switching it to WAL takes a
        // lock before the busy timeout applies, and the migrations are applied by whichever
        // gets there first. A try that loses fails on the database; the next one finds the file
        // in WAL mode and the migrations applied. A modified or missing migration is no race.
        let mut tried = 1;
        loop {
            let error = match Self::try_connect(options.clone()).await {
                Ok(store) => return Ok(store),
                Err(error) => error,
            };
            let raced = match &error {
                Opening::Connect(source) => matches!(source, sqlx::Error::Database(_)),
                Opening::Migrate(source) => matches!(
                    source,
                    MigrateError::Execute(_) | MigrateError::ExecuteMigration(..)
                ),
            };
            if !raced || tried == 5 {
                return Err(match error {
                    Opening::Connect(source) => {
                        super::sql::error("could not open the SQLite database")(source)
                    }
                    Opening::Migrate(source) => sql::migration_error(source),
                });
            }
            tokio::time::sleep(Duration::from_millis(20 * tried)).await;
            tried += 1;
        }
    }

    async fn try_connect(options: SqliteConnectOptions) -> Result<Self, Opening> {
        // One connection: SQLite has one writer at a time, and every step here writes. It is
        // in process, with no link to lose: no ping before each use.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::raw_sql(CONNECTION_SETUP).execute(connection).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(Opening::Connect)?;
        migrator(&MIGRATIONS)
            .run(&pool)
            .await
            .map_err(Opening::Migrate)?;
        let identity: String = sqlx::query_scalar("SELECT id FROM tidings_store")
            .fetch_one(&pool)
            .await
            .map_err(Opening::Connect)?;
        Ok(SqliteStore {
            pool,
            lease: DEFAULT_LEASE,
            identity: Arc::from(identity),
        })
    }

    /// How long a claim holds before another process may take the work over: 60 s by default.
    /// Keep it longer than your slowest handler.
    pub fn lease(self, lease: Duration) -> Self {
        SqliteStore { lease, ..self }
    }

    /// The store's connection pool (one connection). Opening a pool of your own on the same file
    /// for the application's transactions lets reads run beside the store.
    ///
    /// The connection keeps its temporary tables, indexes and statement journals in memory
    /// (`temp_store = MEMORY`, whatever the options the store was opened with): so do the
    /// application's statements on it, such as a large sort or a `VACUUM`.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Until when a claim made at `now` (in microseconds) holds.
    fn lease_until(&self, now: i64) -> i64 {
        now.saturating_add(micros_of(self.lease))
    }
}

/// SQLite keeps UUIDs, times and payloads as text, and numbers as 64-bit `INTEGER`s.
impl StoredValues for SqliteRow {
    // UUIDs and times are parsed from the row's own text, not from a copy of it.
    fn uuid(&self, table: &str, column: &str) -> Result<Option<Uuid>, StoreError> {
        let text: Option<&str> = self.try_get(column).map_err(unreadable(table, column))?;
        text.map(|text| parse_uuid(table, column, text)).transpose()
    }

    fn time(&self, table: &str, column: &str) -> Result<DateTime<Utc>, StoreError> {
        let text: &str = self.try_get(column).map_err(unreadable(table, column))?;
        parse_time(table, column, text)
    }

    fn number(&self, table: &str, column: &str) -> Result<u32, StoreError> {
        sql::convert(table, column, self.integer(table, column)?)
    }

    fn payload(&self, table: &str) -> Result<Payload, StoreError> {
        parse_payload(table, self.text(table, "payload")?)
    }
}

/// `text`, read from `table.column`, as the UUID SQLite keeps as text.
fn parse_uuid(table: &str, column: &str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|source| {
        let problem = format_args!("`{text}` is not a UUID");
        invalid(table, column, problem, Some(Box::new(source)))
    })
}

/// `text`, read from `table.column`, as the time SQLite keeps as RFC 3339 text.
fn parse_time(table: &str, column: &str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(time) => Ok(time.with_timezone(&Utc)),
        Err(source) => {
            let problem = format_args!("`{text}` is not an RFC 3339 time");
            Err(invalid(table, column, problem, Some(Box::new(source))))
        }
    }
}

/// `text`, read from `table.payload`, as the payload, JSON text.
fn parse_payload(table: &str, text: String) -> Result<Payload, StoreError> {
    Payload::from_json(text)
        .map_err(|source| invalid(table, "payload", "not JSON", Some(Box::new(source))))
}

/// A transaction of the store's own on its connection, begun and committed in one call to
/// SQLite's thread each, or each with the statements next to it: the dispatcher's steps and the
/// relay's claims and marks.
///
/// Unless `flush`, its commit does not wait for the disk (`synchronous = NORMAL`; the log is
/// written in order, so the next commit that waits, `FULL`, flushes it too): for a claim, a
/// completion that records no integration event, or the relay's mark. Only a power cut or an
/// operating system crash can undo them, never a crash of the process: a claim lost is a claim
/// expired; a completion lost is a delivery run again, as after a crash before its completion
/// (at least once, as always); a row whose mark is lost is published again, with the same event
/// id, a duplicate that the broker's dedupe or the consumer's inbox absorbs. It saves each of
/// them one flush.
///
/// Committed, the connection goes back to the pool with `FULL` again; dropped before (cancelled,
/// or failing), the guard closes the connection, which rolls back what it did not commit,
/// rather than give it back as it is.
struct Write {
    connection: Option<PoolConnection<Sqlite>>,
    flush: bool,
}

impl Write {
    /// Takes the store's connection, for a transaction that the first statement run on it
    /// begins with [`begin_sql`](Self::begin_sql).
    async fn take(pool: &SqlitePool, flush: bool) -> Result<Self, StoreError> {
        let connection = pool
            .acquire()
            .await
            .map_err(error("could not take the store's connection"))?;
        Ok(Write {
            connection: Some(connection),
            flush,
        })
    }

    /// Takes the store's connection and begins.
    async fn begin(pool: &SqlitePool, flush: bool) -> Result<Self, StoreError> {
        let mut write = Self::take(pool, flush).await?;
        write.start().await?;
        Ok(write)
    }

    /// Begins, on its own.
    async fn start(&mut self) -> Result<(), StoreError> {
        sqlx::raw_sql(AssertSqlSafe(self.begin_sql()))
            .execute(self.connection())
            .await
            .map_err(error("could not begin a transaction"))?;
        Ok(())
    }

    /// The statements that begin the transaction.
    fn begin_sql(&self) -> &'static str {
        if self.flush {
            "BEGIN"
        } else {
            "PRAGMA synchronous = NORMAL; BEGIN"
        }
    }

    /// The statements that commit it, and set `synchronous = FULL` again.
    fn commit_sql(&self) -> &'static str {
        if self.flush {
            "COMMIT"
        } else {
            "COMMIT; PRAGMA synchronous = FULL"
        }
    }

    /// Runs `query`, which ends with [`commit_sql`](Self::commit_sql), and gives the
    /// connection back; returns the rows its statements gave. `failed` says what an error
    /// failed to do.
    async fn run_and_commit(
        mut self,
        query: Query<'_, Sqlite, SqliteArguments>,
        failed: &'static str,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        // Every row, not one: a fetch that stops at the first row would not run the commit.
        let rows = query
            .fetch_all(self.connection())
            .await
            .map_err(error(failed))?;
        drop(self.connection.take());
        Ok(rows)
    }

    fn connection(&mut self) -> &mut SqliteConnection {
        match &mut self.connection {
            Some(connection) => connection,
            None => {
                unreachable!("the connection is taken only by `run_and_commit`, which consumes it")
            }
        }
    }

    /// Commits, sets `synchronous = FULL` again, and gives the connection back.
    async fn commit(self) -> Result<(), StoreError> {
        let commit = sqlx::query(AssertSqlSafe(self.commit_sql()));
        self.run_and_commit(commit, "could not commit a transaction")
            .await
            .map(drop)
    }
}

impl Drop for Write {
    fn drop(&mut self) {
        if let Some(connection) = &mut self.connection {
            connection.close_on_drop();
        }
    }
}

/// The relay's claim of up to `?3` rows (and `{limit}`, the same number: see [`with_limit`]) due
/// at `?2`, until `?1`: the oldest row of each key and every row without a key, if no claim
/// holds it. The candidates come from indexes, so that a claim reads about `?3` rows of each
/// kind whatever the backlog: the heads of the first keys (a skip scan of the key index), the
/// oldest unclaimed rows if they head their key, and the oldest unclaimed rows without a key.
/// Scanning the outbox in order for heads instead reads every row of a busy key behind its head.
const CLAIM_ROWS: &str = "UPDATE tidings_outbox SET claimed_until = ?1, attempts = attempts + 1 \
     WHERE id IN (SELECT o.id FROM tidings_outbox o WHERE o.id IN ( \
       WITH RECURSIVE keys(ordering_key, n) AS ( \
         SELECT * FROM (SELECT k.ordering_key, 1 FROM tidings_outbox k \
                        WHERE k.ordering_key IS NOT NULL ORDER BY k.ordering_key LIMIT 1) \
         UNION ALL \
         SELECT (SELECT k.ordering_key FROM tidings_outbox k \
                 WHERE k.ordering_key > keys.ordering_key ORDER BY k.ordering_key LIMIT 1), \
                keys.n + 1 \
         FROM keys WHERE keys.ordering_key IS NOT NULL AND keys.n < ?3) \
       SELECT (SELECT h.id FROM tidings_outbox h WHERE h.ordering_key = keys.ordering_key \
               ORDER BY h.ordering_key, h.id LIMIT 1) \
       FROM keys WHERE keys.ordering_key IS NOT NULL \
       UNION ALL \
       SELECT r.id FROM (SELECT f.id, f.ordering_key FROM tidings_outbox f \
                         WHERE f.claimed_until IS NULL OR f.claimed_until < ?2 \
                         ORDER BY f.id LIMIT {limit}) r \
       WHERE r.ordering_key IS NULL OR r.id = (SELECT h.id FROM tidings_outbox h \
             WHERE h.ordering_key = r.ordering_key ORDER BY h.ordering_key, h.id LIMIT 1) \
       UNION ALL \
       SELECT * FROM (SELECT u.id FROM tidings_outbox u WHERE u.ordering_key IS NULL \
                      AND (u.claimed_until IS NULL OR u.claimed_until < ?2) \
                      ORDER BY u.id LIMIT {limit})) \
     AND o.due_at <= ?2 AND (o.claimed_until IS NULL OR o.claimed_until < ?2) \
     ORDER BY o.id LIMIT {limit}) RETURNING *";

/// How many handlers one claim statement covers: a statement has a subquery per handler, and
/// SQLite takes at most 500 in one compound select.
const CLAIM_CHUNK: usize = 100;

/// The handlers a claim holds at `$now`: those with a delivery still claimed in the range of
/// their last claim (`tidings_handler_claims`), where every delivery a claim holds is. A few
/// rows of the `(handler, id)` index per handler: no index tells a claimed delivery, so that a
/// claim writes no index entry.
macro_rules! held_handlers {
    ($now:literal) => {
        concat!(
            "SELECT l.handler FROM tidings_handler_claims l WHERE EXISTS (SELECT 1 \
             FROM tidings_deliveries c WHERE c.handler = l.handler \
             AND c.id BETWEEN l.first_id AND l.last_id AND c.claimed_until >= ",
            $now,
            ")"
        )
    };
}

/// The columns of a claimed delivery, in the order the claim writes each into its JSON array
/// ([`ClaimedRow`]): the delivery's own, then the event's (those of `event_columns!`, which
/// [`sql::deliveries`] reads by name, so that a column missing here is an error there).
const CLAIMED_COLUMNS: [&str; 13] = [
    "id",
    "kind",
    "handler",
    "attempts",
    "event_id",
    "name",
    "version",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "traceparent",
    "source",
    "payload",
];

/// A claim is made in three parts, in one transaction:
///
/// 1. `CLAIM_START`: the connection's `temp.tidings_claimed` is emptied;
/// 2. [`candidates_sql`]: the ids of the deliveries to claim go into it, a statement per
///    [`CLAIM_CHUNK`] handlers;
/// 3. [`claimed_sql`]: those deliveries are claimed, each claimed handler's range of ids is
///    recorded (what tells that it is held: see `held_handlers!`), and one row gives them all.
const CLAIM_START: &str = "DELETE FROM temp.tidings_claimed; ";

/// What the store's connection holds beside the file: the table of a claim's ids, and its
/// temporary tables and statement journals in memory (a claim's statement journal would
/// otherwise spill to a temporary file, created and deleted at every step).
const CONNECTION_SETUP: &str = "PRAGMA temp_store = MEMORY; \
    CREATE TEMP TABLE tidings_claimed (id INTEGER PRIMARY KEY)";

/// The statement that puts into `temp.tidings_claimed` the ids of up to `limit` deliveries due
/// at `?{now}` of the `handlers` handlers bound from `?{first}` on. Each handler's deliveries
/// are walked in order on the `(handler, id)` index, and the walks are merged in id order: a
/// compound select ordered as a whole, which SQLite merges row by row and stops at the limit. A
/// claim thus reads about `limit` rows whatever the backlog and the number of handlers, and
/// sorts nothing.
///
/// A held handler's walk looks for the handler `NULL`, and so reads nothing: the held handlers
/// are read once (`MATERIALIZED`: SQLite 3.51 would otherwise read them again in every walk),
/// and a condition on each delivery would instead be tested on every delivery of a held
/// handler's backlog. The index is named: with statistics, SQLite could take the `due_at`
/// index instead and sort a handler's backlog.
fn candidates_sql(now: usize, first: usize, handlers: usize, limit: usize) -> String {
    let per_handler = (first..first + handlers)
        .map(|n| {
            format!(
                "SELECT o.id FROM tidings_deliveries o INDEXED BY tidings_deliveries_handler \
                 WHERE o.handler = (SELECT CASE WHEN ?{n} IN held THEN NULL ELSE ?{n} END) \
                 AND o.due_at <= ?{now} \
                 AND (o.claimed_until IS NULL OR o.claimed_until < ?{now})"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    with_limit(
        &format!(
            concat!(
                "INSERT OR IGNORE INTO temp.tidings_claimed (id) WITH held AS MATERIALIZED (",
                held_handlers!("?{now}"),
                ") SELECT id FROM ({per_handler} ORDER BY 1 LIMIT {{limit}}); "
            ),
            per_handler = per_handler,
            now = now,
        ),
        limit,
    )
}

/// The statements that claim, until `?{lease}`, the deliveries in `temp.tidings_claimed` (the
/// first `limit` of them, for candidates of several statements), record each claimed handler's
/// range, and give the claimed deliveries in one row: a JSON array of [`CLAIMED_COLUMNS`]
/// arrays (in no set order: [`sql::deliveries`] sorts them). One row for the batch, rather than
/// one per delivery: each row that SQLite's thread hands the async side costs a copy of every
/// value, and as often as not a wake-up of the task.
fn claimed_sql(lease: usize, limit: Option<usize>) -> String {
    let trim = match limit {
        Some(limit) => with_limit(
            "DELETE FROM temp.tidings_claimed WHERE id NOT IN \
             (SELECT id FROM temp.tidings_claimed ORDER BY id LIMIT {limit}); ",
            limit,
        ),
        None => String::new(),
    };
    format!(
        "{trim}UPDATE tidings_deliveries SET claimed_until = ?{lease}, \
         attempts = attempts + 1 WHERE id IN temp.tidings_claimed; \
         INSERT INTO tidings_handler_claims (handler, first_id, last_id) \
         SELECT handler, MIN(id), MAX(id) FROM tidings_deliveries \
         WHERE id IN temp.tidings_claimed GROUP BY handler \
         ON CONFLICT (handler) DO UPDATE SET first_id = excluded.first_id, \
         last_id = excluded.last_id; \
         SELECT json_group_array(json_array({columns})) FROM tidings_deliveries \
         WHERE id IN temp.tidings_claimed; ",
        columns = CLAIMED_COLUMNS.join(", "),
    )
}

/// `query` with the names of `handlers` bound after the parameters bound before, for
/// [`candidates_sql`].
fn bind_handlers<'q>(
    mut query: Query<'q, Sqlite, SqliteArguments>,
    handlers: &'q [String],
) -> Query<'q, Sqlite, SqliteArguments> {
    for handler in handlers {
        query = query.bind(handler.as_str());
    }
    query
}

/// A claimed delivery as the claim's JSON gives it: the values of [`CLAIMED_COLUMNS`], in that
/// order. It is read as any row is, by [`sql::deliveries`]; its texts are borrowed from the
/// JSON where they hold no escape.
#[derive(serde::Deserialize)]
struct ClaimedRow<'a>(#[serde(borrow)] Vec<JsonValue<'a>>);

/// A value of a [`ClaimedRow`]: SQLite's `json_array` writes a column's integer as a number, its
/// text as a string and its NULL as `null`.
enum JsonValue<'a> {
    Null,
    Integer(i64),
    Text(std::borrow::Cow<'a, str>),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for JsonValue<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<JsonValue<'a>>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = JsonValue<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer, a string or null")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
                Ok(JsonValue::Integer(value))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
                i64::try_from(value)
                    .map(JsonValue::Integer)
                    .map_err(|_| E::custom(format_args!("{value} is beyond a SQLite integer")))
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                value: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(JsonValue::Text(value.into()))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(JsonValue::Text(value.to_owned().into()))
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(JsonValue::Null)
            }
        }

        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl ClaimedRow<'_> {
    /// The value of `column`; an error for a column the claim does not write.
    fn value(&self, table: &str, column: &str) -> Result<&JsonValue<'_>, StoreError> {
        CLAIMED_COLUMNS
            .iter()
            .position(|name| *name == column)
            .and_then(|at| self.0.get(at))
            .ok_or_else(|| invalid(table, column, "missing from the claim's JSON", None))
    }

    /// The text of `column`, or `None` for NULL.
    fn optional_str(&self, table: &str, column: &str) -> Result<Option<&str>, StoreError> {
        match self.value(table, column)? {
            JsonValue::Text(text) => Ok(Some(text)),
            JsonValue::Null => Ok(None),
            JsonValue::Integer(_) => Err(invalid(
                table,
                column,
                "an integer where text must be",
                None,
            )),
        }
    }

    /// The text of `column`, never NULL.
    fn str(&self, table: &str, column: &str) -> Result<&str, StoreError> {
        self.optional_str(table, column)?
            .ok_or_else(|| invalid(table, column, "NULL where a value must be", None))
    }
}

impl Columns for ClaimedRow<'_> {
    fn text(&self, table: &str, column: &str) -> Result<String, StoreError> {
        self.str(table, column).map(str::to_owned)
    }

    fn optional_text(&self, table: &str, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.optional_str(table, column)?.map(str::to_owned))
    }

    fn integer(&self, table: &str, column: &str) -> Result<i64, StoreError> {
        match self.value(table, column)? {
            JsonValue::Integer(value) => Ok(*value),
            _ => Err(invalid(table, column, "not an integer", None)),
        }
    }
}

impl StoredValues for ClaimedRow<'_> {
    fn uuid(&self, table: &str, column: &str) -> Result<Option<Uuid>, StoreError> {
        self.optional_str(table, column)?
            .map(|text| parse_uuid(table, column, text))
            .transpose()
    }

    fn time(&self, table: &str, column: &str) -> Result<DateTime<Utc>, StoreError> {
        parse_time(table, column, self.str(table, column)?)
    }

    fn number(&self, table: &str, column: &str) -> Result<u32, StoreError> {
        sql::convert(table, column, self.integer(table, column)?)
    }

    fn payload(&self, table: &str) -> Result<Payload, StoreError> {
        parse_payload(table, self.text(table, "payload")?)
    }
}

/// The deliveries of the row that [`claimed_sql`] gives; none without a row (a step that does
/// not claim).
fn claimed(rows: &[SqliteRow]) -> Result<Vec<Delivery>, StoreError> {
    let Some(row) = rows.first() else {
        return Ok(Vec::new());
    };
    let json: &str = row
        .try_get(0)
        .map_err(error("could not read the claimed deliveries"))?;
    let claimed: Vec<ClaimedRow<'_>> = serde_json::from_str(json).map_err(|source| {
        StoreError::new(
            ErrorKind::Invalid,
            "could not read the claimed deliveries: not the JSON the claim writes",
            Some(Box::new(source) as _),
        )
    })?;
    sql::deliveries(&claimed)
}

/// `sql` with `limit` written for its `{limit}`s. A `LIMIT` is written into the statement rather
/// than bound: SQLite plans with a bound `LIMIT`'s value, so binding one again, as each claim
/// does, makes SQLite prepare the statement anew at every run. Each limit is a statement of its
/// own in the connection's cache; claims use few (the batch size, and what is left of it).
fn with_limit(sql: &str, limit: usize) -> String {
    sql.replace("{limit}", &limit.to_string())
}

/// `value`, `what` the statement is given, as JSON, for `json_each`.
fn json_param<T: serde::Serialize + ?Sized>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| {
        StoreError::new(
            ErrorKind::Invalid,
            format!("could not write {what} as JSON"),
            Some(Box::new(source) as _),
        )
    })
}

/// What to do about a file that stayed locked while recording.
const LOCKED: &str = "the SQLite file stayed locked for the store's busy timeout (10 s unless \
    `SqliteStore::open_with` set another): if the caller holds a write transaction on the file, \
    record the event in it with `publish_in(&mut tx, event)`";

/// What to do about a transaction on another file.
const NOT_THIS_FILE: &str = "the transaction is not on the app's store's SQLite file, so its \
    events would wait where no dispatcher looks: begin it on the store's file, with \
    `store.pool().begin()` or a pool opened with `SqliteStore::connect_options(path)`";

/// Records events with one delivery per handler, on `connection`; returns how many deliveries
/// were created (an integration event's handler that already received it gets none).
///
/// Each delivery is inserted only where `tidings_store` holds `identity`: in a transaction on
/// another file, nothing is, and the error says so.
async fn insert_events(
    connection: &mut SqliteConnection,
    events: Vec<NewEvent>,
    now: i64,
    identity: &str,
) -> Result<usize, StoreError> {
    let mut created = 0;
    for NewEvent { event, handlers } in events {
        for handler in handlers {
            if event.kind == EventKind::Integration {
                let inserted = sqlx::query(
                    "INSERT OR IGNORE INTO tidings_inbox (handler, event_id, received_at) \
                     VALUES (?, ?, ?)",
                )
                .bind(&handler)
                .bind(event.meta.id.to_string())
                .bind(now)
                .execute(&mut *connection)
                .await
                .map_err(error("could not record in the inbox"))?;
                if inserted.rows_affected() == 0 {
                    continue;
                }
            }
            let query = sqlx::query(concat!(
                "INSERT INTO tidings_deliveries (kind, handler, due_at, ",
                event_columns!(),
                ") SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
                 WHERE EXISTS (SELECT 1 FROM tidings_store WHERE id = ?)"
            ))
            .bind(kind_name(event.kind))
            .bind(&handler)
            .bind(now);
            let inserted = bind_event(query, &event)
                .bind(identity)
                .execute(&mut *connection)
                .await
                .map_err(|source| sql::recording_error(source, NOT_THIS_FILE))?;
            if inserted.rows_affected() == 0 {
                return Err(sql::not_this_store(NOT_THIS_FILE));
            }
            created += 1;
        }
    }
    Ok(created)
}

/// Deletes the deliveries of a JSON array of `[id, attempt]` pairs (`?1`), each only while it
/// is still claimed at its attempt (at any, for a null attempt).
macro_rules! complete_sql {
    () => {
        "DELETE FROM tidings_deliveries WHERE id IN (SELECT d.id FROM json_each(?1) c \
         JOIN tidings_deliveries d ON d.id = c.value ->> 0 \
         WHERE c.value ->> 1 IS NULL OR d.attempts = c.value ->> 1)"
    };
}

/// `completions` as `complete_sql!` takes them: a JSON array of `[id, attempt]` pairs.
fn completion_param(completions: &[sql::Finished]) -> Result<String, StoreError> {
    let claims = completions
        .iter()
        .map(|(id, attempt, _)| Ok((id_param(DELIVERIES, id.get())?, *attempt)))
        .collect::<Result<Vec<(i64, Option<u32>)>, StoreError>>()?;
    json_param(&claims, "the completed deliveries")
}

/// The dispatcher's step between two batches, in one transaction: the completions of the last,
/// then the claim of up to `limit` deliveries of `handlers` due at `now`, until `lease`.
struct Step<'a> {
    completions: Vec<sql::Finished>,
    lease: i64,
    now: i64,
    limit: usize,
    handlers: &'a [String],
}

impl Step<'_> {
    /// Whether the completions record integration rows.
    fn produces(&self) -> bool {
        self.completions.iter().any(|(_, _, rows)| !rows.is_empty())
    }

    /// Runs the step on the store's connection; returns the claimed deliveries, in order.
    ///
    /// Integration rows the relay may publish are flushed before it can see them: lost to a
    /// power cut after their publication, they would be produced again under new event ids.
    /// Completions alone and claims need no flush (see [`Write`]).
    async fn run(self, pool: &SqlitePool) -> Result<Vec<Delivery>, StoreError> {
        let produces = self.produces();
        let Step {
            completions,
            lease,
            now,
            limit,
            handlers,
        } = self;
        let mut tx = Write::take(pool, produces).await?;
        // Completions that record integration rows take statements of their own, first. Any
        // others go with the claim (of up to `CLAIM_CHUNK` handlers) and the commit, in one
        // call to SQLite's thread for the whole step. Their `DELETE`, even of nothing, takes
        // the file's write lock before the claim reads.
        let mut statement = String::new();
        // Bound as `?1` even where no statement reads it, so that the claim's parameters keep
        // their numbers.
        let mut completed = String::from("[]");
        if produces {
            tx.start().await?;
            complete(tx.connection(), completions).await?;
        } else {
            completed = completion_param(&completions)?;
            statement.push_str(tx.begin_sql());
            statement.push_str(concat!("; ", complete_sql!(), "; "));
        }
        let rows = if limit == 0 || handlers.is_empty() {
            statement.push_str(tx.commit_sql());
            let query = sqlx::query(AssertSqlSafe(statement)).bind(completed);
            tx.run_and_commit(query, "could not complete deliveries")
                .await?
        } else if handlers.len() <= CLAIM_CHUNK {
            // `?1` the completions, `?2` the lease, `?3` now, the handlers from `?4` on.
            statement.push_str(CLAIM_START);
            statement.push_str(&candidates_sql(3, 4, handlers.len(), limit));
            statement.push_str(&claimed_sql(2, None));
            statement.push_str(tx.commit_sql());
            let query = sqlx::query(AssertSqlSafe(statement))
                .bind(completed)
                .bind(lease)
                .bind(now);
            let query = bind_handlers(query, handlers);
            tx.run_and_commit(query, "could not complete deliveries and claim the next")
                .await?
        } else {
            // A call per statement of candidates, each numbering its parameters from `?1`: sqlx
            // takes a number a statement skips for a positional parameter, and stops binding
            // a statement's parameters once those outnumber the arguments.
            statement.push_str(CLAIM_START);
            sqlx::query(AssertSqlSafe(statement))
                .bind(completed)
                .execute(tx.connection())
                .await
                .map_err(error("could not complete deliveries"))?;
            for chunk in handlers.chunks(CLAIM_CHUNK) {
                let statement = candidates_sql(1, 2, chunk.len(), limit);
                let query = sqlx::query(AssertSqlSafe(statement)).bind(now);
                bind_handlers(query, chunk)
                    .execute(tx.connection())
                    .await
                    .map_err(error("could not claim deliveries"))?;
            }
            let statement = claimed_sql(1, Some(limit)) + tx.commit_sql();
            let query = sqlx::query(AssertSqlSafe(statement)).bind(lease);
            tx.run_and_commit(query, "could not claim deliveries")
                .await?
        };
        claimed(&rows)
    }
}

/// Completes each delivery still claimed at its attempt (or whatever its attempt, for `None`),
/// with one statement for them all, and records the integration rows those produced, on
/// `connection`.
async fn complete(
    connection: &mut SqliteConnection,
    completions: Vec<sql::Finished>,
) -> Result<(), StoreError> {
    let claims = completion_param(&completions)?;
    if completions.iter().all(|(_, _, rows)| rows.is_empty()) {
        sqlx::query(complete_sql!())
            .bind(claims)
            .execute(&mut *connection)
            .await
            .map_err(error("could not complete deliveries"))?;
        return Ok(());
    }
    let deleted: Vec<i64> = sqlx::query_scalar(concat!(complete_sql!(), " RETURNING id"))
        .bind(claims)
        .fetch_all(&mut *connection)
        .await
        .map_err(error("could not complete deliveries"))?;
    let now = micros(Utc::now());
    for (id, _, rows) in completions {
        if rows.is_empty() || !deleted.contains(&id_param(DELIVERIES, id.get())?) {
            continue;
        }
        for NewIntegrationRow { event, key } in rows {
            let query = sqlx::query(concat!(
                "INSERT INTO tidings_outbox (ordering_key, due_at, ",
                event_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(key)
            .bind(now);
            bind_event(query, &event)
                .execute(&mut *connection)
                .await
                .map_err(error("could not record an integration event"))?;
        }
    }
    Ok(())
}

impl Store for SqliteStore {
    fn record(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let recorded = async {
                let mut tx = sql::begin(&self.pool).await?;
                let now = micros(Utc::now());
                let created = insert_events(&mut tx, events, now, &self.identity).await?;
                sql::commit(tx).await?;
                Ok(created)
            };
            recorded.await.map_err(|error: StoreError| {
                if sql::waited_for_a_lock(&error) {
                    // The likeliest cause: the caller's own write transaction on this file.
                    StoreError::new(ErrorKind::Unavailable, LOCKED, Some(Box::new(error) as _))
                } else {
                    error
                }
            })
        })
    }

    fn record_in<'c>(
        &'c self,
        connection: &'c mut (dyn Any + Send),
        events: Vec<NewEvent>,
    ) -> BoxFuture<'c, Result<usize, StoreError>> {
        Box::pin(async move {
            let connection = sql::caller_connection::<SqliteConnection>(
                connection,
                "the app's store is SQLite: record its events in a `sqlx::Transaction<'_, Sqlite>` on the store's file",
            )?;
            insert_events(connection, events, micros(Utc::now()), &self.identity).await
        })
    }

    fn transaction_database(&self) -> Option<TypeId> {
        Some(TypeId::of::<Sqlite>())
    }

    fn begin(
        &self,
        id: DeliveryId,
        attempt: u32,
    ) -> BoxFuture<'_, Result<Option<Box<dyn Any + Send>>, StoreError>> {
        Box::pin(async move {
            // IMMEDIATE: the write lock is taken now, so the delivery stays this claim's.
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(error("could not begin a transaction"))?;
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM tidings_deliveries WHERE id = ? AND attempts = ?",
            )
            .bind(id_param(DELIVERIES, id.get())?)
            .bind(i64::from(attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(error("could not read a delivery"))?;
            Ok(held.map(|_| Box::new(tx) as Box<dyn Any + Send>))
        })
    }

    fn complete_in(
        &self,
        transaction: Box<dyn Any + Send>,
        id: DeliveryId,
        produced: Vec<NewIntegrationRow>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = sql::handler_transaction::<Sqlite>(transaction)?;
            // The transaction holds the write lock since `begin`: the delivery is this claim's.
            complete(&mut tx, vec![(id, None, produced)]).await?;
            sql::commit(*tx).await
        })
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    fn extend_claims(
        &self,
        claims: Vec<(DeliveryId, u32)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let now = micros(Utc::now());
            let until = self.lease_until(now);
            let mut tx = sql::begin(&self.pool).await?;
            // Only a claim still held is extended: one that expired may have been taken over,
            // and a delivery rescheduled meanwhile is claimed no longer. Each claim held is in
            // its handler's range (see `held_handlers!`); a claim brought back could lie outside.
            for (id, attempt) in claims {
                sqlx::query(
                    "UPDATE tidings_deliveries SET claimed_until = ? \
                     WHERE id = ? AND attempts = ? AND claimed_until >= ?",
                )
                .bind(until)
                .bind(id_param(DELIVERIES, id.get())?)
                .bind(i64::from(attempt))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(error("could not extend the claims"))?;
            }
            sql::commit(tx).await
        })
    }

    fn claim_deliveries<'a>(
        &'a self,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        self.complete_and_claim(Vec::new(), now, limit, handlers)
    }

    fn complete_deliveries(
        &self,
        completions: Vec<Completion>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if completions.is_empty() {
                return Ok(());
            }
            // A claim of nothing: no statement.
            self.complete_and_claim(completions, Utc::now(), 0, &[])
                .await
                .map(drop)
        })
    }

    fn complete_and_claim<'a>(
        &'a self,
        completions: Vec<Completion>,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        Box::pin(async move {
            let now = micros(now);
            let step = Step {
                completions: sql::at_their_attempts(completions),
                lease: self.lease_until(now),
                now,
                limit,
                handlers,
            };
            step.run(&self.pool).await
        })
    }

    fn retry_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        error_text: String,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE tidings_deliveries SET claimed_until = NULL, due_at = ?, last_error = ? \
                 WHERE id = ? AND attempts = ?",
            )
            .bind(micros(at))
            .bind(error_text)
            .bind(id_param(DELIVERIES, id.get())?)
            .bind(i64::from(attempt))
            .execute(&self.pool)
            .await
            .map_err(error("could not reschedule a delivery"))?;
            Ok(())
        })
    }

    fn dead_letter_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        error_text: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = sql::begin(&self.pool).await?;
            sqlx::query(concat!(
                "INSERT INTO tidings_dead_letters (handler, attempts, error, at, kind, ",
                event_columns!(),
                ") SELECT handler, attempts, ?, ?, kind, ",
                event_columns!(),
                " FROM tidings_deliveries WHERE id = ? AND attempts = ?"
            ))
            .bind(error_text)
            .bind(Utc::now().to_rfc3339())
            .bind(id_param(DELIVERIES, id.get())?)
            .bind(i64::from(attempt))
            .execute(&mut *tx)
            .await
            .map_err(error("could not dead-letter a delivery"))?;
            sqlx::query("DELETE FROM tidings_deliveries WHERE id = ? AND attempts = ?")
                .bind(id_param(DELIVERIES, id.get())?)
                .bind(i64::from(attempt))
                .execute(&mut *tx)
                .await
                .map_err(error("could not dead-letter a delivery"))?;
            sql::commit(tx).await
        })
    }

    fn dead_letter_message(
        &self,
        event: StoredEvent,
        error_text: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let query = sqlx::query(concat!(
                "INSERT INTO tidings_dead_letters (handler, attempts, error, at, kind, ",
                event_columns!(),
                ") VALUES (NULL, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(error_text)
            .bind(Utc::now().to_rfc3339())
            .bind(kind_name(event.kind));
            bind_event(query, &event)
                .execute(&self.pool)
                .await
                .map_err(error("could not record a dead letter"))?;
            Ok(())
        })
    }

    fn replay_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut tx = sql::begin(&self.pool).await?;
            let inserted = sqlx::query(concat!(
                "INSERT INTO tidings_deliveries (kind, handler, due_at, ",
                event_columns!(),
                ") SELECT kind, handler, ?, ",
                event_columns!(),
                " FROM tidings_dead_letters WHERE id = ? AND handler IS NOT NULL AND payload IS NOT NULL"
            ))
            .bind(micros(Utc::now()))
            .bind(id_param(DEAD_LETTERS, id.get())?)
            .execute(&mut *tx)
            .await
            .map_err(error("could not replay a dead letter"))?;
            if inserted.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM tidings_dead_letters WHERE id = ?")
                .bind(id_param(DEAD_LETTERS, id.get())?)
                .execute(&mut *tx)
                .await
                .map_err(error("could not replay a dead letter"))?;
            sql::commit(tx).await?;
            Ok(true)
        })
    }

    fn discard_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = sqlx::query("DELETE FROM tidings_dead_letters WHERE id = ?")
                .bind(id_param(DEAD_LETTERS, id.get())?)
                .execute(&self.pool)
                .await
                .map_err(error("could not discard a dead letter"))?;
            Ok(deleted.rows_affected() > 0)
        })
    }

    fn next_delivery_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(async move {
            // Among the deliveries a claim could take: none of a handler another claim holds.
            let due: Option<i64> = sqlx::query_scalar(concat!(
                "SELECT MIN(o.due_at) FROM tidings_deliveries o WHERE o.claimed_until IS NULL \
                 AND o.handler NOT IN (",
                held_handlers!("?1"),
                ")"
            ))
            .bind(micros(Utc::now()))
            .fetch_one(&self.pool)
            .await
            .map_err(error("could not read the next due delivery"))?;
            Ok(due.and_then(DateTime::from_timestamp_micros))
        })
    }

    fn claim_rows(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<IntegrationRow>, StoreError>> {
        Box::pin(async move {
            let now = micros(now);
            let lease = self.lease_until(now);
            let mut tx = Write::begin(&self.pool, false).await?;
            // The oldest row of each key, and every row with no key, from candidates that
            // indexes give (see `CLAIM_ROWS`).
            let rows = sqlx::query(AssertSqlSafe(with_limit(CLAIM_ROWS, limit)))
                .bind(lease)
                .bind(now)
                .bind(sql::limit(limit))
                .fetch_all(tx.connection())
                .await
                .map_err(error("could not claim integration rows"))?;
            tx.commit().await?;
            sql::integration_rows(&rows)
        })
    }

    fn row_published(&self, id: RowId, archive: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = sql::begin(&self.pool).await?;
            if archive {
                sqlx::query(concat!(
                    "INSERT INTO tidings_outbox_archive (id, ordering_key, published_at, ",
                    event_columns!(),
                    ") SELECT id, ordering_key, ?, ",
                    event_columns!(),
                    " FROM tidings_outbox WHERE id = ?"
                ))
                .bind(micros(Utc::now()))
                .bind(id_param(OUTBOX, id.get())?)
                .execute(&mut *tx)
                .await
                .map_err(error("could not archive a published row"))?;
            }
            sqlx::query("DELETE FROM tidings_outbox WHERE id = ?")
                .bind(id_param(OUTBOX, id.get())?)
                .execute(&mut *tx)
                .await
                .map_err(error("could not mark a row published"))?;
            sql::commit(tx).await
        })
    }

    fn rows_published(
        &self,
        ids: Vec<RowId>,
        archive: bool,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            // The batch as one JSON array, for `json_each`: one statement whatever its size (two
            // with the archive, in one transaction); a row no longer in the outbox is skipped.
            let ids = json_param(&sql::row_id_params(&ids)?, "row ids")?;
            let mut tx = Write::begin(&self.pool, false).await?;
            if archive {
                sqlx::query(concat!(
                    "INSERT INTO tidings_outbox_archive (id, ordering_key, published_at, ",
                    event_columns!(),
                    ") SELECT id, ordering_key, ?, ",
                    event_columns!(),
                    " FROM tidings_outbox WHERE id IN (SELECT value FROM json_each(?))"
                ))
                .bind(micros(Utc::now()))
                .bind(&ids)
                .execute(tx.connection())
                .await
                .map_err(error("could not archive published rows"))?;
            }
            sqlx::query("DELETE FROM tidings_outbox WHERE id IN (SELECT value FROM json_each(?))")
                .bind(&ids)
                .execute(tx.connection())
                .await
                .map_err(error("could not mark rows published"))?;
            tx.commit().await
        })
    }

    fn prune(
        &self,
        inbox_before: DateTime<Utc>,
        archive_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let limit = sql::limit(limit);
            let mut tx = sql::begin(&self.pool).await?;
            let inbox = sqlx::query(
                "DELETE FROM tidings_inbox WHERE rowid IN (SELECT rowid FROM tidings_inbox \
                 WHERE received_at < ? LIMIT ?)",
            )
            .bind(micros(inbox_before))
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(error("could not expire inbox entries"))?
            .rows_affected();
            let archive = sqlx::query(
                "DELETE FROM tidings_outbox_archive WHERE id IN (SELECT id FROM \
                 tidings_outbox_archive WHERE published_at < ? ORDER BY published_at LIMIT ?)",
            )
            .bind(micros(archive_before))
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(error("could not expire archived rows"))?
            .rows_affected();
            sql::commit(tx).await?;
            sql::pruned(inbox, archive)
        })
    }

    fn retry_row(
        &self,
        id: RowId,
        attempt: u32,
        error_text: String,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE tidings_outbox SET claimed_until = NULL, due_at = ?, last_error = ? \
                 WHERE id = ? AND attempts = ?",
            )
            .bind(micros(at))
            .bind(error_text)
            .bind(id_param(OUTBOX, id.get())?)
            .bind(i64::from(attempt))
            .execute(&self.pool)
            .await
            .map_err(error("could not reschedule a row"))?;
            Ok(())
        })
    }

    fn next_row_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(async move {
            // Among the rows a claim could take: the head of each key, and rows with no key.
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(o.due_at) FROM tidings_outbox o WHERE o.claimed_until IS NULL \
                 AND (o.ordering_key IS NULL OR o.id = (SELECT MIN(h.id) FROM tidings_outbox h \
                 WHERE h.ordering_key = o.ordering_key))",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(error("could not read the next due row"))?;
            Ok(due.and_then(DateTime::from_timestamp_micros))
        })
    }

    fn count_pending(&self) -> BoxFuture<'_, Result<(usize, usize), StoreError>> {
        Box::pin(async move {
            let (deliveries, rows): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM tidings_deliveries), (SELECT COUNT(*) FROM tidings_outbox)",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(error("could not count the pending work"))?;
            Ok((
                sql::count(DELIVERIES, deliveries)?,
                sql::count(OUTBOX, rows)?,
            ))
        })
    }

    fn waiting(&self) -> BoxFuture<'_, Result<Waiting, StoreError>> {
        Box::pin(async move {
            // A claim holds until `claimed_until`; an expired one is due again.
            let rows = sqlx::query(
                "SELECT 'tidings_deliveries' AS waiting_in, handler AS name, \
                 COUNT(CASE WHEN (claimed_until IS NULL OR claimed_until < ?1) \
                 AND due_at <= ?1 THEN 1 END) AS due, \
                 COUNT(CASE WHEN (claimed_until IS NULL OR claimed_until < ?1) \
                 AND due_at > ?1 THEN 1 END) AS scheduled, \
                 COUNT(CASE WHEN claimed_until >= ?1 THEN 1 END) AS claimed, \
                 MIN(occurred_at) AS oldest \
                 FROM tidings_deliveries GROUP BY handler \
                 UNION ALL \
                 SELECT 'tidings_outbox', name, \
                 COUNT(CASE WHEN (claimed_until IS NULL OR claimed_until < ?1) \
                 AND due_at <= ?1 THEN 1 END), \
                 COUNT(CASE WHEN (claimed_until IS NULL OR claimed_until < ?1) \
                 AND due_at > ?1 THEN 1 END), \
                 COUNT(CASE WHEN claimed_until >= ?1 THEN 1 END), \
                 MIN(occurred_at) \
                 FROM tidings_outbox GROUP BY name",
            )
            .bind(micros(Utc::now()))
            .fetch_all(&self.pool)
            .await
            .map_err(error("could not count the waiting work"))?;
            sql::waiting(&rows)
        })
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT * FROM tidings_dead_letters ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(error("could not read the dead letters"))?;
            sql::dead_letters(&rows)
        })
    }
}
