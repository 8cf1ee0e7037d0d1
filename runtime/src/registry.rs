//! The registry: every event, contract, translation and handler of the program, as the macros
//! described them at compile time.
//!
//! The macros submit a static description of each item through [`inventory`]; [`registry()`]
//! collects them once. The runtime wires itself from it, the catalog renders it, and tests can
//! assert on it.
//!
//! # Items in other crates
//!
//! The linker keeps a crate's registrations only if the program names something of that crate.
//! A crate that holds handlers and nothing the binary uses is dropped silently by the linker, so
//! name it once, in `main.rs` and in each `tests/*.rs` that needs it:
//!
//! ```ignore
//! use billing as _; // link billing's events and handlers into this program
//! ```
//!
//! [`Registry::expect_crates`] turns a forgotten line into an error that says which line to add.

use std::any::TypeId;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use crate::call::{AnyEvent, HandlerFn, TypedEvent};
use crate::envelope::Payload;
use crate::event::{DynIntegrationEvent, EventKind};
pub use crate::origin::Origin;

/// A type the registry refers to: its `TypeId` and its name as written in the source.
#[derive(Debug, Clone, Copy)]
pub struct TypeRef {
    type_id: TypeId,
    /// As written; `None` for a type the macros found through a trait, which has no spelling.
    name: Option<&'static str>,
    /// `std::any::type_name` of the type (not a `const fn`, so kept as a function).
    type_name: Option<fn() -> &'static str>,
}

impl TypeRef {
    #[doc(hidden)]
    pub const fn new(type_id: TypeId, name: &'static str) -> Self {
        TypeRef {
            type_id,
            name: Some(name),
            type_name: None,
        }
    }

    /// `T`, written `name`.
    #[doc(hidden)]
    pub const fn of<T: ?Sized + 'static>(name: &'static str) -> Self {
        TypeRef {
            type_id: TypeId::of::<T>(),
            name: Some(name),
            type_name: Some(std::any::type_name::<T>),
        }
    }

    /// `T`, which has no spelling: a type found through a trait, such as the `T` of a
    /// `Dep<T>` behind a type alias.
    #[doc(hidden)]
    pub const fn of_type<T: ?Sized + 'static>() -> Self {
        TypeRef {
            type_id: TypeId::of::<T>(),
            name: None,
            type_name: Some(std::any::type_name::<T>),
        }
    }

    /// A type whose `std::any::type_name` is `type_name`'s: for tests of the wiring.
    #[cfg(test)]
    pub(crate) const fn with_type_name(
        type_id: TypeId,
        name: &'static str,
        type_name: fn() -> &'static str,
    ) -> Self {
        TypeRef {
            type_id,
            name: Some(name),
            type_name: Some(type_name),
        }
    }

    /// The type's id.
    pub fn type_id(&self) -> TypeId {
        self.type_id
    }

    /// The type as written where it was referred to, such as `ProductPutOnSale` or
    /// `events::ProductPutOnSale`; for a type reached through a type alias, its name without
    /// its module path (`Recommendations`), or its full path if it is generic.
    pub fn name(&self) -> &'static str {
        match self.name {
            Some(name) => name,
            None => short_type_name(self.type_name()),
        }
    }

    /// The type's full path as [`std::any::type_name`] gives it, such as
    /// `sqlx_sqlite::database::Sqlite`; the name as written if it is not known.
    pub fn type_name(&self) -> &'static str {
        match (self.type_name, self.name) {
            (Some(type_name), _) => type_name(),
            (None, Some(name)) => name,
            (None, None) => "?",
        }
    }

    /// Whether this is the type `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.type_id == TypeId::of::<T>()
    }
}

/// Two references to one type are equal if they name it alike.
impl PartialEq for TypeRef {
    fn eq(&self, other: &Self) -> bool {
        self.type_id == other.type_id && self.name() == other.name()
    }
}

impl Eq for TypeRef {}

impl std::hash::Hash for TypeRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.type_id.hash(state);
        self.name().hash(state);
    }
}

/// `a::b::Name` as `Name`; a generic type's path is kept whole, its arguments have paths too.
fn short_type_name(type_name: &'static str) -> &'static str {
    if type_name.contains(['<', '(', '[', '&', ' ']) {
        return type_name;
    }
    type_name.rsplit("::").next().unwrap_or(type_name)
}

/// Decodes an event from its JSON form, as recorded in the outbox or received from a broker.
#[derive(Clone, Copy)]
pub struct Decode {
    decode: fn(&Payload) -> Result<TypedEvent, serde_json::Error>,
}

impl Decode {
    #[doc(hidden)]
    pub const fn new(decode: fn(&Payload) -> Result<TypedEvent, serde_json::Error>) -> Self {
        Decode { decode }
    }

    /// The event that `payload` holds.
    pub fn decode(&self, payload: &Payload) -> Result<TypedEvent, serde_json::Error> {
        (self.decode)(payload)
    }
}

impl fmt::Debug for Decode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Decode")
    }
}

/// A `#[domain_event]` type.
#[derive(Debug)]
pub struct DomainEventInfo {
    event: TypeRef,
    decode: fn() -> Option<Decode>,
    schema: fn() -> serde_json::Value,
    origin: Origin,
}

impl DomainEventInfo {
    #[doc(hidden)]
    pub const fn new(
        event: TypeRef,
        decode: fn() -> Option<Decode>,
        schema: fn() -> serde_json::Value,
        origin: Origin,
    ) -> Self {
        DomainEventInfo {
            event,
            decode,
            schema,
            origin,
        }
    }

    /// The JSON Schema (draft-07) of the event's JSON form, made from its type with its serde
    /// attributes.
    pub fn schema(&self) -> serde_json::Value {
        (self.schema)()
    }

    /// Decodes the event from its JSON form (`None` only for a type that does not compile as an
    /// event).
    pub fn decoder(&self) -> Option<Decode> {
        (self.decode)()
    }

    /// The event type.
    pub fn event(&self) -> TypeRef {
        self.event
    }

    /// The type's name.
    pub fn name(&self) -> &'static str {
        self.event.name()
    }

    /// Where the type is declared.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// An `#[integration_event(..)]` type: a contract.
#[derive(Debug)]
pub struct IntegrationEventInfo {
    event: TypeRef,
    contract: &'static str,
    version: u32,
    key: Option<&'static str>,
    sources: &'static [TranslationSource],
    decode: fn() -> Option<Decode>,
    schema: fn() -> serde_json::Value,
    origin: Origin,
}

impl IntegrationEventInfo {
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        event: TypeRef,
        contract: &'static str,
        version: u32,
        key: Option<&'static str>,
        sources: &'static [TranslationSource],
        decode: fn() -> Option<Decode>,
        schema: fn() -> serde_json::Value,
        origin: Origin,
    ) -> Self {
        IntegrationEventInfo {
            event,
            contract,
            version,
            key,
            sources,
            decode,
            schema,
            origin,
        }
    }

    /// The JSON Schema (draft-07) of the contract's payload, made from its type with its serde
    /// attributes: what the catalog publishes and the compatibility check compares.
    pub fn schema(&self) -> serde_json::Value {
        (self.schema)()
    }

    /// Decodes the contract from its JSON form (`None` only for a type that does not compile as
    /// an event).
    pub fn decoder(&self) -> Option<Decode> {
        (self.decode)()
    }

    /// The event type.
    pub fn event(&self) -> TypeRef {
        self.event
    }

    /// The type's name.
    pub fn name(&self) -> &'static str {
        self.event.name()
    }

    /// The contract's name on the wire.
    pub fn contract(&self) -> &'static str {
        self.contract
    }

    /// The contract's version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The field that is the ordering key, if the contract declares one.
    pub fn key(&self) -> Option<&'static str> {
        self.key
    }

    /// The domain events this contract is a reaction to (`from = [..]`), in declaration order.
    /// Empty for a contract this program only consumes.
    pub fn sources(&self) -> &'static [TranslationSource] {
        self.sources
    }

    /// Where the type is declared.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// One entry of an integration event's `from = [..]` list.
#[derive(Debug)]
pub struct TranslationSource {
    event: TypeRef,
    from_impl: fn() -> Option<FromTranslation>,
}

impl TranslationSource {
    #[doc(hidden)]
    pub const fn new(event: TypeRef, from_impl: fn() -> Option<FromTranslation>) -> Self {
        TranslationSource { event, from_impl }
    }

    /// The domain event.
    pub fn event(&self) -> TypeRef {
        self.event
    }

    /// The `From<&DomainEvent>` translation, if the integration event implements one.
    pub fn from_impl(&self) -> Option<FromTranslation> {
        (self.from_impl)()
    }

    /// Whether the integration event implements `From<&DomainEvent>` for this source.
    pub fn has_from_impl(&self) -> bool {
        self.from_impl().is_some()
    }
}

/// A translation by `impl From<&DomainEvent> for IntegrationEvent`, with its types erased.
#[derive(Clone, Copy)]
pub struct FromTranslation {
    translate: fn(AnyEvent<'_>) -> Option<Box<dyn DynIntegrationEvent>>,
}

impl FromTranslation {
    #[doc(hidden)]
    pub const fn new(translate: fn(AnyEvent<'_>) -> Option<Box<dyn DynIntegrationEvent>>) -> Self {
        FromTranslation { translate }
    }

    /// Translates `event`; `None` if it is not of the source type.
    pub fn translate(&self, event: AnyEvent<'_>) -> Option<Box<dyn DynIntegrationEvent>> {
        (self.translate)(event)
    }
}

impl fmt::Debug for FromTranslation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromTranslation")
    }
}

/// A `#[handles]` function.
#[derive(Debug)]
pub struct HandlerInfo {
    name: &'static str,
    event: TypeRef,
    event_kind: EventKind,
    deps: &'static [TypeRef],
    produces: Option<TypeRef>,
    transaction: Option<TypeRef>,
    publishes: bool,
    invoke: HandlerFn,
    origin: Origin,
}

impl HandlerInfo {
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        name: &'static str,
        event: TypeRef,
        event_kind: EventKind,
        deps: &'static [TypeRef],
        produces: Option<TypeRef>,
        transaction: Option<TypeRef>,
        publishes: bool,
        invoke: HandlerFn,
        origin: Origin,
    ) -> Self {
        HandlerInfo {
            name,
            event,
            event_kind,
            deps,
            produces,
            transaction,
            publishes,
            invoke,
            origin,
        }
    }

    /// Whether it takes `DomainEvents`: it runs use cases of its context, and publishes their
    /// domain events.
    pub fn publishes_domain_events(&self) -> bool {
        self.publishes
    }

    /// The database `DB` of its `&mut Transaction<'_, DB>` parameter, if it takes the store's
    /// transaction.
    pub fn transaction(&self) -> Option<TypeRef> {
        self.transaction
    }

    /// The function's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The function's path, such as `shop::catalog::recalculate_recommendations`.
    pub fn path(&self) -> String {
        format!("{}::{}", self.origin.module_path(), self.name)
    }

    /// The event it handles.
    pub fn event(&self) -> TypeRef {
        self.event
    }

    /// Whether it handles a domain event (in-process) or an integration event (from the broker).
    pub fn event_kind(&self) -> EventKind {
        self.event_kind
    }

    /// The types of its `Dep<T>` parameters, in order.
    pub fn deps(&self) -> &'static [TypeRef] {
        self.deps
    }

    /// The integration event it returns, if it is a translation handler.
    pub fn produces(&self) -> Option<TypeRef> {
        self.produces
    }

    /// The function with its types erased.
    #[inline(always)]
    pub(crate) fn handler_fn(&self) -> HandlerFn {
        self.invoke
    }

    /// Where the function is declared.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// A `tidings::context!("name")` declaration: the items of its module and of the modules below
/// belong to bounded context `name`.
#[derive(Debug)]
pub struct ContextDecl {
    name: &'static str,
    origin: Origin,
}

impl ContextDecl {
    #[doc(hidden)]
    pub const fn new(name: &'static str, origin: Origin) -> Self {
        ContextDecl { name, origin }
    }

    /// The context's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where it is declared; its module is the root of the context.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether an item of `module_path` is in this declaration's module or below it.
    fn covers(&self, module_path: &str) -> bool {
        let root = self.origin.module_path();
        module_path == root
            || module_path
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with("::"))
    }
}

inventory::collect!(ContextDecl);
inventory::collect!(DomainEventInfo);
inventory::collect!(IntegrationEventInfo);
inventory::collect!(HandlerInfo);

/// Every event, contract, translation and handler linked into this program.
///
/// Items are sorted by module path, then name, so the order is the same on every run.
#[derive(Debug)]
pub struct Registry {
    contexts: Vec<&'static ContextDecl>,
    domain_events: Vec<&'static DomainEventInfo>,
    integration_events: Vec<&'static IntegrationEventInfo>,
    handlers: Vec<&'static HandlerInfo>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::collect);

/// The registry of this program, collected once.
///
/// ```
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductPutOnSale { pub product_id: String }
///
/// #[handles]
/// fn project_product(event: &ProductPutOnSale) {}
///
/// let registry = tidings::registry();
/// let handler = registry.handlers_of::<ProductPutOnSale>().next().unwrap();
/// assert_eq!(handler.name(), "project_product");
/// let event = registry.domain_event::<ProductPutOnSale>().unwrap();
/// assert_eq!(event.name(), "ProductPutOnSale");
/// assert_eq!(event.origin().module_path(), module_path!());
/// ```
pub fn registry() -> &'static Registry {
    &REGISTRY
}

impl Registry {
    fn collect() -> Registry {
        let mut domain_events: Vec<_> = inventory::iter::<DomainEventInfo>.into_iter().collect();
        let mut integration_events: Vec<_> = inventory::iter::<IntegrationEventInfo>
            .into_iter()
            .collect();
        let mut handlers: Vec<_> = inventory::iter::<HandlerInfo>.into_iter().collect();
        let mut contexts: Vec<_> = inventory::iter::<ContextDecl>.into_iter().collect();
        contexts.sort_by_key(|c| (c.origin.module_path(), c.name, c.origin));
        domain_events.sort_by_key(|e| (e.origin.module_path(), e.event.name(), e.origin));
        integration_events.sort_by_key(|e| (e.origin.module_path(), e.event.name(), e.origin));
        handlers.sort_by_key(|h| (h.origin.module_path(), h.name, h.origin));
        Registry {
            contexts,
            domain_events,
            integration_events,
            handlers,
        }
    }

    /// The `tidings::context!` declarations.
    pub fn contexts(&self) -> &[&'static ContextDecl] {
        &self.contexts
    }

    /// The bounded context an item declared in `module_path` belongs to: the declaration of the
    /// nearest enclosing module. `None` when no declaration covers it.
    pub fn context_of(&self, module_path: &str) -> Option<&'static str> {
        self.contexts
            .iter()
            .filter(|c| c.covers(module_path))
            .max_by_key(|c| c.origin.module_path().len())
            .map(|c| c.name)
    }

    /// The `#[domain_event]` types.
    pub fn domain_events(&self) -> &[&'static DomainEventInfo] {
        &self.domain_events
    }

    /// The `#[integration_event]` types.
    pub fn integration_events(&self) -> &[&'static IntegrationEventInfo] {
        &self.integration_events
    }

    /// The `#[handles]` functions.
    pub fn handlers(&self) -> &[&'static HandlerInfo] {
        &self.handlers
    }

    /// The description of domain event `E`, if it is linked into this program.
    pub fn domain_event<E: 'static>(&self) -> Option<&'static DomainEventInfo> {
        let id = TypeId::of::<E>();
        self.domain_events
            .iter()
            .copied()
            .find(|e| e.event.type_id == id)
    }

    /// The description of integration event `E`, if it is linked into this program.
    pub fn integration_event<E: 'static>(&self) -> Option<&'static IntegrationEventInfo> {
        let id = TypeId::of::<E>();
        self.integration_events
            .iter()
            .copied()
            .find(|e| e.event.type_id == id)
    }

    /// The handlers of event `E`.
    pub fn handlers_of<E: 'static>(&self) -> impl Iterator<Item = &'static HandlerInfo> + '_ {
        let id = TypeId::of::<E>();
        self.handlers
            .iter()
            .copied()
            .filter(move |h| h.event.type_id == id)
    }

    /// The handlers that translate `source` into the integration event `integration`.
    pub fn translation_handlers(
        &self,
        integration: TypeId,
        source: TypeId,
    ) -> impl Iterator<Item = &'static HandlerInfo> + '_ {
        self.handlers.iter().copied().filter(move |h| {
            h.event.type_id == source && h.produces.is_some_and(|p| p.type_id == integration)
        })
    }

    /// The crates that contributed at least one item, by name (`my_crate`, with underscores).
    pub fn crates(&self) -> BTreeSet<&'static str> {
        let events = self.domain_events.iter().map(|e| e.origin);
        let contracts = self.integration_events.iter().map(|e| e.origin);
        let handlers = self.handlers.iter().map(|h| h.origin);
        events
            .chain(contracts)
            .chain(handlers)
            .map(|o| o.crate_name())
            .collect()
    }

    /// Whether no item at all is linked into this program.
    pub fn is_empty(&self) -> bool {
        self.domain_events.is_empty()
            && self.integration_events.is_empty()
            && self.handlers.is_empty()
    }

    /// Checks that every crate named in `crates` contributed items to the registry, so that a
    /// crate the linker dropped is an error instead of handlers that silently never run.
    ///
    /// Names may be given as in `Cargo.toml` (`my-handlers`) or as in Rust (`my_handlers`).
    ///
    /// ```
    /// let missing = tidings::registry().expect_crates(&["billing-handlers"]).unwrap_err();
    /// assert!(missing.to_string().contains("use billing_handlers as _;"));
    /// ```
    pub fn expect_crates(&self, crates: &[&str]) -> Result<(), RegistryError> {
        let linked = self.crates();
        let missing: Vec<String> = crates
            .iter()
            .map(|name| name.replace('-', "_"))
            .filter(|name| !linked.contains(name.as_str()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::MissingCrates { missing })
        }
    }
}

/// A registry that lacks what the program expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Crates expected to contribute events or handlers contributed nothing.
    #[error("{}", missing_crates_message(.missing))]
    MissingCrates {
        /// The crates, with underscores.
        missing: Vec<String>,
    },
}

fn missing_crates_message(missing: &[String]) -> String {
    let names = missing.join("`, `");
    let lines: String = missing
        .iter()
        .map(|name| format!("\n    use {name} as _;"))
        .collect();
    format!(
        "no event or handler of `{names}` is linked into this program: the linker drops a crate \
         that the program never names. Add to main.rs (and to each tests/*.rs that needs it):{lines}"
    )
}
