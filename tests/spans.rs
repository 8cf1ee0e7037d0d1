//! Every hop is a `tracing` span that carries the event id and the correlation id: publish,
//! dispatch, each handler, translation, relay and consume.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tidings::prelude::*;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderConfirmed {
    pub order_id: String,
}

#[integration_event(name = "sales.order-confirmed", from = OrderConfirmed, key = order_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderConfirmedIntegrationEvent {
    pub order_id: String,
}

#[handles]
fn confirm(event: &OrderConfirmed) -> OrderConfirmedIntegrationEvent {
    OrderConfirmedIntegrationEvent {
        order_id: event.order_id.clone(),
    }
}

#[handles]
fn send_mail(_event: &OrderConfirmed) {}

#[handles]
fn ship(_event: &OrderConfirmedIntegrationEvent) {}

/// A span as recorded: its name and its fields.
type Recorded = (String, HashMap<String, String>);

/// Records every new span.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Recorded>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let name = attrs.metadata().name().to_owned();
        self.0.lock().unwrap().push((name, fields));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_hop_is_a_span_with_the_event_and_correlation_ids() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = Tidings::builder("sales").build().unwrap();
    let running = app.start().await.unwrap();
    let published = app
        .domain_events()
        .publish(OrderConfirmed {
            order_id: "o-1".into(),
        })
        .await
        .unwrap();
    running.settle().await;
    running.shutdown().await.unwrap();

    let spans = capture.0.lock().unwrap();
    let find = |name: &str, handler: Option<&str>| -> &HashMap<String, String> {
        &spans
            .iter()
            .find(|(n, f)| {
                n == name
                    && handler.is_none_or(|h| f.get("handler").is_some_and(|v| v.ends_with(h)))
            })
            .unwrap_or_else(|| panic!("a `{name}` span for {handler:?} in {spans:?}"))
            .1
    };
    let domain_id = published.id.to_string();
    let correlation = published.correlation_id.to_string();

    let publish = find("tidings.publish", None);
    assert_eq!(publish["event"], "OrderConfirmed");
    assert_eq!(publish["event_id"], domain_id);
    assert_eq!(publish["correlation_id"], correlation);

    for (name, handler) in [
        ("tidings.dispatch", "::send_mail"),
        ("tidings.handler", "::send_mail"),
        ("tidings.dispatch", "::confirm"),
        ("tidings.translation", "::confirm"),
    ] {
        let span = find(name, Some(handler));
        assert_eq!(span["event_id"], domain_id, "{name} {handler}");
        assert_eq!(span["correlation_id"], correlation, "{name} {handler}");
        assert_eq!(span["attempt"], "1", "{name} {handler}");
    }

    let relay = find("tidings.relay", None);
    assert_eq!(relay["contract"], "sales.order-confirmed");
    assert_eq!(relay["correlation_id"], correlation);
    let contract_id = relay["event_id"].clone();
    assert_ne!(
        contract_id, domain_id,
        "the integration event has its own id"
    );

    let consume = find("tidings.consume", None);
    assert_eq!(consume["event_id"], contract_id);
    assert_eq!(consume["correlation_id"], correlation);

    let inbound = find("tidings.handler", Some("::ship"));
    assert_eq!(inbound["event_id"], contract_id);
    assert_eq!(inbound["correlation_id"], correlation);
}
