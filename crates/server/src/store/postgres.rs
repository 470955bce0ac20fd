//! PostgreSQL: a shared database for several nodes.

use super::error::ConnectError;
use super::pool::{open_pool, PoolOptions};

/// Connects and applies migrations.
pub(super) async fn connect(url: &str, pool: &PoolOptions) -> Result<sqlx::AnyPool, ConnectError> {
    let pool = open_pool(url, pool).await?;
    MIGRATOR.run(&pool).await.map_err(ConnectError::Migrate)?;
    Ok(pool)
}

/// The migrations this build carries.
pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
