//! Test databases on every backend: [`Backend`] names one, [`TestDb`] is a
//! fresh database on it for one test (a temporary SQLite file, or a
//! database created on the MySQL/PostgreSQL server and dropped afterwards).
//! Shared by the in-process tests (`spawn_app()`) and the process tests.

use super::harness::{self, Missing};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
    Postgres,
}

impl Backend {
    /// The variable naming the server to create test databases on.
    fn env_var(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::MySql => Some("PALAVER_TEST_MYSQL_URL"),
            Backend::Postgres => Some("PALAVER_TEST_POSTGRES_URL"),
        }
    }

    /// Whether tests can run on this backend here: SQLite always; MySQL and
    /// PostgreSQL when their server answers (see [`harness::service`]).
    pub fn needed(self) -> Result<(), Missing> {
        self.admin_url().map(|_| ())
    }

    /// The URL of the database server to create test databases on (`""`
    /// for SQLite).
    fn admin_url(self) -> Result<&'static str, Missing> {
        match self.env_var() {
            None => Ok(""),
            Some(var) => harness::service(var),
        }
    }
}

/// A fresh database for one test, dropped afterwards.
pub struct TestDb {
    pub url: String,
    backend: Backend,
    admin_url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
    _turn: Option<tokio::sync::SemaphorePermit<'static>>,
}

/// How many tests at once may have a database on one database server. A
/// test's server opens up to ten sessions (its pool, its writer, the admin
/// connection); with a test per core on a large machine the suite would
/// otherwise go past MariaDB's default 151 connections or PostgreSQL's 100.
const DATABASES_AT_ONCE: usize = 6;
static MYSQL_TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(DATABASES_AT_ONCE);
static POSTGRES_TURNS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(DATABASES_AT_ONCE);

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        if backend == Backend::Sqlite {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("palaver.db").display());
            return TestDb {
                url,
                backend,
                admin_url: String::new(),
                name: String::new(),
                _dir: Some(dir),
                _turn: None,
            };
        }
        let turns = match backend {
            Backend::MySql => &MYSQL_TURNS,
            _ => &POSTGRES_TURNS,
        };
        let turn = turns.acquire().await.expect("never closed");
        let admin_url = backend
            .admin_url()
            .expect("tests on an unavailable backend are skipped")
            .to_string();
        let name = format!("palaver_test_{}", &palaver::auth::random_secret()[..16]);
        let mut url = url::Url::parse(&admin_url).expect("test database URL");
        url.set_path(&format!("/{name}"));
        admin_exec(backend, &admin_url, &format!("CREATE DATABASE {name}")).await;
        TestDb {
            url: url.to_string(),
            backend,
            admin_url,
            name,
            _dir: None,
            _turn: Some(turn),
        }
    }

    /// How many sessions the database server has open on this database;
    /// `None` for SQLite, whose connections are file handles.
    pub async fn sessions(&self) -> Option<i64> {
        use sqlx::Connection;
        let n = match self.backend {
            Backend::Sqlite => return None,
            Backend::MySql => {
                let mut c = sqlx::MySqlConnection::connect(&self.admin_url)
                    .await
                    .expect("connect to MySQL");
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE db = ?",
                )
                .bind(&self.name)
                .fetch_one(&mut c)
                .await
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&self.name)
                    .fetch_one(&mut c)
                    .await
            }
        };
        Some(n.expect("count sessions"))
    }

    /// Ends every session the database server has open on this database
    /// (as a restart or an operator would); how many it ended. SQLite: none
    /// (its connections are file handles).
    pub async fn end_sessions(&self) -> usize {
        use sqlx::{Connection, Executor};
        let (list, kill) = match self.backend {
            Backend::Sqlite => return 0,
            Backend::MySql => (
                "SELECT CAST(id AS SIGNED) FROM information_schema.processlist WHERE db = ?",
                "KILL",
            ),
            Backend::Postgres => (
                "SELECT CAST(pid AS BIGINT) FROM pg_stat_activity WHERE datname = $1",
                "SELECT pg_terminate_backend",
            ),
        };
        let mut c = sqlx::AnyConnection::connect(&self.admin_url)
            .await
            .expect("connect to the database server");
        let ids: Vec<i64> = sqlx::query_scalar(list)
            .bind(&self.name)
            .fetch_all(&mut c)
            .await
            .expect("list sessions");
        for id in &ids {
            // A session may have ended on its own meanwhile.
            let _ = c.execute(format!("{kill}({id})").as_str()).await;
        }
        ids.len()
    }

    /// Ends the database's sessions and drops it, as an operator's mistake
    /// or a failed-over server would: a store on it can then neither use
    /// its connections nor open new ones. SQLite: nothing (an open file
    /// outlives its name).
    pub async fn vanish(&self) {
        if self.backend == Backend::Sqlite {
            return;
        }
        self.end_sessions().await;
        let drop = match self.backend {
            Backend::Postgres => format!("DROP DATABASE {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE {}", self.name),
        };
        admin_exec(self.backend, &self.admin_url, &drop).await;
    }
}

async fn admin_exec(backend: Backend, admin_url: &str, sql: &str) {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => {}
        Backend::MySql => {
            let mut c = sqlx::MySqlConnection::connect(admin_url)
                .await
                .expect("connect to MySQL");
            sqlx::raw_sql(sql).execute(&mut c).await.expect(sql);
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(admin_url)
                .await
                .expect("connect to PostgreSQL");
            sqlx::raw_sql(sql).execute(&mut c).await.expect(sql);
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let (backend, admin_url) = (self.backend, self.admin_url.clone());
        let sql = match backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin_exec(backend, &admin_url, &sql))
        })
        .join();
    }
}
