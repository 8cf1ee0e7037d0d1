use tidings::prelude::*;

#[domain_event]
pub union PriceChanged {
    pub cents: i64,
    pub units: u64,
}

fn main() {}
