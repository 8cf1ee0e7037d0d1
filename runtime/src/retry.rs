//! How failed deliveries and publications are retried.

use std::time::Duration;

/// Exponential backoff with full jitter, up to a number of attempts.
///
/// Attempt `n` (from 1) that fails waits a random time in `[0, min(max_delay, initial_delay ×
/// 2^(n-1))]` before the next; after `max_attempts` runs, a handler's delivery goes to the dead
/// letters. The relay retries publication with the same delays and never gives up: an
/// integration event leaves the outbox only on the broker's acknowledgement.
///
/// ```
/// use std::time::Duration;
/// use tidings::RetryPolicy;
///
/// let policy = RetryPolicy::default().max_attempts(3).initial_delay(Duration::from_millis(10));
/// assert!(policy.delay(1) <= Duration::from_millis(10));
/// assert!(policy.delay(3) <= Duration::from_millis(40));
/// assert!(policy.gives_up_after(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, from 100 ms, at most 30 s apart.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// How many times a handler runs before its delivery is dead-lettered (at least 1).
    pub fn max_attempts(self, max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..self
        }
    }

    /// The ceiling of the first delay.
    pub fn initial_delay(self, initial_delay: Duration) -> Self {
        RetryPolicy {
            initial_delay,
            ..self
        }
    }

    /// The ceiling of every delay.
    pub fn max_delay(self, max_delay: Duration) -> Self {
        RetryPolicy { max_delay, ..self }
    }

    /// Whether a delivery whose attempt `attempt` failed goes to the dead letters.
    pub fn gives_up_after(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// The wait after failed attempt `attempt` (from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let ceiling = self
            .initial_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}
