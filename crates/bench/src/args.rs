//! The command line: which server, which scenario, what rates.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Palaver: token handshake, acks.
    Palaver,
    /// The original Node server: `auth: {userId}`, no acks.
    Reference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Users in pairs, each sending to its partner.
    Private,
    /// Users in groups of `--group-size`, each sending to its group.
    Group,
    /// Connections only: memory per idle connection.
    Idle,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "palaver-bench",
    about = "Load generator for Palaver and the reference Node server"
)]
pub struct Args {
    #[arg(long, value_enum, default_value = "palaver")]
    pub target: Target,
    /// Server addresses (comma-separated); connections are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:3000")]
    pub servers: Vec<SocketAddr>,
    #[arg(long, value_enum, default_value = "private")]
    pub scenario: Scenario,
    /// Connected users (one connection each).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    #[arg(long, default_value_t = 16)]
    pub group_size: usize,
    /// Messages per second, open loop. Without it (and without --search)
    /// the run is a single phase at 1,000/s.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds per phase.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Find the highest rate held at p99 ≤ --p99-limit-ms with nothing lost:
    /// up by 1.5× while phases hold (a phase failed by latency alone is run
    /// once more, and the repeat decides), then three bisections.
    #[arg(long)]
    pub search: bool,
    #[arg(long, default_value_t = 1000.0)]
    pub search_start: f64,
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// Palaver's JWT secret, to mint tokens for users 1..=N.
    #[arg(long, env = "PALAVER_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// The reference server's MySQL database, to write group memberships.
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306/chat_system")]
    pub reference_mysql_url: String,
    /// Server process ids whose RSS is reported (summed).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Source addresses 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 8)]
    pub source_ips: u8,
    /// User ids start after this.
    #[arg(long, default_value_t = 0)]
    pub user_offset: i64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A label for the report.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Seconds to hold idle connections before measuring memory.
    #[arg(long, default_value_t = 3.0)]
    pub idle_settle: f64,
    /// Seconds to wait after the last connection (and after setting up
    /// groups) before the first phase, so that the server's per-connection
    /// work (for Palaver: presence, last-seen writes) is not measured as
    /// message latency.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Give every send to Palaver a unique `clientMsgId`, as a client that
    /// retries does (the server then also looks up each batch's ids).
    #[arg(long)]
    pub client_msg_ids: bool,
    /// Before the measured phases, every user sends one message at this
    /// rate (0: no warm-up). A conversation's first message costs the
    /// server more than the rest (Palaver creates the conversation's row);
    /// without a warm-up, a fixed-rate phase with 10,000 users measures
    /// 5,000 of those first messages in its first second.
    #[arg(long, default_value_t = 0.0)]
    pub warm_up_rate: f64,
}
