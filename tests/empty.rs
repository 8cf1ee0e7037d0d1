//! A program with nothing registered: building an app says so, with the line to add.

#[test]
fn an_empty_registry_is_a_build_error() {
    let error = tidings::Tidings::builder("catalog").validate().unwrap_err();
    assert_eq!(error.problems().len(), 1, "{error}");
    assert!(error.problems()[0].starts_with("no event or handler is linked into this program"));
    assert!(error.problems()[0].contains("use that_crate as _;"));
}
