//! Records for the scenarios: events, rows and messages with fresh envelopes.

use chrono::Utc;
use uuid::Uuid;

use crate::event::EventKind;
use crate::meta::EventMeta;
use crate::store::{NewIntegrationRow, StoredEvent};
use crate::transport::Message;

/// A domain event named `name`, with a fresh envelope from context `ctx`, JSON `payload` and
/// no typed value (as a store gives it back).
pub fn domain_event(name: &str, payload: serde_json::Value) -> StoredEvent {
    StoredEvent {
        meta: EventMeta::new("ctx"),
        kind: EventKind::Domain,
        name: name.to_owned(),
        version: 1,
        payload: payload.into(),
        typed: None,
    }
}

/// An integration event of contract `contract` at `version`, with a fresh envelope from
/// context `ctx` that carries a causation and a trace context, JSON `payload` and no typed
/// value.
pub fn integration_event(contract: &str, version: u32, payload: serde_json::Value) -> StoredEvent {
    let cause = EventMeta::new("ctx");
    let mut meta = cause.caused("ctx");
    meta.traceparent = Some(format!(
        "00-{}-{}-01",
        Uuid::now_v7().simple(),
        &Uuid::now_v7().simple().to_string()[16..]
    ));
    StoredEvent {
        meta,
        kind: EventKind::Integration,
        name: contract.to_owned(),
        version,
        payload: payload.into(),
        typed: None,
    }
}

/// An integration row for the outbox: an event of contract `contract` version 1 with ordering
/// key `key`, and JSON `payload`.
pub fn integration_row(
    contract: &str,
    key: Option<&str>,
    payload: serde_json::Value,
) -> NewIntegrationRow {
    NewIntegrationRow {
        event: integration_event(contract, 1, payload),
        key: key.map(str::to_owned),
    }
}

/// A message of contract `contract` at `version` with ordering key `key` and JSON `data`, as
/// the relay publishes it: a fresh event id, from context `ctx`.
pub fn message(
    contract: &str,
    version: u32,
    key: Option<&str>,
    data: serde_json::Value,
) -> Message {
    let meta = EventMeta::new("ctx").caused("ctx");
    Message {
        id: meta.id,
        source: meta.source,
        contract: contract.to_owned(),
        version,
        key: key.map(str::to_owned),
        time: Utc::now(),
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        traceparent: None,
        data: data.into(),
    }
}
