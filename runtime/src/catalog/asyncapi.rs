//! AsyncAPI 3.0 documents: a context's contracts as channels of one broker.

use serde_json::{Map, Value, json};

use super::schema::embedded;
use super::{Catalog, CatalogError, Context};
use crate::transport::address;
use crate::transport::cloudevents::{
    AMQP_HEADER_PREFIX, ATTRIBUTES, DATA_CONTENT_TYPE, KAFKA_HEADER_PREFIX,
    PUBSUB_ATTRIBUTE_PREFIX, STRUCTURED_CONTENT_TYPE,
};

/// A broker, with the prefix its transport is given: what an AsyncAPI document's addresses
/// and message headers follow (see [`tidings::transport::address`](crate::transport::address)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Broker {
    /// NATS JetStream: subjects `<subject_prefix>.<contract>.v<version>`; CloudEvents in
    /// structured mode, so the attributes travel in the payload.
    Nats {
        /// The transport's subject prefix.
        subject_prefix: String,
    },
    /// RabbitMQ: routing keys `<contract>.v<version>` on a topic exchange; CloudEvents in binary
    /// mode, attributes in `ce-` headers.
    RabbitMq {
        /// The transport's exchange.
        exchange: String,
    },
    /// Kafka: topics `<topic_prefix>.<contract>.v<version>`, the ordering key as the record's
    /// key; CloudEvents in binary mode, attributes in `ce_` headers.
    Kafka {
        /// The transport's topic prefix.
        topic_prefix: String,
    },
    /// Google Cloud Pub/Sub: topics `<topic_prefix>.<contract>.v<version>` (the topic's id, in
    /// the project the transport is given), the ordering key as the message's ordering key;
    /// CloudEvents in binary mode, attributes in `ce-` message attributes.
    PubSub {
        /// The transport's topic prefix.
        topic_prefix: String,
    },
}

impl Broker {
    /// NATS with the default subject prefix, `tidings`.
    pub fn nats() -> Broker {
        Broker::Nats {
            subject_prefix: address::DEFAULT_PREFIX.to_owned(),
        }
    }

    /// RabbitMQ with the default exchange, `tidings`.
    pub fn rabbitmq() -> Broker {
        Broker::RabbitMq {
            exchange: address::DEFAULT_PREFIX.to_owned(),
        }
    }

    /// Kafka with the default topic prefix, `tidings`.
    pub fn kafka() -> Broker {
        Broker::Kafka {
            topic_prefix: address::DEFAULT_PREFIX.to_owned(),
        }
    }

    /// Google Cloud Pub/Sub with the default topic prefix, `tidings`.
    pub fn pubsub() -> Broker {
        Broker::PubSub {
            topic_prefix: address::DEFAULT_PREFIX.to_owned(),
        }
    }

    /// The AsyncAPI protocol name: `nats`, `amqp`, `kafka` or `googlepubsub`; also the
    /// broker's part of the documents' file names.
    pub fn protocol(&self) -> &'static str {
        match self {
            Broker::Nats { .. } => "nats",
            Broker::RabbitMq { .. } => "amqp",
            Broker::Kafka { .. } => "kafka",
            Broker::PubSub { .. } => "googlepubsub",
        }
    }

    /// Where contract `contract` version `version` travels: subject, routing key or topic (on
    /// Pub/Sub, the topic's id, without `projects/<project>/topics/`).
    ///
    /// ```
    /// use tidings::catalog::Broker;
    ///
    /// assert_eq!(
    ///     Broker::pubsub().address("catalog.product-updated", 1),
    ///     "tidings.catalog.product-updated.v1"
    /// );
    /// ```
    pub fn address(&self, contract: &str, version: u32) -> String {
        match self {
            Broker::Nats { subject_prefix } => {
                address::nats_subject(subject_prefix, contract, version)
            }
            Broker::RabbitMq { .. } => address::rabbitmq_routing_key(contract, version),
            Broker::Kafka { topic_prefix } => address::kafka_topic(topic_prefix, contract, version),
            Broker::PubSub { topic_prefix } => {
                address::pubsub_topic(topic_prefix, contract, version)
            }
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Broker::Nats { .. } => "NATS JetStream",
            Broker::RabbitMq { .. } => "RabbitMQ",
            Broker::Kafka { .. } => "Kafka",
            Broker::PubSub { .. } => "Google Cloud Pub/Sub",
        }
    }
}

/// The schema format of every payload: JSON Schema draft-07.
const DRAFT_07: &str = "application/schema+json;version=draft-07";

impl Catalog {
    /// The AsyncAPI 3.0 document of context `context` on `broker`: a channel per contract
    /// version it publishes or consumes, at the broker's address; a `send` operation for each
    /// one it publishes and a `receive` operation for each one it consumes; each message with
    /// the CloudEvents attributes (as headers in binary mode, in the payload on NATS, whose
    /// binding is structured) and the payload's JSON Schema (draft-07).
    ///
    /// ```
    /// use tidings::catalog::Broker;
    /// use tidings::prelude::*;
    ///
    /// #[domain_event]
    /// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// pub struct OrderConfirmed { pub order_id: String }
    ///
    /// #[integration_event(name = "sales.order-confirmed", from = OrderConfirmed, key = order_id)]
    /// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// pub struct OrderConfirmedIntegrationEvent { pub order_id: String }
    ///
    /// impl From<&OrderConfirmed> for OrderConfirmedIntegrationEvent {
    ///     fn from(e: &OrderConfirmed) -> Self { Self { order_id: e.order_id.clone() } }
    /// }
    ///
    /// let catalog = tidings::catalog();
    /// let context = &catalog.contexts[0].name;
    /// let document = catalog.asyncapi(context, &Broker::kafka())?;
    /// let channel = &document["channels"]["sales.order-confirmed.v1"];
    /// assert_eq!(channel["address"], "tidings.sales.order-confirmed.v1");
    /// # Ok::<(), tidings::catalog::CatalogError>(())
    /// ```
    pub fn asyncapi(&self, context: &str, broker: &Broker) -> Result<Value, CatalogError> {
        let context = self.context(context)?;
        Ok(Document {
            catalog: self,
            context,
            broker,
        }
        .render())
    }
}

struct Document<'a> {
    catalog: &'a Catalog,
    context: &'a Context,
    broker: &'a Broker,
}

/// One channel of the document: a contract version, as published or consumed here.
struct Channel<'a> {
    contract: &'a str,
    version: u32,
    type_name: &'a str,
    key: Option<&'a str>,
    schema: &'a Value,
    summary: String,
}

impl Document<'_> {
    fn render(&self) -> Value {
        let context = self.context;
        let mut channels = Map::new();
        let mut operations = Map::new();
        let mut messages = Map::new();
        let mut schemas = Map::new();
        let published = context.publishes.iter().map(|c| {
            let from = c.from.join("`, `");
            let channel = Channel {
                contract: &c.name,
                version: c.version,
                type_name: &c.type_name,
                key: c.key.as_deref(),
                schema: &c.schema,
                summary: format!("Published as the reaction to `{from}`."),
            };
            ("send", channel)
        });
        let consumed = context.consumes.iter().map(|c| {
            let handlers: Vec<&str> = c.handlers.iter().map(|h| h.name.as_str()).collect();
            // The producer's key, where the catalog holds the producer.
            let key = self
                .catalog
                .published(&c.name, c.version)
                .and_then(|(_, p)| p.key.as_deref());
            let channel = Channel {
                contract: &c.name,
                version: c.version,
                type_name: &c.type_name,
                key,
                schema: &c.schema,
                summary: format!("Handled by `{}`.", handlers.join("`, `")),
            };
            ("receive", channel)
        });
        for (action, channel) in published.chain(consumed) {
            let id = address::contract_version(channel.contract, channel.version);
            let schema_pointer = format!("#/components/schemas/{id}");
            schemas.insert(id.clone(), embedded(channel.schema, &schema_pointer));
            messages.insert(id.clone(), self.message(&channel, &id));
            let entry = channels.entry(id.clone()).or_insert_with(|| {
                json!({
                    "address": self.broker.address(channel.contract, channel.version),
                    "title": format!("{} v{}", channel.contract, channel.version),
                    "messages": { &id: { "$ref": format!("#/components/messages/{id}") } },
                })
            });
            if let Some(bindings) = self.channel_bindings(channel.contract, channel.version) {
                entry["bindings"] = bindings;
            }
            let verb = if action == "send" {
                "publish"
            } else {
                "consume"
            };
            operations.insert(
                format!("{verb}.{id}"),
                json!({
                    "action": action,
                    "channel": { "$ref": format!("#/channels/{id}") },
                    "summary": channel.summary,
                    "messages": [{ "$ref": format!("#/channels/{id}/messages/{id}") }],
                }),
            );
        }
        json!({
            "asyncapi": "3.0.0",
            "info": {
                "title": context.name,
                "version": "1",
                "description": format!(
                    "The integration events that bounded context `{}` publishes and consumes on {}: each channel is one contract version, each message a CloudEvents 1.0 event whose data is the contract's payload.",
                    context.name,
                    self.broker.title()
                ),
            },
            "defaultContentType": DATA_CONTENT_TYPE,
            "channels": channels,
            "operations": operations,
            "components": { "messages": messages, "schemas": schemas },
        })
    }

    /// The message of a channel: headers and payload as the broker carries them.
    fn message(&self, channel: &Channel<'_>, id: &str) -> Value {
        let payload_ref = json!({ "$ref": format!("#/components/schemas/{id}") });
        let (content_type, headers, payload, correlation) = match self.broker {
            Broker::Nats { .. } => {
                let mut headers = json!({
                    "type": "object",
                    "properties": {
                        "Content-Type": { "type": "string", "const": STRUCTURED_CONTENT_TYPE },
                        "Nats-Msg-Id": { "type": "string", "format": "uuid", "description": "The event id: the stream drops a second message of one id within its duplicate window." },
                        "traceparent": { "type": "string", "description": "The W3C trace context of the publication." },
                    },
                    "required": ["Content-Type", "Nats-Msg-Id"],
                });
                headers["additionalProperties"] = Value::Bool(true);
                let mut envelope = attributes_schema("", true);
                envelope["properties"]["data"] = payload_ref;
                push_required(&mut envelope, "data");
                (
                    STRUCTURED_CONTENT_TYPE,
                    headers,
                    envelope,
                    "$message.payload#/correlationid",
                )
            }
            Broker::RabbitMq { .. } => (
                DATA_CONTENT_TYPE,
                attributes_schema(AMQP_HEADER_PREFIX, false),
                payload_ref,
                "$message.header#/ce-correlationid",
            ),
            Broker::Kafka { .. } => {
                let mut headers = attributes_schema(KAFKA_HEADER_PREFIX, false);
                headers["properties"]["content-type"] =
                    json!({ "type": "string", "const": DATA_CONTENT_TYPE });
                (
                    DATA_CONTENT_TYPE,
                    headers,
                    payload_ref,
                    "$message.header#/ce_correlationid",
                )
            }
            Broker::PubSub { .. } => {
                // The message's attributes, as the CloudEvents Pub/Sub binding (binary mode)
                // has them: `datacontenttype` as `Content-Type`, the others under `ce-`.
                let mut headers = attributes_schema(PUBSUB_ATTRIBUTE_PREFIX, false);
                headers["properties"]["Content-Type"] =
                    json!({ "type": "string", "const": DATA_CONTENT_TYPE });
                headers["properties"]["traceparent"] = json!({ "type": "string", "description": "The W3C trace context of the publication." });
                push_required(&mut headers, "Content-Type");
                (
                    DATA_CONTENT_TYPE,
                    headers,
                    payload_ref,
                    "$message.header#/ce-correlationid",
                )
            }
        };
        let mut message = json!({
            "name": channel.type_name,
            "title": format!("{} v{}", channel.contract, channel.version),
            "contentType": content_type,
            "correlationId": { "location": correlation },
            "headers": headers,
            "payload": { "schemaFormat": DRAFT_07, "schema": payload },
        });
        if let Broker::Kafka { .. } = self.broker {
            let key = match channel.key {
                Some(field) => {
                    json!({ "type": "string", "description": format!("The ordering key: the value of field `{field}`.") })
                }
                None => {
                    json!({ "type": "null", "description": "The contract has no ordering key." })
                }
            };
            message["bindings"] = json!({ "kafka": { "key": key, "bindingVersion": "0.5.0" } });
        }
        if let Broker::PubSub { .. } = self.broker {
            // The binding's `orderingKey` is a value, not a schema: where it comes from is
            // said in the message's description.
            message["description"] = Value::from(match channel.key {
                Some(field) => format!(
                    "The ordering key is the value of field `{field}`: a subscription with message ordering enabled delivers the messages of one key in order."
                ),
                None => {
                    "The contract has no ordering key: the message has an empty one.".to_owned()
                }
            });
            message["bindings"] = json!({ "googlepubsub": { "bindingVersion": "0.2.0" } });
        }
        message
    }

    /// The broker's bindings of a channel, if it has any.
    fn channel_bindings(&self, contract: &str, version: u32) -> Option<Value> {
        match self.broker {
            // None on Pub/Sub: the channel's address is the topic, and the binding (0.2.0)
            // requires the topic's Pub/Sub schema settings, which a topic the transport makes
            // has none of.
            Broker::Nats { .. } | Broker::PubSub { .. } => None,
            Broker::RabbitMq { exchange } => Some(json!({
                "amqp": {
                    "is": "routingKey",
                    "exchange": { "name": exchange, "type": "topic", "durable": true, "autoDelete": false, "vhost": "/" },
                    "bindingVersion": "0.3.0",
                }
            })),
            Broker::Kafka { .. } => Some(json!({
                "kafka": { "topic": self.broker.address(contract, version), "bindingVersion": "0.5.0" }
            })),
        }
    }
}

/// The CloudEvents attributes as an object schema, each property named `<prefix><attribute>`:
/// as headers, each one's text; in the JSON event format (`structured`), numbers as numbers.
fn attributes_schema(prefix: &str, structured: bool) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for attribute in ATTRIBUTES {
        let name = format!("{prefix}{}", attribute.name);
        let json_type = if structured && attribute.integer {
            "integer"
        } else {
            "string"
        };
        let mut property = json!({ "type": json_type, "description": attribute.description });
        if let Some(format) = attribute.format {
            property["format"] = Value::from(format);
        }
        if attribute.always {
            required.push(Value::from(name.clone()));
        }
        properties.insert(name, property);
    }
    json!({ "type": "object", "properties": properties, "required": required })
}

fn push_required(schema: &mut Value, name: &str) {
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.push(Value::from(name));
    }
}
