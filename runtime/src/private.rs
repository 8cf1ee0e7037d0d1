//! What the macros' expansions call. Not a public API: names and signatures change freely.
//!
//! The traits here exist for their compile errors: each one is the bound that one rule of the
//! macros turns into, and carries the message that teaches that rule. Blanket impls are marked
//! `#[diagnostic::do_not_recommend]` so that the compiler reports our message instead of the
//! bound behind it.

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use crate::call::emitted;

pub use inventory;
pub use schemars::{self, JsonSchema};
pub use serde_json;

pub use crate::call::{
    AnyEvent, Emitted, FUTURE_SLOT_ALIGN, FUTURE_SLOT_SIZE, FutureSlot, HandlerCall,
    HandlerContext, HandlerFn, HandlerResult, StartFn, TransactionSlot, TypedEvent,
};
pub use crate::deps::Deps;
pub use crate::event::{
    DomainEvent, DynIntegrationEvent, Event, EventData, EventKind, IntegrationEvent, SealedEvent,
};
pub use crate::handler::HandlerError;
pub use crate::registry::{
    ContextDecl, Decode, DomainEventInfo, FromTranslation, HandlerInfo, IntegrationEventInfo,
    Origin, TranslationSource, TypeRef,
};

/// Calls a registered handler directly, as the dispatcher does: for benchmarks and tests.
pub trait CallHandler {
    /// The handler's function, with its types erased.
    fn invoke(&self) -> HandlerFn;

    /// Calls the handler with `event` as the dispatcher does ([`HandlerFn::call`]), an `async fn`
    /// handler's future in `slot`.
    fn call_in<'a, 's>(
        &self,
        event: AnyEvent<'a>,
        ctx: &'a HandlerContext<'a>,
        slot: Pin<&'s mut FutureSlot<'a>>,
    ) -> HandlerCall<'a, 's>;

    /// Calls the handler with `event`, in a [`FutureSlot`] of the call's own, and gives the
    /// integration events it produced as a `Vec` (empty for none): for tests.
    fn call<'a, E: Any + Send + Sync>(
        &self,
        event: &'a E,
        ctx: HandlerContext<'a>,
    ) -> impl Future<Output = Called> + Send + 'a;
}

/// What [`CallHandler::call`] gives: the integration events produced, or the handler's error.
pub type Called = Result<Vec<Box<dyn DynIntegrationEvent>>, Box<HandlerError>>;

impl CallHandler for HandlerInfo {
    #[inline(always)]
    fn invoke(&self) -> HandlerFn {
        self.handler_fn()
    }

    #[inline(always)]
    fn call_in<'a, 's>(
        &self,
        event: AnyEvent<'a>,
        ctx: &'a HandlerContext<'a>,
        slot: Pin<&'s mut FutureSlot<'a>>,
    ) -> HandlerCall<'a, 's> {
        self.handler_fn().call(event, ctx, slot)
    }

    fn call<'a, E: Any + Send + Sync>(
        &self,
        event: &'a E,
        ctx: HandlerContext<'a>,
    ) -> impl Future<Output = Called> + Send + 'a {
        let handler = self.handler_fn();
        async move {
            let mut slot = std::pin::pin!(FutureSlot::new());
            let emitted = handler
                .call(AnyEvent::of(event), &ctx, slot.as_mut())
                .await?;
            Ok(emitted.map_or_else(Vec::new, |events| *events))
        }
    }
}

/// The JSON Schema of an event type, for the registry.
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    crate::catalog::schema_of::<T>()
}

/// A type that a field of an event or of a `#[tidings::schema]` type has: its schema is part of
/// theirs.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no JSON Schema, and the schema of the type that holds it is made of its fields' schemas",
    label = "this field's type has no JSON Schema",
    note = "mark `{Self}`, or each type of yours inside it, with `#[tidings::schema]`: it derives the schema from the type and its serde attributes",
    note = "for a type of another crate, give the field the schema of its JSON form: `#[schemars(with = \"String\")]` for one that serializes as a string"
)]
pub trait FieldSchema {}

#[diagnostic::do_not_recommend]
impl<T: JsonSchema + ?Sized> FieldSchema for T {}

/// Checks that a field's type has a JSON Schema.
pub const fn check_field_schema<T: FieldSchema + ?Sized>() {}

/// What `EventData` asks of serde, with its own message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an event: events implement `serde::Serialize` and `serde::Deserialize`",
    label = "events are recorded in the outbox as JSON",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait EventSerde {}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned> EventSerde for T {}

/// What `EventData` asks of threads, with its own message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an event: events are `Send + Sync + 'static`",
    label = "events are shared by the handlers that run at the same time",
    note = "a field such as `Rc`, `Cell` or `RefCell` disqualifies it: use `Arc`, atomics or plain data"
)]
pub trait EventThreads {}

#[diagnostic::do_not_recommend]
impl<T: Send + Sync + 'static> EventThreads for T {}

/// Checks that an event type is serde-serializable.
pub const fn check_event_serde<T: EventSerde>() {}

/// Checks that an event type is `Send + Sync + 'static`.
pub const fn check_event_threads<T: EventThreads>() {}

/// The dependency of a `Dep<T>` parameter.
pub fn dep<T: Send + Sync + 'static>(
    ctx: &HandlerContext<'_>,
) -> Result<crate::deps::Dep<T>, HandlerError> {
    ctx.dep::<T>()
}

// ---------------------------------------------------------------------------------------------
// Parameters the macro does not recognise by their spelling, such as type aliases: resolved by
// their type.

/// A parameter taken by value, found by its type: `Dep<T>`, `EventMeta` and `DomainEvents`,
/// whatever the alias they are written with.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of a `#[handles]` function",
    label = "unsupported parameter",
    note = "after the event, a `#[handles]` function takes `Dep<T>` (a provided dependency), `EventMeta`, `&EventMeta`, `DomainEvents` or `&mut Transaction<'_, DB>` (the store's transaction)",
    note = "to use a `{Self}`, take `Dep<{Self}>` and provide the value to the app"
)]
pub trait HandlerParam<'a>: Sized {
    /// The `T` of a `Dep<T>`, for the registry: `build()` checks that it is provided.
    const DEP: Option<TypeRef>;

    /// Whether it is `DomainEvents`, for the registry: the handler runs use cases.
    const PUBLISHER: bool = false;

    /// The argument, from the call's context.
    fn from_context(ctx: &HandlerContext<'a>) -> Result<Self, HandlerError>;
}

impl<'a, T: Send + Sync + 'static> HandlerParam<'a> for crate::deps::Dep<T> {
    const DEP: Option<TypeRef> = Some(TypeRef::of_type::<T>());

    fn from_context(ctx: &HandlerContext<'a>) -> Result<Self, HandlerError> {
        ctx.dep::<T>()
    }
}

impl<'a> HandlerParam<'a> for crate::meta::EventMeta {
    const DEP: Option<TypeRef> = None;

    fn from_context(ctx: &HandlerContext<'a>) -> Result<Self, HandlerError> {
        Ok(ctx.meta().clone())
    }
}

impl<'a> HandlerParam<'a> for &'a crate::meta::EventMeta {
    const DEP: Option<TypeRef> = None;

    fn from_context(ctx: &HandlerContext<'a>) -> Result<Self, HandlerError> {
        Ok(ctx.meta())
    }
}

impl<'a> HandlerParam<'a> for crate::publish::DomainEvents {
    const DEP: Option<TypeRef> = None;
    const PUBLISHER: bool = true;

    fn from_context(ctx: &HandlerContext<'a>) -> Result<Self, HandlerError> {
        ctx.domain_events()
    }
}

/// A `&mut` hidden in a type alias, `type Tx<'a, 'c> = &'a mut Transaction<'c, DB>`: the macro
/// takes the store's transaction for a parameter whose `&mut` it reads in the signature.
/// Implemented by no type; the bound is on `&Self`, so that the compiler reports this message.
#[diagnostic::on_unimplemented(
    message = "write the store's transaction out in the signature, `&mut sqlx::Transaction<'_, DB>`: `#[handles]` cannot see the `&mut` inside a type alias",
    label = "a type alias that holds `&mut`",
    note = "`#[handles]` reads the signature before types are known: it takes the store's transaction for a parameter written `&mut ..`, so an alias may stand for the `Transaction<'_, DB>` but not for the `&mut`"
)]
pub trait TransactionWrittenOut {}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<'a, 'c, 't, DB: sqlx::Database> HandlerParam<'a> for &'c mut sqlx::Transaction<'t, DB>
where
    &'c Self: TransactionWrittenOut,
{
    const DEP: Option<TypeRef> = None;

    fn from_context(_: &HandlerContext<'a>) -> Result<Self, HandlerError> {
        unreachable!("no type implements `TransactionWrittenOut`")
    }
}

/// A parameter taken by shared reference, `&X`, found by its type: `&EventMeta`, whatever the
/// alias it is written with.
#[diagnostic::on_unimplemented(
    message = "`&{Self}` cannot be a parameter of a `#[handles]` function",
    label = "unsupported parameter",
    note = "after the event, a `#[handles]` function takes `Dep<T>` (a provided dependency), `EventMeta`, `&EventMeta`, `DomainEvents` or `&mut Transaction<'_, DB>` (the store's transaction)",
    note = "`Dep<T>` and `DomainEvents` are taken by value, without `&`; to use a `{Self}` of yours, take `Dep<{Self}>` and provide the value to the app"
)]
pub trait RefParam<'a> {
    /// The argument, from the call's context.
    fn from_context(ctx: &HandlerContext<'a>) -> &'a Self;
}

impl<'a> RefParam<'a> for crate::meta::EventMeta {
    fn from_context(ctx: &HandlerContext<'a>) -> &'a Self {
        ctx.meta()
    }
}

/// The type behind a `&mut X` parameter the macro does not recognise by its spelling: the
/// store's transaction, `sqlx::Transaction<'_, DB>`, whatever the alias it is written with.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the store's transaction, so a `#[handles]` function cannot take `&mut {Self}`",
    label = "not a `sqlx::Transaction<'_, DB>` of tidings' sqlx",
    note = "the one `&mut` parameter a handler takes is the store's transaction, `&mut sqlx::Transaction<'_, DB>`",
    note = "if `{Self}` is a `sqlx::Transaction` of another version of sqlx than tidings' (0.9), depend on sqlx 0.9 with the same features: `cargo tree -d -i sqlx` lists the versions in the build"
)]
pub trait TransactionParam {
    /// The `DB` of `sqlx::Transaction<'_, DB>`, for the registry: `build()` checks that the
    /// app's store works in it.
    type Database: 'static;
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: sqlx::Database> TransactionParam for sqlx::Transaction<'_, DB> {
    type Database = DB;
}

/// How many of `deps` are dependencies.
pub const fn dep_count(deps: &[Option<TypeRef>]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < deps.len() {
        if deps[i].is_some() {
            count += 1;
        }
        i += 1;
    }
    count
}

/// The dependencies among `deps`, in order; `N` is their [`dep_count`].
pub const fn deps_of<const N: usize>(deps: &[Option<TypeRef>]) -> [TypeRef; N] {
    let mut found = [TypeRef::of_type::<()>(); N];
    let mut n = 0;
    let mut i = 0;
    while i < deps.len() {
        if let Some(dep) = deps[i] {
            found[n] = dep;
            n += 1;
        }
        i += 1;
    }
    found
}

/// Decodes an event of type `T` from JSON, without requiring `T` to be deserializable (a type
/// that is not gets its error from [`check_event_serde`]):
/// `(&&DecodeProbe::<T>::new()).decoder()`.
#[derive(Debug)]
pub struct DecodeProbe<T>(PhantomData<fn() -> T>);

impl<T> DecodeProbe<T> {
    /// A probe for `T`.
    pub const fn new() -> Self {
        DecodeProbe(PhantomData)
    }
}

impl<T> Default for DecodeProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// See [`DecodeProbe`].
pub trait ProbeDecode {
    /// The decoder.
    fn decoder(&self) -> Option<Decode>;
}
impl<T: EventData> ProbeDecode for &DecodeProbe<T> {
    fn decoder(&self) -> Option<Decode> {
        Some(Decode::new(decode::<T>))
    }
}

/// See [`DecodeProbe`].
pub trait ProbeNoDecode {
    /// No decoder.
    fn decoder(&self) -> Option<Decode> {
        None
    }
}
impl<T> ProbeNoDecode for DecodeProbe<T> {}

fn decode<T: EventData>(
    payload: &crate::envelope::Payload,
) -> Result<TypedEvent, serde_json::Error> {
    Ok(TypedEvent::new(payload.decode::<T>()?))
}

/// The kind of the event a handler handles; its bound is the check that the first parameter is
/// an event.
pub const fn event_kind<E: Event>() -> EventKind {
    E::KIND
}

/// The event behind `event`, which the dispatcher guarantees to be of type `E`.
#[inline(always)]
pub fn downcast<'a, E: 'static>(
    event: AnyEvent<'a>,
    handler: &'static str,
    expected: &'static str,
) -> Result<&'a E, Box<HandlerError>> {
    match event.downcast::<E>() {
        Some(event) => Ok(event),
        None => Err(HandlerError::wrong_event(handler, expected)),
    }
}

// ---------------------------------------------------------------------------------------------
// Return values

/// An integration event, as a handler's return value.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an integration event, so a `#[handles]` function cannot return it",
    label = "unsupported return type",
    note = "a `#[handles]` function returns `()`, `Result<(), E>`, an integration event `I`, `Option<I>`, `Vec<I>`, or one of those in `Result<_, E>`",
    note = "to publish a domain event from a handler, take a `DomainEvents` parameter and publish it"
)]
pub trait Returnable {
    /// The event, boxed for the outbox.
    fn boxed(self) -> Box<dyn DynIntegrationEvent>;
}

#[diagnostic::do_not_recommend]
impl<I: IntegrationEvent> Returnable for I {
    fn boxed(self) -> Box<dyn DynIntegrationEvent> {
        Box::new(self)
    }
}

/// A handler that returns nothing produced nothing.
#[inline]
pub fn emit_nothing(_: ()) -> HandlerResult {
    Ok(None)
}

/// A handler that returns `I` produced one event.
pub fn emit_one<I: Returnable>(event: I) -> HandlerResult {
    Ok(emitted(vec![event.boxed()]))
}

/// A handler that returns `Option<I>` produced zero or one event.
pub fn emit_option<I: Returnable>(event: Option<I>) -> HandlerResult {
    Ok(emitted(event.into_iter().map(Returnable::boxed).collect()))
}

/// A handler that returns `Vec<I>` produced these events.
pub fn emit_vec<I: Returnable>(events: Vec<I>) -> HandlerResult {
    Ok(emitted(events.into_iter().map(Returnable::boxed).collect()))
}

/// The error type of a handler.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a `#[handles]` function",
    label = "not a `std::error::Error + Send + Sync + 'static`",
    note = "the runtime records a handler's error and retries the handler, so the error type implements `std::error::Error + Send + Sync + 'static`",
    note = "use an error enum of yours (`#[derive(thiserror::Error)]` writes the impl), or wrap this error in one"
)]
pub trait HandlerErrorType {
    /// The error, boxed for the runtime.
    fn into_handler_error(self, retryable: bool) -> HandlerError;
}

#[diagnostic::do_not_recommend]
impl<E: StdError + Send + Sync + 'static> HandlerErrorType for E {
    fn into_handler_error(self, retryable: bool) -> HandlerError {
        HandlerError::Failed {
            error: Box::new(self),
            retryable,
        }
    }
}

/// The error a handler returned; `retryable` comes from a [`RetryProbe`].
pub fn failed<E: HandlerErrorType>(error: E, retryable: bool) -> HandlerError {
    error.into_handler_error(retryable)
}

/// Asks an error whether it is worth retrying: its [`Retryable`](crate::handler::Retryable) answer if its
/// type implements that trait, `true` otherwise. `(&&RetryProbe(&error)).retryable()` resolves by
/// method lookup on the concrete type, so it is called from the macro's expansion, where the
/// error type is concrete.
#[derive(Debug)]
pub struct RetryProbe<'a, E>(pub &'a E);

/// See [`RetryProbe`].
pub trait ProbeRetryable {
    /// The error's own answer.
    fn retryable(&self) -> bool;
}
impl<E: crate::handler::Retryable> ProbeRetryable for &RetryProbe<'_, E> {
    fn retryable(&self) -> bool {
        self.0.is_retryable()
    }
}

/// See [`RetryProbe`].
pub trait ProbeNotRetryable {
    /// The default: retry.
    fn retryable(&self) -> bool {
        true
    }
}
impl<E> ProbeNotRetryable for RetryProbe<'_, E> {}

// ---------------------------------------------------------------------------------------------
// Translations

/// A `from = [..]` source: must be a domain event.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event, so it cannot be listed in `from`",
    label = "not a `#[domain_event]`",
    note = "an integration event is the reaction to domain events of its own context: list those, marked `#[domain_event]`, in `from = [..]`",
    note = "to react to another context's integration event, handle it with `#[handles]`, run a use case of this context, and translate the domain event that use case publishes"
)]
pub trait TranslationSourceEvent {}

#[diagnostic::do_not_recommend]
impl<T: DomainEvent> TranslationSourceEvent for T {}

/// Checks that `T` can be listed in `from`.
pub const fn check_from_source<T: TranslationSourceEvent>() {}

/// Implemented by `#[integration_event(from = [E, ..])]` for each `E` it lists.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not declare `from = {E}`, so a handler of `{E}` cannot return it",
    label = "`{Self}` does not list `{E}` in `from`",
    note = "an integration event names every domain event it is a reaction to: add `{E}` to its `#[integration_event(from = [..])]`, or return another integration event here"
)]
pub trait DeclaresFrom<E> {}

/// The kind of a type, as a type: see [`KindProbe`].
#[derive(Debug)]
pub struct DomainKind;
/// See [`DomainKind`].
#[derive(Debug)]
pub struct IntegrationKind;
/// See [`DomainKind`]: the type is no event.
#[derive(Debug)]
pub struct OtherKind;

/// Finds the kind of a concrete type without requiring it to be an event, by method resolution:
/// `(&&&KindProbe::<T>::new()).kind()` is `DomainKind`, `IntegrationKind` or `OtherKind`.
///
/// The checks use it so that a type that is no event at all gets one error (from the check made
/// for that), not one more from every rule that looks at its kind.
#[derive(Debug)]
pub struct KindProbe<T>(PhantomData<fn() -> T>);

impl<T> KindProbe<T> {
    /// A probe for `T`.
    pub const fn new() -> Self {
        KindProbe(PhantomData)
    }
}

impl<T> Default for KindProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// See [`KindProbe`].
pub trait ProbeDomainKind {
    /// The kind.
    fn kind(&self) -> DomainKind {
        DomainKind
    }
}
impl<T: DomainEvent> ProbeDomainKind for &&KindProbe<T> {}

/// See [`KindProbe`].
pub trait ProbeIntegrationKind {
    /// The kind.
    fn kind(&self) -> IntegrationKind {
        IntegrationKind
    }
}
impl<T: IntegrationEvent> ProbeIntegrationKind for &KindProbe<T> {}

/// See [`KindProbe`].
pub trait ProbeOtherKind {
    /// The kind.
    fn kind(&self) -> OtherKind {
        OtherKind
    }
}
impl<T> ProbeOtherKind for KindProbe<T> {}

/// What a handler of `E` may return as integration event `I`, by the kinds of `E` and `I`:
/// implemented for `(kind of E, kind of I)`. Not implemented for an integration event returned
/// by a handler of an integration event, which is the error below.
#[diagnostic::on_unimplemented(
    message = "a handler of integration event `{E}` cannot return integration event `{I}`",
    label = "integration events are not re-published from integration events",
    note = "a context publishes integration events only as the reaction to its own domain events",
    note = "return `()` or `Result<(), E>` here; to pass the news on, run a use case of this context and translate the domain event it publishes into `{I}`"
)]
pub trait TranslationRule<E, I> {}
// Recommended, so that a missing `from = E` is reported by `DeclaresFrom`, with its message.
impl<E, I: DeclaresFrom<E>> TranslationRule<E, I> for (DomainKind, IntegrationKind) {}
// A returned type that is no integration event, or a handled type that is no event, is
// reported by its own check. `do_not_recommend` keeps these impls out of the error's help.
#[diagnostic::do_not_recommend]
impl<E, I> TranslationRule<E, I> for (DomainKind, DomainKind) {}
#[diagnostic::do_not_recommend]
impl<E, I> TranslationRule<E, I> for (DomainKind, OtherKind) {}
#[diagnostic::do_not_recommend]
impl<E, I> TranslationRule<E, I> for (IntegrationKind, DomainKind) {}
#[diagnostic::do_not_recommend]
impl<E, I> TranslationRule<E, I> for (IntegrationKind, OtherKind) {}
#[diagnostic::do_not_recommend]
impl<E, I, K> TranslationRule<E, I> for (OtherKind, K) {}

/// Checks that a handler of `E` may return `I`; `kinds` comes from two [`KindProbe`]s.
pub fn check_translation<E, I, K: TranslationRule<E, I>>(kinds: K) {
    let _ = kinds;
}

/// Finds whether `I: From<&A>`, without requiring it: `(&&FromProbe::<I, A>::new()).translation()`.
#[derive(Debug)]
pub struct FromProbe<I, A>(PhantomData<fn() -> (I, A)>);

impl<I, A> FromProbe<I, A> {
    /// A probe for `I: From<&A>`.
    pub const fn new() -> Self {
        FromProbe(PhantomData)
    }
}

impl<I, A> Default for FromProbe<I, A> {
    fn default() -> Self {
        Self::new()
    }
}

/// See [`FromProbe`].
pub trait ProbeFromImpl {
    /// The translation.
    fn translation(&self) -> Option<FromTranslation>;
}

impl<I, A> ProbeFromImpl for &FromProbe<I, A>
where
    I: IntegrationEvent + for<'a> From<&'a A>,
    A: DomainEvent,
{
    fn translation(&self) -> Option<FromTranslation> {
        Some(FromTranslation::new(translate_via_from::<I, A>))
    }
}

/// See [`FromProbe`].
pub trait ProbeNoFromImpl {
    /// No translation.
    fn translation(&self) -> Option<FromTranslation> {
        None
    }
}
impl<I, A> ProbeNoFromImpl for FromProbe<I, A> {}

fn translate_via_from<I, A>(event: AnyEvent<'_>) -> Option<Box<dyn DynIntegrationEvent>>
where
    I: IntegrationEvent + for<'a> From<&'a A>,
    A: 'static,
{
    let event = event.downcast::<A>()?;
    Some(Box::new(I::from(event)))
}

// ---------------------------------------------------------------------------------------------
// Ordering keys

/// The type of a `key = field`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an ordering key: the `key` field must implement `std::fmt::Display`",
    label = "this field's type does not implement `Display`",
    note = "choose a field such as a `String`, an integer or a `Uuid`, or implement `Display` for its type"
)]
pub trait KeyField {
    /// The key as text.
    fn key_string(&self) -> String;
}

#[diagnostic::do_not_recommend]
impl<T: fmt::Display + ?Sized> KeyField for T {
    fn key_string(&self) -> String {
        self.to_string()
    }
}

/// The ordering key of an event whose key field is `value`.
pub fn key_string<T: KeyField + ?Sized>(value: &T) -> String {
    value.key_string()
}
