//! `POST /api/auth/register` and `/api/auth/login`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use palaver_protocol::AuthResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::ApiJson;
use super::openapi::{Conflict, InvalidPayload, RateLimited, TooLarge, Unauthorized, Unavailable};
use super::ApiError;
use crate::app::App;
use crate::chat::{ChatError, Password, Username};
use crate::ids::UserId;
use crate::limits::login::bounded;

/// A new account's name and password.
#[derive(Deserialize, ToSchema)]
pub struct Registration {
    #[schema(schema_with = palaver_protocol::openapi::username)]
    username: String,
    #[schema(schema_with = palaver_protocol::openapi::password)]
    password: String,
}

/// An account's name and password. Anything is accepted here: what is
/// not an account's answers 401.
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    username: String,
    password: String,
}

#[utoipa::path(
    post,
    path = "/api/auth/register",
    operation_id = "register",
    tag = "auth",
    request_body = Registration,
    responses(
        (status = 201, description = "The new user and a token", body = AuthResponse),
        (status = 400, response = InvalidPayload),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn register(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Registration>,
) -> Result<(StatusCode, Json<AuthResponse>), ApiError> {
    // Counted before any work, like a login: each costs a password hash.
    app.limits.register(peer.ip())?;
    let username = Username::parse(&body.username)?;
    let password = Password::parse(&body.password)?;
    let user = app.chat.register(username, password).await?;
    let token = app.tokens.issue(UserId::from_stored(user.id));
    Ok((StatusCode::CREATED, Json(AuthResponse { user, token })))
}

#[utoipa::path(
    post,
    path = "/api/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "The user and a token", body = AuthResponse),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<AuthResponse>, ApiError> {
    // Checked before any work; only failures are counted, so the owner
    // of an account is never locked out by someone else's guesses.
    let (guard, ip) = (&app.limits.login, peer.ip());
    guard.check(&body.username, ip).await?;
    // Bounded before hashing: an oversize password cannot be right anyway.
    let result = match Password::parse(&body.password) {
        Ok(password) => app.chat.login(&body.username, password.as_str()).await,
        Err(_) => Err(ChatError::bad_credentials()),
    };
    match result {
        Ok(user) => {
            guard.succeeded(&body.username, ip).await;
            let token = app.tokens.issue(UserId::from_stored(user.id));
            Ok(Json(AuthResponse { user, token }))
        }
        Err(e) => {
            if let ChatError::Unauthorized(_) = e {
                tracing::info!(username = ?bounded(&body.username), peer = %ip, "login failed");
                guard.failed(&body.username, ip).await;
            }
            Err(e.into())
        }
    }
}
