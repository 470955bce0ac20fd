//! Hardening checks on a real `palaver serve` process: oversize WebSocket
//! frames and long-polling bodies close only their own connection and do
//! not grow the server's memory; tokens, passwords and message contents
//! never reach its logs, even at `RUST_LOG=trace`.

mod support;

use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::db::{Backend, TestDb};
use support::harness;
use support::process::Node;
use tokio_tungstenite::tungstenite::Message as Ws;

const WAIT: Duration = Duration::from_secs(10);

/// Sends one text frame of `size` bytes on a fresh Engine.IO WebSocket and
/// reports how the server answered: "closed" when it ended the connection.
async fn oversize_ws_frame(node: &Node, size: usize) -> &'static str {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", node.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // The Engine.IO open packet.
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "{open:?}");
    let mut frame = String::with_capacity(size);
    frame.push_str(r#"42["message",{"conversationType":"private","receiverId":1,"content":""#);
    frame.extend(std::iter::repeat_n('x', size - frame.len() - 3));
    frame.push_str(r#""}]"#);
    if ws.send(Ws::text(frame)).await.is_err() {
        return "closed";
    }
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return "no answer",
            Ok(None | Some(Err(_)) | Some(Ok(Ws::Close(_)))) => return "closed",
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Posts a body of `size` bytes to a fresh long-polling session; the HTTP
/// status, or 0 when the server cut the request off.
async fn oversize_polling_body(node: &Node, size: usize) -> u16 {
    let session = node.polling_session().await;
    let body = format!("4{}", "y".repeat(size - 1));
    match node.http.post(session).body(body).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn oversize_frames_close_their_connection_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let mut node = Node::start_with(&db, "secret", &[], "warn", None).await;
    let (_alice, alice_token) = node.register("alice").await;
    let (bob, _) = node.register("bob").await;
    let alice = node.connect(&alice_token).await;
    let before = node.status_kib("VmHWM:");

    let mut outcomes = Vec::new();
    for (label, size) in [("2 MiB", 2usize << 20), ("64 MiB", 64 << 20)] {
        let ws = oversize_ws_frame(&node, size).await;
        let polling = oversize_polling_body(&node, size).await;
        assert_eq!(ws, "closed", "{label} WebSocket frame");
        assert!(
            polling == 413 || polling == 400 || polling == 0,
            "{label} polling body answered {polling}"
        );
        outcomes.push(format!("{label}: websocket {ws}, polling {polling}"));
        // The server is up and other connections are untouched.
        assert!(node.is_running(), "server died on a {label} frame");
        let ack = alice
            .emit_ack(
                "message",
                &json!({"conversationType": "private", "receiverId": bob, "content": "still here"}),
            )
            .await
            .unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let after = node.status_kib("VmHWM:");
    let _ = writeln!(
        std::io::stderr(),
        "oversize: {}; server peak RSS {} KiB before, {} KiB after",
        outcomes.join("; "),
        before,
        after
    );
    // Had the server buffered the 64 MiB frame, its peak would have grown by it.
    assert!(
        after < before + 16 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
}

/// In both log formats (`--log-format text|json`).
async fn tokens_passwords_and_contents_never_reach_the_logs(format: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let log = dir.path().join("server.log");
    let args = ["--log-format", format];
    let node = Node::start_with(&db, "secret", &args, "trace", Some(&log)).await;
    let password = "hunter2-but-longer";
    let wrong_password = "not-hunter2-9e3a";
    let (s, body) = node
        .post(
            "/api/auth/register",
            None,
            json!({"username": "alice", "password": password}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let alice = body["user"]["id"].as_i64().unwrap();
    let (s, body) = node
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": password}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let (_, other_token) = node.register("bob").await;
    let client = node.connect(&token).await;
    let content = "the-secret-plan-5f1c";
    let ack = client
        .emit_ack(
            "message",
            &json!({"conversationType": "private", "receiverId": alice, "content": content}),
        )
        .await
        .unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    // Refusals too: a bad send, a bad token.
    let bad = client
        .emit_ack(
            "message",
            &json!({"conversationType": "nope", "content": content}),
        )
        .await
        .unwrap();
    assert_eq!(bad["ok"], false);
    // A failed login with a password that must not be logged either.
    let (s, _) = node
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": wrong_password}),
        )
        .await;
    assert_eq!(s, 401);
    let tampered = format!("{other_token}x");
    let refused =
        palaver_client::Client::connect(node.addr, Some(json!({"token": tampered}))).await;
    assert!(refused.is_err());
    let (s, _) = node.get("/api/me", &tampered).await;
    assert_eq!(s, 401);
    let (s, _) = node.get("/api/me", &token).await;
    assert_eq!(s, 200);
    // Changing the password (v1.3): neither password is logged, nor the
    // new token; then logging the new token out.
    let new_password = "correct-staple-77b1";
    let (s, body) = node
        .post(
            "/api/me/password",
            Some(&token),
            json!({"currentPassword": password, "newPassword": new_password}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let new_token = body["token"].as_str().unwrap().to_string();
    let (s, _) = node
        .post("/api/auth/logout", Some(&new_token), json!({}))
        .await;
    assert_eq!(s, 204);
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(node);

    let logs = std::fs::read_to_string(&log).unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "logs: {} lines at RUST_LOG=trace checked for tokens, passwords, contents",
        logs.lines().count()
    );
    assert!(logs.lines().count() > 10, "trace logging produced output");
    // A token's signature is its secret part; its header is the same for all.
    for (what, secret) in [
        ("token", token.rsplit('.').next().unwrap()),
        ("other token", other_token.rsplit('.').next().unwrap()),
        ("password", password),
        ("wrong password", wrong_password),
        ("new password", new_password),
        ("new token", new_token.rsplit('.').next().unwrap()),
        ("message content", content),
    ] {
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            lines.is_empty(),
            "the {what} was logged:\n{}",
            lines.join("\n")
        );
    }
    if format == "json" {
        json_lines_carry_their_spans(&logs, alice);
    }
}

/// Every line is one JSON object with a timestamp, level, target and
/// fields; what a request or a socket logs carries its span: the request's
/// id and user, the socket's session id and user.
fn json_lines_carry_their_spans(logs: &str, alice: i64) {
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(line.get(key).is_some(), "no {key}: {line}");
        }
    }
    let in_span = |name: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter_map(|l| l.get("span"))
            .filter(|s| s["name"] == name)
            .collect()
    };
    let requests = in_span("request");
    assert!(
        requests
            .iter()
            .any(|s| s["user"] == alice && s["id"].is_u64() && s["path"] == "/api/me"),
        "no line of alice's request in its span: {requests:?}"
    );
    let sockets = in_span("socket");
    assert!(
        sockets
            .iter()
            .any(|s| s["user"] == alice && s["sid"].as_str().is_some_and(|s| !s.is_empty())),
        "no line of alice's socket in its span: {sockets:?}"
    );
}

/// At the default level an operator sees one line per refused handshake
/// (peer and reason), failed login (username and address) and rate-limit
/// refusal (kind and key), plus start and stop; no colour codes in a file;
/// no token or password.
async fn refusals_are_logged_at_the_default_level_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let log = dir.path().join("server.log");
    let flags = ["--message-rate", "1", "--message-burst", "1"];
    let mut node = Node::start_with(&db, "secret", &flags, "info", Some(&log)).await;
    let (alice, token) = node.register("alice").await;
    let wrong = "wrong-pass-77f2";
    let (s, _) = node
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": wrong}),
        )
        .await;
    assert_eq!(s, 401);
    let tampered = format!("{token}x");
    let refused =
        palaver_client::Client::connect(node.addr, Some(json!({"token": tampered}))).await;
    assert!(refused.is_err());
    let client = node.connect(&token).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let ack = client
            .emit_ack(
                "message",
                &json!({"conversationType": "private", "receiverId": alice, "content": format!("m{i}")}),
            )
            .await
            .unwrap();
        codes.push(ack["error"]["code"].as_str().unwrap_or("ok").to_string());
    }
    assert!(codes.contains(&"rate_limited".to_string()), "{codes:?}");
    drop(client);
    node.terminate().await;

    let logs = std::fs::read_to_string(&log).unwrap();
    let has = |needles: &[&str]| logs.lines().any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(has(&["INFO", "palaver listening"]), "start:\n{logs}");
    assert!(
        has(&["login failed", "\"alice\"", "peer=127.0.0.1"]),
        "failed login:\n{logs}"
    );
    assert!(
        has(&[
            "handshake refused",
            "peer=127.0.0.1",
            "unauthorized: invalid token"
        ]),
        "refused handshake:\n{logs}"
    );
    assert!(
        has(&["rate limited", "kind=\"message\"", &format!("key={alice}")]),
        "rate-limit refusal:\n{logs}"
    );
    assert!(has(&["palaver stopped"]), "stop:\n{logs}");
    assert!(
        !logs.contains('\x1b'),
        "colour codes in a log file:\n{logs}"
    );
    for secret in [wrong, token.rsplit('.').next().unwrap()] {
        assert!(!logs.contains(secret), "a secret was logged:\n{logs}");
    }
}

/// `RUST_LOG` naming one module logs that module's events, on every
/// backend. With MariaDB and PostgreSQL the writer's statements run on
/// the writer's own thread, and after each one sqlx asks the `log` crate
/// whether to log it. While the filters were attached to the output layer
/// rather than to the whole subscriber, that question left the layer's
/// per-event filter state stale, and the writer's next event was dropped
/// (tokio-rs/tracing#2519): this filter logged nothing at all there.
async fn a_filter_naming_one_module_logs_its_events_on_every_backend(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let filter = "palaver::chat::writer=trace";
    let node = Node::start_with(&db.url, "secret", &[], filter, Some(&log)).await;
    let (_, token) = node.register("alice").await;
    let (bob, _) = node.register("bob").await;
    let client = node.connect(&token).await;
    const SENDS: usize = 5;
    for i in 0..SENDS {
        // One at a time: each send is a batch of its own.
        let ack = client
            .emit_ack(
                "message",
                &json!({"conversationType": "private", "receiverId": bob, "content": format!("m{i}")}),
            )
            .await
            .unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
    }
    drop(client);
    drop(node);
    let logs = std::fs::read_to_string(&log).unwrap();
    let batches = logs
        .lines()
        .filter(|l| l.contains("palaver::chat::writer") && l.contains("batch committed"))
        .count();
    assert_eq!(
        batches, SENDS,
        "{backend:?}: one \"batch committed\" line per send at RUST_LOG={filter}; the log:\n{logs}"
    );
}

async fn sigterm_closes_sockets_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let mut node = Node::start_with(&db, "secret", &[], "warn", None).await;
    let (_, token) = node.register("alice").await;
    let mut client = node.connect(&token).await;
    let started = std::time::Instant::now();
    let exit = node.terminate().await;
    assert!(exit.success(), "exit status {exit}");
    let mut closed = false;
    while let Some((name, _)) = client.next_event_timeout(Duration::from_secs(2)).await {
        closed |= name == "disconnect";
    }
    assert!(closed, "the socket was closed");
    let _ = writeln!(
        std::io::stderr(),
        "sigterm: exited 0 after {:?}, socket closed",
        started.elapsed()
    );
}

fn main() {
    let mut trials = vec![
        harness::test(
            "oversize_frames_close_their_connection_and_memory_stays_bounded",
            harness::on_tokio(oversize_frames_close_their_connection_and_memory_stays_bounded),
        ),
        harness::test(
            "tokens_passwords_and_contents_never_reach_the_logs",
            harness::on_tokio(|| tokens_passwords_and_contents_never_reach_the_logs("text")),
        ),
        harness::test(
            "tokens_passwords_and_contents_never_reach_json_logs",
            harness::on_tokio(|| tokens_passwords_and_contents_never_reach_the_logs("json")),
        ),
        harness::test(
            "refusals_are_logged_at_the_default_level_without_secrets",
            harness::on_tokio(refusals_are_logged_at_the_default_level_without_secrets),
        ),
        harness::test(
            "sigterm_closes_sockets_and_exits_zero",
            harness::on_tokio(sigterm_closes_sockets_and_exits_zero),
        ),
    ];
    // One test per backend, each skipped where its backend is not.
    for (backend, label) in [
        (Backend::Sqlite, "sqlite"),
        (Backend::MySql, "mysql"),
        (Backend::Postgres, "postgres"),
    ] {
        trials.push(harness::test_if(
            backend.needed(),
            format!("a_filter_naming_one_module_logs_its_events_on_every_backend::on_{label}"),
            harness::on_tokio(move || {
                a_filter_naming_one_module_logs_its_events_on_every_backend(backend)
            }),
        ));
    }
    harness::run(trials)
}
