use tidings::prelude::*;

#[handles]
fn project_product() {}

fn main() {}
