//! What the broker benches (`nats`, `rabbitmq`) share: the `shop` context that publishes and
//! the `search` context that consumes, the transport wrapper that holds publications while a
//! backlog is built and counts acknowledgements, the fresh store of each drain, the relay's
//! and the consumer's drains on any transport, the envelopes the raw arms publish, and the
//! host's load for the summaries. Included by those benches alone (`#[path =
//! "support/broker.rs"] mod broker;`): its contexts register their handlers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use sqlx::postgres::PgPool;
use tidings::prelude::*;
use tidings::store::Store;
use tidings::transport::{
    BoxFuture, Inbound, Message, Received, Subscription, Transport, TransportError,
};
use tidings::{InMemoryStore, PostgresStore, TidingsBuilder};
use tokio::sync::{Notify, watch};

pub(crate) mod shop {
    use tidings::prelude::*;

    tidings::context!("shop");

    /// A use case imported `count` orders at once; `keys` ordering keys, or none when 0.
    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct OrdersImported {
        pub(crate) batch: u64,
        pub(crate) count: u32,
    }

    /// The same, for the contract with an ordering key.
    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct CustomerOrdersImported {
        pub(crate) batch: u64,
        pub(crate) count: u32,
        pub(crate) keys: u32,
    }

    /// The contract with no ordering key (B6, B10).
    #[integration_event(name = "bench.order-placed", version = 1, from = OrdersImported)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct OrderPlacedIntegrationEvent {
        pub(crate) order_id: String,
        pub(crate) customer_id: String,
        pub(crate) total_cents: i64,
        pub(crate) lines: u32,
    }

    /// The contract ordered per customer (B8).
    #[integration_event(
        name = "bench.customer-order-placed",
        version = 1,
        from = CustomerOrdersImported,
        key = customer_id
    )]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct CustomerOrderPlacedIntegrationEvent {
        pub(crate) order_id: String,
        pub(crate) customer_id: String,
        pub(crate) total_cents: i64,
        pub(crate) lines: u32,
    }

    /// Order `i` of batch `batch`, of customer `customer`.
    pub(crate) fn order(batch: u64, i: u32, customer: u32) -> OrderPlacedIntegrationEvent {
        OrderPlacedIntegrationEvent {
            order_id: format!("order-{batch:06}-{i:06}"),
            customer_id: format!("customer-{customer:06}"),
            total_cents: 1_000 + i64::from(i % 9_000),
            lines: 1 + i % 7,
        }
    }

    #[handles]
    fn translate_orders(event: &OrdersImported) -> Vec<OrderPlacedIntegrationEvent> {
        (0..event.count).map(|i| order(event.batch, i, i)).collect()
    }

    #[handles]
    fn translate_customer_orders(
        event: &CustomerOrdersImported,
    ) -> Vec<CustomerOrderPlacedIntegrationEvent> {
        (0..event.count)
            .map(|i| {
                let order = order(event.batch, i, i % event.keys.max(1));
                CustomerOrderPlacedIntegrationEvent {
                    order_id: order.order_id,
                    customer_id: order.customer_id,
                    total_cents: order.total_cents,
                    lines: order.lines,
                }
            })
            .collect()
    }
}

pub(crate) mod search {
    use tidings::prelude::*;

    tidings::context!("search");

    /// The inbound handler of B10: does nothing.
    #[handles]
    fn note_order(event: &super::shop::OrderPlacedIntegrationEvent) {
        std::hint::black_box(event);
    }
}

use shop::{CustomerOrdersImported, OrdersImported};

pub(crate) const UNKEYED: &str = "bench.order-placed";
pub(crate) const KEYED: &str = "bench.customer-order-placed";

/// Integration events one domain event's translation returns, while a backlog is built.
pub(crate) const ROWS_PER_EVENT: usize = 1_000;

/// The longest a drain, or the build of a backlog, may take before the bench gives up.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(300);

/// What a [`Metered`] transport shares with the bench.
pub(crate) struct Meter {
    /// Whether publications may go out.
    pub(crate) open: watch::Sender<bool>,
    /// Publications the stream acknowledged, and received messages acknowledged.
    acks: AtomicUsize,
    /// The count of `acks` to announce on `reached`.
    target: usize,
    reached: Notify,
}

impl Meter {
    pub(crate) fn new(open: bool, target: usize) -> Arc<Self> {
        Arc::new(Meter {
            open: watch::Sender::new(open),
            acks: AtomicUsize::new(0),
            target,
            reached: Notify::new(),
        })
    }

    pub(crate) fn acked(&self) {
        if self.acks.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            // `notify_one` keeps the permit if the bench is not waiting yet.
            self.reached.notify_one();
        }
    }

    /// Waits until `target` acknowledgements were counted, at most `TIMEOUT`.
    pub(crate) async fn wait(&self, what: &str) {
        if tokio::time::timeout(TIMEOUT, self.reached.notified())
            .await
            .is_err()
        {
            panic!(
                "{what}: {} of {} acknowledgements after {TIMEOUT:?}",
                self.acks.load(Ordering::Relaxed),
                self.target
            );
        }
    }
}

/// A transport whose publications wait while the meter is closed, and whose
/// acknowledgements (of publications and of received messages) the meter counts.
#[derive(Clone)]
pub(crate) struct Metered<T> {
    pub(crate) inner: T,
    pub(crate) meter: Arc<Meter>,
}

impl<T: Transport> Transport for Metered<T> {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if !*self.meter.open.borrow() {
                // Boxed: only the backlog's first window waits, and every publication would
                // otherwise carry the wait in its own future.
                let mut open = self.meter.open.subscribe();
                let _ = Box::pin(open.wait_for(|open| *open)).await;
            }
            let published = self.inner.publish(message).await;
            if published.is_ok() {
                self.meter.acked();
            }
            published
        })
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        Box::pin(async move {
            let inner = self.inner.subscribe(subscription).await?;
            Ok(Box::new(MeteredInbound {
                inner,
                meter: Arc::clone(&self.meter),
            }) as Box<dyn Inbound>)
        })
    }
}

pub(crate) struct MeteredInbound {
    inner: Box<dyn Inbound>,
    meter: Arc<Meter>,
}

impl Inbound for MeteredInbound {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>> {
        Box::pin(async move {
            let mut received = match self.inner.next().await? {
                Ok(received) => received,
                Err(error) => return Some(Err(error)),
            };
            // The message moves to the new `Received`; what stays behind is never read.
            let message = std::mem::replace(&mut received.message, placeholder());
            let meter = Arc::clone(&self.meter);
            Some(Ok(Received::new(message, move || {
                let ack = received.ack();
                Box::pin(async move {
                    let acked = ack.await;
                    if acked.is_ok() {
                        meter.acked();
                    }
                    acked
                })
            })))
        })
    }
}

/// A message that allocates nothing.
pub(crate) fn placeholder() -> Message {
    Message {
        id: uuid::Uuid::nil(),
        source: String::new(),
        contract: String::new(),
        version: 0,
        key: None,
        time: chrono::DateTime::UNIX_EPOCH,
        correlation_id: uuid::Uuid::nil(),
        causation_id: None,
        traceparent: None,
        data: serde_json::Value::Null.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Stores.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum StoreKind {
    Memory,
    Postgres,
}

impl StoreKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// A fresh, empty store of one drain, and a handle on it to count what waits.
pub(crate) enum FreshStore {
    Memory(InMemoryStore),
    /// With its schema, dropped afterwards.
    Postgres(PostgresStore, PgPool, String),
}

impl FreshStore {
    pub(crate) fn attach(&self, builder: TidingsBuilder) -> TidingsBuilder {
        match self {
            FreshStore::Memory(store) => builder.store(store.clone()),
            FreshStore::Postgres(store, ..) => builder.store(store.clone()),
        }
    }

    /// The deliveries and the integration rows waiting.
    pub(crate) async fn pending(&self) -> (usize, usize) {
        match self {
            FreshStore::Memory(store) => store.count_pending().await,
            FreshStore::Postgres(store, ..) => store.count_pending().await,
        }
        .expect("the store counts what waits")
    }

    /// Waits until the store holds exactly `wanted` (deliveries, rows), polling every `every`.
    pub(crate) async fn wait_for(&self, wanted: (usize, usize), every: Duration, what: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let pending = self.pending().await;
            if pending == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the store holds {pending:?} (deliveries, rows), not {wanted:?}, \
                 after {TIMEOUT:?}"
            );
            tokio::time::sleep(every).await;
        }
    }

    pub(crate) async fn remove(self) {
        if let FreshStore::Postgres(_, pool, schema) = self {
            crate::support::drop_schema(&pool, &schema).await;
        }
    }
}

/// How an arm's drain went.
pub(crate) struct Drain {
    pub(crate) time: Duration,
    /// The CPU time of this process (every thread; not the server's) over the drain.
    pub(crate) cpu: Duration,
    pub(crate) messages: usize,
    /// The broker's stored bytes per message, at the end of the drain (0 where the broker
    /// does not tell).
    pub(crate) bytes_per_message: f64,
}

/// Runs `work` as a task of the runtime's workers, as the app's own tasks run (a future that
/// `block_on` polls on the main thread pays a thread hand-off at each wake-up); returns how
/// long it took.
pub(crate) async fn timed_on_worker(work: impl Future<Output = ()> + Send + 'static) -> Duration {
    tokio::spawn(async move {
        let start = Instant::now();
        work.await;
        start.elapsed()
    })
    .await
    .expect("the raw arm ran to its end")
}

/// The host, for the summary: CPUs and load average.
pub(crate) fn host() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    format!("{cpus} CPUs, load average (1 min) {load}")
}

/// `count` messages of the unkeyed contract as the relay hands them to a transport: the
/// envelope of an integration event a translation produced (the domain event's correlation id
/// and W3C trace, the domain event as cause).
pub(crate) fn envelopes(count: usize) -> Vec<Message> {
    let per_event = ROWS_PER_EVENT.min(count).max(1);
    let mut cause = EventMeta::new("shop");
    (0..count)
        .map(|n| {
            if n % per_event == 0 {
                cause = EventMeta::new("shop");
                // As tidings starts a trace for a use case's event.
                cause.traceparent = Some(format!(
                    "00-{:032x}-{:016x}-01",
                    uuid::Uuid::now_v7().as_u128(),
                    cause.id.as_u128() as u64 | 1
                ));
            }
            let i = u32::try_from(n % per_event).expect("a small count");
            let meta = cause.caused("shop");
            let order = shop::order((n / per_event) as u64, i, i);
            Message {
                id: meta.id,
                source: meta.source,
                contract: UNKEYED.to_owned(),
                version: 1,
                key: None,
                time: meta.occurred_at,
                correlation_id: meta.correlation_id,
                causation_id: meta.causation_id,
                traceparent: meta.traceparent,
                data: tidings::transport::Payload::of(&order)
                    .expect("the contract encodes as JSON"),
            }
        })
        .collect()
}

/// B6 and B8 (`keys`: `None` for no ordering key): a backlog of `rows` integration rows built by
/// a started app of the `shop` context on `store`, with `transport` closed ([`Metered`]), then
/// drained once it opens, `window` publications in flight; the time from the opening to the
/// moment the store holds no row.
pub(crate) async fn relay_drain<T: Transport + Clone>(
    transport: T,
    store: &FreshStore,
    keys: Option<u32>,
    rows: usize,
    window: usize,
) -> (Duration, Duration) {
    let per_event = ROWS_PER_EVENT.min(rows);
    let meter = Meter::new(false, rows);
    let app = store
        .attach(Tidings::builder("shop"))
        .transport(Metered {
            inner: transport,
            meter: Arc::clone(&meter),
        })
        .relay_window(window)
        .build()
        .expect("the shop's wiring is complete");
    let running = app.start().await.expect("the shop starts");
    let events = app.domain_events();
    let count = u32::try_from(per_event).expect("a small count");
    for batch in 0..(rows / per_event) as u64 {
        let published = match keys {
            None => events.publish(OrdersImported { batch, count }).await,
            Some(keys) => {
                events
                    .publish(CustomerOrdersImported { batch, count, keys })
                    .await
            }
        };
        published.expect("the use case's event is recorded");
    }
    store
        .wait_for((0, rows), Duration::from_millis(10), "building the backlog")
        .await;

    let start = Instant::now();
    let cpu = process_cpu();
    meter.open.send_replace(true);
    meter.wait("the relay's drain").await;
    store
        .wait_for((0, 0), Duration::from_millis(1), "marking the rows")
        .await;
    let time = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu);
    running.shutdown().await.expect("the shop shuts down");
    (time, cpu)
}

/// B10: `messages` messages waiting for the `search` context on `transport`, drained by a
/// started app of that context on `store` that records up to `batch` of them in one store call;
/// the time from `start()` (which subscribes) to the last acknowledgement.
pub(crate) async fn consume_drain<T: Transport + Clone>(
    transport: T,
    store: &FreshStore,
    batch: usize,
    messages: usize,
) -> (Duration, Duration) {
    let meter = Meter::new(true, messages);
    let app = store
        .attach(Tidings::builder("search"))
        .transport(Metered {
            inner: transport,
            meter: Arc::clone(&meter),
        })
        .inbox_batch(batch)
        .build()
        .expect("the search context's wiring is complete");
    let start = Instant::now();
    let cpu = process_cpu();
    let running = app.start().await.expect("the search context starts");
    meter.wait("the consumer's drain").await;
    let time = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu);
    running
        .shutdown()
        .await
        .expect("the search context shuts down");
    (time, cpu)
}

/// The CPU time this process has used so far, every thread (from `/proc/self/stat`, in ticks
/// of 10 ms: a drain of a second or more reads it to about 1 %); zero where there is none.
pub(crate) fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The fields after the command's name, which is in parentheses: utime and stime
            // are the 14th and 15th of the whole line.
            let fields: Vec<u64> = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some(fields.iter().sum::<u64>())
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Criterion samples per case, one drain each.
pub(crate) const SAMPLES: usize = 10;

/// A case of a broker bench: its name, the messages one drain moves, and the drain.
pub(crate) trait DrainCase<B>: Copy + Ord {
    fn label(self) -> String;
    fn size(self, bench: &B) -> usize;
    async fn drain(self, bench: &B) -> Drain;
}

/// Every drain of each case of a bench: warm-up (criterion's first) included.
pub(crate) struct Drains<C>(Mutex<BTreeMap<C, Vec<Drain>>>);

impl<C: Ord + Copy> Drains<C> {
    pub(crate) const fn new() -> Self {
        Drains(Mutex::new(BTreeMap::new()))
    }

    fn note(&self, case: C, drain: Drain) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(case)
            .or_default()
            .push(drain);
    }

    /// Messages per second over the measured drains of `case` (the last `SAMPLES`, or all of
    /// them in a smoke run), the broker's bytes per message, and this process's CPU
    /// microseconds per message.
    pub(crate) fn throughput(&self, case: C) -> Option<(f64, f64, f64)> {
        let drains = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let drains = drains.get(&case)?;
        let measured = &drains[drains.len().saturating_sub(SAMPLES)..];
        let messages: usize = measured.iter().map(|drain| drain.messages).sum();
        let time: Duration = measured.iter().map(|drain| drain.time).sum();
        let bytes = measured
            .iter()
            .map(|drain| drain.bytes_per_message)
            .sum::<f64>()
            / measured.len() as f64;
        let cpu: Duration = measured.iter().map(|drain| drain.cpu).sum();
        Some((
            messages as f64 / time.as_secs_f64(),
            bytes,
            cpu.as_secs_f64() * 1e6 / messages as f64,
        ))
    }
}

/// Runs `cases` as one criterion group, each case's drain size as its throughput, noting each
/// drain in `drains`; prints each case's msg/s once it is measured.
pub(crate) fn group<B, C: DrainCase<B>>(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    bench: &B,
    drains: &Drains<C>,
    name: &str,
    cases: &[C],
) {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(SAMPLES)
        // One drain of warm-up, then one drain per sample (criterion warns that 10 samples
        // do not fit in 1 s, and runs them: fewer is not possible).
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    for &case in cases {
        group.throughput(Throughput::Elements(case.size(bench) as u64));
        group.bench_function(BenchmarkId::from_parameter(case.label()), |b| {
            b.to_async(runtime).iter_custom(|count| async move {
                let mut time = Duration::ZERO;
                for _ in 0..count {
                    let drain = case.drain(bench).await;
                    time += drain.time;
                    drains.note(case, drain);
                }
                time
            })
        });
        if let Some((rate, ..)) = drains.throughput(case) {
            println!(
                "{name} | {}: {rate:.0} msg/s ({} per drain)",
                case.label(),
                case.size(bench)
            );
        }
    }
    group.finish();
}
