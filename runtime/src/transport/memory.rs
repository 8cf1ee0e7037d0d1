//! [`InMemoryTransport`]: the apps of one process, talking as through a broker.

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{BoxFuture, Inbound, Message, Received, Subscription, Transport, TransportError};
use crate::activity::Activity;
use crate::event::EventKind;
use crate::recent::Recent;
use crate::registry::{Registry, registry};

/// The in-process transport: the bounded contexts of one process (a modular monolith) talk
/// through it as through a broker.
///
/// - **Every consuming context gets every message** of the contracts it subscribed to, in the
///   order published. The instances of one context (several subscriptions on its behalf) take
///   turns, as a broker's consumer group does; an instance that leaves leaves the others every
///   message, including those handed to it and not yet received.
/// - **Messages wait for the contexts that consume them.** A message published before a
///   consuming context subscribed (its app started later, such as `search` after `catalog`), or
///   while every instance of it is gone, is kept for it, and its next subscription receives
///   those first, in publish order. The consumers of a contract are the contexts of the
///   inbound handlers of its type, as the [registry](crate::registry()) tells. A program that
///   declares no `tidings::context!` runs every handler in every app, so the consuming context
///   has no name: the message is kept for the first context that subscribes to the contract.
///   A contract that no handler of the program consumes is kept for nobody (only contexts
///   that subscribed to it get it, as before).
/// - **Memory is bounded.** At most [`hold`](Self::hold) messages wait per contract version
///   and context ([`DEFAULT_HOLD`](Self::DEFAULT_HOLD) unless set): when full, the oldest is
///   dropped, with a warning that names the contract and the context. For tests,
///   [`published`](Self::published) keeps the last [`capture`](Self::capture) messages
///   published ([`DEFAULT_CAPTURE`](Self::DEFAULT_CAPTURE) unless set).
/// - **[`settle`](crate::Running::settle) waits for messages in flight**, handed to a
///   subscriber and not yet acknowledged, but not for waiting messages: their context may
///   never start in this process, and `settle` would never return. They are delivered, and
///   waited for, once the context subscribes; [`waiting`](Self::waiting) counts them.
///
/// It does not redeliver a message received and not acknowledged, and keeps nothing across a
/// restart of the process. Clones share the same hub, so several apps attached to clones of one
/// transport talk to each other.
///
/// ```
/// use tidings::InMemoryTransport;
///
/// let transport = InMemoryTransport::new().hold(1_000).capture(100);
/// let inspect = transport.clone();
/// assert!(inspect.published().is_empty());
/// assert_eq!(inspect.waiting(), 0);
/// ```
#[derive(Clone, Default)]
pub struct InMemoryTransport {
    hub: Arc<Hub>,
}

/// A contract version: name and version.
type Key = (String, u32);

struct Hub {
    state: Mutex<HubState>,
    activity: Arc<Activity>,
    sequence: AtomicU64,
    /// Who consumes a contract version: the registry's answer, or a test's.
    consumers_of: fn(&str, u32) -> Consumers,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            state: Mutex::default(),
            activity: Arc::default(),
            sequence: AtomicU64::new(0),
            consumers_of: |contract, version| consumers_in(registry(), contract, version),
        }
    }
}

struct HubState {
    /// The subscribers of each contract version, by context, and what waits for each context.
    groups: HashMap<Key, HashMap<String, Group>>,
    /// Messages of a contract whose consumers have no context name, kept for the first context
    /// that subscribes to it.
    unclaimed: HashMap<Key, Held>,
    /// The consumers of each contract version published so far.
    consumers: HashMap<Key, Consumers>,
    /// The last messages published, for tests, as many as `capture` says.
    published: Recent<Message>,
    /// How many messages wait per contract version and context, at most.
    hold: usize,
}

impl Default for HubState {
    fn default() -> Self {
        HubState {
            groups: HashMap::new(),
            unclaimed: HashMap::new(),
            consumers: HashMap::new(),
            published: Recent::new(InMemoryTransport::DEFAULT_CAPTURE),
            hold: InMemoryTransport::DEFAULT_HOLD,
        }
    }
}

/// The contexts that consume a contract version in this program.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Consumers {
    /// No handler consumes it: nothing waits for anyone.
    Nobody,
    /// The contexts of its inbound handlers.
    Contexts(BTreeSet<&'static str>),
    /// Handlers consume it, in a program that declares no context: the first context to
    /// subscribe is the one.
    FirstToSubscribe,
}

/// The consumers of contract `contract` version `version`, as `registry` describes the program.
fn consumers_in(registry: &Registry, contract: &str, version: u32) -> Consumers {
    let types: Vec<TypeId> = registry
        .integration_events()
        .iter()
        .filter(|e| e.contract() == contract && e.version() == version)
        .map(|e| e.event().type_id())
        .collect();
    let handlers: Vec<_> = registry
        .handlers()
        .iter()
        .filter(|h| h.event_kind() == EventKind::Integration)
        .filter(|h| types.contains(&h.event().type_id()))
        .collect();
    if handlers.is_empty() {
        Consumers::Nobody
    } else if registry.contexts().is_empty() {
        Consumers::FirstToSubscribe
    } else {
        Consumers::Contexts(
            handlers
                .iter()
                .filter_map(|h| registry.context_of(h.origin().module_path()))
                .collect(),
        )
    }
}

/// Messages waiting for a context, oldest first, at most the hub's `hold`.
#[derive(Default)]
struct Held {
    messages: VecDeque<Message>,
    /// How many were dropped since the context last took what waited.
    dropped: u64,
}

impl Held {
    /// Keeps `message` for `context`, dropping the oldest if `capacity` is reached.
    fn push(&mut self, message: Message, capacity: usize, context: &str) {
        if capacity == 0 {
            // Waiting is turned off: the context gets only what comes while it is subscribed.
            return;
        }
        if self.messages.len() >= capacity
            && let Some(oldest) = self.messages.pop_front()
        {
            self.dropped += 1;
            // Warn on the 1st, 2nd, 4th, 8th... drop: a context that never comes would
            // otherwise warn on every publish.
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    contract = %oldest.contract,
                    version = oldest.version,
                    context,
                    capacity,
                    dropped = self.dropped,
                    event_id = %oldest.id,
                    "a message waiting for a context that is not subscribed was dropped: \
                     the context's waiting messages reached the capacity; start its app \
                     sooner, or raise `InMemoryTransport::hold`"
                );
            }
        }
        self.messages.push_back(message);
    }
}

/// The instances of one context subscribed to one contract version: each message goes to one
/// of them, in turn; while none is there, messages wait.
#[derive(Default)]
struct Group {
    members: Vec<mpsc::UnboundedSender<Message>>,
    next: usize,
    held: Held,
}

impl Group {
    /// Hands `message` to the next instance still there; gives it back if none is.
    fn send(&mut self, message: Message) -> Option<Message> {
        let mut message = message;
        while !self.members.is_empty() {
            let at = self.next % self.members.len();
            match self.members[at].send(message) {
                Ok(()) => {
                    self.next = at + 1;
                    return None;
                }
                // That instance is gone: the next one takes the message.
                Err(mpsc::error::SendError(back)) => {
                    self.members.remove(at);
                    message = back;
                }
            }
        }
        Some(message)
    }

    /// Hands `message` to an instance, counted in flight in `activity`, or keeps it waiting.
    fn deliver(&mut self, message: Message, activity: &Activity, hold: usize, context: &str) {
        // Counted before it is sent: the receiver may acknowledge it at once.
        activity.start(1);
        if let Some(back) = self.send(message) {
            // No instance: nobody will acknowledge it now; it waits, not in flight.
            activity.finish(1);
            self.held.push(back, hold, context);
        }
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        crate::sync::lock(&self.state)
    }
}

impl fmt::Debug for InMemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryTransport")
            .field("published", &self.hub.sequence.load(Ordering::Relaxed))
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

impl InMemoryTransport {
    /// How many messages wait per contract version and context, unless [`hold`](Self::hold)
    /// says otherwise.
    ///
    /// ```
    /// assert_eq!(tidings::InMemoryTransport::DEFAULT_HOLD, 10_000);
    /// ```
    pub const DEFAULT_HOLD: usize = 10_000;

    /// How many published messages [`published`](Self::published) keeps, unless
    /// [`capture`](Self::capture) says otherwise.
    ///
    /// ```
    /// assert_eq!(tidings::InMemoryTransport::DEFAULT_CAPTURE, 10_000);
    /// ```
    pub const DEFAULT_CAPTURE: usize = 10_000;

    /// A transport with no subscriber yet.
    ///
    /// ```
    /// let transport = tidings::InMemoryTransport::new();
    /// assert!(transport.published().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps at most `capacity` messages waiting per contract version and context, for a
    /// consuming context that has not subscribed yet or whose instances all left (default
    /// [`DEFAULT_HOLD`](Self::DEFAULT_HOLD)). When full, the oldest is dropped, with a
    /// `tracing` warning naming the contract and the context. `0` keeps none: a context then
    /// gets only what is published while it is subscribed. Set it before the first publish; it
    /// applies to every clone.
    ///
    /// ```
    /// use tidings::prelude::*;
    ///
    /// let transport = InMemoryTransport::new().hold(50_000);
    /// let app = Tidings::builder("catalog").transport(transport.clone());
    /// # drop(app);
    /// ```
    pub fn hold(self, capacity: usize) -> Self {
        self.hub.lock().hold = capacity;
        self
    }

    /// Keeps the last `capacity` published messages for [`published`](Self::published) and
    /// [`published_of`](Self::published_of) (default [`DEFAULT_CAPTURE`](Self::DEFAULT_CAPTURE)),
    /// so a long-running process does not grow with every message. `0` keeps none. It applies
    /// to every clone.
    ///
    /// ```
    /// use tidings::InMemoryTransport;
    ///
    /// // A long-running monolith that never asserts on what it published.
    /// let transport = InMemoryTransport::new().capture(0);
    /// assert!(transport.published().is_empty());
    /// ```
    pub fn capture(self, capacity: usize) -> Self {
        self.hub.lock().published.set_capacity(capacity);
        self
    }

    /// The last messages published (at most [`capture`](Self::capture) of them), oldest first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tidings::InMemoryTransport;
    /// use tidings::transport::{Message, Transport};
    ///
    /// let transport = InMemoryTransport::new().capture(2);
    /// for n in 0..3 {
    ///     let message = Message {
    ///         id: uuid::Uuid::now_v7(),
    ///         source: "catalog".into(),
    ///         contract: "catalog.product-updated".into(),
    ///         version: 1,
    ///         key: None,
    ///         time: chrono::Utc::now(),
    ///         correlation_id: uuid::Uuid::now_v7(),
    ///         causation_id: None,
    ///         traceparent: None,
    ///         data: serde_json::json!({ "n": n }).into(),
    ///     };
    ///     transport.publish(message).await.unwrap();
    /// }
    /// let kept: Vec<_> = transport.published().iter().map(|m| m.data.to_string()).collect();
    /// assert_eq!(kept, [r#"{"n":1}"#, r#"{"n":2}"#]);
    /// # }
    /// ```
    pub fn published(&self) -> Vec<Message> {
        self.hub.lock().published.to_vec()
    }

    /// The published messages of integration event `I`, decoded: those among the last
    /// [`capture`](Self::capture) published.
    ///
    /// ```
    /// use tidings::prelude::*;
    ///
    /// #[integration_event(name = "catalog.product-updated")]
    /// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// pub struct ProductUpdatedIntegrationEvent { pub product_id: String }
    ///
    /// let transport = InMemoryTransport::new();
    /// assert!(transport.published_of::<ProductUpdatedIntegrationEvent>().is_empty());
    /// ```
    pub fn published_of<I: crate::event::IntegrationEvent>(&self) -> Vec<I> {
        self.published()
            .into_iter()
            .filter(|m| m.contract == I::CONTRACT && m.version == I::VERSION)
            .filter_map(|m| m.data.decode::<I>().ok())
            .collect()
    }

    /// How many messages wait for a consuming context that has not subscribed yet, or whose
    /// instances all left: [`settle`](crate::Running::settle) does not wait for them.
    ///
    /// ```
    /// assert_eq!(tidings::InMemoryTransport::new().waiting(), 0);
    /// ```
    pub fn waiting(&self) -> usize {
        let state = self.hub.lock();
        let held = state
            .groups
            .values()
            .flat_map(HashMap::values)
            .map(|g| g.held.messages.len());
        let unclaimed = state.unclaimed.values().map(|h| h.messages.len());
        held.chain(unclaimed).sum()
    }

    /// The messages in flight: handed to a subscriber and not yet acknowledged. An app built on
    /// this transport waits for them in [`settle`](crate::Running::settle). Messages waiting for
    /// a context that has not subscribed are not in flight until it does.
    pub(crate) fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.hub.activity)
    }

    /// A transport whose consumers are `consumers_of`'s answer rather than the registry's.
    #[cfg(test)]
    fn with_consumers(consumers_of: fn(&str, u32) -> Consumers) -> Self {
        InMemoryTransport {
            hub: Arc::new(Hub {
                consumers_of,
                ..Hub::default()
            }),
        }
    }
}

struct MemoryInbound {
    receiver: mpsc::UnboundedReceiver<Message>,
    hub: Arc<Hub>,
    key: Key,
    context: String,
}

impl Inbound for MemoryInbound {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>> {
        Box::pin(async move {
            let message = self.receiver.recv().await?;
            let activity = Arc::clone(&self.hub.activity);
            Some(Ok(Received::new(message, move || {
                activity.finish(1);
                Box::pin(std::future::ready(Ok(())))
            })))
        })
    }
}

impl Drop for MemoryInbound {
    /// The instance leaves: what was handed to it and not received goes to the context's other
    /// instances, or waits for its next subscription.
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        self.receiver.close();
        let mut left = Vec::new();
        while let Ok(message) = self.receiver.try_recv() {
            left.push(message);
        }
        if left.is_empty() {
            return;
        }
        let hold = state.hold;
        let Some(group) = state
            .groups
            .get_mut(&self.key)
            .and_then(|groups| groups.get_mut(&self.context))
        else {
            return;
        };
        for message in left {
            if let Some(back) = group.send(message) {
                // Counted in flight when it was handed to this instance; now it waits.
                self.hub.activity.finish(1);
                group.held.push(back, hold, &self.context);
            }
        }
    }
}

impl Transport for InMemoryTransport {
    fn system(&self) -> &'static str {
        "in_memory"
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        let mut guard = self.hub.lock();
        let state = &mut *guard;
        self.hub.sequence.fetch_add(1, Ordering::Relaxed);
        let key = (message.contract.clone(), message.version);
        let consumers = state
            .consumers
            .entry(key.clone())
            .or_insert_with(|| (self.hub.consumers_of)(&key.0, key.1));
        let groups = state.groups.entry(key.clone()).or_default();
        match consumers {
            Consumers::Contexts(contexts) => {
                // A consuming context that has not subscribed yet: the message waits for it.
                for context in contexts.iter() {
                    groups.entry((*context).to_owned()).or_default();
                }
            }
            Consumers::FirstToSubscribe if groups.is_empty() => {
                state.unclaimed.entry(key.clone()).or_default().push(
                    message.clone(),
                    state.hold,
                    "the first context to subscribe",
                );
            }
            Consumers::FirstToSubscribe | Consumers::Nobody => {}
        }
        for (context, group) in groups.iter_mut() {
            group.deliver(message.clone(), &self.hub.activity, state.hold, context);
        }
        state.published.push(message);
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let key = (subscription.contract, subscription.version);
        let mut guard = self.hub.lock();
        let state = &mut *guard;
        let groups = state.groups.entry(key.clone()).or_default();
        // The first context to subscribe takes what waited for a context with no name.
        let unclaimed = if groups.is_empty() {
            state.unclaimed.remove(&key)
        } else {
            None
        };
        let group = groups.entry(subscription.context.clone()).or_default();
        if let Some(unclaimed) = unclaimed {
            group.held.messages.extend(unclaimed.messages);
        }
        // What waited comes first, in publish order, and is in flight from now on.
        let waited = std::mem::take(&mut group.held);
        self.hub.activity.start(waited.messages.len());
        for message in waited.messages {
            // The receiver is here: the send cannot fail.
            let _ = sender.send(message);
        }
        group.members.push(sender);
        drop(guard);
        let inbound = MemoryInbound {
            receiver,
            hub: Arc::clone(&self.hub),
            key,
            context: subscription.context,
        };
        Box::pin(std::future::ready(
            Ok(Box::new(inbound) as Box<dyn Inbound>),
        ))
    }
}

/// The transport's own rules, on consumers given by hand: a test binary's registry is the
/// whole program's, so a program with no context declared is checked here.
#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn message(contract: &str, n: u64) -> Message {
        Message {
            id: uuid::Uuid::now_v7(),
            source: "catalog".into(),
            contract: contract.into(),
            version: 1,
            key: None,
            time: chrono::Utc::now(),
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            data: serde_json::json!({ "n": n }).into(),
        }
    }

    fn subscription(contract: &str, context: &str) -> Subscription {
        Subscription {
            contract: contract.into(),
            version: 1,
            context: context.into(),
        }
    }

    /// The `n` of each message `inbound` holds now, acknowledging each: this transport hands
    /// a message over within `publish` or `subscribe`, so no wait is needed.
    async fn drain(inbound: &mut Box<dyn Inbound>) -> Vec<u64> {
        let mut got = Vec::new();
        while let Some(Some(Ok(received))) = inbound.next().now_or_never() {
            let data: serde_json::Value = received.message.data.decode().unwrap();
            got.push(data["n"].as_u64().unwrap());
            received.ack().await.unwrap();
        }
        got
    }

    fn search_consumes(contract: &str, _version: u32) -> Consumers {
        if contract == "catalog.product-updated" {
            Consumers::Contexts(BTreeSet::from(["search"]))
        } else {
            Consumers::Nobody
        }
    }

    fn unnamed_consumers(contract: &str, _version: u32) -> Consumers {
        if contract == "catalog.product-updated" {
            Consumers::FirstToSubscribe
        } else {
            Consumers::Nobody
        }
    }

    #[tokio::test]
    async fn a_named_consumer_gets_what_was_published_before_it_subscribed() {
        let transport = InMemoryTransport::with_consumers(search_consumes);
        for n in 0..3 {
            transport
                .publish(message("catalog.product-updated", n))
                .await
                .unwrap();
        }
        assert_eq!(transport.waiting(), 3);
        assert!(transport.activity().is_idle(), "waiting is not in flight");
        let mut search = transport
            .subscribe(subscription("catalog.product-updated", "search"))
            .await
            .unwrap();
        assert!(!transport.activity().is_idle(), "delivered, so in flight");
        transport
            .publish(message("catalog.product-updated", 3))
            .await
            .unwrap();
        assert_eq!(
            drain(&mut search).await,
            [0, 1, 2, 3],
            "waited first, in order"
        );
        assert_eq!(transport.waiting(), 0);
        assert!(transport.activity().is_idle());

        // Another context, not a consumer, gets only what comes once it subscribed.
        let mut other = transport
            .subscribe(subscription("catalog.product-updated", "billing"))
            .await
            .unwrap();
        assert_eq!(drain(&mut other).await, Vec::<u64>::new());
    }

    #[tokio::test]
    async fn with_no_context_declared_the_first_to_subscribe_gets_what_waited() {
        let transport = InMemoryTransport::with_consumers(unnamed_consumers);
        for n in 0..2 {
            transport
                .publish(message("catalog.product-updated", n))
                .await
                .unwrap();
        }
        assert_eq!(transport.waiting(), 2);
        let mut first = transport
            .subscribe(subscription("catalog.product-updated", "shop"))
            .await
            .unwrap();
        let mut second = transport
            .subscribe(subscription("catalog.product-updated", "worker"))
            .await
            .unwrap();
        transport
            .publish(message("catalog.product-updated", 2))
            .await
            .unwrap();
        assert_eq!(drain(&mut first).await, [0, 1, 2]);
        assert_eq!(drain(&mut second).await, [2]);
        assert_eq!(transport.waiting(), 0);
    }

    #[tokio::test]
    async fn a_contract_nobody_consumes_waits_for_nobody() {
        let transport = InMemoryTransport::with_consumers(search_consumes);
        transport
            .publish(message("catalog.price-changed", 0))
            .await
            .unwrap();
        assert_eq!(transport.waiting(), 0);
        assert_eq!(transport.published().len(), 1);
    }

    #[tokio::test]
    async fn what_waits_is_bounded_and_the_oldest_is_dropped() {
        let transport = InMemoryTransport::with_consumers(unnamed_consumers).hold(3);
        for n in 0..5 {
            transport
                .publish(message("catalog.product-updated", n))
                .await
                .unwrap();
        }
        assert_eq!(transport.waiting(), 3);
        let mut search = transport
            .subscribe(subscription("catalog.product-updated", "search"))
            .await
            .unwrap();
        assert_eq!(drain(&mut search).await, [2, 3, 4]);
    }

    #[tokio::test]
    async fn what_an_instance_left_unreceived_goes_to_the_next_one() {
        let transport = InMemoryTransport::with_consumers(search_consumes);
        let first = transport
            .subscribe(subscription("catalog.product-updated", "search"))
            .await
            .unwrap();
        for n in 0..2 {
            transport
                .publish(message("catalog.product-updated", n))
                .await
                .unwrap();
        }
        drop(first);
        assert_eq!(transport.waiting(), 2);
        assert!(transport.activity().is_idle());
        let mut second = transport
            .subscribe(subscription("catalog.product-updated", "search"))
            .await
            .unwrap();
        assert_eq!(drain(&mut second).await, [0, 1]);
        assert!(transport.activity().is_idle());
    }

    #[tokio::test]
    async fn the_capture_keeps_the_last_messages() {
        let transport = InMemoryTransport::with_consumers(search_consumes).capture(2);
        for n in 0..4 {
            transport
                .publish(message("catalog.price-changed", n))
                .await
                .unwrap();
        }
        let kept: Vec<_> = transport
            .published()
            .iter()
            .map(|m| m.data.to_string())
            .collect();
        assert_eq!(kept, [r#"{"n":2}"#, r#"{"n":3}"#]);
        let none = InMemoryTransport::with_consumers(search_consumes).capture(0);
        none.publish(message("catalog.price-changed", 0))
            .await
            .unwrap();
        assert!(none.published().is_empty());
    }
}
