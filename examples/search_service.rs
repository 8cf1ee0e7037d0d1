//! The search service of the two-service example: it consumes the catalog's contract
//! `catalog.product-updated` from the broker (NATS JetStream, RabbitMQ, Kafka or Google Cloud Pub/Sub, by the URL's scheme in
//! `BROKER_URL`, or `NATS_URL`; default nats://127.0.0.1:4222), with an inbox in a SQLite file,
//! and keeps an index.
//!
//! ```sh
//! cargo run --example search_service                       # until Ctrl-C
//! cargo run --example search_service -- p-1,p-2,p-3 60     # until those are indexed, at most 60 s
//! BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example search_service -- p-1,p-2,p-3 60
//! BROKER_URL=kafka://127.0.0.1:9092 cargo run --example search_service -- p-1,p-2,p-3 60
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 BROKER_URL=pubsub://tidings-example cargo run --example search_service -- p-1,p-2,p-3 60
//! cargo run --example search_service -- catalog            # its event catalog, into examples/docs/
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use support::{broker_url, catalog_command, data_dir, dollars, ids, on_broker};
use tidings::SqliteStore;
use tidings::prelude::*;
use tokio::sync::Notify;

mod observe;
mod support;
mod telemetry;

tidings::context!("search");

/// The catalog's contract, as the search service reads it: the name and version are the
/// agreement between the two services, not a shared type.
#[integration_event(name = "catalog.product-updated", version = 1, key = product_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
}

/// The search index: product id → what is searchable.
#[derive(Debug, Default)]
pub struct SearchIndex {
    entries: Mutex<BTreeMap<String, String>>,
    changed: Notify,
}

impl SearchIndex {
    fn has_all(&self, expected: &[String]) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        expected.iter().all(|id| entries.contains_key(id))
    }
}

/// An inbound handler: runs once per message, whatever the broker redelivers.
#[handles]
fn index_product(
    event: &ProductUpdatedIntegrationEvent,
    meta: &EventMeta,
    index: Dep<SearchIndex>,
) {
    let entry = format!("{}, {}", event.name, dollars(event.price_cents));
    println!(
        "[search] index_product: {} indexed as \"{entry}\" {} from {}",
        event.product_id,
        ids(meta),
        meta.source
    );
    index
        .entries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(event.product_id.clone(), entry);
    // In the JSON log, inside the handler's span: its event and correlation ids.
    tracing::info!(product_id = %event.product_id, "indexed");
    index.changed.notify_waiters();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if catalog_command("search_service")? {
        return Ok(());
    }
    let mut args = std::env::args().skip(1);
    let expected: Vec<String> = args
        .next()
        .map(|ids| ids.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let timeout = Duration::from_secs(args.next().map_or(Ok(60), |s| s.parse())?);

    let telemetry = telemetry::install("search_service")?;
    let endpoint = observe::install().await?;
    let broker = broker_url();
    let store = SqliteStore::open(data_dir()?.join("search.db")).await?;
    let index = Dep::new(SearchIndex::default());
    let app = on_broker(Tidings::builder("search").store(store), &broker)
        .await?
        .provide_dep(index.clone())
        .build()?;
    let running = app.start().await?;
    if let Some(endpoint) = &endpoint {
        println!(
            "[search] metrics and health on http://{}",
            endpoint.local_addr()?
        );
    }

    let waited = observe::serving(endpoint.as_ref(), &running, async {
        if expected.is_empty() {
            println!("[search] on {broker}: consuming catalog.product-updated until Ctrl-C");
            return tokio::signal::ctrl_c().await.map_err(|e| e.to_string());
        }
        println!(
            "[search] on {broker}: waiting for {} ({timeout:?} at most)",
            expected.join(", ")
        );
        let indexed = tokio::time::timeout(timeout, async {
            loop {
                let changed = index.changed.notified();
                if index.has_all(&expected) {
                    return;
                }
                changed.await;
            }
        })
        .await;
        match indexed {
            Ok(()) => {
                println!("[search] indexed {}; done", expected.join(", "));
                Ok(())
            }
            Err(_) => Err(format!(
                "{} not all indexed within {timeout:?}",
                expected.join(", ")
            )),
        }
    })
    .await;
    running.shutdown().await?;
    telemetry.finish().await;
    Ok(waited?)
}

/// The service's committed catalog is what the code produces; it reads what the catalog
/// service publishes; and the two services' catalogs combine into the system's view.
#[cfg(test)]
mod tests {
    use tidings::catalog::Catalog;

    use super::support::docs_dir;

    /// The catalog service's catalog, as it committed it.
    fn producer() -> Catalog {
        let path = docs_dir("catalog_service").join("catalog.json");
        let json = std::fs::read_to_string(&path).expect("the catalog service's catalog");
        Catalog::from_json(&json).unwrap()
    }

    #[test]
    fn the_committed_catalog_is_what_the_code_produces() {
        tidings::catalog()
            .docs()
            .check(docs_dir("search_service"))
            .unwrap();
    }

    /// The consumer's expectation against the producer's contract, from its catalog JSON.
    #[test]
    fn search_reads_what_the_catalog_service_publishes() {
        tidings::catalog().check_against(&producer()).unwrap();
    }

    /// The system's view: both services' catalogs combined, committed in `examples/docs/system/`.
    #[test]
    fn the_two_services_combine_into_the_systems_view() {
        let system = Catalog::combine([producer(), tidings::catalog()]);
        let mermaid = system.mermaid();
        assert!(
            mermaid.contains(
                "contract__catalog_product_updated_v1 -.-> search__handler__index_product"
            ),
            "{mermaid}"
        );
        system.docs().brokers([]).check(docs_dir("system")).unwrap();
    }
}
