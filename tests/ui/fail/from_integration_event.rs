use tidings::prelude::*;

#[integration_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PriceChangedIntegrationEvent {
    pub product_id: String,
}

#[integration_event(from = PriceChangedIntegrationEvent)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

fn main() {}
