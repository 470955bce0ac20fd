//! Row mapping: database rows into the wire types, one mapper per type.
//!
//! Mappers are named for what they build from a row (`user_from_row`), so
//! they never read like the store's methods that fetch one (`user(id)`).
//! Columns are read by name; the lists the mappers expect are the `*_COLS`
//! constants beside them. Text is read through [`text`] and [`opt_text`]
//! because sqlx's `Any` driver hands MySQL `TEXT` columns over as bytes.
//! Ids ([`UserId`], [`GroupId`]) bind as the integers they are, and an id
//! read from a row is taken as it is: only parsed ids are ever stored.

use palaver_protocol::{
    ConversationType, Group, Member, Message, MessageKind, ReplyTo, Role, SystemChange, User,
};
use sqlx::any::{Any, AnyRow, AnyTypeInfo};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Row, Type};

use super::dialect::Dialect;
use crate::ids::{GroupId, UserId};
use crate::store::{from_ms, NewMessage, StoreError};

/// `Type`, `Encode` and `Decode` on the `Any` driver for an id type, as
/// its `i64`.
macro_rules! sql_id {
    ($id:ty) => {
        impl Type<Any> for $id {
            fn type_info() -> AnyTypeInfo {
                <i64 as Type<Any>>::type_info()
            }

            fn compatible(ty: &AnyTypeInfo) -> bool {
                <i64 as Type<Any>>::compatible(ty)
            }
        }

        impl<'q> Encode<'q, Any> for $id {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <i64 as Encode<'q, Any>>::encode_by_ref(&self.get(), buf)
            }
        }

        impl<'r> Decode<'r, Any> for $id {
            fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                <i64 as Decode<'r, Any>>::decode(value).map(<$id>::from_stored)
            }
        }
    };
}

sql_id!(UserId);
sql_id!(GroupId);

pub(super) const USER_COLS: &str = "id, username, created_at, last_seen";
pub(super) const GROUP_COLS: &str = "id, name, owner_id, created_at";
pub(super) const MESSAGE_COLS: &str = "id, conversation_type, sender_id, receiver_id, seq, \
     content, client_msg_id, created_at, edited_at, deleted_at, reply_seq, change_seq, system_change";

/// A text column. sqlx's `Any` driver reports MySQL `TEXT` columns as
/// blobs, so those are read as bytes and checked to be UTF-8.
pub(super) fn text(d: Dialect, r: &AnyRow, col: &str) -> Result<String, StoreError> {
    Ok(opt_text(d, r, col)?.unwrap_or_default())
}

/// A nullable text column (see [`text`]).
pub(super) fn opt_text<I>(d: Dialect, r: &AnyRow, col: I) -> Result<Option<String>, StoreError>
where
    I: sqlx::ColumnIndex<AnyRow> + Copy,
{
    match r.try_get::<Option<String>, _>(col) {
        Err(sqlx::Error::ColumnDecode { .. }) if d == Dialect::MySql => {
            let bytes: Option<Vec<u8>> = r.try_get(col)?;
            bytes
                .map(|b| {
                    String::from_utf8(b)
                        .map_err(|e| StoreError::Other(sqlx::Error::Decode(e.into())))
                })
                .transpose()
        }
        other => other.map_err(StoreError::from),
    }
}

/// A user from [`USER_COLS`].
pub(super) fn user_from_row(r: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        created_at: from_ms(r.try_get("created_at")?),
        online: None,
        last_seen: r.try_get::<Option<i64>, _>("last_seen")?.map(from_ms),
    })
}

/// A group, without its members, from [`GROUP_COLS`].
pub(super) fn group_from_row(r: &AnyRow) -> Result<Group, StoreError> {
    Ok(Group {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        owner_id: r.try_get("owner_id")?,
        created_at: from_ms(r.try_get("created_at")?),
        members: None,
    })
}

/// A member from `user_id, role, joined_at`.
pub(super) fn member_from_row(r: &AnyRow) -> Result<Member, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(Member {
        user_id: r.try_get("user_id")?,
        role: Role::parse(&role).unwrap_or(Role::Member),
        joined_at: from_ms(r.try_get("joined_at")?),
    })
}

/// A message from [`MESSAGE_COLS`] named `{prefix}id`, `{prefix}seq`, ….
/// A reply's `reply_to` names only the seq it answers (sender 0, no
/// excerpt) until `SqlStore::fill` reads that message.
pub(super) fn message_from_row(
    d: Dialect,
    r: &AnyRow,
    prefix: &str,
) -> Result<Message, StoreError> {
    let get_i64 = |c: &str| -> Result<i64, StoreError> {
        Ok(r.try_get::<i64, _>(format!("{prefix}{c}").as_str())?)
    };
    let get_opt = |c: &str| -> Result<Option<i64>, StoreError> {
        Ok(r.try_get::<Option<i64>, _>(format!("{prefix}{c}").as_str())?)
    };
    let kind: String = r.try_get(format!("{prefix}conversation_type").as_str())?;
    let system = opt_text(d, r, format!("{prefix}system_change").as_str())?
        .map(|json| serde_json::from_str::<SystemChange>(&json))
        .transpose()
        .map_err(|e| StoreError::Other(sqlx::Error::Decode(e.into())))?;
    Ok(Message {
        id: get_i64("id")?,
        conversation_type: ConversationType::parse(&kind).unwrap_or(ConversationType::Private),
        sender_id: get_i64("sender_id")?,
        receiver_id: get_i64("receiver_id")?,
        seq: get_i64("seq")?,
        content: text(d, r, &format!("{prefix}content"))?,
        client_msg_id: r.try_get(format!("{prefix}client_msg_id").as_str())?,
        created_at: from_ms(get_i64("created_at")?),
        edited_at: get_opt("edited_at")?.map(from_ms),
        deleted_at: get_opt("deleted_at")?.map(from_ms),
        reply_to: get_opt("reply_seq")?.map(|seq| ReplyTo {
            seq,
            sender_id: 0,
            excerpt: None,
        }),
        change_seq: get_i64("change_seq")?,
        reactions: Vec::new(),
        mentions: Vec::new(),
        kind: if system.is_some() {
            MessageKind::System
        } else {
            MessageKind::Text
        },
        system,
    })
}

/// The message `m` became, inserted as row `id` at `seq`.
pub(super) fn stored_message(m: &NewMessage, id: i64, seq: i64) -> Message {
    Message {
        id,
        conversation_type: m.conversation.kind(),
        sender_id: m.sender_id.get(),
        receiver_id: m.receiver_id,
        seq,
        content: m.content.clone(),
        client_msg_id: m.client_msg_id.clone(),
        created_at: from_ms(m.created_at_ms),
        edited_at: None,
        deleted_at: None,
        reply_to: m.reply_to.clone(),
        change_seq: 0,
        reactions: Vec::new(),
        mentions: m.mentions.iter().map(|u| u.get()).collect(),
        kind: if m.system.is_some() {
            MessageKind::System
        } else {
            MessageKind::Text
        },
        system: m.system.clone(),
    }
}
