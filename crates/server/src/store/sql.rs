//! The SQL behind [`Store`], shared by every backend.
//!
//! One implementation runs on all three databases through sqlx's `Any`
//! driver; where their SQL differs (placeholders, upsert syntax, getting an
//! inserted id back, the error codes that mean "retry") the [`Dialect`]
//! says how. The backend files (`sqlite.rs`, `mysql.rs`, `postgres.rs`)
//! open the pool, apply their own migrations and classify their errors.
//!
//! Messages are inserted a batch at a time with a fixed number of
//! statements whatever the batch size: one multi-row insert, returning its
//! rows where the server has `RETURNING` (MySQL reads them back with one
//! more statement). On the writer's own connection (MySQL/MariaDB,
//! PostgreSQL) that insert is one statement of the batch's exact size, and
//! where it returns its rows (MariaDB ≥ 10.5, PostgreSQL) and is all the
//! batch needs, it runs without a transaction: one round trip
//! ([`SqlStore::for_writer`]). Elsewhere it is cut into at most two
//! statements of a few shapes ([`shaped_chunks`]). A batch whose insert the unique index
//! refuses for a reused `client_msg_id` is done again after one lookup of
//! its keys (see `insert_messages`). Each conversation's next `seq` comes from the
//! writer's memory ([`SeqCache`]); only conversations it does not know yet
//! cost a read, and while other writers share the database every
//! conversation of a batch is locked and read (see `seqs.rs`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use palaver_protocol::{ConversationSummary, ConversationType, Group, Member, Message, Role, User};
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row, Transaction};

use super::seqs::{Learned, SeqCache};
use super::{
    from_ms, like_prefix, ActivityKey, ConversationKey, ConversationsPage, GroupId, Inserted,
    NewMessage, Page, ReadOutcome, Store, StoreError, UserId,
};

/// Rows per multi-row statement (bounds the number of bound parameters:
/// 256 rows of 8 columns is 2,048, far below every backend's limit). It
/// matches the writer's largest batch, so a batch's insert is one or two
/// statements.
const CHUNK: usize = 256;
/// Multi-row statements are cut to a multiple of this many rows plus a
/// remainder (see [`shaped_chunks`]).
const SHAPE_STEP: usize = 16;

/// Where the backends' SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    MySql,
    Postgres,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::MySql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }

    /// Rewrites `?` placeholders to `$1, $2, …` for PostgreSQL.
    fn q<'a>(self, sql: impl Into<Cow<'a, str>>) -> Cow<'a, str> {
        let sql = sql.into();
        if self != Dialect::Postgres {
            return sql;
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    /// `INSERT` that skips rows hitting a uniqueness rule.
    fn insert_ignore(self, rest: &str) -> String {
        match self {
            Dialect::MySql => format!("INSERT IGNORE INTO {rest}"),
            _ => format!("INSERT INTO {rest} ON CONFLICT DO NOTHING"),
        }
    }

    /// Upserts read positions from `source` (`VALUES (?, ?, ?)` or a
    /// `SELECT`); with `forward_only` an existing position never moves back.
    fn upsert_read(self, source: &str, forward_only: bool) -> String {
        let cols = "INSERT INTO read_positions (user_id, conversation_id, read_seq)";
        match (self, forward_only) {
            (Dialect::MySql, true) => format!(
                "{cols} {source} ON DUPLICATE KEY UPDATE read_seq = GREATEST(read_seq, VALUES(read_seq))"
            ),
            (Dialect::MySql, false) => {
                format!("{cols} {source} ON DUPLICATE KEY UPDATE read_seq = VALUES(read_seq)")
            }
            (_, forward_only) => {
                let max = if self == Dialect::Sqlite { "MAX" } else { "GREATEST" };
                let value = if forward_only {
                    format!("{max}(read_positions.read_seq, excluded.read_seq)")
                } else {
                    "excluded.read_seq".to_string()
                };
                format!(
                    "{cols} {source} ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = {value}"
                )
            }
        }
    }

    /// Makes a probe use `index` where the planner may choose another.
    /// MariaDB's statistics pick `(sender_id, client_msg_id)` for the own
    /// last seq of a user who has sent little, then sort that user's
    /// messages: a cost that grows with what they sent. The others pick
    /// the index that answers with one entry.
    fn force_index(self, index: &str) -> String {
        match self {
            Dialect::MySql => format!("FORCE INDEX ({index})"),
            _ => String::new(),
        }
    }

    /// The row lock a writer sharing the database takes on its batch's
    /// conversations; `None` on SQLite, whose write transaction already
    /// excludes every other writer.
    ///
    /// On PostgreSQL it is `FOR NO KEY UPDATE`: it queues the writers that
    /// lock, as `FOR UPDATE` would, but not the foreign-key check of a writer
    /// that does not lock yet (its `FOR KEY SHARE` on each conversation,
    /// taken at the end of its insert, after its rows). With `FOR UPDATE`
    /// that check waited for the locking writer while the locking writer's
    /// insert waited for the other's rows of the same seqs: a deadlock
    /// PostgreSQL breaks only after `deadlock_timeout` (1 s by default). Now
    /// the other writer commits first and the locking one gets a conflict
    /// and retries at once. (InnoDB reports deadlocks at once.)
    fn writer_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::MySql => Some("FOR UPDATE"),
            Dialect::Postgres => Some("FOR NO KEY UPDATE"),
        }
    }

    fn classify(self, e: sqlx::Error) -> StoreError {
        match self {
            Dialect::Sqlite => super::sqlite::classify(e),
            Dialect::MySql => super::mysql::classify(e),
            Dialect::Postgres => super::postgres::classify(e),
        }
    }
}

/// Splits `items` into chunks of at most [`CHUNK`] rows whose lengths are
/// either a multiple of [`SHAPE_STEP`] or below it: at most two statements
/// for a writer batch, and only 31 statement shapes per query, so that they
/// stay in each connection's prepared-statement cache (100 by default)
/// instead of being prepared anew for every batch size, which costs a
/// round trip on MySQL. (Powers of two had fewer shapes but cut a batch of
/// 86 into four statements; measured, the round trips were most of the
/// commit time.)
fn shaped_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = items.len().min(CHUNK);
        let size = if n >= SHAPE_STEP {
            n - n % SHAPE_STEP
        } else {
            n
        };
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// `(?, ?, …)` with `n` placeholders.
fn tuple(n: usize) -> String {
    let mut s = String::with_capacity(2 + 3 * n);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}

/// `rows` tuples of `n` placeholders, comma-separated.
fn tuples(rows: usize, n: usize) -> String {
    let one = tuple(n);
    let mut s = String::with_capacity(rows * (one.len() + 2));
    for i in 0..rows {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&one);
    }
    s
}

/// The last `seq` of conversation `c` (0 before its first message): one
/// probe of the unique `(conversation_id, seq)` index.
const LAST_SEQ: &str = "COALESCE((SELECT m.seq FROM messages m WHERE m.conversation_id = c.id \
     ORDER BY m.seq DESC LIMIT 1), 0)";
/// The id of conversation `c`'s last message (0 before its first): its
/// place in the conversation list, read from the same index probe as
/// [`LAST_SEQ`] (the index holds the row id on SQLite and InnoDB).
const LAST_ID: &str = "COALESCE((SELECT m.id FROM messages m WHERE m.conversation_id = c.id \
     ORDER BY m.seq DESC LIMIT 1), 0)";
/// The seq of user `?`'s own last message in conversation `conv` (0 if
/// none): one probe of the `(conversation_id, sender_id, seq)` index.
/// Sending reads up to the message sent, so a read position is never below
/// it.
fn own_last_seq(d: Dialect, conv: &str) -> String {
    format!(
        "COALESCE((SELECT o.seq FROM messages o {} WHERE o.conversation_id = {conv} \
         AND o.sender_id = ? ORDER BY o.seq DESC LIMIT 1), 0)",
        d.force_index("messages_conversation_sender_seq")
    )
}
/// The setting a writer changes when it meets another writer (`seqs.rs`);
/// a macro so that the name is written once, here.
macro_rules! writer_epoch {
    () => {
        "writer_epoch"
    };
}
const WRITER_EPOCH: &str = writer_epoch!();
/// Its value, read by the statement that inserts a batch's messages (no
/// statement of its own).
const EPOCH_NOW: &str = concat!(
    "(SELECT setting_value FROM settings WHERE setting_key = '",
    writer_epoch!(),
    "')"
);
const USER_COLS: &str = "id, username, created_at, last_seen";
const GROUP_COLS: &str = "id, name, owner_id, created_at";
const MESSAGE_COLS: &str =
    "id, conversation_type, sender_id, receiver_id, seq, content, client_msg_id, created_at";

/// The shared SQL store.
pub(crate) struct SqlStore {
    pool: AnyPool,
    d: Dialect,
    /// Whether `INSERT … RETURNING` works (SQLite, PostgreSQL, MariaDB ≥
    /// 10.5; not MySQL): without it, inserted rows are read back with a
    /// second statement.
    returning: bool,
    /// Set on the message writer's own store (see [`SqlStore::for_writer`]).
    writer: bool,
    /// The writer's connection between batches, and when it was last used.
    held: Mutex<Option<(PoolConnection<Any>, Instant)>>,
}

/// How long the writer's kept connection may sit unused before a batch
/// checks it with a ping first (as the pool does on every acquire). Under
/// load it is never idle this long, so no batch pays for a ping.
const HELD_IDLE: Duration = Duration::from_secs(1);

/// A batch's connection. Closed, not handed back to the pool, unless the
/// batch finished ([`BatchConn::finish`]): after an error, or when the
/// writer's deadline drops the batch in the middle of a statement, its
/// session may be waiting for a reply or inside a transaction the client
/// side no longer counts (sqlx 0.8 counts a `BEGIN` only once it is
/// answered), and the pool's test of a returned connection (a ping) would
/// not see that.
struct BatchConn {
    conn: Option<PoolConnection<Any>>,
    /// The writer's kept connection, whose last batch went through: its
    /// session is known to be outside any transaction, so an insert on
    /// its own commits by itself ([`Batch::Alone`]). One fresh from the
    /// pool runs its first batch in a transaction.
    kept: bool,
}

impl BatchConn {
    fn finish(mut self) -> PoolConnection<Any> {
        self.conn.take().expect("taken only here")
    }
}

impl std::ops::Deref for BatchConn {
    type Target = PoolConnection<Any>;
    fn deref(&self) -> &Self::Target {
        self.conn.as_ref().expect("taken only by finish")
    }
}

impl std::ops::DerefMut for BatchConn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_mut().expect("taken only by finish")
    }
}

impl Drop for BatchConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// How a batch's statements run (see `insert_messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// As one statement on its own, which the database commits by itself
    /// (on a session known to be outside any transaction, see
    /// [`BatchConn::kept`]): only when nothing but the insert is needed
    /// and it is one statement.
    Alone,
    /// In a transaction, with a lookup of its `clientMsgId`s first or not.
    InTransaction { look_up_keys: bool },
}

impl SqlStore {
    /// PostgreSQL: moves the users' id sequence past ids inserted
    /// explicitly (an explicit id does not advance it), so that
    /// registering afterwards does not pick a taken id.
    async fn advance_user_ids(&self) -> Result<(), StoreError> {
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), \
             GREATEST((SELECT MAX(id) FROM users), 1))",
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// `user`'s read position in conversation row `conv` (0 if none).
    /// `user`'s read position in `conv`: the stored one or the seq of
    /// their own last message there, whichever is larger.
    async fn read_position(&self, user: UserId, conv: i64) -> Result<i64, StoreError> {
        let sql = self.d.q(format!(
            "SELECT COALESCE((SELECT read_seq FROM read_positions \
               WHERE user_id = ? AND conversation_id = ?), 0) AS stored_seq, {} AS own_seq",
            own_last_seq(self.d, "?")
        ));
        let r = sqlx::query(&sql)
            .bind(user)
            .bind(conv)
            .bind(conv)
            .bind(user)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let stored: i64 = r.try_get("stored_seq").map_err(|e| self.err(e))?;
        let own: i64 = r.try_get("own_seq").map_err(|e| self.err(e))?;
        Ok(stored.max(own))
    }

    pub(crate) fn new(pool: AnyPool, d: Dialect, returning: bool) -> Self {
        SqlStore {
            pool,
            d,
            returning,
            writer: false,
            held: Mutex::new(None),
        }
    }

    /// The message writer's own store, on a pool of one connection opened
    /// with a statement cache big enough for every batch size
    /// ([`super::WRITER_STATEMENT_CACHE`]). Each round trip to the database costs
    /// a wake-up on both sides, and a batch used to make five: the pool's
    /// ping on acquire and on release, `BEGIN`, the insert, `COMMIT`. So:
    /// - it keeps its connection between batches instead of handing it back
    ///   to the pool, and pings it only after [`HELD_IDLE`] unused;
    /// - a batch's insert is one statement of exactly its size (prepared
    ///   once per size and kept), not cut into shapes;
    /// - and a batch that needs nothing but that insert runs it without a
    ///   transaction ([`Batch::Alone`]): one round trip.
    pub(crate) fn for_writer(mut self) -> Self {
        self.writer = true;
        self
    }

    /// The writer's kept connection, taken out (tests).
    #[cfg(test)]
    pub(crate) fn take_held(&self) -> Option<PoolConnection<Any>> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        held.map(|(conn, _)| conn)
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        self.d.classify(e)
    }

    /// A write transaction. SQLite takes the write lock up front so that a
    /// transaction never has to upgrade a read lock, which SQLite refuses
    /// (`SQLITE_BUSY_SNAPSHOT`) instead of waiting.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.d {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            _ => self.pool.begin().await,
        };
        tx.map_err(|e| self.err(e))
    }

    /// A message batch's transaction. Its reads must see rows other
    /// writers have committed, not a snapshot from its own first read:
    /// after locking a conversation it reads the conversation's last `seq`,
    /// and after creating conversations it reads their ids. PostgreSQL's
    /// default (read committed) and SQLite's exclusive write transaction
    /// do; MySQL's default (repeatable read) does not, so the batch asks
    /// for read committed, in the same round trip as its `BEGIN`.
    async fn begin_batch<'c>(
        &self,
        conn: &'c mut AnyConnection,
    ) -> Result<Transaction<'c, Any>, StoreError> {
        match self.d {
            Dialect::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            Dialect::MySql => {
                conn.begin_with("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION")
                    .await
            }
            Dialect::Postgres => conn.begin().await,
        }
        .map_err(|e| self.err(e))
    }

    /// The connection for a batch: the writer's kept one (checked with a
    /// ping if it sat unused for [`HELD_IDLE`]), else one from the pool.
    async fn batch_conn(&self) -> Result<BatchConn, StoreError> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((conn, used)) = held {
            let mut conn = BatchConn {
                conn: Some(conn),
                kept: true,
            };
            if used.elapsed() < HELD_IDLE || conn.ping().await.is_ok() {
                return Ok(conn);
            }
            // Dropped, and so closed.
        }
        let conn = self.pool.acquire().await.map_err(|e| self.err(e))?;
        Ok(BatchConn {
            conn: Some(conn),
            kept: false,
        })
    }

    /// The rows of an insert per statement: for the writer, one statement
    /// per batch (its statement cache holds every size); otherwise cut into
    /// shapes ([`shaped_chunks`]).
    fn insert_chunks<'a, T>(&self, rows: &'a [T]) -> Vec<&'a [T]> {
        if self.writer {
            rows.chunks(CHUNK).collect()
        } else {
            shaped_chunks(rows).collect()
        }
    }

    /// A text column. sqlx's `Any` driver reports MySQL `TEXT` columns as
    /// blobs, so those are read as bytes and checked to be UTF-8.
    fn text(&self, r: &AnyRow, col: &str) -> Result<String, StoreError> {
        Ok(self.opt_text(r, col)?.unwrap_or_default())
    }

    fn opt_text<I>(&self, r: &AnyRow, col: I) -> Result<Option<String>, StoreError>
    where
        I: sqlx::ColumnIndex<AnyRow> + Copy,
    {
        match r.try_get::<Option<String>, _>(col) {
            Err(sqlx::Error::ColumnDecode { .. }) if self.d == Dialect::MySql => {
                let bytes: Option<Vec<u8>> = r.try_get(col).map_err(|e| self.err(e))?;
                bytes
                    .map(|b| {
                        String::from_utf8(b)
                            .map_err(|e| StoreError::Other(sqlx::Error::Decode(e.into())))
                    })
                    .transpose()
            }
            other => other.map_err(|e| self.err(e)),
        }
    }

    fn user(&self, r: &AnyRow) -> Result<User, StoreError> {
        Ok(User {
            id: r.try_get("id").map_err(|e| self.err(e))?,
            username: r.try_get("username").map_err(|e| self.err(e))?,
            created_at: from_ms(r.try_get("created_at").map_err(|e| self.err(e))?),
            online: None,
            last_seen: r
                .try_get::<Option<i64>, _>("last_seen")
                .map_err(|e| self.err(e))?
                .map(from_ms),
        })
    }

    fn group(&self, r: &AnyRow) -> Result<Group, StoreError> {
        Ok(Group {
            id: r.try_get("id").map_err(|e| self.err(e))?,
            name: r.try_get("name").map_err(|e| self.err(e))?,
            owner_id: r.try_get("owner_id").map_err(|e| self.err(e))?,
            created_at: from_ms(r.try_get("created_at").map_err(|e| self.err(e))?),
            members: None,
        })
    }

    fn member(&self, r: &AnyRow) -> Result<Member, StoreError> {
        let role: String = r.try_get("role").map_err(|e| self.err(e))?;
        Ok(Member {
            user_id: r.try_get("user_id").map_err(|e| self.err(e))?,
            role: Role::parse(&role).unwrap_or(Role::Member),
            joined_at: from_ms(r.try_get("joined_at").map_err(|e| self.err(e))?),
        })
    }

    /// A message from columns named `{prefix}id`, `{prefix}seq`, ….
    fn message(&self, r: &AnyRow, prefix: &str) -> Result<Message, StoreError> {
        let get_i64 = |c: &str| -> Result<i64, StoreError> {
            r.try_get::<i64, _>(format!("{prefix}{c}").as_str())
                .map_err(|e| self.err(e))
        };
        let kind: String = r
            .try_get(format!("{prefix}conversation_type").as_str())
            .map_err(|e| self.err(e))?;
        Ok(Message {
            id: get_i64("id")?,
            conversation_type: ConversationType::parse(&kind).unwrap_or(ConversationType::Private),
            sender_id: get_i64("sender_id")?,
            receiver_id: get_i64("receiver_id")?,
            seq: get_i64("seq")?,
            content: self.text(r, &format!("{prefix}content"))?,
            client_msg_id: r
                .try_get(format!("{prefix}client_msg_id").as_str())
                .map_err(|e| self.err(e))?,
            created_at: from_ms(get_i64("created_at")?),
        })
    }

    /// Earlier messages of the batch's senders with the batch's
    /// `client_msg_id`s.
    async fn existing_keys(
        &self,
        conn: &mut AnyConnection,
        batch: &[NewMessage],
    ) -> Result<HashMap<(UserId, String), Message>, StoreError> {
        let keyed: Vec<&NewMessage> = batch.iter().filter(|m| m.client_msg_id.is_some()).collect();
        let mut found = HashMap::new();
        for chunk in shaped_chunks(&keyed) {
            let sql = format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE (sender_id, client_msg_id) IN ({})",
                tuples(chunk.len(), 2)
            );
            let sql = self.d.q(&sql);
            let mut query = sqlx::query(&sql);
            for m in chunk {
                query = query.bind(m.sender_id).bind(m.client_msg_id.clone());
            }
            for row in query.fetch_all(&mut *conn).await.map_err(|e| self.err(e))? {
                let msg = self.message(&row, "")?;
                if let Some(cid) = msg.client_msg_id.clone() {
                    found.insert((msg.sender_id, cid), msg);
                }
            }
        }
        Ok(found)
    }

    /// The row id of each conversation in `convs`, from `seqs` where known,
    /// else read, creating the rows that do not exist yet.
    async fn conversation_ids(
        &self,
        conn: &mut AnyConnection,
        convs: &[ConversationKey],
        seqs: &SeqCache,
    ) -> Result<HashMap<ConversationKey, i64>, StoreError> {
        let mut ids = HashMap::with_capacity(convs.len());
        let mut missing = Vec::new();
        for conv in convs {
            match seqs.id(conv) {
                Some(id) => {
                    ids.insert(*conv, id);
                }
                None => missing.push(*conv),
            }
        }
        if missing.is_empty() {
            return Ok(ids);
        }
        self.select_ids(conn, &missing, &mut ids).await?;
        missing.retain(|c| !ids.contains_key(c));
        if missing.is_empty() {
            return Ok(ids);
        }
        for chunk in shaped_chunks(&missing) {
            let sql = self.d.insert_ignore(&format!(
                "conversations (conv_key, user_lo, user_hi, group_id) VALUES {}",
                tuples(chunk.len(), 4)
            ));
            let sql = self.d.q(sql);
            let mut query = sqlx::query(&sql);
            for conv in chunk {
                let (lo, hi, group) = match *conv {
                    ConversationKey::Private { lo, hi } => (Some(lo), Some(hi), None),
                    ConversationKey::Group(g) => (None, None, Some(g)),
                };
                query = query.bind(conv.db_key()).bind(lo).bind(hi).bind(group);
            }
            query.execute(&mut *conn).await.map_err(|e| self.err(e))?;
        }
        // Another writer may have created some of them meanwhile: the
        // batch reads committed rows (see `begin_batch`), so they show.
        self.select_ids(conn, &missing, &mut ids).await?;
        if let Some(conv) = missing.iter().find(|c| !ids.contains_key(c)) {
            return Err(StoreError::Retryable(sqlx::Error::Protocol(format!(
                "conversation {} was not created",
                conv.db_key()
            ))));
        }
        Ok(ids)
    }

    async fn select_ids(
        &self,
        conn: &mut AnyConnection,
        convs: &[ConversationKey],
        ids: &mut HashMap<ConversationKey, i64>,
    ) -> Result<(), StoreError> {
        for chunk in shaped_chunks(convs) {
            let by_key: HashMap<String, ConversationKey> =
                chunk.iter().map(|c| (c.db_key(), *c)).collect();
            let sql = format!(
                "SELECT id, conv_key FROM conversations WHERE conv_key IN {}",
                tuple(chunk.len())
            );
            let sql = self.d.q(sql);
            let mut query = sqlx::query(&sql);
            for conv in chunk {
                query = query.bind(conv.db_key());
            }
            for row in query.fetch_all(&mut *conn).await.map_err(|e| self.err(e))? {
                let id: i64 = row.try_get(0).map_err(|e| self.err(e))?;
                let key: String = row.try_get(1).map_err(|e| self.err(e))?;
                if let Some(conv) = by_key.get(&key) {
                    ids.insert(*conv, id);
                }
            }
        }
        Ok(())
    }

    /// Writes a new `writer_epoch` value, committed at once; returns it.
    async fn bump_writer_epoch(&self) -> Result<String, StoreError> {
        let value = format!("{:016x}", rand::random::<u64>());
        let sql = match self.d {
            Dialect::MySql => {
                "INSERT INTO settings (setting_key, setting_value) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE setting_value = VALUES(setting_value)"
            }
            _ => {
                "INSERT INTO settings (setting_key, setting_value) VALUES (?, ?) \
                 ON CONFLICT (setting_key) DO UPDATE SET setting_value = excluded.setting_value"
            }
        };
        sqlx::query(&self.d.q(sql))
            .bind(WRITER_EPOCH)
            .bind(value.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(value)
    }

    /// Runs `select` (a query whose only parameters are the `IN` list it
    /// is given) over `ids` in chunks; returns every row.
    async fn rows_by_ids(
        &self,
        conn: &mut AnyConnection,
        ids: &[i64],
        select: impl Fn(&str) -> String,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in shaped_chunks(ids) {
            let sql = select(&tuple(chunk.len()));
            let sql = self.d.q(sql);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            rows.extend(query.fetch_all(&mut *conn).await.map_err(|e| self.err(e))?);
        }
        Ok(rows)
    }

    /// Locks the conversations' rows (in id order, so that two writers
    /// never wait on each other in a cycle) until the transaction ends.
    /// SQLite needs nothing: its write transaction already excludes every
    /// other writer.
    async fn lock_conversations(
        &self,
        conn: &mut AnyConnection,
        sorted_ids: &[i64],
    ) -> Result<(), StoreError> {
        let Some(lock) = self.d.writer_lock() else {
            return Ok(());
        };
        self.rows_by_ids(conn, sorted_ids, |list| {
            format!("SELECT id FROM conversations WHERE id IN {list} ORDER BY id {lock}")
        })
        .await?;
        Ok(())
    }

    /// The highest `seq` in each conversation, one index probe each
    /// (`MAX(seq) … GROUP BY conversation_id` would scan every message of
    /// each conversation on PostgreSQL, which has no loose index scan).
    async fn last_seqs(
        &self,
        conn: &mut AnyConnection,
        ids: &[i64],
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let rows = self
            .rows_by_ids(conn, ids, |list| {
                format!("SELECT c.id, {LAST_SEQ} FROM conversations c WHERE c.id IN {list}")
            })
            .await?;
        let mut lasts = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get(0).map_err(|e| self.err(e))?;
            let last: i64 = row.try_get(1).map_err(|e| self.err(e))?;
            lasts.insert(id, last);
        }
        Ok(lasts)
    }

    /// Inserts rows `(batch index, conversation id, seq)`; returns the new
    /// ids keyed by `(conversation id, seq)`, and the `writer_epoch`
    /// setting read by the same statement (`None` if nothing was inserted;
    /// see `seqs.rs`).
    async fn insert_rows(
        &self,
        conn: &mut AnyConnection,
        batch: &[NewMessage],
        chunks: &[&[(usize, i64, i64)]],
    ) -> Result<(HashMap<(i64, i64), i64>, Option<Option<String>>), StoreError> {
        let mut ids = HashMap::with_capacity(chunks.iter().map(|c| c.len()).sum());
        let mut epoch = None;
        for &chunk in chunks {
            let mut sql = format!(
                "INSERT INTO messages (conversation_id, seq, conversation_type, sender_id, \
                 receiver_id, content, client_msg_id, created_at) VALUES {}",
                tuples(chunk.len(), 8)
            );
            if self.returning {
                sql.push_str(" RETURNING id, conversation_id, seq, ");
                sql.push_str(EPOCH_NOW);
            }
            let sql = self.d.q(&sql);
            let mut query = sqlx::query(&sql);
            for &(i, conv, seq) in chunk {
                let m = &batch[i];
                let kind = m.conversation.kind();
                query = query
                    .bind(conv)
                    .bind(seq)
                    .bind(kind.as_str())
                    .bind(m.sender_id)
                    .bind(m.receiver_id)
                    .bind(m.content.as_str())
                    .bind(m.client_msg_id.as_deref())
                    .bind(m.created_at_ms);
            }
            let returned = if !self.returning {
                query.execute(&mut *conn).await.map_err(|e| self.err(e))?;
                let sql = format!(
                    "SELECT id, conversation_id, seq, {EPOCH_NOW} FROM messages \
                     WHERE (conversation_id, seq) IN ({})",
                    tuples(chunk.len(), 2)
                );
                let mut select = sqlx::query(&sql);
                for &(_, conv, seq) in chunk {
                    select = select.bind(conv).bind(seq);
                }
                select.fetch_all(&mut *conn).await
            } else {
                query.fetch_all(&mut *conn).await
            }
            .map_err(|e| self.err(e))?;
            // By position, as above.
            for row in returned {
                let id: i64 = row.try_get(0).map_err(|e| self.err(e))?;
                let conv: i64 = row.try_get(1).map_err(|e| self.err(e))?;
                let seq: i64 = row.try_get(2).map_err(|e| self.err(e))?;
                ids.insert((conv, seq), id);
                if epoch.is_none() {
                    epoch = Some(self.opt_text(&row, 3)?);
                }
            }
        }
        Ok((ids, epoch))
    }

    /// Inserts a batch, inside the caller's transaction or, `Alone`, as its
    /// only statement (`None` when it cannot be); returns each message's
    /// outcome and what to remember once it commits. Without
    /// `look_up_keys` the batch's `client_msg_id`s are taken to be new, and
    /// one that is not fails the insert with `Conflict` (unique index).
    async fn insert_batch(
        &self,
        conn: &mut AnyConnection,
        batch: &[NewMessage],
        seqs: &SeqCache,
        how: Batch,
    ) -> Result<Option<(Vec<Result<Inserted, StoreError>>, Learned)>, StoreError> {
        let now = Instant::now();
        let shared = seqs.shared(now);
        // On its own, the insert must be the batch's only statement: every
        // conversation's id and last seq remembered, no locks, its rows
        // returned by the insert. SQLite keeps its transaction: its
        // `BEGIN IMMEDIATE` takes the write lock up front (`begin_write`).
        if how == Batch::Alone
            && (shared
                || !self.returning
                || self.d == Dialect::Sqlite
                || batch.iter().any(|m| {
                    seqs.last(&m.conversation).is_none() || seqs.id(&m.conversation).is_none()
                }))
        {
            return Ok(None);
        }
        let existing = if how == (Batch::InTransaction { look_up_keys: true }) {
            self.existing_keys(conn, batch).await?
        } else {
            HashMap::new()
        };
        let mut out: Vec<Option<Result<Inserted, StoreError>>> =
            batch.iter().map(|_| None).collect();
        // Messages to insert, and repeats of a key first used in this batch.
        let mut fresh = Vec::with_capacity(batch.len());
        let mut repeats = Vec::new();
        let mut first_use: HashMap<(UserId, &str), usize> = HashMap::new();
        for (i, m) in batch.iter().enumerate() {
            if let Some(cid) = m.client_msg_id.as_deref() {
                if let Some(prev) = existing.get(&(m.sender_id, cid.to_string())) {
                    out[i] = Some(
                        same_message(prev, m)
                            .then(|| Inserted {
                                message: prev.clone(),
                                fresh: false,
                            })
                            .ok_or_else(reused_key),
                    );
                    continue;
                }
                if let Some(&j) = first_use.get(&(m.sender_id, cid)) {
                    let b = &batch[j];
                    if b.conversation == m.conversation
                        && b.receiver_id == m.receiver_id
                        && b.content == m.content
                    {
                        repeats.push((i, j));
                    } else {
                        out[i] = Some(Err(reused_key()));
                    }
                    continue;
                }
                first_use.insert((m.sender_id, cid), i);
            }
            fresh.push(i);
        }

        // Allocate seqs: each conversation's last seq (remembered, or read
        // under lock when other writers share the database), then hand out
        // the next ones in batch order.
        let mut counts: BTreeMap<ConversationKey, i64> = BTreeMap::new();
        for &i in &fresh {
            *counts.entry(batch[i].conversation).or_default() += 1;
        }
        let convs: Vec<ConversationKey> = counts.keys().copied().collect();
        let ids = self.conversation_ids(conn, &convs, seqs).await?;
        let unknown: Vec<i64> = if shared {
            let mut all: Vec<i64> = ids.values().copied().collect();
            all.sort_unstable();
            self.lock_conversations(conn, &all).await?;
            all
        } else {
            convs
                .iter()
                .filter(|c| seqs.last(c).is_none())
                .map(|c| ids[c])
                .collect()
        };
        let read = self.last_seqs(conn, &unknown).await?;
        let mut learned = Learned::default();
        let mut next: HashMap<ConversationKey, (i64, i64)> = HashMap::with_capacity(counts.len());
        for (conv, count) in &counts {
            let id = ids[conv];
            let last = match seqs.last(conv) {
                Some(remembered) if !shared => remembered,
                remembered => {
                    let last = read.get(&id).copied().unwrap_or(0);
                    learned.others |= remembered.is_some_and(|r| r != last);
                    last
                }
            };
            next.insert(*conv, (id, last + 1));
            learned.convs.push((*conv, id, last + count));
        }
        let mut rows = Vec::with_capacity(fresh.len());
        for &i in &fresh {
            let slot = next.get_mut(&batch[i].conversation).expect("counted above");
            rows.push((i, slot.0, slot.1));
            slot.1 += 1;
        }

        let chunks = self.insert_chunks(&rows);
        if how == Batch::Alone && chunks.len() > 1 {
            return Ok(None);
        }
        let (ids, epoch) = self.insert_rows(conn, batch, &chunks).await?;
        learned.epoch = epoch;
        for &(i, conv, seq) in &rows {
            let id = *ids.get(&(conv, seq)).ok_or_else(|| {
                StoreError::Other(sqlx::Error::Protocol("inserted row not returned".into()))
            })?;
            let m = &batch[i];
            out[i] = Some(Ok(Inserted {
                message: Message {
                    id,
                    conversation_type: m.conversation.kind(),
                    sender_id: m.sender_id,
                    receiver_id: m.receiver_id,
                    seq,
                    content: m.content.clone(),
                    client_msg_id: m.client_msg_id.clone(),
                    created_at: from_ms(m.created_at_ms),
                },
                fresh: true,
            }));
        }
        for (i, j) in repeats {
            out[i] = Some(match &out[j] {
                Some(Ok(first)) => Ok(Inserted {
                    message: first.message.clone(),
                    fresh: false,
                }),
                _ => Err(reused_key()),
            });
        }
        let out = out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(reused_key())))
            .collect();
        Ok(Some((out, learned)))
    }

    /// One attempt at a batch on `conn`, run `how`; a batch that cannot
    /// run [`Batch::Alone`] runs in a transaction without a key lookup.
    async fn attempt_batch(
        &self,
        conn: &mut AnyConnection,
        batch: &[NewMessage],
        seqs: &SeqCache,
        how: Batch,
    ) -> Result<(Vec<Result<Inserted, StoreError>>, Learned), StoreError> {
        let how = match how {
            Batch::Alone => match self.insert_batch(conn, batch, seqs, how).await? {
                Some(done) => return Ok(done),
                None => Batch::InTransaction {
                    look_up_keys: false,
                },
            },
            how => how,
        };
        let mut tx = self.begin_batch(conn).await?;
        let done = self.insert_batch(&mut tx, batch, seqs, how).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        done.ok_or_else(|| {
            StoreError::Other(sqlx::Error::Protocol(
                "a batch in a transaction was not run".into(),
            ))
        })
    }
}

fn reused_key() -> StoreError {
    StoreError::Conflict("clientMsgId was already used for a different message".into())
}

/// Whether a stored message is the same send as `m` (an idempotent retry).
fn same_message(prev: &Message, m: &NewMessage) -> bool {
    let kind = m.conversation.kind();
    prev.conversation_type == kind && prev.receiver_id == m.receiver_id && prev.content == m.content
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.d.name()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError> {
        let sql = self
            .d
            .insert_ignore("settings (setting_key, setting_value) VALUES (?, ?)");
        sqlx::query(&self.d.q(&sql))
            .bind(key)
            .bind(candidate)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let sql = self
            .d
            .q("SELECT setting_value FROM settings WHERE setting_key = ?");
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        self.text(&row, "setting_value")
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        let key = username.to_lowercase();
        let insert = self.d.q(
            "INSERT INTO users (username, username_key, password_hash, created_at) VALUES (?, ?, ?, ?)",
        );
        let select = self.d.q(format!(
            "SELECT {USER_COLS} FROM users WHERE username_key = ?"
        ));
        // A conflict on the id (a minted id took the next value) is worth
        // another try; one on the name is the answer.
        for _ in 0..3 {
            let inserted = sqlx::query(&insert)
                .bind(username)
                .bind(key.as_str())
                .bind(password_hash)
                .bind(now_ms)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e));
            let found = sqlx::query(&select)
                .bind(key.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            match (inserted, found) {
                (Ok(_), Some(row)) => return self.user(&row),
                (Err(StoreError::Conflict(_)), Some(_)) => {
                    return Err(StoreError::Conflict("username is taken".into()))
                }
                (Err(StoreError::Conflict(_)), None) => continue,
                (Err(e), _) => return Err(e),
                (Ok(_), None) => return Err(StoreError::NotFound),
            }
        }
        Err(StoreError::Conflict("could not allocate a user id".into()))
    }

    async fn ensure_user(&self, id: UserId, now_ms: i64) -> Result<(), StoreError> {
        let insert = self
            .d
            .insert_ignore("users (id, username, username_key, created_at) VALUES (?, ?, ?, ?)");
        let insert = self.d.q(&insert);
        let exists = self.d.q("SELECT id FROM users WHERE id = ?");
        // `user<id>` may already be someone's chosen name; then add a suffix.
        for attempt in 0..16 {
            let name = if attempt == 0 {
                format!("user{id}")
            } else {
                format!("user{id}-{attempt}")
            };
            sqlx::query(&insert)
                .bind(id)
                .bind(name.as_str())
                .bind(name.to_lowercase())
                .bind(now_ms)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            let found = sqlx::query(&exists)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            if found.is_some() {
                if self.d == Dialect::Postgres {
                    self.advance_user_ids().await?;
                }
                return Ok(());
            }
        }
        Err(StoreError::Conflict(format!(
            "no free username for user {id}"
        )))
    }

    async fn ensure_users(&self, ids: &[UserId], now_ms: i64) -> Result<Vec<UserId>, StoreError> {
        // Most are known users reconnecting: one read, nothing written.
        let missing = self.missing_users(ids).await?;
        if missing.is_empty() {
            return Ok(missing);
        }
        for chunk in shaped_chunks(&missing) {
            let sql = self.d.insert_ignore(&format!(
                "users (id, username, username_key, created_at) VALUES {}",
                tuples(chunk.len(), 4)
            ));
            let sql = self.d.q(&sql);
            let mut query = sqlx::query(&sql);
            for &id in chunk {
                let name = format!("user{id}");
                query = query.bind(id).bind(name.clone()).bind(name).bind(now_ms);
            }
            query.execute(&self.pool).await.map_err(|e| self.err(e))?;
        }
        if self.d == Dialect::Postgres {
            self.advance_user_ids().await?;
        }
        self.missing_users(&missing).await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let sql = self
            .d
            .q(format!("SELECT {USER_COLS} FROM users WHERE id = ?"));
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(|r| self.user(r)).transpose()
    }

    async fn credentials(
        &self,
        username: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let sql = self.d.q(format!(
            "SELECT {USER_COLS}, password_hash FROM users WHERE username_key = ?"
        ));
        let row = sqlx::query(&sql)
            .bind(username.to_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(r) => {
                let hash = self.opt_text(&r, "password_hash")?;
                Ok(Some((self.user(&r)?, hash)))
            }
        }
    }

    async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<User>, StoreError> {
        let sql = self.d.q(format!(
            "SELECT {USER_COLS} FROM users WHERE username_key LIKE ? ESCAPE '!' \
             ORDER BY username_key LIMIT ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(like_prefix(&prefix.to_lowercase()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.user(r)).collect()
    }

    async fn set_last_seen(&self, users: &[UserId], ms: i64) -> Result<(), StoreError> {
        for chunk in shaped_chunks(users) {
            let sql = format!(
                "UPDATE users SET last_seen = ? WHERE id IN {}",
                tuple(chunk.len())
            );
            let sql = self.d.q(&sql);
            let mut query = sqlx::query(&sql).bind(ms);
            for &id in chunk {
                query = query.bind(id);
            }
            query.execute(&self.pool).await.map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
        let sql = self
            .d
            .q("SELECT user_hi AS id FROM conversations WHERE user_lo = ? \
             UNION SELECT user_lo FROM conversations WHERE user_hi = ? \
             UNION SELECT m2.user_id FROM group_members m1 \
               JOIN group_members m2 ON m2.group_id = m1.group_id WHERE m1.user_id = ?");
        let rows = sqlx::query(&sql)
            .bind(user)
            .bind(user)
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get(0).map_err(|e| self.err(e))?;
            if id != user {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    async fn share_a_conversation(&self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        let sql = self.d.q(
            "SELECT 1 FROM conversations WHERE user_lo = ? AND user_hi = ? \
             UNION ALL SELECT 1 FROM group_members m1 \
               JOIN group_members m2 ON m2.group_id = m1.group_id \
               WHERE m1.user_id = ? AND m2.user_id = ? LIMIT 1",
        );
        let row = sqlx::query(&sql)
            .bind(a.min(b))
            .bind(a.max(b))
            .bind(a)
            .bind(b)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.is_some())
    }

    async fn missing_users(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let mut found = std::collections::HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!("SELECT id FROM users WHERE id IN {}", tuple(chunk.len()));
            let sql = self.d.q(&sql);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await.map_err(|e| self.err(e))? {
                found.insert(row.try_get::<i64, _>(0).map_err(|e| self.err(e))?);
            }
        }
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !found.contains(id))
            .collect())
    }

    async fn create_group(
        &self,
        name: &str,
        owner: UserId,
        members: &[UserId],
        now_ms: i64,
    ) -> Result<Group, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut sql =
            String::from("INSERT INTO chat_groups (name, owner_id, created_at) VALUES (?, ?, ?)");
        if self.returning {
            sql.push_str(" RETURNING id");
        }
        let sql = self.d.q(&sql);
        let query = sqlx::query(&sql).bind(name).bind(owner).bind(now_ms);
        let id: i64 = if self.returning {
            let row = query.fetch_one(&mut *tx).await.map_err(|e| self.err(e))?;
            row.try_get(0).map_err(|e| self.err(e))?
        } else {
            let done = query.execute(&mut *tx).await.map_err(|e| self.err(e))?;
            done.last_insert_id().ok_or_else(|| {
                StoreError::Other(sqlx::Error::Protocol("no id for the new group".into()))
            })?
        };
        let all: Vec<(UserId, Role)> = std::iter::once((owner, Role::Owner))
            .chain(members.iter().map(|&m| (m, Role::Member)))
            .collect();
        for chunk in all.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES {}",
                tuples(chunk.len(), 4)
            );
            let sql = self.d.q(&sql);
            let mut query = sqlx::query(&sql);
            for (user, role) in chunk {
                query = query.bind(id).bind(*user).bind(role.as_str()).bind(now_ms);
            }
            query.execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        let sql = self
            .d
            .q("INSERT INTO conversations (conv_key, group_id) VALUES (?, ?)");
        sqlx::query(&sql)
            .bind(ConversationKey::Group(id).db_key())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(Group {
            id,
            name: name.to_string(),
            owner_id: owner,
            created_at: from_ms(now_ms),
            members: Some(
                all.into_iter()
                    .map(|(user_id, role)| Member {
                        user_id,
                        role,
                        joined_at: from_ms(now_ms),
                    })
                    .collect(),
            ),
        })
    }

    async fn group(&self, id: GroupId) -> Result<Option<Group>, StoreError> {
        let sql = self
            .d
            .q(format!("SELECT {GROUP_COLS} FROM chat_groups WHERE id = ?"));
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(|r| self.group(r)).transpose()
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<Group>, StoreError> {
        let sql = self.d.q(
            "SELECT g.id, g.name, g.owner_id, g.created_at FROM chat_groups g \
             JOIN group_members m ON m.group_id = g.id WHERE m.user_id = ? ORDER BY g.id DESC",
        );
        let rows = sqlx::query(&sql)
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.group(r)).collect()
    }

    async fn members(&self, group: GroupId) -> Result<Vec<Member>, StoreError> {
        let sql = self.d.q(
            "SELECT user_id, role, joined_at FROM group_members WHERE group_id = ? \
             ORDER BY joined_at, user_id",
        );
        let rows = sqlx::query(&sql)
            .bind(group)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.member(r)).collect()
    }

    async fn add_member(
        &self,
        group: GroupId,
        user: UserId,
        role: Role,
        now_ms: i64,
    ) -> Result<Member, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = self.d.q(
            "INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
        );
        let result = sqlx::query(&sql)
            .bind(group)
            .bind(user)
            .bind(role.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e));
        match result {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(StoreError::Conflict(
                    "already a member of this group".into(),
                ))
            }
            Err(e) => return Err(e),
        }
        let sql = self.d.upsert_read(
            &format!("SELECT ?, c.id, {LAST_SEQ} FROM conversations c WHERE c.conv_key = ?"),
            false,
        );
        sqlx::query(&self.d.q(sql))
            .bind(user)
            .bind(ConversationKey::Group(group).db_key())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(Member {
            user_id: user,
            role,
            joined_at: from_ms(now_ms),
        })
    }

    async fn remove_member(&self, group: GroupId, user: UserId) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = self
            .d
            .q("SELECT role FROM group_members WHERE group_id = ? AND user_id = ?");
        let row = sqlx::query(&sql)
            .bind(group)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let role: String = row.try_get(0).map_err(|e| self.err(e))?;
        let sql = self
            .d
            .q("DELETE FROM group_members WHERE group_id = ? AND user_id = ?");
        sqlx::query(&sql)
            .bind(group)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if role == Role::Owner.as_str() {
            let sql = self
                .d
                .q("SELECT user_id FROM group_members WHERE group_id = ? \
                 ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1");
            let heir = sqlx::query(&sql)
                .bind(group)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            if let Some(heir) = heir {
                let heir: i64 = heir.try_get(0).map_err(|e| self.err(e))?;
                let sql = self.d.q(
                    "UPDATE group_members SET role = 'owner' WHERE group_id = ? AND user_id = ?",
                );
                sqlx::query(&sql)
                    .bind(group)
                    .bind(heir)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                let sql = self.d.q("UPDATE chat_groups SET owner_id = ? WHERE id = ?");
                sqlx::query(&sql)
                    .bind(heir)
                    .bind(group)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn insert_messages(
        &self,
        batch: &[NewMessage],
        seqs: &mut SeqCache,
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
        let mut conn = self.batch_conn().await?;
        let known: &SeqCache = seqs;
        // A clientMsgId is nearly always new (a repeat is a client's retry),
        // so the insert goes first and the unique index on (sender_id,
        // client_msg_id) catches a repeat; only then, with the failed
        // statement rolled back and nothing committed, is the batch done
        // again with a lookup of its keys. That saves a query per batch.
        let first = if conn.kept {
            Batch::Alone
        } else {
            Batch::InTransaction {
                look_up_keys: false,
            }
        };
        let mut result = self.attempt_batch(&mut conn, batch, known, first).await;
        if matches!(result, Err(StoreError::Conflict(_)))
            && batch.iter().any(|m| m.client_msg_id.is_some())
        {
            let redo = Batch::InTransaction { look_up_keys: true };
            result = self.attempt_batch(&mut conn, batch, known, redo).await;
        }
        // After a batch that went through, the writer keeps its connection
        // and any other store hands it back. After a failure it is closed
        // (see `BatchConn`) before anything else runs: the writer's pool has
        // only this one, and `bump_writer_epoch` below needs it.
        if result.is_ok() {
            let conn = conn.finish();
            if self.writer {
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some((conn, Instant::now()));
            }
        } else {
            drop(conn);
        }
        match result {
            Ok((out, learned)) => {
                seqs.commit(learned, Instant::now());
                Ok(out)
            }
            Err(e) => {
                // The batch may or may not have committed: what it would
                // have taught is unknown.
                seqs.forget(batch.iter().map(|m| m.conversation));
                match e {
                    // Inside a batch a uniqueness failure means another
                    // writer won a race, on a seq or a client_msg_id:
                    // retrying (with locks, for a while) finds its rows.
                    StoreError::Conflict(m) => {
                        seqs.others_seen(Instant::now());
                        // Tell the other writers too (see `seqs.rs`); if
                        // this fails, the retry still locks on this side.
                        if let Ok(value) = self.bump_writer_epoch().await {
                            seqs.epoch_written(value);
                        }
                        Err(StoreError::Retryable(sqlx::Error::Protocol(m)))
                    }
                    e => Err(e),
                }
            }
        }
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationKey,
        seq: i64,
    ) -> Result<ReadOutcome, StoreError> {
        let sql = self.d.q(format!(
            "SELECT c.id, {LAST_SEQ} AS last_seq FROM conversations c WHERE c.conv_key = ?"
        ));
        let row = sqlx::query(&sql)
            .bind(conversation.db_key())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let (conv, last): (i64, i64) = match row {
            Some(r) => (
                r.try_get("id").map_err(|e| self.err(e))?,
                r.try_get("last_seq").map_err(|e| self.err(e))?,
            ),
            None if seq == 0 => {
                return Ok(ReadOutcome::Moved {
                    read_seq: 0,
                    moved: false,
                })
            }
            None => return Ok(ReadOutcome::BeyondLast { last_seq: 0 }),
        };
        if seq > last {
            return Ok(ReadOutcome::BeyondLast { last_seq: last });
        }
        let before = self.read_position(user, conv).await?;
        if seq <= before {
            return Ok(ReadOutcome::Moved {
                read_seq: before,
                moved: false,
            });
        }
        // The upsert keeps the larger position. Another read of the same
        // conversation may have stored a larger one meanwhile: answer with
        // what is stored, so that no ack or receipt reports a position
        // below it, and count as moved only if ours is the one there.
        // PostgreSQL and SQLite return it; MySQL/MariaDB read it back.
        let upsert = self.d.upsert_read("VALUES (?, ?, ?)", true);
        let after = if self.d == Dialect::MySql {
            sqlx::query(&self.d.q(upsert))
                .bind(user)
                .bind(conv)
                .bind(seq)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            self.read_position(user, conv).await?
        } else {
            let row = sqlx::query(&self.d.q(format!("{upsert} RETURNING read_seq")))
                .bind(user)
                .bind(conv)
                .bind(seq)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            row.try_get(0).map_err(|e| self.err(e))?
        };
        Ok(ReadOutcome::Moved {
            read_seq: after,
            moved: after == seq,
        })
    }

    async fn messages(
        &self,
        conversation: ConversationKey,
        page: Page,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let sql = self.d.q("SELECT id FROM conversations WHERE conv_key = ?");
        let row = sqlx::query(&sql)
            .bind(conversation.db_key())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Ok((Vec::new(), false));
        };
        let conv: i64 = row.try_get(0).map_err(|e| self.err(e))?;
        let after = page.after_seq.unwrap_or(0);
        let before = page.before_seq.unwrap_or(i64::MAX);
        // With afterSeq, read forwards from it; otherwise page back from
        // `before` (or the newest).
        let forward = page.after_seq.is_some();
        let order = if forward { "ASC" } else { "DESC" };
        let sql = self.d.q(format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? AND seq > ? AND seq < ? \
             ORDER BY seq {order} LIMIT ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(conv)
            .bind(after)
            .bind(before)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut messages = rows
            .iter()
            .map(|r| self.message(r, ""))
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = messages.len() > page.limit as usize;
        messages.truncate(page.limit as usize);
        if !forward {
            messages.reverse();
        }
        Ok((messages, has_more))
    }

    async fn conversations(
        &self,
        user: UserId,
        page: ConversationsPage,
    ) -> Result<(Vec<ConversationSummary>, Option<ActivityKey>), StoreError> {
        // The inner query places every conversation of the user (one index
        // probe each), keeps those after the cursor and takes the page; the
        // outer one fills in only the page's rows. The unread count is a
        // subtraction of positions, never a count of messages. The user's
        // conversations are a derived table, not `IN (…)`: MariaDB ran
        // that as a dependent subquery for every conversation stored.
        let after = page.after.unwrap_or(ActivityKey {
            last_message_id: i64::MAX,
            conversation_id: i64::MAX,
        });
        let sql = self.d.q(format!(
            "SELECT k.id AS conv_id, k.last_id, c.user_lo, c.user_hi, c.group_id, \
             COALESCE(r.read_seq, 0) AS read_seq, {own} AS own_seq, \
             pu.username AS peer_username, pu.last_seen AS peer_last_seen, g.name AS group_name, \
             m.id AS m_id, m.conversation_type AS m_conversation_type, m.sender_id AS m_sender_id, \
             m.receiver_id AS m_receiver_id, m.seq AS m_seq, m.content AS m_content, \
             m.client_msg_id AS m_client_msg_id, m.created_at AS m_created_at \
             FROM (SELECT a.id, a.last_id FROM ( \
                 SELECT c.id, {LAST_ID} AS last_id FROM ( \
                   SELECT id FROM conversations WHERE user_lo = ? \
                   UNION SELECT id FROM conversations WHERE user_hi = ? \
                   UNION SELECT c2.id FROM conversations c2 \
                     JOIN group_members gm ON gm.group_id = c2.group_id WHERE gm.user_id = ?) mine \
                 JOIN conversations c ON c.id = mine.id) a \
               WHERE (a.last_id, a.id) < (?, ?) \
               ORDER BY a.last_id DESC, a.id DESC LIMIT ?) k \
             JOIN conversations c ON c.id = k.id \
             LEFT JOIN messages m ON m.id = k.last_id \
             LEFT JOIN read_positions r ON r.conversation_id = k.id AND r.user_id = ? \
             LEFT JOIN users pu ON c.group_id IS NULL \
               AND pu.id = CASE WHEN c.user_lo = ? THEN c.user_hi ELSE c.user_lo END \
             LEFT JOIN chat_groups g ON g.id = c.group_id \
             ORDER BY k.last_id DESC, k.id DESC",
            own = own_last_seq(self.d, "k.id"),
        ));
        let rows = sqlx::query(&sql)
            .bind(user)
            .bind(user)
            .bind(user)
            .bind(user)
            .bind(after.last_message_id)
            .bind(after.conversation_id)
            .bind(i64::from(page.limit) + 1)
            .bind(user)
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let get = |r: &AnyRow, c: &str| -> Result<Option<i64>, StoreError> {
            r.try_get::<Option<i64>, _>(c).map_err(|e| self.err(e))
        };
        let more = rows.len() > page.limit as usize;
        let mut list = Vec::with_capacity(rows.len().min(page.limit as usize));
        let mut last_key = None;
        for r in rows.iter().take(page.limit as usize) {
            let (conversation_type, receiver_id) = match get(r, "group_id")? {
                Some(g) => (ConversationType::Group, g),
                None => {
                    let lo = get(r, "user_lo")?.unwrap_or_default();
                    let hi = get(r, "user_hi")?.unwrap_or_default();
                    (ConversationType::Private, if lo == user { hi } else { lo })
                }
            };
            let last_message = match get(r, "m_id")? {
                Some(_) => Some(self.message(r, "m_")?),
                None => None,
            };
            let last_seq = last_message.as_ref().map_or(0, |m| m.seq);
            let read_seq = get(r, "read_seq")?
                .unwrap_or_default()
                .max(get(r, "own_seq")?.unwrap_or_default());
            last_key = Some(ActivityKey {
                last_message_id: get(r, "last_id")?.unwrap_or_default(),
                conversation_id: get(r, "conv_id")?.unwrap_or_default(),
            });
            list.push(ConversationSummary {
                conversation_type,
                receiver_id,
                username: self.opt_text(r, "peer_username")?,
                name: self.opt_text(r, "group_name")?,
                last_message,
                last_seq,
                read_seq,
                unread_count: last_seq - read_seq,
                online: None,
                last_seen: get(r, "peer_last_seen")?.map(from_ms),
            });
        }
        Ok((list, if more { last_key } else { None }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_come_in_few_shapes_and_cover_everything() {
        let items: Vec<u32> = (0..600).collect();
        let sizes = |n: usize| -> Vec<usize> {
            super::shaped_chunks(&items[..n])
                .map(<[u32]>::len)
                .collect()
        };
        assert_eq!(sizes(600), [256, 256, 80, 8]);
        assert_eq!(sizes(86), [80, 6]);
        assert_eq!(sizes(256), [256]);
        assert_eq!(sizes(15), [15]);
        assert_eq!(sizes(1), [1]);
        assert!(sizes(0).is_empty());
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..=super::CHUNK {
            let chunks = sizes(n);
            assert_eq!(chunks.iter().sum::<usize>(), n);
            assert!(chunks.len() <= 2, "{n} rows in {chunks:?}");
            shapes.extend(chunks);
        }
        assert_eq!(shapes.len(), 31);
    }
}
