//! What the writer and the request paths share: [`Core`] (the store, the
//! caches in front of it, the settings) and the cached group rosters it
//! answers "who takes part in this conversation?" from.
//!
//! A roster is cached per group ([`Directory`]); where other nodes may
//! change groups in the same database, the cached rosters are trusted for
//! a max age after a check of the database's versions (see
//! [`SHARED_ROSTER_MAX_AGE`] and `cluster::ROSTER_MAX_AGE`), and a sender
//! missing from one is looked up again before being refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use palaver_protocol::Message;

use super::directory::{Directory, Roster, TokenStates};
use super::presence::Presence;
use super::{ChatError, Target};
use crate::cluster::Cluster;
use crate::ids::{GroupId, UserId};
use crate::limits::Limits;
use crate::store::{Store, TokenState};

/// Longest a node trusts its cached rosters and block sets without
/// checking the database's versions of them (see `directory.rs`), on a
/// MySQL/MariaDB or PostgreSQL database without Redis, where other nodes
/// sharing the database cannot say when they change a group or a block
/// (in a cluster: `cluster::ROSTER_MAX_AGE`): how long such a change may
/// go unseen.
pub const SHARED_ROSTER_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the writer and the request paths share.
pub(crate) struct Core {
    pub store: Box<dyn Store>,
    pub directory: Directory,
    pub presence: Presence,
    pub settings: Settings,
    /// Whether other nodes may change groups in this node's database, so
    /// that a cached roster may be stale.
    pub shared: bool,
    /// Who else is online, across nodes (set by the Socket.IO side).
    pub online: std::sync::OnceLock<Arc<dyn OnlineLookup>>,
    /// Hands messages the server writes itself (system messages) to the
    /// sockets (set by the Socket.IO side).
    pub deliverer: std::sync::OnceLock<Arc<dyn Deliver>>,
    /// The users' token states this node has read (v1.3).
    pub tokens: TokenStates,
    /// Ends sockets whose token is revoked (set by the Socket.IO side).
    pub sessions: std::sync::OnceLock<Arc<dyn Sessions>>,
}

/// How the chat service runs.
#[derive(Clone)]
pub struct Settings {
    pub max_message_chars: usize,
    /// Least time between the starts of two batches (`--batch-interval-ms`).
    pub batch_interval: std::time::Duration,
    /// How long after sending a user may delete their own message
    /// (`--delete-window-secs`); `None`: any time.
    pub delete_window: Option<std::time::Duration>,
    /// Set when this node is one of several (`--redis-url`).
    pub cluster: Option<Arc<Cluster>>,
    /// Every rate limit; the writer asks it for the cluster-wide message
    /// grants of each batch.
    pub limits: Arc<Limits>,
    /// What the server counts; the writer counts its batches here.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Answers which of some users have a socket on any node.
pub trait OnlineLookup: Send + Sync {
    fn online(&self, users: Vec<UserId>) -> BoxFuture<'static, HashSet<UserId>>;
}

/// Delivers a message no socket sent (a group's system message) as a
/// `message` event to every socket of `users`, on every node.
pub trait Deliver: Send + Sync {
    fn message(&self, users: &[UserId], message: &Message);
}

/// Ends sockets whose token no longer holds (set by the Socket.IO side).
pub trait Sessions: Send + Sync {
    /// Whether `user` has a socket on this node.
    fn has_sockets(&self, user: UserId) -> bool;
    /// Ends each socket of `user` on this node that `state` refuses (see
    /// `credentials::refusal`).
    fn end_revoked(&self, user: UserId, state: &TokenState);
}

/// Those of `keys` that are not `cached`, sorted, each once.
fn uncached<K: Ord + Copy>(keys: &[K], cached: impl Fn(K) -> bool) -> Vec<K> {
    let mut missing: Vec<K> = keys.iter().copied().filter(|&k| !cached(k)).collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Core {
    /// Delivers a system message (nowhere before the Socket.IO side is set).
    pub fn deliver(&self, users: &[UserId], message: &Message) {
        if let Some(deliverer) = self.deliverer.get() {
            deliverer.message(users, message);
        }
    }

    /// Drops the cached roster and tells the other nodes that `group`'s
    /// members changed.
    pub async fn roster_changed(&self, group: GroupId) {
        self.directory.invalidate_roster(group);
        if let Some(cluster) = &self.settings.cluster {
            cluster.roster_changed(group).await;
        }
    }

    pub async fn user_exists(&self, id: UserId) -> Result<bool, ChatError> {
        if self.directory.knows_user(id) {
            return Ok(true);
        }
        let found = self.store.user(id).await?.is_some();
        if found {
            self.directory.add_user(id);
        }
        Ok(found)
    }

    /// Everyone with a block between them and `user`, either way (cached,
    /// as rosters are).
    pub async fn blocks_involving(&self, user: UserId) -> Result<Arc<HashSet<UserId>>, ChatError> {
        if let Some(set) = self.directory.blocks(user) {
            return Ok(set);
        }
        let mut loaded = self.load_blocks(&*self.store, &[user]).await?;
        Ok(loaded.remove(&user).unwrap_or_default())
    }

    /// Reads and caches the block sets of those of `users` not cached, in
    /// one query through `store`: the writer asks for a whole batch's
    /// senders at once, through its own connection, so that sets expiring
    /// (on a shared database they are trusted a few seconds) cost one
    /// round trip per batch, not one per sender.
    /// Returns the sets it read (cached unless a block changed meanwhile).
    pub async fn load_blocks(
        &self,
        store: &dyn Store,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Arc<HashSet<UserId>>>, ChatError> {
        self.check_caches(store).await?;
        let missing = uncached(users, |u| self.directory.blocks(u).is_some());
        if missing.is_empty() {
            return Ok(HashMap::new());
        }
        let generation = self.directory.blocks_generation();
        let pairs = store.blocks_involving(&missing).await?;
        let mut loaded = HashMap::with_capacity(missing.len());
        for &user in &missing {
            let set: HashSet<UserId> = pairs
                .iter()
                .filter_map(|&(a, b)| match (a == user, b == user) {
                    (true, _) => Some(b),
                    (_, true) => Some(a),
                    _ => None,
                })
                .collect();
            let set = Arc::new(set);
            self.directory.put_blocks(user, set.clone(), generation);
            loaded.insert(user, set);
        }
        Ok(loaded)
    }

    /// Refuses a write (a send, an edit, a reaction, a typing indicator)
    /// to a private conversation with a block between its two users.
    pub async fn check_not_blocked(&self, user: UserId, target: Target) -> Result<(), ChatError> {
        if let Target::Private(peer) = target {
            if peer != user && self.blocks_involving(user).await?.contains(&peer) {
                return Err(ChatError::Forbidden(
                    "a block between you and this user stops private messages".into(),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `user` takes part in `target`'s conversation (the peer
    /// exists; or the group exists and `user` is a member) and returns
    /// every participant, `user` included.
    pub async fn participants(
        &self,
        user: UserId,
        target: Target,
    ) -> Result<Vec<UserId>, ChatError> {
        match target {
            Target::Private(peer) => {
                if !self.user_exists(peer).await? {
                    return Err(ChatError::no_such_user(peer));
                }
                Ok(if peer == user {
                    vec![peer]
                } else {
                    vec![user, peer]
                })
            }
            Target::Group(g) => {
                let mut roster = self
                    .roster(g)
                    .await?
                    .ok_or_else(|| ChatError::no_such_group(g))?;
                if roster.role(user).is_none() && self.shared {
                    // Another node may have just added them: ask the
                    // database. The cached roster is replaced, not dropped:
                    // a non-member who keeps trying must not make everyone
                    // else's sends wait for it to be read again.
                    roster = self
                        .load_roster(g)
                        .await?
                        .ok_or_else(|| ChatError::no_such_group(g))?;
                }
                if roster.role(user).is_none() {
                    return Err(ChatError::not_a_member(g));
                }
                Ok(roster.ids().to_vec())
            }
        }
    }

    /// Reads and caches, in one query through `store`, the rosters of
    /// those of `groups` not cached: the writer asks for a whole batch's
    /// groups at once, through its own connection, so that rosters
    /// expiring (on a shared database they are trusted a few seconds) cost
    /// one round trip per batch, not two per group. A group the answer
    /// leaves out (unknown, deleted, empty) is left to
    /// [`participants`](Self::participants) to read and refuse.
    pub async fn load_rosters(
        &self,
        store: &dyn Store,
        groups: &[GroupId],
    ) -> Result<(), ChatError> {
        self.check_caches(store).await?;
        let missing = uncached(groups, |g| self.directory.roster(g).is_some());
        if missing.is_empty() {
            return Ok(());
        }
        let generation = self.directory.roster_generation();
        let members = store.rosters(&missing).await?;
        for group in members.chunk_by(|a, b| a.0 == b.0) {
            let roster = Roster::new(
                group
                    .iter()
                    .map(|(_, m)| (UserId::from_stored(m.user_id), m.role)),
            );
            self.directory
                .put_roster(group[0].0, Arc::new(roster), generation);
        }
        Ok(())
    }

    /// The group's roster (cached), or `None` for an unknown group.
    async fn roster(&self, group: GroupId) -> Result<Option<Arc<Roster>>, ChatError> {
        if let Some(r) = self.directory.roster(group) {
            return Ok(Some(r));
        }
        self.check_caches(&*self.store).await?;
        if let Some(r) = self.directory.roster(group) {
            return Ok(Some(r));
        }
        self.load_roster(group).await
    }

    /// Checks the cached rosters and block sets against the database's
    /// [`CacheVersions`](crate::store::CacheVersions) through `store`, when
    /// the last check is older than their max age (see [`Directory`]).
    async fn check_caches(&self, store: &dyn Store) -> Result<(), ChatError> {
        if !self.directory.check_due() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let versions = store.cache_versions().await?;
        self.directory.checked(started, versions);
        Ok(())
    }

    /// Reads the group's roster from the database and caches it (`None`
    /// for an unknown group).
    async fn load_roster(&self, group: GroupId) -> Result<Option<Arc<Roster>>, ChatError> {
        let generation = self.directory.roster_generation();
        if self.store.group(group).await?.is_none() {
            return Ok(None);
        }
        let members = self.store.members(group).await?;
        let roster = Arc::new(Roster::new(
            members
                .iter()
                .map(|m| (UserId::from_stored(m.user_id), m.role)),
        ));
        self.directory.put_roster(group, roster.clone(), generation);
        Ok(Some(roster))
    }
}
