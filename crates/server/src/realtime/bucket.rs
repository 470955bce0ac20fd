//! Per-socket token buckets (messages and read receipts are limited per
//! user, in [`crate::limits`]): each socket may send a burst of `BURST`
//! events of a kind and then `PER_SECOND` a second; beyond that the event
//! is answered `rate_limited`. A socket's bucket is made at its first such
//! event, so idle connections hold none.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::chat::ChatError;

/// One socket's bucket for one kind of event, kept in the socket's
/// extensions (each pair of constants is a type of its own there).
#[derive(Clone)]
pub struct Bucket<const BURST: u32, const PER_SECOND: u32>(Arc<Mutex<(f64, Instant)>>);

/// `typing`: a stuck client cannot flood a group.
pub type TypingBucket = Bucket<10, 5>;

impl<const BURST: u32, const PER_SECOND: u32> Default for Bucket<BURST, PER_SECOND> {
    fn default() -> Self {
        Bucket(Arc::new(Mutex::new((f64::from(BURST), Instant::now()))))
    }
}

impl<const BURST: u32, const PER_SECOND: u32> Bucket<BURST, PER_SECOND> {
    /// Takes one token from `socket`'s bucket of this kind, or answers why
    /// not (`event` names the kind).
    pub fn take<A: Adapter>(socket: &SocketRef<A>, event: &str) -> Result<(), ChatError> {
        let bucket = socket.extensions.get::<Self>().unwrap_or_else(|| {
            let fresh = Self::default();
            socket.extensions.insert(fresh.clone());
            fresh
        });
        if bucket.take_one(Instant::now()) {
            Ok(())
        } else {
            Err(ChatError::RateLimited(format!(
                "at most {PER_SECOND} {event} events a second (bursts of {BURST})"
            )))
        }
    }

    fn take_one(&self, now: Instant) -> bool {
        let mut b = self.0.lock().unwrap();
        let refill = now.saturating_duration_since(b.1).as_secs_f64() * f64::from(PER_SECOND);
        b.0 = (b.0 + refill).min(f64::from(BURST));
        b.1 = now;
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let bucket = Bucket::<3, 2>::default();
        let t = Instant::now();
        assert!((0..3).all(|_| bucket.take_one(t)));
        assert!(!bucket.take_one(t));
        // Half a second refills one token at 2 a second.
        assert!(bucket.take_one(t + Duration::from_millis(500)));
        assert!(!bucket.take_one(t + Duration::from_millis(500)));
    }
}
