//! The Pub/Sub transport against the raw `google-cloud-pubsub` client on the same emulator, in
//! the same run.
//!
//! - `B-relay`: drain a backlog of outbox integration rows with no ordering key to a topic
//!   with one subscription, through a started app's relay whose window is `W`, against the raw
//!   client publishing the same messages (binary-mode CloudEvents, `ce-` attributes) with the
//!   same batching (the transport's defaults: 100 messages or 5 ms a request, no retry by the
//!   client), at most `W` acknowledgements awaited, oldest first. `W` sweeps 200 and 1,000
//!   ([`WINDOWS`]); each drain is [`ROWS`] rows.
//! - `B10` consume: `MESSAGES` messages already in a context's subscription; a started app of
//!   that context with one inbound handler (it does nothing) receives them by streaming pull
//!   (at most 1,000 outstanding, the transport's default), records them in its inbox, up to
//!   `inbox_batch` ready messages in one store call ([`INBOX_BATCHES`]), and acknowledges each
//!   once recorded; the raw arm is the client's streaming pull with the same limit that
//!   acknowledges each message as it comes. Timed from `start()` (which subscribes) to the last
//!   acknowledgement, as the raw arm is from its `subscribe`.
//!
//! The backlog, the transport wrapper that holds publications while it is built, the stores
//! and the envelopes are `benches/support/broker.rs`'s, shared with the NATS and RabbitMQ
//! benches. Every drain has a topic prefix of its own. The app's store is the `InMemoryStore`:
//! what the relay and the consumer cost besides the emulator, a Java process on the same
//! machine (its CPU is not counted).
//!
//! Run: `PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo bench -p tidings-benches --bench pubsub`
//! (a few minutes; skipped, saying so, without `PUBSUB_EMULATOR_HOST`).
#![allow(missing_docs)]

#[path = "support/broker.rs"]
mod broker;
mod support;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use broker::{Drain, FreshStore, SAMPLES, UNKEYED, host, process_cpu, timed_on_worker};
use criterion::Criterion;
use google_cloud_pubsub::model::Message as PubSubMessage;
use tidings::transport::{Subscription, Transport, cloudevents};
use tidings::{PubSubClients, PubSubTransport};

/// The windows B-relay sweeps: the relay's window, and the raw arm's acknowledgements awaited.
const WINDOWS: [usize; 2] = [200, 1_000];

/// Rows of a B-relay drain.
const ROWS: usize = 50_000;

/// The inbox batches B10 sweeps (`TidingsBuilder::inbox_batch`).
const INBOX_BATCHES: [usize; 2] = [1, 64];

/// Messages of a B10 drain.
const MESSAGES: usize = 10_000;

/// The outstanding messages of both B10 arms: the transport's default.
const OUTSTANDING: i64 = 1_000;

/// The context whose subscription the drains fill, and B10 consumes.
const CONTEXT: &str = "search";

/// The project on the emulator.
const PROJECT: &str = "tidings-bench";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Case {
    /// B-relay: the relay of an app, with this window.
    Relay(usize),
    /// B-relay: the raw client publishes, with this window.
    RawPublish(usize),
    /// B10: an app consumes, with this inbox batch.
    Consume(usize),
    /// B10: the raw client's streaming pull, each message acknowledged.
    RawConsume,
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::Relay(window) => format!("tidings relay, window {window}"),
            Case::RawPublish(window) => format!("raw client, window {window}"),
            Case::Consume(batch) => format!("tidings consumer, inbox batch {batch}"),
            Case::RawConsume => "raw streaming pull, acks one by one".to_owned(),
        }
    }

    fn size(self, smoke: bool) -> usize {
        match self {
            _ if smoke => 500,
            Case::Relay(_) | Case::RawPublish(_) => ROWS,
            Case::Consume(_) | Case::RawConsume => MESSAGES,
        }
    }
}

/// What the drains share: the emulator, the raw arms' clients and names unique to the run.
struct Bench {
    host: String,
    clients: PubSubClients,
    run: String,
    made: AtomicUsize,
    smoke: bool,
}

/// One drain's transport, its topic and the context's subscription, by full name.
struct Place {
    transport: PubSubTransport,
    topic: String,
    subscription: String,
}

impl Bench {
    /// A fresh prefix, its topic and the context's subscription, made by the transport.
    async fn place(&self) -> Place {
        let prefix = format!("{}-{}", self.run, self.made.fetch_add(1, Ordering::Relaxed));
        let transport = PubSubTransport::builder()
            .prefix(prefix)
            .emulator(self.host.clone())
            .max_outstanding_messages(OUTSTANDING)
            .connect(PROJECT)
            .await
            .expect("Pub/Sub clients for the emulator");
        let subscription = Subscription {
            contract: UNKEYED.to_owned(),
            version: 1,
            context: CONTEXT.to_owned(),
        };
        drop(
            transport
                .subscribe(subscription)
                .await
                .expect("the context's subscription is made"),
        );
        let topic = format!(
            "projects/{PROJECT}/topics/{}",
            transport.topic_name(UNKEYED, 1)
        );
        let subscription = format!(
            "projects/{PROJECT}/subscriptions/{}",
            transport.subscription_name(CONTEXT, UNKEYED, 1)
        );
        Place {
            transport,
            topic,
            subscription,
        }
    }

    /// Deletes the drain's subscription and topic.
    async fn remove(&self, place: Place) {
        self.clients
            .subscription_admin
            .delete_subscription()
            .set_subscription(place.subscription)
            .send()
            .await
            .expect("the drain's subscription is deleted");
        self.clients
            .topic_admin
            .delete_topic()
            .set_topic(place.topic)
            .send()
            .await
            .expect("the drain's topic is deleted");
    }

    async fn drain(&self, case: Case) -> Drain {
        let size = case.size(self.smoke);
        let place = self.place().await;
        let (time, cpu) = match case {
            Case::Relay(window) => {
                let store = FreshStore::Memory(tidings::InMemoryStore::new());
                broker::relay_drain(place.transport.clone(), &store, None, size, window).await
            }
            Case::RawPublish(window) => {
                let wire = wire(size);
                let cpu = process_cpu();
                let time = timed_on_worker(publish_raw(
                    self.clients.clone(),
                    place.topic.clone(),
                    wire,
                    window,
                ))
                .await;
                (time, process_cpu().saturating_sub(cpu))
            }
            Case::Consume(batch) => {
                publish_raw(self.clients.clone(), place.topic.clone(), wire(size), 1_000).await;
                let store = FreshStore::Memory(tidings::InMemoryStore::new());
                broker::consume_drain(place.transport.clone(), &store, batch, size).await
            }
            Case::RawConsume => {
                publish_raw(self.clients.clone(), place.topic.clone(), wire(size), 1_000).await;
                let cpu = process_cpu();
                let time = timed_on_worker(consume_raw(
                    self.clients.clone(),
                    place.subscription.clone(),
                    size,
                ))
                .await;
                (time, process_cpu().saturating_sub(cpu))
            }
        };
        self.remove(place).await;
        Drain {
            time,
            cpu,
            messages: size,
            bytes_per_message: 0.0,
        }
    }
}

/// `count` messages of the unkeyed contract as tidings puts them on Pub/Sub: binary mode.
fn wire(count: usize) -> Vec<PubSubMessage> {
    broker::envelopes(count)
        .iter()
        .map(|message| {
            let binary = cloudevents::to_binary(message, cloudevents::PUBSUB_ATTRIBUTE_PREFIX);
            let mut attributes: HashMap<String, String> = binary.headers.into_iter().collect();
            attributes.insert("Content-Type".to_owned(), binary.content_type.to_owned());
            if let Some(traceparent) = &message.traceparent {
                attributes.insert("traceparent".to_owned(), traceparent.clone());
            }
            PubSubMessage::new()
                .set_data(binary.body)
                .set_attributes(attributes)
        })
        .collect()
}

/// Publishes `messages` to `topic` with the transport's batching, `window` acknowledgements
/// awaited at most, oldest first; returns once all are acknowledged.
async fn publish_raw(
    clients: PubSubClients,
    topic: String,
    messages: Vec<PubSubMessage>,
    window: usize,
) {
    let publisher = clients
        .publisher
        .publisher(topic)
        .set_message_count_threshold(100)
        .set_delay_threshold(std::time::Duration::from_millis(5))
        .build();
    let mut acks = VecDeque::with_capacity(window);
    for message in messages {
        if acks.len() >= window.max(1) {
            let ack: google_cloud_pubsub::publisher::PublishFuture =
                acks.pop_front().expect("a publication in flight");
            ack.await.expect("the emulator acknowledges");
        }
        acks.push_back(publisher.publish(message));
    }
    for ack in acks {
        ack.await.expect("the emulator acknowledges");
    }
}

/// Pulls `messages` messages from `subscription` with the transport's outstanding limit,
/// acknowledging each.
async fn consume_raw(clients: PubSubClients, subscription: String, messages: usize) {
    let mut stream = clients
        .subscriber
        .subscribe(subscription)
        .set_max_outstanding_messages(OUTSTANDING)
        .build();
    for _ in 0..messages {
        let (_, handler) = stream
            .next()
            .await
            .expect("the pull goes on")
            .expect("a message");
        handler.ack();
    }
    stream.shutdown_token().shutdown().await;
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
        "\nPub/Sub summary: the emulator at {}\nhost: at start {host_at_start}; at end {}\nmsg/s: \
         the messages of the measured drains (the last {SAMPLES}) over their time; CPU µs/msg: \
         this process's CPU time (every thread, not the emulator's) over the drains, per \
         message\n",
        bench.host,
        host()
    );
    let _ = writeln!(
        out,
        "B-relay: drain a backlog to Pub/Sub vs the raw client with the same batching and \
         window\n{:<40} {:>8} {:>9} {:>9} {:>10}",
        "case", "messages", "msg/s", "vs raw", "CPU µs/msg"
    );
    for window in WINDOWS {
        row(&mut out, Case::RawPublish(window), Case::RawPublish(window));
        row(&mut out, Case::Relay(window), Case::RawPublish(window));
    }
    let _ = writeln!(
        out,
        "B10 consume: messages in the subscription, received -> inbox -> acknowledged\n{:<40} \
         {:>8} {:>9} {:>9} {:>10}",
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
    let Some(emulator) = std::env::var("PUBSUB_EMULATOR_HOST")
        .ok()
        .filter(|host| !host.is_empty())
    else {
        println!(
            "skipping: set PUBSUB_EMULATOR_HOST to a Pub/Sub emulator to run the Pub/Sub bench"
        );
        return;
    };
    let host_at_start = host();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a multi-thread runtime");
    let clients = match runtime.block_on(PubSubClients::connect(Some(&emulator))) {
        Ok(clients) => clients,
        Err(error) => {
            println!("skipping: no Pub/Sub clients for the emulator: {error}");
            return;
        }
    };
    let bench = Bench {
        host: emulator,
        clients,
        run: format!("bench-pubsub-{}", std::process::id()),
        made: AtomicUsize::new(0),
        smoke,
    };
    let mut c = Criterion::default().configure_from_args();
    let relay: Vec<Case> = WINDOWS
        .iter()
        .flat_map(|&window| [Case::RawPublish(window), Case::Relay(window)])
        .collect();
    broker::group(&mut c, &runtime, &bench, &DRAINS, "B-relay drain", &relay);
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
