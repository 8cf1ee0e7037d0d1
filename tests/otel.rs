//! One OpenTelemetry trace from a use case in one context, through a translation and NATS, to
//! the inbound handler of another context and to what that handler publishes: the test
//! exports the spans to OpenTelemetry's in-memory exporter and checks the trace id and the
//! parent of every span, a retry included.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporterBuilder, SdkTracerProvider, SpanData};
use support::nats::Broker;
use tidings::prelude::*;
use tidings::{NatsTransport, RetryPolicy, Running};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// The longest wait for what must happen; no test asserts how long anything takes.
const PATIENCE: Duration = Duration::from_secs(20);

/// How many times `warm_cache` ran.
#[derive(Debug, Default)]
pub struct Runs(AtomicU32);

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

    #[handles]
    fn publish_product_updated(event: &ProductPutOnSale) -> ProductUpdatedIntegrationEvent {
        ProductUpdatedIntegrationEvent {
            product_id: event.product_id.clone(),
        }
    }
}

pub mod search {
    tidings::context!("search");

    use std::sync::atomic::Ordering;

    use super::Runs;
    use super::catalog::ProductUpdatedIntegrationEvent;
    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductIndexed {
        pub product_id: String,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the cache is cold")]
    pub struct Cold;

    /// Consumes catalog's contract and runs a use case of search.
    #[handles]
    async fn index_product(
        event: &ProductUpdatedIntegrationEvent,
        events: DomainEvents,
    ) -> Result<(), tidings::Error> {
        events
            .publish(ProductIndexed {
                product_id: event.product_id.clone(),
            })
            .await?;
        Ok(())
    }

    /// Fails its first attempt: the retry is a span of its own in the same trace.
    #[handles]
    fn warm_cache(_event: &ProductIndexed, runs: Dep<Runs>) -> Result<(), Cold> {
        match runs.0.fetch_add(1, Ordering::SeqCst) {
            0 => Err(Cold),
            _ => Ok(()),
        }
    }
}

async fn start(context: &str, transport: &NatsTransport, runs: &Dep<Runs>) -> (Tidings, Running) {
    let app = Tidings::builder(context)
        .store(InMemoryStore::new())
        .transport(transport.clone())
        .provide_dep(runs.clone())
        .retry(RetryPolicy::default().initial_delay(Duration::from_millis(50)))
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running)
}

/// The spans of a trace, found by name and attribute.
struct Spans(Vec<SpanData>);

impl Spans {
    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    }

    /// The spans named `name` whose attribute `key` ends with `value`, oldest first.
    fn all(&self, name: &str, key: &str, value: &str) -> Vec<&SpanData> {
        let mut found: Vec<&SpanData> = self
            .0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| Self::attribute(s, key).is_some_and(|v| v.ends_with(value)))
            .collect();
        found.sort_by_key(|s| s.start_time);
        found
    }

    /// The one span named `name` whose attribute `key` ends with `value`.
    fn one(&self, name: &str, key: &str, value: &str) -> &SpanData {
        match self.all(name, key, value)[..] {
            [span] => span,
            ref other => panic!(
                "one `{name}` span with {key} = …{value}, found {}: {:#?}",
                other.len(),
                self.0.iter().map(|s| &s.name).collect::<Vec<_>>()
            ),
        }
    }
}

/// `child`'s parent is `parent`, in `trace`.
fn assert_child(child: &SpanData, parent: &SpanData, trace: TraceId) {
    assert_eq!(
        child.span_context.trace_id(),
        trace,
        "{} is in the trace",
        child.name
    );
    assert_eq!(
        child.parent_span_id,
        parent.span_context.span_id(),
        "the parent of {} {:?} is {} {:?}",
        child.name,
        child.attributes,
        parent.name,
        parent.attributes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_use_case_through_nats_to_the_other_contexts_handlers() {
    let Some(broker) = Broker::new("one_trace_runs_from_the_use_case_through_nats") else {
        return;
    };
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otel-test")));
    // The workers run on the runtime's threads: the subscriber is the process's.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let transport = broker.transport().await;
    let runs = Dep::new(Runs::default());
    let (catalog, catalog_running) = start("catalog", &transport, &runs).await;
    let (_search, search_running) = start("search", &transport, &runs).await;

    // The use case, as a `#[tracing::instrument]` function would run it.
    let put_on_sale = async {
        catalog
            .domain_events()
            .publish(catalog::ProductPutOnSale {
                product_id: "p-1".into(),
            })
            .await
    };
    put_on_sale
        .instrument(tracing::info_span!("put_product_on_sale"))
        .await
        .unwrap();
    let warmed =
        support::eventually(PATIENCE, || async { runs.0.load(Ordering::SeqCst) >= 2 }).await;
    assert!(
        warmed,
        "warm_cache ran again after its failure within {PATIENCE:?}"
    );
    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
    provider.force_flush().unwrap();

    let spans = Spans(exporter.get_finished_spans().unwrap());
    let use_case = spans
        .0
        .iter()
        .find(|s| s.name == "put_product_on_sale")
        .expect("the use case's span");
    let trace = use_case.span_context.trace_id();
    assert_eq!(
        use_case.parent_span_id,
        SpanId::INVALID,
        "the use case starts the trace"
    );

    // Catalog: the use case publishes; the dispatcher runs the translation.
    let publish = spans.one("tidings.publish", "event", "ProductPutOnSale");
    assert_child(publish, use_case, trace);
    let dispatch = spans.one("tidings.dispatch", "handler", "::publish_product_updated");
    assert_child(dispatch, publish, trace);
    let translation = spans.one(
        "tidings.translation",
        "handler",
        "::publish_product_updated",
    );
    assert_child(translation, dispatch, trace);
    // The relay publishes what the translation produced, to NATS.
    let relay = spans.one("tidings.relay", "contract", "catalog.product-updated");
    assert_child(relay, translation, trace);

    // Search, through the broker: the consumer continues the relay's span.
    let consume = spans.one("tidings.consume", "context", "search");
    assert_child(consume, relay, trace);
    let dispatch = spans.one("tidings.dispatch", "handler", "::index_product");
    assert_child(dispatch, consume, trace);
    let inbound = spans.one("tidings.handler", "handler", "::index_product");
    assert_child(inbound, dispatch, trace);
    // The use case the inbound handler runs, and the handler of what it publishes.
    let publish = spans.one("tidings.publish", "event", "ProductIndexed");
    assert_child(publish, inbound, trace);
    let attempts = spans.all("tidings.dispatch", "handler", "::warm_cache");
    assert_eq!(attempts.len(), 2, "a failed attempt and its retry");
    for (attempt, dispatch) in attempts.iter().enumerate() {
        assert_child(dispatch, publish, trace);
        assert_eq!(
            Spans::attribute(dispatch, "attempt").as_deref(),
            Some((attempt + 1).to_string().as_str())
        );
        let handler = spans
            .0
            .iter()
            .find(|s| {
                s.name == "tidings.handler" && s.parent_span_id == dispatch.span_context.span_id()
            })
            .expect("the handler's span of each attempt");
        assert_child(handler, dispatch, trace);
    }
}
