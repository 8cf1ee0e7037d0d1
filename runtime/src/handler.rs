//! What a `#[handles]` function receives and returns, once its types are erased.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::app::DomainEvents;
use crate::event::DynIntegrationEvent;
use crate::meta::EventMeta;

/// A dependency of a handler: a value provided once to the app and shared by every handler that
/// asks for it. Cheap to clone; derefs to `T`.
///
/// ```
/// use tidings::prelude::*;
///
/// #[derive(Default)]
/// struct Recommendations { /* a client, a pool, ... */ }
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductPutOnSale { pub product_id: String }
///
/// #[handles]
/// async fn recalculate_recommendations(event: &ProductPutOnSale, recs: Dep<Recommendations>) {
///     let _recs: &Recommendations = &recs;
/// }
/// ```
pub struct Dep<T>(Arc<T>);

impl<T> Dep<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Dep(Arc::new(value))
    }

    /// The shared pointer behind the dependency.
    pub fn into_arc(self) -> Arc<T> {
        self.0
    }
}

impl<T> From<Arc<T>> for Dep<T> {
    fn from(value: Arc<T>) -> Self {
        Dep(value)
    }
}

impl<T> Clone for Dep<T> {
    fn clone(&self) -> Self {
        Dep(Arc::clone(&self.0))
    }
}

impl<T> Deref for Dep<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for Dep<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Dep<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The provided dependencies, by type: what `Dep<T>` parameters are filled from.
///
/// ```
/// use tidings::Deps;
///
/// let mut deps = Deps::new();
/// deps.insert(String::from("catalog-db"));
/// assert_eq!(&*deps.get::<String>().unwrap(), "catalog-db");
/// assert!(deps.get::<u32>().is_none());
/// ```
#[derive(Default, Clone)]
pub struct Deps {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Deps {
    /// No dependencies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Provides `value` to every `Dep<T>` parameter; replaces an earlier value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_arc(Arc::new(value));
    }

    /// Provides a value that is already shared.
    pub fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.values.insert(TypeId::of::<T>(), value);
    }

    /// The value provided for `T`, if any.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Dep<T>> {
        let value = self.values.get(&TypeId::of::<T>())?;
        Arc::clone(value).downcast::<T>().ok().map(Dep)
    }

    /// Whether a value of the type with this id was provided.
    pub fn contains(&self, type_id: TypeId) -> bool {
        self.values.contains_key(&type_id)
    }
}

impl fmt::Debug for Deps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deps")
            .field("count", &self.values.len())
            .finish_non_exhaustive()
    }
}

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
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// Why a handler call did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The handler returned an error.
    #[error("{error}")]
    Failed {
        /// The handler's error (its message is this error's message, so it is no `source`).
        error: Box<dyn StdError + Send + Sync + 'static>,
        /// Whether retrying may succeed: the error's [`Retryable`] answer, `true` by default.
        retryable: bool,
    },
    /// A `Dep<T>` parameter had no provided value.
    #[error(
        "no dependency of type `{type_name}` was provided: add `.provide(value)` with a `{type_name}` to the app's builder"
    )]
    MissingDependency {
        /// The type that was asked for.
        type_name: &'static str,
    },
    /// The handler panicked; the message is the panic's.
    #[error("the handler panicked: {0}")]
    Panicked(String),
    /// A `DomainEvents` parameter, in a call made without a publisher.
    #[error(
        "the handler takes `DomainEvents`, and was called without a publisher: call it through a running app"
    )]
    NoPublisher,
    /// A `&mut Transaction<'_, DB>` parameter, in a call made with no transaction of that type.
    #[error(
        "the handler takes `{type_name}`, and was called without one: a running app whose store works in that database's transactions gives it"
    )]
    NoTransaction {
        /// The transaction type that was asked for.
        type_name: &'static str,
    },
    /// The handler was called with an event of another type than the one it handles.
    #[error("handler `{handler}` handles `{expected}` and was called with another event type")]
    WrongEvent {
        /// The handler's name.
        handler: &'static str,
        /// The event type it handles.
        expected: &'static str,
    },
}

impl HandlerError {
    /// The error of a handler that panicked with `payload`.
    pub(crate) fn panicked(payload: Box<dyn std::any::Any + Send>) -> Self {
        HandlerError::Panicked(panic_message(payload))
    }

    /// Whether running the handler again may succeed: a handler's own error is, unless it says
    /// otherwise through [`Retryable`]; so is a panic.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HandlerError::Failed {
                retryable: true,
                ..
            } | HandlerError::Panicked(_)
        )
    }
}

/// Lets a handler's error type say whether it is worth retrying. Without an impl, every error is
/// retried (with backoff, up to the app's maximum number of attempts).
///
/// ```
/// use tidings::Retryable;
///
/// #[derive(Debug, thiserror::Error)]
/// pub enum IndexError {
///     #[error("the index is unreachable")]
///     Unreachable,
///     #[error("the document is malformed")]
///     Malformed,
/// }
///
/// impl Retryable for IndexError {
///     fn is_retryable(&self) -> bool {
///         matches!(self, IndexError::Unreachable)
///     }
/// }
/// ```
pub trait Retryable {
    /// `false` for an error that will fail again however often the handler runs: the delivery
    /// goes to the dead letters at once.
    fn is_retryable(&self) -> bool;
}

/// The integration events a handler call produced (empty for a handler that returns `()`).
pub type Emitted = Vec<Box<dyn DynIntegrationEvent>>;

/// The result of one handler call.
pub type HandlerResult = Result<Emitted, HandlerError>;

/// The future of one call of an `async fn` handler.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'a>>;

/// A `#[handles]` function with its types erased: takes the event as `Any` and a context.
///
/// A plain `fn` handler is called directly, with no future and no allocation; an `async fn`
/// handler returns a boxed future. [`HandlerInfo::call`](crate::HandlerInfo::call) runs either.
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

/// What a panic said, if it said something.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned())
}
