//! Users: registration, minted accounts, lookups and who knows whom.

use async_trait::async_trait;
use palaver_protocol::User;
use sqlx::Row;

use super::dialect::{like_prefix, shaped_chunks, tuple, tuples, Dialect, CHUNK};
use super::rows::{opt_text, user_from_row, USER_COLS};
use super::SqlStore;
use crate::ids::UserId;
use crate::store::{StoreError, UserStore};

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
        .await?;
        Ok(())
    }
}

#[async_trait]
impl UserStore for SqlStore {
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
                .map_err(StoreError::from);
            let found = sqlx::query(&select)
                .bind(key.as_str())
                .fetch_optional(&self.pool)
                .await?;
            match (inserted, found) {
                (Ok(_), Some(row)) => return user_from_row(&row),
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
                .await?;
            let found = sqlx::query(&exists)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
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
            query.execute(&self.pool).await?;
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
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, after: i64, limit: u32) -> Result<Vec<(User, bool)>, StoreError> {
        let sql = self.d.q(format!(
            "SELECT {USER_COLS}, disabled_at FROM users WHERE id > ? ORDER BY id LIMIT ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let disabled: Option<i64> = r.try_get("disabled_at")?;
                Ok((user_from_row(r)?, disabled.is_some()))
            })
            .collect()
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
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let hash = opt_text(self.d, &r, "password_hash")?;
                Ok(Some((user_from_row(&r)?, hash)))
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
            .await?;
        rows.iter().map(user_from_row).collect()
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
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
        let sql = self
            .d
            .q("SELECT user_hi AS id FROM conversations WHERE user_lo = ? \
             UNION SELECT user_lo FROM conversations WHERE user_hi = ? \
             UNION SELECT m2.user_id FROM group_members m1 \
               JOIN group_members m2 ON m2.group_id = m1.group_id \
               WHERE m1.user_id = ? AND m1.left_seq IS NULL AND m2.left_seq IS NULL");
        let rows = sqlx::query(&sql)
            .bind(user)
            .bind(user)
            .bind(user)
            .fetch_all(&self.pool)
            .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let id: UserId = r.try_get(0)?;
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
               WHERE m1.user_id = ? AND m2.user_id = ? \
               AND m1.left_seq IS NULL AND m2.left_seq IS NULL LIMIT 1",
        );
        let row = sqlx::query(&sql)
            .bind(a.min(b))
            .bind(a.max(b))
            .bind(a)
            .bind(b)
            .fetch_optional(&self.pool)
            .await?;
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
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.try_get::<UserId, _>(0)?);
            }
        }
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !found.contains(id))
            .collect())
    }

    async fn set_block(
        &self,
        blocker: UserId,
        blocked: UserId,
        on: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if on {
            let sql = self
                .d
                .insert_ignore("blocks (blocker_id, blocked_id, created_at) VALUES (?, ?, ?)");
            sqlx::query(&self.d.q(&sql))
                .bind(blocker)
                .bind(blocked)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        } else {
            let sql = self
                .d
                .q("DELETE FROM blocks WHERE blocker_id = ? AND blocked_id = ?");
            sqlx::query(&sql)
                .bind(blocker)
                .bind(blocked)
                .execute(&mut *tx)
                .await?;
        }
        // Other nodes' cached block sets (see `CacheVersions`).
        self.new_version(&mut tx, super::BLOCKS_VERSION).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn blocked_by(&self, user: UserId) -> Result<Vec<User>, StoreError> {
        let sql = self.d.q(
            "SELECT u.id, u.username, u.created_at, u.last_seen FROM blocks b \
             JOIN users u ON u.id = b.blocked_id WHERE b.blocker_id = ? ORDER BY u.username_key",
        );
        let rows = sqlx::query(&sql).bind(user).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                // Presence is never shown across a block.
                let mut u = user_from_row(r)?;
                u.last_seen = None;
                Ok(u)
            })
            .collect()
    }

    async fn blocks_involving(
        &self,
        users: &[UserId],
    ) -> Result<Vec<(UserId, UserId)>, StoreError> {
        self.read_for_writer(async |conn| {
            let mut pairs = Vec::new();
            for chunk in users.chunks(CHUNK) {
                let list = tuple(chunk.len());
                let sql = self.d.q(format!(
                    "SELECT blocker_id, blocked_id FROM blocks WHERE blocker_id IN {list} \
                     UNION SELECT blocker_id, blocked_id FROM blocks WHERE blocked_id IN {list}"
                ));
                let mut query = sqlx::query(&sql);
                for _ in 0..2 {
                    for &u in chunk {
                        query = query.bind(u);
                    }
                }
                for r in query.fetch_all(&mut *conn).await? {
                    pairs.push((r.try_get(0)?, r.try_get(1)?));
                }
            }
            Ok(pairs)
        })
        .await
    }
}
