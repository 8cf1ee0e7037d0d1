use tidings::prelude::*;

// The enum's own name states the fact, so it is the name the rules look at.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ProductUpdated {
    Price { cents: i64 },
    Stock { units: u32 },
}

fn main() {}
