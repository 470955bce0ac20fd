//! SQLite: the embedded default.
//!
//! Durability: WAL journal with `synchronous = FULL`, so every commit is
//! fsynced to the WAL before it returns and therefore survives an OS crash
//! or power loss, not only a process crash (`NORMAL` would only promise the
//! latter in WAL mode). `busy_timeout` lets a writer wait for another
//! process's write lock instead of failing at once.

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;

use super::error::ConnectError;
use super::pool::PoolOptions;

/// Opens (creating if missing) the database and applies migrations.
pub(super) async fn connect(url: &str, pool: &PoolOptions) -> Result<AnyPool, ConnectError> {
    // sqlx creates a missing file only when asked to in the URL.
    let url = if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let pool = AnyPoolOptions::new()
        .max_connections(pool.max_connections)
        .acquire_timeout(pool.acquire_timeout)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| ConnectError::connect(&url, e))?;
    MIGRATOR.run(&pool).await.map_err(ConnectError::Migrate)?;
    Ok(pool)
}

/// The migrations this build carries.
pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
