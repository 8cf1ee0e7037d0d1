//! Fault tests of the Kafka path, each on a mock cluster of its own (librdkafka's
//! `MockCluster`: three brokers on TCP ports of 127.0.0.1, in this process), whose brokers are
//! taken down, slowed or made to refuse requests on cue:
//!
//! - F4: every broker down, twice, while use cases keep publishing;
//! - F5: a blackhole (the brokers answer nothing for longer than the delivery timeout), then
//!   healed;
//! - F6: the brokers' answers slower than the delivery timeout for a while: the records reached
//!   the partition, the producer gave up on their acknowledgement, and the relay publishes them
//!   again; and produce requests refused with retriable errors, which librdkafka's idempotent
//!   producer retries without a copy;
//! - F7: payloads that cannot be decoded and a handler that always fails, next to healthy ones;
//! - F12: the broker that leads the partitions taken down in the middle of a stream, and
//!   brought back (the mock keeps its log: a restart without data loss; it has no crash that
//!   loses acknowledged records, as a real broker with unflushed pages may).
//!
//! Each keeps the ledger of `faults/mod.rs` (what was committed against what the consuming
//! handlers saw) and asserts lost = 0; duplicates are counted and printed. The producer is
//! idempotent with `acks=all`: a record is acknowledged once every in-sync replica has it, and
//! tidings' "no event is lost" is never stronger than that. F3 (the publisher killed after the
//! acknowledgement, before the mark) is not repeated here: the publication made again after a
//! restart comes from a new producer session, which the broker does not dedupe, so it is the
//! same as F6's copies, which the consuming inbox absorbs. F11 (the publisher's PostgreSQL link
//! cut) does not depend on the transport and runs on NATS (`nats_faults.rs`).

#[path = "faults/mod.rs"]
mod faults;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use faults::*;
use rdkafka::message::{Headers, Message as _};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaApiKey;
use rdkafka::types::RDKafkaRespErr;
use support::kafka::Kafka;
use tidings::prelude::*;
use tidings::{ErrorKind, KafkaTransport};

/// One test at a time: two cores are few.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The brokers of each test's mock cluster: 1, 2 and 3.
const BROKERS: i32 = 3;

/// A transport on the test's cluster with a short delivery timeout, so that faults show as
/// failed publications within a second.
async fn transport(kafka: &Kafka) -> KafkaTransport {
    kafka
        .builder()
        .publish_timeout(Duration::from_secs(1))
        .connect(&kafka.bootstrap)
        .await
        .expect("the mock cluster answers")
}

/// Every broker of the mock cluster down (`true`) or up.
fn all_brokers(kafka: &Kafka, down: bool) {
    for broker in 1..=BROKERS {
        let done = if down {
            kafka.cluster().broker_down(broker)
        } else {
            kafka.cluster().broker_up(broker)
        };
        done.expect("the mock cluster takes the broker down or up");
    }
}

/// Every broker of the mock cluster answering after `delay` (zero: at once).
fn all_slow(kafka: &Kafka, delay: Duration) {
    for broker in 1..=BROKERS {
        kafka
            .cluster()
            .broker_round_trip_time(broker, delay)
            .expect("the mock cluster delays the broker");
    }
}

/// How many copies of each event (by `ce_id`) the topic holds, read from its beginning with a
/// plain consumer until it has at least `at_least` records and nothing more comes for a second.
async fn copies_in_topic(kafka: &Kafka, topic: &str, at_least: usize) -> BTreeMap<String, usize> {
    let consumer = kafka.consumer(topic);
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    let mut records = 0;
    loop {
        let wait = if records < at_least {
            PATIENCE
        } else {
            Duration::from_secs(1)
        };
        let Ok(Ok(record)) = tokio::time::timeout(wait, consumer.recv()).await else {
            return copies;
        };
        records += 1;
        let id = record.headers().and_then(|headers| {
            headers
                .iter()
                .find(|header| header.key == "ce_id")
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
        });
        *copies.entry(id.unwrap_or_default()).or_default() += 1;
    }
}

/// F4: every broker down, twice, as a cluster restart does, while use cases keep publishing
/// into the SQLite outbox. The publications made meanwhile time out as "unavailable" and are
/// made again with the same id; once the brokers are back everything arrives, and no order left
/// the outbox without the cluster's acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_every_broker_down_while_use_cases_keep_publishing() {
    const TEST: &str = "f4_every_broker_down_while_use_cases_keep_publishing";
    let _one = ONE_AT_A_TIME.lock().await;
    let kafka = Kafka::mock(BROKERS);
    let mut run = OutboxRun::start(transport(&kafka).await, transport(&kafka).await).await;

    run.place_rounds(0..1).await;
    run.all_arrive(TEST, "the first orders arrived with the brokers up")
        .await;
    let mut seq = 1;
    for _outage in 0..2 {
        all_brokers(&kafka, true);
        for _ in 0..6 {
            run.place_rounds(seq..seq + 1).await;
            seq += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        all_brokers(&kafka, false);
        run.place_rounds(seq..seq + 3).await;
        seq += 3;
    }

    let drained = run.drain().await;
    let at_consumer = Tally::new(&drained.committed, &run.ledger.orders("bill"));
    let attempts = run.publishing.attempts();
    println!(
        "{TEST} (idempotent producer, acks=all, 3 brokers): {}; relay attempts {}, failed {}; \
         {} looks at the outbox",
        at_consumer.line(),
        attempts.len(),
        run.failed(),
        drained.looks
    );
    assert!(
        drained.arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    assert!(
        run.failed() > 0,
        "{TEST}: no publication failed while the brokers were down"
    );
    assert!(drained.looks > 0, "{TEST}: the watch never read the outbox");
    assert!(
        drained.unacknowledged.is_empty(),
        "{TEST}: left the outbox without the cluster's acknowledgement: {:?}",
        drained.unacknowledged
    );
    run.publishing.assert_failures_retried(TEST);
    at_consumer.assert_nothing_lost(TEST);
    at_consumer.assert_in_order(TEST, "the consumer");
    assert_eq!(
        at_consumer.duplicates, 0,
        "{TEST}: the inbox lets nothing in twice"
    );
    run.shutdown().await;
}

/// F5: the brokers answer nothing for longer than the delivery timeout: publications time out
/// as "unavailable", and the orders placed meanwhile all wait in the outbox, none acknowledged.
/// Healed, everything drains, in order per key, each order handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_a_blackhole_on_the_brokers() {
    const TEST: &str = "f5_a_blackhole_on_the_brokers";
    let _one = ONE_AT_A_TIME.lock().await;
    let kafka = Kafka::mock(BROKERS);
    let mut run = OutboxRun::start(transport(&kafka).await, transport(&kafka).await).await;

    run.place_rounds(0..2).await;
    run.all_arrive(TEST, "the first orders arrived").await;
    let during = run
        .through_a_blackhole(
            TEST,
            || all_slow(&kafka, Duration::from_secs(30)),
            || all_slow(&kafka, Duration::ZERO),
            2..5,
        )
        .await;
    run.place_rounds(5..7).await;

    let drained = run.drain().await;
    let at_consumer = Tally::new(&drained.committed, &run.ledger.orders("bill"));
    let attempts = run.publishing.attempts();
    println!(
        "{TEST} (idempotent producer, acks=all, 3 brokers): {}; {} placed in the blackhole; \
         relay attempts {}, failed {}; {} looks at the outbox",
        at_consumer.line(),
        during.len(),
        attempts.len(),
        run.failed(),
        drained.looks
    );
    assert!(
        drained.arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    assert!(
        drained.unacknowledged.is_empty(),
        "{TEST}: left the outbox without the cluster's acknowledgement: {:?}",
        drained.unacknowledged
    );
    for attempt in attempts.iter().filter(|a| a.outcome.is_err()) {
        assert_eq!(attempt.outcome, Err(ErrorKind::Unavailable), "{TEST}");
    }
    at_consumer.assert_nothing_lost(TEST);
    at_consumer.assert_in_order(TEST, "the consumer");
    assert_eq!(at_consumer.duplicates, 0, "{TEST}: the handler ran once");
    run.shutdown().await;
}

/// F6: for a while the brokers take each record and answer later than the delivery timeout: the
/// relay sees those publications fail as "unavailable" (whether they landed is unknown: they
/// did) and publishes them again with the same ids, so the topic holds copies, and the consuming
/// context's inbox drops them: every order is handled once, in order per key. Then produce
/// requests are refused with retriable errors (a leader moved, a request timed out, a
/// connection dropped): librdkafka's idempotent producer retries them itself, and they add no
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_acknowledgements_lost_after_the_records_landed() {
    const TEST: &str = "f6_acknowledgements_lost_after_the_records_landed";
    let _one = ONE_AT_A_TIME.lock().await;
    let kafka = Kafka::mock(BROKERS);
    let ledger = Dep::new(Ledger::default());
    let publishing = Recording::new(transport(&kafka).await);
    let consuming = transport(&kafka).await;
    let topic = consuming.topic_name(CONTRACT, 1);
    let (_billing, billing_running) = consumer("billing", consuming, &ledger, quick_retry()).await;
    let (orders, orders_running) = publisher(publishing.clone(), InMemoryStore::new()).await;

    let committed = Mutex::new(Vec::new());
    for key in keys(4) {
        place(&orders, &committed, &key, 0).await;
    }
    settle(&[&orders_running]).await;
    // Answers later than the delivery timeout (1 s): the records land, their acknowledgements
    // come too late.
    all_slow(&kafka, Duration::from_millis(1500));
    for seq in 1..4 {
        for key in keys(4) {
            place(&orders, &committed, &key, seq).await;
        }
    }
    let failed = support::eventually(PATIENCE, || async {
        publishing.attempts().iter().any(|a| a.outcome.is_err())
    })
    .await;
    all_slow(&kafka, Duration::ZERO);
    settle(&[&orders_running]).await;
    // Retriable refusals, retried inside the producer.
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    for seq in 4..8 {
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

    let at_consumer = Tally::new(&committed, &ledger.orders("bill"));
    let attempts = publishing.attempts();
    let copies = copies_in_topic(&kafka, &topic, committed.len()).await;
    let in_topic: usize = copies.values().sum();
    let copied = copies.values().filter(|n| **n > 1).count();
    println!(
        "{TEST} (idempotent producer, acks=all, 3 brokers): {}; relay attempts {}, failed {}; \
         topic records {in_topic} of {} events, {copied} events twice or more",
        at_consumer.line(),
        attempts.len(),
        attempts.iter().filter(|a| a.outcome.is_err()).count(),
        copies.len(),
    );
    assert!(
        failed,
        "{TEST}: no publication timed out while the answers were late"
    );
    assert!(
        arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    publishing.assert_failures_retried(TEST);
    assert_eq!(
        copies.len(),
        committed.len(),
        "{TEST}: every event is in the topic"
    );
    at_consumer.assert_nothing_lost(TEST);
    at_consumer.assert_in_order(TEST, "the consumer");
    assert_eq!(
        at_consumer.duplicates, 0,
        "{TEST}: the inbox lets nothing in twice"
    );

    orders_running.shutdown().await.unwrap();
    billing_running.shutdown().await.unwrap();
}

/// F7: on the contract's topic, bytes that are not a CloudEvent (from another client) and a
/// CloudEvent whose data is not the contract's; in the consuming context, a handler that fails
/// every time on one key, next to a healthy one. The undecodable messages and the poison key's
/// deliveries of the failing handler are dead-lettered in the context's store; every other
/// message flows to both handlers, in order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f7_undecodable_payloads_and_a_failing_handler_are_dead_lettered() {
    const TEST: &str = "f7_undecodable_payloads_and_a_failing_handler_are_dead_lettered";
    let _one = ONE_AT_A_TIME.lock().await;
    let kafka = Kafka::mock(BROKERS);
    let publishing = transport(&kafka).await;
    let consuming = transport(&kafka).await;
    let topic = publishing.topic_name(CONTRACT, 1);
    let producer = kafka.producer();
    let garbage = async {
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("k0")
                    .payload("hello, not an event"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    };
    f7_undecodable_and_failing(
        TEST,
        "idempotent producer, 3 brokers",
        publishing,
        consuming,
        garbage,
    )
    .await;
}

/// F12: in the middle of a stream, the broker that leads the topic's partitions goes down (no
/// other takes over: the mock moves no leadership) and comes back. The publications to its
/// partitions time out and are made again; everything arrives once, in order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_the_leader_down_and_back_mid_stream() {
    const TEST: &str = "f12_the_leader_down_and_back_mid_stream";
    let _one = ONE_AT_A_TIME.lock().await;
    let kafka = Kafka::mock(BROKERS);
    let publishing = transport(&kafka).await;
    let topic = publishing.topic_name(CONTRACT, 1);
    publishing.ensure_topic(CONTRACT, 1).await.unwrap();
    // Every partition led by broker 1.
    for partition in 0..4 {
        kafka
            .cluster()
            .partition_leader(&topic, partition, Some(1))
            .expect("the mock cluster moves the leader");
    }
    let mut run = OutboxRun::start(publishing, transport(&kafka).await).await;
    run.place_rounds(0..3).await;
    kafka.cluster().broker_down(1).unwrap();
    for seq in 3..9 {
        run.place_rounds(seq..seq + 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kafka.cluster().broker_up(1).unwrap();
    run.place_rounds(9..12).await;

    let drained = run.drain().await;
    let at_consumer = Tally::new(&drained.committed, &run.ledger.orders("bill"));
    println!(
        "{TEST} (idempotent producer, acks=all, 3 brokers, the mock's log kept): {}; relay \
         attempts {}, failed {}; {} looks at the outbox",
        at_consumer.line(),
        run.publishing.attempts().len(),
        run.failed(),
        drained.looks
    );
    assert!(
        drained.arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    assert!(
        drained.unacknowledged.is_empty(),
        "{TEST}: left the outbox without the cluster's acknowledgement: {:?}",
        drained.unacknowledged
    );
    run.publishing.assert_failures_retried(TEST);
    at_consumer.assert_nothing_lost(TEST);
    at_consumer.assert_in_order(TEST, "the consumer");
    assert_eq!(at_consumer.duplicates, 0, "{TEST}: the handler ran once");
    run.shutdown().await;
}
