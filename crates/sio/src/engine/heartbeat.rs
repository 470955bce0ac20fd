//! The server's side of Engine.IO heartbeats, as plain state: a ping every
//! `pingInterval` (the first one `pingInterval` after the session opens,
//! the next one `pingInterval` after the pong), the session closed when a
//! pong does not come within `pingTimeout`, and the connect deadline of
//! the layer above. One deadline at a time, so a session needs one timer.

use std::time::Duration;

use tokio::time::Instant;

use super::CloseReason;

#[derive(Debug)]
pub(crate) struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    /// When the next ping is due, or when the pong is overdue.
    next: Instant,
    /// When the ping waiting for its pong was sent.
    pinged_at: Option<Instant>,
    /// When the layer above must be ready, until it is.
    ready_by: Option<Instant>,
}

/// What a deadline asks of the session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Send a ping.
    Ping,
    /// Nothing yet.
    Wait,
}

impl Heartbeat {
    /// A session's heartbeat from now, with the engine's settings.
    pub(crate) fn start(config: &super::Config) -> Self {
        Heartbeat::new(
            Instant::now(),
            config.ping_interval,
            config.ping_timeout,
            config.connect_timeout,
        )
    }

    pub(crate) fn new(
        now: Instant,
        interval: Duration,
        timeout: Duration,
        connect: Option<Duration>,
    ) -> Self {
        Heartbeat {
            interval,
            timeout,
            next: now + interval,
            pinged_at: None,
            ready_by: connect.map(|c| now + c),
        }
    }

    /// When [`Heartbeat::tick`] should next run.
    pub(crate) fn deadline(&self) -> Instant {
        match self.ready_by {
            Some(by) => by.min(self.next),
            None => self.next,
        }
    }

    /// A pong arrived at `now`.
    pub(crate) fn pong(&mut self, now: Instant) {
        if self.pinged_at.take().is_some() {
            self.next = now + self.interval;
        }
    }

    /// Runs at [`Heartbeat::deadline`]. `pong` is when the last pong came
    /// if the transport records it elsewhere (long-polling), `ready`
    /// whether the layer above is.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        pong: Option<Instant>,
        ready: bool,
    ) -> Result<Beat, CloseReason> {
        if ready {
            self.ready_by = None;
        } else if self.ready_by.is_some_and(|by| now >= by) {
            return Err(CloseReason::ConnectTimeout);
        }
        if let (Some(pinged), Some(pong)) = (self.pinged_at, pong) {
            if pong >= pinged {
                self.pong(pong);
            }
        }
        if now < self.next {
            return Ok(Beat::Wait);
        }
        if self.pinged_at.is_some() {
            return Err(CloseReason::PingTimeout);
        }
        // Counted from when the ping was due, not from when the timer
        // fired: a late wake-up must not stretch the client's deadline.
        let due = self.next;
        self.pinged_at = Some(due);
        self.next = due + self.timeout;
        Ok(Beat::Ping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn beat(connect: Option<Duration>) -> (Heartbeat, Instant) {
        let now = Instant::now();
        (Heartbeat::new(now, 300 * MS, 200 * MS, connect), now)
    }

    #[test]
    fn the_first_ping_comes_after_the_interval_not_at_once() {
        let (mut hb, t0) = beat(None);
        assert_eq!(hb.deadline(), t0 + 300 * MS);
        assert_eq!(hb.tick(t0 + 299 * MS, None, true), Ok(Beat::Wait));
        assert_eq!(hb.tick(t0 + 300 * MS, None, true), Ok(Beat::Ping));
        assert_eq!(hb.deadline(), t0 + 500 * MS);
    }

    #[test]
    fn no_pong_within_the_timeout_closes() {
        let (mut hb, t0) = beat(None);
        hb.tick(t0 + 300 * MS, None, true).unwrap();
        assert_eq!(hb.tick(t0 + 499 * MS, None, true), Ok(Beat::Wait));
        assert_eq!(
            hb.tick(t0 + 500 * MS, None, true),
            Err(CloseReason::PingTimeout)
        );
    }

    #[test]
    fn the_next_ping_is_an_interval_after_the_pong() {
        let (mut hb, t0) = beat(None);
        hb.tick(t0 + 300 * MS, None, true).unwrap();
        hb.pong(t0 + 350 * MS);
        assert_eq!(hb.deadline(), t0 + 650 * MS);
        assert_eq!(hb.tick(t0 + 650 * MS, None, true), Ok(Beat::Ping));
    }

    #[test]
    fn a_pong_recorded_elsewhere_counts_only_if_after_the_ping() {
        let (mut hb, t0) = beat(None);
        hb.tick(t0 + 300 * MS, None, true).unwrap();
        assert_eq!(
            hb.tick(t0 + 500 * MS, Some(t0 + 100 * MS), true),
            Err(CloseReason::PingTimeout)
        );
        let (mut hb, t0) = beat(None);
        hb.tick(t0 + 300 * MS, None, true).unwrap();
        assert_eq!(
            hb.tick(t0 + 500 * MS, Some(t0 + 320 * MS), true),
            Ok(Beat::Wait)
        );
        assert_eq!(hb.deadline(), t0 + 620 * MS);
    }

    #[test]
    fn not_ready_by_the_connect_deadline_closes() {
        let (mut hb, t0) = beat(Some(1000 * MS));
        let mut now;
        loop {
            now = hb.deadline();
            match hb.tick(now, Some(now), false) {
                Ok(_) => continue,
                Err(e) => {
                    assert_eq!(e, CloseReason::ConnectTimeout);
                    break;
                }
            }
        }
        assert_eq!(now, t0 + 1000 * MS);
    }

    #[test]
    fn ready_clears_the_connect_deadline() {
        let (mut hb, t0) = beat(Some(100 * MS));
        assert_eq!(hb.deadline(), t0 + 100 * MS);
        assert_eq!(hb.tick(t0 + 100 * MS, None, true), Ok(Beat::Wait));
        assert_eq!(hb.deadline(), t0 + 300 * MS);
    }
}
