use tidings::prelude::*;

#[integration_event(from = [])]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

fn main() {}
