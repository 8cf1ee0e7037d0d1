//! [`InMemoryTransport`]: the apps of one process, talking as through a broker.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{BoxFuture, Inbound, Message, Received, Subscription, Transport, TransportError};
use crate::activity::Activity;

/// The in-process transport: delivers every message to every context subscribed to its
/// contract, in the order published; the instances of one context (several subscriptions on
/// its behalf) take turns, as a broker's consumer group does, and an instance that leaves
/// leaves the others every message. Clones share the same hub, so several apps attached to
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
    /// The subscribers of each contract version, by context.
    groups: HashMap<(String, u32), HashMap<String, Group>>,
    published: Vec<Message>,
}

/// The instances of one context subscribed to one contract version: each message goes to one
/// of them, in turn.
#[derive(Default)]
struct Group {
    members: Vec<mpsc::UnboundedSender<Message>>,
    next: usize,
}

impl Group {
    /// Hands `message` to the next instance still there; returns whether one took it.
    fn send(&mut self, message: Message) -> bool {
        let mut message = message;
        while !self.members.is_empty() {
            let at = self.next % self.members.len();
            match self.members[at].send(message) {
                Ok(()) => {
                    self.next = at + 1;
                    return true;
                }
                // That instance is gone: the next one takes the message.
                Err(mpsc::error::SendError(back)) => {
                    self.members.remove(at);
                    message = back;
                }
            }
        }
        false
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

    /// The messages in flight: published and not yet acknowledged by every subscriber. An app
    /// built on this transport waits for them in [`settle`](crate::Running::settle).
    pub(crate) fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.hub.activity)
    }

    /// The published messages of integration event `I`, decoded.
    pub fn published_of<I: crate::event::IntegrationEvent>(&self) -> Vec<I> {
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
        if let Some(groups) = state.groups.get_mut(&key) {
            for group in groups.values_mut() {
                self.hub.activity.start(1);
                if !group.send(message.clone()) {
                    // Every instance of that context is gone: nobody will acknowledge this copy.
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
            .entry(subscription.context)
            .or_default()
            .members
            .push(sender);
        let inbound = MemoryInbound {
            receiver,
            activity: Arc::clone(&self.hub.activity),
        };
        Box::pin(std::future::ready(
            Ok(Box::new(inbound) as Box<dyn Inbound>),
        ))
    }
}
