//! Per-user and per-address limits: message rate, read receipts, group
//! changes, connections per user, login attempts and registrations. Rates
//! are token buckets (`governor`), kept in memory on this node; the
//! configurable ones can be switched off with 0 (the read receipt rate is
//! fixed).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::chat::ChatError;
use crate::cluster::Cluster;
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
struct Bucket<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    quota: Option<Quota>,
    describe: String,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(quota: Option<Quota>, describe: String) -> Self {
        Bucket {
            limiter: quota.map(RateLimiter::keyed),
            quota,
            describe,
        }
    }

    /// The same quota as (tokens per second, burst), for cluster buckets.
    fn rate(&self) -> Option<(f64, u32)> {
        self.quota.map(|q| {
            (
                1.0 / q.replenish_interval().as_secs_f64(),
                q.burst_size().get(),
            )
        })
    }

    /// Takes one token for `key`, or says how long until one is free.
    fn take(&self, key: &K) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l
                .check_key(key)
                .map_err(|until| until.wait_time_from(DefaultClock::default().now())),
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
    login_user: Bucket<String>,
    login_ip: Bucket<IpAddr>,
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
                reads,
                format!(
                    "at most {READS_PER_SECOND} read receipts a second (bursts of {READ_BURST})"
                ),
            ),
            // Each change writes rows and tells the members' sockets;
            // without this nothing bounded how many groups one account
            // could create.
            group_changes: Bucket::new(
                per_minute(config.group_changes_per_minute),
                format!(
                    "at most {} group changes a minute",
                    config.group_changes_per_minute
                ),
            ),
            messages: Bucket::new(
                messages,
                format!(
                    "at most {} messages a second (bursts of {})",
                    config.message_rate, config.message_burst
                ),
            ),
            login_user: Bucket::new(
                per_minute(config.login_attempts_per_user),
                format!(
                    "at most {} login attempts a minute for one username",
                    config.login_attempts_per_user
                ),
            ),
            login_ip: Bucket::new(
                per_minute(config.login_attempts_per_ip),
                format!(
                    "at most {} login attempts a minute from one address",
                    config.login_attempts_per_ip
                ),
            ),
            register_ip: Bucket::new(
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
        self.messages
            .take(&user)
            .map_err(|wait| limited(&self.messages.describe, wait))
    }

    /// One read receipt from `user`.
    pub fn read(&self, user: UserId) -> Result<(), ChatError> {
        self.reads
            .take(&user)
            .map_err(|wait| limited(&self.reads.describe, wait))
    }

    /// One group change (create, add or remove a member) by `user`.
    pub fn group_change(&self, user: UserId) -> Result<(), ChatError> {
        self.group_changes
            .take(&user)
            .map_err(|wait| limited(&self.group_changes.describe, wait))
    }

    /// One login attempt for `username` (any case) from `ip`.
    pub fn login(&self, username: &str, ip: IpAddr) -> Result<(), ChatError> {
        self.login_ip
            .take(&ip)
            .map_err(|wait| limited(&self.login_ip.describe, wait))?;
        self.login_user
            .take(&login_key(username))
            .map_err(|wait| limited(&self.login_user.describe, wait))
    }

    /// One registration from `ip`.
    pub fn register(&self, ip: IpAddr) -> Result<(), ChatError> {
        self.register_ip
            .take(&ip)
            .map_err(|wait| limited(&self.register_ip.describe, wait))
    }

    /// The same attempt counted over every node (after [`Limits::login`]
    /// passed on this one). Without Redis only the node's own count holds.
    pub async fn login_everywhere(
        &self,
        cluster: &Cluster,
        username: &str,
        ip: IpAddr,
    ) -> Result<(), ChatError> {
        let checks = [
            (
                self.login_ip.rate(),
                format!("login-ip:{ip}"),
                &self.login_ip.describe,
            ),
            (
                self.login_user.rate(),
                format!("login-user:{}", login_key(username)),
                &self.login_user.describe,
            ),
        ];
        for (rate, key, describe) in checks {
            let Some((per_second, burst)) = rate else {
                continue;
            };
            let granted = cluster.take_tokens(&[(key, 1)], per_second, burst).await;
            if granted.is_some_and(|g| g.first() == Some(&0)) {
                return Err(ChatError::RateLimited(format!(
                    "{describe} (over all nodes); retry later"
                )));
            }
        }
        Ok(())
    }

    /// Counts a new connection of `user`, unless they hold the most
    /// allowed already. Every `Ok` is paired with one [`Limits::disconnected`].
    pub fn connect(&self, user: UserId) -> Result<(), ChatError> {
        let mut counts = self.connections.lock().unwrap();
        let n = counts.entry(user).or_insert(0);
        if *n >= self.max_connections {
            return Err(ChatError::RateLimited(format!(
                "at most {} connections per user",
                self.max_connections
            )));
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
        self.login_user.sweep();
        self.login_ip.sweep();
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

/// Usernames are at most 32 characters; longer input still counts, under a
/// bounded key.
fn login_key(username: &str) -> String {
    username.chars().take(64).collect::<String>().to_lowercase()
}

fn limited(describe: &str, wait: Duration) -> ChatError {
    let ms = wait.as_millis().max(1);
    ChatError::RateLimited(format!("{describe}; retry in {ms} ms"))
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
        assert!(matches!(e, ChatError::RateLimited(_)), "{e:?}");
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

    #[test]
    fn login_limits_per_username_any_case_and_per_address() {
        let limits = Limits::new(&config(&[
            "--login-attempts-per-user",
            "2",
            "--login-attempts-per-ip",
            "3",
        ]));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        limits.login("Alice", a).unwrap();
        limits.login("alice", b).unwrap();
        assert!(limits.login("ALICE", b).is_err(), "third try for alice");
        // Address a has used one attempt of 3 (the refused one above was b's).
        limits.login("bob", a).unwrap();
        limits.login("carol", a).unwrap();
        assert!(limits.login("dave", a).is_err(), "fourth try from a");
    }
}
