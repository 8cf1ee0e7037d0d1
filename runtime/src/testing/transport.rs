//! The transport suite: the scenarios a [`Transport`] must pass, each on a fresh transport.
//!
//! [`transport_conformance`] runs them all but [`redelivery`], which only a transport that
//! redelivers what was not acknowledged passes ([`transport_conformance_with`] and
//! [`Capabilities`] say so); each is also a `pub async fn` here, to run one alone.
//! [`SCENARIOS`] lists them with what each checks.
//!
//! Each scenario subscribes before it publishes, to contracts and contexts named for it alone
//! (with a fresh suffix, so that runs on a durable broker do not meet), and receives on tasks of
//! its own (`tokio::spawn`), so that a subscription's `next` is never cancelled half-way, but
//! for [`cancelled_next`], which cancels it on purpose (as a consumer does when it only takes
//! what is ready, or is told to stop). It
//! waits for an expected message at most [`Patience::wait`], and listens [`Patience::quiet`]
//! for messages that must not come; it asserts no timing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::check::Scenario;
use super::records::message;
use super::{Report, Verdict};
use crate::transport::{
    ErrorKind, Inbound, Message, Received, Subscription, Transport, TransportError,
};

/// How long the transport suite waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Patience {
    /// The longest wait for messages that must arrive, before the scenario fails: 10 s by
    /// default. For [`redelivery`], longer than the broker takes to redeliver.
    pub wait: Duration,
    /// How long a scenario listens for messages that must not arrive: 300 ms by default.
    pub quiet: Duration,
}

impl Patience {
    /// Waits of `wait` for what must arrive and `quiet` for what must not.
    pub const fn new(wait: Duration, quiet: Duration) -> Self {
        Patience { wait, quiet }
    }
}

impl Default for Patience {
    fn default() -> Self {
        Patience::new(Duration::from_secs(10), Duration::from_millis(300))
    }
}

/// What a transport offers beyond what every transport must do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// It delivers again a message that was received and not acknowledged, once its
    /// subscription ended and the context subscribed again (or its acknowledgement timed out).
    /// [`InMemoryTransport`](crate::InMemoryTransport) does not.
    pub redelivers_unacknowledged: bool,
}

impl Capabilities {
    /// Nothing beyond what every transport must do.
    pub const fn none() -> Self {
        Capabilities {
            redelivers_unacknowledged: false,
        }
    }

    /// Also redelivers what was not acknowledged: the suite runs [`redelivery`].
    pub const fn redelivers_unacknowledged(self) -> Self {
        Capabilities {
            redelivers_unacknowledged: true,
        }
    }
}

/// One scenario of the transport suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportScenario {
    /// [`per_contract`]
    PerContract,
    /// [`shared_within_context`]
    SharedWithinContext,
    /// [`instance_leaves`]
    InstanceLeaves,
    /// [`every_context`]
    EveryContext,
    /// [`acknowledged`]
    Acknowledged,
    /// [`redelivery`]
    Redelivery,
    /// [`order_per_key`]
    OrderPerKey,
    /// [`cancelled_next`]
    CancelledNext,
}

/// Every scenario of the transport suite, in the order [`transport_conformance`] runs them.
pub const SCENARIOS: &[TransportScenario] = &[
    TransportScenario::PerContract,
    TransportScenario::SharedWithinContext,
    TransportScenario::InstanceLeaves,
    TransportScenario::EveryContext,
    TransportScenario::Acknowledged,
    TransportScenario::Redelivery,
    TransportScenario::OrderPerKey,
    TransportScenario::CancelledNext,
];

impl TransportScenario {
    /// The scenario's name, as reports and failures give it (the name of its function).
    pub const fn name(self) -> &'static str {
        match self {
            TransportScenario::PerContract => "per_contract",
            TransportScenario::SharedWithinContext => "shared_within_context",
            TransportScenario::InstanceLeaves => "instance_leaves",
            TransportScenario::EveryContext => "every_context",
            TransportScenario::Acknowledged => "acknowledged",
            TransportScenario::Redelivery => "redelivery",
            TransportScenario::OrderPerKey => "order_per_key",
            TransportScenario::CancelledNext => "cancelled_next",
        }
    }

    /// What the scenario checks, in a sentence.
    pub const fn checks(self) -> &'static str {
        match self {
            TransportScenario::PerContract => {
                "a subscriber of contract X version 1 gets X v1 messages, as published, and no \
                 other version or contract"
            }
            TransportScenario::SharedWithinContext => {
                "two subscriptions of one context share the messages: each reaches exactly one"
            }
            TransportScenario::InstanceLeaves => {
                "when one of two instances of a context leaves, the other gets the context's \
                 messages"
            }
            TransportScenario::EveryContext => {
                "two contexts subscribed to one contract each get every message, once"
            }
            TransportScenario::Acknowledged => {
                "acknowledged messages are not delivered again, not even to a new subscription \
                 of the context"
            }
            TransportScenario::Redelivery => {
                "a message received and not acknowledged comes again to the context's next \
                 subscription (only for transports that redeliver)"
            }
            TransportScenario::OrderPerKey => {
                "messages of one key reach a subscriber in the order they were published"
            }
            TransportScenario::CancelledNext => {
                "a `next` dropped before it resolved loses no message: a reader that gives up \
                 waiting again and again gets every message once, in order per key"
            }
        }
    }

    /// Runs the scenario on `transport`, fresh, waiting as `patience` says. Panics if the
    /// transport fails it.
    pub async fn run<T: Transport + ?Sized>(self, transport: &T, patience: Patience) -> Verdict {
        match self {
            TransportScenario::PerContract => per_contract(transport, patience).await,
            TransportScenario::SharedWithinContext => {
                shared_within_context(transport, patience).await
            }
            TransportScenario::InstanceLeaves => instance_leaves(transport, patience).await,
            TransportScenario::EveryContext => every_context(transport, patience).await,
            TransportScenario::Acknowledged => acknowledged(transport, patience).await,
            TransportScenario::Redelivery => redelivery(transport, patience).await,
            TransportScenario::OrderPerKey => order_per_key(transport, patience).await,
            TransportScenario::CancelledNext => cancelled_next(transport, patience).await,
        }
    }
}

/// Runs the transport scenarios ([`SCENARIOS`]) every transport must pass, each on a fresh
/// transport that `make` makes, with the default [`Patience`]; [`redelivery`] is reported
/// skipped. Panics at the first scenario the transport fails, naming it and what broke.
pub async fn transport_conformance<T, F, Fut>(make: F) -> Report
where
    T: Transport,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    transport_conformance_with(Capabilities::none(), Patience::default(), make).await
}

/// Runs the transport scenarios as [`transport_conformance`] does, for a transport with
/// `capabilities`, waiting as `patience` says.
pub async fn transport_conformance_with<T, F, Fut>(
    capabilities: Capabilities,
    patience: Patience,
    mut make: F,
) -> Report
where
    T: Transport,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut report = Report::default();
    for &scenario in SCENARIOS {
        let verdict = if scenario == TransportScenario::Redelivery
            && !capabilities.redelivers_unacknowledged
        {
            Verdict::Skipped(
                "the transport is not said to redeliver what was not acknowledged \
                 (`Capabilities::redelivers_unacknowledged`)"
                    .into(),
            )
        } else {
            let transport = make().await;
            scenario.run(&transport, patience).await
        };
        match &verdict {
            Verdict::Passed => eprintln!("transport conformance: {}: passed", scenario.name()),
            Verdict::Skipped(reason) => {
                eprintln!(
                    "transport conformance: {}: skipped ({reason})",
                    scenario.name()
                )
            }
        }
        report.scenarios.push((scenario.name(), verdict));
    }
    report
}

/// Contract and context names for one scenario alone.
struct Names {
    suffix: String,
}

impl Names {
    fn fresh() -> Self {
        let id = Uuid::now_v7().simple().to_string();
        Names {
            suffix: id[id.len() - 12..].to_owned(),
        }
    }

    fn contract(&self, name: &str) -> String {
        format!("conformance.{name}-{}", self.suffix)
    }

    fn context(&self, name: &str) -> String {
        format!("{name}-{}", self.suffix)
    }
}

fn subscription(contract: &str, version: u32, context: &str) -> Subscription {
    Subscription {
        contract: contract.to_owned(),
        version,
        context: context.to_owned(),
    }
}

/// What a subscription's task heard.
enum Heard {
    Message(usize, Received),
    Failed(usize, TransportError),
    Ended(usize),
}

/// The subscriptions of a scenario, each read by a task of its own.
struct Listening {
    sc: Scenario,
    patience: Patience,
    heard: mpsc::UnboundedReceiver<Heard>,
    /// The reading task of each instance, until it leaves.
    tasks: Vec<Option<JoinHandle<()>>>,
    /// The instances whose subscription ended.
    ended: BTreeSet<usize>,
}

/// Forwards what `inbound` gives, as instance `instance`, until it ends or fails.
async fn pump(instance: usize, mut inbound: Box<dyn Inbound>, to: mpsc::UnboundedSender<Heard>) {
    loop {
        let heard = match inbound.next().await {
            Some(Ok(received)) => Heard::Message(instance, received),
            Some(Err(error)) => Heard::Failed(instance, error),
            None => Heard::Ended(instance),
        };
        let last = !matches!(heard, Heard::Message(..));
        if to.send(heard).is_err() || last {
            return;
        }
    }
}

impl Listening {
    /// Subscribes with each of `subscriptions`, instance 0, 1, ... in that order.
    async fn start<T: Transport + ?Sized>(
        sc: Scenario,
        patience: Patience,
        transport: &T,
        subscriptions: &[Subscription],
    ) -> Self {
        let (to, heard) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (instance, subscription) in subscriptions.iter().enumerate() {
            let inbound = sc
                .call(
                    &format!("subscribe to {subscription:?}"),
                    transport.subscribe(subscription.clone()),
                )
                .await;
            tasks.push(Some(tokio::spawn(pump(instance, inbound, to.clone()))));
        }
        Listening {
            sc,
            patience,
            heard,
            tasks,
            ended: BTreeSet::new(),
        }
    }

    /// Ends the subscription of `instance`: its task and its `Inbound` are dropped when this
    /// returns.
    async fn leave(&mut self, instance: usize) {
        if let Some(task) = self.tasks[instance].take() {
            task.abort();
            // Cancelled, or already finished: either way the subscription is dropped.
            let _ = task.await;
        }
    }

    /// Ends every subscription.
    async fn close(mut self) {
        for instance in 0..self.tasks.len() {
            self.leave(instance).await;
        }
    }

    /// The next thing heard before `deadline`, or `None` once it passed.
    async fn hear(&mut self, deadline: tokio::time::Instant) -> Option<(usize, Received)> {
        loop {
            match tokio::time::timeout_at(deadline, self.heard.recv()).await {
                // The deadline passed, or every subscription ended: nothing more comes.
                Err(_) | Ok(None) => return None,
                Ok(Some(Heard::Message(instance, received))) => {
                    return Some((instance, received));
                }
                Ok(Some(Heard::Ended(instance))) => {
                    self.ended.insert(instance);
                }
                Ok(Some(Heard::Failed(instance, error))) => self.sc.fail(format_args!(
                    "the subscription of instance {instance} failed: {error}"
                )),
            }
        }
    }

    /// Fails: only the messages `got` of `count` arrived in time.
    fn missing(&self, count: usize, got: &[Uuid]) -> ! {
        self.sc.fail(format_args!(
            "{} of {count} messages arrived within {:?} (got {got:?}); subscriptions that \
             ended meanwhile: instances {:?}",
            got.len(),
            self.patience.wait,
            self.ended
        ))
    }

    /// Receives `count` messages within [`Patience::wait`], without acknowledging them; fails
    /// if fewer arrive.
    async fn expect_unacked(&mut self, count: usize) -> Vec<(usize, Received)> {
        let deadline = tokio::time::Instant::now() + self.patience.wait;
        let mut got = Vec::new();
        while got.len() < count {
            match self.hear(deadline).await {
                Some(heard) => got.push(heard),
                None => {
                    let ids: Vec<Uuid> = got.iter().map(|(_, r)| r.message.id).collect();
                    self.missing(count, &ids)
                }
            }
        }
        got
    }

    /// Receives `count` messages within [`Patience::wait`], acknowledging each as it comes;
    /// fails if fewer arrive. Returns `(instance, message)`.
    ///
    /// An acknowledgement refused as [`ErrorKind::Unavailable`] is the broker saying that the
    /// message comes again (a consumer group moved its partition to the instance that just
    /// joined): it is not counted, and must arrive again within the same patience.
    async fn expect_acked(&mut self, count: usize) -> Vec<(usize, Message)> {
        let deadline = tokio::time::Instant::now() + self.patience.wait;
        let mut got = Vec::new();
        while got.len() < count {
            let Some((instance, received)) = self.hear(deadline).await else {
                self.missing(count, &ids(&got))
            };
            let message = received.message.clone();
            let acked = self
                .sc
                .call("acknowledging a message", async {
                    Ok::<_, std::convert::Infallible>(received.ack().await)
                })
                .await;
            match acked {
                Ok(()) => got.push((instance, message)),
                Err(error) if error.kind() == ErrorKind::Unavailable => {}
                Err(error) => self
                    .sc
                    .fail(format_args!("acknowledging a message failed: {error}")),
            }
        }
        got
    }

    /// Fails if any message arrives within [`Patience::quiet`]; says which ones were `why`.
    async fn expect_quiet(&mut self, why: &str) {
        let deadline = tokio::time::Instant::now() + self.patience.quiet;
        let mut extra = Vec::new();
        while let Some((instance, received)) = self.hear(deadline).await {
            extra.push((
                instance,
                received.message.id,
                received.message.contract.clone(),
            ));
            let _ = received.ack().await;
        }
        self.sc.ensure(extra.is_empty(), || {
            format!("{why}, yet these arrived (instance, id, contract): {extra:?}")
        });
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        for task in self.tasks.iter().flatten() {
            task.abort();
        }
    }
}

async fn publish<T: Transport + ?Sized>(sc: &Scenario, transport: &T, message: &Message) {
    sc.call(
        &format!("publish of {} v{}", message.contract, message.version),
        transport.publish(message.clone()),
    )
    .await
}

/// Checks that `received` is `sent` as published: every attribute, the time to the microsecond.
fn same_message(sc: &Scenario, received: &Message, sent: &Message) {
    let mut received = received.clone();
    sc.same_time("a received message's time", received.time, sent.time);
    received.time = sent.time;
    sc.same("a received message", &received, sent);
}

/// The ids of `messages`, in order.
fn ids(messages: &[(usize, Message)]) -> Vec<Uuid> {
    messages.iter().map(|(_, m)| m.id).collect()
}

/// Checks that `received` holds each of `sent` exactly once, whatever the order; returns how
/// many each instance got.
fn each_once(
    sc: &Scenario,
    what: &str,
    received: &[(usize, Message)],
    sent: &[Message],
) -> BTreeMap<usize, usize> {
    let mut got: Vec<Uuid> = ids(received);
    got.sort_unstable();
    let mut expected: Vec<Uuid> = sent.iter().map(|m| m.id).collect();
    expected.sort_unstable();
    sc.same(what, got, expected);
    for (_, message) in received {
        if let Some(original) = sent.iter().find(|m| m.id == message.id) {
            same_message(sc, message, original);
        }
    }
    let mut per_instance = BTreeMap::new();
    for (instance, _) in received {
        *per_instance.entry(*instance).or_default() += 1;
    }
    per_instance
}

/// A subscriber of contract X version 1 gets every X v1 message, as published, and neither X
/// version 2 nor another contract's. Another context consumes X v2 and Y, so that every message
/// has a consumer: a broker may refuse a message that no subscription takes (RabbitMQ's
/// mandatory publishing does).
pub async fn per_contract<T: Transport + ?Sized>(transport: &T, patience: Patience) -> Verdict {
    let sc = Scenario::new("transport", "per_contract");
    let names = Names::fresh();
    let (x, y) = (names.contract("x"), names.contract("y"));
    let (context, other) = (names.context("reader"), names.context("other"));
    let subscriptions = [
        subscription(&x, 1, &context),
        subscription(&x, 2, &other),
        subscription(&y, 1, &other),
    ];
    let mut listening = Listening::start(sc, patience, transport, &subscriptions).await;
    let mut traced = message(&x, 1, Some("k"), json!({ "n": 1, "text": "ünïcödé" }));
    traced.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let sent = [
        traced,
        message(&x, 2, None, json!({ "n": 2 })),
        message(&y, 1, None, json!({ "n": 3 })),
        message(&x, 1, None, json!({ "n": 4 })),
    ];
    for message in &sent {
        publish(&sc, transport, message).await;
    }
    let received = listening.expect_acked(sent.len()).await;
    let of_reader: Vec<(usize, Message)> = received
        .iter()
        .filter(|(instance, _)| *instance == 0)
        .cloned()
        .collect();
    each_once(
        &sc,
        "the X v1 messages received",
        &of_reader,
        &[sent[0].clone(), sent[3].clone()],
    );
    listening
        .expect_quiet("a subscriber of X v1 must get no X v2 and no Y message")
        .await;
    listening.close().await;
    Verdict::Passed
}

/// Two subscriptions of one context (two instances of one app) share the messages: each
/// message reaches exactly one of them.
pub async fn shared_within_context<T: Transport + ?Sized>(
    transport: &T,
    patience: Patience,
) -> Verdict {
    let sc = Scenario::new("transport", "shared_within_context");
    let names = Names::fresh();
    let x = names.contract("x");
    let context = names.context("shared");
    let both = [subscription(&x, 1, &context), subscription(&x, 1, &context)];
    let mut listening = Listening::start(sc, patience, transport, &both).await;
    let sent: Vec<Message> = (0..6)
        .map(|n| message(&x, 1, None, json!({ "n": n })))
        .collect();
    for message in &sent {
        publish(&sc, transport, message).await;
    }
    let received = listening.expect_acked(sent.len()).await;
    each_once(
        &sc,
        "the messages received by the two instances together",
        &received,
        &sent,
    );
    listening
        .expect_quiet("each message must reach one instance of the context only")
        .await;
    listening.close().await;
    Verdict::Passed
}

/// Of two subscriptions of one context, the second leaves (its `Inbound` is dropped): the first
/// still gets the context's messages, published before and after it left, as a consumer group
/// of a broker does.
pub async fn instance_leaves<T: Transport + ?Sized>(transport: &T, patience: Patience) -> Verdict {
    let sc = Scenario::new("transport", "instance_leaves");
    let names = Names::fresh();
    let x = names.contract("x");
    let context = names.context("scaled");
    let both = [subscription(&x, 1, &context), subscription(&x, 1, &context)];
    let mut listening = Listening::start(sc, patience, transport, &both).await;
    let before: Vec<Message> = (0..3)
        .map(|n| message(&x, 1, None, json!({ "n": n })))
        .collect();
    for message in &before {
        publish(&sc, transport, message).await;
    }
    let received = listening.expect_acked(before.len()).await;
    each_once(
        &sc,
        "the messages received while both instances were subscribed",
        &received,
        &before,
    );
    listening.leave(1).await;
    let after: Vec<Message> = (3..6)
        .map(|n| message(&x, 1, None, json!({ "n": n })))
        .collect();
    for message in &after {
        publish(&sc, transport, message).await;
    }
    let received = listening.expect_acked(after.len()).await;
    let per_instance = each_once(
        &sc,
        "the messages received by the instance that stayed",
        &received,
        &after,
    );
    sc.same(
        "how many messages each instance got after instance 1 left",
        per_instance,
        BTreeMap::from([(0, after.len())]),
    );
    listening.close().await;
    Verdict::Passed
}

/// Two contexts subscribed to one contract each get every message, once.
pub async fn every_context<T: Transport + ?Sized>(transport: &T, patience: Patience) -> Verdict {
    let sc = Scenario::new("transport", "every_context");
    let names = Names::fresh();
    let x = names.contract("x");
    let two = [
        subscription(&x, 1, &names.context("search")),
        subscription(&x, 1, &names.context("billing")),
    ];
    let mut listening = Listening::start(sc, patience, transport, &two).await;
    let sent: Vec<Message> = (0..4)
        .map(|n| message(&x, 1, None, json!({ "n": n })))
        .collect();
    for message in &sent {
        publish(&sc, transport, message).await;
    }
    let received = listening.expect_acked(2 * sent.len()).await;
    for instance in [0, 1] {
        let of_instance: Vec<(usize, Message)> = received
            .iter()
            .filter(|(i, _)| *i == instance)
            .cloned()
            .collect();
        each_once(
            &sc,
            &format!("the messages received by context {instance}"),
            &of_instance,
            &sent,
        );
    }
    listening
        .expect_quiet("each context must get each message once")
        .await;
    listening.close().await;
    Verdict::Passed
}

/// Acknowledged messages are not delivered again: not on the subscription, and not to a new
/// subscription of the context once the first one ended.
pub async fn acknowledged<T: Transport + ?Sized>(transport: &T, patience: Patience) -> Verdict {
    let sc = Scenario::new("transport", "acknowledged");
    let names = Names::fresh();
    let x = names.contract("x");
    let reader = [subscription(&x, 1, &names.context("reader"))];
    let mut listening = Listening::start(sc, patience, transport, &reader).await;
    let sent: Vec<Message> = (0..3)
        .map(|n| message(&x, 1, None, json!({ "n": n })))
        .collect();
    for message in &sent {
        publish(&sc, transport, message).await;
    }
    let received = listening.expect_acked(sent.len()).await;
    each_once(&sc, "the messages received", &received, &sent);
    listening
        .expect_quiet("acknowledged messages must not come again")
        .await;
    listening.close().await;
    let mut again = Listening::start(sc, patience, transport, &reader).await;
    again
        .expect_quiet("acknowledged messages must not come again to a new subscription")
        .await;
    again.close().await;
    Verdict::Passed
}

/// For a transport that redelivers ([`Capabilities::redelivers_unacknowledged`]): a message
/// received and not acknowledged comes again, once its subscription ended, to the context's
/// next subscription, within [`Patience::wait`]; acknowledged then, it does not come again.
/// An [`InMemoryTransport`](crate::InMemoryTransport) fails it: it does not redeliver.
pub async fn redelivery<T: Transport + ?Sized>(transport: &T, patience: Patience) -> Verdict {
    let sc = Scenario::new("transport", "redelivery");
    let names = Names::fresh();
    let x = names.contract("x");
    let reader = [subscription(&x, 1, &names.context("reader"))];
    let mut listening = Listening::start(sc, patience, transport, &reader).await;
    let sent = message(&x, 1, None, json!({ "n": 1 }));
    publish(&sc, transport, &sent).await;
    let unacked = listening.expect_unacked(1).await;
    same_message(&sc, &unacked[0].1.message, &sent);
    drop(unacked);
    listening.close().await;

    let mut again = Listening::start(sc, patience, transport, &reader).await;
    let redelivered = again.expect_acked(1).await;
    each_once(
        &sc,
        "the message redelivered to the next subscription",
        &redelivered,
        std::slice::from_ref(&sent),
    );
    again
        .expect_quiet("a redelivered message, once acknowledged, must not come again")
        .await;
    again.close().await;
    Verdict::Passed
}

/// Messages of one key reach a subscriber in the order they were published, keys interleaved.
pub async fn order_per_key<T: Transport + ?Sized>(transport: &T, patience: Patience) -> Verdict {
    let sc = Scenario::new("transport", "order_per_key");
    let names = Names::fresh();
    let x = names.contract("x");
    let reader = [subscription(&x, 1, &names.context("reader"))];
    let mut listening = Listening::start(sc, patience, transport, &reader).await;
    let mut sent = Vec::new();
    for seq in 0..10 {
        for key in ["k1", "k2"] {
            sent.push(message(&x, 1, Some(key), json!({ "key": key, "seq": seq })));
        }
    }
    for message in &sent {
        publish(&sc, transport, message).await;
    }
    let received = listening.expect_acked(sent.len()).await;
    each_once(&sc, "the keyed messages received", &received, &sent);
    for key in ["k1", "k2"] {
        let order = |messages: Vec<&Message>| -> Vec<Uuid> {
            messages
                .into_iter()
                .filter(|m| m.key.as_deref() == Some(key))
                .map(|m| m.id)
                .collect()
        };
        sc.same(
            &format!("the order in which key {key}'s messages arrived"),
            order(received.iter().map(|(_, m)| m).collect()),
            order(sent.iter().collect()),
        );
    }
    listening.close().await;
    Verdict::Passed
}

/// A `next` dropped before it resolved loses no message. The reader polls `next` once and drops
/// it, or gives up after a millisecond, again and again, before and while messages of one key
/// arrive: it gets every message once, in the order they were published.
pub async fn cancelled_next<T: Transport + ?Sized>(transport: &T, patience: Patience) -> Verdict {
    let sc = Scenario::new("transport", "cancelled_next");
    let names = Names::fresh();
    let x = names.contract("x");
    let reader = subscription(&x, 1, &names.context("reader"));
    let mut inbound = sc
        .call(
            &format!("subscribe to {reader:?}"),
            transport.subscribe(reader.clone()),
        )
        .await;
    let mut received = Vec::new();
    let take = |next: Option<Option<Result<Received, TransportError>>>| match next {
        Some(Some(Ok(received))) => Some(received),
        Some(Some(Err(error))) => sc.fail(format_args!("the subscription failed: {error}")),
        Some(None) => sc.fail("the subscription ended"),
        None => None,
    };
    // Given up on before anything was published.
    for _ in 0..3 {
        if let Some(early) = take(inbound.next().now_or_never()) {
            sc.fail(format_args!(
                "a message arrived before any was published: {early:?}"
            ));
        }
        let waited = tokio::time::timeout(Duration::from_millis(1), inbound.next()).await;
        if let Some(early) = take(waited.ok()) {
            sc.fail(format_args!(
                "a message arrived before any was published: {early:?}"
            ));
        }
    }
    let sent: Vec<Message> = (0..20)
        .map(|seq| message(&x, 1, Some("k"), json!({ "seq": seq })))
        .collect();
    for message in &sent {
        publish(&sc, transport, message).await;
    }
    let deadline = tokio::time::Instant::now() + patience.wait;
    let mut wait = false;
    while received.len() < sent.len() && tokio::time::Instant::now() < deadline {
        // Polled once and dropped, or dropped after a millisecond's wait, in turn.
        wait = !wait;
        let next = if !wait {
            inbound.next().now_or_never()
        } else {
            tokio::time::timeout(Duration::from_millis(1), inbound.next())
                .await
                .ok()
        };
        match take(next) {
            Some(got) => {
                let message = got.message.clone();
                sc.call("acknowledging a message", got.ack()).await;
                received.push((0, message));
            }
            None => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    if received.len() < sent.len() {
        sc.fail(format_args!(
            "{} of {} messages arrived within {:?} to a reader that gives up waiting (got {:?})",
            received.len(),
            sent.len(),
            patience.wait,
            ids(&received)
        ));
    }
    each_once(&sc, "the messages received", &received, &sent);
    sc.same(
        "the order in which the messages arrived",
        ids(&received),
        sent.iter().map(|m| m.id).collect::<Vec<_>>(),
    );
    Verdict::Passed
}
