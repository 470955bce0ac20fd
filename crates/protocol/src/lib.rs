//! Palaver's wire contract as Rust types (see `PROTOCOL.md`).
//!
//! Shared by the server, the load generator and the tests so that all three
//! speak exactly the same JSON. Output is snake_case; input accepts the
//! original clients' camelCase and snake_case for every field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod lifecycle;
#[cfg(feature = "openapi")]
pub mod openapi;
pub use lifecycle::{
    ChangeInput, MessageKind, NewOwner, Reaction, ReactionBody, ReactionCount, RenameGroup,
    ReplyTo, SetRole, SystemChange, SystemEvent, REPLY_EXCERPT_CHARS,
};

/// Socket.IO event names.
pub mod events {
    /// Client → server: send a message; server → client: a delivered message.
    pub const MESSAGE: &str = "message";
    /// Typing indicator (ephemeral).
    pub const TYPING: &str = "typing";
    /// Read receipt.
    pub const READ: &str = "read";
    /// Server → client: a user came online or went offline.
    pub const PRESENCE: &str = "presence";
    /// Client → server: edit the content of one's own message (v1.2).
    pub const EDIT: &str = "edit";
    /// Client → server: delete a message, leaving a tombstone (v1.2).
    pub const DELETE: &str = "delete";
    /// Server → client: a message was edited or deleted (v1.2).
    pub const MESSAGE_UPDATED: &str = "message_updated";
    /// Client → server: add or remove an emoji reaction (v1.2).
    pub const REACT: &str = "react";
    /// Server → client: a reaction was added or removed (v1.2).
    pub const REACTION: &str = "reaction";
    /// Server → client, just before the server ends the socket (v1.3):
    /// `{code, message}`, e.g. `unauthorized: token revoked`.
    pub const SESSION_ENDED: &str = "session_ended";
}

/// Timestamps on the wire: RFC 3339, UTC, always with milliseconds.
pub mod time_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Private (two users) or group conversation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationType {
    Private,
    Group,
}

impl ConversationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationType::Private => "private",
            ConversationType::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "private" => Some(ConversationType::Private),
            "group" => Some(ConversationType::Group),
            _ => None,
        }
    }
}

/// A stored message, as acked to its sender and delivered to recipients.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub conversation_type: ConversationType,
    pub sender_id: i64,
    /// The other user (private) or the group id (group).
    pub receiver_id: i64,
    /// 1, 2, 3, … per conversation, gap-free, in commit order.
    pub seq: i64,
    pub content: String,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub client_msg_id: Option<String>,
    #[serde(with = "time_millis")]
    pub created_at: DateTime<Utc>,
    /// When the content was last edited (v1.2).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default, with = "opt_time_millis")]
    pub edited_at: Option<DateTime<Utc>>,
    /// When the message was deleted; its content is then `""` (v1.2).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default, with = "opt_time_millis")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The earlier message of the conversation this one answers (v1.2).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub reply_to: Option<ReplyTo>,
    /// The conversation's change position of this message's last edit,
    /// delete or reaction; 0 if it never changed (v1.2).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub change_seq: i64,
    /// The reactions, most reacted first, as the user reading them sees
    /// them (v1.2). Left out when empty, so that a message without
    /// reactions reads as in v1, and in live `message_updated` events
    /// (one copy for every reader), where the `reaction` event keeps
    /// counts current.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// The members a group message mentions; left out when none (v1.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<i64>,
    /// `system` for a group change the server wrote; left out for what
    /// users send (v1.2).
    #[serde(default, skip_serializing_if = "MessageKind::is_text")]
    pub kind: MessageKind,
    /// For a system message, the change it records (v1.2).
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemChange>,
}

/// A user as the API shows it. `online` and `last_seen` are filled where
/// the API says so (`GET /api/users/{id}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    #[serde(with = "time_millis")]
    pub created_at: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(
        default,
        with = "opt_time_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_seen: Option<DateTime<Utc>>,
}

/// Optional timestamps, in the same format as [`time_millis`].
pub mod opt_time_millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::time_millis::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::time_millis")] DateTime<Utc>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(t)| t))
    }
}

/// `presence` event: a user's first socket connected or last one left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub user_id: i64,
    pub online: bool,
    #[serde(with = "opt_time_millis")]
    pub last_seen: Option<DateTime<Utc>>,
}

/// A member's role in a group.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// One member of a group.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: i64,
    pub role: Role,
    #[serde(with = "time_millis")]
    pub joined_at: DateTime<Utc>,
}

/// A group; `members` is present where the API says so.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    #[serde(with = "time_millis")]
    pub created_at: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
}

/// `POST /api/auth/register` and `/login` answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthResponse {
    pub user: User,
    pub token: String,
}

/// One row of `GET /api/conversations`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub conversation_type: ConversationType,
    /// The other user (private) or the group id (group).
    pub receiver_id: i64,
    /// Private conversations: the other user's username (v1.1).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub username: Option<String>,
    /// Group conversations: the group's name (v1.1).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_message: Option<Message>,
    pub last_seq: i64,
    /// The caller's read position in this conversation: the larger of the
    /// last `read` and the seq of the caller's own last message.
    pub read_seq: i64,
    /// Messages from others after `read_seq`: `last_seq - read_seq`.
    pub unread_count: i64,
    /// The conversation's latest change position (v1.2): the highest
    /// `change_seq` of its messages, 0 if none changed.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub last_change: i64,
    /// Messages after `read_seq` that mention the caller (v1.2).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub mention_count: i64,
    /// Private conversations: whether the other user is online now.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub online: Option<bool>,
    /// Private conversations: when the other user was last seen online.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default, with = "opt_time_millis")]
    pub last_seen: Option<DateTime<Utc>>,
}

/// `GET /api/conversations` answer when it is asked for a page (`limit`
/// or `cursor` given; v1.1). Without either the answer is a bare array of
/// rows, as in v1.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationPage {
    pub conversations: Vec<ConversationSummary>,
    pub has_more: bool,
    /// The `cursor` of the next page; `None` when `has_more` is false.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// `GET /api/messages` answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// Error codes, the same over HTTP and in acks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidPayload,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    RateLimited,
    /// Storage down: nothing stored, safe to retry.
    Unavailable,
    Internal,
    /// HTTP only (405): the path exists, the method does not.
    MethodNotAllowed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{code, message}`: every error, over HTTP or in an ack.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// HTTP error body: `{"error": {code, message}}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpError {
    pub error: ErrorBody,
}

/// An ack: `{"ok": true, ...}` or `{"ok": false, "error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack<T> {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub body: Option<T>,
}

impl<T> Ack<T> {
    pub fn ok(body: T) -> Self {
        Ack {
            ok: true,
            error: None,
            body: Some(body),
        }
    }

    /// `{"ok": true}` with nothing else.
    pub fn done() -> Self {
        Ack {
            ok: true,
            error: None,
            body: None,
        }
    }

    pub fn err(code: ErrorCode, message: impl Into<String>) -> Self {
        Ack {
            ok: false,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
            body: None,
        }
    }
}

/// Body of a successful `message` ack: `{"ok": true, "message": Message}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentBody<M = Message> {
    pub message: M,
}

/// `message` event input, as clients send it. Every field accepts camelCase
/// (the original clients) and snake_case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    #[serde(alias = "conversation_type")]
    pub conversation_type: String,
    #[serde(alias = "receiver_id")]
    pub receiver_id: i64,
    pub content: String,
    #[serde(
        alias = "client_msg_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_msg_id: Option<String>,
    #[serde(alias = "sender_id", default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<i64>,
    /// The seq of the message this one answers (v1.2).
    #[serde(
        alias = "reply_to_seq",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to_seq: Option<i64>,
    /// Group messages: members it mentions (v1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<i64>>,
}

/// `read` event input: the caller has read up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadInput {
    #[serde(alias = "conversation_type")]
    pub conversation_type: String,
    #[serde(alias = "receiver_id")]
    pub receiver_id: i64,
    pub seq: i64,
}

/// `read` event as relayed to the other participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReceipt {
    pub conversation_type: ConversationType,
    pub reader_id: i64,
    pub receiver_id: i64,
    pub seq: i64,
}

/// Body of a successful `read` ack: `{"ok": true, "read_seq": N}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadBody {
    pub read_seq: i64,
}

/// `typing` event input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingInput {
    #[serde(alias = "conversation_type")]
    pub conversation_type: String,
    #[serde(alias = "receiver_id")]
    pub receiver_id: i64,
    pub typing: bool,
}

/// `typing` event as relayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    pub conversation_type: ConversationType,
    pub sender_id: i64,
    pub receiver_id: i64,
    pub typing: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_serialises_snake_case_with_millisecond_utc_times() {
        let m = Message {
            id: 1042,
            conversation_type: ConversationType::Private,
            sender_id: 7,
            receiver_id: 9,
            seq: 15,
            content: "hi".into(),
            client_msg_id: Some("c-81".into()),
            created_at: DateTime::from_timestamp_millis(1_795_665_600_000).unwrap(),
            edited_at: DateTime::from_timestamp_millis(1_795_665_601_000),
            deleted_at: None,
            reply_to: Some(ReplyTo {
                seq: 14,
                sender_id: 9,
                excerpt: Some("hello".into()),
            }),
            change_seq: 3,
            reactions: Vec::new(),
            mentions: vec![9],
            kind: Default::default(),
            system: None,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["conversation_type"], "private");
        assert_eq!(v["created_at"], "2026-11-26T04:00:00.000Z");
        assert_eq!(v["edited_at"], "2026-11-26T04:00:01.000Z");
        assert_eq!(v["deleted_at"], serde_json::Value::Null);
        assert_eq!(v["reply_to"]["excerpt"], "hello");
        assert!(v.get("reactions").is_none(), "left out when there are none");
        let back: Message = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_v1_message_without_the_life_cycle_fields_still_reads() {
        let v1 = r#"{"id":1,"conversation_type":"group","sender_id":1,"receiver_id":3,"seq":1,
                     "content":"x","client_msg_id":null,"created_at":"2026-11-26T04:00:00.000Z"}"#;
        let m: Message = serde_json::from_str(v1).unwrap();
        assert_eq!(
            (m.edited_at, m.deleted_at, m.reply_to, m.change_seq),
            (None, None, None, 0)
        );
    }

    #[test]
    fn a_reply_to_a_deleted_message_shows_no_excerpt() {
        let long = Message {
            content: "é".repeat(150),
            ..serde_json::from_str(
                r#"{"id":1,"conversation_type":"private","sender_id":4,"receiver_id":3,"seq":2,
                    "content":"","client_msg_id":null,"created_at":"2026-11-26T04:00:00.000Z"}"#,
            )
            .unwrap()
        };
        let shown = ReplyTo::of(&long);
        assert_eq!((shown.seq, shown.sender_id), (2, 4));
        assert_eq!(shown.excerpt.unwrap().chars().count(), REPLY_EXCERPT_CHARS);
        let gone = Message {
            deleted_at: Some(long.created_at),
            ..long
        };
        assert_eq!(ReplyTo::of(&gone).excerpt, None);
    }

    #[test]
    fn send_message_accepts_camel_and_snake_case() {
        let camel: SendMessage = serde_json::from_str(
            r#"{"conversationType":"private","receiverId":2,"content":"x","clientMsgId":"a","senderId":1}"#,
        )
        .unwrap();
        let snake: SendMessage = serde_json::from_str(
            r#"{"conversation_type":"private","receiver_id":2,"content":"x","client_msg_id":"a","sender_id":1}"#,
        )
        .unwrap();
        assert_eq!(camel, snake);
    }

    #[test]
    fn error_ack_has_ok_false_and_code() {
        let a: Ack<SentBody> = Ack::err(ErrorCode::TooLarge, "too long");
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ok": false, "error": {"code": "too_large", "message": "too long"}})
        );
    }
}
