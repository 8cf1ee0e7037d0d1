//! A Kafka-protocol endpoint for the two-service example where no Kafka cluster is at hand:
//! librdkafka's mock cluster (three brokers on TCP ports of 127.0.0.1, the log in memory), for
//! as long as this process runs. It prints the cluster's `kafka://` URL on its first line, then
//! waits until its standard input closes (or it is killed).
//!
//! ```sh
//! cargo run --example kafka_mock                 # prints kafka://127.0.0.1:…,127.0.0.1:…
//! BROKER_URL=kafka://127.0.0.1:… cargo run --example search_service -- p-1,p-2,p-3 60
//! BROKER_URL=kafka://127.0.0.1:… cargo run --example catalog_service
//! ```
//!
//! The mock cluster speaks the Kafka protocol (produce, fetch, consumer groups, offset commits,
//! the idempotent producer) but not the admin API: the services' transports find a topic
//! missing, and the mock creates it when they look it up (with four partitions).

use std::io::{Read, Write};

use rdkafka::mocking::MockCluster;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = MockCluster::new(3)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "kafka://{}", cluster.bootstrap_servers())?;
    stdout.flush()?;
    // Until the standard input closes: the cluster lives as long as this process.
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    drop(cluster);
    Ok(())
}
