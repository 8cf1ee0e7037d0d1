//! What the tests that need a service share: its URL, or a plain word that they skip.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

pub(crate) mod broker;
pub(crate) mod kafka;
pub(crate) mod nats;
pub(crate) mod pubsub;
pub(crate) mod rabbit;

/// Runs `cleanup` to its end on a runtime of its own, on another thread, and waits for it: for
/// a `Drop`, whose test runtime may be gone, or be the one dropping.
pub(crate) fn clean_up(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the clean-up")
            .block_on(cleanup);
    });
    let _ = thread.join();
}

/// The PostgreSQL URL from `DATABASE_URL`. Without it the test says so and is skipped, unless
/// `TIDINGS_REQUIRE_SERVICES` is set (as `.ci/run` does): then it fails.
pub(crate) fn database_url(test: &str) -> Option<String> {
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

/// The NATS URL from `NATS_URL`. Without it the test says so and is skipped, unless
/// `TIDINGS_REQUIRE_SERVICES` is set (as `.ci/run` does): then it fails.
pub(crate) fn nats_url(test: &str) -> Option<String> {
    match std::env::var("NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("TIDINGS_REQUIRE_SERVICES").is_some() => {
            panic!(
                "{test}: NATS_URL is not set, and TIDINGS_REQUIRE_SERVICES says NATS is required"
            )
        }
        _ => {
            eprintln!("SKIPPED {test}: set NATS_URL to a NATS server with JetStream to run it");
            None
        }
    }
}

/// The RabbitMQ URL from `AMQP_URL`. Without it the test says so and is skipped, unless
/// `TIDINGS_REQUIRE_SERVICES` is set (as `.ci/run` does): then it fails.
pub(crate) fn amqp_url(test: &str) -> Option<String> {
    match std::env::var("AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("TIDINGS_REQUIRE_SERVICES").is_some() => {
            panic!(
                "{test}: AMQP_URL is not set, and TIDINGS_REQUIRE_SERVICES says RabbitMQ is required"
            )
        }
        _ => {
            eprintln!(
                "SKIPPED {test}: set AMQP_URL to a RabbitMQ broker (such as \
                 amqp://guest:guest@127.0.0.1:5672/%2f) to run it"
            );
            None
        }
    }
}

/// A message of contract `contract` version 1 from context `tests`, as the relay sends it, with
/// no key and no trace.
pub(crate) fn message(contract: &str, data: serde_json::Value) -> tidings::transport::Message {
    let id = uuid::Uuid::now_v7();
    tidings::transport::Message {
        id,
        source: "tests".to_owned(),
        contract: contract.to_owned(),
        version: 1,
        key: None,
        time: chrono::Utc::now(),
        correlation_id: id,
        causation_id: None,
        traceparent: None,
        data: data.into(),
    }
}

/// Records two events for `handler` in `store` and claims the first: the handler is then held,
/// with one delivery waiting. Returns the handler's name, as claims take it.
pub(crate) async fn hold_one_of_two(
    store: &dyn tidings::store::Store,
    handler: &str,
) -> [String; 1] {
    let handlers = [handler.to_owned()];
    let events = parcels_weighed(0..2, &handlers);
    store.record(events).await.expect("the events are recorded");
    let claimed = store
        .claim_deliveries(chrono::Utc::now(), 1, &handlers)
        .await
        .expect("the first is claimed");
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    handlers
}

/// A `ParcelWeighed` event of payload `{"parcel": n}` for each `n` of `parcels`, each with a
/// delivery to `handlers`, to record in a store.
pub(crate) fn parcels_weighed(
    parcels: std::ops::Range<u32>,
    handlers: &[String],
) -> Vec<tidings::store::NewEvent> {
    parcels
        .map(|parcel| tidings::store::NewEvent {
            event: tidings::testing::domain_event(
                "ParcelWeighed",
                serde_json::json!({ "parcel": parcel }),
            ),
            handlers: handlers.to_vec(),
        })
        .collect()
}

/// A pool on `url`, and an empty schema named after `test`, for this test alone.
pub(crate) async fn fresh_schema(url: &str, test: &str) -> (sqlx::PgPool, String) {
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

/// Kills this process with SIGKILL, at once: no destructor, no flush, no graceful close; what
/// the process had not committed is lost, as in a crash.
pub(crate) fn die() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    // `kill` delivers the signal before it returns; this is never reached.
    std::process::abort()
}

/// Starts this test binary again as a child process running the ignored test `entry`, with
/// `env` set: a process of its own that the test can kill.
pub(crate) fn spawn_child(entry: &str, env: &[(&str, &str)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut command = std::process::Command::new(exe);
    command
        .args([
            "--exact",
            entry,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("the child process starts")
}

/// The value of `name` in the child's environment.
pub(crate) fn child_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the child process needs {name}"))
}

/// A broker that refuses every message of one key, and counts the refusals; the others go to
/// an [`tidings::InMemoryTransport`].
#[derive(Clone)]
pub(crate) struct RefusesKey {
    key: &'static str,
    inner: tidings::InMemoryTransport,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RefusesKey {
    /// A broker refusing `key`, passing the rest to `inner`.
    pub(crate) fn new(key: &'static str, inner: tidings::InMemoryTransport) -> Self {
        RefusesKey {
            key,
            inner,
            refused: Default::default(),
        }
    }

    /// How many messages it refused so far.
    pub(crate) fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl tidings::transport::Transport for RefusesKey {
    fn publish(
        &self,
        message: tidings::transport::Message,
    ) -> tidings::store::BoxFuture<'_, Result<(), tidings::TransportError>> {
        if message.key.as_deref() == Some(self.key) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let refused = tidings::TransportError::new(
                tidings::ErrorKind::Refused,
                "the broker refuses this key",
                None,
            );
            return Box::pin(std::future::ready(Err(refused)));
        }
        self.inner.publish(message)
    }

    fn subscribe(
        &self,
        subscription: tidings::transport::Subscription,
    ) -> tidings::store::BoxFuture<
        '_,
        Result<Box<dyn tidings::transport::Inbound>, tidings::TransportError>,
    > {
        self.inner.subscribe(subscription)
    }
}

/// A SQLite file of its own, removed (with its WAL and shared-memory files) when dropped.
pub(crate) struct TempDb(pub(crate) PathBuf);

impl TempDb {
    pub(crate) fn new() -> Self {
        let name = format!("tidings-test-{}.db", uuid::Uuid::now_v7());
        TempDb(std::env::temp_dir().join(name))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// The script that runs Python's CloudEvents SDK on tidings' wire format.
const CLOUDEVENTS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/cloudevents_check.py");

/// Whether Python and the SDK are here; without them the test says it skips, or fails when
/// the services are required.
pub(crate) fn cloudevents_sdk(test: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import cloudevents.core.formats.json"])
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("TIDINGS_REQUIRE_SERVICES").is_none(),
            "{test}: Python's `cloudevents` SDK is missing (pip install cloudevents==2.2.0), and \
             TIDINGS_REQUIRE_SERVICES says it is required"
        );
        eprintln!("SKIPPED {test}: Python's `cloudevents` SDK is missing");
    }
    found
}

/// Whether Python's `pika` (an AMQP 0-9-1 client) is here besides the SDK; without it the
/// test says it skips, or fails when the services are required.
pub(crate) fn pika(test: &str) -> bool {
    python_package(test, "pika", "pika==1.4.4")
}

/// Whether Python's `google-cloud-pubsub` client is there (with the SDK); says so and is false
/// when not, unless `TIDINGS_REQUIRE_SERVICES` is set: then it fails.
pub(crate) fn python_pubsub(test: &str) -> bool {
    python_package(
        test,
        "google.cloud.pubsub_v1",
        "google-cloud-pubsub==2.44.0",
    )
}

/// Whether the SDK and the Python module `module` (from the package `install` names) are
/// there; says so and is false when not, unless `TIDINGS_REQUIRE_SERVICES` is set: then it
/// fails.
fn python_package(test: &str, module: &str, install: &str) -> bool {
    if !cloudevents_sdk(test) {
        return false;
    }
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("TIDINGS_REQUIRE_SERVICES").is_none(),
            "{test}: Python's `{module}` is missing (pip install {install}), and \
             TIDINGS_REQUIRE_SERVICES says it is required"
        );
        eprintln!("SKIPPED {test}: Python's `{module}` is missing (pip install {install})");
    }
    found
}

/// Runs the SDK's script (`tests/sdk/cloudevents_check.py`) with `args`, `input` on its standard input; its standard output.
pub(crate) fn run_cloudevents_sdk(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("python3")
        .arg(CLOUDEVENTS_SCRIPT)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    child
        .stdin
        .take()
        .expect("the child's standard input")
        .write_all(input)
        .expect("the event is written to the SDK");
    let output = child.wait_with_output().expect("the SDK script runs");
    assert!(
        output.status.success(),
        "the SDK failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// What a test's tracing subscriber printed, at `INFO` and above.
#[derive(Debug, Clone, Default)]
pub(crate) struct Printed(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Printed {
    /// Prints this thread's tracing events into a `Printed`, until the guard is dropped: for
    /// tests on a current-thread runtime, where every task of the app runs on this thread.
    pub(crate) fn capture() -> (Printed, tracing::subscriber::DefaultGuard) {
        let printed = Printed::default();
        let writer = printed.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        (printed, tracing::subscriber::set_default(subscriber))
    }

    /// Everything printed so far.
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Printed {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits until `done` says so, asking again every few milliseconds, at most `patience`; returns
/// whether it did. For what must happen eventually: no test asserts how long it takes.
pub(crate) async fn eventually<F, Fut>(patience: std::time::Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    done().await
}
