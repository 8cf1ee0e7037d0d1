//! What the database stores share: errors, leases and migrations.

use std::time::Duration;

use sqlx::migrate::Migrator;

use crate::store::StoreError;

/// How long a claimed delivery or row is reserved for the process that claimed it, by default.
/// If that process dies, the claim expires and the work is done again (at least once).
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The table where the crate's own migrations are recorded, apart from the application's
/// `_sqlx_migrations`.
pub(crate) const MIGRATIONS_TABLE: &str = "_tidings_migrations";

/// Turns a sqlx error into a [`StoreError`] saying what could not be done.
pub(crate) fn error(message: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |source| StoreError::new(message, Some(Box::new(source) as _))
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
