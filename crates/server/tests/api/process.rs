//! The `palaver` binary itself: flags, start-up errors, exit codes.

use crate::support::process::palaver;
use crate::tests;

fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no error printed");
    stderr
}

fn help_documents_every_flag() {
    let out = palaver().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "PALAVER_LISTEN",
        "--listen-backlog",
        "--database-url",
        "PALAVER_DATABASE_URL",
        "--jwt-secret",
        "PALAVER_JWT_SECRET",
        "--max-message-chars",
        "--db-max-connections",
        "--db-acquire-timeout-ms",
        "--redis-url",
        "PALAVER_REDIS_URL",
        "--redis-prefix",
        "--max-frame-bytes",
        "--max-body-bytes",
        "--message-rate",
        "--message-burst",
        "--max-connections-per-user",
        "--login-failures-per-user",
        "--login-failures-per-pair",
        "--login-failures-per-ip",
        "--allowed-origins",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

fn a_bad_flag_exits_non_zero_naming_it() {
    let out = palaver()
        .args(["serve", "--max-message-chars", "zero"])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("--max-message-chars"), "{err}");
}

fn a_port_in_use_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = palaver()
        .args(["serve", "--listen", &addr, "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("x.db").display()))
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("cannot listen on"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn an_unusable_database_is_a_one_line_error() {
    let out = palaver()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "sqlite:///nonexistent-dir/x/y.db",
        ])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("database"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn an_unreachable_database_server_is_a_one_line_error_naming_the_cause() {
    for url in [
        "mysql://root@127.0.0.1:1/palaver",
        "postgres://postgres@127.0.0.1:1/palaver",
    ] {
        let out = palaver()
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
            .output()
            .unwrap();
        let err = one_line_error(&out);
        assert!(err.contains("cannot connect to the database"), "{err}");
        assert!(err.contains("refused"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

fn an_unknown_database_scheme_is_refused() {
    let out = palaver()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "oracle://x",
        ])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("names no database Palaver knows"), "{err}");
}

fn an_unreachable_redis_is_a_one_line_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let out = palaver()
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("x.db").display()))
        .args(["--redis-url", &format!("redis://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("cannot reach Redis at"), "{err}");
}

fn a_malformed_origin_list_is_refused() {
    let out = palaver()
        .args([
            "serve",
            "--allowed-origins",
            "https://ok.example,not an origin",
        ])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("--allowed-origins"), "{err}");
}

/// Opens `n` connections to `addr` at once, none of them accepted, and
/// counts those the kernel completed within `wait`.
async fn completed_connects(
    addr: std::net::SocketAddr,
    n: usize,
    wait: std::time::Duration,
) -> usize {
    let attempts: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(tokio::time::timeout(
                wait,
                tokio::net::TcpStream::connect(addr),
            ))
        })
        .collect();
    let mut done = Vec::new();
    for a in attempts {
        if let Ok(Ok(Ok(stream))) = a.await {
            done.push(stream);
        }
    }
    done.len()
}

async fn the_listener_queues_a_burst_of_connections_beyond_the_default_backlog() {
    let wait = std::time::Duration::from_secs(3);
    // The kernel completes a handshake only while the accept queue has
    // room, so with nothing accepting, the queue's size is what completes.
    let small = palaver::listen("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let completed = completed_connects(small.local_addr().unwrap(), 300, wait).await;
    assert!(
        completed < 300,
        "a 16-connection queue completed all {completed}"
    );
    let listener = palaver::listen("127.0.0.1:0".parse().unwrap(), 512).unwrap();
    let completed = completed_connects(listener.local_addr().unwrap(), 300, wait).await;
    assert_eq!(
        completed, 300,
        "a 512-connection queue completed {completed} of 300"
    );
}

fn the_default_backlog_is_larger_than_the_standard_librarys() {
    let config = palaver::Config::from_env().unwrap();
    assert!(config.listen_backlog >= 1024, "{}", config.listen_backlog);
}

tests!(
    fn help_documents_every_flag,
    fn a_bad_flag_exits_non_zero_naming_it,
    fn a_port_in_use_is_a_one_line_error,
    fn an_unusable_database_is_a_one_line_error,
    fn an_unreachable_database_server_is_a_one_line_error_naming_the_cause,
    fn an_unknown_database_scheme_is_refused,
    fn an_unreachable_redis_is_a_one_line_error,
    fn a_malformed_origin_list_is_refused,
    async the_listener_queues_a_burst_of_connections_beyond_the_default_backlog,
    fn the_default_backlog_is_larger_than_the_standard_librarys,
);
