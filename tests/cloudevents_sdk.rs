//! The wire format against the official CloudEvents SDK of another language (Python's
//! `cloudevents` 2.2): the SDK reads what tidings publishes, and tidings reads what the SDK
//! builds, in structured mode (the JSON event format) and in the binary mode of the SDK's
//! RabbitMQ binding (`ce-` headers, the data as the body). `tests/rabbitmq.rs` does the same
//! through a broker, with Python's `pika`. Skipped, and saying so, where Python or the SDK is missing, unless
//! `TIDINGS_REQUIRE_SERVICES` is set (as `.ci/run`, which installs the SDK, does).

use chrono::Utc;
use tidings::transport::Message;
use tidings::transport::cloudevents;
use uuid::Uuid;

mod support;

use support::{cloudevents_sdk as sdk, run_cloudevents_sdk as run};

/// A `catalog.product-updated` v2 event with every attribute tidings sends set.
fn product_updated() -> Message {
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
fn the_python_sdk_reads_what_tidings_publishes() {
    if !sdk("the_python_sdk_reads_what_tidings_publishes") {
        return;
    }
    let message = product_updated();
    let id = message.id;

    let read: serde_json::Value =
        serde_json::from_slice(&run(&["read"], &cloudevents::to_structured(&message)))
            .expect("the script prints JSON");

    let attributes = &read["attributes"];
    assert_eq!(attributes["specversion"], "1.0");
    assert_eq!(attributes["id"], id.to_string());
    assert_eq!(attributes["source"], "catalog");
    assert_eq!(attributes["type"], "catalog.product-updated");
    assert_eq!(attributes["datacontenttype"], "application/json");
    assert_eq!(attributes["dataversion"], 2);
    assert_eq!(attributes["partitionkey"], "p-1");
    assert_eq!(attributes["correlationid"], id.to_string());
    assert_eq!(
        attributes["causationid"],
        message.causation_id.expect("set").to_string()
    );
    assert_eq!(
        attributes["traceparent"],
        message.traceparent.clone().expect("set")
    );
    assert!(attributes["time"].is_string());
    assert_eq!(read["data"], message.data);
}

/// A message in binary mode, as the script reads and writes it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Binary {
    headers: std::collections::BTreeMap<String, String>,
    content_type: Option<String>,
    body: String,
}

#[test]
fn the_python_sdk_reads_tidings_binary_mode_for_rabbitmq() {
    if !sdk("the_python_sdk_reads_tidings_binary_mode_for_rabbitmq") {
        return;
    }
    let message = product_updated();
    let id = message.id;
    let binary = cloudevents::to_binary(&message, cloudevents::AMQP_HEADER_PREFIX);
    let sent = Binary {
        headers: binary.headers.into_iter().collect(),
        content_type: Some(binary.content_type.to_owned()),
        body: String::from_utf8(binary.body).expect("JSON is text"),
    };
    let input = serde_json::to_vec(&sent).expect("JSON");

    let read: serde_json::Value =
        serde_json::from_slice(&run(&["read-binary"], &input)).expect("the script prints JSON");

    let attributes = &read["attributes"];
    assert_eq!(attributes["id"], id.to_string());
    assert_eq!(attributes["type"], "catalog.product-updated");
    assert_eq!(attributes["datacontenttype"], "application/json");
    assert_eq!(attributes["dataversion"], "2");
    assert_eq!(attributes["partitionkey"], "p-1");
    assert!(attributes["time"].is_string());
    assert_eq!(read["data"], message.data);
}

#[test]
fn tidings_reads_the_python_sdks_binary_mode_for_rabbitmq() {
    if !sdk("tidings_reads_the_python_sdks_binary_mode_for_rabbitmq") {
        return;
    }
    let built: Binary =
        serde_json::from_slice(&run(&["write-binary", "catalog.product-updated"], b""))
            .expect("the script prints JSON");

    let header = |name: &str| built.headers.get(name).cloned();
    let message = cloudevents::from_binary(
        cloudevents::AMQP_HEADER_PREFIX,
        header,
        built.content_type.as_deref(),
        built.body.as_bytes(),
    )
    .expect("a CloudEvent tidings reads");

    assert_eq!(message.contract, "catalog.product-updated");
    assert_eq!(message.version, 1);
    assert_eq!(message.key.as_deref(), Some("p-9"));
    assert_eq!(
        message.data,
        serde_json::json!({ "product_id": "p-9", "price_cents": 4200 })
    );
}

#[test]
fn tidings_reads_what_the_python_sdk_builds() {
    if !sdk("tidings_reads_what_the_python_sdk_builds") {
        return;
    }
    let built = run(&["write", "catalog.product-updated"], b"");

    let message = cloudevents::from_structured(&built).expect("a CloudEvent tidings reads");

    assert_eq!(message.contract, "catalog.product-updated");
    assert_eq!(message.version, 1);
    assert_eq!(message.source, "https://erp.example/prices");
    assert_eq!(message.key.as_deref(), Some("p-9"));
    assert_eq!(
        message.correlation_id, message.id,
        "a new correlation starts"
    );
    assert_eq!(
        message.data,
        serde_json::json!({ "product_id": "p-9", "price_cents": 4200 })
    );
}
