//! `RabbitMqTransport` on the RabbitMQ broker at `AMQP_URL`: the transport conformance suite,
//! two apps talking through it, a message published twice, an unroutable publication, a queue
//! of other settings, payloads that are not CloudEvents, and Python (the CloudEvents SDK with
//! `pika`) on both ends. Each test works on an exchange of its own and deletes its exchanges
//! and queues when it ends.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::json;
use support::rabbit::{Rabbit, Tracked};
use tidings::prelude::*;
use tidings::testing::{Capabilities, Patience, transport_conformance_with};
use tidings::transport::{Message, Subscription, Transport};
use tidings::{ErrorKind, RabbitMqTransport, RabbitMqUnroutable, Running};
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

#[tokio::test]
async fn rabbitmq_transport_passes_the_transport_suite() {
    let Some(rabbit) = Rabbit::new("rabbitmq_transport_passes_the_transport_suite") else {
        return;
    };
    let report = transport_conformance_with(
        Capabilities::none().redelivers_unacknowledged(),
        Patience::new(PATIENCE, Duration::from_millis(500)),
        || rabbit.transport(),
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

async fn start(context: &str, transport: &Tracked, journal: &Dep<Journal>) -> (Tidings, Running) {
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

/// Catalog's use case leads, through RabbitMQ, to search's inbound handler: one correlation end
/// to end, the event's id the broker's message id.
#[tokio::test]
async fn two_apps_talk_through_rabbitmq() {
    let Some(rabbit) = Rabbit::new("two_apps_talk_through_rabbitmq") else {
        return;
    };
    let transport = rabbit.transport().await;
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

/// The same message published twice (as the relay does after a publication whose confirmation
/// was lost) is queued twice, RabbitMQ having no dedupe; the context's inbox runs the handler
/// once.
#[tokio::test]
async fn a_message_published_twice_is_handled_once() {
    let Some(rabbit) = Rabbit::new("a_message_published_twice_is_handled_once") else {
        return;
    };
    let transport = rabbit.transport().await;
    let journal = Dep::new(Journal::default());
    let (_search, search_running) = start("search", &transport, &journal).await;
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(sent.clone()).await.unwrap();
    transport.publish(sent.clone()).await.unwrap();
    // A third message, after the copy: once it is handled, the copy was received too.
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

/// A publication that no queue takes (no context subscribed yet) fails as refused, saying so,
/// rather than vanishing; once a context subscribed, the same message goes through.
#[tokio::test]
async fn an_unroutable_publication_is_refused_not_dropped() {
    let Some(rabbit) = Rabbit::new("an_unroutable_publication_is_refused_not_dropped") else {
        return;
    };
    let transport = rabbit.transport().await;
    let sent = message("tests.nobody-listens", json!({}));
    let error = transport.publish(sent.clone()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Refused, "{error}");
    let unroutable = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<RabbitMqUnroutable>())
        .unwrap_or_else(|| panic!("the source says it was unroutable: {error:?}"));
    assert_eq!(unroutable.exchange, rabbit.exchange);
    assert_eq!(unroutable.routing_key, "tests.nobody-listens.v1");
    assert_eq!(unroutable.reply_code, 312);

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

/// A queue that exists with other settings than the transport's is refused, naming it, rather
/// than used as it is; a transport given the queue's settings takes it.
#[tokio::test]
async fn a_queue_of_other_settings_is_refused() {
    let Some(rabbit) = Rabbit::new("a_queue_of_other_settings_is_refused") else {
        return;
    };
    let transport = rabbit.transport().await;
    let queue = transport.inner.queue_name("search", CONTRACT, 1);
    rabbit.forget_later(&queue);
    let (connection, channel) = rabbit.channel().await;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let error = transport
        .subscribe(subscription(CONTRACT, "search"))
        .await
        .err()
        .expect("the queue is refused");
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
    let text = error.to_string();
    assert!(text.contains(&format!("queue `{queue}`")), "{text}");
    assert!(text.contains("exists with other settings"), "{text}");

    // The transport still works, for what it can use.
    transport
        .subscribe(subscription(CONTRACT, "other"))
        .await
        .expect("another context's queue is declared");
    let _ = connection.close(200, "OK".into()).await;
}

/// A broker that does not answer is "unavailable": worth trying again later.
#[tokio::test]
async fn no_broker_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = RabbitMqTransport::connect(&format!("amqp://guest:secret@127.0.0.1:{port}/%2f"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let text = error.to_string();
    assert!(text.contains("could not connect to RabbitMQ"), "{text}");
    assert!(
        !text.contains("secret"),
        "the password is not shown: {text}"
    );
}

/// What every consumer of the test's contract gets: bytes that are not a CloudEvent, and an
/// event whose data is not JSON, published by another client, end as dead letters of the
/// consuming app, and the next message flows.
#[tokio::test]
async fn payloads_that_are_not_cloudevents_are_dead_lettered() {
    let Some(rabbit) = Rabbit::new("payloads_that_are_not_cloudevents_are_dead_lettered") else {
        return;
    };
    let transport = rabbit.transport().await;
    let journal = Dep::new(Journal::default());
    let (search, search_running) = start("search", &transport, &journal).await;
    let (connection, channel) = rabbit.channel().await;
    let routing_key = RabbitMqTransport::routing_key(CONTRACT, 1);
    let raw = |body: &'static [u8], properties: lapin::BasicProperties| {
        let (channel, exchange, routing_key) = (&channel, &rabbit.exchange, &routing_key);
        async move {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    properties,
                )
                .await
                .unwrap();
        }
    };
    raw(b"hello, not an event", lapin::BasicProperties::default()).await;
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "0190d6d8-6a3e-7c4e-9b1a-2f1e5d6c7b8a"),
        ("ce-source", "elsewhere"),
        ("ce-type", CONTRACT),
    ] {
        headers.insert(
            name.into(),
            lapin::types::AMQPValue::LongString(value.into()),
        );
    }
    raw(
        b"{not json",
        lapin::BasicProperties::default()
            .with_headers(headers)
            .with_content_type("application/json".into()),
    )
    .await;
    let next = message(CONTRACT, json!({ "product_id": "p-3" }));
    transport.publish(next.clone()).await.unwrap();

    let flowed = support::eventually(PATIENCE, || async {
        !journal.entries("index_product").is_empty()
    })
    .await;
    assert!(flowed, "the next message reached search: {journal:?}");
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
    let _ = connection.close(200, "OK".into()).await;
}

/// Python's CloudEvents SDK, consuming with `pika` from a queue bound to the contract, reads
/// what tidings publishes, attribute by attribute.
#[tokio::test]
async fn python_reads_what_tidings_publishes_to_rabbitmq() {
    let test = "python_reads_what_tidings_publishes_to_rabbitmq";
    let Some(rabbit) = Rabbit::new(test) else {
        return;
    };
    if !support::pika(test) {
        return;
    }
    let transport = rabbit.transport().await;
    // The queue a context `python` gets, declared by subscribing; Python consumes from it.
    let inbound = transport
        .subscribe(subscription(CONTRACT, "python"))
        .await
        .unwrap();
    drop(inbound);
    let sent = message(
        CONTRACT,
        json!({ "product_id": "p-1", "price_cents": 1999 }),
    );
    transport.publish(sent.clone()).await.unwrap();

    let queue = transport.inner.queue_name("python", CONTRACT, 1);
    let url = rabbit.url.clone();
    let printed = tokio::task::spawn_blocking(move || {
        support::run_cloudevents_sdk(&["rabbitmq-consume", &url, &queue], b"")
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

/// An event that Python's CloudEvents SDK built and `pika` published in the RabbitMQ binding's
/// binary mode is consumed by the inbound handler like one that tidings published.
#[tokio::test]
async fn an_event_python_publishes_to_rabbitmq_is_consumed() {
    let test = "an_event_python_publishes_to_rabbitmq_is_consumed";
    let Some(rabbit) = Rabbit::new(test) else {
        return;
    };
    if !support::pika(test) {
        return;
    }
    let transport = rabbit.transport().await;
    let journal = Dep::new(Journal::default());
    let (_search, search_running) = start("search", &transport, &journal).await;

    let (url, exchange) = (rabbit.url.clone(), rabbit.exchange.clone());
    let routing_key = RabbitMqTransport::routing_key(CONTRACT, 1);
    let printed = tokio::task::spawn_blocking(move || {
        support::run_cloudevents_sdk(
            &["rabbitmq-publish", &url, &exchange, &routing_key, CONTRACT],
            b"",
        )
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

/// What tidings puts on the wire, read with a plain AMQP client: binary mode, the event id as
/// the message id, persistent.
#[tokio::test]
async fn the_wire_format_is_binary_mode_with_ce_headers() {
    let Some(rabbit) = Rabbit::new("the_wire_format_is_binary_mode_with_ce_headers") else {
        return;
    };
    let transport = rabbit.transport().await;
    drop(
        transport
            .subscribe(subscription(CONTRACT, "plain"))
            .await
            .unwrap(),
    );
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(sent.clone()).await.unwrap();

    let (connection, channel) = rabbit.channel().await;
    let queue = transport.inner.queue_name("plain", CONTRACT, 1);
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("the message arrives")
        .expect("the consumer goes on")
        .expect("a delivery");
    let properties = &delivery.properties;
    assert_eq!(
        properties.message_id().as_ref().map(|id| id.to_string()),
        Some(sent.id.to_string())
    );
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.to_string()),
        Some("application/json".to_owned())
    );
    let headers = properties.headers().clone().unwrap_or_default();
    let header = |name: &str| headers.inner().get(name).map(|value| format!("{value:?}"));
    for name in [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-dataversion",
        "ce-partitionkey",
        "ce-correlationid",
        "ce-traceparent",
        "traceparent",
    ] {
        assert!(header(name).is_some(), "header {name}: {headers:?}");
    }
    assert!(
        header("ce-datacontenttype").is_none(),
        "it is the content type"
    );
    let body: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(body, sent.data);
    let _ = connection.close(200, "OK".into()).await;
}

/// A message that keeps coming back unacknowledged (each consumer that got it stopped before
/// its inbox recorded it) is delivered at most the delivery limit's count of times past the
/// first, then dead-lettered by the broker into the queue's dead-letter queue, not looped
/// forever.
#[tokio::test]
async fn a_message_past_the_delivery_limit_is_dead_lettered_by_the_broker() {
    let Some(rabbit) =
        Rabbit::new("a_message_past_the_delivery_limit_is_dead_lettered_by_the_broker")
    else {
        return;
    };
    const LIMIT: u32 = 2;
    let transport = rabbit.track(
        rabbit
            .builder()
            .delivery_limit(LIMIT)
            .connect(&rabbit.url)
            .await
            .expect("RabbitMQ answers at AMQP_URL"),
    );
    let reader = subscription(CONTRACT, "crashing");
    drop(transport.subscribe(reader.clone()).await.unwrap());
    let sent = message(CONTRACT, json!({ "product_id": "p-1" }));
    transport.publish(sent.clone()).await.unwrap();

    let mut deliveries = 0;
    for _ in 0..10 {
        let mut inbound = transport.subscribe(reader.clone()).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(2), inbound.next()).await;
        let Ok(Some(Ok(received))) = next else {
            break;
        };
        assert_eq!(received.message.id, sent.id);
        deliveries += 1;
        // The consumer stops before acknowledging: its channel closes, the message returns.
        drop(received);
        drop(inbound);
    }
    assert_eq!(deliveries, LIMIT + 1, "the first delivery and {LIMIT} more");

    let queue = transport.inner.queue_name("crashing", CONTRACT, 1);
    let dead_letters = RabbitMqTransport::dead_letter_queue_name(&queue);
    let (connection, channel) = rabbit.channel().await;
    let found = support::eventually(PATIENCE, || async {
        channel
            .basic_get(
                dead_letters.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .ok()
            .flatten()
            .is_some_and(|got| {
                got.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string())
                    == Some(sent.id.to_string())
            })
    })
    .await;
    assert!(found, "the message is in `{dead_letters}`");
    let _ = connection.close(200, "OK".into()).await;
}
