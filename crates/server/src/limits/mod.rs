//! Every rate limit, in one vocabulary. A limit is asked here, and this
//! module alone decides whether the cluster is consulted:
//!
//! - **per node**: a token bucket (`governor`) in this process's memory;
//! - **cluster-wide**: counted in Redis (the Lua scripts in `cluster.rs`,
//!   called only from here) so every node sees the same; when Redis cannot
//!   answer, the per-node limit still applies;
//! - **per socket**: a bucket the socket holds in its extensions, made at
//!   its first use so idle connections hold none.
//!
//! | limit | scope | asked in |
//! |---|---|---|
//! | messages per user (`--message-rate`, `--message-burst`) | per node on arrival ([`Limits::message_here`]); cluster-wide per batch ([`Limits::messages_everywhere`]) | `realtime/message.rs`; `chat/writer.rs` |
//! | read receipts per user ([`READS_PER_SECOND`], [`READ_BURST`]) | per node ([`Limits::read`]) | `realtime/read.rs` |
//! | group changes per user (`--group-changes-per-minute`) | per node ([`Limits::group_change`]) | `http/groups.rs` |
//! | registrations per address (`--registrations-per-ip`) | per node ([`Limits::register`]) | `http/auth.rs` |
//! | failed logins per address, username and pair ([`login`]) | cluster-wide, per node while Redis is away ([`Limits::login`]) | `http/auth.rs` |
//! | connections per user (`--max-connections-per-user`) | per node, then cluster-wide ([`Limits::connect`]) | `realtime/mod.rs` (handshake) |
//! | typing events per socket ([`typing::BURST`], [`typing::PER_SECOND`]) | per socket ([`TypingBucket`]) | `realtime/typing.rs` |
//!
//! The configurable limits are switched off with 0 (the read receipt and
//! typing rates are fixed). Every refusal is a [`Limited`] (`rate_limited`
//! on the wire, with when to retry) and is logged at info with its kind
//! and key (user id or address). This module imports nothing from `chat`:
//! the writer calls it, and `chat` turns a [`Limited`] into a `ChatError`.

pub mod login;
mod typing;

pub use typing::TypingBucket;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::ids::UserId;
use crate::metrics::{LimitKind, Refusals};

/// Read receipts (`read`) one user may send at once, over all sockets.
pub const READ_BURST: u32 = 50;
/// Read receipts per second one user may sustain: each costs a few
/// database queries, so one user cannot take the pool from everyone.
pub const READS_PER_SECOND: u32 = 10;

/// A refusal: what the limit is, and when the next try may pass. `chat`
/// turns it into `ChatError::RateLimited` (HTTP sends `retry_after` as
/// `Retry-After`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Limited {
    pub message: String,
    pub retry_after: Duration,
}

impl Limited {
    /// The message says what the limit is, and when to retry (at least a
    /// millisecond away).
    pub fn new(what: impl std::fmt::Display, retry_after: Duration) -> Self {
        let retry_after = retry_after.max(Duration::from_millis(1));
        Limited {
            message: format!("{what}; retry in {} ms", retry_after.as_millis()),
            retry_after,
        }
    }
}

/// How often idle buckets are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A keyed token bucket, or no limit.
struct Bucket<K: Hash + Eq + Clone + std::fmt::Display> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    /// What is limited, for the log: `message`, `read`, …
    kind: &'static str,
    describe: String,
    /// Counts this bucket's refusals (`palaver_rate_limited_total`).
    refused: prometheus_client::metrics::counter::Counter,
}

impl<K: Hash + Eq + Clone + std::fmt::Display> Bucket<K> {
    fn new(
        kind: &'static str,
        quota: Option<Quota>,
        describe: String,
        refused: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Bucket {
            limiter: quota.map(RateLimiter::keyed),
            kind,
            describe,
            refused,
        }
    }

    /// Takes one token for `key`, or answers `rate_limited` with how
    /// long until one is free.
    fn take(&self, key: &K) -> Result<(), Limited> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l.check_key(key).map_err(|until| {
                tracing::info!(kind = self.kind, key = %key, "rate limited");
                self.refused.inc();
                Limited::new(
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

/// Every limit of one node, and its link to the others' counts.
pub struct Limits {
    messages: Bucket<UserId>,
    /// The message rate and burst, for the cluster-wide buckets.
    message_rate: u32,
    message_burst: u32,
    reads: Bucket<UserId>,
    group_changes: Bucket<UserId>,
    /// Failed logins (see [`login`]).
    pub login: login::LoginGuard,
    register_ip: Bucket<IpAddr>,
    max_connections: u32,
    connections: Mutex<HashMap<UserId, u32>>,
    /// Set when this node is one of several: the cluster-wide limits apply.
    cluster: Option<Arc<Cluster>>,
    /// Refusals, by kind, for the metrics.
    refused: Refusals,
}

/// The cluster-wide message grants of one batch of sends: how many each
/// sender may still send. Allows everything when no cluster-wide limit
/// applies or Redis could not answer (the per-node limit still did).
pub struct MessageGrants<'a> {
    granted: Option<HashMap<UserId, u32>>,
    rate: u32,
    burst: u32,
    refused: &'a Refusals,
}

impl MessageGrants<'_> {
    /// One send of `user`'s from the batch's grants.
    pub fn take(&mut self, user: UserId) -> Result<(), Limited> {
        let Some(granted) = self.granted.as_mut() else {
            return Ok(());
        };
        match granted.get_mut(&user) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Ok(())
            }
            _ => {
                tracing::info!(
                    kind = "message",
                    key = user.get(),
                    "rate limited (over all nodes)"
                );
                self.refused.count(LimitKind::Message);
                Err(Limited::new(
                    format_args!(
                        "at most {} messages a second (bursts of {}) over all nodes",
                        self.rate, self.burst
                    ),
                    Duration::from_secs_f64(1.0 / f64::from(self.rate.max(1))),
                ))
            }
        }
    }
}

impl Limits {
    /// The limits of `config`; with `cluster`, the cluster-wide ones too.
    /// Each refusal is counted in `refused`.
    pub fn new(config: &Config, cluster: Option<Arc<Cluster>>, refused: Refusals) -> Self {
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
                refused.of(LimitKind::Read),
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
                refused.of(LimitKind::GroupChange),
            ),
            messages: Bucket::new(
                "message",
                messages,
                format!(
                    "at most {} messages a second (bursts of {})",
                    config.message_rate, config.message_burst
                ),
                refused.of(LimitKind::Message),
            ),
            message_rate: config.message_rate,
            message_burst: config.message_burst,
            login: login::LoginGuard::new(config, cluster.clone(), refused.of(LimitKind::Login)),
            register_ip: Bucket::new(
                "register",
                per_minute(config.registrations_per_ip),
                format!(
                    "at most {} registrations a minute from one address",
                    config.registrations_per_ip
                ),
                refused.of(LimitKind::Register),
            ),
            max_connections: config.max_connections_per_user,
            connections: Mutex::new(HashMap::new()),
            cluster,
            refused,
        }
    }

    /// One message from `user`, on this node (asked as it arrives).
    pub fn message_here(&self, user: UserId) -> Result<(), Limited> {
        self.messages.take(&user)
    }

    /// The cluster-wide grants for a batch of sends by `senders` (one
    /// entry per send): one Redis call for the whole batch, and nothing
    /// at all (no allocation: this is the writer's hot path) on a single
    /// node or with the message limit off.
    pub async fn messages_everywhere(
        &self,
        senders: impl Iterator<Item = UserId>,
    ) -> MessageGrants<'_> {
        let mut grants = MessageGrants {
            granted: None,
            rate: self.message_rate,
            burst: self.message_burst,
            refused: &self.refused,
        };
        let Some(cluster) = self.cluster.as_ref().filter(|_| self.message_rate > 0) else {
            return grants;
        };
        let mut wants: HashMap<UserId, u32> = HashMap::new();
        for sender in senders {
            *wants.entry(sender).or_default() += 1;
        }
        let wants: Vec<(UserId, u32)> = wants.into_iter().collect();
        let keyed: Vec<(String, u32)> = wants
            .iter()
            .map(|&(user, n)| (format!("msg:{user}"), n))
            .collect();
        let granted = cluster
            .take_tokens(&keyed, f64::from(self.message_rate), self.message_burst)
            .await;
        grants.granted =
            granted.map(|granted| wants.iter().map(|&(u, _)| u).zip(granted).collect());
        grants
    }

    /// One read receipt from `user`.
    pub fn read(&self, user: UserId) -> Result<(), Limited> {
        self.reads.take(&user)
    }

    /// One group change (create, add or remove a member) by `user`.
    pub fn group_change(&self, user: UserId) -> Result<(), Limited> {
        self.group_changes.take(&user)
    }

    /// One typing event from a socket of `user`'s, from its own `bucket`.
    pub fn typing(&self, bucket: &TypingBucket, user: UserId) -> Result<(), Limited> {
        bucket
            .take(user)
            .inspect_err(|_| self.refused.count(LimitKind::Typing))
    }

    /// One registration from `ip`.
    pub fn register(&self, ip: IpAddr) -> Result<(), Limited> {
        self.register_ip.take(&ip)
    }

    /// Counts a new connection of `user`, unless they hold the most
    /// allowed already: on this node, then (in a cluster whose Redis
    /// answered) on all nodes, `everywhere` being their sockets on every
    /// node before this one. Every `Ok` is paired with one
    /// [`Limits::disconnected`].
    pub fn connect(&self, user: UserId, everywhere: Option<usize>) -> Result<(), Limited> {
        if everywhere.is_some_and(|n| n >= self.max_connections as usize) {
            return Err(self.too_many_connections());
        }
        self.connect_here(user)
    }

    /// Counts a new connection of `user` on this node.
    fn connect_here(&self, user: UserId) -> Result<(), Limited> {
        let mut counts = self.connections.lock().unwrap();
        let n = counts.entry(user).or_insert(0);
        if *n >= self.max_connections {
            return Err(self.too_many_connections());
        }
        *n += 1;
        Ok(())
    }

    fn too_many_connections(&self) -> Limited {
        self.refused.count(LimitKind::Connection);
        Limited {
            message: format!("at most {} connections per user", self.max_connections),
            retry_after: Duration::from_secs(1),
        }
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

    fn user(n: i64) -> UserId {
        UserId::parse(n).unwrap()
    }

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
        let refused = Refusals::default();
        let limits = Limits::new(
            &config(&["--message-rate", "1", "--message-burst", "3"]),
            None,
            refused.clone(),
        );
        for _ in 0..3 {
            limits.message_here(user(1)).unwrap();
        }
        let e = limits.message_here(user(1)).unwrap_err();
        assert!(e.retry_after > Duration::ZERO, "{e:?}");
        assert!(e.to_string().contains("retry in"), "{e}");
        assert_eq!(
            refused.of(LimitKind::Message).get(),
            1,
            "the refusal is counted"
        );
        assert_eq!(refused.of(LimitKind::Read).get(), 0);
        // Another user has their own bucket.
        limits.message_here(user(2)).unwrap();
    }

    #[test]
    fn zero_switches_the_message_limit_off() {
        let limits = Limits::new(
            &config(&["--message-rate", "0", "--message-burst", "1"]),
            None,
            Refusals::default(),
        );
        for _ in 0..10_000 {
            limits.message_here(user(1)).unwrap();
        }
    }

    #[test]
    fn connections_are_counted_and_released() {
        let limits = Limits::new(
            &config(&["--max-connections-per-user", "2"]),
            None,
            Refusals::default(),
        );
        limits.connect_here(user(7)).unwrap();
        limits.connect_here(user(7)).unwrap();
        assert!(limits.connect_here(user(7)).is_err());
        limits.connect_here(user(8)).unwrap();
        limits.disconnected(user(7));
        limits.connect_here(user(7)).unwrap();
    }

    #[test]
    fn closing_one_of_two_connections_keeps_the_other_counted() {
        let limits = Limits::new(
            &config(&["--max-connections-per-user", "2"]),
            None,
            Refusals::default(),
        );
        limits.connect_here(user(7)).unwrap();
        limits.connect_here(user(7)).unwrap();
        limits.disconnected(user(7));
        limits.connect_here(user(7)).unwrap();
        assert!(limits.connect_here(user(7)).is_err(), "two are held again");
        // Disconnecting a user with none held changes nothing.
        limits.disconnected(user(9));
        limits.connect_here(user(9)).unwrap();
    }

    #[test]
    fn sweeping_forgets_buckets_that_are_full_again() {
        let limits = Limits::new(
            &config(&["--message-rate", "1000", "--message-burst", "1"]),
            None,
            Refusals::default(),
        );
        for n in 1..=50 {
            limits.message_here(user(n)).unwrap();
        }
        let held = || limits.messages.limiter.as_ref().unwrap().len();
        assert_eq!(held(), 50);
        std::thread::sleep(Duration::from_millis(20));
        limits.sweep();
        assert_eq!(held(), 0, "refilled buckets are dropped");
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let limits = Limits::new(
            &config(&["--registrations-per-ip", "2"]),
            None,
            Refusals::default(),
        );
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        limits.register(a).unwrap();
        limits.register(a).unwrap();
        assert!(limits.register(a).is_err(), "third from a");
        limits.register(b).unwrap();
        let off = Limits::new(
            &config(&["--registrations-per-ip", "0"]),
            None,
            Refusals::default(),
        );
        assert!((0..100).all(|_| off.register(a).is_ok()));
    }

    #[test]
    fn read_receipts_are_limited_per_user_after_their_burst() {
        let limits = Limits::new(&config(&[]), None, Refusals::default());
        for _ in 0..READ_BURST {
            limits.read(user(1)).unwrap();
        }
        let e = limits.read(user(1)).unwrap_err();
        assert!(e.to_string().contains("read receipts"), "{e}");
        limits.read(user(2)).unwrap();
    }

    #[test]
    fn group_changes_are_limited_per_user() {
        let limits = Limits::new(
            &config(&["--group-changes-per-minute", "2"]),
            None,
            Refusals::default(),
        );
        limits.group_change(user(1)).unwrap();
        limits.group_change(user(1)).unwrap();
        assert!(
            limits.group_change(user(1)).is_err(),
            "a third within the minute"
        );
        limits.group_change(user(2)).unwrap();
    }

    #[test]
    fn a_connection_is_refused_when_the_user_holds_the_most_on_all_nodes() {
        let limits = Limits::new(
            &config(&["--max-connections-per-user", "2"]),
            None,
            Refusals::default(),
        );
        assert!(
            limits.connect(user(1), Some(2)).is_err(),
            "two elsewhere already"
        );
        limits.connect(user(1), Some(1)).unwrap();
        limits.connect(user(1), None).unwrap();
        assert!(
            limits.connect(user(1), Some(0)).is_err(),
            "two on this node"
        );
    }

    #[test]
    fn cluster_grants_are_spent_one_send_at_a_time() {
        let refused = Refusals::default();
        let mut grants = MessageGrants {
            granted: Some(HashMap::from([(user(1), 2), (user(2), 0)])),
            rate: 4,
            burst: 8,
            refused: &refused,
        };
        grants.take(user(1)).unwrap();
        grants.take(user(1)).unwrap();
        let e = grants.take(user(1)).unwrap_err();
        assert_eq!(
            e.retry_after,
            Duration::from_millis(250),
            "one send at 4 a second"
        );
        assert!(e.to_string().contains("over all nodes"), "{e}");
        assert!(grants.take(user(2)).is_err(), "granted none");
        assert!(
            grants.take(user(3)).is_err(),
            "not in the batch: nothing granted"
        );
        assert_eq!(
            refused.of(LimitKind::Message).get(),
            3,
            "each refusal counted"
        );
        let mut open = MessageGrants {
            granted: None,
            rate: 4,
            burst: 8,
            refused: &refused,
        };
        assert!(
            (0..100).all(|_| open.take(user(1)).is_ok()),
            "no cluster-wide limit"
        );
    }
}
