//! A test's corner of the shared Pub/Sub emulator at `PUBSUB_EMULATOR_HOST`: a topic prefix of
//! its own (so topics and subscriptions of its own), every one deleted when it ends.

use std::time::Duration;

use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};
use tidings::{PubSubClients, PubSubTransport, PubSubTransportBuilder};

/// The project the tests use on the emulator, which takes any.
pub(crate) const PROJECT: &str = "tidings-test";

/// The emulator's `host:port` from `PUBSUB_EMULATOR_HOST`. Without it the test says so and is
/// skipped, unless `TIDINGS_REQUIRE_SERVICES` is set (as `.ci/run` does): then it fails.
pub(crate) fn emulator_host(test: &str) -> Option<String> {
    match std::env::var("PUBSUB_EMULATOR_HOST") {
        Ok(host) if !host.is_empty() => Some(host),
        _ if std::env::var_os("TIDINGS_REQUIRE_SERVICES").is_some() => panic!(
            "{test}: PUBSUB_EMULATOR_HOST is not set, and TIDINGS_REQUIRE_SERVICES says the \
             Pub/Sub emulator is required"
        ),
        _ => {
            eprintln!(
                "SKIPPED {test}: set PUBSUB_EMULATOR_HOST to a Pub/Sub emulator (such as \
                 127.0.0.1:8085) to run it"
            );
            None
        }
    }
}

/// The test's prefix on the emulator. Dropping it deletes every topic of the prefix and every
/// subscription to them.
#[derive(Debug)]
pub(crate) struct PubSub {
    pub(crate) host: String,
    pub(crate) prefix: String,
}

impl PubSub {
    /// The emulator for `test`, or `None` (said plainly) without `PUBSUB_EMULATOR_HOST`.
    pub(crate) fn new(test: &str) -> Option<Self> {
        let host = emulator_host(test)?;
        Some(Self::on(host))
    }

    /// A prefix of its own on the emulator at `host`.
    pub(crate) fn on(host: String) -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        PubSub {
            host,
            prefix: format!("t-{}", &id[id.len() - 12..]),
        }
    }

    /// The settings of the test's transports: its prefix, its emulator, short timeouts.
    pub(crate) fn builder(&self) -> PubSubTransportBuilder {
        PubSubTransport::builder()
            .prefix(self.prefix.clone())
            .emulator(self.host.clone())
            .publish_timeout(Duration::from_secs(2))
            .request_timeout(Duration::from_secs(2))
            .ack_deadline(Duration::from_secs(10))
            .subscription_check(Duration::from_secs(2))
    }

    /// A transport with the test's settings, on the emulator.
    pub(crate) async fn transport(&self) -> PubSubTransport {
        self.builder()
            .connect(PROJECT)
            .await
            .expect("Pub/Sub clients for the emulator")
    }

    /// The plain clients on the emulator, as an application without tidings has them.
    pub(crate) async fn clients(&self) -> PubSubClients {
        PubSubClients::connect(Some(&self.host))
            .await
            .expect("Pub/Sub clients for the emulator")
    }
}

/// Makes topic `topic` and subscription `subscription` to it (full names) with Pub/Sub's
/// defaults (no message ordering), as an application without tidings, or infrastructure code,
/// would.
pub(crate) async fn make_plain(clients: &PubSubClients, topic: &str, subscription: &str) {
    clients
        .topic_admin
        .create_topic()
        .set_name(topic)
        .send()
        .await
        .expect("the topic is made");
    clients
        .subscription_admin
        .create_subscription()
        .set_name(subscription)
        .set_topic(topic)
        .send()
        .await
        .expect("the subscription is made");
}

/// Deletes the topics of `prefix` in the project and their subscriptions.
async fn delete_prefix(topics: TopicAdmin, subscriptions: SubscriptionAdmin, prefix: String) {
    let Ok(listed) = topics
        .list_topics()
        .set_project(format!("projects/{PROJECT}"))
        .set_page_size(1000)
        .send()
        .await
    else {
        return;
    };
    let start = format!("projects/{PROJECT}/topics/{prefix}.");
    for topic in listed
        .topics
        .into_iter()
        .filter(|t| t.name.starts_with(&start))
    {
        if let Ok(listed) = topics
            .list_topic_subscriptions()
            .set_topic(topic.name.clone())
            .send()
            .await
        {
            for subscription in listed.subscriptions {
                let _ = subscriptions
                    .delete_subscription()
                    .set_subscription(subscription)
                    .send()
                    .await;
            }
        }
        let _ = topics.delete_topic().set_topic(topic.name).send().await;
    }
}

impl Drop for PubSub {
    fn drop(&mut self) {
        let (host, prefix) = (self.host.clone(), self.prefix.clone());
        super::clean_up(async move {
            let Ok(clients) = PubSubClients::connect(Some(&host)).await else {
                return;
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(20),
                delete_prefix(clients.topic_admin, clients.subscription_admin, prefix),
            )
            .await;
        });
    }
}

/// The Pub/Sub emulator's start script, from the Google Cloud CLI's component: `PUBSUB_EMULATOR`
/// if set, else where the Debian package puts it. Without it the test says so and is skipped,
/// unless `TIDINGS_REQUIRE_SERVICES` is set: then it fails.
pub(crate) fn emulator_script(test: &str) -> Option<std::path::PathBuf> {
    let named = std::env::var_os("PUBSUB_EMULATOR").map(std::path::PathBuf::from);
    let usual = std::path::PathBuf::from(
        "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    );
    match named.into_iter().chain([usual]).find(|path| path.is_file()) {
        Some(path) => Some(path),
        None if std::env::var_os("TIDINGS_REQUIRE_SERVICES").is_some() => panic!(
            "{test}: no Pub/Sub emulator (install google-cloud-cli-pubsub-emulator, or set \
             PUBSUB_EMULATOR to its start script), and TIDINGS_REQUIRE_SERVICES says it is \
             required"
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: install google-cloud-cli-pubsub-emulator (or set \
                 PUBSUB_EMULATOR to its start script) to run it"
            );
            None
        }
    }
}

/// A Pub/Sub emulator of the test's own on a free port of 127.0.0.1, in a process group of its
/// own (its script starts a JVM), that the test can kill with SIGKILL and start again on the
/// same port. The emulator keeps everything in memory: a restarted one has no topic, no
/// subscription and no message. Dropping it kills it.
#[derive(Debug)]
pub(crate) struct PrivateEmulator {
    script: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
    log: std::path::PathBuf,
}

impl PrivateEmulator {
    /// Starts an emulator for `test`, ready for requests, or `None` (said plainly) without
    /// one.
    pub(crate) async fn start(test: &str) -> Option<Self> {
        let script = emulator_script(test)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log = std::env::temp_dir().join(format!("tidings-pubsub-{port}.log"));
        let mut emulator = PrivateEmulator {
            script,
            port,
            child: None,
            log,
        };
        emulator.launch().await;
        Some(emulator)
    }

    /// Its `host:port`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the emulator with SIGKILL, at once. Its start script `exec`s the JVM, so the
    /// child is the emulator itself. (No `kill -KILL -<group>` through procps' `kill`: its
    /// 4.0 release takes a negative id after a signal option for something else, and that
    /// once took down processes of the machine that were not the test's.)
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the emulator again (killing it first if it runs), on the same port, and waits
    /// until it answers.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    async fn launch(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(&self.log).expect("a log file for the emulator");
        let child = std::process::Command::new(&self.script)
            .args(["--host=127.0.0.1", &format!("--port={}", self.port)])
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("the Pub/Sub emulator starts");
        self.child = Some(child);
        let url = format!("http://{}/v1/projects/{PROJECT}/topics", self.host());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if answers(&url).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the private Pub/Sub emulator on port {} did not answer; its log: {}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether an HTTP GET of `url` (on 127.0.0.1) gets `200 OK`.
async fn answers(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
        let get = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(get.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.ends_with(b"200"))
    };
    tokio::time::timeout(Duration::from_secs(1), request)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

impl Drop for PrivateEmulator {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
