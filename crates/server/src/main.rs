//! `palaver serve`: parse flags, set up logging, bind, run.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palaver::Config;
use tracing_subscriber::EnvFilter;

/// Palaver: a real-time chat server (Socket.IO + HTTP).
#[derive(Parser)]
#[command(name = "palaver", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Config),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // Many connections need many descriptors: raise the soft limit to the hard one.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Command::Serve(config) = cli.command;
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stdout, filtered by `RUST_LOG` (default `info`). The WebSocket
/// and HTTP libraries log whole frames and headers (message contents,
/// tokens) at debug and trace, so they are held at info whatever
/// `RUST_LOG` asks: tokens and contents are never written to logs.
/// (Palaver's own Socket.IO layer logs session ids and reasons only.)
///
/// Both filters apply to the whole subscriber, not to the output layer
/// alone (`Layer::with_filter`). A per-layer filter keeps its verdict for
/// the next event in thread-local state, and sqlx asks the `log` crate
/// whether to log each statement without logging one: the writer's next
/// event on that thread was then dropped whatever `RUST_LOG` said
/// (tokio-rs/tracing#2519; test: `hardening.rs`).
fn init_logging() {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::prelude::*;

    const WIRE: [&str; 3] = ["tungstenite", "tokio_tungstenite", "hyper"];
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let no_wire_detail = filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO
            || !WIRE
                .iter()
                .any(|c| meta.target() == *c || meta.target().starts_with(&format!("{c}::")))
    });
    // Colour only for a person at a terminal, never in a file or a pipe.
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal());
    tracing_subscriber::registry()
        .with(env)
        .with(no_wire_detail)
        .with(fmt)
        .init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    palaver::preflight::check_metrics_listen(config.listen, config.metrics_listen)?;
    let listener = palaver::listen(config.listen, config.listen_backlog).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "; another process uses this port: stop it or choose another with --listen"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "; this machine has no such address: use 0.0.0.0 or one of its own"
            }
            std::io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need privileges: choose another with --listen"
            }
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {} (--listen): {e}{hint}", config.listen)
    })?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            palaver::listen(addr, 128)
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--metrics-listen): {e}"))?,
        ),
        None => None,
    };
    palaver::run(config, listener, metrics, shutdown_signal()).await?;
    tracing::info!("palaver stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
