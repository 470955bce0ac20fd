//! `/api/groups…`: create, list, read, add and remove members; rename,
//! give roles, hand ownership over and delete (v1.2).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use palaver_protocol::{Group, Member, NewOwner, RenameGroup, Role, SetRole};
use serde::Deserialize;

use super::extract::{ApiJson, ApiPath, AuthUser};
use super::ApiError;
use crate::app::App;
use crate::chat::input::{parse_id, parse_member_ids, path_group};
use crate::chat::{ChatError, GroupName, GroupOp};
use crate::ids::UserId;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroup {
    name: String,
    /// Optional: absent and `null` both mean no one else.
    #[serde(default, alias = "member_ids")]
    member_ids: Option<Vec<i64>>,
}

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

pub async fn list(
    State(app): State<App>,
    AuthUser(me): AuthUser,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(app.chat.groups_of(me).await?))
}

pub async fn get(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(app.chat.group(me, path_group(id)?).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddMember {
    #[serde(alias = "user_id")]
    user_id: i64,
    /// `member` (default) or `admin`; only the owner may add admins.
    #[serde(default)]
    role: Option<String>,
}

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
