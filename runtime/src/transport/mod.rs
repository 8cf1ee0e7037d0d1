//! The transport seam, for people who write a transport: how integration events travel
//! between contexts, and the [`Message`] that crosses it.
//!
//! An application names a transport ([`InMemoryTransport`], or a broker's) and never calls it.
//! A transport of your own implements [`Transport`]; the conformance suite in
//! `tidings::testing` (feature `testing`) checks it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::envelope::{Payload, cloudevents};
pub use crate::error::{ErrorKind, TransportError};
pub use crate::future::BoxFuture;
pub use crate::trace::hop_traceparent;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaTransport, KafkaTransportBuilder};
pub use memory::InMemoryTransport;
#[cfg(feature = "nats")]
pub use nats::{NatsStorage, NatsTransport, NatsTransportBuilder};
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{
    RabbitMqQueueType, RabbitMqTransport, RabbitMqTransportBuilder, RabbitMqUnroutable,
};

#[cfg(feature = "pubsub")]
pub use pubsub::{
    EMULATOR_HOST_VARIABLE, PubSubClients, PubSubTopology, PubSubTransport, PubSubTransportBuilder,
};

pub mod address;
#[cfg(feature = "kafka")]
mod kafka;
mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "pubsub")]
mod pubsub;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;

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
    /// CloudEvents `data`: the event, as JSON.
    pub data: Payload,
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
    ///
    /// It must be cancel-safe: a consumer drops this future unresolved when it is told to stop,
    /// or when it only takes what is ready, and a message must not be lost by that.
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

    /// The messaging system, as OpenTelemetry's semantic conventions name it
    /// (`messaging.system`): `nats`, `rabbitmq`, `kafka`, `gcp_pubsub`. It labels the metrics.
    /// Default: `custom`.
    fn system(&self) -> &'static str {
        "custom"
    }

    /// Whether the broker answers now, without publishing: for
    /// [`Running::health`](crate::Running::health), which also counts the last publication and
    /// the consumers. Cheap: a connection's state, not a round trip. Default: `Ok(())`.
    fn check(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
}
