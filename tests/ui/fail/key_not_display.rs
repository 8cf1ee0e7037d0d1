use tidings::prelude::*;

#[integration_event(key = tags)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub tags: Vec<String>,
}

fn main() {}
