//! What a `#[handles]` function's errors say to the runtime: [`Retryable`], and the
//! [`HandlerError`] of a call that did not complete.

use std::error::Error as StdError;

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
    /// The error of `handler`, which handles `expected`, called with an event of another type.
    /// Out of line, so that a handler entry's own path needs no stack frame for building it.
    #[cold]
    #[inline(never)]
    pub(crate) fn wrong_event(handler: &'static str, expected: &'static str) -> Box<Self> {
        Box::new(HandlerError::WrongEvent { handler, expected })
    }

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

/// What a panic said, if it said something.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned())
}
