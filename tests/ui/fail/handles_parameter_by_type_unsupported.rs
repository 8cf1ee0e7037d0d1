use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

pub struct Catalog;

#[handles]
fn project_product(_event: &ProductPutOnSale, _catalog: Catalog) {}

fn main() {}
