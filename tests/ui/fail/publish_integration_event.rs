use tidings::prelude::*;

#[integration_event(name = "catalog.product-updated")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductUpdatedIntegrationEvent {
    pub product_id: String,
}

async fn put_product_on_sale(events: &DomainEvents) -> Result<(), tidings::Error> {
    events
        .publish(ProductUpdatedIntegrationEvent { product_id: "p-1".into() })
        .await?;
    Ok(())
}

fn main() {
    let _ = put_product_on_sale;
}
