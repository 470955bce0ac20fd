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
