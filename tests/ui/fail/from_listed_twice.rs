use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[integration_event(from = [ProductPutOnSale, ProductPutOnSale])]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

impl From<&ProductPutOnSale> for ProductUpdatedIntegrationEvent {
    fn from(event: &ProductPutOnSale) -> Self {
        Self { product_id: event.product_id.clone() }
    }
}

fn main() {}
