use tidings::prelude::*;

#[handles]
pub struct ProjectProduct;

fn main() {}
