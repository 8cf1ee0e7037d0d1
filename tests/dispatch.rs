//! The dispatcher: every domain handler of an event runs with its own delivery state, so a
//! failing handler is retried alone, then dead-lettered, and neither blocks nor re-runs the
//! others.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tidings::prelude::*;
use tidings::{Outcome, RetryPolicy};

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderConfirmed {
    pub order_id: u64,
}

/// How often each handler ran.
#[derive(Debug, Default)]
pub struct Runs {
    mail: AtomicU32,
    flaky: AtomicU32,
    broken: AtomicU32,
    refused: AtomicU32,
    seen: Mutex<Vec<u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the ledger is busy (run {0})")]
    Busy(u32),
    #[error("the ledger rejects order {0}")]
    Rejected(u64),
}

impl Retryable for LedgerError {
    fn is_retryable(&self) -> bool {
        matches!(self, LedgerError::Busy(_))
    }
}

#[handles]
fn send_confirmation_mail(event: &OrderConfirmed, runs: Dep<Runs>) {
    runs.mail.fetch_add(1, Ordering::SeqCst);
    runs.seen.lock().unwrap().push(event.order_id);
}

/// Fails twice, then succeeds.
#[handles]
async fn book_revenue(_event: &OrderConfirmed, runs: Dep<Runs>) -> Result<(), LedgerError> {
    let run = runs.flaky.fetch_add(1, Ordering::SeqCst) + 1;
    if run <= 2 {
        Err(LedgerError::Busy(run))
    } else {
        Ok(())
    }
}

/// Always fails with a retryable error.
#[handles]
async fn notify_warehouse(_event: &OrderConfirmed, runs: Dep<Runs>) -> Result<(), LedgerError> {
    let run = runs.broken.fetch_add(1, Ordering::SeqCst) + 1;
    Err(LedgerError::Busy(run))
}

/// Fails with an error that says retrying is pointless.
#[handles]
fn archive_order(event: &OrderConfirmed, runs: Dep<Runs>) -> Result<(), LedgerError> {
    runs.refused.fetch_add(1, Ordering::SeqCst);
    Err(LedgerError::Rejected(event.order_id))
}

/// The app of this file: every handler's dependency provided. It never polls: the dispatcher
/// wakes for each publication and at each retry's due time, or the tests fail in `settle`.
fn app(store: InMemoryStore, retry: RetryPolicy) -> Tidings {
    Tidings::builder("sales")
        .store(store)
        .provide(Runs::default())
        .provide(PaymentProvider::default())
        .retry(retry)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap()
}

/// Waits until the app is idle: a retry left waiting for a poll that never comes fails here.
async fn settle(running: &Running) {
    if let Err(unsettled) = running.settle_for(Duration::from_secs(60)).await {
        panic!("{unsettled}");
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(4)
        .initial_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
}

#[tokio::test]
async fn each_handler_is_retried_alone_then_dead_lettered() {
    let store = InMemoryStore::default();
    let app = app(store.clone(), fast_retries());
    let running = app.start().await.unwrap();
    let meta = app
        .domain_events()
        .publish(OrderConfirmed { order_id: 7 })
        .await
        .unwrap();
    settle(&running).await;

    let runs = store_runs(&app);
    assert_eq!(
        runs.mail.load(Ordering::SeqCst),
        1,
        "a succeeding handler runs once"
    );
    assert_eq!(
        runs.flaky.load(Ordering::SeqCst),
        3,
        "fails twice, then succeeds"
    );
    assert_eq!(runs.broken.load(Ordering::SeqCst), 4, "up to max_attempts");
    assert_eq!(
        runs.refused.load(Ordering::SeqCst),
        1,
        "not retried: the error says so"
    );
    assert_eq!(*runs.seen.lock().unwrap(), [7]);

    let mut dead = app.dead_letters().await.unwrap();
    dead.sort_by_key(|d| d.handler.clone());
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].handler.as_deref(), Some("dispatch::archive_order"));
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].error, "the ledger rejects order 7");
    assert_eq!(
        dead[1].handler.as_deref(),
        Some("dispatch::notify_warehouse")
    );
    assert_eq!(dead[1].attempts, 4);
    assert_eq!(
        dead[1].error, "the ledger is busy (run 4)",
        "the last error is kept"
    );
    assert!(
        dead.iter()
            .all(|d| d.event_id == meta.id && d.event_name == "OrderConfirmed")
    );

    let outcomes = store.outcomes();
    let of = |handler: &str| -> Vec<&Outcome> {
        outcomes
            .iter()
            .filter(|o| match o {
                Outcome::Completed { handler: h, .. }
                | Outcome::Retrying { handler: h, .. }
                | Outcome::DeadLettered { handler: h, .. } => h == handler,
            })
            .collect()
    };
    assert!(matches!(
        of("dispatch::book_revenue").as_slice(),
        [
            Outcome::Retrying { attempt: 1, .. },
            Outcome::Retrying { attempt: 2, .. },
            Outcome::Completed { attempt: 3, .. }
        ]
    ));
    assert!(matches!(
        of("dispatch::send_confirmation_mail").as_slice(),
        [Outcome::Completed { attempt: 1, .. }]
    ));
    assert_eq!(store.pending(), (0, 0), "nothing is left behind");
    running.shutdown().await.unwrap();
}

fn store_runs(app: &Tidings) -> Dep<Runs> {
    app.dependency::<Runs>().expect("provided")
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InvoiceRequested {
    pub invoice_id: u64,
}

#[handles]
fn render_invoice(event: &InvoiceRequested) {
    if event.invoice_id == 0 {
        panic!("invoice 0 does not exist");
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_its_delivery_and_the_dispatcher_goes_on() {
    let app = app(InMemoryStore::default(), fast_retries().max_attempts(2));
    let running = app.start().await.unwrap();
    let events = app.domain_events();
    events
        .publish(InvoiceRequested { invoice_id: 0 })
        .await
        .unwrap();
    events
        .publish(OrderConfirmed { order_id: 8 })
        .await
        .unwrap();
    settle(&running).await;

    let dead = app.dead_letters().await.unwrap();
    let panicked = dead
        .iter()
        .find(|d| d.handler.as_deref() == Some("dispatch::render_invoice"))
        .expect("the panicking handler is dead-lettered");
    assert_eq!(panicked.attempts, 2);
    assert_eq!(
        panicked.error,
        "the handler panicked: invoice 0 does not exist"
    );
    assert_eq!(
        store_runs(&app).mail.load(Ordering::SeqCst),
        1,
        "the dispatcher kept dispatching"
    );
    running.shutdown().await.unwrap();
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RefundRequested {
    pub order_id: u64,
}

/// Off until the test repairs the payment provider.
#[derive(Debug, Default)]
pub struct PaymentProvider {
    repaired: std::sync::atomic::AtomicBool,
    refunded: Mutex<Vec<u64>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the payment provider is down")]
pub struct ProviderDown;

#[handles]
fn issue_refund(
    event: &RefundRequested,
    provider: Dep<PaymentProvider>,
) -> Result<(), ProviderDown> {
    if !provider.repaired.load(Ordering::SeqCst) {
        return Err(ProviderDown);
    }
    provider.refunded.lock().unwrap().push(event.order_id);
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_replayed_or_discarded() {
    let app = app(InMemoryStore::default(), fast_retries().max_attempts(2));
    let running = app.start().await.unwrap();
    let events = app.domain_events();
    let first = events
        .publish(RefundRequested { order_id: 1 })
        .await
        .unwrap();
    let second = events
        .publish(RefundRequested { order_id: 2 })
        .await
        .unwrap();
    settle(&running).await;
    let dead = app.dead_letters().await.unwrap();
    let letter_of = |event_id| dead.iter().find(|d| d.event_id == event_id).unwrap().id;
    let (first, second) = (letter_of(first.id), letter_of(second.id));

    let provider = app.dependency::<PaymentProvider>().unwrap();
    provider.repaired.store(true, Ordering::SeqCst);
    assert!(app.replay_dead_letter(first).await.unwrap());
    assert!(app.discard_dead_letter(second).await.unwrap());
    settle(&running).await;

    assert_eq!(
        *provider.refunded.lock().unwrap(),
        [1],
        "the replayed delivery ran, once"
    );
    assert!(app.dead_letters().await.unwrap().is_empty());
    assert!(!app.replay_dead_letter(first).await.unwrap(), "it is gone");
    assert!(
        !app.discard_dead_letter(second).await.unwrap(),
        "it is gone"
    );
    running.shutdown().await.unwrap();
}

/// A domain event that no handler handles yet: nothing reacts to it.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderArchived {
    pub order_id: u64,
}

#[tokio::test]
async fn an_event_of_this_context_with_no_handler_is_published_and_records_nothing() {
    let store = InMemoryStore::default();
    let app = Tidings::builder("sales")
        .store(store.clone())
        .provide(Runs::default())
        .provide(PaymentProvider::default())
        .build()
        .unwrap();

    let meta = app
        .domain_events()
        .publish(OrderArchived { order_id: 7 })
        .await
        .expect("an event of this context is accepted, handled or not");

    assert_eq!(meta.source, "sales");
    assert_eq!(store.pending(), (0, 0), "no handler, so no delivery");
}
