//! OpenAPI schemas of input rules that no Rust type states (feature
//! `openapi`): the bounds the server's parsers enforce, written once
//! here for every body that carries the same kind of value.

use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};

/// Everything a group name may not hold: control characters (Unicode
/// category Cc, what Rust's `char::is_control` names).
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// A group name: 1–100 characters, not blank, no control characters.
pub fn group_name() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(100))
        .pattern(Some(format!("^[^{CONTROL}]*[^\\s{CONTROL}][^{CONTROL}]*$")))
        .description(Some(
            "1 to 100 characters, not blank, without control characters",
        ))
        .build()
}

/// A username: 3–32 of `[A-Za-z0-9_.-]`.
pub fn username() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(3))
        .max_length(Some(32))
        .pattern(Some("^[A-Za-z0-9_.-]{3,32}$"))
        .build()
}

/// A password: 8–128 characters.
pub fn password() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(8))
        .max_length(Some(128))
        .build()
}

/// A role that can be given: `admin` or `member` (ownership moves only by
/// handing the group over).
pub fn assignable_role() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["admin", "member"]))
        .build()
}

/// A user or group id sent in a body: a positive integer (anything else
/// is 400 `invalid_payload`).
pub fn id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(1))
        .build()
}

/// The role of a member being added: `member` (the default, also for
/// `null`) or `admin`.
pub fn optional_role() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([
            serde_json::json!("admin"),
            serde_json::json!("member"),
            serde_json::Value::Null,
        ]))
        .build()
}

/// The other members of a new group: ids as [`id`]; absent and `null`
/// both mean no one else.
pub fn member_ids() -> Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(id())
        .build()
}

/// The schemas say what serde writes: every key written is a property,
/// every required property is written, and a property may be `null`
/// exactly where serde writes `null` for a missing value (elsewhere it
/// leaves the key out).
#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::{json, Value};
    use utoipa::PartialSchema;

    use crate::*;

    /// `least` has every optional value missing, `most` every one there.
    fn agrees<T: Serialize + PartialSchema>(least: &T, most: &T) {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let props = schema["properties"].as_object().expect("an object schema");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let (least, most) = (
            serde_json::to_value(least).unwrap(),
            serde_json::to_value(most).unwrap(),
        );
        let (least, most) = (least.as_object().unwrap(), most.as_object().unwrap());
        for key in most.keys() {
            assert!(props.contains_key(key), "{key} is written, not described");
        }
        for key in &required {
            assert!(least.contains_key(*key), "{key} is required, not written");
        }
        for (key, prop) in props {
            let nullable = prop["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("null")))
                || prop["oneOf"]
                    .as_array()
                    .is_some_and(|o| o.contains(&json!({"type": "null"})));
            let writes_null = least.get(key).is_some_and(Value::is_null);
            assert_eq!(
                nullable, writes_null,
                "{key}: nullable or not as serde writes it"
            );
            assert_eq!(
                required.contains(&key.as_str()),
                least.contains_key(key),
                "{key}: required exactly when always written"
            );
        }
    }

    fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn user(full: bool) -> User {
        User {
            id: 1,
            username: "ada".into(),
            created_at: at(0),
            online: full.then_some(true),
            last_seen: full.then(|| at(1)),
        }
    }

    fn message(full: bool) -> Message {
        Message {
            id: 1,
            conversation_type: ConversationType::Group,
            sender_id: 1,
            receiver_id: 2,
            seq: 3,
            content: "hi".into(),
            client_msg_id: full.then(|| "c-1".into()),
            created_at: at(0),
            edited_at: full.then(|| at(1)),
            deleted_at: full.then(|| at(2)),
            reply_to: full.then(|| ReplyTo {
                seq: 2,
                sender_id: 1,
                excerpt: Some("x".into()),
            }),
            change_seq: 0,
            reactions: if full {
                vec![ReactionCount {
                    emoji: "👍".into(),
                    count: 1,
                    me: true,
                }]
            } else {
                Vec::new()
            },
            mentions: if full { vec![1] } else { Vec::new() },
            kind: if full {
                MessageKind::System
            } else {
                MessageKind::Text
            },
            system: full.then_some(SystemChange {
                event: SystemEvent::Renamed,
                actor_id: 1,
                user_id: Some(2),
                name: Some("g".into()),
                role: Some(Role::Admin),
            }),
        }
    }

    fn row(full: bool) -> ConversationSummary {
        ConversationSummary {
            conversation_type: ConversationType::Private,
            receiver_id: 2,
            username: full.then(|| "bob".into()),
            name: full.then(|| "g".into()),
            last_message: full.then(|| message(true)),
            last_seq: 1,
            read_seq: 0,
            unread_count: 1,
            last_change: 0,
            mention_count: 0,
            online: full.then_some(false),
            last_seen: full.then(|| at(3)),
        }
    }

    #[test]
    fn the_answers_schemas_agree_with_serde() {
        agrees(&user(false), &user(true));
        agrees(&message(false), &message(true));
        let reply = |excerpt: Option<&str>| ReplyTo {
            seq: 1,
            sender_id: 1,
            excerpt: excerpt.map(Into::into),
        };
        agrees(&reply(None), &reply(Some("x")));
        let change = |full: bool| SystemChange {
            event: SystemEvent::MemberAdded,
            actor_id: 1,
            user_id: full.then_some(2),
            name: full.then(|| "g".into()),
            role: full.then_some(Role::Member),
        };
        agrees(&change(false), &change(true));
        let group = |full: bool| Group {
            id: 1,
            name: "g".into(),
            owner_id: 1,
            created_at: at(0),
            members: full.then(|| {
                vec![Member {
                    user_id: 1,
                    role: Role::Owner,
                    joined_at: at(0),
                }]
            }),
        };
        agrees(&group(false), &group(true));
        agrees(&row(false), &row(true));
        let page = |full: bool| ConversationPage {
            conversations: vec![row(full)],
            has_more: full,
            next_cursor: full.then(|| "1.2".into()),
        };
        agrees(&page(false), &page(true));
        let auth = AuthResponse {
            user: user(true),
            token: "t".into(),
        };
        agrees(&auth, &auth);
        let history = MessagePage {
            messages: vec![message(true)],
            has_more: false,
        };
        agrees(&history, &history);
        let error = HttpError {
            error: ErrorBody {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
            },
        };
        agrees(&error, &error);
    }
}
