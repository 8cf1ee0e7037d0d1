//! How long the store keeps what is done, so that every table stays bounded.

use std::time::Duration;

/// What happens to integration rows once the broker acknowledged them, and how long inbox
/// entries are kept. The app applies it in the background, in bounded batches (one transaction
/// each), every [`interval`](Self::interval).
///
/// - Published rows are deleted at once (the default), or kept in an archive table for
///   [`archive_published`](Self::archive_published) and then deleted.
/// - An inbox entry (a received message's id, per handler) is what makes a redelivered message
///   a no-op; it is kept for [`inbox`](Self::inbox), 7 days by default. Choose a window longer
///   than any redelivery the broker may make.
///
/// ```
/// use std::time::Duration;
/// use tidings::Retention;
///
/// let retention = Retention::default()
///     .archive_published(Duration::from_secs(3 * 24 * 3600))
///     .inbox(Duration::from_secs(14 * 24 * 3600))
///     .batch(500);
/// assert_eq!(retention.archive_window(), Some(Duration::from_secs(3 * 24 * 3600)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    archive: Option<Duration>,
    inbox: Duration,
    batch: usize,
    interval: Duration,
}

impl Default for Retention {
    /// Published rows deleted at once, inbox entries kept 7 days, batches of 1,000 every minute.
    fn default() -> Self {
        Retention {
            archive: None,
            inbox: Duration::from_secs(7 * 24 * 3600),
            batch: 1000,
            interval: Duration::from_secs(60),
        }
    }
}

impl Retention {
    /// Keeps published rows in the archive table for `keep`, then deletes them.
    pub fn archive_published(self, keep: Duration) -> Self {
        Retention {
            archive: Some(keep),
            ..self
        }
    }

    /// Keeps each inbox entry for `window` after its message was received.
    pub fn inbox(self, window: Duration) -> Self {
        Retention {
            inbox: window,
            ..self
        }
    }

    /// Deletes at most `batch` rows of each table per transaction (at least 1).
    pub fn batch(self, batch: usize) -> Self {
        Retention {
            batch: batch.max(1),
            ..self
        }
    }

    /// How often expired rows are deleted (at least every 10 ms).
    pub fn interval(self, interval: Duration) -> Self {
        Retention {
            interval: interval.max(Duration::from_millis(10)),
            ..self
        }
    }

    /// How long published rows stay archived, or `None` if they are deleted at once.
    pub fn archive_window(&self) -> Option<Duration> {
        self.archive
    }

    /// How long inbox entries are kept.
    pub fn inbox_window(&self) -> Duration {
        self.inbox
    }

    /// The most rows of each table deleted per transaction.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// How often expired rows are deleted.
    pub fn sweep_interval(&self) -> Duration {
        self.interval
    }
}
