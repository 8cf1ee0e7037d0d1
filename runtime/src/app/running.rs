//! [`Running`]: a started app, its shutdown, and `settle` for tests.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::activity::Activity;
use crate::error::Error;
use crate::handler::panic_message;
use crate::worker::Shared;

/// A started app: [`shutdown`](Self::shutdown) stops it, [`settle`](Self::settle) waits for it.
pub struct Running {
    pub(super) shared: Arc<Shared>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("context", &self.shared.context)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Stops the app gracefully: the dispatcher, the relay and the consumers finish the work
    /// they hold, then stop. What is not done yet stays in the store.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.stop.send_replace(true);
        let mut panicked = None;
        for task in self.tasks {
            if let Err(error) = task.await
                && error.is_panic()
            {
                panicked.get_or_insert(panic_message(error.into_panic()));
            }
        }
        match panicked {
            None => Ok(()),
            Some(message) => Err(Error::TaskPanicked {
                context: self.shared.context.clone(),
                message,
            }),
        }
    }

    /// Resolves once the app is idle: nothing in flight, every delivery in its store completed
    /// or dead-lettered, every integration row published, and (on a transport that can tell)
    /// every message it sent received. For tests, with no sleeps: it asks the store how much
    /// work waits each time the app's work in flight drops to none, and every poll interval
    /// while the waiting work is not this process's to do.
    pub async fn settle(&self) {
        Running::settle_all(&[self]).await;
    }

    /// Resolves once every app in `apps` is idle at the same moment: for apps that talk to each
    /// other, such as two contexts on one [`InMemoryTransport`](crate::InMemoryTransport).
    pub async fn settle_all(apps: &[&Running]) {
        let mut all: Vec<&Activity> = Vec::new();
        for running in apps {
            all.push(&running.shared.activity);
            all.extend(running.shared.transport_activity.as_deref());
        }
        let stores_empty = || async {
            for running in apps {
                match running.shared.store.count_pending().await {
                    Ok((0, 0)) => {}
                    Ok(_) => return false,
                    Err(error) => {
                        tracing::warn!(%error, "could not count the work waiting in the store");
                        return false;
                    }
                }
            }
            true
        };
        let recheck = apps
            .iter()
            .map(|running| running.shared.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(1));
        Activity::settle(&all, recheck, stores_empty).await;
    }
}
