//! The HTTP API (see PROTOCOL.md, "HTTP API"): every route is listed in
//! [`router`]. Handlers parse input into typed values, call the `chat`
//! domain and translate its answer; errors become `{"error": {code,
//! message}}` with the matching status.

mod auth;
mod error;
mod extract;
mod groups;
mod messages;
pub mod origin;
mod users;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

use crate::app::App;
use crate::chat::ChatError;
pub use error::ApiError;

/// All routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/api/auth/register", post(auth::register))
        .route("/api/auth/login", post(auth::login))
        .route("/api/me", get(users::me))
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
        .route("/healthz", get(healthz))
        .merge(crate::web::routes(app.config.web_dir.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes as usize))
        // Each request at debug: method and path only (no query string, no
        // headers, so no token), status and latency. Failures at debug too:
        // a database outage is logged once by the health watch, not once
        // per 503.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                    tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
                })
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

/// 200 when the database answers within 2 s, else 503; in a cluster,
/// `redis` says whether Redis answers (without changing the status).
async fn healthz(State(app): State<App>) -> (StatusCode, Json<serde_json::Value>) {
    let store = app.chat.store();
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), store.ping()).await,
        Ok(Ok(()))
    );
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "database": store.backend(),
    });
    // Redis trouble is reported, not failed on: the node still serves its
    // own clients and stores every message.
    if let Some(cluster) = app.chat.cluster() {
        body["redis"] = if cluster.is_up() { "ok" } else { "unavailable" }.into();
    }
    (status, Json(body))
}

async fn not_found() -> ApiError {
    ChatError::NotFound("no such route".into()).into()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
