//! Login limits that count failures, never successes (OWASP's
//! authentication cheat sheet, "Account lockout"): the real user, typing
//! the right password from an address that has not been failing, always
//! gets in, and a guesser slows down exponentially.
//!
//! Three counts of failed logins, each refusing with 429 `rate_limited`
//! (and `Retry-After`) before any password is hashed:
//! - **per address** (`--login-failures-per-ip`, 60): failures from one
//!   address in a minute, whatever the usernames (credential stuffing);
//! - **per username and address** (`--login-failures-per-pair`, 5, tight):
//!   beyond it that pair waits 1 s, doubling with each further failure up
//!   to 15 minutes; a success clears the pair;
//! - **per username** (`--login-failures-per-user`, 50, loose): failures
//!   from all addresses; beyond it the username backs off the same way,
//!   but only for addresses that have failed on it: one that has not may
//!   still try, so a distributed guesser gets one guess per address per
//!   back-off and cannot lock the owner out.
//!
//! Failures are forgotten 15 minutes after the last one (a minute after the
//! first, per address). With Redis the counts are kept there, so every node
//! sees the same; when Redis cannot answer the node's own counts apply.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Limited;
use crate::cluster::Cluster;
use crate::config::Config;

/// Failures per address are counted over this window, from the first.
const ADDRESS_WINDOW: Duration = Duration::from_secs(60);
/// Failures per username (and pair) are forgotten this long after the last.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The first back-off; each further failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Most counts kept on one node; beyond it the oldest half is forgotten.
const MAX_ENTRIES: usize = 100_000;

/// Failed logins under one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    /// Milliseconds since the Unix epoch.
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Which count a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Address,
    Pair,
    User,
}

impl Kind {
    /// How long a count lives, and whether each failure extends it.
    fn window(self) -> (Duration, bool) {
        match self {
            Kind::Address => (ADDRESS_WINDOW, false),
            Kind::Pair | Kind::User => (FORGET_AFTER, true),
        }
    }
}

/// The three limits (0 switches one off).
pub struct LoginGuard {
    per_ip: u32,
    per_pair: u32,
    per_user: u32,
    local: Mutex<HashMap<String, Failures>>,
    /// Where the counts are kept when this node is one of several.
    cluster: Option<Arc<Cluster>>,
    /// Counts refusals (`palaver_rate_limited_total{kind="login"}`).
    refused: prometheus_client::metrics::counter::Counter,
}

impl LoginGuard {
    pub fn new(
        config: &Config,
        cluster: Option<Arc<Cluster>>,
        refused: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        LoginGuard {
            per_ip: config.login_failures_per_ip,
            per_pair: config.login_failures_per_pair,
            per_user: config.login_failures_per_user,
            local: Mutex::new(HashMap::new()),
            cluster,
            refused,
        }
    }

    fn keys(username: &str, ip: IpAddr) -> [(Kind, String); 3] {
        let user = login_key(username);
        [
            (Kind::Address, format!("login-fail-ip:{ip}")),
            (Kind::Pair, format!("login-fail-pair:{ip}:{user}")),
            (Kind::User, format!("login-fail-user:{user}")),
        ]
    }

    /// Whether a login for `username` from `ip` may be tried now.
    pub async fn check(&self, username: &str, ip: IpAddr) -> Result<(), Limited> {
        self.decide(username, ip).await.inspect_err(|_| {
            self.refused.inc();
        })
    }

    async fn decide(&self, username: &str, ip: IpAddr) -> Result<(), Limited> {
        let keys = Self::keys(username, ip);
        let names: Vec<String> = keys.iter().map(|(_, k)| k.clone()).collect();
        let shared = match &self.cluster {
            Some(c) => c.failures(&names).await,
            None => None,
        };
        let (counts, now) = match shared {
            Some((counts, now)) => {
                let counts: Vec<Failures> = counts
                    .into_iter()
                    .map(|[n, first_ms, last_ms]| Failures {
                        count: n.clamp(0, i64::from(u32::MAX)) as u32,
                        first_ms,
                        last_ms,
                    })
                    .collect();
                (counts, now)
            }
            None => {
                let local = self.local.lock().unwrap();
                let counts = names
                    .iter()
                    .map(|k| local.get(k).copied().unwrap_or_default())
                    .collect();
                (counts, now_ms())
            }
        };
        let [ip_n, pair_n, user_n] = [0, 1, 2].map(|i| live(keys[i].0, counts[i], now));
        if let Some(wait) = address_wait(self.per_ip, ip_n, now) {
            return Err(refused(
                "login",
                format_args!(
                    "at most {} failed logins a minute from one address",
                    self.per_ip
                ),
                &ip.to_string(),
                wait,
            ));
        }
        if let Some(wait) = backoff_wait(self.per_pair, pair_n, now) {
            return Err(refused(
                "login",
                format_args!("too many failed logins for this username from this address"),
                username,
                wait,
            ));
        }
        if pair_n.count > 0 {
            if let Some(wait) = backoff_wait(self.per_user, user_n, now) {
                return Err(refused(
                    "login",
                    format_args!("too many failed logins for this username"),
                    username,
                    wait,
                ));
            }
        }
        Ok(())
    }

    /// Counts a failed login.
    pub async fn failed(&self, username: &str, ip: IpAddr) {
        let keys = Self::keys(username, ip);
        if let Some(c) = &self.cluster {
            let wants: Vec<(String, Duration, bool)> = keys
                .iter()
                .map(|(kind, k)| {
                    let (window, sliding) = kind.window();
                    (k.clone(), window, sliding)
                })
                .collect();
            if c.record_failure(&wants).await {
                return;
            }
        }
        let now = now_ms();
        let mut local = self.local.lock().unwrap();
        if local.len() >= MAX_ENTRIES {
            forget_oldest_half(&mut local);
        }
        for (kind, key) in keys {
            let entry = local.entry(key).or_default();
            *entry = live(kind, *entry, now);
            if entry.count == 0 {
                entry.first_ms = now;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last_ms = now;
        }
    }

    /// A login succeeded: the pair's failures are forgiven (not the
    /// username's or the address's, which others may be running up).
    pub async fn succeeded(&self, username: &str, ip: IpAddr) {
        let [_, (_, pair), _] = Self::keys(username, ip);
        if let Some(c) = &self.cluster {
            c.forget(&pair).await;
        }
        self.local.lock().unwrap().remove(&pair);
    }

    /// Forgets counts that have expired.
    pub fn sweep(&self) {
        let now = now_ms();
        self.local.lock().unwrap().retain(|key, f| {
            let kind = if key.starts_with("login-fail-ip:") {
                Kind::Address
            } else {
                Kind::Pair
            };
            live(kind, *f, now).count > 0
        });
    }
}

/// `f` as it stands at `now`: empty once its window has passed.
fn live(kind: Kind, f: Failures, now: i64) -> Failures {
    let (window, sliding) = kind.window();
    let since = if sliding { f.last_ms } else { f.first_ms };
    if f.count == 0 || now - since >= window.as_millis() as i64 {
        Failures::default()
    } else {
        f
    }
}

fn address_wait(limit: u32, f: Failures, now: i64) -> Option<Duration> {
    if limit == 0 || f.count < limit {
        return None;
    }
    let until = f.first_ms + ADDRESS_WINDOW.as_millis() as i64;
    (now < until).then(|| Duration::from_millis((until - now) as u64))
}

/// The wait after `f.count` failures against a threshold: none up to it,
/// then 1 s, 2 s, 4 s … (at most 15 min) from the last failure.
fn backoff_wait(limit: u32, f: Failures, now: i64) -> Option<Duration> {
    if limit == 0 || f.count < limit {
        return None;
    }
    let doublings = (f.count - limit).min(20);
    let backoff = (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF);
    let until = f.last_ms + backoff.as_millis() as i64;
    (now < until).then(|| Duration::from_millis((until - now) as u64))
}

fn refused(kind: &str, what: std::fmt::Arguments<'_>, key: &str, wait: Duration) -> Limited {
    tracing::info!(kind, key = ?bounded(key), "rate limited");
    Limited::new(what, wait)
}

/// Usernames are at most 32 characters; longer input still counts, under a
/// bounded key.
pub(crate) fn login_key(username: &str) -> String {
    bounded(username).to_lowercase()
}

/// At most 64 characters of client input, for keys and logs.
pub(crate) fn bounded(s: &str) -> String {
    s.chars().take(64).collect()
}

fn forget_oldest_half(map: &mut HashMap<String, Failures>) {
    let mut lasts: Vec<i64> = map.values().map(|f| f.last_ms).collect();
    lasts.sort_unstable();
    let cut = lasts[lasts.len() / 2];
    map.retain(|_, f| f.last_ms > cut);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(count: u32, first_ms: i64, last_ms: i64) -> Failures {
        Failures {
            count,
            first_ms,
            last_ms,
        }
    }

    #[test]
    fn backoff_starts_at_the_threshold_and_doubles() {
        assert_eq!(backoff_wait(5, f(4, 0, 1000), 1000), None);
        assert_eq!(
            backoff_wait(5, f(5, 0, 1000), 1000),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            backoff_wait(5, f(6, 0, 1000), 1000),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            backoff_wait(5, f(8, 0, 1000), 1500),
            Some(Duration::from_millis(7500))
        );
        assert_eq!(backoff_wait(5, f(5, 0, 1000), 2000), None, "waited it out");
        assert_eq!(backoff_wait(5, f(90, 0, 0), 0), Some(MAX_BACKOFF));
        assert_eq!(backoff_wait(0, f(90, 0, 0), 0), None, "0 = off");
    }

    #[test]
    fn address_failures_are_counted_over_a_minute_from_the_first() {
        assert_eq!(address_wait(3, f(2, 0, 10), 10), None);
        assert_eq!(
            address_wait(3, f(3, 0, 10), 10),
            Some(Duration::from_millis(59_990))
        );
        assert_eq!(address_wait(3, f(3, 0, 10), 60_000), None);
        assert_eq!(address_wait(0, f(3, 0, 10), 10), None);
    }

    #[test]
    fn counts_expire_after_their_window() {
        let now = 20 * 60 * 1000;
        assert_eq!(live(Kind::Pair, f(3, 0, now - 1000), now).count, 3);
        assert_eq!(
            live(Kind::Pair, f(3, 0, now - 15 * 60 * 1000), now).count,
            0
        );
        assert_eq!(
            live(Kind::Address, f(3, now - 61_000, now - 1), now).count,
            0
        );
        assert_eq!(
            live(Kind::Address, f(3, now - 59_000, now - 1), now).count,
            3
        );
    }

    fn guard(pair: u32, user: u32, ip: u32) -> LoginGuard {
        LoginGuard {
            per_ip: ip,
            per_pair: pair,
            per_user: user,
            local: Mutex::new(HashMap::new()),
            cluster: None,
            refused: Default::default(),
        }
    }

    #[tokio::test]
    async fn failures_lock_the_pair_not_the_owner_on_another_address() {
        let g = guard(3, 1000, 1000);
        let guesser: IpAddr = "10.0.0.1".parse().unwrap();
        let owner: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            g.check("alice", guesser).await.unwrap();
            g.failed("Alice", guesser).await;
        }
        let e = g.check("ALICE", guesser).await.unwrap_err();
        assert!(e.retry_after > Duration::ZERO, "{e:?}");
        g.check("alice", owner).await.unwrap();
        g.check("bob", guesser).await.unwrap();
    }

    #[tokio::test]
    async fn successes_are_not_counted_and_clear_the_pair() {
        let g = guard(2, 1000, 1000);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            g.check("alice", ip).await.unwrap();
            g.succeeded("alice", ip).await;
        }
        g.failed("alice", ip).await;
        g.succeeded("alice", ip).await;
        g.failed("alice", ip).await;
        g.check("alice", ip).await.unwrap();
    }

    #[tokio::test]
    async fn the_username_backs_off_only_for_addresses_that_failed() {
        let g = guard(1000, 4, 1000);
        for i in 0..4 {
            let ip: IpAddr = format!("10.0.1.{i}").parse().unwrap();
            g.failed("alice", ip).await;
        }
        let failed: IpAddr = "10.0.1.0".parse().unwrap();
        let fresh: IpAddr = "10.0.2.1".parse().unwrap();
        assert!(g.check("alice", failed).await.is_err());
        g.check("alice", fresh).await.unwrap();
    }

    #[tokio::test]
    async fn an_address_failing_on_many_usernames_is_stopped() {
        let g = guard(1000, 1000, 3);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        for name in ["a", "b", "c"] {
            g.failed(name, ip).await;
        }
        assert!(g.check("dave", ip).await.is_err());
        g.check("dave", "10.0.0.8".parse().unwrap()).await.unwrap();
    }

    #[test]
    fn a_pair_is_forgotten_fifteen_minutes_after_its_last_failure() {
        let minute = 60_000;
        let last = 100 * minute;
        let kept = live(Kind::Pair, f(3, 0, last), last + 14 * minute);
        assert_eq!(kept.count, 3);
        let gone = live(Kind::Pair, f(3, 0, last), last + 15 * minute);
        assert_eq!(gone.count, 0);
    }

    #[test]
    fn the_back_off_stops_growing_at_fifteen_minutes() {
        let wait = backoff_wait(5, f(40, 0, 1000), 1000);
        assert_eq!(wait, Some(Duration::from_secs(15 * 60)));
    }

    #[test]
    fn sweeping_keeps_only_counts_still_running() {
        let guard = LoginGuard::new(&Config::from_env().unwrap(), None, Default::default());
        // The wall clock read here, not through `now_ms`: the sweep must
        // read the same clock.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        {
            let mut local = guard.local.lock().unwrap();
            local.insert(
                "login-fail-ip:10.0.0.1".into(),
                f(3, now - 61_000, now - 61_000),
            );
            local.insert(
                "login-fail-ip:10.0.0.2".into(),
                f(3, now - 1_000, now - 1_000),
            );
            local.insert("login-fail-pair:a".into(), f(2, now - 1_000, now - 1_000));
        }
        guard.sweep();
        let mut left: Vec<String> = guard.local.lock().unwrap().keys().cloned().collect();
        left.sort();
        assert_eq!(left, vec!["login-fail-ip:10.0.0.2", "login-fail-pair:a"]);
    }

    #[test]
    fn a_full_table_forgets_its_older_half() {
        let mut map: HashMap<String, Failures> =
            (1..=10).map(|i| (format!("k{i}"), f(1, i, i))).collect();
        forget_oldest_half(&mut map);
        let mut left: Vec<i64> = map.values().map(|f| f.last_ms).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            vec![7, 8, 9, 10],
            "the newest, strictly after the median"
        );
    }
}
