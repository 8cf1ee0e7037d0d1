//! The e-commerce example: a catalog context whose use cases publish domain events, handlers that
//! react in-process, and translations into the integration events other contexts consume.
//!
//! Run it with `cargo run --example shop`. It prints what the macros registered: every event,
//! contract, translation and handler, with where it is declared.

use tidings::prelude::*;
use tidings::{HandlerInfo, registry};

// ---- Domain events: the catalog's own language ----------------------------------------------

/// A product was put on sale at a price.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
    pub price_cents: i64,
}

/// Stock arrived for a product.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductRestocked {
    pub product_id: String,
    pub quantity: u32,
}

/// An order was confirmed.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderConfirmed {
    pub order_id: String,
    pub total_cents: i64,
}

// ---- Integration events: the catalog's public, versioned contracts --------------------------

/// Other contexts learn that a product changed.
#[integration_event(name = "catalog.product-updated", version = 1, from = [ProductPutOnSale, ProductRestocked], key = product_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
}

/// Other contexts learn that an order was confirmed.
#[integration_event(name = "sales.order-confirmed", version = 1, from = OrderConfirmed, key = order_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderConfirmedIntegrationEvent {
    pub order_id: String,
    pub total_cents: i64,
}

/// A plain mapping is enough: `From` is the translation.
impl From<&OrderConfirmed> for OrderConfirmedIntegrationEvent {
    fn from(event: &OrderConfirmed) -> Self {
        OrderConfirmedIntegrationEvent {
            order_id: event.order_id.clone(),
            total_cents: event.total_cents,
        }
    }
}

// ---- Dependencies ---------------------------------------------------------------------------

/// The catalog's read side: what a translation queries for data the domain event lacks.
#[derive(Default)]
pub struct Catalog;

impl Catalog {
    fn name_of(&self, product_id: &str) -> String {
        format!("Product {product_id}")
    }
}

/// The recommendation engine.
#[derive(Default)]
pub struct Recommendations;

#[derive(Debug, thiserror::Error)]
#[error("the recommendation engine is unavailable")]
pub struct RecsError;

// ---- Handlers -------------------------------------------------------------------------------

/// Reacts inside the catalog.
#[handles]
async fn recalculate_recommendations(
    event: &ProductPutOnSale,
    recs: Dep<Recommendations>,
) -> Result<(), RecsError> {
    let _ = (event, recs);
    Ok(())
}

/// Translates the domain event into the contract, querying the catalog for the name.
#[handles]
fn publish_product_updated(
    event: &ProductPutOnSale,
    catalog: Dep<Catalog>,
) -> ProductUpdatedIntegrationEvent {
    ProductUpdatedIntegrationEvent {
        product_id: event.product_id.clone(),
        name: catalog.name_of(&event.product_id),
        price_cents: event.price_cents,
    }
}

/// Translates a restock: the price is unchanged, so the catalog provides it.
#[handles]
fn publish_restock(
    event: &ProductRestocked,
    catalog: Dep<Catalog>,
) -> ProductUpdatedIntegrationEvent {
    ProductUpdatedIntegrationEvent {
        product_id: event.product_id.clone(),
        name: catalog.name_of(&event.product_id),
        price_cents: 0,
    }
}

/// Another context's inbound handler: consumes the contract from the broker.
#[handles]
async fn index_product(event: &ProductUpdatedIntegrationEvent, meta: &EventMeta) {
    let _ = (event, meta);
}

fn describe(handler: &HandlerInfo) -> String {
    let kind = match (handler.event_kind(), handler.produces()) {
        (EventKind::Domain, Some(produced)) => format!("translates into {}", produced.name()),
        (EventKind::Domain, None) => "reacts in-process".to_owned(),
        (EventKind::Integration, _) => "consumes from the broker".to_owned(),
    };
    let deps: Vec<_> = handler
        .deps()
        .iter()
        .map(|d| format!("Dep<{}>", d.name()))
        .collect();
    let deps = if deps.is_empty() {
        String::new()
    } else {
        format!(", needs {}", deps.join(", "))
    };
    format!("{} {kind}{deps}", handler.name())
}

fn main() {
    let registry = registry();
    println!("Domain events (published by use cases, handled in-process):");
    for event in registry.domain_events() {
        println!("  {}  ({})", event.name(), event.origin());
        for handler in registry
            .handlers()
            .iter()
            .filter(|h| h.event() == event.event())
        {
            println!("    -> {}", describe(handler));
        }
    }
    println!();
    println!("Integration events (contracts published to other contexts):");
    for contract in registry.integration_events() {
        println!(
            "  {} = {} v{}, ordered by {}",
            contract.name(),
            contract.contract(),
            contract.version(),
            contract.key().unwrap_or("nothing")
        );
        for source in contract.sources() {
            let by_handler: Vec<_> = registry
                .translation_handlers(contract.event().type_id(), source.event().type_id())
                .map(|h| format!("#[handles] {}", h.name()))
                .collect();
            let by_from = source.has_from_impl().then(|| "From impl".to_owned());
            let how: Vec<_> = by_handler.into_iter().chain(by_from).collect();
            println!(
                "    <- reaction to {} by {}",
                source.event().name(),
                how.join(" and ")
            );
        }
        for handler in registry
            .handlers()
            .iter()
            .filter(|h| h.event() == contract.event())
        {
            println!("    -> {}", describe(handler));
        }
    }
}
