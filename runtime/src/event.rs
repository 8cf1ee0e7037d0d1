//! The event traits that `#[domain_event]` and `#[integration_event]` implement.

use std::any::Any;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::Payload;

/// Which of the two kinds of event a type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A fact inside one bounded context, dispatched in-process (`#[domain_event]`).
    Domain,
    /// A published contract of a bounded context, sent through a broker (`#[integration_event]`).
    Integration,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Domain => "domain event",
            EventKind::Integration => "integration event",
        })
    }
}

/// What every event type is made of: serde-serializable, because events are recorded in the
/// outbox, and shareable across tasks.
///
/// Implemented for every type that qualifies; you never implement it yourself.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an event: events must implement `serde::Serialize` and `serde::Deserialize`, and be `Send + Sync + 'static`",
    label = "events are recorded in the outbox as JSON and shared across tasks",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`",
    note = "a field that is not `Send + Sync` (such as `Rc` or `RefCell`) also disqualifies it"
)]
pub trait EventData: Serialize + DeserializeOwned + Send + Sync + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> EventData for T {}

/// Implemented by the event macros alone: [`Event`], and so [`DomainEvent`] and
/// [`IntegrationEvent`], require it, so that an event is always registered and checked by its macro.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not marked as an event: implement the event traits with `#[domain_event]` or `#[integration_event(..)]`, never by hand",
    label = "not marked `#[domain_event]` or `#[integration_event(..)]`",
    note = "the macros register the event and check its rules at compile time; an impl written by hand would skip both"
)]
pub trait SealedEvent {}

/// An event that tidings knows: implemented by `#[domain_event]` and `#[integration_event]`.
///
/// Sealed: only the macros implement it, so that every event is registered and checked.
///
/// ```
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductPutOnSale { pub product_id: String }
///
/// assert_eq!(<ProductPutOnSale as Event>::NAME, "ProductPutOnSale");
/// assert_eq!(<ProductPutOnSale as Event>::KIND, EventKind::Domain);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not a `#[domain_event]` or an `#[integration_event]`",
    note = "a `#[handles]` function takes the event it handles as its first parameter, `&E`, where `E` is marked `#[domain_event]` or `#[integration_event(..)]`"
)]
pub trait Event: EventData + SealedEvent {
    /// The type's name, as written in its declaration.
    const NAME: &'static str;
    /// Domain or integration event.
    const KIND: EventKind;
}

/// A domain event: a fact in the language of one bounded context, published by its use cases
/// and handled in-process. Implemented by `#[domain_event]`.
///
/// ```
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct OrderConfirmed { pub order_id: u64 }
///
/// fn only_domain_events<E: DomainEvent>(_: &E) {}
/// only_domain_events(&OrderConfirmed { order_id: 7 });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    label = "only domain events are accepted here",
    note = "use cases publish domain events only: mark the fact that happened with `#[domain_event]` and publish that",
    note = "integration events are not published directly: they are the reaction to a domain event, returned by a translation handler (`#[handles] fn f(event: &YourDomainEvent) -> YourIntegrationEvent`) or made by `impl From<&YourDomainEvent> for YourIntegrationEvent`"
)]
pub trait DomainEvent: Event {}

/// An integration event: a stable, versioned contract that a bounded context publishes to other
/// contexts through a broker. Implemented by `#[integration_event(..)]`.
///
/// ```
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct OrderConfirmed { pub order_id: u64 }
///
/// #[integration_event(name = "sales.order-confirmed", version = 2, from = OrderConfirmed, key = order_id)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct OrderConfirmedIntegrationEvent { pub order_id: u64 }
///
/// impl From<&OrderConfirmed> for OrderConfirmedIntegrationEvent {
///     fn from(e: &OrderConfirmed) -> Self { Self { order_id: e.order_id } }
/// }
///
/// let event = OrderConfirmedIntegrationEvent { order_id: 7 };
/// assert_eq!(OrderConfirmedIntegrationEvent::CONTRACT, "sales.order-confirmed");
/// assert_eq!(OrderConfirmedIntegrationEvent::VERSION, 2);
/// assert_eq!(event.key().as_deref(), Some("7"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an integration event",
    label = "only integration events are accepted here",
    note = "mark the contract with `#[integration_event(name = \"..\", version = N, from = [DomainEvent, ..])]`"
)]
pub trait IntegrationEvent: Event {
    /// The contract's name on the wire, such as `catalog.product-updated`.
    const CONTRACT: &'static str;
    /// The contract's version, starting at 1.
    const VERSION: u32;
    /// The ordering key (`key = field`): events with the same key are published in order.
    /// `None` when the contract declares no key.
    fn key(&self) -> Option<String>;
}

/// An integration event whose type has been erased: what a translation produces, on its way to
/// the outbox.
///
/// Implemented for every [`IntegrationEvent`]; downcast with [`as_any`](Self::as_any) to get the
/// typed event back.
pub trait DynIntegrationEvent: Send + Sync + 'static {
    /// The contract's name ([`IntegrationEvent::CONTRACT`]).
    fn contract(&self) -> &'static str;
    /// The contract's version ([`IntegrationEvent::VERSION`]).
    fn version(&self) -> u32;
    /// The ordering key ([`IntegrationEvent::key`]).
    fn key(&self) -> Option<String>;
    /// The event as JSON, as it is recorded in the outbox.
    fn to_json(&self) -> Result<Payload, serde_json::Error>;
    /// The event as `Any`, to downcast it to its type.
    fn as_any(&self) -> &dyn Any;
}

impl<T: IntegrationEvent> DynIntegrationEvent for T {
    fn contract(&self) -> &'static str {
        T::CONTRACT
    }
    fn version(&self) -> u32 {
        T::VERSION
    }
    fn key(&self) -> Option<String> {
        IntegrationEvent::key(self)
    }
    fn to_json(&self) -> Result<Payload, serde_json::Error> {
        Payload::of(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl fmt::Debug for dyn DynIntegrationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynIntegrationEvent")
            .field("contract", &self.contract())
            .field("version", &self.version())
            .field("key", &self.key())
            .finish_non_exhaustive()
    }
}
