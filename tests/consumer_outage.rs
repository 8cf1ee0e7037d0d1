//! A consumer whose broker fails to deliver logs one line when receiving starts to fail and one
//! when it resumes, however many retries lie between, and loses nothing meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings::prelude::*;
use tidings::transport::{BoxFuture, Inbound, Message, Received, Subscription, Transport};
use tidings::{ErrorKind, TransportError};

mod support;

#[integration_event(name = "billing.invoice-sent")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InvoiceSentIntegrationEvent {
    pub invoice: u32,
}

#[derive(Debug, Default)]
pub struct Seen(Mutex<Vec<u32>>);

#[handles]
fn file_invoice(event: &InvoiceSentIntegrationEvent, seen: Dep<Seen>) {
    seen.0.lock().unwrap().push(event.invoice);
}

/// A broker whose subscription fails `outage` times, then delivers one message.
#[derive(Debug, Clone)]
struct Flaky {
    outage: usize,
    tried: Arc<AtomicUsize>,
}

struct FlakyInbound {
    broker: Flaky,
    delivered: bool,
}

impl Inbound for FlakyInbound {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>> {
        Box::pin(async move {
            if self.broker.tried.fetch_add(1, Ordering::SeqCst) < self.broker.outage {
                let away = TransportError::new(ErrorKind::Unavailable, "the broker is away", None);
                return Some(Err(away));
            }
            if self.delivered {
                // Nothing more: wait until the app stops.
                std::future::pending::<()>().await;
            }
            self.delivered = true;
            let id = uuid::Uuid::now_v7();
            let message = Message {
                id,
                source: "billing".to_owned(),
                contract: "billing.invoice-sent".to_owned(),
                version: 1,
                key: None,
                time: chrono::Utc::now(),
                correlation_id: id,
                causation_id: None,
                traceparent: None,
                data: serde_json::json!({ "invoice": 7 }).into(),
            };
            Some(Ok(Received::new(message, || {
                Box::pin(std::future::ready(Ok(())))
            })))
        })
    }
}

impl Transport for Flaky {
    fn publish(&self, _message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe(
        &self,
        _subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        let inbound = FlakyInbound {
            broker: self.clone(),
            delivered: false,
        };
        Box::pin(std::future::ready(
            Ok(Box::new(inbound) as Box<dyn Inbound>),
        ))
    }
}

#[tokio::test]
async fn an_outage_of_receiving_is_one_line_when_it_starts_and_one_when_it_ends() {
    // The current-thread runtime polls every task of the app on this thread.
    let (printed, _default) = support::Printed::capture();
    let broker = Flaky {
        outage: 8,
        tried: Arc::default(),
    };
    let seen = Dep::new(Seen::default());
    let app = Tidings::builder("accounting")
        .transport(broker.clone())
        .provide_dep(seen.clone())
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(1))
                .max_delay(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let running = app.start().await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.0.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.settle_for(Duration::from_secs(20)).await.unwrap();
    running.shutdown().await.unwrap();

    assert_eq!(
        *seen.0.lock().unwrap(),
        [7],
        "the message came after the outage"
    );
    let printed = printed.text();
    assert_eq!(printed.matches("could not receive").count(), 1, "{printed}");
    assert_eq!(printed.matches("receiving again").count(), 1, "{printed}");
}

/// A message whose recording fails (the store's file is locked) is recorded again, with
/// backoff, before the next one: a transport that does not redeliver loses nothing.
#[tokio::test]
async fn a_message_whose_recording_fails_is_recorded_again() {
    let db = support::TempDb::new();
    let options =
        tidings::SqliteStore::connect_options(&db.0).busy_timeout(Duration::from_millis(20));
    let store = tidings::SqliteStore::open_with(options).await.unwrap();
    // Another writer holds the file's write lock: the consumer's recording fails meanwhile.
    let other = sqlx::SqlitePool::connect_with(tidings::SqliteStore::connect_options(&db.0))
        .await
        .unwrap();
    let lock = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let broker = Flaky {
        outage: 0,
        tried: Arc::default(),
    };
    let tried = Arc::clone(&broker.tried);
    let seen = Dep::new(Seen::default());
    let app = Tidings::builder("accounting")
        .store(store)
        .transport(broker)
        .provide_dep(seen.clone())
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    // The one message arrives, and its recording fails while the lock is held.
    while tried.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(seen.0.lock().unwrap().is_empty(), "nothing recorded yet");
    lock.rollback().await.unwrap();

    running.settle_for(Duration::from_secs(20)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.0.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.shutdown().await.unwrap();
    assert_eq!(
        *seen.0.lock().unwrap(),
        [7],
        "handled once, after the lock was released"
    );
}
