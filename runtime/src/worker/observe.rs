//! The backlog gauges: every metrics interval, what waits in the store, by handler and by
//! contract, with the age of the oldest (`tidings.outbox.*`), and whether the broker answers.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Shared, pause};
use crate::measure;
use crate::store::Waiting;

/// Reads the backlog every metrics interval until told to stop.
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut before = Waiting::default();
    loop {
        match shared.store.waiting().await {
            Ok(waiting) => {
                measure::backlog(&shared.context, &waiting, &before);
                before = waiting;
            }
            Err(error) => {
                tracing::debug!(%error, "could not read the backlog for the metrics");
                shared.observed.store_failed(&error);
            }
        }
        let available = shared.broker_answers().await;
        measure::broker_available(&shared.context, shared.transport.system(), available);
        if pause(shared.metrics_interval, &mut stop).await {
            return;
        }
    }
}
