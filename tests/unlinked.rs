//! Without `use tidings_test_billing as _;`, the linker drops the billing crate, whose items this
//! program never names: the registry must say so, loudly.

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductPutOnSale {
    pub product_id: String,
}

#[test]
fn a_dropped_crate_is_reported_with_the_line_that_links_it() {
    let registry = tidings::registry();
    assert_eq!(
        registry.crates().into_iter().collect::<Vec<_>>(),
        ["unlinked"]
    );
    let error = registry
        .expect_crates(&["tidings-test-billing"])
        .expect_err("billing is not linked into this program");
    let message = error.to_string();
    assert!(message.contains("`tidings_test_billing`"), "{message}");
    assert!(
        message.contains("use tidings_test_billing as _;"),
        "{message}"
    );
}
