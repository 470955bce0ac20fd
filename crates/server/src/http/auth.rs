//! `POST /api/auth/register` and `/api/auth/login`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use palaver_protocol::AuthResponse;
use serde::Deserialize;

use super::extract::ApiJson;
use super::ApiError;
use crate::app::App;
use crate::chat::{Password, Username};

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

pub async fn register(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<AuthResponse>), ApiError> {
    // Counted before any work, like a login: each costs a password hash.
    app.limits.register(peer.ip())?;
    let username = Username::parse(&body.username)?;
    let password = Password::parse(&body.password)?;
    let user = app.chat.register(username, password).await?;
    let token = app.tokens.issue(user.id);
    Ok((StatusCode::CREATED, Json(AuthResponse { user, token })))
}

pub async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<AuthResponse>, ApiError> {
    // Counted before any work: guessing passwords costs the guesser.
    app.limits.login(&body.username, peer.ip())?;
    if let Some(cluster) = app.chat.cluster() {
        app.limits
            .login_everywhere(cluster, &body.username, peer.ip())
            .await?;
    }
    // Bounded before hashing: an oversize password cannot be right anyway.
    let password = Password::parse(&body.password)
        .map_err(|_| crate::chat::ChatError::Unauthorized("invalid username or password".into()))?;
    let user = app.chat.login(&body.username, password.as_str()).await?;
    let token = app.tokens.issue(user.id);
    Ok(Json(AuthResponse { user, token }))
}
