use tidings::prelude::*;

#[handles]
fn project_product(_event: &String) {}

fn main() {}
