//! What the two services send to an operator's tools, when the environment asks: traces to an
//! OpenTelemetry collector (`OTEL_EXPORTER_OTLP_ENDPOINT`, OTLP over HTTP, as the standard
//! variable says), and their log as JSON lines on standard error (`LOG_FORMAT=json`), every line
//! of tidings inside the spans of its event: event id, correlation id, handler.
//!
//! ```sh
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example search_service
//! ```

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The service's tracing, as installed; [`finish`](Self::finish) sends what is left.
#[derive(Debug)]
pub(crate) struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

/// Installs the subscriber the environment asks for, for `service` (its `service.name`).
pub(crate) fn install(service: &'static str) -> Result<Telemetry, Box<dyn std::error::Error>> {
    let traces = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        None => None,
        Some(_) => {
            // The HTTP client's rustls has no crypto provider of its own in this build (the
            // Pub/Sub client picks ring): the process's default is ring, if none is set yet.
            let _ = rustls::crypto::ring::default_provider().install_default();
            // Reads the endpoint (and OTEL_EXPORTER_OTLP_* settings) from the environment.
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_resource(Resource::builder().with_service_name(service).build())
                    .with_batch_exporter(exporter)
                    .build(),
            )
        }
    };
    let otel = traces
        .as_ref()
        .map(|traces| tracing_opentelemetry::layer().with_tracer(traces.tracer(service)));
    let json = (std::env::var("LOG_FORMAT").as_deref() == Ok("json")).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
    });
    if otel.is_some() || json.is_some() {
        tracing_subscriber::registry()
            .with(LevelFilter::INFO)
            .with(otel)
            .with(json)
            .try_init()?;
    }
    Ok(Telemetry { traces })
}

impl Telemetry {
    /// Exports the spans not sent yet, off the async runtime (the exporter blocks).
    pub(crate) async fn finish(self) {
        if let Some(traces) = self.traces {
            let shutdown = tokio::task::spawn_blocking(move || traces.shutdown()).await;
            if let Ok(Err(error)) = shutdown {
                eprintln!("could not export the last traces: {error}");
            }
        }
    }
}
