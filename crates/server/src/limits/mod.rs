//! Per-user and per-address limits: message rate, read receipts, group
//! changes, connections per user, login attempts and registrations. Rates
//! are token buckets (`governor`), kept in memory on this node; the
//! configurable ones can be switched off with 0 (the read receipt rate is
//! fixed). Failed logins are counted in [`login`]. Every refusal is logged
//! at info with its kind and key (user id or address).

pub mod login;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::chat::ChatError;
use crate::config::Config;
use crate::store::UserId;

/// Read receipts (`read`) one user may send at once, over all sockets.
pub const READ_BURST: u32 = 50;
/// Read receipts per second one user may sustain: each costs a few
/// database queries, so one user cannot take the pool from everyone.
pub const READS_PER_SECOND: u32 = 10;

/// How often idle buckets are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A keyed token bucket, or no limit.
struct Bucket<K: Hash + Eq + Clone + std::fmt::Display> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    /// What is limited, for the log: `message`, `read`, …
    kind: &'static str,
    describe: String,
}

impl<K: Hash + Eq + Clone + std::fmt::Display> Bucket<K> {
    fn new(kind: &'static str, quota: Option<Quota>, describe: String) -> Self {
        Bucket {
            limiter: quota.map(RateLimiter::keyed),
            kind,
            describe,
        }
    }

    /// Takes one token for `key`, or answers `rate_limited` with how
    /// long until one is free.
    fn take(&self, key: &K) -> Result<(), ChatError> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l.check_key(key).map_err(|until| {
                tracing::info!(kind = self.kind, key = %key, "rate limited");
                ChatError::rate_limited(
                    &self.describe,
                    until.wait_time_from(DefaultClock::default().now()),
                )
            }),
        }
    }

    fn sweep(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// The limits of one node.
pub struct Limits {
    messages: Bucket<UserId>,
    reads: Bucket<UserId>,
    group_changes: Bucket<UserId>,
    /// Failed logins (see [`login`]).
    pub login: login::LoginGuard,
    register_ip: Bucket<IpAddr>,
    max_connections: u32,
    connections: Mutex<HashMap<UserId, u32>>,
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        let burst = NonZeroU32::new(config.message_burst).unwrap_or(NonZeroU32::MIN);
        let messages = NonZeroU32::new(config.message_rate)
            .map(|rate| Quota::per_second(rate).allow_burst(burst));
        let per_minute = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        let reads = NonZeroU32::new(READS_PER_SECOND).map(|rate| {
            Quota::per_second(rate).allow_burst(NonZeroU32::new(READ_BURST).unwrap_or(rate))
        });
        Limits {
            reads: Bucket::new(
                "read",
                reads,
                format!(
                    "at most {READS_PER_SECOND} read receipts a second (bursts of {READ_BURST})"
                ),
            ),
            // Each change writes rows and tells the members' sockets;
            // without this nothing bounded how many groups one account
            // could create.
            group_changes: Bucket::new(
                "group_change",
                per_minute(config.group_changes_per_minute),
                format!(
                    "at most {} group changes a minute",
                    config.group_changes_per_minute
                ),
            ),
            messages: Bucket::new(
                "message",
                messages,
                format!(
                    "at most {} messages a second (bursts of {})",
                    config.message_rate, config.message_burst
                ),
            ),
            login: login::LoginGuard::new(config),
            register_ip: Bucket::new(
                "register",
                per_minute(config.registrations_per_ip),
                format!(
                    "at most {} registrations a minute from one address",
                    config.registrations_per_ip
                ),
            ),
            max_connections: config.max_connections_per_user,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// One message from `user`.
    pub fn message(&self, user: UserId) -> Result<(), ChatError> {
        self.messages.take(&user)
    }

    /// One read receipt from `user`.
    pub fn read(&self, user: UserId) -> Result<(), ChatError> {
        self.reads.take(&user)
    }

    /// One group change (create, add or remove a member) by `user`.
    pub fn group_change(&self, user: UserId) -> Result<(), ChatError> {
        self.group_changes.take(&user)
    }

    /// One registration from `ip`.
    pub fn register(&self, ip: IpAddr) -> Result<(), ChatError> {
        self.register_ip.take(&ip)
    }

    /// Counts a new connection of `user`, unless they hold the most
    /// allowed already. Every `Ok` is paired with one [`Limits::disconnected`].
    pub fn connect(&self, user: UserId) -> Result<(), ChatError> {
        let mut counts = self.connections.lock().unwrap();
        let n = counts.entry(user).or_insert(0);
        if *n >= self.max_connections {
            return Err(ChatError::RateLimited {
                message: format!("at most {} connections per user", self.max_connections),
                retry_after: Duration::from_secs(1),
            });
        }
        *n += 1;
        Ok(())
    }

    /// A connection counted by [`Limits::connect`] ended.
    pub fn disconnected(&self, user: UserId) {
        let mut counts = self.connections.lock().unwrap();
        if let Some(n) = counts.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&user);
            }
        }
    }

    /// Forgets buckets that are full again, so memory follows active users.
    pub fn sweep(&self) {
        self.messages.sweep();
        self.reads.sweep();
        self.group_changes.sweep();
        self.login.sweep();
        self.register_ip.sweep();
    }

    /// Sweeps every minute while the returned task runs.
    pub fn spawn_sweeper(limits: std::sync::Weak<Limits>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                match limits.upgrade() {
                    Some(l) => l.sweep(),
                    None => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let argv = std::iter::once("palaver").chain(args.iter().copied());
        <Wrapper as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .config
    }

    #[test]
    fn message_burst_then_limited_per_user() {
        let limits = Limits::new(&config(&["--message-rate", "1", "--message-burst", "3"]));
        for _ in 0..3 {
            limits.message(1).unwrap();
        }
        let e = limits.message(1).unwrap_err();
        assert!(matches!(e, ChatError::RateLimited { .. }), "{e:?}");
        assert!(e.to_string().contains("retry in"), "{e}");
        // Another user has their own bucket.
        limits.message(2).unwrap();
    }

    #[test]
    fn zero_switches_the_message_limit_off() {
        let limits = Limits::new(&config(&["--message-rate", "0", "--message-burst", "1"]));
        for _ in 0..10_000 {
            limits.message(1).unwrap();
        }
    }

    #[test]
    fn connections_are_counted_and_released() {
        let limits = Limits::new(&config(&["--max-connections-per-user", "2"]));
        limits.connect(7).unwrap();
        limits.connect(7).unwrap();
        assert!(limits.connect(7).is_err());
        limits.connect(8).unwrap();
        limits.disconnected(7);
        limits.connect(7).unwrap();
    }

    #[test]
    fn closing_one_of_two_connections_keeps_the_other_counted() {
        let limits = Limits::new(&config(&["--max-connections-per-user", "2"]));
        limits.connect(7).unwrap();
        limits.connect(7).unwrap();
        limits.disconnected(7);
        limits.connect(7).unwrap();
        assert!(limits.connect(7).is_err(), "two are held again");
        // Disconnecting a user with none held changes nothing.
        limits.disconnected(9);
        limits.connect(9).unwrap();
    }

    #[test]
    fn sweeping_forgets_buckets_that_are_full_again() {
        let limits = Limits::new(&config(&["--message-rate", "1000", "--message-burst", "1"]));
        for user in 0..50 {
            limits.message(user).unwrap();
        }
        let held = || limits.messages.limiter.as_ref().unwrap().len();
        assert_eq!(held(), 50);
        std::thread::sleep(Duration::from_millis(20));
        limits.sweep();
        assert_eq!(held(), 0, "refilled buckets are dropped");
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let limits = Limits::new(&config(&["--registrations-per-ip", "2"]));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        limits.register(a).unwrap();
        limits.register(a).unwrap();
        assert!(limits.register(a).is_err(), "third from a");
        limits.register(b).unwrap();
        let off = Limits::new(&config(&["--registrations-per-ip", "0"]));
        assert!((0..100).all(|_| off.register(a).is_ok()));
    }
}
