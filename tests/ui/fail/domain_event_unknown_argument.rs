use tidings::prelude::*;

#[domain_event(allow_anything)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

fn main() {}
