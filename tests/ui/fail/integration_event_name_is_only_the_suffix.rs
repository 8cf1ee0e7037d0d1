use tidings::prelude::*;

#[integration_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IntegrationEvent {
    pub product_id: String,
}

fn main() {}
