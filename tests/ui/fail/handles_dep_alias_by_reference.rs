use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

pub struct Recommendations;

type Recs = Dep<Recommendations>;

#[handles]
fn project_product(_event: &ProductPutOnSale, _recs: &Recs) {}

fn main() {}
