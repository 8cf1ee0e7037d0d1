use tidings::prelude::*;

#[integration_event(key = sku)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

fn main() {}
