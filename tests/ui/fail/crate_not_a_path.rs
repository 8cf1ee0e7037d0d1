use tidings::prelude::*;

#[domain_event(crate = "my tidings")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[handles(crate = my_tidings)]
fn project_product(_event: &ProductPutOnSale) {}

fn main() {}
