//! Groups: creation with their conversation, membership and ownership.

use async_trait::async_trait;
use palaver_protocol::{Group, Member, Role};
use sqlx::Row;

use super::dialect::{tuples, CHUNK, LAST_SEQ};
use super::rows::{group_from_row, member_from_row, GROUP_COLS};
use super::SqlStore;
use crate::ids::{ConversationKey, GroupId, UserId};
use crate::store::{from_ms, GroupStore, StoreError};

#[async_trait]
impl GroupStore for SqlStore {
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
        let id: GroupId = if self.returning {
            let row = query.fetch_one(&mut *tx).await?;
            row.try_get(0)?
        } else {
            let done = query.execute(&mut *tx).await?;
            let id = done.last_insert_id().ok_or_else(|| {
                StoreError::Other(sqlx::Error::Protocol("no id for the new group".into()))
            })?;
            GroupId::from_stored(id)
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
            query.execute(&mut *tx).await?;
        }
        let sql = self
            .d
            .q("INSERT INTO conversations (conv_key, group_id) VALUES (?, ?)");
        sqlx::query(&sql)
            .bind(ConversationKey::Group(id).db_key())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Group {
            id: id.get(),
            name: name.to_string(),
            owner_id: owner.get(),
            created_at: from_ms(now_ms),
            members: Some(
                all.into_iter()
                    .map(|(user_id, role)| Member {
                        user_id: user_id.get(),
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
            .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<Group>, StoreError> {
        let sql = self.d.q(
            "SELECT g.id, g.name, g.owner_id, g.created_at FROM chat_groups g \
             JOIN group_members m ON m.group_id = g.id WHERE m.user_id = ? ORDER BY g.id DESC",
        );
        let rows = sqlx::query(&sql).bind(user).fetch_all(&self.pool).await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn members(&self, group: GroupId) -> Result<Vec<Member>, StoreError> {
        let sql = self.d.q(
            "SELECT user_id, role, joined_at FROM group_members WHERE group_id = ? \
             ORDER BY joined_at, user_id",
        );
        let rows = sqlx::query(&sql).bind(group).fetch_all(&self.pool).await?;
        rows.iter().map(member_from_row).collect()
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
            .map_err(StoreError::from);
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
            .await?;
        tx.commit().await?;
        Ok(Member {
            user_id: user.get(),
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
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let role: String = row.try_get(0)?;
        let sql = self
            .d
            .q("DELETE FROM group_members WHERE group_id = ? AND user_id = ?");
        sqlx::query(&sql)
            .bind(group)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        if role == Role::Owner.as_str() {
            let sql = self
                .d
                .q("SELECT user_id FROM group_members WHERE group_id = ? \
                 ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1");
            let heir = sqlx::query(&sql)
                .bind(group)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(heir) = heir {
                let heir: UserId = heir.try_get(0)?;
                let sql = self.d.q(
                    "UPDATE group_members SET role = 'owner' WHERE group_id = ? AND user_id = ?",
                );
                sqlx::query(&sql)
                    .bind(group)
                    .bind(heir)
                    .execute(&mut *tx)
                    .await?;
                let sql = self.d.q("UPDATE chat_groups SET owner_id = ? WHERE id = ?");
                sqlx::query(&sql)
                    .bind(heir)
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
