//! A `#[handles]` function with its types erased, and one call of it: what the macros'
//! expansions implement and the dispatcher runs. Reached by expansions through `__private`.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::marker::{PhantomData, PhantomPinned};
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::deps::{Dep, Deps};
use crate::event::DynIntegrationEvent;
use crate::handler::HandlerError;
use crate::meta::EventMeta;
use crate::publish::DomainEvents;

/// An event with its type erased, and the id of that type: what a handler's entry takes. The
/// entry checks the event's type by comparing that id with its own event type's, a constant,
/// where `dyn Any` would ask the event's vtable for it, with one more indirect call per handler
/// call.
///
/// The id is taken where the event's type is known: [`of`](Self::of) for a typed reference,
/// [`TypedEvent`](crate::store::TypedEvent) for the dispatcher's events, once per event.
///
/// Two words, passed in two registers: the event's address, without the vtable `dyn Any` would
/// carry, which nothing reads, and the address of its type's id.
#[derive(Clone, Copy)]
pub struct AnyEvent<'a> {
    /// The address of an event that is `Send + Sync`, borrowed for `'a`.
    event: *const (),
    /// The id of `event`'s own type, which every constructor takes from it. A constant's
    /// address: the entry reads the id from read-only memory, where a copy written just before
    /// the call, 8 bytes at a time, would make its 16-byte read wait for the writes to land.
    type_id: &'static TypeId,
    _borrows: PhantomData<&'a (dyn Any + Send + Sync)>,
}

// SAFETY: an `AnyEvent<'a>` stands for a `&'a E` where `E: Send + Sync`, which is `Send` and
// `Sync`, and gives nothing else access to the event.
#[allow(unsafe_code)]
unsafe impl Send for AnyEvent<'_> {}
#[allow(unsafe_code)]
unsafe impl Sync for AnyEvent<'_> {}

/// The id of `E`, as a constant in read-only memory.
fn type_id_of<E: Any>() -> &'static TypeId {
    const { &TypeId::of::<E>() }
}

impl<'a> AnyEvent<'a> {
    /// `event`, its type erased.
    #[inline(always)]
    pub fn of<E: Any + Send + Sync>(event: &'a E) -> Self {
        AnyEvent {
            event: std::ptr::from_ref(event).cast(),
            type_id: type_id_of::<E>(),
            _borrows: PhantomData,
        }
    }

    /// The event, if it is an `E`.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub fn downcast<E: Any>(self) -> Option<&'a E> {
        let expected = type_id_of::<E>();
        // The same constant, in most calls: the value is compared only for another copy of it.
        if !std::ptr::eq(self.type_id, expected) && *self.type_id != *expected {
            return None;
        }
        // SAFETY: `type_id` is the id of the type of the value `event` points to (each
        // constructor takes it from that value), and it is `E`'s: `event` points to an `E`,
        // borrowed for `'a`. This is `<dyn Any>::downcast_ref`'s cast, without its call through
        // the vtable.
        Some(unsafe { &*self.event.cast::<E>() })
    }
}

impl fmt::Debug for AnyEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyEvent").finish_non_exhaustive()
    }
}

/// A typed event, shared, with the id of its type: the event as recorded in this process or
/// decoded from its JSON, which the dispatcher hands to the event's handlers.
///
/// What [`Decode::decode`](crate::registry::Decode::decode) returns; read it back with
/// [`downcast_ref`](Self::downcast_ref).
///
/// ```
/// use tidings::store::TypedEvent;
///
/// let typed = TypedEvent::new(7_u32);
/// assert_eq!(typed.downcast_ref::<u32>(), Some(&7));
/// assert!(typed.downcast_ref::<i64>().is_none());
/// ```
#[derive(Clone)]
pub struct TypedEvent {
    event: Arc<dyn Any + Send + Sync>,
    /// The id of `event`'s type.
    type_id: &'static TypeId,
}

impl TypedEvent {
    /// `event`, shared.
    pub fn new<E: Any + Send + Sync>(event: E) -> Self {
        TypedEvent {
            event: Arc::new(event),
            type_id: type_id_of::<E>(),
        }
    }

    /// The event, if it is an `E`.
    pub fn downcast_ref<E: Any>(&self) -> Option<&E> {
        self.event().downcast()
    }

    /// The event, as a handler's entry takes it.
    pub(crate) fn event(&self) -> AnyEvent<'_> {
        AnyEvent {
            event: Arc::as_ptr(&self.event).cast(),
            type_id: self.type_id,
            _borrows: PhantomData,
        }
    }
}

impl fmt::Debug for TypedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedEvent").finish_non_exhaustive()
    }
}

/// What one handler call gets besides the event: the dependencies, the event's envelope, the
/// publisher and, for a handler that takes it, the store's transaction.
///
/// References only, so it is `Copy` and costs nothing to build per call. A call takes it by
/// reference, in one register: the handler's entry reads only what its parameters need.
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

/// The integration events a handler call produced: `None`, with no allocation, for a handler
/// that produced none.
///
/// One pointer, so that a [`HandlerResult`] is a tag and a pointer, which the handler's entry
/// returns in two registers. A boxed slice (a pointer and a length) made it 16 bytes that are
/// not two like scalars, which Rust returns through memory: written by the entry and read back
/// by the caller, on every call. A handler that produces events pays an allocation more (the
/// `Box` beside the `Vec`).
pub type Emitted = Option<Box<Vec<Box<dyn DynIntegrationEvent>>>>;

/// `events` as [`Emitted`]: `None` for none.
pub(crate) fn emitted(events: Vec<Box<dyn DynIntegrationEvent>>) -> Emitted {
    (!events.is_empty()).then(|| Box::new(events))
}

/// The result of one handler call: two words, the error boxed (failing is the rare path), where
/// `Result<Vec<_>, HandlerError>` is five, each moved at every step of every call.
pub type HandlerResult = Result<Emitted, Box<HandlerError>>;

// Two words, as an `async fn` handler's poll returns it too: a larger result goes through memory.
const _: () =
    assert!(std::mem::size_of::<Poll<HandlerResult>>() == 2 * std::mem::size_of::<usize>());

/// Starts the call of an `async fn` handler: builds the handler's future in `slot`, where it
/// stays until it completes or the call is dropped, and polls it once. Generated per handler by
/// `#[handles]`, so that the future's type, and whether it fits in the slot, are known there.
pub type StartFn = for<'a, 'b> fn(
    AnyEvent<'a>,
    &'a HandlerContext<'a>,
    Pin<&'b mut FutureSlot<'a>>,
    &mut Context<'_>,
) -> Poll<HandlerResult>;

/// A `#[handles]` function with its types erased: takes the event as an [`AnyEvent`] and a
/// context.
///
/// A plain `fn` handler is called directly, with no future and no allocation; an `async fn`
/// handler's future is built inside the call, in a [`FutureSlot`], with no allocation either
/// unless it is larger than the slot. [`call`](Self::call) runs either.
#[derive(Clone, Copy)]
pub enum HandlerFn {
    /// A plain `fn` handler.
    Sync(for<'a> fn(AnyEvent<'a>, &'a HandlerContext<'a>) -> HandlerResult),
    /// An `async fn` handler.
    Async(StartFn),
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
    /// Calls the handler with `event`, which must be of the type it handles; an `async fn`
    /// handler's future runs in `slot`. A panic in the handler is caught and becomes
    /// [`HandlerError::Panicked`].
    ///
    /// A plain `fn` handler runs at once, inside this call, and the returned future is ready:
    /// no allocation, no state machine, and `slot` stays unused. An `async fn` handler starts
    /// when the call is first polled: its future is built in `slot`, in place, and polled
    /// through the handler's generated entry, with no allocation (see [`FutureSlot`]).
    ///
    /// The caller keeps the slot, pinned where the call is awaited, so that the call itself is
    /// small: moving it does not copy the slot's space.
    ///
    /// Always inlined, as is the call's `poll`: awaited, the call of a plain `fn` handler
    /// compiles to the call of its entry and a check for a panic, with no future in between.
    #[inline(always)]
    pub fn call<'a, 's>(
        self,
        event: AnyEvent<'a>,
        ctx: &'a HandlerContext<'a>,
        slot: Pin<&'s mut FutureSlot<'a>>,
    ) -> HandlerCall<'a, 's> {
        let state = match self {
            HandlerFn::Sync(f) => {
                let result = panic::catch_unwind(AssertUnwindSafe(|| f(event, ctx)))
                    .unwrap_or_else(|panic| Err(Box::new(HandlerError::panicked(panic))));
                CallState::Ready(Some(result))
            }
            HandlerFn::Async(start) => CallState::Start { start, event, ctx },
        };
        HandlerCall { state, slot }
    }
}

/// The future of [`HandlerFn::call`].
#[must_use = "an async handler runs only when its call is awaited"]
pub struct HandlerCall<'a, 's> {
    state: CallState<'a>,
    /// Where the future of an `async fn` handler runs, once started.
    slot: Pin<&'s mut FutureSlot<'a>>,
}

enum CallState<'a> {
    /// A plain `fn` handler's result; `None` once taken.
    Ready(Option<HandlerResult>),
    /// An `async fn` handler not polled yet.
    Start {
        start: StartFn,
        event: AnyEvent<'a>,
        ctx: &'a HandlerContext<'a>,
    },
    /// An `async fn` handler whose future runs in the slot.
    Running,
    /// Completed.
    Done,
}

impl Future for HandlerCall<'_, '_> {
    type Output = HandlerResult;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerResult> {
        let this = &mut *self;
        let polled = match this.state {
            CallState::Ready(ref mut result) => {
                let result = result.take();
                this.state = CallState::Done;
                return Poll::Ready(
                    result.expect("a handler call is not polled after it completed"),
                );
            }
            CallState::Start { start, event, ctx } => {
                this.state = CallState::Running;
                let slot = this.slot.as_mut();
                panic::catch_unwind(AssertUnwindSafe(|| start(event, ctx, slot, cx)))
            }
            CallState::Running => {
                let slot = this.slot.as_mut();
                panic::catch_unwind(AssertUnwindSafe(|| slot.poll(cx)))
            }
            CallState::Done => panic!("a handler call is not polled after it completed"),
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => {
                this.state = CallState::Done;
                Poll::Ready(result)
            }
            // The future that panicked stays in the slot and is dropped with it, or when the
            // slot starts another.
            Err(panic) => {
                this.state = CallState::Done;
                Poll::Ready(Err(Box::new(HandlerError::panicked(panic))))
            }
        }
    }
}

impl fmt::Debug for HandlerCall<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerCall")
    }
}

/// The bytes a [`FutureSlot`] holds in place: an `async fn` handler whose future is larger runs
/// boxed, with one allocation per call.
///
/// A future holds the handler's arguments and what lives across its `.await`s; a handler that
/// awaits a database query holds that query's future, often kilobytes, and its I/O outweighs
/// the allocation by far.
pub const FUTURE_SLOT_SIZE: usize = 256;

/// The alignment of a [`FutureSlot`]'s space: a future aligned more runs boxed.
pub const FUTURE_SLOT_ALIGN: usize = 16;

/// Space for a future, aligned for any future [`FutureSlot::fits`].
#[repr(C, align(16))]
struct Space(MaybeUninit<[u8; FUTURE_SLOT_SIZE]>);

const _: () = assert!(std::mem::align_of::<Space>() == FUTURE_SLOT_ALIGN);

/// Where an `async fn` handler's future runs during one [`HandlerCall`], without a heap
/// allocation: a small-buffer, type-erased future.
///
/// The handler's generated entry (a [`StartFn`]) knows the future's type and calls
/// [`start`](Self::start), which writes the future into the slot's space if it fits (size at
/// most [`FUTURE_SLOT_SIZE`], alignment at most [`FUTURE_SLOT_ALIGN`]; a choice made at compile
/// time), or a `Box` of it otherwise, and keeps two function pointers to poll and drop it. The
/// slot is pinned by its owner (the dispatcher, in the state of the delivery that awaits the
/// call), so the future never moves once built; it is dropped in place as soon as it completes,
/// or with the slot if the call stops before.
pub struct FutureSlot<'a> {
    space: Space,
    /// How to poll and drop the future in `space`; [`EMPTY`] while it holds none. A pointer
    /// that is never null, so that a new slot is one store, not a `memset` of its space.
    running: &'static Erased,
    /// Holds a `Send` future that may borrow for `'a` and must not move: `Send`, not `Sync`,
    /// not `Unpin`.
    _future: PhantomData<(BoxedFuture<'a>, PhantomPinned)>,
}

/// What a [`FutureSlot`] stands for, as far as auto traits and lifetimes go.
type BoxedFuture<'a> = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'a>>;

/// The poll and drop of the future in a slot's space, its type erased.
struct Erased {
    /// Polls the future at this address.
    poll: unsafe fn(*mut u8, &mut Context<'_>) -> Poll<HandlerResult>,
    /// Drops the future at this address in place.
    drop: unsafe fn(*mut u8),
}

/// What an empty slot holds.
static EMPTY: Erased = Erased {
    poll: poll_empty,
    drop: drop_empty,
};

/// Never called: an empty slot is not polled (see `FutureSlot::poll`).
#[allow(unsafe_code)]
unsafe fn poll_empty(_: *mut u8, _: &mut Context<'_>) -> Poll<HandlerResult> {
    panic!("a handler call is not polled after it completed")
}

/// An empty slot has nothing to drop.
#[allow(unsafe_code)]
unsafe fn drop_empty(_: *mut u8) {}

/// The [`Erased`] of a future type.
trait ErasedOf {
    const ERASED: &'static Erased;
}

impl<F: Future<Output = HandlerResult>> ErasedOf for F {
    const ERASED: &'static Erased = &Erased {
        poll: poll_erased::<F>,
        drop: drop_erased::<F>,
    };
}

/// Polls the `F` at `future`.
///
/// # Safety
///
/// `future` points to a live `F` that is pinned: it is not moved until it is dropped.
#[allow(unsafe_code)]
unsafe fn poll_erased<F: Future<Output = HandlerResult>>(
    future: *mut u8,
    cx: &mut Context<'_>,
) -> Poll<HandlerResult> {
    // SAFETY: by this function's contract, `future` is a live, pinned `F`.
    unsafe { Pin::new_unchecked(&mut *future.cast::<F>()) }.poll(cx)
}

/// Drops the `F` at `future` in place.
///
/// # Safety
///
/// `future` points to a live `F`, which is not used again.
#[allow(unsafe_code)]
unsafe fn drop_erased<F>(future: *mut u8) {
    // SAFETY: by this function's contract, `future` is a live `F`, dropped once.
    unsafe { std::ptr::drop_in_place(future.cast::<F>()) }
}

#[allow(unsafe_code)] // Writes, polls and drops the future in place: see the comments.
impl<'a> FutureSlot<'a> {
    /// A slot holding no future, for a call: pin it where the call is awaited.
    pub const fn new() -> Self {
        FutureSlot {
            space: Space(MaybeUninit::uninit()),
            running: &EMPTY,
            _future: PhantomData,
        }
    }

    /// Whether a future of type `F` fits in place: if not, [`start`](Self::start) boxes it.
    pub const fn fits<F>() -> bool {
        std::mem::size_of::<F>() <= FUTURE_SLOT_SIZE
            && std::mem::align_of::<F>() <= FUTURE_SLOT_ALIGN
    }

    /// Whether the slot holds a future: one that has started and neither completed nor been
    /// dropped.
    pub fn is_running(&self) -> bool {
        !std::ptr::eq(self.running, &EMPTY)
    }

    /// Runs `future` in the slot, in place if it [`fits`](Self::fits), boxed if not, and polls
    /// it once. A future that completes at once is dropped before this returns; one that does
    /// not stays in the slot for [`HandlerCall`] to poll. A future the slot still held is
    /// dropped first.
    #[inline(always)]
    pub fn start<F>(self: Pin<&mut Self>, future: F, cx: &mut Context<'_>) -> Poll<HandlerResult>
    where
        F: Future<Output = HandlerResult> + Send + 'a,
    {
        if Self::fits::<F>() {
            self.start_in_place(future, cx)
        } else {
            self.start_in_place(Box::pin(future), cx)
        }
    }

    #[inline(always)]
    fn start_in_place<F>(
        self: Pin<&mut Self>,
        future: F,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult>
    where
        F: Future<Output = HandlerResult> + Send + 'a,
    {
        // Known at compile time: `start` boxes a future that does not fit, and a box fits.
        assert!(Self::fits::<F>(), "a future that does not fit is boxed");
        // SAFETY: nothing is moved out of the slot; the future written below stays where it
        // is written until it is dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        this.clear();
        let place = this.space.0.as_mut_ptr().cast::<F>();
        // SAFETY: `place` is the start of `space`, which is large and aligned enough for an `F`
        // (asserted above) and holds no value (cleared above): writing does not overwrite a
        // live value.
        unsafe { place.write(future) };
        // Recorded before the first poll: if that poll panics, the future is still dropped,
        // once, by `clear` (with the slot, or when the slot is reused).
        this.running = <F as ErasedOf>::ERASED;
        // SAFETY: the `F` written above is live, and pinned: it lives in the pinned slot and is
        // only dropped in place.
        let polled = unsafe { Pin::new_unchecked(&mut *place) }.poll(cx);
        if polled.is_ready() {
            // As `clear` does, with the drop called directly: the future's type is known here.
            this.running = &EMPTY;
            // SAFETY: the `F` written above is live, and no longer recorded in `running`: it
            // is dropped once.
            unsafe { std::ptr::drop_in_place(place) };
        }
        polled
    }

    /// Polls the future the slot holds, and drops it once it completes.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerResult> {
        // SAFETY: nothing is moved out of the slot.
        let this = unsafe { self.get_unchecked_mut() };
        if !this.is_running() {
            panic!("a handler call is not polled after it completed");
        }
        let running = this.running;
        // SAFETY: `running` is set only by `start_in_place`, together with the future it wrote
        // in `space`, and taken by `clear` before that future is dropped: the future is live,
        // of the type `running.poll` polls, and pinned (see `start_in_place`).
        let polled = unsafe { (running.poll)(this.space.0.as_mut_ptr().cast(), cx) };
        if polled.is_ready() {
            this.clear();
        }
        polled
    }

    /// Drops the future the slot holds, if any.
    #[inline(always)]
    fn clear(&mut self) {
        if !self.is_running() {
            return;
        }
        // Taken before the drop: a drop that panics is not run again.
        let running = std::mem::replace(&mut self.running, &EMPTY);
        // SAFETY: as in `poll`, the future in `space` is live and of the type that
        // `running.drop` drops; `running` is taken, so it is dropped once.
        unsafe { (running.drop)(self.space.0.as_mut_ptr().cast()) }
    }
}

impl Default for FutureSlot<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FutureSlot<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.clear();
    }
}

impl fmt::Debug for FutureSlot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutureSlot")
            .field("running", &self.is_running())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::task::Waker;

    use super::*;
    use crate::deps::Deps;

    /// The "event" of the test handlers below: what their futures report.
    #[derive(Default)]
    struct Probe {
        /// Drops of the guard each future holds.
        drops: AtomicUsize,
        /// Whether the future fitted in the slot.
        fitted: AtomicBool,
        /// Where the future kept its guard, once it ran.
        at: AtomicUsize,
    }

    /// Counts its drop in its probe.
    struct Guard<'a>(&'a Probe);

    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.0.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Ready at its first poll, still holding its guard: dropping the completed future is
    /// what drops the guard.
    struct ReadyHolding<'a> {
        _guard: Guard<'a>,
    }

    impl Future for ReadyHolding<'_> {
        type Output = HandlerResult;

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<HandlerResult> {
            Poll::Ready(done())
        }
    }

    /// Pending once, then ready.
    #[derive(Default)]
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Over-aligned: no slot holds it in place.
    #[repr(align(64))]
    struct Aligned(u8);

    fn probe(event: AnyEvent<'_>) -> &Probe {
        event
            .downcast::<Probe>()
            .expect("the tests' event is a probe")
    }

    /// Starts `future` in `slot`, noting in the probe whether it fits.
    fn start<'a, F>(
        probe: &Probe,
        slot: Pin<&mut FutureSlot<'a>>,
        future: F,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult>
    where
        F: Future<Output = HandlerResult> + Send + 'a,
    {
        probe
            .fitted
            .store(FutureSlot::fits::<F>(), Ordering::SeqCst);
        slot.start(future, cx)
    }

    fn done() -> HandlerResult {
        Ok(None)
    }

    /// A small future: yields once, then completes.
    fn small<'a>(
        event: AnyEvent<'a>,
        _: &'a HandlerContext<'a>,
        slot: Pin<&mut FutureSlot<'a>>,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult> {
        let probe = probe(event);
        let future = async move {
            let guard = Guard(probe);
            probe.at.store(&raw const guard as usize, Ordering::SeqCst);
            YieldOnce::default().await;
            drop(guard);
            done()
        };
        start(probe, slot, future, cx)
    }

    /// A future larger than the slot: yields once, then completes.
    fn large<'a>(
        event: AnyEvent<'a>,
        _: &'a HandlerContext<'a>,
        slot: Pin<&mut FutureSlot<'a>>,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult> {
        let probe = probe(event);
        let future = async move {
            let guard = Guard(probe);
            let buffer = [7u8; 4 * FUTURE_SLOT_SIZE];
            probe.at.store(&raw const guard as usize, Ordering::SeqCst);
            YieldOnce::default().await;
            assert!(buffer.iter().all(|b| *b == 7));
            drop(guard);
            done()
        };
        start(probe, slot, future, cx)
    }

    /// A future aligned more than the slot: yields once, then completes.
    fn aligned<'a>(
        event: AnyEvent<'a>,
        _: &'a HandlerContext<'a>,
        slot: Pin<&mut FutureSlot<'a>>,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult> {
        let probe = probe(event);
        let future = async move {
            let guard = Guard(probe);
            let aligned = Aligned(1);
            probe.at.store(&raw const guard as usize, Ordering::SeqCst);
            YieldOnce::default().await;
            assert_eq!((&raw const aligned as usize) % 64, 0, "aligned as declared");
            assert_eq!(aligned.0, 1);
            drop(guard);
            done()
        };
        start(probe, slot, future, cx)
    }

    /// Panics at its first poll.
    fn panics_at_once<'a>(
        event: AnyEvent<'a>,
        _: &'a HandlerContext<'a>,
        slot: Pin<&mut FutureSlot<'a>>,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult> {
        let probe = probe(event);
        let future = async move {
            let _guard = Guard(probe);
            if probe.drops.load(Ordering::SeqCst) == 0 {
                panic!("the handler fails at once");
            }
            done()
        };
        start(probe, slot, future, cx)
    }

    /// Panics at its second poll, after a yield.
    fn panics_later<'a>(
        event: AnyEvent<'a>,
        _: &'a HandlerContext<'a>,
        slot: Pin<&mut FutureSlot<'a>>,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult> {
        let probe = probe(event);
        let future = async move {
            let _guard = Guard(probe);
            YieldOnce::default().await;
            if probe.drops.load(Ordering::SeqCst) == 0 {
                panic!("the handler fails after a yield");
            }
            done()
        };
        start(probe, slot, future, cx)
    }

    /// Panics at its second poll, holding a buffer larger than the slot.
    fn large_panics_later<'a>(
        event: AnyEvent<'a>,
        _: &'a HandlerContext<'a>,
        slot: Pin<&mut FutureSlot<'a>>,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult> {
        let probe = probe(event);
        let future = async move {
            let _guard = Guard(probe);
            let buffer = [7u8; 4 * FUTURE_SLOT_SIZE];
            YieldOnce::default().await;
            if buffer[0] == 7 {
                panic!("the handler fails after a yield");
            }
            done()
        };
        start(probe, slot, future, cx)
    }

    fn poll(call: &mut HandlerCall<'_, '_>) -> Poll<HandlerResult> {
        Pin::new(call).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Whether `address` is inside `slot`.
    fn inside(slot: &FutureSlot<'_>, address: usize) -> bool {
        let start = std::ptr::from_ref(slot) as usize;
        (start..start + std::mem::size_of::<FutureSlot<'_>>()).contains(&address)
    }

    /// Calls `start` with a probe for its event and runs `test` on the call. Then, the call
    /// and its slot gone, checks that the future was dropped once in all.
    fn with_call<R>(start: StartFn, test: impl FnOnce(&mut HandlerCall<'_, '_>, &Probe) -> R) -> R {
        let deps = Deps::new();
        let meta = EventMeta::new("test");
        let ctx = HandlerContext::new(&deps, &meta);
        let probe = Probe::default();
        let result = {
            let mut slot = std::pin::pin!(FutureSlot::new());
            let mut call = HandlerFn::Async(start).call(AnyEvent::of(&probe), &ctx, slot.as_mut());
            test(&mut call, &probe)
        };
        assert_eq!(probe.drops.load(Ordering::SeqCst), 1, "dropped once");
        result
    }

    /// Runs `start` to completion: pending once, then ready and dropped once. Returns whether
    /// its future was kept inside the call.
    fn runs_to_completion(start: StartFn) -> bool {
        with_call(start, |call, probe| {
            assert!(poll(call).is_pending());
            assert!(call.slot.is_running());
            assert_eq!(probe.drops.load(Ordering::SeqCst), 0);
            let inline = inside(&call.slot, probe.at.load(Ordering::SeqCst));
            assert_eq!(inline, probe.fitted.load(Ordering::SeqCst));
            assert!(
                matches!(poll(call), Poll::Ready(Ok(None))),
                "the call completes"
            );
            // Dropped as soon as it completed, not later with the slot.
            assert!(!call.slot.is_running());
            assert_eq!(probe.drops.load(Ordering::SeqCst), 1);
            inline
        })
    }

    /// Completes at its first poll, holding its guard until it is dropped.
    fn ready_at_once<'a>(
        event: AnyEvent<'a>,
        _: &'a HandlerContext<'a>,
        slot: Pin<&mut FutureSlot<'a>>,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult> {
        let probe = probe(event);
        start(
            probe,
            slot,
            ReadyHolding {
                _guard: Guard(probe),
            },
            cx,
        )
    }

    #[test]
    fn an_event_reads_back_as_its_own_type_only() {
        let event = 7_u32;
        let erased = AnyEvent::of(&event);
        assert!(std::ptr::eq(
            erased.downcast::<u32>().expect("a u32"),
            &event
        ));
        assert!(erased.downcast::<i32>().is_none());

        let typed = TypedEvent::new(String::from("p-1"));
        let read = typed.event().downcast::<String>().map(String::as_str);
        assert_eq!(read, Some("p-1"));
        assert!(typed.event().downcast::<&str>().is_none());

        // The id at another address than the constant each type's check reads: the ids are
        // compared.
        let elsewhere = AnyEvent {
            type_id: Box::leak(Box::new(TypeId::of::<u32>())),
            ..erased
        };
        assert!(elsewhere.downcast::<u32>().is_some());
        assert!(elsewhere.downcast::<i32>().is_none());
    }

    #[test]
    fn a_future_ready_at_its_first_poll_is_dropped_at_once_and_once() {
        with_call(ready_at_once, |call, probe| {
            assert!(matches!(poll(call), Poll::Ready(Ok(_))));
            assert!(probe.fitted.load(Ordering::SeqCst), "kept inside the call");
            assert!(!call.slot.is_running());
            assert_eq!(
                probe.drops.load(Ordering::SeqCst),
                1,
                "dropped as soon as it completed"
            );
        });
    }

    #[test]
    fn a_small_future_runs_inside_the_call_and_is_dropped_once() {
        assert!(runs_to_completion(small), "kept inside the call");
    }

    #[test]
    fn a_future_larger_than_the_slot_runs_boxed_and_is_dropped_once() {
        assert!(!runs_to_completion(large), "boxed");
    }

    #[test]
    fn an_over_aligned_future_runs_boxed_and_is_dropped_once() {
        assert!(!runs_to_completion(aligned), "boxed");
    }

    /// Runs `start`, which panics within `polls` polls: the panic is the call's error, and the
    /// future is dropped once.
    fn panics(start: StartFn, polls: usize) {
        with_call(start, |call, probe| {
            for _ in 1..polls {
                assert!(poll(call).is_pending());
            }
            assert!(
                matches!(poll(call), Poll::Ready(Err(ref error)) if matches!(**error, HandlerError::Panicked(_))),
                "the panic is the call's error"
            );
            // The guard was dropped as the panic unwound the future.
            assert_eq!(probe.drops.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn a_panic_at_the_first_poll_fails_the_call_and_drops_once() {
        panics(panics_at_once, 1);
    }

    #[test]
    fn a_panic_at_a_later_poll_fails_the_call_and_drops_once() {
        panics(panics_later, 2);
    }

    #[test]
    fn a_panic_in_a_boxed_future_fails_the_call_and_drops_once() {
        panics(large_panics_later, 2);
    }

    /// Drops the call of `start` while its future is pending: the slot drops it.
    fn dropped_pending(start: StartFn) {
        with_call(start, |call, probe| {
            assert!(poll(call).is_pending());
            assert_eq!(probe.drops.load(Ordering::SeqCst), 0);
        });
    }

    #[test]
    fn a_call_dropped_before_completion_drops_its_future_once() {
        dropped_pending(small);
        dropped_pending(large);
        dropped_pending(aligned);
    }

    #[test]
    fn a_call_never_polled_starts_nothing() {
        let deps = Deps::new();
        let meta = EventMeta::new("test");
        let probe = Probe::default();
        let ctx = HandlerContext::new(&deps, &meta);
        let mut slot = std::pin::pin!(FutureSlot::new());
        let call = HandlerFn::Async(small).call(AnyEvent::of(&probe), &ctx, slot.as_mut());
        drop(call);
        assert!(!slot.is_running());
        assert_eq!(probe.drops.load(Ordering::SeqCst), 0);
        assert!(!probe.fitted.load(Ordering::SeqCst));
    }

    #[test]
    fn a_slot_started_twice_drops_the_first_future() {
        let probe = Probe::default();
        let mut cx = Context::from_waker(Waker::noop());
        {
            let mut slot = std::pin::pin!(FutureSlot::new());
            for _ in 0..2 {
                let guard = Guard(&probe);
                let pending = slot.as_mut().start(
                    async move {
                        let _guard = guard;
                        YieldOnce::default().await;
                        done()
                    },
                    &mut cx,
                );
                assert!(pending.is_pending());
            }
            assert_eq!(
                probe.drops.load(Ordering::SeqCst),
                1,
                "the first, when the second started"
            );
        }
        assert_eq!(
            probe.drops.load(Ordering::SeqCst),
            2,
            "the second, with the slot"
        );
    }

    #[test]
    fn a_plain_fn_call_is_ready_at_once() {
        let deps = Deps::new();
        let meta = EventMeta::new("test");
        let ctx = HandlerContext::new(&deps, &meta);
        let mut slot = std::pin::pin!(FutureSlot::new());
        let mut call = HandlerFn::Sync(|_, _| done()).call(AnyEvent::of(&()), &ctx, slot.as_mut());
        assert!(matches!(poll(&mut call), Poll::Ready(Ok(_))));
        assert!(!call.slot.is_running());
    }
}
