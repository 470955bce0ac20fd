//! Pool settings, and opening a pool on a networked database.
//!
//! Apart from `connect.rs` so that the backend files can use it without
//! importing the module that picks among them.

use std::time::Duration;

use super::error::ConnectError;

/// Pool settings common to every backend.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// What a pool holds now (sqlx tells no more: not how many tasks wait
/// for a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open, in use or idle.
    pub size: u32,
    pub idle: u32,
    /// The most it opens.
    pub max: u32,
}

impl PoolState {
    pub(super) fn of(pool: &sqlx::AnyPool) -> Self {
        PoolState {
            size: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }
    }
}

/// Opens a pool for a networked database. One plain connection is made
/// first so that an unreachable server is reported with its real cause
/// ("connection refused", "unknown database"), not as a pool timeout.
pub(super) async fn open_pool(
    url: &str,
    pool: &PoolOptions,
) -> Result<sqlx::AnyPool, ConnectError> {
    use sqlx::Connection;
    let probe = tokio::time::timeout(
        pool.acquire_timeout.max(Duration::from_secs(5)),
        sqlx::AnyConnection::connect(url),
    )
    .await
    .map_err(|_| ConnectError::connect(url, sqlx::Error::PoolTimedOut))?
    .map_err(|e| ConnectError::connect(url, e))?;
    let _ = probe.close().await;
    sqlx::any::AnyPoolOptions::new()
        .max_connections(pool.max_connections)
        .acquire_timeout(pool.acquire_timeout)
        .connect(url)
        .await
        .map_err(|e| ConnectError::connect(url, e))
}
