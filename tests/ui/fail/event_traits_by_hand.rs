use tidings::prelude::*;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderPlaced {
    pub order_id: u64,
}

// The event traits are the macros' to implement: by hand, the event would be neither
// registered nor checked.
impl Event for OrderPlaced {
    const NAME: &'static str = "OrderPlaced";
    const KIND: EventKind = EventKind::Domain;
}

impl DomainEvent for OrderPlaced {}

fn main() {}
