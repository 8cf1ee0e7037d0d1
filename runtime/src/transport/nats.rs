//! [`NatsTransport`]: integration events through NATS JetStream, with `async-nats`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context, stream};
use async_nats::{HeaderMap, HeaderName, Subject};
use futures_util::StreamExt;
use uuid::Uuid;

use super::{
    BoxFuture, ErrorKind, Inbound, Message, Received, Subscription, Transport, TransportError,
    cloudevents,
};
use crate::envelope;

/// The transport through NATS JetStream: each contract version is a stream, each consuming
/// context a durable pull consumer on it. Every message is a CloudEvents 1.0 event in
/// structured mode, as the released CloudEvents NATS binding writes it, so that any CloudEvents
/// SDK (or a plain NATS client) can read and write it.
///
/// ```no_run
/// use std::time::Duration;
/// use tidings::{NatsStorage, NatsTransport};
/// use tidings::prelude::*;
///
/// # async fn run() -> Result<(), tidings::Error> {
/// // The defaults: streams TIDINGS_<CONTRACT>_V<n> on file, subjects tidings.<contract>.v<n>.
/// let transport = NatsTransport::connect("nats://127.0.0.1:4222").await?;
///
/// // Or tuned.
/// let transport = NatsTransport::builder()
///     .storage(NatsStorage::File)
///     .replicas(3)
///     .max_age(Duration::from_secs(14 * 24 * 3600))
///     .ack_wait(Duration::from_secs(60))
///     .connect("nats://127.0.0.1:4222")
///     .await?;
/// let app = Tidings::builder("catalog").transport(transport).build()?;
/// # Ok(())
/// # }
/// ```
///
/// # Names
///
/// Derived from the contract's name and version and from the consuming context, with the
/// builder's prefixes (shown with their defaults):
///
/// | what | name | `catalog.product-updated` v1, context `search` |
/// |---|---|---|
/// | subject | `<subject prefix>.<contract>.v<version>` | `tidings.catalog.product-updated.v1` |
/// | stream, one per contract version | `<stream prefix>_<CONTRACT>_V<version>`, the contract upper-cased, each `.` (and any character a stream name may not hold) as `_` | `TIDINGS_CATALOG_PRODUCT-UPDATED_V1` |
/// | durable pull consumer, one per context, on the stream | `<context>`, any `.`, `*`, `>`, `/`, `\` or whitespace as `_` | `search` |
///
/// Two contracts whose names differ only in case or in `.` against `_` would share a stream
/// name; the second one's stream is then found with the first one's subject, and refused as a
/// stream of another configuration (below), never mixed.
///
/// # Streams and consumers
///
/// - **Created when first needed, and checked.** The stream of a contract version is created
///   at its first publication or subscription ([`ensure_stream`](Self::ensure_stream) creates
///   it ahead, for an app that wants to fail at start); the consumer of a context at its
///   subscription. A stream that already exists is checked against the settings: one of
///   other subjects, retention, storage, replicas, duplicate window or maximum age is an
///   [`ErrorKind::Invalid`] error naming the stream and each differing setting, not a silent
///   drift. Other settings (message and byte limits, for instance) are left to the operator.
///   A consumer is created or updated with the settings (NATS updates the ones it can update;
///   a consumer it cannot update is an [`ErrorKind::Invalid`] error naming it).
/// - **Retention by limits.** A message stays in its stream until [`max_age`](
///   NatsTransportBuilder::max_age) (7 days unless set), whoever consumed it; the stream
///   removes nothing when it is consumed.
/// - **A context that comes later gets the stream's messages.** A consumer is created with
///   the deliver policy `All`: a context that subscribes for the first time receives every
///   message still in the stream, including those published before it existed, as the
///   in-memory transport keeps messages for the contexts that consume them; the inbox of the
///   context drops what it already recorded. A context that was away gets what was published
///   meanwhile: its consumer is durable.
/// - **Each context gets every message; its instances share them.** Several subscriptions of
///   one context (instances of one app) pull from one consumer.
///
/// # Delivery
///
/// - **Publish** sends the event with headers `Content-Type: application/cloudevents+json`,
///   `Nats-Msg-Id: <event id>` (the stream drops a second message of one id within the
///   [duplicate window](NatsTransportBuilder::duplicate_window), 2 minutes unless set) and
///   `traceparent` when the event has one, and resolves on the stream's acknowledgement. A
///   timeout, a lost connection or no JetStream are [`ErrorKind::Unavailable`]: the relay
///   publishes again with the same id, and the stream drops the copy if the first one landed.
///   A message larger than the server's maximum payload is [`ErrorKind::Refused`], before it
///   is sent.
/// - **Acknowledgement.** A message is acknowledged with a double acknowledgement: `ack()`
///   resolves once the server confirmed it, so an acknowledgement lost on the way is an error
///   that the consumer logs (the message comes again, and the inbox drops it), not a silent
///   redelivery. A message not acknowledged within [`ack_wait`](NatsTransportBuilder::ack_wait)
///   (30 s unless set) is delivered again, to any instance of the context, as many times as
///   [`max_deliveries`](NatsTransportBuilder::max_deliveries) allows (no limit unless set).
/// - **Order** is the stream's, per consumer, while nothing is delivered again: a message
///   delivered again comes after those that followed it.
/// - **What is not a tidings CloudEvent** on a stream's subject (a payload that is not a
///   CloudEvent in the JSON event format, or an event of another contract or version) is
///   still handed to the consumer, so that it never blocks the stream: as a message of the
///   subscription's contract and version, with the `Nats-Msg-Id` as id when it is a UUID (a
///   new id otherwise) and, as data, a JSON string saying why it could not be read followed by
///   the payload. The context's consumer cannot decode it as the contract, dead-letters it with
///   that text, and acknowledges it.
#[derive(Clone)]
pub struct NatsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    jetstream: jetstream::Context,
    settings: Settings,
    /// The streams known to exist with the settings' configuration.
    ready: Mutex<HashSet<String>>,
    /// The names of each contract version met, by contract: checked once.
    names: Mutex<HashMap<String, Versions>>,
}

/// The names of a contract's versions met so far.
type Versions = Vec<(u32, Arc<Names>)>;

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsStorage {
    /// In files: messages survive a restart of the server. The default.
    #[default]
    File,
    /// In memory: faster, and lost when the server stops.
    Memory,
}

/// The settings of a [`NatsTransport`], from [`NatsTransport::builder`]. Each method's doc
/// gives its default.
#[derive(Debug, Clone)]
pub struct NatsTransportBuilder {
    settings: Settings,
}

#[derive(Debug, Clone)]
struct Settings {
    subject_prefix: String,
    stream_prefix: String,
    storage: NatsStorage,
    replicas: usize,
    duplicate_window: Duration,
    max_age: Duration,
    ack_wait: Duration,
    max_deliveries: Option<u32>,
    max_ack_pending: u32,
    batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            subject_prefix: super::address::DEFAULT_PREFIX.to_owned(),
            stream_prefix: super::address::DEFAULT_PREFIX.to_uppercase(),
            storage: NatsStorage::File,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            ack_wait: Duration::from_secs(30),
            max_deliveries: None,
            max_ack_pending: 1_000,
            batch: 200,
        }
    }
}

impl Default for NatsTransportBuilder {
    fn default() -> Self {
        NatsTransport::builder()
    }
}

impl NatsTransportBuilder {
    /// The first token(s) of every subject: `tidings` unless set. Subjects are
    /// `<subject prefix>.<contract>.v<version>`.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.subject_prefix = prefix.into();
        self
    }

    /// The start of every stream's name: `TIDINGS` unless set. Streams are named
    /// `<stream prefix>_<CONTRACT>_V<version>`; an empty prefix leaves out its `_`.
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.stream_prefix = prefix.into();
        self
    }

    /// Where the streams keep their messages: [`NatsStorage::File`] unless set.
    pub fn storage(mut self, storage: NatsStorage) -> Self {
        self.settings.storage = storage;
        self
    }

    /// How many copies of each stream a cluster keeps: 1 unless set (at most 5).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.settings.replicas = replicas;
        self
    }

    /// How long a stream remembers the ids it received, to drop a message published again
    /// with the same id: 2 minutes unless set. At most the [maximum age](Self::max_age).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.settings.duplicate_window = window;
        self
    }

    /// How long a stream keeps a message: 7 days unless set; [`Duration::ZERO`] keeps them
    /// with no age limit.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.settings.max_age = max_age;
        self
    }

    /// How long a delivered message may wait for its acknowledgement before it is delivered
    /// again: 30 seconds unless set.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.settings.ack_wait = ack_wait;
        self
    }

    /// How many times a message is delivered to a context at most: no limit unless set. A
    /// message that reached the limit stays in the stream and is not delivered again to that
    /// context.
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.settings.max_deliveries = Some(deliveries);
        self
    }

    /// How many messages a context may hold delivered and not yet acknowledged, all its
    /// instances together: 1,000 unless set.
    pub fn max_ack_pending(mut self, pending: u32) -> Self {
        self.settings.max_ack_pending = pending.max(1);
        self
    }

    /// How many messages a subscription asks the server for at a time: 200 unless set.
    pub fn batch(mut self, batch: usize) -> Self {
        self.settings.batch = batch.max(1);
        self
    }

    /// Connects to the NATS server(s) at `url` (such as `nats://127.0.0.1:4222`, or several,
    /// comma-separated).
    pub async fn connect(self, url: &str) -> Result<NatsTransport, TransportError> {
        let client = async_nats::connect(url).await.map_err(|error| {
            TransportError::new(
                ErrorKind::Unavailable,
                format!("could not connect to NATS at `{url}`"),
                Some(Box::new(error) as _),
            )
        })?;
        Ok(self.from_client(client))
    }

    /// The transport on a client the application already has.
    pub fn from_client(self, client: async_nats::Client) -> NatsTransport {
        self.from_jetstream(jetstream::new(client))
    }

    /// The transport on a JetStream context the application already has (with its domain,
    /// API prefix or timeouts).
    pub fn from_jetstream(self, jetstream: jetstream::Context) -> NatsTransport {
        NatsTransport {
            inner: Arc::new(Inner {
                jetstream,
                settings: self.settings,
                ready: Mutex::default(),
                names: Mutex::default(),
            }),
        }
    }
}

impl fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsTransport")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl NatsTransport {
    /// Connects to the NATS server(s) at `url`, with the default settings.
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        Self::builder().connect(url).await
    }

    /// The settings, to tune before connecting.
    pub fn builder() -> NatsTransportBuilder {
        NatsTransportBuilder {
            settings: Settings::default(),
        }
    }

    /// The transport on a client the application already has, with the default settings.
    pub fn from_client(client: async_nats::Client) -> Self {
        Self::builder().from_client(client)
    }

    /// The transport on a JetStream context the application already has, with the default
    /// settings.
    pub fn from_jetstream(jetstream: jetstream::Context) -> Self {
        Self::builder().from_jetstream(jetstream)
    }

    /// The JetStream context the transport works with.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.jetstream
    }

    /// The subject of contract `contract` version `version`.
    pub fn subject(&self, contract: &str, version: u32) -> String {
        self.inner.settings.subject(contract, version)
    }

    /// The name of the stream of contract `contract` version `version`.
    pub fn stream_name(&self, contract: &str, version: u32) -> String {
        self.inner.settings.stream_name(contract, version)
    }

    /// The name of the durable consumer of context `context`, on each stream it consumes.
    pub fn consumer_name(&self, context: &str) -> String {
        name_token(context)
    }

    /// Creates the stream of contract `contract` version `version` if it does not exist, and
    /// checks its configuration if it does: an [`ErrorKind::Invalid`] error names each setting
    /// that differs.
    pub async fn ensure_stream(&self, contract: &str, version: u32) -> Result<(), TransportError> {
        let names = self.names(contract, version)?;
        self.inner.ensure_stream(&names).await
    }

    /// The names of a contract version, checked the first time they are asked for.
    fn names(&self, contract: &str, version: u32) -> Result<Arc<Names>, TransportError> {
        let mut known = crate::sync::lock(&self.inner.names);
        let names = known.get(contract).and_then(|versions| {
            versions
                .iter()
                .find(|(known, _)| *known == version)
                .map(|(_, names)| Arc::clone(names))
        });
        if let Some(names) = names {
            return Ok(names);
        }
        let names = Arc::new(self.inner.settings.names(contract, version)?);
        known
            .entry(contract.to_owned())
            .or_default()
            .push((version, Arc::clone(&names)));
        Ok(names)
    }
}

impl Settings {
    fn subject(&self, contract: &str, version: u32) -> String {
        super::address::nats_subject(&self.subject_prefix, contract, version)
    }

    fn stream_name(&self, contract: &str, version: u32) -> String {
        let contract = name_token(contract).to_uppercase();
        let prefix = name_token(&self.stream_prefix);
        if prefix.is_empty() {
            format!("{contract}_V{version}")
        } else {
            format!("{prefix}_{contract}_V{version}")
        }
    }

    /// The names of a contract version, checked.
    fn names(&self, contract: &str, version: u32) -> Result<Names, TransportError> {
        let subject = self.subject(contract, version);
        let valid = subject
            .split('.')
            .all(|token| !token.is_empty() && !token.contains(['*', '>']))
            && !subject.contains(char::is_whitespace);
        if !valid {
            return Err(TransportError::new(
                ErrorKind::Invalid,
                format!(
                    "contract `{contract}` version {version} makes `{subject}`, which is not a \
                     NATS subject: a contract name is letters, digits, `-`, `_` and `.` between \
                     them"
                ),
                None,
            ));
        }
        Ok(Names {
            subject: Subject::from(subject),
            stream: self.stream_name(contract, version),
        })
    }
}

/// `name` as a token of a stream or consumer name: what such names may not hold becomes `_`.
fn name_token(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' | '*' | '>' | '/' | '\\' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// The subject and the stream of one contract version.
#[derive(Debug, Clone)]
struct Names {
    /// Shared, not copied, by every publication.
    subject: Subject,
    stream: String,
}

impl Inner {
    /// The configuration tidings gives the stream of `names`.
    fn stream_config(&self, names: &Names) -> stream::Config {
        let settings = &self.settings;
        stream::Config {
            name: names.stream.clone(),
            subjects: vec![names.subject.to_string()],
            retention: stream::RetentionPolicy::Limits,
            storage: match settings.storage {
                NatsStorage::File => stream::StorageType::File,
                NatsStorage::Memory => stream::StorageType::Memory,
            },
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            max_age: settings.max_age,
            description: Some("integration events of tidings".to_owned()),
            ..Default::default()
        }
    }

    /// Creates the stream of `names`, or checks the one that exists; once checked, it is
    /// trusted until a publication finds it gone.
    async fn ensure_stream(&self, names: &Names) -> Result<(), TransportError> {
        if crate::sync::lock(&self.ready).contains(&names.stream) {
            return Ok(());
        }
        // Boxed: the lookup and creation make a large future, which every publication would
        // otherwise carry (and copy) for a check that passes once the stream is known.
        Box::pin(self.create_or_check_stream(names)).await
    }

    /// Creates the stream of `names`, or checks the one that exists.
    async fn create_or_check_stream(&self, names: &Names) -> Result<(), TransportError> {
        let wanted = self.stream_config(names);
        let existing = match self.jetstream.get_stream(&names.stream).await {
            Ok(stream) => stream.cached_info().config.clone(),
            Err(error) => match error.kind() {
                context::GetStreamErrorKind::JetStream(api) if api.code() == 404 => {
                    match self.jetstream.create_stream(wanted.clone()).await {
                        Ok(_) => {
                            tracing::info!(stream = %names.stream, subject = %names.subject, "created a NATS stream");
                            crate::sync::lock(&self.ready).insert(names.stream.clone());
                            return Ok(());
                        }
                        Err(error) => return self.created_meanwhile(names, &wanted, error).await,
                    }
                }
                _ => {
                    let api = get_stream_api(&error);
                    return Err(stream_error(
                        &names.stream,
                        "could not look up",
                        api.as_ref(),
                        error,
                    ));
                }
            },
        };
        check_stream(&names.stream, &wanted, &existing)?;
        crate::sync::lock(&self.ready).insert(names.stream.clone());
        Ok(())
    }

    /// After a creation of `names`' stream failed with `error`: checks the stream if another
    /// process created it meanwhile, or says why it could not be created.
    async fn created_meanwhile(
        &self,
        names: &Names,
        wanted: &stream::Config,
        error: context::CreateStreamError,
    ) -> Result<(), TransportError> {
        if let context::CreateStreamErrorKind::JetStream(api) = error.kind() {
            if api.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST {
                let existing = self
                    .jetstream
                    .get_stream(&names.stream)
                    .await
                    .map_err(|error| {
                        let api = get_stream_api(&error);
                        stream_error(&names.stream, "could not look up", api.as_ref(), error)
                    })?;
                check_stream(&names.stream, wanted, &existing.cached_info().config)?;
                crate::sync::lock(&self.ready).insert(names.stream.clone());
                return Ok(());
            }
            if api.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP {
                return Err(TransportError::new(
                    ErrorKind::Invalid,
                    format!(
                        "could not create NATS stream `{}`: another stream already takes subject \
                         `{}`; remove that stream's subject, or give this transport another \
                         `subject_prefix`",
                        names.stream, names.subject
                    ),
                    Some(Box::new(error) as _),
                ));
            }
        }
        let api = match error.kind() {
            context::CreateStreamErrorKind::JetStream(api) => Some(api),
            _ => None,
        };
        Err(stream_error(
            &names.stream,
            "could not create",
            api.as_ref(),
            error,
        ))
    }

    /// The configuration of the durable consumer of `context`.
    fn consumer_config(&self, context: &str) -> consumer::pull::Config {
        let settings = &self.settings;
        consumer::pull::Config {
            durable_name: Some(name_token(context)),
            description: Some(format!("tidings context `{context}`")),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: settings.max_deliveries.map_or(-1, i64::from),
            max_ack_pending: i64::from(settings.max_ack_pending),
            ..Default::default()
        }
    }

    /// The messages of `context` on `names`' stream: the stream and the durable consumer are
    /// created if they do not exist.
    async fn open(
        &self,
        names: &Names,
        context: &str,
    ) -> Result<consumer::pull::Stream, TransportError> {
        self.ensure_stream(names).await?;
        let config = self.consumer_config(context);
        let name = name_token(context);
        let consumer = match self
            .jetstream
            .create_consumer_on_stream(config.clone(), &names.stream)
            .await
        {
            Ok(consumer) => consumer,
            Err(error) if is_stream_not_found(&error) => {
                // Deleted since it was checked: create it again, once.
                crate::sync::lock(&self.ready).remove(&names.stream);
                self.ensure_stream(names).await?;
                self.jetstream
                    .create_consumer_on_stream(config, &names.stream)
                    .await
                    .map_err(|error| consumer_error(names, &name, error))?
            }
            Err(error) => return Err(consumer_error(names, &name, error)),
        };
        consumer
            .stream()
            .max_messages_per_batch(self.settings.batch)
            .messages()
            .await
            .map_err(|error| {
                TransportError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "could not pull from NATS consumer `{name}` on stream `{}`",
                        names.stream
                    ),
                    Some(Box::new(error) as _),
                )
            })
    }

    /// Publishes `message` on `names`' subject and waits for the stream's acknowledgement.
    async fn send(&self, names: &Names, message: &Message) -> Result<(), context::PublishError> {
        // Names made once, not parsed and copied for every message.
        const CONTENT_TYPE: HeaderName = HeaderName::from_static("Content-Type");
        const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, cloudevents::STRUCTURED_CONTENT_TYPE);
        if let Some(traceparent) = crate::trace::hop_traceparent(message) {
            headers.insert(TRACEPARENT, traceparent);
        }
        let publish = jetstream::message::PublishMessage::build()
            .headers(headers)
            .message_id(
                message
                    .id
                    .hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer()),
            )
            .payload(cloudevents::to_structured(message).into());
        // Boxed: the client's send is an 840-byte future, which would make every publication's
        // future too large for the allocator's quick sizes (about 1,200 bytes in all).
        let sent = Box::pin(self.jetstream.send_publish(names.subject.clone(), publish));
        sent.await?.await?;
        Ok(())
    }
}

/// Checks that the stream `name` that exists, `existing`, has the configuration tidings
/// gives it, `wanted`.
fn check_stream(
    name: &str,
    wanted: &stream::Config,
    existing: &stream::Config,
) -> Result<(), TransportError> {
    let mut differences = Vec::new();
    let mut differ = |setting: &str, has: String, wants: String| {
        if has != wants {
            differences.push(format!("{setting} is {has}, not {wants}"));
        }
    };
    let sorted = |subjects: &[String]| {
        let mut subjects = subjects.to_vec();
        subjects.sort();
        format!("{subjects:?}")
    };
    differ(
        "subjects",
        sorted(&existing.subjects),
        sorted(&wanted.subjects),
    );
    differ(
        "retention",
        format!("{:?}", existing.retention),
        format!("{:?}", wanted.retention),
    );
    differ(
        "storage",
        format!("{:?}", existing.storage),
        format!("{:?}", wanted.storage),
    );
    differ(
        "replicas",
        existing.num_replicas.to_string(),
        wanted.num_replicas.to_string(),
    );
    differ(
        "duplicate_window",
        format!("{:?}", existing.duplicate_window),
        format!("{:?}", wanted.duplicate_window),
    );
    differ(
        "max_age",
        format!("{:?}", existing.max_age),
        format!("{:?}", wanted.max_age),
    );
    if differences.is_empty() {
        return Ok(());
    }
    Err(TransportError::new(
        ErrorKind::Invalid,
        format!(
            "NATS stream `{name}` exists with another configuration: its {}; give the transport \
             the stream's settings, or update or delete the stream (`nats stream edit` / \
             `nats stream rm`)",
            differences.join(", its ")
        ),
        None,
    ))
}

/// A failure to `what` stream `stream`: refused if the server answered `api` (other than
/// "unavailable"), unavailable otherwise.
fn stream_error(
    stream: &str,
    what: &str,
    api: Option<&jetstream::Error>,
    error: impl std::error::Error + Send + Sync + 'static,
) -> TransportError {
    let kind = match api {
        Some(api) if api.code() != 503 => ErrorKind::Refused,
        _ => ErrorKind::Unavailable,
    };
    TransportError::new(
        kind,
        format!("{what} NATS stream `{stream}`"),
        Some(Box::new(error) as _),
    )
}

/// The server's answer in a failure to look a stream up.
fn get_stream_api(error: &context::GetStreamError) -> Option<jetstream::Error> {
    match error.kind() {
        context::GetStreamErrorKind::JetStream(api) => Some(api),
        _ => None,
    }
}

/// Whether creating a consumer failed because its stream is gone.
fn is_stream_not_found(error: &stream::ConsumerError) -> bool {
    matches!(error.kind(), stream::ConsumerErrorKind::JetStream(api)
        if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// A failure to create consumer `name` on `names`' stream.
fn consumer_error(names: &Names, name: &str, error: stream::ConsumerError) -> TransportError {
    let (kind, why) = match error.kind() {
        stream::ConsumerErrorKind::JetStream(api) if api.code() == 503 => {
            (ErrorKind::Unavailable, "")
        }
        // What NATS says when an existing consumer cannot take these settings (a deliver
        // policy, for one), or the settings are not valid.
        stream::ConsumerErrorKind::JetStream(api)
            if api.code() == 400 || api.error_code() == jetstream::ErrorCode::CONSUMER_CREATE =>
        {
            (
                ErrorKind::Invalid,
                ": NATS refused the settings (a consumer of that name that exists with \
                 settings NATS cannot update, such as another deliver policy, is the usual \
                 cause: give the transport its settings, or delete it with `nats consumer rm`)",
            )
        }
        stream::ConsumerErrorKind::JetStream(_) => (ErrorKind::Refused, ""),
        _ => (ErrorKind::Unavailable, ""),
    };
    TransportError::new(
        kind,
        format!(
            "could not create or update NATS consumer `{name}` on stream `{}`{why}",
            names.stream
        ),
        Some(Box::new(error) as _),
    )
}

/// What a failed publication of `message` is, for the relay.
fn publish_error(names: &Names, message: &Message, error: context::PublishError) -> TransportError {
    use context::PublishErrorKind as Kind;
    let kind = match error.kind() {
        Kind::MaxPayloadExceeded | Kind::WrongLastMessageId | Kind::WrongLastSequence => {
            ErrorKind::Refused
        }
        Kind::Other => {
            let api = std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<jetstream::Error>());
            match api {
                // The stream answered, and refused the message.
                Some(api) if api.code() != 503 => ErrorKind::Refused,
                _ => ErrorKind::Unavailable,
            }
        }
        // Timed out, connection lost, no stream answering, too many acknowledgements awaited:
        // whether the message landed is unknown, and publishing it again with the same id is
        // safe.
        Kind::TimedOut | Kind::BrokenPipe | Kind::StreamNotFound | Kind::MaxAckPending => {
            ErrorKind::Unavailable
        }
    };
    TransportError::new(
        kind,
        format!(
            "could not publish event {} to NATS subject `{}` (stream `{}`)",
            message.id, names.subject, names.stream
        ),
        Some(Box::new(error) as _),
    )
}

impl Transport for NatsTransport {
    fn system(&self) -> &'static str {
        "nats"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        let state = self.inner.jetstream.client().connection_state();
        Box::pin(async move {
            match state {
                async_nats::connection::State::Connected => Ok(()),
                other => Err(TransportError::new(
                    ErrorKind::Unavailable,
                    format!("the NATS connection is {other}"),
                    None,
                )),
            }
        })
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let names = self.names(&message.contract, message.version)?;
            let inner = &self.inner;
            inner.ensure_stream(&names).await?;
            match inner.send(&names, &message).await {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == context::PublishErrorKind::StreamNotFound => {
                    // The stream was deleted since it was checked: create it again, once.
                    crate::sync::lock(&inner.ready).remove(&names.stream);
                    inner.ensure_stream(&names).await?;
                    inner
                        .send(&names, &message)
                        .await
                        .map_err(|error| publish_error(&names, &message, error))
                }
                Err(error) => Err(publish_error(&names, &message, error)),
            }
        })
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        Box::pin(async move {
            let names = self.names(&subscription.contract, subscription.version)?;
            let messages = self.inner.open(&names, &subscription.context).await?;
            Ok(Box::new(NatsInbound {
                inner: Arc::clone(&self.inner),
                names,
                subscription,
                messages: Some(messages),
            }) as Box<dyn Inbound>)
        })
    }
}

/// The messages of one subscription: a pull from the context's durable consumer, opened again
/// (stream and consumer created again if they are gone) after an error.
struct NatsInbound {
    inner: Arc<Inner>,
    names: Arc<Names>,
    subscription: Subscription,
    messages: Option<consumer::pull::Stream>,
}

impl Inbound for NatsInbound {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Received, TransportError>>> {
        Box::pin(async move {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => {
                    let opened = self
                        .inner
                        .open(&self.names, &self.subscription.context)
                        .await;
                    match opened {
                        Ok(messages) => self.messages.insert(messages),
                        Err(error) => return Some(Err(error)),
                    }
                }
            };
            let error = match messages.next().await {
                Some(Ok(message)) => return Some(Ok(self.received(message))),
                Some(Err(error)) => Some(error),
                None => None,
            };
            // Whatever went wrong (a missed heartbeat, the consumer deleted, the pull ended),
            // the next call pulls anew, creating the consumer again if it is gone. Messages
            // pulled and not yet handed over come again after the ack wait.
            self.messages = None;
            Some(Err(TransportError::new(
                ErrorKind::Unavailable,
                format!(
                    "the pull from NATS stream `{}` for context `{}` failed; pulling again",
                    self.names.stream, self.subscription.context
                ),
                error.map(|error| Box::new(error) as _),
            )))
        })
    }
}

impl NatsInbound {
    /// `delivered` as a received message, acknowledged with a double acknowledgement.
    fn received(&self, delivered: jetstream::Message) -> Received {
        let (delivered, acker) = delivered.split();
        let message = self.decode(&delivered);
        let stream = self.names.stream.clone();
        Received::new(message, move || {
            Box::pin(async move {
                acker.double_ack().await.map_err(|error| {
                    TransportError::new(
                        ErrorKind::Unavailable,
                        format!("could not acknowledge a message of NATS stream `{stream}`"),
                        Some(error),
                    )
                })
            })
        })
    }

    /// The message `delivered` carries, or, if it is not a CloudEvent of the subscription's
    /// contract version, one that the consumer dead-letters.
    fn decode(&self, delivered: &async_nats::Message) -> Message {
        let header = |name: &str| {
            delivered
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name))
                .map(|value| value.as_str().to_owned())
        };
        let decoded = cloudevents::from_structured(&delivered.payload);
        let why =
            match envelope::of_subscription(decoded, &self.subscription, header("traceparent")) {
                Ok(message) => return message,
                Err(why) => why,
            };
        envelope::unreadable(
            &self.subscription,
            envelope::Unreadable {
                place: format!(
                    "NATS subject `{}` (stream `{}`)",
                    delivered.subject, self.names.stream
                ),
                source: format!("nats:{}", delivered.subject),
                id: header(async_nats::header::NATS_MESSAGE_ID.as_ref()),
                traceparent: header("traceparent"),
                why,
                payload: &delivered.payload,
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
        let names = settings.names("catalog.product-updated", 1).unwrap();
        assert_eq!(names.subject.as_str(), "tidings.catalog.product-updated.v1");
        assert_eq!(names.stream, "TIDINGS_CATALOG_PRODUCT-UPDATED_V1");
        assert_eq!(name_token("search"), "search");
        assert_eq!(name_token("a.b c*d>e/f\\g"), "a_b_c_d_e_f_g");
        let bare = Settings {
            stream_prefix: String::new(),
            subject_prefix: "acme.events".into(),
            ..Settings::default()
        };
        let names = bare.names("orders_v2", 3).unwrap();
        assert_eq!(names.subject.as_str(), "acme.events.orders_v2.v3");
        assert_eq!(names.stream, "ORDERS_V2_V3");
        for bad in ["", "a..b", ".a", "a.*", "a b", "a.>"] {
            let error = settings.names(bad, 1).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn a_stream_of_another_configuration_names_each_difference() {
        let wanted = stream::Config {
            name: "S".into(),
            subjects: vec!["tidings.x.v1".into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let existing = stream::Config {
            storage: stream::StorageType::Memory,
            duplicate_window: Duration::from_secs(60),
            ..wanted.clone()
        };
        let error = check_stream("S", &wanted, &existing).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        let text = error.to_string();
        assert!(text.contains("NATS stream `S`"), "{text}");
        assert!(text.contains("storage is Memory, not File"), "{text}");
        assert!(text.contains("duplicate_window is 60s, not 120s"), "{text}");
        assert!(check_stream("S", &wanted, &wanted).is_ok());
    }
}
