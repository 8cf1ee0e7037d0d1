//! [`Waiting`]: what a store keeps waiting, by handler and by contract, as
//! [`Store::waiting`](super::Store::waiting) tells it.

use std::fmt;

use chrono::{DateTime, Utc};

/// How much waiting work is in each state. A store that cannot tell the states apart counts
/// everything as [`untold`](Self::untold).
///
/// ```
/// use tidings::store::WaitCounts;
///
/// let counts = WaitCounts { due: 2, scheduled: 1, ..WaitCounts::default() };
/// assert_eq!(counts.total(), 3);
/// assert_eq!(counts.to_string(), "2 due now, 1 scheduled for later");
/// assert!(WaitCounts::default().is_empty());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct WaitCounts {
    /// Due now and not claimed: a process that runs it takes it, once the handler's earlier
    /// deliveries (or the key's earlier rows) are done.
    pub due: usize,
    /// Not due yet: scheduled for later, such as a retry waiting out its back-off.
    pub scheduled: usize,
    /// Claimed: a process holds it, running or publishing it (or did, until its claim
    /// expires).
    pub claimed: usize,
    /// Counted by a store that does not tell which of the states above it is in.
    pub untold: usize,
}

impl WaitCounts {
    /// Everything counted, whatever its state.
    pub fn total(&self) -> usize {
        self.due + self.scheduled + self.claimed + self.untold
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

impl fmt::Display for WaitCounts {
    /// The states with something in them, such as `2 due now, 1 claimed`; `nothing` for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.due, "due now"),
            (self.scheduled, "scheduled for later"),
            (self.claimed, "claimed"),
            (self.untold, "in a state the store does not tell"),
        ];
        let mut first = true;
        for (count, state) in parts {
            if count > 0 {
                if !first {
                    f.write_str(", ")?;
                }
                write!(f, "{count} {state}")?;
                first = false;
            }
        }
        if first {
            f.write_str("nothing")?;
        }
        Ok(())
    }
}

/// The deliveries of one handler waiting in a store.
///
/// ```
/// use tidings::store::{HandlerWaiting, WaitCounts};
///
/// let mail = HandlerWaiting {
///     handler: Some("billing::send_invoice".into()),
///     counts: WaitCounts { due: 1, ..WaitCounts::default() },
///     oldest: None,
/// };
/// assert_eq!(mail.counts.total(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HandlerWaiting {
    /// The handler's route name; `None` for the deliveries of a store that counts them without
    /// telling whose they are.
    pub handler: Option<String>,
    /// How many, in each state.
    pub counts: WaitCounts,
    /// When the oldest of them was published; `None` from a store that does not tell.
    pub oldest: Option<DateTime<Utc>>,
}

/// The integration rows of one contract waiting in a store's outbox.
///
/// ```
/// use tidings::store::{ContractWaiting, WaitCounts};
///
/// let rows = ContractWaiting {
///     contract: Some("sales.order-confirmed".into()),
///     counts: WaitCounts { scheduled: 2, ..WaitCounts::default() },
///     oldest: None,
/// };
/// assert_eq!(rows.counts.to_string(), "2 scheduled for later");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ContractWaiting {
    /// The contract's name; `None` for the rows of a store that counts them without telling
    /// which contract they are of.
    pub contract: Option<String>,
    /// How many, in each state.
    pub counts: WaitCounts,
    /// When the oldest of them was published; `None` from a store that does not tell.
    pub oldest: Option<DateTime<Utc>>,
}

/// What a store keeps waiting: its deliveries by handler and its integration rows by contract,
/// each sorted by name, with no empty entry. Completed and dead-lettered deliveries and
/// published rows are not waiting.
///
/// [`Store::waiting`](super::Store::waiting) gives it; a store that only counts (the trait's
/// default) gives [`Waiting::from_totals`].
///
/// ```
/// use tidings::store::Waiting;
///
/// let waiting = Waiting::from_totals(3, 1);
/// assert_eq!(waiting.totals(), (3, 1));
/// assert_eq!(waiting.deliveries[0].handler, None);
/// assert!(Waiting::default().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Waiting {
    /// The deliveries, by handler.
    pub deliveries: Vec<HandlerWaiting>,
    /// The integration rows, by contract.
    pub rows: Vec<ContractWaiting>,
}

impl Waiting {
    /// What a store that only counts can tell: `deliveries` and `rows` in all, of no known
    /// handler or contract and in no known state.
    pub fn from_totals(deliveries: usize, rows: usize) -> Self {
        let untold = |n: usize| WaitCounts {
            untold: n,
            ..WaitCounts::default()
        };
        Waiting {
            deliveries: (deliveries > 0)
                .then(|| HandlerWaiting {
                    handler: None,
                    counts: untold(deliveries),
                    oldest: None,
                })
                .into_iter()
                .collect(),
            rows: (rows > 0)
                .then(|| ContractWaiting {
                    contract: None,
                    counts: untold(rows),
                    oldest: None,
                })
                .into_iter()
                .collect(),
        }
    }

    /// How many deliveries and integration rows wait in all, as
    /// [`count_pending`](super::Store::count_pending) counts them.
    pub fn totals(&self) -> (usize, usize) {
        let deliveries = self.deliveries.iter().map(|d| d.counts.total()).sum();
        let rows = self.rows.iter().map(|r| r.counts.total()).sum();
        (deliveries, rows)
    }

    /// When the oldest waiting delivery and the oldest waiting integration row were published,
    /// as far as the store tells: how far behind the dispatcher and the relay are.
    ///
    /// ```
    /// use tidings::store::Waiting;
    ///
    /// assert_eq!(Waiting::default().oldest(), (None, None));
    /// ```
    pub fn oldest(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let deliveries = self.deliveries.iter().filter_map(|d| d.oldest).min();
        let rows = self.rows.iter().filter_map(|r| r.oldest).min();
        (deliveries, rows)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.totals() == (0, 0)
    }

    /// The deliveries of `handler` (none counted if it has none).
    ///
    /// ```
    /// use tidings::store::Waiting;
    ///
    /// assert!(Waiting::default().deliveries_of("billing::send_invoice").is_empty());
    /// ```
    pub fn deliveries_of(&self, handler: &str) -> WaitCounts {
        self.deliveries
            .iter()
            .find(|d| d.handler.as_deref() == Some(handler))
            .map(|d| d.counts)
            .unwrap_or_default()
    }

    /// The integration rows of `contract` (none counted if it has none).
    ///
    /// ```
    /// use tidings::store::Waiting;
    ///
    /// assert!(Waiting::default().rows_of("sales.order-confirmed").is_empty());
    /// ```
    pub fn rows_of(&self, contract: &str) -> WaitCounts {
        self.rows
            .iter()
            .find(|r| r.contract.as_deref() == Some(contract))
            .map(|r| r.counts)
            .unwrap_or_default()
    }
}
