//! `NatsTransport` on a NATS server with JetStream at `NATS_URL`: the transport conformance
//! suite, two apps talking through it, dedupe by event id, a stream of another configuration,
//! and a payload that is not a CloudEvent. Each test names its subjects and streams with a
//! prefix of its own, and deletes its streams when it ends.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use support::nats::Broker;
use tidings::prelude::*;
use tidings::testing::{Capabilities, Patience, transport_conformance_with};
use tidings::transport::{Subscription, Transport};
use tidings::{ErrorKind, NatsTransport, Running};

/// The longest wait for what must happen; no test asserts how long anything takes.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn nats_transport_passes_the_transport_suite() {
    let Some(broker) = Broker::new("nats_transport_passes_the_transport_suite") else {
        return;
    };
    let report = transport_conformance_with(
        Capabilities::none().redelivers_unacknowledged(),
        Patience::new(PATIENCE, Duration::from_millis(500)),
        || broker.transport(),
    )
    .await;
    assert_eq!(report.skipped().count(), 0, "{report}");
    assert_eq!(
        report.passed().count(),
        tidings::testing::transport::SCENARIOS.len()
    );
}

/// What ran, in which context: (context, handler, event envelope).
#[derive(Debug, Default)]
pub struct Journal(Mutex<Vec<(&'static str, &'static str, EventMeta)>>);

impl Journal {
    fn write(&self, context: &'static str, handler: &'static str, meta: &EventMeta) {
        self.0
            .lock()
            .unwrap()
            .push((context, handler, meta.clone()));
    }

    fn entry(&self, handler: &str) -> Option<EventMeta> {
        let entries = self.0.lock().unwrap();
        entries
            .iter()
            .find(|(_, h, _)| *h == handler)
            .map(|(_, _, meta)| meta.clone())
    }

    fn count(&self, handler: &str) -> usize {
        let entries = self.0.lock().unwrap();
        entries.iter().filter(|(_, h, _)| *h == handler).count()
    }
}

pub mod catalog {
    tidings::context!("catalog");

    use super::Journal;
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

    #[handles]
    fn publish_product_updated(
        event: &ProductPutOnSale,
        journal: Dep<Journal>,
        meta: &EventMeta,
    ) -> ProductUpdatedIntegrationEvent {
        journal.write("catalog", "publish_product_updated", meta);
        ProductUpdatedIntegrationEvent {
            product_id: event.product_id.clone(),
        }
    }
}

pub mod search {
    tidings::context!("search");

    use super::Journal;
    use super::catalog::ProductUpdatedIntegrationEvent;
    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductIndexed {
        pub product_id: String,
    }

    /// Consumes catalog's contract and runs a use case of search.
    #[handles]
    async fn index_product(
        event: &ProductUpdatedIntegrationEvent,
        journal: Dep<Journal>,
        meta: &EventMeta,
        events: DomainEvents,
    ) -> Result<(), tidings::Error> {
        journal.write("search", "index_product", meta);
        events
            .publish(ProductIndexed {
                product_id: event.product_id.clone(),
            })
            .await?;
        Ok(())
    }

    #[handles]
    fn warm_cache(_event: &ProductIndexed, journal: Dep<Journal>, meta: &EventMeta) {
        journal.write("search", "warm_cache", meta);
    }
}

async fn start(
    context: &str,
    transport: &NatsTransport,
    journal: &Dep<Journal>,
) -> (Tidings, Running) {
    let app = Tidings::builder(context)
        .store(InMemoryStore::new())
        .transport(transport.clone())
        .provide_dep(journal.clone())
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running)
}

/// Catalog's use case leads, through NATS, to search's inbound handler and its own use case:
/// one correlation end to end.
#[tokio::test]
async fn two_apps_talk_through_nats() {
    let Some(broker) = Broker::new("two_apps_talk_through_nats") else {
        return;
    };
    let transport = broker.transport().await;
    let journal = Dep::new(Journal::default());
    let (catalog, catalog_running) = start("catalog", &transport, &journal).await;
    let (_search, search_running) = start("search", &transport, &journal).await;

    let published = catalog
        .domain_events()
        .publish(catalog::ProductPutOnSale {
            product_id: "p-1".into(),
        })
        .await
        .unwrap();
    let warmed =
        support::eventually(PATIENCE, || async { journal.entry("warm_cache").is_some() }).await;
    assert!(
        warmed,
        "search's handlers ran within {PATIENCE:?}: {journal:?}"
    );

    let indexed = journal.entry("index_product").unwrap();
    let warmed = journal.entry("warm_cache").unwrap();
    assert_eq!(indexed.source, "catalog", "the contract came from catalog");
    assert_eq!(indexed.correlation_id, published.correlation_id);
    assert_eq!(warmed.causation_id, Some(indexed.id));
    assert_eq!(warmed.correlation_id, published.correlation_id);
    assert_eq!(journal.count("index_product"), 1);

    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
}

/// The same message published twice (as a relay does after an unanswered publish) is stored
/// once, and reaches the consumer once.
#[tokio::test]
async fn a_message_published_twice_is_received_once() {
    let Some(broker) = Broker::new("a_message_published_twice_is_received_once") else {
        return;
    };
    let transport = broker.transport().await;
    let contract = "tests.dedupe";
    let mut inbound = transport
        .subscribe(Subscription {
            contract: contract.to_owned(),
            version: 1,
            context: "reader".to_owned(),
        })
        .await
        .unwrap();
    let sent = support::message(contract, json!({ "n": 1 }));
    transport.publish(sent.clone()).await.unwrap();
    transport.publish(sent.clone()).await.unwrap();

    let mut stream = transport
        .jetstream()
        .get_stream(transport.stream_name(contract, 1))
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);

    let received = tokio::time::timeout(PATIENCE, inbound.next())
        .await
        .expect("the message arrives")
        .expect("the subscription goes on")
        .expect("the message is received");
    assert_eq!(received.message.id, sent.id);
    received.ack().await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(1), inbound.next()).await;
    assert!(again.is_err(), "nothing else arrives: {again:?}");
}

/// A message larger than the server takes is refused before it is sent: publishing it again
/// would not help.
#[tokio::test]
async fn a_message_larger_than_the_server_takes_is_refused() {
    let Some(broker) = Broker::new("a_message_larger_than_the_server_takes_is_refused") else {
        return;
    };
    let transport = broker.transport().await;
    let max_payload = broker.client().await.server_info().max_payload;
    let big = support::message("tests.big", json!({ "blob": "x".repeat(max_payload + 1) }));
    let error = transport.publish(big).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Refused, "{error}");
}

/// A stream that exists with another configuration is refused, naming it and what differs.
#[tokio::test]
async fn a_stream_of_another_configuration_is_refused() {
    let Some(broker) = Broker::new("a_stream_of_another_configuration_is_refused") else {
        return;
    };
    let transport = broker.transport().await;
    let contract = "tests.drift";
    let stream = transport.stream_name(contract, 1);
    async_nats::jetstream::new(broker.client().await)
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![transport.subject(contract, 1)],
            storage: async_nats::jetstream::stream::StorageType::Memory,
            duplicate_window: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .unwrap();

    let error = transport.ensure_stream(contract, 1).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
    let text = error.to_string();
    assert!(text.contains(&format!("NATS stream `{stream}`")), "{text}");
    assert!(text.contains("duplicate_window is 30s, not 120s"), "{text}");

    let publish = transport
        .publish(support::message(contract, json!({})))
        .await;
    assert_eq!(publish.unwrap_err().kind(), ErrorKind::Invalid);
    let subscribe = transport
        .subscribe(Subscription {
            contract: contract.to_owned(),
            version: 1,
            context: "reader".to_owned(),
        })
        .await;
    assert_eq!(subscribe.err().unwrap().kind(), ErrorKind::Invalid);

    // A stream as the transport wants it is accepted.
    let matching = broker.builder().duplicate_window(Duration::from_secs(30));
    let matching = matching.connect(&broker.url).await.unwrap();
    matching.ensure_stream(contract, 1).await.unwrap();

    // A consumer that NATS cannot update to the transport's settings is refused, named.
    matching
        .jetstream()
        .create_consumer_on_stream(
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("late".to_owned()),
                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
                ..Default::default()
            },
            &stream,
        )
        .await
        .unwrap();
    let subscribe = matching
        .subscribe(Subscription {
            contract: contract.to_owned(),
            version: 1,
            context: "late".to_owned(),
        })
        .await;
    let error = subscribe.err().unwrap();
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("NATS consumer `late` on stream `{stream}`")),
        "{error}"
    );
}

/// A server that does not answer is "unavailable": worth trying again later.
#[tokio::test]
async fn no_server_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = NatsTransport::connect(&format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        error.to_string().contains("could not connect to NATS"),
        "{error}"
    );
}

/// Bytes that are not a CloudEvent, published on the contract's subject by another client,
/// end as a dead letter of the consuming app, and the next message flows.
#[tokio::test]
async fn a_payload_that_is_not_a_cloudevent_is_dead_lettered() {
    let Some(broker) = Broker::new("a_payload_that_is_not_a_cloudevent_is_dead_lettered") else {
        return;
    };
    let transport = broker.transport().await;
    let journal = Dep::new(Journal::default());
    let contract = "catalog.product-updated";
    transport.ensure_stream(contract, 1).await.unwrap();
    async_nats::jetstream::new(broker.client().await)
        .publish(transport.subject(contract, 1), "hello, not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let (search, search_running) = start("search", &transport, &journal).await;
    let (catalog, catalog_running) = start("catalog", &transport, &journal).await;
    catalog
        .domain_events()
        .publish(catalog::ProductPutOnSale {
            product_id: "p-2".into(),
        })
        .await
        .unwrap();

    let flowed = support::eventually(PATIENCE, || async {
        journal.entry("index_product").is_some()
    })
    .await;
    assert!(flowed, "the next message reached search: {journal:?}");
    let dead = search.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].event_name, contract);
    assert_eq!(dead[0].handler, None, "it reached no handler");
    assert!(
        dead[0].error.contains("hello, not an event") && dead[0].error.contains("not a CloudEvent"),
        "{}",
        dead[0].error
    );
    assert_eq!(journal.count("index_product"), 1);

    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
}

/// A CloudEvent that another language's SDK built (Python's `cloudevents`), published on the
/// contract's subject by a plain NATS client, is consumed by the inbound handler like one that
/// tidings published.
#[tokio::test]
async fn an_event_built_by_another_languages_sdk_is_consumed() {
    let test = "an_event_built_by_another_languages_sdk_is_consumed";
    let Some(broker) = Broker::new(test) else {
        return;
    };
    if !support::cloudevents_sdk(test) {
        return;
    }
    let transport = broker.transport().await;
    let journal = Dep::new(Journal::default());
    let contract = "catalog.product-updated";
    let built = support::run_cloudevents_sdk(&["write", contract], b"");
    let (_search, search_running) = start("search", &transport, &journal).await;

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/cloudevents+json");
    async_nats::jetstream::new(broker.client().await)
        .publish_with_headers(transport.subject(contract, 1), headers, built.into())
        .await
        .unwrap()
        .await
        .unwrap();

    let consumed = support::eventually(PATIENCE, || async {
        journal.entry("index_product").is_some()
    })
    .await;
    assert!(consumed, "search handled the SDK's event: {journal:?}");
    let meta = journal.entry("index_product").expect("handled");
    assert_eq!(meta.source, "https://erp.example/prices");
    assert_eq!(meta.correlation_id, meta.id, "a new correlation starts");
    search_running.shutdown().await.unwrap();
}
