use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductRestocked {
    pub product_id: String,
}

#[integration_event(from = ProductRestocked)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

impl From<&ProductRestocked> for ProductUpdatedIntegrationEvent {
    fn from(event: &ProductRestocked) -> Self {
        Self { product_id: event.product_id.clone() }
    }
}

#[handles]
fn publish_product_updated(event: &ProductPutOnSale) -> ProductUpdatedIntegrationEvent {
    ProductUpdatedIntegrationEvent { product_id: event.product_id.clone() }
}

fn main() {}
