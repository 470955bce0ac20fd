//! Credentials (v1.3): token generations, revoked tokens, disabled
//! accounts, and the change log that every node polls.

use async_trait::async_trait;
use sqlx::{Any, Row, Transaction};

use super::dialect::{shaped_chunks, tuple};
use super::rows::opt_text;
use super::SqlStore;
use crate::ids::{GroupId, UserId};
use crate::store::{CredentialChange, CredentialStore, LoggedChange, StoreError, TokenState};

impl SqlStore {
    /// Records in the change log that `user`'s credentials changed.
    async fn log_change(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: UserId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = self
            .d
            .q("INSERT INTO change_log (user_id, changed_at) VALUES (?, ?)");
        sqlx::query(&sql)
            .bind(user)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl CredentialStore for SqlStore {
    async fn token_states(
        &self,
        users: &[UserId],
        now_ms: i64,
    ) -> Result<Vec<(UserId, TokenState)>, StoreError> {
        let mut states = Vec::with_capacity(users.len());
        for chunk in shaped_chunks(users) {
            let sql = self.d.q(format!(
                "SELECT id, token_generation, disabled_at, tokens_revoked_at FROM users WHERE id IN {}",
                tuple(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for &user in chunk {
                query = query.bind(user);
            }
            let first = states.len();
            for row in query.fetch_all(&self.pool).await? {
                let disabled: Option<i64> = row.try_get(2)?;
                let revoked_at: Option<i64> = row.try_get(3)?;
                let state = TokenState {
                    generation: row.try_get(1)?,
                    revoked_at_ms: revoked_at.unwrap_or(0),
                    disabled: disabled.is_some(),
                    revoked: Vec::new(),
                };
                states.push((row.try_get::<UserId, _>(0)?, state));
            }
            // The ids of their tokens logged out one by one, not expired,
            // in order (the check searches them).
            let sql = self.d.q(format!(
                "SELECT user_id, jti FROM revoked_tokens WHERE expires_at > ? AND user_id IN {} \
                 ORDER BY user_id, jti",
                tuple(chunk.len())
            ));
            let mut query = sqlx::query(&sql).bind(now_ms);
            for &user in chunk {
                query = query.bind(user);
            }
            for row in query.fetch_all(&self.pool).await? {
                let (user, jti): (UserId, i64) = (row.try_get(0)?, row.try_get(1)?);
                if let Some((_, state)) = states[first..].iter_mut().find(|(u, _)| *u == user) {
                    state.revoked.push(jti);
                }
            }
        }
        Ok(states)
    }

    async fn password_hash(&self, user: UserId) -> Result<Option<Option<String>>, StoreError> {
        let sql = self.d.q("SELECT password_hash FROM users WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| opt_text(self.d, &r, "password_hash"))
            .transpose()
    }

    async fn revoke_token(
        &self,
        user: UserId,
        jti: i64,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = self
            .d
            .insert_ignore("revoked_tokens (jti, user_id, expires_at) VALUES (?, ?, ?)");
        sqlx::query(&self.d.q(&sql))
            .bind(jti)
            .bind(user)
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await?;
        self.log_change(&mut tx, user, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn change_credentials(
        &self,
        user: UserId,
        change: &CredentialChange,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        // Disabling a disabled account (or enabling an enabled one) changes
        // nothing: no generation bumped, nobody logged out.
        let (set, only) = match change {
            CredentialChange::RevokeAll => ("", ""),
            CredentialChange::Password(_) => (", password_hash = ?", ""),
            CredentialChange::Disabled(true) => (", disabled_at = ?", " AND disabled_at IS NULL"),
            CredentialChange::Disabled(false) => {
                (", disabled_at = NULL", " AND disabled_at IS NOT NULL")
            }
        };
        let sql = self.d.q(format!(
            "UPDATE users SET token_generation = token_generation + 1, tokens_revoked_at = ?{set} \
             WHERE id = ?{only}"
        ));
        let mut tx = self.begin_write().await?;
        let mut query = sqlx::query(&sql).bind(now_ms);
        match change {
            CredentialChange::Password(hash) => query = query.bind(hash.as_str()),
            CredentialChange::Disabled(true) => query = query.bind(now_ms),
            _ => {}
        }
        let done = query.bind(user).execute(&mut *tx).await?;
        let changed = done.rows_affected() > 0;
        let sql = self.d.q("SELECT token_generation FROM users WHERE id = ?");
        let Some(row) = sqlx::query(&sql)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let generation: i64 = row.try_get(0)?;
        if changed {
            self.log_change(&mut tx, user, now_ms).await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(Some(generation))
    }

    async fn logged_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, LoggedChange)>, StoreError> {
        let sql = self
            .d
            .q("SELECT id, user_id, group_id FROM change_log WHERE id > ? ORDER BY id LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut changes = Vec::with_capacity(rows.len());
        for r in &rows {
            let user: Option<UserId> = r.try_get(1)?;
            let group: Option<GroupId> = r.try_get(2)?;
            let change = match (user, group) {
                (Some(u), _) => LoggedChange::Credentials(u),
                (None, Some(g)) => LoggedChange::Roster(g),
                (None, None) => continue,
            };
            changes.push((r.try_get(0)?, change));
        }
        Ok(changes)
    }

    async fn last_logged_change(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(MAX(id), 0) FROM change_log";
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }

    async fn log_roster_change(&self, group: GroupId, now_ms: i64) -> Result<(), StoreError> {
        let sql = self
            .d
            .q("INSERT INTO change_log (group_id, changed_at) VALUES (?, ?)");
        sqlx::query(&sql)
            .bind(group)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_credentials(
        &self,
        changes_before_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = self.d.q("DELETE FROM change_log WHERE changed_at < ?");
        sqlx::query(&sql)
            .bind(changes_before_ms)
            .execute(&self.pool)
            .await?;
        let sql = self.d.q("DELETE FROM revoked_tokens WHERE expires_at <= ?");
        sqlx::query(&sql).bind(now_ms).execute(&self.pool).await?;
        Ok(())
    }
}
