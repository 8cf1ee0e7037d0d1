//! What the database stores share: errors, leases and migrations.

use std::time::Duration;

use sqlx::migrate::Migrator;

use super::{ErrorKind, StoreError};

/// How long a claimed delivery or row is reserved for the process that claimed it, by default.
/// If that process dies, the claim expires and the work is done again (at least once).
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The table where the crate's own migrations are recorded, apart from the application's
/// `_sqlx_migrations`.
pub(crate) const MIGRATIONS_TABLE: &str = "_tidings_migrations";

/// Turns a sqlx error into a [`StoreError`] saying what could not be done, of the kind the
/// error is.
pub(crate) fn error(message: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |source| StoreError::new(kind_of(&source), message, Some(Box::new(source) as _))
}

/// What kind of failure a sqlx error is.
fn kind_of(error: &sqlx::Error) -> ErrorKind {
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

/// The crate's `migrations`, recorded in [`MIGRATIONS_TABLE`].
pub(crate) fn migrator(migrations: &Migrator) -> Migrator {
    let mut migrator = Migrator::with_migrations(migrations.iter().cloned().collect());
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// A duration in whole microseconds, for the databases' times.
pub(crate) fn micros_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}
