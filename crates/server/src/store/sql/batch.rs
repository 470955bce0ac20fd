//! The batch insert: a writer batch of messages in a fixed number of
//! statements, on the writer's own connection where it has one.
//!
//! Messages are inserted a batch at a time with a fixed number of
//! statements whatever the batch size: one multi-row insert, returning its
//! rows where the server has `RETURNING` (MySQL reads them back with one
//! more statement). On the writer's own connection (MySQL/MariaDB,
//! PostgreSQL) that insert is one statement of the batch's exact size, and
//! where it returns its rows (MariaDB ≥ 10.5, PostgreSQL) and is all the
//! batch needs, it runs without a transaction: one round trip
//! ([`SqlStore::for_writer`]). Elsewhere it is cut into at most two
//! statements of a few shapes (`shaped_chunks` in `dialect.rs`). A batch
//! whose insert the unique index refuses for a reused `client_msg_id` is
//! done again after one lookup of its keys (`MessageStore::insert_messages`
//! in `messages.rs` decides). Each conversation's next `seq` comes from the
//! writer's memory ([`SeqCache`]); only conversations it does not know yet
//! cost a read, and while other writers share the database every
//! conversation of a batch is locked and read (see `seqs.rs`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use palaver_protocol::Message;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, Row, Transaction};

use super::dialect::{shaped_chunks, tuple, tuples, Dialect, CHUNK, LAST_SEQ};
use super::rows::{message_from_row, opt_text, stored_message, MESSAGE_COLS};
use super::SqlStore;
use crate::ids::{ConversationKey, UserId};
use crate::store::seqs::{Learned, SeqCache};
use crate::store::{Inserted, NewMessage, StoreError};

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
pub(super) struct BatchConn {
    conn: Option<PoolConnection<Any>>,
    /// The writer's kept connection, whose last batch went through: its
    /// session is known to be outside any transaction, so an insert on
    /// its own commits by itself ([`Batch::Alone`]). One fresh from the
    /// pool runs its first batch in a transaction.
    pub(super) kept: bool,
}

impl BatchConn {
    pub(super) fn finish(mut self) -> PoolConnection<Any> {
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
pub(super) enum Batch {
    /// As one statement on its own, which the database commits by itself
    /// (on a session known to be outside any transaction, see
    /// [`BatchConn::kept`]): only when nothing but the insert is needed
    /// and it is one statement.
    Alone,
    /// In a transaction, with a lookup of its `clientMsgId`s first or not.
    InTransaction { look_up_keys: bool },
}

impl Batch {
    /// Whether the batch first looks its `clientMsgId`s up: only when it is
    /// run again after its insert met a repeated one (a saving: a lookup
    /// on every batch would give the same outcome).
    fn looks_up_keys(self) -> bool {
        self == Batch::InTransaction { look_up_keys: true }
    }
}

impl SqlStore {
    /// A message batch's transaction. Its reads must see rows other
    /// writers have committed, not a snapshot from its own first read:
    /// after locking a conversation it reads the conversation's last `seq`,
    /// and after creating conversations it reads their ids. PostgreSQL's
    /// default (read committed) and SQLite's exclusive write transaction
    /// do; MySQL's default (repeatable read) does not, so the batch asks
    /// for read committed, in the same round trip as its `BEGIN`.
    pub(super) async fn begin_batch<'c>(
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
        .map_err(StoreError::from)
    }

    /// The connection for a batch: the writer's kept one (checked with a
    /// ping if it sat unused for [`HELD_IDLE`]), else one from the pool.
    pub(super) async fn batch_conn(&self) -> Result<BatchConn, StoreError> {
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
        let conn = self.pool.acquire().await?;
        Ok(BatchConn {
            conn: Some(conn),
            kept: false,
        })
    }

    /// A read the writer makes before a batch (its expired block sets and
    /// rosters): on the writer's kept connection, since its pool holds no
    /// other, and kept again once answered (closed if not: a read cut off
    /// may leave its answer on the wire). One fresh from the pool goes
    /// back to it: only a batch makes a connection the kept one. Any other
    /// store reads from its pool.
    pub(super) async fn read_for_writer<T>(
        &self,
        read: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if !self.writer {
            return read(&mut *self.pool.acquire().await?).await;
        }
        let mut conn = self.batch_conn().await?;
        let out = read(&mut conn).await?;
        let kept = conn.kept;
        let conn = conn.finish();
        if kept {
            *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some((conn, Instant::now()));
        }
        Ok(out)
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
            for row in query.fetch_all(&mut *conn).await? {
                let msg = message_from_row(self.d, &row, "")?;
                if let Some(cid) = msg.client_msg_id.clone() {
                    found.insert((UserId::from_stored(msg.sender_id), cid), msg);
                }
            }
        }
        Ok(found)
    }

    /// Writes a new `writer_epoch` value, committed at once; returns it.
    pub(super) async fn bump_writer_epoch(&self) -> Result<String, StoreError> {
        let value = format!("{:016x}", rand::random::<u64>());
        self.put_setting(&self.pool, WRITER_EPOCH, &value).await?;
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
            rows.extend(query.fetch_all(&mut *conn).await?);
        }
        Ok(rows)
    }

    /// Locks the conversations' rows (in id order, so that two writers
    /// never wait on each other in a cycle) until the transaction ends.
    /// SQLite needs nothing: its write transaction already excludes every
    /// other writer.
    pub(super) async fn lock_conversations(
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
            let id: i64 = row.try_get(0)?;
            let last: i64 = row.try_get(1)?;
            lasts.insert(id, last);
        }
        Ok(lasts)
    }

    /// Inserts rows `(batch index, conversation id, seq)`; returns the new
    /// ids keyed by `(conversation id, seq)`, and the `writer_epoch`
    /// setting read by the same statement (`None` if nothing was inserted;
    /// see `seqs.rs`).
    pub(super) async fn insert_rows(
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
                 receiver_id, content, client_msg_id, created_at, reply_seq, system_change) \
                 VALUES {}",
                tuples(chunk.len(), 10)
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
                query =
                    query
                        .bind(conv)
                        .bind(seq)
                        .bind(kind.as_str())
                        .bind(m.sender_id)
                        .bind(m.receiver_id)
                        .bind(m.content.as_str())
                        .bind(m.client_msg_id.as_deref())
                        .bind(m.created_at_ms)
                        .bind(m.reply_to.as_ref().map(|r| r.seq))
                        .bind(m.system.as_ref().map(|s| {
                            serde_json::to_string(s).expect("a system change serializes")
                        }));
            }
            let returned = if !self.returning {
                query.execute(&mut *conn).await?;
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
            }?;
            // By position, as above.
            for row in returned {
                let id: i64 = row.try_get(0)?;
                let conv: i64 = row.try_get(1)?;
                let seq: i64 = row.try_get(2)?;
                ids.insert((conv, seq), id);
                if epoch.is_none() {
                    epoch = Some(opt_text(self.d, &row, 3)?);
                }
            }
        }
        Ok((ids, epoch))
    }

    /// The mention rows of a batch's messages (user, conversation, seq,
    /// message), in the batch's transaction: a batch with mentions never
    /// runs as one statement on its own.
    async fn insert_mentions(
        &self,
        conn: &mut AnyConnection,
        batch: &[NewMessage],
        rows: &[(usize, i64, i64)],
        ids: &HashMap<(i64, i64), i64>,
    ) -> Result<(), StoreError> {
        let mentions: Vec<(UserId, i64, i64, i64)> = rows
            .iter()
            .flat_map(|&(i, conv, seq)| {
                let id = ids.get(&(conv, seq)).copied().unwrap_or_default();
                batch[i].mentions.iter().map(move |&u| (u, conv, seq, id))
            })
            .collect();
        for chunk in mentions.chunks(CHUNK) {
            let sql = self.d.q(format!(
                "INSERT INTO mentions (user_id, conversation_id, seq, message_id) VALUES {}",
                tuples(chunk.len(), 4)
            ));
            let mut query = sqlx::query(&sql);
            for &(user, conv, seq, id) in chunk {
                query = query.bind(user).bind(conv).bind(seq).bind(id);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Whether a batch may go as one statement on its own ([`Batch::Alone`]):
    /// every conversation's id and last seq remembered, no locks (no other
    /// writer seen), no mentions, its rows returned by the insert. SQLite
    /// keeps its transaction: its `BEGIN IMMEDIATE` takes the write lock up
    /// front (`begin_write`). Going alone only saves round trips: a batch
    /// refused it runs in a transaction instead, with the same outcome.
    fn may_go_alone(&self, batch: &[NewMessage], seqs: &SeqCache, shared: bool) -> bool {
        !(shared
            || batch.iter().any(|m| !m.mentions.is_empty())
            || !self.returning
            || self.d == Dialect::Sqlite
            || batch.iter().any(|m| {
                seqs.last(&m.conversation).is_none() || seqs.id(&m.conversation).is_none()
            }))
    }

    /// Inserts a batch, inside the caller's transaction or, `Alone`, as its
    /// only statement (`None` when it cannot be); returns each message's
    /// outcome and what to remember once it commits. Without
    /// `look_up_keys` the batch's `client_msg_id`s are taken to be new, and
    /// one that is not fails the insert with `Conflict` (unique index).
    pub(super) async fn insert_batch(
        &self,
        conn: &mut AnyConnection,
        batch: &[NewMessage],
        seqs: &SeqCache,
        how: Batch,
    ) -> Result<Option<(Vec<Result<Inserted, StoreError>>, Learned)>, StoreError> {
        let now = Instant::now();
        let shared = seqs.shared(now);
        if how == Batch::Alone && !self.may_go_alone(batch, seqs, shared) {
            return Ok(None);
        }
        let existing = if how.looks_up_keys() {
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
                                // The row names the seq it answers; the
                                // writer has just read what that shows.
                                message: Message {
                                    reply_to: m.reply_to.clone(),
                                    ..prev.clone()
                                },
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
                        && reply_seq(&b.reply_to) == reply_seq(&m.reply_to)
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
        self.insert_mentions(conn, batch, &rows, &ids).await?;
        for &(i, conv, seq) in &rows {
            let id = *ids.get(&(conv, seq)).ok_or_else(|| {
                StoreError::Other(sqlx::Error::Protocol("inserted row not returned".into()))
            })?;
            out[i] = Some(Ok(Inserted {
                message: stored_message(&batch[i], id, seq),
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
    pub(super) async fn attempt_batch(
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
        tx.commit().await?;
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
    prev.conversation_type == kind
        && prev.receiver_id == m.receiver_id
        && prev.content == m.content
        && reply_seq(&prev.reply_to) == reply_seq(&m.reply_to)
}

fn reply_seq(r: &Option<palaver_protocol::ReplyTo>) -> Option<i64> {
    r.as_ref().map(|r| r.seq)
}
