//! `GET /healthz` (liveness: the process answers and reaches its
//! database) and `GET /readyz` (readiness: send traffic here), for load
//! balancers and orchestrators (no token).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;

/// How long the database may take to answer a health or readiness check.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a dependency answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Unavailable,
}

impl HealthStatus {
    fn of(ok: bool) -> Self {
        if ok {
            HealthStatus::Ok
        } else {
            HealthStatus::Unavailable
        }
    }
}

/// The body of `GET /healthz`, with either status.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Whether the database answered within 2 s; the status code says
    /// the same (200 or 503).
    pub status: HealthStatus,
    /// The database backend.
    #[schema(value_type = String, examples("sqlite", "mysql", "postgres"))]
    pub database: &'static str,
    /// In a cluster only: whether Redis answers. Redis trouble is
    /// reported, not failed on: the node still serves its own clients and
    /// stores every message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub redis: Option<HealthStatus>,
}

/// Whether the node is ready for traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    #[serde(rename = "not ready")]
    NotReady,
}

/// The body of `GET /readyz`, with either status.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` exactly when the status code is 200.
    pub status: ReadyStatus,
    /// Whether the database answered within 2 s.
    pub database: HealthStatus,
    /// In a cluster only: whether Redis answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub redis: Option<HealthStatus>,
    /// Whether a graceful shutdown has begun.
    pub shutting_down: bool,
}

async fn database_answers(app: &App) -> bool {
    matches!(
        tokio::time::timeout(PING_TIMEOUT, app.chat.store().ping()).await,
        Ok(Ok(()))
    )
}

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// 200 when the database answers within 2 s, else 503; in a cluster,
/// `redis` says whether Redis answers (without changing the status).
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "server",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database does not answer within 2 s", body = Health),
    )
)]
pub async fn healthz(State(app): State<App>) -> (StatusCode, Json<Health>) {
    let ok = database_answers(&app).await;
    let body = Health {
        status: HealthStatus::of(ok),
        database: app.chat.store().backend(),
        redis: app.chat.cluster().map(|c| HealthStatus::of(c.is_up())),
    };
    (code(ok), Json(body))
}

/// 200 when the database answered its last ping (every 2 s), Redis
/// answers (when configured) and
/// the server is not shutting down; else 503, with what is wrong. During
/// a graceful shutdown it turns 503 first, `--shutdown-delay-secs` before
/// the server stops taking connections, so that a load balancer drains
/// the node.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "server",
    responses(
        (status = 200, description = "Ready: send traffic here", body = Readiness),
        (status = 503, description = "Not ready: the database (pinged every 2 s) or Redis does not answer, or the node is shutting down", body = Readiness),
    )
)]
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<Readiness>) {
    // What the database watch last found (every 2 s): a probe does not
    // compete with requests for the pool, and a pool saturated by load
    // does not take every node out of rotation at once.
    let database = app.database_up();
    let redis = app.chat.cluster().map(|c| c.is_up());
    let shutting_down = app.is_shutting_down();
    let ready = database && redis != Some(false) && !shutting_down;
    let body = Readiness {
        status: if ready {
            ReadyStatus::Ready
        } else {
            ReadyStatus::NotReady
        },
        database: HealthStatus::of(database),
        redis: redis.map(HealthStatus::of),
        shutting_down,
    };
    (code(ready), Json(body))
}
