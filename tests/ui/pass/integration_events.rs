//! Every argument form of `#[integration_event]`.

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductRestocked {
    pub product_id: String,
}

#[integration_event(name = "catalog.product-updated", version = 3, from = [ProductPutOnSale, ProductRestocked], key = product_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

impl From<&ProductPutOnSale> for ProductUpdatedIntegrationEvent {
    fn from(event: &ProductPutOnSale) -> Self {
        Self { product_id: event.product_id.clone() }
    }
}

impl From<&ProductRestocked> for ProductUpdatedIntegrationEvent {
    fn from(event: &ProductRestocked) -> Self {
        Self { product_id: event.product_id.clone() }
    }
}

/// One source, no brackets, a trailing comma, and an integer key.
#[integration_event(from = ProductRestocked, key = warehouse,)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StockReplenishedIntegrationEvent {
    pub warehouse: u32,
}

impl From<&ProductRestocked> for StockReplenishedIntegrationEvent {
    fn from(_: &ProductRestocked) -> Self {
        Self { warehouse: 1 }
    }
}

/// A contract this program only consumes, as an enum, with every default.
#[integration_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum PaymentStatusIntegrationEvent {
    Captured { order_id: u64 },
    Refunded { order_id: u64 },
}

fn contract<I: IntegrationEvent>() -> (&'static str, u32) {
    (I::CONTRACT, I::VERSION)
}

fn main() {
    assert_eq!(contract::<ProductUpdatedIntegrationEvent>(), ("catalog.product-updated", 3));
    assert_eq!(contract::<StockReplenishedIntegrationEvent>(), ("stock-replenished", 1));
    assert_eq!(contract::<PaymentStatusIntegrationEvent>(), ("payment-status", 1));
    let event = StockReplenishedIntegrationEvent { warehouse: 12 };
    assert_eq!(event.key().as_deref(), Some("12"));
    let event = PaymentStatusIntegrationEvent::Captured { order_id: 1 };
    assert_eq!(event.key(), None);
    let updated = tidings::registry()
        .integration_event::<ProductUpdatedIntegrationEvent>()
        .unwrap();
    assert!(updated.sources().iter().all(|s| s.has_from_impl()));
}
