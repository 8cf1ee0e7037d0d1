//! Conformance suites for the seams (feature `testing`): what a [`Store`](crate::store::Store)
//! or a [`Transport`](crate::transport::Transport) of your own must do for tidings to run on it.
//!
//! Each suite runs a list of scenarios, each on a fresh store or transport that your factory
//! makes, and **panics** with a message naming the scenario and what broke, like an assertion
//! in a test: call the suites from `#[tokio::test]` functions. Each scenario is also a `pub
//! async fn` of its own, to run one that fails alone. A scenario that does not apply to what
//! it was given (the lease expiry of a store whose claims never expire, the redelivery of a
//! transport that does not redeliver) returns [`Verdict::Skipped`] with the reason, and the
//! [`Report`] of a suite says which ran and which were skipped.
//!
//! - [`store_conformance`] runs the [`StoreScenario`]s ([`store::SCENARIOS`] lists them, with
//!   what each checks). The factory receives a [`StoreSetup`]: give the store the lease it asks
//!   for if your store's claims expire (short for the lease scenario, long for the others).
//!   Stores that keep their events in a database also run
//!   [`store::record_in_commits_or_rolls_back`], which needs the caller's transaction.
//! - [`transport_conformance`] runs the [`TransportScenario`]s ([`transport::SCENARIOS`]) and
//!   reports [`TransportScenario::Redelivery`] skipped; a transport that redelivers what was not
//!   acknowledged says so with [`Capabilities`] to [`transport_conformance_with`], or runs
//!   [`transport::redelivery`] alone. [`Patience`] says how long the suite waits for a message
//!   and how long it listens for messages that should not come; it asserts no timing. The
//!   suite spawns tasks: run it in a tokio runtime.
//!
//! The scenarios use the current time, never a made-up one: a store may reckon due times and
//! leases on its own clock (as [`PostgresStore`](crate::PostgresStore) does on the database's).
//! Times are compared to the microsecond, what databases keep.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! use tidings::SqliteStore;
//! use tidings::testing::{StoreSetup, store_conformance, transport_conformance};
//! # use tidings::{InMemoryStore as MyStore, InMemoryTransport as MyTransport};
//!
//! #[tokio::test]
//! async fn my_store_conforms() {
//!     // Each scenario gets a new, empty store; one whose claims never expire ignores the setup.
//!     let report = store_conformance(|_setup: StoreSetup| async { MyStore::new() }).await;
//!     eprintln!("{report}");
//! }
//!
//! #[tokio::test]
//! async fn a_database_store_conforms() {
//!     let files = AtomicUsize::new(0);
//!     store_conformance(|setup: StoreSetup| {
//!         let n = files.fetch_add(1, Ordering::Relaxed);
//!         let path = std::env::temp_dir().join(format!("conformance-{n}.db"));
//!         async move {
//!             let _ = std::fs::remove_file(&path);
//!             let store = SqliteStore::open(&path).await.expect("the database opens");
//!             // The lease the scenario asks for: short only for the lease expiry.
//!             store.lease(setup.lease)
//!         }
//!     })
//!     .await;
//! }
//!
//! #[tokio::test]
//! async fn my_transport_conforms() {
//!     let report = transport_conformance(|| async { MyTransport::new() }).await;
//!     assert!(report.skipped().any(|name| name == "redelivery"));
//! }
//! # fn main() {}
//! ```

use std::fmt;

mod check;
mod records;
pub mod store;
pub mod transport;

pub use records::{domain_event, integration_event, integration_row, message};
pub use store::{StoreScenario, StoreSetup, store_conformance};
pub use transport::{
    Capabilities, Patience, TransportScenario, transport_conformance, transport_conformance_with,
};

/// How one scenario ended, when it did not panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Passed,
    /// The scenario does not apply to what it was given, for this reason.
    Skipped(String),
}

/// What a suite ran: each scenario's name and verdict, in the order they ran. A failing
/// scenario panics, so a report only holds passes and skips.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Each scenario's name and verdict.
    pub scenarios: Vec<(&'static str, Verdict)>,
}

impl Report {
    /// The names of the scenarios that passed.
    pub fn passed(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.scenarios
            .iter()
            .filter(|(_, verdict)| *verdict == Verdict::Passed)
            .map(|(name, _)| *name)
    }

    /// The names of the scenarios that were skipped.
    pub fn skipped(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.scenarios
            .iter()
            .filter(|(_, verdict)| matches!(verdict, Verdict::Skipped(_)))
            .map(|(name, _)| *name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, verdict) in &self.scenarios {
            match verdict {
                Verdict::Passed => writeln!(f, "{name}: passed")?,
                Verdict::Skipped(reason) => writeln!(f, "{name}: skipped ({reason})")?,
            }
        }
        Ok(())
    }
}
