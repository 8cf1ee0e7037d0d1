use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

#[handles]
fn project_product(_event: &ProductPutOnSale, _tx: &mut Tx<'_>) {}

fn main() {}
