//! What tidings adds to a handler call, and what one event costs end to end.
//!
//! - `B1 sync handlers`: one event to N plain `fn` handlers through the type-erased entry the
//!   dispatcher uses (`HandlerFn::call`, each call given a `FutureSlot` as the dispatcher gives
//!   it), against a `Vec<Box<dyn Fn(&E)>>` of the same functions. A third arm, `entry`, calls
//!   each handler's type-erased `fn` directly ([`HandlerInfo::invoke`]), without the panic
//!   isolation and the future of `call`: it shows what the generated entry itself costs.
//! - `B2 async handlers`: the same with `async fn` handlers, against awaiting the same functions
//!   directly, on a current-thread tokio runtime. A third arm, `boxed`, awaits each through a
//!   `Pin<Box<dyn Future>>`: the allocation that a type-erased call of an `async fn` makes
//!   unless, as `tidings` does, it keeps the future in place in a slot of the caller's.
//! - `B1-e2e`: publish one event and settle a running app (store, dispatcher, activity
//!   tracking), against a hand-written in-process bus on the same runtime: a queue behind a
//!   mutex, a worker task that a `Notify` wakes to run the handler, and a count of the events
//!   in flight that the publisher waits to see at zero. The bus has what any event bus must
//!   (a second task, its wake-up and the wake-up back) and nothing else: no store, envelope,
//!   retries, spans or metrics. The allocations per event, the dispatcher's included, are
//!   printed before it.
//!
//! Registrations are global per binary, so each N has its own event type; every handler here
//! needs nothing but its event, so the end-to-end app of this binary builds.
//!
//! Run: `cargo bench -p tidings-benches -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tidings::__private::{
    AnyEvent, CallHandler as _, Deps, FutureSlot, HandlerContext, HandlerFn, HandlerInfo,
};
use tidings::prelude::*;
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------------
// Allocation counting.

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Calls measured to count allocations per call.
const COUNTED_CALLS: u64 = 10_000;

// ---------------------------------------------------------------------------------------------
// Events and handlers.

macro_rules! event {
    ($name:ident) => {
        #[domain_event]
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            pub value: u64,
        }
    };
}

/// Plain `fn` handlers of `$event`, and `$boxed()`: the same functions as boxed closures.
macro_rules! sync_handlers {
    ($event:ident, $boxed:ident: $($name:ident),+) => {
        event!($event);
        $(
            #[handles]
            fn $name(event: &$event) {
                black_box(event.value);
            }
        )+
        fn $boxed() -> Vec<Box<dyn Fn(&$event)>> {
            vec![$(Box::new($name)),+]
        }
    };
}

/// `async fn` handlers of `$event`; `$direct(event)`: awaits each of them in turn; and
/// `$boxed(event)`: awaits each through a boxed `dyn Future`, as any type-erased call of an
/// `async fn` must.
macro_rules! async_handlers {
    ($event:ident, $direct:ident, $boxed:ident: $($name:ident),+) => {
        event!($event);
        $(
            #[handles]
            async fn $name(event: &$event) {
                black_box(event.value);
            }
        )+
        async fn $direct(event: &$event) {
            $($name(event).await;)+
        }
        async fn $boxed(event: &$event) {
            $((Box::pin($name(event)) as Pin<Box<dyn Future<Output = ()> + Send + '_>>).await;)+
        }
    };
}

sync_handlers!(OnePinged, boxed_one: one_a);
sync_handlers!(TwoPinged, boxed_two: two_a, two_b);
sync_handlers!(EightPinged, boxed_eight: eight_a, eight_b, eight_c, eight_d, eight_e, eight_f, eight_g, eight_h);

async_handlers!(OneAsyncPinged, direct_one, boxed_async_one: one_async_a);
async_handlers!(TwoAsyncPinged, direct_two, boxed_async_two: two_async_a, two_async_b);
async_handlers!(EightAsyncPinged, direct_eight, boxed_async_eight: eight_async_a, eight_async_b, eight_async_c, eight_async_d, eight_async_e, eight_async_f, eight_async_g, eight_async_h);

event!(EndToEndPinged);

#[handles]
fn end_to_end(event: &EndToEndPinged) {
    black_box(event.value);
}

// ---------------------------------------------------------------------------------------------
// Harness.

/// Runs a future that completes at its first poll, as `HandlerInfo::call` of a plain `fn`
/// handler does: the smallest executor there is. Inlined, as the poll of an `.await` is in the
/// async fn that awaits it (the dispatcher's).
#[inline(always)]
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future was not ready at its first poll"),
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// The registered handlers of `E`, resolved once as the dispatcher does at build time.
fn handlers<E: 'static>(expected: usize) -> Vec<&'static HandlerInfo> {
    let handlers: Vec<_> = tidings::registry().handlers_of::<E>().collect();
    assert_eq!(
        handlers.len(),
        expected,
        "handlers of {}",
        std::any::type_name::<E>()
    );
    handlers
}

/// Calls each handler once with `event`, as the dispatcher does (without the store). Inlined
/// into the benchmark's iteration, as the baseline's loop is.
#[inline(always)]
fn call_sync<E: Send + Sync + 'static>(
    handlers: &[&'static HandlerInfo],
    event: &E,
    deps: &Deps,
    meta: &EventMeta,
) {
    // Its type's id goes with it, as with the dispatcher's events: taken once per event.
    let event = AnyEvent::of(event);
    for handler in handlers {
        let ctx = HandlerContext::new(deps, meta);
        let slot = pin!(FutureSlot::new());
        let result = ready(handler.call_in(event, &ctx, slot));
        assert!(result.is_ok());
    }
}

/// Calls each handler's type-erased `fn` (`HandlerInfo::invoke`) directly: the cost of the
/// entry the macro generates (downcast, arguments, result), without `call`'s panic isolation and
/// future. Inlined, as `call_sync` is.
#[inline(always)]
fn invoke_sync<E: Send + Sync + 'static>(
    handlers: &[&'static HandlerInfo],
    event: &E,
    deps: &Deps,
    meta: &EventMeta,
) {
    let event = AnyEvent::of(event);
    for handler in handlers {
        let HandlerFn::Sync(invoke) = handler.invoke() else {
            panic!("`{}` is not a plain `fn` handler", handler.name());
        };
        assert!(invoke(event, &HandlerContext::new(deps, meta)).is_ok());
    }
}

/// What the calls of one event's handlers share, as the dispatcher keeps it: in one place that
/// each call reaches through one reference.
struct Calls {
    handlers: Vec<&'static HandlerInfo>,
    deps: Deps,
    meta: EventMeta,
}

impl Calls {
    fn of<E: 'static>(expected: usize) -> Self {
        Calls {
            handlers: handlers::<E>(expected),
            deps: Deps::new(),
            meta: EventMeta::new("bench"),
        }
    }
}

/// Awaits the call of each handler with `event`, as the dispatcher does (without the store).
async fn call_async<E: Send + Sync + 'static>(calls: &Calls, event: &E) {
    let event = AnyEvent::of(event);
    for handler in &calls.handlers {
        let ctx = HandlerContext::new(&calls.deps, &calls.meta);
        let slot = pin!(FutureSlot::new());
        let result = handler.call_in(event, &ctx, slot).await;
        assert!(result.is_ok());
    }
}

/// Allocations per handler call of each arm, counted outside criterion's timing.
fn count_allocations() {
    let deps = Deps::new();
    let meta = EventMeta::new("bench");
    let event = OnePinged { value: 1 };
    let registered = handlers::<OnePinged>(1);
    let boxed = boxed_one();

    let before = allocations();
    for _ in 0..COUNTED_CALLS {
        call_sync(&registered, black_box(&event), &deps, &meta);
    }
    let tidings_sync = allocations() - before;
    let before = allocations();
    for _ in 0..COUNTED_CALLS {
        for handler in &boxed {
            handler(black_box(&event));
        }
    }
    let loop_sync = allocations() - before;

    let runtime = current_thread();
    let event = OneAsyncPinged { value: 1 };
    let calls = Calls::of::<OneAsyncPinged>(1);
    let (tidings_async, direct_async) = runtime.block_on(async {
        let before = allocations();
        for _ in 0..COUNTED_CALLS {
            call_async(&calls, black_box(&event)).await;
        }
        let tidings = allocations() - before;
        let before = allocations();
        for _ in 0..COUNTED_CALLS {
            direct_one(black_box(&event)).await;
        }
        (tidings, allocations() - before)
    });

    let per_call = |count: u64| count as f64 / COUNTED_CALLS as f64;
    eprintln!(
        "allocs per handler call (sync fn): tidings {}, loop {}",
        per_call(tidings_sync),
        per_call(loop_sync)
    );
    eprintln!(
        "allocs per handler call (async fn): tidings {}, direct {}",
        per_call(tidings_async),
        per_call(direct_async)
    );
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.

fn sync_handlers(c: &mut Criterion) {
    count_allocations();

    let deps = Deps::new();
    let meta = EventMeta::new("bench");
    let mut group = c.benchmark_group("B1 sync handlers");

    macro_rules! arms {
        ($n:literal, $event:ident, $boxed:ident) => {{
            let event = $event { value: 1 };
            let registered = handlers::<$event>($n);
            group.bench_with_input(BenchmarkId::new("tidings", $n), &event, |b, event| {
                b.iter(|| call_sync(&registered, black_box(event), &deps, &meta))
            });
            group.bench_with_input(BenchmarkId::new("entry", $n), &event, |b, event| {
                b.iter(|| invoke_sync(&registered, black_box(event), &deps, &meta))
            });
            let boxed = $boxed();
            group.bench_with_input(BenchmarkId::new("loop", $n), &event, |b, event| {
                b.iter(|| {
                    for handler in &boxed {
                        handler(black_box(event));
                    }
                })
            });
        }};
    }
    arms!(1, OnePinged, boxed_one);
    arms!(2, TwoPinged, boxed_two);
    arms!(8, EightPinged, boxed_eight);
    group.finish();
}

fn async_handlers(c: &mut Criterion) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("B2 async handlers");

    macro_rules! arms {
        ($n:literal, $event:ident, $direct:ident, $boxed:ident) => {{
            let event = $event { value: 1 };
            let calls = Calls::of::<$event>($n);
            group.bench_with_input(BenchmarkId::new("tidings", $n), &event, |b, event| {
                b.to_async(&runtime)
                    .iter(|| call_async(&calls, black_box(event)))
            });
            group.bench_with_input(BenchmarkId::new("boxed", $n), &event, |b, event| {
                b.to_async(&runtime).iter(|| $boxed(black_box(event)))
            });
            group.bench_with_input(BenchmarkId::new("direct", $n), &event, |b, event| {
                b.to_async(&runtime).iter(|| $direct(black_box(event)))
            });
        }};
    }
    arms!(1, OneAsyncPinged, direct_one, boxed_async_one);
    arms!(2, TwoAsyncPinged, direct_two, boxed_async_two);
    arms!(8, EightAsyncPinged, direct_eight, boxed_async_eight);
    group.finish();
}

fn end_to_end_publish(c: &mut Criterion) {
    let runtime = current_thread();
    let app = Tidings::builder("bench")
        .build()
        .expect("every handler of the bench binary is wired");
    let running = runtime.block_on(app.start()).expect("the app starts");
    let publisher = app.domain_events();
    let publish_and_settle = || async {
        publisher
            .publish(EndToEndPinged { value: 1 })
            .await
            .expect("the event is recorded");
        running.settle().await;
    };

    // Allocations per event, the dispatcher's included, counted outside criterion's timing.
    let before = allocations();
    runtime.block_on(async {
        for _ in 0..COUNTED_CALLS {
            publish_and_settle().await;
        }
    });
    eprintln!(
        "allocs per event (publish + settle, end to end): {}",
        (allocations() - before) as f64 / COUNTED_CALLS as f64
    );

    let bus = Arc::new(HandWrittenBus::default());
    let worker = runtime.spawn(Arc::clone(&bus).run());

    let mut group = c.benchmark_group("B1-e2e publish+settle");
    group.bench_function("tidings, 1 sync handler, per event", |b| {
        b.to_async(&runtime).iter(publish_and_settle)
    });
    group.bench_function("hand-written bus, per event", |b| {
        b.to_async(&runtime)
            .iter(|| bus.publish_and_settle(EndToEndPinged { value: 1 }))
    });
    group.finish();

    worker.abort();
    runtime
        .block_on(running.shutdown())
        .expect("the app shuts down");
}

/// The baseline of `B1-e2e`: an in-process event bus written by hand, its worker a task of its
/// own, as the dispatcher is.
#[derive(Default)]
struct HandWrittenBus {
    queue: Mutex<VecDeque<EndToEndPinged>>,
    /// Wakes the worker.
    wake: Notify,
    /// Events published and not handled yet.
    in_flight: AtomicUsize,
    /// Notified when `in_flight` drops to zero.
    settled: Notify,
}

impl HandWrittenBus {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<EndToEndPinged>> {
        self.queue.lock().expect("the queue's lock is not poisoned")
    }

    /// Queues `event`, wakes the worker, and waits until it was handled.
    async fn publish_and_settle(&self, event: EndToEndPinged) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.queue().push_back(event);
        self.wake.notify_one();
        loop {
            let settled = self.settled.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            settled.await;
        }
    }

    /// Handles the queued events, one at a time, each time it is woken.
    async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                let next = self.queue().pop_front();
                let Some(event) = next else { break };
                black_box(event.value);
                if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                    self.settled.notify_waiters();
                }
            }
        }
    }
}

criterion_group!(benches, sync_handlers, async_handlers, end_to_end_publish);
criterion_main!(benches);
