//! [`RabbitMqTransport`]: integration events through RabbitMQ (AMQP 0-9-1), with `lapin`.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Semaphore;

use super::{
    BoxFuture, ErrorKind, Inbound, Message, Received, Subscription, Transport, TransportError,
    cloudevents,
};
use crate::envelope;

/// The prefix of the headers that carry the CloudEvents attributes (binary mode), as the
/// CloudEvents SDKs' RabbitMQ binding reads them.
const HEADER_PREFIX: &str = cloudevents::AMQP_HEADER_PREFIX;

/// The transport through RabbitMQ: one durable topic exchange that every context publishes
/// to, and for each consuming context and contract version a durable queue bound to it, with a
/// delivery limit and a dead-letter queue. Every message is a CloudEvents 1.0 event in binary
/// mode, as the CloudEvents SDKs' RabbitMQ binding writes and reads it (`ce-` headers, the
/// data as the body), so that any SDK, or a plain AMQP client, can read and write it.
///
/// ```no_run
/// use std::time::Duration;
/// use tidings::{RabbitMqQueueType, RabbitMqTransport};
/// use tidings::prelude::*;
///
/// # async fn run() -> Result<(), tidings::Error> {
/// // The defaults: exchange `tidings`, quorum queues, delivery limit 20.
/// let transport = RabbitMqTransport::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
///
/// // Or tuned.
/// let transport = RabbitMqTransport::builder()
///     .exchange("acme.events")
///     .queue_type(RabbitMqQueueType::Quorum)
///     .prefetch(500)
///     .confirm_window(1_000)
///     .delivery_limit(5)
///     .publish_timeout(Duration::from_secs(10))
///     .connect("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .await?;
/// let app = Tidings::builder("catalog").transport(transport).build()?;
/// # Ok(())
/// # }
/// ```
///
/// # Names
///
/// Derived from the contract's name and version and from the consuming context, with the
/// builder's exchange (shown with its default):
///
/// | what | name | `catalog.product-updated` v1, context `search` |
/// |---|---|---|
/// | exchange (topic, durable), one for all contracts | `<exchange>` | `tidings` |
/// | routing key, one per contract version ([`routing_key`](Self::routing_key)) | `<contract>.v<version>` | `catalog.product-updated.v1` |
/// | queue, one per context and contract version, bound with the routing key | `<exchange>:<context>:<routing key>` | `tidings:search:catalog.product-updated.v1` |
/// | dead-letter exchange (direct, durable) | `<exchange>:dead-letter` | `tidings:dead-letter` |
/// | dead-letter queue, one per queue, bound with the queue's name | `<queue>:dead-letter` | `tidings:search:catalog.product-updated.v1:dead-letter` |
///
/// A contract name is words of letters, digits, `-` and `_` between `.`; `*` and `#`, which a
/// binding would read as wildcards, are refused ([`ErrorKind::Invalid`]), as is a name longer
/// than AMQP allows (255 bytes).
///
/// # Topology
///
/// - **Declared when first needed, idempotently.** The exchanges when the transport first
///   publishes or subscribes on a connection; a context's queue, its dead-letter queue and their
///   bindings when it subscribes. Declaring what exists with the same settings changes nothing.
///   What exists with other settings (a queue of another type, delivery limit or dead-letter
///   exchange, an exchange of another kind) is an [`ErrorKind::Invalid`] error naming it and
///   what RabbitMQ found different: tidings does not drift from what the operator set, nor
///   silently take it; delete it, or give the transport its settings.
/// - **Queues** are [quorum queues](RabbitMqQueueType::Quorum) unless set, with
///   `x-delivery-limit` ([`delivery_limit`](RabbitMqTransportBuilder::delivery_limit), 20
///   unless set: RabbitMQ before 4.0 has no limit of its own, and a message that keeps coming
///   back would loop forever), `x-dead-letter-exchange` and `x-dead-letter-routing-key` (to the
///   queue's dead-letter queue), and at-least-once dead-lettering
///   (`x-dead-letter-strategy: at-least-once`, `x-overflow: reject-publish`).
/// - **Each context gets every message; its instances share them.** Two contexts consume from
///   queues of their own; the instances of one context consume from the same queue.
/// - **A queue holds what was published after it was bound.** Unlike a NATS stream, the
///   exchange keeps nothing: a context that subscribes for the first time receives what is
///   published from then on, and its durable queue keeps what is published while it is away.
///
/// # Delivery
///
/// - **Publish** sends the event persistent (`delivery_mode` 2), `mandatory`, with
///   `message_id` = the event id, the CloudEvents attributes as `ce-` headers (and `traceparent`
///   when the event has one), `content_type: application/json` and the data as the body, on a
///   channel in confirm mode, and resolves on the broker's confirmation. At most
///   [`confirm_window`](RabbitMqTransportBuilder::confirm_window) publications await their
///   confirmation at once; the others wait for room.
/// - **Unroutable.** A message that no queue is bound to take (no context subscribes to the
///   contract version yet) is returned by the broker: the publication fails with
///   [`ErrorKind::Refused`], whose source is a [`RabbitMqUnroutable`], and the relay keeps the event
///   in the outbox and tries again with backoff, until a context's queue takes it.
/// - **Ambiguous publications.** A negative confirmation, a connection lost, or no
///   confirmation within [`publish_timeout`](RabbitMqTransportBuilder::publish_timeout) (30 s
///   unless set) is [`ErrorKind::Unavailable`]: the message may or may not be in the queues.
///   The relay publishes it again with the same id; RabbitMQ has no dedupe of its own, and the
///   consuming context's inbox drops a second copy by its id.
/// - **Consume.** Each subscription consumes on a channel of its own, with at most
///   [`prefetch`](RabbitMqTransportBuilder::prefetch) messages delivered and not yet
///   acknowledged (200 unless set). A message is acknowledged once the context's inbox
///   recorded it; one not acknowledged when its channel closes (the instance stopped, the link
///   was cut) is delivered again, counted against the delivery limit; past it, RabbitMQ
///   dead-letters it into the queue's dead-letter queue.
/// - **What is not a tidings CloudEvent** on a queue (no `ce-` headers, data that is not
///   JSON, an event of another contract or version) is handed to the consumer as a message of
///   the subscription's contract and version whose data says why, with the `message_id` as id
///   when it is a UUID: the context's consumer dead-letters it in its store and acknowledges
///   it. A message in structured mode (`content_type: application/cloudevents+json`) is read
///   as well.
///
/// # Recovery
///
/// A transport that connected by URL reconnects by itself: a publication or a subscription
/// that finds the connection lost (the broker restarted, the link was cut) opens a new one,
/// and declares the topology again. Publications in flight when the connection was lost fail
/// with [`ErrorKind::Unavailable`] (published again by the relay, with the same id);
/// subscriptions fail once, then consume again on the new connection, and the messages they
/// had not acknowledged come again. Each loss and each return of the connection is one log
/// line. A transport made [from a connection](RabbitMqTransportBuilder::from_connection)
/// cannot connect again by itself: give that connection lapin's recovery
/// (`ConnectionProperties::enable_auto_recover`), and the transport opens its channels again
/// once lapin recovered it.
#[derive(Clone)]
pub struct RabbitMqTransport {
    inner: Arc<Inner>,
}

/// The kind of queue a [`RabbitMqTransport`] declares for each consuming context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RabbitMqQueueType {
    /// A replicated, durable queue (`x-queue-type: quorum`) with a delivery limit and
    /// at-least-once dead-lettering. The default.
    #[default]
    Quorum,
    /// A classic durable queue: RabbitMQ before 4.0 has no delivery limit for it, so a message
    /// that keeps coming back is not dead-lettered by the broker.
    Classic,
}

/// The settings of a [`RabbitMqTransport`], from [`RabbitMqTransport::builder`]. Each method's
/// doc gives its default.
#[derive(Debug, Clone)]
pub struct RabbitMqTransportBuilder {
    settings: Settings,
}

#[derive(Debug, Clone)]
struct Settings {
    exchange: String,
    queue_type: RabbitMqQueueType,
    prefetch: u16,
    confirm_window: usize,
    delivery_limit: u32,
    publish_timeout: Duration,
    connect_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            exchange: "tidings".to_owned(),
            queue_type: RabbitMqQueueType::Quorum,
            prefetch: 200,
            confirm_window: 256,
            delivery_limit: 20,
            publish_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for RabbitMqTransportBuilder {
    fn default() -> Self {
        RabbitMqTransport::builder()
    }
}

impl RabbitMqTransportBuilder {
    /// The topic exchange every context publishes to, also the start of every queue's name:
    /// `tidings` unless set.
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.settings.exchange = exchange.into();
        self
    }

    /// The kind of queue declared for each consuming context: [`RabbitMqQueueType::Quorum`]
    /// unless set.
    pub fn queue_type(mut self, queue_type: RabbitMqQueueType) -> Self {
        self.settings.queue_type = queue_type;
        self
    }

    /// How many messages a subscription may hold delivered and not yet acknowledged: 200
    /// unless set (at least 1).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.settings.prefetch = prefetch.max(1);
        self
    }

    /// How many publications may await the broker's confirmation at once: 256 unless set (at
    /// least 1).
    pub fn confirm_window(mut self, window: usize) -> Self {
        self.settings.confirm_window = window.max(1);
        self
    }

    /// How many times a quorum queue delivers a message before it dead-letters it: 20 unless
    /// set (at least 1). Ignored for classic queues.
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.settings.delivery_limit = limit.max(1);
        self
    }

    /// How long a publication waits for the broker's confirmation before it fails as
    /// [`ErrorKind::Unavailable`]: 30 seconds unless set.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.settings.publish_timeout = timeout;
        self
    }

    /// How long connecting, and each request that declares or opens something, may take: 10
    /// seconds unless set.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Connects to the broker at `url` (such as `amqp://guest:guest@127.0.0.1:5672/%2f`; the
    /// `%2f` is the virtual host `/`); the transport connects again by itself when the
    /// connection is lost.
    pub async fn connect(self, url: &str) -> Result<RabbitMqTransport, TransportError> {
        let transport = self.build(Connector::Url(url.to_owned()));
        let inner = &transport.inner;
        let mut link = inner.link.lock().await;
        inner.connection(&mut link).await?;
        drop(link);
        Ok(transport)
    }

    /// The transport on a connection the application already has. It cannot connect again by
    /// itself: see [Recovery](RabbitMqTransport#recovery).
    pub fn from_connection(self, connection: Connection) -> RabbitMqTransport {
        self.build(Connector::Given(Arc::new(connection)))
    }

    fn build(self, connector: Connector) -> RabbitMqTransport {
        RabbitMqTransport {
            inner: Arc::new(Inner {
                window: Arc::new(Semaphore::new(self.settings.confirm_window)),
                connector,
                settings: self.settings,
                link: tokio::sync::Mutex::default(),
                declared: std::sync::Mutex::default(),
                up: AtomicBool::new(false),
                generation: AtomicU64::new(0),
            }),
        }
    }
}

impl fmt::Debug for RabbitMqTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqTransport")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl RabbitMqTransport {
    /// Connects to the broker at `url`, with the default settings.
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        Self::builder().connect(url).await
    }

    /// The settings, to tune before connecting.
    pub fn builder() -> RabbitMqTransportBuilder {
        RabbitMqTransportBuilder {
            settings: Settings::default(),
        }
    }

    /// The transport on a connection the application already has, with the default settings.
    pub fn from_connection(connection: Connection) -> Self {
        Self::builder().from_connection(connection)
    }

    /// The routing key of contract `contract` version `version`: `<contract>.v<version>`. Every
    /// publisher of the contract version publishes with it to the exchange, and every consuming
    /// context's queue is bound with it.
    ///
    /// ```
    /// use tidings::RabbitMqTransport;
    ///
    /// assert_eq!(
    ///     RabbitMqTransport::routing_key("catalog.product-updated", 1),
    ///     "catalog.product-updated.v1"
    /// );
    /// ```
    pub fn routing_key(contract: &str, version: u32) -> String {
        super::address::rabbitmq_routing_key(contract, version)
    }

    /// The exchange the transport publishes to.
    pub fn exchange(&self) -> &str {
        &self.inner.settings.exchange
    }

    /// The name of the queue of context `context` for contract `contract` version `version`.
    pub fn queue_name(&self, context: &str, contract: &str, version: u32) -> String {
        self.inner.settings.queue(context, contract, version)
    }

    /// The name of the dead-letter queue of the queue named `queue`.
    pub fn dead_letter_queue_name(queue: &str) -> String {
        format!("{queue}:dead-letter")
    }

    /// The name of the dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        self.inner.settings.dead_letter_exchange()
    }

    /// Declares the exchanges, and checks them if they exist: for an app that wants to fail
    /// at start rather than at its first publication.
    pub async fn declare_exchanges(&self) -> Result<(), TransportError> {
        self.inner.ensure_exchanges().await
    }
}

impl Settings {
    fn queue(&self, context: &str, contract: &str, version: u32) -> String {
        format!(
            "{}:{context}:{}",
            self.exchange,
            RabbitMqTransport::routing_key(contract, version)
        )
    }

    fn dead_letter_exchange(&self) -> String {
        format!("{}:dead-letter", self.exchange)
    }

    /// The routing key of a contract version, checked.
    fn routing_key(&self, contract: &str, version: u32) -> Result<String, TransportError> {
        let key = RabbitMqTransport::routing_key(contract, version);
        let valid = !contract.is_empty()
            && key.split('.').all(|word| !word.is_empty())
            && !key.contains(['*', '#'])
            && !key.contains(char::is_whitespace)
            && key.len() <= 255;
        if !valid {
            return Err(TransportError::new(
                ErrorKind::Invalid,
                format!(
                    "contract `{contract}` version {version} makes `{key}`, which is not a \
                     RabbitMQ routing key tidings can bind: a contract name is letters, digits, \
                     `-` and `_` between `.`, at most 255 bytes"
                ),
                None,
            ));
        }
        Ok(key)
    }
}

/// A publication that the broker could route to no queue: no context has subscribed to the
/// contract version yet (or the exchange's bindings were removed). The source of the
/// [`ErrorKind::Refused`] error of such a publication.
///
/// ```
/// use tidings::{RabbitMqUnroutable, TransportError};
///
/// fn unroutable(error: &TransportError) -> Option<&RabbitMqUnroutable> {
///     std::error::Error::source(error)?.downcast_ref()
/// }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "RabbitMQ routed the message to no queue: exchange `{exchange}`, routing key \
     `{routing_key}` ({reply_code} {reply_text}); no context's queue is bound to it yet"
)]
#[non_exhaustive]
pub struct RabbitMqUnroutable {
    /// The exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// The broker's reply code (312, NO_ROUTE).
    pub reply_code: u16,
    /// The broker's reply text.
    pub reply_text: String,
}

/// How the transport gets its connection.
enum Connector {
    /// It connects to this URL, and again when the connection is lost.
    Url(String),
    /// The application's connection.
    Given(Arc<Connection>),
}

struct Inner {
    connector: Connector,
    settings: Settings,
    /// The connection and the publishing channel, as last opened.
    link: tokio::sync::Mutex<Link>,
    /// Room for the publications awaiting their confirmation.
    window: Arc<Semaphore>,
    /// The exchanges and queues declared on the current connection.
    declared: std::sync::Mutex<HashSet<String>>,
    /// Whether the connection was up when last seen (not before the first one): one log line
    /// per change.
    up: AtomicBool,
    /// Counts the connections opened, so that a failure drops only the one it happened on.
    generation: AtomicU64,
}

#[derive(Default)]
struct Link {
    connection: Option<(u64, Arc<Connection>)>,
    publisher: Option<(u64, Channel)>,
}

/// `what` on the broker, within `timeout`: a broker that does not answer in time is
/// unavailable.
async fn within<T>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    request: impl Future<Output = lapin::Result<T>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(broker_error(what(), error)),
        Err(_) => Err(TransportError::new(
            ErrorKind::Unavailable,
            format!("{}: RabbitMQ did not answer within {timeout:?}", what()),
            None,
        )),
    }
}

/// The AMQP error the broker answered with, if it did.
fn amqp_soft_error(error: &lapin::Error) -> Option<(&AMQPSoftError, String)> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => Some((soft, amqp.get_message().to_string())),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// What failing to `what` with `error` is: a precondition the broker refused (something that
/// exists with other settings) is invalid, an access refused or a resource missing is refused,
/// the rest (the connection lost, the broker away) unavailable.
fn broker_error(what: String, error: lapin::Error) -> TransportError {
    let (kind, why) = match amqp_soft_error(&error) {
        Some((AMQPSoftError::PRECONDITIONFAILED, text)) => (
            ErrorKind::Invalid,
            format!(
                ": it exists with other settings ({text}); delete it, or give the transport \
                 its settings"
            ),
        ),
        Some((AMQPSoftError::ACCESSREFUSED | AMQPSoftError::NOTFOUND, text)) => {
            (ErrorKind::Refused, format!(": {text}"))
        }
        _ => (ErrorKind::Unavailable, String::new()),
    };
    TransportError::new(kind, format!("{what}{why}"), Some(Box::new(error) as _))
}

/// A name as AMQP carries it: at most 255 bytes.
fn short(what: &str, name: &str) -> Result<ShortString, TransportError> {
    ShortString::try_new(name).map_err(|error| {
        TransportError::new(
            ErrorKind::Invalid,
            format!("the {what} `{name}` is longer than AMQP allows"),
            Some(Box::new(error) as _),
        )
    })
}

impl Inner {
    /// The connection, opened again if it was lost (by URL) or checked (given).
    async fn connection(&self, link: &mut Link) -> Result<(u64, Arc<Connection>), TransportError> {
        if let Some((generation, connection)) = &link.connection {
            if connection.status().connected() {
                return Ok((*generation, Arc::clone(connection)));
            }
            self.lost("the connection is closed");
            link.connection = None;
            link.publisher = None;
        }
        let connection = match &self.connector {
            Connector::Given(connection) => {
                if !connection.status().connected() {
                    self.lost("the application's connection is not connected");
                    return Err(TransportError::new(
                        ErrorKind::Unavailable,
                        "the RabbitMQ connection given to the transport is not connected; give it \
                         lapin's recovery (`ConnectionProperties::enable_auto_recover`) for the \
                         transport to go on once it is back",
                        None,
                    ));
                }
                Arc::clone(connection)
            }
            Connector::Url(url) => {
                let connect = Connection::connect(url, ConnectionProperties::default());
                match within(
                    self.settings.connect_timeout,
                    || format!("could not connect to RabbitMQ at `{}`", redacted(url)),
                    connect,
                )
                .await
                {
                    Ok(connection) => Arc::new(connection),
                    Err(error) => {
                        self.lost("connecting failed");
                        // Whatever the broker said, connecting may work later.
                        return Err(TransportError::new(
                            ErrorKind::Unavailable,
                            error.message().to_owned(),
                            Some(Box::new(error) as _),
                        ));
                    }
                }
            }
        };
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        crate::sync::lock(&self.declared).clear();
        if !self.up.swap(true, Ordering::SeqCst) {
            if generation == 1 {
                tracing::info!(exchange = %self.settings.exchange, "connected to RabbitMQ");
            } else {
                tracing::info!(exchange = %self.settings.exchange, "connected to RabbitMQ again");
            }
        }
        link.connection = Some((generation, Arc::clone(&connection)));
        Ok((generation, connection))
    }

    /// Notes that the connection is lost, with one log line when it was up.
    fn lost(&self, why: &str) {
        if self.up.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                exchange = %self.settings.exchange,
                why,
                "lost the connection to RabbitMQ; reconnecting when next needed"
            );
        }
    }

    /// After a failure on the connection of `generation`: forgets its publishing channel, and
    /// the connection itself if it is closed or `stuck` (it did not answer), so that the next
    /// request opens new ones; a newer connection is kept, and so is one that is still up when
    /// only a channel failed.
    async fn forget(&self, generation: u64, why: &str, stuck: bool) {
        let mut link = self.link.lock().await;
        let Some((current, connection)) = &link.connection else {
            return;
        };
        if *current != generation {
            return;
        }
        let lost = stuck || !connection.status().connected();
        if lost && matches!(self.connector, Connector::Url(_)) {
            self.lost(why);
            link.connection = None;
        }
        link.publisher = None;
    }

    /// A new channel on the current connection.
    async fn channel(&self) -> Result<(u64, Channel), TransportError> {
        let (generation, connection) = {
            let mut link = self.link.lock().await;
            self.connection(&mut link).await?
        };
        match within(
            self.settings.connect_timeout,
            || "could not open a RabbitMQ channel".to_owned(),
            connection.create_channel(),
        )
        .await
        {
            Ok(channel) => Ok((generation, channel)),
            Err(error) => {
                self.forget(generation, "a channel could not be opened", false)
                    .await;
                Err(error)
            }
        }
    }

    /// The publishing channel, in confirm mode, opened if needed.
    async fn publisher(&self) -> Result<(u64, Channel), TransportError> {
        let link = self.link.lock().await;
        if let Some((generation, channel)) = &link.publisher
            && channel.status().connected()
        {
            return Ok((*generation, channel.clone()));
        }
        // Boxed, as `ensure_exchanges` is: opening is rare, publishing is not.
        Box::pin(self.open_publisher(link)).await
    }

    /// Opens the publishing channel, in confirm mode, on the link `link` holds.
    async fn open_publisher(
        &self,
        mut link: tokio::sync::MutexGuard<'_, Link>,
    ) -> Result<(u64, Channel), TransportError> {
        let (generation, connection) = self.connection(&mut link).await?;
        let timeout = self.settings.connect_timeout;
        let opened = async {
            let channel = within(
                timeout,
                || "could not open a RabbitMQ channel".to_owned(),
                connection.create_channel(),
            )
            .await?;
            within(
                timeout,
                || "could not put a RabbitMQ channel in confirm mode".to_owned(),
                channel.confirm_select(ConfirmSelectOptions::default()),
            )
            .await?;
            Ok::<_, TransportError>(channel)
        }
        .await;
        match opened {
            Ok(channel) => {
                link.publisher = Some((generation, channel.clone()));
                Ok((generation, channel))
            }
            Err(error) => {
                drop(link);
                self.forget(generation, "a channel could not be opened", false)
                    .await;
                Err(error)
            }
        }
    }

    /// Declares the exchange and the dead-letter exchange, once per connection.
    async fn ensure_exchanges(&self) -> Result<(), TransportError> {
        if crate::sync::lock(&self.declared).contains(&self.settings.exchange) {
            return Ok(());
        }
        // Boxed: the declarations make a large future, which every publication would otherwise
        // carry for a check that passes once they are made.
        Box::pin(self.declare_exchanges()).await
    }

    /// Declares the exchange and the dead-letter exchange.
    async fn declare_exchanges(&self) -> Result<(), TransportError> {
        let exchange = self.settings.exchange.clone();
        let dead_letter = self.settings.dead_letter_exchange();
        let (exchange_name, dead_letter_name) = (
            short("exchange", &exchange)?,
            short("exchange", &dead_letter)?,
        );
        let (_, channel) = self.channel().await?;
        let timeout = self.settings.connect_timeout;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        within(
            timeout,
            || format!("could not declare RabbitMQ exchange `{exchange}` (topic, durable)"),
            channel.exchange_declare(
                exchange_name,
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            ),
        )
        .await?;
        within(
            timeout,
            || format!("could not declare RabbitMQ exchange `{dead_letter}` (direct, durable)"),
            channel.exchange_declare(
                dead_letter_name,
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            ),
        )
        .await?;
        close(channel);
        crate::sync::lock(&self.declared).insert(exchange);
        Ok(())
    }

    /// The arguments of a context's queue.
    fn queue_arguments(&self, queue: &str) -> FieldTable {
        let settings = &self.settings;
        let mut arguments = FieldTable::default();
        let text = |value: &str| AMQPValue::LongString(value.into());
        arguments.insert(
            "x-dead-letter-exchange".into(),
            text(&settings.dead_letter_exchange()),
        );
        arguments.insert("x-dead-letter-routing-key".into(), text(queue));
        if settings.queue_type == RabbitMqQueueType::Quorum {
            arguments.insert("x-queue-type".into(), text("quorum"));
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(settings.delivery_limit)),
            );
            arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
            arguments.insert("x-overflow".into(), text("reject-publish"));
        }
        arguments
    }

    /// Declares the queue of `subscription`, its dead-letter queue and their bindings, once
    /// per connection; returns the queue's name.
    async fn ensure_queue(&self, subscription: &Subscription) -> Result<String, TransportError> {
        let settings = &self.settings;
        let routing_key = settings.routing_key(&subscription.contract, subscription.version)?;
        let queue = settings.queue(
            &subscription.context,
            &subscription.contract,
            subscription.version,
        );
        self.ensure_exchanges().await?;
        if crate::sync::lock(&self.declared).contains(&queue) {
            return Ok(queue);
        }
        let dead_letter = RabbitMqTransport::dead_letter_queue_name(&queue);
        let names = (
            short("queue", &queue)?,
            short("queue", &dead_letter)?,
            short("routing key", &routing_key)?,
        );
        let (queue_name, dead_letter_name, key) = names;
        let (_, channel) = self.channel().await?;
        let timeout = settings.connect_timeout;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let mut dead_letter_arguments = FieldTable::default();
        if settings.queue_type == RabbitMqQueueType::Quorum {
            dead_letter_arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        within(
            timeout,
            || format!("could not declare RabbitMQ queue `{dead_letter}`"),
            channel.queue_declare(dead_letter_name.clone(), durable, dead_letter_arguments),
        )
        .await?;
        within(
            timeout,
            || format!("could not bind RabbitMQ queue `{dead_letter}`"),
            channel.queue_bind(
                dead_letter_name,
                short("exchange", &settings.dead_letter_exchange())?,
                queue_name.clone(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        let arguments = self.queue_arguments(&queue);
        within(
            timeout,
            || {
                format!(
                    "could not declare RabbitMQ queue `{queue}` ({:?}, delivery limit {}, \
                     dead-letter exchange `{}`)",
                    settings.queue_type,
                    settings.delivery_limit,
                    settings.dead_letter_exchange()
                )
            },
            channel.queue_declare(queue_name.clone(), durable, arguments),
        )
        .await?;
        within(
            timeout,
            || {
                format!(
                    "could not bind RabbitMQ queue `{queue}` to exchange `{}` with `{routing_key}`",
                    settings.exchange
                )
            },
            channel.queue_bind(
                queue_name,
                short("exchange", &settings.exchange)?,
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        close(channel);
        tracing::debug!(%queue, %routing_key, "declared a RabbitMQ queue");
        crate::sync::lock(&self.declared).insert(queue.clone());
        Ok(queue)
    }

    /// Publishes `message` and waits for the broker's confirmation.
    async fn publish(&self, message: &Message) -> Result<(), TransportError> {
        let routing_key = self
            .settings
            .routing_key(&message.contract, message.version)?;
        let key = short("routing key", &routing_key)?;
        let exchange = short("exchange", &self.settings.exchange)?;
        self.ensure_exchanges().await?;
        let _room = self.window.acquire().await.map_err(|error| {
            TransportError::new(
                ErrorKind::Unavailable,
                "the RabbitMQ transport's confirm window is closed",
                Some(Box::new(error) as _),
            )
        })?;
        let (generation, channel) = self.publisher().await?;
        let binary = cloudevents::to_binary(message, HEADER_PREFIX);
        let mut headers = FieldTable::default();
        for (name, value) in binary.headers {
            let Ok(name) = ShortString::try_new(name) else {
                continue;
            };
            headers.insert(name, AMQPValue::LongString(value.into()));
        }
        if let Some(traceparent) = crate::trace::hop_traceparent(message) {
            headers.insert(
                "traceparent".into(),
                AMQPValue::LongString(traceparent.into()),
            );
        }
        let properties = BasicProperties::default()
            .with_message_id(message.id.to_string().into())
            .with_content_type(binary.content_type.into())
            .with_delivery_mode(2)
            .with_timestamp(u64::try_from(message.time.timestamp()).unwrap_or_default())
            .with_headers(headers);
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let what = || {
            format!(
                "could not publish event {} to RabbitMQ exchange `{}` with routing key \
                 `{routing_key}`",
                message.id, self.settings.exchange
            )
        };
        // Boxed: the client's publish and confirm make a large future.
        let confirm = Box::pin(async {
            channel
                .basic_publish(exchange, key, options, &binary.body, properties)
                .await?
                .await
        });
        let confirmed = tokio::time::timeout(self.settings.publish_timeout, confirm).await;
        let timed_out = confirmed.is_err();
        let error = match confirmed {
            Ok(Ok(Confirmation::Ack(None))) => return Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                let unroutable = RabbitMqUnroutable {
                    exchange: self.settings.exchange.clone(),
                    routing_key: routing_key.clone(),
                    reply_code: returned.reply_code,
                    reply_text: returned.reply_text.to_string(),
                };
                return Err(TransportError::new(
                    ErrorKind::Refused,
                    what(),
                    Some(Box::new(unroutable) as _),
                ));
            }
            Ok(Ok(Confirmation::Nack(_))) => {
                return Err(TransportError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{}: the broker could not take it (negative confirmation)",
                        what()
                    ),
                    None,
                ));
            }
            Ok(Ok(Confirmation::NotRequested)) => TransportError::new(
                ErrorKind::Unavailable,
                format!("{}: the channel was not in confirm mode", what()),
                None,
            ),
            Ok(Err(error)) => broker_error(
                format!("{}: whether the broker took it is unknown", what()),
                error,
            ),
            Err(_) => TransportError::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: no confirmation within {:?}, whether the broker took it is unknown",
                    what(),
                    self.settings.publish_timeout
                ),
                None,
            ),
        };
        // Whatever happened to the channel, the next publication opens another (and a new
        // connection if this one is lost, or stuck: no confirmation came). Boxed: failures are
        // rare, and every publication's future would otherwise carry this one.
        Box::pin(self.forget(generation, "a publication failed on it", timed_out)).await;
        Err(error)
    }

    /// Starts consuming the queue of `subscription` on a channel of its own.
    async fn consume(&self, subscription: &Subscription) -> Result<Consuming, TransportError> {
        let queue = self.ensure_queue(subscription).await?;
        let (generation, channel) = self.channel().await?;
        let timeout = self.settings.connect_timeout;
        let started = async {
            within(
                timeout,
                || "could not set the prefetch of a RabbitMQ channel".to_owned(),
                channel.basic_qos(self.settings.prefetch, BasicQosOptions::default()),
            )
            .await?;
            within(
                timeout,
                || format!("could not consume RabbitMQ queue `{queue}`"),
                channel.basic_consume(
                    short("queue", &queue)?,
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await
        }
        .await;
        match started {
            Ok(consumer) => Ok(Consuming {
                generation,
                queue,
                consumer,
            }),
            Err(error) => {
                if error.kind() == ErrorKind::Unavailable {
                    self.forget(generation, "a consumer could not start", false)
                        .await;
                }
                Err(error)
            }
        }
    }
}

/// Closes `channel` without waiting for the broker's answer.
fn close(channel: Channel) {
    tokio::spawn(async move {
        let _ = channel.close(200, "OK".into()).await;
    });
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Transport for RabbitMqTransport {
    fn system(&self) -> &'static str {
        "rabbitmq"
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move { self.inner.publish(&message).await })
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        Box::pin(async move {
            let consuming = self.inner.consume(&subscription).await?;
            Ok(Box::new(RabbitMqInbound {
                inner: Arc::clone(&self.inner),
                subscription,
                consuming: Some(consuming),
            }) as Box<dyn Inbound>)
        })
    }
}

/// A consumer on a queue, and the connection it runs on.
struct Consuming {
    generation: u64,
    queue: String,
    consumer: lapin::Consumer,
}

/// The messages of one subscription: a consumer on the context's queue, started again (queue
/// declared again) after an error.
struct RabbitMqInbound {
    inner: Arc<Inner>,
    subscription: Subscription,
    consuming: Option<Consuming>,
}

impl Inbound for RabbitMqInbound {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>> {
        Box::pin(async move {
            let consuming = match &mut self.consuming {
                Some(consuming) => consuming,
                None => match self.inner.consume(&self.subscription).await {
                    Ok(consuming) => self.consuming.insert(consuming),
                    Err(error) => return Some(Err(error)),
                },
            };
            let error = match consuming.consumer.next().await {
                Some(Ok(delivery)) => return Some(Ok(self.received(delivery))),
                Some(Err(error)) => Some(error),
                None => None,
            };
            // The channel or the connection closed, or the broker cancelled the consumer (its
            // queue deleted): the next call consumes anew, on a new connection if need be.
            // What was delivered and not acknowledged comes again.
            let (generation, queue) = self
                .consuming
                .take()
                .map(|consuming| (consuming.generation, consuming.queue))
                .unwrap_or_default();
            self.inner
                .forget(generation, "a consumer's channel closed", false)
                .await;
            crate::sync::lock(&self.inner.declared).remove(&queue);
            Some(Err(TransportError::new(
                ErrorKind::Unavailable,
                format!(
                    "consuming RabbitMQ queue `{queue}` for context `{}` stopped; consuming again",
                    self.subscription.context
                ),
                error.map(|error| Box::new(error) as _),
            )))
        })
    }
}

impl RabbitMqInbound {
    /// `delivery` as a received message, acknowledged on its channel.
    fn received(&self, delivery: lapin::message::Delivery) -> Received {
        let message = self.decode(&delivery);
        let queue = self
            .consuming
            .as_ref()
            .map(|consuming| consuming.queue.clone())
            .unwrap_or_default();
        let acker = delivery.acker;
        Received::new(message, move || {
            Box::pin(async move {
                let failed = |source: Option<lapin::Error>| {
                    TransportError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "could not acknowledge a message of RabbitMQ queue `{queue}`: its \
                             channel is closed, and the message comes again"
                        ),
                        source.map(|error| Box::new(error) as _),
                    )
                };
                match acker.ack(BasicAckOptions::default()).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(failed(None)),
                    Err(error) => Err(failed(Some(error))),
                }
            })
        })
    }

    /// The message `delivery` carries, or, if it is not a CloudEvent of the subscription's
    /// contract version, one that the consumer dead-letters.
    fn decode(&self, delivery: &lapin::message::Delivery) -> Message {
        let properties = &delivery.properties;
        let content_type = properties.content_type().as_ref().map(ShortString::as_str);
        let header = |name: &str| {
            properties
                .headers()
                .as_ref()
                .and_then(|headers| headers.inner().get(name))
                .and_then(header_text)
        };
        let decoded = if cloudevents::is_structured(content_type) {
            cloudevents::from_structured(&delivery.data)
        } else {
            cloudevents::from_binary(HEADER_PREFIX, header, content_type, &delivery.data)
        };
        let why =
            match envelope::of_subscription(decoded, &self.subscription, header("traceparent")) {
                Ok(message) => return message,
                Err(why) => why,
            };
        let queue = self
            .consuming
            .as_ref()
            .map(|consuming| consuming.queue.as_str())
            .unwrap_or_default();
        envelope::unreadable(
            &self.subscription,
            envelope::Unreadable {
                place: format!(
                    "RabbitMQ queue `{queue}` (routing key `{}`)",
                    delivery.routing_key
                ),
                source: format!("amqp:{}/{}", delivery.exchange, delivery.routing_key),
                id: properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned()),
                traceparent: header("traceparent"),
                why,
                payload: &delivery.data,
            },
        )
    }
}

/// A header's value as text: strings as they are, numbers and booleans written out; `None`
/// for what has no text form (tables, arrays, bytes).
fn header_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::ShortString(text) => text.as_str().to_owned(),
        AMQPValue::Boolean(value) => value.to_string(),
        AMQPValue::ShortShortInt(value) => value.to_string(),
        AMQPValue::ShortShortUInt(value) => value.to_string(),
        AMQPValue::ShortInt(value) => value.to_string(),
        AMQPValue::ShortUInt(value) => value.to_string(),
        AMQPValue::LongInt(value) => value.to_string(),
        AMQPValue::LongUInt(value) => value.to_string(),
        AMQPValue::LongLongInt(value) => value.to_string(),
        AMQPValue::Timestamp(seconds) => {
            chrono::DateTime::from_timestamp(i64::try_from(*seconds).ok()?, 0)?.to_rfc3339()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract_and_the_context() {
        let settings = Settings::default();
        assert_eq!(
            settings.routing_key("catalog.product-updated", 1).unwrap(),
            "catalog.product-updated.v1"
        );
        assert_eq!(
            settings.queue("search", "catalog.product-updated", 1),
            "tidings:search:catalog.product-updated.v1"
        );
        assert_eq!(settings.dead_letter_exchange(), "tidings:dead-letter");
        assert_eq!(
            RabbitMqTransport::dead_letter_queue_name("tidings:search:x.v1"),
            "tidings:search:x.v1:dead-letter"
        );
        for bad in ["", "a..b", ".a", "a.*", "a b", "a.#", &"x".repeat(300)] {
            let error = settings.routing_key(bad, 1).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn a_queue_gets_a_delivery_limit_and_a_dead_letter_exchange() {
        let inner = RabbitMqTransport::builder()
            .delivery_limit(3)
            .build(Connector::Url(String::new()))
            .inner;
        let arguments = inner.queue_arguments("tidings:search:x.v1");
        let arguments = arguments.inner();
        let text = |name: &str| arguments.get(name).and_then(header_text);
        assert_eq!(text("x-queue-type").as_deref(), Some("quorum"));
        assert_eq!(text("x-delivery-limit").as_deref(), Some("3"));
        assert_eq!(
            text("x-dead-letter-exchange").as_deref(),
            Some("tidings:dead-letter")
        );
        assert_eq!(
            text("x-dead-letter-routing-key").as_deref(),
            Some("tidings:search:x.v1")
        );
        assert_eq!(
            text("x-dead-letter-strategy").as_deref(),
            Some("at-least-once")
        );
        let classic = RabbitMqTransport::builder()
            .queue_type(RabbitMqQueueType::Classic)
            .build(Connector::Url(String::new()))
            .inner;
        let arguments = classic.queue_arguments("q");
        assert!(!arguments.contains_key("x-delivery-limit"));
        assert!(arguments.contains_key("x-dead-letter-exchange"));
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redacted("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redacted("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
