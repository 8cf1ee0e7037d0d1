//! Every return form of `#[handles]`, as `fn` and as `async fn`.

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderConfirmed {
    pub order_id: u64,
}

#[integration_event(name = "sales.order-confirmed", from = OrderConfirmed, key = order_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderConfirmedIntegrationEvent {
    pub order_id: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the ledger is closed")]
pub struct LedgerClosed;

#[handles]
fn returns_nothing(_event: &OrderConfirmed) {}

#[handles]
async fn returns_unit(_event: &OrderConfirmed) -> () {}

#[handles]
fn returns_result_unit(_event: &OrderConfirmed) -> Result<(), LedgerClosed> {
    Ok(())
}

#[handles]
async fn returns_event(event: &OrderConfirmed) -> OrderConfirmedIntegrationEvent {
    OrderConfirmedIntegrationEvent { order_id: event.order_id }
}

#[handles]
fn returns_option(event: &OrderConfirmed) -> Option<OrderConfirmedIntegrationEvent> {
    Some(OrderConfirmedIntegrationEvent { order_id: event.order_id })
}

#[handles]
async fn returns_vec(event: &OrderConfirmed) -> Vec<OrderConfirmedIntegrationEvent> {
    vec![OrderConfirmedIntegrationEvent { order_id: event.order_id }]
}

#[handles]
fn returns_result_event(event: &OrderConfirmed) -> Result<OrderConfirmedIntegrationEvent, LedgerClosed> {
    Ok(OrderConfirmedIntegrationEvent { order_id: event.order_id })
}

#[handles]
async fn returns_result_option(
    _event: &OrderConfirmed,
) -> std::result::Result<Option<OrderConfirmedIntegrationEvent>, LedgerClosed> {
    Ok(None)
}

#[handles]
fn returns_result_vec(
    _event: &OrderConfirmed,
) -> Result<std::vec::Vec<OrderConfirmedIntegrationEvent>, std::io::Error> {
    Ok(Vec::new())
}

fn main() {
    let handlers: Vec<_> = tidings::registry().handlers_of::<OrderConfirmed>().collect();
    assert_eq!(handlers.len(), 9);
    let translations = handlers.iter().filter(|h| h.produces().is_some()).count();
    assert_eq!(translations, 6);
}
