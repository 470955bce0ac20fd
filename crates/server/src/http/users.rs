//! `GET /api/me`, `/api/users`, `/api/users/{id}`; blocks (v1.2):
//! `GET /api/blocks`, `POST` and `DELETE /api/blocks/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use palaver_protocol::User;
use serde::Deserialize;

use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::ApiError;
use crate::app::App;
use crate::chat::input::path_user;
use crate::chat::ChatError;

/// Default and largest page of a user search.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

pub async fn me(State(app): State<App>, AuthUser(me): AuthUser) -> Result<Json<User>, ApiError> {
    Ok(Json(app.chat.user(me).await?))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    limit: Option<u32>,
}

pub async fn search(
    State(app): State<App>,
    AuthUser(_): AuthUser,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<Vec<User>>, ApiError> {
    if query.q.chars().count() > 32 {
        return Err(ChatError::invalid("`q` is at most 32 characters").into());
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    Ok(Json(app.chat.search_users(&query.q, limit).await?))
}

pub async fn get(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(app.chat.user_seen_by(me, path_user(id)?).await?))
}

pub async fn blocks(
    State(app): State<App>,
    AuthUser(me): AuthUser,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(app.chat.blocks(me).await?))
}

pub async fn block(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    app.chat.set_block(me, path_user(id)?, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unblock(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    app.chat.set_block(me, path_user(id)?, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
