#[tidings::schema]
fn address() {}

fn main() {}
