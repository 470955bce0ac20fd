//! Extractors whose every failure is a proper `ApiError`: the caller's
//! identity (`AuthUser`) and JSON bodies, query strings and paths.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::app::App;
use crate::auth::{TokenError, Verified};
use crate::chat::ChatError;
use crate::ids::UserId;

/// The authenticated caller (from `Authorization: Bearer <jwt>`).
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId);

/// The caller's token itself, checked as [`AuthUser`] is (for logging
/// that token out).
#[derive(Debug, Clone, Copy)]
pub struct AuthToken(pub Verified);

impl FromRequestParts<App> for AuthToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(TokenError::Missing);
        let token = token
            .and_then(|t| app.tokens.verify_claims(t))
            .map_err(|e| ChatError::Unauthorized(format!("unauthorized: {e}")))?;
        tracing::Span::current().record("user", token.user.get());
        // Revoked tokens and disabled accounts, from this node's cache.
        app.chat.check_token(token.user, &token.mark).await?;
        app.chat.ensure_user(token.user).await?;
        Ok(AuthToken(token))
    }
}

impl FromRequestParts<App> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let AuthToken(token) = AuthToken::from_request_parts(parts, app).await?;
        Ok(AuthUser(token.user))
    }
}

/// A JSON body; malformed → 400 `invalid_payload` naming the field and
/// what was expected, oversize → 413 `too_large`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(ChatError::invalid(
                "expected a JSON body (Content-Type: application/json)",
            )
            .into());
        }
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ChatError::TooLarge("request body is too large".into()).into())
            }
            Err(_) => return Err(ChatError::invalid("the request body could not be read").into()),
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(v) => Ok(ApiJson(v)),
            Err(e) => {
                let field = e.path().to_string();
                let inner = e.into_inner();
                let what = if inner.is_syntax() || inner.is_eof() {
                    "the body is not valid JSON".to_string()
                } else {
                    plain(&field, &inner.to_string())
                };
                Err(ChatError::invalid(what).into())
            }
        }
    }
}

/// A query string; malformed → 400 `invalid_payload` naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let field = e.path().to_string();
                ChatError::invalid(plain(&field, &e.into_inner().to_string())).into()
            })
    }
}

/// Path parameters; malformed → 400 `invalid_payload` naming the parameter.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        // The parameters by name, to name the one that did not parse when
        // the route has a single one (axum then reports no name).
        let names: Vec<(String, String)> =
            axum::extract::RawPathParams::from_request_parts(parts, state)
                .await
                .map(|raw| {
                    raw.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default();
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let what = match e.into_kind() {
                    ErrorKind::ParseErrorAtKey {
                        key,
                        value,
                        expected_type,
                    } => format!(
                        "`{key}` in the path must be {} (got `{value}`)",
                        expected(expected_type)
                    ),
                    ErrorKind::ParseError {
                        value,
                        expected_type,
                    }
                    | ErrorKind::ParseErrorAtIndex {
                        value,
                        expected_type,
                        ..
                    } => match names.iter().find(|(_, v)| *v == value) {
                        Some((key, _)) => format!(
                            "`{key}` in the path must be {} (got `{value}`)",
                            expected(expected_type)
                        ),
                        None => format!(
                            "the path parameter must be {} (got `{value}`)",
                            expected(expected_type)
                        ),
                    },
                    _ => "the path is not valid for this route".to_string(),
                };
                Err(ChatError::invalid(what).into())
            }
            Err(_) => Err(ChatError::invalid("the path is not valid for this route").into()),
        }
    }
}

/// A Rust type name as a user would say it.
fn expected(type_name: &str) -> &'static str {
    match type_name.rsplit("::").next().unwrap_or(type_name) {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            "a whole number"
        }
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        "String" | "str" | "&str" => "a string",
        _ => "a value of the right kind",
    }
}

/// A deserializer's complaint about `field`, in words a client acts on:
/// which field, what was expected (no Rust type names, no positions).
fn plain(field: &str, message: &str) -> String {
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("{} is required", rest.trim());
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return format!(
            "`{field}`: unknown value {}",
            rest.replacen(", expected", "; expected", 1)
        );
    }
    let field = if field == "." || field.is_empty() {
        "the body".to_string()
    } else {
        format!("`{field}`")
    };
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((got, want)) = rest.split_once(", expected ") {
            return format!("{field} must be {} (got {got})", words(want));
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((got, want)) = rest.split_once(", expected ") {
            return format!("{field} must be {} (got {got})", words(want));
        }
    }
    if message.contains("invalid digit") || message.contains("cannot parse integer") {
        return format!("{field} must be a whole number");
    }
    if message.contains("too large") || message.contains("too small") {
        return format!("{field} is out of range");
    }
    if message.contains("invalid float") {
        return format!("{field} must be a number");
    }
    if message.contains("provided string was not `true` or `false`") {
        return format!("{field} must be true or false");
    }
    format!("{field} is not valid: {message}")
}

/// Rust type names in an "expected …" phrase, in words.
fn words(want: &str) -> String {
    let w = want.trim();
    let t = expected(w);
    if t == "a value of the right kind" {
        w.to_string()
    } else {
        t.to_string()
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
    use super::{bearer_token, plain};

    #[test]
    fn parse_failures_name_the_field_and_what_was_expected() {
        assert_eq!(
            plain("limit", "invalid digit found in string"),
            "`limit` must be a whole number"
        );
        assert_eq!(
            plain(
                "username",
                "invalid type: integer `5`, expected a string at line 1 column 14"
            ),
            "`username` must be a string (got integer `5`)"
        );
        assert_eq!(
            plain("afterSeq", "invalid type: string \"x\", expected i64"),
            "`afterSeq` must be a whole number (got string \"x\")"
        );
        assert_eq!(
            plain(".", "missing field `password`"),
            "`password` is required"
        );
        for m in [
            plain("limit", "invalid digit found in string"),
            plain("id", "invalid type: string \"a\", expected u32"),
        ] {
            assert!(!m.contains("i64") && !m.contains("u32"), "{m}");
        }
    }

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
