//! [`SqliteStore`]: the embedded default, a SQLite file that survives the process.

use std::any::{Any, TypeId};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::MigrateError;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::sql::{DEFAULT_LEASE, error, micros_of, migrator};
use crate::event::EventKind;
use crate::meta::EventMeta;
use crate::store::{
    BoxFuture, DeadLetter, DeadLetterId, Delivery, DeliveryId, ErrorKind, IntegrationRow, NewEvent,
    NewIntegrationRow, RowId, Store, StoreError, StoredEvent,
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
}

/// Why one try at opening the file failed.
enum Opening {
    Connect(sqlx::Error),
    Migrate(MigrateError),
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The columns in which every table holds an event, in the order [`bind_event`] binds them.
macro_rules! event_columns {
    () => {
        "event_id, name, version, occurred_at, correlation_id, causation_id, traceparent, source, payload"
    };
}

/// Binds an event's columns, in the order of `event_columns!`.
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
        .bind(event.payload.to_string())
}

impl SqliteStore {
    /// Opens (creating it if needed) the SQLite file at `path` and applies the migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options).await
    }

    /// Opens a SQLite database by URL, such as `sqlite://catalog.db?mode=rwc`.
    pub async fn connect_url(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(error("invalid SQLite URL"))?
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
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
                    Opening::Migrate(source) => StoreError::new(
                        ErrorKind::Refused,
                        "could not apply the migrations",
                        Some(Box::new(source) as _),
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20 * tried)).await;
            tried += 1;
        }
    }

    async fn try_connect(options: SqliteConnectOptions) -> Result<Self, Opening> {
        // One connection: SQLite has one writer at a time, and every step here writes.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(Opening::Connect)?;
        migrator(&MIGRATIONS)
            .run(&pool)
            .await
            .map_err(Opening::Migrate)?;
        Ok(SqliteStore {
            pool,
            lease: DEFAULT_LEASE,
        })
    }

    /// How long a claim holds before another process may take the work over: 60 s by default.
    /// Keep it longer than your slowest handler.
    pub fn lease(self, lease: Duration) -> Self {
        SqliteStore { lease, ..self }
    }

    /// The store's connection pool (one connection). Opening a pool of your own on the same file
    /// for the application's transactions lets reads run beside the store.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Until when a claim made at `now` (in microseconds) holds.
    fn lease_until(&self, now: i64) -> i64 {
        now.saturating_add(micros_of(self.lease))
    }
}

/// Reads the event columns shared by the deliveries and the outbox.
fn stored_event(row: &SqliteRow, kind: EventKind) -> Result<StoredEvent, StoreError> {
    let text = |column: &str| -> Result<String, StoreError> {
        row.try_get::<String, _>(column)
            .map_err(error("could not read a stored event"))
    };
    let uuid = |value: String| {
        Uuid::parse_str(&value).map_err(|source| {
            StoreError::new(
                ErrorKind::Invalid,
                "a stored event id is not a UUID",
                Some(Box::new(source) as _),
            )
        })
    };
    let occurred_at = DateTime::parse_from_rfc3339(&text("occurred_at")?)
        .map_err(|source| {
            StoreError::new(
                ErrorKind::Invalid,
                "a stored time is not RFC 3339",
                Some(Box::new(source) as _),
            )
        })?
        .with_timezone(&Utc);
    let causation_id: Option<String> = row
        .try_get("causation_id")
        .map_err(error("could not read a stored event"))?;
    let payload: serde_json::Value = serde_json::from_str(&text("payload")?).map_err(|source| {
        StoreError::new(
            ErrorKind::Invalid,
            "a stored payload is not JSON",
            Some(Box::new(source) as _),
        )
    })?;
    let version: i64 = row
        .try_get("version")
        .map_err(error("could not read a stored event"))?;
    Ok(StoredEvent {
        meta: EventMeta {
            id: uuid(text("event_id")?)?,
            occurred_at,
            correlation_id: uuid(text("correlation_id")?)?,
            causation_id: causation_id.map(uuid).transpose()?,
            traceparent: row
                .try_get("traceparent")
                .map_err(error("could not read a stored event"))?,
            source: text("source")?,
        },
        kind,
        name: text("name")?,
        version: u32::try_from(version).unwrap_or(u32::MAX),
        payload: Arc::new(payload),
        typed: None,
    })
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Domain => "domain",
        EventKind::Integration => "integration",
    }
}

/// Records events with one delivery per handler, on `connection`; returns how many deliveries
/// were created (an integration event's handler that already received it gets none).
async fn insert_events(
    connection: &mut SqliteConnection,
    events: Vec<NewEvent>,
    now: i64,
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
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(kind_name(event.kind))
            .bind(&handler)
            .bind(now);
            bind_event(query, &event)
                .execute(&mut *connection)
                .await
                .map_err(error("could not record a delivery"))?;
            created += 1;
        }
    }
    Ok(created)
}

/// Completes delivery `id`, if it is still claimed at `attempt` (or whatever its attempt, for
/// `None`), and records the integration rows it produced, on `connection`. Returns whether it
/// did.
async fn complete(
    connection: &mut SqliteConnection,
    id: DeliveryId,
    attempt: Option<u32>,
    rows: Vec<NewIntegrationRow>,
) -> Result<bool, StoreError> {
    let deleted = sqlx::query(
        "DELETE FROM tidings_deliveries WHERE id = ?1 AND (?2 IS NULL OR attempts = ?2)",
    )
    .bind(id.0 as i64)
    .bind(attempt.map(i64::from))
    .execute(&mut *connection)
    .await
    .map_err(error("could not complete a delivery"))?;
    if deleted.rows_affected() == 0 {
        return Ok(false);
    }
    let now = micros(Utc::now());
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
    Ok(true)
}

impl Store for SqliteStore {
    fn record(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
            let created = insert_events(&mut tx, events, micros(Utc::now())).await?;
            tx.commit().await.map_err(error("could not commit"))?;
            Ok(created)
        })
    }

    fn record_in<'c>(
        &'c self,
        connection: &'c mut (dyn Any + Send),
        events: Vec<NewEvent>,
    ) -> BoxFuture<'c, Result<usize, StoreError>> {
        Box::pin(async move {
            let connection = connection
                .downcast_mut::<SqliteConnection>()
                .ok_or_else(|| {
                    StoreError::new(ErrorKind::Invalid,
                        "the app's store is SQLite: record its events in a `sqlx::Transaction<'_, Sqlite>` on the store's file",
                        None,
                    )
                })?;
            insert_events(connection, events, micros(Utc::now())).await
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
                .map_err(error("could not begin"))?;
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM tidings_deliveries WHERE id = ? AND attempts = ?",
            )
            .bind(id.0 as i64)
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
            let mut tx = transaction
                .downcast::<Transaction<'static, Sqlite>>()
                .map_err(|_| {
                    StoreError::new(ErrorKind::Invalid, "not a transaction of this store", None)
                })?;
            // The transaction holds the write lock since `begin`: the delivery is this claim's.
            complete(&mut tx, id, None, produced).await?;
            tx.commit().await.map_err(error("could not commit"))
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
            let until = self.lease_until(micros(Utc::now()));
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
            for (id, attempt) in claims {
                sqlx::query(
                    "UPDATE tidings_deliveries SET claimed_until = ? WHERE id = ? AND attempts = ?",
                )
                .bind(until)
                .bind(id.0 as i64)
                .bind(i64::from(attempt))
                .execute(&mut *tx)
                .await
                .map_err(error("could not extend the claims"))?;
            }
            tx.commit().await.map_err(error("could not commit"))
        })
    }

    fn claim_deliveries<'a>(
        &'a self,
        now: DateTime<Utc>,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        Box::pin(async move {
            let now = micros(now);
            let lease = self.lease_until(now);
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
            let rows = sqlx::query(
                "UPDATE tidings_deliveries SET claimed_until = ?1, attempts = attempts + 1 \
                 WHERE id IN (SELECT o.id FROM tidings_deliveries o WHERE o.due_at <= ?2 \
                 AND (o.claimed_until IS NULL OR o.claimed_until < ?2) \
                 AND o.handler IN (SELECT value FROM json_each(?4)) \
                 AND NOT EXISTS (SELECT 1 FROM tidings_deliveries c \
                 WHERE c.handler = o.handler AND c.claimed_until >= ?2) \
                 ORDER BY o.id LIMIT ?3) RETURNING *",
            )
            .bind(lease)
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(serde_json::to_string(handlers).unwrap_or_default())
            .fetch_all(&mut *tx)
            .await
            .map_err(error("could not claim deliveries"))?;
            tx.commit().await.map_err(error("could not commit"))?;
            let mut deliveries = rows
                .iter()
                .map(|row| {
                    let kind: String = row
                        .try_get("kind")
                        .map_err(error("could not read a delivery"))?;
                    let kind = if kind == "integration" {
                        EventKind::Integration
                    } else {
                        EventKind::Domain
                    };
                    let attempts: i64 = row
                        .try_get("attempts")
                        .map_err(error("could not read a delivery"))?;
                    Ok(Delivery {
                        id: DeliveryId(
                            row.try_get::<i64, _>("id")
                                .map_err(error("could not read a delivery"))?
                                as u64,
                        ),
                        event: stored_event(row, kind)?,
                        handler: row
                            .try_get("handler")
                            .map_err(error("could not read a delivery"))?,
                        attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            deliveries.sort_by_key(|d| d.id);
            Ok(deliveries)
        })
    }

    fn complete_delivery(
        &self,
        id: DeliveryId,
        attempt: u32,
        produced: Vec<NewIntegrationRow>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
            if complete(&mut tx, id, Some(attempt), produced).await? {
                tx.commit().await.map_err(error("could not commit"))?;
            }
            Ok(())
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
            .bind(id.0 as i64)
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
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
            sqlx::query(concat!(
                "INSERT INTO tidings_dead_letters (handler, attempts, error, at, kind, ",
                event_columns!(),
                ") SELECT handler, attempts, ?, ?, kind, ",
                event_columns!(),
                " FROM tidings_deliveries WHERE id = ? AND attempts = ?"
            ))
            .bind(error_text)
            .bind(Utc::now().to_rfc3339())
            .bind(id.0 as i64)
            .bind(i64::from(attempt))
            .execute(&mut *tx)
            .await
            .map_err(error("could not dead-letter a delivery"))?;
            sqlx::query("DELETE FROM tidings_deliveries WHERE id = ? AND attempts = ?")
                .bind(id.0 as i64)
                .bind(i64::from(attempt))
                .execute(&mut *tx)
                .await
                .map_err(error("could not dead-letter a delivery"))?;
            tx.commit().await.map_err(error("could not commit"))
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
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
            let inserted = sqlx::query(concat!(
                "INSERT INTO tidings_deliveries (kind, handler, due_at, ",
                event_columns!(),
                ") SELECT kind, handler, ?, ",
                event_columns!(),
                " FROM tidings_dead_letters WHERE id = ? AND handler IS NOT NULL AND payload IS NOT NULL"
            ))
            .bind(micros(Utc::now()))
            .bind(id.0 as i64)
            .execute(&mut *tx)
            .await
            .map_err(error("could not replay a dead letter"))?;
            if inserted.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM tidings_dead_letters WHERE id = ?")
                .bind(id.0 as i64)
                .execute(&mut *tx)
                .await
                .map_err(error("could not replay a dead letter"))?;
            tx.commit().await.map_err(error("could not commit"))?;
            Ok(true)
        })
    }

    fn discard_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = sqlx::query("DELETE FROM tidings_dead_letters WHERE id = ?")
                .bind(id.0 as i64)
                .execute(&self.pool)
                .await
                .map_err(error("could not discard a dead letter"))?;
            Ok(deleted.rows_affected() > 0)
        })
    }

    fn next_delivery_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(async move {
            // Among the deliveries a claim could take: none of a handler another claim holds.
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(o.due_at) FROM tidings_deliveries o WHERE o.claimed_until IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM tidings_deliveries c \
                 WHERE c.handler = o.handler AND c.claimed_until >= ?)",
            )
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
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
            // The oldest row of each key, and every row with no key.
            let rows = sqlx::query(
                "UPDATE tidings_outbox SET claimed_until = ?, attempts = attempts + 1 \
                 WHERE id IN (SELECT o.id FROM tidings_outbox o WHERE o.due_at <= ? \
                 AND (o.claimed_until IS NULL OR o.claimed_until < ?) \
                 AND (o.ordering_key IS NULL OR o.id = (SELECT MIN(h.id) FROM tidings_outbox h \
                 WHERE h.ordering_key = o.ordering_key)) ORDER BY o.id LIMIT ?) \
                 RETURNING *",
            )
            .bind(lease)
            .bind(now)
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(error("could not claim integration rows"))?;
            tx.commit().await.map_err(error("could not commit"))?;
            let mut claimed = rows
                .iter()
                .map(|row| {
                    let attempts: i64 = row
                        .try_get("attempts")
                        .map_err(error("could not read a row"))?;
                    Ok(IntegrationRow {
                        id: RowId(
                            row.try_get::<i64, _>("id")
                                .map_err(error("could not read a row"))?
                                as u64,
                        ),
                        event: stored_event(row, EventKind::Integration)?,
                        key: row
                            .try_get("ordering_key")
                            .map_err(error("could not read a row"))?,
                        attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            claimed.sort_by_key(|r| r.id);
            Ok(claimed)
        })
    }

    fn row_published(&self, id: RowId, archive: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
            if archive {
                sqlx::query(concat!(
                    "INSERT INTO tidings_outbox_archive (id, ordering_key, published_at, ",
                    event_columns!(),
                    ") SELECT id, ordering_key, ?, ",
                    event_columns!(),
                    " FROM tidings_outbox WHERE id = ?"
                ))
                .bind(micros(Utc::now()))
                .bind(id.0 as i64)
                .execute(&mut *tx)
                .await
                .map_err(error("could not archive a published row"))?;
            }
            sqlx::query("DELETE FROM tidings_outbox WHERE id = ?")
                .bind(id.0 as i64)
                .execute(&mut *tx)
                .await
                .map_err(error("could not mark a row published"))?;
            tx.commit().await.map_err(error("could not commit"))
        })
    }

    fn prune(
        &self,
        inbox_before: DateTime<Utc>,
        archive_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut tx = self.pool.begin().await.map_err(error("could not begin"))?;
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
            tx.commit().await.map_err(error("could not commit"))?;
            Ok(usize::try_from(inbox + archive).unwrap_or(usize::MAX))
        })
    }

    fn retry_row(
        &self,
        id: RowId,
        error_text: String,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE tidings_outbox SET claimed_until = NULL, due_at = ?, last_error = ? WHERE id = ?",
            )
            .bind(micros(at))
            .bind(error_text)
            .bind(id.0 as i64)
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
            let count = |n: i64| usize::try_from(n).unwrap_or(0);
            Ok((count(deliveries), count(rows)))
        })
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT * FROM tidings_dead_letters ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(error("could not read the dead letters"))?;
            rows.iter()
                .map(|row| {
                    let read = error("could not read a dead letter");
                    let event_id: String = row.try_get("event_id").map_err(read)?;
                    let at: String = row
                        .try_get("at")
                        .map_err(error("could not read a dead letter"))?;
                    let attempts: i64 = row
                        .try_get("attempts")
                        .map_err(error("could not read a dead letter"))?;
                    Ok(DeadLetter {
                        id: DeadLetterId(
                            row.try_get::<i64, _>("id")
                                .map_err(error("could not read a dead letter"))?
                                as u64,
                        ),
                        event_id: Uuid::parse_str(&event_id).map_err(|source| {
                            StoreError::new(
                                ErrorKind::Invalid,
                                "a dead letter's event id is not a UUID",
                                Some(Box::new(source) as _),
                            )
                        })?,
                        event_name: row
                            .try_get("name")
                            .map_err(error("could not read a dead letter"))?,
                        handler: row
                            .try_get("handler")
                            .map_err(error("could not read a dead letter"))?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        error: row
                            .try_get("error")
                            .map_err(error("could not read a dead letter"))?,
                        at: DateTime::parse_from_rfc3339(&at)
                            .map(|at| at.with_timezone(&Utc))
                            .map_err(|source| {
                                StoreError::new(
                                    ErrorKind::Invalid,
                                    "a dead letter's time is not RFC 3339",
                                    Some(Box::new(source) as _),
                                )
                            })?,
                    })
                })
                .collect()
        })
    }
}
