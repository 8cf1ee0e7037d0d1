use tidings::prelude::*;

#[integration_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PriceChangedIntegrationEvent {
    pub product_id: String,
}

#[integration_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

#[handles]
fn republish(event: &PriceChangedIntegrationEvent) -> Option<ProductUpdatedIntegrationEvent> {
    Some(ProductUpdatedIntegrationEvent { product_id: event.product_id.clone() })
}

fn main() {}
