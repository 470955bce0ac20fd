//! `/api/groups…`: create, list, read, add and remove members; rename,
//! give roles, hand ownership over and delete (v1.2).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use palaver_protocol::{Group, Member, NewOwner, RenameGroup, Role, SetRole};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, AuthUser};
use super::openapi::{
    Conflict, Forbidden, InvalidPayload, NotFound, RateLimited, TooLarge, Unauthorized, Unavailable,
};
use super::ApiError;
use crate::app::App;
use crate::chat::input::{parse_id, parse_member_ids, path_group};
use crate::chat::{ChatError, GroupName, GroupOp};
use crate::ids::UserId;

/// A new group: its name, and the other members (as plain members; the
/// caller is the owner). A group has at most 1,000 members (413).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroup {
    #[schema(schema_with = palaver_protocol::openapi::group_name)]
    name: String,
    /// Optional: absent and `null` both mean no one else.
    #[serde(default, alias = "member_ids")]
    #[schema(schema_with = palaver_protocol::openapi::member_ids)]
    member_ids: Option<Vec<i64>>,
}

#[utoipa::path(
    post,
    path = "/api/groups",
    operation_id = "create_group",
    tag = "groups",
    security(("bearer" = [])),
    request_body = CreateGroup,
    responses(
        (status = 201, description = "The group, the caller its owner", body = Group),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiJson(body): ApiJson<CreateGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let name = GroupName::parse(&body.name)?;
    app.limits.group_change(me)?;
    let members = parse_member_ids(&body.member_ids.unwrap_or_default())?;
    let group = app.chat.create_group(me, name, members).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[utoipa::path(
    get,
    path = "/api/groups",
    operation_id = "list_groups",
    tag = "groups",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's groups", body = Vec<Group>),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(app): State<App>,
    AuthUser(me): AuthUser,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(app.chat.groups_of(me).await?))
}

#[utoipa::path(
    get,
    path = "/api/groups/{id}",
    operation_id = "get_group",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A group id; one that is not positive names no group (404)"),
    ),
    responses(
        (status = 200, description = "The group with its `members`", body = Group),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(app.chat.group(me, path_group(id)?).await?))
}

/// The user to add to a group, and their role.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddMember {
    #[serde(alias = "user_id")]
    #[schema(schema_with = palaver_protocol::openapi::id)]
    user_id: i64,
    /// `member` (default) or `admin`; only the owner may add admins.
    #[serde(default)]
    #[schema(schema_with = palaver_protocol::openapi::optional_role)]
    role: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/groups/{id}/members",
    operation_id = "add_member",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A group id; one that is not positive names no group (404)"),
    ),
    request_body = AddMember,
    responses(
        (status = 201, description = "The new member", body = Member),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn add_member(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(group): ApiPath<i64>,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    let user = parse_id("userId", body.user_id)?;
    let role = match body.role.as_deref() {
        None => Role::Member,
        Some(r) => Role::parse(r)
            .ok_or_else(|| ChatError::invalid("role must be \"member\" or \"admin\""))?,
    };
    app.limits.group_change(me)?;
    let member = app
        .chat
        .add_member(me, path_group(group)?, user, role)
        .await?;
    Ok((StatusCode::CREATED, Json(member)))
}

#[utoipa::path(
    delete,
    path = "/api/groups/{id}/members/{user_id}",
    operation_id = "remove_member",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A group id; one that is not positive names no group (404)"),
        ("user_id" = i64, Path, description = "A member's user id; one that is not positive names no member (404)"),
    ),
    responses(
        (status = 204, description = "Removed, or left (the caller themself); an owner leaving as the last member deletes the group"),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn remove_member(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath((group, user)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    app.limits.group_change(me)?;
    let group = path_group(group)?;
    // A number that is not an id is no one's, so no member's.
    let user = UserId::parse(user).map_err(|_| ChatError::not_in_group(user, group))?;
    app.chat
        .change_group(me, group, GroupOp::Remove { user })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /api/groups/{id}`: renames the group (owner, admins).
#[utoipa::path(
    patch,
    path = "/api/groups/{id}",
    operation_id = "rename_group",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A group id; one that is not positive names no group (404)"),
    ),
    request_body = RenameGroup,
    responses(
        (status = 200, description = "The group, renamed", body = Group),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn rename(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(group): ApiPath<i64>,
    ApiJson(body): ApiJson<RenameGroup>,
) -> Result<Json<Group>, ApiError> {
    let group = path_group(group)?;
    let name = GroupName::parse(&body.name)?;
    app.limits.group_change(me)?;
    app.chat
        .change_group(me, group, GroupOp::Rename(name))
        .await?;
    Ok(Json(app.chat.group(me, group).await?))
}

/// `PUT /api/groups/{id}/members/{userId}/role`: makes a member an admin
/// or a plain member (owner).
#[utoipa::path(
    put,
    path = "/api/groups/{id}/members/{user_id}/role",
    operation_id = "set_role",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A group id; one that is not positive names no group (404)"),
        ("user_id" = i64, Path, description = "A member's user id; one that is not positive names no member (404)"),
    ),
    request_body = SetRole,
    responses(
        (status = 200, description = "The member with their new role", body = Member),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn set_role(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath((group, user)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<SetRole>,
) -> Result<Json<Member>, ApiError> {
    let group = path_group(group)?;
    let user = UserId::parse(user).map_err(|_| ChatError::not_in_group(user, group))?;
    let role = match Role::parse(&body.role) {
        Some(role @ (Role::Admin | Role::Member)) => role,
        _ => return Err(ChatError::invalid("role must be \"admin\" or \"member\"").into()),
    };
    app.limits.group_change(me)?;
    app.chat
        .change_group(me, group, GroupOp::SetRole { user, role })
        .await?;
    let found = app.chat.group(me, group).await?;
    let member = found
        .members
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.user_id == user.get())
        .ok_or_else(|| ChatError::not_in_group(user, group))?;
    Ok(Json(member))
}

/// `POST /api/groups/{id}/owner`: hands ownership to a member (owner); the
/// old owner becomes an admin.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/owner",
    operation_id = "hand_over",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A group id; one that is not positive names no group (404)"),
    ),
    request_body = NewOwner,
    responses(
        (status = 200, description = "The group; the old owner is now an admin", body = Group),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn hand_over(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(group): ApiPath<i64>,
    ApiJson(body): ApiJson<NewOwner>,
) -> Result<Json<Group>, ApiError> {
    let group = path_group(group)?;
    let user = parse_id("userId", body.user_id)?;
    app.limits.group_change(me)?;
    app.chat
        .change_group(me, group, GroupOp::Owner { user })
        .await?;
    Ok(Json(app.chat.group(me, group).await?))
}

/// `DELETE /api/groups/{id}`: deletes the group (owner).
#[utoipa::path(
    delete,
    path = "/api/groups/{id}",
    operation_id = "delete_group",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A group id; one that is not positive names no group (404)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn delete(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(group): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let group = path_group(group)?;
    app.limits.group_change(me)?;
    app.chat.change_group(me, group, GroupOp::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}
