//! Fault tests of the RabbitMQ path, on the broker at `AMQP_URL` (never stopped: each test
//! puts an in-test TCP proxy between a client and the broker, and cuts, refuses or holds that
//! link), each on an exchange and queues of its own (quorum queues, deleted at the end):
//!
//! - F4: every connection to the broker cut, and new ones refused for a while, publisher's and
//!   consumer's alike, while use cases keep publishing;
//! - F5: a blackhole on the publisher's link (the proxy holds everything, closes nothing), then
//!   healed;
//! - F6: the publisher's link cut right after a publication reached the broker, before its
//!   confirmation;
//! - F7: payloads that cannot be decoded and a handler that always fails, next to healthy ones.
//!
//! Each keeps the ledger of `faults/mod.rs` (what was committed against what the consuming
//! handlers saw) and asserts lost = 0; duplicates are counted and printed. RabbitMQ has no
//! dedupe: a publication made again after an ambiguous failure may be queued twice, and the
//! consuming context's inbox drops the copy by its event id, so the handlers see each order
//! once. The queue setting is named in each ledger line: tidings' "no event is lost" is never
//! stronger than the broker's confirmation.

#[path = "faults/mod.rs"]
mod faults;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use faults::*;
use lapin::options::BasicPublishOptions;
use support::broker::LinkProxy;
use support::rabbit::{Rabbit, Tracked};
use tidings::prelude::*;
use tidings::{ErrorKind, RabbitMqTransport};

/// One test at a time: two cores are few, and the broker is shared.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The broker's address in `url` (`amqp://user:password@host:port/vhost`), and `url` with that
/// address replaced by `127.0.0.1:<port>`, the proxy's.
async fn broker_address(url: &str) -> SocketAddr {
    let authority = authority(url);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    };
    tokio::net::lookup_host(host_port)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .expect("AMQP_URL names a host the proxy can reach")
}

/// The `user:password@host:port` part of `url`.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// `url`, through the proxy on `port`.
fn through(url: &str, port: u16) -> String {
    let authority = authority(url);
    let credentials = authority
        .rsplit_once('@')
        .map(|(credentials, _)| format!("{credentials}@"))
        .unwrap_or_default();
    url.replacen(authority, &format!("{credentials}127.0.0.1:{port}"), 1)
}

/// A transport of the test's settings, connected to `url`, with short timeouts.
async fn transport(rabbit: &Rabbit, url: &str) -> RabbitMqTransport {
    rabbit
        .builder()
        .publish_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .connect(url)
        .await
        .expect("RabbitMQ answers")
}

/// F4: the publisher and the consumer both reach the broker through a proxy, which cuts every
/// connection and refuses new ones for a while, twice, as a broker restart does, while use
/// cases keep publishing into the SQLite outbox. Each publication failed then is
/// "unavailable" and made again with the same id; once the link is back everything arrives,
/// and no order left the outbox without the broker's confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_every_connection_cut_while_use_cases_keep_publishing() {
    const TEST: &str = "f4_every_connection_cut_while_use_cases_keep_publishing";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(rabbit) = Rabbit::new(TEST) else {
        return;
    };
    let proxy = LinkProxy::start_to(broker_address(&rabbit.url).await).await;
    let url = through(&rabbit.url, proxy.port());
    let consuming = rabbit.track(transport(&rabbit, &url).await);
    let publishing = rabbit.track(transport(&rabbit, &url).await);
    let mut run = OutboxRun::start(publishing, consuming).await;

    run.place_rounds(0..1).await;
    run.all_arrive(TEST, "the first orders arrived with the link up")
        .await;
    let mut seq = 1;
    for _outage in 0..2 {
        proxy.cut_all();
        proxy.refuse();
        for _ in 0..6 {
            run.place_rounds(seq..seq + 1).await;
            seq += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        proxy.heal();
        run.place_rounds(seq..seq + 3).await;
        seq += 3;
    }

    let drained = run.drain().await;
    let at_consumer = Tally::new(&drained.committed, &run.ledger.orders("bill"));
    let attempts = run.publishing.attempts();
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.outcome.is_err()).collect();
    println!(
        "{TEST} (quorum queues): {}; connections refused {}; relay attempts {}, failed {}; {} \
         looks at the outbox",
        at_consumer.line(),
        proxy.refused(),
        attempts.len(),
        failed.len(),
        drained.looks
    );
    assert!(
        drained.arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    assert!(proxy.refused() > 0, "{TEST}: nobody tried to reconnect");
    assert!(drained.looks > 0, "{TEST}: the watch never read the outbox");
    assert!(
        drained.unacknowledged.is_empty(),
        "{TEST}: left the outbox without the broker's confirmation: {:?}",
        drained.unacknowledged
    );
    run.publishing.assert_failures_retried(TEST);
    at_consumer.assert_nothing_lost(TEST);
    assert_eq!(
        at_consumer.duplicates, 0,
        "{TEST}: the inbox lets nothing in twice"
    );
    run.shutdown().await;
}

/// F5: the publisher's link becomes a blackhole (the proxy holds everything, both ways, and
/// closes nothing): publications get no confirmation and time out as "unavailable", and the
/// orders placed meanwhile all wait in the outbox. Healed, everything drains, in order per key,
/// each order handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_a_blackhole_on_the_publishers_link() {
    const TEST: &str = "f5_a_blackhole_on_the_publishers_link";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(rabbit) = Rabbit::new(TEST) else {
        return;
    };
    let proxy = LinkProxy::start_to(broker_address(&rabbit.url).await).await;
    let consuming = rabbit.track(transport(&rabbit, &rabbit.url).await);
    let publishing = rabbit.track(transport(&rabbit, &through(&rabbit.url, proxy.port())).await);
    let mut run = OutboxRun::start(publishing, consuming).await;

    run.place_rounds(0..2).await;
    run.all_arrive(TEST, "the first orders arrived").await;
    // Publications get no confirmation and time out (1 s), and are made again.
    let during = run
        .through_a_blackhole(TEST, || proxy.blackhole(), || proxy.heal(), 2..5)
        .await;
    run.place_rounds(5..7).await;

    let drained = run.drain().await;
    let at_consumer = Tally::new(&drained.committed, &run.ledger.orders("bill"));
    let attempts = run.publishing.attempts();
    println!(
        "{TEST} (quorum queues): {}; {} placed in the blackhole; relay attempts {}, failed {}; \
         {} looks at the outbox",
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
        "{TEST}: left the outbox without the broker's confirmation: {:?}",
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

/// F6: the proxy cuts the publisher's connection right after it forwarded a publication to the
/// broker, before the confirmation can come back, four times. The relay sees those
/// publications fail as "unavailable" (whether they landed is unknown) and makes them again
/// with the same ids; the queue may then hold two copies of one event, and the consuming
/// context's inbox drops the second: every order is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_link_cut_after_a_publication_before_its_confirmation() {
    const TEST: &str = "f6_link_cut_after_a_publication_before_its_confirmation";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(rabbit) = Rabbit::new(TEST) else {
        return;
    };
    let proxy = LinkProxy::start_to(broker_address(&rabbit.url).await).await;
    let ledger = Dep::new(Ledger::default());
    let consuming = rabbit.track(transport(&rabbit, &rabbit.url).await);
    let publishing =
        Recording::new(rabbit.track(transport(&rabbit, &through(&rabbit.url, proxy.port())).await));
    let (_billing, billing_running) =
        consumer("billing", consuming.clone(), &ledger, quick_retry()).await;
    let (orders, orders_running) = publisher(publishing.clone(), InMemoryStore::new()).await;

    // The routing key travels in each publication's method frame.
    proxy.cut_after_sending(&RabbitMqTransport::routing_key(CONTRACT, 1), 2, 4);
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

    let at_consumer = Tally::new(&committed, &ledger.orders("bill"));
    let attempts = publishing.attempts();
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.outcome.is_err()).collect();
    println!(
        "{TEST} (quorum queues): {}; links cut {} after {} publications sent; relay attempts \
         {}, failed {}",
        at_consumer.line(),
        proxy.cuts(),
        proxy.matched(),
        attempts.len(),
        failed.len()
    );
    assert!(
        arrived,
        "{TEST}: not everything arrived: {}",
        at_consumer.line()
    );
    assert!(proxy.cuts() > 0, "{TEST}: the proxy cut no link");
    assert!(
        !failed.is_empty(),
        "{TEST}: no publication failed, though links were cut before their confirmations"
    );
    publishing.assert_failures_retried(TEST);
    at_consumer.assert_nothing_lost(TEST);
    at_consumer.assert_in_order(TEST, "the consumer");
    assert_eq!(
        at_consumer.duplicates, 0,
        "{TEST}: the inbox lets nothing in twice"
    );

    orders_running.shutdown().await.unwrap();
    billing_running.shutdown().await.unwrap();
}

/// F7: on the contract's queue, bytes that are not a CloudEvent (from another client) and a
/// CloudEvent whose data is not the contract's; in the consuming context, a handler that fails
/// every time on one key, next to a healthy one. The undecodable messages and the poison key's
/// deliveries of the failing handler are dead-lettered in the context's store; every other
/// message flows to both handlers, in order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f7_undecodable_payloads_and_a_failing_handler_are_dead_lettered() {
    const TEST: &str = "f7_undecodable_payloads_and_a_failing_handler_are_dead_lettered";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(rabbit) = Rabbit::new(TEST) else {
        return;
    };
    let publishing: Tracked = rabbit.transport().await;
    let consuming: Tracked = rabbit.transport().await;
    let (connection, channel) = rabbit.channel().await;
    let garbage = async {
        channel
            .basic_publish(
                rabbit.exchange.as_str().into(),
                RabbitMqTransport::routing_key(CONTRACT, 1).as_str().into(),
                BasicPublishOptions::default(),
                b"hello, not an event",
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap();
    };
    f7_undecodable_and_failing(TEST, "quorum queues", publishing, consuming, garbage).await;
    let _ = connection.close(200, "OK".into()).await;
}

/// Each change of the connection's state is one log line: publications failing again and again
/// while the link is down say nothing more, and the return of the connection is said once.
#[tokio::test]
async fn a_lost_connection_and_its_return_are_one_log_line_each() {
    const TEST: &str = "a_lost_connection_and_its_return_are_one_log_line_each";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(rabbit) = Rabbit::new(TEST) else {
        return;
    };
    let (printed, _guard) = support::Printed::capture();
    let proxy = LinkProxy::start_to(broker_address(&rabbit.url).await).await;
    let transport = rabbit.track(transport(&rabbit, &through(&rabbit.url, proxy.port())).await);
    let reader = tidings::transport::Subscription {
        contract: CONTRACT.to_owned(),
        version: 1,
        context: "reader".to_owned(),
    };
    drop(
        tidings::transport::Transport::subscribe(&transport, reader)
            .await
            .unwrap(),
    );
    let publish = || {
        tidings::transport::Transport::publish(
            &transport,
            support::message(CONTRACT, serde_json::json!({ "key": "k", "seq": 1 })),
        )
    };
    publish().await.expect("published with the link up");

    proxy.cut_all();
    proxy.refuse();
    for _ in 0..5 {
        let error = publish().await.expect_err("the link is down");
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    }
    proxy.heal();
    let back = support::eventually(PATIENCE, || async { publish().await.is_ok() }).await;
    assert!(back, "{TEST}: publishing works again once the link is back");

    let text = printed.text();
    let count = |line: &str| text.matches(line).count();
    assert_eq!(count("connected to RabbitMQ exchange"), 1, "{text}");
    assert_eq!(count("lost the connection to RabbitMQ"), 1, "{text}");
    assert_eq!(count("connected to RabbitMQ again"), 1, "{text}");
}
