use tidings::prelude::*;

#[integration_event(key = "product_id")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

fn main() {}
