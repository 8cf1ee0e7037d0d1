use tidings::prelude::*;

/// A type of the program's own, with no JSON Schema.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Address {
    pub city: String,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderShipped {
    pub order_id: u64,
    pub to: Address,
}

fn main() {}
