use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductProjected {
    pub product_id: String,
}

#[handles]
fn project_product(event: &ProductPutOnSale) -> ProductProjected {
    ProductProjected { product_id: event.product_id.clone() }
}

fn main() {}
