//! The writer's one retry policy: a transaction that hits a deadlock, a
//! serialization failure or another node's writer winning a seq race
//! ([`StoreError::Retryable`]) is tried again after a growing wait, at
//! most [`MAX_ATTEMPTS`] times in all. Message batches and group changes
//! both count their attempts with a [`Retry`].

use std::time::Duration;

use crate::store::StoreError;

/// Attempts at a transaction that keeps failing with a retryable error.
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// The attempts at one transaction: after each, [`Retry::after`] says
/// whether to try again and how long to wait first.
pub(super) struct Retry {
    what: &'static str,
    failed: u32,
}

impl Retry {
    pub(super) fn new(what: &'static str) -> Self {
        Retry { what, failed: 0 }
    }

    /// After an attempt: the wait before the next one (10, 20, 40, 80 ms)
    /// if it failed retryably and fewer than [`MAX_ATTEMPTS`] have been
    /// made, else `None` (the outcome stands).
    pub(super) fn after<T>(&mut self, outcome: &Result<T, StoreError>) -> Option<Duration> {
        let Err(StoreError::Retryable(e)) = outcome else {
            return None;
        };
        self.failed += 1;
        if self.failed >= MAX_ATTEMPTS {
            return None;
        }
        tracing::debug!(error = %e, attempt = self.failed, "retrying {}", self.what);
        Some(Duration::from_millis(5 << self.failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retryable() -> Result<(), StoreError> {
        Err(StoreError::Retryable(sqlx::Error::PoolTimedOut))
    }

    #[test]
    fn a_retryable_failure_is_tried_again_after_a_growing_wait() {
        let mut retry = Retry::new("test");
        let waits: Vec<Option<Duration>> = (0..4).map(|_| retry.after(&retryable())).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(waits, [ms(10), ms(20), ms(40), ms(80)]);
    }

    #[test]
    fn the_fifth_retryable_failure_is_the_last() {
        let mut retry = Retry::new("test");
        for attempt in 1..MAX_ATTEMPTS {
            assert!(retry.after(&retryable()).is_some(), "attempt {attempt}");
        }
        assert_eq!(retry.after(&retryable()), None);
        assert_eq!(MAX_ATTEMPTS, 5);
    }

    #[test]
    fn other_failures_and_successes_are_not_retried() {
        let mut retry = Retry::new("test");
        assert_eq!(retry.after(&Err::<(), _>(StoreError::NotFound)), None);
        assert_eq!(retry.after(&Ok(())), None);
        // Neither counted as a failed attempt.
        assert_eq!(retry.after(&retryable()), Some(Duration::from_millis(10)));
    }
}
