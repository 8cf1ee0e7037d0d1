//! The catalog service of the two-service example: its use cases put products on sale, its
//! domain handlers react in-process, and a translation publishes the contract
//! `catalog.product-updated` to the broker (NATS JetStream, RabbitMQ, Kafka or Google Cloud Pub/Sub, by the URL's scheme),
//! through an outbox in a SQLite file. Run the search service in another terminal (`cargo run
//! --example search_service`, with the same broker), then:
//!
//! ```sh
//! cargo run --example catalog_service        # BROKER_URL (or NATS_URL), default nats://127.0.0.1:4222
//! BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example catalog_service
//! BROKER_URL=kafka://127.0.0.1:9092 cargo run --example catalog_service
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 BROKER_URL=pubsub://tidings-example cargo run --example catalog_service
//! ```
//!
//! Each line ends with the event's id and its correlation id; the search service prints the same
//! correlation id for what it indexes, so the chain across the two processes is visible.
//!
//! `cargo run --example catalog_service -- catalog` writes the service's event catalog into
//! `examples/docs/catalog_service/`; its `catalog.json` and the search service's combine into
//! the system's view in `examples/docs/system/` (see the search service's tests).

use std::time::Duration;

use support::{broker_url, catalog_command, data_dir, dollars, ids, on_broker, short};
use tidings::SqliteStore;
use tidings::prelude::*;

mod observe;
mod support;
mod telemetry;

tidings::context!("catalog");

/// A product was put on sale at a new price.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
}

/// The catalog's public contract: a product's name and price changed.
#[integration_event(name = "catalog.product-updated", version = 1, from = ProductPutOnSale, key = product_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
}

/// A domain handler: the catalog's own reaction, in-process.
#[handles]
fn feature_on_home_page(event: &ProductPutOnSale, meta: &EventMeta) {
    let price = dollars(event.price_cents);
    println!(
        "[catalog] feature_on_home_page: {} at {price} {}",
        event.product_id,
        ids(meta)
    );
}

/// The translation: the contract other contexts read, published through the outbox.
#[handles]
fn publish_product_updated(
    event: &ProductPutOnSale,
    meta: &EventMeta,
) -> ProductUpdatedIntegrationEvent {
    println!(
        "[catalog] publish_product_updated: {} → catalog.product-updated {}",
        event.product_id,
        ids(meta)
    );
    // In the JSON log, inside the translation's span: its event and correlation ids.
    tracing::info!(product_id = %event.product_id, "translated");
    ProductUpdatedIntegrationEvent {
        product_id: event.product_id.clone(),
        name: event.name.clone(),
        price_cents: event.price_cents,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if catalog_command("catalog_service")? {
        return Ok(());
    }
    let telemetry = telemetry::install("catalog_service")?;
    let endpoint = observe::install().await?;
    let broker = broker_url();
    let store = SqliteStore::open(data_dir()?.join("catalog.db")).await?;
    let app = on_broker(Tidings::builder("catalog").store(store), &broker)
        .await?
        .build()?;
    let running = app.start().await?;
    println!("[catalog] on {broker}: putting three products on sale");

    for (product_id, name, price_cents) in [
        ("p-1", "Espresso machine", 19_900),
        ("p-2", "Milk frother", 4_900),
        ("p-3", "Coffee grinder", 8_900),
    ] {
        let event = ProductPutOnSale {
            product_id: product_id.to_owned(),
            name: name.to_owned(),
            price_cents,
        };
        let meta = app.domain_events().publish(event).await?;
        println!(
            "[catalog] use case: {product_id} on sale (event {}, correlation {})",
            short(meta.id),
            short(meta.correlation_id)
        );
    }

    // Every handler ran and every integration event reached the broker.
    let settled = running.settle_for(Duration::from_secs(60));
    observe::serving(endpoint.as_ref(), &running, settled).await?;
    println!("[catalog] all three are on {broker}; done");
    running.shutdown().await?;
    telemetry.finish().await;
    Ok(())
}

/// The service's committed catalog and contract snapshots are what the code produces.
#[cfg(test)]
mod tests {
    use super::support::{contracts_dir, docs_dir};

    #[test]
    fn the_committed_catalog_is_what_the_code_produces() {
        tidings::catalog()
            .docs()
            .check(docs_dir("catalog_service"))
            .unwrap();
    }

    #[test]
    fn the_contracts_are_compatible_with_their_snapshots() {
        tidings::catalog()
            .check_contracts(contracts_dir("catalog_service"))
            .unwrap();
    }
}
