//! The e-commerce example: two bounded contexts in one process, talking through one broker.
//! `catalog` publishes domain events, reacts to them in-process, and translates some into
//! integration events (its public contracts); `search` consumes one of them to keep an index.
//! `cargo run --example shop` prints what happens, step by step, with short ids.
//!
//! The outboxes are SQLite files in `shop-data/` (or `$SHOP_DATA`), the embedded default; given a
//! PostgreSQL URL, `cargo run --example shop -- postgres://localhost/shop`, they are schemas of
//! that database (`shop_catalog`, `shop_search`). Either way a second run finds the first run's
//! dead letters.
//!
//! `cargo run --example shop -- catalog` writes the event catalog of both contexts into
//! `examples/docs/shop/`: Markdown with the Mermaid diagram, JSON, and AsyncAPI documents. The
//! tests at the end keep them, the snapshots of the contracts in `examples/contracts/shop/` and
//! the README's diagram current (`cargo test -p tidings-examples --example shop`).

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use support::{catalog_command, dollars, ids, short};
use tidings::prelude::*;
use tidings::{PostgresStore, SqliteStore, TidingsBuilder};

mod support;

/// The catalog context: products, prices, stock and orders.
pub mod catalog {
    tidings::context!("catalog");

    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::{dollars, ids, locked};
    use tidings::prelude::*;

    /// A product was put on sale at a new price.
    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductPutOnSale {
        pub product_id: String,
        pub price_cents: i64,
    }

    /// A customer's order was confirmed.
    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct OrderConfirmed {
        pub order_id: String,
        pub product_id: String,
        pub quantity: u32,
    }

    /// The stock of a product was recalculated after a reservation.
    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct StockRecalculated {
        pub product_id: String,
        pub available: u32,
    }

    /// Contract: a product's public details changed.
    #[integration_event(name = "catalog.product-updated", version = 1, from = ProductPutOnSale, key = product_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductUpdatedIntegrationEvent {
        pub product_id: String,
        pub name: String,
        pub price_cents: i64,
    }

    /// Contract: an order was confirmed.
    #[integration_event(name = "catalog.order-confirmed", version = 1, from = OrderConfirmed, key = order_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct OrderConfirmedIntegrationEvent {
        pub order_id: String,
        pub product_id: String,
        pub quantity: u32,
    }

    /// A plain mapping is enough here: `From` is the translation, and the runtime calls it.
    impl From<&OrderConfirmed> for OrderConfirmedIntegrationEvent {
        fn from(event: &OrderConfirmed) -> Self {
            Self {
                order_id: event.order_id.clone(),
                product_id: event.product_id.clone(),
                quantity: event.quantity,
            }
        }
    }

    /// Contract: how many units of a product are available changed.
    #[integration_event(name = "catalog.inventory-modified", version = 1, from = StockRecalculated, key = product_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct InventoryModifiedIntegrationEvent {
        pub product_id: String,
        pub available: u32,
    }

    /// The catalog's products: name and price, by id.
    #[derive(Debug, Default)]
    pub struct Catalog(pub Mutex<BTreeMap<String, (String, i64)>>);

    /// The products on sale and their prices: a projection that `project_product` maintains.
    #[derive(Debug, Default)]
    pub struct ProductsOnSale(Mutex<BTreeMap<String, i64>>);

    /// The products featured on the home page.
    #[derive(Debug, Default)]
    pub struct Recommendations(Mutex<Vec<String>>);

    /// Units in stock, by product.
    #[derive(Debug, Default)]
    pub struct Stock(pub Mutex<BTreeMap<String, u32>>);

    /// The ERP's client; it counts the runs of `sync_price_to_erp`, which fails the first two.
    #[derive(Debug, Default)]
    pub struct Erp(AtomicU32);

    /// The ERP did not answer in time: worth retrying.
    #[derive(Debug, thiserror::Error)]
    #[error("the ERP timed out")]
    pub struct ErpTimeout;

    /// A translation asked for a product the catalog does not know.
    #[derive(Debug, thiserror::Error)]
    #[error("product {0} is not in the catalog")]
    pub struct UnknownProduct(String);

    /// The order has no shipping address.
    #[derive(Debug, thiserror::Error)]
    #[error("order {0} has no shipping address")]
    pub struct MissingAddress(String);

    /// Running the handler again cannot make an address appear: dead-letter it at once.
    impl Retryable for MissingAddress {
        fn is_retryable(&self) -> bool {
            false
        }
    }

    /// The use case: changes the price (the aggregate), then publishes a domain event, only.
    pub async fn put_product_on_sale(
        events: &DomainEvents,
        catalog: &Catalog,
        product_id: &str,
        price_cents: i64,
    ) -> Result<EventMeta, tidings::Error> {
        if let Some((_, price)) = locked(&catalog.0).get_mut(product_id) {
            *price = price_cents;
        }
        let product_id = product_id.to_owned();
        let put_on_sale = ProductPutOnSale {
            product_id,
            price_cents,
        };
        events.publish(put_on_sale).await
    }

    /// Keeps the projection of the products on sale up to date.
    #[handles]
    fn project_product(event: &ProductPutOnSale, on_sale: Dep<ProductsOnSale>, meta: &EventMeta) {
        let (id, price) = (&event.product_id, dollars(event.price_cents));
        locked(&on_sale.0).insert(id.clone(), event.price_cents);
        let ids = ids(meta);
        println!("[catalog] project_product: {id} listed on sale at {price} {ids}");
    }

    /// Features the product on the home page.
    #[handles]
    async fn recalculate_recommendations(
        event: &ProductPutOnSale,
        recommendations: Dep<Recommendations>,
        meta: EventMeta,
    ) {
        let (id, ids) = (&event.product_id, ids(&meta));
        locked(&recommendations.0).push(id.clone());
        println!("[catalog] recalculate_recommendations: {id} is on sale, featured now {ids}");
    }

    /// Sends the new price to the ERP, which times out on the first two runs.
    #[handles]
    async fn sync_price_to_erp(
        event: &ProductPutOnSale,
        erp: Dep<Erp>,
        meta: &EventMeta,
    ) -> Result<(), ErpTimeout> {
        let (run, ids) = (erp.0.fetch_add(1, Ordering::SeqCst) + 1, ids(meta));
        if run <= 2 {
            println!("[catalog] sync_price_to_erp: run {run} failed, the ERP timed out {ids}");
            return Err(ErpTimeout);
        }
        let (id, price) = (&event.product_id, dollars(event.price_cents));
        println!("[catalog] sync_price_to_erp: run {run} sent {id} at {price} to the ERP {ids}");
        Ok(())
    }

    /// Translation: the contract carries the product's name, so it asks the catalog for it.
    #[handles]
    fn publish_product_updated(
        event: &ProductPutOnSale,
        catalog: Dep<Catalog>,
        meta: &EventMeta,
    ) -> Result<ProductUpdatedIntegrationEvent, UnknownProduct> {
        let product_id = event.product_id.clone();
        let details = locked(&catalog.0).get(&product_id).cloned();
        let (name, price_cents) = details.ok_or_else(|| UnknownProduct(product_id.clone()))?;
        let (contract, ids) = (ProductUpdatedIntegrationEvent::CONTRACT, ids(meta));
        println!("[catalog] publish_product_updated: {product_id} \"{name}\" → {contract} {ids}");
        Ok(ProductUpdatedIntegrationEvent {
            product_id,
            name,
            price_cents,
        })
    }

    /// Reserves the ordered units, then publishes the new stock: caused by the order, it keeps
    /// the order's correlation id.
    #[handles]
    async fn reserve_stock(
        event: &OrderConfirmed,
        stock: Dep<Stock>,
        events: DomainEvents,
        meta: &EventMeta,
    ) -> Result<(), tidings::Error> {
        let available = {
            let mut stock = locked(&stock.0);
            let units = stock.entry(event.product_id.clone()).or_default();
            *units = units.saturating_sub(event.quantity);
            *units
        };
        let (order, id, quantity) = (&event.order_id, &event.product_id, event.quantity);
        let ids = ids(meta);
        println!(
            "[catalog] reserve_stock: {order} takes {quantity} × {id}, {available} left {ids}"
        );
        let recalculated = StockRecalculated {
            product_id: id.clone(),
            available,
        };
        events.publish(recalculated).await?;
        Ok(())
    }

    /// Prints the shipping label; the demo's order has no address, so it fails for good.
    #[handles]
    fn print_shipping_label(
        event: &OrderConfirmed,
        meta: &EventMeta,
    ) -> Result<(), MissingAddress> {
        let (order, ids) = (&event.order_id, ids(meta));
        println!("[catalog] print_shipping_label: {order} has no address, no use retrying {ids}");
        Err(MissingAddress(order.clone()))
    }

    /// Translation: the new stock becomes the public inventory contract.
    #[handles]
    fn publish_inventory_modified(
        event: &StockRecalculated,
        meta: &EventMeta,
    ) -> InventoryModifiedIntegrationEvent {
        let (product_id, available) = (event.product_id.clone(), event.available);
        let (contract, ids) = (InventoryModifiedIntegrationEvent::CONTRACT, ids(meta));
        println!(
            "[catalog] publish_inventory_modified: {product_id}, {available} left → {contract} {ids}"
        );
        InventoryModifiedIntegrationEvent {
            product_id,
            available,
        }
    }
}

/// The search context: an index of the products, fed by the catalog's contract only.
pub mod search {
    tidings::context!("search");

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::catalog::ProductUpdatedIntegrationEvent;
    use super::{dollars, ids, locked};
    use tidings::prelude::*;

    /// The search index: a line of text by product id.
    #[derive(Debug, Default)]
    pub struct SearchIndex(pub Mutex<BTreeMap<String, String>>);

    /// Inbound handler: consumes the catalog's contract from the broker.
    #[handles]
    fn index_product(
        event: &ProductUpdatedIntegrationEvent,
        index: Dep<SearchIndex>,
        meta: &EventMeta,
    ) {
        let (id, ids) = (&event.product_id, ids(meta));
        let entry = format!("{}, {}", event.name, dollars(event.price_cents));
        println!("[search] index_product: {id} indexed as \"{entry}\" {ids}");
        locked(&index.0).insert(id.clone(), entry);
    }
}

/// Locks a mutex, also after a handler panicked while holding it: every change here is whole.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the contexts keep their outboxes.
enum Stores {
    /// A SQLite file per context in this directory.
    Sqlite(PathBuf),
    /// A schema per context in this PostgreSQL database.
    Postgres(sqlx::PgPool),
}

impl Stores {
    /// From the command line: a PostgreSQL URL, or nothing for the SQLite files.
    async fn from_args() -> Result<Stores, Box<dyn std::error::Error>> {
        if let Some(url) = std::env::args().nth(1) {
            return Ok(Stores::Postgres(sqlx::PgPool::connect(&url).await?));
        }
        let data = std::env::var("SHOP_DATA").unwrap_or_else(|_| "shop-data".into());
        let data = PathBuf::from(data);
        std::fs::create_dir_all(&data)?;
        Ok(Stores::Sqlite(data))
    }

    /// The builder of `context`'s app, with its store.
    async fn builder(&self, context: &str) -> Result<TidingsBuilder, tidings::StoreError> {
        let builder = Tidings::builder(context);
        Ok(match self {
            Stores::Sqlite(data) => {
                builder.store(SqliteStore::open(data.join(format!("{context}.db"))).await?)
            }
            Stores::Postgres(pool) => {
                let schema = format!("shop_{context}");
                builder.store(PostgresStore::connect_with(pool.clone(), &schema).await?)
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Stores::Sqlite(data) => format!("SQLite files in {}/", data.display()),
            Stores::Postgres(_) => "PostgreSQL schemas shop_catalog and shop_search".to_owned(),
        }
    }
}

/// Runs both contexts, drives two use cases through them, and reports what happened.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use catalog::{Catalog, Erp, ProductsOnSale, Recommendations, Stock};
    use search::SearchIndex;

    if catalog_command("shop")? {
        return Ok(());
    }

    println!("0. Two bounded contexts, catalog and search, share one in-memory broker.");
    println!("   Each handler's line ends with the id of the event it handled, and its");
    println!("   correlation id: the id of the use case's event that started it all.");
    // The embedded default: each context keeps its outbox in a SQLite file of its own.
    let stores = Stores::from_args().await?;
    let transport = InMemoryTransport::default();
    let catalog = Dep::new(Catalog::default());
    let espresso_machine = ("Espresso machine".to_owned(), 24_900);
    locked(&catalog.0).insert("p-1".into(), espresso_machine);
    let stock = Stock::default();
    locked(&stock.0).insert("p-1".into(), 10);
    let catalog_app = stores
        .builder("catalog")
        .await?
        .transport(transport.clone())
        .provide_dep(catalog.clone())
        .provide(ProductsOnSale::default())
        .provide(Recommendations::default())
        .provide(Erp::default())
        .provide(stock)
        .retry(
            RetryPolicy::default()
                .max_attempts(3)
                .initial_delay(Duration::from_millis(20)),
        )
        .build()?;
    let index = Dep::new(SearchIndex::default());
    let search_app = stores
        .builder("search")
        .await?
        .transport(transport.clone())
        .provide_dep(index.clone())
        .build()?;
    let earlier = catalog_app.dead_letters().await?.len();
    println!(
        "   Their outboxes are {}: {earlier} dead letter(s) of earlier runs are kept there.",
        stores.describe()
    );
    let catalog_running = catalog_app.start().await?;
    let search_running = search_app.start().await?;
    let both = [&catalog_running, &search_running];

    println!("\n1. A use case puts product p-1 (Espresso machine, $249.00) on sale at $199.00");
    let events = catalog_app.domain_events();
    catalog::put_product_on_sale(&events, &catalog, "p-1", 19_900).await?;
    Running::settle_all(&both).await;

    println!("\n2. A use case confirms order o-1 for 2 × p-1");
    // The use case, inline: like every use case, it publishes a domain event, never a contract.
    let confirmed = catalog::OrderConfirmed {
        order_id: "o-1".into(),
        product_id: "p-1".into(),
        quantity: 2,
    };
    events.publish(confirmed).await?;
    Running::settle_all(&both).await;

    println!("\n3. Everything has settled. The integration events on the broker:");
    for message in transport.published() {
        let contract = format!("{} v{}", message.contract, message.version);
        let key = message.key.unwrap_or_default();
        let (id, correlation) = (short(message.id), short(message.correlation_id));
        println!(
            "   {contract:<30} key {key:<4} id {id}  source {}  correlation {correlation}",
            message.source
        );
    }
    println!("   The search index:");
    for (product_id, entry) in locked(&index.0).iter() {
        println!("   {product_id}: {entry}");
    }
    println!("   The dead letters, this run's and those kept from earlier runs:");
    for letter in catalog_app.dead_letters().await? {
        let handler = letter.handler.unwrap_or_default();
        let (attempts, error) = (letter.attempts, letter.error);
        let at = letter.at.format("%Y-%m-%d %H:%M:%S");
        println!("   {at}  {handler}, after {attempts} attempt(s): {error}");
    }

    catalog_running.shutdown().await?;
    search_running.shutdown().await?;
    println!("\n4. Both apps shut down: work in flight finished first");
    Ok(())
}

/// The shop's catalog, contracts and README diagram are what the code produces; a breaking
/// change to a contract fails with what to do.
#[cfg(test)]
mod tests {
    use super::support::{contracts_dir, docs_dir};

    /// The committed documents: `cargo run --example shop -- catalog` writes them anew.
    #[test]
    fn the_committed_catalog_is_what_the_code_produces() {
        tidings::catalog().docs().check(docs_dir("shop")).unwrap();
    }

    /// The one line a team's suite adds for its contracts.
    #[test]
    fn the_contracts_are_compatible_with_their_snapshots() {
        tidings::catalog()
            .check_contracts(contracts_dir("shop"))
            .unwrap();
    }

    #[test]
    fn the_readme_shows_the_shops_current_diagram() {
        let readme = include_str!("../README.md");
        let diagram = format!("```mermaid\n{}```", tidings::catalog().mermaid());
        assert!(
            readme.contains(&diagram),
            "the README's diagram of the shop is not the current one: replace it with \
             `examples/docs/shop/catalog.mmd`, which `cargo run --example shop -- catalog` writes"
        );
    }

    /// A deliberately breaking change: the schema that `catalog.product-updated` v1 has once its
    /// field `price_cents` is renamed `price`.
    #[test]
    fn renaming_a_field_of_a_shop_contract_fails_with_what_to_do() {
        let mut catalog = tidings::catalog();
        let contract = catalog
            .contexts
            .iter_mut()
            .flat_map(|context| &mut context.publishes)
            .find(|contract| contract.name == "catalog.product-updated")
            .expect("the shop publishes it");
        let schema = serde_json::to_string(&contract.schema).expect("JSON");
        contract.schema =
            serde_json::from_str(&schema.replace("price_cents", "price")).expect("JSON");

        // Checked against a copy of the snapshots: a breaking change is never written, but a
        // run in refresh mode must not touch the committed ones from here.
        let copy = std::env::temp_dir().join(format!("shop-contracts-{}", std::process::id()));
        std::fs::create_dir_all(&copy).expect("a folder");
        for entry in std::fs::read_dir(contracts_dir("shop")).expect("the snapshots") {
            let path = entry.expect("a snapshot").path();
            let file = path.file_name().expect("a file");
            std::fs::copy(&path, copy.join(file)).expect("copied");
        }
        let message = catalog
            .check_contracts(&copy)
            .expect_err("a renamed field breaks the contract")
            .to_string();
        let _ = std::fs::remove_dir_all(&copy);
        assert!(
            message.contains("contract `catalog.product-updated` v1 breaks its snapshot"),
            "{message}"
        );
        assert!(
            message.contains("field `price_cents` was removed (renamed to `price`?)"),
            "{message}"
        );
        assert!(
            message.contains(
                "`#[integration_event(name = \"catalog.product-updated\", version = 2, from = ProductPutOnSale)]`"
            ),
            "{message}"
        );
    }
}
