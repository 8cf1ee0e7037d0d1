//! The relay's window: many keys drain with order per key kept, never more publications in
//! flight than `TidingsBuilder::relay_window`, and as many as it allows, on every store that
//! tidings ships (PostgreSQL on `DATABASE_URL`).
//!
//! The broker here counts the publications in flight: each `publish` call counts from its start
//! to its acknowledgement. The first `window` publications are held until `window` are in
//! flight at once, which a relay that waited for one publication before starting the next
//! would never reach; every later one yields a few times before it is acknowledged, so that
//! publications overlap.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::TempDb;
use tidings::prelude::*;
use tidings::store::Store;
use tidings::transport::{BoxFuture, Inbound, Message, Subscription, Transport};
use tidings::{PostgresStore, SqliteStore, TransportError};
use tokio::sync::Notify;

pub mod shipping {
    tidings::context!("shipping");

    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ParcelScanned {
        pub parcel: u32,
        pub scan: u32,
    }

    #[integration_event(name = "shipping.parcel-scanned", from = ParcelScanned, key = parcel)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ParcelScannedIntegrationEvent {
        pub parcel: u32,
        pub scan: u32,
    }

    #[handles]
    fn announce_scan(event: &ParcelScanned) -> ParcelScannedIntegrationEvent {
        ParcelScannedIntegrationEvent {
            parcel: event.parcel,
            scan: event.scan,
        }
    }
}

use shipping::ParcelScanned;

/// A broker that counts the publications in flight, holds the first `gate` of them until that
/// many are in flight at once, and keeps what it acknowledged, in order.
#[derive(Clone, Default)]
struct CountingBroker {
    gate: usize,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    opened: Arc<AtomicBool>,
    open: Arc<Notify>,
    acknowledged: Arc<Mutex<Vec<Message>>>,
}

/// How long a held publication waits for the others before it gives up waiting: only so that
/// a relay that never fills its window fails the test's assertion instead of hanging it.
const GATE_PATIENCE: Duration = Duration::from_secs(20);

impl CountingBroker {
    fn new(gate: usize) -> Self {
        CountingBroker {
            gate,
            ..Self::default()
        }
    }

    fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// The acknowledged scans of each parcel, in the order the broker acknowledged them.
    fn scans_by_parcel(&self) -> BTreeMap<u64, Vec<u64>> {
        let mut scans: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for message in self.acknowledged.lock().unwrap().iter() {
            let data: serde_json::Value = message.data.decode().unwrap();
            let parcel = data["parcel"].as_u64().unwrap();
            assert_eq!(message.key, Some(parcel.to_string()));
            scans
                .entry(parcel)
                .or_default()
                .push(data["scan"].as_u64().unwrap());
        }
        scans
    }

    /// Holds a publication until `gate` are in flight (or the gate opened already).
    async fn pass_gate(&self, in_flight: usize) {
        if in_flight >= self.gate {
            self.opened.store(true, Ordering::SeqCst);
            self.open.notify_waiters();
        }
        let opened = self.open.notified();
        tokio::pin!(opened);
        opened.as_mut().enable();
        if self.opened.load(Ordering::SeqCst) {
            return;
        }
        if tokio::time::timeout(GATE_PATIENCE, opened).await.is_err() {
            // Never filled: let everything through, so that the assertions tell.
            self.opened.store(true, Ordering::SeqCst);
            self.open.notify_waiters();
        }
    }
}

impl Transport for CountingBroker {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            self.pass_gate(now).await;
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            self.acknowledged.lock().unwrap().push(message);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn subscribe(
        &self,
        _subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        Box::pin(std::future::ready(Err(TransportError::new(
            tidings::ErrorKind::Invalid,
            "the counting broker has no consumers",
            None,
        ))))
    }
}

/// Scans `parcels` parcels `scans` times each (scan 0 of every parcel, then scan 1, ...), lets
/// an app with `window` drain them to a counting broker, and checks what the broker got: every
/// scan once, each parcel's in order, at most `window` in flight, and `window` at some point.
async fn drains_in_order_within_the_window(
    store: impl Store + Clone,
    window: usize,
    parcels: u32,
    scans: u32,
) {
    let broker = CountingBroker::new(window);
    let app = Tidings::builder("shipping")
        .store(store.clone())
        .transport(broker.clone())
        .relay_window(window)
        .build()
        .unwrap();
    for scan in 0..scans {
        for parcel in 0..parcels {
            app.domain_events()
                .publish(ParcelScanned { parcel, scan })
                .await
                .unwrap();
        }
    }
    let running = app.start().await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), running.settle())
        .await
        .expect("the app drains its outbox");
    running.shutdown().await.unwrap();

    let scans_by_parcel = broker.scans_by_parcel();
    assert_eq!(scans_by_parcel.len(), parcels as usize);
    let in_order: Vec<u64> = (0..u64::from(scans)).collect();
    for (parcel, got) in &scans_by_parcel {
        assert_eq!(
            got, &in_order,
            "the scans of parcel {parcel}, in order, once"
        );
    }
    assert!(
        broker.most_in_flight() <= window,
        "{} publications in flight with a window of {window}",
        broker.most_in_flight()
    );
    assert_eq!(
        broker.most_in_flight(),
        window,
        "the relay fills its window when enough keys wait"
    );
    assert_eq!(store.count_pending().await.unwrap(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_keys_drain_in_order_within_the_window_in_memory() {
    drains_in_order_within_the_window(InMemoryStore::new(), 16, 40, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_one_publishes_one_row_at_a_time() {
    drains_in_order_within_the_window(InMemoryStore::new(), 1, 5, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_keys_drain_in_order_within_the_window_on_sqlite() {
    let db = TempDb::new();
    let store = SqliteStore::open(&db.0).await.unwrap();
    drains_in_order_within_the_window(store, 16, 40, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_keys_drain_in_order_within_the_window_on_postgres() {
    let Some(url) = support::database_url("many_keys_drain_in_order_within_the_window_on_postgres")
    else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "relay_window").await;
    let store = PostgresStore::connect_with(pool, &schema).await.unwrap();
    drains_in_order_within_the_window(store, 16, 40, 25).await;
}

/// A broker that is away for its first `outage` publications, then takes them.
#[derive(Debug, Clone, Default)]
struct AwayAtFirst {
    outage: usize,
    tried: Arc<AtomicUsize>,
}

impl Transport for AwayAtFirst {
    fn publish(&self, _message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        let tried = self.tried.fetch_add(1, Ordering::SeqCst);
        let outcome = if tried < self.outage {
            let kind = tidings::ErrorKind::Unavailable;
            Err(TransportError::new(kind, "the broker is away", None))
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(outcome))
    }

    fn subscribe(
        &self,
        _subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        let refused = TransportError::new(tidings::ErrorKind::Invalid, "no consumers here", None);
        Box::pin(std::future::ready(Err(refused)))
    }
}

/// An outage is one log line when the transport goes away and one when it is back, however many
/// rows and retries it spans.
#[tokio::test]
async fn an_outage_is_one_line_when_it_starts_and_one_when_it_ends() {
    // The current-thread runtime polls every task of the app on this thread.
    let (printed, _default) = support::Printed::capture();
    let broker = AwayAtFirst {
        outage: 12,
        ..AwayAtFirst::default()
    };
    let app = Tidings::builder("shipping")
        .transport(broker.clone())
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(1))
                .max_delay(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    for parcel in 0..4 {
        let scanned = ParcelScanned { parcel, scan: 0 };
        app.domain_events().publish(scanned).await.unwrap();
    }
    running.settle_for(Duration::from_secs(30)).await.unwrap();
    running.shutdown().await.unwrap();

    let printed = printed.text();
    assert!(
        broker.tried.load(Ordering::SeqCst) > 12,
        "the outage spanned retries"
    );
    assert_eq!(
        printed.matches("the transport is unavailable").count(),
        1,
        "{printed}"
    );
    assert_eq!(printed.matches("available again").count(), 1, "{printed}");
    assert_eq!(printed.matches("will retry").count(), 0, "{printed}");
}
