//! Fault tests of the NATS path, each on a private `nats-server` of its own (a free port,
//! JetStream, a temporary store directory), killed with SIGKILL and started again, or behind a
//! TCP proxy that slows, holds or cuts the link:
//!
//! - F3: the publishing process is killed after the broker acknowledged a publication, before
//!   the row is marked published;
//! - F4: the broker is down while use cases keep publishing;
//! - F5: latency, then a blackhole, on the link between the relay and the broker;
//! - F6: the link is cut after a publication reached the broker, before its acknowledgement;
//! - F7: payloads that cannot be decoded and a handler that always fails, next to healthy ones;
//! - F11: the publisher's connections to PostgreSQL are cut while the relay marks rows, inside
//!   the transaction that turns a domain event into an outbox row, and refused for a while;
//! - F12: the broker is killed with SIGKILL and started again in the middle of a stream.
//!
//! Each keeps a ledger: the publishing side records every order it committed, the consuming
//! app's handler every order it saw. Each asserts lost = 0 (and order per key where it says
//! so); duplicates are counted and printed, never failed. The streams' setting is named in each
//! ledger line: tidings' "no event is lost" is never stronger than the broker's acknowledgement.
//! The tests run one at a time, so that two servers do not compete for the cores.

#[path = "faults/mod.rs"]
mod faults;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::broker::{LinkProxy, PrivateNats};
use tidings::prelude::*;
use tidings::transport::{BoxFuture, Inbound, Message, Subscription, Transport, cloudevents};
use tidings::{NatsStorage, NatsTransport, NatsTransportBuilder, SqliteStore, TransportError};
use uuid::Uuid;

use faults::*;

/// One test at a time: each runs a server of its own, and two cores are few.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A client that reconnects soon (at most 250 ms apart, without end), with requests and
/// publications timing out after 1 s.
async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(1))
        .reconnect_delay_callback(|attempts| {
            let attempts = u64::try_from(attempts).unwrap_or(u64::MAX);
            Duration::from_millis(attempts.saturating_mul(50).min(250))
        })
        .connect(url)
        .await
        .expect("the private NATS server answers");
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client)
}

/// The settings of the tests' transports: the default names, `storage`, a short ack wait.
fn builder(storage: NatsStorage) -> NatsTransportBuilder {
    NatsTransport::builder()
        .storage(storage)
        .max_age(Duration::from_secs(3600))
        .ack_wait(Duration::from_secs(2))
}

/// What the contract's stream holds, read back from the broker message by message.
#[derive(Debug)]
struct StreamContent {
    /// Each message's event id and order, in stream order.
    messages: Vec<(Uuid, Option<Order>)>,
}

impl StreamContent {
    async fn read(url: &str, transport: &NatsTransport) -> Self {
        let client = async_nats::connect(url)
            .await
            .expect("the private NATS server answers");
        let jetstream = async_nats::jetstream::new(client);
        let mut stream = jetstream
            .get_stream(transport.stream_name(CONTRACT, 1))
            .await
            .expect("the contract's stream exists");
        let state = stream
            .info()
            .await
            .expect("the stream's state")
            .state
            .clone();
        let mut messages = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            // A sequence may be a gap (a message the server lost or removed).
            let Ok(raw) = stream.get_raw_message(sequence).await else {
                continue;
            };
            match cloudevents::from_structured(&raw.payload) {
                Ok(message) => messages.push((message.id, order_of(&message))),
                Err(_) => messages.push((Uuid::nil(), None)),
            }
        }
        StreamContent { messages }
    }

    fn orders(&self) -> Vec<Order> {
        self.messages
            .iter()
            .filter_map(|(_, order)| order.clone())
            .collect()
    }

    /// Messages stored more than once under one event id.
    fn copies(&self) -> usize {
        let ids: BTreeSet<Uuid> = self.messages.iter().map(|(id, _)| *id).collect();
        self.messages.len() - ids.len()
    }
}

/// F4: two contexts on a private broker (file storage); the broker is killed and stays down
/// while the publisher's use cases keep publishing (they only write the SQLite outbox), then
/// starts again on the same port and store. Everything arrives, in order per key, in the
/// stream and at the consumer (one message in flight per consumer, so that a redelivery
/// cannot overtake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_broker_down_while_use_cases_keep_publishing() {
    const TEST: &str = "f4_broker_down_while_use_cases_keep_publishing";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut nats) = PrivateNats::start(TEST).await else {
        return;
    };
    let db = support::TempDb::new();
    let ledger = Dep::new(Ledger::default());
    let publishing =
        Recording::new(builder(NatsStorage::File).from_jetstream(jetstream(&nats.url()).await));
    let consuming = builder(NatsStorage::File)
        .max_ack_pending(1)
        .from_jetstream(jetstream(&nats.url()).await);
    let (orders, orders_running) =
        publisher(publishing.clone(), SqliteStore::open(&db.0).await.unwrap()).await;
    let (_billing, billing_running) =
        consumer("billing", consuming.clone(), &ledger, quick_retry()).await;

    let keys = keys(4);
    let committed = Mutex::new(Vec::new());
    let round = |seq: u32| {
        let (orders, committed, keys) = (&orders, &committed, &keys);
        async move {
            for key in keys {
                place(orders, committed, key, seq).await;
            }
        }
    };

    // The broker up: the path works.
    round(0).await;
    let first: BTreeSet<Order> = committed.lock().unwrap().iter().cloned().collect();
    assert!(
        support::eventually(PATIENCE, || async { ledger.has_all("bill", &first) }).await,
        "{TEST}: the first orders arrived with the broker up"
    );

    // The broker down, the use cases publishing.
    nats.kill();
    let down_from = committed.lock().unwrap().len();
    for seq in 1..=12 {
        round(seq).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let during_outage = committed.lock().unwrap().len() - down_from;

    // The broker back, on the same port and store; a few more orders.
    nats.restart().await;
    for seq in 13..=14 {
        round(seq).await;
    }

    settle(&[&orders_running]).await;
    let committed = committed.into_inner().unwrap();
    let expected: BTreeSet<Order> = committed.iter().cloned().collect();
    let arrived =
        support::eventually(PATIENCE, || async { ledger.has_all("bill", &expected) }).await;
    settle(&[&orders_running, &billing_running]).await;

    let stream = StreamContent::read(&nats.url(), &consuming).await;
    let in_stream = Tally::new(&committed, &stream.orders());
    let at_consumer = Tally::new(&committed, &ledger.orders("bill"));
    let attempts = publishing.attempts();
    let failed = attempts.iter().filter(|a| a.outcome.is_err()).count();
    println!(
        "{TEST} (file storage): {}; {during_outage} published with the broker down; relay \
         attempts {}, failed {failed}; stream copies {}",
        at_consumer.line(),
        attempts.len(),
        stream.copies()
    );
    assert!(
        arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    in_stream.assert_nothing_lost(TEST);
    in_stream.assert_in_order(TEST, "the stream");
    at_consumer.assert_nothing_lost(TEST);
    at_consumer.assert_in_order(TEST, "the consumer");

    orders_running.shutdown().await.unwrap();
    billing_running.shutdown().await.unwrap();
}

/// F12: while a use case publishes a steady stream, the broker (file storage) is killed with
/// SIGKILL and started again at once, then killed again and started after a pause. Lost = 0 at
/// the consumer; a message the broker acknowledged and then lost in its crash would be the
/// broker's loss, counted apart (its file store syncs to disk every 2 minutes by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_broker_killed_and_restarted_mid_stream() {
    const TEST: &str = "f12_broker_killed_and_restarted_mid_stream";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut nats) = PrivateNats::start(TEST).await else {
        return;
    };
    let ledger = Dep::new(Ledger::default());
    let publishing =
        Recording::new(builder(NatsStorage::File).from_jetstream(jetstream(&nats.url()).await));
    let consuming = builder(NatsStorage::File).from_jetstream(jetstream(&nats.url()).await);
    let (orders, orders_running) = publisher(publishing.clone(), InMemoryStore::new()).await;
    let (_billing, billing_running) =
        consumer("billing", consuming.clone(), &ledger, quick_retry()).await;

    let committed = Arc::new(Mutex::new(Vec::new()));
    let stream_of_orders = tokio::spawn({
        let (orders, committed) = (orders.clone(), Arc::clone(&committed));
        async move {
            let keys = keys(5);
            for seq in 0..40 {
                for key in &keys {
                    place(&orders, &committed, key, seq).await;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    let committed_at_least = |n: usize| {
        let committed = Arc::clone(&committed);
        async move {
            support::eventually(PATIENCE, || async { committed.lock().unwrap().len() >= n }).await
        }
    };

    // Killed once the consumer has seen orders flow, started again at once.
    assert!(committed_at_least(50).await);
    assert!(support::eventually(PATIENCE, || async { !ledger.orders("bill").is_empty() }).await);
    nats.kill();
    nats.restart().await;
    // Killed again further on, started after a pause.
    assert!(committed_at_least(130).await);
    nats.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.restart().await;
    stream_of_orders.await.unwrap();

    settle(&[&orders_running]).await;
    let committed = committed.lock().unwrap().clone();
    let stream = StreamContent::read(&nats.url(), &consuming).await;
    let in_stream: BTreeSet<Order> = stream.orders().into_iter().collect();
    // Acknowledged by the server, and not in its stream after its crashes.
    let broker_lost: BTreeSet<Order> = publishing
        .acknowledged()
        .difference(&in_stream)
        .cloned()
        .collect();
    let expected: BTreeSet<Order> = committed
        .iter()
        .filter(|order| !broker_lost.contains(*order))
        .cloned()
        .collect();
    let arrived =
        support::eventually(PATIENCE, || async { ledger.has_all("bill", &expected) }).await;
    settle(&[&orders_running, &billing_running]).await;

    let at_consumer = Tally::new(&committed, &ledger.orders("bill"));
    let attempts = publishing.attempts();
    let failed = attempts.iter().filter(|a| a.outcome.is_err()).count();
    println!(
        "{TEST} (file storage, 2 SIGKILLs): {}; broker lost {} (acknowledged, gone after its \
         crash); relay attempts {}, failed {failed}; stream copies {}; seen out of order per key \
         at the consumer {} (not asserted: a redelivery comes after what followed it)",
        at_consumer.line(),
        broker_lost.len(),
        attempts.len(),
        stream.copies(),
        at_consumer.out_of_order.len()
    );
    let tidings_lost: Vec<&Order> = at_consumer
        .lost
        .iter()
        .filter(|order| !broker_lost.contains(*order))
        .collect();
    assert!(
        arrived && tidings_lost.is_empty(),
        "{TEST}: lost {tidings_lost:?}"
    );
    assert!(
        broker_lost.is_empty(),
        "{TEST}: the broker acknowledged and then lost {broker_lost:?} in its crash (nats-server's \
         loss, not tidings')"
    );
    Tally::new(&committed, &stream.orders()).assert_in_order(TEST, "the stream");

    orders_running.shutdown().await.unwrap();
    billing_running.shutdown().await.unwrap();
}

/// F6: the publisher's link goes through a proxy that cuts the connection right after it
/// forwarded a publication to the broker, before the acknowledgement can come back. The relay
/// sees the publication fail (unknown whether it landed), publishes it again with the same id,
/// the stream keeps one copy, and the consumer sees each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_link_cut_after_a_publication_before_its_acknowledgement() {
    const TEST: &str = "f6_link_cut_after_a_publication_before_its_acknowledgement";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(nats) = PrivateNats::start(TEST).await else {
        return;
    };
    let proxy = LinkProxy::start(nats.port()).await;
    let ledger = Dep::new(Ledger::default());
    let publishing =
        Recording::new(builder(NatsStorage::Memory).from_jetstream(jetstream(&proxy.url()).await));
    let consuming = builder(NatsStorage::Memory).from_jetstream(jetstream(&nats.url()).await);
    let (orders, orders_running) = publisher(publishing.clone(), InMemoryStore::new()).await;
    let (_billing, billing_running) =
        consumer("billing", consuming.clone(), &ledger, quick_retry()).await;

    // Every second publication on the contract's subject loses its link right after it is
    // sent, four times in all.
    let subject = consuming.subject(CONTRACT, 1);
    proxy.cut_after_sending(&format!("HPUB {subject} "), 2, 4);

    let committed = Mutex::new(Vec::new());
    for seq in 0..10 {
        for key in keys(4) {
            place(&orders, &committed, &key, seq).await;
        }
    }
    settle(&[&orders_running]).await;
    let committed = committed.into_inner().unwrap();
    let expected: BTreeSet<Order> = committed.iter().cloned().collect();
    let arrived =
        support::eventually(PATIENCE, || async { ledger.has_all("bill", &expected) }).await;
    settle(&[&orders_running, &billing_running]).await;

    let stream = StreamContent::read(&nats.url(), &consuming).await;
    let at_consumer = Tally::new(&committed, &ledger.orders("bill"));
    let attempts = publishing.attempts();
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.outcome.is_err()).collect();
    println!(
        "{TEST} (memory storage): {}; links cut {} after {} publications sent; relay attempts \
         {}, failed {}; stream messages {}, copies {}",
        at_consumer.line(),
        proxy.cuts(),
        proxy.matched(),
        attempts.len(),
        failed.len(),
        stream.messages.len(),
        stream.copies()
    );
    assert!(
        arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    at_consumer.assert_nothing_lost(TEST);
    assert!(proxy.cuts() > 0, "{TEST}: the proxy cut no link");
    assert!(
        !failed.is_empty(),
        "{TEST}: no publication failed, though links were cut before their acknowledgements"
    );
    publishing.assert_failures_retried(TEST);
    // Retries with the same id are dropped by the stream; the consumer sees each event once.
    assert_eq!(stream.copies(), 0, "{TEST}: {:?}", stream.messages);
    assert_eq!(stream.messages.len(), committed.len());
    assert_eq!(
        at_consumer.duplicates, 0,
        "{TEST}: the inbox lets nothing in twice"
    );
    let ids = ledger.ids("bill");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "{TEST}: one event id per order"
    );
    at_consumer.assert_in_order(TEST, "the consumer");

    orders_running.shutdown().await.unwrap();
    billing_running.shutdown().await.unwrap();
}

/// F7: on the contract's stream, a payload that is not a CloudEvent and a CloudEvent whose data
/// is not the contract's; in the consuming context, a handler that fails every time on one key,
/// next to a healthy one. The undecodable messages and the poison key's deliveries of the
/// failing handler are dead-lettered; every other message flows to both handlers, in order per
/// key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f7_undecodable_payloads_and_a_failing_handler_are_dead_lettered() {
    const TEST: &str = "f7_undecodable_payloads_and_a_failing_handler_are_dead_lettered";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(nats) = PrivateNats::start(TEST).await else {
        return;
    };
    let publishing = builder(NatsStorage::Memory).from_jetstream(jetstream(&nats.url()).await);
    let consuming = builder(NatsStorage::Memory).from_jetstream(jetstream(&nats.url()).await);
    let subject = consuming.subject(CONTRACT, 1);
    let garbage = async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        async_nats::jetstream::new(client)
            .publish(subject, "hello, not an event".into())
            .await
            .unwrap()
            .await
            .unwrap();
    };
    f7_undecodable_and_failing(TEST, "memory storage", publishing, consuming, garbage).await;
}

/// Whether the durable consumer of `context` acknowledged every message of the contract's
/// stream, duplicates included.
async fn consumed_all(url: &str, transport: &NatsTransport, context: &str) -> bool {
    let Ok(client) = async_nats::connect(url).await else {
        return false;
    };
    let jetstream = async_nats::jetstream::new(client);
    let Ok(mut stream) = jetstream
        .get_stream(transport.stream_name(CONTRACT, 1))
        .await
    else {
        return false;
    };
    let Ok(last) = stream.info().await.map(|info| info.state.last_sequence) else {
        return false;
    };
    let Ok(mut consumer) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
            &transport.consumer_name(context),
        )
        .await
    else {
        return false;
    };
    consumer
        .info()
        .await
        .is_ok_and(|info| info.ack_floor.stream_sequence >= last && info.num_ack_pending == 0)
}

/// How long a claim holds in F3 and F11, so that the work of a killed process, or of a call
/// whose connection was cut, is taken over soon.
const SHORT_LEASE: Duration = Duration::from_secs(1);

/// How many acknowledgements the F3 child takes in before it is killed at the last one.
const F3_DIE_AFTER: usize = 8;

/// The NATS transport of the F3 child: it kills the process with SIGKILL right after the broker
/// acknowledged the `die_after`-th publication, before the relay hears of it, so that the row
/// is acknowledged and never marked published. It prints `acked <event id>` for each
/// acknowledgement, and `acked <event id>, dying` for the last.
#[derive(Debug, Clone)]
struct DiesAfterAcks {
    inner: NatsTransport,
    acked: Arc<std::sync::atomic::AtomicUsize>,
    die_after: usize,
}

impl Transport for DiesAfterAcks {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let id = message.id;
            let result = self.inner.publish(message).await;
            if result.is_ok() {
                let acked = self.acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if acked == self.die_after {
                    println!("acked {id}, dying");
                    support::die();
                }
                println!("acked {id}");
            }
            result
        })
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        self.inner.subscribe(subscription)
    }
}

/// F3's child process: the orders app on the SQLite file `F3_DB` (a short lease), publishing
/// to the private server at `F3_NATS` (a duplicate window of `F3_WINDOW_MS`) through
/// [`DiesAfterAcks`], until it kills itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of F3, started by it"]
async fn f3_child() {
    let db = support::child_env("F3_DB");
    let url = support::child_env("F3_NATS");
    let window = Duration::from_millis(
        support::child_env("F3_WINDOW_MS")
            .parse()
            .expect("F3_WINDOW_MS is a number of milliseconds"),
    );
    let transport = DiesAfterAcks {
        inner: builder(NatsStorage::Memory)
            .duplicate_window(window)
            .from_jetstream(jetstream(&url).await),
        acked: Arc::default(),
        die_after: F3_DIE_AFTER,
    };
    let store = SqliteStore::open(&db)
        .await
        .expect("the child opens the SQLite file")
        .lease(SHORT_LEASE);
    let (_orders, _running) = publisher(transport, store).await;
    // Killed long before this, by its transport.
    tokio::time::sleep(Duration::from_secs(60)).await;
    panic!("the F3 child was never killed");
}

/// What an F3 run saw.
struct F3Run {
    committed: Vec<Order>,
    /// The event ids the broker acknowledged to the killed process.
    acked_before_kill: BTreeSet<Uuid>,
    /// The event whose acknowledgement the killed process never took in.
    killed_at: Uuid,
    /// The restarted publisher's publications.
    attempts: Vec<Attempt>,
    stream: StreamContent,
    at_consumer: Tally,
}

/// F3 on a private broker (memory storage) whose streams have the duplicate window `window`:
/// orders wait in a SQLite outbox; a child process publishes them and is killed right after the
/// broker acknowledged one, before the row is marked; `restart_after` later a new publisher
/// on the same file takes over the killed process's claims (their lease expires) and publishes
/// the unmarked rows again, with their ids. A consumer runs all along.
async fn f3(test: &str, window: Duration, restart_after: Duration) -> Option<F3Run> {
    let nats = PrivateNats::start(test).await?;
    let db = support::TempDb::new();
    let ledger = Dep::new(Ledger::default());
    let settings = || builder(NatsStorage::Memory).duplicate_window(window);
    let consuming = settings().from_jetstream(jetstream(&nats.url()).await);
    let (_billing, billing_running) =
        consumer("billing", consuming.clone(), &ledger, quick_retry()).await;

    // The orders, committed before the child starts (by an app that is not started): the
    // child finds them waiting.
    let committed = Mutex::new(Vec::new());
    {
        let store = SqliteStore::open(&db.0).await.unwrap();
        let orders = Tidings::builder("orders")
            .store(store)
            .transport(InMemoryTransport::default())
            .build()
            .unwrap();
        for seq in 0..5 {
            for key in keys(4) {
                place(&orders, &committed, &key, seq).await;
            }
        }
    }
    let committed = committed.into_inner().unwrap();

    let (lines, status) = tokio::task::spawn_blocking({
        let (db, url) = (db.0.display().to_string(), nats.url());
        let window = window.as_millis().to_string();
        move || {
            use std::io::BufRead;
            let mut child = support::spawn_child(
                "f3_child",
                &[("F3_DB", &db), ("F3_NATS", &url), ("F3_WINDOW_MS", &window)],
            );
            let stdout = child.stdout.take().expect("the child's standard output");
            let lines: Vec<String> = std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect();
            (lines, child.wait().expect("the child ends"))
        }
    })
    .await
    .unwrap();
    let killed = tokio::time::Instant::now();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{test}: the child died by SIGKILL: {status}; it printed {lines:#?}"
    );
    // The harness prints `test f3_child ... ` with no line end before the first line.
    let acked = |line: &String| {
        let id = line.split("acked ").nth(1)?;
        Uuid::parse_str(id.trim_end_matches(", dying")).ok()
    };
    let acked_before_kill: BTreeSet<Uuid> = lines.iter().filter_map(acked).collect();
    let killed_at = lines
        .iter()
        .filter(|line| line.ends_with(", dying"))
        .find_map(acked)
        .unwrap_or_else(|| panic!("{test}: the child said where it died: {lines:#?}"));
    assert!(acked_before_kill.len() >= F3_DIE_AFTER, "{lines:#?}");

    // The next process.
    tokio::time::sleep_until(killed + restart_after).await;
    let publishing = Recording::new(settings().from_jetstream(jetstream(&nats.url()).await));
    let store = SqliteStore::open(&db.0).await.unwrap().lease(SHORT_LEASE);
    let (_orders, orders_running) = publisher(publishing.clone(), store).await;
    settle(&[&orders_running]).await;
    let expected: BTreeSet<Order> = committed.iter().cloned().collect();
    let arrived =
        support::eventually(PATIENCE, || async { ledger.has_all("bill", &expected) }).await;
    // Every copy in the stream reached the consumer, the second ones included.
    let nats_url = nats.url();
    let caught_up =
        support::eventually(PATIENCE, || consumed_all(&nats_url, &consuming, "billing")).await;
    settle(&[&orders_running, &billing_running]).await;
    assert!(arrived, "{test}: not everything arrived");
    assert!(caught_up, "{test}: the consumer did not take in every copy");

    let stream = StreamContent::read(&nats.url(), &consuming).await;
    let at_consumer = Tally::new(&committed, &ledger.orders("bill"));
    orders_running.shutdown().await.unwrap();
    billing_running.shutdown().await.unwrap();
    Some(F3Run {
        committed,
        acked_before_kill,
        killed_at,
        attempts: publishing.attempts(),
        stream,
        at_consumer,
    })
}

impl F3Run {
    /// What both F3 tests assert: the event acknowledged to the killed process and never marked
    /// was published again with its id; everything is in the stream and reached the handler,
    /// once, in order per key.
    fn assert_republished_and_nothing_lost(&self, test: &str) {
        let republished: BTreeSet<Uuid> = self
            .attempts
            .iter()
            .filter(|a| a.outcome.is_ok() && self.acked_before_kill.contains(&a.id))
            .map(|a| a.id)
            .collect();
        println!(
            "{test}: {}; acknowledged to the killed process {}, published again after the \
             restart {}; restarted relay attempts {}; stream messages {}, copies {}",
            self.at_consumer.line(),
            self.acked_before_kill.len(),
            republished.len(),
            self.attempts.len(),
            self.stream.messages.len(),
            self.stream.copies()
        );
        assert!(
            republished.contains(&self.killed_at),
            "{test}: event {} was acknowledged to the killed process and never marked, yet not \
             published again under its id: {:#?}",
            self.killed_at,
            self.attempts
        );
        let in_stream = Tally::new(&self.committed, &self.stream.orders());
        in_stream.assert_nothing_lost(test);
        in_stream.assert_in_order(test, "the stream");
        self.at_consumer.assert_nothing_lost(test);
        self.at_consumer.assert_in_order(test, "the consumer");
        assert_eq!(
            self.at_consumer.duplicates, 0,
            "{test}: the handler ran once per order"
        );
    }

    /// How many times the stream holds event `id`.
    fn copies_of(&self, id: Uuid) -> usize {
        self.stream
            .messages
            .iter()
            .filter(|(m, _)| *m == id)
            .count()
    }
}

/// F3 within the duplicate window (2 minutes): the publisher is killed after the broker's
/// acknowledgement, before the row is marked, and started again at once. The row is published
/// again with the same id, and the stream, which still remembers the id, drops the copy: it
/// holds one message per order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_killed_after_the_ack_before_the_mark_within_the_duplicate_window() {
    const TEST: &str = "f3_killed_after_the_ack_before_the_mark_within_the_duplicate_window";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(run) = f3(TEST, Duration::from_secs(120), Duration::ZERO).await else {
        return;
    };
    run.assert_republished_and_nothing_lost(TEST);
    assert_eq!(
        run.stream.copies(),
        0,
        "{TEST} (duplicate window 2 min): the stream drops what is published again under an id \
         it holds: {:?}",
        run.stream.messages
    );
    assert_eq!(run.stream.messages.len(), run.committed.len());
}

/// F3 after the duplicate window: the streams remember ids for 1 s, and the publisher is
/// started again 3 s after it was killed. The stream has forgotten the id and keeps the second
/// copy; the consumer receives both, and its inbox lets the handler run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_killed_after_the_ack_before_the_mark_past_the_duplicate_window() {
    const TEST: &str = "f3_killed_after_the_ack_before_the_mark_past_the_duplicate_window";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(run) = f3(TEST, Duration::from_secs(1), Duration::from_secs(3)).await else {
        return;
    };
    run.assert_republished_and_nothing_lost(TEST);
    assert!(
        run.copies_of(run.killed_at) >= 2,
        "{TEST} (duplicate window 1 s, restarted 3 s after the kill): the stream, past its \
         window, keeps the second copy, which the consumer's inbox must absorb: {:?}",
        run.stream.messages
    );
}

/// F5: the publisher's link to the broker (memory storage) goes through a proxy: first 50 ms of
/// latency each way, then a blackhole (the proxy holds what it reads, both ways, and closes
/// nothing), then healed. All along, no order leaves the SQLite outbox without the broker's
/// acknowledgement; the orders placed during the blackhole all wait in the store until it ends;
/// the publications that timed out are made again with the same ids; once healed everything
/// drains, in order per key, and the stream holds one copy of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_latency_then_a_blackhole_on_the_broker_link() {
    const TEST: &str = "f5_latency_then_a_blackhole_on_the_broker_link";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(nats) = PrivateNats::start(TEST).await else {
        return;
    };
    let proxy = LinkProxy::start(nats.port()).await;
    proxy.latency(Duration::from_millis(50));
    let publishing = builder(NatsStorage::Memory).from_jetstream(jetstream(&proxy.url()).await);
    let consuming = builder(NatsStorage::Memory).from_jetstream(jetstream(&nats.url()).await);
    let mut run = OutboxRun::start(publishing, consuming.clone()).await;

    // 50 ms each way: the orders flow, slower.
    run.place_rounds(0..3).await;
    run.all_arrive(TEST, "the orders arrived through a slow link")
        .await;

    // A blackhole: nothing comes through, nothing is closed. The relay's publications time
    // out (the client waits 1 s for an acknowledgement), and are made again.
    let during = run
        .through_a_blackhole(TEST, || proxy.blackhole(), || proxy.heal(), 3..6)
        .await;

    // Healed: what the proxy held goes on, the relay's retries go through, and more orders.
    run.place_rounds(6..8).await;
    let Drained {
        committed,
        arrived,
        looks,
        unacknowledged,
    } = run.drain().await;
    let (ledger, publishing) = (&run.ledger, &run.publishing);

    let stream = StreamContent::read(&nats.url(), &consuming).await;
    let at_consumer = Tally::new(&committed, &ledger.orders("bill"));
    let attempts = publishing.attempts();
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.outcome.is_err()).collect();
    println!(
        "{TEST} (memory storage, duplicate window 2 min): {}; {} placed in the blackhole; relay \
         attempts {}, failed {}; stream messages {}, copies {}; {looks} looks at the outbox",
        at_consumer.line(),
        during.len(),
        attempts.len(),
        failed.len(),
        stream.messages.len(),
        stream.copies()
    );
    assert!(
        arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    assert!(looks > 0, "{TEST}: the watch never read the outbox");
    assert!(
        unacknowledged.is_empty(),
        "{TEST}: left the outbox without the broker's acknowledgement: {unacknowledged:?}"
    );
    publishing.assert_failures_retried(TEST);
    let in_stream = Tally::new(&committed, &stream.orders());
    in_stream.assert_nothing_lost(TEST);
    in_stream.assert_in_order(TEST, "the stream");
    assert_eq!(
        stream.copies(),
        0,
        "{TEST}: retries are dropped by the stream"
    );
    at_consumer.assert_nothing_lost(TEST);
    at_consumer.assert_in_order(TEST, "the consumer");

    run.shutdown().await;
}

/// Places `seqs` rounds of orders, one per key of four, in one transaction of the use case's
/// own on `pool`: the dispatcher then finds them due together and claims them in one batch.
async fn place_together(
    app: &Tidings,
    pool: &sqlx::PgPool,
    committed: &Mutex<Vec<Order>>,
    seqs: std::ops::Range<u32>,
) {
    let mut tx = pool
        .begin()
        .await
        .expect("the use case begins a transaction");
    let mut placed = Vec::new();
    for seq in seqs {
        for key in keys(4) {
            app.domain_events()
                .publish_in(
                    &mut tx,
                    orders::OrderPlaced {
                        key: key.clone(),
                        seq,
                    },
                )
                .await
                .expect("the use case records its event in its transaction");
            placed.push((key, seq));
        }
    }
    tx.commit().await.expect("the use case commits");
    committed.lock().unwrap().extend(placed);
}

/// F11: the publisher's store is on PostgreSQL through a proxy; the broker (memory storage) is
/// reached directly. The proxy cuts the store's connection:
///
/// - A: right after the relay sent the statement that marks a batch of acknowledged rows
///   published, before it ran: nothing is marked, the rows stay claimed until their lease
///   expires, and are published again under their ids (the stream drops the copies);
/// - B: right after the relay told PostgreSQL to run that statement, before its answer came
///   back: marked, though the relay cannot know;
/// - C: inside the transaction that turns a domain event into an outbox row, after the
///   delivery's deletion and before the row's insertion: the transaction rolls back, the
///   delivery runs again after its lease, and the rows of its key keep their order;
/// - D: every connection at once, and PostgreSQL refused for a while, with orders waiting.
///
/// All along, no order leaves the store without the broker's acknowledgement; once the link is
/// back, everything arrives, once, in order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f11_postgres_link_cut_during_relay_batches() {
    const TEST: &str = "f11_postgres_link_cut_during_relay_batches";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(url) = support::database_url(TEST) else {
        return;
    };
    let Some(nats) = PrivateNats::start(TEST).await else {
        return;
    };
    let (direct, schema) = support::fresh_schema(&url, "f11_link_cut").await;
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().expect("DATABASE_URL is a PostgreSQL URL");
    let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("{TEST}: DATABASE_URL names a TCP host the proxy can reach"));
    let proxy = LinkProxy::start_to(upstream).await;
    // Every statement is sent with its text (no statement cache), so that the proxy can tell
    // the statements apart; a connection that cannot be had fails soon.
    let proxied = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(
            options
                .host("127.0.0.1")
                .port(proxy.port())
                .statement_cache_capacity(0),
        )
        .await
        .expect("PostgreSQL answers through the proxy");
    let store = tidings::PostgresStore::connect_with(proxied, &schema)
        .await
        .expect("the store's schema is created")
        .lease(SHORT_LEASE);
    let ledger = Dep::new(Ledger::default());
    let publishing =
        Recording::new(builder(NatsStorage::Memory).from_jetstream(jetstream(&nats.url()).await));
    let consuming = builder(NatsStorage::Memory).from_jetstream(jetstream(&nats.url()).await);
    let (orders, orders_running) = publisher(publishing.clone(), store).await;
    let (_billing, billing_running) =
        consumer("billing", consuming.clone(), &ledger, quick_retry()).await;

    let committed = Arc::new(Mutex::new(Vec::new()));
    let watch = AckWatch::start(Arc::clone(&committed), publishing.clone(), {
        let (direct, schema) = (direct.clone(), schema.clone());
        move || waiting_in_postgres(&direct, &schema)
    });
    let mark = format!("DELETE FROM \"{schema}\".tidings_outbox WHERE id = ANY");
    let insert_row = format!("INSERT INTO \"{schema}\".tidings_outbox (ordering_key");

    // A: the mark, sent and never run.
    proxy.cut_after_sending_more(&mark, 0, 1, 1);
    place_together(&orders, &direct, &committed, 0..3).await;
    settle(&[&orders_running]).await;
    assert_eq!(proxy.cuts(), 1, "{TEST}: A cut the relay's mark");

    // B: the mark run, its answer lost.
    proxy.cut_after_sending_more(&mark, 1, 1, 1);
    place_together(&orders, &direct, &committed, 3..6).await;
    settle(&[&orders_running]).await;
    assert_eq!(proxy.cuts(), 2, "{TEST}: B cut the relay's mark");

    // C: inside the transaction that records an outbox row.
    proxy.cut_after_sending_more(&insert_row, 0, 1, 1);
    place_together(&orders, &direct, &committed, 6..9).await;
    settle(&[&orders_running]).await;
    assert_eq!(
        proxy.cuts(),
        3,
        "{TEST}: C cut the transaction of an outbox row"
    );

    // D: PostgreSQL away from the publisher, while another process's use case commits orders.
    proxy.cut_all();
    proxy.refuse();
    place_together(&orders, &direct, &committed, 9..12).await;
    assert!(
        support::eventually(PATIENCE, || async { proxy.refused() >= 3 }).await,
        "{TEST}: the publisher tried to reconnect"
    );
    proxy.heal();
    place_together(&orders, &direct, &committed, 12..13).await;

    settle(&[&orders_running]).await;
    let (looks, unacknowledged) = watch.finish().await;
    let committed = committed.lock().unwrap().clone();
    let expected: BTreeSet<Order> = committed.iter().cloned().collect();
    let arrived =
        support::eventually(PATIENCE, || async { ledger.has_all("bill", &expected) }).await;
    settle(&[&orders_running, &billing_running]).await;

    let stream = StreamContent::read(&nats.url(), &consuming).await;
    let at_consumer = Tally::new(&committed, &ledger.orders("bill"));
    let attempts = publishing.attempts();
    let mut acknowledged: BTreeMap<Uuid, usize> = BTreeMap::new();
    for attempt in attempts.iter().filter(|a| a.outcome.is_ok()) {
        *acknowledged.entry(attempt.id).or_default() += 1;
    }
    let republished = acknowledged.values().filter(|n| **n > 1).count();
    println!(
        "{TEST} (memory storage, duplicate window 2 min): {}; links cut {} by statement, \
         connections refused {}; relay attempts {}, events published again {republished}; \
         stream messages {}, copies {}; {looks} looks at the outbox",
        at_consumer.line(),
        proxy.cuts(),
        proxy.refused(),
        attempts.len(),
        stream.messages.len(),
        stream.copies()
    );
    assert!(
        arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    assert!(looks > 0, "{TEST}: the watch never read the outbox");
    assert!(
        unacknowledged.is_empty(),
        "{TEST}: left the outbox without the broker's acknowledgement: {unacknowledged:?}"
    );
    assert!(
        republished > 0,
        "{TEST}: the rows whose mark never ran were not published again"
    );
    let in_stream = Tally::new(&committed, &stream.orders());
    in_stream.assert_nothing_lost(TEST);
    in_stream.assert_in_order(TEST, "the stream");
    assert_eq!(stream.copies(), 0, "{TEST}: {:?}", stream.messages);
    at_consumer.assert_nothing_lost(TEST);
    at_consumer.assert_in_order(TEST, "the consumer");
    assert_eq!(at_consumer.duplicates, 0, "{TEST}: the handler ran once");

    orders_running.shutdown().await.unwrap();
    billing_running.shutdown().await.unwrap();
    drop(proxy);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&direct)
    .await
    .expect("the test's schema is dropped");
}
