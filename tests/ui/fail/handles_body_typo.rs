use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

// A mistake in the body is rustc's to report, once; the handler is registered all the same.
#[handles]
fn project_product(event: &ProductPutOnSale) {
    let id = event.product_id.clone()
    println!("{id}");
}

fn main() {}
