//! Messages: inserting a writer batch (retrying it with a key lookup when a
//! `clientMsgId` repeats), editing and deleting one (v1.2), and reading a
//! conversation's history or its changes.
//!
//! How a batch is inserted is `batch.rs`; this file decides what to do
//! with its outcome: keep the writer's connection, teach the seq cache,
//! and tell the other writers when a race was lost.

use std::time::Instant;

use async_trait::async_trait;
use std::collections::HashMap;

use palaver_protocol::{ConversationType, Message, ReactionCount, ReplyTo, REPLY_EXCERPT_CHARS};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::batch::{Batch, BatchConn};
use super::dialect::tuple;
use super::rows::{message_from_row, opt_text, text, MESSAGE_COLS};
use super::SqlStore;
use crate::ids::{ConversationKey, Page, UserId};
use crate::store::seqs::Learned;
use crate::store::{
    ChangeOutcome, Inserted, MessageChange, MessageStore, NewMessage, SeqCache, StoreError,
    MAX_REACTIONS,
};

impl SqlStore {
    /// After one of the writer's transactions (a batch, or a group change
    /// with its system message): keeps the connection, or closes it after
    /// a failure; teaches the seq cache what committed, or forgets `convs`'
    /// last seqs when it is unknown whether it did; and when another
    /// writer won a race, tells the other writers and answers `Retryable`.
    pub(super) async fn settle<T>(
        &self,
        conn: BatchConn,
        result: Result<(T, Learned), StoreError>,
        convs: impl IntoIterator<Item = ConversationKey>,
        seqs: &mut SeqCache,
    ) -> Result<T, StoreError> {
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
                // It may or may not have committed: what it would have
                // taught is unknown.
                seqs.forget(convs);
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
}

#[async_trait]
impl MessageStore for SqlStore {
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
        self.settle(conn, result, batch.iter().map(|m| m.conversation), seqs)
            .await
    }

    async fn message_at(
        &self,
        conversation: ConversationKey,
        seq: i64,
        viewer: Option<UserId>,
    ) -> Result<Option<Message>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let Some(conv) = self.conversation_id(&mut conn, conversation).await? else {
            return Ok(None);
        };
        self.message_on(&mut conn, conv, seq, viewer).await
    }

    async fn change_message(
        &self,
        conversation: ConversationKey,
        seq: i64,
        change: &MessageChange,
        now_ms: i64,
    ) -> Result<ChangeOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(conv) = self.conversation_id(&mut tx, conversation).await? else {
            return Ok(ChangeOutcome::Gone);
        };
        // The counter first: its row lock orders every change to one
        // conversation, so change positions commit in order, gap-free.
        let bump = self
            .d
            .q("UPDATE conversations SET last_change = last_change + 1 WHERE id = ?");
        sqlx::query(&bump).bind(conv).execute(&mut *tx).await?;
        let read = self
            .d
            .q("SELECT last_change FROM conversations WHERE id = ?");
        let position: i64 = sqlx::query(&read)
            .bind(conv)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let find = self.d.q(
            "SELECT id FROM messages WHERE conversation_id = ? AND seq = ? AND deleted_at IS NULL",
        );
        let Some(row) = sqlx::query(&find)
            .bind(conv)
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(ChangeOutcome::Gone);
        };
        let id: i64 = row.try_get(0)?;
        // Each arm applies its change, or says why nothing changed (the
        // transaction, counter bump included, is then rolled back).
        let refused = match change {
            MessageChange::Edit(content) => {
                let sql = self.d.q(
                    "UPDATE messages SET content = ?, edited_at = ?, change_seq = ? WHERE id = ?",
                );
                sqlx::query(&sql)
                    .bind(content.as_str())
                    .bind(now_ms)
                    .bind(position)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                None
            }
            MessageChange::Delete => {
                for table in ["reactions", "mentions"] {
                    let sql = self
                        .d
                        .q(format!("DELETE FROM {table} WHERE message_id = ?"));
                    sqlx::query(&sql).bind(id).execute(&mut *tx).await?;
                }
                let sql = self.d.q(
                    "UPDATE messages SET content = '', deleted_at = ?, change_seq = ? WHERE id = ?",
                );
                sqlx::query(&sql)
                    .bind(now_ms)
                    .bind(position)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                None
            }
            MessageChange::React { user, emoji, on } => {
                let refused = self.react(&mut tx, id, *user, emoji, *on, now_ms).await?;
                if refused.is_none() {
                    let sql = self.d.q("UPDATE messages SET change_seq = ? WHERE id = ?");
                    sqlx::query(&sql)
                        .bind(position)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                refused
            }
        };
        if let Some(outcome) = refused {
            tx.rollback().await?;
            return Ok(outcome);
        }
        let viewer = match change {
            MessageChange::React { user, .. } => Some(*user),
            _ => None,
        };
        let message = self.message_on(&mut tx, conv, seq, viewer).await?;
        tx.commit().await?;
        Ok(message.map_or(ChangeOutcome::Gone, |m| ChangeOutcome::Changed(Box::new(m))))
    }

    async fn messages(
        &self,
        conversation: ConversationKey,
        page: Page,
        viewer: UserId,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let Some(conv) = self.conversation_id(&mut conn, conversation).await? else {
            return Ok((Vec::new(), false));
        };
        // Changes: forwards by change_seq from `changedAfter`. Otherwise by
        // seq: with afterSeq forwards from it, else back from `before` (or
        // the newest).
        let (col, after, before, forward) = match page.changes_after() {
            Some(changed) => ("change_seq", changed, i64::MAX, true),
            None => (
                "seq",
                page.after_seq().unwrap_or(0),
                page.before_seq().unwrap_or(i64::MAX),
                page.after_seq().is_some(),
            ),
        };
        let order = if forward { "ASC" } else { "DESC" };
        let sql = self.d.q(format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? AND {col} > ? \
             AND {col} < ? AND seq <= ? ORDER BY {col} {order} LIMIT ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(conv)
            .bind(after)
            .bind(before)
            .bind(page.last_seq().unwrap_or(i64::MAX))
            .bind(i64::from(page.limit()) + 1)
            .fetch_all(&mut *conn)
            .await?;
        let mut messages = rows
            .iter()
            .map(|r| message_from_row(self.d, r, ""))
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = messages.len() > page.limit() as usize;
        messages.truncate(page.limit() as usize);
        if !forward {
            messages.reverse();
        }
        self.fill(&mut conn, &mut messages, Some(viewer)).await?;
        Ok((messages, has_more))
    }
}

impl SqlStore {
    /// A conversation's row id, `None` before its first message.
    async fn conversation_id(
        &self,
        conn: &mut AnyConnection,
        conversation: ConversationKey,
    ) -> Result<Option<i64>, StoreError> {
        let sql = self.d.q("SELECT id FROM conversations WHERE conv_key = ?");
        let row = sqlx::query(&sql)
            .bind(conversation.db_key())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// The message at `seq` of conversation `conv`, its reply filled in,
    /// and with `viewer` its reactions.
    async fn message_on(
        &self,
        conn: &mut AnyConnection,
        conv: i64,
        seq: i64,
        viewer: Option<UserId>,
    ) -> Result<Option<Message>, StoreError> {
        let sql = self.d.q(format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? AND seq = ?"
        ));
        let row = sqlx::query(&sql)
            .bind(conv)
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut one = [message_from_row(self.d, &row, "")?];
        self.fill(conn, &mut one, viewer).await?;
        let [message] = one;
        Ok(Some(message))
    }

    /// Fills in what messages read from rows lack: what each reply shows
    /// of the message it answers, each message's mentions and, for a
    /// `viewer`, its reactions. One query each for all the messages.
    pub(super) async fn fill(
        &self,
        conn: &mut AnyConnection,
        messages: &mut [Message],
        viewer: Option<UserId>,
    ) -> Result<(), StoreError> {
        self.fill_replies(conn, messages).await?;
        self.fill_mentions(conn, messages).await?;
        if let Some(viewer) = viewer {
            self.fill_reactions(conn, messages, viewer).await?;
        }
        Ok(())
    }

    /// The rows `select` gives for the ids of the `messages` that `wanted`
    /// picks (`{ids}` in it stands for their list; `viewer`, if given, binds
    /// before them); no query when it picks none.
    async fn rows_for(
        &self,
        conn: &mut AnyConnection,
        messages: &[Message],
        wanted: impl Fn(&Message) -> bool,
        select: &str,
        viewer: Option<UserId>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let ids: Vec<i64> = messages
            .iter()
            .filter(|m| wanted(m))
            .map(|m| m.id)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.d.q(select.replace("{ids}", &tuple(ids.len())));
        let mut query = sqlx::query(&sql);
        if let Some(viewer) = viewer {
            query = query.bind(viewer);
        }
        for id in ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&mut *conn).await?)
    }

    /// Each group message's mentions, by user id.
    async fn fill_mentions(
        &self,
        conn: &mut AnyConnection,
        messages: &mut [Message],
    ) -> Result<(), StoreError> {
        let group =
            |m: &Message| m.conversation_type == ConversationType::Group && m.deleted_at.is_none();
        let select = "SELECT message_id, user_id FROM mentions WHERE message_id IN {ids} \
                      ORDER BY user_id";
        let rows = self.rows_for(conn, messages, group, select, None).await?;
        let mut by_message: HashMap<i64, Vec<i64>> = HashMap::new();
        for row in rows {
            by_message
                .entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        for m in messages.iter_mut() {
            if let Some(users) = by_message.remove(&m.id) {
                m.mentions = users;
            }
        }
        Ok(())
    }

    /// Fills in what each reply shows of the message it answers (its
    /// sender and current excerpt), read in one query for all of them.
    async fn fill_replies(
        &self,
        conn: &mut AnyConnection,
        messages: &mut [Message],
    ) -> Result<(), StoreError> {
        let select = "SELECT m.id, r.seq, r.sender_id, r.content, r.deleted_at FROM messages m \
             JOIN messages r ON r.conversation_id = m.conversation_id AND r.seq = m.reply_seq \
             WHERE m.id IN {ids}";
        let reply = |m: &Message| m.reply_to.is_some();
        let rows = self.rows_for(conn, messages, reply, select, None).await?;
        let mut shown = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let deleted: Option<i64> = row.try_get(4)?;
            let content = opt_text(self.d, &row, 3)?.unwrap_or_default();
            shown.insert(
                id,
                ReplyTo {
                    seq: row.try_get(1)?,
                    sender_id: row.try_get(2)?,
                    excerpt: deleted
                        .is_none()
                        .then(|| content.chars().take(REPLY_EXCERPT_CHARS).collect()),
                },
            );
        }
        for m in messages.iter_mut() {
            if let Some(r) = shown.remove(&m.id) {
                m.reply_to = Some(r);
            }
        }
        Ok(())
    }

    /// Adds or removes a reaction of message `id`; `Some` when nothing
    /// changed, and why.
    async fn react(
        &self,
        conn: &mut AnyConnection,
        id: i64,
        user: UserId,
        emoji: &str,
        on: bool,
        now_ms: i64,
    ) -> Result<Option<ChangeOutcome>, StoreError> {
        if !on {
            let sql = self
                .d
                .q("DELETE FROM reactions WHERE message_id = ? AND user_id = ? AND emoji = ?");
            let done = sqlx::query(&sql)
                .bind(id)
                .bind(user)
                .bind(emoji)
                .execute(&mut *conn)
                .await?;
            return Ok((done.rows_affected() == 0).then_some(ChangeOutcome::Unchanged));
        }
        // The distinct emoji already there, and whether this user has
        // this one: a repeat changes nothing, a 21st emoji is refused.
        let sql = self.d.q(
            "SELECT emoji, MAX(CASE WHEN user_id = ? THEN user_id ELSE 0 END) AS mine \
             FROM reactions WHERE message_id = ? GROUP BY emoji",
        );
        let rows = sqlx::query(&sql)
            .bind(user)
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        let mut present = false;
        for row in &rows {
            if text(self.d, row, "emoji")? == emoji {
                // `mine` is the user's id where they reacted: a BIGINT on
                // every backend, as a CASE of literals would not be.
                if row.try_get::<i64, _>("mine")? == user.get() {
                    return Ok(Some(ChangeOutcome::Unchanged));
                }
                present = true;
            }
        }
        if !present && rows.len() as i64 >= MAX_REACTIONS {
            return Ok(Some(ChangeOutcome::TooManyReactions));
        }
        let sql = self.d.q(
            "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES (?, ?, ?, ?)",
        );
        sqlx::query(&sql)
            .bind(id)
            .bind(user)
            .bind(emoji)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        Ok(None)
    }

    /// Fills in each message's reactions as `viewer` sees them: the count
    /// per emoji, most reacted first (then first reacted first), and
    /// whether `viewer` is among them. One query for all the messages.
    async fn fill_reactions(
        &self,
        conn: &mut AnyConnection,
        messages: &mut [Message],
        viewer: UserId,
    ) -> Result<(), StoreError> {
        let select = "SELECT message_id, emoji, COUNT(*) AS n, MIN(created_at) AS first, \
             MAX(CASE WHEN user_id = ? THEN user_id ELSE 0 END) AS mine \
             FROM reactions WHERE message_id IN {ids} GROUP BY message_id, emoji";
        let live = |m: &Message| m.deleted_at.is_none();
        let rows = self
            .rows_for(conn, messages, live, select, Some(viewer))
            .await?;
        let mut by_message: HashMap<i64, Vec<(i64, i64, ReactionCount)>> = HashMap::new();
        for row in rows {
            let count = ReactionCount {
                emoji: text(self.d, &row, "emoji")?,
                count: row.try_get("n")?,
                me: row.try_get::<i64, _>("mine")? == viewer.get(),
            };
            let first: i64 = row.try_get("first")?;
            by_message
                .entry(row.try_get("message_id")?)
                .or_default()
                .push((-count.count, first, count));
        }
        for m in messages.iter_mut() {
            if let Some(mut counts) = by_message.remove(&m.id) {
                counts.sort_by_key(|c| (c.0, c.1));
                m.reactions = counts.into_iter().map(|(_, _, c)| c).collect();
            }
        }
        Ok(())
    }
}
