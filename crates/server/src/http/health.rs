//! `GET /healthz` (the process answers and reaches its database) and
//! `GET /readyz` (send traffic here: a load balancer's check).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::app::App;

/// How long the database may take to answer a health or readiness check.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

async fn database_answers(app: &App) -> bool {
    matches!(
        tokio::time::timeout(PING_TIMEOUT, app.chat.store().ping()).await,
        Ok(Ok(()))
    )
}

/// 200 when the database answers within 2 s, else 503; in a cluster,
/// `redis` says whether Redis answers (without changing the status).
pub async fn healthz(State(app): State<App>) -> (StatusCode, Json<serde_json::Value>) {
    let store = app.chat.store();
    let ok = database_answers(&app).await;
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

/// 200 when the database answers, Redis answers (when configured) and
/// the server is not shutting down; else 503, with what is wrong. During
/// a graceful shutdown it turns 503 first, `--shutdown-delay-secs` before
/// the server stops taking connections, so that a load balancer drains
/// the node.
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<serde_json::Value>) {
    let database = database_answers(&app).await;
    let redis = app.chat.cluster().map(|c| c.is_up());
    let shutting_down = app.is_shutting_down();
    let ready = database && redis != Some(false) && !shutting_down;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let up = |ok: bool| if ok { "ok" } else { "unavailable" };
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": up(database),
        "shutting_down": shutting_down,
    });
    if let Some(redis) = redis {
        body["redis"] = up(redis).into();
    }
    (status, Json(body))
}
