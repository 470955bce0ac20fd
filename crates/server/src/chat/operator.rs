//! What an operator does from the command line (`palaver admin`): list
//! users and groups, see any group, and change a group's members in its
//! owner's name. The same domain paths as the front doors; a group change
//! is also written to the change log, so that running nodes drop their
//! cached roster within a second (they do not hear of it otherwise).

use palaver_protocol::{Group, Message, User};

use super::core::now_ms;
use super::{Chat, ChatError, GroupOp};
use crate::ids::GroupId;

impl Chat {
    /// Users by id after `after` (at most `limit`), each with whether it
    /// is disabled.
    pub async fn list_users(&self, after: i64, limit: u32) -> Result<Vec<(User, bool)>, ChatError> {
        Ok(self.core.store.list_users(after, limit).await?)
    }

    /// A user by username (any case).
    pub async fn user_named(&self, username: &str) -> Result<User, ChatError> {
        match self.core.store.credentials(username).await? {
            Some((user, _)) => Ok(user),
            None => Err(ChatError::NotFound(format!("no user named {username:?}"))),
        }
    }

    /// Groups by id after `after` (at most `limit`), each with its number
    /// of members.
    pub async fn list_groups(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(Group, i64)>, ChatError> {
        Ok(self.core.store.list_groups(after, limit).await?)
    }

    /// Any group, with its members.
    pub async fn group_for_operator(&self, id: GroupId) -> Result<Group, ChatError> {
        let mut group = self
            .core
            .store
            .group(id)
            .await?
            .ok_or_else(|| ChatError::no_such_group(id))?;
        group.members = Some(self.core.store.members(id).await?);
        Ok(group)
    }

    /// Applies `op` to a group in its owner's name (the system message
    /// says the owner did it), and logs it for the running nodes.
    pub async fn change_group_for_operator(
        &self,
        id: GroupId,
        op: GroupOp,
    ) -> Result<Option<Message>, ChatError> {
        let group = self.group_for_operator(id).await?;
        let owner = crate::ids::UserId::from_stored(group.owner_id);
        let message = self.change_group(owner, id, op).await?;
        if message.is_some() {
            // The change is committed: try hard to tell the nodes, and say
            // so if they cannot be told (their rosters are stale until
            // their cache expires or they restart).
            let mut logged = Err(ChatError::Internal);
            for _ in 0..3 {
                logged = self
                    .core
                    .store
                    .log_roster_change(id, now_ms())
                    .await
                    .map_err(ChatError::from);
                if logged.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            if let Err(e) = logged {
                return Err(ChatError::Unavailable(format!(
                    "the change is stored, but running nodes could not be told ({e}): restart them, \
                     or they keep the old members until their cache expires"
                )));
            }
        }
        Ok(message)
    }
}
