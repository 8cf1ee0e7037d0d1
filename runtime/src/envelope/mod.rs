//! The envelope: one event as it is held at each hop, and the conversions between them.
//!
//! - published: the typed event and its [`EventMeta`];
//! - stored: a [`StoredEvent`], its JSON with the meta, in the store;
//! - on the wire: a [`Message`], the attributes of a CloudEvents event.
//!
//! Every hop builds its records here, so the meta of an event reads the same everywhere.

pub mod cloudevents;

use std::any::Any;
use std::sync::Arc;

use crate::event::{DomainEvent, DynIntegrationEvent, EventKind};
use crate::meta::EventMeta;
use crate::store::{NewIntegrationRow, StoredEvent};
use crate::transport::Message;

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
        payload: Arc::new(serde_json::to_value(&event)?),
        typed: Some(Arc::new(event)),
    })
}

/// An integration event that context `source` produced while handling the event of `cause`, as
/// it is put in the outbox: same correlation, caused by that event.
pub(crate) fn produced(
    cause: &EventMeta,
    source: &str,
    event: &dyn DynIntegrationEvent,
) -> Result<NewIntegrationRow, serde_json::Error> {
    Ok(NewIntegrationRow {
        key: event.key(),
        event: StoredEvent {
            meta: cause.caused(source),
            kind: EventKind::Integration,
            name: event.contract().to_owned(),
            version: event.version(),
            payload: Arc::new(event.to_json()?),
            typed: None,
        },
    })
}

/// An integration event of the outbox, with its ordering key, as it goes on the wire. The
/// payload is moved, not copied, unless the store keeps it too.
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
        data: Arc::unwrap_or_clone(payload),
    }
}

/// A message received from the wire, as it is recorded for the inbound handlers: with the typed
/// event if it was decoded.
pub(crate) fn received(
    message: &Message,
    typed: Option<Arc<dyn Any + Send + Sync>>,
) -> StoredEvent {
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
        payload: Arc::new(message.data.clone()),
        typed,
    }
}
