//! The Kafka transport against a raw rdkafka client on the same cluster, in the same run. The
//! cluster is librdkafka's mock cluster (one broker, in this process, on a TCP port of
//! 127.0.0.1, its log in memory), a fresh one per drain: the figures say what the transport
//! costs over the client on the same endpoint, not what a Kafka cluster on disks does.
//!
//! - `B7` relay: drain a backlog of outbox integration rows with no ordering key to a topic,
//!   through a started app's relay whose window is `W`, against a raw `FutureProducer` with the
//!   same settings (idempotent, `acks=all`, `socket.nagle.disable`) sending the same records
//!   (binary-mode CloudEvents, `ce_` headers, `content-type`), at most `W` deliveries awaited,
//!   oldest first. `W` sweeps 1, 20, 200 and 1,000 ([`WINDOWS`]); smaller windows drain smaller
//!   backlogs ([`rows`]): with one record in flight a drain is bound by librdkafka's `linger.ms`
//!   (5 ms) per record.
//! - `B10` consume: `MESSAGES` records already in the topic; a started app of the `search`
//!   context with one inbound handler (it does nothing) receives them, records them in its
//!   inbox, up to `inbox_batch` ready messages in one store call ([`INBOX_BATCHES`]), and
//!   acknowledges each once recorded (the acknowledgement commits: one commit at a time,
//!   batched); the raw arm is a `StreamConsumer` in a group of its own that reads them with
//!   librdkafka's periodic auto-commit. Both are timed from the subscription, so both include
//!   joining a new consumer group (the mock cluster delays a new group's first rebalance by
//!   3 s, as Kafka's `group.initial.rebalance.delay.ms` does).
//!
//! The backlog, the transport wrapper that holds publications while it is built, the stores
//! and the envelopes are `benches/support/broker.rs`'s, shared with the NATS and RabbitMQ
//! benches. The app's store is the `InMemoryStore`: what the relay and the consumer cost
//! besides the broker.
//!
//! Each case is a criterion benchmark of `sample_size(10)`, one drain per sample plus one of
//! warm-up; the summary at the end gives each case's msg/s over its measured drains and the
//! ratios. Without `--bench` (as `cargo test --benches` runs it) each case drains a small
//! backlog once.
//!
//! Run: `cargo bench -p tidings-benches --bench kafka` (no service needed).
#![allow(missing_docs)]

#[path = "support/broker.rs"]
mod broker;
mod support;

use std::collections::VecDeque;
use std::fmt::Write as _;

use broker::{Drain, FreshStore, SAMPLES, UNKEYED, host, process_cpu, timed_on_worker};
use criterion::Criterion;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tidings::KafkaTransport;
use tidings::transport::cloudevents;

/// The windows B7 sweeps: the relay's window, and the raw arm's deliveries in flight.
const WINDOWS: [usize; 4] = [1, 20, 200, 1_000];

/// The inbox batches B10 sweeps (`TidingsBuilder::inbox_batch`).
const INBOX_BATCHES: [usize; 2] = [1, 64];

/// Messages of a B10 drain.
const MESSAGES: usize = 20_000;

/// The topic prefix of the bench's transports.
const PREFIX: &str = "bench";

/// Rows of a B7 drain with window `window`: 50,000 from a window of 200, fewer below, where a
/// drain is bound by librdkafka's linger per record in flight.
fn rows(window: usize, smoke: bool) -> usize {
    if smoke {
        return 1_000;
    }
    match window {
        1 => 1_000,
        2..=20 => 10_000,
        _ => 50_000,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Case {
    /// B7: the relay of an app, with this window.
    Relay(usize),
    /// B7: a raw producer, with this many deliveries in flight.
    RawPublish(usize),
    /// B10: an app consumes, with this inbox batch.
    Consume(usize),
    /// B10: a raw consumer, librdkafka's auto-commit.
    RawConsume,
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::Relay(window) => format!("tidings relay, window {window}"),
            Case::RawPublish(window) => format!("raw rdkafka, {window} in flight"),
            Case::Consume(batch) => format!("tidings consumer, inbox batch {batch}"),
            Case::RawConsume => "raw rdkafka consumer, auto-commit".to_owned(),
        }
    }

    fn size(self, smoke: bool) -> usize {
        match self {
            Case::Relay(window) | Case::RawPublish(window) => rows(window, smoke),
            Case::Consume(_) | Case::RawConsume if smoke => 500,
            Case::Consume(_) | Case::RawConsume => MESSAGES,
        }
    }
}

struct Bench {
    smoke: bool,
}

/// One drain's mock cluster and a transport on it, the topic made.
struct Place {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    transport: KafkaTransport,
    topic: String,
}

impl Place {
    async fn new() -> Place {
        let cluster = MockCluster::new(1).expect("librdkafka starts a mock cluster");
        let transport = KafkaTransport::builder()
            .topic_prefix(PREFIX)
            .connect(&cluster.bootstrap_servers())
            .await
            .expect("the mock cluster answers");
        transport
            .ensure_topic(UNKEYED, 1)
            .await
            .expect("the topic is made");
        let topic = transport.topic_name(UNKEYED, 1);
        Place {
            cluster,
            transport,
            topic,
        }
    }

    /// A raw producer with the transport's settings.
    fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .set("partitioner", "murmur2_random")
            .set("socket.nagle.disable", "true")
            .create()
            .expect("a producer")
    }
}

impl Bench {
    async fn drain(&self, case: Case) -> Drain {
        let size = case.size(self.smoke);
        let place = Place::new().await;
        let (time, cpu) = match case {
            Case::Relay(window) => {
                let store = FreshStore::Memory(tidings::InMemoryStore::new());
                broker::relay_drain(place.transport.clone(), &store, None, size, window).await
            }
            Case::RawPublish(window) => {
                let wire = wire(size);
                let producer = place.producer();
                let cpu = process_cpu();
                let time =
                    timed_on_worker(publish_raw(producer, place.topic.clone(), wire, window)).await;
                (time, process_cpu().saturating_sub(cpu))
            }
            Case::Consume(batch) => {
                publish_raw(place.producer(), place.topic.clone(), wire(size), 1_000).await;
                let store = FreshStore::Memory(tidings::InMemoryStore::new());
                broker::consume_drain(place.transport.clone(), &store, batch, size).await
            }
            Case::RawConsume => {
                publish_raw(place.producer(), place.topic.clone(), wire(size), 1_000).await;
                let bootstrap = place.cluster.bootstrap_servers();
                let cpu = process_cpu();
                let time = timed_on_worker(consume_raw(bootstrap, place.topic.clone(), size)).await;
                (time, process_cpu().saturating_sub(cpu))
            }
        };
        drop(place);
        Drain {
            time,
            cpu,
            messages: size,
            bytes_per_message: 0.0,
        }
    }
}

/// A record to send raw: its headers and value, as the transport sends them (no key: the
/// unkeyed contract).
struct Wire {
    headers: Vec<(String, String)>,
    value: Vec<u8>,
}

/// `count` messages of the unkeyed contract as tidings puts them on Kafka: binary mode.
fn wire(count: usize) -> Vec<Wire> {
    broker::envelopes(count)
        .iter()
        .map(|message| {
            let binary = cloudevents::to_binary(message, cloudevents::KAFKA_HEADER_PREFIX);
            let mut headers = vec![("content-type".to_owned(), binary.content_type.to_owned())];
            headers.extend(binary.headers);
            if let Some(traceparent) = &message.traceparent {
                headers.push(("traceparent".to_owned(), traceparent.clone()));
            }
            Wire {
                headers,
                value: binary.body,
            }
        })
        .collect()
}

/// Sends `messages` to `topic`, at most `window` deliveries awaited, oldest first; returns once
/// all are delivered.
async fn publish_raw(producer: FutureProducer, topic: String, messages: Vec<Wire>, window: usize) {
    let mut deliveries = VecDeque::with_capacity(window);
    for message in messages {
        if deliveries.len() >= window.max(1) {
            let delivery: rdkafka::producer::DeliveryFuture =
                deliveries.pop_front().expect("a record in flight");
            delivery
                .await
                .expect("the producer lives")
                .expect("the record is delivered");
        }
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (name, value) in &message.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_str()),
            });
        }
        let record: FutureRecord<'_, (), Vec<u8>> = FutureRecord::to(&topic)
            .payload(&message.value)
            .headers(headers);
        deliveries.push_back(
            producer
                .send_result(record)
                .map_err(|(error, _)| error)
                .expect("the record is queued"),
        );
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("the producer lives")
            .expect("the record is delivered");
    }
}

/// Reads `messages` records of `topic` in a group of its own, from the beginning, with
/// librdkafka's auto-commit.
async fn consume_raw(bootstrap: String, topic: String, messages: usize) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "raw")
        .set("auto.offset.reset", "earliest")
        .set("socket.nagle.disable", "true")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[&topic]).expect("subscribed");
    for _ in 0..messages {
        consumer.recv().await.expect("a record");
    }
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .expect("the consumer closes");
}

/// Every drain of each case.
static DRAINS: broker::Drains<Case> = broker::Drains::new();

/// Messages per second over the measured drains of `case`, and this process's CPU
/// microseconds per message.
fn throughput(case: Case) -> Option<(f64, f64)> {
    DRAINS.throughput(case).map(|(rate, _, cpu)| (rate, cpu))
}

impl broker::DrainCase<Bench> for Case {
    fn label(self) -> String {
        Case::label(self)
    }

    fn size(self, bench: &Bench) -> usize {
        Case::size(self, bench.smoke)
    }

    async fn drain(self, bench: &Bench) -> Drain {
        bench.drain(self).await
    }
}

fn summary(bench: &Bench, host_at_start: &str) -> String {
    let row = |out: &mut String, case: Case, baseline: Case| {
        let Some((rate, cpu)) = throughput(case) else {
            return;
        };
        let ratio =
            throughput(baseline).map_or("-".to_owned(), |(base, _)| format!("{:.2}x", rate / base));
        let _ = writeln!(
            out,
            "{:<40} {:>8} {:>9.0} {:>9} {:>10.1}",
            case.label(),
            case.size(bench.smoke),
            rate,
            ratio,
            cpu
        );
    };
    let mut out = format!(
        "\nKafka summary: librdkafka's mock cluster (1 broker, in this process), idempotent \
         producer, acks=all\nhost: at start {host_at_start}; at end {}\nmsg/s: the messages of \
         the measured drains (the last {SAMPLES}) over their time; CPU µs/msg: this process's \
         CPU time (every thread, the mock broker's included) over the drains, per message\n",
        host()
    );
    let _ = writeln!(
        out,
        "B7 relay: drain a backlog to Kafka vs a raw rdkafka producer with the same deliveries in \
         flight (target >= 0.80x raw at the best window)\n{:<40} {:>8} {:>9} {:>9} {:>10}",
        "case", "messages", "msg/s", "vs raw", "CPU µs/msg"
    );
    for window in WINDOWS {
        row(&mut out, Case::RawPublish(window), Case::RawPublish(window));
        row(&mut out, Case::Relay(window), Case::RawPublish(window));
    }
    let _ = writeln!(
        out,
        "B10 consume: records in the topic, received -> inbox -> acknowledged (committed), \
         group join included\n{:<40} {:>8} {:>9} {:>9} {:>10}",
        "case", "messages", "msg/s", "vs raw", "CPU µs/msg"
    );
    row(&mut out, Case::RawConsume, Case::RawConsume);
    for batch in INBOX_BATCHES {
        row(&mut out, Case::Consume(batch), Case::RawConsume);
    }
    out
}

fn main() {
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    if smoke {
        println!("smoke run (pass --bench, as `cargo bench` does, for the figures)");
    }
    let host_at_start = host();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a multi-thread runtime");
    let bench = Bench { smoke };
    let mut c = Criterion::default().configure_from_args();
    let relay: Vec<Case> = WINDOWS
        .iter()
        .flat_map(|&window| [Case::RawPublish(window), Case::Relay(window)])
        .collect();
    broker::group(&mut c, &runtime, &bench, &DRAINS, "B7 relay drain", &relay);
    let mut consume = vec![Case::RawConsume];
    consume.extend(INBOX_BATCHES.map(Case::Consume));
    broker::group(
        &mut c,
        &runtime,
        &bench,
        &DRAINS,
        "B10 consume drain",
        &consume,
    );
    c.final_summary();
    println!("{}", summary(&bench, &host_at_start));
}
