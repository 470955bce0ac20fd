//! Groups: creation with their conversation, reading them and their members, and each change to them applied with
//! its system message in one writer transaction (v1.2).

use async_trait::async_trait;
use palaver_protocol::{Group, Member, Role};
use sqlx::{AnyConnection, Row};

use super::batch::Batch;
use super::dialect::{tuple, tuples, CHUNK};
use super::rows::{group_from_row, member_from_row, text, GROUP_COLS};
use super::SqlStore;
use crate::ids::{ConversationKey, GroupId, UserId};
use crate::store::seqs::Learned;
use crate::store::{
    from_ms, GroupChange, GroupOutcome, GroupStore, NewMessage, SeqCache, StoreError,
};

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
        let sql = self.d.q(format!(
            "SELECT {GROUP_COLS} FROM chat_groups WHERE id = ? AND deleted_at IS NULL"
        ));
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<Group>, StoreError> {
        let sql = self.d.q(
            "SELECT g.id, g.name, g.owner_id, g.created_at FROM chat_groups g \
             JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = ? AND m.left_seq IS NULL AND g.deleted_at IS NULL ORDER BY g.id DESC",
        );
        let rows = sqlx::query(&sql).bind(user).fetch_all(&self.pool).await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn list_groups(&self, after: i64, limit: u32) -> Result<Vec<(Group, i64)>, StoreError> {
        let sql = self.d.q(
            "SELECT g.id, g.name, g.owner_id, g.created_at, \
             (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id AND m.left_seq IS NULL) AS member_count \
             FROM chat_groups g WHERE g.id > ? ORDER BY g.id LIMIT ?",
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((group_from_row(r)?, r.try_get("member_count")?)))
            .collect()
    }

    async fn members(&self, group: GroupId) -> Result<Vec<Member>, StoreError> {
        let sql = self
            .d
            .q("SELECT user_id, role, joined_at FROM group_members \
             WHERE group_id = ? AND left_seq IS NULL ORDER BY joined_at, user_id");
        let rows = sqlx::query(&sql).bind(group).fetch_all(&self.pool).await?;
        rows.iter().map(member_from_row).collect()
    }

    async fn rosters(&self, groups: &[GroupId]) -> Result<Vec<(GroupId, Member)>, StoreError> {
        self.read_for_writer(async |conn| {
            let mut rosters = Vec::new();
            for chunk in groups.chunks(CHUNK) {
                let sql = self.d.q(format!(
                    "SELECT m.group_id, m.user_id, m.role, m.joined_at FROM group_members m \
                     JOIN chat_groups g ON g.id = m.group_id \
                     WHERE m.group_id IN {} AND m.left_seq IS NULL AND g.deleted_at IS NULL \
                     ORDER BY m.group_id, m.joined_at, m.user_id",
                    tuple(chunk.len())
                ));
                let mut query = sqlx::query(&sql);
                for &g in chunk {
                    query = query.bind(g);
                }
                for r in query.fetch_all(&mut *conn).await? {
                    rosters.push((r.try_get("group_id")?, member_from_row(&r)?));
                }
            }
            Ok(rosters)
        })
        .await
    }

    async fn departed_at(&self, group: GroupId, user: UserId) -> Result<Option<i64>, StoreError> {
        let sql = self.d.q(
            "SELECT left_seq FROM group_members WHERE group_id = ? AND user_id = ? \
             AND left_seq IS NOT NULL",
        );
        let row = sqlx::query(&sql)
            .bind(group)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn change_group(
        &self,
        group: GroupId,
        change: &GroupChange,
        system: &NewMessage,
        seqs: &mut SeqCache,
    ) -> Result<GroupOutcome, StoreError> {
        let mut conn = self.batch_conn().await?;
        let result = self
            .attempt_group_change(&mut conn, group, change, system, seqs)
            .await;
        self.settle(conn, result, [system.conversation], seqs).await
    }
}

impl SqlStore {
    /// One attempt at [`GroupStore::change_group`] on the writer's
    /// connection: the conversation's row locked first (as a writer batch
    /// locks it when writers share the database), so that changes to one
    /// group, and its messages' seqs, are applied one at a time.
    async fn attempt_group_change(
        &self,
        conn: &mut AnyConnection,
        group: GroupId,
        change: &GroupChange,
        system: &NewMessage,
        seqs: &SeqCache,
    ) -> Result<(GroupOutcome, Learned), StoreError> {
        let mut tx = self.begin_batch(conn).await?;
        let ids = self
            .conversation_ids(&mut tx, &[system.conversation], seqs)
            .await?;
        let conv = ids[&system.conversation];
        self.lock_conversations(&mut tx, &[conv]).await?;
        let sql = self
            .d
            .q("SELECT name FROM chat_groups WHERE id = ? AND deleted_at IS NULL");
        let Some(row) = sqlx::query(&sql)
            .bind(group)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.rollback().await?;
            return Ok((GroupOutcome::Gone, Learned::default()));
        };
        let name = text(self.d, &row, "name")?;
        // The membership of the user the change names, if it names one:
        // `Some(None)` a member, `Some(Some(seq))` departed at `seq`.
        let named = match change {
            GroupChange::Add { user, .. }
            | GroupChange::Remove { user }
            | GroupChange::SetRole { user, .. }
            | GroupChange::Owner { user } => Some(*user),
            GroupChange::Rename(_) | GroupChange::Delete => None,
        };
        let mut row = None;
        if let Some(user) = named {
            let sql = self
                .d
                .q("SELECT role, left_seq FROM group_members WHERE group_id = ? AND user_id = ?");
            if let Some(r) = sqlx::query(&sql)
                .bind(group)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?
            {
                let role = text(self.d, &r, "role")?;
                let left: Option<i64> = r.try_get("left_seq")?;
                row = Some((Role::parse(&role).unwrap_or(Role::Member), left));
            }
        }
        let current = row.filter(|(_, left)| left.is_none()).map(|(role, _)| role);
        let refused = match (change, current) {
            (GroupChange::Add { .. }, Some(_)) => Some(GroupOutcome::AlreadyMember),
            (GroupChange::Add { .. }, None) => None,
            (GroupChange::Rename(new), _) if *new == name => Some(GroupOutcome::Unchanged),
            (GroupChange::Rename(_) | GroupChange::Delete, _) => None,
            (_, None) => Some(GroupOutcome::NotMember),
            (GroupChange::SetRole { role, .. }, Some(now)) if *role == now => {
                Some(GroupOutcome::Unchanged)
            }
            (GroupChange::Owner { .. }, Some(Role::Owner)) => Some(GroupOutcome::Unchanged),
            _ => None,
        };
        if let Some(outcome) = refused {
            // Ended here, not left for the connection's next use: an open
            // transaction would hold its locks meanwhile.
            tx.rollback().await?;
            return Ok((outcome, Learned::default()));
        }

        let (mut out, learned) = self
            .insert_batch(
                &mut tx,
                std::slice::from_ref(system),
                seqs,
                Batch::InTransaction {
                    look_up_keys: false,
                },
            )
            .await?
            .ok_or_else(|| StoreError::Other(sqlx::Error::Protocol("not inserted".into())))?;
        let message = out
            .pop()
            .ok_or_else(|| StoreError::Other(sqlx::Error::Protocol("not inserted".into())))??
            .message;
        let seq = message.seq;
        let now = system.created_at_ms;

        match change {
            GroupChange::Add { user, role } => {
                let sql = if row.is_some() {
                    self.d.q(
                        "UPDATE group_members SET role = ?, joined_at = ?, left_seq = NULL \
                          WHERE group_id = ? AND user_id = ?",
                    )
                } else {
                    self.d.q(
                        "INSERT INTO group_members (role, joined_at, group_id, user_id) \
                          VALUES (?, ?, ?, ?)",
                    )
                };
                sqlx::query(&sql)
                    .bind(role.as_str())
                    .bind(now)
                    .bind(group)
                    .bind(*user)
                    .execute(&mut *tx)
                    .await?;
                // Unread from the system message that adds them on.
                let sql = self.d.upsert_read("VALUES (?, ?, ?)", false);
                sqlx::query(&self.d.q(sql))
                    .bind(*user)
                    .bind(conv)
                    .bind(seq - 1)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Remove { user } => {
                let sql = self
                    .d
                    .q("UPDATE group_members SET left_seq = ? WHERE group_id = ? AND user_id = ?");
                sqlx::query(&sql)
                    .bind(seq)
                    .bind(group)
                    .bind(*user)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Rename(new) => {
                let sql = self.d.q("UPDATE chat_groups SET name = ? WHERE id = ?");
                sqlx::query(&sql)
                    .bind(new.as_str())
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::SetRole { user, role } => {
                let sql = self
                    .d
                    .q("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?");
                sqlx::query(&sql)
                    .bind(role.as_str())
                    .bind(group)
                    .bind(*user)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Owner { user } => {
                let sql = self.d.q("UPDATE group_members SET role = 'admin' \
                     WHERE group_id = ? AND role = 'owner' AND left_seq IS NULL");
                sqlx::query(&sql).bind(group).execute(&mut *tx).await?;
                let sql = self.d.q(
                    "UPDATE group_members SET role = 'owner' WHERE group_id = ? AND user_id = ?",
                );
                sqlx::query(&sql)
                    .bind(group)
                    .bind(*user)
                    .execute(&mut *tx)
                    .await?;
                let sql = self.d.q("UPDATE chat_groups SET owner_id = ? WHERE id = ?");
                sqlx::query(&sql)
                    .bind(*user)
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Delete => {
                let sql = self
                    .d
                    .q("UPDATE chat_groups SET deleted_at = ? WHERE id = ?");
                sqlx::query(&sql)
                    .bind(now)
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
                let sql = self.d.q(
                    "UPDATE group_members SET left_seq = ? WHERE group_id = ? AND left_seq IS NULL",
                );
                sqlx::query(&sql)
                    .bind(seq)
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // Other nodes' cached rosters (see `CacheVersions`).
        self.new_version(&mut tx, super::GROUPS_VERSION).await?;
        tx.commit().await?;
        Ok((GroupOutcome::Changed(Box::new(message)), learned))
    }
}
