//! Configuration: every flag is also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// `palaver serve` settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on for HTTP and Socket.IO.
    #[arg(long, env = "PALAVER_LISTEN", default_value = "0.0.0.0:3000")]
    pub listen: SocketAddr,

    /// Database URL; the scheme picks the backend: sqlite://FILE (created
    /// if missing), mysql://… or postgres://…
    #[arg(
        long,
        env = "PALAVER_DATABASE_URL",
        default_value = "sqlite://palaver.db"
    )]
    pub database_url: String,

    /// Secret for signing tokens (HS256). When unset, a random secret is
    /// generated once and kept in the database, so tokens survive restarts
    /// and every node sharing the database agrees.
    #[arg(long, env = "PALAVER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Longest message content, in characters.
    #[arg(long, env = "PALAVER_MAX_MESSAGE_CHARS", default_value_t = 4000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_message_chars: u32,

    /// Lifetime of issued tokens, in seconds.
    #[arg(long, env = "PALAVER_TOKEN_TTL_SECS", default_value_t = 7 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(60..))]
    pub token_ttl_secs: u64,

    /// Most database connections in the pool.
    #[arg(long, env = "PALAVER_DB_MAX_CONNECTIONS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// How long a request waits for a database connection before it is
    /// answered `unavailable`, in milliseconds.
    #[arg(long, env = "PALAVER_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 1500,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub db_acquire_timeout_ms: u64,
}

impl Config {
    /// The defaults (and whatever `PALAVER_*` variables are set), as
    /// `palaver serve` with no flags would see them.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        <Wrapper as clap::Parser>::try_parse_from(["palaver"]).map(|w| w.config)
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }
}
