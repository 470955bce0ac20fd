//! The per-socket typing limit: each socket may send a burst of [`BURST`]
//! typing events and then [`PER_SECOND`] a second, so a stuck client
//! cannot flood a group. The bucket lives in the socket's extensions and
//! is made at the socket's first typing event, so idle connections hold
//! none.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Limited;
use crate::ids::UserId;

/// Typing events a socket may send at once.
pub const BURST: f64 = 10.0;
/// Typing events per second a socket may sustain.
pub const PER_SECOND: f64 = 5.0;

/// A token bucket, one per socket (kept in the socket's extensions).
#[derive(Clone)]
pub struct TypingBucket(Arc<Mutex<(f64, Instant)>>);

impl Default for TypingBucket {
    fn default() -> Self {
        TypingBucket(Arc::new(Mutex::new((BURST, Instant::now()))))
    }
}

impl TypingBucket {
    /// One typing event from this socket (of `user`'s, for the log).
    pub fn take(&self, user: UserId) -> Result<(), Limited> {
        if self.take_at(Instant::now()) {
            return Ok(());
        }
        tracing::info!(kind = "typing", key = user.get(), "rate limited");
        Err(Limited::new(
            format_args!("at most {PER_SECOND} typing events a second"),
            Duration::from_secs_f64(1.0 / PER_SECOND),
        ))
    }

    fn take_at(&self, now: Instant) -> bool {
        let mut b = self.0.lock().unwrap();
        let since = now.saturating_duration_since(b.1);
        b.0 = (b.0 + since.as_secs_f64() * PER_SECOND).min(BURST);
        b.1 = b.1.max(now);
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: i64) -> UserId {
        UserId::parse(n).unwrap()
    }

    #[test]
    fn typing_allows_a_burst_of_ten_then_five_a_second() {
        let bucket = TypingBucket::default();
        let t0 = Instant::now();
        assert!((0..10).all(|_| bucket.take_at(t0)), "the burst passes");
        assert!(!bucket.take_at(t0), "the eleventh at once is refused");
        let t1 = t0 + Duration::from_millis(200);
        assert!(bucket.take_at(t1), "one more after a fifth of a second");
        assert!(!bucket.take_at(t1));
        let t2 = t1 + Duration::from_secs(1);
        assert!((0..5).all(|_| bucket.take_at(t2)), "five a second later");
        assert!(!bucket.take_at(t2), "and no sixth");
    }

    #[test]
    fn a_refused_typing_event_says_when_to_retry() {
        let bucket = TypingBucket::default();
        for _ in 0..10 {
            bucket.take(user(1)).unwrap();
        }
        let e = bucket.take(user(1)).unwrap_err();
        assert_eq!(e.retry_after, Duration::from_millis(200));
        assert!(e.to_string().contains("retry in 200 ms"), "{e}");
    }
}
