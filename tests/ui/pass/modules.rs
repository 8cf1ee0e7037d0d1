//! Events, contracts and handlers spread over modules, referred to by paths.

mod events {
    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct StockRecalculated {
        pub sku: String,
    }
}

mod contracts {
    use tidings::prelude::*;

    #[integration_event(name = "inventory.modified", from = [crate::events::StockRecalculated], key = sku)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct InventoryModifiedIntegrationEvent {
        pub sku: String,
    }
}

mod translations {
    use crate::contracts::InventoryModifiedIntegrationEvent;
    use crate::events;
    use tidings::handles;

    #[handles]
    pub fn inventory_modified(event: &events::StockRecalculated) -> InventoryModifiedIntegrationEvent {
        InventoryModifiedIntegrationEvent { sku: event.sku.clone() }
    }
}

fn main() {
    let registry = tidings::registry();
    let handler = registry.handlers_of::<events::StockRecalculated>().next().unwrap();
    let path = format!("{}::translations::inventory_modified", module_path!());
    assert_eq!(handler.path(), path);
    assert_eq!(handler.event().name(), "events::StockRecalculated");
    let contract = registry
        .integration_event::<contracts::InventoryModifiedIntegrationEvent>()
        .unwrap();
    assert_eq!(contract.sources()[0].event().name(), "crate::events::StockRecalculated");
    assert!(!contract.sources()[0].has_from_impl());
}
