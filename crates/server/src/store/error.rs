//! The store's errors, and the one place where driver errors are classified.
//!
//! Every query returns `sqlx::Error`; the layers above must only ever see
//! [`StoreError`], which says what to do about a failure (report it, retry
//! the transaction, answer `unavailable`). The conversion is
//! `From<sqlx::Error>`, so queries end in `?`. What a database error means
//! depends on its driver (SQLite result codes, MySQL error numbers,
//! PostgreSQL SQLSTATEs), so the classifier reads the driver's own error
//! type behind sqlx's `Any` driver instead of asking which backend the
//! store runs on.

use sqlx::error::DatabaseError;
use sqlx::mysql::MySqlDatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// Storage failures, classified once for the layers above.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was hit; the text says which.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is timing out: nothing was stored.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Deadlock, serialization failure or lost race: retrying the whole
    /// transaction is expected to succeed.
    #[error("transient database conflict: {0}")]
    Retryable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

/// Why the database could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("cannot start the message writer: {0}")]
    Writer(#[source] std::io::Error),
}

impl ConnectError {
    /// A connection failure, with the URL (password hidden) and the cause.
    pub fn connect(url: &str, source: sqlx::Error) -> Self {
        let url = crate::preflight::redact(url.split('?').next().unwrap_or(url));
        ConnectError::Connect { url, source }
    }
}

impl From<sqlx::Error> for StoreError {
    /// Database errors by their driver's code first (retry, unavailable),
    /// then unique violations (conflict), then the driver-independent
    /// kinds: no row, and the pool or connection failing.
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            match by_code(db.as_ref()) {
                Some(Transient::Retry) => return StoreError::Retryable(e),
                Some(Transient::Unavailable) => return StoreError::Unavailable(e),
                None => {}
            }
            if db.is_unique_violation() {
                return StoreError::Conflict(db.message().to_string());
            }
        }
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            _ => StoreError::Other(e),
        }
    }
}

/// A database error that a retry or a wait may cure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transient {
    /// Retry the whole transaction.
    Retry,
    /// The server is going away, full or read-only.
    Unavailable,
}

/// Reads the code of whichever driver raised `db`.
fn by_code(db: &dyn DatabaseError) -> Option<Transient> {
    if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
        return mysql_number(my.number());
    }
    let code = db.code().unwrap_or_default();
    if db.try_downcast_ref::<SqliteError>().is_some() {
        return sqlite_code(code.parse().unwrap_or(0));
    }
    if db.try_downcast_ref::<PgDatabaseError>().is_some() {
        return postgres_sqlstate(&code);
    }
    None
}

/// SQLite's result codes: BUSY (5) and LOCKED (6), with their extended
/// forms, mean "try again".
fn sqlite_code(code: i32) -> Option<Transient> {
    matches!(code & 0xff, 5 | 6).then_some(Transient::Retry)
}

/// MySQL/MariaDB error numbers: deadlocks and lock wait timeouts are
/// retried; a server going away is unavailable.
fn mysql_number(number: u16) -> Option<Transient> {
    match number {
        // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
        1213 | 1205 => Some(Transient::Retry),
        // too many connections, shutdown in progress, connection killed,
        // server gone away, lost connection, read-only (failover)
        1040 | 1053 | 1927 | 2006 | 2013 | 1290 | 1836 => Some(Transient::Unavailable),
        _ => None,
    }
}

/// PostgreSQL SQLSTATEs: serialization failures and deadlocks are retried;
/// connection exceptions, shutdowns, "too many connections" and a
/// read-only transaction (failover) are unavailable.
fn postgres_sqlstate(code: &str) -> Option<Transient> {
    if code == "40001" || code == "40P01" {
        return Some(Transient::Retry);
    }
    if code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006" {
        return Some(Transient::Unavailable);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_busy_and_locked_are_retried_in_every_extended_form() {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED_SHAREDCACHE
        for code in [5, 6, 517, 262] {
            assert_eq!(sqlite_code(code), Some(Transient::Retry), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE is a conflict, decided elsewhere.
        assert_eq!(sqlite_code(2067), None);
    }

    #[test]
    fn mysql_deadlocks_are_retried_and_lost_servers_unavailable() {
        assert_eq!(mysql_number(1213), Some(Transient::Retry));
        assert_eq!(mysql_number(1205), Some(Transient::Retry));
        for n in [1040, 1053, 1927, 2006, 2013, 1290, 1836] {
            assert_eq!(mysql_number(n), Some(Transient::Unavailable), "{n}");
        }
        // ER_DUP_ENTRY is a conflict, decided elsewhere.
        assert_eq!(mysql_number(1062), None);
    }

    #[test]
    fn postgres_serialization_failures_are_retried_and_shutdowns_unavailable() {
        assert_eq!(postgres_sqlstate("40001"), Some(Transient::Retry));
        assert_eq!(postgres_sqlstate("40P01"), Some(Transient::Retry));
        for code in ["08006", "57P01", "53300", "25006"] {
            assert_eq!(
                postgres_sqlstate(code),
                Some(Transient::Unavailable),
                "{code}"
            );
        }
        // unique_violation is a conflict, decided elsewhere.
        assert_eq!(postgres_sqlstate("23505"), None);
    }

    #[test]
    fn pool_and_io_failures_are_unavailable_and_a_missing_row_not_found() {
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::NotFound
        ));
    }
}
