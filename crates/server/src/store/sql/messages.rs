//! Messages: inserting a writer batch (retrying it with a key lookup when a
//! `clientMsgId` repeats) and reading a conversation's history.
//!
//! How a batch is inserted is `batch.rs`; this file decides what to do
//! with its outcome: keep the writer's connection, teach the seq cache,
//! and tell the other writers when a race was lost.

use std::time::Instant;

use async_trait::async_trait;
use palaver_protocol::Message;
use sqlx::Row;

use super::batch::Batch;
use super::rows::{message_from_row, MESSAGE_COLS};
use super::SqlStore;
use crate::ids::{ConversationKey, Page};
use crate::store::{Inserted, MessageStore, NewMessage, SeqCache, StoreError};

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

    async fn messages(
        &self,
        conversation: ConversationKey,
        page: Page,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let sql = self.d.q("SELECT id FROM conversations WHERE conv_key = ?");
        let row = sqlx::query(&sql)
            .bind(conversation.db_key())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok((Vec::new(), false));
        };
        let conv: i64 = row.try_get(0)?;
        let after = page.after_seq().unwrap_or(0);
        let before = page.before_seq().unwrap_or(i64::MAX);
        // With afterSeq, read forwards from it; otherwise page back from
        // `before` (or the newest).
        let forward = page.after_seq().is_some();
        let order = if forward { "ASC" } else { "DESC" };
        let sql = self.d.q(format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? AND seq > ? AND seq < ? \
             ORDER BY seq {order} LIMIT ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(conv)
            .bind(after)
            .bind(before)
            .bind(i64::from(page.limit()) + 1)
            .fetch_all(&self.pool)
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
        Ok((messages, has_more))
    }
}
