//! What tidings knows about one occurrence of an event.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::timestamp::context::ContextV7;
use uuid::{Timestamp, Uuid};

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
        let (id, occurred_at) = new_id();
        EventMeta {
            id,
            occurred_at,
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

/// The clock sequence of event ids: the ids of one process sort in the order they were made,
/// as [`Uuid::now_v7`]'s do.
static IDS: Mutex<AssertUnwindSafe<ContextV7>> = Mutex::new(AssertUnwindSafe(ContextV7::new()));

/// A new UUIDv7 and the moment it was made, which its timestamp holds: one reading of the clock
/// for both.
fn new_id() -> (Uuid, DateTime<Utc>) {
    let timestamp = Timestamp::now(&IDS);
    let (seconds, nanos) = timestamp.to_unix();
    // The clock is within chrono's range, for the next 260,000 years.
    let at = i64::try_from(seconds)
        .ok()
        .and_then(|seconds| DateTime::from_timestamp(seconds, nanos))
        .unwrap_or_else(Utc::now);
    (Uuid::new_v7(timestamp), at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_holds_the_millisecond_the_event_occurred_in() {
        let mut last = EventMeta::new("catalog");
        for _ in 0..100_000 {
            let meta = EventMeta::new("catalog");
            let (seconds, nanos) = meta
                .id
                .get_timestamp()
                .expect("a UUIDv7 holds its timestamp")
                .to_unix();
            let millis = i64::try_from(seconds * 1_000 + u64::from(nanos / 1_000_000))
                .expect("the clock is within i64 milliseconds");
            assert_eq!(millis, meta.occurred_at.timestamp_millis());
            assert!(meta.id > last.id, "ids sort in the order they were made");
            assert!(meta.occurred_at >= last.occurred_at);
            last = meta;
        }
    }
}
