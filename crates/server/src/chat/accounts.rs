//! Accounts: registering and logging in, user rows made on first use (the
//! connection-time chores, batched across handshakes), who sees whose
//! presence, and the user directory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use palaver_protocol::User;

use super::coalesce::Coalescer;
use super::core::{now_ms, Core};
use super::{presence, Chat, ChatError, Password, Username};
use crate::auth;
use crate::ids::UserId;
use crate::store::{StoreError, TokenState};

/// Users waiting in each batching task (for their row at the handshake,
/// or for `last_seen` at a presence change), across all sockets.
const CHORE_QUEUE: usize = 4096;
/// Most users one batch of either task takes.
const CHORE_BATCH: usize = 256;

/// The connection-time chores, each a task that batches what waits for it.
pub(super) struct Chores {
    /// To [`register_users`].
    pub registrations: Coalescer<UserId, ()>,
    /// To [`record_last_seen`]; answers the time recorded.
    pub last_seen: Coalescer<UserId, i64>,
    /// To `credentials::load_token_states`: each user's token state
    /// (`None`: no such user yet), cached.
    pub token_states: Coalescer<UserId, Option<Arc<TokenState>>>,
}

impl Chores {
    pub fn start(core: &Arc<Core>) -> Self {
        let registrations = Coalescer::start(CHORE_QUEUE, CHORE_BATCH, {
            let core = core.clone();
            move |ids| register_users(core.clone(), ids)
        });
        let last_seen = Coalescer::start(CHORE_QUEUE, CHORE_BATCH, {
            let core = core.clone();
            move |users| record_last_seen(core.clone(), users)
        });
        let token_states = Coalescer::start(CHORE_QUEUE, CHORE_BATCH, {
            let core = core.clone();
            move |users| super::credentials::load_token_states(core.clone(), users)
        });
        Chores {
            registrations,
            last_seen,
            token_states,
        }
    }
}

/// Makes sure the users of handshakes that wait together exist, in a few
/// statements for all of them (one read when all exist). With one user at
/// a time, 15,000 clients connecting at once took 9.3 s, and 2.9 s with
/// the check left out entirely (BENCHMARKS.md, "A longer accept queue;
/// connects checked together").
async fn register_users(core: Arc<Core>, ids: Vec<UserId>) -> Vec<Result<(), ChatError>> {
    let mut unknown: Vec<UserId> = ids
        .iter()
        .copied()
        .filter(|&id| !core.directory.knows_user(id))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    let now = now_ms();
    let unnamed = match core.store.ensure_users(&unknown, now).await {
        Ok(unnamed) => unnamed,
        Err(e) => {
            let e = ChatError::from(e);
            return ids.iter().map(|_| Err(e.clone())).collect();
        }
    };
    // `user<id>` is someone's chosen name: one by one, with a suffix.
    let mut failed = HashMap::new();
    for id in unnamed {
        if let Err(e) = core.store.ensure_user(id, now).await {
            failed.insert(id, ChatError::from(e));
        }
    }
    for &id in &unknown {
        if !failed.contains_key(&id) {
            core.directory.add_user(id);
        }
    }
    ids.iter()
        .map(|id| failed.get(id).cloned().map_or(Ok(()), Err))
        .collect()
}

/// Records `last_seen` = now for the users whose presence changed
/// together, in one statement. One statement each made the database the
/// bottleneck of a reconnect storm (BENCHMARKS.md, "A longer accept
/// queue; connects checked together").
async fn record_last_seen(core: Arc<Core>, users: Vec<UserId>) -> Vec<Result<i64, ChatError>> {
    let mut distinct = users.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let now = now_ms();
    let outcome = core
        .store
        .set_last_seen(&distinct, now)
        .await
        .map(|()| now)
        .map_err(ChatError::from);
    users.iter().map(|_| outcome.clone()).collect()
}

impl Chat {
    /// Registers a user with a password.
    pub async fn register(
        &self,
        username: Username,
        password: Password,
    ) -> Result<User, ChatError> {
        let hash = auth::hash_password(password.as_str().to_string()).await;
        let user = self
            .core
            .store
            .create_user(username.as_str(), &hash, now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ChatError::Conflict("username is taken".into()),
                e => e.into(),
            })?;
        self.core.directory.add_user(UserId::from_stored(user.id));
        Ok(user)
    }

    /// Checks a username and password.
    pub async fn login(&self, username: &str, password: &str) -> Result<User, ChatError> {
        // A name no user can have is unknown without asking the database
        // (which may refuse it, as PostgreSQL refuses NUL); the dummy hash
        // below still runs, so it answers like any unknown name.
        let found = match Username::parse(username) {
            Ok(_) => self.core.store.credentials(username).await?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        let ok = auth::verify_password(hash, password.to_string()).await;
        match user {
            Some(user) if ok => Ok(user),
            _ => Err(ChatError::bad_credentials()),
        }
    }

    /// Makes sure an authenticated user id has a user row (users named by
    /// application-minted tokens are created on first use).
    pub async fn ensure_user(&self, id: UserId) -> Result<(), ChatError> {
        if self.core.directory.knows_user(id) {
            return Ok(());
        }
        self.chores.registrations.submit(id).await
    }

    pub async fn user(&self, id: UserId) -> Result<User, ChatError> {
        self.core
            .store
            .user(id)
            .await?
            .ok_or_else(|| ChatError::no_such_user(id))
    }

    /// A user as `viewer` may see them: whether they are online and when
    /// they were last seen only for themselves and for users who share a
    /// conversation with them (README, "presence").
    pub async fn user_seen_by(&self, viewer: UserId, id: UserId) -> Result<User, ChatError> {
        let mut user = self.user(id).await?;
        let blocked = self.core.blocks_involving(viewer).await?.contains(&id);
        if viewer == id || (!blocked && self.core.store.share_a_conversation(viewer, id).await?) {
            user.online = Some(self.online_among(vec![id]).await.contains(&id));
        } else {
            user.online = None;
            user.last_seen = None;
        }
        Ok(user)
    }

    /// Which of `users` are online: on this node, or (in a cluster) on any.
    pub(super) async fn online_among(&self, users: Vec<UserId>) -> HashSet<UserId> {
        let (here, elsewhere): (Vec<UserId>, Vec<UserId>) = users
            .into_iter()
            .partition(|&u| self.core.presence.is_online(u));
        let mut online: HashSet<UserId> = here.into_iter().collect();
        if let (Some(lookup), false) = (self.core.online.get(), elsewhere.is_empty()) {
            online.extend(lookup.online(elsewhere).await);
        }
        online
    }

    /// The presence table.
    pub fn presence(&self) -> &presence::Presence {
        &self.core.presence
    }

    /// Records a presence change (`last_seen` = now) and returns who should
    /// hear of it, with the time.
    pub async fn presence_changed(
        &self,
        user: UserId,
    ) -> Result<(Vec<UserId>, chrono::DateTime<chrono::Utc>), ChatError> {
        let at = self.chores.last_seen.submit(user).await?;
        let mut contacts = self.core.store.contacts(user).await?;
        // No one to tell, no block to look up: most connections of a
        // reconnect storm or a new user's first one.
        if !contacts.is_empty() {
            let blocks = self.core.blocks_involving(user).await?;
            contacts.retain(|c| !blocks.contains(c));
        }
        Ok((contacts, crate::store::from_ms(at)))
    }

    /// Makes `user` block `other` (`on`) or not (v1.2). Blocking oneself
    /// is refused; a repeat changes nothing.
    pub async fn set_block(&self, user: UserId, other: UserId, on: bool) -> Result<(), ChatError> {
        if on {
            if other == user {
                return Err(ChatError::invalid("you cannot block yourself"));
            }
            if !self.core.user_exists(other).await? {
                return Err(ChatError::no_such_user(other));
            }
        }
        self.core
            .store
            .set_block(user, other, on, super::core::now_ms())
            .await?;
        self.core.directory.invalidate_blocks(user, other);
        if let Some(cluster) = &self.core.settings.cluster {
            cluster.blocks_changed(user, other).await;
        }
        Ok(())
    }

    /// The users `user` blocks.
    pub async fn blocks(&self, user: UserId) -> Result<Vec<User>, ChatError> {
        Ok(self.core.store.blocked_by(user).await?)
    }

    /// Users whose name starts with `prefix`. A prefix with a character no
    /// username has (registered names are [`Username`]s, minted ones
    /// `user<id>`) matches nobody and is not sent to the database, which
    /// may not store it at all (PostgreSQL refuses NUL).
    /// The directory shows names only: no presence, whoever asks.
    pub async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<User>, ChatError> {
        if prefix.is_empty() {
            return Err(ChatError::invalid(
                "`q` must be a username prefix of at least one character",
            ));
        }
        if !prefix.chars().all(Username::allowed_char) {
            return Ok(Vec::new());
        }
        let mut users = self.core.store.search_users(prefix, limit).await?;
        for u in &mut users {
            u.online = None;
            u.last_seen = None;
        }
        Ok(users)
    }
}
