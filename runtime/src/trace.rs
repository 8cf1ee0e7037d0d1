//! The W3C trace context (`traceparent`) an event carries from hop to hop, decided in one place.
//!
//! Without the `opentelemetry` feature, a chain of events keeps the traceparent of the use case
//! that started it: one trace id per chain, in the store, on the wire and in the other service.
//! With it, and an OpenTelemetry layer in the `tracing` subscriber, each hop records the context
//! of its own span, and the next hop's span continues it: the publish span (a child of the
//! caller's span), then dispatch, handler or translation, relay, consume, and the other
//! service's dispatch and handlers, are one trace with a parent for every span.
//!
//! Every hop asks here: [`follow`] before its span is entered, to continue what it received;
//! [`of`] for the traceparent to record with what it produces.

use tracing::Span;

use crate::transport::Message;

/// The traceparent to record with what `span` produces: the span's own context when
/// OpenTelemetry traces it, else `inherited` (the chain's), else a new trace's.
pub(crate) fn of(span: &Span, inherited: Option<&str>) -> String {
    traced(span)
        .or_else(|| inherited.map(str::to_owned))
        .unwrap_or_else(new_trace)
}

/// Makes `span` continue the trace of `traceparent`, when OpenTelemetry traces it. Call it
/// before the span is entered or asked for its context: an OpenTelemetry span's parent is fixed
/// once it starts.
pub(crate) fn follow(span: &Span, traceparent: Option<&str>) {
    #[cfg(feature = "opentelemetry")]
    if let Some(parent) = traceparent.and_then(otel::parse) {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        // Without an OpenTelemetry layer there is nothing to continue: not an error.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, traceparent);
}

/// The traceparent a transport puts in its protocol's own `traceparent` header for this hop:
/// the current span's (the relay's, as the relay publishes) when OpenTelemetry traces it, else
/// the message's, where its chain started. A consumer continues from it, and reads the
/// CloudEvents attribute only when the header is missing.
///
/// ```
/// use tidings::transport::{hop_traceparent, Message};
///
/// let message = Message {
///     id: uuid::Uuid::now_v7(),
///     source: "catalog".into(),
///     contract: "catalog.product-updated".into(),
///     version: 1,
///     key: None,
///     time: chrono::Utc::now(),
///     correlation_id: uuid::Uuid::now_v7(),
///     causation_id: None,
///     traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
///     data: serde_json::json!({}).into(),
/// };
/// // No OpenTelemetry layer here: the hop carries the message's own.
/// assert_eq!(hop_traceparent(&message), message.traceparent);
/// ```
pub fn hop_traceparent(message: &Message) -> Option<String> {
    traced(&Span::current()).or_else(|| message.traceparent.clone())
}

/// The context of `span` as a traceparent, if OpenTelemetry traces it.
fn traced(span: &Span) -> Option<String> {
    #[cfg(feature = "opentelemetry")]
    return otel::traceparent(span);
    #[cfg(not(feature = "opentelemetry"))]
    {
        let _ = span;
        None
    }
}

/// A traceparent for a trace that starts here: random trace and parent ids, neither all zeros,
/// sampled.
fn new_trace() -> String {
    // Written digit by digit into one buffer of the traceparent's length: `format!` would grow
    // its string twice and go through the formatting machinery for each part.
    let mut traceparent = [0u8; 55];
    traceparent[..3].copy_from_slice(b"00-");
    hex(&mut traceparent[3..35], fastrand::u128(1..));
    traceparent[35] = b'-';
    hex(&mut traceparent[36..52], u128::from(fastrand::u64(1..)));
    traceparent[52..].copy_from_slice(b"-01");
    // ASCII, so valid UTF-8: the check is one pass over the bytes, where collecting `char`s
    // encodes them one at a time.
    String::from_utf8_lossy(&traceparent).into_owned()
}

/// Writes the `out.len()` low hex digits of `value` into `out`, lowercase, most significant
/// first.
fn hex(out: &mut [u8], mut value: u128) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The OpenTelemetry context of `span`, as a W3C traceparent, if it is traced.
    pub(super) fn traceparent(span: &Span) -> Option<String> {
        let context = span.context();
        let span = context.span();
        let span = span.span_context();
        span.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                span.trace_id(),
                span.span_id(),
                span.trace_flags() & TraceFlags::SAMPLED
            )
        })
    }

    /// A W3C traceparent (version 00) as a remote span context; `None` if it is malformed.
    pub(super) fn parse(traceparent: &str) -> Option<SpanContext> {
        let mut parts = traceparent.trim().split('-');
        let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let lowercase = |hex: &str| !hex.bytes().any(|b| b.is_ascii_uppercase());
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        if !(lowercase(trace) && lowercase(span) && lowercase(flags)) {
            return None;
        }
        let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?) & TraceFlags::SAMPLED;
        let context = SpanContext::new(
            TraceId::from_hex(trace).ok()?,
            SpanId::from_hex(span).ok()?,
            flags,
            true,
            Default::default(),
        );
        context.is_valid().then_some(context)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_traceparent_reads_back_as_it_was_written() {
            let written = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let context = parse(written).expect("a valid traceparent");
            assert_eq!(
                context.trace_id().to_string(),
                "0af7651916cd43dd8448eb211c80319c"
            );
            assert_eq!(context.span_id().to_string(), "b7ad6b7169203331");
            assert!(context.is_sampled());
            for malformed in [
                "",
                "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-00",
            ] {
                assert!(parse(malformed).is_none(), "{malformed:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_trace_is_a_w3c_traceparent_of_its_own() {
        let traceparent = new_trace();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!((parts[0], parts[3]), ("00", "01"), "version, sampled");
        for (id, digits) in [(parts[1], 32), (parts[2], 16)] {
            assert_eq!(id.len(), digits, "{traceparent}");
            assert!(
                id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "lowercase hex: {traceparent}"
            );
            assert!(
                id.bytes().any(|b| b != b'0'),
                "not all zeros: {traceparent}"
            );
        }
        assert_ne!(new_trace(), traceparent, "each trace has its own ids");
    }

    #[test]
    fn hex_writes_the_low_digits_most_significant_first() {
        let mut out = [0u8; 8];
        hex(&mut out, 0x1234_5678_9abc_def0);
        assert_eq!(&out, b"9abcdef0");
    }
}
