//! The RabbitMQ transport against raw `lapin` on the same broker, in the same run.
//!
//! - `B7` relay: drain a backlog of outbox integration rows with no ordering key to RabbitMQ
//!   (a quorum queue bound to the exchange, publisher confirms), through a started app's relay
//!   whose window and the transport's confirm window are both `W`, against raw `lapin`
//!   publishing the same messages (binary-mode CloudEvents, `ce-` headers, persistent,
//!   mandatory) on a channel in confirm mode, at most `W` confirmations awaited, oldest first.
//!   `W` sweeps 1, 20, 200 and 1,000 ([`WINDOWS`]); smaller windows drain smaller backlogs
//!   ([`rows`]): a quorum queue confirms a publication once it is written to its log, and with
//!   one at a time that is a few hundred a second.
//! - `B10` consume: `MESSAGES` messages already in a context's queue; a started app of that
//!   context with one inbound handler (it does nothing) receives them (prefetch 200, the
//!   transport's default), records them in its inbox, up to `inbox_batch` ready messages in
//!   one store call ([`INBOX_BATCHES`]), and acknowledges each once recorded; the raw arm is a
//!   `lapin` consumer with the same prefetch that acknowledges each delivery as it comes.
//!   Timed from `start()` (which subscribes) to the last acknowledgement, as the raw arm is
//!   from its `basic_consume`.
//!
//! The backlog, the transport wrapper that holds publications while it is built, the stores
//! and the envelopes are `benches/support/broker.rs`'s, shared with the NATS bench (see there).
//! Every drain has an exchange and queues of its own, deleted after it. The app's store is the
//! `InMemoryStore`: what the relay and the consumer cost besides the broker.
//!
//! Each case is a criterion benchmark of `sample_size(10)`, one drain per sample plus one of
//! warm-up; the summary at the end gives each case's msg/s over its measured drains and the
//! ratios. Without `--bench` (as `cargo test --benches` runs it) each case drains a small
//! backlog once.
//!
//! Run: `AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo bench -p tidings-benches --bench
//! rabbitmq` (a few minutes; skipped, saying so, without `AMQP_URL`).
#![allow(missing_docs)]

#[path = "support/broker.rs"]
mod broker;
mod support;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use broker::{Drain, FreshStore, SAMPLES, UNKEYED, host, process_cpu, timed_on_worker};
use criterion::Criterion;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use tidings::RabbitMqTransport;
use tidings::transport::{Subscription, Transport, cloudevents};

/// The confirm windows B7 sweeps: the relay's window and the transport's confirm window, and
/// the raw arm's.
const WINDOWS: [usize; 4] = [1, 20, 200, 1_000];

/// The inbox batches B10 sweeps (`TidingsBuilder::inbox_batch`).
const INBOX_BATCHES: [usize; 2] = [1, 64];

/// Messages of a B10 drain.
const MESSAGES: usize = 10_000;

/// The prefetch of both B10 arms: the transport's default.
const PREFETCH: u16 = 200;

/// The context whose queue the drains fill, and B10 consumes.
const CONTEXT: &str = "search";

/// Rows of a B7 drain with window `window`: 20,000 from a window of 200, fewer below, where a
/// drain is bound by one write to the queue's log per few confirmations.
fn rows(window: usize, smoke: bool) -> usize {
    if smoke {
        return 1_000;
    }
    match window {
        1 => 1_000,
        2..=20 => 5_000,
        _ => 20_000,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Case {
    /// B7: the relay of an app, with this window.
    Relay(usize),
    /// B7: raw `lapin` publishes, with this confirm window.
    RawPublish(usize),
    /// B10: an app consumes, with this inbox batch.
    Consume(usize),
    /// B10: raw `lapin` consume, each delivery acknowledged.
    RawConsume,
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::Relay(window) => format!("tidings relay, window {window}"),
            Case::RawPublish(window) => format!("raw lapin, confirm window {window}"),
            Case::Consume(batch) => format!("tidings consumer, inbox batch {batch}"),
            Case::RawConsume => "raw lapin consumer, acks one by one".to_owned(),
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

/// What the drains share: the broker and names unique to the run.
struct Bench {
    url: String,
    /// Raw arms' connection.
    connection: Connection,
    run: String,
    made: AtomicUsize,
    smoke: bool,
}

/// One drain's exchange, its transport, and its queue for [`CONTEXT`].
struct Place {
    transport: RabbitMqTransport,
    exchange: String,
    queue: String,
}

impl Bench {
    /// A fresh exchange, and the context's queue bound to it, declared by the transport as it
    /// declares them; the transport's confirm window is `window`.
    async fn place(&self, window: usize) -> Place {
        let exchange = format!("{}-{}", self.run, self.made.fetch_add(1, Ordering::Relaxed));
        let transport = RabbitMqTransport::builder()
            .exchange(exchange.clone())
            .confirm_window(window)
            .prefetch(PREFETCH)
            .connect(&self.url)
            .await
            .expect("RabbitMQ answers");
        let subscription = Subscription {
            contract: UNKEYED.to_owned(),
            version: 1,
            context: CONTEXT.to_owned(),
        };
        drop(
            transport
                .subscribe(subscription)
                .await
                .expect("the context's queue is declared"),
        );
        let queue = transport.queue_name(CONTEXT, UNKEYED, 1);
        Place {
            transport,
            exchange,
            queue,
        }
    }

    /// Deletes the drain's queues and exchanges.
    async fn remove(&self, place: Place) {
        let channel = self.connection.create_channel().await.expect("a channel");
        for queue in [
            RabbitMqTransport::dead_letter_queue_name(&place.queue),
            place.queue.clone(),
        ] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .expect("the drain's queue is deleted");
        }
        for exchange in [place.transport.dead_letter_exchange(), place.exchange] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .expect("the drain's exchange is deleted");
        }
    }

    async fn drain(&self, case: Case) -> Drain {
        let size = case.size(self.smoke);
        let (time, cpu) = match case {
            Case::Relay(window) => {
                let place = self.place(window).await;
                let store = FreshStore::Memory(tidings::InMemoryStore::new());
                let drained =
                    broker::relay_drain(place.transport.clone(), &store, None, size, window).await;
                self.remove(place).await;
                drained
            }
            Case::RawPublish(window) => {
                let place = self.place(window).await;
                let wire = wire(size);
                let cpu = process_cpu();
                let time = timed_on_worker(publish_raw(
                    self.url.clone(),
                    place.exchange.clone(),
                    wire,
                    window,
                ))
                .await;
                let cpu = process_cpu().saturating_sub(cpu);
                self.remove(place).await;
                (time, cpu)
            }
            Case::Consume(batch) => {
                let place = self.place(256).await;
                publish_raw(self.url.clone(), place.exchange.clone(), wire(size), 256).await;
                let store = FreshStore::Memory(tidings::InMemoryStore::new());
                let drained =
                    broker::consume_drain(place.transport.clone(), &store, batch, size).await;
                self.remove(place).await;
                drained
            }
            Case::RawConsume => {
                let place = self.place(256).await;
                publish_raw(self.url.clone(), place.exchange.clone(), wire(size), 256).await;
                let cpu = process_cpu();
                let time =
                    timed_on_worker(consume_raw(self.url.clone(), place.queue.clone(), size)).await;
                let cpu = process_cpu().saturating_sub(cpu);
                self.remove(place).await;
                (time, cpu)
            }
        };
        Drain {
            time,
            cpu,
            messages: size,
            bytes_per_message: 0.0,
        }
    }
}

/// A message to publish raw: its id, headers and body, as the transport sends them.
struct Wire {
    id: String,
    headers: FieldTable,
    body: Vec<u8>,
}

/// `count` messages of the unkeyed contract as tidings puts them on RabbitMQ: binary mode.
fn wire(count: usize) -> Vec<Wire> {
    broker::envelopes(count)
        .iter()
        .map(|message| {
            let binary = cloudevents::to_binary(message, "ce-");
            let mut headers = FieldTable::default();
            for (name, value) in binary.headers {
                headers.insert(name.into(), AMQPValue::LongString(value.into()));
            }
            if let Some(traceparent) = &message.traceparent {
                headers.insert(
                    "traceparent".into(),
                    AMQPValue::LongString(traceparent.as_str().into()),
                );
            }
            Wire {
                id: message.id.to_string(),
                headers,
                body: binary.body,
            }
        })
        .collect()
}

/// Publishes `messages` to `exchange` with the unkeyed contract's routing key, on a channel of
/// a connection of its own in confirm mode, `window` confirmations awaited at most, oldest
/// first; returns once all are confirmed.
async fn publish_raw(url: String, exchange: String, messages: Vec<Wire>, window: usize) {
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ answers");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let routing_key = RabbitMqTransport::routing_key(UNKEYED, 1);
    let mut confirms = VecDeque::with_capacity(window);
    let confirmed = |confirmation: lapin::Result<Confirmation>| {
        assert_eq!(
            confirmation.expect("the broker confirms"),
            Confirmation::Ack(None)
        );
    };
    for message in messages {
        if confirms.len() >= window.max(1) {
            let confirm: lapin::PublisherConfirm =
                confirms.pop_front().expect("a publication in flight");
            confirmed(confirm.await);
        }
        let properties = BasicProperties::default()
            .with_message_id(message.id.into())
            .with_content_type(cloudevents::DATA_CONTENT_TYPE.into())
            .with_delivery_mode(2)
            .with_headers(message.headers);
        confirms.push_back(
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    properties,
                )
                .await
                .expect("the publication is sent"),
        );
    }
    for confirm in confirms {
        confirmed(confirm.await);
    }
    let _ = connection.close(200, "OK".into()).await;
}

/// Consumes `messages` messages from `queue` with the transport's prefetch, acknowledging each.
async fn consume_raw(url: String, queue: String, messages: usize) {
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ answers");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("the prefetch is set");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the consumer starts");
    for _ in 0..messages {
        let delivery = consumer
            .next()
            .await
            .expect("the consumer goes on")
            .expect("a delivery");
        delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("the delivery is acknowledged");
    }
    let _ = connection.close(200, "OK".into()).await;
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
        "\nRabbitMQ summary: {}, quorum queues, publisher confirms\nhost: at start \
         {host_at_start}; at end {}\nmsg/s: the messages of the measured drains (the last \
         {SAMPLES}) over their time; CPU µs/msg: this process's CPU time (every thread, not the \
         broker's) over the drains, per message\n",
        bench.url.rsplit('@').next().unwrap_or_default(),
        host()
    );
    let _ = writeln!(
        out,
        "B7 relay: drain a backlog to RabbitMQ vs raw lapin with the same confirm window \
         (target >= 0.80x raw at the best window)\n{:<40} {:>8} {:>9} {:>9} {:>10}",
        "case", "messages", "msg/s", "vs raw", "CPU µs/msg"
    );
    for window in WINDOWS {
        row(&mut out, Case::RawPublish(window), Case::RawPublish(window));
        row(&mut out, Case::Relay(window), Case::RawPublish(window));
    }
    let _ = writeln!(
        out,
        "B10 consume: messages in the queue, received -> inbox -> acknowledged\n{:<40} {:>8} \
         {:>9} {:>9} {:>10}",
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
    let Some(url) = std::env::var("AMQP_URL").ok().filter(|url| !url.is_empty()) else {
        println!("skipping: set AMQP_URL to a RabbitMQ broker to run the RabbitMQ bench");
        return;
    };
    let host_at_start = host();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a multi-thread runtime");
    let connection =
        match runtime.block_on(Connection::connect(&url, ConnectionProperties::default())) {
            Ok(connection) => connection,
            Err(error) => {
                println!("skipping: could not connect to RabbitMQ at AMQP_URL: {error}");
                return;
            }
        };
    let bench = Bench {
        url,
        connection,
        run: format!("bench-rabbit-{}", std::process::id()),
        made: AtomicUsize::new(0),
        smoke,
    };
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
