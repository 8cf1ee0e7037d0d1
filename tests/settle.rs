//! `settle_for`: settles as `settle` does, or gives up after its time and says what still waits,
//! calling out the deliveries that no app here can take.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use support::TempDb;
use tidings::prelude::*;
use tidings::store::{NewEvent, Store, WaitCounts};
use tidings::{SqliteStore, Unsettled};

mod support;

pub mod shipping {
    tidings::context!("shipping");

    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ParcelPacked {
        pub parcel: u32,
    }

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ParcelLost {
        pub parcel: u32,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the tracking service is away")]
    pub struct TrackingAway;

    #[handles]
    fn ship_parcel(_event: &ParcelPacked) {}

    /// Fails, always: its delivery waits for its next attempt.
    #[handles]
    fn trace_parcel(_event: &ParcelLost) -> Result<(), TrackingAway> {
        Err(TrackingAway)
    }
}

pub mod billing {
    tidings::context!("billing");

    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct InvoiceIssued {
        pub invoice: u32,
    }

    #[handles]
    fn send_invoice(_event: &InvoiceIssued) {}
}

const SHIP_PARCEL: &str = "settle::shipping::ship_parcel";
const TRACE_PARCEL: &str = "settle::shipping::trace_parcel";
const SEND_INVOICE: &str = "settle::billing::send_invoice";

/// Long enough for any machine to settle what a test gives it.
const PATIENT: Duration = Duration::from_secs(60);
/// For an app that will not settle: the error comes after it.
const SHORT: Duration = Duration::from_millis(200);

fn shipping(store: impl Store) -> Tidings {
    Tidings::builder("shipping")
        .store(store)
        .poll_interval(Duration::from_millis(50))
        .build()
        .expect("the shipping app builds")
}

fn billing(store: impl Store) -> Tidings {
    Tidings::builder("billing")
        .store(store)
        .poll_interval(Duration::from_millis(50))
        .build()
        .expect("the billing app builds")
}

async fn sqlite(db: &TempDb) -> SqliteStore {
    SqliteStore::open(&db.0)
        .await
        .expect("the SQLite file opens")
        .lease(Duration::from_secs(3600))
}

/// The error of an app that must not settle within [`SHORT`].
async fn unsettled(running: &Running) -> Unsettled {
    let error = running
        .settle_for(SHORT)
        .await
        .expect_err("the app cannot settle");
    eprintln!("{error}");
    error
}

#[tokio::test]
async fn an_idle_app_settles() {
    let app = shipping(InMemoryStore::new());
    let running = app.start().await.unwrap();
    running.settle_for(PATIENT).await.unwrap();

    app.domain_events()
        .publish(shipping::ParcelPacked { parcel: 1 })
        .await
        .unwrap();
    running.settle_for(PATIENT).await.unwrap();
    running.shutdown().await.unwrap();
}

/// Two contexts in one SQLite file: the billing app recorded a delivery of its handler, and
/// only the shipping app runs. Shipping never takes it; the error says so and names it. Once
/// the billing app runs too, both settle.
#[tokio::test]
async fn deliveries_of_a_handler_no_app_here_runs_are_called_out() {
    let db = TempDb::new();
    let billing = billing(sqlite(&db).await);
    billing
        .domain_events()
        .publish(billing::InvoiceIssued { invoice: 7 })
        .await
        .unwrap();
    let shipping = shipping(sqlite(&db).await);
    let running = shipping.start().await.unwrap();

    let error = unsettled(&running).await;
    let [app] = &error.apps[..] else {
        panic!("one app settled: {error:?}")
    };
    assert_eq!(app.context, "shipping");
    assert_eq!(app.not_run.len(), 1, "{error}");
    assert_eq!(app.not_run[0].handler, SEND_INVOICE);
    assert_eq!(app.not_run[0].counts.total(), 1);
    assert_eq!(app.not_run[0].run_by, None);
    assert!(app.handlers.is_empty(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "handler `{SEND_INVOICE}` is not run by the `shipping` app: 1 delivery"
        )),
        "{text}"
    );
    assert!(text.contains("will wait for an app that runs it"), "{text}");

    let running_billing = billing.start().await.unwrap();
    Running::settle_all_for(&[&running, &running_billing], PATIENT)
        .await
        .unwrap();
    running.shutdown().await.unwrap();
    running_billing.shutdown().await.unwrap();
}

/// A delivery recorded in the store for a handler this program does not have (one removed
/// since, say) waits for ever; settling together with another app does not change that.
#[tokio::test]
async fn a_delivery_of_an_unknown_handler_is_called_out() {
    let store = InMemoryStore::new();
    store
        .record(vec![NewEvent {
            event: tidings::testing::domain_event("ParcelWeighed", json!({ "parcel": 3 })),
            handlers: vec!["shipping::weigh_parcel".to_owned()],
        }])
        .await
        .unwrap();
    let shipping = shipping(store);
    let billing = billing(InMemoryStore::new());
    let running_shipping = shipping.start().await.unwrap();
    let running_billing = billing.start().await.unwrap();

    let error = Running::settle_all_for(&[&running_shipping, &running_billing], SHORT)
        .await
        .expect_err("a delivery no app takes waits");
    eprintln!("{error}");
    let [shipping_waits, billing_waits] = &error.apps[..] else {
        panic!("two apps settled: {error:?}")
    };
    assert_eq!(shipping_waits.not_run.len(), 1, "{error}");
    assert_eq!(shipping_waits.not_run[0].handler, "shipping::weigh_parcel");
    assert!(billing_waits.is_settled(), "{error}");
    let text = error.to_string();
    assert!(text.starts_with("the apps did not settle within"), "{text}");
    assert!(
        text.contains(
            "handler `shipping::weigh_parcel` is not run by the `shipping` app: 1 delivery (1 due now) will wait for an app that runs it"
        ),
        "{text}"
    );
    assert!(
        text.contains("- the `billing` app: nothing waits"),
        "{text}"
    );
    running_shipping.shutdown().await.unwrap();
    running_billing.shutdown().await.unwrap();
}

/// A handler that keeps failing: its delivery waits for the next attempt, an hour ahead, and
/// is reported as scheduled for later.
#[tokio::test]
async fn a_delivery_in_retry_is_reported_as_scheduled() {
    let app = Tidings::builder("shipping")
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_secs(3600))
                .max_delay(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    app.domain_events()
        .publish(shipping::ParcelLost { parcel: 2 })
        .await
        .unwrap();

    // Until the first attempt has failed, the delivery is due or claimed; then it stays
    // scheduled.
    let scheduled = WaitCounts {
        scheduled: 1,
        ..WaitCounts::default()
    };
    let mut error = unsettled(&running).await;
    for _ in 0..100 {
        if error.apps[0].handlers.first().map(|h| h.counts) == Some(scheduled) {
            break;
        }
        error = unsettled(&running).await;
    }
    let app_waits = &error.apps[0];
    assert_eq!(app_waits.handlers.len(), 1, "{error}");
    assert_eq!(app_waits.handlers[0].handler.as_deref(), Some(TRACE_PARCEL));
    assert_eq!(app_waits.handlers[0].counts, scheduled, "{error}");
    assert!(app_waits.not_run.is_empty());
    assert!(
        error.to_string().contains(&format!(
            "handler `{TRACE_PARCEL}`: 1 delivery (1 scheduled for later)"
        )),
        "{error}"
    );
    running.shutdown().await.unwrap();
}

/// Another process claimed a delivery of the app's handler and holds it: the app waits for
/// that claim, and the error says the claim is not the app's.
#[tokio::test]
async fn a_claim_held_by_another_process_is_reported() {
    let db = TempDb::new();
    let app = shipping(sqlite(&db).await);
    app.domain_events()
        .publish(shipping::ParcelPacked { parcel: 4 })
        .await
        .unwrap();
    let other_process = sqlite(&db).await;
    let claimed = other_process
        .claim_deliveries(Utc::now(), 10, &[SHIP_PARCEL.to_owned()])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let running = app.start().await.unwrap();

    let error = unsettled(&running).await;
    let app_waits = &error.apps[0];
    assert_eq!(app_waits.handlers[0].handler.as_deref(), Some(SHIP_PARCEL));
    assert_eq!(
        app_waits.handlers[0].counts,
        WaitCounts {
            claimed: 1,
            ..WaitCounts::default()
        }
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("handler `{SHIP_PARCEL}`: 1 delivery (1 claimed)")),
        "{text}"
    );
    assert!(text.contains("another process holds them"), "{text}");

    other_process
        .complete_deliveries(vec![tidings::store::Completion {
            id: claimed[0].id,
            attempt: claimed[0].attempt,
            produced: Vec::new(),
        }])
        .await
        .unwrap();
    running.settle_for(PATIENT).await.unwrap();
    running.shutdown().await.unwrap();
}
