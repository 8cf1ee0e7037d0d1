use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

type Result<T> = std::result::Result<T, std::io::Error>;

#[handles]
fn project_product(_event: &ProductPutOnSale) -> Result<()> {
    Ok(())
}

fn main() {}
