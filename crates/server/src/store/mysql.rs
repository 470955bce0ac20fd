//! MySQL and MariaDB: a shared database for several nodes.

use sqlx::Row;

use super::error::ConnectError;
use super::pool::{open_pool, PoolOptions};

/// Connects and applies migrations; returns the pool and whether the
/// server understands `INSERT … RETURNING`.
pub(super) async fn connect(
    url: &str,
    pool: &PoolOptions,
) -> Result<(sqlx::AnyPool, bool), ConnectError> {
    let pool = open(url, pool).await?;
    let returning = server_has_returning(&pool).await?;
    Ok((pool, returning))
}

/// A pool with the migrations applied.
pub(super) async fn open(url: &str, pool: &PoolOptions) -> Result<sqlx::AnyPool, ConnectError> {
    let pool = open_pool(url, pool).await?;
    MIGRATOR.run(&pool).await.map_err(ConnectError::Migrate)?;
    Ok(pool)
}

async fn server_has_returning(pool: &sqlx::AnyPool) -> Result<bool, ConnectError> {
    let row = sqlx::query("SELECT VERSION()")
        .fetch_one(pool)
        .await
        .map_err(|e| ConnectError::connect("mysql", e))?;
    // `Any` may hand a MySQL string over as bytes; an unreadable version
    // only means the read-backs are used.
    let version: String = row.try_get(0).unwrap_or_else(|_| {
        row.try_get::<Vec<u8>, _>(0)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    });
    let returning = has_returning(&version);
    tracing::info!(%version, returning, "connected to MySQL/MariaDB");
    Ok(returning)
}

/// Whether the server understands `INSERT … RETURNING`: MariaDB does from
/// 10.5 (its `VERSION()` reads like `10.11.19-MariaDB-0+deb12u1`), MySQL
/// does not. With it, a message batch needs two statements fewer.
fn has_returning(version: &str) -> bool {
    // Older MariaDB servers put a MySQL-compatible prefix in front.
    let version = version.strip_prefix("5.5.5-").unwrap_or(version);
    if !version.contains("MariaDB") {
        return false;
    }
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (10, 5)
}

/// The migrations this build carries.
pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

#[cfg(test)]
mod tests {
    #[test]
    fn returning_is_used_on_mariadb_from_10_5_only() {
        assert!(super::has_returning("10.11.19-MariaDB-0+deb12u1"));
        assert!(super::has_returning("11.4.2-MariaDB"));
        assert!(super::has_returning("10.5.0-MariaDB-log"));
        assert!(super::has_returning("5.5.5-10.6.4-MariaDB"));
        assert!(!super::has_returning("10.4.32-MariaDB"));
        assert!(!super::has_returning("8.0.36"));
        assert!(!super::has_returning("8.4.0-0ubuntu0.24.04.1"));
    }
}
