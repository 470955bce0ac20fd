//! Groups: creating them, reading one as a member, and changing who is in
//! them (who may add or remove whom). Administrative decisions read the
//! database, never the cached roster, and every change tells the other
//! nodes so that their cached rosters are dropped.

use palaver_protocol::{Group, Member, Role};

use super::core::now_ms;
use super::{Chat, ChatError, GroupName};
use crate::ids::{GroupId, UserId};
use crate::store::StoreError;

/// Most members a group may have.
pub const MAX_GROUP_MEMBERS: usize = 1000;

impl Chat {
    /// Creates a group owned by `owner` with the given other members.
    pub async fn create_group(
        &self,
        owner: UserId,
        name: GroupName,
        member_ids: Vec<UserId>,
    ) -> Result<Group, ChatError> {
        let mut members: Vec<UserId> = member_ids.into_iter().filter(|&m| m != owner).collect();
        members.sort_unstable();
        members.dedup();
        if members.len() + 1 > MAX_GROUP_MEMBERS {
            return Err(ChatError::group_full());
        }
        let missing = self.core.store.missing_users(&members).await?;
        if let Some(&m) = missing.first() {
            return Err(ChatError::no_such_user(m));
        }
        Ok(self
            .core
            .store
            .create_group(name.as_str(), owner, &members, now_ms())
            .await?)
    }

    pub async fn groups_of(&self, user: UserId) -> Result<Vec<Group>, ChatError> {
        Ok(self.core.store.groups_of(user).await?)
    }

    /// The group with its members, for a member.
    pub async fn group(&self, user: UserId, id: GroupId) -> Result<Group, ChatError> {
        let (mut group, members, _) = self.membership(user, id).await?;
        group.members = Some(members);
        Ok(group)
    }

    /// The group, its members and `user`'s role among them: `NotFound` for
    /// an unknown group, `Forbidden` for a non-member. Reads the database,
    /// not the cache, so that administrative decisions never act on a
    /// stale roster.
    async fn membership(
        &self,
        user: UserId,
        group: GroupId,
    ) -> Result<(Group, Vec<Member>, Role), ChatError> {
        let found = self
            .core
            .store
            .group(group)
            .await?
            .ok_or_else(|| ChatError::no_such_group(group))?;
        let members = self.core.store.members(group).await?;
        let role = members
            .iter()
            .find(|m| m.user_id == user.get())
            .map(|m| m.role)
            .ok_or_else(|| ChatError::not_a_member(group))?;
        Ok((found, members, role))
    }

    /// Adds `user` to a group; the owner may add admins, admins members.
    pub async fn add_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
        role: Role,
    ) -> Result<Member, ChatError> {
        let (_, members, actor_role) = self.membership(actor, group).await?;
        match (actor_role, role) {
            (_, Role::Owner) => {
                return Err(ChatError::invalid(
                    "a group has one owner; add as member or admin",
                ))
            }
            (Role::Owner, _) | (Role::Admin, Role::Member) => {}
            (Role::Admin, Role::Admin) => {
                return Err(ChatError::Forbidden("only the owner can add admins".into()))
            }
            (Role::Member, _) => {
                return Err(ChatError::Forbidden(
                    "only the group's owner or an admin can add members".into(),
                ))
            }
        }
        if members.len() >= MAX_GROUP_MEMBERS {
            return Err(ChatError::group_full());
        }
        if !self.core.user_exists(user).await? {
            return Err(ChatError::no_such_user(user));
        }
        let member = self
            .core
            .store
            .add_member(group, user, role, now_ms())
            .await;
        self.roster_changed(group).await;
        Ok(member?)
    }

    /// Removes `user` from a group: anyone may leave; the owner may remove
    /// anyone, an admin only plain members.
    pub async fn remove_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
    ) -> Result<(), ChatError> {
        let (_, members, actor_role) = self.membership(actor, group).await?;
        if actor != user {
            // A plain member may remove no one: refused before looking the
            // target up, so the answer is the same whoever it names.
            if actor_role == Role::Member {
                return Err(ChatError::Forbidden(
                    "only the owner or an admin may remove members".into(),
                ));
            }
            let target = members
                .iter()
                .find(|m| m.user_id == user.get())
                .map(|m| m.role)
                .ok_or_else(|| ChatError::not_in_group(user, group))?;
            let allowed = match actor_role {
                Role::Owner => true,
                Role::Admin => target == Role::Member,
                Role::Member => false,
            };
            if !allowed {
                return Err(ChatError::Forbidden(
                    "not allowed to remove this member".into(),
                ));
            }
        }
        let result = self.core.store.remove_member(group, user).await;
        self.roster_changed(group).await;
        result.map_err(|e| match e {
            StoreError::NotFound => ChatError::not_in_group(user, group),
            e => e.into(),
        })
    }

    /// Drops the cached roster and tells the other nodes that `group`'s
    /// members changed.
    async fn roster_changed(&self, group: GroupId) {
        self.core.directory.invalidate_roster(group);
        if let Some(cluster) = self.cluster() {
            cluster.roster_changed(group).await;
        }
    }
}
