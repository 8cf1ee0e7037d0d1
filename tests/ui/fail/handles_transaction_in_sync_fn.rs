use sqlx::{Postgres, Transaction};
use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[handles]
fn project_product(_event: &ProductPutOnSale, _tx: &mut Transaction<'_, Postgres>) {}

fn main() {}
