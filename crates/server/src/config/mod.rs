//! Configuration: every flag is also an environment variable, and may be
//! set in a TOML file (`--config`, see [`file`]).

pub mod file;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// `palaver serve` settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// A TOML file of settings, keys named as these flags without the
    /// dashes (docs/palaver.example.toml): flags and environment
    /// variables take precedence over it, and it over the defaults.
    #[arg(long, env = "PALAVER_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Address to listen on for HTTP and Socket.IO.
    /// HOST:PORT, a host name with a port (localhost:3000) or a port
    /// alone (3000: every address).
    #[arg(long, env = "PALAVER_LISTEN", default_value = "0.0.0.0:3000",
          value_parser = crate::preflight::parse_listen)]
    pub listen: SocketAddr,

    /// Connections the kernel queues for the server before it accepts them
    /// (capped by `net.core.somaxconn`). The standard library's 128 drops
    /// handshakes when many clients reconnect at once (after a restart),
    /// and each dropped one waits a second for the client to try again.
    #[arg(long, env = "PALAVER_LISTEN_BACKLOG", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub listen_backlog: u32,

    /// Address to serve Prometheus metrics on (`GET /metrics`), on a
    /// listener of its own: HOST:PORT, as `--listen`. Unset: no metrics
    /// are served. Never the public port: the same address as `--listen`
    /// is refused.
    #[arg(long, env = "PALAVER_METRICS_LISTEN",
          value_parser = crate::preflight::parse_listen)]
    pub metrics_listen: Option<SocketAddr>,

    /// Database URL; the scheme picks the backend: sqlite://FILE (created
    /// if missing), mysql://… or postgres://…
    #[arg(
        long,
        env = "PALAVER_DATABASE_URL",
        hide_env_values = true,
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

    /// Most database connections in the pool. On MySQL/MariaDB and
    /// PostgreSQL the message writer holds one more of its own.
    #[arg(long, env = "PALAVER_DB_MAX_CONNECTIONS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// How long a request waits for a database connection before it is
    /// answered `unavailable`, in milliseconds.
    #[arg(long, env = "PALAVER_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 1500,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub db_acquire_timeout_ms: u64,

    /// Redis URL (`redis://host:6379`) to run as one of several nodes on a
    /// shared MySQL/MariaDB or PostgreSQL database: Socket.IO deliveries,
    /// group membership changes, the message rate, failed logins,
    /// connections per user and presence go through it. Unset: a single
    /// node.
    #[arg(long, env = "PALAVER_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis channel and key Palaver uses, so several
    /// clusters can share one Redis; nodes of one cluster must agree.
    #[arg(long, env = "PALAVER_REDIS_PREFIX", default_value = "palaver")]
    pub redis_prefix: String,

    /// Largest WebSocket message or long-polling request body the
    /// Socket.IO endpoint accepts, in bytes; a larger one closes that
    /// connection. Keep it above the largest message content
    /// (`--max-message-chars`) encoded as JSON.
    #[arg(long, env = "PALAVER_MAX_FRAME_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..=64 * 1024 * 1024))]
    pub max_frame_bytes: u32,

    /// Largest HTTP request body, in bytes (413 `too_large` beyond).
    #[arg(long, env = "PALAVER_MAX_BODY_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..=64 * 1024 * 1024))]
    pub max_body_bytes: u32,

    /// Messages each user may send per second, sustained, over all of
    /// their sockets (and all nodes when Redis is on; `rate_limited`
    /// beyond); 0 switches the limit off.
    #[arg(long, env = "PALAVER_MESSAGE_RATE", default_value_t = 20)]
    pub message_rate: u32,

    /// Messages a user may send at once before `--message-rate` applies.
    #[arg(long, env = "PALAVER_MESSAGE_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub message_burst: u32,

    /// Milliseconds from the start of one message batch to the start of the
    /// next while sends keep coming (0: none). Each commit costs the
    /// database a fixed amount of work whatever its size, and without a
    /// pause the next batch starts as soon as a commit ends (over a thousand
    /// a second on MariaDB); the pause lets more messages share each commit.
    /// A send that arrives when the last batch started longer ago than this
    /// (any send on a quiet server) is not delayed.
    #[arg(long, env = "PALAVER_BATCH_INTERVAL_MS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub batch_interval_ms: u32,

    /// Seconds after sending within which a user may delete their own
    /// message (v1.2); 0: any time. A group's owner and admins delete any
    /// message of the group at any time.
    #[arg(long, env = "PALAVER_DELETE_WINDOW_SECS", default_value_t = 172_800)]
    pub delete_window_secs: u32,

    /// Socket.IO connections one user may hold at once, over all nodes
    /// when Redis is on (more are refused with `rate_limited`).
    #[arg(long, env = "PALAVER_MAX_CONNECTIONS_PER_USER", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_user: u32,

    /// Failed logins for one username from one address before that pair
    /// must wait: 1 s, doubling with each further failure, up to 15 min
    /// (429 `rate_limited` with `Retry-After`); a success clears it; 0
    /// switches it off. Failed logins are counted over all nodes when
    /// Redis is on.
    #[arg(long, env = "PALAVER_LOGIN_FAILURES_PER_PAIR", default_value_t = 5)]
    pub login_failures_per_pair: u32,

    /// Failed logins for one username from all addresses (forgotten 15 min
    /// after the last) before addresses that have failed on it must wait,
    /// as above; an address that has not failed may still log in; 0
    /// switches it off.
    #[arg(
        long,
        visible_alias = "login-attempts-per-user",
        env = "PALAVER_LOGIN_FAILURES_PER_USER",
        default_value_t = 50
    )]
    pub login_failures_per_user: u32,

    /// Failed logins per minute from one address, whatever the usernames
    /// (429 `rate_limited` beyond); 0 switches the limit off. The address
    /// is the connection's peer: behind a load balancer, the balancer's
    /// (docs/deploy.md).
    #[arg(
        long,
        visible_alias = "login-attempts-per-ip",
        env = "PALAVER_LOGIN_FAILURES_PER_IP",
        default_value_t = 60
    )]
    pub login_failures_per_ip: u32,

    /// Seconds a client may take to send an HTTP request head, also while
    /// an idle keep-alive connection waits for its next request; the
    /// connection is closed after it. Behind a proxy that keeps upstream
    /// connections alive, keep its idle timeout below this.
    #[arg(long, env = "PALAVER_HEADER_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub header_timeout_secs: u32,

    /// Registrations per minute from one IP address, on each node (429
    /// `rate_limited` beyond); 0 switches the limit off.
    #[arg(long, env = "PALAVER_REGISTRATIONS_PER_IP", default_value_t = 30)]
    pub registrations_per_ip: u32,

    /// Group changes per minute by one user (creating a group, adding or
    /// removing a member), on each node (429 `rate_limited` beyond); 0
    /// switches the limit off.
    #[arg(long, env = "PALAVER_GROUP_CHANGES_PER_MINUTE", default_value_t = 120)]
    pub group_changes_per_minute: u32,

    /// Origins browsers may connect and call the API from, comma-separated
    /// (`https://chat.example.com,https://app.example.com`), or `*` for any.
    /// Empty (the default): same-origin pages only. Requests without an
    /// `Origin` header (native and server-side clients) are always allowed;
    /// they authenticate with a token, never a cookie.
    #[arg(long, env = "PALAVER_ALLOWED_ORIGINS", default_value = "",
          value_parser = AllowedOrigins::parse)]
    pub allowed_origins: AllowedOrigins,

    /// Log format on stdout: `text` (one line per event, for people) or
    /// `json` (one JSON object per line: timestamp, level, target, fields,
    /// and the request or socket span with its id and user).
    #[arg(long, env = "PALAVER_LOG_FORMAT", default_value = "text", value_enum)]
    pub log_format: LogFormat,

    /// Seconds between a shutdown signal and the server closing its
    /// listener and sockets: `/readyz` answers 503 meanwhile, while
    /// everything else is still served, so that a load balancer that
    /// polls it moves traffic away first. Set it above the balancer's
    /// check interval times its failure threshold.
    #[arg(long, env = "PALAVER_SHUTDOWN_DELAY_SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=300))]
    pub shutdown_delay_secs: u32,

    /// Serve the web client's files (`index.html`, `app.js`, `app.css`)
    /// from this directory, read at each request, instead of the copy
    /// built into the binary: for working on the client (`web/dist` after
    /// `npm run build`, with `web/src`'s page and style beside it).
    #[arg(long, env = "PALAVER_WEB_DIR")]
    pub web_dir: Option<std::path::PathBuf>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--allowed-origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Only pages served from the server's own address.
    SameOrigin,
    /// Any origin.
    Any,
    /// These origins (`scheme://host[:port]`, lower-case) and the server's own.
    List(Vec<String>),
}

impl AllowedOrigins {
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(AllowedOrigins::SameOrigin);
        }
        if s == "*" {
            return Ok(AllowedOrigins::Any);
        }
        let mut list = Vec::new();
        for origin in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let url = url::Url::parse(origin).map_err(|e| format!("{origin:?}: {e}"))?;
            let serialized = url.origin().ascii_serialization();
            if serialized == "null" || url.path() != "/" || url.query().is_some() {
                return Err(format!(
                    "{origin:?} is not an origin (expected scheme://host[:port])"
                ));
            }
            list.push(serialized);
        }
        Ok(AllowedOrigins::List(list))
    }
}

/// Where a setting's value came from, for `palaver config check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    File,
    Default,
}

impl Config {
    /// The long names of every setting (`database-url`, …).
    pub fn setting_names() -> Vec<String> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        <Wrapper as clap::CommandFactory>::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    }

    /// Every setting as `(flag name, value, source)`, secrets masked (the
    /// JWT secret entirely, passwords inside URLs), from the matches of a
    /// command that flattens `Config`; `from_file` are the keys the
    /// config file set.
    pub fn describe(
        matches: &clap::ArgMatches,
        from_file: &[String],
    ) -> Vec<(String, String, Source)> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let command = <Wrapper as clap::CommandFactory>::command();
        let mut settings = Vec::new();
        for arg in command.get_arguments() {
            let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
                continue;
            };
            let value = matches
                .get_raw(id)
                .map(|vs| {
                    vs.map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let source = match matches.value_source(id) {
                Some(clap::parser::ValueSource::CommandLine) => Source::Flag,
                Some(clap::parser::ValueSource::EnvVariable) => Source::Environment,
                _ if from_file.iter().any(|k| k == long) => Source::File,
                _ => Source::Default,
            };
            let value = match long {
                "jwt-secret" if !value.is_empty() => "***".to_string(),
                "database-url" | "redis-url" => crate::preflight::redact(&value),
                _ => value,
            };
            settings.push((long.to_string(), value, source));
        }
        settings
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's configuration tables, as `(flag, variable, default)`.
    fn readme_rows() -> Vec<(String, String, String)> {
        let readme = include_str!("../../../../README.md");
        readme
            .lines()
            .filter(|l| l.starts_with("| `--"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let bare = |c: &str| c.trim_matches('`').to_string();
                (bare(cells[1]), bare(cells[2]), cells[3].to_string())
            })
            .collect()
    }

    /// Every flag of `palaver serve` is in the README's tables with its
    /// variable and default, and the README names no flag that is gone.
    #[test]
    fn the_readmes_configuration_tables_match_serve_help() {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let command = <Wrapper as clap::CommandFactory>::command();
        let rows = readme_rows();
        let mut problems = Vec::new();
        let mut flags = Vec::new();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let flag = format!("--{long}");
            flags.push(flag.clone());
            let Some((_, var, default)) = rows.iter().find(|(f, _, _)| *f == flag) else {
                problems.push(format!("{flag} is not in the README"));
                continue;
            };
            let env = arg
                .get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            if *var != env {
                problems.push(format!("{flag}: README says {var}, --help says {env}"));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect();
            match defaults.first().map(String::as_str) {
                // A default the README writes in words (`generated`, `unset`).
                None => {
                    if default.starts_with('`') {
                        problems.push(format!(
                            "{flag}: README gives default {default}, --help none"
                        ));
                    }
                }
                Some("") => {}
                Some(d) => {
                    if *default != format!("`{d}`") {
                        problems.push(format!("{flag}: README says {default}, --help says {d}"));
                    }
                }
            }
        }
        for (flag, _, _) in &rows {
            if !flags.contains(flag) {
                problems.push(format!(
                    "the README names {flag}, which `palaver serve` lacks"
                ));
            }
        }
        assert!(
            problems.is_empty(),
            "README vs --help:\n{}",
            problems.join("\n")
        );
        assert!(
            rows.len() >= 20,
            "the tables were read: {} rows",
            rows.len()
        );
    }
}
