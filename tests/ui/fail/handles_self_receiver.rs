use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

pub struct Projection;

impl Projection {
    #[handles]
    fn project_product(&self, _event: &ProductPutOnSale) {}
}

fn main() {}
