//! PostgreSQL: a shared database for several nodes.

use super::sql::{Dialect, SqlStore};
use super::{ConnectError, PoolOptions, StoreError};

/// Connects and applies migrations.
pub(crate) async fn connect(url: &str, pool: &PoolOptions) -> Result<SqlStore, ConnectError> {
    let pool = super::open_pool(url, pool).await?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .map_err(ConnectError::Migrate)?;
    Ok(SqlStore::new(pool, Dialect::Postgres, true))
}

/// By SQLSTATE: serialization failures and deadlocks are retried;
/// connection exceptions, shutdowns and "too many connections" are
/// `Unavailable`.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().unwrap_or_default();
        if code == "40001" || code == "40P01" {
            return StoreError::Retryable(e);
        }
        if code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006" {
            return StoreError::Unavailable(e);
        }
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_string());
        }
    }
    super::classify(e)
}
