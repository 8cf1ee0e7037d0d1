//! `PubSubTransport` on the Pub/Sub emulator at `PUBSUB_EMULATOR_HOST`: the transport
//! conformance suite (but for the two scenarios the emulator cannot pass, see
//! [`NOT_ON_THE_EMULATOR`]), two apps talking through it, a message published twice, a
//! publication that no subscription takes, a subscription of other settings, the verify-only
//! topology, payloads that are not CloudEvents, the wire format read with a plain client, and
//! Python (the CloudEvents SDK with `google-cloud-pubsub`) on both ends. Each test works under a
//! topic prefix of its own and deletes its topics and subscriptions when it ends.

mod support;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use google_cloud_pubsub::model::Message as PubSubMessage;
use serde_json::json;
use support::pubsub::{PROJECT, PubSub};
use tidings::prelude::*;
use tidings::testing::transport::{SCENARIOS, TransportScenario};
use tidings::testing::{Patience, Verdict};
use tidings::transport::{Message, Subscription, Transport};
use tidings::{ErrorKind, PubSubTopology, PubSubTransport, Running};
use uuid::Uuid;

/// The longest wait for what must happen; no test asserts how long anything takes.
const PATIENCE: Duration = Duration::from_secs(20);

/// The contract the tests publish.
const CONTRACT: &str = "catalog.product-updated";

/// A message of contract `contract` version 1, as the relay sends it, with an ordering key and
/// a trace.
fn message(contract: &str, data: serde_json::Value) -> Message {
    Message {
        key: Some("p-1".to_owned()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
        ..support::message(contract, data)
    }
}

fn subscription(contract: &str, context: &str) -> Subscription {
    Subscription {
        contract: contract.to_owned(),
        version: 1,
        context: context.to_owned(),
    }
}

/// The scenarios of the transport suite that need the broker to forget a streaming pull its
/// subscriber cancelled, which the emulator never does: its gRPC server fails on the client's
/// `RST_STREAM` (`NoSuchMethodError: io.grpc.InternalStatus.asRuntimeException`, in its log),
/// so a pull that a subscriber dropped stays registered, for as long as the emulator runs, and
/// goes on taking a share of its subscription's messages, which come back only once their ack
/// deadline passed and another pull wins them (10 to 50 s, and once not in 200 s, when tried).
/// Pub/Sub drops a cancelled pull at once and hands its unacknowledged messages to the others.
const NOT_ON_THE_EMULATOR: [TransportScenario; 2] = [
    TransportScenario::InstanceLeaves,
    TransportScenario::Redelivery,
];

#[tokio::test]
async fn pubsub_transport_passes_the_transport_suite() {
    let Some(pubsub) = PubSub::new("pubsub_transport_passes_the_transport_suite") else {
        return;
    };
    for &scenario in SCENARIOS {
        if NOT_ON_THE_EMULATOR.contains(&scenario) {
            eprintln!(
                "transport conformance: {}: not run on the emulator, which never forgets a \
                 streaming pull its subscriber cancelled",
                scenario.name()
            );
            continue;
        }
        let transport = pubsub.transport().await;
        let verdict = scenario
            .run(
                &transport,
                Patience::new(PATIENCE, Duration::from_millis(500)),
            )
            .await;
        assert_eq!(verdict, Verdict::Passed, "{}", scenario.name());
        eprintln!("transport conformance: {}: passed", scenario.name());
    }
}

/// The reason for [`NOT_ON_THE_EMULATOR`], checked on the emulator at hand: a streaming pull
/// that its client dropped goes on taking the subscription's messages, which a new pull then
/// does not get. Once this fails, the emulator forgets cancelled pulls, and the two scenarios
/// are to run on it again.
#[tokio::test]
async fn the_emulator_keeps_a_pull_its_client_cancelled() {
    const TEST: &str = "the_emulator_keeps_a_pull_its_client_cancelled";
    const SENT: usize = 20;
    let Some(pubsub) = PubSub::new(TEST) else {
        return;
    };
    let clients = pubsub.clients().await;
    let topic = format!("projects/{PROJECT}/topics/{}.cancelled", pubsub.prefix);
    let name = format!(
        "projects/{PROJECT}/subscriptions/{}.cancelled",
        pubsub.prefix
    );
    support::pubsub::make_plain(&clients, &topic, &name).await;
    let publisher = clients.publisher.publisher(topic).build();
    let publish = |data: String| {
        publisher.publish(google_cloud_pubsub::model::Message::new().set_data(data.into_bytes()))
    };

    // A pull, open for sure once it got a message, then dropped: its client cancels it.
    publish("first".to_owned()).await.expect("published");
    let mut cancelled = clients.subscriber.subscribe(name.clone()).build();
    let (_, handler) = tokio::time::timeout(PATIENCE, cancelled.next())
        .await
        .expect("the first pull gets the first message")
        .expect("the pull is open")
        .expect("a message");
    handler.ack();
    drop(cancelled);
    tokio::time::sleep(Duration::from_secs(1)).await;

    for i in 0..SENT {
        publish(format!("m{i}")).await.expect("published");
    }
    let mut live = clients.subscriber.subscribe(name).build();
    let mut received = std::collections::HashSet::new();
    let _ = tokio::time::timeout(Duration::from_secs(6), async {
        while let Some(Ok((message, handler))) = live.next().await {
            handler.ack();
            received.insert(message.data);
            if received.len() == SENT {
                return;
            }
        }
    })
    .await;
    eprintln!(
        "{TEST}: a new pull got {} of {SENT} messages in 6 s",
        received.len()
    );
    assert!(
        received.len() < SENT,
        "{TEST}: a new pull got every message, so the emulator now ends a pull its client \
         cancelled: run the scenarios of NOT_ON_THE_EMULATOR on it again"
    );
}

/// What ran: (handler, event envelope).
#[derive(Debug, Default)]
pub struct Journal(Mutex<Vec<(&'static str, EventMeta)>>);

impl Journal {
    fn write(&self, handler: &'static str, meta: &EventMeta) {
        self.0.lock().unwrap().push((handler, meta.clone()));
    }

    fn entries(&self, handler: &str) -> Vec<EventMeta> {
        let entries = self.0.lock().unwrap();
        entries
            .iter()
            .filter(|(h, _)| *h == handler)
            .map(|(_, meta)| meta.clone())
            .collect()
    }
}

pub mod catalog {
    tidings::context!("catalog");

    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductPutOnSale {
        pub product_id: String,
    }

    #[integration_event(name = "catalog.product-updated", from = ProductPutOnSale, key = product_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductUpdatedIntegrationEvent {
        pub product_id: String,
    }

    impl From<&ProductPutOnSale> for ProductUpdatedIntegrationEvent {
        fn from(event: &ProductPutOnSale) -> Self {
            ProductUpdatedIntegrationEvent {
                product_id: event.product_id.clone(),
            }
        }
    }
}

pub mod search {
    tidings::context!("search");

    use super::Journal;
    use super::catalog::ProductUpdatedIntegrationEvent;
    use tidings::prelude::*;

    #[handles]
    fn index_product(
        _event: &ProductUpdatedIntegrationEvent,
        journal: Dep<Journal>,
        meta: &EventMeta,
    ) {
        journal.write("index_product", meta);
    }
}

async fn start(
    context: &str,
    transport: &PubSubTransport,
    journal: &Dep<Journal>,
) -> (Tidings, Running) {
    let app = Tidings::builder(context)
        .store(InMemoryStore::new())
        .transport(transport.clone())
        .provide_dep(journal.clone())
        .retry(
            tidings::RetryPolicy::default()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running)
}

/// Catalog's use case leads, through Pub/Sub, to search's inbound handler: one correlation end
/// to end.
#[tokio::test]
async fn two_apps_talk_through_pubsub() {
    let Some(pubsub) = PubSub::new("two_apps_talk_through_pubsub") else {
        return;
    };
    let transport = pubsub.transport().await;
    let journal = Dep::new(Journal::default());
    let (_search, search_running) = start("search", &transport, &journal).await;
    let (catalog, catalog_running) = start("catalog", &transport, &journal).await;

    let published = catalog
        .domain_events()
        .publish(catalog::ProductPutOnSale {
            product_id: "p-1".into(),
        })
        .await
        .unwrap();
    let indexed = support::eventually(PATIENCE, || async {
        !journal.entries("index_product").is_empty()
    })
    .await;
    assert!(indexed, "search's handler ran: {journal:?}");
    let meta = &journal.entries("index_product")[0];
    assert_eq!(meta.source, "catalog");
    assert_eq!(meta.correlation_id, published.correlation_id);
    assert_eq!(meta.causation_id, Some(published.id));

    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
}

/// The same message published twice (as the relay does after a publication whose
/// acknowledgement was lost) is delivered twice, the emulator having no dedupe; the context's
/// inbox runs the handler once.
#[tokio::test]
async fn a_message_published_twice_is_handled_once() {
    let Some(pubsub) = PubSub::new("pubsub_a_message_published_twice_is_handled_once") else {
        return;
    };
    let transport = pubsub.transport().await;
    let journal = Dep::new(Journal::default());
    let (_search, search_running) = start("search", &transport, &journal).await;
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(sent.clone()).await.unwrap();
    transport.publish(sent.clone()).await.unwrap();
    // A third message of the same key, after the copy: once it is handled, the copy was
    // received too (ordering key `p-1`).
    let after = message(CONTRACT, json!({ "product_id": "p-2" }));
    transport.publish(after.clone()).await.unwrap();

    let handled = support::eventually(PATIENCE, || async {
        journal
            .entries("index_product")
            .iter()
            .any(|meta| meta.id == after.id)
    })
    .await;
    assert!(handled, "{journal:?}");
    search_running.settle_for(PATIENCE).await.unwrap();
    let ids: Vec<Uuid> = journal
        .entries("index_product")
        .iter()
        .map(|meta| meta.id)
        .collect();
    assert_eq!(
        ids,
        [sent.id, after.id],
        "the copy was dropped by the inbox"
    );
    search_running.shutdown().await.unwrap();
}

/// A publication to a topic that no subscription takes (no context subscribed yet), which
/// Pub/Sub would drop, is refused, saying so; once a context subscribed, the same message goes
/// through.
#[tokio::test]
async fn a_publication_no_subscription_takes_is_refused_not_dropped() {
    let Some(pubsub) = PubSub::new("a_publication_no_subscription_takes_is_refused_not_dropped")
    else {
        return;
    };
    let transport = pubsub.transport().await;
    let sent = message("tests.nobody-listens", json!({}));
    let error = transport.publish(sent.clone()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Refused, "{error}");
    assert!(error.to_string().contains("has no subscription"), "{error}");

    let mut inbound = transport
        .subscribe(subscription("tests.nobody-listens", "late"))
        .await
        .unwrap();
    transport.publish(sent.clone()).await.unwrap();
    let received = tokio::time::timeout(PATIENCE, inbound.next())
        .await
        .expect("the message arrives")
        .expect("the subscription goes on")
        .expect("the message is received");
    assert_eq!(received.message, sent);
    received.ack().await.unwrap();
}

/// A subscription that exists without message ordering is refused, naming it, rather than used
/// as it is.
#[tokio::test]
async fn a_subscription_of_other_settings_is_refused() {
    let Some(pubsub) = PubSub::new("a_subscription_of_other_settings_is_refused") else {
        return;
    };
    let transport = pubsub.transport().await;
    let clients = pubsub.clients().await;
    let topic = format!(
        "projects/{PROJECT}/topics/{}",
        transport.topic_name(CONTRACT, 1)
    );
    let name = transport.subscription_name("search", CONTRACT, 1);
    let path = format!("projects/{PROJECT}/subscriptions/{name}");
    support::pubsub::make_plain(&clients, &topic, &path).await;

    let error = transport
        .subscribe(subscription(CONTRACT, "search"))
        .await
        .err()
        .expect("the subscription is refused");
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
    let text = error.to_string();
    assert!(text.contains(&name), "{text}");
    assert!(text.contains("message ordering is not enabled"), "{text}");

    // The transport still works, for what it can use.
    transport
        .subscribe(subscription(CONTRACT, "other"))
        .await
        .expect("another context's subscription is created");
}

/// A transport that only verifies the topology creates nothing: a missing topic and a missing
/// subscription are errors naming them; once infrastructure made them, it works.
#[tokio::test]
async fn a_verifying_transport_names_what_is_missing() {
    let Some(pubsub) = PubSub::new("a_verifying_transport_names_what_is_missing") else {
        return;
    };
    let transport = pubsub
        .builder()
        .topology(PubSubTopology::Verify)
        .connect(PROJECT)
        .await
        .unwrap();
    let topic = transport.topic_name(CONTRACT, 1);
    let error = transport
        .publish(message(CONTRACT, json!({})))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Refused, "{error}");
    assert!(error.to_string().contains(&topic), "{error}");
    assert!(error.to_string().contains("does not exist"), "{error}");

    // Infrastructure makes the topic (with a transport that creates).
    let creating = pubsub.transport().await;
    drop(
        creating
            .subscribe(subscription(CONTRACT, "infra"))
            .await
            .unwrap(),
    );
    let name = transport.subscription_name("search", CONTRACT, 1);
    let error = transport
        .subscribe(subscription(CONTRACT, "search"))
        .await
        .err()
        .expect("the missing subscription is an error");
    assert_eq!(error.kind(), ErrorKind::Refused, "{error}");
    assert!(error.to_string().contains(&name), "{error}");

    drop(
        creating
            .subscribe(subscription(CONTRACT, "search"))
            .await
            .unwrap(),
    );
    let mut inbound = transport
        .subscribe(subscription(CONTRACT, "search"))
        .await
        .expect("the subscription exists now");
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(sent.clone()).await.unwrap();
    let received = tokio::time::timeout(PATIENCE, inbound.next())
        .await
        .expect("the message arrives")
        .expect("the subscription goes on")
        .expect("the message is received");
    assert_eq!(received.message.id, sent.id);
    received.ack().await.unwrap();
}

/// Names Pub/Sub does not take are refused before any request.
#[tokio::test]
async fn a_contract_that_makes_no_pubsub_name_is_invalid() {
    let Some(pubsub) = PubSub::new("a_contract_that_makes_no_pubsub_name_is_invalid") else {
        return;
    };
    let transport = pubsub.transport().await;
    let error = transport
        .publish(message("has space", json!({})))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
    let error = transport
        .subscribe(subscription(CONTRACT, "a/b"))
        .await
        .err()
        .expect("the context's name is refused");
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
}

/// An emulator that does not answer is "unavailable": worth trying again later.
#[tokio::test]
async fn no_emulator_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let transport = PubSubTransport::builder()
        .emulator(format!("127.0.0.1:{port}"))
        .request_timeout(Duration::from_secs(2))
        .publish_timeout(Duration::from_secs(2))
        .connect(PROJECT)
        .await
        .unwrap();
    let error = transport
        .publish(message(CONTRACT, json!({})))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
}

/// Publishes `data` with `attributes` to the test's topic of `CONTRACT`, with a plain client.
async fn publish_raw(
    pubsub: &PubSub,
    transport: &PubSubTransport,
    data: &[u8],
    attributes: &[(&str, &str)],
) {
    let clients = pubsub.clients().await;
    let topic = format!(
        "projects/{PROJECT}/topics/{}",
        transport.topic_name(CONTRACT, 1)
    );
    let publisher = clients.publisher.publisher(topic).build();
    let attributes: HashMap<String, String> = attributes
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    publisher
        .publish(
            PubSubMessage::new()
                .set_data(data.to_vec())
                .set_attributes(attributes),
        )
        .await
        .expect("the emulator takes the message");
}

/// What every consumer of the test's contract gets: bytes that are not a CloudEvent, and an
/// event whose data is not JSON, published by another client, end as dead letters of the
/// consuming app, and the next message flows.
#[tokio::test]
async fn payloads_that_are_not_cloudevents_are_dead_lettered() {
    let Some(pubsub) = PubSub::new("pubsub_payloads_that_are_not_cloudevents_are_dead_lettered")
    else {
        return;
    };
    let transport = pubsub.transport().await;
    let journal = Dep::new(Journal::default());
    let (search, search_running) = start("search", &transport, &journal).await;
    publish_raw(&pubsub, &transport, b"hello, not an event", &[]).await;
    publish_raw(
        &pubsub,
        &transport,
        b"{not json",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "0190d6d8-6a3e-7c4e-9b1a-2f1e5d6c7b8a"),
            ("ce-source", "elsewhere"),
            ("ce-type", CONTRACT),
            ("Content-Type", "application/json"),
        ],
    )
    .await;
    let next = message(CONTRACT, json!({ "product_id": "p-3" }));
    transport.publish(next.clone()).await.unwrap();

    let flowed = support::eventually(PATIENCE, || async {
        !journal.entries("index_product").is_empty()
    })
    .await;
    assert!(flowed, "the next message reached search: {journal:?}");
    let dead_lettered = support::eventually(PATIENCE, || async {
        search.dead_letters().await.unwrap().len() == 2
    })
    .await;
    search_running.settle_for(PATIENCE).await.unwrap();
    let dead = search.dead_letters().await.unwrap();
    assert!(dead_lettered, "{dead:?}");
    assert!(
        dead.iter()
            .all(|d| d.event_name == CONTRACT && d.handler.is_none())
    );
    assert!(
        dead.iter().any(|d| d.error.contains("hello, not an event")),
        "{dead:?}"
    );
    assert!(
        dead.iter().any(|d| d.error.contains("data is not JSON")),
        "{dead:?}"
    );
    assert_eq!(journal.entries("index_product").len(), 1);
    search_running.shutdown().await.unwrap();
}

/// What tidings puts on the wire, read with a plain Pub/Sub client: binary mode, `ce-`
/// attributes, `Content-Type`, the contract's key as the ordering key, the data as JSON.
#[tokio::test]
async fn the_wire_format_is_binary_mode_with_ce_attributes() {
    let Some(pubsub) = PubSub::new("the_wire_format_is_binary_mode_with_ce_attributes") else {
        return;
    };
    let transport = pubsub.transport().await;
    drop(
        transport
            .subscribe(subscription(CONTRACT, "plain"))
            .await
            .unwrap(),
    );
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(sent.clone()).await.unwrap();

    let clients = pubsub.clients().await;
    let name = format!(
        "projects/{PROJECT}/subscriptions/{}",
        transport.subscription_name("plain", CONTRACT, 1)
    );
    let mut stream = clients.subscriber.subscribe(name).build();
    let (received, handler) = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("the message arrives")
        .expect("the pull goes on")
        .expect("a message");
    handler.ack();
    assert_eq!(received.ordering_key, "p-1");
    let attributes = &received.attributes;
    let attribute = |name: &str| attributes.get(name).cloned();
    assert_eq!(attribute("ce-id"), Some(sent.id.to_string()));
    assert_eq!(attribute("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(attribute("ce-type").as_deref(), Some(CONTRACT));
    assert_eq!(attribute("ce-source").as_deref(), Some("tests"));
    assert_eq!(attribute("ce-dataversion").as_deref(), Some("1"));
    assert_eq!(attribute("ce-partitionkey").as_deref(), Some("p-1"));
    assert_eq!(
        attribute("Content-Type").as_deref(),
        Some("application/json")
    );
    for name in [
        "ce-time",
        "ce-correlationid",
        "ce-traceparent",
        "traceparent",
    ] {
        assert!(
            attribute(name).is_some(),
            "attribute {name}: {attributes:?}"
        );
    }
    assert!(
        attribute("ce-datacontenttype").is_none(),
        "it is the Content-Type"
    );
    let body: serde_json::Value = serde_json::from_slice(&received.data).unwrap();
    assert_eq!(body, sent.data);
}

/// Python's CloudEvents SDK, pulling with `google-cloud-pubsub` from a context's subscription,
/// reads what tidings publishes, attribute by attribute.
#[tokio::test]
async fn python_reads_what_tidings_publishes_to_pubsub() {
    let test = "python_reads_what_tidings_publishes_to_pubsub";
    let Some(pubsub) = PubSub::new(test) else {
        return;
    };
    if !support::python_pubsub(test) {
        return;
    }
    let transport = pubsub.transport().await;
    // The subscription a context `python` gets, made by subscribing; Python pulls from it.
    drop(
        transport
            .subscribe(subscription(CONTRACT, "python"))
            .await
            .unwrap(),
    );
    let sent = message(
        CONTRACT,
        json!({ "product_id": "p-1", "price_cents": 1999 }),
    );
    transport.publish(sent.clone()).await.unwrap();

    let name = format!(
        "projects/{PROJECT}/subscriptions/{}",
        transport.subscription_name("python", CONTRACT, 1)
    );
    let printed = tokio::task::spawn_blocking(move || {
        support::run_cloudevents_sdk(&["pubsub-consume", &name], b"")
    })
    .await
    .unwrap();
    let read: serde_json::Value = serde_json::from_slice(&printed).expect("the script prints JSON");
    let attributes = &read["attributes"];
    assert_eq!(attributes["specversion"], "1.0");
    assert_eq!(attributes["id"], sent.id.to_string());
    assert_eq!(attributes["source"], "tests");
    assert_eq!(attributes["type"], CONTRACT);
    assert_eq!(attributes["datacontenttype"], "application/json");
    assert_eq!(attributes["dataversion"], "1");
    assert_eq!(attributes["partitionkey"], "p-1");
    assert_eq!(attributes["correlationid"], sent.id.to_string());
    assert_eq!(attributes["traceparent"], sent.traceparent.clone().unwrap());
    assert!(attributes["time"].is_string());
    assert_eq!(read["data"], sent.data);
}

/// An event that Python's CloudEvents SDK built and `google-cloud-pubsub` published in the
/// Pub/Sub binding's binary mode is consumed by the inbound handler like one that tidings
/// published.
#[tokio::test]
async fn an_event_python_publishes_to_pubsub_is_consumed() {
    let test = "an_event_python_publishes_to_pubsub_is_consumed";
    let Some(pubsub) = PubSub::new(test) else {
        return;
    };
    if !support::python_pubsub(test) {
        return;
    }
    let transport = pubsub.transport().await;
    let journal = Dep::new(Journal::default());
    let (_search, search_running) = start("search", &transport, &journal).await;

    let topic = format!(
        "projects/{PROJECT}/topics/{}",
        transport.topic_name(CONTRACT, 1)
    );
    let printed = tokio::task::spawn_blocking(move || {
        support::run_cloudevents_sdk(&["pubsub-publish", &topic, CONTRACT], b"")
    })
    .await
    .unwrap();
    let id = String::from_utf8(printed).unwrap().trim().to_owned();

    let consumed = support::eventually(PATIENCE, || async {
        !journal.entries("index_product").is_empty()
    })
    .await;
    assert!(consumed, "search handled Python's event: {journal:?}");
    let meta = &journal.entries("index_product")[0];
    assert_eq!(meta.id.to_string(), id);
    assert_eq!(meta.source, "https://erp.example/prices");
    assert_eq!(meta.correlation_id, meta.id, "a new correlation starts");
    search_running.shutdown().await.unwrap();
}
