//! The registry collects every item the macros describe, in this crate and in another crate of
//! the workspace, with module paths and source locations.

use tidings::prelude::*;
use tidings::{registry, registry::RegistryError};
// The one line a program needs for a crate whose items it never names.
use tidings_test_billing as _;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductRestocked {
    pub product_id: String,
}

#[integration_event(name = "catalog.product-updated", version = 2, from = [ProductPutOnSale, ProductRestocked], key = product_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

impl From<&ProductRestocked> for ProductUpdatedIntegrationEvent {
    fn from(event: &ProductRestocked) -> Self {
        ProductUpdatedIntegrationEvent {
            product_id: event.product_id.clone(),
        }
    }
}

/// A contract this program only consumes: no `from`, and the default name.
#[integration_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PaymentCapturedIntegrationEvent {
    pub order_id: u64,
}

#[handles]
fn publish_product_updated(event: &ProductPutOnSale) -> ProductUpdatedIntegrationEvent {
    ProductUpdatedIntegrationEvent {
        product_id: event.product_id.clone(),
    }
}

#[handles]
async fn index_product(event: &ProductUpdatedIntegrationEvent, index: Dep<String>) {
    let _ = (event, index);
}

#[test]
fn collects_events_contracts_and_handlers_of_this_crate() {
    let registry = registry();
    let sale = registry
        .domain_event::<ProductPutOnSale>()
        .expect("registered");
    assert_eq!(sale.name(), "ProductPutOnSale");
    assert_eq!(sale.origin().module_path(), "registry");
    assert_eq!(sale.origin().file(), "tests/registry.rs");
    assert_eq!(sale.origin().line(), 9, "the line of `#[domain_event]`");

    let contract = registry
        .integration_event::<ProductUpdatedIntegrationEvent>()
        .expect("registered");
    assert_eq!(contract.contract(), "catalog.product-updated");
    assert_eq!(contract.version(), 2);
    assert_eq!(contract.key(), Some("product_id"));
    let sources: Vec<_> = contract
        .sources()
        .iter()
        .map(|s| s.event().name())
        .collect();
    assert_eq!(sources, ["ProductPutOnSale", "ProductRestocked"]);

    let consumed = registry
        .integration_event::<PaymentCapturedIntegrationEvent>()
        .expect("registered");
    assert_eq!(consumed.contract(), "payment-captured");
    assert_eq!(consumed.version(), 1);
    assert_eq!(consumed.key(), None);
    assert!(consumed.sources().is_empty());
}

#[test]
fn knows_per_source_whether_a_from_translation_exists() {
    let contract = registry()
        .integration_event::<ProductUpdatedIntegrationEvent>()
        .unwrap();
    let [on_sale, restocked] = contract.sources() else {
        panic!("two sources expected");
    };
    assert!(
        !on_sale.has_from_impl(),
        "ProductPutOnSale is translated by a handler"
    );
    assert!(
        restocked.has_from_impl(),
        "ProductRestocked is translated by From"
    );

    let translate = restocked.from_impl().unwrap();
    let event = ProductRestocked {
        product_id: "p-9".into(),
    };
    let produced = translate
        .translate(tidings::__private::AnyEvent::of(&event))
        .expect("a ProductRestocked");
    assert_eq!(produced.contract(), "catalog.product-updated");
    assert_eq!(produced.key().as_deref(), Some("p-9"));
    let typed = produced
        .as_any()
        .downcast_ref::<ProductUpdatedIntegrationEvent>()
        .unwrap();
    assert_eq!(typed.product_id, "p-9");
    assert!(
        translate
            .translate(tidings::__private::AnyEvent::of(&on_sale_event()))
            .is_none(),
        "another source type"
    );
}

fn on_sale_event() -> ProductPutOnSale {
    ProductPutOnSale {
        product_id: "p-1".into(),
    }
}

#[test]
fn describes_handlers_and_translations() {
    let registry = registry();
    let translation = registry
        .handlers_of::<ProductPutOnSale>()
        .collect::<Vec<_>>();
    assert_eq!(translation.len(), 1);
    let translation = translation[0];
    assert_eq!(translation.name(), "publish_product_updated");
    assert_eq!(translation.path(), "registry::publish_product_updated");
    assert_eq!(translation.event_kind(), EventKind::Domain);
    assert!(
        translation
            .produces()
            .unwrap()
            .is::<ProductUpdatedIntegrationEvent>()
    );
    assert!(translation.deps().is_empty());

    let by_pair: Vec<_> = registry
        .translation_handlers(
            std::any::TypeId::of::<ProductUpdatedIntegrationEvent>(),
            std::any::TypeId::of::<ProductPutOnSale>(),
        )
        .map(|h| h.name())
        .collect();
    assert_eq!(by_pair, ["publish_product_updated"]);

    let inbound = registry
        .handlers_of::<ProductUpdatedIntegrationEvent>()
        .next()
        .unwrap();
    assert_eq!(inbound.event_kind(), EventKind::Integration);
    assert_eq!(inbound.produces(), None);
    assert!(inbound.deps()[0].is::<String>());
    assert_eq!(inbound.deps()[0].name(), "String");
    assert!(matches!(
        tidings::__private::CallHandler::invoke(inbound),
        tidings::__private::HandlerFn::Async(_)
    ));
}

#[test]
fn collects_the_items_of_another_crate_of_the_workspace() {
    use tidings_test_billing::{InvoiceIssued, InvoiceIssuedIntegrationEvent};
    let registry = registry();
    assert_eq!(
        registry.crates().into_iter().collect::<Vec<_>>(),
        ["registry", "tidings_test_billing"]
    );
    let issued = registry
        .domain_event::<InvoiceIssued>()
        .expect("billing's event");
    assert_eq!(issued.origin().crate_name(), "tidings_test_billing");
    assert_eq!(issued.origin().file(), "tests/billing/src/lib.rs");

    let contract = registry
        .integration_event::<InvoiceIssuedIntegrationEvent>()
        .expect("billing's contract");
    assert_eq!(contract.contract(), "billing.invoice-issued");
    assert!(contract.sources()[0].has_from_impl());

    let archive = registry
        .handlers_of::<InvoiceIssued>()
        .next()
        .expect("billing's handler in a private module");
    assert_eq!(
        archive.path(),
        "tidings_test_billing::handlers::archive_invoice"
    );
}

#[test]
fn expected_crates_are_checked() {
    let registry = registry();
    assert_eq!(
        registry.expect_crates(&["tidings-test-billing", "registry"]),
        Ok(())
    );
    let error = registry
        .expect_crates(&["tidings-test-billing", "shipping_handlers"])
        .unwrap_err();
    assert_eq!(
        error,
        RegistryError::MissingCrates {
            missing: vec!["shipping_handlers".into()]
        }
    );
    assert!(error.to_string().contains("use shipping_handlers as _;"));
}

#[test]
fn the_order_is_stable() {
    let names: Vec<_> = registry()
        .domain_events()
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(
        names,
        ["ProductPutOnSale", "ProductRestocked", "InvoiceIssued"]
    );
}
