//! The NATS JetStream transport against raw `async-nats` on the same server, in the same run.
//!
//! - `B6` relay: drain a backlog of `ROWS` (50,000) outbox integration rows with no ordering
//!   key to a JetStream stream (file storage, one replica), through a started app's relay with
//!   a window of `WINDOW` (256, the default) publications in flight, against raw `async-nats`
//!   publishing the same kind of messages with the same window (`send_publish`, the
//!   acknowledgement futures awaited oldest first whenever `WINDOW` are in flight), and with a
//!   window of 1 (each acknowledgement awaited before the next publication: what one key at a
//!   time costs at best). The relay into PostgreSQL and the raw arm with a window of 1 drain
//!   `SMALL_ROWS` (10,000; see there why).
//! - `B8` ordering keys: a backlog of `KEYED_ROWS` (10,000; see there why fewer than B6's;
//!   500 and 2,000 on 1 and 16 keys in PostgreSQL) over 1, 16 and 1,024 ordering keys (row
//!   `i` of each translation on key `i % K`), against 10,000 rows with no key. The relay
//!   publishes one row at a time within a key, so one key is a publication at a time.
//! - `B10` consume: `MESSAGES` (10,000; `POSTGRES_MESSAGES`, 500, into PostgreSQL) messages
//!   already in a stream; a started app of another context with one inbound handler (it does
//!   nothing) receives them, records them in its inbox (one delivery each for the handler), up
//!   to `inbox_batch` ready messages in one store call, and acknowledges each once recorded (a
//!   double acknowledgement, confirmed by the server). `inbox_batch` is swept over 1, 16, 64
//!   and 256 ([`INBOX_BATCHES`]). The raw arm is a `async-nats` pull consumer of the
//!   configuration tidings gives its own that double-acknowledges the messages it has ready
//!   together, as many as the app's batch (one by one for 1). Timed from `start()`, which
//!   creates the consumer, to the last acknowledgement, as the raw arm is from the creation of
//!   its consumer; the app's dispatcher runs the handler's deliveries meanwhile, as it would.
//!
//! # The backlog (B6, B8)
//!
//! A backlog is built fresh for every drain, outside the timing, by the app itself: it is
//! started, a use case publishes one domain event per `ROWS_PER_EVENT` rows, and the
//! dispatcher runs their translation handler, which returns `ROWS_PER_EVENT` integration
//! events each (a `Vec<I>`), recorded by the store as any translation's are. While the backlog
//! is built, the app's transport is closed: a thin wrapper around the `NatsTransport`
//! ([`Metered`]) holds every publication until it is opened, so the relay claims its first
//! window of rows and waits; nothing is published, retried or rescheduled. Once the store holds
//! every row and no delivery, the wrapper opens, and the drain is timed from that moment to the
//! moment the store holds no row: every row published, acknowledged by the stream and marked.
//! The store is asked only after the wrapper counted the last acknowledgement, so that the
//! asking does not compete with the relay. The wrapper costs a boxed future and an atomic add
//! per publication. Rows written straight into the store's tables would be quicker to build,
//! but they would be rows of the bench's making, not the store's; and starting the drain with
//! the first window already claimed spares the relay one claim of 256 rows out of the backlog.
//!
//! # The raw arms
//!
//! Raw arms publish, or consume, the kind of message tidings sends: a CloudEvent in structured
//! mode built with `tidings::transport::cloudevents::to_structured` from an envelope like a
//! translation's (the cause's correlation id and `traceparent`), with the same headers
//! (`Content-Type`, `Nats-Msg-Id`, `traceparent`), on a stream of the same configuration
//! (created by `NatsTransport::ensure_stream`); the `B/msg` column of the summary (the stream's
//! stored bytes per message) shows that the sizes match. The payloads are built before the
//! timing: the raw figure is the broker and the client alone. A raw arm runs as a task of the
//! runtime's workers, as the app's relay and consumers do: polled by `block_on` on the main
//! thread instead, each wake-up pays a hand-off between threads, which halved the rate of the
//! one-at-a-time arms.
//!
//! # Streams, stores, host
//!
//! Every drain, of every arm, has a stream of its own (subject and stream prefixes unique to
//! the run and the drain), created before the timing and deleted after it, so no drain pays for
//! another's messages. Unless `NATS_URL` is set, the bench starts a `nats-server` of its own
//! (JetStream, a free port, a temporary store directory, the server's defaults: file streams
//! are synced to disk on the server's schedule, not per message); with `NATS_URL` it uses that
//! server. All arms share one client connection.
//!
//! The app's store is the `InMemoryStore` (what the relay and the consumer cost besides the
//! broker, with no database), and, with `DATABASE_URL`, `PostgresStore` (a fresh schema per
//! drain, dropped after; every claim, mark and inbox write is a commit).
//!
//! Each case is a criterion benchmark of `sample_size(10)`, one drain per sample plus one of
//! warm-up (`iter_custom`: the time of the drains alone), with `Throughput::Elements` of the
//! messages drained. The summary at the end gives each case's msg/s over its measured drains,
//! the ratios, this process's CPU time per message over the drains (every thread of the bench,
//! which runs the app or the raw arm and the client, not the server's: what tidings costs
//! besides the broker, a figure that moves less than msg/s with the host's load), and the
//! host's load average at the start and the end: the bench and the server share the machine's
//! cores with whatever else runs, and the figures move with it. Without
//! `--bench` (as `cargo test --benches` runs it) each case drains a small backlog once.
//!
//! Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p tidings-benches
//! --bench nats` (a few minutes; without `DATABASE_URL`, the in-memory store only).
#![allow(missing_docs)]

#[path = "support/broker.rs"]
mod broker;
mod support;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use criterion::Criterion;
use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use sqlx::postgres::PgPool;
use tidings::PostgresStore;
use tidings::transport::cloudevents;
use tidings::{InMemoryStore, NatsTransport};

use broker::{
    Drain, FreshStore, KEYED, ROWS_PER_EVENT, SAMPLES, StoreKind, UNKEYED, host, process_cpu,
    timed_on_worker,
};

// ---------------------------------------------------------------------------------------------
// Sizes.

/// Rows of a B6 backlog.
const ROWS: usize = 50_000;

/// Rows of a B6 backlog drained into PostgreSQL, and of B6's raw arm with a window of 1: their
/// rates do not depend on the size of the backlog (the relay drained 6,158 msg/s of 50,000
/// rows and 6,226 msg/s of 10,000 into PostgreSQL in one run), and eleven drains of 50,000 at
/// those rates would take minutes of a bench meant to take a few. The PostgreSQL relay's B6
/// row is also its B8 baseline with no key.
const SMALL_ROWS: usize = 10_000;

/// Rows of a B8 backlog. Fewer than B6's: with fewer keys than the relay claims at a time (64),
/// every claim of the in-memory store finds every key's head in flight and walks the whole
/// outbox for more (`InMemoryStore::claim_rows`), so a drain's time grows with the square of
/// the backlog. One drain of 50,000 rows on one key took 70 s (713 msg/s, against 3,965 msg/s
/// for 10,000 rows); eleven of them per case would not fit the few minutes this bench is
/// given. The in-memory msg/s of B8 are therefore those of a smaller outbox, kinder to few keys
/// than a larger one would be. (PostgreSQL's claim reads about its limit in rows whatever the
/// backlog.)
const KEYED_ROWS: usize = 10_000;

/// Rows of a B8 backlog on one key in PostgreSQL: each row is a claim and a mark of its own,
/// two commits, 200 to 300 msg/s, so 10,000 rows would take most of a minute per drain. The
/// claim reads about its limit in rows whatever the backlog, so a smaller one changes little.
const POSTGRES_ONE_KEY_ROWS: usize = 500;

/// Rows of a B8 backlog on 16 keys in PostgreSQL: 1,600 to 3,000 msg/s, for the same reason.
const POSTGRES_SIXTEEN_KEY_ROWS: usize = 2_000;

/// Messages in the stream for a B10 drain.
const MESSAGES: usize = 10_000;

/// Messages in the stream for a B10 drain into PostgreSQL, where the consumer commits once per
/// message (under 300 a second on this kind of machine).
const POSTGRES_MESSAGES: usize = 500;

/// Publications in flight: the relay's window (its default) and the raw arm's.
const WINDOW: usize = 256;

/// The ordering keys of B8.
const KEY_COUNTS: [u32; 3] = [1, 16, 1_024];

/// The sizes of a run: full with `--bench`, small otherwise.
#[derive(Clone, Copy)]
struct Sizes {
    rows: usize,
    small_rows: usize,
    keyed_rows: usize,
    postgres_one_key_rows: usize,
    postgres_sixteen_key_rows: usize,
    messages: usize,
    postgres_messages: usize,
}

impl Sizes {
    const FULL: Sizes = Sizes {
        rows: ROWS,
        small_rows: SMALL_ROWS,
        keyed_rows: KEYED_ROWS,
        postgres_one_key_rows: POSTGRES_ONE_KEY_ROWS,
        postgres_sixteen_key_rows: POSTGRES_SIXTEEN_KEY_ROWS,
        messages: MESSAGES,
        postgres_messages: POSTGRES_MESSAGES,
    };

    /// A smoke run's: every case once, quickly.
    const SMOKE: Sizes = Sizes {
        rows: 2 * ROWS_PER_EVENT,
        small_rows: 2 * ROWS_PER_EVENT,
        keyed_rows: 2 * ROWS_PER_EVENT,
        postgres_one_key_rows: 200,
        postgres_sixteen_key_rows: 2 * ROWS_PER_EVENT,
        messages: 500,
        postgres_messages: 100,
    };
}

// ---------------------------------------------------------------------------------------------
// A NATS server of the bench's own.

/// A `nats-server` of the bench's own, with JetStream, on a free port and a temporary store
/// directory; dropping it kills it and removes the directory.
struct PrivateNats {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl PrivateNats {
    /// Starts one, if a `nats-server` binary is found (`NATS_SERVER`, the `PATH`, `/usr/sbin`,
    /// `/usr/local/bin`).
    async fn start() -> Option<Self> {
        let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nats-server"))
                .collect::<Vec<_>>()
        });
        let bin = std::env::var_os("NATS_SERVER")
            .map(PathBuf::from)
            .into_iter()
            .chain(on_path)
            .chain(["/usr/sbin/nats-server", "/usr/local/bin/nats-server"].map(PathBuf::from))
            .find(|path| path.is_file())?;
        let dir = std::env::temp_dir().join(format!("tidings-bench-nats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a store directory for the private NATS server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("jetstream"))
            .arg("-l")
            .arg(dir.join("server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let nats = PrivateNats {
            child,
            dir,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !jetstream_answers(&nats.url).await {
            assert!(
                Instant::now() < deadline,
                "the private nats-server did not answer; its log: {}",
                std::fs::read_to_string(nats.dir.join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Some(nats)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server at `url` takes a connection and answers a JetStream request.
async fn jetstream_answers(url: &str) -> bool {
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_millis(500))
        .connect(url);
    let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(1), connect).await else {
        return false;
    };
    // The raw request: async-nats' `query_account` cannot read the answer of a 2.9 server.
    let request = client.request("$JS.API.INFO", "".into());
    let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(1), request).await else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&answer.payload)
        .is_ok_and(|info| info.get("error").is_none())
}

// ---------------------------------------------------------------------------------------------
// The transport wrapper: closed while a backlog is built, and counting acknowledgements.

// ---------------------------------------------------------------------------------------------
// The drains.

/// What the drains share: the server, the client, the database, names unique to the run.
struct Bench {
    client: async_nats::Client,
    postgres: Option<PgPool>,
    /// A token unique to this run, the start of every prefix.
    run: String,
    /// Streams and schemas made so far, for unique names.
    made: AtomicUsize,
    sizes: Sizes,
}

impl Bench {
    fn stores(&self) -> Vec<StoreKind> {
        let mut stores = vec![StoreKind::Memory];
        if self.postgres.is_some() {
            stores.push(StoreKind::Postgres);
        }
        stores
    }

    fn next_name(&self) -> String {
        format!("{}x{}", self.run, self.made.fetch_add(1, Ordering::Relaxed))
    }

    /// A transport whose subjects and streams are this drain's alone, on the shared client.
    fn transport(&self) -> NatsTransport {
        let name = self.next_name();
        NatsTransport::builder()
            .subject_prefix(name.clone())
            .stream_prefix(name.to_uppercase())
            .from_client(self.client.clone())
    }

    async fn store(&self, kind: StoreKind) -> FreshStore {
        match kind {
            StoreKind::Memory => FreshStore::Memory(InMemoryStore::new()),
            StoreKind::Postgres => {
                let pool = self
                    .postgres
                    .clone()
                    .expect("PostgreSQL drains run with a pool");
                let schema = self.next_name();
                support::drop_schema(&pool, &schema).await;
                let store = PostgresStore::connect_with(pool.clone(), &schema)
                    .await
                    .expect("the PostgreSQL store connects");
                FreshStore::Postgres(store, pool, schema)
            }
        }
    }

    /// Creates the stream of `contract` on `transport`, as tidings configures it.
    async fn stream(&self, transport: &NatsTransport, contract: &str) {
        transport
            .ensure_stream(contract, 1)
            .await
            .expect("the stream is created");
    }

    /// The stream's bytes per message; then deletes it.
    async fn finish_stream(&self, transport: &NatsTransport, contract: &str) -> f64 {
        let name = transport.stream_name(contract, 1);
        let jetstream = transport.jetstream();
        let mut stream = jetstream
            .get_stream(&name)
            .await
            .expect("the drain's stream exists");
        let info = stream.info().await.expect("the stream's state");
        let per_message = info.state.bytes as f64 / info.state.messages.max(1) as f64;
        jetstream
            .delete_stream(&name)
            .await
            .expect("the drain's stream is deleted");
        per_message
    }

    /// B6 and B8 (`keys`: `None` for no ordering key): a backlog of `rows` integration rows
    /// built by a started app with its transport closed, then drained once it opens.
    async fn relay(&self, kind: StoreKind, keys: Option<u32>, rows: usize) -> Drain {
        let contract = if keys.is_some() { KEYED } else { UNKEYED };
        let transport = self.transport();
        self.stream(&transport, contract).await;
        let store = self.store(kind).await;
        let (time, cpu) = broker::relay_drain(transport.clone(), &store, keys, rows, WINDOW).await;
        store.remove().await;
        Drain {
            time,
            cpu,
            messages: rows,
            bytes_per_message: self.finish_stream(&transport, contract).await,
        }
    }

    /// B6's raw arm: the same number of messages published with `async-nats`, `window` in
    /// flight.
    async fn raw_publish(&self, window: usize, rows: usize) -> Drain {
        let transport = self.transport();
        self.stream(&transport, UNKEYED).await;
        let messages = wire_messages(rows);
        let cpu = process_cpu();
        let time = timed_on_worker(publish_raw(transport.clone(), messages, window)).await;
        let cpu = process_cpu().saturating_sub(cpu);
        Drain {
            time,
            cpu,
            messages: rows,
            bytes_per_message: self.finish_stream(&transport, UNKEYED).await,
        }
    }

    /// B10: `messages` messages in the stream, drained by a started app of the `search`
    /// context that records up to `batch` of them in one store call.
    async fn consume(&self, kind: StoreKind, batch: usize, messages: usize) -> Drain {
        let transport = self.transport();
        self.stream(&transport, UNKEYED).await;
        publish_raw(transport.clone(), wire_messages(messages), WINDOW).await;
        let store = self.store(kind).await;
        let (time, cpu) = broker::consume_drain(transport.clone(), &store, batch, messages).await;
        store.remove().await;
        Drain {
            time,
            cpu,
            messages,
            bytes_per_message: self.finish_stream(&transport, UNKEYED).await,
        }
    }

    /// B10's raw arm: a durable pull consumer of the configuration tidings gives its own,
    /// created at the start of the timing as `start` creates the app's; the messages it has
    /// ready, up to `batch`, double-acknowledged together, as the app's consumer acknowledges
    /// a recorded batch.
    async fn raw_consume(&self, batch: usize, messages: usize) -> Drain {
        let transport = self.transport();
        self.stream(&transport, UNKEYED).await;
        publish_raw(transport.clone(), wire_messages(messages), WINDOW).await;
        let cpu = process_cpu();
        let time = timed_on_worker(consume_raw(transport.clone(), batch, messages)).await;
        let cpu = process_cpu().saturating_sub(cpu);
        Drain {
            time,
            cpu,
            messages,
            bytes_per_message: self.finish_stream(&transport, UNKEYED).await,
        }
    }
}

/// Creates a durable pull consumer on the unkeyed contract's stream of `transport`, with the
/// configuration tidings gives its own, and double-acknowledges its first `messages` messages:
/// the first one it waits for and what is ready after it, up to `batch`, together.
async fn consume_raw(transport: NatsTransport, batch: usize, messages: usize) {
    let stream = transport.stream_name(UNKEYED, 1);
    let consumer: consumer::PullConsumer = transport
        .jetstream()
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some("raw".to_owned()),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: -1,
                max_ack_pending: 1_000,
                ..Default::default()
            },
            &stream,
        )
        .await
        .expect("the raw consumer is created");
    let mut pulled = consumer
        .stream()
        .max_messages_per_batch(200)
        .messages()
        .await
        .expect("the raw consumer pulls");
    let mut acknowledged = 0;
    while acknowledged < messages {
        let first = pulled.next().await.expect("the pull goes on");
        let mut ready = vec![first.expect("a message")];
        while ready.len() < batch {
            // Polling a stream once and dropping the future loses nothing.
            match pulled.next().now_or_never() {
                Some(Some(message)) => ready.push(message.expect("a message")),
                Some(None) | None => break,
            }
        }
        acknowledged += ready.len();
        for acked in join_all(ready.iter().map(|message| message.double_ack())).await {
            acked.expect("the message is acknowledged");
        }
    }
}

/// A message to publish raw: its id (`Nats-Msg-Id`), its `traceparent` and its payload.
struct Wire {
    id: String,
    traceparent: String,
    payload: Vec<u8>,
}

/// `count` messages of the unkeyed contract as tidings puts them on the wire: the envelopes
/// the relay publishes, as structured CloudEvents.
fn wire_messages(count: usize) -> Vec<Wire> {
    broker::envelopes(count)
        .iter()
        .map(|message| Wire {
            id: message.id.to_string(),
            traceparent: message.traceparent.clone().unwrap_or_default(),
            payload: cloudevents::to_structured(message),
        })
        .collect()
}
/// Publishes `messages` on the unkeyed contract's subject of `transport` with `async-nats`,
/// `window` acknowledgements awaited at most, oldest first; returns once all are acknowledged.
async fn publish_raw(transport: NatsTransport, messages: Vec<Wire>, window: usize) {
    let jetstream = transport.jetstream();
    let subject = transport.subject(UNKEYED, 1);
    let mut acks = VecDeque::with_capacity(window);
    for message in messages {
        if acks.len() >= window.max(1) {
            let ack: jetstream::context::PublishAckFuture =
                acks.pop_front().expect("a publication in flight");
            ack.await.expect("the stream acknowledges");
        }
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", cloudevents::STRUCTURED_CONTENT_TYPE);
        headers.insert("traceparent", message.traceparent.as_str());
        let publish = jetstream::message::PublishMessage::build()
            .headers(headers)
            .message_id(message.id)
            .payload(message.payload.into());
        acks.push_back(
            jetstream
                .send_publish(subject.clone(), publish)
                .await
                .expect("the publication is sent"),
        );
    }
    for ack in acks {
        ack.await.expect("the stream acknowledges");
    }
}

// ---------------------------------------------------------------------------------------------
// B10's inbox batch.

/// The inbox batches B10 sweeps: `TidingsBuilder::inbox_batch(n)`, the most received messages
/// a consumer records in one store call (one transaction), from what its transport has ready
/// (64 unless set).
const INBOX_BATCHES: [usize; 4] = [1, 16, 64, 256];

// ---------------------------------------------------------------------------------------------
// Cases, and what each measured.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Case {
    /// B6: the relay of an app on a store, no ordering key.
    Relay(StoreKind),
    /// B8: the relay of an app on a store, `None` for no key or the number of keys.
    Keyed(StoreKind, Option<u32>),
    /// B6: raw publishes, with this window.
    RawPublish(usize),
    /// B10: an app on a store consumes, with this inbox batch.
    Consume(StoreKind, usize),
    /// B10: raw consume, acknowledging up to this many ready messages together.
    RawConsume(usize),
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::Relay(store) | Case::Keyed(store, None) => {
                format!("tidings relay, no key ({})", store.name())
            }
            Case::Keyed(store, Some(keys)) => {
                format!("tidings relay, {keys} key(s) ({})", store.name())
            }
            Case::RawPublish(window) => format!("raw async-nats, window {window}"),
            Case::Consume(store, batch) => {
                format!("tidings consumer, inbox batch {batch} ({})", store.name())
            }
            Case::RawConsume(1) => "raw async-nats pull, double acks one by one".to_owned(),
            Case::RawConsume(batch) => {
                format!("raw async-nats pull, double acks by {batch} ready")
            }
        }
    }

    /// The messages of one drain.
    fn size(self, sizes: Sizes) -> usize {
        match self {
            Case::Relay(StoreKind::Memory) => sizes.rows,
            Case::RawPublish(window) if window > 1 => sizes.rows,
            Case::Relay(StoreKind::Postgres) | Case::RawPublish(_) => sizes.small_rows,
            Case::Keyed(StoreKind::Postgres, Some(1)) => sizes.postgres_one_key_rows,
            Case::Keyed(StoreKind::Postgres, Some(16)) => sizes.postgres_sixteen_key_rows,
            Case::Keyed(..) => sizes.keyed_rows,
            Case::Consume(StoreKind::Postgres, _) => sizes.postgres_messages,
            Case::Consume(StoreKind::Memory, _) | Case::RawConsume(_) => sizes.messages,
        }
    }
}

impl broker::DrainCase<Bench> for Case {
    fn label(self) -> String {
        Case::label(self)
    }

    fn size(self, bench: &Bench) -> usize {
        Case::size(self, bench.sizes)
    }

    async fn drain(self, bench: &Bench) -> Drain {
        let size = Case::size(self, bench.sizes);
        match self {
            Case::Relay(store) => bench.relay(store, None, size).await,
            Case::Keyed(store, keys) => bench.relay(store, keys, size).await,
            Case::RawPublish(window) => bench.raw_publish(window, size).await,
            Case::Consume(store, batch) => bench.consume(store, batch, size).await,
            Case::RawConsume(batch) => bench.raw_consume(batch, size).await,
        }
    }
}

/// Every drain of each case.
static DRAINS: broker::Drains<Case> = broker::Drains::new();

fn throughput(case: Case) -> Option<(f64, f64, f64)> {
    DRAINS.throughput(case)
}

/// B8's baseline on `store`: the relay of the same number of rows with no key (on PostgreSQL,
/// B6's, of that size already).
fn unordered(store: StoreKind) -> Case {
    match store {
        StoreKind::Memory => Case::Keyed(store, None),
        StoreKind::Postgres => Case::Relay(store),
    }
}

fn summary(bench: &Bench, server: &str, host_at_start: &str) -> String {
    let sizes = bench.sizes;
    let row = |out: &mut String, case: Case, baseline: Option<Case>| {
        let Some((rate, bytes, cpu)) = throughput(case) else {
            return;
        };
        let ratio = baseline
            .and_then(throughput)
            .map_or("-".to_owned(), |(base, ..)| format!("{:.2}x", rate / base));
        let _ = writeln!(
            out,
            "{:<44} {:>8} {:>9.0} {:>9} {:>6.0} {:>9.1}",
            case.label(),
            case.size(sizes),
            rate,
            ratio,
            bytes,
            cpu
        );
    };
    let header = |out: &mut String, title: &str, versus: &str| {
        let _ = writeln!(out, "{title}");
        let _ = writeln!(
            out,
            "{:<44} {:>8} {:>9} {:>9} {:>6} {:>9}",
            "case", "messages", "msg/s", versus, "B/msg", "CPU µs/msg"
        );
    };
    let mut out = format!(
        "\nNATS summary: {server}, streams on file, 1 replica; relay window {WINDOW}\n\
         host: at start {host_at_start}; at end {}\n\
         msg/s: the messages of the measured drains (the last {SAMPLES}) over their time; \
         B/msg: the stream's stored bytes per message; CPU µs/msg: this process's CPU time \
         (every thread, not the server's) over the drains, per message: it moves less with \
         the host's load than msg/s\n",
        host()
    );
    let raw = Some(Case::RawPublish(WINDOW));
    header(
        &mut out,
        "B6 relay: drain a backlog to JetStream (target >= 0.80x raw with the same window)",
        "vs raw",
    );
    row(&mut out, Case::RawPublish(WINDOW), raw);
    row(&mut out, Case::RawPublish(1), raw);
    for store in bench.stores() {
        row(&mut out, Case::Relay(store), raw);
    }
    header(
        &mut out,
        "B8 ordering keys: one backlog over K keys, one row in flight per key",
        "vs no key",
    );
    for store in bench.stores() {
        let unordered = unordered(store);
        if let Case::Keyed(..) = unordered {
            row(&mut out, unordered, Some(unordered));
        }
        for keys in KEY_COUNTS {
            row(&mut out, Case::Keyed(store, Some(keys)), Some(unordered));
        }
    }
    let _ = writeln!(
        out,
        "(1 key is one publication at a time: compare with raw window 1 in B6; on PostgreSQL \
         the baseline is B6's row, and 1 and 16 keys drain fewer rows: see POSTGRES_ONE_KEY_ROWS)"
    );
    header(
        &mut out,
        "B10 consume: messages in the stream, received -> inbox -> acknowledged \
         (raw: the same batch of ready messages)",
        "vs raw",
    );
    for batch in INBOX_BATCHES {
        row(&mut out, Case::RawConsume(batch), Some(Case::RawConsume(1)));
    }
    for store in bench.stores() {
        for batch in INBOX_BATCHES {
            row(
                &mut out,
                Case::Consume(store, batch),
                Some(Case::RawConsume(batch)),
            );
        }
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; without it criterion runs each benchmark once, as a test.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let sizes = if measuring {
        Sizes::FULL
    } else {
        println!("smoke run (pass --bench, as `cargo bench` does, for the figures)");
        Sizes::SMOKE
    };
    let host_at_start = host();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a multi-thread runtime");

    let private;
    let url = match std::env::var("NATS_URL").ok().filter(|url| !url.is_empty()) {
        Some(url) => url,
        None => {
            let Some(nats) = runtime.block_on(PrivateNats::start()) else {
                println!("skipping: no `nats-server` binary to start, and NATS_URL is not set");
                return;
            };
            private = nats;
            private.url.clone()
        }
    };
    let client = match runtime.block_on(async_nats::connect(&url)) {
        Ok(client) => client,
        Err(error) => {
            println!("skipping: could not connect to NATS at {url}: {error}");
            return;
        }
    };
    let bench = Bench {
        client,
        postgres: runtime.block_on(support::postgres(8)),
        run: format!("benchnats{}", std::process::id()),
        made: AtomicUsize::new(0),
        sizes,
    };
    let server = format!(
        "nats-server {} at {url}",
        bench.client.server_info().version
    );
    let stores = bench.stores();
    let mut c = Criterion::default().configure_from_args();

    let mut relay = vec![Case::RawPublish(WINDOW), Case::RawPublish(1)];
    relay.extend(stores.iter().map(|&store| Case::Relay(store)));
    broker::group(&mut c, &runtime, &bench, &DRAINS, "B6 relay drain", &relay);

    let keyed: Vec<Case> = stores
        .iter()
        .flat_map(|&store| {
            // On PostgreSQL the baseline is B6's case, measured there.
            let baseline = Some(unordered(store)).filter(|case| matches!(case, Case::Keyed(..)));
            baseline.into_iter().chain(
                KEY_COUNTS
                    .iter()
                    .map(move |&keys| Case::Keyed(store, Some(keys))),
            )
        })
        .collect();
    broker::group(
        &mut c,
        &runtime,
        &bench,
        &DRAINS,
        "B8 relay drain by key",
        &keyed,
    );

    let mut consume: Vec<Case> = INBOX_BATCHES.map(Case::RawConsume).to_vec();
    consume.extend(
        stores
            .iter()
            .flat_map(|&store| INBOX_BATCHES.map(|batch| Case::Consume(store, batch))),
    );
    broker::group(
        &mut c,
        &runtime,
        &bench,
        &DRAINS,
        "B10 consume drain",
        &consume,
    );

    c.final_summary();
    println!("{}", summary(&bench, &server, &host_at_start));
}
