//! The message life cycle's wire types (PROTOCOL.md v1.2): replies,
//! reactions, and the input of `edit`, `delete` and `react`.

use serde::{Deserialize, Serialize};

use crate::{ConversationType, Message};

/// How many users react to a message with one emoji, and whether the
/// reader is one of them (v1.2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}

/// A reaction added or removed: the `react` ack's `reaction` and the
/// `reaction` event (v1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub conversation_type: ConversationType,
    /// As in a message: the other user (private) or the group.
    pub receiver_id: i64,
    pub seq: i64,
    pub message_id: i64,
    pub user_id: i64,
    pub emoji: String,
    /// Added (true) or removed (false).
    pub on: bool,
    /// How many users now react with `emoji`.
    pub count: i64,
    pub change_seq: i64,
}

/// Body of a successful `react` ack: `{"ok": true, "reaction": Reaction}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReactionBody<R = Reaction> {
    pub reaction: R,
}

/// What a reply shows of the message it answers (v1.2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub seq: i64,
    pub sender_id: i64,
    /// The first [`REPLY_EXCERPT_CHARS`] characters of its current
    /// content; `None` once it is deleted.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub excerpt: Option<String>,
}

/// Characters of a replied-to message shown in a reply.
pub const REPLY_EXCERPT_CHARS: usize = 100;

impl ReplyTo {
    /// What a reply to `m` shows.
    pub fn of(m: &Message) -> Self {
        ReplyTo {
            seq: m.seq,
            sender_id: m.sender_id,
            excerpt: m
                .deleted_at
                .is_none()
                .then(|| m.content.chars().take(REPLY_EXCERPT_CHARS).collect()),
        }
    }
}

/// `edit`, `delete` and `react` event input (v1.2): a message named by its
/// conversation and seq, for an edit the new content, for a reaction the
/// emoji and whether it is added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeInput {
    #[serde(alias = "conversation_type")]
    pub conversation_type: String,
    #[serde(alias = "receiver_id")]
    pub receiver_id: i64,
    pub seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `react`: the emoji.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// `react`: add (true, the default) or remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<bool>,
}

/// What a message is (v1.2): what a user sent, or a group change the
/// server wrote. Text is left out of a message on the wire, so a v1
/// message reads as it did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Text,
    System,
}

impl MessageKind {
    pub fn is_text(&self) -> bool {
        *self == MessageKind::Text
    }
}

/// The group change a system message records (v1.2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    MemberAdded,
    MemberRemoved,
    MemberLeft,
    Renamed,
    RoleChanged,
    OwnerChanged,
    GroupDeleted,
}

/// A system message's `system` field: who changed what (v1.2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemChange {
    pub event: SystemEvent,
    pub actor_id: i64,
    /// The member added, removed, leaving, given a role, or made owner.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The new name (`renamed`).
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The role given (`role_changed`, `member_added`).
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::Role>,
}

impl SystemChange {
    /// The short English description a system message's `content` holds,
    /// for clients that do not know `kind`.
    pub fn describe(&self) -> String {
        let actor = format!("user {}", self.actor_id);
        let user = format!("user {}", self.user_id.unwrap_or_default());
        let name = self.name.as_deref().unwrap_or_default();
        match self.event {
            SystemEvent::MemberAdded => format!("{actor} added {user}"),
            SystemEvent::MemberRemoved => format!("{actor} removed {user}"),
            SystemEvent::MemberLeft => format!("{actor} left the group"),
            SystemEvent::Renamed => format!("{actor} renamed the group to \"{name}\""),
            SystemEvent::RoleChanged => format!(
                "{actor} made {user} {}",
                self.role.map_or("member", crate::Role::as_str)
            ),
            SystemEvent::OwnerChanged => format!("{actor} made {user} the owner"),
            SystemEvent::GroupDeleted => format!("{actor} deleted the group"),
        }
    }
}

/// `PATCH /api/groups/{id}` body (v1.2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameGroup {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::group_name))]
    pub name: String,
}

/// `PUT /api/groups/{id}/members/{userId}/role` body (v1.2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRole {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::assignable_role))]
    pub role: String,
}

/// `POST /api/groups/{id}/owner` body (v1.2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOwner {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::id))]
    #[serde(alias = "user_id")]
    pub user_id: i64,
}
