//! Storage: every SQL statement Palaver runs lives below this module.
//!
//! [`Store`] is the one interface the domain (`chat`) uses; each backend
//! implements it with runtime queries (`query_as` + `bind`), so building
//! needs no live database. The backend is chosen from the URL scheme
//! ([`connect`]). Errors are classified into [`StoreError`] here, so the
//! layers above never look at a driver error.

mod mysql;
mod postgres;
mod seqs;
mod sql;
mod sqlite;

pub use seqs::SeqCache;

use std::time::Duration;

use async_trait::async_trait;
use palaver_protocol::{ConversationSummary, Group, Member, Message, Role, User};

/// A user id.
pub type UserId = i64;
/// A group id.
pub type GroupId = i64;

/// Which conversation: the private pair or the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversationKey {
    /// Unordered pair; constructed with [`ConversationKey::private`] so that
    /// `lo <= hi`.
    Private {
        lo: UserId,
        hi: UserId,
    },
    Group(GroupId),
}

impl ConversationKey {
    pub fn private(a: UserId, b: UserId) -> Self {
        ConversationKey::Private {
            lo: a.min(b),
            hi: a.max(b),
        }
    }

    /// Private or group.
    pub fn kind(&self) -> palaver_protocol::ConversationType {
        match self {
            ConversationKey::Private { .. } => palaver_protocol::ConversationType::Private,
            ConversationKey::Group(_) => palaver_protocol::ConversationType::Group,
        }
    }

    /// The unique text key stored in `conversations.conv_key`.
    pub fn db_key(&self) -> String {
        match self {
            ConversationKey::Private { lo, hi } => format!("p:{lo}:{hi}"),
            ConversationKey::Group(g) => format!("g:{g}"),
        }
    }
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
}

/// The result of inserting one message of a batch.
#[derive(Debug, Clone)]
pub struct Inserted {
    pub message: Message,
    /// False when `client_msg_id` matched an earlier message, which is
    /// returned instead and must not be delivered again.
    pub fresh: bool,
}

/// What a read receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The position is now `read_seq`; `moved` if it went forward.
    Moved { read_seq: i64, moved: bool },
    /// `seq` is beyond the conversation's last message.
    BeyondLast { last_seq: i64 },
}

/// Which slice of a conversation's history to read.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A conversation's place in the conversation list, most recent first:
/// the id of its last message (0 without messages), then its own id.
/// Message ids are unique, so no two conversations share a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActivityKey {
    pub last_message_id: i64,
    pub conversation_id: i64,
}

/// Which slice of a user's conversation list to read.
#[derive(Debug, Clone, Copy)]
pub struct ConversationsPage {
    /// Only conversations after this place (below it in the order).
    pub after: Option<ActivityKey>,
    pub limit: u32,
}

/// Storage failures, classified once for the layers above.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was hit; the text says which.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is timing out: nothing was stored.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Deadlock, serialization failure or lost race: retrying the whole
    /// transaction is expected to succeed.
    #[error("transient database conflict: {0}")]
    Retryable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

/// Everything Palaver stores.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite`, `mysql` or `postgres`, for the start-up line and `/healthz`.
    fn backend(&self) -> &'static str;

    /// Cheap round trip to the database.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Returns the stored value of `key`, storing `candidate` first if the
    /// key is unset. Every node sharing the database gets the same answer.
    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError>;

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

    /// [`ensure_user`](Store::ensure_user) for many users in a few
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

    /// Creates a group owned by `owner` with `members` (users known to exist,
    /// not including the owner) and its conversation.
    async fn create_group(
        &self,
        name: &str,
        owner: UserId,
        members: &[UserId],
        now_ms: i64,
    ) -> Result<Group, StoreError>;

    /// The group without members, or `None`.
    async fn group(&self, id: GroupId) -> Result<Option<Group>, StoreError>;

    /// The groups `user` belongs to, newest first.
    async fn groups_of(&self, user: UserId) -> Result<Vec<Group>, StoreError>;

    /// The members of a group, by join time; empty for an unknown group.
    async fn members(&self, group: GroupId) -> Result<Vec<Member>, StoreError>;

    /// Adds a member, whose read position starts at the group's latest
    /// message (earlier history is readable but not unread). `Conflict` if
    /// already a member.
    async fn add_member(
        &self,
        group: GroupId,
        user: UserId,
        role: Role,
        now_ms: i64,
    ) -> Result<Member, StoreError>;

    /// Removes a member; `NotFound` if not a member. When the owner leaves,
    /// ownership passes to the longest-standing admin, else member.
    async fn remove_member(&self, group: GroupId, user: UserId) -> Result<(), StoreError>;

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

    /// Moves `user`'s read position in a conversation forward to `seq`.
    /// The position is never below the seq of the user's own last message
    /// there: sending reads up to the message sent.
    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationKey,
        seq: i64,
    ) -> Result<ReadOutcome, StoreError>;

    /// A page of a conversation, ascending by seq, and whether more exist
    /// beyond it in the paging direction.
    async fn messages(
        &self,
        conversation: ConversationKey,
        page: Page,
    ) -> Result<(Vec<Message>, bool), StoreError>;

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

/// Pool settings common to every backend.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// Opens the store named by `url`'s scheme and applies its migrations.
pub async fn connect(url: &str, pool: &PoolOptions) -> Result<Box<dyn Store>, ConnectError> {
    Ok(Box::new(connect_sql(url, pool).await?))
}

async fn connect_sql(url: &str, pool: &PoolOptions) -> Result<sql::SqlStore, ConnectError> {
    sqlx::any::install_default_drivers();
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => sqlite::connect(url, pool).await,
        "mysql" | "mariadb" => mysql::connect(url, pool).await,
        "postgres" | "postgresql" => postgres::connect(url, pool).await,
        _ => Err(ConnectError::Unsupported(format!(
            "unknown database URL scheme {scheme:?}; expected sqlite://, mysql:// or postgres://"
        ))),
    }
}

/// Prepared statements the writer's connection keeps: one insert per batch
/// size up to the largest batch, on MySQL (no `RETURNING`) one read-back
/// per size as well, and room for the few others it runs.
pub const WRITER_STATEMENT_CACHE: usize = 3 * crate::chat::MAX_BATCH;

/// Opens the message writer's own connection (see `chat::writer`). For a
/// networked database this is a second pool of one connection, opened on
/// the writer's thread, so that the writer's round trips are driven by the
/// writer's own runtime and do not wait behind the sockets' tasks, and
/// kept by the writer between batches (`SqlStore::for_writer` in `sql.rs`).
/// `None` for SQLite: its connections already run on threads of their own,
/// and the writer shares the main pool.
pub async fn connect_writer(
    url: &str,
    acquire_timeout: Duration,
) -> Result<Option<Box<dyn Store>>, ConnectError> {
    if url.starts_with("sqlite:") {
        return Ok(None);
    }
    let pool = PoolOptions {
        max_connections: 1,
        acquire_timeout,
    };
    // A statement cache set in the URL is left as it is.
    let url = if url.contains("statement-cache-capacity=") {
        url.to_string()
    } else {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}statement-cache-capacity={WRITER_STATEMENT_CACHE}")
    };
    let store = connect_sql(&url, &pool).await?.for_writer();
    Ok(Some(Box::new(store)))
}

/// Opens a pool for a networked database. One plain connection is made
/// first so that an unreachable server is reported with its real cause
/// ("connection refused", "unknown database"), not as a pool timeout.
pub(crate) async fn open_pool(
    url: &str,
    pool: &PoolOptions,
) -> Result<sqlx::AnyPool, ConnectError> {
    use sqlx::Connection;
    let probe = tokio::time::timeout(
        pool.acquire_timeout.max(Duration::from_secs(5)),
        sqlx::AnyConnection::connect(url),
    )
    .await
    .map_err(|_| ConnectError::connect(url, sqlx::Error::PoolTimedOut))?
    .map_err(|e| ConnectError::connect(url, e))?;
    let _ = probe.close().await;
    sqlx::any::AnyPoolOptions::new()
        .max_connections(pool.max_connections)
        .acquire_timeout(pool.acquire_timeout)
        .connect(url)
        .await
        .map_err(|e| ConnectError::connect(url, e))
}

/// Why the database could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("cannot start the message writer: {0}")]
    Writer(#[source] std::io::Error),
}

impl ConnectError {
    /// A connection failure, with the URL (password hidden) and the cause.
    pub fn connect(url: &str, source: sqlx::Error) -> Self {
        let url = crate::preflight::redact(url.split('?').next().unwrap_or(url));
        ConnectError::Connect { url, source }
    }
}

/// Classifies a driver error. Backends refine `Retryable` and `Conflict`
/// from database error codes before falling back to this.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
        _ => StoreError::Other(e),
    }
}

/// Converts stored milliseconds to the wire time type.
pub fn from_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Escapes `%`, `_` and `!` for a `LIKE ... ESCAPE '!'` prefix pattern
/// (`!` rather than backslash, which MySQL string literals treat specially).
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}
