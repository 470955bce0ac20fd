//! Storage: every SQL statement Palaver runs lives below this module.
//!
//! The storage traits are the one interface the domain (`chat`) uses, one
//! per resource ([`UserStore`], [`GroupStore`], [`MessageStore`],
//! [`ConversationStore`]) and [`Store`] over them all. One SQL
//! implementation (`sql/`) runs on every backend with runtime queries
//! (`query_as` + `bind`), so building needs no live database; the backend
//! files (`sqlite.rs`, `mysql.rs`, `postgres.rs`) open the pool and apply
//! their migrations, and `connect.rs` picks one from the URL scheme
//! ([`connect`]). Driver errors become [`StoreError`] in `error.rs`, so
//! the layers above never look at a driver error. Ids, conversation keys
//! and pages are the crate's ([`crate::ids`]), taken as already parsed;
//! `sql/rows.rs` binds ids as the integers they are. The store owns the
//! batch limit ([`MAX_BATCH`]): its statements are sized for it, and the
//! writer in `chat` takes it from here.

mod connect;
mod error;
mod mysql;
mod pool;
mod postgres;
mod seqs;
mod sql;
mod sqlite;
#[cfg(test)]
mod tests;

pub use connect::{connect, connect_writer, probe, Probe, WRITER_STATEMENT_CACHE};
pub use error::{ConnectError, StoreError};
pub use pool::{PoolOptions, PoolState};
pub use seqs::SeqCache;

use async_trait::async_trait;
use palaver_protocol::{
    ConversationSummary, Group, Member, Message, ReplyTo, Role, SystemChange, User,
};

use crate::ids::{ActivityKey, ConversationKey, ConversationsPage, GroupId, Page, UserId};

/// Most messages committed in one batch: the writer's largest batch, and
/// the rows of one multi-row statement (256 rows of 10 columns is 2,560
/// bound parameters, far below every backend's limit), so a batch's insert
/// is one or two statements.
pub const MAX_BATCH: usize = 256;

/// Every storage trait, to call their methods on a concrete store (a
/// `dyn Store` needs no import: a trait object has its supertraits' methods).
pub mod prelude {
    pub use super::{
        ConversationStore, CredentialStore, GroupStore, MessageStore, Store, UserStore,
    };
}

/// A message to insert. Authorization has already happened.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender_id: UserId,
    pub conversation: ConversationKey,
    /// As sent: the other user or the group.
    pub receiver_id: i64,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at_ms: i64,
    /// The message it answers, as the writer read it (v1.2).
    pub reply_to: Option<ReplyTo>,
    /// Group members it mentions, distinct, checked to be members (v1.2).
    pub mentions: Vec<UserId>,
    /// For a system message, the group change it records (v1.2).
    pub system: Option<SystemChange>,
}

/// The result of inserting one message of a batch.
#[derive(Debug, Clone)]
pub struct Inserted {
    pub message: Message,
    /// False when `client_msg_id` matched an earlier message, which is
    /// returned instead and must not be delivered again.
    pub fresh: bool,
}

/// A change to a stored message (v1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageChange {
    /// New content; sets `edited_at`.
    Edit(String),
    /// Makes it a tombstone: content `""`, `deleted_at` set, its
    /// reactions and mentions gone.
    Delete,
    /// Adds (`on`) or removes `user`'s reaction with `emoji`.
    React {
        user: UserId,
        emoji: String,
        on: bool,
    },
}

/// Most distinct emoji on one message (v1.2).
pub const MAX_REACTIONS: i64 = 20;

/// What [`MessageStore::change_message`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Applied; the message as it now is (reactions read for the reactor
    /// after a reaction, else not read).
    Changed(Box<Message>),
    /// Nothing to do: the reaction was already there, or already gone.
    Unchanged,
    /// No such message, or it is deleted: nothing changed.
    Gone,
    /// A new emoji on a message that has [`MAX_REACTIONS`] already.
    TooManyReactions,
}

/// What a read receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The position is now `read_seq`; `moved` if it went forward.
    Moved { read_seq: i64, moved: bool },
    /// `seq` is beyond the conversation's last message.
    BeyondLast { last_seq: i64 },
}

/// Everything Palaver stores: one storage per resource, and what belongs
/// to none. The domain holds a `Box<dyn Store>` and calls every resource's
/// methods on it; each backend's implementation is one file per trait.
#[async_trait]
pub trait Store:
    UserStore + CredentialStore + GroupStore + MessageStore + ConversationStore + Send + Sync + 'static
{
    /// `sqlite`, `mysql` or `postgres`, for the start-up line and `/healthz`.
    fn backend(&self) -> &'static str;

    /// Cheap round trip to the database.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The connection pool's state now, for the metrics.
    fn pool_state(&self) -> PoolState;

    /// Returns the stored value of `key`, storing `candidate` first if the
    /// key is unset. Every node sharing the database gets the same answer.
    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError>;

    /// The versions cached rosters and block sets are checked against, in
    /// one query (on the writer's store, on its own connection).
    async fn cache_versions(&self) -> Result<CacheVersions, StoreError>;
}

/// Values written anew, in the same transaction, by every change to
/// blocks ([`UserStore::set_block`]) and to groups' members, roles or
/// existence ([`GroupStore::change_group`]): a node that caches either
/// reads them to learn whether another node changed anything since it
/// last looked (`chat::directory`). `None` until the first such change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheVersions {
    pub blocks: Option<String>,
    pub groups: Option<String>,
}

/// What every token of a user is checked against (v1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenState {
    /// Tokens issued at an earlier generation are revoked.
    pub generation: i64,
    /// When the generation was last bumped, Unix ms (0: never): tokens
    /// without a generation (minted by applications) issued before the
    /// start of that second are revoked.
    pub revoked_at_ms: i64,
    pub disabled: bool,
    /// Ids of the user's tokens logged out one by one, not yet expired.
    pub revoked: Vec<i64>,
}

/// A change to a user's credentials; each revokes every token issued
/// before it (bumps the token generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChange {
    /// Logs out everywhere.
    RevokeAll,
    /// A new password hash.
    Password(String),
    /// Disables (`true`) or enables the account.
    Disabled(bool),
}

/// What the change log says changed (every node polls it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedChange {
    /// A user's credentials: drop their token state, re-check their sockets.
    Credentials(UserId),
    /// A group's members, changed outside a server (`palaver admin`).
    Roster(GroupId),
}

/// Token generations, revoked tokens, disabled accounts, and the change
/// log that every node polls (v1.3).
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The token states of those of `users` that exist (at most
    /// `MAX_BATCH` users: the handshakes that wait together).
    async fn token_states(
        &self,
        users: &[UserId],
        now_ms: i64,
    ) -> Result<Vec<(UserId, TokenState)>, StoreError>;

    /// One user's token state; `None`: no such user.
    async fn token_state(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> Result<Option<TokenState>, StoreError> {
        let mut states = self.token_states(&[user], now_ms).await?;
        Ok(states.pop().map(|(_, state)| state))
    }

    /// The user's password hash (`Some(None)`: a user without one).
    async fn password_hash(&self, user: UserId) -> Result<Option<Option<String>>, StoreError>;

    /// Revokes the token `jti` of `user` until `expires_at_ms`.
    async fn revoke_token(
        &self,
        user: UserId,
        jti: i64,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Applies `change` and bumps the token generation in one transaction;
    /// the new generation, or `None` for an unknown user. Disabling a
    /// disabled account or enabling an enabled one changes nothing (the
    /// generation as it is).
    async fn change_credentials(
        &self,
        user: UserId,
        change: &CredentialChange,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// The change log after position `after`, oldest first (at most
    /// `limit`): `(position, change)`.
    async fn logged_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, LoggedChange)>, StoreError>;

    /// The last position of the change log (0 when empty).
    async fn last_logged_change(&self) -> Result<i64, StoreError>;

    /// Records in the change log that `group`'s members changed.
    async fn log_roster_change(&self, group: GroupId, now_ms: i64) -> Result<(), StoreError>;

    /// Forgets log entries from before `changes_before_ms` and revoked
    /// tokens that have expired by `now_ms`.
    async fn prune_credentials(
        &self,
        changes_before_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError>;
}

/// Users: accounts, lookups and who shares a conversation with whom.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Registers a user. `Conflict` if the username (case-insensitively) is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<User, StoreError>;

    /// Makes sure user `id` exists, creating `user<id>` if not (first use of
    /// an application-minted token).
    async fn ensure_user(&self, id: UserId, now_ms: i64) -> Result<(), StoreError>;

    /// [`ensure_user`](UserStore::ensure_user) for many users in a few
    /// statements: creates `user<id>` for each of `ids` that does not
    /// exist, and returns those still missing because that name is taken
    /// (for `ensure_user` to name one by one).
    async fn ensure_users(&self, ids: &[UserId], now_ms: i64) -> Result<Vec<UserId>, StoreError>;

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;

    /// The user and password hash for a login (case-insensitive username).
    async fn credentials(
        &self,
        username: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError>;

    /// Users by id after `after`, at most `limit` (`palaver admin`), each
    /// with whether it is disabled.
    async fn list_users(&self, after: i64, limit: u32) -> Result<Vec<(User, bool)>, StoreError>;

    /// Users whose username starts with `prefix` (case-insensitive), by username.
    async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<User>, StoreError>;

    /// Records that `users` were last seen online at `ms`.
    async fn set_last_seen(&self, users: &[UserId], ms: i64) -> Result<(), StoreError>;

    /// Everyone who shares a conversation with `user` (private peers and
    /// fellow group members), without `user`.
    async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError>;

    /// Whether `a` and `b` share a conversation: a private one with a
    /// message in it, or a group both are members of.
    async fn share_a_conversation(&self, a: UserId, b: UserId) -> Result<bool, StoreError>;

    /// Of `ids`, those that are not users.
    async fn missing_users(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError>;

    /// Makes `blocker` block `blocked` (`on`) or not; a repeat changes
    /// nothing (v1.2).
    async fn set_block(
        &self,
        blocker: UserId,
        blocked: UserId,
        on: bool,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The users `user` blocks, by username.
    async fn blocked_by(&self, user: UserId) -> Result<Vec<User>, StoreError>;

    /// Every block with one of `users` on either side, as `(blocker,
    /// blocked)`.
    async fn blocks_involving(&self, users: &[UserId])
        -> Result<Vec<(UserId, UserId)>, StoreError>;
}

/// Groups and their members. A member who left (or was removed) keeps a
/// row with the seq of the system message of their departure, which
/// bounds the history they may read; a deleted group keeps its row. Neither
/// is a member or a group to any method but [`GroupStore::departed_at`].
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates a group owned by `owner` with `members` (users known to exist,
    /// not including the owner) and its conversation.
    async fn create_group(
        &self,
        name: &str,
        owner: UserId,
        members: &[UserId],
        now_ms: i64,
    ) -> Result<Group, StoreError>;

    /// The group without members, or `None` (also once deleted).
    async fn group(&self, id: GroupId) -> Result<Option<Group>, StoreError>;

    /// Groups by id after `after`, at most `limit`, deleted ones too, each
    /// with its number of members (`palaver admin`).
    async fn list_groups(&self, after: i64, limit: u32) -> Result<Vec<(Group, i64)>, StoreError>;

    /// The groups `user` belongs to, newest first.
    async fn groups_of(&self, user: UserId) -> Result<Vec<Group>, StoreError>;

    /// The members of a group, by join time; empty for an unknown group.
    async fn members(&self, group: GroupId) -> Result<Vec<Member>, StoreError>;

    /// The members of each of `groups` that exists, as `(group, member)`,
    /// by group and join time, in one query (per few hundred groups): the
    /// writer reads a batch's expired rosters at once. A group left out is
    /// unknown, deleted, or has no members.
    async fn rosters(&self, groups: &[GroupId]) -> Result<Vec<(GroupId, Member)>, StoreError>;

    /// Where `user`'s membership of `group` ended (the seq of the system
    /// message of their departure, or of the group's deletion), if they
    /// were a member and are not.
    async fn departed_at(&self, group: GroupId, user: UserId) -> Result<Option<i64>, StoreError>;

    /// Applies a change to a group and inserts its system message `system`
    /// with the conversation's next seq (from `seqs`, as a writer batch
    /// does), in one transaction, unless the group is gone or the change
    /// changes nothing ([`GroupOutcome`]). Whether it is allowed is the
    /// caller's to decide beforehand. `Retryable` when another writer won
    /// the seq.
    async fn change_group(
        &self,
        group: GroupId,
        change: &GroupChange,
        system: &NewMessage,
        seqs: &mut SeqCache,
    ) -> Result<GroupOutcome, StoreError>;
}

/// A change to a group (v1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// Adds `user` (or adds them back) with `role`; their read position
    /// starts before the system message.
    Add {
        user: UserId,
        role: Role,
    },
    /// `user` leaves or is removed.
    Remove {
        user: UserId,
    },
    Rename(String),
    /// Gives a member other than the owner a role.
    SetRole {
        user: UserId,
        role: Role,
    },
    /// Makes member `user` the owner; the owner becomes an admin.
    Owner {
        user: UserId,
    },
    /// Deletes the group: every member departs at its system message.
    Delete,
}

/// What [`GroupStore::change_group`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Applied; the system message inserted.
    Changed(Box<Message>),
    /// Nothing to change (the name, the role or the owner is already so).
    Unchanged,
    /// `Add` of a member.
    AlreadyMember,
    /// The user the change names is not a member.
    NotMember,
    /// No such group, or it is deleted.
    Gone,
}

/// Messages: the writer's batches and a conversation's history.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Inserts a batch in one transaction, allocating each conversation's
    /// next `seq` inside it, from what `seqs` remembers where it can (see
    /// [`SeqCache`]). The outer error fails the whole batch (nothing
    /// committed); inner errors are per message (`Conflict` for a reused
    /// `client_msg_id` with different content).
    async fn insert_messages(
        &self,
        batch: &[NewMessage],
        seqs: &mut SeqCache,
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError>;

    /// The message at `seq` of a conversation, or `None`; with `viewer`,
    /// its reactions as that user sees them.
    async fn message_at(
        &self,
        conversation: ConversationKey,
        seq: i64,
        viewer: Option<UserId>,
    ) -> Result<Option<Message>, StoreError>;

    /// Applies `change` to the message at `seq` unless it is deleted, and
    /// stamps it with the conversation's next change position, in one
    /// transaction (see [`ChangeOutcome`]). Whether the change is allowed
    /// is the caller's to decide beforehand.
    async fn change_message(
        &self,
        conversation: ConversationKey,
        seq: i64,
        change: &MessageChange,
        now_ms: i64,
    ) -> Result<ChangeOutcome, StoreError>;

    /// A page of a conversation, ascending by seq (or, for a page of
    /// changes, by `change_seq`), and whether more exist beyond it in the
    /// paging direction; reactions as `viewer` sees them.
    async fn messages(
        &self,
        conversation: ConversationKey,
        page: Page,
        viewer: UserId,
    ) -> Result<(Vec<Message>, bool), StoreError>;
}

/// Conversations: read positions and the conversation list.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Moves `user`'s read position in a conversation forward to `seq`.
    /// The position is never below the seq of the user's own last message
    /// there: sending reads up to the message sent.
    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationKey,
        seq: i64,
    ) -> Result<ReadOutcome, StoreError>;

    /// A page of the user's conversations (private ones with messages, and
    /// every group they belong to), most recent first, with the peer's
    /// username or the group's name, the user's read position (never below
    /// their own last message) and unread count (messages after it). The
    /// key is the place of the page's last row when more rows follow.
    async fn conversations(
        &self,
        user: UserId,
        page: ConversationsPage,
    ) -> Result<(Vec<ConversationSummary>, Option<ActivityKey>), StoreError>;
}

/// Converts stored milliseconds to the wire time type.
pub fn from_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
