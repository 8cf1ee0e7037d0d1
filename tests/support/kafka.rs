//! A Kafka-protocol endpoint for a test: librdkafka's mock cluster
//! (`rdkafka::mocking::MockCluster`), in this process, on TCP ports of 127.0.0.1, for as long as
//! the test holds it. It speaks the Kafka protocol (produce, fetch, consumer groups, offset
//! commits, the idempotent producer) and injects errors and broker outages on cue. Each test
//! has a cluster of its own, so nothing needs cleaning up; `KAFKA_BOOTSTRAP`, if set, names a
//! real cluster to use instead where a test does not inject faults.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tidings::{KafkaTransport, KafkaTransportBuilder};

/// A test's Kafka cluster: a mock cluster of its own, or the one `KAFKA_BOOTSTRAP` names.
pub(crate) struct Kafka {
    /// The cluster's `bootstrap.servers`.
    pub(crate) bootstrap: String,
    /// The topic prefix of the test's transports: fresh, so that runs on a real cluster do not
    /// meet.
    pub(crate) prefix: String,
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
}

impl Kafka {
    /// A mock cluster of `brokers` brokers, or the cluster at `KAFKA_BOOTSTRAP`.
    pub(crate) fn new(brokers: i32) -> Self {
        let prefix = fresh_prefix();
        match std::env::var("KAFKA_BOOTSTRAP") {
            Ok(bootstrap) if !bootstrap.is_empty() => Kafka {
                bootstrap,
                prefix,
                mock: None,
            },
            _ => Kafka::mock(brokers),
        }
    }

    /// A mock cluster of `brokers` brokers, whatever `KAFKA_BOOTSTRAP` says: for the tests
    /// that inject faults.
    pub(crate) fn mock(brokers: i32) -> Self {
        let mock = MockCluster::new(brokers).expect("librdkafka starts a mock cluster");
        Kafka {
            bootstrap: mock.bootstrap_servers(),
            prefix: fresh_prefix(),
            mock: Some(mock),
        }
    }

    /// The mock cluster, to inject faults.
    pub(crate) fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        self.mock.as_ref().expect("the test runs on a mock cluster")
    }

    /// The settings of the test's transports: its topic prefix, short timeouts, quick
    /// heartbeats (so that a group notices a member that left without waiting seconds).
    pub(crate) fn builder(&self) -> KafkaTransportBuilder {
        KafkaTransport::builder()
            .topic_prefix(self.prefix.clone())
            .publish_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5))
            .consumer_setting("heartbeat.interval.ms", "300")
            .consumer_setting("session.timeout.ms", "6000")
    }

    /// A transport with the test's settings.
    pub(crate) async fn transport(&self) -> KafkaTransport {
        self.builder()
            .connect(&self.bootstrap)
            .await
            .expect("the Kafka cluster answers")
    }

    /// A plain rdkafka producer on the cluster, as a client without tidings has.
    pub(crate) fn producer(&self) -> rdkafka::producer::FutureProducer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("a producer")
    }

    /// A plain rdkafka consumer of `topic` from its beginning, in a group of its own.
    pub(crate) fn consumer(&self, topic: &str) -> rdkafka::consumer::StreamConsumer {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("plain-{}", uuid::Uuid::now_v7()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        consumer.subscribe(&[topic]).expect("subscribed");
        consumer
    }
}

fn fresh_prefix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("t-{}", &id[id.len() - 12..])
}
