//! The errors of tidings, in one place: the app's [`Error`], the wiring's [`BuildError`] with its
//! [`Problem`]s, and the seams' [`StoreError`] and [`TransportError`], each of an [`ErrorKind`].

use std::error::Error as StdError;
use std::fmt;

use crate::origin::Origin;

/// What an app's operation can fail with.
///
/// Its `Debug` form is its message followed by its causes, as `anyhow` prints errors, so that a
/// `main` returning `Result<(), tidings::Error>` prints a failure readably.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The wiring is wrong; the error lists every problem.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An event could not be turned into JSON.
    #[error("event `{event}` could not be encoded as JSON")]
    Encode {
        /// The event's name.
        event: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `start()` was called on an app that is already running.
    #[error("the `{0}` app is already started: `start()` runs it once")]
    AlreadyStarted(String),
    /// A domain event of another bounded context was published to this context's app, where
    /// no handler handles it.
    #[error("{}", not_this_context(.event, .owner, .context))]
    NotThisContext {
        /// The event's name.
        event: &'static str,
        /// The context that declares it, if it is declared in one.
        owner: Option<&'static str>,
        /// The app's context.
        context: String,
    },
    /// `publish` was called in a handler that holds the store's transaction.
    #[error(
        "`{0}` was published with `publish` in a handler that holds the store's transaction: use `publish_in(tx, event)` with that transaction, so that the event commits with the handler's effect"
    )]
    PublishInTransaction(&'static str),
    /// A background task of the app panicked.
    #[error("a task of the `{context}` app panicked: {message}")]
    TaskPanicked {
        /// The app's context.
        context: String,
        /// What the panic said.
        message: String,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_with_causes(self, f)
    }
}

/// `error`'s message, then each of its causes on a line of its own.
fn write_with_causes(error: &(dyn StdError + 'static), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{error}")?;
    let mut cause = error.source();
    if cause.is_some() {
        write!(f, "\n\nCaused by:")?;
    }
    while let Some(error) = cause {
        write!(f, "\n    {error}")?;
        cause = error.source();
    }
    Ok(())
}

/// The text of [`Error::NotThisContext`].
fn not_this_context(event: &str, owner: &Option<&'static str>, context: &str) -> String {
    let published = format!("was published to the `{context}` app, where no handler handles it");
    match owner {
        Some(owner) => format!(
            "`{event}` is a domain event of the `{owner}` context, and {published}: publish it \
             with the `{owner}` app's `domain_events()`"
        ),
        None => format!(
            "`{event}` is declared in no bounded context, and {published}: declare its context \
             with `tidings::context!` and publish it with that context's app"
        ),
    }
}

/// What kind of failure a [`StoreError`] or a [`TransportError`] is: what the caller can do
/// about it.
///
/// ```
/// use tidings::{ErrorKind, TransportError};
///
/// let error = TransportError::new(ErrorKind::Unavailable, "the broker is away", None);
/// assert!(error.kind().is_transient());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store or the broker is away or busy (connection lost, timed out, locked): the same
    /// request may succeed later.
    Unavailable,
    /// The store or the broker refused this request and would refuse it again (a constraint, a
    /// permission, a message it will not take): retrying the same request does not help.
    Refused,
    /// The request or the stored data is not what it must be: a value that does not decode, a
    /// transaction of another database, a store used for what it cannot do. A bug to fix, not a
    /// failure to retry.
    Invalid,
}

impl ErrorKind {
    /// Whether the same request may succeed later.
    pub fn is_transient(self) -> bool {
        self == ErrorKind::Unavailable
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Refused => "refused",
            ErrorKind::Invalid => "invalid",
        })
    }
}

/// The cause of a [`StoreError`] or a [`TransportError`].
type Source = Box<dyn StdError + Send + Sync>;

macro_rules! seam_error {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        #[error("{}: {message}", $prefix)]
        pub struct $name {
            kind: ErrorKind,
            message: String,
            #[source]
            source: Option<Source>,
        }

        impl $name {
            /// An error of `kind`, described by `message`, caused by `source`.
            pub fn new(
                kind: ErrorKind,
                message: impl Into<String>,
                source: impl Into<Option<Source>>,
            ) -> Self {
                $name {
                    kind,
                    message: message.into(),
                    source: source.into(),
                }
            }

            /// What kind of failure it is.
            pub fn kind(&self) -> ErrorKind {
                self.kind
            }

            /// What could not be done, without the cause.
            pub fn message(&self) -> &str {
                &self.message
            }
        }
    };
}

seam_error!(
    /// A store could not do what was asked. Its [`kind`](Self::kind) tells a failure worth
    /// retrying from one that is not.
    StoreError,
    "store"
);

seam_error!(
    /// A transport could not do what was asked. Its [`kind`](Self::kind) tells "the broker is
    /// away" ([`ErrorKind::Unavailable`]: retry) from "the broker refused this message"
    /// ([`ErrorKind::Refused`]).
    TransportError,
    "transport"
);

/// `error` and each of its sources, joined by `: `, as a dead letter keeps it.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's message in their own: say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why an app cannot be built: every [`Problem`] found, each with what to do about it.
///
/// ```standalone_crate
/// use tidings::prelude::*;
/// use tidings::Problem;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductPutOnSale { pub product_id: String }
///
/// pub struct Recommendations;
///
/// #[handles]
/// fn recalculate(event: &ProductPutOnSale, recs: Dep<Recommendations>) {}
///
/// let error = Tidings::builder("catalog").validate().unwrap_err();
/// assert!(matches!(
///     &error.problems()[0],
///     Problem::MissingDependency { handler: "recalculate", dependency: "Recommendations", .. }
/// ));
/// ```
///
/// Its `Debug` form is its message, every problem on a numbered line.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct BuildError {
    context: String,
    problems: Vec<Problem>,
}

impl BuildError {
    pub(crate) fn new(context: String, problems: Vec<Problem>) -> Self {
        BuildError { context, problems }
    }

    /// The bounded context of the app.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Every problem, in the order found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let s = if count == 1 { "" } else { "s" };
        write!(
            f,
            "the `{}` app is not wired right ({count} problem{s}):",
            self.context
        )?;
        for (i, problem) in self.problems.iter().enumerate() {
            write!(f, "\n  {}. {problem}", i + 1)?;
        }
        Ok(())
    }
}

/// One thing wrong with an app's wiring; its text says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The registry is empty: the linker dropped the crate that holds the events and handlers.
    #[error(
        "no event or handler is linked into this program: if they live in another crate, add \
         `use that_crate as _;` to main.rs (and to each tests/*.rs that needs them)"
    )]
    NothingLinked,
    /// The app's context is not among the declared ones.
    #[error(
        "no `tidings::context!(\"{context}\")` is declared (declared: {}): declare it in the \
         module of the `{context}` context, or build the app with one of those names",
        .declared.join(", ")
    )]
    UndeclaredContext {
        /// The app's context.
        context: String,
        /// The declared contexts.
        declared: Vec<&'static str>,
    },
    /// Contexts are declared, and a handler is under none of them.
    #[error(
        "handler `{handler}` ({}) belongs to no bounded context: add `tidings::context!(\"..\")` \
         to its module or a module above it",
        at(.origin)
    )]
    HandlerOutsideContexts {
        /// The handler's name.
        handler: &'static str,
        /// Where it is declared.
        origin: Origin,
    },
    /// Two types claim one contract name and version.
    #[error(
        "contract `{contract}` version {version} is claimed by {}: give each type its own `name` \
         or `version`",
        claimants_text(.claimants)
    )]
    ContractClaimedTwice {
        /// The contract's name.
        contract: &'static str,
        /// Its version.
        version: u32,
        /// The types that claim it, with where they are declared.
        claimants: Vec<(&'static str, Origin)>,
    },
    /// Two domain events of the context have one name.
    #[error(
        "two domain events of this context are named `{name}` ({} and {}): the outbox records \
         events by name, so rename one",
        at(.first), at(.second)
    )]
    DomainEventNameTaken {
        /// The name.
        name: &'static str,
        /// Where the first is declared.
        first: Origin,
        /// Where the second is declared.
        second: Origin,
    },
    /// A handler takes a `Dep<T>` that was not provided.
    #[error(
        "handler `{handler}` ({}) takes `Dep<{dependency}>`, and no value of that type was \
         provided: add `.provide(..)` with a `{dependency}` to the builder",
        at(.origin)
    )]
    MissingDependency {
        /// The handler's name.
        handler: &'static str,
        /// Where it is declared.
        origin: Origin,
        /// The dependency's type, as written.
        dependency: &'static str,
    },
    /// A handler takes a transaction of a database that the app's store does not work in.
    #[error(
        "handler `{handler}` ({}) takes `&mut Transaction<'_, {database}>`, and the app's store \
         does not work in that database: give the builder `.store(..)` a store on it \
         (`SqliteStore` for `Sqlite`, `PostgresStore` for `Postgres`)",
        at(.origin)
    )]
    TransactionOfAnotherDatabase {
        /// The handler's name.
        handler: &'static str,
        /// Where it is declared.
        origin: Origin,
        /// The database, as written.
        database: &'static str,
    },
    /// A handler takes a transaction of the store's database from another version of sqlx than
    /// tidings': the two `DB` types have one name and are different types.
    #[error(
        "handler `{handler}` ({}) takes a transaction of `{database}` from another version of \
         sqlx than tidings' ({SQLX_VERSION}), so the app's store, which works in tidings' \
         `{database}`, cannot give it one: make the handler's crate depend on sqlx \
         {SQLX_VERSION}, with the features it uses, in place of the other version \
         (`cargo tree -d -i sqlx` lists the versions of sqlx in the build)",
        at(.origin)
    )]
    SqlxVersionMismatch {
        /// The handler's name.
        handler: &'static str,
        /// Where it is declared.
        origin: Origin,
        /// The database type's full name, such as `sqlx_sqlite::Sqlite`.
        database: &'static str,
    },
    /// Two handlers have one path, under which their deliveries would be recorded.
    #[error(
        "two handlers are named `{path}` ({}): deliveries are recorded by handler path, so \
         rename one (handlers declared inside functions share their module's path)",
        at(.origin)
    )]
    HandlerNameTaken {
        /// The handlers' path.
        path: String,
        /// Where the second is declared.
        origin: Origin,
    },
    /// A contract declares `from = A`, and nothing translates `A`.
    #[error(
        "`{contract}` declares `from = {source_event}` ({}), and nothing translates it: write \
         `#[handles] fn ..(event: &{source_event}) -> {contract}` or \
         `impl From<&{source_event}> for {contract}`; if the translation lives in another crate, \
         add `use that_crate as _;`",
        at(.origin)
    )]
    Untranslated {
        /// The contract's type.
        contract: &'static str,
        /// The domain event.
        source_event: &'static str,
        /// Where the contract is declared.
        origin: Origin,
    },
    /// A contract's source is translated more than once.
    #[error(
        "`{contract}` from `{source_event}` is translated {} times, by {}: keep one, or the \
         contract would be published more than once per event",
        .translations.len(), .translations.join(" and ")
    )]
    TranslatedTwice {
        /// The contract's type.
        contract: &'static str,
        /// The domain event.
        source_event: &'static str,
        /// The translations, described.
        translations: Vec<String>,
    },
    /// An inbound handler consumes a contract that is not linked into the program.
    #[error(
        "handler `{handler}` ({}) consumes `{contract}`, which is not linked into this program: \
         add `use that_crate as _;` for the crate that declares it",
        at(.origin)
    )]
    ContractNotLinked {
        /// The handler's name.
        handler: &'static str,
        /// Where it is declared.
        origin: Origin,
        /// The contract's type, as written.
        contract: &'static str,
    },
    /// The context has nothing to run.
    #[error(
        "the `{context}` context has no handler and no translation: its handlers are in a crate \
         that is not linked (add `use that_crate as _;`), or under another context"
    )]
    NoHandler {
        /// The app's context.
        context: String,
    },
}

/// The version of sqlx that tidings' stores work with, for a problem's text.
const SQLX_VERSION: &str = "0.9";

/// Where an item is, for a problem's text.
fn at(origin: &Origin) -> String {
    format!("{}, at {origin}", origin.module_path())
}

/// The types that claim one contract, for a problem's text.
fn claimants_text(claimants: &[(&'static str, Origin)]) -> String {
    let named: Vec<String> = claimants
        .iter()
        .map(|(name, origin)| format!("`{name}` ({})", at(origin)))
        .collect();
    named.join(" and ")
}
