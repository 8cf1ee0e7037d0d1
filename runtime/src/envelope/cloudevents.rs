//! A [`Message`] as a CloudEvents 1.0 event: its attributes, and the JSON event format that the
//! structured mode of every protocol binding carries.
//!
//! | attribute | from the message | CloudEvents |
//! |---|---|---|
//! | `specversion` | always `1.0` | required |
//! | `id` | the event id (UUIDv7), also the broker's dedupe id | required |
//! | `source` | the bounded context that published it | required |
//! | `type` | the contract's name | required |
//! | `time` | when the event occurred, RFC 3339 | optional |
//! | `datacontenttype` | always `application/json` | optional |
//! | `dataversion` | the contract's version, an integer from 1 | extension |
//! | `partitionkey` | the ordering key, if the contract has one | partitioning extension |
//! | `correlationid` | the id shared by every event of one use case | extension |
//! | `causationid` | the id of the event whose handling published this one | extension |
//! | `traceparent` | the W3C trace context where the chain started | distributed tracing extension |
//!
//! The event itself is the `data`, as JSON.
//!
//! Every broker transport reads and writes messages through this module, so that one event looks
//! the same on every broker; a transport of your own can too. A binding in structured mode
//! carries [`to_structured`]'s bytes; one in binary mode carries [`to_binary`]'s headers (each
//! attribute under the binding's prefix, such as `ce-` or `ce_`, but `datacontenttype`, which
//! travels as the protocol's content type) and the data as the body, and reads them back with
//! [`from_binary`].
//!
//! ```
//! use tidings::transport::cloudevents;
//!
//! let bytes = br#"{"specversion":"1.0","id":"0190d6d8-6a3e-7c4e-9b1a-2f1e5d6c7b8a",
//!     "source":"catalog","type":"catalog.product-updated","dataversion":1,
//!     "data":{"product_id":"p-1"}}"#;
//! let message = cloudevents::from_structured(bytes)?;
//! assert_eq!(message.contract, "catalog.product-updated");
//! assert_eq!(cloudevents::from_structured(&cloudevents::to_structured(&message))?, message);
//! # Ok::<(), cloudevents::CloudEventError>(())
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::envelope::Payload;
use crate::transport::Message;

/// The content type of an event in the JSON event format (structured mode).
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The content type of the data: the event, as JSON.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// The CloudEvents version tidings speaks.
const SPEC_VERSION: &str = "1.0";

/// The prefix of an attribute's header in binary mode on RabbitMQ (AMQP 0-9-1), as the
/// CloudEvents SDKs' RabbitMQ bindings read it: `ce-id`, `ce-type`, ...
pub const AMQP_HEADER_PREFIX: &str = "ce-";

/// The prefix of an attribute's Pub/Sub message attribute in binary mode, as the CloudEvents
/// Pub/Sub protocol binding has it: `ce-id`, `ce-type`, ... (`datacontenttype` travels as the
/// `Content-Type` attribute).
pub const PUBSUB_ATTRIBUTE_PREFIX: &str = "ce-";

/// The prefix of an attribute's header in binary mode on Kafka, as the CloudEvents Kafka
/// binding has it: `ce_id`, `ce_type`, ...
pub const KAFKA_HEADER_PREFIX: &str = "ce_";

/// A CloudEvents attribute that tidings writes: what [`attributes`] gives, described for
/// documents such as the catalog's AsyncAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute {
    /// Its CloudEvents name.
    pub name: &'static str,
    /// Whether every event has it (others only when there is a value).
    pub always: bool,
    /// Whether it is a number in the JSON event format (its text in a header).
    pub integer: bool,
    /// The JSON Schema `format` of its text, if it has one (`uuid`, `date-time`).
    pub format: Option<&'static str>,
    /// What it holds.
    pub description: &'static str,
}

/// Every attribute tidings writes, in the order of [`attributes`].
pub const ATTRIBUTES: &[Attribute] = &[
    Attribute {
        name: "specversion",
        always: true,
        integer: false,
        format: None,
        description: "The CloudEvents version: `1.0`.",
    },
    Attribute {
        name: "id",
        always: true,
        integer: false,
        format: Some("uuid"),
        description: "The event id (UUIDv7), also the broker's dedupe id.",
    },
    Attribute {
        name: "source",
        always: true,
        integer: false,
        format: None,
        description: "The bounded context that published the event.",
    },
    Attribute {
        name: "type",
        always: true,
        integer: false,
        format: None,
        description: "The contract's name.",
    },
    Attribute {
        name: "time",
        always: true,
        integer: false,
        format: Some("date-time"),
        description: "When the event occurred, RFC 3339.",
    },
    Attribute {
        name: "datacontenttype",
        always: true,
        integer: false,
        format: None,
        description: "The data's content type: `application/json`.",
    },
    Attribute {
        name: "dataversion",
        always: true,
        integer: true,
        format: None,
        description: "The contract's version, a whole number from 1.",
    },
    Attribute {
        name: "correlationid",
        always: true,
        integer: false,
        format: Some("uuid"),
        description: "The id shared by every event of one use case.",
    },
    Attribute {
        name: "partitionkey",
        always: false,
        integer: false,
        format: None,
        description: "The ordering key, if the contract has one.",
    },
    Attribute {
        name: "causationid",
        always: false,
        integer: false,
        format: Some("uuid"),
        description: "The id of the event whose handling published this one.",
    },
    Attribute {
        name: "traceparent",
        always: false,
        integer: false,
        format: None,
        description: "The W3C trace context where the chain of events started.",
    },
];

/// Why bytes or attributes are not a CloudEvent that tidings can read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudEventError {
    /// The bytes are not a JSON object.
    #[error("the message is not a CloudEvent in the JSON event format")]
    NotJson(#[source] serde_json::Error),
    /// In binary mode: the body, the event's data, is not JSON.
    #[error("the CloudEvent's data is not JSON")]
    DataNotJson(#[source] serde_json::Error),
    /// A required attribute, or one tidings needs, is missing.
    #[error("the CloudEvent has no `{0}` attribute")]
    Missing(&'static str),
    /// An attribute's value is not what it must be.
    #[error("the CloudEvent's `{name}` attribute is {problem}")]
    Invalid {
        /// The attribute.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// The event's attributes, by CloudEvents name, as text: what a binding in binary mode puts in
/// headers (with its prefix, such as `ce-`). The data is not among them.
pub fn attributes(message: &Message) -> Vec<(&'static str, String)> {
    let mut attributes = Vec::with_capacity(ATTRIBUTES.len());
    each_attribute(message, |name, value| {
        let text = match value {
            AttributeValue::Text(text) => text.to_owned(),
            AttributeValue::Id(id) => id.to_string(),
            AttributeValue::Time(time) => time.to_rfc3339(),
            AttributeValue::Integer(integer) => integer.to_string(),
        };
        attributes.push((name, text));
    });
    attributes
}

/// An attribute's value, as the message holds it.
enum AttributeValue<'a> {
    Text(&'a str),
    Id(Uuid),
    Time(DateTime<Utc>),
    Integer(u32),
}

/// Calls `f` with each attribute of `message` that has a value, in the order of [`ATTRIBUTES`]:
/// the one list of what a message carries, for both modes.
fn each_attribute<'a>(message: &'a Message, mut f: impl FnMut(&'static str, AttributeValue<'a>)) {
    f("specversion", AttributeValue::Text(SPEC_VERSION));
    f("id", AttributeValue::Id(message.id));
    f("source", AttributeValue::Text(&message.source));
    f("type", AttributeValue::Text(&message.contract));
    f("time", AttributeValue::Time(message.time));
    f("datacontenttype", AttributeValue::Text(DATA_CONTENT_TYPE));
    f("dataversion", AttributeValue::Integer(message.version));
    f("correlationid", AttributeValue::Id(message.correlation_id));
    if let Some(key) = &message.key {
        f("partitionkey", AttributeValue::Text(key));
    }
    if let Some(causation_id) = message.causation_id {
        f("causationid", AttributeValue::Id(causation_id));
    }
    if let Some(traceparent) = &message.traceparent {
        f("traceparent", AttributeValue::Text(traceparent));
    }
}

/// The message whose attributes `attribute` gives (by CloudEvents name, as text) and whose data
/// is `data`: what a binding in binary mode reads.
pub fn from_attributes(
    attribute: impl Fn(&str) -> Option<String>,
    data: Payload,
) -> Result<Message, CloudEventError> {
    let required = |name: &'static str| attribute(name).ok_or(CloudEventError::Missing(name));
    let spec_version = required("specversion")?;
    if spec_version != SPEC_VERSION {
        return Err(invalid(
            "specversion",
            format!("`{spec_version}`, not `1.0`"),
        ));
    }
    if let Some(content_type) = attribute("datacontenttype")
        && !is_json(&content_type)
    {
        return Err(invalid(
            "datacontenttype",
            format!("`{content_type}`, not JSON"),
        ));
    }
    let id = uuid("id", &required("id")?)?;
    let time = match attribute("time") {
        Some(time) => DateTime::parse_from_rfc3339(&time)
            .map_err(|error| invalid("time", format!("`{time}`, not RFC 3339: {error}")))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    // An event that no tidings app published starts its own correlation.
    let correlation_id = match attribute("correlationid") {
        Some(correlation_id) => uuid("correlationid", &correlation_id)?,
        None => id,
    };
    Ok(Message {
        id,
        source: required("source")?,
        contract: required("type")?,
        version: version(attribute("dataversion"))?,
        key: attribute("partitionkey"),
        time,
        correlation_id,
        causation_id: attribute("causationid")
            .map(|causation_id| uuid("causationid", &causation_id))
            .transpose()?,
        traceparent: attribute("traceparent"),
        data,
    })
}

/// A message as a binding in binary mode carries it: from [`to_binary`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Binary {
    /// The protocol's content type: `datacontenttype`, always [`DATA_CONTENT_TYPE`].
    pub content_type: &'static str,
    /// Every other attribute, its name after the binding's prefix, its value as text.
    pub headers: Vec<(String, String)>,
    /// The body: the data, as JSON.
    pub body: Vec<u8>,
}

/// The message as a binding in binary mode carries it, with headers named `prefix` followed by
/// the attribute's name.
///
/// ```
/// use tidings::transport::cloudevents;
/// # let message = cloudevents::from_structured(br#"{"specversion":"1.0",
/// #     "id":"0190d6d8-6a3e-7c4e-9b1a-2f1e5d6c7b8a","source":"catalog",
/// #     "type":"catalog.product-updated","data":{"product_id":"p-1"}}"#)?;
/// let binary = cloudevents::to_binary(&message, "ce-");
/// assert_eq!(binary.content_type, "application/json");
/// assert!(binary.headers.contains(&("ce-type".to_owned(), "catalog.product-updated".to_owned())));
/// let header = |name: &str| {
///     binary.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.clone())
/// };
/// let read = cloudevents::from_binary("ce-", header, Some(binary.content_type), &binary.body)?;
/// assert_eq!(read, message);
/// # Ok::<(), cloudevents::CloudEventError>(())
/// ```
pub fn to_binary(message: &Message, prefix: &str) -> Binary {
    let headers = attributes(message)
        .into_iter()
        .filter(|(name, _)| *name != "datacontenttype")
        .map(|(name, value)| (format!("{prefix}{name}"), value))
        .collect();
    Binary {
        content_type: DATA_CONTENT_TYPE,
        headers,
        body: message.data.as_bytes().to_vec(),
    }
}

/// The message a binding in binary mode carried: `header` gives a header's value by its full
/// name (the attributes are read under `prefix`), `content_type` is the protocol's content type
/// (`datacontenttype`) and `body` the data, JSON.
pub fn from_binary(
    prefix: &str,
    header: impl Fn(&str) -> Option<String>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Message, CloudEventError> {
    let attribute = |name: &str| match name {
        "datacontenttype" => content_type.map(str::to_owned),
        name => header(&format!("{prefix}{name}")),
    };
    // The attributes first: a content type that is not JSON says more than the body does.
    if let Some(content_type) = content_type
        && !is_json(content_type)
    {
        return Err(invalid(
            "datacontenttype",
            format!("`{content_type}`, not JSON"),
        ));
    }
    let data = Payload::from_slice(body).map_err(CloudEventError::DataNotJson)?;
    from_attributes(attribute, data)
}

/// Whether a message of protocol content type `content_type` is in structured mode: an event
/// in the JSON event format (`application/cloudevents+json`, with parameters or not).
pub fn is_structured(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|content_type| {
        content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/cloudevents")
    })
}

/// The message as a CloudEvent in the JSON event format: the body of structured mode.
///
/// Written straight from the message into one buffer: each attribute as a JSON member (the
/// version a number, as the CloudEvents type system has integers), then the data, copied as
/// the JSON text it is.
pub fn to_structured(message: &Message) -> Vec<u8> {
    let data = message.data.get();
    // The attributes take about 400 bytes with a traceparent, a key and a long source.
    let mut out = Vec::with_capacity(data.len() + 512);
    out.push(b'{');
    each_attribute(message, |name, value| {
        // The names are plain lower-case ASCII.
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            AttributeValue::Text(text) => json_string(&mut out, text),
            AttributeValue::Id(id) => {
                out.push(b'"');
                let mut buffer = Uuid::encode_buffer();
                out.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
                out.push(b'"');
            }
            AttributeValue::Time(time) => {
                out.push(b'"');
                write_time(&mut out, time);
                out.push(b'"');
            }
            AttributeValue::Integer(integer) => write_to(&mut out, format_args!("{integer}")),
        }
        out.push(b',');
    });
    out.extend_from_slice(b"\"data\":");
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
    out
}

/// Appends `time` to `out` as [`DateTime::to_rfc3339`] writes it
/// (`2026-12-03T13:35:51.123456789+00:00`, the fraction of a second in none, 3, 6 or 9 digits,
/// as few as it takes), without a string of its own: it is written once per message sent.
fn write_time(out: &mut Vec<u8>, time: DateTime<Utc>) {
    let nanos = time.nanosecond();
    let year = u32::try_from(time.year()).ok().filter(|year| *year <= 9999);
    let (Some(year), true) = (year, nanos < 1_000_000_000) else {
        // A year of other than four digits, or a leap second: rare enough for chrono's own.
        out.extend_from_slice(time.to_rfc3339().as_bytes());
        return;
    };
    // Digit by digit: `format_args!` with widths costs more than the rest of the event.
    push_digits(out, year, 4);
    for (separator, value) in [
        (b'-', time.month()),
        (b'-', time.day()),
        (b'T', time.hour()),
        (b':', time.minute()),
        (b':', time.second()),
    ] {
        out.push(separator);
        push_digits(out, value, 2);
    }
    match nanos {
        0 => {}
        n if n.is_multiple_of(1_000_000) => {
            out.push(b'.');
            push_digits(out, n / 1_000_000, 3);
        }
        n if n.is_multiple_of(1_000) => {
            out.push(b'.');
            push_digits(out, n / 1_000, 6);
        }
        n => {
            out.push(b'.');
            push_digits(out, n, 9);
        }
    }
    out.extend_from_slice(b"+00:00");
}

/// Appends the last `width` decimal digits of `value`, with leading zeros.
fn push_digits(out: &mut Vec<u8>, value: u32, width: u32) {
    for power in (0..width).rev() {
        let digit = value / 10u32.pow(power) % 10;
        out.push(b"0123456789"[digit as usize]);
    }
}

/// Appends `text` to `out`, formatted in place.
fn write_to(out: &mut Vec<u8>, text: std::fmt::Arguments<'_>) {
    if let Err(error) = out.write_fmt(text) {
        unreachable!("text is written into a buffer: {error}");
    }
}

/// Appends `text` to `out` as a JSON string.
fn json_string(out: &mut Vec<u8>, text: &str) {
    let plain = text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if let Err(error) = serde_json::to_writer(&mut *out, text) {
        unreachable!("a string is written into a buffer as JSON: {error}");
    }
}

/// The message in `bytes`, a CloudEvent in the JSON event format.
pub fn from_structured(bytes: &[u8]) -> Result<Message, CloudEventError> {
    // Each member as the JSON text it is: the data is kept as it is, never parsed into a tree.
    let mut event: BTreeMap<String, &RawValue> =
        serde_json::from_slice(bytes).map_err(CloudEventError::NotJson)?;
    if event.contains_key("data_base64") {
        return Err(invalid(
            "data_base64",
            "binary data, and tidings reads JSON data".to_owned(),
        ));
    }
    let data = match event.remove("data") {
        Some(data) => Payload::from_raw(data.to_owned()),
        None => Payload::from(serde_json::Value::Null),
    };
    let attribute = |name: &str| match event.get(name)?.get() {
        "null" => None,
        text if text.starts_with('"') => serde_json::from_str::<String>(text).ok(),
        other => Some(other.to_owned()),
    };
    from_attributes(attribute, data)
}

/// Whether `content_type` is JSON: `application/json`, `…+json`, with parameters or not.
fn is_json(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case(DATA_CONTENT_TYPE)
        || media_type.to_ascii_lowercase().ends_with("+json")
}

/// The UUID in attribute `name`.
fn uuid(name: &'static str, text: &str) -> Result<Uuid, CloudEventError> {
    Uuid::parse_str(text).map_err(|error| invalid(name, format!("`{text}`, not a UUID: {error}")))
}

/// The contract's version in `dataversion`: 1 when the event does not say.
fn version(text: Option<String>) -> Result<u32, CloudEventError> {
    let Some(text) = text else { return Ok(1) };
    match text.parse::<u32>() {
        Ok(version) if version >= 1 => Ok(version),
        _ => Err(invalid(
            "dataversion",
            format!("`{text}`, not a whole number from 1"),
        )),
    }
}

fn invalid(name: &'static str, problem: String) -> CloudEventError {
    CloudEventError::Invalid { name, problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        let id = Uuid::now_v7();
        Message {
            id,
            source: "catalog".to_owned(),
            contract: "catalog.product-updated".to_owned(),
            version: 2,
            key: Some("p-1".to_owned()),
            time: Utc::now(),
            correlation_id: id,
            causation_id: Some(Uuid::now_v7()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
            data: serde_json::json!({ "product_id": "p-1", "price_cents": 1999 }).into(),
        }
    }

    #[test]
    fn times_are_written_as_chrono_writes_rfc_3339() {
        // (year, month, day, hour, minute, second, nanoseconds); a leap second's are 1e9 and more.
        let times = [
            (2026, 12, 3, 13, 35, 51, 0),
            (2026, 12, 3, 13, 35, 51, 120_000_000),
            (987, 1, 9, 3, 5, 1, 450_000),
            (2026, 12, 3, 13, 35, 51, 7),
            (2026, 12, 3, 13, 35, 51, 999_999_999),
            (12026, 12, 3, 13, 35, 51, 500_000_000),
            (-44, 3, 15, 12, 0, 0, 0),
            (2016, 12, 31, 23, 59, 59, 1_250_000_000),
        ];
        for (year, month, day, hour, minute, second, nanos) in times {
            let time = chrono::NaiveDate::from_ymd_opt(year, month, day)
                .and_then(|date| date.and_hms_nano_opt(hour, minute, second, nanos))
                .map(|time| time.and_utc())
                .unwrap_or_else(|| panic!("{year}-{month}-{day}: not a time"));
            let mut written = Vec::new();
            write_time(&mut written, time);
            assert_eq!(String::from_utf8(written).unwrap(), time.to_rfc3339());
        }
    }

    #[test]
    fn the_attribute_table_lists_what_a_message_carries_in_order() {
        let written: Vec<&str> = attributes(&message())
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let listed: Vec<&str> = ATTRIBUTES.iter().map(|a| a.name).collect();
        assert_eq!(written, listed);
    }

    #[test]
    fn structured_mode_round_trips() {
        let sent = message();
        let event: serde_json::Value = serde_json::from_slice(&to_structured(&sent)).unwrap();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "catalog.product-updated");
        assert_eq!(event["dataversion"], 2);
        assert_eq!(event["data"]["price_cents"], 1999);
        let received = from_structured(&to_structured(&sent)).unwrap();
        assert_eq!(received.id, sent.id);
        assert_eq!(
            received.time.timestamp_micros(),
            sent.time.timestamp_micros()
        );
        assert_eq!(
            Message {
                time: sent.time,
                ..received
            },
            sent
        );
    }

    #[test]
    fn structured_mode_writes_every_attribute_as_json_text() {
        let sent = Message {
            source: "https://erp.example/\"prices\"\n\u{e9}".to_owned(),
            key: Some("back\\slash".to_owned()),
            ..message()
        };
        let event: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&to_structured(&sent)).unwrap();
        for (name, text) in attributes(&sent) {
            match name {
                "dataversion" => assert_eq!(event[name], sent.version),
                _ => assert_eq!(event[name], text.as_str(), "{name}"),
            }
        }
        assert_eq!(event.len(), attributes(&sent).len() + 1);
        assert_eq!(event["data"], sent.data);
        assert_eq!(
            from_structured(&to_structured(&sent)).unwrap().source,
            sent.source
        );
    }

    #[test]
    fn binary_mode_round_trips() {
        let sent = message();
        let binary = to_binary(&sent, "ce_");
        assert_eq!(binary.content_type, DATA_CONTENT_TYPE);
        let names: Vec<&str> = binary.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"ce_id") && names.contains(&"ce_dataversion"));
        assert!(
            !names.contains(&"ce_datacontenttype"),
            "it is the content type"
        );
        let header = |name: &str| {
            binary
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let received = from_binary("ce_", header, Some(binary.content_type), &binary.body).unwrap();
        assert_eq!(received.data, sent.data);
        assert_eq!(
            Message {
                time: sent.time,
                ..received
            },
            sent
        );
        let xml = from_binary("ce_", header, Some("application/xml"), b"<a/>");
        assert!(xml.unwrap_err().to_string().contains("`datacontenttype`"));
        let garbled = from_binary("ce_", header, None, b"{not json");
        assert!(matches!(garbled, Err(CloudEventError::DataNotJson(_))));
        assert!(is_structured(Some(
            "application/cloudevents+json; charset=utf-8"
        )));
        assert!(!is_structured(Some("application/json")) && !is_structured(None));
    }

    #[test]
    fn an_event_of_another_publisher_reads_with_defaults() {
        let id = Uuid::now_v7();
        let event = serde_json::json!({
            "specversion": "1.0", "id": id.to_string(), "source": "https://erp.example/prices",
            "type": "catalog.product-updated", "data": { "product_id": "p-9" }
        });
        let message = from_structured(event.to_string().as_bytes()).unwrap();
        assert_eq!(message.version, 1);
        assert_eq!(message.correlation_id, id, "a new correlation starts");
        assert_eq!(message.key, None);
    }

    #[test]
    fn what_is_not_a_readable_event_says_why() {
        let missing = from_structured(br#"{"specversion":"1.0","source":"x","type":"t"}"#);
        assert_eq!(
            missing.unwrap_err().to_string(),
            "the CloudEvent has no `id` attribute"
        );
        let version = from_structured(br#"{"specversion":"0.3","id":"x","source":"x","type":"t"}"#);
        assert!(version.unwrap_err().to_string().contains("`specversion`"));
        assert!(matches!(
            from_structured(b"not json"),
            Err(CloudEventError::NotJson(_))
        ));
        let xml = serde_json::json!({
            "specversion": "1.0", "id": Uuid::now_v7().to_string(), "source": "x", "type": "t",
            "datacontenttype": "application/xml", "data": "<a/>"
        });
        assert!(from_structured(xml.to_string().as_bytes()).is_err());
    }
}
