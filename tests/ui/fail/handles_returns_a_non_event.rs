use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[handles]
fn project_product(event: &ProductPutOnSale) -> String {
    event.product_id.clone()
}

fn main() {}
