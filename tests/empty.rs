//! A program with nothing registered: building an app says so, with the line to add.

#[test]
fn an_empty_registry_is_a_build_error() {
    let error = tidings::Tidings::builder("catalog").validate().unwrap_err();
    assert_eq!(error.problems().len(), 1, "{error}");
    assert_eq!(error.problems()[0], tidings::Problem::NothingLinked);
    let problem = error.problems()[0].to_string();
    assert!(problem.starts_with("no event or handler is linked into this program"));
    assert!(problem.contains("use that_crate as _;"));
}
