//! What tidings knows about one occurrence of an event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope of one event: its id, when it happened, and where it comes from.
///
/// A `#[handles]` function receives it by taking `EventMeta` or `&EventMeta` as a parameter.
///
/// - `correlation_id` is shared by every event that descends from one use case, across contexts;
/// - `causation_id` is the id of the event whose handling published this one (`None` for a
///   use case's own events);
/// - `traceparent` is the W3C trace context under which the event was published.
///
/// ```
/// use tidings::EventMeta;
///
/// let first = EventMeta::new("catalog");
/// let next = first.caused("search");
/// assert_eq!(next.correlation_id, first.correlation_id);
/// assert_eq!(next.causation_id, Some(first.id));
/// assert!(next.id > first.id, "ids are UUIDv7: they sort by time");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    /// The event's id (UUIDv7): unique, time-ordered, and the broker's dedupe id.
    pub id: Uuid,
    /// When the event was published.
    pub occurred_at: DateTime<Utc>,
    /// Shared by every event that descends from the same use case.
    pub correlation_id: Uuid,
    /// The event that caused this one, if it was published while handling another event.
    pub causation_id: Option<Uuid>,
    /// W3C `traceparent` of the span that published the event, if any.
    pub traceparent: Option<String>,
    /// The bounded context that published the event.
    pub source: String,
}

impl EventMeta {
    /// The envelope of an event that a use case of context `source` publishes now: a new id,
    /// which also starts a new correlation.
    pub fn new(source: impl Into<String>) -> Self {
        let id = Uuid::now_v7();
        EventMeta {
            id,
            occurred_at: Utc::now(),
            correlation_id: id,
            causation_id: None,
            traceparent: None,
            source: source.into(),
        }
    }

    /// The envelope of an event published by context `source` while handling this one: same
    /// correlation, caused by this event.
    pub fn caused(&self, source: impl Into<String>) -> Self {
        EventMeta {
            correlation_id: self.correlation_id,
            causation_id: Some(self.id),
            traceparent: self.traceparent.clone(),
            ..EventMeta::new(source)
        }
    }
}
