//! The HTTP API (see PROTOCOL.md, "HTTP API"): every route is listed in
//! [`api`], and described from the same list at `GET /api/openapi.json`
//! (`openapi.rs`). Handlers parse input into typed values, call the `chat`
//! domain and translate its answer; errors become `{"error": {code,
//! message}}` with the matching status.

mod auth;
mod error;
mod extract;
mod groups;
mod health;
mod messages;
mod metrics;
mod openapi;
pub mod origin;
mod users;

use axum::extract::{DefaultBodyLimit, State};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::chat::ChatError;
pub use error::ApiError;
pub use metrics::metrics_router;

/// Every route of the API, each with its description: a handler's
/// `#[utoipa::path]` gives both its method and path here and its
/// operation in `/api/openapi.json`, so the two cannot disagree.
fn api() -> OpenApiRouter<App> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::logout_all))
        .routes(routes!(users::me))
        .routes(routes!(auth::change_password))
        .routes(routes!(users::search))
        .routes(routes!(users::get))
        .routes(routes!(users::blocks))
        .routes(routes!(users::block, users::unblock))
        .routes(routes!(groups::create, groups::list))
        .routes(routes!(groups::get, groups::rename, groups::delete))
        .routes(routes!(groups::hand_over))
        .routes(routes!(groups::set_role))
        .routes(routes!(groups::add_member))
        .routes(routes!(groups::remove_member))
        .routes(routes!(messages::conversations))
        .routes(routes!(messages::history))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::openapi_json))
}

/// All routes: the API, and the web client (`/`, `/app.js`, `/app.css`),
/// which the document leaves out.
pub fn router(app: App) -> Router {
    let (api, _) = api().split_for_parts();
    api.merge(crate::web::routes(app.config.web_dir.clone()))
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
        // Outermost, so that it times and counts every answer, the
        // refusals above included. (A `Router::layer` wraps each route,
        // so the route's template is known to it.)
        .layer(axum::middleware::from_fn_with_state(
            app.metrics.clone(),
            crate::metrics::track_http,
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
