//! The compile-time rules: every `tests/ui/fail/*.rs` must fail with the error in its `.stderr`,
//! and every `tests/ui/pass/*.rs` must compile and run.
//!
//! Compiler messages change between releases, so the suite runs on the pinned toolchain only
//! (`rust-toolchain.toml`); another compiler skips it instead of failing. To accept new output
//! after a deliberate change, run `TRYBUILD=overwrite cargo test -p tidings-tests --test ui`
//! and read every changed `.stderr` as a user would.

#[rustversion::attr(
    not(stable(1.95)),
    ignore = "the .stderr files are written by rustc 1.95"
)]
#[test]
fn compile_time_rules() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
