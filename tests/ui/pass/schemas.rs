//! Every event's JSON Schema comes from its type, with serde's attributes; a type of the
//! program's own inside an event is marked `#[tidings::schema]`.
use tidings::prelude::*;

#[tidings::schema]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub street_line: String,
    #[serde(default)]
    pub city: Option<String>,
}

#[tidings::schema]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
}

/// A type that derives the schema itself, with schemars 1, is left as it is.
#[tidings::schema]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Parcel {
    pub grams: u32,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind")]
pub enum OrderEvent {
    Shipped { to: Address, parcels: Page<Parcel> },
    Cancelled {
        #[serde(skip)]
        reason: NoSchema,
    },
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NoSchema;

#[integration_event(name = "sales.order-shipped", from = OrderEvent, key = order_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderShippedIntegrationEvent {
    pub order_id: u64,
    #[schemars(with = "String")]
    pub placed_at: chrono_like::Stamp,
    pub to: Address,
}

mod chrono_like {
    /// A type of "another crate", serialized as a string, with no schema.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct Stamp(pub String);
}

#[handles]
fn ship(event: &OrderEvent) -> Option<OrderShippedIntegrationEvent> {
    match event {
        OrderEvent::Shipped { to, .. } => Some(OrderShippedIntegrationEvent {
            order_id: 1,
            placed_at: chrono_like::Stamp("now".into()),
            to: to.clone(),
        }),
        OrderEvent::Cancelled { .. } => None,
    }
}

fn main() {
    let registry = tidings::registry();
    let event = registry.domain_event::<OrderEvent>().unwrap().schema();
    assert_eq!(event["oneOf"][0]["properties"]["kind"]["const"], "Shipped");
    let contract = registry
        .integration_event::<OrderShippedIntegrationEvent>()
        .unwrap()
        .schema();
    assert_eq!(contract["properties"]["placed_at"]["type"], "string");
    let address = &contract["definitions"]["Address"];
    assert_eq!(address["required"], serde_json::json!(["streetLine"]));
}
