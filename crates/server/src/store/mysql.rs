//! MySQL and MariaDB: a shared database for several nodes.

use sqlx::mysql::MySqlDatabaseError;

use super::sql::{Dialect, SqlStore};
use super::{ConnectError, PoolOptions, StoreError};

/// Connects and applies migrations.
pub(crate) async fn connect(url: &str, pool: &PoolOptions) -> Result<SqlStore, ConnectError> {
    let pool = super::open_pool(url, pool).await?;
    sqlx::migrate!("./migrations/mysql")
        .run(&pool)
        .await
        .map_err(ConnectError::Migrate)?;
    Ok(SqlStore::new(pool, Dialect::MySql))
}

/// Deadlocks and lock wait timeouts are retried; a server going away is
/// `Unavailable`.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
            match my.number() {
                // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
                1213 | 1205 => return StoreError::Retryable(e),
                // too many connections, shutdown in progress, connection killed,
                // server gone away, lost connection, read-only (failover)
                1040 | 1053 | 1927 | 2006 | 2013 | 1290 | 1836 => {
                    return StoreError::Unavailable(e)
                }
                _ => {}
            }
        }
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_string());
        }
    }
    super::classify(e)
}
