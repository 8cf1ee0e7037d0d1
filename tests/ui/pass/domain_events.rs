//! Every form of `#[domain_event]`: structs of each kind, enums, and the naming opt-outs.

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PaymentRefused(pub u64);

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CatalogReset;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HTTPRequestSent {
    pub url: String,
}

/// An enum: each variant is checked instead of the enum's name.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum OrderEvent {
    Placed { order_id: u64 },
    Paid(u64),
    Withdrawn,
}

/// A specific past tense next to a generic one is fine.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PriceReducedAndSaved {
    pub cents: i64,
}

#[domain_event(allow_generic_name)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SettingsChanged {
    pub key: String,
}

#[domain_event(allow_non_past_tense)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DailyTick {
    pub day: u32,
}

#[domain_event(allow_generic_name, allow_non_past_tense)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ConfigEvent {
    Modified,
    Reload,
}

fn is_domain_event<E: DomainEvent>() -> &'static str {
    E::NAME
}

fn main() {
    assert_eq!(is_domain_event::<ProductPutOnSale>(), "ProductPutOnSale");
    assert_eq!(is_domain_event::<OrderEvent>(), "OrderEvent");
    assert_eq!(is_domain_event::<HTTPRequestSent>(), "HTTPRequestSent");
    let names: Vec<_> = tidings::registry()
        .domain_events()
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
}
