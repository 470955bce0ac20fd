//! `palaver serve|migrate|config check|admin`: read the config file,
//! parse flags, set up logging, run the command in the library.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use palaver::admin::AdminArgs;
use palaver::config::{file, LogFormat};
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
    /// Apply the database migrations and exit.
    Migrate(Config),
    /// The configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Operator commands on the configured database (users, groups, tokens).
    Admin(AdminArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting and where it came from (secrets masked), and
    /// check that the database and Redis answer; changes nothing.
    Check(Config),
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The config file's settings become the flags' defaults: flags and
    // variables still win (config/file.rs).
    let mut command = Cli::command();
    let mut from_file = Vec::new();
    if let Some(path) = file::path_from(&args) {
        let applied = file::read(&path).and_then(|settings| {
            from_file = settings.iter().map(|(k, _)| k.clone()).collect();
            file::apply(command, &path, &settings)
        });
        command = match applied {
            Ok(command) => command,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    }
    let matches = command.get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Many connections need many descriptors: raise the soft limit to the hard one.
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(config) => {
            init_logging(config.log_format, false);
            if let Err(e) = raised {
                tracing::warn!(error = %e, "cannot raise the open-file limit");
            }
            runtime.block_on(serve(config))
        }
        Command::Migrate(config) => {
            init_logging(config.log_format, true);
            runtime
                .block_on(palaver::admin::migrate(&config))
                .map_err(Into::into)
        }
        Command::Config(ConfigCommand::Check(config)) => {
            init_logging(config.log_format, true);
            let Some(("config", m)) = matches.subcommand() else {
                unreachable!("parsed as config")
            };
            let Some(("check", m)) = m.subcommand() else {
                unreachable!("parsed as config check")
            };
            let settings = Config::describe(m, &from_file);
            runtime
                .block_on(palaver::admin::check_config(&config, settings))
                .map_err(Into::into)
        }
        Command::Admin(args) => {
            init_logging(args.config.log_format, true);
            runtime
                .block_on(palaver::admin::run(args))
                .map_err(Into::into)
        }
    };
    match result {
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
fn init_logging(format: LogFormat, command: bool) {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::prelude::*;

    const WIRE: [&str; 3] = ["tungstenite", "tokio_tungstenite", "hyper"];
    // A one-off command prints its answer on stdout: its logs go to
    // stderr, warnings and errors only unless RUST_LOG says otherwise.
    let default = if command { "warn" } else { "info" };
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let no_wire_detail = filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO
            || !WIRE
                .iter()
                .any(|c| meta.target() == *c || meta.target().starts_with(&format!("{c}::")))
    });
    let registry = tracing_subscriber::registry()
        .with(env)
        .with(no_wire_detail);
    match format {
        LogFormat::Text => {
            // Colour only for a person at a terminal, never in a file or a pipe.
            use std::io::IsTerminal;
            let fmt = tracing_subscriber::fmt::layer();
            if command {
                registry
                    .with(
                        fmt.with_writer(std::io::stderr)
                            .with_ansi(std::io::stderr().is_terminal()),
                    )
                    .init();
            } else {
                registry
                    .with(fmt.with_ansi(std::io::stdout().is_terminal()))
                    .init();
            }
        }
        LogFormat::Json => {
            // One object per line: timestamp, level, target, fields, the
            // innermost span (`request` or `socket`) and the list of spans.
            let fmt = tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true);
            if command {
                registry.with(fmt.with_writer(std::io::stderr)).init();
            } else {
                registry.with(fmt).init();
            }
        }
    }
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
