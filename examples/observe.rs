//! What an operator of the two services can ask them, given `METRICS_ADDR` (such as
//! `127.0.0.1:9464`): the app's metrics in Prometheus's text format, and its health for a
//! liveness and a readiness probe.
//!
//! ```sh
//! METRICS_ADDR=127.0.0.1:9464 cargo run --example search_service
//! curl -s 127.0.0.1:9464/metrics      # Prometheus's text format
//! curl -s 127.0.0.1:9464/health/ready # 200 or 503, and what is wrong
//! curl -s 127.0.0.1:9464/health/live
//! ```

// Each example uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tidings::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Given `METRICS_ADDR`, installs the Prometheus recorder (before the app starts, so that it
/// records from the first event) and opens the endpoint's listener.
pub(crate) async fn install() -> Result<Option<Endpoint>, Box<dyn std::error::Error>> {
    let Ok(addr) = std::env::var("METRICS_ADDR") else {
        return Ok(None);
    };
    let metrics = PrometheusBuilder::new().install_recorder()?;
    Ok(Some(Endpoint::bind(addr.parse()?, metrics).await?))
}

/// The metrics and health endpoint of one app.
#[derive(Debug)]
pub(crate) struct Endpoint {
    listener: TcpListener,
    metrics: PrometheusHandle,
}

impl Endpoint {
    /// An endpoint on `addr` that renders the metrics `metrics` records.
    pub(crate) async fn bind(addr: SocketAddr, metrics: PrometheusHandle) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Endpoint { listener, metrics })
    }

    /// Where it listens.
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers `GET /metrics`, `/health/live` and `/health/ready` about `running`, one request
    /// at a time, until dropped.
    pub(crate) async fn serve(&self, running: &Running) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                continue;
            };
            if let Err(error) = self.answer(stream, running).await {
                eprintln!("metrics endpoint: {error}");
            }
        }
    }

    async fn answer(&self, mut stream: TcpStream, running: &Running) -> std::io::Result<()> {
        let mut request = [0; 1024];
        let read = stream.read(&mut request).await?;
        let request = String::from_utf8_lossy(&request[..read]);
        let path = request.split_whitespace().nth(1).unwrap_or("/");
        let (status, content_type, body) = match path {
            "/metrics" => (200, "text/plain; version=0.0.4", self.metrics.render()),
            "/health/live" | "/health/ready" => {
                let health = running.health().await;
                let up = if path == "/health/live" {
                    health.is_live()
                } else {
                    health.is_ready()
                };
                (if up { 200 } else { 503 }, "text/plain", health.to_string())
            }
            _ => (
                404,
                "text/plain",
                "try /metrics, /health/live or /health/ready\n".into(),
            ),
        };
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            _ => "Service Unavailable",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    }
}

/// Runs `work` while `endpoint`, if any, answers about `running`; returns what `work` returns.
pub(crate) async fn serving<T>(
    endpoint: Option<&Endpoint>,
    running: &Running,
    work: impl Future<Output = T>,
) -> T {
    match endpoint {
        None => work.await,
        Some(endpoint) => {
            tokio::select! {
                output = work => output,
                () = endpoint.serve(running) => unreachable!("the endpoint serves until dropped"),
            }
        }
    }
}
