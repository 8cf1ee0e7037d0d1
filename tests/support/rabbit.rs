//! A test's corner of the shared RabbitMQ broker at `AMQP_URL`: an exchange of its own (so
//! queues of its own), and every queue its transports declared deleted when it ends.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Channel, Connection, ConnectionProperties};
use tidings::store::BoxFuture;
use tidings::transport::{Inbound, Message, Subscription, Transport};
use tidings::{RabbitMqTransport, RabbitMqTransportBuilder, TransportError};

/// The test's exchange on the broker. Dropping it deletes the exchange, the dead-letter
/// exchange, and every queue (with its dead-letter queue) that its transports subscribed to.
#[derive(Debug)]
pub(crate) struct Rabbit {
    pub(crate) url: String,
    pub(crate) exchange: String,
    queues: Arc<Mutex<BTreeSet<String>>>,
}

impl Rabbit {
    /// The broker for `test`, or `None` (said plainly) without `AMQP_URL`.
    pub(crate) fn new(test: &str) -> Option<Self> {
        let url = super::amqp_url(test)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        Some(Rabbit {
            url,
            exchange: format!("t-{}", &id[id.len() - 12..]),
            queues: Arc::default(),
        })
    }

    /// The settings of the test's transports: its exchange, a short publish timeout.
    pub(crate) fn builder(&self) -> RabbitMqTransportBuilder {
        RabbitMqTransport::builder()
            .exchange(self.exchange.clone())
            .publish_timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(2))
    }

    /// A transport with the test's settings, on the broker.
    pub(crate) async fn transport(&self) -> Tracked {
        self.track(
            self.builder()
                .connect(&self.url)
                .await
                .expect("RabbitMQ answers at AMQP_URL"),
        )
    }

    /// `transport`, its queues deleted with the test's.
    pub(crate) fn track(&self, transport: RabbitMqTransport) -> Tracked {
        Tracked {
            inner: transport,
            queues: Arc::clone(&self.queues),
        }
    }

    /// Notes a queue declared some other way, to delete it with the test's.
    pub(crate) fn forget_later(&self, queue: &str) {
        self.queues.lock().unwrap().insert(queue.to_owned());
    }

    /// A plain channel on the broker, as a client without tidings has.
    pub(crate) async fn channel(&self) -> (Connection, Channel) {
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .expect("RabbitMQ answers at AMQP_URL");
        let channel = connection.create_channel().await.expect("a channel");
        (connection, channel)
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let url = self.url.clone();
        let exchange = self.exchange.clone();
        let queues: Vec<String> = self.queues.lock().unwrap().iter().cloned().collect();
        super::clean_up(async move {
            let Ok(connection) = Connection::connect(&url, ConnectionProperties::default()).await
            else {
                return;
            };
            for queue in queues {
                for name in [RabbitMqTransport::dead_letter_queue_name(&queue), queue] {
                    // A channel per deletion: a failed one closes its channel.
                    let Ok(channel) = connection.create_channel().await else {
                        return;
                    };
                    let _ = channel
                        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
            }
            for name in [format!("{exchange}:dead-letter"), exchange] {
                let Ok(channel) = connection.create_channel().await else {
                    return;
                };
                let _ = channel
                    .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
            let _ = connection.close(200, "OK".into()).await;
        });
    }
}

/// A [`RabbitMqTransport`] that notes the queues it subscribes to, for the clean-up.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    pub(crate) inner: RabbitMqTransport,
    queues: Arc<Mutex<BTreeSet<String>>>,
}

impl Transport for Tracked {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.publish(message)
    }

    fn subscribe(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Box<dyn Inbound>, TransportError>> {
        let queue = self.inner.queue_name(
            &subscription.context,
            &subscription.contract,
            subscription.version,
        );
        self.queues.lock().unwrap().insert(queue);
        self.inner.subscribe(subscription)
    }
}
