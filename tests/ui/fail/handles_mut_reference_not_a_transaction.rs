use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[handles]
async fn project_product(_event: &ProductPutOnSale, _name: &mut String) {}

fn main() {}
