//! [`Payload`]: an event's data as JSON text, the one form it has between the typed event and
//! the typed event again.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// An event's data as JSON text: what a store keeps, what the wire carries, and what a handler's
/// event is decoded from.
///
/// It is written once, when the event is published, and parsed once, by the handler that needs
/// the typed event: between the two it is moved and shared as text, never built into a tree of
/// [`serde_json::Value`]s. A clone shares the text.
///
/// The text is always valid JSON: every constructor checks it or writes it. Two payloads are
/// equal when they hold the same JSON value, whatever the spacing and the order of object keys
/// (a database may give back `{"b": 1, "a": 2}` for `{"a":2,"b":1}`).
///
/// ```
/// use tidings::store::Payload;
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct ParcelScanned { parcel: String, hub: u32 }
///
/// let scanned = ParcelScanned { parcel: "p-1".into(), hub: 7 };
/// let payload = Payload::of(&scanned)?;
/// assert_eq!(payload.get(), r#"{"parcel":"p-1","hub":7}"#);
/// assert_eq!(payload.decode::<ParcelScanned>()?, scanned);
///
/// // Text read back from elsewhere is checked to be JSON.
/// let stored = Payload::from_json(r#"{ "hub": 7, "parcel": "p-1" }"#.to_owned())?;
/// assert_eq!(stored, payload);
/// assert!(Payload::from_json("{not json".to_owned()).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct Payload(Arc<RawValue>);

impl Payload {
    /// `value` written as JSON.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self::from_raw)
    }

    /// The JSON in `text`, checked to be JSON.
    pub fn from_json(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self::from_raw)
    }

    /// The JSON in `bytes`, checked to be JSON (and so UTF-8).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<&RawValue>(bytes).map(|raw| Payload(Arc::from(raw.to_owned())))
    }

    /// JSON text, checked already, held as it is.
    pub(crate) fn from_raw(raw: Box<RawValue>) -> Self {
        Payload(Arc::from(raw))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The JSON text, as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.get().as_bytes()
    }

    /// The JSON as raw JSON, to embed as it is in a document that `serde_json` writes.
    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// The data as a `T`, such as the event's type, or a [`serde_json::Value`] to look into.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        Payload::from(&value)
    }
}

impl From<&serde_json::Value> for Payload {
    fn from(value: &serde_json::Value) -> Self {
        // A `Value` is JSON, and its `Display` writes it.
        match RawValue::from_string(value.to_string()) {
            Ok(raw) => Payload::from_raw(raw),
            Err(_) => unreachable!("a `serde_json::Value` writes valid JSON"),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        if self.get() == other.get() {
            return true;
        }
        match (
            self.decode::<serde_json::Value>(),
            other.decode::<serde_json::Value>(),
        ) {
            (Ok(this), Ok(that)) => this == that,
            _ => false,
        }
    }
}

impl Eq for Payload {}

/// Equal when the payload holds that value.
impl PartialEq<serde_json::Value> for Payload {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.decode::<serde_json::Value>()
            .is_ok_and(|value| value == *other)
    }
}

/// Equal when the payload holds this value.
impl PartialEq<Payload> for serde_json::Value {
    fn eq(&self, other: &Payload) -> bool {
        other == self
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({})", self.get())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// Written as the JSON it holds, not as a string.
impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Read from any JSON value, kept as its text.
impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Payload::from_raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_payloads_hold_the_same_value_whatever_the_spacing() {
        let written = Payload::of(&serde_json::json!({ "a": 2, "b": [1, 2] })).unwrap();
        let reread = Payload::from_json(r#"{ "b": [1, 2], "a": 2 }"#.to_owned()).unwrap();
        assert_eq!(written, reread);
        assert_ne!(written, Payload::from(serde_json::json!({ "a": 3 })));
        assert_eq!(written, serde_json::json!({ "b": [1, 2], "a": 2 }));
        assert_ne!(serde_json::json!({ "a": 2 }), written);
    }

    #[test]
    fn it_is_written_as_the_json_it_holds() {
        let payload = Payload::from(serde_json::json!({ "parcel": "p-1" }));
        let outer = serde_json::json!({ "data": payload });
        assert_eq!(outer.to_string(), r#"{"data":{"parcel":"p-1"}}"#);
        let back: Payload = serde_json::from_str(r#" {"parcel": "p-1"} "#).unwrap();
        assert_eq!(back, payload);
        assert!(Payload::from_slice(b"[1,").is_err());
        assert_eq!(Payload::from_slice(b"[1, 2]").unwrap().get(), "[1, 2]");
    }
}
