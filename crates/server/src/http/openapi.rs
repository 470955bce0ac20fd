//! The OpenAPI 3.1 description of the HTTP API, served at
//! `GET /api/openapi.json`. Nothing of it is written by hand: each route's
//! operation comes from the `#[utoipa::path]` on its handler, registered
//! together with the route itself (`super::api`), so a route cannot be
//! served without being described; the wire types' schemas come from
//! `palaver_protocol` (feature `openapi`). This file holds what is shared:
//! the document's head, the bearer scheme, and one reusable response per
//! error status, each carrying the one error body, `HttpError`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use palaver_protocol::{ErrorBody, ErrorCode, HttpError};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's head and shared components; the paths are added by
/// `super::api`, route by route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palaver",
        description = "The HTTP API of Palaver, a real-time chat server. The contract, \
            including the Socket.IO events this document cannot describe, is \
            docs/PROTOCOL.md. Input accepts camelCase (described here) and snake_case \
            for every field and query parameter; output is snake_case."
    ),
    components(
        schemas(HttpError, ErrorBody, ErrorCode),
        responses(
            InvalidPayload,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            TooLarge,
            RateLimited,
            Unavailable
        )
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "users", description = "Users and blocks"),
        (name = "groups", description = "Groups, their members and roles"),
        (name = "messages", description = "Conversations and history"),
        (name = "server", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme the authenticated routes name: the JWT
/// that register and login answer with (PROTOCOL.md, "Authentication").
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub use errors::*;

/// One reusable response per error status, each with the error body and
/// an example. They are descriptions only: [`super::ApiError`] writes
/// these bodies, so nothing builds these types.
mod errors {
    #![allow(dead_code)]

    use palaver_protocol::HttpError;
    use utoipa::ToResponse;

    /// 400 `invalid_payload`: the input was refused; the message names the
    /// field or parameter and what was expected.
    #[derive(ToResponse)]
    #[response(
        description = "`invalid_payload`: the message names the field and what was expected",
        example = json!({"error": {"code": "invalid_payload", "message": "`limit` must be a whole number"}})
    )]
    pub struct InvalidPayload(HttpError);

    /// 401 `unauthorized`.
    #[derive(ToResponse)]
    #[response(
        description = "`unauthorized`: no token, or one that is malformed, wrongly signed or expired \
            (on login: a wrong username or password)",
        headers(("WWW-Authenticate" = String, description = "`Bearer`")),
        example = json!({"error": {"code": "unauthorized", "message": "unauthorized: token expired"}})
    )]
    pub struct Unauthorized(HttpError);

    /// 403 `forbidden`.
    #[derive(ToResponse)]
    #[response(
        description = "`forbidden`: the caller may not do this (not a member, not an owner or admin)",
        example = json!({"error": {"code": "forbidden", "message": "you are not a member of group 3"}})
    )]
    pub struct Forbidden(HttpError);

    /// 404 `not_found`.
    #[derive(ToResponse)]
    #[response(
        description = "`not_found`: no such user, group or member (an id that is not positive names none)",
        example = json!({"error": {"code": "not_found", "message": "group 3 does not exist"}})
    )]
    pub struct NotFound(HttpError);

    /// 409 `conflict`.
    #[derive(ToResponse)]
    #[response(
        description = "`conflict`: the change clashes with what is there",
        example = json!({"error": {"code": "conflict", "message": "username is taken"}})
    )]
    pub struct Conflict(HttpError);

    /// 413 `too_large`.
    #[derive(ToResponse)]
    #[response(
        description = "`too_large`: the body is over the limit (`--max-body-bytes`), or a group \
            would have more than 1,000 members",
        example = json!({"error": {"code": "too_large", "message": "request body is too large"}})
    )]
    pub struct TooLarge(HttpError);

    /// 429 `rate_limited`.
    #[derive(ToResponse)]
    #[response(
        description = "`rate_limited`: too many of these; the message ends with `retry in N ms`",
        headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1")),
        example = json!({"error": {"code": "rate_limited", "message": "at most 120 group changes a minute; retry in 1200 ms"}})
    )]
    pub struct RateLimited(HttpError);

    /// 503 `unavailable`.
    #[derive(ToResponse)]
    #[response(
        description = "`unavailable`: the database does not answer; nothing was stored, retrying is safe",
        example = json!({"error": {"code": "unavailable", "message": "storage unavailable, nothing was stored; retry"}})
    )]
    pub struct Unavailable(HttpError);
}

/// The document, generated once from the routes' annotations.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> =
        LazyLock::new(|| super::api().into_openapi());
    &DOCUMENT
}

/// `GET /api/openapi.json`: this document (no token needed).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "server",
    responses((status = 200, description = "This document, OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_json()
            .expect("the OpenAPI document serialises")
    });
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}
