use tidings::prelude::*;

#[integration_event]
pub trait ProductUpdatedIntegrationEvent {}

fn main() {}
