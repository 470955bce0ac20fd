//! `GET /healthz`: whether this node can serve, for load balancers and
//! orchestrators (no token).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;

/// Whether a dependency answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Unavailable,
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
    let store = app.chat.store();
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), store.ping()).await,
        Ok(Ok(()))
    );
    let up = |ok: bool| {
        if ok {
            HealthStatus::Ok
        } else {
            HealthStatus::Unavailable
        }
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: up(ok),
        database: store.backend(),
        redis: app.chat.cluster().map(|cluster| up(cluster.is_up())),
    };
    (status, Json(body))
}
