//! [`KafkaTransport`]: integration events through Kafka, with `rdkafka` (librdkafka).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use super::{
    BoxFuture, ErrorKind, Inbound, Message, Received, Subscription, Transport, TransportError,
    cloudevents,
};
use crate::envelope;

/// The prefix of the headers that carry the CloudEvents attributes (binary mode), as the
/// CloudEvents Kafka binding has them.
const HEADER_PREFIX: &str = cloudevents::KAFKA_HEADER_PREFIX;

/// The header of the data's content type (`datacontenttype`), as the CloudEvents Kafka binding
/// has it.
const CONTENT_TYPE: &str = "content-type";

/// The transport through Kafka: one topic per contract version, which every context publishes
/// to, and for each consuming context and contract version a consumer group. Every message is
/// a CloudEvents 1.0 event in binary mode, as the CloudEvents Kafka binding writes and reads it
/// (`ce_` headers, `content-type`, the data as the value), with the contract's ordering key as
/// the record's key, so that any SDK, or a plain Kafka client, can read and write it.
///
/// ```no_run
/// use std::time::Duration;
/// use tidings::KafkaTransport;
/// use tidings::prelude::*;
///
/// # async fn run() -> Result<(), tidings::Error> {
/// // The defaults: topics `tidings.<contract>.v<version>`, created with the broker's default
/// // partitions and replication, a 10 s delivery timeout.
/// let transport = KafkaTransport::connect("127.0.0.1:9092").await?;
///
/// // Or tuned, with librdkafka's settings passed through.
/// let transport = KafkaTransport::builder()
///     .topic_prefix("acme.events")
///     .partitions(12)
///     .replication(3)
///     .publish_timeout(Duration::from_secs(5))
///     .producer_setting("linger.ms", "10")
///     .consumer_setting("session.timeout.ms", "10000")
///     .connect("kafka://broker-1:9092,broker-2:9092")
///     .await?;
/// let app = Tidings::builder("catalog").transport(transport).build()?;
/// # Ok(())
/// # }
/// ```
///
/// # Names
///
/// Derived from the contract's name and version and from the consuming context, with the
/// builder's topic prefix (shown with its default):
///
/// | what | name | `catalog.product-updated` v1, context `search` |
/// |---|---|---|
/// | topic, one per contract version ([`topic`](Self::topic)) | `<prefix>.<contract>.v<version>` | `tidings.catalog.product-updated.v1` |
/// | consumer group, one per context and contract version ([`group`](Self::group)) | `<prefix>:<context>:<contract>.v<version>` | `tidings:search:catalog.product-updated.v1` |
///
/// A topic name is letters, digits, `.`, `_` and `-`, at most 249 bytes: a contract whose topic
/// would not be is refused ([`ErrorKind::Invalid`]).
///
/// # Topics
///
/// A topic is made sure of when the transport first publishes to it or subscribes to it: unless
/// [`create_topics`](KafkaTransportBuilder::create_topics) is off, the transport asks the
/// cluster to create it (with the builder's [`partitions`](KafkaTransportBuilder::partitions)
/// and [`replication`](KafkaTransportBuilder::replication); one that exists is taken as it
/// is); where the cluster does not create it (creation not allowed, or a cluster without the
/// admin API), the transport checks that it exists. A topic that does not exist and cannot be
/// created is an [`ErrorKind::Refused`] error naming it.
///
/// # Delivery
///
/// - **Publish** sends the record with the idempotent producer (`enable.idempotence=true`: the
///   broker drops a retry's duplicate, and keeps the order of one producer's records in a
///   partition), the ordering key as the record's key (so one key's events go to one
///   partition, in order; partitioner `murmur2_random`, as the Java client's), the CloudEvents
///   attributes as `ce_` headers (and `traceparent` when the event has one),
///   `content-type: application/json` and the data as the value; it resolves when every
///   in-sync replica has the record (`acks=all`). Publications are pipelined: each awaits its
///   own delivery, many are in flight at once.
/// - **Ambiguous publications.** A record not delivered within
///   [`publish_timeout`](KafkaTransportBuilder::publish_timeout) (librdkafka's
///   `message.timeout.ms`; 10 s unless set, where librdkafka's own default is 5 minutes) fails
///   with [`ErrorKind::Unavailable`]: the relay publishes it again with the same id, and the
///   consuming context's inbox drops a second copy by its id. A record the broker refuses (too
///   large, not authorized) is [`ErrorKind::Refused`].
/// - **Each context gets every message; its instances share them.** Each context consumes a
///   contract version in a consumer group of its own; the instances of one context are members
///   of that group and share the topic's partitions. There is at most one instance per
///   partition at work: more instances than partitions wait.
/// - **Durable, from the beginning.** A group that has committed nothing yet starts at the
///   earliest record the topic retains (`auto.offset.reset=earliest`): a context that
///   subscribes for the first time receives what the topic still holds, and what is published
///   while it is away waits in the topic, as on a NATS stream.
/// - **Acknowledged means committed.** A message is acknowledged once the context's inbox
///   recorded it; the acknowledgement stores its offset and resolves once the group
///   coordinator committed it (`enable.auto.commit=false`, `enable.auto.offset.store=false`):
///   an acknowledged message does not come again, not even to another instance after a
///   rebalance. Commits are batched: one at a time per subscription, each taking every offset
///   acknowledged until it starts, so the consumer's batch of acknowledgements costs one or
///   two commits. A partition's committed offset never passes a message of it that is not
///   acknowledged yet; what was received and not acknowledged when a subscription ended, or
///   when its partitions moved to another instance, comes again (and an acknowledgement
///   that came too late for its partition fails as [`ErrorKind::Unavailable`]).
/// - **What is not a tidings CloudEvent** on a topic (no `ce_` headers, data that is not JSON,
///   an event of another contract or version) is handed to the consumer as a message of the
///   subscription's contract and version whose data says why, with the `ce_id` as id when it
///   is a UUID: the context's consumer dead-letters it in its store and acknowledges it. A
///   record in structured mode (`content-type: application/cloudevents+json`) is read as well.
///
/// # Settings
///
/// The producer's and the consumer's librdkafka settings can be given
/// ([`producer_setting`](KafkaTransportBuilder::producer_setting),
/// [`consumer_setting`](KafkaTransportBuilder::consumer_setting), or a whole
/// [`ClientConfig`] with [`client_config`](KafkaTransportBuilder::client_config) for what both
/// share, such as security settings), except those that the guarantees above rest on:
/// `enable.idempotence`, `group.id`, `enable.auto.offset.store` and `enable.auto.commit` are
/// always the transport's.
///
/// # Recovery
///
/// librdkafka reconnects by itself: publications retry inside librdkafka until their timeout,
/// and consumers fetch again once a broker is back. Each consumer error is one
/// [`ErrorKind::Unavailable`] error of its subscription, after which it goes on.
#[derive(Clone)]
pub struct KafkaTransport {
    inner: Arc<Inner>,
}

/// The settings of a [`KafkaTransport`], from [`KafkaTransport::builder`]. Each method's doc
/// gives its default.
#[derive(Clone)]
pub struct KafkaTransportBuilder {
    settings: Settings,
}

#[derive(Clone)]
struct Settings {
    topic_prefix: String,
    partitions: i32,
    replication: i32,
    create_topics: bool,
    publish_timeout: Duration,
    connect_timeout: Duration,
    client: ClientConfig,
    producer: Vec<(String, String)>,
    consumer: Vec<(String, String)>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client's settings may hold credentials: only their names are shown.
        let names = |settings: &[(String, String)]| -> Vec<String> {
            settings.iter().map(|(name, _)| name.clone()).collect()
        };
        f.debug_struct("Settings")
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("create_topics", &self.create_topics)
            .field("publish_timeout", &self.publish_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("producer", &names(&self.producer))
            .field("consumer", &names(&self.consumer))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KafkaTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaTransportBuilder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            topic_prefix: super::address::DEFAULT_PREFIX.to_owned(),
            partitions: -1,
            replication: -1,
            create_topics: true,
            publish_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            client: ClientConfig::new(),
            producer: Vec::new(),
            consumer: Vec::new(),
        }
    }
}

impl Default for KafkaTransportBuilder {
    fn default() -> Self {
        KafkaTransport::builder()
    }
}

impl KafkaTransportBuilder {
    /// The start of every topic's and every consumer group's name: `tidings` unless set.
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.topic_prefix = prefix.into();
        self
    }

    /// How many partitions a topic the transport creates has: the broker's default
    /// (`num.partitions`) unless set. One key's events are in one partition; the instances of
    /// a context share the partitions, so there is no more parallel work than partitions.
    pub fn partitions(mut self, partitions: u16) -> Self {
        self.settings.partitions = i32::from(partitions.max(1));
        self
    }

    /// How many replicas each partition of a topic the transport creates has: the broker's
    /// default (`default.replication.factor`) unless set.
    pub fn replication(mut self, replicas: u16) -> Self {
        self.settings.replication = i32::from(replicas.max(1));
        self
    }

    /// Whether the transport asks the cluster to create a topic that it needs: yes unless
    /// set. Off, a topic that does not exist is an error naming it.
    pub fn create_topics(mut self, create: bool) -> Self {
        self.settings.create_topics = create;
        self
    }

    /// How long a publication may take to be delivered, retries included, before it fails as
    /// [`ErrorKind::Unavailable`] (librdkafka's `message.timeout.ms`): 10 seconds unless set.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.settings.publish_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long connecting, and each request that looks up or creates a topic, may take: 10
    /// seconds unless set.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// The librdkafka settings the producer, the consumers and the admin client share (such as
    /// `security.protocol` and `sasl.*`), as a `ClientConfig`; the settings of
    /// [`producer_setting`](Self::producer_setting) and
    /// [`consumer_setting`](Self::consumer_setting) come on top.
    pub fn client_config(mut self, config: ClientConfig) -> Self {
        self.settings.client = config;
        self
    }

    /// A librdkafka setting of the producer, such as `linger.ms` or `compression.type`. The
    /// transport's own come first (`message.timeout.ms` from
    /// [`publish_timeout`](Self::publish_timeout), `partitioner=murmur2_random`,
    /// `socket.nagle.disable=true`), so a setting
    /// given here wins over them; `enable.idempotence` is always on.
    pub fn producer_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.producer.push((name.into(), value.into()));
        self
    }

    /// A librdkafka setting of every consumer, such as `session.timeout.ms` or
    /// `auto.offset.reset`. The transport's own come first (`auto.offset.reset=earliest`,
    /// `socket.nagle.disable=true`), so a setting given here wins over them; `group.id`,
    /// `enable.auto.offset.store` and `enable.auto.commit` are always the transport's.
    pub fn consumer_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.consumer.push((name.into(), value.into()));
        self
    }

    /// Connects to the cluster at `bootstrap`: `host:port`, several separated by commas, with or
    /// without a `kafka://` in front. Fails as [`ErrorKind::Unavailable`] if no broker answers
    /// within the [`connect_timeout`](Self::connect_timeout).
    pub async fn connect(mut self, bootstrap: &str) -> Result<KafkaTransport, TransportError> {
        let servers = bootstrap_servers(bootstrap);
        self.settings.client.set("bootstrap.servers", servers);
        self.start().await
    }

    /// Connects to the cluster that the [`client_config`](Self::client_config) names
    /// (`bootstrap.servers`), as [`connect`](Self::connect) does.
    pub async fn connect_with_config(self) -> Result<KafkaTransport, TransportError> {
        if self.settings.client.get("bootstrap.servers").is_none() {
            return Err(TransportError::new(
                ErrorKind::Invalid,
                "the Kafka client configuration names no `bootstrap.servers`",
                None,
            ));
        }
        self.start().await
    }

    async fn start(self) -> Result<KafkaTransport, TransportError> {
        let settings = self.settings;
        let producer = settings.producer()?;
        let admin = settings.admin()?;
        let servers = settings
            .client
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_owned();
        // The cluster answers, or the transport is not made.
        let probe = producer.clone();
        let timeout = settings.connect_timeout;
        let answered = tokio::task::spawn_blocking(move || {
            probe
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|metadata| metadata.brokers().len())
        })
        .await;
        match answered {
            Ok(Ok(brokers)) => {
                tracing::info!(%servers, brokers, topic_prefix = %settings.topic_prefix, "connected to Kafka");
            }
            Ok(Err(error)) => {
                return Err(TransportError::new(
                    ErrorKind::Unavailable,
                    format!("could not connect to Kafka at `{servers}` within {timeout:?}"),
                    Some(Box::new(error) as _),
                ));
            }
            Err(error) => {
                return Err(TransportError::new(
                    ErrorKind::Unavailable,
                    format!("could not connect to Kafka at `{servers}`"),
                    Some(Box::new(error) as _),
                ));
            }
        }
        Ok(KafkaTransport {
            inner: Arc::new(Inner {
                settings,
                producer: RwLock::new(producer),
                admin,
                topics: Mutex::default(),
                ensuring: tokio::sync::Mutex::default(),
            }),
        })
    }
}

/// `bootstrap` as librdkafka's `bootstrap.servers`: without `kafka://` and a trailing `/`.
fn bootstrap_servers(bootstrap: &str) -> String {
    bootstrap
        .split(',')
        .map(|server| {
            let server = server.trim();
            let server = server.strip_prefix("kafka://").unwrap_or(server);
            server.trim_end_matches('/')
        })
        .filter(|server| !server.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl KafkaTransport {
    /// Connects to the cluster at `bootstrap` (`host:port[,host:port…]`, or a `kafka://` URL),
    /// with the default settings.
    pub async fn connect(bootstrap: &str) -> Result<Self, TransportError> {
        Self::builder().connect(bootstrap).await
    }

    /// The settings, to tune before connecting.
    pub fn builder() -> KafkaTransportBuilder {
        KafkaTransportBuilder {
            settings: Settings::default(),
        }
    }

    /// The topic of contract `contract` version `version`, with the default prefix:
    /// `tidings.<contract>.v<version>`.
    ///
    /// ```
    /// use tidings::KafkaTransport;
    ///
    /// assert_eq!(
    ///     KafkaTransport::topic("catalog.product-updated", 1),
    ///     "tidings.catalog.product-updated.v1"
    /// );
    /// ```
    pub fn topic(contract: &str, version: u32) -> String {
        super::address::kafka_topic(super::address::DEFAULT_PREFIX, contract, version)
    }

    /// The topic this transport publishes contract `contract` version `version` to, with its
    /// prefix.
    pub fn topic_name(&self, contract: &str, version: u32) -> String {
        self.inner.settings.topic_name(contract, version)
    }

    /// The consumer group of context `context` for contract `contract` version `version`,
    /// with this transport's prefix.
    pub fn group(&self, context: &str, contract: &str, version: u32) -> String {
        self.inner.settings.group(context, contract, version)
    }

    /// Makes sure the topic of contract `contract` version `version` exists, creating it if
    /// allowed: for an app that wants to fail at start rather than at its first publication.
    pub async fn ensure_topic(&self, contract: &str, version: u32) -> Result<(), TransportError> {
        let topic = self.inner.settings.topic(contract, version)?;
        self.inner.ensure_topic(&topic).await
    }
}

impl Settings {
    fn topic_name(&self, contract: &str, version: u32) -> String {
        super::address::kafka_topic(&self.topic_prefix, contract, version)
    }

    /// The topic of a contract version, checked.
    fn topic(&self, contract: &str, version: u32) -> Result<String, TransportError> {
        let topic = self.topic_name(contract, version);
        let valid = !contract.is_empty()
            && topic.len() <= 249
            && topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(TransportError::new(
                ErrorKind::Invalid,
                format!(
                    "contract `{contract}` version {version} makes `{topic}`, which is not a \
                     Kafka topic name: letters, digits, `.`, `_` and `-`, at most 249 bytes"
                ),
                None,
            ));
        }
        Ok(topic)
    }

    fn group(&self, context: &str, contract: &str, version: u32) -> String {
        let name = super::address::contract_version(contract, version);
        if self.topic_prefix.is_empty() {
            format!("{context}:{name}")
        } else {
            format!("{}:{context}:{name}", self.topic_prefix)
        }
    }

    fn producer(&self) -> Result<FutureProducer<Logs>, TransportError> {
        let mut config = self.client.clone();
        config
            .set(
                "message.timeout.ms",
                millis(self.publish_timeout).to_string(),
            )
            .set("partitioner", "murmur2_random")
            .set("socket.nagle.disable", "true");
        for (name, value) in &self.producer {
            config.set(name, value);
        }
        config.set("enable.idempotence", "true");
        config
            .create_with_context(Logs)
            .map_err(|error| client_error("could not make a Kafka producer", error))
    }

    fn consumer(
        &self,
        group: &str,
        offsets: Arc<Offsets>,
    ) -> Result<Arc<Consuming>, TransportError> {
        let mut config = self.client.clone();
        config
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("socket.nagle.disable", "true");
        for (name, value) in &self.consumer {
            config.set(name, value);
        }
        config
            .set("group.id", group)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "false");
        config
            .create_with_context(Rebalances { offsets })
            .map(Arc::new)
            .map_err(|error| {
                client_error(
                    &format!("could not make a Kafka consumer of group `{group}`"),
                    error,
                )
            })
    }

    /// The admin client: it creates topics, and looks them up without asking the broker to
    /// create them.
    fn admin(&self) -> Result<Arc<AdminClient<Logs>>, TransportError> {
        let mut config = self.client.clone();
        config.set("allow.auto.create.topics", "false");
        config
            .create_with_context(Logs)
            .map(Arc::new)
            .map_err(|error| client_error("could not make a Kafka admin client", error))
    }
}

/// A duration in whole milliseconds, as librdkafka takes them.
fn millis(duration: Duration) -> u128 {
    duration.as_millis().max(1)
}

/// Making a client failed: its settings are wrong.
fn client_error(what: &str, error: KafkaError) -> TransportError {
    TransportError::new(
        ErrorKind::Invalid,
        format!("{what}: {error}"),
        Some(Box::new(error) as _),
    )
}

/// librdkafka's log lines and client errors, as `tracing` events: librdkafka reconnects by
/// itself, so what it says of lost connections is detail (`debug`), but for a fatal error.
#[derive(Debug, Clone, Copy)]
struct Logs;

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(facility, "librdkafka: {line}");
            }
            _ => tracing::debug!(facility, "librdkafka: {line}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(%error, reason, "Kafka client failed");
        } else {
            tracing::debug!(%error, reason, "Kafka client error");
        }
    }
}

struct Inner {
    settings: Settings,
    /// The producer; made anew after a fatal error (which leaves an idempotent producer
    /// unusable).
    producer: RwLock<FutureProducer<Logs>>,
    admin: Arc<AdminClient<Logs>>,
    /// The topics made sure of.
    topics: Mutex<HashSet<String>>,
    /// One topic made sure of at a time.
    ensuring: tokio::sync::Mutex<()>,
}

/// Why a topic could not be created.
enum NotCreated {
    /// The transport is not allowed to.
    NotAllowed,
    /// The cluster said no, or did not answer.
    Failed(String),
}

impl Inner {
    /// Makes sure `topic` exists: creates it if allowed, else checks it exists.
    async fn ensure_topic(&self, topic: &str) -> Result<(), TransportError> {
        if crate::sync::lock(&self.topics).contains(topic) {
            return Ok(());
        }
        let _one = self.ensuring.lock().await;
        if crate::sync::lock(&self.topics).contains(topic) {
            return Ok(());
        }
        if let Err(why) = self.create(topic).await {
            self.check_exists(topic, why).await?;
        }
        crate::sync::lock(&self.topics).insert(topic.to_owned());
        Ok(())
    }

    /// Asks the cluster to create `topic`; one that exists is fine.
    async fn create(&self, topic: &str) -> Result<(), NotCreated> {
        let settings = &self.settings;
        if !settings.create_topics {
            return Err(NotCreated::NotAllowed);
        }
        let new = NewTopic::new(
            topic,
            settings.partitions,
            TopicReplication::Fixed(settings.replication),
        );
        let options = AdminOptions::new().request_timeout(Some(settings.connect_timeout));
        match self.admin.create_topics([&new], &options).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => {
                    tracing::info!(%topic, partitions = settings.partitions, replication = settings.replication, "created a Kafka topic");
                    Ok(())
                }
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(()),
                Some(Err((_, code))) => Err(NotCreated::Failed(code.to_string())),
                None => Err(NotCreated::Failed(
                    "the cluster did not answer for it".into(),
                )),
            },
            Err(error) => Err(NotCreated::Failed(error.to_string())),
        }
    }

    /// Checks that `topic`, which the transport did not create (`why`), exists. Where the
    /// transport may create topics, it looks the topic up as a producer does, which a broker
    /// that creates topics by itself (`auto.create.topics.enable`) takes as a request to create
    /// it; where it may not, it only looks.
    async fn check_exists(&self, topic: &str, why: NotCreated) -> Result<(), TransportError> {
        let producer = self.producer();
        let admin = Arc::clone(&self.admin);
        let creating = self.settings.create_topics;
        let timeout = self.settings.connect_timeout;
        let name = topic.to_owned();
        let looked = tokio::task::spawn_blocking(move || {
            let metadata = if creating {
                producer
                    .client()
                    .fetch_metadata(Some(&name), Timeout::After(timeout))
            } else {
                admin
                    .inner()
                    .fetch_metadata(Some(&name), Timeout::After(timeout))
            }?;
            Ok::<_, KafkaError>(metadata.topics().iter().any(|found| {
                found.name() == name && found.error().is_none() && !found.partitions().is_empty()
            }))
        })
        .await;
        let why = match why {
            NotCreated::NotAllowed => {
                "the transport is not allowed to create topics (`create_topics(false)`)".to_owned()
            }
            NotCreated::Failed(error) => format!("creating it failed: {error}"),
        };
        match looked {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(TransportError::new(
                ErrorKind::Refused,
                format!(
                    "Kafka topic `{topic}` does not exist, and {why}; create it, or let the \
                     transport create it"
                ),
                None,
            )),
            Ok(Err(error)) => Err(TransportError::new(
                ErrorKind::Unavailable,
                format!("could not look up Kafka topic `{topic}` ({why})"),
                Some(Box::new(error) as _),
            )),
            Err(error) => Err(TransportError::new(
                ErrorKind::Unavailable,
                format!("could not look up Kafka topic `{topic}` ({why})"),
                Some(Box::new(error) as _),
            )),
        }
    }

    fn producer(&self) -> FutureProducer<Logs> {
        self.producer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Publishes `message` and waits for its delivery.
    async fn publish(&self, message: &Message) -> Result<(), TransportError> {
        let topic = self.settings.topic(&message.contract, message.version)?;
        self.ensure_topic(&topic).await?;
        let binary = cloudevents::to_binary(message, HEADER_PREFIX);
        let mut headers =
            OwnedHeaders::new_with_capacity(binary.headers.len() + 2).insert(Header {
                key: CONTENT_TYPE,
                value: Some(binary.content_type),
            });
        for (name, value) in &binary.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_str()),
            });
        }
        let hop = crate::trace::hop_traceparent(message);
        if let Some(traceparent) = &hop {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(traceparent.as_str()),
            });
        }
        let mut record = FutureRecord::to(&topic)
            .payload(&binary.body)
            .headers(headers)
            .timestamp(message.time.timestamp_millis());
        if let Some(key) = &message.key {
            record = record.key(key.as_str());
        }
        let producer = self.producer();
        let delivered = producer
            .send(record, Timeout::After(self.settings.publish_timeout))
            .await;
        let error = match delivered {
            Ok(_) => return Ok(()),
            Err((error, _)) => error,
        };
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
            // The topic was deleted: made sure of again at the next publication.
            crate::sync::lock(&self.topics).remove(&topic);
        }
        self.renew_if_fatal(&producer);
        Err(produce_error(
            &topic,
            message,
            error,
            self.settings.publish_timeout,
        ))
    }

    /// Makes a new producer if `used` failed fatally (an idempotent producer can: it is then
    /// unusable), unless another publication already did.
    fn renew_if_fatal(&self, used: &FutureProducer<Logs>) {
        let Some((code, reason)) = used.client().fatal_error() else {
            return;
        };
        let mut producer = self
            .producer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !std::ptr::eq(producer.client().native_ptr(), used.client().native_ptr()) {
            return;
        }
        match self.settings.producer() {
            Ok(fresh) => {
                tracing::warn!(%code, %reason, "the Kafka producer failed fatally; made a new one");
                *producer = fresh;
            }
            Err(error) => {
                tracing::error!(%code, %reason, %error, "the Kafka producer failed fatally, and no new one could be made");
            }
        }
    }
}

/// What a failed publication of `message` to `topic` is: refused when the broker would refuse it
/// again (too large, not authorized, invalid), else unavailable (not delivered in time, the
/// cluster away): whether the broker has it may be unknown.
fn produce_error(
    topic: &str,
    message: &Message,
    error: KafkaError,
    timeout: Duration,
) -> TransportError {
    use RDKafkaErrorCode as Code;
    let what = format!(
        "could not publish event {} to Kafka topic `{topic}`",
        message.id
    );
    let (kind, why) = match error.rdkafka_error_code() {
        Some(Code::MessageTimedOut) => (
            ErrorKind::Unavailable,
            format!(": not delivered within {timeout:?}, whether the broker took it is unknown"),
        ),
        Some(
            code @ (Code::MessageSizeTooLarge
            | Code::InvalidMessageSize
            | Code::InvalidMessage
            | Code::InvalidRecord
            | Code::MessageBatchTooLarge
            | Code::InvalidTopic
            | Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::PolicyViolation),
        ) => (
            ErrorKind::Refused,
            format!(": the broker refuses it ({code})"),
        ),
        _ => (ErrorKind::Unavailable, String::new()),
    };
    TransportError::new(kind, format!("{what}{why}"), Some(Box::new(error) as _))
}

impl Transport for KafkaTransport {
    fn system(&self) -> &'static str {
        "kafka"
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move { self.inner.publish(&message).await })
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        Box::pin(async move {
            let settings = &self.inner.settings;
            let topic = settings.topic(&subscription.contract, subscription.version)?;
            self.inner.ensure_topic(&topic).await?;
            let group = settings.group(
                &subscription.context,
                &subscription.contract,
                subscription.version,
            );
            let offsets = Arc::new(Offsets::default());
            let consumer = settings.consumer(&group, Arc::clone(&offsets))?;
            consumer.subscribe(&[&topic]).map_err(|error| {
                TransportError::new(
                    ErrorKind::Invalid,
                    format!("could not subscribe group `{group}` to Kafka topic `{topic}`"),
                    Some(Box::new(error) as _),
                )
            })?;
            tracing::debug!(%topic, %group, "consuming a Kafka topic");
            Ok(Box::new(KafkaInbound {
                consumer: Some(consumer),
                offsets,
                topic,
                group,
                subscription,
            }) as Box<dyn Inbound>)
        })
    }
}

/// A consumer of one subscription, with its rebalance callbacks.
type Consuming = StreamConsumer<Rebalances>;

/// The offsets of one consumer's partitions that were handed out and not yet acknowledged,
/// so that a partition's stored offset never passes one of them.
#[derive(Debug, Default)]
struct Offsets {
    partitions: Mutex<HashMap<i32, Partition>>,
    /// How many offsets were stored, and how many of those the last commit took.
    counts: Mutex<Counts>,
    /// One commit at a time.
    committer: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    stored: u64,
    committed: u64,
}

#[derive(Debug, Default)]
struct Partition {
    /// Counts the times the partition was assigned to the consumer: an acknowledgement of a
    /// message handed out before the partition was last taken away stores nothing.
    assignment: u64,
    /// The offsets handed out and not acknowledged.
    waiting: BTreeSet<i64>,
    /// The offset after the highest acknowledged one.
    next: i64,
}

impl Offsets {
    /// Notes that the message at `offset` of `partition` was handed out; the partition's
    /// assignment, for its acknowledgement.
    fn handed_out(&self, partition: i32, offset: i64) -> u64 {
        let mut partitions = crate::sync::lock(&self.partitions);
        let state = partitions.entry(partition).or_default();
        state.waiting.insert(offset);
        state.assignment
    }

    /// Notes that the message at `offset` of `partition`, handed out in `assignment`, was
    /// acknowledged; the offset to store (the first message not yet acknowledged), if any.
    fn acknowledged(&self, partition: i32, offset: i64, assignment: u64) -> Option<i64> {
        let mut partitions = crate::sync::lock(&self.partitions);
        let state = partitions.get_mut(&partition)?;
        if state.assignment != assignment || !state.waiting.remove(&offset) {
            return None;
        }
        state.next = state.next.max(offset + 1);
        Some(state.waiting.first().copied().unwrap_or(state.next))
    }

    /// Notes that an offset was stored; its number, for [`commit`](Self::commit).
    fn stored(&self) -> u64 {
        let mut counts = crate::sync::lock(&self.counts);
        counts.stored += 1;
        counts.stored
    }

    /// Commits the stored offsets, unless a commit since the offset numbered `stored` was
    /// stored took it already: one commit at a time, each taking every offset stored until it
    /// starts, so that the acknowledgements of a batch share one or two commits. The commit
    /// waits for the group coordinator: on a thread of the blocking pool.
    async fn commit(&self, consumer: Arc<Consuming>, stored: u64) -> Result<(), KafkaError> {
        let _one = self.committer.lock().await;
        let taking = {
            let counts = crate::sync::lock(&self.counts);
            if counts.committed >= stored {
                return Ok(());
            }
            counts.stored
        };
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await
                .unwrap_or(Err(KafkaError::Canceled));
        match committed {
            Ok(()) => {}
            // Nothing stored to commit: a commit before took it.
            Err(error) if error.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
            Err(error) => return Err(error),
        }
        let mut counts = crate::sync::lock(&self.counts);
        counts.committed = counts.committed.max(taking);
        Ok(())
    }

    /// The partitions of `revoked` were taken away: what was handed out of them is forgotten,
    /// and comes again from the committed offset.
    fn revoked(&self, revoked: &rdkafka::TopicPartitionList) {
        let mut partitions = crate::sync::lock(&self.partitions);
        for element in revoked.elements() {
            let state = partitions.entry(element.partition()).or_default();
            state.assignment += 1;
            state.waiting.clear();
            state.next = 0;
        }
    }
}

/// The consumer's callbacks: librdkafka's log lines as [`Logs`], and the partitions taken away
/// in a rebalance forgotten in [`Offsets`].
struct Rebalances {
    offsets: Arc<Offsets>,
}

impl ClientContext for Rebalances {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        Logs.log(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        Logs.error(error, reason);
    }
}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                tracing::debug!(partitions = partitions.count(), "Kafka partitions revoked");
                self.offsets.revoked(partitions);
            }
            Rebalance::Assign(partitions) => {
                tracing::debug!(partitions = partitions.count(), "Kafka partitions assigned");
            }
            Rebalance::Error(error) => {
                tracing::warn!(%error, "a Kafka rebalance failed");
            }
        }
    }
}

/// The messages of one subscription: a consumer in the context's group.
struct KafkaInbound {
    /// The consumer; the acknowledgements hold it weakly, so that it closes when the
    /// subscription ends.
    consumer: Option<Arc<Consuming>>,
    offsets: Arc<Offsets>,
    topic: String,
    group: String,
    subscription: Subscription,
}

impl Inbound for KafkaInbound {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>> {
        Box::pin(async move {
            let consumer = Arc::clone(self.consumer.as_ref()?);
            // `recv` is cancel-safe: a message is taken from librdkafka's queue only in the
            // poll that returns it.
            let received = match consumer.recv().await {
                Ok(record) => self.received(&consumer, &record),
                Err(error) => {
                    return Some(Err(TransportError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "consuming Kafka topic `{}` in group `{}` failed; consuming on",
                            self.topic, self.group
                        ),
                        Some(Box::new(error) as _),
                    )));
                }
            };
            Some(Ok(received))
        })
    }
}

impl Drop for KafkaInbound {
    fn drop(&mut self) {
        // Closing a consumer leaves the group, waiting for the cluster: not on the async
        // runtime.
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(consumer))),
            Err(_) => drop(consumer),
        }
    }
}

impl KafkaInbound {
    /// `record` as a received message, whose acknowledgement stores its offset.
    fn received(&self, consumer: &Arc<Consuming>, record: &BorrowedMessage<'_>) -> Received {
        let message = self.decode(record);
        let (partition, offset) = (record.partition(), record.offset());
        let assignment = self.offsets.handed_out(partition, offset);
        let offsets = Arc::clone(&self.offsets);
        let consumer: Weak<Consuming> = Arc::downgrade(consumer);
        let topic = self.topic.clone();
        Received::new(message, move || {
            Box::pin(async move {
                let failed = |source: Option<KafkaError>| {
                    TransportError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "could not acknowledge the message at offset {offset} of Kafka \
                             topic `{topic}` partition {partition}: its subscription ended or \
                             the partition moved, and the message comes again"
                        ),
                        source.map(|error| Box::new(error) as _),
                    )
                };
                // Handed out before its partition was last taken away, it comes again from
                // the committed offset.
                let Some(store) = offsets.acknowledged(partition, offset, assignment) else {
                    return Err(failed(None));
                };
                let Some(consumer) = consumer.upgrade() else {
                    return Err(failed(None));
                };
                // `store_offset` stores the offset after the one it is given.
                consumer
                    .store_offset(&topic, partition, store - 1)
                    .map_err(|error| failed(Some(error)))?;
                let stored = offsets.stored();
                offsets
                    .commit(consumer, stored)
                    .await
                    .map_err(|error| failed(Some(error)))
            })
        })
    }

    /// The message `record` carries, or, if it is not a CloudEvent of the subscription's
    /// contract version, one that the consumer dead-letters.
    fn decode(&self, record: &BorrowedMessage<'_>) -> Message {
        let headers: Vec<(&str, String)> = record
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|header| {
                        let value = header.value?;
                        Some((header.key, String::from_utf8_lossy(value).into_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        };
        let content_type = header(CONTENT_TYPE);
        let payload = record.payload().unwrap_or_default();
        let decoded = if cloudevents::is_structured(content_type.as_deref()) {
            cloudevents::from_structured(payload)
        } else {
            cloudevents::from_binary(HEADER_PREFIX, header, content_type.as_deref(), payload)
        };
        let hop = header("traceparent");
        let why = match envelope::of_subscription(decoded, &self.subscription, hop) {
            Ok(message) => return message,
            Err(why) => why,
        };
        envelope::unreadable(
            &self.subscription,
            envelope::Unreadable {
                place: format!(
                    "Kafka topic `{}` partition {} offset {}",
                    self.topic,
                    record.partition(),
                    record.offset()
                ),
                source: format!("kafka:{}", self.topic),
                id: header(&format!("{HEADER_PREFIX}id")),
                traceparent: header("traceparent"),
                why,
                payload,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract_and_the_context() {
        let settings = Settings::default();
        assert_eq!(
            settings.topic("catalog.product-updated", 1).unwrap(),
            "tidings.catalog.product-updated.v1"
        );
        assert_eq!(
            settings.group("search", "catalog.product-updated", 1),
            "tidings:search:catalog.product-updated.v1"
        );
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(250)] {
            let error = settings.topic(bad, 1).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn bootstrap_servers_take_urls_and_lists() {
        assert_eq!(bootstrap_servers("127.0.0.1:9092"), "127.0.0.1:9092");
        assert_eq!(bootstrap_servers("kafka://h:9092/"), "h:9092");
        assert_eq!(bootstrap_servers("kafka://a:1, kafka://b:2"), "a:1,b:2");
    }

    #[test]
    fn a_stored_offset_never_passes_a_message_not_acknowledged() {
        let offsets = Offsets::default();
        let a = offsets.handed_out(0, 10);
        let b = offsets.handed_out(0, 11);
        let c = offsets.handed_out(0, 12);
        assert_eq!(offsets.acknowledged(0, 12, c), Some(10), "10 and 11 wait");
        assert_eq!(offsets.acknowledged(0, 10, a), Some(11), "11 waits");
        assert_eq!(offsets.acknowledged(0, 11, b), Some(13), "all acknowledged");
        assert_eq!(offsets.acknowledged(0, 11, b), None, "once");

        let stale = offsets.handed_out(0, 13);
        let mut revoked = rdkafka::TopicPartitionList::new();
        revoked.add_partition("t", 0);
        offsets.revoked(&revoked);
        assert_eq!(
            offsets.acknowledged(0, 13, stale),
            None,
            "handed out before"
        );
        let fresh = offsets.handed_out(0, 13);
        assert_eq!(offsets.acknowledged(0, 13, fresh), Some(14));
    }
}
