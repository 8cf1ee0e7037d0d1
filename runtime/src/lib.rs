//! # tidings
//!
//! Domain events and integration events, kept apart and wired by themselves.
//!
//! - A **domain event** (`#[domain_event]`) is a fact in the language of one bounded context,
//!   such as `ProductPutOnSale`. Use cases publish domain events only; they are handled
//!   in-process.
//! - An **integration event** (`#[integration_event(..)]`) is a stable, versioned contract that the
//!   context publishes to other contexts through a broker, such as
//!   `ProductUpdatedIntegrationEvent`. It is published as the *reaction* to domain events: a
//!   translation handler returns it, or a `From<&DomainEvent>` impl makes it.
//! - A **handler** (`#[handles]`) is a free `fn` or `async fn` whose first parameter is the event
//!   it handles.
//!
//! The macros register every event, contract, translation and handler at compile time; the
//! [`registry()`] collects them. Mistakes the compiler can see are compile errors that say the
//! rule and the fix: publishing an integration event from a use case, a translation of a domain
//! event that the contract does not list in `from`, an integration event re-published from
//! another, names that break the conventions, and more (see the README's table).
//!
//! ```
//! use tidings::prelude::*;
//!
//! #[domain_event]
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! pub struct ProductPutOnSale { pub product_id: String, pub price_cents: i64 }
//!
//! #[integration_event(name = "catalog.product-updated", version = 1, from = ProductPutOnSale, key = product_id)]
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! pub struct ProductUpdatedIntegrationEvent { pub product_id: String, pub price_cents: i64 }
//!
//! // A translation handler: the integration event is the reaction to the domain event.
//! #[handles]
//! fn publish_product_updated(event: &ProductPutOnSale) -> ProductUpdatedIntegrationEvent {
//!     ProductUpdatedIntegrationEvent { product_id: event.product_id.clone(), price_cents: event.price_cents }
//! }
//!
//! let registry = tidings::registry();
//! let translation = registry.handlers_of::<ProductPutOnSale>().next().unwrap();
//! assert!(translation.produces().unwrap().is::<ProductUpdatedIntegrationEvent>());
//! ```
// Denied everywhere but where the future of an `async fn` handler is kept in place in its call
// (`call.rs`, `FutureSlot`), each use commented with why it is sound.
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate self as tidings;

mod activity;
mod app;
mod call;
pub mod catalog;
mod deps;
mod envelope;
mod error;
mod event;
mod future;
mod handler;
mod measure;
mod meta;
mod origin;
mod publish;
mod recent;
pub mod registry;
mod retention;
mod retry;
pub mod store;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod trace;
pub mod transport;
mod wiring;
mod worker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use app::{AppWaiting, NotRunHandler, Unsettled};
pub use app::{ComponentHealth, Health, HealthStatus};
pub use app::{Running, Tidings, TidingsBuilder};
pub use catalog::catalog;
pub use deps::Dep;
pub use error::{BuildError, Error, ErrorKind, Problem, StoreError, TransportError};
pub use event::{DomainEvent, Event, EventKind, IntegrationEvent};
pub use handler::Retryable;
pub use meta::EventMeta;
pub use publish::{DomainEvents, Publishing};
pub use registry::registry;
pub use retention::Retention;
pub use retry::RetryPolicy;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{DeadLetter, DeadLetterId, InMemoryStore, Outcome};
pub use transport::InMemoryTransport;
#[cfg(feature = "kafka")]
pub use transport::{KafkaTransport, KafkaTransportBuilder};
#[cfg(feature = "nats")]
pub use transport::{NatsStorage, NatsTransport, NatsTransportBuilder};
#[cfg(feature = "pubsub")]
pub use transport::{PubSubClients, PubSubTopology, PubSubTransport, PubSubTransportBuilder};
#[cfg(feature = "rabbitmq")]
pub use transport::{
    RabbitMqQueueType, RabbitMqTransport, RabbitMqTransportBuilder, RabbitMqUnroutable,
};

/// Declares the bounded context of this module and the modules below it: their events,
/// contracts and handlers belong to the app built with `Tidings::builder(name)`.
///
/// A program with one context needs no declaration. In a modular monolith, declare each
/// context at the root module of its code; a handler declared under no context is then a
/// `build()` error.
///
/// ```standalone_crate
/// mod catalog {
///     tidings::context!("catalog");
///     // the catalog's events and handlers
/// }
///
/// mod search {
///     tidings::context!("search");
///     // the search context's events and handlers
/// }
///
/// let registry = tidings::registry();
/// assert_eq!(registry.context_of(&format!("{}::catalog::projections", module_path!())), Some("catalog"));
/// ```
#[macro_export]
macro_rules! context {
    ($name:literal) => {
        $crate::__private::inventory::submit! {
            $crate::__private::ContextDecl::new(
                $name,
                $crate::__private::Origin::new(
                    ::core::module_path!(), ::core::file!(), ::core::line!(), ::core::column!(),
                ),
            )
        }
    };
}

/// Marks a domain event: a fact in the language of one bounded context.
///
/// Goes on a struct or an enum with no generic parameters that derives `serde::Serialize` and
/// `serde::Deserialize`. Implements [`DomainEvent`] and registers the type.
///
/// Naming rules (compile errors, each with an opt-out):
/// - the name is in the past tense: a word ending in `-ed` or a common irregular participle
///   (`Put`, `Sent`, `Paid`, `Sold`, ...); opt out with `#[domain_event(allow_non_past_tense)]`;
/// - the name is specific: not `…Updated`, `…Changed`, `…Modified`, `…Saved`; opt out with
///   `#[domain_event(allow_generic_name)]`;
/// - the name does not end in `IntegrationEvent` (no opt-out).
///
/// `crate = "path"` names the `tidings` crate for a program that renamed the dependency.
///
/// On an enum whose own name states the fact (`PaymentReceived { Card, Cash }`), the rules apply
/// to the enum's name and its variants are kinds of that one event; on an enum named for a family
/// of events, with no past tense in its name (`OrderEvent { Placed, Cancelled }`), they apply to
/// each variant's name instead. Either way, the enum's own name does not end in
/// `IntegrationEvent`.
///
/// ```
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductPutOnSale { pub product_id: String }
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub enum OrderEvent { Placed { order_id: u64 }, Cancelled { order_id: u64 } }
///
/// #[domain_event(allow_generic_name)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct SettingsChanged { pub key: String }
/// ```
pub use tidings_macros::domain_event;

/// Marks an integration event: a versioned contract published to other contexts.
///
/// Arguments, all optional:
/// - `name = "catalog.product-updated"`: the contract's name on the wire. Default: the type's
///   name without the `IntegrationEvent` suffix, in kebab-case (`product-updated`). Letters,
///   digits, `.`, `-` and `_`.
/// - `version = 2`: the contract's version, from 1 (the default).
/// - `from = [ProductPutOnSale, ProductRestocked]` or `from = ProductPutOnSale`: the domain
///   events this contract is a reaction to. Each needs exactly one translation: a `#[handles]`
///   function of that domain event returning this type, or `impl From<&DomainEvent> for ThisType`.
///   Omit `from` for a contract this program only consumes.
/// - `key = product_id`: the field whose value orders publication (events with the same key are
///   published in order). Its type implements `Display`.
/// - `crate = "path"`: the `tidings` crate, for a program that renamed the dependency.
///
/// The name ends in `IntegrationEvent`.
///
/// ```
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct OrderConfirmed { pub order_id: u64 }
///
/// #[integration_event(name = "sales.order-confirmed", from = OrderConfirmed, key = order_id)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct OrderConfirmedIntegrationEvent { pub order_id: u64 }
///
/// impl From<&OrderConfirmed> for OrderConfirmedIntegrationEvent {
///     fn from(event: &OrderConfirmed) -> Self { Self { order_id: event.order_id } }
/// }
///
/// let contract = tidings::registry().integration_event::<OrderConfirmedIntegrationEvent>().unwrap();
/// assert!(contract.sources()[0].has_from_impl());
/// ```
pub use tidings_macros::integration_event;

/// Marks a handler: a free `fn` or `async fn` that reacts to an event.
///
/// - First parameter: `&E`, where `E` is a domain event (the handler runs in-process) or an
///   integration event (the handler consumes it from the broker).
/// - Further parameters, in any order: `Dep<T>` (a provided dependency), `EventMeta` or
///   `&EventMeta` (the event's envelope), `DomainEvents` (the publisher of the handler's context:
///   what it publishes is caused by the handled event), and, in an `async fn`,
///   `&mut sqlx::Transaction<'_, DB>`: the store's transaction, in which the handler's database
///   effect, its completion and the integration events it returns commit together (`DB` is
///   `Sqlite` for a `SqliteStore`, `Postgres` for a `PostgresStore`). A type alias of any of
///   them works too (`type Tx<'a> = sqlx::Transaction<'a, Sqlite>;` then `tx: &mut Tx<'_>`).
/// - Returns `()`, `Result<(), E>`, an integration event `I`, `Option<I>`, `Vec<I>`, or one of
///   those in `Result<_, E>`, where `E: std::error::Error + Send + Sync + 'static`. A handler that
///   returns an integration event is a *translation*: it handles a domain event that `I` lists in
///   `from`. A handler of an integration event returns no integration event.
///
/// The one argument is `crate = "path"`, for a program that renamed the `tidings` dependency.
///
/// A plain `fn` handler runs on the dispatcher's task, at once: keep it quick, and put blocking
/// work in an `async fn` handler (with `tokio::task::spawn_blocking`).
///
/// ```
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductPutOnSale { pub product_id: String }
///
/// #[derive(Default)]
/// pub struct Recommendations;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("recommendations are unavailable")]
/// pub struct RecsError;
///
/// #[handles]
/// async fn recalculate_recommendations(
///     event: &ProductPutOnSale,
///     recs: Dep<Recommendations>,
///     meta: &EventMeta,
/// ) -> Result<(), RecsError> {
///     Ok(())
/// }
/// ```
pub use tidings_macros::handles;

/// Gives a type that events hold a JSON Schema, so that the schemas of the events that hold it
/// are complete: the catalog shows them, and the contract check compares them.
///
/// The event macros derive the schema of the event types themselves; a type of yours inside an
/// event (a field's type, an enum's variant's) needs this attribute, or a compile error on the
/// field says so. It derives `schemars::JsonSchema` with tidings' own schemars, so the program
/// needs no dependency of its own; serde's attributes (`rename`, `rename_all`, `skip`, `default`,
/// `tag`, `flatten`, ..) shape the schema as they shape the JSON. A type that derives
/// `schemars::JsonSchema` itself (schemars 1) needs nothing.
///
/// For a field whose type is another crate's and has no schema, give the schema of its JSON
/// form: `#[schemars(with = "String")]` on the field.
///
/// `crate = "path"` names the `tidings` crate for a program that renamed the dependency.
///
/// ```
/// use tidings::prelude::*;
///
/// #[tidings::schema]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// #[serde(rename_all = "camelCase")]
/// pub struct Address { pub street_line: String, pub city: String }
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct OrderShipped { pub order_id: u64, pub to: Address }
///
/// let schema = tidings::registry().domain_event::<OrderShipped>().unwrap().schema();
/// let address = &schema["definitions"]["Address"];
/// assert_eq!(address["required"], serde_json::json!(["streetLine", "city"]));
/// ```
pub use tidings_macros::schema;

/// Everything a user of tidings names: `use tidings::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Dep, DomainEvent, DomainEvents, Event, EventKind, EventMeta, InMemoryStore,
        InMemoryTransport, IntegrationEvent, RetryPolicy, Retryable, Running, Tidings,
        domain_event, handles, integration_event,
    };
}

/// The README's examples, compiled and run as doc tests so that they stay true. They use both
/// stores, so they run with the `postgres` feature on, as `cargo test --workspace` has it.
#[cfg_attr(feature = "postgres", doc = include_str!("../../README.md"))]
#[cfg(doctest)]
pub struct ReadmeDoctests;
