//! The domain: validate → store → fan out.
//!
//! Both front doors (HTTP in `http/`, Socket.IO in `realtime/`) call these
//! functions with already-parsed input ([`input`]) and an authenticated user
//! id; this module decides who may do what, talks to the [`Store`], and
//! hands committed messages back to the transport through [`Respond`]. It
//! knows nothing of HTTP or Socket.IO.

mod coalesce;
mod directory;
mod error;
pub mod input;
pub mod presence;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;

use palaver_protocol::{ConversationSummary, Group, Member, MessagePage, Role, User};
use tokio::sync::mpsc;

pub use directory::Roster;
pub use error::ChatError;
pub use input::{GroupName, ListCursor, ListPage, Password, SendRequest, Target, Username};
pub use writer::{Respond, Sent, MAX_BATCH};

use crate::auth;
use crate::cluster::{Cluster, ROSTER_MAX_AGE};
use crate::store::{
    ConnectError, ConversationsPage, GroupId, Page, ReadOutcome, Store, StoreError, UserId,
};
use coalesce::Coalescer;
use directory::Directory;
use writer::{Job, Queued};

/// Longest a node trusts a cached roster on a MySQL/MariaDB or PostgreSQL
/// database without Redis, where other nodes sharing the database cannot
/// say when they change a group (in a cluster: [`ROSTER_MAX_AGE`]).
pub const SHARED_ROSTER_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends waiting for the writer, across all sockets. Beyond this a send is
/// refused with `unavailable` rather than queued without bound.
pub const SEND_QUEUE: usize = 16 * 1024;
/// Largest history page.
pub const MAX_PAGE: u32 = 200;
/// History page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;
/// Most members a group may have.
pub const MAX_GROUP_MEMBERS: usize = 1000;
/// Most conversations listed when no page is asked for (the v1 list).
pub const MAX_CONVERSATIONS: u32 = 1000;

/// What the writer and the request paths share.
pub(crate) struct Core {
    pub store: Box<dyn Store>,
    pub directory: Directory,
    pub presence: presence::Presence,
    pub settings: Settings,
    /// Whether other nodes may change groups in this node's database, so
    /// that a cached roster may be stale.
    pub shared: bool,
    /// Who else is online, across nodes (set by the Socket.IO side).
    pub online: std::sync::OnceLock<Arc<dyn OnlineLookup>>,
}

/// How the chat service runs.
#[derive(Clone)]
pub struct Settings {
    pub max_message_chars: usize,
    /// Messages per second per user (0: unlimited), checked cluster-wide
    /// by the writer when `cluster` is set.
    pub message_rate: u32,
    pub message_burst: u32,
    /// Least time between the starts of two batches (`--batch-interval-ms`).
    pub batch_interval: std::time::Duration,
    /// Set when this node is one of several (`--redis-url`).
    pub cluster: Option<Arc<Cluster>>,
}

/// Answers which of some users have a socket on any node.
pub trait OnlineLookup: Send + Sync {
    fn online(&self, users: Vec<UserId>) -> BoxFuture<'static, HashSet<UserId>>;
}

impl Core {
    async fn user_exists(&self, id: UserId) -> Result<bool, ChatError> {
        if self.directory.knows_user(id) {
            return Ok(true);
        }
        let found = self.store.user(id).await?.is_some();
        if found {
            self.directory.add_user(id);
        }
        Ok(found)
    }

    /// Checks that `user` takes part in `target`'s conversation (the peer
    /// exists; or the group exists and `user` is a member) and returns
    /// every participant, `user` included.
    async fn participants(&self, user: UserId, target: Target) -> Result<Vec<UserId>, ChatError> {
        match target {
            Target::Private(peer) => {
                if !self.user_exists(peer).await? {
                    return Err(ChatError::NotFound(format!("user {peer} does not exist")));
                }
                Ok(if peer == user {
                    vec![peer]
                } else {
                    vec![user, peer]
                })
            }
            Target::Group(g) => {
                let roster = self
                    .roster(g)
                    .await?
                    .ok_or_else(|| ChatError::NotFound(format!("group {g} does not exist")))?;
                let mut roster = roster;
                if roster.role(user).is_none() && self.shared {
                    // Another node may have just added them: ask the
                    // database. The cached roster is replaced, not dropped:
                    // a non-member who keeps trying must not make everyone
                    // else's sends wait for it to be read again.
                    roster = self
                        .load_roster(g)
                        .await?
                        .ok_or_else(|| ChatError::NotFound(format!("group {g} does not exist")))?;
                }
                if roster.role(user).is_none() {
                    return Err(ChatError::Forbidden(format!(
                        "you are not a member of group {g}"
                    )));
                }
                Ok(roster.ids().to_vec())
            }
        }
    }

    /// The group's roster (cached), or `None` for an unknown group.
    async fn roster(&self, group: GroupId) -> Result<Option<Arc<Roster>>, ChatError> {
        if let Some(r) = self.directory.roster(group) {
            return Ok(Some(r));
        }
        self.load_roster(group).await
    }

    /// Reads the group's roster from the database and caches it (`None`
    /// for an unknown group).
    async fn load_roster(&self, group: GroupId) -> Result<Option<Arc<Roster>>, ChatError> {
        let generation = self.directory.roster_generation();
        if self.store.group(group).await?.is_none() {
            return Ok(None);
        }
        let members = self.store.members(group).await?;
        let roster = Arc::new(Roster::new(members.iter().map(|m| (m.user_id, m.role))));
        self.directory.put_roster(group, roster.clone(), generation);
        Ok(Some(roster))
    }
}

/// Users waiting in each batching task (for their row at the handshake,
/// or for `last_seen` at a presence change), across all sockets.
const CHORE_QUEUE: usize = 4096;
/// Most users one batch of either task takes.
const CHORE_BATCH: usize = 256;

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

/// The chat service; cheap to clone.
#[derive(Clone)]
pub struct Chat {
    core: Arc<Core>,
    sends: mpsc::Sender<Queued>,
    /// To [`register_users`].
    registrations: Coalescer<UserId, ()>,
    /// To [`record_last_seen`]; answers the time recorded.
    last_seen: Coalescer<UserId, i64>,
    /// Set by [`Chat::drain`]: new sends are refused.
    closing: Arc<AtomicBool>,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Opens the writer's own store; polled on the writer's thread, so that its
/// connection belongs to the writer's runtime (`None`: the writer uses the
/// main store). See [`crate::store::connect_writer`].
pub type OpenWriterStore = BoxFuture<'static, Result<Option<Box<dyn Store>>, ConnectError>>;

impl Chat {
    /// Starts the service over `store`, and its writer on a thread of its
    /// own (a single-threaded runtime): with thousands of sockets the main
    /// runtime's queues delayed each of the writer's database round trips,
    /// and batches commit one at a time (BENCHMARKS.md, "The writer on its
    /// own thread"). Returns once the writer's store is open.
    pub async fn start(
        store: Box<dyn Store>,
        open_writer_store: OpenWriterStore,
        settings: Settings,
    ) -> Result<Self, ConnectError> {
        // On a database other nodes may share (MySQL/MariaDB, PostgreSQL;
        // with Redis or without) another node may change a group: cached
        // rosters expire. In a cluster, other nodes also say when they
        // change one, and rosters expire sooner; without Redis they are
        // trusted longer, as each reload of an active group's roster is two
        // queries on the writer's path.
        let shared = store.backend() != "sqlite" || settings.cluster.is_some();
        let max_age = match (&settings.cluster, shared) {
            (Some(_), _) => Some(ROSTER_MAX_AGE),
            (None, true) => Some(SHARED_ROSTER_MAX_AGE),
            (None, false) => None,
        };
        let core = Arc::new(Core {
            shared,
            store,
            directory: Directory::new(max_age),
            presence: presence::Presence::default(),
            settings,
            online: std::sync::OnceLock::new(),
        });
        let registrations = Coalescer::start(CHORE_QUEUE, CHORE_BATCH, {
            let core = core.clone();
            move |ids| register_users(core.clone(), ids)
        });
        let last_seen = Coalescer::start(CHORE_QUEUE, CHORE_BATCH, {
            let core = core.clone();
            move |users| record_last_seen(core.clone(), users)
        });
        let (sends, rx) = mpsc::channel(SEND_QUEUE);
        let (opened, ready) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ConnectError::Writer)?;
        let writer_core = core.clone();
        std::thread::Builder::new()
            .name("palaver-writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match open_writer_store.await {
                        Ok(own) => {
                            let _ = opened.send(Ok(()));
                            writer::run(writer_core, own, rx).await;
                        }
                        Err(e) => {
                            let _ = opened.send(Err(e));
                        }
                    }
                })
            })
            .map_err(ConnectError::Writer)?;
        match ready.await {
            Ok(Ok(())) => Ok(Chat {
                core,
                sends,
                registrations,
                last_seen,
                closing: Arc::default(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Writer(std::io::Error::other(
                "the writer thread stopped while starting",
            ))),
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.core.store
    }

    /// This node's link to the others, when it is one of several.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.core.settings.cluster.as_ref()
    }

    /// Drops a cached roster another node changed (`None`: all of them).
    pub fn forget_roster(&self, group: Option<GroupId>) {
        match group {
            Some(g) => self.core.directory.invalidate_roster(g),
            None => self.core.directory.forget_rosters(),
        }
    }

    /// Sets how online-ness is looked up across nodes (once).
    pub fn set_online_lookup(&self, lookup: Arc<dyn OnlineLookup>) {
        let _ = self.core.online.set(lookup);
    }

    /// Which of `users` are online: on this node, or (in a cluster) on any.
    async fn online_among(&self, users: Vec<UserId>) -> HashSet<UserId> {
        let (here, elsewhere): (Vec<UserId>, Vec<UserId>) = users
            .into_iter()
            .partition(|&u| self.core.presence.is_online(u));
        let mut online: HashSet<UserId> = here.into_iter().collect();
        if let (Some(lookup), false) = (self.core.online.get(), elsewhere.is_empty()) {
            online.extend(lookup.online(elsewhere).await);
        }
        online
    }

    /// Tells the other nodes that `group`'s members changed.
    async fn roster_changed(&self, group: GroupId) {
        self.core.directory.invalidate_roster(group);
        if let Some(cluster) = self.cluster() {
            cluster.roster_changed(group).await;
        }
    }

    pub fn max_message_chars(&self) -> usize {
        self.core.settings.max_message_chars
    }

    // ---- accounts -------------------------------------------------------

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
        self.core.directory.add_user(user.id);
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
            _ => Err(ChatError::Unauthorized(
                "invalid username or password".into(),
            )),
        }
    }

    /// Makes sure an authenticated user id has a user row (users named by
    /// application-minted tokens are created on first use).
    pub async fn ensure_user(&self, id: UserId) -> Result<(), ChatError> {
        if self.core.directory.knows_user(id) {
            return Ok(());
        }
        self.registrations.submit(id).await
    }

    pub async fn user(&self, id: UserId) -> Result<User, ChatError> {
        self.core
            .store
            .user(id)
            .await?
            .ok_or_else(|| ChatError::NotFound(format!("user {id} does not exist")))
    }

    /// A user as `viewer` may see them: whether they are online and when
    /// they were last seen only for themselves and for users who share a
    /// conversation with them (README, "presence").
    pub async fn user_seen_by(&self, viewer: UserId, id: UserId) -> Result<User, ChatError> {
        let mut user = self.user(id).await?;
        if viewer == id || self.core.store.share_a_conversation(viewer, id).await? {
            user.online = Some(self.online_among(vec![id]).await.contains(&id));
        } else {
            user.online = None;
            user.last_seen = None;
        }
        Ok(user)
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
        let at = self.last_seen.submit(user).await?;
        let contacts = self.core.store.contacts(user).await?;
        Ok((contacts, crate::store::from_ms(at)))
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

    // ---- groups ---------------------------------------------------------

    /// Creates a group owned by `owner` with the given other members.
    pub async fn create_group(
        &self,
        owner: UserId,
        name: GroupName,
        member_ids: Vec<UserId>,
    ) -> Result<Group, ChatError> {
        let mut members: Vec<UserId> = member_ids.into_iter().filter(|&m| m != owner).collect();
        members.sort_unstable();
        members.dedup();
        if members.len() + 1 > MAX_GROUP_MEMBERS {
            return Err(ChatError::TooLarge(format!(
                "a group has at most {MAX_GROUP_MEMBERS} members"
            )));
        }
        if let Some(&bad) = members.iter().find(|&&m| m <= 0) {
            return Err(ChatError::invalid(format!(
                "memberIds: {bad} is not a valid id"
            )));
        }
        let missing = self.core.store.missing_users(&members).await?;
        if let Some(m) = missing.first() {
            return Err(ChatError::NotFound(format!("user {m} does not exist")));
        }
        Ok(self
            .core
            .store
            .create_group(name.as_str(), owner, &members, now_ms())
            .await?)
    }

    pub async fn groups_of(&self, user: UserId) -> Result<Vec<Group>, ChatError> {
        Ok(self.core.store.groups_of(user).await?)
    }

    /// The group with its members, for a member.
    pub async fn group(&self, user: UserId, id: GroupId) -> Result<Group, ChatError> {
        let mut group = self
            .core
            .store
            .group(id)
            .await?
            .ok_or_else(|| ChatError::NotFound(format!("group {id} does not exist")))?;
        let members = self.core.store.members(id).await?;
        if !members.iter().any(|m| m.user_id == user) {
            return Err(ChatError::Forbidden(format!(
                "you are not a member of group {id}"
            )));
        }
        group.members = Some(members);
        Ok(group)
    }

    /// The caller's role in a group: `NotFound` for an unknown group,
    /// `Forbidden` for a non-member. Reads the database, not the cache, so
    /// that administrative decisions never act on a stale roster.
    async fn role_in(
        &self,
        user: UserId,
        group: GroupId,
    ) -> Result<(Role, Vec<Member>), ChatError> {
        if self.core.store.group(group).await?.is_none() {
            return Err(ChatError::NotFound(format!("group {group} does not exist")));
        }
        let members = self.core.store.members(group).await?;
        let role = members
            .iter()
            .find(|m| m.user_id == user)
            .map(|m| m.role)
            .ok_or_else(|| {
                ChatError::Forbidden(format!("you are not a member of group {group}"))
            })?;
        Ok((role, members))
    }

    /// Adds `user` to a group; the owner may add admins, admins members.
    pub async fn add_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
        role: Role,
    ) -> Result<Member, ChatError> {
        let (actor_role, members) = self.role_in(actor, group).await?;
        match (actor_role, role) {
            (_, Role::Owner) => {
                return Err(ChatError::invalid(
                    "a group has one owner; add as member or admin",
                ))
            }
            (Role::Owner, _) | (Role::Admin, Role::Member) => {}
            (Role::Admin, Role::Admin) => {
                return Err(ChatError::Forbidden("only the owner can add admins".into()))
            }
            (Role::Member, _) => {
                return Err(ChatError::Forbidden(
                    "only the group's owner or an admin can add members".into(),
                ))
            }
        }
        if members.len() >= MAX_GROUP_MEMBERS {
            return Err(ChatError::TooLarge(format!(
                "a group has at most {MAX_GROUP_MEMBERS} members"
            )));
        }
        if !self.core.user_exists(user).await? {
            return Err(ChatError::NotFound(format!("user {user} does not exist")));
        }
        let member = self
            .core
            .store
            .add_member(group, user, role, now_ms())
            .await;
        self.roster_changed(group).await;
        Ok(member?)
    }

    /// Removes `user` from a group: anyone may leave; the owner may remove
    /// anyone, an admin only plain members.
    pub async fn remove_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
    ) -> Result<(), ChatError> {
        let (actor_role, members) = self.role_in(actor, group).await?;
        if actor != user {
            // A plain member may remove no one: refused before looking the
            // target up, so the answer is the same whoever it names.
            if actor_role == Role::Member {
                return Err(ChatError::Forbidden(
                    "only the owner or an admin may remove members".into(),
                ));
            }
            let target = members
                .iter()
                .find(|m| m.user_id == user)
                .map(|m| m.role)
                .ok_or_else(|| {
                    ChatError::NotFound(format!("user {user} is not a member of group {group}"))
                })?;
            let allowed = match actor_role {
                Role::Owner => true,
                Role::Admin => target == Role::Member,
                Role::Member => false,
            };
            if !allowed {
                return Err(ChatError::Forbidden(
                    "not allowed to remove this member".into(),
                ));
            }
        }
        let result = self.core.store.remove_member(group, user).await;
        self.roster_changed(group).await;
        result.map_err(|e| match e {
            StoreError::NotFound => {
                ChatError::NotFound(format!("user {user} is not a member of group {group}"))
            }
            e => e.into(),
        })
    }

    // ---- messages -------------------------------------------------------

    /// Queues a send for the writer. Sends are committed, answered and
    /// delivered in the order they were queued. When the queue is full the
    /// send is answered `unavailable` at once.
    pub fn send(&self, req: SendRequest, respond: Box<dyn Respond>) {
        let job = Job {
            req,
            respond,
            queued: tokio::time::Instant::now(),
        };
        let refused = if self.closing.load(Ordering::Acquire) {
            Some((job, "server is shutting down, nothing was stored; retry"))
        } else {
            match self.sends.try_send(Queued::Send(job)) {
                Ok(()) => None,
                Err(
                    mpsc::error::TrySendError::Full(Queued::Send(job))
                    | mpsc::error::TrySendError::Closed(Queued::Send(job)),
                ) => Some((job, "server is busy, nothing was stored; retry")),
                Err(_) => None,
            }
        };
        if let Some((job, why)) = refused {
            tokio::spawn(job.respond.respond(Err(ChatError::Unavailable(why.into()))));
        }
    }

    /// For shutdown: refuses new sends and returns once every send queued
    /// before has been committed (or refused) and answered.
    pub async fn drain(&self) {
        self.closing.store(true, Ordering::Release);
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.sends.send(Queued::Barrier(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// A page of history (see `Page`); the limit is clamped to [`MAX_PAGE`].
    pub async fn history(
        &self,
        user: UserId,
        target: Target,
        mut page: Page,
    ) -> Result<MessagePage, ChatError> {
        self.core.participants(user, target).await?;
        page.limit = page.limit.clamp(1, MAX_PAGE);
        let (messages, has_more) = self
            .core
            .store
            .messages(target.conversation(user), page)
            .await?;
        Ok(MessagePage { messages, has_more })
    }

    /// Moves the user's read position forward to `seq`. Returns the position
    /// and, when it moved, the participants to tell.
    pub async fn mark_read(
        &self,
        user: UserId,
        target: Target,
        seq: i64,
    ) -> Result<(i64, Option<Vec<UserId>>), ChatError> {
        if seq < 0 {
            return Err(ChatError::invalid("seq must be ≥ 0"));
        }
        let participants = self.core.participants(user, target).await?;
        match self
            .core
            .store
            .mark_read(user, target.conversation(user), seq)
            .await?
        {
            ReadOutcome::Moved { read_seq, moved } => Ok((read_seq, moved.then_some(participants))),
            ReadOutcome::BeyondLast { last_seq } => Err(ChatError::invalid(format!(
                "seq {seq} is beyond the conversation's last message ({last_seq})"
            ))),
        }
    }

    /// Who a typing indicator goes to: the other participants.
    pub async fn typing_recipients(
        &self,
        user: UserId,
        target: Target,
    ) -> Result<Vec<UserId>, ChatError> {
        let mut others = self.core.participants(user, target).await?;
        others.retain(|&u| u != user);
        Ok(others)
    }

    /// A page of the user's conversations, most recent first, and the
    /// cursor of the next page when more follow. Without a page: the v1
    /// list, the first [`MAX_CONVERSATIONS`].
    pub async fn conversations(
        &self,
        user: UserId,
        page: Option<ListPage>,
    ) -> Result<(Vec<ConversationSummary>, Option<ListCursor>), ChatError> {
        let page = page.map_or(
            ConversationsPage {
                after: None,
                limit: MAX_CONVERSATIONS,
            },
            ListPage::store_page,
        );
        let (mut list, next) = self.core.store.conversations(user, page).await?;
        let private = |c: &ConversationSummary| {
            c.conversation_type == palaver_protocol::ConversationType::Private
        };
        let peers = list.iter().filter(|c| private(c)).map(|c| c.receiver_id);
        let online = self.online_among(peers.collect()).await;
        for c in list.iter_mut().filter(|c| private(c)) {
            c.online = Some(online.contains(&c.receiver_id));
        }
        Ok((list, next.map(ListCursor)))
    }
}
