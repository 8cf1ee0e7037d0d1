//! Where a contract version travels on each broker: one derivation from the contract's name
//! and version, used by the transports and by the catalog's AsyncAPI documents, so that the
//! documents name what the brokers carry.
//!
//! | broker | address | `catalog.product-updated` v1, default prefix |
//! |---|---|---|
//! | NATS JetStream | subject `<prefix>.<contract>.v<version>` | `tidings.catalog.product-updated.v1` |
//! | RabbitMQ | routing key `<contract>.v<version>` on the topic exchange `<prefix>` | `catalog.product-updated.v1` on `tidings` |
//! | Kafka | topic `<prefix>.<contract>.v<version>` | `tidings.catalog.product-updated.v1` |
//! | Google Cloud Pub/Sub | topic `<prefix>.<contract>.v<version>`, subscription `<topic>~<context>` | `tidings.catalog.product-updated.v1`, `tidings.catalog.product-updated.v1~search` |
//!
//! ```
//! use tidings::transport::address;
//!
//! assert_eq!(address::nats_subject("tidings", "catalog.product-updated", 1), "tidings.catalog.product-updated.v1");
//! assert_eq!(address::rabbitmq_routing_key("catalog.product-updated", 1), "catalog.product-updated.v1");
//! ```

/// The prefix of every address unless a transport is given another: the NATS subject prefix,
/// the RabbitMQ exchange, the Kafka and the Pub/Sub topic prefix.
pub const DEFAULT_PREFIX: &str = "tidings";

/// `<contract>.v<version>`: a contract version's name on every broker.
pub fn contract_version(contract: &str, version: u32) -> String {
    format!("{contract}.v{version}")
}

/// The NATS subject of a contract version: `<prefix>.<contract>.v<version>`.
pub fn nats_subject(prefix: &str, contract: &str, version: u32) -> String {
    prefixed(prefix, contract, version)
}

/// The RabbitMQ routing key of a contract version on the topic exchange:
/// `<contract>.v<version>`.
pub fn rabbitmq_routing_key(contract: &str, version: u32) -> String {
    contract_version(contract, version)
}

/// The Kafka topic of a contract version: `<prefix>.<contract>.v<version>`.
pub fn kafka_topic(prefix: &str, contract: &str, version: u32) -> String {
    prefixed(prefix, contract, version)
}

/// The Pub/Sub topic of a contract version: `<prefix>.<contract>.v<version>`.
pub fn pubsub_topic(prefix: &str, contract: &str, version: u32) -> String {
    prefixed(prefix, contract, version)
}

/// The Pub/Sub subscription of context `context` to a contract version: `<topic>~<context>`.
///
/// ```
/// use tidings::transport::address;
///
/// assert_eq!(
///     address::pubsub_subscription("tidings", "search", "catalog.product-updated", 1),
///     "tidings.catalog.product-updated.v1~search"
/// );
/// ```
pub fn pubsub_subscription(prefix: &str, context: &str, contract: &str, version: u32) -> String {
    format!("{}~{context}", pubsub_topic(prefix, contract, version))
}

/// `<prefix>.<contract>.v<version>`; the contract version alone for an empty prefix.
fn prefixed(prefix: &str, contract: &str, version: u32) -> String {
    let name = contract_version(contract, version);
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}.{name}")
    }
}
