//! Running as one of several nodes (`--redis-url`).
//!
//! Redis carries Socket.IO deliveries and connection counts between nodes
//! (`realtime::relay`, on the subscriber client this module opens for it;
//! fred reconnects by itself when Redis comes back). Besides that, this
//! module keeps what a node caches or counts correct across nodes:
//! - **group rosters**: a membership change is published on
//!   `<prefix>:rosters`; every node drops its cached roster. Cached rosters are
//!   also trusted only [`ROSTER_MAX_AGE`] after a check of the database's
//!   versions (`chat::directory`), so a change is seen within it even
//!   while Redis is away, and a node that reconnects forgets them all.
//! - **per-user rate limits**: token buckets and failed-login counts in
//!   Redis (Lua scripts; one call per batch of sends), called only by
//!   `limits`, on top of each node's own buckets.
//! - presence and connections per user are counted over the cluster from
//!   each node's counts in Redis (in `realtime::relay`).
//!
//! Redis is never needed for correctness of storage: when it is away each
//! node keeps serving its own clients, acks stay truthful (they follow the
//! database commit), deliveries fall back to this node's sockets, and
//! `/healthz` says so. [`Cluster::is_up`] is the node's view of Redis,
//! kept by a ping every [`PROBE_EVERY`] and by every failed call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface, LuaInterface, PubsubInterface};
use fred::types::config::{Config as RedisConfig, ReconnectPolicy};
use fred::types::{Builder, RespVersion};

use crate::ids::{GroupId, UserId};
use crate::metrics::ClusterCounters;

/// Longest a node trusts its cached block sets in a cluster without a
/// check of the database's versions, where block changes are announced (a
/// lost announcement is healed by this).
pub const BLOCKS_MAX_AGE: Duration = Duration::from_secs(60);

/// Longest a node trusts its cached rosters in a cluster without a check
/// of the database's versions.
pub const ROSTER_MAX_AGE: Duration = Duration::from_millis(800);
/// Longest wait for one Redis call on a request path.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Pub/sub messages a node may have received but not yet handled.
pub const PUBSUB_BUFFER: usize = 8192;
/// How often Redis is pinged.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Failed-login counts (`limits::login`): for each key, `{count, first,
/// last}` in milliseconds, then Redis's own time.
const READ_FAILURES: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'n', 'first', 'last')
  out[#out + 1] = tonumber(v[1]) or 0
  out[#out + 1] = tonumber(v[2]) or 0
  out[#out + 1] = tonumber(v[3]) or 0
end
local t = redis.call('TIME')
out[#out + 1] = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return out
"#;

/// Counts one failed login under each key; ARGV holds, per key, its window
/// in milliseconds and whether each failure extends it (1) or only the
/// first starts it (0).
const RECORD_FAILURE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 * i - 1])
  local sliding = ARGV[2 * i] == '1'
  local n = redis.call('HINCRBY', key, 'n', 1)
  if n == 1 then redis.call('HSET', key, 'first', now) end
  redis.call('HSET', key, 'last', now)
  if sliding or n == 1 then redis.call('PEXPIRE', key, window) end
end
return 1
"#;

/// Token buckets for many keys at once; the clock is Redis's, so every
/// node agrees. ARGV: rate per second, burst, then one count per key.
/// Returns the tokens granted per key (at most what was asked).
const TAKE_TOKENS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl = math.ceil(burst / rate * 1000) + 1000
local out = {}
for i, key in ipairs(KEYS) do
  local want = tonumber(ARGV[2 + i])
  local b = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(b[1])
  local ts = tonumber(b[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  local granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
  redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, ttl)
  out[i] = granted
end
return out
"#;

/// Why Redis could not be used at start.
#[derive(Debug, thiserror::Error)]
#[error("cannot use Redis at {url}: {source}")]
pub struct ClusterError {
    url: String,
    #[source]
    source: fred::error::Error,
}

/// This node's link to the others.
pub struct Cluster {
    client: Client,
    up: AtomicBool,
    prefix: String,
    /// Messages to and from the other nodes, and `palaver_redis_up`.
    pub counters: ClusterCounters,
}

/// What [`connect`] hands back: the link, and a subscriber client for
/// deliveries from other nodes.
pub struct Connected {
    pub cluster: Arc<Cluster>,
    pub deliveries: SubscriberClient,
    rosters: SubscriberClient,
}

fn builder(url: &str) -> Result<Builder, fred::error::Error> {
    let mut config = RedisConfig::from_url(url)?;
    // Commands and pub/sub on one connection.
    config.version = RespVersion::RESP3;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
        })
        .with_performance_config(|p| {
            p.default_command_timeout = CALL_TIMEOUT;
            // Pub/sub messages pass through a broadcast channel of this
            // size before the relay reads them; at the default (32) a
            // burst of deliveries overflows it and is dropped (measured:
            // tens of deliveries lost per second at 9,500 msg/s).
            p.broadcast_channel_capacity = PUBSUB_BUFFER;
        })
        // Forever, 100 ms doubling to 2 s between attempts.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2));
    Ok(builder)
}

/// Connects to Redis at `url` (it must answer now; later outages are
/// survived). Every channel and key starts with `prefix`; what goes
/// through Redis is counted in `counters`.
pub async fn connect(
    url: &str,
    prefix: &str,
    counters: ClusterCounters,
) -> Result<Connected, ClusterError> {
    let fail = |source| ClusterError {
        url: redacted(url),
        source,
    };
    let builder = builder(url).map_err(fail)?;
    let client = builder.build().map_err(fail)?;
    client.init().await.map_err(fail)?;
    let deliveries = builder.build_subscriber_client().map_err(fail)?;
    deliveries.init().await.map_err(fail)?;
    resubscribe_on_reconnect(deliveries.clone());
    let rosters = builder.build_subscriber_client().map_err(fail)?;
    rosters.init().await.map_err(fail)?;
    resubscribe_on_reconnect(rosters.clone());
    rosters
        .subscribe(format!("{prefix}:rosters"))
        .await
        .map_err(fail)?;
    let cluster = Arc::new(Cluster {
        client,
        up: AtomicBool::new(true),
        prefix: prefix.to_string(),
        counters,
    });
    Ok(Connected {
        cluster,
        deliveries,
        rosters,
    })
}

/// Subscribes again to every channel `client` had after Redis comes back.
/// (fred's own `manage_subscriptions` sends a `SUBSCRIBE` without channels
/// when a client has only shard channels, as the relay's has, and stops
/// at its error before resubscribing them.)
fn resubscribe_on_reconnect(client: SubscriberClient) {
    let mut reconnects = client.reconnect_rx();
    tokio::spawn(async move {
        while reconnects.recv().await.is_ok() {
            let channels: Vec<String> = client
                .tracked_channels()
                .into_iter()
                .map(|c| c.to_string())
                .collect();
            if !channels.is_empty() {
                if let Err(e) = client.subscribe(channels).await {
                    tracing::warn!(error = %e, "redis: cannot resubscribe");
                }
            }
            for channel in client.tracked_shard_channels() {
                if let Err(e) = client.ssubscribe(channel.to_string()).await {
                    tracing::warn!(error = %e, "redis: cannot resubscribe");
                }
            }
        }
    });
}

/// What another node announced on `<prefix>:rosters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// A group's membership changed (the message is its id).
    Roster(GroupId),
    /// A block between two users was set or lifted (`b:<a>:<b>`).
    Blocks(UserId, UserId),
    /// Announcements may have been missed (anything unreadable, a lag, a
    /// reconnect): forget every cached roster and block set.
    All,
}

fn parse_announcement(message: &str) -> Announcement {
    let user = |s: &str| s.parse().ok().and_then(|u| UserId::parse(u).ok());
    if let Some(pair) = message.strip_prefix("b:") {
        let mut ids = pair.splitn(2, ':');
        return match (ids.next().and_then(user), ids.next().and_then(user)) {
            (Some(a), Some(b)) => Announcement::Blocks(a, b),
            _ => Announcement::All,
        };
    }
    match message.parse().ok().and_then(|g| GroupId::parse(g).ok()) {
        Some(g) => Announcement::Roster(g),
        None => Announcement::All,
    }
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl Connected {
    /// Starts the background tasks: the health probe, and dropping cached
    /// rosters and block sets when another node announces a change, or all
    /// of them when announcements may have been missed.
    pub fn spawn_tasks(&self, forget: impl Fn(Announcement) + Send + Sync + 'static) {
        let forget = Arc::new(forget);
        let mut messages = self.rosters.message_rx();
        let on_message = forget.clone();
        let received = self.cluster.counters.announcements_received.clone();
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(m) => on_message({
                        received.inc();
                        m.value
                            .as_str()
                            .map_or(Announcement::All, |s| parse_announcement(&s))
                    }),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        on_message(Announcement::All)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let mut reconnects = self.rosters.reconnect_rx();
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                tracing::info!("redis: reconnected");
                forget(Announcement::All);
            }
        });
        let cluster = Arc::downgrade(&self.cluster);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            loop {
                tick.tick().await;
                let Some(cluster) = cluster.upgrade() else {
                    return;
                };
                let ok = matches!(
                    tokio::time::timeout(CALL_TIMEOUT, cluster.client.ping::<String>(None)).await,
                    Ok(Ok(_))
                );
                cluster.set_up(ok);
            }
        });
    }
}

impl Cluster {
    /// The command client (the relay pipelines through it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether Redis answered lately.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Records a failed (or successful) use of Redis.
    pub fn set_up(&self, up: bool) {
        self.counters.up.set(i64::from(up));
        let was = self.up.swap(up, Ordering::AcqRel);
        if was != up {
            if up {
                tracing::info!("redis: available again; cross-node delivery resumes");
            } else {
                tracing::warn!("redis: unavailable; delivering to this node's sockets only");
            }
        }
    }

    /// Tells every node that `group`'s membership changed. Best effort:
    /// cached rosters expire anyway.
    pub async fn roster_changed(&self, group: GroupId) {
        self.announce(group.to_string()).await;
    }

    /// Tells every node that a block between `a` and `b` changed. Best
    /// effort: cached block sets expire anyway.
    pub async fn blocks_changed(&self, a: UserId, b: UserId) {
        self.announce(format!("b:{a}:{b}")).await;
    }

    async fn announce(&self, message: String) {
        if !self.is_up() {
            return;
        }
        let channel = format!("{}:rosters", self.prefix);
        let publish = self.client.publish::<i64, _, _>(channel, message);
        if matches!(tokio::time::timeout(CALL_TIMEOUT, publish).await, Ok(Ok(_))) {
            self.counters.announcements_published.inc();
        } else {
            self.set_up(false);
        }
    }

    /// Failed-login counts under `keys` (prefixed here) as `[count, first,
    /// last]`, with Redis's time in milliseconds; `None` when Redis cannot
    /// answer.
    pub(crate) async fn failures(&self, keys: &[String]) -> Option<(Vec<[i64; 3]>, i64)> {
        if !self.is_up() {
            return None;
        }
        let keys: Vec<String> = keys
            .iter()
            .map(|k| format!("{}:{k}", self.prefix))
            .collect();
        let n = keys.len();
        let call = self
            .client
            .eval::<Vec<i64>, _, _, _>(READ_FAILURES, keys, Vec::<String>::new());
        match self.answer(call).await {
            Some(v) if v.len() == 3 * n + 1 => {
                let counts = v[..3 * n].chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
                Some((counts, v[3 * n]))
            }
            _ => None,
        }
    }

    /// Counts a failed login under each `(key, window, sliding)`; false
    /// when Redis cannot take it (the caller counts it on this node).
    pub(crate) async fn record_failure(&self, wants: &[(String, Duration, bool)]) -> bool {
        if !self.is_up() {
            return false;
        }
        let keys: Vec<String> = wants
            .iter()
            .map(|(k, _, _)| format!("{}:{k}", self.prefix))
            .collect();
        let args: Vec<String> = wants
            .iter()
            .flat_map(|(_, window, sliding)| {
                [
                    window.as_millis().to_string(),
                    if *sliding { "1" } else { "0" }.to_string(),
                ]
            })
            .collect();
        let call = self.client.eval::<i64, _, _, _>(RECORD_FAILURE, keys, args);
        self.answer(call).await.is_some()
    }

    /// Deletes a key (prefixed here); best effort.
    pub(crate) async fn forget(&self, key: &str) {
        if self.is_up() {
            let call = self.client.eval::<i64, _, _, _>(
                "return redis.call('DEL', KEYS[1])",
                vec![format!("{}:{key}", self.prefix)],
                Vec::<String>::new(),
            );
            let _ = self.answer(call).await;
        }
    }

    /// The answer of one Redis call within [`CALL_TIMEOUT`]; a failure
    /// marks Redis down.
    pub(crate) async fn answer<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, fred::error::Error>>,
    ) -> Option<T> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis: call failed");
                self.set_up(false);
                None
            }
            Err(_) => {
                self.set_up(false);
                None
            }
        }
    }

    /// Takes tokens from cluster-wide buckets: for each `(key, wanted)`,
    /// how many were granted. `None` when Redis cannot answer (the node's
    /// own buckets still apply). Keys are prefixed here.
    pub(crate) async fn take_tokens(
        &self,
        wants: &[(String, u32)],
        per_second: f64,
        burst: u32,
    ) -> Option<Vec<u32>> {
        if !self.is_up() || wants.is_empty() {
            return None;
        }
        let keys: Vec<String> = wants
            .iter()
            .map(|(k, _)| format!("{}:rate:{k}", self.prefix))
            .collect();
        let mut args = vec![per_second.to_string(), burst.to_string()];
        args.extend(wants.iter().map(|(_, n)| n.to_string()));
        let call = self
            .client
            .eval::<Vec<i64>, _, _, _>(TAKE_TOKENS, keys, args);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(granted)) if granted.len() == wants.len() => {
                Some(granted.into_iter().map(|g| g.max(0) as u32).collect())
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis: rate limit call failed");
                self.set_up(false);
                None
            }
            Err(_) => {
                self.set_up(false);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_name_a_group_a_blocked_pair_or_everything() {
        let g = GroupId::parse(7).unwrap();
        let (a, b) = (UserId::parse(3).unwrap(), UserId::parse(9).unwrap());
        assert_eq!(parse_announcement("7"), Announcement::Roster(g));
        assert_eq!(parse_announcement("b:3:9"), Announcement::Blocks(a, b));
        for unreadable in ["", "0", "x", "b:3", "b:3:0", "b:x:9", "-1"] {
            assert_eq!(
                parse_announcement(unreadable),
                Announcement::All,
                "{unreadable:?}"
            );
        }
    }
}
