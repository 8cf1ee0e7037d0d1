//! What the examples share: short ids and prices to print, the two services' data folder and
//! broker, and the `catalog` command.

// Each example uses a part of it.
#![allow(dead_code)]

use std::fmt::Display;
use std::path::{Path, PathBuf};

use tidings::{
    EventMeta, KafkaTransport, NatsTransport, PubSubTransport, RabbitMqTransport, TidingsBuilder,
};

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

/// Where a service of the two-service example keeps its store: `$SERVICES_DATA`, or
/// `services-data/`.
pub(crate) fn data_dir() -> std::io::Result<PathBuf> {
    let dir =
        std::env::var_os("SERVICES_DATA").map_or_else(|| "services-data".into(), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Where the catalog documents of example `name` are committed: `examples/docs/<name>/`.
pub(crate) fn docs_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name)
}

/// Where the snapshots of the contracts of example `name` are committed:
/// `examples/contracts/<name>/`.
pub(crate) fn contracts_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contracts")
        .join(name)
}

/// `cargo run --example <name> -- catalog`: writes the program's event catalog (Markdown with
/// the Mermaid diagram, JSON, AsyncAPI per context and broker) into [`docs_dir`]. Returns
/// whether the command was given.
pub(crate) fn catalog_command(name: &str) -> Result<bool, tidings::catalog::CatalogError> {
    if std::env::args().nth(1).as_deref() != Some("catalog") {
        return Ok(false);
    }
    for path in tidings::catalog().docs().write(docs_dir(name))? {
        println!("wrote {}", path.display());
    }
    Ok(true)
}

/// The broker of the two-service example: `$BROKER_URL`, else `$NATS_URL`, else the NATS server
/// on this machine. Its scheme picks the transport.
pub(crate) fn broker_url() -> String {
    std::env::var("BROKER_URL")
        .or_else(|_| std::env::var("NATS_URL"))
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// `builder` with the transport that `url`'s scheme names: `nats://` (NATS JetStream),
/// `amqp://` / `amqps://` (RabbitMQ), `kafka://host:port[,host:port…]` (Kafka) or
/// `pubsub://<project>` (Google Cloud Pub/Sub, the emulator when `PUBSUB_EMULATOR_HOST` is set).
/// Nothing else in the services depends on the broker.
pub(crate) async fn on_broker(
    builder: TidingsBuilder,
    url: &str,
) -> Result<TidingsBuilder, Box<dyn std::error::Error>> {
    let scheme = url.split("://").next().unwrap_or_default();
    Ok(match scheme {
        "nats" | "tls" => builder.transport(NatsTransport::connect(url).await?),
        "amqp" | "amqps" => builder.transport(RabbitMqTransport::connect(url).await?),
        "kafka" => builder.transport(KafkaTransport::connect(url).await?),
        "pubsub" => {
            let project = url.trim_start_matches("pubsub://").trim_end_matches('/');
            builder.transport(PubSubTransport::connect(project).await?)
        }
        _ => {
            return Err(format!(
                "`{url}`: a broker URL starts with nats://, amqp://, kafka:// or pubsub://"
            )
            .into());
        }
    })
}
