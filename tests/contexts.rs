//! A modular monolith: two bounded contexts in one process, each with its own app. Each runs only
//! its own handlers and publishes only its own contracts; they talk through the transport.

use std::sync::Mutex;

use tidings::Running;
use tidings::prelude::*;

/// What ran, in which context: (context, handler, event envelope).
#[derive(Debug, Default)]
pub struct Journal(Mutex<Vec<(&'static str, &'static str, EventMeta)>>);

impl Journal {
    fn write(&self, context: &'static str, handler: &'static str, meta: &EventMeta) {
        self.0
            .lock()
            .unwrap()
            .push((context, handler, meta.clone()));
    }

    fn lines(&self) -> Vec<(&'static str, &'static str)> {
        let mut lines: Vec<_> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(c, h, _)| (*c, *h))
            .collect();
        lines.sort();
        lines
    }
}

pub mod catalog {
    tidings::context!("catalog");

    use super::Journal;
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

    #[handles]
    fn project_product(_event: &ProductPutOnSale, journal: Dep<Journal>, meta: &EventMeta) {
        journal.write("catalog", "project_product", meta);
    }

    #[handles]
    fn publish_product_updated(
        event: &ProductPutOnSale,
        journal: Dep<Journal>,
        meta: &EventMeta,
    ) -> ProductUpdatedIntegrationEvent {
        journal.write("catalog", "publish_product_updated", meta);
        ProductUpdatedIntegrationEvent {
            product_id: event.product_id.clone(),
        }
    }
}

pub mod search {
    tidings::context!("search");

    use super::Journal;
    use super::catalog::ProductUpdatedIntegrationEvent;
    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct ProductIndexed {
        pub product_id: String,
    }

    /// Consumes catalog's contract, and runs a use case of search: publishes its own domain
    /// event, caused by the contract it handles.
    #[handles]
    async fn index_product(
        event: &ProductUpdatedIntegrationEvent,
        journal: Dep<Journal>,
        meta: &EventMeta,
        events: DomainEvents,
    ) -> Result<(), tidings::Error> {
        journal.write("search", "index_product", meta);
        events
            .publish(ProductIndexed {
                product_id: event.product_id.clone(),
            })
            .await?;
        Ok(())
    }

    #[handles]
    fn warm_cache(_event: &ProductIndexed, journal: Dep<Journal>, meta: &EventMeta) {
        journal.write("search", "warm_cache", meta);
    }
}

async fn start(
    context: &str,
    transport: &InMemoryTransport,
    journal: &Dep<Journal>,
) -> (Tidings, Running) {
    let app = Tidings::builder(context)
        .transport(transport.clone())
        .provide_dep(journal.clone())
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    (app, running)
}

#[tokio::test]
async fn each_context_runs_only_its_own_handlers() {
    let transport = InMemoryTransport::default();
    let journal = Dep::new(Journal::default());
    let (catalog, catalog_running) = start("catalog", &transport, &journal).await;
    let (_search, search_running) = start("search", &transport, &journal).await;

    let published = catalog
        .domain_events()
        .publish(catalog::ProductPutOnSale {
            product_id: "p-1".into(),
        })
        .await
        .unwrap();
    Running::settle_all(&[&catalog_running, &search_running]).await;

    assert_eq!(
        journal.lines(),
        [
            ("catalog", "project_product"),
            ("catalog", "publish_product_updated"),
            ("search", "index_product"),
            ("search", "warm_cache"),
        ],
        "each handler ran once, in its own context"
    );
    let messages = transport.published();
    assert_eq!(
        messages.len(),
        1,
        "only catalog publishes catalog's contract"
    );
    assert_eq!(messages[0].source, "catalog");

    let entries = journal.0.lock().unwrap().clone();
    let meta_of = |handler: &str| &entries.iter().find(|(_, h, _)| *h == handler).unwrap().2;
    let indexed = meta_of("index_product");
    let warmed = meta_of("warm_cache");
    assert_eq!(indexed.id, messages[0].id);
    assert_eq!(
        warmed.causation_id,
        Some(indexed.id),
        "caused by the handled contract"
    );
    assert_eq!(
        warmed.correlation_id, published.correlation_id,
        "one correlation end to end"
    );
    assert_eq!(warmed.source, "search");

    catalog_running.shutdown().await.unwrap();
    search_running.shutdown().await.unwrap();
}

#[test]
fn an_app_of_an_undeclared_context_is_refused() {
    let error = Tidings::builder("billing").validate().unwrap_err();
    assert_eq!(
        error.problems().iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["no `tidings::context!(\"billing\")` is declared (declared: catalog, search): declare it \
          in the module of the `billing` context, or build the app with one of those names"
            .to_owned()]
    );
}

#[test]
fn the_registry_knows_the_context_of_each_item() {
    let registry = tidings::registry();
    let context = |name: &str| {
        let handler = registry
            .handlers()
            .iter()
            .find(|h| h.name() == name)
            .unwrap();
        registry.context_of(handler.origin().module_path())
    };
    assert_eq!(context("project_product"), Some("catalog"));
    assert_eq!(context("index_product"), Some("search"));
}

#[tokio::test]
async fn an_event_of_another_context_is_refused_at_publish() {
    let transport = InMemoryTransport::default();
    let journal = Dep::new(Journal::default());
    let store = InMemoryStore::default();
    let search = Tidings::builder("search")
        .store(store.clone())
        .transport(transport)
        .provide_dep(journal)
        .build()
        .unwrap();

    let refused = search
        .domain_events()
        .publish(catalog::ProductPutOnSale {
            product_id: "p-1".into(),
        })
        .await
        .expect_err("search has no handler of catalog's event");

    assert!(
        matches!(
            &refused,
            tidings::Error::NotThisContext { event: "ProductPutOnSale", owner: Some("catalog"), context }
                if context == "search"
        ),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        "`ProductPutOnSale` is a domain event of the `catalog` context, and was published to the \
         `search` app, where no handler handles it: publish it with the `catalog` app's \
         `domain_events()`"
    );
    assert_eq!(store.pending(), (0, 0), "nothing was recorded");
}
