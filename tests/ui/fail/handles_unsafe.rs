use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[handles]
unsafe fn project_product(_event: &ProductPutOnSale) {}

fn main() {}
