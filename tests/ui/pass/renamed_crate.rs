//! `crate = ".."` on each macro: the code they emit reaches the runtime by that path, for a
//! program that renames the `tidings` dependency.

extern crate tidings as renamed;

use renamed::prelude::*;

#[domain_event(crate = "renamed")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderPlaced {
    pub order_id: u64,
}

#[integration_event(crate = "::renamed", from = OrderPlaced, key = order_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderPlacedIntegrationEvent {
    pub order_id: u64,
}

mod billing {
    use renamed::prelude::*;

    use super::{OrderPlaced, OrderPlacedIntegrationEvent};

    #[handles(crate = "crate::renamed")]
    fn publish_order_placed(event: &OrderPlaced) -> OrderPlacedIntegrationEvent {
        OrderPlacedIntegrationEvent { order_id: event.order_id }
    }

    #[handles(crate = "::renamed")]
    async fn bill_order(_event: &OrderPlacedIntegrationEvent, _meta: &EventMeta) {}
}

fn main() {
    let registry = renamed::registry();
    let handlers: Vec<_> = registry.handlers().iter().map(|h| h.name()).collect();
    assert!(handlers.contains(&"publish_order_placed"), "{handlers:?}");
    assert!(handlers.contains(&"bill_order"), "{handlers:?}");
    assert!(registry.integration_event::<OrderPlacedIntegrationEvent>().is_some());
    assert_eq!(<OrderPlaced as Event>::NAME, "OrderPlaced");
}
