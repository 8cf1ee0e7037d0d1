//! The type-erased entry of `#[handles]` functions, called the way the dispatcher calls it:
//! through the registry, with the event as `Any` and a context.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use tidings::__private::{
    CallHandler as _, Deps, DynIntegrationEvent, HandlerContext, HandlerError, HandlerFn,
    HandlerInfo,
};
use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StockRecalculated {
    pub sku: String,
    pub on_hand: i64,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum OrderEvent {
    Placed { order_id: u64 },
    Cancelled { order_id: u64 },
}

#[integration_event(name = "inventory.modified", from = [StockRecalculated, OrderEvent], key = sku)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InventoryModifiedIntegrationEvent {
    pub sku: String,
    pub on_hand: i64,
}

#[integration_event(name = "sales.order-cancelled", from = OrderEvent)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderCancelledIntegrationEvent {
    pub order_id: u64,
}

#[integration_event(name = "sales.order-placed", from = OrderEvent)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderPlacedIntegrationEvent {
    pub order_id: u64,
}

#[integration_event(name = "sales.order-line", from = OrderEvent)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderLineIntegrationEvent {
    pub order_id: u64,
    pub line: u32,
}

#[integration_event(name = "sales.order-audited", from = StockRecalculated)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderAuditedIntegrationEvent {
    pub sku: String,
}

/// What the handlers below record, so the tests can see they ran with the right arguments.
#[derive(Debug, Default)]
pub struct Journal(Mutex<Vec<String>>);

impl Journal {
    fn write(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the warehouse is unreachable")]
pub struct WarehouseDown;

// Returns `()`, plain fn, a dependency and the envelope by value.
#[handles]
fn log_stock(event: &StockRecalculated, journal: Dep<Journal>, meta: EventMeta) {
    journal.write(format!(
        "stock {} {} from {}",
        event.sku, event.on_hand, meta.source
    ));
}

// Returns an integration event, async, the envelope by reference before the dependency.
#[handles]
async fn translate_stock(
    event: &StockRecalculated,
    meta: &EventMeta,
    journal: Dep<Journal>,
) -> InventoryModifiedIntegrationEvent {
    journal.write(format!("translate {}", meta.id));
    InventoryModifiedIntegrationEvent {
        sku: event.sku.clone(),
        on_hand: event.on_hand,
    }
}

// `Result<(), E>`.
#[handles]
async fn reserve_stock(event: &StockRecalculated) -> Result<(), WarehouseDown> {
    if event.on_hand < 0 {
        Err(WarehouseDown)
    } else {
        Ok(())
    }
}

// `Option<I>`, on an enum domain event.
#[handles]
fn cancelled_order(event: &OrderEvent) -> Option<OrderCancelledIntegrationEvent> {
    match event {
        OrderEvent::Cancelled { order_id } => Some(OrderCancelledIntegrationEvent {
            order_id: *order_id,
        }),
        OrderEvent::Placed { .. } => None,
    }
}

// `Vec<I>`.
#[handles]
fn order_lines(event: &OrderEvent) -> Vec<OrderLineIntegrationEvent> {
    match event {
        OrderEvent::Placed { order_id } => (1..=2)
            .map(|line| OrderLineIntegrationEvent {
                order_id: *order_id,
                line,
            })
            .collect(),
        OrderEvent::Cancelled { .. } => Vec::new(),
    }
}

// `Result<I, E>`.
#[handles]
async fn placed_order(event: &OrderEvent) -> Result<OrderPlacedIntegrationEvent, WarehouseDown> {
    match event {
        OrderEvent::Placed { order_id } => Ok(OrderPlacedIntegrationEvent {
            order_id: *order_id,
        }),
        OrderEvent::Cancelled { .. } => Err(WarehouseDown),
    }
}

// `Result<Option<I>, E>` and `Result<Vec<I>, E>`.
#[handles]
fn audit_stock(
    event: &StockRecalculated,
) -> Result<Option<OrderAuditedIntegrationEvent>, WarehouseDown> {
    Ok((event.on_hand == 0).then(|| OrderAuditedIntegrationEvent {
        sku: event.sku.clone(),
    }))
}

#[handles]
async fn restock(
    event: &OrderEvent,
) -> Result<Vec<InventoryModifiedIntegrationEvent>, WarehouseDown> {
    let _ = event;
    Ok(vec![])
}

fn handler(name: &str) -> &'static HandlerInfo {
    tidings::registry()
        .handlers()
        .iter()
        .copied()
        .find(|h| h.name() == name)
        .unwrap_or_else(|| panic!("handler `{name}` is registered"))
}

fn stock(on_hand: i64) -> StockRecalculated {
    StockRecalculated {
        sku: "sku-1".into(),
        on_hand,
    }
}

fn deps_with_journal() -> (Deps, Dep<Journal>) {
    let mut deps = Deps::new();
    deps.insert(Journal::default());
    let journal = deps.get::<Journal>().unwrap();
    (deps, journal)
}

fn typed<I: 'static>(event: &dyn DynIntegrationEvent) -> &I {
    event
        .as_any()
        .downcast_ref::<I>()
        .expect("the produced type")
}

#[tokio::test]
async fn a_plain_fn_handler_runs_with_its_dependency_and_envelope() {
    let (deps, journal) = deps_with_journal();
    let meta = EventMeta::new("inventory");
    let log = handler("log_stock");
    assert!(matches!(log.invoke(), HandlerFn::Sync(_)));
    assert!(log.deps()[0].is::<Journal>());

    let emitted = log
        .call(&stock(4), HandlerContext::new(&deps, &meta))
        .await
        .unwrap();
    assert!(emitted.is_empty());
    assert_eq!(*journal.0.lock().unwrap(), ["stock sku-1 4 from inventory"]);
}

#[tokio::test]
async fn a_translation_returns_the_integration_event() {
    let (deps, journal) = deps_with_journal();
    let meta = EventMeta::new("inventory");
    let translate = handler("translate_stock");
    assert!(matches!(translate.invoke(), HandlerFn::Async(_)));
    assert!(
        translate
            .produces()
            .unwrap()
            .is::<InventoryModifiedIntegrationEvent>()
    );

    let emitted = translate
        .call(&stock(4), HandlerContext::new(&deps, &meta))
        .await
        .unwrap();
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].contract(), "inventory.modified");
    assert_eq!(emitted[0].key().as_deref(), Some("sku-1"));
    assert_eq!(
        emitted[0].to_json().unwrap(),
        serde_json::json!({ "sku": "sku-1", "on_hand": 4 })
    );
    assert_eq!(
        typed::<InventoryModifiedIntegrationEvent>(&*emitted[0]),
        &InventoryModifiedIntegrationEvent {
            sku: "sku-1".into(),
            on_hand: 4
        }
    );
    assert_eq!(
        *journal.0.lock().unwrap(),
        [format!("translate {}", meta.id)]
    );
}

#[tokio::test]
async fn a_handler_error_is_returned_with_its_message() {
    let deps = Deps::new();
    let meta = EventMeta::new("inventory");
    let reserve = handler("reserve_stock");
    let ctx = HandlerContext::new(&deps, &meta);

    assert!(reserve.call(&stock(1), ctx).await.unwrap().is_empty());
    let error = reserve.call(&stock(-1), ctx).await.unwrap_err();
    assert!(matches!(
        *error,
        HandlerError::Failed {
            retryable: true,
            ..
        }
    ));
    assert_eq!(error.to_string(), "the warehouse is unreachable");
}

#[tokio::test]
async fn option_vec_and_result_returns_produce_zero_one_or_many_events() {
    let deps = Deps::new();
    let meta = EventMeta::new("sales");
    let ctx = HandlerContext::new(&deps, &meta);
    let placed = OrderEvent::Placed { order_id: 7 };
    let cancelled = OrderEvent::Cancelled { order_id: 8 };

    let none = handler("cancelled_order").call(&placed, ctx).await.unwrap();
    assert!(none.is_empty());
    let one = handler("cancelled_order")
        .call(&cancelled, ctx)
        .await
        .unwrap();
    assert_eq!(
        typed::<OrderCancelledIntegrationEvent>(&*one[0]).order_id,
        8
    );

    let lines = handler("order_lines").call(&placed, ctx).await.unwrap();
    let lines: Vec<u32> = lines
        .iter()
        .map(|e| typed::<OrderLineIntegrationEvent>(&**e).line)
        .collect();
    assert_eq!(lines, [1, 2]);

    let ok = handler("placed_order").call(&placed, ctx).await.unwrap();
    assert_eq!(typed::<OrderPlacedIntegrationEvent>(&*ok[0]).order_id, 7);
    let err = handler("placed_order")
        .call(&cancelled, ctx)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "the warehouse is unreachable");

    let audited = handler("audit_stock").call(&stock(0), ctx).await.unwrap();
    assert_eq!(audited.len(), 1);
    assert!(
        handler("audit_stock")
            .call(&stock(3), ctx)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        handler("restock")
            .call(&placed, ctx)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_missing_dependency_is_an_error_that_names_the_type() {
    let deps = Deps::new();
    let meta = EventMeta::new("inventory");
    let error = handler("log_stock")
        .call(&stock(1), HandlerContext::new(&deps, &meta))
        .await
        .unwrap_err();
    assert!(matches!(*error, HandlerError::MissingDependency { .. }));
    assert!(error.to_string().contains("handlers::Journal"), "{error}");
    assert!(error.to_string().contains(".provide("), "{error}");
}

#[tokio::test]
async fn an_event_of_another_type_is_refused_by_plain_and_async_handlers() {
    for name in ["log_stock", "reserve_stock"] {
        let (deps, journal) = deps_with_journal();
        let meta = EventMeta::new("inventory");
        let error = handler(name)
            .call(
                &OrderEvent::Placed { order_id: 1 },
                HandlerContext::new(&deps, &meta),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                *error,
                HandlerError::WrongEvent {
                    handler,
                    expected: "StockRecalculated"
                } if handler == name
            ),
            "{name}: {error}"
        );
        assert!(
            journal.0.lock().unwrap().is_empty(),
            "{name}: the handler did not run"
        );
    }
}

#[test]
fn every_translation_is_known_by_its_pair() {
    let registry = tidings::registry();
    let translations = |i: std::any::TypeId, a: std::any::TypeId| -> Vec<&str> {
        registry
            .translation_handlers(i, a)
            .map(|h| h.name())
            .collect()
    };
    use std::any::TypeId;
    assert_eq!(
        translations(
            TypeId::of::<InventoryModifiedIntegrationEvent>(),
            TypeId::of::<StockRecalculated>()
        ),
        ["translate_stock"]
    );
    assert_eq!(
        translations(
            TypeId::of::<InventoryModifiedIntegrationEvent>(),
            TypeId::of::<OrderEvent>()
        ),
        ["restock"]
    );
}

// ---------------------------------------------------------------------------------------------
// The future of an `async fn` handler: held in the call when small, boxed when large, dropped
// once whatever happens to it.

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShelfCounted {
    pub shelf: u32,
}

/// Counts the drops of the guards the handlers below hold across an `.await`.
#[derive(Debug, Default)]
pub struct Drops(AtomicUsize);

impl Drops {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct Guard(Dep<Drops>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Pending once, then ready, without a runtime.
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

#[handles]
async fn shelf_small(event: &ShelfCounted, drops: Dep<Drops>, journal: Dep<Journal>) {
    let guard = Guard(drops);
    YieldOnce::default().await;
    journal.write(format!("small {}", event.shelf));
    drop(guard);
}

// Holds 4 KiB across its `.await`: more than the call keeps in place.
#[handles]
async fn shelf_large(event: &ShelfCounted, drops: Dep<Drops>, journal: Dep<Journal>) {
    let guard = Guard(drops);
    let counts = [event.shelf; 1024];
    YieldOnce::default().await;
    journal.write(format!("large {}", counts.iter().sum::<u32>()));
    drop(guard);
}

#[handles]
async fn shelf_panics(event: &ShelfCounted, drops: Dep<Drops>) {
    let _guard = Guard(drops);
    YieldOnce::default().await;
    if event.shelf > 0 {
        panic!("shelf {} fell over", event.shelf);
    }
}

#[handles]
async fn shelf_large_panics(event: &ShelfCounted, drops: Dep<Drops>) {
    let _guard = Guard(drops);
    let counts = [event.shelf; 1024];
    YieldOnce::default().await;
    if counts[0] > 0 {
        panic!("shelf {} fell over", event.shelf);
    }
}

// Completes at its first poll: what a call of it allocates is the runtime's own.
#[handles]
async fn shelf_noop(event: &ShelfCounted) {
    std::hint::black_box(event.shelf);
}

#[handles]
fn shelf_noop_sync(event: &ShelfCounted) {
    std::hint::black_box(event.shelf);
}

fn deps_with_drops() -> (Deps, Dep<Drops>, Dep<Journal>) {
    let mut deps = Deps::new();
    deps.insert(Drops::default());
    deps.insert(Journal::default());
    let drops = deps.get::<Drops>().unwrap();
    let journal = deps.get::<Journal>().unwrap();
    (deps, drops, journal)
}

fn noop_context() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

#[test]
fn an_async_fn_handler_runs_to_completion_and_its_future_is_dropped_once() {
    for (name, line) in [("shelf_small", "small 3"), ("shelf_large", "large 3072")] {
        let (deps, drops, journal) = deps_with_drops();
        let meta = EventMeta::new("inventory");
        let event = ShelfCounted { shelf: 3 };
        {
            let mut call = pin!(handler(name).call(&event, HandlerContext::new(&deps, &meta)));
            assert!(
                call.as_mut().poll(&mut noop_context()).is_pending(),
                "{name}"
            );
            assert_eq!(drops.count(), 0, "{name}");
            match call.as_mut().poll(&mut noop_context()) {
                Poll::Ready(Ok(emitted)) => assert!(emitted.is_empty(), "{name}"),
                Poll::Ready(Err(error)) => panic!("{name} failed: {error}"),
                Poll::Pending => panic!("{name} is still pending"),
            }
            assert_eq!(drops.count(), 1, "{name}: dropped when it completed");
        }
        assert_eq!(drops.count(), 1, "{name}: dropped once");
        assert_eq!(*journal.0.lock().unwrap(), [line]);
    }
}

#[test]
fn a_panic_in_an_async_fn_handler_fails_the_call_and_drops_its_future_once() {
    for name in ["shelf_panics", "shelf_large_panics"] {
        let (deps, drops, _) = deps_with_drops();
        let meta = EventMeta::new("inventory");
        let event = ShelfCounted { shelf: 2 };
        {
            let mut call = pin!(handler(name).call(&event, HandlerContext::new(&deps, &meta)));
            assert!(
                call.as_mut().poll(&mut noop_context()).is_pending(),
                "{name}"
            );
            match call.as_mut().poll(&mut noop_context()) {
                Poll::Ready(Err(error)) => assert!(
                    matches!(&*error, HandlerError::Panicked(message) if message == "shelf 2 fell over"),
                    "{name}: {error}"
                ),
                Poll::Ready(Ok(_)) => panic!("{name} succeeded"),
                Poll::Pending => panic!("{name} is still pending"),
            }
            assert_eq!(drops.count(), 1, "{name}: dropped as the panic unwound");
        }
        assert_eq!(drops.count(), 1, "{name}: dropped once");
    }
}

#[test]
fn an_async_fn_handler_dropped_before_completion_drops_its_future_once() {
    for name in ["shelf_small", "shelf_large", "shelf_panics"] {
        let (deps, drops, journal) = deps_with_drops();
        let meta = EventMeta::new("inventory");
        let event = ShelfCounted { shelf: 1 };
        {
            let mut call = pin!(handler(name).call(&event, HandlerContext::new(&deps, &meta)));
            assert!(
                call.as_mut().poll(&mut noop_context()).is_pending(),
                "{name}"
            );
            assert_eq!(drops.count(), 0, "{name}");
        }
        assert_eq!(drops.count(), 1, "{name}: dropped with the call, once");
        assert!(
            journal.0.lock().unwrap().is_empty(),
            "{name} did not finish"
        );
    }
}

#[test]
fn a_call_of_a_small_handler_allocates_nothing() {
    let deps = Deps::new();
    let meta = EventMeta::new("inventory");
    let event = ShelfCounted { shelf: 1 };
    for name in ["shelf_noop", "shelf_noop_sync"] {
        let handler = handler(name);
        // Once first, so that nothing lazily initialised is counted.
        let call = || {
            let mut call = pin!(handler.call(&event, HandlerContext::new(&deps, &meta)));
            assert!(matches!(
                call.as_mut().poll(&mut noop_context()),
                Poll::Ready(Ok(_))
            ));
        };
        call();
        let before = allocations::on_this_thread();
        for _ in 0..100 {
            call();
        }
        assert_eq!(allocations::on_this_thread() - before, 0, "{name}");
    }
}

/// Counts the allocations each thread makes, so that a test sees its own only.
mod allocations {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    fn count() {
        // Not counted while the thread is torn down.
        let _ = COUNT.try_with(|count| count.set(count.get() + 1));
    }

    pub(super) fn on_this_thread() -> u64 {
        COUNT.with(Cell::get)
    }

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: forwarded as is.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: forwarded as is.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
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
}

/// A handler's generated entry binds names of its own beside the user's items: lowercase unit
/// structs and consts named like its bindings, in scope where the handlers are declared, do not
/// turn those bindings into patterns.
mod names_in_scope {
    #![allow(non_camel_case_types, non_upper_case_globals, dead_code)]

    use tidings::__private::{CallHandler as _, Deps, HandlerContext};
    use tidings::prelude::*;

    struct event;
    struct error;
    struct ctx;
    struct slot;
    struct cx;
    const output: u8 = 0;

    #[tidings::domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct BinCounted {
        pub(crate) count: u32,
    }

    #[handles]
    fn count_bin(counted: &BinCounted) {
        assert_eq!(counted.count, 3);
    }

    #[handles]
    async fn count_bin_later(counted: &BinCounted) {
        assert_eq!(counted.count, 3);
    }

    #[tokio::test]
    async fn both_kinds_of_entry_run_among_them() {
        let deps = Deps::new();
        let meta = EventMeta::new("inventory");
        for name in ["count_bin", "count_bin_later"] {
            let handler = super::handler(name);
            let result = handler
                .call(&BinCounted { count: 3 }, HandlerContext::new(&deps, &meta))
                .await;
            assert!(result.is_ok(), "{name}");
        }
    }
}
