//! What the SQLite and PostgreSQL stores share, so that each of them holds only its dialect's
//! SQL and the binding of its parameters:
//!
//! - the columns in which every table holds an event ([`event_columns!`]) and the names of the
//!   event kinds ([`kind_name`], [`kind_of`]);
//! - the reading of stored rows into records ([`deliveries`], [`integration_rows`],
//!   [`dead_letters`]), over the few column types that differ ([`StoredValues`]);
//! - the conversions between the records' numbers and the columns' integers ([`convert`],
//!   [`id_param`], [`row_id_params`], [`stored_id`], [`limit`], [`count`], [`pruned`]): a value out of range is an
//!   [`ErrorKind::Invalid`] error that names its table and column, never a default;
//! - transactions ([`begin`], [`commit`], [`handler_transaction`], [`caller_connection`]);
//! - errors ([`error`], [`invalid`], [`migration_error`]), leases and migrations.

use std::any::Any;
use std::fmt::Display;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{ColumnIndex, Database, Decode, Pool, Row, Transaction, Type};
use uuid::Uuid;

use super::{Completion, NewIntegrationRow};
use super::{ContractWaiting, HandlerWaiting, WaitCounts, Waiting};
use super::{DeadLetter, DeadLetterId, Delivery, DeliveryId, IntegrationRow, RowId, StoredEvent};
use super::{ErrorKind, Payload, StoreError};
use crate::event::EventKind;
use crate::meta::EventMeta;

/// How long a claimed delivery or row is reserved for the process that claimed it, by default.
/// If that process dies, the claim expires and the work is done again (at least once).
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The table where the crate's own migrations are recorded, apart from the application's
/// `_sqlx_migrations`.
pub(crate) const MIGRATIONS_TABLE: &str = "_tidings_migrations";

/// The table of the deliveries, as error messages name it.
pub(crate) const DELIVERIES: &str = "tidings_deliveries";

/// The table of the integration outbox, as error messages name it.
pub(crate) const OUTBOX: &str = "tidings_outbox";

/// The table of the dead letters, as error messages name it.
pub(crate) const DEAD_LETTERS: &str = "tidings_dead_letters";

/// The columns in which every table holds an event, in the order each store's `bind_event`
/// binds them. A macro, so that `concat!` can put it in the SQL text.
macro_rules! event_columns {
    () => {
        "event_id, name, version, occurred_at, correlation_id, causation_id, traceparent, source, payload"
    };
}
pub(crate) use event_columns;

/// Turns a sqlx error into a [`StoreError`] saying what could not be done, of the kind the
/// error is.
pub(crate) fn error(message: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |source| StoreError::new(kind_of_error(&source), message, Some(Box::new(source) as _))
}

/// What kind of failure a sqlx error is.
fn kind_of_error(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => ErrorKind::Unavailable,
        sqlx::Error::Database(error) if transient(error.code().as_deref()) => {
            ErrorKind::Unavailable
        }
        sqlx::Error::Database(_) => ErrorKind::Refused,
        _ => ErrorKind::Invalid,
    }
}

/// Whether a database error code says "try again": SQLite's busy and locked (5, 6 and their
/// extended codes), PostgreSQL's serialization failure, deadlock, lock timeout, connection
/// exceptions (class 08), shutdowns (57P0x) and too many connections.
fn transient(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    if let Ok(sqlite) = code.parse::<i32>() {
        return matches!(sqlite & 0xff, 5 | 6);
    }
    matches!(
        code,
        "40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P02" | "57P03"
    ) || code.starts_with("08")
}

/// The error for a value of `table.column`, stored or to be bound, that is not what the column
/// holds: `problem` says what is wrong with it, `source` why, if a parser refused it.
pub(crate) fn invalid(
    table: &str,
    column: &str,
    problem: impl Display,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreError {
    StoreError::new(
        ErrorKind::Invalid,
        format!("`{table}.{column}`: {problem}"),
        source,
    )
}

/// The error of migrations that could not be applied.
pub(crate) fn migration_error(source: MigrateError) -> StoreError {
    StoreError::new(
        ErrorKind::Refused,
        "could not apply the migrations",
        Some(Box::new(source) as _),
    )
}

/// The crate's `migrations`, recorded in [`MIGRATIONS_TABLE`].
pub(crate) fn migrator(migrations: &Migrator) -> Migrator {
    let mut migrator = Migrator::with_migrations(migrations.iter().cloned().collect());
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// A duration in whole microseconds, for the databases' times. A lease beyond what the column
/// counts (some 292 000 years) is as good as forever: it saturates.
pub(crate) fn micros_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// `value`, bound for or read from `table.column`, as a `T`; an [`ErrorKind::Invalid`] error if
/// it is out of `T`'s range (a negative count, an attempt beyond `u32`, a stored version
/// PostgreSQL's `integer` cannot hold).
pub(crate) fn convert<T, V>(table: &str, column: &str, value: V) -> Result<T, StoreError>
where
    T: TryFrom<V>,
    V: Copy + Display,
{
    T::try_from(value)
        .map_err(|_| invalid(table, column, format_args!("{value} is out of range"), None))
}

/// The id of a record of `table`, as the store binds it: the tables' ids are positive
/// `BIGINT`s, so an id above `i64::MAX` is none the store gave.
pub(crate) fn id_param(table: &str, id: u64) -> Result<i64, StoreError> {
    convert(table, "id", id)
}

/// The ids of outbox rows, as the store binds them (see [`id_param`]).
pub(crate) fn row_id_params(ids: &[RowId]) -> Result<Vec<i64>, StoreError> {
    ids.iter().map(|id| id_param(OUTBOX, id.get())).collect()
}

/// The id read from `table`, as the records hold it.
pub(crate) fn stored_id(table: &str, raw: i64) -> Result<u64, StoreError> {
    convert(table, "id", raw)
}

/// A claim's or a prune's `limit`, for `LIMIT`: a limit beyond `i64::MAX` takes every row, as
/// `i64::MAX` does, so it saturates.
pub(crate) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// How many rows a prune deleted: `inbox` inbox entries and `archive` archived rows.
pub(crate) fn pruned<N>(inbox: N, archive: N) -> Result<usize, StoreError>
where
    usize: TryFrom<N>,
    N: Copy + Display,
{
    let inbox: usize = convert("tidings_inbox", "deleted rows", inbox)?;
    let archive: usize = convert("tidings_outbox_archive", "deleted rows", archive)?;
    Ok(inbox.saturating_add(archive))
}

/// How many rows `table` holds, from its `COUNT(*)`.
pub(crate) fn count(table: &str, rows: i64) -> Result<usize, StoreError> {
    convert(table, "COUNT(*)", rows)
}

/// The name a table stores for an event kind, in its `kind` column.
pub(crate) fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Domain => "domain",
        EventKind::Integration => "integration",
    }
}

/// The event kind that `table` stores as `name`; an error for any name [`kind_name`] does not
/// give.
pub(crate) fn kind_of(table: &str, name: &str) -> Result<EventKind, StoreError> {
    match name {
        "domain" => Ok(EventKind::Domain),
        "integration" => Ok(EventKind::Integration),
        other => Err(invalid(
            table,
            "kind",
            format_args!("`{other}` is no event kind"),
            None,
        )),
    }
}

/// A delivery to complete: its id, the attempt it must still be claimed at (`None`: whatever
/// its attempt, in the handler's own transaction, which holds it since `begin`), and the rows it
/// produced.
pub(crate) type Finished = (DeliveryId, Option<u32>, Vec<NewIntegrationRow>);

/// `completions`, each to complete only if still claimed at its attempt.
pub(crate) fn at_their_attempts(completions: Vec<Completion>) -> Vec<Finished> {
    completions
        .into_iter()
        .map(|c| (c.id, Some(c.attempt), c.produced))
        .collect()
}

/// Begins a transaction on `pool`.
pub(crate) async fn begin<DB: Database>(
    pool: &Pool<DB>,
) -> Result<Transaction<'static, DB>, StoreError> {
    pool.begin()
        .await
        .map_err(error("could not begin a transaction"))
}

/// Commits `transaction`.
pub(crate) async fn commit<DB: Database>(
    transaction: Transaction<'_, DB>,
) -> Result<(), StoreError> {
    transaction
        .commit()
        .await
        .map_err(error("could not commit a transaction"))
}

/// The store's transaction that `begin` handed to a handler, back in `complete_in`; an error for
/// a transaction of another database.
pub(crate) fn handler_transaction<DB: Database>(
    transaction: Box<dyn Any + Send>,
) -> Result<Box<Transaction<'static, DB>>, StoreError> {
    transaction.downcast().map_err(|_| {
        StoreError::new(
            ErrorKind::Invalid,
            format!(
                "not a transaction of this store: expected the {} transaction its `begin` gave",
                DB::NAME
            ),
            None,
        )
    })
}

/// The caller's connection `C` in `record_in`; an error saying `expected` for a connection of
/// another database.
pub(crate) fn caller_connection<'c, C: Any>(
    connection: &'c mut (dyn Any + Send),
    expected: &str,
) -> Result<&'c mut C, StoreError> {
    connection
        .downcast_mut()
        .ok_or_else(|| StoreError::new(ErrorKind::Invalid, expected, None))
}

/// Reading a row's columns of the types that both databases store alike, by name: what the
/// records are read from, with [`StoredValues`].
pub(crate) trait Columns {
    /// `column` of `table`, text that is never NULL.
    fn text(&self, table: &str, column: &str) -> Result<String, StoreError>;

    /// `column` of `table`, text or NULL.
    fn optional_text(&self, table: &str, column: &str) -> Result<Option<String>, StoreError>;

    /// `column` of `table`, a `BIGINT` (an id).
    fn integer(&self, table: &str, column: &str) -> Result<i64, StoreError>;
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, table: &str, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(unreadable(table, column))
    }

    fn optional_text(&self, table: &str, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column).map_err(unreadable(table, column))
    }

    fn integer(&self, table: &str, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(unreadable(table, column))
    }
}

/// The error of a column that could not be read, of the kind the sqlx error is. Its message is
/// written only if the column could not be read: every column of every claimed row passes here.
pub(crate) fn unreadable<'a>(
    table: &'a str,
    column: &'a str,
) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
    move |source| {
        let message = format!("could not read `{table}.{column}`");
        StoreError::new(kind_of_error(&source), message, Some(Box::new(source) as _))
    }
}

/// The values whose column types differ between the databases, as a row of each hands them
/// back; the records are read from them alike, by [`deliveries`], [`integration_rows`] and
/// [`dead_letters`].
pub(crate) trait StoredValues: Columns {
    /// `column`, a UUID (`TEXT` in SQLite, `uuid` in PostgreSQL), or `None` for NULL.
    fn uuid(&self, table: &str, column: &str) -> Result<Option<Uuid>, StoreError>;

    /// `column`, a time (RFC 3339 `TEXT` in SQLite, `timestamptz` in PostgreSQL).
    fn time(&self, table: &str, column: &str) -> Result<DateTime<Utc>, StoreError>;

    /// `column`, a count or a version (`INTEGER` in SQLite, `integer` in PostgreSQL).
    fn number(&self, table: &str, column: &str) -> Result<u32, StoreError>;

    /// The `payload` column (JSON `TEXT` in SQLite, `jsonb` in PostgreSQL).
    fn payload(&self, table: &str) -> Result<Payload, StoreError>;
}

/// Reads `column` of `table`, a UUID that is never NULL.
fn required_uuid(row: &impl StoredValues, table: &str, column: &str) -> Result<Uuid, StoreError> {
    row.uuid(table, column)?
        .ok_or_else(|| invalid(table, column, "NULL where a value must be", None))
}

/// Reads the event columns ([`event_columns!`]) of a row of `table`.
fn stored_event<R: StoredValues>(
    row: &R,
    table: &str,
    kind: EventKind,
) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        meta: EventMeta {
            id: required_uuid(row, table, "event_id")?,
            occurred_at: row.time(table, "occurred_at")?,
            correlation_id: required_uuid(row, table, "correlation_id")?,
            causation_id: row.uuid(table, "causation_id")?,
            traceparent: row.optional_text(table, "traceparent")?,
            source: row.text(table, "source")?,
        },
        kind,
        name: row.text(table, "name")?,
        version: row.number(table, "version")?,
        payload: row.payload(table)?,
        typed: None,
    })
}

/// Reads claimed deliveries, in the order they were recorded.
pub(crate) fn deliveries<R: StoredValues>(rows: &[R]) -> Result<Vec<Delivery>, StoreError> {
    let mut deliveries = rows.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
    deliveries.sort_by_key(|delivery| delivery.id);
    Ok(deliveries)
}

/// Reads a row of the deliveries.
fn delivery<R: StoredValues>(row: &R) -> Result<Delivery, StoreError> {
    let kind = row.text(DELIVERIES, "kind")?;
    Ok(Delivery {
        id: DeliveryId::new(stored_id(DELIVERIES, row.integer(DELIVERIES, "id")?)?),
        event: stored_event(row, DELIVERIES, kind_of(DELIVERIES, &kind)?)?,
        handler: row.text(DELIVERIES, "handler")?,
        attempt: row.number(DELIVERIES, "attempts")?,
    })
}

/// Reads claimed integration rows, in the order they were recorded.
pub(crate) fn integration_rows<R: StoredValues>(
    rows: &[R],
) -> Result<Vec<IntegrationRow>, StoreError> {
    let mut claimed = rows
        .iter()
        .map(integration_row)
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|row| row.id);
    Ok(claimed)
}

/// Reads a row of the outbox.
fn integration_row<R: StoredValues>(row: &R) -> Result<IntegrationRow, StoreError> {
    Ok(IntegrationRow {
        id: RowId::new(stored_id(OUTBOX, row.integer(OUTBOX, "id")?)?),
        event: stored_event(row, OUTBOX, EventKind::Integration)?,
        key: row.optional_text(OUTBOX, "ordering_key")?,
        attempt: row.number(OUTBOX, "attempts")?,
    })
}

/// Reads dead letters, from their `id`, `event_id`, `name`, `handler`, `attempts`, `error` and
/// `at`.
pub(crate) fn dead_letters<R: StoredValues>(rows: &[R]) -> Result<Vec<DeadLetter>, StoreError> {
    rows.iter().map(dead_letter).collect()
}

/// Reads a row of the dead letters.
fn dead_letter<R: StoredValues>(row: &R) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: DeadLetterId::new(stored_id(DEAD_LETTERS, row.integer(DEAD_LETTERS, "id")?)?),
        event_id: required_uuid(row, DEAD_LETTERS, "event_id")?,
        event_name: row.text(DEAD_LETTERS, "name")?,
        handler: row.optional_text(DEAD_LETTERS, "handler")?,
        attempts: row.number(DEAD_LETTERS, "attempts")?,
        error: row.text(DEAD_LETTERS, "error")?,
        at: row.time(DEAD_LETTERS, "at")?,
    })
}

/// The error of an event recorded in a transaction on another database than the store's: `fix`
/// says what to do.
pub(crate) fn not_this_store(fix: &str) -> StoreError {
    StoreError::new(ErrorKind::Invalid, fix, None)
}

/// The error of a failed delivery insert: a database without the store's tables is one that is
/// not the store's ([`not_this_store`], with `fix`).
pub(crate) fn recording_error(source: sqlx::Error, fix: &str) -> StoreError {
    let missing_table = match &source {
        // PostgreSQL's undefined table or schema; SQLite says it in words.
        sqlx::Error::Database(error) => {
            matches!(error.code().as_deref(), Some("42P01" | "3F000"))
                || error.message().starts_with("no such table")
        }
        _ => false,
    };
    if missing_table {
        StoreError::new(ErrorKind::Invalid, fix, Some(Box::new(source) as _))
    } else {
        error("could not record a delivery")(source)
    }
}

/// Reads what waits from the rows of a store's `waiting` query, one per handler or contract:
/// `waiting_in` (the table: `tidings_deliveries` or `tidings_outbox`), `name` (the handler or
/// the contract) and the counts `due`, `scheduled` and `claimed`, as `BIGINT`s. The entries are
/// sorted by name, whatever the database's collation.
pub(crate) fn waiting<R: StoredValues>(rows: &[R]) -> Result<Waiting, StoreError> {
    let mut waiting = Waiting::default();
    for row in rows {
        let table = row.text("waiting", "waiting_in")?;
        let counts = WaitCounts {
            due: count(&table, row.integer(&table, "due")?)?,
            scheduled: count(&table, row.integer(&table, "scheduled")?)?,
            claimed: count(&table, row.integer(&table, "claimed")?)?,
            untold: 0,
        };
        let name = row.text(&table, "name")?;
        let oldest = Some(row.time(&table, "oldest")?);
        match table.as_str() {
            DELIVERIES => waiting.deliveries.push(HandlerWaiting {
                handler: Some(name),
                counts,
                oldest,
            }),
            OUTBOX => waiting.rows.push(ContractWaiting {
                contract: Some(name),
                counts,
                oldest,
            }),
            other => {
                return Err(invalid(
                    "waiting",
                    "waiting_in",
                    format_args!("`{other}` is not a table of waiting work"),
                    None,
                ));
            }
        }
    }
    waiting.deliveries.sort_by(|a, b| a.handler.cmp(&b.handler));
    waiting.rows.sort_by(|a, b| a.contract.cmp(&b.contract));
    Ok(waiting)
}

/// Whether `error` comes from a lock the store waited for in vain: SQLite's busy or locked (5, 6
/// and their extended codes), or no connection of the pool freed in time.
pub(crate) fn waited_for_a_lock(error: &StoreError) -> bool {
    let source = std::error::Error::source(error);
    match source.and_then(|source| source.downcast_ref::<sqlx::Error>()) {
        Some(sqlx::Error::PoolTimedOut) => true,
        Some(sqlx::Error::Database(error)) => error
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}
