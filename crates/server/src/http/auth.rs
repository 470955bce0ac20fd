//! `POST /api/auth/register`, `/api/auth/login`, `/api/auth/logout`,
//! `/api/auth/logout-all` and `/api/me/password`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use palaver_protocol::AuthResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, AuthToken, AuthUser};
use super::openapi::{
    Conflict, Forbidden, InvalidPayload, RateLimited, TooLarge, Unauthorized, Unavailable,
};
use super::ApiError;
use crate::app::App;
use crate::chat::CredentialChange;
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
            let id = UserId::from_stored(user.id);
            // Refuses a disabled account, once the password is known right.
            let generation = app.chat.token_generation(id).await?;
            let token = app.tokens.issue_for(id, generation, app.tokens.ttl());
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

/// `POST /api/auth/logout`: this token fails from now on (204).
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    operation_id = "logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "This token is revoked: it fails from now on, on every node"),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub async fn logout(
    State(app): State<App>,
    AuthToken(token): AuthToken,
) -> Result<StatusCode, ApiError> {
    app.chat.logout(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/auth/logout-all`: every token of the caller issued so far
/// fails from now on, this one included (204).
#[utoipa::path(
    post,
    path = "/api/auth/logout-all",
    operation_id = "logoutAll",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every token of the caller issued so far is revoked, this one included"),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub async fn logout_all(
    State(app): State<App>,
    AuthUser(user): AuthUser,
) -> Result<StatusCode, ApiError> {
    app.chat
        .change_credentials(user, &CredentialChange::RevokeAll)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The current password and the new one.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    /// Checked against the account's; a wrong one counts as a failed login.
    #[serde(alias = "current_password")]
    current_password: String,
    #[serde(alias = "new_password")]
    #[schema(schema_with = palaver_protocol::openapi::password)]
    new_password: String,
}

/// `POST /api/me/password`: a new password given the current one; every
/// earlier token fails from now on, and the answer carries a new one.
/// A wrong current password counts as a failed login of the caller's
/// username from this address.
#[utoipa::path(
    post,
    path = "/api/me/password",
    operation_id = "changePassword",
    tag = "auth",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "The user and a new token; every earlier token is revoked", body = AuthResponse),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub async fn change_password(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<Json<AuthResponse>, ApiError> {
    let new = Password::parse(&body.new_password).map_err(|e| match e {
        ChatError::InvalidPayload(m) => {
            ChatError::InvalidPayload(m.replace("password", "newPassword"))
        }
        e => e,
    })?;
    let username = app.chat.user(user).await?.username;
    let (guard, ip) = (&app.limits.login, peer.ip());
    guard.check(&username, ip).await?;
    let current = Password::parse(&body.current_password)
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    match app.chat.change_password(user, &current, new).await {
        Ok((user, generation)) => {
            guard.succeeded(&username, ip).await;
            let id = UserId::from_stored(user.id);
            let token = app.tokens.issue_for(id, generation, app.tokens.ttl());
            Ok(Json(AuthResponse { user, token }))
        }
        Err(e) => {
            if let ChatError::Forbidden(_) = e {
                guard.failed(&username, ip).await;
            }
            Err(e.into())
        }
    }
}
