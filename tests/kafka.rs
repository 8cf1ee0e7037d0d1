//! `KafkaTransport` on librdkafka's mock cluster (a Kafka-protocol endpoint over TCP in this
//! process, one per test; `KAFKA_BOOTSTRAP` names a real cluster instead): the transport
//! conformance suite, two apps talking through it, a message published twice, a late context,
//! a topic that may not be created, payloads that are not CloudEvents, the wire format read with
//! a plain client, and Python's CloudEvents SDK (its Kafka binding) on both ends.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::json;
use support::kafka::Kafka;
use tidings::prelude::*;
use tidings::testing::{Capabilities, Patience, transport_conformance_with};
use tidings::transport::{Message, Subscription, Transport};
use tidings::{ErrorKind, KafkaTransport, Running};
use uuid::Uuid;

/// The longest wait for what must happen; no test asserts how long anything takes.
const PATIENCE: Duration = Duration::from_secs(30);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_transport_passes_the_transport_suite() {
    let kafka = Kafka::new(1);
    let report = transport_conformance_with(
        Capabilities::none().redelivers_unacknowledged(),
        Patience::new(PATIENCE, Duration::from_secs(1)),
        || kafka.transport(),
    )
    .await;
    assert_eq!(report.skipped().count(), 0, "{report}");
    assert_eq!(
        report.passed().count(),
        tidings::testing::transport::SCENARIOS.len()
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
    transport: &KafkaTransport,
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

/// Catalog's use case leads, through Kafka, to search's inbound handler: one correlation end to
/// end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_talk_through_kafka() {
    let kafka = Kafka::new(1);
    let transport = kafka.transport().await;
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

/// The same message published twice (as the relay does after a publication whose delivery
/// report was lost) is in the topic twice: the idempotent producer drops the retries of one
/// send, not a second send. The context's inbox runs the handler once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_twice_is_handled_once() {
    let kafka = Kafka::new(1);
    let transport = kafka.transport().await;
    let journal = Dep::new(Journal::default());
    let (_search, search_running) = start("search", &transport, &journal).await;
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(sent.clone()).await.unwrap();
    transport.publish(sent.clone()).await.unwrap();
    // A third message of the same key, after the copy: once it is handled, the copy was
    // received too.
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

/// A context that subscribes for the first time gets what the topic holds: what was published
/// before it ever subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_context_gets_what_was_published_before_it_subscribed() {
    let kafka = Kafka::new(1);
    let transport = kafka.transport().await;
    let early = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(early.clone()).await.unwrap();

    let mut inbound = transport
        .subscribe(subscription(CONTRACT, "late"))
        .await
        .unwrap();
    let received = tokio::time::timeout(PATIENCE, inbound.next())
        .await
        .expect("the message arrives")
        .expect("the subscription goes on")
        .expect("the message is received");
    assert_eq!(received.message.id, early.id);
    received.ack().await.unwrap();
}

/// A transport not allowed to create topics refuses a topic that does not exist, naming it;
/// one allowed to creates it, and the first then takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_may_not_be_created_is_refused_naming_it() {
    let kafka = Kafka::new(1);
    let strict = kafka
        .builder()
        .create_topics(false)
        .connect(&kafka.bootstrap)
        .await
        .unwrap();
    let topic = strict.topic_name(CONTRACT, 1);
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    let error = strict.publish(sent.clone()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Refused, "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("Kafka topic `{topic}` does not exist")),
        "{text}"
    );
    let error = strict
        .subscribe(subscription(CONTRACT, "search"))
        .await
        .err()
        .expect("the subscription is refused too");
    assert_eq!(error.kind(), ErrorKind::Refused, "{error}");

    kafka
        .transport()
        .await
        .ensure_topic(CONTRACT, 1)
        .await
        .expect("created");
    strict.publish(sent).await.expect("the topic exists now");
}

/// A cluster that does not answer is "unavailable": worth trying again later.
#[tokio::test]
async fn no_cluster_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = KafkaTransport::builder()
        .connect_timeout(Duration::from_secs(1))
        .connect(&format!("kafka://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        error.to_string().contains("could not connect to Kafka"),
        "{error}"
    );
}

/// Bytes that are not a CloudEvent, and an event whose data is not JSON, produced by another
/// client, end as dead letters of the consuming app, and the next message flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_that_are_not_cloudevents_are_dead_lettered() {
    let kafka = Kafka::new(1);
    let transport = kafka.transport().await;
    let journal = Dep::new(Journal::default());
    let (search, search_running) = start("search", &transport, &journal).await;
    let topic = transport.topic_name(CONTRACT, 1);
    let producer = kafka.producer();
    let key = "p-1";
    producer
        .send(
            FutureRecord::to(&topic)
                .key(key)
                .payload("hello, not an event"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let mut headers = OwnedHeaders::new();
    for (name, value) in [
        ("ce_specversion", "1.0"),
        ("ce_id", "0190d6d8-6a3e-7c4e-9b1a-2f1e5d6c7b8a"),
        ("ce_source", "elsewhere"),
        ("ce_type", CONTRACT),
        ("content-type", "application/json"),
    ] {
        headers = headers.insert(Header {
            key: name,
            value: Some(value),
        });
    }
    producer
        .send(
            FutureRecord::to(&topic)
                .key(key)
                .payload("{not json")
                .headers(headers),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let next = message(CONTRACT, json!({ "product_id": "p-3" }));
    transport.publish(next.clone()).await.unwrap();

    // The plain producer partitions the same key its own way (librdkafka's default, not the
    // Java client's `murmur2_random` tidings uses), so the next message may sit in another
    // partition and flow before the bad ones are read: wait for all three.
    let flowed = support::eventually(PATIENCE, || async {
        !journal.entries("index_product").is_empty()
            && search.dead_letters().await.unwrap().len() >= 2
    })
    .await;
    assert!(
        flowed,
        "the next message and both dead letters reached search: {journal:?}, {:?}",
        search.dead_letters().await.unwrap()
    );
    search_running.settle_for(PATIENCE).await.unwrap();
    let dead = search.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
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

/// One record of `topic`, read with a plain rdkafka consumer: its key, its headers (as text) and
/// its value.
async fn read_one(kafka: &Kafka, topic: &str) -> (Option<String>, Vec<(String, String)>, Vec<u8>) {
    let consumer = kafka.consumer(topic);
    let record = tokio::time::timeout(PATIENCE, consumer.recv())
        .await
        .expect("the record arrives")
        .expect("a record");
    let key = record
        .key()
        .map(|key| String::from_utf8_lossy(key).into_owned());
    let headers = record
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_owned(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let value = record.payload().unwrap_or_default().to_vec();
    (key, headers, value)
}

/// What tidings puts on the wire, read with a plain Kafka client: binary mode, `ce_` headers
/// and `content-type`, the ordering key as the record's key, the data as the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_format_is_binary_mode_with_ce_headers() {
    let kafka = Kafka::new(1);
    let transport = kafka.transport().await;
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(sent.clone()).await.unwrap();

    let (key, headers, value) = read_one(&kafka, &transport.topic_name(CONTRACT, 1)).await;
    assert_eq!(key.as_deref(), Some("p-1"));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("ce_id"), Some(sent.id.to_string()));
    assert_eq!(header("ce_specversion").as_deref(), Some("1.0"));
    assert_eq!(header("ce_type").as_deref(), Some(CONTRACT));
    for name in [
        "ce_source",
        "ce_time",
        "ce_dataversion",
        "ce_partitionkey",
        "ce_correlationid",
        "ce_traceparent",
        "traceparent",
    ] {
        assert!(header(name).is_some(), "header {name}: {headers:?}");
    }
    assert!(
        header("ce_datacontenttype").is_none(),
        "it is the content type"
    );
    let body: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(body, sent.data);
}

/// Python's CloudEvents SDK, its Kafka binding given the record a plain Kafka client read
/// (headers, key, value), reads what tidings publishes, attribute by attribute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_what_tidings_publishes_to_kafka() {
    let test = "python_reads_what_tidings_publishes_to_kafka";
    if !support::cloudevents_sdk(test) {
        return;
    }
    let kafka = Kafka::new(1);
    let transport = kafka.transport().await;
    let sent = message(
        CONTRACT,
        json!({ "product_id": "p-1", "price_cents": 1999 }),
    );
    transport.publish(sent.clone()).await.unwrap();

    let (key, headers, value) = read_one(&kafka, &transport.topic_name(CONTRACT, 1)).await;
    let record = json!({
        "headers": headers.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "key": key,
        "value": String::from_utf8(value).unwrap(),
    });
    let input = serde_json::to_vec(&record).unwrap();
    let printed =
        tokio::task::spawn_blocking(move || support::run_cloudevents_sdk(&["read-kafka"], &input))
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

/// An event that Python's CloudEvents SDK built and wrote in the Kafka binding's binary mode,
/// produced by a plain Kafka client, is consumed by the inbound handler like one that tidings
/// published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_python_writes_for_kafka_is_consumed() {
    let test = "an_event_python_writes_for_kafka_is_consumed";
    if !support::cloudevents_sdk(test) {
        return;
    }
    let kafka = Kafka::new(1);
    let transport = kafka.transport().await;
    let journal = Dep::new(Journal::default());
    let (_search, search_running) = start("search", &transport, &journal).await;

    let printed = tokio::task::spawn_blocking(|| {
        support::run_cloudevents_sdk(&["write-kafka", CONTRACT], b"")
    })
    .await
    .unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&printed).expect("the script prints JSON");
    let mut headers = OwnedHeaders::new();
    for (name, value) in record["headers"].as_object().expect("headers") {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_str().expect("a text header")),
        });
    }
    let id = record["headers"]["ce_id"].as_str().unwrap().to_owned();
    let topic = transport.topic_name(CONTRACT, 1);
    let key = record["key"].as_str().map(str::to_owned);
    let value = record["value"].as_str().expect("a text value").to_owned();
    let mut produced = FutureRecord::to(&topic).payload(&value).headers(headers);
    if let Some(key) = &key {
        produced = produced.key(key);
    }
    kafka
        .producer()
        .send(produced, Duration::from_secs(5))
        .await
        .unwrap();

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
