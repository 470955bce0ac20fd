//! Extractors whose every failure is a proper `ApiError`: the caller's
//! identity (`AuthUser`) and JSON bodies, query strings and paths.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::app::App;
use crate::auth::TokenError;
use crate::chat::ChatError;
use crate::store::UserId;

/// The authenticated caller (from `Authorization: Bearer <jwt>`).
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId);

impl FromRequestParts<App> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(TokenError::Missing);
        let user = token
            .and_then(|t| app.tokens.verify(t))
            .map_err(|e| ChatError::Unauthorized(format!("unauthorized: {e}")))?;
        app.chat.ensure_user(user).await?;
        Ok(AuthUser(user))
    }
}

/// A JSON body; malformed → 400 `invalid_payload`, oversize → 413 `too_large`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ChatError::TooLarge("request body is too large".into()).into())
            }
            Err(r) => Err(ChatError::invalid(r.body_text()).into()),
        }
    }
}

/// A query string; malformed → 400 `invalid_payload`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r: QueryRejection| ChatError::invalid(r.body_text()).into())
    }
}

/// Path parameters; malformed → 400 `invalid_payload`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r: PathRejection| ChatError::invalid(r.body_text()).into())
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme name
/// is case-insensitive (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer t.k.n",
            "bearer t.k.n",
            "BEARER t.k.n",
            "bEaReR  t.k.n ",
        ] {
            assert_eq!(bearer_token(value), Some("t.k.n"), "{value:?}");
        }
        assert_eq!(bearer_token("Basic dXNlcg=="), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
