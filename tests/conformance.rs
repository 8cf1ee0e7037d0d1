//! The conformance suites of `tidings::testing` on the stores and the transport that tidings
//! ships: every store scenario on `InMemoryStore`, `SqliteStore` (a file per scenario) and
//! `PostgresStore` (a schema per scenario, on `DATABASE_URL`), the caller's-transaction
//! scenario on both SQL stores, and the transport scenarios on `InMemoryTransport`. One test
//! per scenario and seam, so that a failure names both.

mod support;

use support::TempDb;
use tidings::testing::store::{self, SCENARIOS as STORE_SCENARIOS};
use tidings::testing::transport::{self, SCENARIOS as TRANSPORT_SCENARIOS};
use tidings::testing::{
    Patience, StoreScenario, StoreSetup, TransportScenario, Verdict, store_conformance,
    transport_conformance,
};
use tidings::{InMemoryStore, InMemoryTransport, PostgresStore, SqliteStore};

async fn sqlite(db: &TempDb, setup: StoreSetup) -> SqliteStore {
    SqliteStore::open(&db.0)
        .await
        .expect("the SQLite file opens")
        .lease(setup.lease)
}

/// A PostgreSQL store in a fresh schema for scenario `name`, or `None` (said plainly) without
/// `DATABASE_URL`.
async fn postgres(name: &str, setup: StoreSetup) -> Option<PostgresStore> {
    let url = support::database_url(&format!("conformance {name} on PostgreSQL"))?;
    let schema_of_test = format!("conf_{name}");
    let (pool, schema) = support::fresh_schema(&url, &schema_of_test).await;
    let store = PostgresStore::connect_with(pool, &schema)
        .await
        .expect("the PostgreSQL store migrates its schema");
    Some(store.lease(setup.lease))
}

/// Runs `scenario` on a fresh store of each kind, one test each.
macro_rules! store_scenario {
    ($scenario:ident, $variant:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test]
            async fn in_memory() {
                let scenario = StoreScenario::$variant;
                let verdict = scenario.run(&InMemoryStore::new()).await;
                if scenario == StoreScenario::LeaseExpiry {
                    assert!(matches!(verdict, Verdict::Skipped(_)), "{verdict:?}");
                } else {
                    assert_eq!(verdict, Verdict::Passed);
                }
            }

            #[tokio::test]
            async fn sqlite() {
                let scenario = StoreScenario::$variant;
                let db = TempDb::new();
                let store = super::sqlite(&db, scenario.setup()).await;
                assert_eq!(scenario.run(&store).await, Verdict::Passed);
            }

            #[tokio::test]
            async fn postgres() {
                let scenario = StoreScenario::$variant;
                let Some(store) = super::postgres(stringify!($scenario), scenario.setup()).await
                else {
                    return;
                };
                assert_eq!(scenario.run(&store).await, Verdict::Passed);
            }
        }
    };
}

store_scenario!(record, Record);
store_scenario!(claim, Claim);
store_scenario!(lease_expiry, LeaseExpiry);
store_scenario!(complete_with_rows, CompleteWithRows);
store_scenario!(complete_many, CompleteMany);
store_scenario!(complete_and_claim, CompleteAndClaim);
store_scenario!(retry, Retry);
store_scenario!(dead_letter, DeadLetter);
store_scenario!(replay, Replay);
store_scenario!(discard, Discard);
store_scenario!(inbox_dedupe, InboxDedupe);
store_scenario!(prune, Prune);
store_scenario!(order_per_key, OrderPerKey);
store_scenario!(waiting, Waiting);
store_scenario!(rows_published, RowsPublished);
store_scenario!(claim_rows_past_in_flight, ClaimRowsPastInFlight);
store_scenario!(many_handlers, ManyHandlers);

/// The tests above cover the suite's list, no more and no less.
#[test]
fn every_store_scenario_has_its_tests() {
    let covered = [
        "record",
        "claim",
        "lease_expiry",
        "complete_with_rows",
        "complete_many",
        "complete_and_claim",
        "retry",
        "dead_letter",
        "replay",
        "discard",
        "inbox_dedupe",
        "prune",
        "order_per_key",
        "waiting",
        "rows_published",
        "claim_rows_past_in_flight",
        "many_handlers",
    ];
    let listed: Vec<&str> = STORE_SCENARIOS.iter().map(|s| s.name()).collect();
    assert_eq!(listed, covered);
    for scenario in STORE_SCENARIOS {
        assert!(!scenario.checks().is_empty());
    }
}

/// The whole store suite, as a third party runs it: the in-memory store passes it all but the
/// lease expiry, which it skips.
#[tokio::test]
async fn in_memory_store_passes_the_store_suite() {
    let report = store_conformance(|_| async { InMemoryStore::new() }).await;
    assert_eq!(report.skipped().collect::<Vec<_>>(), ["lease_expiry"]);
    assert_eq!(report.passed().count(), STORE_SCENARIOS.len() - 1);
}

/// The whole store suite on SQLite, a file per scenario: nothing skipped.
#[tokio::test]
async fn sqlite_store_passes_the_store_suite() {
    let dbs = std::sync::Mutex::new(Vec::new());
    let report = store_conformance(|setup| {
        let db = TempDb::new();
        let path = db.0.clone();
        dbs.lock().expect("the list of files").push(db);
        async move {
            SqliteStore::open(&path)
                .await
                .expect("the SQLite file opens")
                .lease(setup.lease)
        }
    })
    .await;
    assert_eq!(report.skipped().count(), 0, "{report}");
    assert_eq!(report.passed().count(), STORE_SCENARIOS.len());
}

#[tokio::test]
async fn sqlite_store_records_in_the_callers_transaction() {
    let db = TempDb::new();
    let store = sqlite(&db, StoreSetup::default()).await;
    let verdict = store::record_in_commits_or_rolls_back(&store, || store.pool().begin()).await;
    assert_eq!(verdict, Verdict::Passed);
}

#[tokio::test]
async fn postgres_store_records_in_the_callers_transaction() {
    let Some(store) = postgres("record_in", StoreSetup::default()).await else {
        return;
    };
    let verdict = store::record_in_commits_or_rolls_back(&store, || store.pool().begin()).await;
    assert_eq!(verdict, Verdict::Passed);
}

/// Runs `scenario` on a fresh `InMemoryTransport`.
macro_rules! transport_scenario {
    ($scenario:ident, $variant:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test]
            async fn in_memory() {
                let verdict = TransportScenario::$variant
                    .run(&InMemoryTransport::new(), Patience::default())
                    .await;
                assert_eq!(verdict, Verdict::Passed);
            }
        }
    };
}

mod transport_scenarios {
    use super::*;

    transport_scenario!(per_contract, PerContract);
    transport_scenario!(shared_within_context, SharedWithinContext);
    transport_scenario!(instance_leaves, InstanceLeaves);
    transport_scenario!(every_context, EveryContext);
    transport_scenario!(acknowledged, Acknowledged);
    transport_scenario!(order_per_key, OrderPerKey);
    transport_scenario!(cancelled_next, CancelledNext);
}

#[test]
fn every_transport_scenario_has_its_test() {
    let listed: Vec<&str> = TRANSPORT_SCENARIOS.iter().map(|s| s.name()).collect();
    assert_eq!(
        listed,
        [
            "per_contract",
            "shared_within_context",
            "instance_leaves",
            "every_context",
            "acknowledged",
            "redelivery",
            "order_per_key",
            "cancelled_next",
        ]
    );
}

/// The in-memory transport does not redeliver what was not acknowledged: the suite skips that
/// scenario unless told otherwise, and the scenario itself fails on it, not silently passing.
#[tokio::test]
async fn in_memory_transport_does_not_redeliver() {
    let quick = Patience::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_millis(100),
    );
    let failed =
        tokio::spawn(async move { transport::redelivery(&InMemoryTransport::new(), quick).await })
            .await
            .expect_err("the redelivery scenario fails on a transport that does not redeliver");
    let panic = failed.into_panic();
    let message = panic
        .downcast_ref::<String>()
        .expect("the scenario panics with a message");
    assert!(
        message.contains("scenario `redelivery`") && message.contains("0 of 1 messages"),
        "{message}"
    );
}

/// The whole transport suite, as a third party runs it.
#[tokio::test]
async fn in_memory_transport_passes_the_transport_suite() {
    let report = transport_conformance(|| async { InMemoryTransport::new() }).await;
    assert_eq!(report.skipped().collect::<Vec<_>>(), ["redelivery"]);
}
