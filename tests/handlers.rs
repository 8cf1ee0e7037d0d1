//! The type-erased entry of `#[handles]` functions, called the way the dispatcher calls it:
//! through the registry, with the event as `Any` and a context.

use std::sync::Mutex;

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
async fn an_event_of_another_type_is_refused() {
    let (deps, journal) = deps_with_journal();
    let meta = EventMeta::new("inventory");
    let error = handler("log_stock")
        .call(
            &OrderEvent::Placed { order_id: 1 },
            HandlerContext::new(&deps, &meta),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        *error,
        HandlerError::WrongEvent {
            handler: "log_stock",
            expected: "StockRecalculated"
        }
    ));
    assert!(
        journal.0.lock().unwrap().is_empty(),
        "the handler did not run"
    );
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
