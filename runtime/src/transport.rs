//! The transport seam: how integration events reach other contexts. [`InMemoryTransport`]
//! connects the apps of one process; broker transports implement the same trait.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::activity::Activity;
use crate::store::BoxFuture;

/// A transport could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[error("transport: {message}")]
pub struct TransportError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TransportError {
    /// An error described by `message`, caused by `source`.
    pub fn new(
        message: impl Into<String>,
        source: impl Into<Option<Box<dyn std::error::Error + Send + Sync>>>,
    ) -> Self {
        TransportError {
            message: message.into(),
            source: source.into(),
        }
    }
}

/// An integration event on the wire: the attributes of a CloudEvents 1.0 event (`id`, `source`,
/// `type`, `time`, `datacontenttype` JSON) plus the extensions tidings carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// CloudEvents `id`: the event id, also the broker's dedupe id.
    pub id: Uuid,
    /// CloudEvents `source`: the bounded context that published it.
    pub source: String,
    /// CloudEvents `type`: the contract's name.
    pub contract: String,
    /// Extension `dataversion`: the contract's version.
    pub version: u32,
    /// Extension `partitionkey`: the ordering key.
    pub key: Option<String>,
    /// CloudEvents `time`.
    pub time: DateTime<Utc>,
    /// Extension `correlationid`.
    pub correlation_id: Uuid,
    /// Extension `causationid`.
    pub causation_id: Option<Uuid>,
    /// Extension `traceparent` (W3C trace context).
    pub traceparent: Option<String>,
    /// The event, as JSON.
    pub data: serde_json::Value,
}

/// What an app subscribes to: one contract version, on behalf of one bounded context. Two apps of
/// different contexts each get every message; two instances of one context share them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The contract's name.
    pub contract: String,
    /// The contract's version.
    pub version: u32,
    /// The subscribing context: the consumer group.
    pub context: String,
}

/// A received message and its acknowledgement.
pub struct Received {
    /// The message.
    pub message: Message,
    ack: Box<dyn FnOnce() -> BoxFuture<'static, Result<(), TransportError>> + Send>,
}

impl Received {
    /// A message whose acknowledgement runs `ack`.
    pub fn new(
        message: Message,
        ack: impl FnOnce() -> BoxFuture<'static, Result<(), TransportError>> + Send + 'static,
    ) -> Self {
        Received {
            message,
            ack: Box::new(ack),
        }
    }

    /// Acknowledges the message: the broker will not deliver it again.
    pub fn ack(self) -> BoxFuture<'static, Result<(), TransportError>> {
        (self.ack)()
    }
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

/// The messages of one subscription.
pub trait Inbound: Send {
    /// The next message; `None` once the subscription has ended.
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>>;
}

/// How integration events travel between contexts.
pub trait Transport: Send + Sync + 'static {
    /// Publishes `message`; resolves once the broker acknowledged it.
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Subscribes to a contract version on behalf of a context.
    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>>;

    /// The transport's own count of messages in flight, for [`settle`](crate::Running::settle):
    /// a transport that can tell returns it. Brokers cannot, and return `None`.
    #[doc(hidden)]
    fn activity(&self) -> Option<Arc<Activity>> {
        None
    }
}

/// The in-process transport: delivers every message to every context subscribed to its
/// contract, in the order published. Clones share the same hub, so several apps attached to
/// clones of one transport talk to each other. It keeps a copy of every published message, for
/// tests to assert on.
///
/// ```
/// use tidings::InMemoryTransport;
///
/// let transport = InMemoryTransport::default();
/// let inspect = transport.clone();
/// assert!(inspect.published().is_empty());
/// ```
#[derive(Clone, Default)]
pub struct InMemoryTransport {
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Hub {
    state: Mutex<HubState>,
    activity: Arc<Activity>,
    sequence: AtomicU64,
}

#[derive(Default)]
struct HubState {
    groups: HashMap<(String, u32), HashMap<String, mpsc::UnboundedSender<Message>>>,
    published: Vec<Message>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for InMemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryTransport")
            .field("published", &self.hub.sequence.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl InMemoryTransport {
    /// A transport with no subscriber yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message published so far, in order.
    pub fn published(&self) -> Vec<Message> {
        self.hub.lock().published.clone()
    }

    /// The published messages of integration event `I`, decoded.
    pub fn published_of<I: crate::IntegrationEvent>(&self) -> Vec<I> {
        self.published()
            .into_iter()
            .filter(|m| m.contract == I::CONTRACT && m.version == I::VERSION)
            .filter_map(|m| I::deserialize(&m.data).ok())
            .collect()
    }
}

struct MemoryInbound {
    receiver: mpsc::UnboundedReceiver<Message>,
    activity: Arc<Activity>,
}

impl Inbound for MemoryInbound {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>> {
        Box::pin(async move {
            let message = self.receiver.recv().await?;
            let activity = Arc::clone(&self.activity);
            Some(Ok(Received::new(message, move || {
                activity.finish(1);
                Box::pin(std::future::ready(Ok(())))
            })))
        })
    }
}

impl Transport for InMemoryTransport {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        let mut state = self.hub.lock();
        self.hub.sequence.fetch_add(1, Ordering::Relaxed);
        let key = (message.contract.clone(), message.version);
        if let Some(groups) = state.groups.get(&key) {
            for sender in groups.values() {
                self.hub.activity.start(1);
                if sender.send(message.clone()).is_err() {
                    // The subscriber is gone: nobody will acknowledge this copy.
                    self.hub.activity.finish(1);
                }
            }
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
        self.hub
            .lock()
            .groups
            .entry(key)
            .or_default()
            .insert(subscription.context, sender);
        let inbound = MemoryInbound {
            receiver,
            activity: Arc::clone(&self.hub.activity),
        };
        Box::pin(std::future::ready(
            Ok(Box::new(inbound) as Box<dyn Inbound>),
        ))
    }

    fn activity(&self) -> Option<Arc<Activity>> {
        Some(Arc::clone(&self.hub.activity))
    }
}
