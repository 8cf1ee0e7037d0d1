//! The store suite: the scenarios a [`Store`] must pass, each on a fresh, empty store.
//!
//! [`store_conformance`] runs them all; each is also a `pub async fn` here, to run one alone on
//! a store you made. [`SCENARIOS`] lists them with what each checks. A store that records
//! events in the caller's database transaction also runs [`record_in_commits_or_rolls_back`]
//! (with the `sqlite` or `postgres` feature), which needs that transaction.
//!
//! Every scenario claims with the current time, since a store may reckon due times on its own
//! clock; "not due yet" is tested with times an hour ahead, "due again" with times in the
//! past, so that no check depends on how fast the store answers. The one scenario that waits,
//! [`lease_expiry`], waits for the lease it asked the factory for ([`StoreSetup::lease`]).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::check::Scenario;
use super::records::{domain_event, integration_event, integration_row};
use super::{Report, Verdict};
use crate::store::{
    Completion, DeadLetter, DeadLetterId, Delivery, DeliveryId, IntegrationRow, NewEvent,
    NewIntegrationRow, RowId, Store, StoredEvent,
};
use crate::store::{ContractWaiting, HandlerWaiting, WaitCounts, Waiting};

/// What a scenario asks of the store that the factory of [`store_conformance`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreSetup {
    /// How long the store's claims should hold, for a store whose claims expire (such as
    /// [`SqliteStore::lease`](crate::SqliteStore::lease) or
    /// [`PostgresStore::lease`](crate::PostgresStore::lease)): [`StoreSetup::SHORT_LEASE`]
    /// for [`lease_expiry`], which waits for it, and [`StoreSetup::LONG_LEASE`] for the
    /// others, whose claims must hold for as long as they run. A store whose claims do not
    /// expire ignores it.
    pub lease: Duration,
}

impl StoreSetup {
    /// The lease of every scenario but the lease expiry: an hour, longer than any scenario.
    pub const LONG_LEASE: Duration = Duration::from_secs(3600);
    /// The lease of the lease expiry scenario, which waits for it to pass.
    pub const SHORT_LEASE: Duration = Duration::from_millis(500);
}

impl Default for StoreSetup {
    fn default() -> Self {
        StoreSetup {
            lease: Self::LONG_LEASE,
        }
    }
}

/// The longest lease [`lease_expiry`] waits for; a longer one skips the scenario.
const LONGEST_LEASE_WAITED: Duration = Duration::from_secs(30);

/// One scenario of the store suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreScenario {
    /// [`record`]
    Record,
    /// [`claim`]
    Claim,
    /// [`lease_expiry`]
    LeaseExpiry,
    /// [`complete_with_rows`]
    CompleteWithRows,
    /// [`complete_many`]
    CompleteMany,
    /// [`complete_and_claim`]
    CompleteAndClaim,
    /// [`retry`]
    Retry,
    /// [`dead_letter`]
    DeadLetter,
    /// [`replay`]
    Replay,
    /// [`discard`]
    Discard,
    /// [`inbox_dedupe`]
    InboxDedupe,
    /// [`prune`]
    Prune,
    /// [`order_per_key`]
    OrderPerKey,
    /// [`waiting`]
    Waiting,
    /// [`rows_published`]
    RowsPublished,
    /// [`claim_rows_past_in_flight`]
    ClaimRowsPastInFlight,
    /// [`many_handlers`]
    ManyHandlers,
}

/// Every scenario of the store suite, in the order [`store_conformance`] runs them.
pub const SCENARIOS: &[StoreScenario] = &[
    StoreScenario::Record,
    StoreScenario::Claim,
    StoreScenario::LeaseExpiry,
    StoreScenario::CompleteWithRows,
    StoreScenario::CompleteMany,
    StoreScenario::CompleteAndClaim,
    StoreScenario::Retry,
    StoreScenario::DeadLetter,
    StoreScenario::Replay,
    StoreScenario::Discard,
    StoreScenario::InboxDedupe,
    StoreScenario::Prune,
    StoreScenario::OrderPerKey,
    StoreScenario::Waiting,
    StoreScenario::RowsPublished,
    StoreScenario::ClaimRowsPastInFlight,
    StoreScenario::ManyHandlers,
];

impl StoreScenario {
    /// The scenario's name, as reports and failures give it (the name of its function).
    pub const fn name(self) -> &'static str {
        match self {
            StoreScenario::Record => "record",
            StoreScenario::Claim => "claim",
            StoreScenario::LeaseExpiry => "lease_expiry",
            StoreScenario::CompleteWithRows => "complete_with_rows",
            StoreScenario::CompleteMany => "complete_many",
            StoreScenario::CompleteAndClaim => "complete_and_claim",
            StoreScenario::Retry => "retry",
            StoreScenario::DeadLetter => "dead_letter",
            StoreScenario::Replay => "replay",
            StoreScenario::Discard => "discard",
            StoreScenario::InboxDedupe => "inbox_dedupe",
            StoreScenario::Prune => "prune",
            StoreScenario::OrderPerKey => "order_per_key",
            StoreScenario::Waiting => "waiting",
            StoreScenario::RowsPublished => "rows_published",
            StoreScenario::ClaimRowsPastInFlight => "claim_rows_past_in_flight",
            StoreScenario::ManyHandlers => "many_handlers",
        }
    }

    /// What the scenario checks, in a sentence.
    pub const fn checks(self) -> &'static str {
        match self {
            StoreScenario::Record => {
                "record creates one delivery per listed handler, counted by count_pending, and \
                 gives the event back as it was recorded"
            }
            StoreScenario::Claim => {
                "claims take only listed handlers, in record order, up to the limit, and nothing \
                 more of a handler that a claim holds"
            }
            StoreScenario::LeaseExpiry => {
                "after the lease a claim retakes deliveries and rows at the next attempt, and the \
                 stale attempt's completion changes nothing (skipped without a lease)"
            }
            StoreScenario::CompleteWithRows => {
                "completion records the produced integration rows with it; a stale attempt or an \
                 unknown delivery changes nothing"
            }
            StoreScenario::CompleteMany => {
                "complete_deliveries completes the deliveries of several handlers in one call, \
                 each with its rows; a stale attempt or an unknown delivery among them changes \
                 nothing and does not stop the others"
            }
            StoreScenario::CompleteAndClaim => {
                "complete_and_claim completes a batch, with its rows, then claims the next in \
                 record order, the completed handler's included; a stale completion among them \
                 changes nothing and does not stop the claim"
            }
            StoreScenario::Retry => {
                "retry_delivery reschedules: not due before its time, due again after it at the \
                 next attempt; next_delivery_due counts only what a claim could take"
            }
            StoreScenario::DeadLetter => {
                "dead_letter_delivery and dead_letter_message are listed, oldest first, with \
                 handler, attempts and error; a stale attempt changes nothing"
            }
            StoreScenario::Replay => {
                "replay_dead_letter makes a handler's dead letter due again from attempt 1; \
                 false for an unknown id or a message's dead letter"
            }
            StoreScenario::Discard => {
                "discard_dead_letter deletes one dead letter and creates no delivery; false \
                 for an unknown id"
            }
            StoreScenario::InboxDedupe => {
                "an integration event recorded again creates no delivery for a handler that has \
                 it, even after completion; a domain event always does"
            }
            StoreScenario::Prune => {
                "prune deletes inbox entries and archived rows older than their cutoffs, at most \
                 `limit` of each per call, and no pending work"
            }
            StoreScenario::OrderPerKey => {
                "claim_rows takes the head of each key and every row without key; the next of a \
                 key after row_published; retry_row parks the key until its time, and a stale \
                 attempt's retry_row changes nothing"
            }
            StoreScenario::Waiting => {
                "waiting counts deliveries by handler and rows by contract, each as due now, \
                 scheduled for later or claimed, with the totals of count_pending (a store that \
                 tells only totals is skipped)"
            }
            StoreScenario::RowsPublished => {
                "rows_published marks several rows at once, deleted or archived; the next row of \
                 each of their keys becomes claimable; an empty batch changes nothing"
            }
            StoreScenario::ClaimRowsPastInFlight => {
                "while the oldest rows are claimed, claim_rows takes the next ones: rows without \
                 a key and the heads of other keys, however many rows wait"
            }
            StoreScenario::ManyHandlers => {
                "a claim and a step among 250 handlers (more than a store may cover in one \
                 statement) take each handler's delivery once, and the step completes the \
                 deliveries before"
            }
        }
    }

    /// What the scenario asks of the factory.
    pub fn setup(self) -> StoreSetup {
        match self {
            StoreScenario::LeaseExpiry => StoreSetup {
                lease: StoreSetup::SHORT_LEASE,
            },
            _ => StoreSetup::default(),
        }
    }

    /// Runs the scenario on `store`, which must be fresh and empty, made with
    /// [`setup`](Self::setup). Panics if the store fails it.
    pub async fn run<S: Store + ?Sized>(self, store: &S) -> Verdict {
        match self {
            StoreScenario::Record => record(store).await,
            StoreScenario::Claim => claim(store).await,
            StoreScenario::LeaseExpiry => lease_expiry(store).await,
            StoreScenario::CompleteWithRows => complete_with_rows(store).await,
            StoreScenario::CompleteMany => complete_many(store).await,
            StoreScenario::CompleteAndClaim => complete_and_claim(store).await,
            StoreScenario::Retry => retry(store).await,
            StoreScenario::DeadLetter => dead_letter(store).await,
            StoreScenario::Replay => replay(store).await,
            StoreScenario::Discard => discard(store).await,
            StoreScenario::InboxDedupe => inbox_dedupe(store).await,
            StoreScenario::Prune => prune(store).await,
            StoreScenario::OrderPerKey => order_per_key(store).await,
            StoreScenario::Waiting => waiting(store).await,
            StoreScenario::RowsPublished => rows_published(store).await,
            StoreScenario::ClaimRowsPastInFlight => claim_rows_past_in_flight(store).await,
            StoreScenario::ManyHandlers => many_handlers(store).await,
        }
    }
}

/// Runs every store scenario ([`SCENARIOS`]), each on a fresh, empty store that `make` makes
/// for the scenario's [`StoreSetup`], and reports the verdicts (also printed to stderr).
/// Panics at the first scenario the store fails, naming it and what broke.
pub async fn store_conformance<S, F, Fut>(mut make: F) -> Report
where
    S: Store,
    F: FnMut(StoreSetup) -> Fut,
    Fut: Future<Output = S>,
{
    let mut report = Report::default();
    for &scenario in SCENARIOS {
        let store = make(scenario.setup()).await;
        let verdict = scenario.run(&store).await;
        match &verdict {
            Verdict::Passed => eprintln!("store conformance: {}: passed", scenario.name()),
            Verdict::Skipped(reason) => {
                eprintln!("store conformance: {}: skipped ({reason})", scenario.name())
            }
        }
        report.scenarios.push((scenario.name(), verdict));
    }
    report
}

/// The calls of one scenario on one store, each checked.
struct On<'a, S: ?Sized> {
    sc: Scenario,
    store: &'a S,
}

fn on<'a, S: Store + ?Sized>(name: &'static str, store: &'a S) -> On<'a, S> {
    On {
        sc: Scenario::new("store", name),
        store,
    }
}

fn names(handlers: &[&str]) -> Vec<String> {
    handlers.iter().map(|&h| h.to_owned()).collect()
}

/// `event`, for each of `handlers`.
fn to(event: &StoredEvent, handlers: &[&str]) -> NewEvent {
    NewEvent {
        event: event.clone(),
        handlers: names(handlers),
    }
}

/// Completions of `(delivery, attempt, produced rows)`.
fn completions_of(completions: Vec<(DeliveryId, u32, Vec<NewIntegrationRow>)>) -> Vec<Completion> {
    completions
        .into_iter()
        .map(|(id, attempt, produced)| Completion {
            id,
            attempt,
            produced,
        })
        .collect()
}

/// Deliveries as `(handler, event name, attempt)`, the scenarios naming each event apart.
fn seen(deliveries: &[Delivery]) -> Vec<(&str, &str, u32)> {
    deliveries
        .iter()
        .map(|d| (d.handler.as_str(), d.event.name.as_str(), d.attempt))
        .collect()
}

/// Rows as `(label in the payload, key, attempt)`.
fn rows_seen(rows: &[IntegrationRow]) -> Vec<(String, Option<&str>, u32)> {
    rows.iter()
        .map(|r| {
            let payload: serde_json::Value = r.event.payload.decode().unwrap_or_default();
            let label = payload["row"].as_str().unwrap_or("?").to_owned();
            (label, r.key.as_deref(), r.attempt)
        })
        .collect()
}

fn hour() -> TimeDelta {
    TimeDelta::hours(1)
}

fn second() -> TimeDelta {
    TimeDelta::seconds(1)
}

impl<S: Store + ?Sized> On<'_, S> {
    async fn record(&self, events: Vec<NewEvent>) -> usize {
        self.sc.call("record", self.store.record(events)).await
    }

    /// Claims with the current time, and checks the claim comes in record order.
    async fn claim(&self, limit: usize, handlers: &[&str]) -> Vec<Delivery> {
        let handlers = names(handlers);
        let claimed = self
            .sc
            .call(
                "claim_deliveries",
                self.store.claim_deliveries(Utc::now(), limit, &handlers),
            )
            .await;
        self.check_claim("claim_deliveries", &claimed, limit, &handlers);
        claimed
    }

    /// Completes `completions` and claims with the current time in one call, and checks the
    /// claim as [`claim`](Self::claim) does.
    async fn complete_and_claim(
        &self,
        completions: Vec<(DeliveryId, u32, Vec<NewIntegrationRow>)>,
        limit: usize,
        handlers: &[&str],
    ) -> Vec<Delivery> {
        let handlers = names(handlers);
        let claimed = self
            .sc
            .call(
                "complete_and_claim",
                self.store.complete_and_claim(
                    completions_of(completions),
                    Utc::now(),
                    limit,
                    &handlers,
                ),
            )
            .await;
        self.check_claim("complete_and_claim", &claimed, limit, &handlers);
        claimed
    }

    /// Checks that `method` claimed at most `limit` deliveries, of `handlers`, in record order.
    fn check_claim(&self, method: &str, claimed: &[Delivery], limit: usize, handlers: &[String]) {
        self.sc.ensure(claimed.len() <= limit, || {
            format!("{method} with limit {limit} returned {}", claimed.len())
        });
        self.sc
            .ensure(claimed.windows(2).all(|w| w[0].id < w[1].id), || {
                let ids: Vec<u64> = claimed.iter().map(|d| d.id.get()).collect();
                format!("{method} returned deliveries out of record order: ids {ids:?}")
            });
        for delivery in claimed {
            self.sc.ensure(handlers.contains(&delivery.handler), || {
                format!(
                    "{method} for handlers {handlers:?} returned a delivery of `{}`",
                    delivery.handler
                )
            });
        }
    }

    /// Claims one delivery of `handler`, failing if there is not exactly one.
    async fn claim_one(&self, handler: &str) -> Delivery {
        let claimed = self.claim(10, &[handler]).await;
        match <[Delivery; 1]>::try_from(claimed) {
            Ok([delivery]) => delivery,
            Err(claimed) => self.sc.fail(format_args!(
                "expected one delivery of `{handler}` to claim, got {:?}",
                seen(&claimed)
            )),
        }
    }

    async fn complete(&self, delivery: DeliveryId, attempt: u32, rows: Vec<NewIntegrationRow>) {
        self.complete_all(vec![(delivery, attempt, rows)]).await
    }

    /// Completes several deliveries in one call.
    async fn complete_all(&self, completions: Vec<(DeliveryId, u32, Vec<NewIntegrationRow>)>) {
        self.sc
            .call(
                "complete_deliveries",
                self.store.complete_deliveries(completions_of(completions)),
            )
            .await
    }

    async fn retry(&self, delivery: DeliveryId, attempt: u32, error: &str, at: DateTime<Utc>) {
        self.sc
            .call(
                "retry_delivery",
                self.store
                    .retry_delivery(delivery, attempt, error.to_owned(), at),
            )
            .await
    }

    async fn dead_letter(&self, delivery: DeliveryId, attempt: u32, error: &str) {
        self.sc
            .call(
                "dead_letter_delivery",
                self.store
                    .dead_letter_delivery(delivery, attempt, error.to_owned()),
            )
            .await
    }

    async fn dead_letter_message(&self, event: &StoredEvent, error: &str) {
        self.sc
            .call(
                "dead_letter_message",
                self.store
                    .dead_letter_message(event.clone(), error.to_owned()),
            )
            .await
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.sc
            .call("dead_letters", self.store.dead_letters())
            .await
    }

    async fn replay(&self, id: DeadLetterId) -> bool {
        self.sc
            .call("replay_dead_letter", self.store.replay_dead_letter(id))
            .await
    }

    async fn discard(&self, id: DeadLetterId) -> bool {
        self.sc
            .call("discard_dead_letter", self.store.discard_dead_letter(id))
            .await
    }

    async fn next_delivery_due(&self) -> Option<DateTime<Utc>> {
        self.sc
            .call("next_delivery_due", self.store.next_delivery_due())
            .await
    }

    /// Claims rows with the current time, and checks they come in record order.
    async fn claim_rows(&self, limit: usize) -> Vec<IntegrationRow> {
        let claimed = self
            .sc
            .call("claim_rows", self.store.claim_rows(Utc::now(), limit))
            .await;
        self.sc.ensure(claimed.len() <= limit, || {
            format!("claim_rows with limit {limit} returned {}", claimed.len())
        });
        self.sc
            .ensure(claimed.windows(2).all(|w| w[0].id < w[1].id), || {
                let ids: Vec<u64> = claimed.iter().map(|r| r.id.get()).collect();
                format!("claim_rows returned rows out of record order: ids {ids:?}")
            });
        claimed
    }

    async fn row_published(&self, id: RowId, archive: bool) {
        self.sc
            .call("row_published", self.store.row_published(id, archive))
            .await
    }

    async fn rows_published(&self, rows: &[&IntegrationRow], archive: bool) {
        let ids = rows.iter().map(|r| r.id).collect();
        self.sc
            .call("rows_published", self.store.rows_published(ids, archive))
            .await
    }

    async fn retry_row(&self, row: &IntegrationRow, error: &str, at: DateTime<Utc>) {
        let retried = self
            .store
            .retry_row(row.id, row.attempt, error.to_owned(), at);
        self.sc.call("retry_row", retried).await
    }

    async fn next_row_due(&self) -> Option<DateTime<Utc>> {
        self.sc
            .call("next_row_due", self.store.next_row_due())
            .await
    }

    async fn pending(&self) -> (usize, usize) {
        self.sc
            .call("count_pending", self.store.count_pending())
            .await
    }

    /// What waits, checked against `count_pending`'s totals.
    async fn waiting(&self, when: &str) -> Waiting {
        let waiting = self.sc.call("waiting", self.store.waiting()).await;
        let pending = self.pending().await;
        self.sc.same(
            &format!("waiting's totals (deliveries, rows) {when}, as count_pending counts them"),
            waiting.totals(),
            pending,
        );
        waiting
    }

    /// What [`waiting`](Self::waiting) says, with when each entry's oldest was published
    /// checked against `published` (what is waiting was published between the two times, or,
    /// from a store that does not tell, `None`) and then left out, for the comparisons.
    async fn waiting_since(
        &self,
        when: &str,
        published: (DateTime<Utc>, DateTime<Utc>),
    ) -> Waiting {
        let mut waiting = self.waiting(when).await;
        // PostgreSQL keeps microseconds: the earliest may read a little earlier.
        let (from, to) = (published.0 - TimeDelta::milliseconds(1), published.1);
        let oldest = waiting
            .deliveries
            .iter_mut()
            .map(|d| (d.handler.clone(), d.oldest.take()))
            .chain(
                waiting
                    .rows
                    .iter_mut()
                    .map(|r| (r.contract.clone(), r.oldest.take())),
            );
        for (name, oldest) in oldest {
            self.sc
                .ensure(oldest.is_none_or(|t| t >= from && t <= to), || {
                    format!(
                        "waiting {when}: the oldest of {name:?} was published at {oldest:?}, \
                     not between {from} and {to}"
                    )
                });
        }
        waiting
    }

    /// Checks that `(deliveries, rows)` are pending.
    async fn expect_pending(&self, when: &str, expected: (usize, usize)) {
        let pending = self.pending().await;
        self.sc.same(
            &format!("count_pending (deliveries, rows) {when}"),
            pending,
            expected,
        );
    }

    async fn prune(&self, inbox_before: DateTime<Utc>, archive_before: DateTime<Utc>) -> usize {
        self.sc
            .call(
                "prune",
                self.store.prune(inbox_before, archive_before, PRUNE_LIMIT),
            )
            .await
    }

    /// Checks that `actual` is `expected` as the store gives it back: envelope, kind, name,
    /// version and payload.
    fn same_event(&self, what: &str, actual: &StoredEvent, expected: &StoredEvent) {
        let sc = &self.sc;
        sc.same(
            &format!("{what}: event id"),
            actual.meta.id,
            expected.meta.id,
        );
        sc.same(&format!("{what}: kind"), actual.kind, expected.kind);
        sc.same(&format!("{what}: name"), &actual.name, &expected.name);
        sc.same(
            &format!("{what}: version"),
            actual.version,
            expected.version,
        );
        sc.same(
            &format!("{what}: correlation id"),
            actual.meta.correlation_id,
            expected.meta.correlation_id,
        );
        sc.same(
            &format!("{what}: causation id"),
            actual.meta.causation_id,
            expected.meta.causation_id,
        );
        sc.same(
            &format!("{what}: traceparent"),
            &actual.meta.traceparent,
            &expected.meta.traceparent,
        );
        sc.same(
            &format!("{what}: source"),
            &actual.meta.source,
            &expected.meta.source,
        );
        sc.same_time(
            &format!("{what}: occurred_at"),
            actual.meta.occurred_at,
            expected.meta.occurred_at,
        );
        sc.same(
            &format!("{what}: payload"),
            &actual.payload,
            &expected.payload,
        );
    }
}

/// The `limit` of the prune scenario's calls.
const PRUNE_LIMIT: usize = 2;

/// `record` creates one delivery per listed handler (none for an event with no handler),
/// [`count_pending`](Store::count_pending) counts them claimed or not, and a claim gives each
/// event back as it was recorded: envelope, kind, name, version and payload.
pub async fn record<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("record", store);
    on.expect_pending("of an empty store", (0, 0)).await;
    let placed = domain_event("OrderPlaced", json!({ "order": 1, "lines": [1, 2] }));
    let confirmed = integration_event(
        "sales.order-confirmed",
        2,
        json!({ "order": 1, "note": "ünïcödé 🦀 \"quoted\" back\\slash\nnew line\ttab \u{1}" }),
    );
    let unheard = domain_event("OrderViewed", json!({ "order": 1 }));
    let created = on
        .record(vec![
            to(&placed, &["a", "b"]),
            to(&confirmed, &["a"]),
            to(&unheard, &[]),
        ])
        .await;
    on.sc.same("deliveries created by record", created, 3);
    on.expect_pending("after recording three deliveries", (3, 0))
        .await;

    let claimed = on.claim(10, &["a", "b"]).await;
    let mut summary = seen(&claimed);
    // The order of one event's handlers is the store's; the events come in record order.
    summary[..2].sort();
    on.sc.same(
        "claimed deliveries (handler, event, attempt)",
        summary,
        vec![
            ("a", "OrderPlaced", 1),
            ("b", "OrderPlaced", 1),
            ("a", "sales.order-confirmed", 1),
        ],
    );
    on.same_event("the domain event given back", &claimed[0].event, &placed);
    on.same_event("the domain event given back", &claimed[1].event, &placed);
    on.same_event(
        "the integration event given back",
        &claimed[2].event,
        &confirmed,
    );
    on.expect_pending("while the deliveries are claimed", (3, 0))
        .await;

    for delivery in &claimed {
        on.complete(delivery.id, delivery.attempt, Vec::new()).await;
    }
    on.expect_pending("after completing every delivery", (0, 0))
        .await;
    Verdict::Passed
}

/// Claims take only the listed handlers' deliveries, in record order, up to the limit; a
/// handler whose delivery a claim holds gets nothing more until it is completed.
pub async fn claim<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("claim", store);
    let events: Vec<StoredEvent> = (1..=5)
        .map(|n| domain_event(&format!("E{n}"), json!({ "n": n })))
        .collect();
    let created = on
        .record(vec![
            to(&events[0], &["a"]),
            to(&events[1], &["a"]),
            to(&events[2], &["a"]),
            to(&events[3], &["b"]),
            to(&events[4], &["c"]),
        ])
        .await;
    on.sc.same("deliveries created by record", created, 5);

    let only_b = on.claim(10, &["b"]).await;
    on.sc.same(
        "a claim for handler b alone",
        seen(&only_b),
        vec![("b", "E4", 1)],
    );
    let none = on.claim(10, &[]).await;
    on.sc.same("a claim for no handler", seen(&none), vec![]);

    let first_two = on.claim(2, &["a", "c"]).await;
    on.sc.same(
        "a claim of 2 for handlers a and c (record order, limited)",
        seen(&first_two),
        vec![("a", "E1", 1), ("a", "E2", 1)],
    );
    let rest = on.claim(10, &["a", "c"]).await;
    on.sc.same(
        "a claim while a's deliveries are held (a gets nothing more)",
        seen(&rest),
        vec![("c", "E5", 1)],
    );
    let nothing = on.claim(10, &["a", "b", "c"]).await;
    on.sc.same(
        "a claim while every handler is held",
        seen(&nothing),
        vec![],
    );

    on.complete(first_two[0].id, 1, Vec::new()).await;
    let still_held = on.claim(10, &["a"]).await;
    on.sc
        .same("a claim while a still holds E2", seen(&still_held), vec![]);
    on.complete(first_two[1].id, 1, Vec::new()).await;
    let third = on.claim(10, &["a"]).await;
    on.sc.same(
        "a claim once a's claimed deliveries completed",
        seen(&third),
        vec![("a", "E3", 1)],
    );
    on.expect_pending("with E3, E4 and E5 claimed", (3, 0))
        .await;
    Verdict::Passed
}

/// For a store whose claims expire ([`Store::lease`] is `Some`): once the lease passed, a
/// claim takes a claimed delivery and a claimed row again, same id, next attempt; completing
/// the stale attempt then changes nothing, completing the new one does. Skipped for a store
/// with no lease, or one longer than 30 s (make the factory honor [`StoreSetup::lease`]).
pub async fn lease_expiry<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("lease_expiry", store);
    let Some(lease) = store.lease() else {
        return Verdict::Skipped("the store's claims do not expire (`lease()` is None)".into());
    };
    if lease > LONGEST_LEASE_WAITED {
        return Verdict::Skipped(format!(
            "the store's lease of {lease:?} is longer than the {LONGEST_LEASE_WAITED:?} this \
             scenario waits: make the factory give the store `StoreSetup::lease`"
        ));
    }
    let producer = domain_event("Produced", json!({}));
    on.record(vec![to(&producer, &["h"])]).await;
    let produced = on.claim_one("h").await;
    let row = integration_row("lease.row", Some("k"), json!({ "row": "r" }));
    on.complete(produced.id, produced.attempt, vec![row]).await;

    let held = domain_event("Held", json!({}));
    on.record(vec![to(&held, &["h"])]).await;
    let delivery = on.claim_one("h").await;
    on.sc.same("the first claim's attempt", delivery.attempt, 1);
    let rows = on.claim_rows(10).await;
    on.sc.same(
        "the first claim of rows",
        rows_seen(&rows),
        vec![("r".to_owned(), Some("k"), 1)],
    );
    let row = &rows[0];

    // Claim again until the lease passed, and a little more; nothing here asserts how soon.
    let deadline = tokio::time::Instant::now() + lease + LONGEST_LEASE_WAITED;
    let pause = (lease / 4).max(Duration::from_millis(10));
    let mut retaken: Option<Delivery> = None;
    let mut retaken_row: Option<IntegrationRow> = None;
    while retaken.is_none() || retaken_row.is_none() {
        if tokio::time::Instant::now() > deadline {
            on.sc.fail(format_args!(
                "after the lease of {lease:?} and {LONGEST_LEASE_WAITED:?} more, the claim was \
                 not retaken: delivery retaken {}, row retaken {}",
                retaken.is_some(),
                retaken_row.is_some()
            ));
        }
        tokio::time::sleep(pause).await;
        if retaken.is_none() {
            retaken = on.claim(10, &["h"]).await.into_iter().next();
        }
        if retaken_row.is_none() {
            retaken_row = on.claim_rows(10).await.into_iter().next();
        }
    }
    let (retaken, retaken_row) = match (retaken, retaken_row) {
        (Some(delivery), Some(row)) => (delivery, row),
        _ => on.sc.fail("the loop above ends only with both retaken"),
    };
    on.sc
        .same("the retaken delivery's id", retaken.id, delivery.id);
    on.sc
        .same("the retaken delivery's attempt", retaken.attempt, 2);
    on.same_event("the retaken delivery's event", &retaken.event, &held);
    on.sc.same("the retaken row's id", retaken_row.id, row.id);
    on.sc
        .same("the retaken row's attempt", retaken_row.attempt, 2);

    let late = integration_row("lease.row", None, json!({ "row": "late" }));
    on.complete(delivery.id, delivery.attempt, vec![late]).await;
    on.expect_pending(
        "after the stale attempt's completion (it changes nothing)",
        (1, 1),
    )
    .await;
    on.complete(retaken.id, retaken.attempt, Vec::new()).await;
    on.expect_pending("after the retaken attempt's completion", (0, 1))
        .await;
    on.row_published(retaken_row.id, false).await;
    on.expect_pending("after the retaken row was published", (0, 0))
        .await;
    Verdict::Passed
}

/// Completing a delivery records the integration rows it produced with it (claimable, with
/// their keys and events); completing with a stale attempt, an unknown delivery or one already
/// completed changes nothing, and a stale completion leaves the delivery claimed.
pub async fn complete_with_rows<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("complete_with_rows", store);
    let translated = domain_event("PriceReduced", json!({ "sku": "s1" }));
    on.record(vec![to(&translated, &["translate"])]).await;
    let delivery = on.claim_one("translate").await;
    let keyed = integration_row(
        "catalog.price-changed",
        Some("s1"),
        json!({ "row": "keyed" }),
    );
    let free = integration_row("catalog.price-changed", None, json!({ "row": "free" }));
    on.complete(
        delivery.id,
        delivery.attempt,
        vec![keyed.clone(), free.clone()],
    )
    .await;
    on.expect_pending("after a completion that produced two rows", (0, 2))
        .await;
    let rows = on.claim_rows(10).await;
    on.sc.same(
        "the produced rows, claimed (label, key, attempt)",
        rows_seen(&rows),
        vec![
            ("keyed".to_owned(), Some("s1"), 1),
            ("free".to_owned(), None, 1),
        ],
    );
    on.same_event("the keyed row's event", &rows[0].event, &keyed.event);
    on.same_event("the free row's event", &rows[1].event, &free.event);

    let again = domain_event("PriceRaised", json!({ "sku": "s1" }));
    on.record(vec![to(&again, &["translate"])]).await;
    let current = on.claim_one("translate").await;
    let stale_row = integration_row("catalog.price-changed", None, json!({ "row": "stale" }));
    on.complete(current.id, current.attempt + 1, vec![stale_row.clone()])
        .await;
    on.expect_pending(
        "after a completion with a wrong attempt (it changes nothing)",
        (1, 2),
    )
    .await;
    let held = on.claim(10, &["translate"]).await;
    on.sc.same(
        "a claim after the stale completion (the delivery is still held)",
        seen(&held),
        vec![],
    );
    let unknown = DeliveryId::new(current.id.get() + 1000);
    on.complete(unknown, 1, vec![stale_row.clone()]).await;
    on.expect_pending(
        "after completing an unknown delivery (it changes nothing)",
        (1, 2),
    )
    .await;
    on.complete(current.id, current.attempt, Vec::new()).await;
    on.expect_pending("after the current attempt's completion", (0, 2))
        .await;
    on.complete(current.id, current.attempt, vec![stale_row])
        .await;
    on.expect_pending(
        "after completing a completed delivery again (it changes nothing)",
        (0, 2),
    )
    .await;
    Verdict::Passed
}

/// `complete_deliveries` completes many deliveries in one call (the dispatcher's group commit),
/// of several handlers, each with the rows it produced; a delivery at a stale attempt and an
/// unknown one in the same call change nothing and do not stop the others: the stale one stays
/// claimed, and completes at its own attempt later.
pub async fn complete_many<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("complete_many", store);
    let first = domain_event("StockCounted", json!({ "n": 1 }));
    let second = domain_event("StockAudited", json!({ "n": 2 }));
    on.record(vec![to(&first, &["a", "b"]), to(&second, &["a", "b"])])
        .await;
    let claimed = on.claim(10, &["a", "b"]).await;
    let find = |handler: &str, event: &str| -> &Delivery {
        claimed
            .iter()
            .find(|d| d.handler == handler && d.event.name == event)
            .unwrap_or_else(|| {
                on.sc.fail(format_args!(
                    "no claimed delivery of `{event}` to `{handler}` in {:?}",
                    seen(&claimed)
                ))
            })
    };
    let (a1, a2) = (find("a", "StockCounted"), find("a", "StockAudited"));
    let (b1, b2) = (find("b", "StockCounted"), find("b", "StockAudited"));
    let row = |label: &str| integration_row("stock.counted", Some("s1"), json!({ "row": label }));
    let unknown = DeliveryId::new(a1.id.get().max(b2.id.get()) + 1000);
    on.complete_all(vec![
        (a1.id, a1.attempt, vec![row("a1")]),
        (a2.id, a2.attempt + 1, vec![row("stale")]),
        (unknown, 1, vec![row("unknown")]),
        (b1.id, b1.attempt, Vec::new()),
        (b2.id, b2.attempt, vec![row("b2")]),
    ])
    .await;
    on.expect_pending(
        "after one call completed three deliveries (one stale, one unknown)",
        (1, 2),
    )
    .await;
    on.sc.same(
        "a claim after it (a's stale delivery is still held)",
        seen(&on.claim(10, &["a", "b"]).await),
        vec![],
    );
    on.sc.same(
        "a claim of rows: the head of key s1, a1's (b2's row waits behind it)",
        rows_seen(&on.claim_rows(10).await),
        vec![("a1".to_owned(), Some("s1"), 1)],
    );
    on.complete_all(vec![(a2.id, a2.attempt, Vec::new())]).await;
    on.expect_pending("after the stale one completed at its attempt", (0, 2))
        .await;
    Verdict::Passed
}

/// `complete_and_claim` is the dispatcher's step between batches: it completes the last batch,
/// with the rows it produced, and claims the next, in record order. The completed handler's
/// next deliveries are claimed in the same call (its claim ended with the completion); a stale
/// completion among them changes nothing and does not stop the claim; a handler still held
/// gives nothing.
pub async fn complete_and_claim<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("complete_and_claim", store);
    let events: Vec<StoredEvent> = (1..=3)
        .map(|n| domain_event(&format!("Packed{n}"), json!({ "n": n })))
        .collect();
    on.record(vec![
        to(&events[0], &["a", "b"]),
        to(&events[1], &["a", "b"]),
        to(&events[2], &["a"]),
    ])
    .await;
    let first = on.claim(1, &["a"]).await;
    let b = on.claim(1, &["b"]).await;
    let [a1] = first.as_slice() else {
        on.sc.fail(format_args!(
            "expected one delivery of `a`, got {:?}",
            seen(&first)
        ))
    };
    let [b1] = b.as_slice() else {
        on.sc.fail(format_args!(
            "expected one delivery of `b`, got {:?}",
            seen(&b)
        ))
    };
    let row = integration_row("stock.packed", Some("p1"), json!({ "row": "a1" }));
    let next = on
        .complete_and_claim(
            vec![
                (a1.id, a1.attempt, vec![row]),
                (b1.id, b1.attempt + 1, Vec::new()),
            ],
            10,
            &["a", "b"],
        )
        .await;
    on.sc.same(
        "the claim after a1 completed (b is still held by b1, whose completion was stale)",
        seen(&next),
        vec![("a", "Packed2", 1), ("a", "Packed3", 1)],
    );
    on.expect_pending("after the step: a1 completed with its row", (4, 1))
        .await;
    on.sc.same(
        "a claim after the step (a held by the step's claim, b by b1)",
        seen(&on.claim(10, &["a", "b"]).await),
        vec![],
    );
    let mut completions: Vec<_> = next.iter().map(|d| (d.id, d.attempt, Vec::new())).collect();
    completions.push((b1.id, b1.attempt, Vec::new()));
    let last = on.complete_and_claim(completions, 10, &["a", "b"]).await;
    on.sc.same(
        "the claim after the rest completed",
        seen(&last),
        vec![("b", "Packed2", 1)],
    );
    on.complete_all(vec![(last[0].id, last[0].attempt, Vec::new())])
        .await;
    on.expect_pending("after every delivery completed", (0, 1))
        .await;
    on.sc.same(
        "a step that completes nothing claims nothing more",
        seen(&on.complete_and_claim(Vec::new(), 10, &["a", "b"]).await),
        vec![],
    );
    Verdict::Passed
}

/// A claim among 250 handlers, each with one delivery, takes each handler's once; a step then
/// completes them and claims each handler's next one, once. 250 is more handlers than a store
/// may cover in one statement (the SQLite store covers 100). A step that may claim only 10
/// takes 10 handlers' deliveries, and holds those handlers alone: the next claim takes the
/// other 240 handlers' deliveries.
pub async fn many_handlers<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("many_handlers", store);
    let names: Vec<String> = (0..250).map(|n| format!("h{n:03}")).collect();
    let handlers: Vec<&str> = names.iter().map(String::as_str).collect();
    let each = |event: &str| -> Vec<(String, String, u32)> {
        let mut expected: Vec<_> = names
            .iter()
            .map(|h| (h.clone(), event.to_owned(), 1))
            .collect();
        expected.sort_unstable();
        expected
    };
    let sorted = |claimed: &[Delivery]| -> Vec<(String, String, u32)> {
        let mut seen: Vec<_> = seen(claimed)
            .into_iter()
            .map(|(h, e, a)| (h.to_owned(), e.to_owned(), a))
            .collect();
        seen.sort_unstable();
        seen
    };
    let counted = domain_event("Counted1", json!({ "n": 1 }));
    on.record(vec![to(&counted, &handlers)]).await;
    let first = on.claim(300, &handlers).await;
    on.sc.same(
        "the claim: each handler's delivery once",
        sorted(&first),
        each("Counted1"),
    );
    let recounted = domain_event("Counted2", json!({ "n": 2 }));
    on.record(vec![to(&recounted, &handlers)]).await;
    let completions = first
        .iter()
        .map(|d| (d.id, d.attempt, Vec::new()))
        .collect();
    let next = on.complete_and_claim(completions, 300, &handlers).await;
    on.sc.same(
        "the step: each handler's next delivery once",
        sorted(&next),
        each("Counted2"),
    );
    on.expect_pending("after the step: the first deliveries completed", (250, 0))
        .await;

    let third = domain_event("Counted3", json!({ "n": 3 }));
    on.record(vec![to(&third, &handlers)]).await;
    let completions = next.iter().map(|d| (d.id, d.attempt, Vec::new())).collect();
    let few = on.complete_and_claim(completions, 10, &handlers).await;
    let mut taken: Vec<&str> = few.iter().map(|d| d.handler.as_str()).collect();
    taken.sort_unstable();
    taken.dedup();
    on.sc.same(
        "a step that may claim 10: ten handlers' deliveries",
        (few.len(), taken.len()),
        (10, 10),
    );
    let rest = on.claim(300, &handlers).await;
    let mut expected: Vec<(String, String, u32)> = names
        .iter()
        .filter(|h| !taken.contains(&h.as_str()))
        .map(|h| (h.clone(), "Counted3".to_owned(), 1))
        .collect();
    expected.sort_unstable();
    on.sc.same(
        "the claim after it: the other handlers' deliveries",
        sorted(&rest),
        expected,
    );
    Verdict::Passed
}

/// `retry_delivery` reschedules a claimed delivery: it is not due before its time (an hour
/// ahead), and once its time passed (a time in the past) a claim takes it again at the next
/// attempt, even after an extension of its old claim; a stale attempt's retry changes nothing.
/// `next_delivery_due` is `None` with nothing waiting or only deliveries of held handlers, and
/// the rescheduled time otherwise.
pub async fn retry<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("retry", store);
    on.sc.same(
        "next_delivery_due of an empty store",
        on.next_delivery_due().await,
        None,
    );
    let queued: Vec<StoredEvent> = (1..=2)
        .map(|n| domain_event(&format!("Queued{n}"), json!({ "n": n })))
        .collect();
    on.record(vec![to(&queued[0], &["q"]), to(&queued[1], &["q"])])
        .await;
    on.sc.ensure(on.next_delivery_due().await.is_some(), || {
        "next_delivery_due is None with deliveries waiting".into()
    });
    let head = on.claim(1, &["q"]).await;
    on.sc.same(
        "a claim of 1 for handler q",
        seen(&head),
        vec![("q", "Queued1", 1)],
    );
    on.sc.same(
        "next_delivery_due while the only waiting delivery's handler is held",
        on.next_delivery_due().await,
        None,
    );
    on.complete(head[0].id, head[0].attempt, Vec::new()).await;
    on.sc.ensure(on.next_delivery_due().await.is_some(), || {
        "next_delivery_due is None once the handler holding a waiting delivery let go".into()
    });
    let next = on.claim_one("q").await;
    on.complete(next.id, next.attempt, Vec::new()).await;

    let failing = domain_event("Failing", json!({}));
    on.record(vec![to(&failing, &["r"])]).await;
    let delivery = on.claim_one("r").await;
    on.sc.same(
        "next_delivery_due while the only delivery is claimed",
        on.next_delivery_due().await,
        None,
    );

    let later = Utc::now() + hour();
    on.retry(delivery.id, delivery.attempt, "first failure", later)
        .await;
    on.expect_pending("after a retry", (1, 0)).await;
    let early = on.claim(10, &["r"]).await;
    on.sc
        .same("a claim before the retry's time", seen(&early), vec![]);
    match on.next_delivery_due().await {
        Some(due) => on
            .sc
            .same_time("next_delivery_due after a retry", due, later),
        None => on
            .sc
            .fail("next_delivery_due is None with a rescheduled delivery waiting"),
    }

    let flaky = domain_event("Flaky", json!({}));
    on.record(vec![to(&flaky, &["s"])]).await;
    let first = on.claim_one("s").await;
    on.retry(first.id, first.attempt, "flaky", Utc::now() - second())
        .await;
    // A dispatcher's next extension of its batch still names it: a rescheduled delivery is
    // not claimed again by it, and its handler is not held.
    on.sc
        .call(
            "extend_claims",
            store.extend_claims(vec![(first.id, first.attempt)]),
        )
        .await;
    let second_try = on.claim_one("s").await;
    on.sc
        .same("the retried delivery's id", second_try.id, first.id);
    on.sc
        .same("the retried delivery's attempt", second_try.attempt, 2);
    on.same_event("the retried delivery's event", &second_try.event, &flaky);

    on.retry(first.id, first.attempt, "stale", Utc::now() - second())
        .await;
    let held = on.claim(10, &["s"]).await;
    on.sc.same(
        "a claim after a retry with a stale attempt (it changes nothing)",
        seen(&held),
        vec![],
    );
    match on.next_delivery_due().await {
        Some(due) => on.sc.same_time(
            "next_delivery_due with s held and r rescheduled",
            due,
            later,
        ),
        None => on
            .sc
            .fail("next_delivery_due is None with a rescheduled delivery waiting"),
    }
    on.complete(second_try.id, second_try.attempt, Vec::new())
        .await;
    on.expect_pending("after the second attempt completed", (1, 0))
        .await;
    Verdict::Passed
}

/// `dead_letter_delivery` moves a claimed delivery to the dead letters, listed with its event,
/// handler, attempts, error and time; a stale attempt changes nothing. `dead_letter_message`
/// lists a message with no handler and no attempt. The list is oldest first.
pub async fn dead_letter<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("dead_letter", store);
    let before = Utc::now();
    let issued = domain_event("InvoiceIssued", json!({ "invoice": 7 }));
    on.record(vec![to(&issued, &["mail"])]).await;
    let first = on.claim_one("mail").await;
    on.retry(first.id, first.attempt, "timeout", Utc::now() - second())
        .await;
    let last = on.claim_one("mail").await;
    let error = "could not send the invoice: the mail server refused: mailbox full";
    on.dead_letter(last.id, last.attempt, error).await;
    on.expect_pending("after dead-lettering the delivery", (0, 0))
        .await;
    let letters = on.dead_letters().await;
    on.sc.same("how many dead letters", letters.len(), 1);
    let letter = &letters[0];
    on.sc.same(
        "the dead letter's event id",
        letter.event_id,
        issued.meta.id,
    );
    on.sc.same(
        "the dead letter's event name",
        letter.event_name.as_str(),
        "InvoiceIssued",
    );
    on.sc.same(
        "the dead letter's handler",
        letter.handler.as_deref(),
        Some("mail"),
    );
    on.sc.same("the dead letter's attempts", letter.attempts, 2);
    on.sc
        .same("the dead letter's error", letter.error.as_str(), error);
    // A sanity bound on its time, wide enough for any clock a store keeps.
    let after = Utc::now();
    on.sc.ensure(
        letter.at > before - TimeDelta::minutes(5) && letter.at < after + TimeDelta::minutes(5),
        || {
            format!(
                "the dead letter's time {} is not the time it was dead-lettered (about {after})",
                letter.at
            )
        },
    );

    let other = domain_event("InvoicePaid", json!({ "invoice": 7 }));
    on.record(vec![to(&other, &["ledger"])]).await;
    let current = on.claim_one("ledger").await;
    on.dead_letter(current.id, current.attempt + 1, "stale")
        .await;
    on.sc.same(
        "how many dead letters after a stale attempt's dead-lettering (it changes nothing)",
        on.dead_letters().await.len(),
        1,
    );
    on.expect_pending("after a stale attempt's dead-lettering", (1, 0))
        .await;
    let held = on.claim(10, &["ledger"]).await;
    on.sc.same(
        "a claim after a stale attempt's dead-lettering (the delivery is still held)",
        seen(&held),
        vec![],
    );

    let undecodable = integration_event("billing.payment-received", 3, json!({ "amount": "x" }));
    let why = "could not decode: invalid type: string \"x\", expected i64";
    on.dead_letter_message(&undecodable, why).await;
    let letters = on.dead_letters().await;
    on.sc
        .same("how many dead letters after a message's", letters.len(), 2);
    on.sc.same(
        "the oldest dead letter comes first",
        letters[0].event_id,
        issued.meta.id,
    );
    let message = &letters[1];
    on.sc.same(
        "the message's dead letter: event id",
        message.event_id,
        undecodable.meta.id,
    );
    on.sc.same(
        "the message's dead letter: event name",
        message.event_name.as_str(),
        "billing.payment-received",
    );
    on.sc.same(
        "the message's dead letter: handler",
        message.handler.as_deref(),
        None,
    );
    on.sc
        .same("the message's dead letter: attempts", message.attempts, 0);
    on.sc.same(
        "the message's dead letter: error",
        message.error.as_str(),
        why,
    );
    on.expect_pending("after a message's dead letter (it is no delivery)", (1, 0))
        .await;
    Verdict::Passed
}

/// Dead-letters a claimed delivery of `handler` for `event`; returns its dead letter.
async fn dead_lettered<S: Store + ?Sized>(
    on: &On<'_, S>,
    event: &StoredEvent,
    handler: &str,
) -> DeadLetter {
    on.record(vec![to(event, &[handler])]).await;
    let delivery = on.claim_one(handler).await;
    on.dead_letter(delivery.id, delivery.attempt, "failed for good")
        .await;
    let letters = on.dead_letters().await;
    match letters.into_iter().find(|l| l.event_id == event.meta.id) {
        Some(letter) => letter,
        None => on.sc.fail(format_args!(
            "the dead letters do not list the delivery of `{}` just dead-lettered",
            event.name
        )),
    }
}

/// A message's dead letter, as `dead_letters` lists it.
async fn message_letter<S: Store + ?Sized>(on: &On<'_, S>, event: &StoredEvent) -> DeadLetter {
    on.dead_letter_message(event, "could not decode").await;
    let letters = on.dead_letters().await;
    match letters.into_iter().find(|l| l.event_id == event.meta.id) {
        Some(letter) => letter,
        None => on
            .sc
            .fail("the dead letters do not list the message just dead-lettered"),
    }
}

/// `replay_dead_letter` turns a handler's dead letter into a delivery due now, counted from
/// attempt 1, with the same event; it returns `false`, changing nothing, for a dead letter
/// already replayed, an unknown id, or a message's dead letter (which has no handler).
pub async fn replay<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("replay", store);
    let event = integration_event("shipping.parcel-sent", 1, json!({ "parcel": 3 }));
    let letter = dead_lettered(&on, &event, "notify").await;
    let undecodable = integration_event("shipping.parcel-lost", 1, json!({}));
    let message = message_letter(&on, &undecodable).await;
    on.expect_pending("with two dead letters", (0, 0)).await;

    on.sc.same(
        "replay_dead_letter of a handler's dead letter",
        on.replay(letter.id).await,
        true,
    );
    let letters: Vec<_> = on.dead_letters().await.iter().map(|l| l.id).collect();
    on.sc.same(
        "the dead letters after the replay",
        letters,
        vec![message.id],
    );
    on.expect_pending("after the replay", (1, 0)).await;
    let replayed = on.claim_one("notify").await;
    on.sc
        .same("the replayed delivery's attempt", replayed.attempt, 1);
    on.same_event("the replayed delivery's event", &replayed.event, &event);

    on.sc.same(
        "replay_dead_letter of a dead letter already replayed",
        on.replay(letter.id).await,
        false,
    );
    on.sc.same(
        "replay_dead_letter of a message's dead letter",
        on.replay(message.id).await,
        false,
    );
    let unknown = DeadLetterId::new(message.id.get().max(letter.id.get()) + 1000);
    on.sc.same(
        "replay_dead_letter of an unknown id",
        on.replay(unknown).await,
        false,
    );
    let letters: Vec<_> = on.dead_letters().await.iter().map(|l| l.id).collect();
    on.sc.same(
        "the dead letters after the refused replays",
        letters,
        vec![message.id],
    );
    on.expect_pending("after the refused replays", (1, 0)).await;
    on.complete(replayed.id, replayed.attempt, Vec::new()).await;
    on.expect_pending("after the replayed delivery completed", (0, 0))
        .await;
    Verdict::Passed
}

/// `discard_dead_letter` deletes one dead letter (a handler's or a message's) and creates no
/// delivery; it returns `false` for an id it no longer has.
pub async fn discard<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("discard", store);
    let event = domain_event("CartAbandoned", json!({ "cart": 9 }));
    let letter = dead_lettered(&on, &event, "remind").await;
    let undecodable = integration_event("marketing.campaign-started", 1, json!({}));
    let message = message_letter(&on, &undecodable).await;

    on.sc.same(
        "discard_dead_letter of a handler's dead letter",
        on.discard(letter.id).await,
        true,
    );
    let letters: Vec<_> = on.dead_letters().await.iter().map(|l| l.id).collect();
    on.sc.same(
        "the dead letters after a discard",
        letters,
        vec![message.id],
    );
    on.sc.same(
        "discard_dead_letter of a discarded dead letter",
        on.discard(letter.id).await,
        false,
    );
    on.sc.same(
        "replay_dead_letter of a discarded dead letter",
        on.replay(letter.id).await,
        false,
    );
    on.sc.same(
        "discard_dead_letter of a message's dead letter",
        on.discard(message.id).await,
        true,
    );
    on.sc.same(
        "the dead letters after both discards",
        on.dead_letters().await.len(),
        0,
    );
    on.expect_pending("after the discards (they create no delivery)", (0, 0))
        .await;
    Verdict::Passed
}

/// The inbox: an integration event recorded again for a handler that already has it creates
/// no delivery, even after that delivery completed or twice in one call; other handlers still
/// get theirs. A domain event recorded again always creates deliveries.
pub async fn inbox_dedupe<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("inbox_dedupe", store);
    let received = integration_event("stock.changed", 1, json!({ "sku": "s1" }));
    let created = on.record(vec![to(&received, &["a", "b"])]).await;
    on.sc.same("deliveries of a first receipt", created, 2);
    let created = on.record(vec![to(&received, &["a", "b"])]).await;
    on.sc
        .same("deliveries of the same receipt again", created, 0);
    let created = on.record(vec![to(&received, &["a", "c"])]).await;
    on.sc.same(
        "deliveries of the same event for a and a new handler c",
        created,
        1,
    );
    on.expect_pending("after three receipts of one event", (3, 0))
        .await;
    let claimed = on.claim(10, &["a", "b", "c"]).await;
    let mut handlers: Vec<&str> = claimed.iter().map(|d| d.handler.as_str()).collect();
    handlers.sort_unstable();
    on.sc.same(
        "the handlers with a delivery of the event",
        handlers,
        vec!["a", "b", "c"],
    );
    for delivery in &claimed {
        on.complete(delivery.id, delivery.attempt, Vec::new()).await;
    }
    let created = on.record(vec![to(&received, &["a"])]).await;
    on.sc.same(
        "deliveries of the event again after its deliveries completed",
        created,
        0,
    );

    let twice = integration_event("stock.changed", 1, json!({ "sku": "s2" }));
    let created = on
        .record(vec![to(&twice, &["a"]), to(&twice, &["a"])])
        .await;
    on.sc
        .same("deliveries of one event twice in one call", created, 1);

    let domain = domain_event("StockCounted", json!({ "sku": "s1" }));
    let created = on.record(vec![to(&domain, &["a"])]).await;
    on.sc.same("deliveries of a domain event", created, 1);
    let created = on.record(vec![to(&domain, &["a"])]).await;
    on.sc
        .same("deliveries of the same domain event again", created, 1);
    on.expect_pending("at the end", (3, 0)).await;
    Verdict::Passed
}

/// `prune` deletes inbox entries received before its inbox cutoff and archived rows published
/// before its archive cutoff, each cutoff on its own table, at most `limit` of each table per
/// call and as many as it may up to that (a caller repeats while a call deletes `limit` or
/// more); it deletes no pending delivery or row, and a pruned inbox entry no longer dedupes.
pub async fn prune<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("prune", store);
    let received: Vec<StoredEvent> = (0..5)
        .map(|n| integration_event("stock.changed", 1, json!({ "n": n })))
        .collect();
    let created = on
        .record(received.iter().map(|e| to(e, &["inbound"])).collect())
        .await;
    on.sc.same("deliveries of five received events", created, 5);

    let producer = domain_event("Restocked", json!({}));
    on.record(vec![to(&producer, &["translate"])]).await;
    let delivery = on.claim_one("translate").await;
    let rows = (0..6)
        .map(|n| integration_row("stock.changed", None, json!({ "row": n.to_string() })))
        .collect();
    on.complete(delivery.id, delivery.attempt, rows).await;
    let claimed = on.claim_rows(10).await;
    on.sc.same("rows claimed for publication", claimed.len(), 6);
    for (n, row) in claimed.iter().enumerate() {
        on.row_published(row.id, n < 5).await;
    }
    on.expect_pending("with five archived rows and five inbox entries", (5, 0))
        .await;

    let past = Utc::now() - hour();
    let future = Utc::now() + hour();
    on.sc.same(
        "prune with both cutoffs in the past",
        on.prune(past, past).await,
        0,
    );
    let created = on.record(vec![to(&received[0], &["inbound"])]).await;
    on.sc.same(
        "deliveries of a received event whose inbox entry is younger than the cutoff",
        created,
        0,
    );

    for (table, inbox_before, archive_before) in [
        ("inbox entries", future, past),
        ("archived rows", past, future),
    ] {
        let mut left = 5;
        let mut calls = 0;
        loop {
            let deleted = on.prune(inbox_before, archive_before).await;
            on.sc.same(
                &format!("prune of {table}, {left} expired, limit {PRUNE_LIMIT}"),
                deleted,
                left.min(PRUNE_LIMIT),
            );
            left -= deleted;
            calls += 1;
            if deleted == 0 || calls > 10 {
                break;
            }
        }
    }
    on.expect_pending("after pruning (no pending work is pruned)", (5, 0))
        .await;
    let created = on.record(vec![to(&received[0], &["inbound"])]).await;
    on.sc.same(
        "deliveries of a received event whose inbox entry was pruned",
        created,
        1,
    );
    Verdict::Passed
}

/// Ordering per key in the outbox: `claim_rows` takes the oldest unpublished row of each key
/// and every row without key, in record order, up to the limit; once the head is published the
/// next of its key is claimable; `retry_row` parks the whole key until its time (an hour ahead
/// here), and a time in the past makes the row claimable again at the next attempt.
/// `next_row_due` counts only heads and rows without key that are not claimed.
pub async fn order_per_key<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("order_per_key", store);
    on.sc.same(
        "next_row_due of an empty store",
        on.next_row_due().await,
        None,
    );
    let producer = domain_event("BatchPriced", json!({}));
    on.record(vec![to(&producer, &["translate"])]).await;
    let delivery = on.claim_one("translate").await;
    let layout = [
        ("k1a", Some("k1")),
        ("k1b", Some("k1")),
        ("k2a", Some("k2")),
        ("free1", None),
        ("free2", None),
        ("k1c", Some("k1")),
        ("k2b", Some("k2")),
    ];
    let rows = layout
        .iter()
        .map(|(label, key)| integration_row("catalog.price-changed", *key, json!({ "row": label })))
        .collect();
    on.complete(delivery.id, delivery.attempt, rows).await;
    on.sc.ensure(on.next_row_due().await.is_some(), || {
        "next_row_due is None with rows waiting".into()
    });
    let label =
        |label: &str, key: Option<&'static str>, attempt: u32| (label.to_owned(), key, attempt);

    let heads = on.claim_rows(2).await;
    on.sc.same(
        "a claim of 2 rows (the heads of k1 and k2, in record order)",
        rows_seen(&heads),
        vec![label("k1a", Some("k1"), 1), label("k2a", Some("k2"), 1)],
    );
    let free = on.claim_rows(10).await;
    on.sc.same(
        "the next claim (the rows without key; no second row of a key)",
        rows_seen(&free),
        vec![label("free1", None, 1), label("free2", None, 1)],
    );
    let nothing = on.claim_rows(10).await;
    on.sc.same(
        "a claim while every head is claimed",
        rows_seen(&nothing),
        vec![],
    );
    on.sc.same(
        "next_row_due while every head is claimed",
        on.next_row_due().await,
        None,
    );

    on.row_published(heads[0].id, false).await;
    let next = on.claim_rows(10).await;
    on.sc.same(
        "a claim after k1's head was published",
        rows_seen(&next),
        vec![label("k1b", Some("k1"), 1)],
    );

    let later = Utc::now() + hour();
    on.retry_row(&heads[1], "the broker is away", later).await;
    let parked = on.claim_rows(10).await;
    on.sc.same(
        "a claim after k2's head was rescheduled an hour ahead (k2 is parked)",
        rows_seen(&parked),
        vec![],
    );
    match on.next_row_due().await {
        Some(due) => on
            .sc
            .same_time("next_row_due with k2's head rescheduled", due, later),
        None => on
            .sc
            .fail("next_row_due is None with k2's head rescheduled"),
    }

    on.row_published(free[0].id, true).await;
    on.row_published(free[1].id, false).await;
    on.row_published(next[0].id, false).await;
    let last_of_k1 = on.claim_rows(10).await;
    on.sc.same(
        "a claim after k1b and the rows without key were published",
        rows_seen(&last_of_k1),
        vec![label("k1c", Some("k1"), 1)],
    );
    // A relay whose claim another took over (a stale attempt) reschedules nothing.
    let stale = IntegrationRow {
        attempt: last_of_k1[0].attempt + 1,
        ..last_of_k1[0].clone()
    };
    on.retry_row(&stale, "late", Utc::now() - second()).await;
    on.sc.same(
        "a claim after a stale attempt's retry_row (k1c stays claimed)",
        rows_seen(&on.claim_rows(10).await),
        vec![],
    );
    on.retry_row(&last_of_k1[0], "refused", Utc::now() - second())
        .await;
    let again = on.claim_rows(10).await;
    on.sc.same(
        "a claim after k1c was rescheduled to a past time",
        rows_seen(&again),
        vec![label("k1c", Some("k1"), 2)],
    );
    on.expect_pending("with k2a, k2b and k1c left", (0, 3))
        .await;
    Verdict::Passed
}

/// For a store that records events in the caller's database transaction
/// ([`Store::record_in`], what `DomainEvents::publish_in` calls): events recorded in a
/// transaction that rolls back leave nothing (no delivery, no inbox entry), and those of one
/// that commits are there. `begin` begins a transaction on the store's database, such as
/// `|| store.pool().begin()`; the scenario calls no other method of the store while it is open
/// (a SQLite store has one connection). Run it on a fresh, empty store.
///
/// ```no_run
/// # async fn run() {
/// let store = tidings::SqliteStore::open("scenario.db").await.expect("the store opens");
/// let pool = store.pool().clone();
/// tidings::testing::store::record_in_commits_or_rolls_back(&store, || pool.begin()).await;
/// # }
/// ```
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub async fn record_in_commits_or_rolls_back<S, DB, B, Fut>(store: &S, mut begin: B) -> Verdict
where
    S: Store + ?Sized,
    DB: sqlx::Database,
    DB::Connection: 'static,
    B: FnMut() -> Fut,
    Fut: Future<Output = Result<sqlx::Transaction<'static, DB>, sqlx::Error>>,
{
    let on = on("record_in_commits_or_rolls_back", store);
    let placed = domain_event("OrderPlaced", json!({ "order": 1 }));
    let received = integration_event("payments.payment-received", 1, json!({ "order": 1 }));

    let mut transaction = on.sc.call("beginning a transaction", begin()).await;
    let created = on
        .sc
        .call(
            "record_in",
            store.record_in(
                &mut *transaction,
                vec![to(&placed, &["h"]), to(&received, &["h"])],
            ),
        )
        .await;
    on.sc.same("deliveries created by record_in", created, 2);
    on.sc
        .call("rolling the transaction back", transaction.rollback())
        .await;
    on.expect_pending("after the transaction rolled back", (0, 0))
        .await;
    let none = on.claim(10, &["h"]).await;
    on.sc.same(
        "a claim after the transaction rolled back",
        seen(&none),
        vec![],
    );
    let created = on.record(vec![to(&received, &["h"])]).await;
    on.sc.same(
        "deliveries of the integration event recorded again (its inbox entry rolled back)",
        created,
        1,
    );

    let mut transaction = on.sc.call("beginning a transaction", begin()).await;
    let created = on
        .sc
        .call(
            "record_in",
            store.record_in(&mut *transaction, vec![to(&placed, &["h"])]),
        )
        .await;
    on.sc.same("deliveries created by record_in", created, 1);
    on.sc
        .call("committing the transaction", transaction.commit())
        .await;
    on.expect_pending("after the transaction committed", (2, 0))
        .await;
    let claimed = on.claim(10, &["h"]).await;
    on.sc.same(
        "the deliveries after the commit",
        seen(&claimed),
        vec![
            ("h", "payments.payment-received", 1),
            ("h", "OrderPlaced", 1),
        ],
    );
    on.same_event(
        "the event recorded in the transaction",
        &claimed[1].event,
        &placed,
    );
    Verdict::Passed
}

/// Deliveries of `handler` waiting in the states `counts`, as [`Waiting`] lists them.
fn of_handler(handler: &str, counts: WaitCounts) -> HandlerWaiting {
    HandlerWaiting {
        handler: Some(handler.to_owned()),
        counts,
        oldest: None,
    }
}

/// Rows of `contract` waiting in the states `counts`, as [`Waiting`] lists them.
fn of_contract(contract: &str, counts: WaitCounts) -> ContractWaiting {
    ContractWaiting {
        contract: Some(contract.to_owned()),
        counts,
        oldest: None,
    }
}

/// `due` due now, `scheduled` scheduled for later and `claimed` claimed.
fn counts(due: usize, scheduled: usize, claimed: usize) -> WaitCounts {
    WaitCounts {
        due,
        scheduled,
        claimed,
        untold: 0,
    }
}

/// [`waiting`](Store::waiting) tells apart what [`count_pending`](Store::count_pending) counts:
/// deliveries by handler and integration rows by contract, sorted by name, each as due now,
/// scheduled for later (a retry an hour ahead) or claimed, with no entry for a handler or a
/// contract that has nothing waiting; its totals are always `count_pending`'s. A store that
/// tells only totals (the trait's default) is skipped once its totals are checked.
pub async fn waiting<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("waiting", store);
    on.sc.same(
        "waiting of an empty store",
        on.waiting("of an empty store").await,
        Waiting::default(),
    );
    let start = Utc::now();
    let placed = domain_event("OrderPlaced", json!({}));
    let paid = domain_event("OrderPaid", json!({}));
    on.record(vec![to(&placed, &["stock", "mail"]), to(&paid, &["mail"])])
        .await;
    let published = || (start, Utc::now());
    let recorded = on
        .waiting_since("after recording three deliveries", published())
        .await;
    if recorded.deliveries.iter().all(|d| d.handler.is_none()) {
        return Verdict::Skipped(
            "the store tells only the totals of what waits (the default `waiting`)".into(),
        );
    }
    on.sc.same(
        "waiting after recording three deliveries",
        recorded,
        Waiting {
            deliveries: vec![
                of_handler("mail", counts(2, 0, 0)),
                of_handler("stock", counts(1, 0, 0)),
            ],
            rows: vec![],
        },
    );

    let first = on.claim(1, &["mail"]).await;
    on.sc.same(
        "a claim of 1 for handler mail",
        seen(&first),
        vec![("mail", "OrderPlaced", 1)],
    );
    on.retry(
        first[0].id,
        first[0].attempt,
        "the mail server is away",
        Utc::now() + hour(),
    )
    .await;
    let stock = on.claim_one("stock").await;
    on.sc.same(
        "waiting with a mail delivery retried an hour ahead and stock's claimed",
        on.waiting_since("with a retry and a claim", published())
            .await,
        Waiting {
            deliveries: vec![
                of_handler("mail", counts(1, 1, 0)),
                of_handler("stock", counts(0, 0, 1)),
            ],
            rows: vec![],
        },
    );

    let produced = vec![
        integration_row("sales.order-confirmed", Some("k1"), json!({ "row": "k1" })),
        integration_row("sales.order-confirmed", Some("k2"), json!({ "row": "k2" })),
        integration_row("billing.invoice-due", None, json!({ "row": "free" })),
    ];
    on.complete(stock.id, stock.attempt, produced).await;
    on.sc.same(
        "waiting after stock's delivery completed with three rows",
        on.waiting_since("after a completion with rows", published())
            .await,
        Waiting {
            deliveries: vec![of_handler("mail", counts(1, 1, 0))],
            rows: vec![
                of_contract("billing.invoice-due", counts(1, 0, 0)),
                of_contract("sales.order-confirmed", counts(2, 0, 0)),
            ],
        },
    );

    let head = on.claim_rows(1).await;
    on.sc.same(
        "a claim of 1 row (the first recorded)",
        rows_seen(&head),
        vec![("k1".to_owned(), Some("k1"), 1)],
    );
    on.sc.same(
        "waiting with a row claimed",
        on.waiting_since("with a row claimed", published())
            .await
            .rows,
        vec![
            of_contract("billing.invoice-due", counts(1, 0, 0)),
            of_contract("sales.order-confirmed", counts(1, 0, 1)),
        ],
    );
    on.retry_row(&head[0], "the broker is away", Utc::now() + hour())
        .await;
    on.sc.same(
        "waiting with a row retried an hour ahead",
        on.waiting_since("with a row retried", published())
            .await
            .rows,
        vec![
            of_contract("billing.invoice-due", counts(1, 0, 0)),
            of_contract("sales.order-confirmed", counts(1, 1, 0)),
        ],
    );
    Verdict::Passed
}

/// [`rows_published`](Store::rows_published), the relay's way of marking what the broker
/// acknowledged: rows of several keys and rows without key marked in one call leave the outbox
/// (deleted, or with `archive` moved to the archive, which
/// [`prune`](Store::prune) then expires); the next row of each of their keys becomes
/// claimable, and only then; an empty batch changes nothing.
pub async fn rows_published<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("rows_published", store);
    let producer = domain_event("BatchShipped", json!({}));
    on.record(vec![to(&producer, &["translate"])]).await;
    let delivery = on.claim_one("translate").await;
    let layout = [
        ("k1a", Some("k1")),
        ("k2a", Some("k2")),
        ("free1", None),
        ("k1b", Some("k1")),
        ("free2", None),
        ("k2b", Some("k2")),
        ("k3a", Some("k3")),
        ("k3b", Some("k3")),
    ];
    let rows = layout
        .iter()
        .map(|(label, key)| integration_row("shipping.shipped", *key, json!({ "row": label })))
        .collect();
    on.complete(delivery.id, delivery.attempt, rows).await;
    let label =
        |label: &str, key: Option<&'static str>, attempt: u32| (label.to_owned(), key, attempt);

    let heads = on.claim_rows(10).await;
    on.sc.same(
        "a claim of the heads of k1, k2 and k3 and the rows without key",
        rows_seen(&heads),
        vec![
            label("k1a", Some("k1"), 1),
            label("k2a", Some("k2"), 1),
            label("free1", None, 1),
            label("free2", None, 1),
            label("k3a", Some("k3"), 1),
        ],
    );
    let [k1a, k2a, free1, free2, k3a] = &heads[..] else {
        on.sc.fail("five rows claimed, as checked above")
    };
    on.rows_published(&[], false).await;
    on.expect_pending("after marking an empty batch", (0, 8))
        .await;

    on.rows_published(&[k1a, free1], false).await;
    on.rows_published(&[k2a, free2], true).await;
    on.expect_pending("after marking four rows in two batches", (0, 4))
        .await;
    let next = on.claim_rows(10).await;
    on.sc.same(
        "a claim after the heads of k1 and k2 were marked (k3's is still claimed)",
        rows_seen(&next),
        vec![label("k1b", Some("k1"), 1), label("k2b", Some("k2"), 1)],
    );

    let mut rest: Vec<&IntegrationRow> = next.iter().collect();
    rest.push(k3a);
    on.rows_published(&rest, false).await;
    let last = on.claim_rows(10).await;
    on.sc.same(
        "a claim after k1b, k2b and k3a were marked in one batch",
        rows_seen(&last),
        vec![label("k3b", Some("k3"), 1)],
    );
    on.rows_published(&[&last[0]], true).await;
    on.expect_pending("after every row was marked", (0, 0))
        .await;
    on.sc.same(
        "claim_rows with every row marked",
        rows_seen(&on.claim_rows(10).await),
        vec![],
    );

    // The archive holds the three rows marked with `archive`, and only they.
    let past = Utc::now() - hour();
    let expired = on
        .sc
        .call(
            "prune",
            store.prune(past, Utc::now() + hour(), layout.len() * 2),
        )
        .await;
    on.sc.same(
        "archived rows expired by prune (k2a, free2, k3b)",
        expired,
        3,
    );
    Verdict::Passed
}

/// While the oldest rows are claimed (in flight at the broker), `claim_rows` takes the next
/// ones: the rows without a key after them, and the heads of keys other than the busy one,
/// however many rows of the busy key wait behind its head.
pub async fn claim_rows_past_in_flight<S: Store + ?Sized>(store: &S) -> Verdict {
    let on = on("claim_rows_past_in_flight", store);
    let producer = domain_event("StockMoved", json!({}));
    on.record(vec![to(&producer, &["translate"])]).await;
    let delivery = on.claim_one("translate").await;
    let mut rows = Vec::new();
    for n in 0..40 {
        rows.push(integration_row(
            "stock.moved",
            Some("busy"),
            json!({ "row": format!("busy{n}") }),
        ));
    }
    for n in 0..6 {
        rows.push(integration_row(
            "stock.moved",
            None,
            json!({ "row": format!("free{n}") }),
        ));
    }
    rows.push(integration_row(
        "stock.moved",
        Some("other"),
        json!({ "row": "other0" }),
    ));
    on.complete(delivery.id, delivery.attempt, rows).await;
    let label = |label: &str, key: Option<&'static str>| (label.to_owned(), key, 1);

    let first = on.claim_rows(3).await;
    on.sc.same(
        "a claim of 3: the oldest rows that may go (busy's head, free0, free1)",
        rows_seen(&first),
        vec![
            label("busy0", Some("busy")),
            label("free0", None),
            label("free1", None),
        ],
    );
    let next = on.claim_rows(3).await;
    on.sc.same(
        "the next claim of 3, while those are claimed (free2, free3, free4)",
        rows_seen(&next),
        vec![
            label("free2", None),
            label("free3", None),
            label("free4", None),
        ],
    );
    let last = on.claim_rows(10).await;
    on.sc.same(
        "a claim of 10 after them: the last row without a key and the other key's head",
        rows_seen(&last),
        vec![label("free5", None), label("other0", Some("other"))],
    );
    Verdict::Passed
}
