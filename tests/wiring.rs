//! What only the whole program can show is a `build()` error that lists every problem at once,
//! and `validate()` runs the same checks in a user's test suite.

use tidings::prelude::*;

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

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductArchived {
    pub product_id: String,
}

/// `from = ProductPutOnSale` has no translation; `from = ProductRestocked` has two.
#[integration_event(name = "catalog.product-updated", from = [ProductPutOnSale, ProductRestocked])]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

impl From<&ProductRestocked> for ProductUpdatedIntegrationEvent {
    fn from(event: &ProductRestocked) -> Self {
        Self {
            product_id: event.product_id.clone(),
        }
    }
}

#[handles]
fn restock_update(event: &ProductRestocked) -> ProductUpdatedIntegrationEvent {
    ProductUpdatedIntegrationEvent {
        product_id: event.product_id.clone(),
    }
}

/// Claims the same contract name and version as `ProductUpdatedIntegrationEvent`.
#[integration_event(name = "catalog.product-updated", from = ProductArchived)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductArchivedIntegrationEvent {
    pub product_id: String,
}

impl From<&ProductArchived> for ProductArchivedIntegrationEvent {
    fn from(event: &ProductArchived) -> Self {
        Self {
            product_id: event.product_id.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Recommendations;

#[handles]
fn recalculate(_event: &ProductPutOnSale, _recs: Dep<Recommendations>) {}

#[test]
fn every_problem_is_listed_at_once() {
    let error = Tidings::builder("catalog").validate().unwrap_err();
    let problems: Vec<String> = error.problems().iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 4, "{error}");
    assert!(
        matches!(
            error.problems(),
            [
                tidings::Problem::ContractClaimedTwice { version: 1, .. },
                tidings::Problem::MissingDependency {
                    handler: "recalculate",
                    dependency: "Recommendations",
                    ..
                },
                tidings::Problem::Untranslated {
                    contract: "ProductUpdatedIntegrationEvent",
                    source_event: "ProductPutOnSale",
                    ..
                },
                tidings::Problem::TranslatedTwice {
                    source_event: "ProductRestocked",
                    ..
                },
            ]
        ),
        "{:?}",
        error.problems()
    );
    assert!(problems[0].starts_with(
        "contract `catalog.product-updated` version 1 is claimed by `ProductArchivedIntegrationEvent`"
    ), "{}", problems[0]);
    assert!(problems[0].ends_with("and `ProductUpdatedIntegrationEvent` (wiring, at tests/wiring.rs:25:1): give each type its own `name` or `version`"), "{}", problems[0]);
    assert!(
        problems[1].starts_with("handler `recalculate` (wiring, at tests/wiring.rs:"),
        "{}",
        problems[1]
    );
    assert!(problems[1].ends_with("takes `Dep<Recommendations>`, and no value of that type was provided: add `.provide(..)` with a `Recommendations` to the builder"), "{}", problems[1]);
    assert!(
        problems[2]
            .starts_with("`ProductUpdatedIntegrationEvent` declares `from = ProductPutOnSale`"),
        "{}",
        problems[2]
    );
    assert!(
        problems[2].contains("and nothing translates it"),
        "{}",
        problems[2]
    );
    assert!(problems[3].starts_with("`ProductUpdatedIntegrationEvent` from `ProductRestocked` is translated 2 times, by handler `restock_update`"), "{}", problems[3]);
    assert!(
        problems[3]
            .contains("and `impl From<&ProductRestocked> for ProductUpdatedIntegrationEvent`"),
        "{}",
        problems[3]
    );

    let display = error.to_string();
    assert!(
        display.starts_with("the `catalog` app is not wired right (4 problems):\n  1. contract"),
        "{display}"
    );
}

#[test]
fn build_fails_with_the_same_problems() {
    let validated = Tidings::builder("catalog").validate().unwrap_err();
    match Tidings::builder("catalog").build() {
        Err(tidings::Error::Build(built)) => assert_eq!(built, validated),
        other => panic!("expected a build error, got {other:?}"),
    }
}

#[test]
fn a_provided_dependency_is_no_longer_a_problem() {
    let error = Tidings::builder("catalog")
        .provide(Recommendations)
        .validate()
        .unwrap_err();
    assert_eq!(error.problems().len(), 3);
    assert!(!error.to_string().contains("Dep<Recommendations>"));
}
