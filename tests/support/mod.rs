//! What the tests that need a service share: its URL, or a plain word that they skip.

#![allow(dead_code)]

/// The PostgreSQL URL from `DATABASE_URL`. Without it the test says so and is skipped, unless
/// `TIDINGS_REQUIRE_SERVICES` is set (as `.ci/run` does): then it fails.
pub fn database_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("TIDINGS_REQUIRE_SERVICES").is_some() => {
            panic!(
                "{test}: DATABASE_URL is not set, and TIDINGS_REQUIRE_SERVICES says PostgreSQL is required"
            )
        }
        _ => {
            eprintln!("SKIPPED {test}: set DATABASE_URL to a PostgreSQL database to run it");
            None
        }
    }
}

/// A pool on `url`, and an empty schema named after `test`, for this test alone.
pub async fn fresh_schema(url: &str, test: &str) -> (sqlx::PgPool, String) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(url)
        .await
        .expect("PostgreSQL answers at DATABASE_URL");
    let schema = format!("test_{test}");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .expect("the test's schema can be dropped");
    (pool, schema)
}
