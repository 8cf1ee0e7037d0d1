use tidings::prelude::*;

#[integration_event(version = 1, version = 2)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

fn main() {}
