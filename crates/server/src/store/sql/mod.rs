//! The SQL behind the storage traits, shared by every backend.
//!
//! One [`SqlStore`] runs on SQLite, MySQL/MariaDB and PostgreSQL through
//! sqlx's `Any` driver. The backend files (`store/sqlite.rs`, `mysql.rs`,
//! `postgres.rs`) open the pool and apply their own migrations; this module
//! knows none of them, only the [`Dialect`] it is handed. Its rooms:
//! - `dialect.rs`: where the SQL differs, and the builders of SQL text;
//! - `rows.rs`: rows into wire types;
//! - `batch.rs`: the batch insert and the writer's own connection;
//! - `users.rs`, `credentials.rs`, `groups.rs`, `messages.rs`,
//!   `conversations.rs`: each
//!   resource's queries, as the implementation of its trait;
//! - here: the store itself, its transactions, and the [`Store`] methods
//!   that belong to no resource.

mod batch;
mod conversations;
mod credentials;
mod dialect;
mod groups;
mod messages;
mod rows;
mod users;

use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};

pub(crate) use dialect::Dialect;
use rows::text;

use crate::store::{CacheVersions, Store, StoreError};

/// The keys of the [`CacheVersions`] in `settings`.
const BLOCKS_VERSION: &str = "blocks_version";
const GROUPS_VERSION: &str = "groups_version";

/// The shared SQL store.
pub(crate) struct SqlStore {
    pool: AnyPool,
    d: Dialect,
    /// Whether `INSERT … RETURNING` works (SQLite, PostgreSQL, MariaDB ≥
    /// 10.5; not MySQL): without it, inserted rows are read back with a
    /// second statement.
    returning: bool,
    /// Set on the message writer's own store (see [`SqlStore::for_writer`]).
    writer: bool,
    /// The writer's connection between batches, and when it was last used.
    held: Mutex<Option<(PoolConnection<Any>, Instant)>>,
}

impl SqlStore {
    pub(crate) fn new(pool: AnyPool, d: Dialect, returning: bool) -> Self {
        SqlStore {
            pool,
            d,
            returning,
            writer: false,
            held: Mutex::new(None),
        }
    }

    /// The message writer's own store, on a pool of one connection opened
    /// with a statement cache big enough for every batch size
    /// ([`WRITER_STATEMENT_CACHE`](crate::store::WRITER_STATEMENT_CACHE)). Each
    /// round trip to the database costs a wake-up on both sides, and a batch used to make five: the pool's
    /// ping on acquire and on release, `BEGIN`, the insert, `COMMIT`. So:
    /// - it keeps its connection between batches instead of handing it back
    ///   to the pool, and pings it only after `HELD_IDLE` unused (`batch.rs`);
    /// - a batch's insert is one statement of exactly its size (prepared
    ///   once per size and kept), not cut into shapes;
    /// - and a batch that needs nothing but that insert runs it without a
    ///   transaction (`Batch::Alone`): one round trip.
    pub(crate) fn for_writer(mut self) -> Self {
        self.writer = true;
        self
    }

    /// The writer's kept connection, taken out (tests).
    #[cfg(test)]
    pub(crate) fn take_held(&self) -> Option<PoolConnection<Any>> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        held.map(|(conn, _)| conn)
    }

    /// Writes `value` as the setting `key` through `conn` (in the caller's
    /// transaction, when it has one).
    async fn put_setting<'c>(
        &self,
        conn: impl sqlx::Executor<'c, Database = Any>,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let sql = match self.d {
            Dialect::MySql => {
                "INSERT INTO settings (setting_key, setting_value) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE setting_value = VALUES(setting_value)"
            }
            _ => {
                "INSERT INTO settings (setting_key, setting_value) VALUES (?, ?) \
                 ON CONFLICT (setting_key) DO UPDATE SET setting_value = excluded.setting_value"
            }
        };
        sqlx::query(&self.d.q(sql))
            .bind(key)
            .bind(value)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Writes a new version (see [`CacheVersions`]) of what `key` names,
    /// in the transaction of the change.
    async fn new_version(&self, conn: &mut AnyConnection, key: &str) -> Result<(), StoreError> {
        let value = format!("{:016x}", rand::random::<u64>());
        self.put_setting(conn, key, &value).await
    }

    /// A write transaction. SQLite takes the write lock up front so that a
    /// transaction never has to upgrade a read lock, which SQLite refuses
    /// (`SQLITE_BUSY_SNAPSHOT`) instead of waiting.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.d {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            _ => self.pool.begin().await,
        };
        tx.map_err(StoreError::from)
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.d.name()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_state(&self) -> crate::store::PoolState {
        crate::store::PoolState::of(&self.pool)
    }

    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError> {
        let sql = self
            .d
            .insert_ignore("settings (setting_key, setting_value) VALUES (?, ?)");
        sqlx::query(&self.d.q(&sql))
            .bind(key)
            .bind(candidate)
            .execute(&self.pool)
            .await?;
        let sql = self
            .d
            .q("SELECT setting_value FROM settings WHERE setting_key = ?");
        let row = sqlx::query(&sql).bind(key).fetch_one(&self.pool).await?;
        text(self.d, &row, "setting_value")
    }

    async fn cache_versions(&self) -> Result<CacheVersions, StoreError> {
        self.read_for_writer(async |conn| {
            let sql = self
                .d
                .q("SELECT setting_key, setting_value FROM settings WHERE setting_key IN (?, ?)");
            let rows = sqlx::query(&sql)
                .bind(BLOCKS_VERSION)
                .bind(GROUPS_VERSION)
                .fetch_all(&mut *conn)
                .await?;
            let mut versions = CacheVersions::default();
            for row in &rows {
                let value = Some(text(self.d, row, "setting_value")?);
                match text(self.d, row, "setting_key")?.as_str() {
                    BLOCKS_VERSION => versions.blocks = value,
                    GROUPS_VERSION => versions.groups = value,
                    _ => {}
                }
            }
            Ok(versions)
        })
        .await
    }
}
