use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

type Tx<'a, 'c> = &'a mut sqlx::Transaction<'c, sqlx::Sqlite>;

#[handles]
async fn project_product(_event: &ProductPutOnSale, _tx: Tx<'_, '_>) {}

fn main() {}
