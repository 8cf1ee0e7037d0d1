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

/// `main() -> Result<(), tidings::Error>` prints the error's `Debug` form: it reads as the
/// message, every problem on a numbered line.
#[test]
fn a_build_error_debug_prints_readably() {
    let error = tidings::Tidings::builder("catalog").build().unwrap_err();
    let printed = format!("{error:?}");
    assert!(
        printed.starts_with(
            "the `catalog` app is not wired right (1 problem):\n  1. no event or handler is linked"
        ),
        "{printed}"
    );
}
