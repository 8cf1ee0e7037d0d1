//! [`PostgresStore`]: the production store, in a schema of a PostgreSQL database.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Row, SqlSafeStr, SqlStr};
use uuid::Uuid;

use super::sql::{
    self, DEAD_LETTERS, DEFAULT_LEASE, DELIVERIES, MIGRATIONS_TABLE, OUTBOX, StoredValues, error,
    event_columns, id_param, kind_name, micros_of, migrator, unreadable,
};
use crate::event::EventKind;
use crate::store::Waiting;
use crate::store::{
    BoxFuture, Completion, DeadLetter, DeadLetterId, Delivery, DeliveryId, ErrorKind,
    IntegrationRow, NewEvent, NewIntegrationRow, Payload, RowId, Store, StoreError, StoreListener,
    StoredEvent, Wake,
};
use crate::sync::lock;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The schema of [`PostgresStore::connect`].
const DEFAULT_SCHEMA: &str = "tidings";

/// What to do about a transaction on another database.
const NOT_THIS_DATABASE: &str = "the transaction is not on the database of the app's store, so \
    its events would wait where no dispatcher looks: begin it on the store's database, such as \
    with `store.pool().begin()`";

/// A store in PostgreSQL, in a schema of its own (`tidings` by default): deliveries, the
/// integration outbox and its archive, the inbox and dead letters. The crate's migrations are
/// applied when it connects, under an advisory lock, so that processes starting together apply
/// them once (recorded in `<schema>._tidings_migrations`, apart from the application's).
///
/// - Claims hold what they take for a lease (60 s by default, [`lease`](Self::lease)): any
///   number of app processes can share one schema, and the work of a process that dies is
///   taken over when its lease expires. The relay takes outbox rows with `FOR UPDATE SKIP
///   LOCKED`; the dispatcher takes a handler's deliveries only while no other claim holds that
///   handler, so that they run in one process at a time, in order.
/// - Commits that record work send a `NOTIFY`; every app on the schema `LISTEN`s, so work
///   recorded by one process starts at once in the others. Polling stays as the fallback.
/// - Use cases record domain events in their own transaction with
///   [`DomainEvents::publish_in`](crate::DomainEvents::publish_in); a handler can take the
///   store's transaction as a `&mut sqlx::Transaction<'_, Postgres>` parameter.
///
/// - Leases are reckoned on the database's clock, which every instance shares; a retry's due
///   time is the failing instance's clock plus the backoff.
///
/// Give each bounded context its own schema, so that its tables hold its work alone.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tidings::StoreError> {
/// let store = tidings::PostgresStore::connect("postgres://localhost/shop").await?;
///
/// // Or on the application's own pool, in a schema per bounded context:
/// let pool = sqlx::PgPool::connect_lazy("postgres://localhost/shop").unwrap();
/// let catalog = tidings::PostgresStore::connect_with(pool, "catalog_events").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Arc<str>,
    lease: Duration,
    /// The schema's store id (`tidings_store`), which `publish_in` checks the caller's database
    /// by.
    identity: Arc<str>,
    /// Where the next claim starts walking each handler's deliveries.
    walks: Arc<Mutex<Walks>>,
}

/// How often a claim walks each handler's deliveries from the lowest id while a backlog drains:
/// see [`Walks`].
const FULL_WALK_EVERY: Duration = Duration::from_millis(100);

/// Where claims start walking each handler's deliveries on the `(handler, id)` index.
///
/// The index keeps the entries of completed deliveries until vacuum removes them, and a claim
/// that walks a handler's deliveries from the lowest id passes them all: while a backlog of
/// 50,000 drains, the claim of its last batch passes nearly 50,000. So while claims come back
/// full, a claim starts each handler's walk at the first id of that handler's claim before.
///
/// A delivery below that start is not seen: one whose transaction committed after a claim took
/// higher ids (ids are taken at insert, and transactions commit out of order), or a retry that
/// came due. So the claim after one that was not full walks from the lowest id, and while claims
/// come back full, each handler's deliveries are walked from it at least every
/// [`FULL_WALK_EVERY`]: such a delivery waits at most that much more, and only while a backlog
/// drains. A claim that started above the lowest id and found nothing walks again from it at
/// once.
#[derive(Debug, Default)]
struct Walks(HashMap<String, Walk>);

/// Where a handler's walk starts while claims come back full.
#[derive(Debug)]
struct Walk {
    /// The first id of the handler's last claim.
    from: i64,
    /// When the handler's deliveries were last walked from the lowest id.
    full_at: Instant,
}

/// The start of a walk from the lowest id.
const LOWEST: i64 = i64::MIN;

impl Walks {
    /// Where a claim of `handlers` starts each one's walk ([`LOWEST`] for from the lowest id).
    fn starts(&self, handlers: &[String]) -> Vec<i64> {
        handlers
            .iter()
            .map(|handler| match self.0.get(handler) {
                Some(walk) if walk.full_at.elapsed() < FULL_WALK_EVERY => walk.from,
                _ => LOWEST,
            })
            .collect()
    }

    /// Notes a claim of `handlers` begun at `at`, which started their walks at `starts` and
    /// took `claimed` of at most `limit`.
    fn claimed(
        &mut self,
        at: Instant,
        handlers: &[String],
        starts: &[i64],
        claimed: &[Delivery],
        limit: usize,
    ) {
        if claimed.is_empty() || claimed.len() < limit {
            self.0.clear();
            return;
        }
        let mut firsts: HashMap<&str, u64> = HashMap::new();
        for delivery in claimed {
            let first = firsts.entry(&delivery.handler).or_insert(delivery.id.get());
            *first = (*first).min(delivery.id.get());
        }
        for (handler, &start) in handlers.iter().zip(starts) {
            let first = firsts
                .get(handler.as_str())
                .and_then(|&first| i64::try_from(first).ok());
            match (self.0.get_mut(handler), first) {
                (Some(walk), first) => {
                    walk.from = first.unwrap_or(walk.from);
                    if start == LOWEST {
                        walk.full_at = at;
                    }
                }
                // No start was kept for it: this walk was from the lowest id.
                (None, Some(from)) => {
                    self.0.insert(handler.clone(), Walk { from, full_at: at });
                }
                (None, None) => {}
            }
        }
    }
}

/// Binds an event's columns for `table`, in the order of [`event_columns!`]; an error for a
/// version that the `integer` column cannot hold.
fn bind_event<'q>(
    query: Query<'q, Postgres, PgArguments>,
    table: &str,
    event: &StoredEvent,
) -> Result<Query<'q, Postgres, PgArguments>, StoreError> {
    let version: i32 = sql::convert(table, "version", event.version)?;
    Ok(query
        .bind(event.meta.id)
        .bind(event.name.clone())
        .bind(version)
        .bind(event.meta.occurred_at)
        .bind(event.meta.correlation_id)
        .bind(event.meta.causation_id)
        .bind(event.meta.traceparent.clone())
        .bind(event.meta.source.clone())
        .bind(sqlx::types::Json(event.payload.clone())))
}

/// Whether `schema` is a plain lower-case identifier, safe to put in SQL.
fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 48
}

/// The statement that records [`DeliveryRows`] (`$1` to `$11`, with `$12` the notification's
/// channel and `$13` the store's id): the deliveries are inserted in order, only where
/// `tidings_store` holds this store's id, and the listeners are notified at commit. `$inbox`
/// is a CTE before the insert and `$received` a condition of its rows, for integration events:
/// the inbox keeps a handler from an event it already received (`$inbox` ends with `", "` and
/// `$received` starts with a space, or both are empty). The last column reads
/// `notified`, so that the notification is sent (a CTE that modifies nothing runs only when
/// read).
macro_rules! insert_deliveries {
    ($inbox:literal, $received:literal) => {
        concat!(
            "WITH input AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::text[], \
             $5::integer[], $6::timestamptz[], $7::uuid[], $8::uuid[], $9::text[], $10::text[], \
             $11::text[]) WITH ORDINALITY AS i(kind, handler, event_id, name, version, \
             occurred_at, correlation_id, causation_id, traceparent, source, payload, n)), \
             ours AS (SELECT EXISTS (SELECT 1 FROM {schema}.tidings_store WHERE id = $13) \
             AS is_ours), ",
            $inbox,
            "inserted AS (INSERT INTO {schema}.tidings_deliveries (kind, handler, due_at, ",
            event_columns!(),
            ") SELECT kind, handler, now(), event_id, name, version, occurred_at, \
             correlation_id, causation_id, traceparent, source, payload::jsonb \
             FROM input, ours WHERE is_ours",
            $received,
            " ORDER BY n RETURNING 1), \
             notified AS (SELECT pg_notify($12, 'd') FROM (SELECT 1 FROM inserted LIMIT 1) \
             AS first) \
             SELECT (SELECT COUNT(*) FROM inserted), (SELECT is_ours FROM ours), \
             (SELECT COUNT(*) FROM notified)"
        )
    };
}

/// The deliveries of recorded events, one per (event, handler), as the columns of one insert.
/// An integration event listed twice for a handler is one delivery (the inbox's rule).
#[derive(Default)]
struct DeliveryRows {
    kinds: Vec<&'static str>,
    handlers: Vec<String>,
    event_ids: Vec<Uuid>,
    names: Vec<String>,
    versions: Vec<i32>,
    occurred_at: Vec<DateTime<Utc>>,
    correlation_ids: Vec<Uuid>,
    causation_ids: Vec<Option<Uuid>>,
    traceparents: Vec<Option<String>>,
    sources: Vec<String>,
    payloads: Vec<String>,
}

impl DeliveryRows {
    fn of(events: Vec<NewEvent>) -> Result<Self, StoreError> {
        let mut rows = DeliveryRows::default();
        let mut received = std::collections::HashSet::new();
        for NewEvent { event, handlers } in events {
            let version: i32 = sql::convert(DELIVERIES, "version", event.version)?;
            let payload = event.payload.get();
            for handler in handlers {
                if event.kind == EventKind::Integration
                    && !received.insert((handler.clone(), event.meta.id))
                {
                    continue;
                }
                rows.kinds.push(kind_name(event.kind));
                rows.handlers.push(handler);
                rows.event_ids.push(event.meta.id);
                rows.names.push(event.name.clone());
                rows.versions.push(version);
                rows.occurred_at.push(event.meta.occurred_at);
                rows.correlation_ids.push(event.meta.correlation_id);
                rows.causation_ids.push(event.meta.causation_id);
                rows.traceparents.push(event.meta.traceparent.clone());
                rows.sources.push(event.meta.source.clone());
                rows.payloads.push(payload.to_owned());
            }
        }
        Ok(rows)
    }
}

/// A condition that lets a statement's commit return before its record reaches the disk
/// (`synchronous_commit = off`, for its own transaction alone), for the relay's statements and
/// the completions that record nothing else, which a crash of the database may lose
/// harmlessly: a claim is a lease, lost like an expired one; a completion lost is a delivery
/// run again, as after a crash before its completion; a row whose mark is lost is published
/// again, with the same event id, a duplicate that the broker's dedupe or the consumer's inbox
/// absorbs. The setting is an init plan, evaluated once before any row is read. It spares each
/// call a disk flush, which costs more than the call.
macro_rules! unflushed {
    () => {
        "(SELECT set_config('synchronous_commit', 'off', true)) = 'off'"
    };
}

/// The ids of the deliveries of ids `$1` that `tidings_complete` completed, each only if still
/// claimed at its attempt in `$2` (at any, for a null attempt). The statements of completions
/// and claims are functions of the schema: see the migrations `0005_claim_in_one_call` and
/// `0006_completion_plan_kept`.
macro_rules! complete_sql {
    () => {
        "SELECT c.id FROM {schema}.tidings_complete($1, $2) AS c(id)"
    };
}

/// The ids and attempts of `completions`, as `tidings_complete` takes them.
fn completion_params(
    completions: &[sql::Finished],
) -> Result<(Vec<i64>, Vec<Option<i32>>), StoreError> {
    let mut ids = Vec::with_capacity(completions.len());
    let mut attempts = Vec::with_capacity(completions.len());
    for (id, attempt, _) in completions {
        ids.push(id_param(DELIVERIES, id.get())?);
        attempts.push(attempt.map(attempt_param).transpose()?);
    }
    Ok((ids, attempts))
}

impl PostgresStore {
    /// Connects to the database at `url` and applies the migrations in the `tidings` schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await
            .map_err(error("could not connect to PostgreSQL"))?;
        Self::connect_with(pool, DEFAULT_SCHEMA).await
    }

    /// A store in `schema` (created if needed; a lower-case identifier) on `pool`, such as the
    /// application's own pool, and applies the migrations there.
    pub async fn connect_with(pool: PgPool, schema: &str) -> Result<Self, StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::new(
                ErrorKind::Invalid,
                format!(
                    "`{schema}` is not a schema name tidings accepts: use lower-case letters, digits and `_`, at most 48"
                ),
                None,
            ));
        }
        // A pool of one connection with the schema as its search path, so that the migrations
        // create their tables there; it is closed afterwards. (A pool rather than a bare
        // connection: sqlx's migration future on `&mut PgConnection` is not `Send` for every
        // lifetime, which would make `connect_with` unusable in `tokio::spawn`.)
        let options = (*pool.connect_options())
            .clone()
            .options([("search_path", format!("\"{schema}\""))]);
        let migrating = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(error("could not connect to PostgreSQL"))?;
        let mut migrator = migrator(&MIGRATIONS);
        migrator.dangerous_set_table_name(format!("\"{schema}\".{MIGRATIONS_TABLE}"));
        migrator.create_schema(format!("\"{schema}\""));
        let migrated = migrator.run(&migrating).await;
        migrating.close().await;
        migrated.map_err(sql::migration_error)?;
        let identity: String = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM \"{schema}\".tidings_store"
        )))
        .fetch_one(&pool)
        .await
        .map_err(error("could not read the store's id"))?;
        Ok(PostgresStore {
            pool,
            schema: Arc::from(schema),
            lease: DEFAULT_LEASE,
            identity: Arc::from(identity),
            walks: Arc::default(),
        })
    }

    /// How long a claim holds before another process may take the work over: 60 s by default.
    /// Keep it longer than your slowest handler.
    pub fn lease(self, lease: Duration) -> Self {
        PostgresStore { lease, ..self }
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema of the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `template` with `{schema}` replaced by the store's quoted schema.
    fn sql(&self, template: &'static str) -> SqlStr {
        AssertSqlSafe(template.replace("{schema}", &format!("\"{}\"", self.schema))).into_sql_str()
    }

    /// The channel of the store's notifications.
    fn channel(&self) -> String {
        format!("tidings_{}", self.schema)
    }

    /// The lease in microseconds, for `now() + $n * interval '1 microsecond'`: leases are
    /// reckoned on the database's clock, the one clock every instance shares.
    fn lease_micros(&self) -> i64 {
        micros_of(self.lease)
    }

    /// Records events with one delivery per handler on `connection`, and notifies the
    /// listeners at commit; returns how many deliveries were created.
    async fn insert_events(
        &self,
        connection: &mut PgConnection,
        events: Vec<NewEvent>,
    ) -> Result<usize, StoreError> {
        let rows = DeliveryRows::of(events)?;
        if rows.kinds.is_empty() {
            return Ok(0);
        }
        // One statement for every (event, handler) pair, with its notification (see
        // `insert_deliveries!`). Only integration events go through the inbox: a statement
        // without it costs the database about half as much, and a use case's `publish_in`
        // records domain events alone.
        let integration = rows.kinds.contains(&kind_name(EventKind::Integration));
        let statement = if integration {
            self.sql(insert_deliveries!(
                "inbox AS (INSERT INTO {schema}.tidings_inbox (handler, event_id, received_at) \
                 SELECT handler, event_id, now() FROM input, ours WHERE is_ours \
                 AND kind = 'integration' ON CONFLICT DO NOTHING RETURNING handler, event_id), ",
                " AND (kind <> 'integration' \
                 OR (handler, event_id) IN (SELECT handler, event_id FROM inbox))"
            ))
        } else {
            self.sql(insert_deliveries!("", ""))
        };
        let (created, ours, _notified): (i64, bool, i64) = sqlx::query_as(statement)
            .bind(rows.kinds)
            .bind(rows.handlers)
            .bind(rows.event_ids)
            .bind(rows.names)
            .bind(rows.versions)
            .bind(rows.occurred_at)
            .bind(rows.correlation_ids)
            .bind(rows.causation_ids)
            .bind(rows.traceparents)
            .bind(rows.sources)
            .bind(rows.payloads)
            .bind(self.channel())
            .bind(&*self.identity)
            .fetch_one(&mut *connection)
            .await
            .map_err(|source| sql::recording_error(source, NOT_THIS_DATABASE))?;
        if !ours {
            return Err(sql::not_this_store(NOT_THIS_DATABASE));
        }
        sql::count(DELIVERIES, created)
    }

    /// Completes each delivery still claimed at its attempt (or whatever its attempt, for
    /// `None`), with one statement for them all, and records the rows those produced, on
    /// `connection`. Returns whether it completed any.
    ///
    /// Completions that produced nothing commit without waiting for the disk unless `flush`
    /// (a handler's own transaction must): lost in a crash of the database, their deliveries
    /// run again, as after a crash before their completion. Integration rows always wait: lost
    /// after the relay published them, they would be produced again under new event ids.
    async fn complete(
        &self,
        connection: &mut PgConnection,
        completions: Vec<sql::Finished>,
        flush: bool,
    ) -> Result<bool, StoreError> {
        let (ids, attempts) = completion_params(&completions)?;
        let statement = if flush {
            self.sql(complete_sql!())
        } else {
            self.sql(concat!(complete_sql!(), " WHERE ", unflushed!()))
        };
        let deleted: Vec<i64> = sqlx::query_scalar(statement)
            .bind(&ids)
            .bind(&attempts)
            .fetch_all(&mut *connection)
            .await
            .map_err(error("could not complete deliveries"))?;
        if deleted.is_empty() {
            return Ok(false);
        }
        let mut produced = false;
        for ((_, _, rows), id) in completions.into_iter().zip(ids) {
            if rows.is_empty() || !deleted.contains(&id) {
                continue;
            }
            produced = true;
            for NewIntegrationRow { event, key } in rows {
                let query = sqlx::query(self.sql(concat!(
                    "INSERT INTO {schema}.tidings_outbox (ordering_key, due_at, ",
                    event_columns!(),
                    ") VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                )))
                .bind(key);
                bind_event(query, OUTBOX, &event)?
                    .execute(&mut *connection)
                    .await
                    .map_err(error("could not record an integration event"))?;
            }
        }
        if produced {
            sqlx::query("SELECT pg_notify($1, 'r')")
                .bind(self.channel())
                .execute(&mut *connection)
                .await
                .map_err(error("could not notify the relays"))?;
        }
        Ok(true)
    }
}

/// The relay's claim of up to `$2` rows for a lease of `$1` microseconds: see `claim_rows`.
const CLAIM_ROWS: &str = concat!(
    "UPDATE {schema}.tidings_outbox \
     SET claimed_until = now() + $1 * interval '1 microsecond', attempts = attempts + 1 \
     WHERE id IN (SELECT o.id FROM {schema}.tidings_outbox o WHERE o.id IN ( \
       WITH RECURSIVE keys(ordering_key, n) AS ( \
         (SELECT k.ordering_key, 1 FROM {schema}.tidings_outbox k \
          WHERE k.ordering_key IS NOT NULL ORDER BY k.ordering_key LIMIT 1) \
         UNION ALL \
         SELECT (SELECT k.ordering_key FROM {schema}.tidings_outbox k \
                 WHERE k.ordering_key > keys.ordering_key ORDER BY k.ordering_key LIMIT 1), \
                keys.n + 1 \
         FROM keys WHERE keys.ordering_key IS NOT NULL AND keys.n < $2) \
       SELECT (SELECT h.id FROM {schema}.tidings_outbox h WHERE h.ordering_key = keys.ordering_key \
               ORDER BY h.ordering_key, h.id LIMIT 1) \
       FROM keys WHERE keys.ordering_key IS NOT NULL \
       UNION ALL \
       SELECT r.id FROM (SELECT f.id, f.ordering_key FROM {schema}.tidings_outbox f \
                         WHERE coalesce(f.claimed_until, '-infinity') < now() \
                         ORDER BY f.id LIMIT $2) r \
       WHERE r.ordering_key IS NULL OR r.id = (SELECT h.id FROM {schema}.tidings_outbox h \
             WHERE h.ordering_key = r.ordering_key ORDER BY h.ordering_key, h.id LIMIT 1) \
       UNION ALL \
       (SELECT u.id FROM {schema}.tidings_outbox u WHERE u.ordering_key IS NULL \
        AND coalesce(u.claimed_until, '-infinity') < now() ORDER BY u.id LIMIT $2)) \
     AND o.due_at <= now() AND coalesce(o.claimed_until, '-infinity') < now() \
     ORDER BY o.id LIMIT $2 FOR UPDATE SKIP LOCKED) AND ",
    unflushed!(),
    " RETURNING *"
);

/// PostgreSQL keeps UUIDs as `uuid`, times as `timestamptz`, payloads as `jsonb` and counts
/// and versions as 32-bit `integer`s.
impl StoredValues for PgRow {
    fn uuid(&self, table: &str, column: &str) -> Result<Option<Uuid>, StoreError> {
        self.try_get(column).map_err(unreadable(table, column))
    }

    fn time(&self, table: &str, column: &str) -> Result<DateTime<Utc>, StoreError> {
        self.try_get(column).map_err(unreadable(table, column))
    }

    fn number(&self, table: &str, column: &str) -> Result<u32, StoreError> {
        let number: i32 = self.try_get(column).map_err(unreadable(table, column))?;
        sql::convert(table, column, number)
    }

    fn payload(&self, table: &str) -> Result<Payload, StoreError> {
        let payload: Box<serde_json::value::RawValue> = self
            .try_get("payload")
            .map_err(unreadable(table, "payload"))?;
        Ok(Payload::from_raw(payload))
    }
}

/// A delivery's attempt, for the `integer` column `attempts`.
fn attempt_param(attempt: u32) -> Result<i32, StoreError> {
    sql::convert(DELIVERIES, "attempts", attempt)
}

/// Wake-ups from the store's `NOTIFY`s.
struct Listener(PgListener);

impl StoreListener for Listener {
    fn next(&mut self) -> BoxFuture<'_, Result<Wake, StoreError>> {
        Box::pin(async move {
            match self.0.try_recv().await {
                Ok(Some(notification)) => Ok(match notification.payload() {
                    "d" => Wake::Deliveries,
                    "r" => Wake::Rows,
                    _ => Wake::All,
                }),
                // The connection was lost: it reconnects on the next call, and what was sent in
                // between is unheard of.
                Ok(None) => Ok(Wake::All),
                Err(source) => Err(error("the PostgreSQL listener failed")(source)),
            }
        })
    }
}

impl Store for PostgresStore {
    fn record(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let mut tx = sql::begin(&self.pool).await?;
            let created = self.insert_events(&mut tx, events).await?;
            sql::commit(tx).await?;
            Ok(created)
        })
    }

    fn record_in<'c>(
        &'c self,
        connection: &'c mut (dyn Any + Send),
        events: Vec<NewEvent>,
    ) -> BoxFuture<'c, Result<usize, StoreError>> {
        Box::pin(async move {
            let connection = sql::caller_connection::<PgConnection>(
                connection,
                "the app's store is PostgreSQL: record its events in a `sqlx::Transaction<'_, Postgres>` on the store's database",
            )?;
            self.insert_events(connection, events).await
        })
    }

    fn transaction_database(&self) -> Option<TypeId> {
        Some(TypeId::of::<Postgres>())
    }

    fn begin(
        &self,
        id: DeliveryId,
        attempt: u32,
    ) -> BoxFuture<'_, Result<Option<Box<dyn Any + Send>>, StoreError>> {
        Box::pin(async move {
            let mut tx = sql::begin(&self.pool).await?;
            // Locked until the commit: no other claim can take the delivery meanwhile.
            let held: Option<i64> = sqlx::query_scalar(self.sql(
                "SELECT id FROM {schema}.tidings_deliveries WHERE id = $1 AND attempts = $2 FOR UPDATE",
            ))
            .bind(id_param(DELIVERIES, id.get())?)
            .bind(attempt_param(attempt)?)
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
            let mut tx = sql::handler_transaction::<Postgres>(transaction)?;
            // The transaction holds the delivery's row since `begin`: it is this claim's.
            self.complete(&mut tx, vec![(id, None, produced)], true)
                .await?;
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
            let (ids, attempts): (Vec<i64>, Vec<i32>) = claims
                .into_iter()
                .map(|(id, attempt)| Ok((id_param(DELIVERIES, id.get())?, attempt_param(attempt)?)))
                .collect::<Result<Vec<_>, StoreError>>()?
                .into_iter()
                .unzip();
            // Only a claim still held is extended: one that expired may have been taken over,
            // and a delivery rescheduled meanwhile is claimed no longer. Each claim held is in
            // its handler's range (see the view `tidings_held_handlers`); a claim brought back
            // could lie outside.
            sqlx::query(self.sql(
                "UPDATE {schema}.tidings_deliveries d \
                 SET claimed_until = now() + $3 * interval '1 microsecond' \
                 FROM UNNEST($1::bigint[], $2::integer[]) AS c(id, attempts) \
                 WHERE d.id = c.id AND d.attempts = c.attempts AND d.claimed_until >= now()",
            ))
            .bind(ids)
            .bind(attempts)
            .bind(self.lease_micros())
            .execute(&self.pool)
            .await
            .map_err(error("could not extend the claims"))?;
            Ok(())
        })
    }

    fn listen(&self) -> BoxFuture<'_, Result<Option<Box<dyn StoreListener>>, StoreError>> {
        Box::pin(async move {
            let mut listener = PgListener::connect_with(&self.pool)
                .await
                .map_err(error("could not connect the listener"))?;
            listener
                .listen(&self.channel())
                .await
                .map_err(error("could not listen"))?;
            Ok(Some(Box::new(Listener(listener)) as Box<dyn StoreListener>))
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
            let completions = sql::at_their_attempts(completions);
            let mut tx = sql::begin(&self.pool).await?;
            if self.complete(&mut tx, completions, false).await? {
                sql::commit(tx).await?;
            }
            Ok(())
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
            // One call of `tidings_complete_and_claim` (see its migration), a transaction of its
            // own. Completions that produced integration rows are recorded before it, in its
            // transaction, which then waits for the disk.
            let flush = completions.iter().any(|c| !c.produced.is_empty());
            let completions = sql::at_their_attempts(completions);
            let began = Instant::now();
            let starts = lock(&self.walks).starts(handlers);
            let claim = |(ids, attempts): (Vec<i64>, Vec<Option<i32>>)| {
                sqlx::query(self.sql(
                    "SELECT * FROM {schema}.tidings_complete_and_claim($1, $2, $3, $4, $5, $6, \
                     $7, $8)",
                ))
                .bind(self.channel())
                .bind(ids)
                .bind(attempts)
                .bind(flush)
                .bind(self.lease_micros())
                .bind(sql::limit(limit))
                .bind(handlers)
                .bind(&starts)
            };
            let rows = if flush {
                // The claims' lock first, as the function takes it: a claim that waits for it
                // must not hold rows that this completion deletes (the channel is made of a
                // checked identifier: see `valid_schema`).
                let begin = format!(
                    "BEGIN; SELECT pg_advisory_xact_lock(hashtext('{}'))",
                    self.channel()
                );
                let mut tx = self
                    .pool
                    .begin_with(AssertSqlSafe(begin))
                    .await
                    .map_err(error("could not begin a claim and take its lock"))?;
                self.complete(&mut tx, completions, true).await?;
                let rows = claim(Default::default()).fetch_all(&mut *tx).await;
                let rows = rows.map_err(error("could not claim deliveries"))?;
                sql::commit(tx).await?;
                rows
            } else {
                claim(completion_params(&completions)?)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(error("could not complete deliveries and claim the next"))?
            };
            let claimed = sql::deliveries(&rows)?;
            lock(&self.walks).claimed(began, handlers, &starts, &claimed, limit);
            if claimed.is_empty() && starts.iter().any(|&start| start != LOWEST) {
                // Nothing at or above the starts. A delivery below them is claimed now: after
                // an empty claim, the dispatcher would wait for it until its next poll. The
                // completions are committed: an error of this claim is no error of the step.
                return match self.claim_deliveries(now, limit, handlers).await {
                    Ok(claimed) => Ok(claimed),
                    Err(error) => {
                        tracing::warn!(%error, "could not claim deliveries");
                        Ok(Vec::new())
                    }
                };
            }
            Ok(claimed)
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
            sqlx::query(self.sql(
                "UPDATE {schema}.tidings_deliveries SET claimed_until = NULL, due_at = $1, \
                 last_error = $2 WHERE id = $3 AND attempts = $4",
            ))
            .bind(at)
            .bind(error_text)
            .bind(id_param(DELIVERIES, id.get())?)
            .bind(attempt_param(attempt)?)
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
            sqlx::query(self.sql(concat!(
                "WITH failed AS (DELETE FROM {schema}.tidings_deliveries \
                 WHERE id = $3 AND attempts = $4 RETURNING *) \
                 INSERT INTO {schema}.tidings_dead_letters (handler, attempts, error, at, kind, ",
                event_columns!(),
                ") SELECT handler, attempts, $1, $2, kind, ",
                event_columns!(),
                " FROM failed"
            )))
            .bind(error_text)
            .bind(Utc::now())
            .bind(id_param(DELIVERIES, id.get())?)
            .bind(attempt_param(attempt)?)
            .execute(&self.pool)
            .await
            .map_err(error("could not dead-letter a delivery"))?;
            Ok(())
        })
    }

    fn dead_letter_message(
        &self,
        event: StoredEvent,
        error_text: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let query = sqlx::query(self.sql(concat!(
                "INSERT INTO {schema}.tidings_dead_letters (handler, attempts, error, at, kind, ",
                event_columns!(),
                ") VALUES (NULL, 0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            )))
            .bind(error_text)
            .bind(Utc::now())
            .bind(kind_name(event.kind));
            bind_event(query, DEAD_LETTERS, &event)?
                .execute(&self.pool)
                .await
                .map_err(error("could not record a dead letter"))?;
            Ok(())
        })
    }

    fn replay_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let replayed = sqlx::query(self.sql(concat!(
                "WITH letter AS (DELETE FROM {schema}.tidings_dead_letters \
                 WHERE id = $1 AND handler IS NOT NULL RETURNING *), \
                 inserted AS (INSERT INTO {schema}.tidings_deliveries (kind, handler, due_at, ",
                event_columns!(),
                ") SELECT kind, handler, now(), ",
                event_columns!(),
                " FROM letter RETURNING 1) \
                 SELECT pg_notify($2, 'd') FROM inserted"
            )))
            .bind(id_param(DEAD_LETTERS, id.get())?)
            .bind(self.channel())
            .execute(&self.pool)
            .await
            .map_err(error("could not replay a dead letter"))?;
            Ok(replayed.rows_affected() > 0)
        })
    }

    fn discard_dead_letter(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted =
                sqlx::query(self.sql("DELETE FROM {schema}.tidings_dead_letters WHERE id = $1"))
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
            // The held handlers are read once (a hashed subplan), not once per delivery: a
            // check per delivery walks index entries of completed deliveries (rows deleted but
            // not yet vacuumed) for each of the backlog's deliveries, and an idle instance
            // beside a busy one once spent minutes of a database core on it.
            sqlx::query_scalar(self.sql(
                "SELECT MIN(o.due_at) FROM {schema}.tidings_deliveries o \
                 WHERE o.claimed_until IS NULL \
                 AND o.handler NOT IN (SELECT h.handler FROM {schema}.tidings_held_handlers h)",
            ))
            .fetch_one(&self.pool)
            .await
            .map_err(error("could not read the next due delivery"))
        })
    }

    fn claim_rows(
        &self,
        _now: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<IntegrationRow>, StoreError>> {
        Box::pin(async move {
            // The oldest row of each key, and every row with no key; a row another relay holds
            // is skipped, and so is every later row of its key. The candidates come from
            // indexes, so that a claim reads about `limit` rows of each kind whatever the
            // backlog: the heads of the first keys (a skip scan of the key index), the oldest
            // unclaimed rows if they head their key, and the oldest unclaimed rows without a
            // key. Scanning the outbox in order for heads instead reads every row of a busy key
            // behind its head.
            let rows = sqlx::query(self.sql(CLAIM_ROWS))
                .bind(self.lease_micros())
                .bind(sql::limit(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(error("could not claim integration rows"))?;
            sql::integration_rows(&rows)
        })
    }

    fn row_published(&self, id: RowId, archive: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let query = if archive {
                sqlx::query(self.sql(concat!(
                    "WITH published AS (DELETE FROM {schema}.tidings_outbox WHERE id = $1 RETURNING *) \
                     INSERT INTO {schema}.tidings_outbox_archive (id, ordering_key, published_at, ",
                    event_columns!(),
                    ") SELECT id, ordering_key, $2, ",
                    event_columns!(),
                    " FROM published"
                )))
                .bind(id_param(OUTBOX, id.get())?)
                .bind(Utc::now())
            } else {
                sqlx::query(self.sql("DELETE FROM {schema}.tidings_outbox WHERE id = $1"))
                    .bind(id_param(OUTBOX, id.get())?)
            };
            query
                .execute(&self.pool)
                .await
                .map_err(error("could not mark a row published"))?;
            Ok(())
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
            let ids = sql::row_id_params(&ids)?;
            // One statement for the whole batch; a row no longer in the outbox is skipped.
            let query = if archive {
                sqlx::query(self.sql(concat!(
                    "WITH published AS (DELETE FROM {schema}.tidings_outbox WHERE id = ANY($1) \
                     AND ",
                    unflushed!(),
                    " RETURNING *) \
                     INSERT INTO {schema}.tidings_outbox_archive (id, ordering_key, published_at, ",
                    event_columns!(),
                    ") SELECT id, ordering_key, $2, ",
                    event_columns!(),
                    " FROM published"
                )))
                .bind(ids)
                .bind(Utc::now())
            } else {
                sqlx::query(self.sql(concat!(
                    "DELETE FROM {schema}.tidings_outbox WHERE id = ANY($1) AND ",
                    unflushed!()
                )))
                .bind(ids)
            };
            query
                .execute(&self.pool)
                .await
                .map_err(error("could not mark rows published"))?;
            Ok(())
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
            sqlx::query(self.sql(
                "UPDATE {schema}.tidings_outbox SET claimed_until = NULL, due_at = $1, \
                 last_error = $2 WHERE id = $3 AND attempts = $4",
            ))
            .bind(at)
            .bind(error_text)
            .bind(id_param(OUTBOX, id.get())?)
            .bind(attempt_param(attempt)?)
            .execute(&self.pool)
            .await
            .map_err(error("could not reschedule a row"))?;
            Ok(())
        })
    }

    fn next_row_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(async move {
            // Among the rows a claim could take: the head of each key, and rows with no key.
            sqlx::query_scalar(self.sql(
                "SELECT MIN(o.due_at) FROM {schema}.tidings_outbox o \
                 WHERE o.claimed_until IS NULL AND (o.ordering_key IS NULL OR NOT EXISTS \
                 (SELECT 1 FROM {schema}.tidings_outbox h \
                 WHERE h.ordering_key = o.ordering_key AND h.id < o.id))",
            ))
            .fetch_one(&self.pool)
            .await
            .map_err(error("could not read the next due row"))
        })
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(self.sql(
                "SELECT id, event_id, name, handler, attempts, error, at \
                 FROM {schema}.tidings_dead_letters ORDER BY id",
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(error("could not read the dead letters"))?;
            sql::dead_letters(&rows)
        })
    }

    fn count_pending(&self) -> BoxFuture<'_, Result<(usize, usize), StoreError>> {
        Box::pin(async move {
            let (deliveries, rows): (i64, i64) = sqlx::query_as(self.sql(
                "SELECT (SELECT COUNT(*) FROM {schema}.tidings_deliveries), \
                 (SELECT COUNT(*) FROM {schema}.tidings_outbox)",
            ))
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
            let rows = sqlx::query(self.sql(
                "SELECT 'tidings_deliveries' AS waiting_in, handler AS name, \
                 COUNT(*) FILTER (WHERE (claimed_until IS NULL OR claimed_until < now()) \
                 AND due_at <= now()) AS due, \
                 COUNT(*) FILTER (WHERE (claimed_until IS NULL OR claimed_until < now()) \
                 AND due_at > now()) AS scheduled, \
                 COUNT(*) FILTER (WHERE claimed_until >= now()) AS claimed, \
                 MIN(occurred_at) AS oldest \
                 FROM {schema}.tidings_deliveries GROUP BY handler \
                 UNION ALL \
                 SELECT 'tidings_outbox', name, \
                 COUNT(*) FILTER (WHERE (claimed_until IS NULL OR claimed_until < now()) \
                 AND due_at <= now()), \
                 COUNT(*) FILTER (WHERE (claimed_until IS NULL OR claimed_until < now()) \
                 AND due_at > now()), \
                 COUNT(*) FILTER (WHERE claimed_until >= now()), \
                 MIN(occurred_at) \
                 FROM {schema}.tidings_outbox GROUP BY name",
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(error("could not count the waiting work"))?;
            sql::waiting(&rows)
        })
    }

    fn prune(
        &self,
        inbox_before: DateTime<Utc>,
        archive_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let (inbox, archive): (i64, i64) = sqlx::query_as(self.sql(
                "WITH inbox AS (DELETE FROM {schema}.tidings_inbox WHERE ctid IN \
                 (SELECT ctid FROM {schema}.tidings_inbox WHERE received_at < $1 LIMIT $3) \
                 RETURNING 1), \
                 archive AS (DELETE FROM {schema}.tidings_outbox_archive WHERE id IN \
                 (SELECT id FROM {schema}.tidings_outbox_archive WHERE published_at < $2 \
                 ORDER BY published_at LIMIT $3) RETURNING 1) \
                 SELECT (SELECT COUNT(*) FROM inbox), (SELECT COUNT(*) FROM archive)",
            ))
            .bind(inbox_before)
            .bind(archive_before)
            .bind(sql::limit(limit))
            .fetch_one(&self.pool)
            .await
            .map_err(error("could not delete expired rows"))?;
            sql::pruned(inbox, archive)
        })
    }
}
