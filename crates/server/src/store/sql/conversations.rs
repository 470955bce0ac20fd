//! Conversations: their rows (found or created for a batch), read
//! positions, and the caller's conversation list.
//!
//! A read position is never below the seq of the user's own last message
//! (`own_last_seq`): sending reads up to the message sent. The list places
//! each conversation by its last message's id ([`ActivityKey`]) and pages
//! by that key.

use std::collections::HashMap;

use async_trait::async_trait;
use palaver_protocol::{ConversationSummary, ConversationType, Message};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::dialect::{own_last_seq, shaped_chunks, tuple, tuples, Dialect, LAST_ID, LAST_SEQ};
use super::rows::{message_from_row, opt_text};
use super::SqlStore;
use crate::ids::{ActivityKey, ConversationKey, ConversationsPage, UserId};
use crate::store::{from_ms, ConversationStore, ReadOutcome, SeqCache, StoreError};

impl SqlStore {
    /// The row id of each conversation in `convs`, from `seqs` where known,
    /// else read, creating the rows that do not exist yet.
    pub(super) async fn conversation_ids(
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
            query.execute(&mut *conn).await?;
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
            for row in query.fetch_all(&mut *conn).await? {
                let id: i64 = row.try_get(0)?;
                let key: String = row.try_get(1)?;
                if let Some(conv) = by_key.get(&key) {
                    ids.insert(*conv, id);
                }
            }
        }
        Ok(())
    }

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
            .await?;
        let stored: i64 = r.try_get("stored_seq")?;
        let own: i64 = r.try_get("own_seq")?;
        Ok(stored.max(own))
    }
}

#[async_trait]
impl ConversationStore for SqlStore {
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
            .await?;
        let (conv, last): (i64, i64) = match row {
            Some(r) => (r.try_get("id")?, r.try_get("last_seq")?),
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
                .await?;
            self.read_position(user, conv).await?
        } else {
            let row = sqlx::query(&self.d.q(format!("{upsert} RETURNING read_seq")))
                .bind(user)
                .bind(conv)
                .bind(seq)
                .fetch_one(&self.pool)
                .await?;
            row.try_get(0)?
        };
        Ok(ReadOutcome::Moved {
            read_seq: after,
            moved: after == seq,
        })
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
        let mut conn = self.pool.acquire().await?;
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
             m.client_msg_id AS m_client_msg_id, m.created_at AS m_created_at, \
             m.edited_at AS m_edited_at, m.deleted_at AS m_deleted_at, m.reply_seq AS m_reply_seq, \
             m.change_seq AS m_change_seq, m.system_change AS m_system_change, c.last_change \
             FROM (SELECT a.id, a.last_id FROM ( \
                 SELECT c.id, {LAST_ID} AS last_id FROM ( \
                   SELECT id FROM conversations WHERE user_lo = ? \
                   UNION SELECT id FROM conversations WHERE user_hi = ? \
                   UNION SELECT c2.id FROM conversations c2 \
                     JOIN group_members gm ON gm.group_id = c2.group_id \
                     WHERE gm.user_id = ? AND gm.left_seq IS NULL) mine \
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
            .fetch_all(&mut *conn)
            .await?;
        let get = |r: &AnyRow, c: &str| -> Result<Option<i64>, StoreError> {
            r.try_get::<Option<i64>, _>(c).map_err(StoreError::from)
        };
        let more = rows.len() > page.limit as usize;
        let mut list = Vec::with_capacity(rows.len().min(page.limit as usize));
        let mut last_key = None;
        let mut conv_ids = Vec::with_capacity(list.capacity());
        for r in rows.iter().take(page.limit as usize) {
            let (conversation_type, receiver_id) = match get(r, "group_id")? {
                Some(g) => (ConversationType::Group, g),
                None => {
                    let lo = get(r, "user_lo")?.unwrap_or_default();
                    let hi = get(r, "user_hi")?.unwrap_or_default();
                    (
                        ConversationType::Private,
                        if lo == user.get() { hi } else { lo },
                    )
                }
            };
            let last_message = match get(r, "m_id")? {
                Some(_) => Some(message_from_row(self.d, r, "m_")?),
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
            conv_ids.push(get(r, "conv_id")?.unwrap_or_default());
            list.push(ConversationSummary {
                conversation_type,
                receiver_id,
                username: opt_text(self.d, r, "peer_username")?,
                name: opt_text(self.d, r, "group_name")?,
                last_message,
                last_seq,
                read_seq,
                unread_count: last_seq - read_seq,
                last_change: get(r, "last_change")?.unwrap_or_default(),
                mention_count: 0,
                online: None,
                last_seen: get(r, "peer_last_seen")?.map(from_ms),
            });
        }
        self.count_mentions(&mut conn, user, &conv_ids, &mut list)
            .await?;
        // What the last messages that are replies show of what they answer.
        let mut lasts: Vec<Message> = list
            .iter_mut()
            .filter_map(|c| c.last_message.take())
            .collect();
        self.fill(&mut conn, &mut lasts, None).await?;
        let mut lasts = lasts.into_iter();
        for c in list.iter_mut().filter(|c| c.last_seq > 0) {
            c.last_message = lasts.next();
        }
        Ok((list, if more { last_key } else { None }))
    }
}

impl SqlStore {
    /// Sets each row's `mention_count`: the messages after its read
    /// position that mention `user`. The stored position bounds the index
    /// range; the own-message part of the position is applied here.
    async fn count_mentions(
        &self,
        conn: &mut AnyConnection,
        user: UserId,
        conv_ids: &[i64],
        list: &mut [ConversationSummary],
    ) -> Result<(), StoreError> {
        let groups: Vec<i64> = conv_ids
            .iter()
            .zip(list.iter())
            .filter(|(_, c)| c.conversation_type == ConversationType::Group)
            .map(|(&id, _)| id)
            .collect();
        if groups.is_empty() {
            return Ok(());
        }
        let sql = self.d.q(format!(
            "SELECT mn.conversation_id, mn.seq FROM mentions mn \
             LEFT JOIN read_positions r ON r.user_id = mn.user_id \
               AND r.conversation_id = mn.conversation_id \
             WHERE mn.user_id = ? AND mn.conversation_id IN {} \
               AND mn.seq > COALESCE(r.read_seq, 0)",
            tuple(groups.len())
        ));
        let mut query = sqlx::query(&sql).bind(user);
        for id in &groups {
            query = query.bind(*id);
        }
        let mut unread: HashMap<i64, Vec<i64>> = HashMap::new();
        for row in query.fetch_all(&mut *conn).await? {
            unread
                .entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        for (id, c) in conv_ids.iter().zip(list.iter_mut()) {
            if let Some(seqs) = unread.get(id) {
                c.mention_count = seqs.iter().filter(|&&s| s > c.read_seq).count() as i64;
            }
        }
        Ok(())
    }
}
