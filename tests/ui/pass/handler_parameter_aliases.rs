//! Handler parameters written with type aliases: `#[handles]` resolves a parameter it does not
//! recognise by its spelling by its type.

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[derive(Default)]
pub struct Recommendations;

#[derive(Default)]
pub struct Catalog;

type Recs = Dep<Recommendations>;
type Meta = EventMeta;
type Publisher = DomainEvents;
type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;
type PgTx = sqlx::Transaction<'static, sqlx::Postgres>;

mod store {
    pub type Transaction<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;
}

macro_rules! catalog {
    () => {
        Dep<Catalog>
    };
}

/// Dependencies, the envelope and the publisher, each through an alias.
#[handles]
async fn by_aliases(
    event: &ProductPutOnSale,
    recs: Recs,
    catalog: catalog!(),
    meta: &Meta,
    owned_meta: Meta,
    publisher: Publisher,
    spelled: Dep<Catalog>,
) {
    let _ = (event, recs, catalog, meta, owned_meta, publisher, spelled);
}

/// The store's transaction through an alias with a lifetime.
#[handles]
async fn in_an_aliased_transaction(
    event: &ProductPutOnSale,
    tx: &mut Tx<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO products (id) VALUES (?)")
        .bind(&event.product_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An alias named `Transaction` with no database argument, and lifetimes of the handler's own.
#[handles]
async fn in_a_named_transaction<'a, 't>(
    event: &'a ProductPutOnSale,
    tx: &mut store::Transaction<'t>,
    recs: Recs,
) {
    let _ = (event, tx, recs);
}

/// An alias that fixes the lifetime.
#[handles]
async fn in_a_static_transaction(event: &ProductPutOnSale, tx: &mut PgTx) {
    let _ = (event, tx);
}

fn main() {
    let registry = tidings::registry();
    let handler = |name: &str| {
        *registry
            .handlers()
            .iter()
            .find(|h| h.name() == name)
            .unwrap()
    };

    let aliases = handler("by_aliases");
    let deps: Vec<_> = aliases.deps().iter().map(|d| d.name()).collect();
    assert_eq!(deps, ["Recommendations", "Catalog", "Catalog"]);
    assert!(aliases.deps()[0].is::<Recommendations>());
    assert!(aliases.deps()[1].is::<Catalog>());
    assert!(aliases.transaction().is_none());

    let tx = handler("in_an_aliased_transaction").transaction().unwrap();
    assert!(tx.is::<sqlx::Sqlite>());
    assert_eq!(tx.type_name(), std::any::type_name::<sqlx::Sqlite>());

    let named = handler("in_a_named_transaction");
    assert!(named.transaction().unwrap().is::<sqlx::Sqlite>());
    assert!(named.deps()[0].is::<Recommendations>());

    let pg = handler("in_a_static_transaction").transaction().unwrap();
    assert!(pg.is::<sqlx::Postgres>());
}
