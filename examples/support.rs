//! What the examples print with: short ids and prices.

use std::fmt::Display;

use tidings::EventMeta;

/// The last 8 hex digits of an id. (A UUIDv7 starts with its timestamp: the first digits are
/// the same for every event of a run.)
pub(crate) fn short(id: impl Display) -> String {
    let id = id.to_string();
    id[id.len().saturating_sub(8)..].to_owned()
}

/// `(event …, correlation …)`, the end of a handler's line.
pub(crate) fn ids(meta: &EventMeta) -> String {
    let (id, correlation) = (short(meta.id), short(meta.correlation_id));
    format!("(event {id}, correlation {correlation})")
}

/// Cents as dollars.
pub(crate) fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}
