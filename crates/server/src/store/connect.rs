//! Opening the store: the backend named by the URL scheme, and the message
//! writer's own connection.
//!
//! The only place that knows both the backends (which open a pool and
//! apply their migrations) and the SQL store (which runs on any of them
//! with the [`Dialect`] it is handed), so neither imports the other.

use std::time::Duration;

use super::error::ConnectError;
use super::pool::PoolOptions;
use super::sql::{Dialect, SqlStore};
use super::{mysql, postgres, sqlite, Store, MAX_BATCH};

/// Opens the store named by `url`'s scheme and applies its migrations.
pub async fn connect(url: &str, pool: &PoolOptions) -> Result<Box<dyn Store>, ConnectError> {
    Ok(Box::new(connect_sql(url, pool).await?))
}

async fn connect_sql(url: &str, pool: &PoolOptions) -> Result<SqlStore, ConnectError> {
    sqlx::any::install_default_drivers();
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(SqlStore::new(
            sqlite::connect(url, pool).await?,
            Dialect::Sqlite,
            true,
        )),
        "mysql" | "mariadb" => {
            let (pool, returning) = mysql::connect(url, pool).await?;
            Ok(SqlStore::new(pool, Dialect::MySql, returning))
        }
        "postgres" | "postgresql" => Ok(SqlStore::new(
            postgres::connect(url, pool).await?,
            Dialect::Postgres,
            true,
        )),
        _ => Err(ConnectError::Unsupported(format!(
            "unknown database URL scheme {scheme:?}; expected sqlite://, mysql:// or postgres://"
        ))),
    }
}

/// Prepared statements the writer's connection keeps: one insert per batch
/// size up to the largest batch, on MySQL (no `RETURNING`) one read-back
/// per size as well, and room for the few others it runs.
pub const WRITER_STATEMENT_CACHE: usize = 3 * MAX_BATCH;

/// Opens the message writer's own connection (see `chat::writer`). For a
/// networked database this is a second pool of one connection, opened on
/// the writer's thread, so that the writer's round trips are driven by the
/// writer's own runtime and do not wait behind the sockets' tasks, and
/// kept by the writer between batches (`SqlStore::for_writer` in `sql/mod.rs`).
/// `None` for SQLite: its connections already run on threads of their own,
/// and the writer shares the main pool.
pub async fn connect_writer(
    url: &str,
    acquire_timeout: Duration,
) -> Result<Option<Box<dyn Store>>, ConnectError> {
    if url.starts_with("sqlite:") {
        return Ok(None);
    }
    let pool = PoolOptions {
        max_connections: 1,
        acquire_timeout,
    };
    // A statement cache set in the URL is left as it is.
    let url = if url.contains("statement-cache-capacity=") {
        url.to_string()
    } else {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}statement-cache-capacity={WRITER_STATEMENT_CACHE}")
    };
    let store = connect_sql(&url, &pool).await?.for_writer();
    Ok(Some(Box::new(store)))
}

/// What `palaver config check` and `palaver migrate` say of a database.
#[derive(Debug, Clone)]
pub struct Probe {
    pub backend: &'static str,
    /// False for an SQLite file not created yet (the server creates it).
    pub exists: bool,
    /// Migrations applied, and those this build carries.
    pub applied: usize,
    pub known: usize,
}

/// Connects to the database `url` names and counts the migrations applied,
/// changing nothing: a missing SQLite file is not created.
pub async fn probe(url: &str, timeout: Duration) -> Result<Probe, ConnectError> {
    sqlx::any::install_default_drivers();
    let scheme = url.split(':').next().unwrap_or_default();
    let (backend, migrator) = match scheme {
        "sqlite" => ("sqlite", &sqlite::MIGRATOR),
        "mysql" | "mariadb" => ("mysql", &mysql::MIGRATOR),
        "postgres" | "postgresql" => ("postgres", &postgres::MIGRATOR),
        _ => {
            return Err(ConnectError::Unsupported(format!(
            "unknown database URL scheme {scheme:?}; expected sqlite://, mysql:// or postgres://"
        )))
        }
    };
    let known = migrator.iter().count();
    let url = if backend == "sqlite" {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:")
            .split('?')
            .next()
            .unwrap_or_default();
        if !std::path::Path::new(path).exists() {
            return Ok(Probe {
                backend,
                exists: false,
                applied: 0,
                known,
            });
        }
        format!("sqlite://{path}?mode=ro")
    } else {
        url.to_string()
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect(&url)
        .await
        .map_err(|e| ConnectError::connect(&url, e))?;
    sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .map_err(|e| ConnectError::connect(&url, e))?;
    let counted = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .and_then(|row| sqlx::Row::try_get::<i64, _>(&row, 0));
    let applied = match counted {
        Ok(n) => n,
        // No table yet: nothing applied. Any other failure is reported.
        Err(sqlx::Error::Database(e)) if e.message().contains("_sqlx_migrations") => 0,
        Err(e) => return Err(ConnectError::connect(&url, e)),
    };
    pool.close().await;
    Ok(Probe {
        backend,
        exists: true,
        applied: usize::try_from(applied).unwrap_or(0),
        known,
    })
}
