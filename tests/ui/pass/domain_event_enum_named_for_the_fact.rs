//! An enum whose own name states the fact is one event with kinds: its variants need not be in
//! the past tense. An enum named for a family of events keeps the rule on each variant.

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum MembershipRenewed {
    Monthly { member_id: u64 },
    Yearly { member_id: u64 },
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum PaymentReceived {
    Card(u64),
    Cash(u64),
}

#[domain_event(allow_generic_name)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum SettingsChanged {
    Theme,
    Language,
}

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum OrderEvent {
    Placed { order_id: u64 },
    Cancelled { order_id: u64 },
}

#[handles]
fn send_receipt(_event: &PaymentReceived) {}

fn main() {
    assert_eq!(<MembershipRenewed as Event>::NAME, "MembershipRenewed");
    assert_eq!(<PaymentReceived as Event>::KIND, EventKind::Domain);
    let names: Vec<_> = tidings::registry()
        .domain_events()
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}
