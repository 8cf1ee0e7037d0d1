//! A second bounded context in its own crate: the registry of a program that links this crate
//! must hold its events, contracts and handlers.

use tidings::prelude::*;

/// An invoice was issued for an order.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InvoiceIssued {
    /// The invoice.
    pub invoice_id: String,
    /// The amount, in cents.
    pub amount_cents: i64,
}

/// The public contract of billing: an invoice exists.
#[integration_event(name = "billing.invoice-issued", version = 3, from = InvoiceIssued, key = invoice_id)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InvoiceIssuedIntegrationEvent {
    /// The invoice.
    pub invoice_id: String,
}

impl From<&InvoiceIssued> for InvoiceIssuedIntegrationEvent {
    fn from(event: &InvoiceIssued) -> Self {
        InvoiceIssuedIntegrationEvent {
            invoice_id: event.invoice_id.clone(),
        }
    }
}

mod handlers {
    use super::InvoiceIssued;
    use tidings::prelude::*;

    /// Lives in a private module: it must be collected all the same.
    #[handles]
    fn archive_invoice(event: &InvoiceIssued, meta: &EventMeta) {
        let _ = (event, meta);
    }
}
