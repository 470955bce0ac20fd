//! Changes to a sent message (v1.2): who may edit, delete or react to it,
//! and what a repeat of a change does (nothing). Applied by the writer,
//! between its batches, so that a change follows everything queued before
//! it ([`super::writer`]); the store applies one in its own transaction and
//! stamps it with the conversation's next change position.

use std::sync::Arc;

use palaver_protocol::{Message, Reaction, Role};

use super::core::{now_ms, Core};
use super::queue::Sent;
use super::{ChangeRequest, ChatError, Target};
use crate::ids::UserId;
use crate::store::{ChangeOutcome, MessageChange, MAX_REACTIONS};

/// Checks and applies one change. A repeat (an edit to the content the
/// message already has, a delete of a deleted message, a reaction already
/// there or already gone) changes nothing and is answered as the first
/// was (`fresh: false`: nothing to deliver).
pub(super) async fn apply(core: &Core, req: ChangeRequest) -> Result<Sent, ChatError> {
    let recipients = core.participants(req.user, req.target).await?;
    if !matches!(req.change, MessageChange::Delete) {
        core.check_not_blocked(req.user, req.target).await?;
    }
    let conversation = req.target.conversation(req.user);
    let viewer = matches!(req.change, MessageChange::React { .. }).then_some(req.user);
    let current = core
        .store
        .message_at(conversation, req.seq, viewer)
        .await?
        .ok_or_else(|| no_such_message(req.seq))?;
    let answer = |message: Message, fresh: bool| Sent {
        reaction: reaction_of(&req, &message),
        message: Arc::new(message),
        recipients: recipients.clone(),
        fresh,
    };
    let now = now_ms();
    if current.system.is_some() && !matches!(req.change, MessageChange::React { .. }) {
        // The record of a group change stays as written.
        return Err(ChatError::Forbidden(
            "a system message cannot be edited or deleted".into(),
        ));
    }
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
                return Ok(answer(current, false));
            }
        }
        MessageChange::Delete => {
            if current.deleted_at.is_some() {
                return Ok(answer(current, false));
            }
            may_delete(core, &req, &current, now).await?;
        }
        MessageChange::React { .. } => {
            if current.deleted_at.is_some() {
                return Err(deleted());
            }
        }
    }
    match core
        .store
        .change_message(conversation, req.seq, &req.change, now)
        .await?
    {
        ChangeOutcome::Changed(message) => Ok(answer(*message, true)),
        ChangeOutcome::Unchanged => Ok(answer(current, false)),
        ChangeOutcome::TooManyReactions => Err(ChatError::TooLarge(format!(
            "a message has at most {MAX_REACTIONS} different reactions"
        ))),
        // Deleted by another node between the read and the change.
        ChangeOutcome::Gone => match req.change {
            MessageChange::Delete => core
                .store
                .message_at(conversation, req.seq, None)
                .await?
                .map(|m| answer(m, false))
                .ok_or_else(|| no_such_message(req.seq)),
            _ => Err(deleted()),
        },
    }
}

/// For a `react`: the reaction as answered and delivered, with the count
/// read from `message` (its reactions as the reactor sees them).
fn reaction_of(req: &ChangeRequest, message: &Message) -> Option<Reaction> {
    let MessageChange::React { user, emoji, on } = &req.change else {
        return None;
    };
    let count = message
        .reactions
        .iter()
        .find(|r| r.emoji == *emoji)
        .map_or(0, |r| r.count);
    Some(Reaction {
        conversation_type: message.conversation_type,
        receiver_id: req.target.receiver(),
        seq: message.seq,
        message_id: message.id,
        user_id: UserId::get(*user),
        emoji: emoji.clone(),
        on: *on,
        count,
        change_seq: message.change_seq,
    })
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
