//! The checks of a scenario: each failure panics with the suite, the scenario and what broke.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long one call on a seam may take before the scenario calls it hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One running scenario, named in every failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scenario {
    suite: &'static str,
    name: &'static str,
}

impl Scenario {
    pub(crate) const fn new(suite: &'static str, name: &'static str) -> Self {
        Scenario { suite, name }
    }

    /// Panics: the scenario failed, for `why`.
    #[track_caller]
    pub(crate) fn fail(&self, why: impl Display) -> ! {
        panic!(
            "{} conformance, scenario `{}`: {why}",
            self.suite, self.name
        )
    }

    /// Awaits `call`, a call on the seam described by `what`; fails on its error, or if it does
    /// not resolve in a minute.
    #[track_caller]
    pub(crate) fn call<T, E: Display>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, E>>,
    ) -> impl Future<Output = T> {
        let location = std::panic::Location::caller();
        async move {
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(value)) => value,
                Ok(Err(error)) => self.fail(format_args!("{what} failed: {error} (at {location})")),
                Err(_) => self.fail(format_args!(
                    "{what} did not finish within {CALL_TIMEOUT:?} (at {location})"
                )),
            }
        }
    }

    /// Fails with `why` unless `condition` holds.
    #[track_caller]
    pub(crate) fn ensure(&self, condition: bool, why: impl FnOnce() -> String) {
        if !condition {
            self.fail(why());
        }
    }

    /// Fails unless `actual` equals `expected`, saying `what` was compared.
    #[track_caller]
    pub(crate) fn same<T: PartialEq + Debug>(&self, what: &str, actual: T, expected: T) {
        if actual != expected {
            self.fail(format_args!(
                "{what}: expected {expected:?}, got {actual:?}"
            ));
        }
    }

    /// Fails unless `actual` is `expected` to the microsecond (truncated or rounded).
    #[track_caller]
    pub(crate) fn same_time(&self, what: &str, actual: DateTime<Utc>, expected: DateTime<Utc>) {
        let apart = (actual.timestamp_micros() - expected.timestamp_micros()).abs();
        if apart > 1 {
            self.fail(format_args!(
                "{what}: expected {expected:?}, got {actual:?}"
            ));
        }
    }
}
