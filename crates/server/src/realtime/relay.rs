//! Delivery and connection counts across the nodes of a cluster, through
//! Redis.
//!
//! - **Deliveries**: each user has a channel (`<prefix>:u:<id>`, sharded
//!   pub/sub: `SPUBLISH`/`SSUBSCRIBE`). A node subscribes to a user's
//!   channel when the user's first socket connects there and unsubscribes
//!   with the last, so it receives exactly the deliveries it has sockets
//!   for. A delivery is published once per recipient, as the encoded frame
//!   prefixed with the publishing node's id: nodes skip their own (they
//!   delivered locally at once).
//! - **Connections per user**: each node writes its own count of each
//!   user's sockets into the hash `<prefix>:c:<id>` (field: node id) and
//!   keeps itself alive in the sorted set `<prefix>:nodes` (score: last
//!   heartbeat, every [`HEARTBEAT`]); a count is the sum over nodes seen
//!   within [`NODE_TTL`], so a killed node's sockets stop counting within
//!   seconds, without asking every node anything.
//!
//! Everything goes to Redis through one queue and one task, in order and
//! pipelined, so the sockets never wait for Redis. When Redis is away,
//! deliveries reach this node's sockets only (clients catch up through
//! history) and counts are this node's; when it comes back, the node
//! writes all its counts again and its subscriptions are renewed.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{
    EventInterface, HashesInterface, KeysInterface, LuaInterface, PubsubInterface,
};
use futures_util::future::BoxFuture;
use palaver_sio::Frame;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::HubInner;
use crate::chat::OnlineLookup;
use crate::cluster::{Cluster, CALL_TIMEOUT};
use crate::ids::UserId;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node's counts stand without a heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(4);
/// Longest a queued operation waits before it is sent (they go in
/// batches of whatever queued meanwhile).
const OPS_QUEUE: usize = 65_536;
/// Operations per pipeline.
const PIPELINE: usize = 512;
/// Node ids are this many characters.
const NODE_ID_LEN: usize = 16;

/// A node's heartbeat: its score is Redis's clock, so every node agrees.
const BEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
return now
"#;

/// A user's count hash outlives a day of silence at most (counts of dead
/// nodes are also removed as they are read).
const COUNT_KEY_TTL_MS: i64 = 86_400_000;

/// For each user hash in KEYS, the sockets on live nodes other than
/// ARGV[2] (this node, counted locally); ARGV[1] is the nodes set, ARGV[3]
/// the liveness window in milliseconds. Fields of dead nodes are removed.
const COUNT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local alive = now - tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HGETALL', key)
  local n = 0
  for j = 1, #v, 2 do
    if v[j] ~= ARGV[2] then
      local seen = redis.call('ZSCORE', ARGV[1], v[j])
      if seen and tonumber(seen) >= alive then
        n = n + tonumber(v[j + 1])
      else
        redis.call('HDEL', key, v[j])
      end
    end
  end
  out[i] = n
end
return out
"#;

enum Op {
    Publish(UserId, Bytes),
    Count(UserId, usize),
}

/// This node's link to the others' sockets; cheap to clone.
#[derive(Clone)]
pub struct Relay(Arc<Inner>);

struct Inner {
    node: String,
    cluster: Arc<Cluster>,
    client: Client,
    subscriber: SubscriberClient,
    ops: mpsc::Sender<Op>,
    hub: OnceLock<Weak<HubInner>>,
    prefix: String,
}

fn node_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..NODE_ID_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Relay {
    /// Starts the relay's tasks over `subscriber` (a client of its own).
    pub fn start(cluster: Arc<Cluster>, subscriber: SubscriberClient, prefix: &str) -> Relay {
        let (tx, rx) = mpsc::channel(OPS_QUEUE);
        let relay = Relay(Arc::new(Inner {
            node: node_id(),
            client: cluster.client().clone(),
            cluster,
            subscriber,
            ops: tx,
            hub: OnceLock::new(),
            prefix: prefix.to_string(),
        }));
        tokio::spawn(send_ops(Arc::downgrade(&relay.0), rx));
        tokio::spawn(heartbeat(Arc::downgrade(&relay.0)));
        relay
    }

    /// Connects the relay to the sockets it delivers to.
    pub(super) fn attach(&self, hub: &super::Hub) {
        let _ = self.0.hub.set(Arc::downgrade(&hub.0));
        tokio::spawn(receive(Arc::downgrade(&self.0)));
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.0.node
    }

    fn queue(&self, op: Op) {
        if self.0.ops.try_send(op).is_err() {
            tracing::debug!("redis: relay queue full; an operation is dropped");
        }
    }

    /// Sends `frame` to the sockets of `users` on the other nodes.
    pub fn publish(&self, users: &[UserId], frame: Frame) {
        if !self.0.cluster.is_up() {
            return;
        }
        let Frame::Text(text) = frame else {
            return;
        };
        let mut payload = Vec::with_capacity(NODE_ID_LEN + text.len());
        payload.extend_from_slice(self.0.node.as_bytes());
        payload.extend_from_slice(text.as_bytes());
        let payload = Bytes::from(payload);
        for &user in users {
            self.queue(Op::Publish(user, payload.clone()));
        }
    }

    /// `user` now has `here` sockets on this node.
    pub fn count_changed(&self, user: UserId, here: usize) {
        self.queue(Op::Count(user, here));
    }

    fn channel(&self, user: UserId) -> String {
        format!("{}:u:{user}", self.0.prefix)
    }

    fn count_key(&self, user: UserId) -> String {
        format!("{}:c:{user}", self.0.prefix)
    }

    /// Sockets of each of `users` on the other live nodes; `None` when
    /// Redis cannot answer.
    async fn remote_counts(&self, users: &[UserId]) -> Option<Vec<usize>> {
        if !self.0.cluster.is_up() || users.is_empty() {
            return None;
        }
        let keys: Vec<String> = users.iter().map(|&u| self.count_key(u)).collect();
        let args = vec![
            format!("{}:nodes", self.0.prefix),
            self.0.node.clone(),
            NODE_TTL.as_millis().to_string(),
        ];
        let call = self.0.client.eval::<Vec<i64>, _, _, _>(COUNT, keys, args);
        let counts = self.0.cluster.answer(call).await?;
        (counts.len() == users.len())
            .then(|| counts.into_iter().map(|n| n.max(0) as usize).collect())
    }

    fn local(&self, user: UserId) -> usize {
        self.0
            .hub
            .get()
            .and_then(Weak::upgrade)
            .map_or(0, |hub| hub.registry.count(user))
    }

    /// `user`'s sockets on every live node; `None` when Redis cannot answer.
    pub async fn connections(&self, user: UserId) -> Option<usize> {
        let remote = self.remote_counts(&[user]).await?;
        Some(remote[0] + self.local(user))
    }
}

/// Most users looked up in Redis for one answer (a conversation list is at
/// most 1,000 rows).
const MAX_ONLINE_LOOKUPS: usize = 1000;

impl OnlineLookup for Relay {
    fn online(&self, users: Vec<UserId>) -> BoxFuture<'static, HashSet<UserId>> {
        let relay = self.clone();
        Box::pin(async move {
            let mut online: HashSet<UserId> = users
                .iter()
                .copied()
                .filter(|&u| relay.local(u) > 0)
                .collect();
            let rest: Vec<UserId> = users
                .into_iter()
                .filter(|u| !online.contains(u))
                .take(MAX_ONLINE_LOOKUPS)
                .collect();
            if let Some(counts) = relay.remote_counts(&rest).await {
                online.extend(
                    rest.iter()
                        .zip(counts)
                        .filter(|(_, n)| *n > 0)
                        .map(|(u, _)| *u),
                );
            }
            online
        })
    }
}

/// The one task that talks to Redis for the relay: batches of operations,
/// in order, one pipeline each; (un)subscriptions as counts cross zero.
async fn send_ops(relay: Weak<Inner>, mut rx: mpsc::Receiver<Op>) {
    let mut ops = Vec::with_capacity(PIPELINE);
    while rx.recv_many(&mut ops, PIPELINE).await > 0 {
        let Some(inner) = relay.upgrade() else {
            return;
        };
        let relay = Relay(inner);
        let up = relay.0.cluster.is_up();
        let pipeline = relay.0.client.pipeline();
        let mut queued = 0;
        let mut published = 0;
        for op in ops.drain(..) {
            match op {
                Op::Publish(user, payload) if up => {
                    let _: Result<(), _> = pipeline.spublish(relay.channel(user), payload).await;
                    queued += 1;
                    published += 1;
                }
                Op::Publish(..) => {}
                Op::Count(user, here) => {
                    if here <= 1 {
                        relay.subscription(user, here == 1).await;
                    }
                    if up {
                        let key = relay.count_key(user);
                        if here > 0 {
                            let _: Result<(), _> = pipeline
                                .hset(&key, (relay.0.node.as_str(), here as i64))
                                .await;
                            let _: Result<(), _> =
                                pipeline.pexpire(&key, COUNT_KEY_TTL_MS, None).await;
                            queued += 2;
                        } else {
                            let _: Result<(), _> = pipeline.hdel(&key, relay.0.node.as_str()).await;
                            queued += 1;
                        }
                    }
                }
            }
        }
        if queued > 0 {
            let sent = tokio::time::timeout(CALL_TIMEOUT * 4, pipeline.all::<fred::types::Value>());
            match sent.await {
                Ok(Ok(_)) => {
                    relay
                        .0
                        .cluster
                        .counters
                        .deliveries_published
                        .inc_by(published);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "redis: relay batch failed");
                    relay.0.cluster.set_up(false);
                }
                Err(_) => relay.0.cluster.set_up(false),
            }
        }
    }
}

impl Relay {
    /// Subscribes to `user`'s channel (or stops).
    async fn subscription(&self, user: UserId, on: bool) {
        let channel = self.channel(user);
        let call = async {
            if on {
                self.0.subscriber.ssubscribe(channel).await
            } else {
                self.0.subscriber.sunsubscribe(channel).await
            }
        };
        // The subscriber client tracks its channels and subscribes to them
        // again when Redis comes back, so a failure here heals then.
        if let Ok(Err(e)) = tokio::time::timeout(CALL_TIMEOUT, call).await {
            tracing::debug!(error = %e, user = user.get(), "redis: subscription change failed");
        }
    }
}

/// Says this node is alive; after Redis was away, writes every count again.
async fn heartbeat(relay: Weak<Inner>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut was_up = true;
    loop {
        tick.tick().await;
        let Some(inner) = relay.upgrade() else {
            return;
        };
        let relay = Relay(inner);
        let up = relay.0.cluster.is_up();
        if !up {
            was_up = false;
            continue;
        }
        let beat = relay.0.client.eval::<i64, _, _, _>(
            BEAT,
            vec![format!("{}:nodes", relay.0.prefix)],
            vec![relay.0.node.clone()],
        );
        if !matches!(tokio::time::timeout(CALL_TIMEOUT, beat).await, Ok(Ok(_))) {
            relay.0.cluster.set_up(false);
            was_up = false;
            continue;
        }
        if !was_up {
            was_up = true;
            if let Some(hub) = relay.0.hub.get().and_then(Weak::upgrade) {
                for (user, n) in hub.registry.users() {
                    relay.queue(Op::Count(user, n));
                }
            }
        }
    }
}

/// Deliveries published by other nodes, to this node's sockets.
async fn receive(relay: Weak<Inner>) {
    let mut messages = match relay.upgrade() {
        Some(inner) => inner.subscriber.message_rx(),
        None => return,
    };
    loop {
        let message = match messages.recv().await {
            Ok(m) => m,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    lost = n,
                    "redis: deliveries from other nodes lagged and were lost"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(inner) = relay.upgrade() else {
            return;
        };
        let Some(hub) = inner.hub.get().and_then(Weak::upgrade) else {
            return;
        };
        let Some(user) = message
            .channel
            .rsplit(':')
            .next()
            .and_then(|id| id.parse().ok())
            .and_then(|id| UserId::parse(id).ok())
        else {
            continue;
        };
        let Some(bytes) = message.value.as_bytes() else {
            continue;
        };
        if bytes.len() <= NODE_ID_LEN || &bytes[..NODE_ID_LEN] == inner.node.as_bytes() {
            continue;
        }
        let Ok(text) = Utf8Bytes::try_from(Bytes::copy_from_slice(&bytes[NODE_ID_LEN..])) else {
            continue;
        };
        inner.cluster.counters.deliveries_received.inc();
        let frame = Frame::Text(text);
        super::Hub(hub).deliver_here(&[user], None, &frame);
    }
}
