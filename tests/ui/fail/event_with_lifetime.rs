use tidings::prelude::*;

#[integration_event]
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProductUpdatedIntegrationEvent<'a> {
    pub product_id: &'a str,
}

fn main() {}
