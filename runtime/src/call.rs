//! A `#[handles]` function with its types erased, and one call of it: what the macros'
//! expansions implement and the dispatcher runs. Reached by expansions through `__private`.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use crate::deps::{Dep, Deps};
use crate::event::DynIntegrationEvent;
use crate::handler::HandlerError;
use crate::meta::EventMeta;
use crate::publish::DomainEvents;

/// What one handler call gets besides the event: the dependencies, the event's envelope, the
/// publisher and, for a handler that takes it, the store's transaction.
///
/// References only, so it is `Copy` and costs nothing to build per call.
#[derive(Debug, Clone, Copy)]
pub struct HandlerContext<'a> {
    deps: &'a Deps,
    meta: &'a EventMeta,
    publisher: Option<&'a DomainEvents>,
    transaction: Option<&'a TransactionSlot>,
}

/// Holds the store's transaction for a handler that takes it: the handler's entry takes it out
/// for the call and gives it back after, so that the dispatcher can commit it.
#[derive(Default)]
pub struct TransactionSlot(Mutex<Option<Box<dyn Any + Send>>>);

impl TransactionSlot {
    /// A slot holding `transaction`, a `sqlx::Transaction<'static, DB>`.
    pub fn new(transaction: Box<dyn Any + Send>) -> Self {
        TransactionSlot(Mutex::new(Some(transaction)))
    }

    /// The transaction, if the handler gave it back.
    pub fn into_inner(self) -> Option<Box<dyn Any + Send>> {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn Any + Send>>> {
        crate::sync::lock(&self.0)
    }
}

impl fmt::Debug for TransactionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransactionSlot")
    }
}

impl<'a> HandlerContext<'a> {
    /// The context of a call to handle the event described by `meta`, with no publisher (a
    /// `DomainEvents` parameter then fails with [`HandlerError::NoPublisher`]).
    pub fn new(deps: &'a Deps, meta: &'a EventMeta) -> Self {
        HandlerContext {
            deps,
            meta,
            publisher: None,
            transaction: None,
        }
    }

    /// The same context, with the store's transaction for a handler that takes it.
    pub fn with_transaction(self, transaction: &'a TransactionSlot) -> Self {
        HandlerContext {
            transaction: Some(transaction),
            ..self
        }
    }

    /// Takes the store's transaction out for a `&mut Transaction<'_, DB>` parameter.
    pub fn take_transaction<T: Any + Send>(&self) -> Result<Box<T>, HandlerError> {
        let taken = self.transaction.and_then(|slot| slot.lock().take());
        let transaction = taken.ok_or(HandlerError::NoTransaction {
            type_name: std::any::type_name::<T>(),
        })?;
        transaction
            .downcast::<T>()
            .map_err(|_| HandlerError::NoTransaction {
                type_name: std::any::type_name::<T>(),
            })
    }

    /// Gives the transaction back after the handler's call, for the dispatcher to commit.
    pub fn give_back_transaction<T: Any + Send>(&self, transaction: Box<T>) {
        if let Some(slot) = self.transaction {
            *slot.lock() = Some(transaction);
        }
    }

    /// The same context, with the publisher of the handler's bounded context.
    pub fn with_publisher(self, publisher: &'a DomainEvents) -> Self {
        HandlerContext {
            publisher: Some(publisher),
            ..self
        }
    }

    /// The publisher for a `DomainEvents` parameter: what it publishes is caused by the event
    /// being handled and keeps its correlation id.
    pub fn domain_events(&self) -> Result<DomainEvents, HandlerError> {
        let publisher = self.publisher.ok_or(HandlerError::NoPublisher)?;
        Ok(publisher.caused_by(self.meta))
    }

    /// The dependency of type `T`, for a `Dep<T>` parameter.
    pub fn dep<T: Send + Sync + 'static>(&self) -> Result<Dep<T>, HandlerError> {
        self.deps
            .get::<T>()
            .ok_or_else(|| HandlerError::MissingDependency {
                type_name: std::any::type_name::<T>(),
            })
    }

    /// The envelope of the event being handled.
    pub fn meta(&self) -> &'a EventMeta {
        self.meta
    }
}

/// The integration events a handler call produced: empty, with no allocation, for a handler
/// that returns `()`.
pub type Emitted = Box<[Box<dyn DynIntegrationEvent>]>;

/// The result of one handler call: two words, the error boxed (failing is the rare path), where
/// `Result<Vec<_>, HandlerError>` is five, each moved at every step of every call.
pub type HandlerResult = Result<Emitted, Box<HandlerError>>;

/// The future of one call of an `async fn` handler.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'a>>;

/// A `#[handles]` function with its types erased: takes the event as `Any` and a context.
///
/// A plain `fn` handler is called directly, with no future and no allocation; an `async fn`
/// handler returns a boxed future. [`call`](Self::call) runs either.
#[derive(Clone, Copy)]
pub enum HandlerFn {
    /// A plain `fn` handler.
    Sync(for<'a> fn(&'a (dyn Any + Send + Sync), HandlerContext<'a>) -> HandlerResult),
    /// An `async fn` handler.
    Async(for<'a> fn(&'a (dyn Any + Send + Sync), HandlerContext<'a>) -> HandlerFuture<'a>),
}

impl fmt::Debug for HandlerFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandlerFn::Sync(_) => "HandlerFn::Sync",
            HandlerFn::Async(_) => "HandlerFn::Async",
        })
    }
}

impl HandlerFn {
    /// Calls the handler with `event`, which must be of the type it handles. A panic in the
    /// handler is caught and becomes [`HandlerError::Panicked`].
    ///
    /// A plain `fn` handler runs at once, inside this call, and the returned future is ready:
    /// no allocation, no state machine. An `async fn` handler's boxed future is returned to be
    /// awaited.
    ///
    /// Always inlined, as is the call's `poll`: awaited, the call of a plain `fn` handler
    /// compiles to the call of its entry and a check for a panic, with no future in between.
    #[inline(always)]
    pub fn call<'a>(
        self,
        event: &'a (dyn Any + Send + Sync),
        ctx: HandlerContext<'a>,
    ) -> HandlerCall<'a> {
        HandlerCall(match self {
            HandlerFn::Sync(f) => {
                let result = panic::catch_unwind(AssertUnwindSafe(|| f(event, ctx)))
                    .unwrap_or_else(|panic| Err(Box::new(HandlerError::panicked(panic))));
                CallState::Ready(Some(result))
            }
            HandlerFn::Async(f) => CallState::Pending(f(event, ctx)),
        })
    }
}

/// The future of [`HandlerFn::call`].
#[must_use = "an async handler runs only when its call is awaited"]
pub struct HandlerCall<'a>(CallState<'a>);

enum CallState<'a> {
    Ready(Option<HandlerResult>),
    Pending(HandlerFuture<'a>),
}

impl Future for HandlerCall<'_> {
    type Output = HandlerResult;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerResult> {
        match &mut self.0 {
            CallState::Ready(result) => Poll::Ready(
                result
                    .take()
                    .expect("a handler call is not polled after it completed"),
            ),
            CallState::Pending(future) => {
                match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(poll) => poll,
                    Err(panic) => Poll::Ready(Err(Box::new(HandlerError::panicked(panic)))),
                }
            }
        }
    }
}

impl fmt::Debug for HandlerCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerCall")
    }
}
