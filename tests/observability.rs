//! What an operator sees: `Running::health` through a broker outage (NATS behind a proxy of
//! the test's own, cut and healed), and the metrics in Prometheus's text format, scraped over
//! HTTP from the two-service example's endpoint, moving with the backlog and the handled
//! deliveries.

#[path = "../examples/observe.rs"]
mod observe;
mod support;

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use support::broker::LinkProxy;
use support::nats::Broker;
use tidings::prelude::*;
use tidings::{HealthStatus, Running};

/// The longest wait for what must happen; no test asserts how long anything takes.
const PATIENCE: Duration = Duration::from_secs(30);

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParcelScanned {
    pub parcel_id: String,
}

#[integration_event(name = "shipping.parcel-scanned", from = ParcelScanned, key = parcel_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParcelScannedIntegrationEvent {
    pub parcel_id: String,
}

#[handles]
fn track(event: &ParcelScanned) -> ParcelScannedIntegrationEvent {
    ParcelScannedIntegrationEvent {
        parcel_id: event.parcel_id.clone(),
    }
}

/// The process's Prometheus recorder: the metrics of every app of the test binary.
fn recorder() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("the test binary's only recorder")
        })
        .clone()
}

/// `GET path` from the endpoint at `addr`: the status and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("an HTTP status");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn sample(scraped: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    scraped
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{metric}{{")) || line.starts_with(&format!("{metric} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn start_shipping(url: &str, broker: &Broker) -> (Tidings, Running) {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(1))
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(url)
        .await
        .expect("NATS answers through the proxy");
    let app = Tidings::builder("shipping")
        .store(InMemoryStore::new())
        .transport(broker.builder().from_client(client))
        .metrics_interval(Duration::from_millis(100))
        .retry(tidings::RetryPolicy::default().max_delay(Duration::from_millis(200)))
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running)
}

#[tokio::test]
async fn a_broker_outage_is_degraded_not_dead_and_the_metrics_show_the_backlog() {
    let Some(broker) = Broker::new("a_broker_outage_is_degraded_not_dead") else {
        return;
    };
    let nats: std::net::SocketAddr = broker
        .url
        .trim_start_matches("nats://")
        .parse()
        .expect("NATS_URL is nats://<ip>:<port>");
    let proxy = LinkProxy::start_to(nats).await;
    let (app, running) = start_shipping(&proxy.url(), &broker).await;
    let endpoint = observe::Endpoint::bind(([127, 0, 0, 1], 0).into(), recorder())
        .await
        .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let scrape = || async move { get(addr, "/metrics").await.1 };
    observe::serving(Some(&endpoint), &running, async {
        let events = app.domain_events();
        let scan = |parcel: &str| {
            events.publish(ParcelScanned {
                parcel_id: parcel.into(),
            })
        };

        scan("p-1").await.unwrap();
        running.settle_for(PATIENCE).await.unwrap();
        let health = running.health().await;
        assert_eq!(health.status, HealthStatus::Healthy, "{health}");
        assert!(health.is_live() && health.is_ready(), "{health}");

        // The broker goes away: the app is degraded, still live and ready, and its integration
        // events wait in the outbox.
        proxy.refuse();
        proxy.cut_all();
        for parcel in ["p-2", "p-3"] {
            scan(parcel).await.unwrap();
        }
        let degraded = support::eventually(PATIENCE, || async {
            let health = running.health().await;
            health.status == HealthStatus::Degraded && health.rows_waiting.0 == 2
        })
        .await;
        let health = running.health().await;
        assert!(degraded, "degraded, with two rows waiting: {health}");
        assert!(health.is_live() && health.is_ready(), "{health}");
        assert!(!health.broker.answers, "{health}");
        let (ready, body) = get(addr, "/health/ready").await;
        assert_eq!(ready, 200, "a broker outage leaves the app ready: {body}");
        assert!(body.contains("shipping: degraded"), "{body}");
        assert_eq!(get(addr, "/health/live").await.0, 200);
        assert!(health.broker.last_error.is_some(), "{health}");
        assert!(
            health.rows_waiting.1.is_some(),
            "the age of the oldest row: {health}"
        );
        let backlog = support::eventually(PATIENCE, || async {
            let scraped = scrape().await;
            let rows = sample(
                &scraped,
                "tidings_outbox_integration_rows",
                &["tidings_context=\"shipping\"", "shipping.parcel-scanned"],
            );
            let available = sample(&scraped, "tidings_broker_available", &["shipping", "nats"]);
            rows == Some(2.0) && available == Some(0.0)
        })
        .await;
        assert!(
            backlog,
            "the scrape shows two rows waiting and the broker away:\n{}",
            scrape().await
        );

        // Back: healthy again, the outbox drained, the metrics say so.
        proxy.heal();
        let healthy = support::eventually(PATIENCE, || async {
            let health = running.health().await;
            health.status == HealthStatus::Healthy && health.rows_waiting.0 == 0
        })
        .await;
        assert!(healthy, "healthy and drained: {}", running.health().await);
        let drained = support::eventually(PATIENCE, || async {
            let scraped = scrape().await;
            let rows = sample(
                &scraped,
                "tidings_outbox_integration_rows",
                &["shipping.parcel-scanned"],
            );
            let sent = sample(
                &scraped,
                "messaging_client_sent_messages",
                &["shipping.parcel-scanned", "messaging_system=\"nats\""],
            );
            let handled = sample(
                &scraped,
                "tidings_handler_deliveries",
                &["track", "outcome=\"handled\""],
            );
            rows == Some(0.0) && sent.is_some() && handled == Some(3.0)
        })
        .await;
        assert!(
            drained,
            "the scrape shows the outbox drained, what was sent and handled:\n{}",
            scrape().await
        );
    })
    .await;
    running.shutdown().await.unwrap();
}
