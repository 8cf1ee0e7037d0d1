//! The integration path on in-process parts: translations put integration events in the outbox,
//! the relay publishes them in order per key, and inbound handlers receive each once.

use std::sync::Mutex;

mod support;

use tidings::prelude::*;
use tidings::transport::{Message, Transport};
use uuid::Uuid;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PriceReduced {
    pub sku: String,
    pub step: u32,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductDiscontinued {
    pub sku: String,
}

#[integration_event(name = "catalog.price-changed", version = 2, from = PriceReduced, key = sku)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PriceChangedIntegrationEvent {
    pub sku: String,
    pub step: u32,
}

#[integration_event(name = "catalog.product-discontinued", from = ProductDiscontinued, key = sku)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProductDiscontinuedIntegrationEvent {
    pub sku: String,
}

impl From<&ProductDiscontinued> for ProductDiscontinuedIntegrationEvent {
    fn from(event: &ProductDiscontinued) -> Self {
        ProductDiscontinuedIntegrationEvent {
            sku: event.sku.clone(),
        }
    }
}

#[handles]
fn publish_price_changed(event: &PriceReduced) -> PriceChangedIntegrationEvent {
    PriceChangedIntegrationEvent {
        sku: event.sku.clone(),
        step: event.step,
    }
}

/// What the inbound handlers saw: (sku, step, envelope).
#[derive(Debug, Default)]
pub struct Received(Mutex<Vec<(String, u32, EventMeta)>>);

#[handles]
async fn reprice_listing(
    event: &PriceChangedIntegrationEvent,
    seen: Dep<Received>,
    meta: &EventMeta,
) {
    // Yield, so that a relay that published out of order would be caught.
    tokio::task::yield_now().await;
    seen.0
        .lock()
        .unwrap()
        .push((event.sku.clone(), event.step, meta.clone()));
}

#[handles]
fn delist(event: &ProductDiscontinuedIntegrationEvent, seen: Dep<Received>, meta: EventMeta) {
    seen.0.lock().unwrap().push((event.sku.clone(), 0, meta));
}

/// A copy of what the inbound handlers saw.
fn received(app: &Tidings) -> Vec<(String, u32, EventMeta)> {
    app.dependency::<Received>()
        .unwrap()
        .0
        .lock()
        .unwrap()
        .clone()
}

async fn app() -> (Tidings, tidings::Running, InMemoryTransport) {
    let transport = InMemoryTransport::default();
    let app = Tidings::builder("catalog")
        .transport(transport.clone())
        .provide(Received::default())
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running, transport)
}

#[tokio::test]
async fn translations_reach_inbound_handlers_in_order_per_key() {
    let (app, running, transport) = app().await;
    let events = app.domain_events();
    for step in 0..30 {
        for sku in ["a", "b", "c"] {
            events
                .publish(PriceReduced {
                    sku: sku.into(),
                    step,
                })
                .await
                .unwrap();
        }
    }
    running.settle().await;

    let seen = received(&app);
    assert_eq!(seen.len(), 90);
    for sku in ["a", "b", "c"] {
        let steps: Vec<u32> = seen.iter().filter(|s| s.0 == sku).map(|s| s.1).collect();
        assert_eq!(steps, (0..30).collect::<Vec<_>>(), "order of key {sku}");
    }
    let published = transport.published_of::<PriceChangedIntegrationEvent>();
    assert_eq!(published.len(), 90);
    let messages = transport.published();
    assert!(
        messages
            .iter()
            .all(|m| m.contract == "catalog.price-changed" && m.version == 2)
    );
    assert!(messages.iter().all(|m| m.source == "catalog"));
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn correlation_flows_from_the_use_case_to_the_remote_handler() {
    let (app, running, transport) = app().await;
    let published = app
        .domain_events()
        .publish(ProductDiscontinued { sku: "z".into() })
        .await
        .unwrap();
    running.settle().await;

    let [message] = transport.published().try_into().unwrap();
    assert_eq!(message.correlation_id, published.correlation_id);
    assert_eq!(
        message.causation_id,
        Some(published.id),
        "caused by the domain event"
    );
    assert_ne!(
        message.id, published.id,
        "the integration event has its own id"
    );
    assert_eq!(message.key.as_deref(), Some("z"));
    assert!(
        message
            .traceparent
            .as_deref()
            .is_some_and(|t| t.starts_with("00-"))
    );
    assert_eq!(
        message.traceparent, published.traceparent,
        "one trace across the broker"
    );

    let seen = received(&app);
    let (_, _, meta) = &seen[0];
    assert_eq!(meta.id, message.id);
    assert_eq!(meta.correlation_id, published.correlation_id);
    assert_eq!(meta.causation_id, Some(published.id));
    assert_eq!(meta.source, "catalog");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_delivered_twice_is_handled_once() {
    let (app, running, transport) = app().await;
    let message = Message {
        id: Uuid::now_v7(),
        source: "catalog".into(),
        contract: "catalog.product-discontinued".into(),
        version: 1,
        key: Some("y".into()),
        time: chrono::Utc::now(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        traceparent: None,
        data: serde_json::json!({ "sku": "y" }).into(),
    };
    transport.publish(message.clone()).await.unwrap();
    transport.publish(message.clone()).await.unwrap();
    running.settle().await;

    assert_eq!(received(&app).len(), 1, "the inbox absorbed the duplicate");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_undecodable_message_is_dead_lettered_and_the_next_one_flows() {
    let (app, running, transport) = app().await;
    let broken = Message {
        id: Uuid::now_v7(),
        source: "elsewhere".into(),
        contract: "catalog.product-discontinued".into(),
        version: 1,
        key: None,
        time: chrono::Utc::now(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        traceparent: None,
        data: serde_json::json!({ "sku": 42 }).into(),
    };
    transport.publish(broken.clone()).await.unwrap();
    app.domain_events()
        .publish(ProductDiscontinued { sku: "x".into() })
        .await
        .unwrap();
    running.settle().await;

    let dead = app.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, broken.id);
    assert_eq!(dead[0].handler, None);
    assert!(
        dead[0].error.contains("could not be decoded"),
        "{}",
        dead[0].error
    );
    assert_eq!(received(&app).len(), 1, "the good message was handled");
    running.shutdown().await.unwrap();
}

/// A store around another that counts the relay's claims, to see whether it spins, and the
/// calls that record received integration events, to see whether the consumer batches them; and
/// fails to record as many completions that produce integration events as it is told to, as a
/// store that lost its connection does.
#[derive(Clone, Default)]
struct Counting<S = InMemoryStore> {
    inner: S,
    claims: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    inbox_records: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failing_completions: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: tidings::store::Store> Counting<S> {
    fn around(inner: S, failing_completions: usize) -> Self {
        Counting {
            inner,
            claims: Default::default(),
            inbox_records: Default::default(),
            failing_completions: std::sync::Arc::new(failing_completions.into()),
        }
    }
}

impl<S: tidings::store::Store> tidings::store::Store for Counting<S> {
    fn record(&self, events: Vec<tidings::store::NewEvent>) -> BoxFuture<'_, StoreResult<usize>> {
        if events
            .iter()
            .any(|e| e.event.kind == EventKind::Integration)
        {
            self.inbox_records
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.record(events)
    }
    fn claim_deliveries<'a>(
        &'a self,
        now: Time,
        limit: usize,
        handlers: &'a [String],
    ) -> BoxFuture<'a, StoreResult<Vec<tidings::store::Delivery>>> {
        self.inner.claim_deliveries(now, limit, handlers)
    }
    fn complete_deliveries(
        &self,
        completions: Vec<tidings::store::Completion>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let fail = completions.iter().any(|c| !c.produced.is_empty())
            && self
                .failing_completions
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |left| left.checked_sub(1),
                )
                .is_ok();
        if fail {
            let lost = tidings::StoreError::new(
                tidings::ErrorKind::Unavailable,
                "the connection to the database was lost",
                None,
            );
            return Box::pin(std::future::ready(Err(lost)));
        }
        self.inner.complete_deliveries(completions)
    }
    fn retry_delivery(
        &self,
        id: tidings::store::DeliveryId,
        attempt: u32,
        error: String,
        at: Time,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.retry_delivery(id, attempt, error, at)
    }
    fn dead_letter_delivery(
        &self,
        id: tidings::store::DeliveryId,
        attempt: u32,
        error: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.dead_letter_delivery(id, attempt, error)
    }
    fn dead_letter_message(
        &self,
        event: tidings::store::StoredEvent,
        error: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.dead_letter_message(event, error)
    }
    fn replay_dead_letter(&self, id: tidings::DeadLetterId) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.replay_dead_letter(id)
    }
    fn discard_dead_letter(&self, id: tidings::DeadLetterId) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.discard_dead_letter(id)
    }
    fn next_delivery_due(&self) -> BoxFuture<'_, StoreResult<Option<Time>>> {
        self.inner.next_delivery_due()
    }
    fn claim_rows(
        &self,
        now: Time,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<tidings::store::IntegrationRow>>> {
        self.claims
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.claim_rows(now, limit)
    }
    fn row_published(
        &self,
        id: tidings::store::RowId,
        archive: bool,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.row_published(id, archive)
    }
    fn retry_row(
        &self,
        id: tidings::store::RowId,
        attempt: u32,
        error: String,
        at: Time,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.retry_row(id, attempt, error, at)
    }
    fn next_row_due(&self) -> BoxFuture<'_, StoreResult<Option<Time>>> {
        self.inner.next_row_due()
    }
    fn dead_letters(&self) -> BoxFuture<'_, StoreResult<Vec<tidings::DeadLetter>>> {
        self.inner.dead_letters()
    }
    fn count_pending(&self) -> BoxFuture<'_, StoreResult<(usize, usize)>> {
        self.inner.count_pending()
    }
    fn prune(&self, inbox: Time, archive: Time, limit: usize) -> BoxFuture<'_, StoreResult<usize>> {
        self.inner.prune(inbox, archive, limit)
    }
    fn lease(&self) -> Option<std::time::Duration> {
        self.inner.lease()
    }
    fn extend_claims(
        &self,
        claims: Vec<(tidings::store::DeliveryId, u32)>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.extend_claims(claims)
    }
}

type Time = chrono::DateTime<chrono::Utc>;
type StoreResult<T> = Result<T, tidings::StoreError>;
use tidings::store::BoxFuture;

#[tokio::test]
async fn the_relay_waits_for_a_parked_keys_head_without_spinning() {
    let store: Counting = Counting::default();
    let claims = std::sync::Arc::clone(&store.claims);
    let published = InMemoryTransport::default();
    let broker = support::RefusesKey::new("stuck", published.clone());
    let app = Tidings::builder("catalog")
        .store(store)
        .transport(broker.clone())
        .provide(Received::default())
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .initial_delay(std::time::Duration::from_millis(40))
                .max_delay(std::time::Duration::from_millis(80)),
        )
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    for step in 0..3 {
        for sku in ["stuck", "free"] {
            let event = PriceReduced {
                sku: sku.into(),
                step,
            };
            app.domain_events().publish(event).await.unwrap();
        }
    }
    while published.published().len() < 3 {
        tokio::task::yield_now().await;
    }
    // The rows behind the parked head are due, and not claimable: the relay waits for the
    // head's next retry instead of claiming again at once. A relay that spun would claim dozens
    // of times between two retries of the head.
    let (claims_before, retries_before) = (
        claims.load(std::sync::atomic::Ordering::SeqCst),
        broker.refused(),
    );
    while broker.refused() < retries_before + 8 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let claimed = claims.load(std::sync::atomic::Ordering::SeqCst) - claims_before;
    assert!(
        claimed <= 8 * 4,
        "{claimed} claims for 8 retries of the head"
    );
    let stuck: Vec<u32> = published
        .published()
        .iter()
        .map(|m| {
            m.data.decode::<serde_json::Value>().unwrap()["step"]
                .as_u64()
                .unwrap() as u32
        })
        .collect();
    assert_eq!(stuck, [0, 1, 2], "only the free key flowed, in order");
    running.shutdown().await.unwrap();
}

/// Messages the transport already holds are recorded in the inbox together, up to
/// `inbox_batch` per store call (one transaction), not one call each; every one is handled once.
#[tokio::test]
async fn ready_messages_are_recorded_together() {
    for (batch, calls) in [(64, 2..=4), (1, 100..=100)] {
        let transport = InMemoryTransport::new().hold(100);
        for sku in 0..100 {
            let message = Message {
                id: Uuid::now_v7(),
                source: "elsewhere".into(),
                contract: "catalog.product-discontinued".into(),
                version: 1,
                key: Some(sku.to_string()),
                time: chrono::Utc::now(),
                correlation_id: Uuid::now_v7(),
                causation_id: None,
                traceparent: None,
                data: serde_json::json!({ "sku": sku.to_string() }).into(),
            };
            transport.publish(message).await.unwrap();
        }
        let store: Counting = Counting::default();
        let inbox_records = std::sync::Arc::clone(&store.inbox_records);
        let app = Tidings::builder("catalog")
            .store(store)
            .transport(transport)
            .provide(Received::default())
            .inbox_batch(batch)
            .build()
            .unwrap();
        let running = app.start().await.unwrap();
        running.settle().await;
        running.shutdown().await.unwrap();

        assert_eq!(received(&app).len(), 100, "inbox_batch({batch})");
        let recorded = inbox_records.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            calls.contains(&recorded),
            "inbox_batch({batch}): 100 ready messages took {recorded} store calls, not {calls:?}"
        );
    }
}

/// A translation whose completion the store failed to record (its connection was lost) is not
/// overtaken by the next events of its handler's claimed batch: they would complete before it,
/// and their integration events would be published before its own, out of order per key. The
/// rest of the batch waits for the claims to expire; then all of it is published, in order.
#[tokio::test]
async fn a_completion_the_store_failed_to_record_is_not_overtaken() {
    let db = support::TempDb::new();
    let sqlite = tidings::SqliteStore::open(&db.0)
        .await
        .unwrap()
        .lease(std::time::Duration::from_millis(300));
    let store = Counting::around(sqlite, 1);
    let transport = InMemoryTransport::default();
    let app = Tidings::builder("catalog")
        .store(store.clone())
        .transport(transport.clone())
        .provide(Received::default())
        .poll_interval(std::time::Duration::from_millis(50))
        .build()
        .unwrap();
    // Recorded before the app starts: the dispatcher claims them in one batch.
    for step in 0..4 {
        let event = PriceReduced {
            sku: "a".into(),
            step,
        };
        app.domain_events().publish(event).await.unwrap();
    }
    let running = app.start().await.unwrap();
    if let Err(unsettled) = running.settle_for(std::time::Duration::from_secs(20)).await {
        panic!("{unsettled}");
    }
    assert_eq!(
        store
            .failing_completions
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the store failed a completion"
    );
    let steps: Vec<u32> = transport
        .published_of::<PriceChangedIntegrationEvent>()
        .iter()
        .map(|event| event.step)
        .collect();
    assert_eq!(steps, [0, 1, 2, 3], "published in order");
    let seen: Vec<u32> = received(&app).iter().map(|s| s.1).collect();
    assert_eq!(seen, [0, 1, 2, 3], "received in order, once each");
    running.shutdown().await.unwrap();
}
