//! SQLite backend: the embedded default.
//!
//! Durability: WAL journal with `synchronous = FULL`, so every commit is
//! fsynced to the WAL before it returns and therefore survives an OS crash
//! or power loss, not only a process crash (`NORMAL` would only promise the
//! latter in WAL mode). Write transactions start with `BEGIN IMMEDIATE` so
//! that a transaction never has to upgrade a read lock (which SQLite refuses
//! with `SQLITE_BUSY_SNAPSHOT` instead of waiting).

use std::str::FromStr;

use async_trait::async_trait;
use palaver_protocol::{ConversationSummary, ConversationType, Group, Member, Message, Role, User};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{
    classify, from_ms, like_prefix, ConnectError, ConversationKey, GroupId, Inserted, NewMessage,
    Page, PoolOptions, Store, StoreError, UserId,
};

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database and applies migrations.
    pub async fn connect(url: &str, pool: &PoolOptions) -> Result<Self, ConnectError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(ConnectError::Connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(ConnectError::Connect)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(ConnectError::Migrate)?;
        Ok(SqliteStore { pool })
    }
}

/// SQLite's extended result codes that mean "try again".
fn sqlite_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().unwrap_or_default();
        // SQLITE_BUSY (5) and its extended codes, SQLITE_LOCKED (6).
        if code == "5" || code == "6" || code.parse::<i32>().is_ok_and(|c| c & 0xff == 5) {
            return StoreError::Retryable(e);
        }
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_string());
        }
    }
    classify(e)
}

const USER_COLS: &str = "id, username, created_at";
const MESSAGE_COLS: &str =
    "id, conversation_type, sender_id, receiver_id, seq, content, client_msg_id, created_at";

fn user_row(r: &sqlx::sqlite::SqliteRow) -> User {
    User {
        id: r.get("id"),
        username: r.get("username"),
        created_at: from_ms(r.get("created_at")),
    }
}

fn message_row(r: &sqlx::sqlite::SqliteRow) -> Message {
    message_row_prefixed(r, "")
}

fn message_row_prefixed(r: &sqlx::sqlite::SqliteRow, p: &str) -> Message {
    let col = |c: &str| format!("{p}{c}");
    let kind: String = r.get(col("conversation_type").as_str());
    Message {
        id: r.get(col("id").as_str()),
        conversation_type: ConversationType::parse(&kind).unwrap_or(ConversationType::Private),
        sender_id: r.get(col("sender_id").as_str()),
        receiver_id: r.get(col("receiver_id").as_str()),
        seq: r.get(col("seq").as_str()),
        content: r.get(col("content").as_str()),
        client_msg_id: r.get(col("client_msg_id").as_str()),
        created_at: from_ms(r.get(col("created_at").as_str())),
    }
}

fn group_row(r: &sqlx::sqlite::SqliteRow) -> Group {
    Group {
        id: r.get("id"),
        name: r.get("name"),
        owner_id: r.get("owner_id"),
        created_at: from_ms(r.get("created_at")),
        members: None,
    }
}

fn member_row(r: &sqlx::sqlite::SqliteRow) -> Member {
    let role: String = r.get("role");
    Member {
        user_id: r.get("user_id"),
        role: Role::parse(&role).unwrap_or(Role::Member),
        joined_at: from_ms(r.get("joined_at")),
    }
}

/// Inserts one message inside the batch transaction.
async fn insert_one(
    conn: &mut SqliteConnection,
    m: &NewMessage,
) -> Result<Result<Inserted, StoreError>, StoreError> {
    if let Some(cid) = &m.client_msg_id {
        let existing = sqlx::query(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE sender_id = ? AND client_msg_id = ?"
        ))
        .bind(m.sender_id)
        .bind(cid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlite_error)?;
        if let Some(row) = existing {
            let message = message_row(&row);
            let kind = match m.conversation {
                ConversationKey::Private { .. } => ConversationType::Private,
                ConversationKey::Group(_) => ConversationType::Group,
            };
            let same = message.conversation_type == kind
                && message.receiver_id == m.receiver_id
                && message.content == m.content;
            return Ok(if same {
                Ok(Inserted {
                    message,
                    fresh: false,
                })
            } else {
                Err(StoreError::Conflict(
                    "clientMsgId was already used for a different message".into(),
                ))
            });
        }
    }

    let key = m.conversation.db_key();
    let (lo, hi, group, kind) = match m.conversation {
        ConversationKey::Private { lo, hi } => {
            (Some(lo), Some(hi), None, ConversationType::Private)
        }
        ConversationKey::Group(g) => (None, None, Some(g), ConversationType::Group),
    };
    sqlx::query(
        "INSERT INTO conversations (conv_key, user_lo, user_hi, group_id) VALUES (?, ?, ?, ?) \
         ON CONFLICT (conv_key) DO NOTHING",
    )
    .bind(&key)
    .bind(lo)
    .bind(hi)
    .bind(group)
    .execute(&mut *conn)
    .await
    .map_err(sqlite_error)?;
    let row = sqlx::query(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE conv_key = ? RETURNING id, last_seq",
    )
    .bind(&key)
    .fetch_one(&mut *conn)
    .await
    .map_err(sqlite_error)?;
    let conversation_id: i64 = row.get(0);
    let seq: i64 = row.get(1);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (conversation_id, seq, conversation_type, sender_id, receiver_id, \
         content, client_msg_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(conversation_id)
    .bind(seq)
    .bind(kind.as_str())
    .bind(m.sender_id)
    .bind(m.receiver_id)
    .bind(&m.content)
    .bind(&m.client_msg_id)
    .bind(m.created_at_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(sqlite_error)?;
    sqlx::query("UPDATE conversations SET last_message_id = ? WHERE id = ?")
        .bind(id)
        .bind(conversation_id)
        .execute(&mut *conn)
        .await
        .map_err(sqlite_error)?;
    Ok(Ok(Inserted {
        message: Message {
            id,
            conversation_type: kind,
            sender_id: m.sender_id,
            receiver_id: m.receiver_id,
            seq,
            content: m.content.clone(),
            client_msg_id: m.client_msg_id.clone(),
            created_at: from_ms(m.created_at_ms),
        },
        fresh: true,
    }))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(sqlite_error)?;
        Ok(())
    }

    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(candidate)
            .execute(&self.pool)
            .await
            .map_err(sqlite_error)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_one(&self.pool)
            .await
            .map_err(sqlite_error)
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        let row = sqlx::query(&format!(
            "INSERT INTO users (username, username_key, password_hash, created_at) \
             VALUES (?, ?, ?, ?) RETURNING {USER_COLS}"
        ))
        .bind(username)
        .bind(username.to_lowercase())
        .bind(password_hash)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(sqlite_error)?;
        Ok(user_row(&row))
    }

    async fn ensure_user(&self, id: UserId, now_ms: i64) -> Result<(), StoreError> {
        // `user<id>` may already be someone's chosen name; then add a suffix.
        for attempt in 0..16 {
            let name = if attempt == 0 {
                format!("user{id}")
            } else {
                format!("user{id}-{attempt}")
            };
            sqlx::query(
                "INSERT INTO users (id, username, username_key, created_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(&name)
            .bind(name.to_lowercase())
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(sqlite_error)?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(sqlite_error)?;
            if exists.is_some() {
                return Ok(());
            }
        }
        Err(StoreError::Conflict(format!(
            "no free username for user {id}"
        )))
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sqlite_error)?;
        Ok(row.as_ref().map(user_row))
    }

    async fn credentials(
        &self,
        username: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS}, password_hash FROM users WHERE username_key = ?"
        ))
        .bind(username.to_lowercase())
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlite_error)?;
        Ok(row.map(|r| (user_row(&r), r.get("password_hash"))))
    }

    async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE username_key LIKE ? ESCAPE '\\' \
             ORDER BY username_key LIMIT ?"
        ))
        .bind(like_prefix(&prefix.to_lowercase()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        Ok(rows.iter().map(user_row).collect())
    }

    async fn missing_users(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let mut missing = Vec::new();
        for &id in ids {
            let found: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(sqlite_error)?;
            if found.is_none() {
                missing.push(id);
            }
        }
        Ok(missing)
    }

    async fn create_group(
        &self,
        name: &str,
        owner: UserId,
        members: &[UserId],
        now_ms: i64,
    ) -> Result<Group, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlite_error)?;
        let row = sqlx::query(
            "INSERT INTO chat_groups (name, owner_id, created_at) VALUES (?, ?, ?) \
             RETURNING id, name, owner_id, created_at",
        )
        .bind(name)
        .bind(owner)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(sqlite_error)?;
        let mut group = group_row(&row);
        let mut list = Vec::with_capacity(members.len() + 1);
        for (user, role) in
            std::iter::once((owner, Role::Owner)).chain(members.iter().map(|&m| (m, Role::Member)))
        {
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
            )
            .bind(group.id)
            .bind(user)
            .bind(role.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(sqlite_error)?;
            list.push(Member {
                user_id: user,
                role,
                joined_at: from_ms(now_ms),
            });
        }
        sqlx::query("INSERT INTO conversations (conv_key, group_id) VALUES (?, ?)")
            .bind(ConversationKey::Group(group.id).db_key())
            .bind(group.id)
            .execute(&mut *tx)
            .await
            .map_err(sqlite_error)?;
        tx.commit().await.map_err(sqlite_error)?;
        group.members = Some(list);
        Ok(group)
    }

    async fn group(&self, id: GroupId) -> Result<Option<Group>, StoreError> {
        let row =
            sqlx::query("SELECT id, name, owner_id, created_at FROM chat_groups WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(sqlite_error)?;
        Ok(row.as_ref().map(group_row))
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<Group>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.id, g.name, g.owner_id, g.created_at FROM chat_groups g \
             JOIN group_members m ON m.group_id = g.id WHERE m.user_id = ? ORDER BY g.id DESC",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        Ok(rows.iter().map(group_row).collect())
    }

    async fn members(&self, group: GroupId) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, role, joined_at FROM group_members WHERE group_id = ? \
             ORDER BY joined_at, user_id",
        )
        .bind(group)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        Ok(rows.iter().map(member_row).collect())
    }

    async fn add_member(
        &self,
        group: GroupId,
        user: UserId,
        role: Role,
        now_ms: i64,
    ) -> Result<Member, StoreError> {
        let result = sqlx::query(
            "INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
        )
        .bind(group)
        .bind(user)
        .bind(role.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await;
        match result.map_err(sqlite_error) {
            Ok(_) => Ok(Member {
                user_id: user,
                role,
                joined_at: from_ms(now_ms),
            }),
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(
                "already a member of this group".into(),
            )),
            Err(e) => Err(e),
        }
    }

    async fn remove_member(&self, group: GroupId, user: UserId) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlite_error)?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM group_members WHERE group_id = ? AND user_id = ?")
                .bind(group)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sqlite_error)?;
        let Some(role) = role else {
            return Err(StoreError::NotFound);
        };
        sqlx::query("DELETE FROM group_members WHERE group_id = ? AND user_id = ?")
            .bind(group)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(sqlite_error)?;
        if role == Role::Owner.as_str() {
            let heir: Option<i64> = sqlx::query_scalar(
                "SELECT user_id FROM group_members WHERE group_id = ? \
                 ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1",
            )
            .bind(group)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sqlite_error)?;
            if let Some(heir) = heir {
                sqlx::query(
                    "UPDATE group_members SET role = 'owner' WHERE group_id = ? AND user_id = ?",
                )
                .bind(group)
                .bind(heir)
                .execute(&mut *tx)
                .await
                .map_err(sqlite_error)?;
                sqlx::query("UPDATE chat_groups SET owner_id = ? WHERE id = ?")
                    .bind(heir)
                    .bind(group)
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlite_error)?;
            }
        }
        tx.commit().await.map_err(sqlite_error)?;
        Ok(())
    }

    async fn insert_messages(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlite_error)?;
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            out.push(insert_one(&mut tx, m).await?);
        }
        tx.commit().await.map_err(sqlite_error)?;
        Ok(out)
    }

    async fn messages(
        &self,
        conversation: ConversationKey,
        page: Page,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let conv: Option<i64> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE conv_key = ?")
                .bind(conversation.db_key())
                .fetch_optional(&self.pool)
                .await
                .map_err(sqlite_error)?;
        let Some(conv) = conv else {
            return Ok((Vec::new(), false));
        };
        let after = page.after_seq.unwrap_or(0);
        let before = page.before_seq.unwrap_or(i64::MAX);
        // With afterSeq, read forwards from it; otherwise page back from
        // `before` (or the newest).
        let forward = page.after_seq.is_some();
        let order = if forward { "ASC" } else { "DESC" };
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? AND seq > ? AND seq < ? \
             ORDER BY seq {order} LIMIT ?"
        ))
        .bind(conv)
        .bind(after)
        .bind(before)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        let mut messages: Vec<Message> = rows.iter().map(message_row).collect();
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
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.user_lo, c.user_hi, c.group_id, c.last_seq, c.last_message_id, \
             m.id AS m_id, m.conversation_type AS m_conversation_type, m.sender_id AS m_sender_id, \
             m.receiver_id AS m_receiver_id, m.seq AS m_seq, m.content AS m_content, \
             m.client_msg_id AS m_client_msg_id, m.created_at AS m_created_at \
             FROM conversations c LEFT JOIN messages m ON m.id = c.last_message_id \
             WHERE c.id IN ( \
               SELECT id FROM conversations WHERE user_lo = ?1 \
               UNION SELECT id FROM conversations WHERE user_hi = ?1 \
               UNION SELECT c2.id FROM conversations c2 \
                 JOIN group_members gm ON gm.group_id = c2.group_id WHERE gm.user_id = ?1) \
             ORDER BY c.last_message_id IS NULL, c.last_message_id DESC, c.id DESC LIMIT ?2",
        )
        .bind(user)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                let group: Option<i64> = r.get("group_id");
                let (conversation_type, receiver_id) = match group {
                    Some(g) => (ConversationType::Group, g),
                    None => {
                        let lo: i64 = r.get("user_lo");
                        let hi: i64 = r.get("user_hi");
                        (ConversationType::Private, if lo == user { hi } else { lo })
                    }
                };
                let last: Option<i64> = r.get("last_message_id");
                ConversationSummary {
                    conversation_type,
                    receiver_id,
                    last_message: last.map(|_| message_row_prefixed(r, "m_")),
                    last_seq: r.get("last_seq"),
                }
            })
            .collect())
    }
}
