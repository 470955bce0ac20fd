//! The metrics listener's one route, `GET /metrics`: the exposition in
//! Prometheus's text format of [`crate::metrics`]. Nothing else is served
//! there, and `/metrics` is never served on the public listener.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::app::App;

/// The metrics listener's routes.
pub fn metrics_router(app: App) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .with_state(app)
}

/// Reads what is sampled rather than counted (the database pool) into
/// the registry.
fn refresh(app: &App) {
    let pool = app.chat.store().pool_state();
    app.metrics
        .set_pool(pool.size.saturating_sub(pool.idle), pool.idle, pool.max);
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    refresh(&app);
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics.encode(),
    )
}
