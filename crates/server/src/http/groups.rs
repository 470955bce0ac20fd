//! `/api/groups…`: create, list, read, add and remove members.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use palaver_protocol::{Group, Member, Role};
use serde::Deserialize;

use super::extract::{ApiJson, ApiPath, AuthUser};
use super::ApiError;
use crate::app::App;
use crate::chat::input::{parse_id, parse_member_ids, path_group};
use crate::chat::{ChatError, GroupName};
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
    app.chat.remove_member(me, group, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
