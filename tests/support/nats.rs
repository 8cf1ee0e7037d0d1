//! A test's corner of the shared NATS server at `NATS_URL`: subject and stream prefixes of its
//! own, and its streams deleted when it ends.

use std::time::Duration;

use futures_util::StreamExt;
use tidings::{NatsStorage, NatsTransport, NatsTransportBuilder};
use uuid::Uuid;

/// A test's corner of the server: its subject and stream prefixes. Dropping it deletes the
/// streams of its prefix.
pub(crate) struct Broker {
    pub(crate) url: String,
    suffix: String,
}

impl Broker {
    /// The broker for `test`, or `None` (said plainly) without `NATS_URL`.
    pub(crate) fn new(test: &str) -> Option<Self> {
        let url = super::nats_url(test)?;
        let id = Uuid::now_v7().simple().to_string();
        Some(Broker {
            url,
            suffix: id[id.len() - 12..].to_owned(),
        })
    }

    pub(crate) fn stream_prefix(&self) -> String {
        format!("T{}", self.suffix.to_uppercase())
    }

    /// The settings of the test's transports: its prefixes, streams in memory, a short ack
    /// wait so that what is not acknowledged comes again within the test's patience.
    pub(crate) fn builder(&self) -> NatsTransportBuilder {
        NatsTransport::builder()
            .subject_prefix(format!("t{}", self.suffix))
            .stream_prefix(self.stream_prefix())
            .storage(NatsStorage::Memory)
            .max_age(Duration::from_secs(3600))
            .ack_wait(Duration::from_secs(2))
    }

    pub(crate) async fn transport(&self) -> NatsTransport {
        self.builder()
            .connect(&self.url)
            .await
            .expect("NATS answers at NATS_URL")
    }

    pub(crate) async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url)
            .await
            .expect("NATS answers at NATS_URL")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let url = self.url.clone();
        let prefix = self.stream_prefix();
        super::clean_up(async move {
            let Ok(client) = async_nats::connect(&url).await else {
                return;
            };
            let jetstream = async_nats::jetstream::new(client);
            let names: Vec<String> = jetstream
                .stream_names()
                .filter_map(|name| async move { name.ok() })
                .collect()
                .await;
            for name in names.iter().filter(|name| name.starts_with(&prefix)) {
                let _ = jetstream.delete_stream(name).await;
            }
        });
    }
}
