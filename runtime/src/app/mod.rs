//! The app of one bounded context: [`Tidings`] (publish, dead letters, start), its
//! [`TidingsBuilder`] and the [`Running`] handle of a started app.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::deps::Dep;
use crate::error::Error;
use crate::publish::DomainEvents;
use crate::store::{DeadLetter, DeadLetterId, StoreListener};
use crate::transport::Subscription;
use crate::worker::{self, Inbounds, Shared};

pub(crate) use health::Observed;

pub use builder::TidingsBuilder;
pub use health::{ComponentHealth, Health, HealthStatus};
pub use running::{AppWaiting, NotRunHandler, Running, Unsettled};

mod builder;
mod health;
mod running;

/// The app of one bounded context: publish its domain events with
/// [`domain_events`](Self::domain_events), run its handlers with [`start`](Self::start).
///
/// ```standalone_crate
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct OrderConfirmed { pub order_id: u64 }
///
/// #[handles]
/// fn send_confirmation_mail(event: &OrderConfirmed) {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tidings::Error> {
/// let app = Tidings::builder("sales").build()?;
/// let running = app.start().await?;
/// app.domain_events().publish(OrderConfirmed { order_id: 7 }).await?;
/// running.settle().await;
/// running.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Tidings {
    shared: Arc<Shared>,
    /// Whether `start` ran, shared by the clones.
    started: Arc<AtomicBool>,
}

impl fmt::Debug for Tidings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tidings")
            .field("context", &self.shared.context)
            .finish_non_exhaustive()
    }
}

impl Tidings {
    /// The builder of the app of bounded context `context`, the `source` of its integration
    /// events.
    pub fn builder(context: impl Into<String>) -> TidingsBuilder {
        TidingsBuilder::new(context.into())
    }

    /// The bounded context.
    pub fn context(&self) -> &str {
        &self.shared.context
    }

    /// The provided dependency of type `T`, as handlers receive it.
    pub fn dependency<T: Send + Sync + 'static>(&self) -> Option<Dep<T>> {
        self.shared.deps.get::<T>()
    }

    /// The publisher of this context's domain events.
    pub fn domain_events(&self) -> DomainEvents {
        DomainEvents::new(Arc::clone(&self.shared.outbox), false)
    }

    /// The dead letters: deliveries that kept failing, and messages that could not be decoded.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, Error> {
        Ok(self.shared.store.dead_letters().await?)
    }

    /// Runs a dead letter's handler again, from its first attempt: for a handler whose cause of
    /// failure was fixed. Returns `false` if there is no such dead letter, or it has no handler
    /// (a message that could not be decoded); discard those.
    pub async fn replay_dead_letter(&self, id: DeadLetterId) -> Result<bool, Error> {
        let replayed = self.shared.store.replay_dead_letter(id).await?;
        if replayed {
            self.shared.dispatch_wake.notify_one();
        }
        Ok(replayed)
    }

    /// Deletes a dead letter; returns `false` if there is no such dead letter.
    pub async fn discard_dead_letter(&self, id: DeadLetterId) -> Result<bool, Error> {
        Ok(self.shared.store.discard_dead_letter(id).await?)
    }

    /// Starts the dispatcher, the relay, one consumer per consumed contract, the store's
    /// listener (if it has one) and the retention sweep.
    pub async fn start(&self) -> Result<Running, Error> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyStarted(self.shared.context.clone()));
        }
        let (inbounds, listener) = match self.prepare().await {
            Ok(prepared) => prepared,
            Err(error) => {
                // Nothing runs yet: `start` may be called again.
                self.started.store(false, Ordering::SeqCst);
                return Err(error);
            }
        };
        let (stop, stopped) = watch::channel(false);
        let tasks = worker::spawn(&self.shared, inbounds, listener, &stopped);
        Ok(Running {
            shared: Arc::clone(&self.shared),
            stop,
            tasks,
        })
    }

    /// What `start` needs before it spawns anything: every subscription, and the store's
    /// listener.
    async fn prepare(&self) -> Result<(Inbounds, Option<Box<dyn StoreListener>>), Error> {
        let listener = self.shared.store.listen().await?;
        let mut inbounds = Vec::new();
        for (&(contract, version), routes) in &self.shared.wiring.consumed {
            let subscription = Subscription {
                contract: contract.to_owned(),
                version,
                context: self.shared.context.clone(),
            };
            let inbound = self.shared.transport.subscribe(subscription).await?;
            inbounds.push((inbound, routes.clone()));
        }
        Ok((inbounds, listener))
    }
}
