//! What the benches that use PostgreSQL share.

// Each bench uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// A pool of `connections` on `DATABASE_URL`, or `None` (and why, printed): the bench then runs
/// without PostgreSQL.
pub(crate) async fn postgres(connections: u32) -> Option<PgPool> {
    let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        println!("skipping PostgreSQL: DATABASE_URL is not set");
        return None;
    };
    match PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(pool) => Some(pool),
        Err(error) => {
            println!("skipping PostgreSQL: could not connect to DATABASE_URL: {error}");
            None
        }
    }
}

/// Drops the bench's schema `schema`, if it exists.
pub(crate) async fn drop_schema(pool: &PgPool, schema: &str) {
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await
    .expect("a schema of the bench is dropped");
}
