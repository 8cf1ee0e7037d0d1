use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[handles]
fn project_product(_event: &ProductPutOnSale) -> (u32, u32) {
    (1, 2)
}

fn main() {}
