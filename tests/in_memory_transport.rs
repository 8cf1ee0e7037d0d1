//! `InMemoryTransport` in a modular monolith: a message waits for the contexts that consume it,
//! so a context whose app starts after the publisher's still gets everything, and what waits is
//! bounded.

use std::sync::Mutex;

use tidings::Running;
use tidings::prelude::*;

/// The products search indexed, in the order it indexed them.
#[derive(Debug, Default)]
pub struct Indexed(Mutex<Vec<String>>);

impl Indexed {
    fn products(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

pub mod catalog {
    tidings::context!("catalog");

    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductPutOnSale {
        pub product_id: String,
    }

    #[integration_event(name = "catalog.product-updated", from = ProductPutOnSale, key = product_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductUpdatedIntegrationEvent {
        pub product_id: String,
    }

    impl From<&ProductPutOnSale> for ProductUpdatedIntegrationEvent {
        fn from(event: &ProductPutOnSale) -> Self {
            ProductUpdatedIntegrationEvent {
                product_id: event.product_id.clone(),
            }
        }
    }

    #[handles]
    fn project_product(_event: &ProductPutOnSale) {}
}

pub mod search {
    tidings::context!("search");

    use super::Indexed;
    use super::catalog::ProductUpdatedIntegrationEvent;
    use tidings::prelude::*;

    #[handles]
    fn index_product(event: &ProductUpdatedIntegrationEvent, indexed: Dep<Indexed>) {
        indexed.0.lock().unwrap().push(event.product_id.clone());
    }
}

async fn start(
    context: &str,
    transport: &InMemoryTransport,
    indexed: &Dep<Indexed>,
) -> (Tidings, Running) {
    let app = Tidings::builder(context)
        .transport(transport.clone())
        .provide_dep(indexed.clone())
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running)
}

async fn put_on_sale(catalog: &Tidings, products: impl IntoIterator<Item = usize>) {
    for n in products {
        catalog
            .domain_events()
            .publish(catalog::ProductPutOnSale {
                product_id: format!("p-{n}"),
            })
            .await
            .unwrap();
    }
}

fn product_ids(products: impl IntoIterator<Item = usize>) -> Vec<String> {
    products.into_iter().map(|n| format!("p-{n}")).collect()
}

#[tokio::test]
async fn a_context_started_later_gets_what_was_published_before() {
    let transport = InMemoryTransport::default();
    let indexed = Dep::new(Indexed::default());
    let (catalog, catalog_running) = start("catalog", &transport, &indexed).await;
    put_on_sale(&catalog, 0..3).await;
    // Settles though search never started: what waits for search is not in flight.
    catalog_running.settle().await;
    assert_eq!(transport.published().len(), 3, "catalog published");
    assert_eq!(transport.waiting(), 3, "each message waits for search");
    assert!(indexed.products().is_empty());

    let (_search, search_running) = start("search", &transport, &indexed).await;
    put_on_sale(&catalog, 3..5).await;
    Running::settle_all(&[&catalog_running, &search_running]).await;

    assert_eq!(
        indexed.products(),
        product_ids(0..5),
        "what waited comes first, in publish order, then the rest"
    );
    assert_eq!(transport.waiting(), 0);
    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
}

#[tokio::test]
async fn messages_wait_while_a_context_is_stopped() {
    let transport = InMemoryTransport::default();
    let indexed = Dep::new(Indexed::default());
    let (catalog, catalog_running) = start("catalog", &transport, &indexed).await;
    let (_search, search_running) = start("search", &transport, &indexed).await;
    put_on_sale(&catalog, 0..2).await;
    Running::settle_all(&[&catalog_running, &search_running]).await;
    search_running.shutdown().await.unwrap();

    put_on_sale(&catalog, 2..4).await;
    catalog_running.settle().await;
    assert_eq!(
        transport.waiting(),
        2,
        "search is stopped: its messages wait"
    );

    let (_search, search_running) = start("search", &transport, &indexed).await;
    Running::settle_all(&[&catalog_running, &search_running]).await;
    assert_eq!(indexed.products(), product_ids(0..4));
    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
}

#[tokio::test]
async fn what_waits_is_bounded_and_the_oldest_goes_first() {
    let transport = InMemoryTransport::new().hold(2);
    let indexed = Dep::new(Indexed::default());
    let (catalog, catalog_running) = start("catalog", &transport, &indexed).await;
    put_on_sale(&catalog, 0..5).await;
    catalog_running.settle().await;
    assert_eq!(transport.waiting(), 2, "at most `hold` messages wait");

    let (_search, search_running) = start("search", &transport, &indexed).await;
    Running::settle_all(&[&catalog_running, &search_running]).await;
    assert_eq!(
        indexed.products(),
        product_ids(3..5),
        "the newest messages are kept"
    );
    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_capture_of_published_messages_is_bounded() {
    let transport = InMemoryTransport::new().capture(2);
    let indexed = Dep::new(Indexed::default());
    let (catalog, catalog_running) = start("catalog", &transport, &indexed).await;
    let (_search, search_running) = start("search", &transport, &indexed).await;
    put_on_sale(&catalog, 0..4).await;
    Running::settle_all(&[&catalog_running, &search_running]).await;

    let kept: Vec<String> = transport
        .published_of::<catalog::ProductUpdatedIntegrationEvent>()
        .into_iter()
        .map(|e| e.product_id)
        .collect();
    assert_eq!(kept, product_ids(2..4), "the last `capture` messages");
    assert_eq!(
        indexed.products(),
        product_ids(0..4),
        "delivery is not bounded by it"
    );
    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
}
