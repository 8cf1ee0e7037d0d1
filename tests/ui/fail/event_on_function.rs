use tidings::prelude::*;

#[domain_event]
pub fn product_put_on_sale() {}

fn main() {}
