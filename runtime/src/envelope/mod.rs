//! The envelope: one event as it is held at each hop, and the conversions between them.
//!
//! - published: the typed event and its [`EventMeta`];
//! - stored: a [`StoredEvent`], its JSON with the meta, in the store;
//! - on the wire: a [`Message`], the attributes of a CloudEvents event.
//!
//! Every hop builds its records here, so the meta of an event reads the same everywhere.

pub mod cloudevents;
mod payload;

pub use payload::Payload;

use crate::event::{DomainEvent, DynIntegrationEvent, EventKind};
use crate::meta::EventMeta;
use crate::store::{NewIntegrationRow, StoredEvent, TypedEvent};
use crate::transport::Message;
#[cfg(any(
    feature = "nats",
    feature = "rabbitmq",
    feature = "kafka",
    feature = "pubsub"
))]
use crate::transport::Subscription;

#[cfg(any(
    feature = "nats",
    feature = "rabbitmq",
    feature = "kafka",
    feature = "pubsub"
))]
use self::cloudevents::CloudEventError;

/// A domain event a use case publishes, as it is recorded.
pub(crate) fn domain<E: DomainEvent>(
    meta: EventMeta,
    event: E,
) -> Result<StoredEvent, serde_json::Error> {
    Ok(StoredEvent {
        meta,
        kind: EventKind::Domain,
        name: E::NAME.to_owned(),
        version: 1,
        payload: Payload::of(&event)?,
        typed: Some(TypedEvent::new(event)),
    })
}

/// An integration event that context `source` produced while handling the event of `cause`, as
/// it is put in the outbox: same correlation, caused by that event, with the `traceparent` of
/// the span that produced it.
pub(crate) fn produced(
    cause: &EventMeta,
    source: &str,
    traceparent: &str,
    event: &dyn DynIntegrationEvent,
) -> Result<NewIntegrationRow, serde_json::Error> {
    Ok(NewIntegrationRow {
        key: event.key(),
        event: StoredEvent {
            meta: EventMeta {
                traceparent: Some(traceparent.to_owned()),
                ..cause.caused(source)
            },
            kind: EventKind::Integration,
            name: event.contract().to_owned(),
            version: event.version(),
            payload: event.to_json()?,
            typed: None,
        },
    })
}

/// An integration event of the outbox, with its ordering key, as it goes on the wire: its
/// payload shared, not copied.
pub(crate) fn message(event: StoredEvent, key: Option<String>) -> Message {
    let StoredEvent {
        meta,
        name,
        version,
        payload,
        ..
    } = event;
    Message {
        id: meta.id,
        source: meta.source,
        contract: name,
        version,
        key,
        time: meta.occurred_at,
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        traceparent: meta.traceparent,
        data: payload,
    }
}

/// A message received from the wire, as it is recorded for the inbound handlers: with the typed
/// event if it was decoded.
pub(crate) fn received(message: &Message, typed: Option<TypedEvent>) -> StoredEvent {
    StoredEvent {
        meta: EventMeta {
            id: message.id,
            occurred_at: message.time,
            correlation_id: message.correlation_id,
            causation_id: message.causation_id,
            traceparent: message.traceparent.clone(),
            source: message.source.clone(),
        },
        kind: EventKind::Integration,
        name: message.contract.clone(),
        version: message.version,
        payload: message.data.clone(),
        typed,
    }
}

#[cfg(any(
    feature = "nats",
    feature = "rabbitmq",
    feature = "kafka",
    feature = "pubsub"
))]
/// What a transport `decoded` from a delivery of `subscription`, with the protocol's own
/// `traceparent` header, `hop`: the message, if it is a CloudEvent of the subscription's
/// contract and version, continuing the hop's trace (the publishing relay's span) where the
/// header is there, else the trace its CloudEvents attribute names; else why not, for
/// [`unreadable`].
pub(crate) fn of_subscription(
    decoded: Result<Message, CloudEventError>,
    subscription: &Subscription,
    hop: Option<String>,
) -> Result<Message, String> {
    match decoded {
        Ok(mut message)
            if message.contract == subscription.contract
                && message.version == subscription.version =>
        {
            if hop.is_some() {
                message.traceparent = hop;
            }
            Ok(message)
        }
        Ok(message) => Err(format!(
            "a CloudEvent of contract `{}` version {}, where `{}` version {} is consumed",
            message.contract, message.version, subscription.contract, subscription.version
        )),
        Err(error) => Err(crate::error::error_chain(&error)),
    }
}

#[cfg(any(
    feature = "nats",
    feature = "rabbitmq",
    feature = "kafka",
    feature = "pubsub"
))]
/// Where an unreadable delivery came from, and what the broker says of it.
pub(crate) struct Unreadable<'a> {
    /// The broker's place it was read from, for people: "NATS subject `x`".
    pub(crate) place: String,
    /// The message's `source`: the broker and the place, such as `nats:x`.
    pub(crate) source: String,
    /// The id the broker gives it, if any: the message's id when it is a UUID.
    pub(crate) id: Option<String>,
    /// The W3C `traceparent` it carries, if any.
    pub(crate) traceparent: Option<String>,
    /// Why it cannot be read.
    pub(crate) why: String,
    /// Its bytes.
    pub(crate) payload: &'a [u8],
}

#[cfg(any(
    feature = "nats",
    feature = "rabbitmq",
    feature = "kafka",
    feature = "pubsub"
))]
/// A delivery that is not a tidings CloudEvent of `subscription`, as a message of the
/// subscription's contract and version whose data, a JSON string, says why and holds the
/// payload: the consumer cannot decode it as the contract, dead-letters it with that text, and
/// acknowledges it, so that it never blocks the subscription.
pub(crate) fn unreadable(subscription: &Subscription, delivery: Unreadable<'_>) -> Message {
    let id = delivery
        .id
        .and_then(|id| uuid::Uuid::parse_str(&id).ok())
        .unwrap_or_else(uuid::Uuid::now_v7);
    tracing::warn!(
        place = %delivery.place,
        context = %subscription.context,
        %id,
        reason = %delivery.why,
        "a message is not a tidings CloudEvent; handing it over to be dead-lettered"
    );
    let payload = String::from_utf8_lossy(delivery.payload);
    Message {
        id,
        source: delivery.source,
        contract: subscription.contract.clone(),
        version: subscription.version,
        key: None,
        time: chrono::Utc::now(),
        correlation_id: id,
        causation_id: None,
        traceparent: delivery.traceparent,
        data: Payload::from(serde_json::Value::String(format!(
            "not a readable event on {} ({}); payload: {payload}",
            delivery.place, delivery.why
        ))),
    }
}
