//! [`PubSubTransport`]: integration events through Google Cloud Pub/Sub, with the official
//! `google-cloud-pubsub` client.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::{
    BasePublisher, Publisher, Subscriber, SubscriptionAdmin, TopicAdmin,
};
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::Message as PubSubMessage;
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior};

use super::{
    BoxFuture, ErrorKind, Inbound, Message, Received, Subscription, Transport, TransportError,
    address, cloudevents,
};
use crate::envelope;

/// The prefix of the attributes that carry the CloudEvents attributes (binary mode), as the
/// CloudEvents Pub/Sub protocol binding has them: `ce-id`, `ce-type`, ...
const ATTRIBUTE_PREFIX: &str = cloudevents::PUBSUB_ATTRIBUTE_PREFIX;

/// The attribute that carries `datacontenttype` in binary mode, and the event format's media
/// type in structured mode.
const CONTENT_TYPE: &str = "Content-Type";

/// The environment variable that points Google's clients at the Pub/Sub emulator.
pub const EMULATOR_HOST_VARIABLE: &str = "PUBSUB_EMULATOR_HOST";

/// The transport through Google Cloud Pub/Sub: a topic per contract version that every
/// context publishes to, and for each consuming context a subscription to it with message
/// ordering enabled. Every message is a CloudEvents 1.0 event in binary mode, as the
/// CloudEvents Pub/Sub protocol binding has it (`ce-` attributes, `Content-Type` for
/// `datacontenttype`, the data as the message's data), so that any SDK, or a plain Pub/Sub
/// client, can read and write it.
///
/// ```no_run
/// use std::time::Duration;
/// use tidings::{PubSubTopology, PubSubTransport};
/// use tidings::prelude::*;
///
/// # async fn run() -> Result<(), tidings::Error> {
/// // Application Default Credentials, or the emulator when PUBSUB_EMULATOR_HOST is set.
/// let transport = PubSubTransport::connect("my-project").await?;
///
/// // Or tuned: topics and subscriptions made by infrastructure code, only checked.
/// let transport = PubSubTransport::builder()
///     .prefix("acme")
///     .topology(PubSubTopology::Verify)
///     .max_outstanding_messages(500)
///     .publish_timeout(Duration::from_secs(10))
///     .connect("my-project")
///     .await?;
/// let app = Tidings::builder("catalog").transport(transport).build()?;
/// # Ok(())
/// # }
/// ```
///
/// # Names
///
/// Derived from the contract's name and version and from the consuming context, with the
/// builder's prefix (shown with its default), in the project given to
/// [`connect`](Self::connect):
///
/// | what | name | `catalog.product-updated` v1, context `search` |
/// |---|---|---|
/// | topic, one per contract version ([`topic_name`](Self::topic_name)) | `<prefix>.<contract>.v<version>` | `tidings.catalog.product-updated.v1` |
/// | subscription, one per context and contract version ([`subscription_name`](Self::subscription_name)) | `<topic>~<context>` | `tidings.catalog.product-updated.v1~search` |
///
/// Pub/Sub takes names of 3 to 255 letters, digits and `-_.~+%`, starting with a letter and
/// not with `goog`; a contract or context that makes another name is refused
/// ([`ErrorKind::Invalid`]).
///
/// # Topology
///
/// - **Created when first needed, idempotently** ([`PubSubTopology::Create`], the default):
///   a topic when the transport first publishes to it or a context subscribes to it, a
///   context's subscription (message ordering enabled, the ack deadline of
///   [`ack_deadline`](PubSubTransportBuilder::ack_deadline)) when it subscribes. What exists
///   is used; a subscription that exists on another topic or without message ordering is an
///   [`ErrorKind::Invalid`] error naming it: tidings does not drift from what the operator
///   set, nor silently take it.
/// - **Only verified** ([`PubSubTopology::Verify`]), for topics and subscriptions managed by
///   infrastructure code: the transport creates nothing, and a topic or subscription that is
///   missing is an [`ErrorKind::Refused`] error naming it.
/// - **Each context gets every message; its instances share them.** Two contexts pull from
///   subscriptions of their own; the instances of one context pull from the same one.
/// - **A subscription holds what was published after it was made.** A topic keeps nothing by
///   itself: a publication to a topic that no subscription takes yet would be dropped by
///   Pub/Sub, so the transport refuses it ([`ErrorKind::Refused`]) and the relay keeps the
///   event in the outbox and tries again with backoff, until a context subscribed. Whether the
///   topic has a subscription is checked once, and again after a publication failed.
///
/// # Delivery
///
/// - **Publish** sends the data with the CloudEvents attributes as `ce-` attributes (and
///   `traceparent` when the event has one), `Content-Type: application/json`, and the
///   contract's key as the ordering key, and resolves on the server's acknowledgement. The
///   client batches publications of one topic
///   ([`batch_size`](PubSubTransportBuilder::batch_size),
///   [`batch_delay`](PubSubTransportBuilder::batch_delay)), one batch in flight per ordering
///   key.
/// - **Ambiguous publications.** An error of the link or the server, or no acknowledgement
///   within [`publish_timeout`](PubSubTransportBuilder::publish_timeout) (30 s unless set), is
///   [`ErrorKind::Unavailable`]: the message may or may not be in the subscriptions. The relay
///   publishes it again with the same id, and the consuming context's inbox drops a second
///   copy by its id (`ce-id`).
/// - **Paused ordering keys.** After a failed publication, the client pauses the message's
///   ordering key and fails every later publication with it; the transport resumes the key at
///   once, so that the relay's next attempt, which publishes the failed event again first,
///   goes through in order.
/// - **Consume.** Each subscription is a streaming pull with at most
///   [`max_outstanding_messages`](PubSubTransportBuilder::max_outstanding_messages) messages
///   delivered and not yet acknowledged (1,000 unless set). The client extends their ack
///   deadlines while the context's inbox records them; a message is acknowledged once recorded.
///   One not acknowledged (the instance stopped, the link was cut) is delivered again.
/// - **What is not a tidings CloudEvent** on a subscription (no `ce-` attributes, data that is
///   not JSON, an event of another contract or version) is handed to the consumer as a message
///   of the subscription's contract and version whose data says why, with the `ce-id` as id
///   when it is a UUID: the context's consumer dead-letters it in its store and acknowledges
///   it. A message in structured mode (`Content-Type: application/cloudevents+json`) is read
///   as well.
///
/// # Recovery
///
/// The client reconnects by itself; a streaming pull that failed for good is started again by
/// the next call (its subscription created again, if the topology is created), and the
/// messages it had not acknowledged come again. A pull that delivered nothing for
/// [`subscription_check`](PubSubTransportBuilder::subscription_check) has its subscription
/// checked: one found gone is made again at once, not when the client, its link lost and
/// trying again with a backoff of up to a minute, would learn it. What the transport knows to
/// exist is checked again after a failure: a topic found gone when a subscription to it is made (a server that
/// restarted empty, such as the emulator) is made again first, and a topic found without a
/// subscription is made sure of again before the next publication.
#[derive(Clone)]
pub struct PubSubTransport {
    inner: Arc<Inner>,
}

/// Whether a [`PubSubTransport`] creates the topics and subscriptions it needs, or only checks
/// that they exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PubSubTopology {
    /// Create what is missing, idempotently. The default.
    #[default]
    Create,
    /// Create nothing; a missing topic or subscription is an error naming it.
    Verify,
}

/// The Pub/Sub clients a [`PubSubTransport`] runs on: what
/// [`PubSubTransportBuilder::from_clients`] takes, for an application that made its own (with
/// credentials, an endpoint or retry policies of its own).
///
/// ```no_run
/// use google_cloud_pubsub::client::{BasePublisher, Subscriber, SubscriptionAdmin, TopicAdmin};
/// use tidings::{PubSubClients, PubSubTransport};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let clients = PubSubClients {
///     publisher: BasePublisher::builder().build().await?,
///     subscriber: Subscriber::builder().build().await?,
///     topic_admin: TopicAdmin::builder().build().await?,
///     subscription_admin: SubscriptionAdmin::builder().build().await?,
/// };
/// let transport = PubSubTransport::from_clients("my-project", clients);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PubSubClients {
    /// Publishes, through a publisher per topic.
    pub publisher: BasePublisher,
    /// Pulls.
    pub subscriber: Subscriber,
    /// Creates and checks topics.
    pub topic_admin: TopicAdmin,
    /// Creates and checks subscriptions.
    pub subscription_admin: SubscriptionAdmin,
}

impl PubSubClients {
    /// The clients on Pub/Sub with Application Default Credentials, or on the emulator at
    /// `emulator` (`host:port`), without credentials. The publisher does not retry by itself:
    /// the relay publishes a failed event again, under its id.
    pub async fn connect(emulator: Option<&str>) -> Result<Self, TransportError> {
        install_crypto_provider();
        let failed = |error: google_cloud_gax::client_builder::Error| {
            TransportError::new(
                ErrorKind::Unavailable,
                match emulator {
                    Some(host) => {
                        format!("could not make a Pub/Sub client for the emulator at `{host}`")
                    }
                    None => {
                        "could not make a Pub/Sub client (with Application Default Credentials)"
                            .to_owned()
                    }
                },
                Some(Box::new(error) as _),
            )
        };
        macro_rules! client {
            ($builder:expr) => {{
                let builder = $builder;
                match emulator {
                    Some(host) => builder
                        .with_endpoint(format!("http://{host}"))
                        .with_credentials(
                            google_cloud_auth::credentials::anonymous::Builder::new().build(),
                        ),
                    None => builder,
                }
                .build()
                .await
                .map_err(failed)?
            }};
        }
        Ok(PubSubClients {
            // The relay retries, with backoff and under the event's id, each publication that
            // failed: the client, retrying by itself, would hold it past the relay's view.
            publisher: client!(
                BasePublisher::builder()
                    .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
            ),
            subscriber: client!(Subscriber::builder()),
            topic_admin: client!(TopicAdmin::builder()),
            subscription_admin: client!(SubscriptionAdmin::builder()),
        })
    }
}

/// The settings of a [`PubSubTransport`], from [`PubSubTransport::builder`]. Each method's doc
/// gives its default.
#[derive(Debug, Clone)]
pub struct PubSubTransportBuilder {
    settings: Settings,
    emulator: Option<String>,
}

#[derive(Debug, Clone)]
struct Settings {
    prefix: String,
    topology: PubSubTopology,
    max_outstanding_messages: i64,
    ack_deadline: Duration,
    batch_size: u32,
    batch_delay: Duration,
    publish_timeout: Duration,
    request_timeout: Duration,
    subscription_check: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: address::DEFAULT_PREFIX.to_owned(),
            topology: PubSubTopology::Create,
            max_outstanding_messages: 1_000,
            ack_deadline: Duration::from_secs(60),
            batch_size: 100,
            batch_delay: Duration::from_millis(5),
            publish_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            subscription_check: Duration::from_secs(30),
        }
    }
}

impl Default for PubSubTransportBuilder {
    fn default() -> Self {
        PubSubTransport::builder()
    }
}

impl PubSubTransportBuilder {
    /// The start of every topic's name: `tidings` unless set.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// Whether topics and subscriptions are created or only verified:
    /// [`PubSubTopology::Create`] unless set.
    pub fn topology(mut self, topology: PubSubTopology) -> Self {
        self.settings.topology = topology;
        self
    }

    /// The Pub/Sub emulator at `host` (`127.0.0.1:8085`), without credentials. Unless set, the
    /// emulator named by `PUBSUB_EMULATOR_HOST` if it is set, else Pub/Sub with Application
    /// Default Credentials.
    pub fn emulator(mut self, host: impl Into<String>) -> Self {
        self.emulator = Some(host.into());
        self
    }

    /// How many messages a subscription may hold delivered and not yet acknowledged: 1,000
    /// unless set (at least 1).
    pub fn max_outstanding_messages(mut self, count: i64) -> Self {
        self.settings.max_outstanding_messages = count.max(1);
        self
    }

    /// The ack deadline of the subscriptions the transport creates, and the longest the client
    /// extends a lease by at once: 60 seconds unless set (10 s to 600 s).
    pub fn ack_deadline(mut self, deadline: Duration) -> Self {
        self.settings.ack_deadline =
            deadline.clamp(Duration::from_secs(10), Duration::from_secs(600));
        self
    }

    /// How many publications of one topic the client sends in one request at most: 100 unless
    /// set (1 to 1,000).
    pub fn batch_size(mut self, size: u32) -> Self {
        self.settings.batch_size = size.clamp(1, 1_000);
        self
    }

    /// How long the client waits for more publications to fill a request: 5 milliseconds
    /// unless set.
    pub fn batch_delay(mut self, delay: Duration) -> Self {
        self.settings.batch_delay = delay;
        self
    }

    /// How long a publication waits for the server's acknowledgement before it fails as
    /// [`ErrorKind::Unavailable`]: 30 seconds unless set.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.settings.publish_timeout = timeout;
        self
    }

    /// How long a streaming pull may go without a message before the transport checks that
    /// its subscription still exists (and again after as long each time): 30 seconds unless
    /// set (at least 1 s). A subscription found gone (deleted, or lost by an emulator that
    /// restarted) is made again at once (with [`PubSubTopology::Create`]), rather than when
    /// the client, whose link was lost, next tries, up to a minute later.
    pub fn subscription_check(mut self, every: Duration) -> Self {
        self.settings.subscription_check = every.max(Duration::from_secs(1));
        self
    }

    /// How long each request that creates or checks a topic or subscription may take: 10
    /// seconds unless set.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// Makes the clients for project `project` (see [`emulator`](Self::emulator)). The clients
    /// connect lazily: an unreachable server shows at the first publication or subscription.
    pub async fn connect(self, project: &str) -> Result<PubSubTransport, TransportError> {
        let emulator = self.emulator.clone().or_else(|| {
            std::env::var(EMULATOR_HOST_VARIABLE)
                .ok()
                .filter(|host| !host.trim().is_empty())
        });
        let clients = PubSubClients::connect(emulator.as_deref()).await?;
        tracing::info!(
            project,
            emulator = emulator.as_deref().unwrap_or("no"),
            prefix = %self.settings.prefix,
            "Pub/Sub clients made"
        );
        Ok(self.from_clients(project, clients))
    }

    /// The transport for project `project` on clients the application already has.
    pub fn from_clients(self, project: &str, clients: PubSubClients) -> PubSubTransport {
        PubSubTransport {
            inner: Arc::new(Inner {
                project: project.to_owned(),
                settings: self.settings,
                clients,
                publishers: std::sync::Mutex::default(),
                topics: std::sync::Mutex::default(),
                routable: std::sync::Mutex::default(),
            }),
        }
    }
}

impl fmt::Debug for PubSubTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSubTransport")
            .field("project", &self.inner.project)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl PubSubTransport {
    /// The transport for project `project`, with the default settings: Application Default
    /// Credentials, or the emulator that `PUBSUB_EMULATOR_HOST` names.
    pub async fn connect(project: &str) -> Result<Self, TransportError> {
        Self::builder().connect(project).await
    }

    /// The settings, to tune before connecting.
    pub fn builder() -> PubSubTransportBuilder {
        PubSubTransportBuilder {
            settings: Settings::default(),
            emulator: None,
        }
    }

    /// The transport for project `project` on clients the application already has, with the
    /// default settings.
    pub fn from_clients(project: &str, clients: PubSubClients) -> Self {
        Self::builder().from_clients(project, clients)
    }

    /// The project.
    pub fn project(&self) -> &str {
        &self.inner.project
    }

    /// The name (the id, without `projects/<project>/topics/`) of the topic of contract
    /// `contract` version `version`: `<prefix>.<contract>.v<version>`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tidings::TransportError> {
    /// let transport = tidings::PubSubTransport::connect("my-project").await?;
    /// assert_eq!(
    ///     transport.topic_name("catalog.product-updated", 1),
    ///     "tidings.catalog.product-updated.v1"
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn topic_name(&self, contract: &str, version: u32) -> String {
        address::pubsub_topic(&self.inner.settings.prefix, contract, version)
    }

    /// The name of the subscription of context `context` to contract `contract` version
    /// `version`: `<topic>~<context>`.
    pub fn subscription_name(&self, context: &str, contract: &str, version: u32) -> String {
        address::pubsub_subscription(&self.inner.settings.prefix, context, contract, version)
    }

    /// The clients the transport runs on.
    pub fn clients(&self) -> &PubSubClients {
        &self.inner.clients
    }
}

/// Installs rustls' `ring` provider as the process's, unless it has one: the clients take
/// TLS from it (tidings leaves out their default, `aws-lc-rs`, which needs a C toolchain).
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may have installed one meanwhile: either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

struct Inner {
    project: String,
    settings: Settings,
    clients: PubSubClients,
    /// A publisher per topic (by full name), made when first needed.
    publishers: std::sync::Mutex<HashMap<String, Publisher>>,
    /// The topics known to exist.
    topics: std::sync::Mutex<HashSet<String>>,
    /// The topics known to have a subscription.
    routable: std::sync::Mutex<HashSet<String>>,
}

/// Whether `name` is a name Pub/Sub takes for a topic or subscription.
fn valid_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.starts_with("goog")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
}

/// `name`, checked: an [`ErrorKind::Invalid`] error says what made it.
fn checked(
    what: &str,
    name: String,
    made_of: impl FnOnce() -> String,
) -> Result<String, TransportError> {
    if valid_name(&name) {
        return Ok(name);
    }
    Err(TransportError::new(
        ErrorKind::Invalid,
        format!(
            "{} makes the {what} name `{name}`, which Pub/Sub does not take: 3 to 255 letters, \
             digits and `-_.~+%`, starting with a letter and not with `goog`",
            made_of()
        ),
        None,
    ))
}

/// The kind of a failed request: what the server refused for good is refused, what is wrong
/// with the request invalid, the rest (the link, the server away or busy) unavailable.
fn kind_of(error: &google_cloud_pubsub::Error) -> ErrorKind {
    match error.status().map(|status| status.code) {
        Some(Code::NotFound | Code::PermissionDenied | Code::Unauthenticated) => ErrorKind::Refused,
        Some(Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange) => {
            ErrorKind::Invalid
        }
        _ if error.is_authentication() && !error.is_transient_and_before_rpc() => {
            ErrorKind::Refused
        }
        _ => ErrorKind::Unavailable,
    }
}

/// `error` of a request that tried to `what`.
fn request_error(what: String, error: google_cloud_pubsub::Error) -> TransportError {
    TransportError::new(kind_of(&error), what, Some(Box::new(error) as _))
}

impl Inner {
    fn topic_path(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    fn subscription_path(&self, subscription: &str) -> String {
        format!("projects/{}/subscriptions/{subscription}", self.project)
    }

    /// The topic of a contract version, its name checked.
    fn topic(&self, contract: &str, version: u32) -> Result<String, TransportError> {
        checked(
            "topic",
            address::pubsub_topic(&self.settings.prefix, contract, version),
            || format!("contract `{contract}` version {version}"),
        )
    }

    /// `request` within the request timeout.
    async fn within<T>(
        &self,
        what: impl FnOnce() -> String,
        request: impl Future<Output = google_cloud_pubsub::Result<T>>,
    ) -> Result<Result<T, google_cloud_pubsub::Error>, TransportError> {
        match tokio::time::timeout(self.settings.request_timeout, request).await {
            Ok(result) => Ok(result),
            Err(_) => Err(TransportError::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: Pub/Sub did not answer within {:?}",
                    what(),
                    self.settings.request_timeout
                ),
                None,
            )),
        }
    }

    /// Makes sure topic `topic` exists: creates it, or checks it.
    async fn ensure_topic(&self, topic: &str) -> Result<(), TransportError> {
        let path = self.topic_path(topic);
        if crate::sync::lock(&self.topics).contains(&path) {
            return Ok(());
        }
        let admin = &self.clients.topic_admin;
        match self.settings.topology {
            PubSubTopology::Create => {
                let what = || format!("could not create Pub/Sub topic `{path}`");
                match self
                    .within(what, admin.create_topic().set_name(path.clone()).send())
                    .await?
                {
                    Ok(_) => tracing::debug!(topic = %path, "created a Pub/Sub topic"),
                    Err(error)
                        if error
                            .status()
                            .is_some_and(|s| s.code == Code::AlreadyExists) => {}
                    Err(error) => return Err(request_error(what(), error)),
                }
            }
            PubSubTopology::Verify => {
                let what = || format!("could not check Pub/Sub topic `{path}`");
                match self
                    .within(what, admin.get_topic().set_topic(path.clone()).send())
                    .await?
                {
                    Ok(_) => {}
                    Err(error) if error.status().is_some_and(|s| s.code == Code::NotFound) => {
                        return Err(TransportError::new(
                            ErrorKind::Refused,
                            format!(
                                "Pub/Sub topic `{path}` does not exist, and the transport only \
                                 verifies the topology (PubSubTopology::Verify): create it"
                            ),
                            Some(Box::new(error) as _),
                        ));
                    }
                    Err(error) => return Err(request_error(what(), error)),
                }
            }
        }
        crate::sync::lock(&self.topics).insert(path);
        Ok(())
    }

    /// Makes sure topic `topic` exists and a subscription takes what is published to it; once
    /// it did, trusts it until a publication fails.
    async fn ensure_routable(&self, topic: &str) -> Result<String, TransportError> {
        let path = self.topic_path(topic);
        if crate::sync::lock(&self.routable).contains(&path) {
            return Ok(path);
        }
        // Boxed: the requests make a large future, which every publication would otherwise
        // carry for a check that passes once the topic is known.
        Box::pin(self.make_routable(topic, path)).await
    }

    /// Makes sure topic `topic`, at `path`, exists and has a subscription.
    async fn make_routable(&self, topic: &str, path: String) -> Result<String, TransportError> {
        self.ensure_topic(topic).await?;
        let what = || format!("could not list the subscriptions of Pub/Sub topic `{path}`");
        let listed = self
            .within(
                what,
                self.clients
                    .topic_admin
                    .list_topic_subscriptions()
                    .set_topic(path.clone())
                    .set_page_size(1)
                    .send(),
            )
            .await
            .and_then(|listed| listed.map_err(|error| request_error(what(), error)));
        let listed = match listed {
            Ok(listed) => listed,
            Err(error) => {
                // The topic may have gone meanwhile (the server restarted empty): made sure of
                // again next time.
                self.forget_topic(&path);
                return Err(error);
            }
        };
        if listed.subscriptions.is_empty() {
            // Made sure of again next time too: the emulator lists no subscription, rather
            // than refusing, for a topic it lost in a restart, and then nobody would make the
            // topic again, nor the subscription that the relay waits for.
            self.forget_topic(&path);
            return Err(TransportError::new(
                ErrorKind::Refused,
                format!(
                    "Pub/Sub topic `{path}` has no subscription: no context subscribes to it \
                     yet, and Pub/Sub would drop the message"
                ),
                None,
            ));
        }
        crate::sync::lock(&self.routable).insert(path.clone());
        Ok(path)
    }

    /// After a failure on topic `path`: checks it again before the next publication.
    fn forget_topic(&self, path: &str) {
        crate::sync::lock(&self.routable).remove(path);
        crate::sync::lock(&self.topics).remove(path);
    }

    /// Makes sure the subscription of `subscription` exists, on its topic, with message
    /// ordering: creates it, or checks it. Returns its full name.
    async fn ensure_subscription(
        &self,
        subscription: &Subscription,
    ) -> Result<String, TransportError> {
        let Subscription {
            contract,
            version,
            context,
        } = subscription;
        let topic = self.topic(contract, *version)?;
        let name = checked(
            "subscription",
            address::pubsub_subscription(&self.settings.prefix, context, contract, *version),
            || format!("context `{context}` and contract `{contract}` version {version}"),
        )?;
        self.ensure_topic(&topic).await?;
        let (topic, path) = (self.topic_path(&topic), self.subscription_path(&name));
        let admin = &self.clients.subscription_admin;
        if self.settings.topology == PubSubTopology::Create {
            let what = || format!("could not create Pub/Sub subscription `{path}` to `{topic}`");
            let deadline = i32::try_from(self.settings.ack_deadline.as_secs()).unwrap_or(600);
            let create = || {
                admin
                    .create_subscription()
                    .set_name(path.clone())
                    .set_topic(topic.clone())
                    .set_enable_message_ordering(true)
                    .set_ack_deadline_seconds(deadline)
                    .send()
            };
            let mut created = self.within(what, create()).await?;
            if created
                .as_ref()
                .is_err_and(|error| error.status().is_some_and(|s| s.code == Code::NotFound))
            {
                // The topic, known to exist, is gone (deleted, or the server restarted
                // empty): made again, then the subscription.
                tracing::debug!(%topic, "the Pub/Sub topic is gone: making it again");
                self.forget_topic(&topic);
                self.ensure_topic(&self.topic(contract, *version)?).await?;
                created = self.within(what, create()).await?;
            }
            match created {
                Ok(_) => {
                    tracing::debug!(subscription = %path, %topic, "created a Pub/Sub subscription");
                    crate::sync::lock(&self.routable).insert(topic);
                    return Ok(path);
                }
                Err(error)
                    if error
                        .status()
                        .is_some_and(|s| s.code == Code::AlreadyExists) => {}
                Err(error) => return Err(request_error(what(), error)),
            }
        }
        let what = || format!("could not check Pub/Sub subscription `{path}`");
        let found = match self
            .within(
                what,
                admin
                    .get_subscription()
                    .set_subscription(path.clone())
                    .send(),
            )
            .await?
        {
            Ok(found) => found,
            Err(error) if error.status().is_some_and(|s| s.code == Code::NotFound) => {
                return Err(TransportError::new(
                    ErrorKind::Refused,
                    format!(
                        "Pub/Sub subscription `{path}` does not exist, and the transport only \
                         verifies the topology (PubSubTopology::Verify): create it on topic \
                         `{topic}`, with message ordering enabled"
                    ),
                    Some(Box::new(error) as _),
                ));
            }
            Err(error) => return Err(request_error(what(), error)),
        };
        let mut different = Vec::new();
        if found.topic != topic {
            different.push(format!("its topic is `{}`, not `{topic}`", found.topic));
        }
        if !found.enable_message_ordering {
            different.push("message ordering is not enabled".to_owned());
        }
        if !different.is_empty() {
            return Err(TransportError::new(
                ErrorKind::Invalid,
                format!(
                    "Pub/Sub subscription `{path}` exists with other settings ({}); delete it, \
                     or make it so",
                    different.join(", ")
                ),
                None,
            ));
        }
        crate::sync::lock(&self.routable).insert(topic);
        Ok(path)
    }

    /// The publisher of topic `path`.
    fn publisher(&self, path: &str) -> Publisher {
        let mut publishers = crate::sync::lock(&self.publishers);
        publishers
            .entry(path.to_owned())
            .or_insert_with(|| {
                self.clients
                    .publisher
                    .publisher(path.to_owned())
                    .set_message_count_threshold(self.settings.batch_size)
                    .set_delay_threshold(self.settings.batch_delay)
                    .build()
            })
            .clone()
    }

    /// Publishes `message` and waits for the server's acknowledgement.
    async fn publish(&self, message: &Message) -> Result<(), TransportError> {
        let topic = self.topic(&message.contract, message.version)?;
        let path = self.ensure_routable(&topic).await?;
        let publisher = self.publisher(&path);
        let binary = cloudevents::to_binary(message, ATTRIBUTE_PREFIX);
        let mut attributes: HashMap<String, String> = binary.headers.into_iter().collect();
        attributes.insert(CONTENT_TYPE.to_owned(), binary.content_type.to_owned());
        if let Some(traceparent) = crate::trace::hop_traceparent(message) {
            attributes.insert("traceparent".to_owned(), traceparent);
        }
        let key = message.key.clone().unwrap_or_default();
        let sent = PubSubMessage::new()
            .set_data(binary.body)
            .set_attributes(attributes)
            .set_ordering_key(key.clone());
        let what = || {
            format!(
                "could not publish event {} to Pub/Sub topic `{path}`{}",
                message.id,
                if key.is_empty() {
                    String::new()
                } else {
                    format!(" with ordering key `{key}`")
                }
            )
        };
        let acknowledged =
            tokio::time::timeout(self.settings.publish_timeout, publisher.publish(sent)).await;
        let error = match acknowledged {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(PublishError::Rpc(error))) => {
                let kind = kind_of(&error);
                let why = match kind {
                    ErrorKind::Unavailable => ": whether the server took it is unknown",
                    _ => "",
                };
                TransportError::new(
                    kind,
                    format!("{}{why}", what()),
                    Some(Box::new(ErrorOf(error)) as _),
                )
            }
            Ok(Err(PublishError::OrderingKeyPaused)) => TransportError::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: the ordering key was paused after an earlier publication failed; it is \
                     resumed, publish again",
                    what()
                ),
                None,
            ),
            Ok(Err(error)) => {
                TransportError::new(ErrorKind::Unavailable, what(), Some(Box::new(error) as _))
            }
            Err(_) => TransportError::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: no acknowledgement within {:?}, whether the server took it is unknown",
                    what(),
                    self.settings.publish_timeout
                ),
                None,
            ),
        };
        // The client paused the key: the relay publishes this event again before the next
        // one of the key, so the order holds once it is resumed.
        if !key.is_empty() {
            publisher.resume_publish(key.clone());
        }
        // The topic may be gone (deleted, or the emulator restarted): check it again.
        self.forget_topic(&path);
        Err(error)
    }

    /// Whether the subscription `path` is known to be gone: the server says it is not found.
    /// Any other answer, or none, is not taken as gone.
    async fn subscription_gone(&self, path: &str) -> bool {
        let check = self
            .clients
            .subscription_admin
            .get_subscription()
            .set_subscription(path.to_owned())
            .send();
        let what = || format!("could not check Pub/Sub subscription `{path}`");
        matches!(
            self.within(what, check).await,
            Ok(Err(error)) if error.status().is_some_and(|s| s.code == Code::NotFound)
        )
    }

    /// A streaming pull of `subscription`'s subscription, which is made sure of first.
    async fn pull(
        &self,
        subscription: &Subscription,
    ) -> Result<(String, MessageStream), TransportError> {
        let path = self.ensure_subscription(subscription).await?;
        let stream = self
            .clients
            .subscriber
            .subscribe(path.clone())
            .set_max_outstanding_messages(self.settings.max_outstanding_messages)
            .set_max_lease_extension(self.settings.ack_deadline)
            .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
            .build();
        Ok((path, stream))
    }
}

/// A client error shared with the client's other waiters, as a source.
#[derive(Debug)]
struct ErrorOf(Arc<google_cloud_pubsub::Error>);

impl fmt::Display for ErrorOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ErrorOf {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Transport for PubSubTransport {
    fn system(&self) -> &'static str {
        "gcp_pubsub"
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move { self.inner.publish(&message).await })
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        Box::pin(async move {
            let pulling = Pulling::start(&self.inner, &subscription).await?;
            Ok(Box::new(PubSubInbound {
                inner: Arc::clone(&self.inner),
                subscription,
                pulling: Some(pulling),
            }) as Box<dyn Inbound>)
        })
    }
}

/// The acknowledgement handlers of messages dropped unacknowledged, until their pull ends.
type Parked = Arc<std::sync::Mutex<Vec<Handler>>>;

/// A streaming pull, driven by a task of its own, so that a caller that gives up waiting for
/// the next message (drops [`Inbound::next`]) never drops a pull being opened: the emulator
/// keeps a pull that its client cancelled as a subscriber (its gRPC server fails on the
/// client's `RST_STREAM`), and hands it messages that nobody reads.
struct Pulling {
    /// The messages, as the task reads them; an error ends the pull.
    messages: tokio::sync::mpsc::Receiver<Result<Received, TransportError>>,
    /// The acknowledgement handlers of messages dropped unacknowledged.
    parked: Parked,
    task: tokio::task::JoinHandle<()>,
}

impl Pulling {
    /// Makes sure of the subscription of `subscription`, and starts pulling it.
    async fn start(
        inner: &Arc<Inner>,
        subscription: &Subscription,
    ) -> Result<Self, TransportError> {
        let (path, mut stream) = inner.pull(subscription).await?;
        let (sender, messages) = tokio::sync::mpsc::channel(16);
        let parked = Parked::default();
        let task = tokio::spawn({
            let (parked, subscription) = (Arc::clone(&parked), subscription.clone());
            let inner = Arc::clone(inner);
            async move {
                loop {
                    let every = inner.settings.subscription_check;
                    // Never given up on while the subscription exists: a pull being opened
                    // and dropped stays a subscriber in the emulator (see above).
                    let next = {
                        let mut pending = std::pin::pin!(stream.next());
                        loop {
                            tokio::select! {
                                next = &mut pending => break next,
                                () = tokio::time::sleep(every) => {}
                            }
                            // Nothing for a while. The client, its link lost, tries again
                            // with a backoff of up to a minute, and only then learns that the
                            // subscription is gone (a server that restarted empty); asked
                            // now, the transport makes it again at once.
                            if inner.subscription_gone(&path).await {
                                let _ = sender
                                    .send(Err(TransportError::new(
                                        ErrorKind::Unavailable,
                                        format!(
                                            "Pub/Sub subscription `{path}` of context `{}` is \
                                             gone; making it again",
                                            subscription.context
                                        ),
                                        None,
                                    )))
                                    .await;
                                return;
                            }
                        }
                    };
                    let error = match next {
                        Some(Ok((message, handler))) => {
                            let decoded = decode(&subscription, &path, &message);
                            let lease = Lease {
                                handler: Some(handler),
                                parked: Arc::clone(&parked),
                            };
                            let received = Received::new(decoded, move || {
                                Box::pin(async move {
                                    lease.ack();
                                    Ok(())
                                })
                            });
                            if sender.send(Ok(received)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        Some(Err(error)) => Some(error),
                        None => None,
                    };
                    let kind = error.as_ref().map_or(ErrorKind::Unavailable, kind_of);
                    let _ = sender
                        .send(Err(TransportError::new(
                            // Whatever the server said, pulling again may work once it is
                            // back.
                            if kind == ErrorKind::Invalid {
                                kind
                            } else {
                                ErrorKind::Unavailable
                            },
                            format!(
                                "pulling Pub/Sub subscription `{path}` for context `{}` \
                                 stopped; pulling again",
                                subscription.context
                            ),
                            error.map(|error| Box::new(error) as _),
                        )))
                        .await;
                    return;
                }
            }
        });
        Ok(Pulling {
            messages,
            parked,
            task,
        })
    }
}

impl Drop for Pulling {
    fn drop(&mut self) {
        // The messages read and not handed out, then those dropped unacknowledged, are given
        // back (a nack each), and the pull ends: the client sends the nacks as it stops.
        self.messages.close();
        while self.messages.try_recv().is_ok() {}
        crate::sync::lock(&self.parked).clear();
        self.task.abort();
    }
}

/// The messages of one subscription: a streaming pull, started again after it failed.
struct PubSubInbound {
    inner: Arc<Inner>,
    subscription: Subscription,
    pulling: Option<Pulling>,
}

/// A message's acknowledgement handler, parked in its pull's list if the message is dropped
/// unacknowledged. The client would give the message back at once (a nack), and the pull,
/// still open, could get it again at once; the emulator, with ordering, then withholds it from
/// the pulls that follow. Parked, the message stays leased until the pull ends, and is given
/// back then, as an unacknowledged message of a stopped consumer is.
struct Lease {
    handler: Option<Handler>,
    parked: Parked,
}

impl Lease {
    fn ack(mut self) {
        if let Some(handler) = self.handler.take() {
            // The client sends the acknowledgement, with others, and keeps extending the
            // lease until it did.
            handler.ack();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(handler) = self.handler.take() {
            crate::sync::lock(&self.parked).push(handler);
        }
    }
}

impl Inbound for PubSubInbound {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>> {
        Box::pin(async move {
            let pulling = match &mut self.pulling {
                Some(pulling) => pulling,
                None => match Pulling::start(&self.inner, &self.subscription).await {
                    Ok(pulling) => self.pulling.insert(pulling),
                    Err(error) => return Some(Err(error)),
                },
            };
            let outcome = pulling.messages.recv().await;
            if let Some(Ok(received)) = outcome {
                return Some(Ok(received));
            }
            // The pull failed for good, or ended: the next call pulls anew, the subscription
            // made sure of again. What was not acknowledged comes again.
            self.pulling = None;
            Some(Err(outcome.and_then(Result::err).unwrap_or_else(|| {
                TransportError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "pulling Pub/Sub subscription for context `{}` stopped; pulling again",
                        self.subscription.context
                    ),
                    None,
                )
            })))
        })
    }
}

/// The message `received` carries, or, if it is not a CloudEvent of the subscription's
/// contract version, one that the consumer dead-letters.
fn decode(subscription: &Subscription, path: &str, received: &PubSubMessage) -> Message {
    let attributes = &received.attributes;
    let attribute = |name: &str| attributes.get(name).cloned();
    let content_type = attributes
        .get(CONTENT_TYPE)
        .or_else(|| attributes.get("content-type"))
        .or_else(|| attributes.get(&format!("{ATTRIBUTE_PREFIX}datacontenttype")))
        .map(String::as_str);
    let decoded = if cloudevents::is_structured(content_type) {
        cloudevents::from_structured(&received.data)
    } else {
        cloudevents::from_binary(ATTRIBUTE_PREFIX, attribute, content_type, &received.data)
    };
    let why = match envelope::of_subscription(decoded, subscription, attribute("traceparent")) {
        Ok(message) => return message,
        Err(why) => why,
    };
    envelope::unreadable(
        subscription,
        envelope::Unreadable {
            place: format!(
                "Pub/Sub subscription `{path}` (message {})",
                received.message_id
            ),
            source: format!("pubsub:{path}"),
            id: attribute(&format!("{ATTRIBUTE_PREFIX}id")),
            traceparent: attribute("traceparent"),
            why,
            payload: &received.data,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_pub_sub_takes_them() {
        for good in [
            "tidings.catalog.product-updated.v1~search",
            "abc",
            "a_b+c%d~e",
        ] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "ab",
            "1abc",
            "google.x",
            "a b",
            "a/b",
            "a:b",
            &"x".repeat(256),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        let error = checked("topic", "a b".to_owned(), || "contract `a b`".to_owned()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert!(error.to_string().contains("`a b`"), "{error}");
    }

    #[test]
    fn a_message_that_is_not_an_event_is_handed_over_to_be_dead_lettered() {
        let subscription = Subscription {
            contract: "catalog.product-updated".to_owned(),
            version: 1,
            context: "search".to_owned(),
        };
        let garbage = PubSubMessage::new().set_data(b"hello".to_vec());
        let message = decode(&subscription, "projects/p/subscriptions/s", &garbage);
        assert_eq!(message.contract, "catalog.product-updated");
        assert!(message.data.decode::<String>().unwrap().contains("hello"));
    }
}
