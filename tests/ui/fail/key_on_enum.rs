use tidings::prelude::*;

#[integration_event(key = product_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum CatalogIntegrationEvent {
    Added { product_id: String },
}

fn main() {}
