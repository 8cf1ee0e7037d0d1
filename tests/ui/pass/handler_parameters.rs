//! Every parameter form of `#[handles]`, and inbound handlers of integration events.

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[integration_event(name = "catalog.product-updated")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

#[derive(Default)]
pub struct Catalog;

#[derive(Default)]
pub struct SearchIndex;

#[derive(Debug, thiserror::Error)]
#[error("the index is full")]
pub struct IndexFull;

#[handles]
async fn every_parameter(
    event: &ProductPutOnSale,
    catalog: Dep<Catalog>,
    meta: &EventMeta,
    owned_meta: EventMeta,
    index: tidings::Dep<SearchIndex>,
) {
    let _ = (event, catalog, meta, owned_meta, index);
}

/// A handler in the store's transaction: its effect commits with its completion.
#[handles]
async fn in_the_stores_transaction(
    event: &ProductPutOnSale,
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    meta: &EventMeta,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO products (id) VALUES ($1)")
        .bind(&event.product_id)
        .execute(&mut **tx)
        .await?;
    let _ = meta;
    Ok(())
}

#[handles]
fn with_lifetime_and_patterns<'a>(_: &'a ProductPutOnSale, _: Dep<Catalog>) {}

#[handles]
pub(crate) fn qualified_event_path(event: &crate::ProductPutOnSale) {
    let _ = event;
}

/// An inbound handler: consumes a contract, returns no integration event.
#[handles]
async fn index_product(
    event: &ProductUpdatedIntegrationEvent,
    index: Dep<SearchIndex>,
) -> Result<(), IndexFull> {
    let _ = (event, index);
    Ok(())
}

fn main() {
    let registry = tidings::registry();
    let every = registry.handlers().iter().find(|h| h.name() == "every_parameter").unwrap();
    let deps: Vec<_> = every.deps().iter().map(|d| d.name()).collect();
    assert_eq!(deps, ["Catalog", "SearchIndex"]);
    let inbound = registry.handlers_of::<ProductUpdatedIntegrationEvent>().next().unwrap();
    assert_eq!(inbound.event_kind(), EventKind::Integration);
}
