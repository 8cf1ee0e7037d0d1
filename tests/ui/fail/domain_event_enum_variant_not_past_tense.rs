use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum OrderEvent {
    Placed { order_id: u64 },
    Cancel { order_id: u64 },
}

fn main() {}
