//! Groups: creating them, reading one as a member, and running them (v1.2):
//! who may add, remove, rename, give roles, hand ownership over and delete.
//!
//! Every change is a system message in the group's own `seq`. A change goes
//! through the writer's queue like an edit ([`super::writer`]): the writer
//! decides whether it is allowed (reading the database, never the cached
//! roster), then applies it and inserts its system message in one
//! transaction with the seq from its own memory ([`crate::store::SeqCache`]),
//! then delivers the system message to everyone the change concerns and
//! tells the other nodes to drop their cached roster.

use palaver_protocol::{Group, Member, Message, Role, SystemChange, SystemEvent};
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

use super::core::{now_ms, Core};
use super::queue::{GroupJob, GroupOp, Queued, SEND_DEADLINE};
use super::retry::Retry;
use super::{Chat, ChatError, GroupName};
use crate::ids::{ConversationKey, GroupId, UserId};
use crate::store::{GroupChange, GroupOutcome, NewMessage, SeqCache, Store};

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
        // Creation writes no system message: the group says who created
        // it and when, and its first message is seq 1 as in v1.
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
        let (mut group, members, _) = membership(&self.core, user, id).await?;
        group.members = Some(members);
        Ok(group)
    }

    /// Adds `user` to a group; the owner may add admins, admins members.
    pub async fn add_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
        role: Role,
    ) -> Result<Member, ChatError> {
        let message = self
            .change_group(actor, group, GroupOp::Add { user, role })
            .await?;
        Ok(Member {
            user_id: user.get(),
            role,
            joined_at: message.map_or_else(chrono::Utc::now, |m| m.created_at),
        })
    }

    /// Queues a change to a group for the writer and waits for it: the
    /// system message written, or `None` if the change changed nothing.
    pub async fn change_group(
        &self,
        actor: UserId,
        group: GroupId,
        op: GroupOp,
    ) -> Result<Option<Message>, ChatError> {
        let (done, answer) = oneshot::channel();
        self.enqueue(Queued::Group(GroupJob {
            actor,
            group,
            op,
            queued: Instant::now(),
            done,
        }));
        answer
            .await
            .unwrap_or_else(|_| Err(ChatError::Unavailable("server is shutting down".into())))
    }
}

/// The group, its members and `user`'s role among them: `NotFound` for an
/// unknown group, `Forbidden` for a non-member. Reads the database, not
/// the cache, so that administrative decisions never act on a stale
/// roster.
async fn membership(
    core: &Core,
    user: UserId,
    group: GroupId,
) -> Result<(Group, Vec<Member>, Role), ChatError> {
    let found = core
        .store
        .group(group)
        .await?
        .ok_or_else(|| ChatError::no_such_group(group))?;
    let members = core.store.members(group).await?;
    let role = role_of(&members, user).ok_or_else(|| ChatError::not_a_member(group))?;
    Ok((found, members, role))
}

fn role_of(members: &[Member], user: UserId) -> Option<Role> {
    members
        .iter()
        .find(|m| m.user_id == user.get())
        .map(|m| m.role)
}

/// The system message recording `change` to `group`, sent by `actor`.
fn system_message(actor: UserId, group: GroupId, change: SystemChange) -> NewMessage {
    NewMessage {
        sender_id: actor,
        conversation: ConversationKey::Group(group),
        receiver_id: group.get(),
        content: change.describe(),
        client_msg_id: None,
        created_at_ms: now_ms(),
        reply_to: None,
        mentions: Vec::new(),
        system: Some(change),
    }
}

/// Runs one queued group change in the writer and answers it.
pub(super) async fn run_job(core: &Core, store: &dyn Store, seqs: &mut SeqCache, job: GroupJob) {
    let conversation = ConversationKey::Group(job.group);
    let outcome = match timeout_at(job.queued + SEND_DEADLINE, apply(core, store, seqs, &job)).await
    {
        Ok(outcome) => outcome,
        Err(_) => {
            // Cut off mid-change: whether it committed is unknown.
            seqs.forget([conversation]);
            Err(ChatError::Unavailable(
                "storage unavailable; whether the change was made is unknown: read the group"
                    .into(),
            ))
        }
    };
    let _ = job.done.send(outcome);
}

/// Decides whether `job` is allowed, applies it with its system message,
/// and delivers that message to the members before and after.
async fn apply(
    core: &Core,
    store: &dyn Store,
    seqs: &mut SeqCache,
    job: &GroupJob,
) -> Result<Option<Message>, ChatError> {
    let GroupJob {
        actor, group, op, ..
    } = job;
    let (actor, group) = (*actor, *group);
    let (_, members, actor_role) = membership(core, actor, group).await?;
    let (change, system) = authorize(core, actor, group, &members, actor_role, op).await?;
    let message = system_message(actor, group, system);
    let mut retry = Retry::new("group change");
    let outcome = loop {
        let outcome = store.change_group(group, &change, &message, seqs).await;
        match retry.after(&outcome) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => break outcome?,
        }
    };
    let named = match &change {
        GroupChange::Add { user, .. }
        | GroupChange::Remove { user }
        | GroupChange::SetRole { user, .. }
        | GroupChange::Owner { user } => Some(*user),
        GroupChange::Rename(_) | GroupChange::Delete => None,
    };
    match outcome {
        GroupOutcome::Changed(message) => {
            core.roster_changed(group).await;
            // Everyone who was a member, and whoever was added.
            let mut recipients: Vec<UserId> = members
                .iter()
                .map(|m| UserId::from_stored(m.user_id))
                .collect();
            if let GroupChange::Add { user, .. } = change {
                recipients.push(user);
            }
            core.deliver(&recipients, &message);
            Ok(Some(*message))
        }
        GroupOutcome::Unchanged => Ok(None),
        GroupOutcome::AlreadyMember => {
            Err(ChatError::Conflict("already a member of this group".into()))
        }
        GroupOutcome::NotMember => {
            Err(ChatError::not_in_group(named.map_or(0, UserId::get), group))
        }
        GroupOutcome::Gone => Err(ChatError::no_such_group(group)),
    }
}

/// Whether `actor` (with `actor_role`) may do `op`, and if so the change to
/// apply and the system message's record of it.
async fn authorize(
    core: &Core,
    actor: UserId,
    group: GroupId,
    members: &[Member],
    actor_role: Role,
    op: &GroupOp,
) -> Result<(GroupChange, SystemChange), ChatError> {
    let record = |event, user: Option<UserId>| SystemChange {
        event,
        actor_id: actor.get(),
        user_id: user.map(UserId::get),
        name: None,
        role: None,
    };
    let owner_only = |what: &str| {
        if actor_role == Role::Owner {
            Ok(())
        } else {
            Err(ChatError::Forbidden(format!(
                "only the group's owner can {what}"
            )))
        }
    };
    let target_role =
        |user: UserId| role_of(members, user).ok_or_else(|| ChatError::not_in_group(user, group));
    Ok(match op {
        GroupOp::Add { user, role } => {
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
            if !core.user_exists(*user).await? {
                return Err(ChatError::no_such_user(user));
            }
            let mut system = record(SystemEvent::MemberAdded, Some(*user));
            system.role = Some(*role);
            (
                GroupChange::Add {
                    user: *user,
                    role: *role,
                },
                system,
            )
        }
        GroupOp::Remove { user } if *user == actor => {
            if actor_role != Role::Owner {
                (
                    GroupChange::Remove { user: actor },
                    record(SystemEvent::MemberLeft, Some(actor)),
                )
            } else if members.len() == 1 {
                // The last member leaving: the group goes with them.
                (GroupChange::Delete, record(SystemEvent::GroupDeleted, None))
            } else {
                return Err(ChatError::Conflict(format!(
                    "the owner can leave only as the last member: hand ownership over first \
                     (POST /api/groups/{group}/owner)"
                )));
            }
        }
        GroupOp::Remove { user } => {
            // A plain member may remove no one: refused before looking the
            // target up, so the answer is the same whoever it names.
            if actor_role == Role::Member {
                return Err(ChatError::Forbidden(
                    "only the owner or an admin may remove members".into(),
                ));
            }
            let allowed = match (actor_role, target_role(*user)?) {
                (Role::Owner, _) => true,
                (Role::Admin, target) => target == Role::Member,
                (Role::Member, _) => false,
            };
            if !allowed {
                return Err(ChatError::Forbidden(
                    "not allowed to remove this member".into(),
                ));
            }
            (
                GroupChange::Remove { user: *user },
                record(SystemEvent::MemberRemoved, Some(*user)),
            )
        }
        GroupOp::Rename(name) => {
            if actor_role == Role::Member {
                return Err(ChatError::Forbidden(
                    "only the group's owner or an admin can rename it".into(),
                ));
            }
            let mut system = record(SystemEvent::Renamed, None);
            system.name = Some(name.as_str().to_string());
            (GroupChange::Rename(name.as_str().to_string()), system)
        }
        GroupOp::SetRole { user, role } => {
            owner_only("give roles")?;
            if *role == Role::Owner {
                return Err(ChatError::invalid(format!(
                    "role must be \"admin\" or \"member\"; to hand ownership over, \
                     POST /api/groups/{group}/owner"
                )));
            }
            if target_role(*user)? == Role::Owner {
                return Err(ChatError::Conflict(format!(
                    "the owner's role changes only by handing ownership over \
                     (POST /api/groups/{group}/owner)"
                )));
            }
            let mut system = record(SystemEvent::RoleChanged, Some(*user));
            system.role = Some(*role);
            (
                GroupChange::SetRole {
                    user: *user,
                    role: *role,
                },
                system,
            )
        }
        GroupOp::Owner { user } => {
            owner_only("hand ownership over")?;
            target_role(*user)?;
            (
                GroupChange::Owner { user: *user },
                record(SystemEvent::OwnerChanged, Some(*user)),
            )
        }
        GroupOp::Delete => {
            owner_only("delete the group")?;
            (GroupChange::Delete, record(SystemEvent::GroupDeleted, None))
        }
    })
}
