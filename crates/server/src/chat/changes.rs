//! Changes to a sent message (v1.2): who may edit or delete it, and what a
//! repeat of a change does (nothing). Applied by the writer, between its
//! batches, so that a change follows everything queued before it
//! ([`super::writer`]); the store applies one in its own transaction and
//! stamps it with the conversation's next change position.

use std::sync::Arc;

use palaver_protocol::{Message, Role};

use super::core::{now_ms, Core};
use super::writer::Sent;
use super::{ChangeRequest, ChatError, Target};
use crate::store::MessageChange;

/// Checks and applies one change. An edit to the content the message
/// already has, or a delete of a deleted message, changes nothing and is
/// answered with the message as it is (`fresh: false`: nothing to deliver).
pub(super) async fn apply(core: &Core, req: ChangeRequest) -> Result<Sent, ChatError> {
    let recipients = core.participants(req.user, req.target).await?;
    let conversation = req.target.conversation(req.user);
    let current = core
        .store
        .message_at(conversation, req.seq)
        .await?
        .ok_or_else(|| no_such_message(req.seq))?;
    let unchanged = |message: Message| Sent {
        message: Arc::new(message),
        recipients: recipients.clone(),
        fresh: false,
    };
    let now = now_ms();
    match &req.change {
        MessageChange::Edit(content) => {
            if current.sender_id != req.user.get() {
                return Err(ChatError::Forbidden(
                    "only its sender can edit a message".into(),
                ));
            }
            if current.deleted_at.is_some() {
                return Err(deleted());
            }
            if current.content == *content {
                return Ok(unchanged(current));
            }
        }
        MessageChange::Delete => {
            if current.deleted_at.is_some() {
                return Ok(unchanged(current));
            }
            may_delete(core, &req, &current, now).await?;
        }
    }
    match core
        .store
        .change_message(conversation, req.seq, &req.change, now)
        .await?
    {
        Some(message) => Ok(Sent {
            message: Arc::new(message),
            recipients,
            fresh: true,
        }),
        // Deleted by another node between the read and the change.
        None => match req.change {
            MessageChange::Delete => core
                .store
                .message_at(conversation, req.seq)
                .await?
                .map(unchanged)
                .ok_or_else(|| no_such_message(req.seq)),
            MessageChange::Edit(_) => Err(deleted()),
        },
    }
}

/// The sender may delete within the delete window; a group's owner and
/// admins may delete any message of the group at any time.
async fn may_delete(
    core: &Core,
    req: &ChangeRequest,
    message: &Message,
    now: i64,
) -> Result<(), ChatError> {
    let own = message.sender_id == req.user.get();
    let in_window = core.settings.delete_window.is_none_or(|window| {
        now - message.created_at.timestamp_millis() <= window.as_millis() as i64
    });
    if own && in_window {
        return Ok(());
    }
    if let Target::Group(g) = req.target {
        // The database, not the cached roster: an authority decision.
        let members = core.store.members(g).await?;
        let role = members
            .iter()
            .find(|m| m.user_id == req.user.get())
            .map(|m| m.role);
        if matches!(role, Some(Role::Owner | Role::Admin)) {
            return Ok(());
        }
    }
    Err(ChatError::Forbidden(if own {
        let secs = core.settings.delete_window.map_or(0, |w| w.as_secs());
        format!("the delete window of {secs} s after sending has passed")
    } else {
        "only its sender, or a group's owner or admins, can delete a message".into()
    }))
}

fn no_such_message(seq: i64) -> ChatError {
    ChatError::NotFound(format!("no message with seq {seq} in this conversation"))
}

fn deleted() -> ChatError {
    ChatError::Conflict("the message is deleted".into())
}
