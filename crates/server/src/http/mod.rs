//! The HTTP API (see PROTOCOL.md, "HTTP API"): every route is listed in
//! [`router`]. Handlers parse input into typed values, call the `chat`
//! domain and translate its answer; errors become `{"error": {code,
//! message}}` with the matching status.

mod auth;
mod error;
mod extract;
mod groups;
mod health;
mod messages;
pub mod origin;
mod users;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::app::App;
use crate::chat::ChatError;
pub use error::ApiError;

/// All routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/api/auth/register", post(auth::register))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/logout-all", post(auth::logout_all))
        .route("/api/me", get(users::me))
        .route("/api/me/password", post(auth::change_password))
        .route("/api/users", get(users::search))
        .route("/api/users/{id}", get(users::get))
        .route("/api/blocks", get(users::blocks))
        .route(
            "/api/blocks/{id}",
            post(users::block).delete(users::unblock),
        )
        .route("/api/groups", post(groups::create).get(groups::list))
        .route(
            "/api/groups/{id}",
            get(groups::get)
                .patch(groups::rename)
                .delete(groups::delete),
        )
        .route("/api/groups/{id}/owner", post(groups::hand_over))
        .route(
            "/api/groups/{id}/members/{user_id}/role",
            put(groups::set_role),
        )
        .route("/api/groups/{id}/members", post(groups::add_member))
        .route(
            "/api/groups/{id}/members/{user_id}",
            delete(groups::remove_member),
        )
        .route("/api/conversations", get(messages::conversations))
        .route("/api/messages", get(messages::history))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(crate::web::routes(app.config.web_dir.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes as usize))
        // A span per request (`request`: a per-process id, method, path
        // without the query string, and the user once authenticated), so
        // that the lines one request logs can be followed. The request
        // and its answer are logged at debug: status and latency, no
        // headers, so no token. Failures at debug too: a database outage
        // is logged once by the health watch, not once per 503.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ),
        )
        .layer(axum::middleware::from_fn_with_state(
            app.config.max_body_bytes,
            refuse_declared_oversize,
        ))
        .with_state(app)
}

/// The span of one HTTP request; `user` is recorded by the extractor
/// that authenticates it.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info_span!(
        "request",
        id,
        method = %req.method(),
        path = %req.uri().path(),
        user = tracing::field::Empty,
    )
}

/// A body whose `Content-Length` is already over the limit is refused
/// (413 `too_large`) before any of it is read; bodies without one are cut
/// off at the limit while they are read (`DefaultBodyLimit`).
async fn refuse_declared_oversize(
    State(max): State<u32>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > u64::from(max) => {
            ApiError::from(ChatError::TooLarge("request body is too large".into())).into_response()
        }
        _ => next.run(req).await,
    }
}

async fn not_found() -> ApiError {
    ChatError::NotFound("no such route".into()).into()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
