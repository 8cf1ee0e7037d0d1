use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

fn main() {}
