//! `GET /api/me`, `/api/users`, `/api/users/{id}`; blocks (v1.2):
//! `GET /api/blocks`, `POST` and `DELETE /api/blocks/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use palaver_protocol::User;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::openapi::{InvalidPayload, NotFound, Unauthorized, Unavailable};
use super::ApiError;
use crate::app::App;
use crate::chat::input::path_user;
use crate::chat::ChatError;

/// Default and largest page of a user search.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

#[utoipa::path(
    get,
    path = "/api/me",
    operation_id = "me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub async fn me(State(app): State<App>, AuthUser(me): AuthUser) -> Result<Json<User>, ApiError> {
    Ok(Json(app.chat.user(me).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// A username prefix; one with a character no username has matches
    /// nobody.
    #[serde(default)]
    #[param(required = true, min_length = 1, max_length = 32)]
    q: String,
    /// Most users to answer with: 1 to 100 (a number outside is taken
    /// as the nearest of the two), 20 if absent.
    #[param(value_type = i64, nullable = false, minimum = 0, maximum = 4294967295_u64)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/users",
    operation_id = "search_users",
    tag = "users",
    security(("bearer" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "Users whose name starts with `q`, names only (no presence)", body = Vec<User>),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
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

#[utoipa::path(
    get,
    path = "/api/users/{id}",
    operation_id = "get_user",
    tag = "users",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A user id; one that is not positive names no user (404)"),
    ),
    responses(
        (status = 200, description = "The user; `online` and `last_seen` only for the caller and users who share a conversation with them", body = User),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(app.chat.user_seen_by(me, path_user(id)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/blocks",
    operation_id = "blocks",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The users the caller blocks", body = Vec<User>),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub async fn blocks(
    State(app): State<App>,
    AuthUser(me): AuthUser,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(app.chat.blocks(me).await?))
}

#[utoipa::path(
    post,
    path = "/api/blocks/{id}",
    operation_id = "block",
    tag = "users",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A user id; one that is not positive names no user (404)"),
    ),
    responses(
        (status = 204, description = "Blocked (blocking again changes nothing)"),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn block(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    app.chat.set_block(me, path_user(id)?, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/blocks/{id}",
    operation_id = "unblock",
    tag = "users",
    security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "A user id; one that is not positive names no user (404)"),
    ),
    responses(
        (status = 204, description = "Not blocked (also when there was no block)"),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn unblock(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    app.chat.set_block(me, path_user(id)?, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
