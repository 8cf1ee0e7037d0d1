use std::rc::Rc;

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[handles]
async fn project_product(event: &ProductPutOnSale) {
    let local = Rc::new(event.product_id.clone());
    std::future::ready(()).await;
    drop(local);
}

fn main() {}
