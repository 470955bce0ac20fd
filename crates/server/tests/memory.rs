//! Memory bounded by design: bursts of registrations and logins against a
//! real `palaver serve` process leave it holding at most its start-up size
//! plus one Argon2 working buffer (19 MiB) per hashing permit, whatever
//! the allocator would otherwise keep.
//!
//! Each Argon2id hash needs 19 MiB. Allocated and freed per hash, glibc's
//! dynamic mmap threshold soon serves those blocks from its per-thread
//! arenas and never gives them back: 60 registrations left an idle server at
//! 1.1 GB. The server now reuses a fixed pool of buffers (`auth.rs`), and
//! this test fails if that stops being true.

mod support;

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use support::process::{Node, Spawn};

/// Concurrent requests per burst, and bursts of each kind.
const BURST: usize = 20;
const BURSTS: usize = 3;
/// Argon2id working memory per hash (m = 19 MiB, one lane).
const ARGON2_KIB: u64 = 19 * 1024;
/// Hashes the server runs at once per core (`HASHES_PER_CORE` in `auth.rs`).
const HASHES_PER_CORE: u64 = 2;
/// Room for everything else a busy moment leaves behind (allocator arenas,
/// blocking-pool thread stacks, SQLite's page cache, connection buffers).
const MARGIN_KIB: u64 = 32 * 1024;

/// A `palaver serve` process on a free port with a fresh SQLite database
/// (in `dir`) and every registration and login limit off.
async fn start(dir: &Path) -> Node {
    let db = format!("sqlite://{}", dir.join("memory.db").display());
    Spawn::new(&db, "memory-test-secret")
        .args(&[
            "--registrations-per-ip",
            "0",
            "--login-attempts-per-ip",
            "0",
            "--login-attempts-per-user",
            "0",
        ])
        .start()
        .await
}

/// Posts credentials to `/api/auth/{action}`; the HTTP status.
async fn auth(server: &Node, action: &str, user: &str, pw: &str) -> u16 {
    let body: Value = json!({"username": user, "password": pw});
    server
        .http
        .post(format!("http://{}/api/auth/{action}", server.addr))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends `BURST` requests at once and waits for every answer.
async fn burst(server: &Node, requests: Vec<(&str, String, &str)>) {
    let answers = futures_util::future::join_all(
        requests
            .iter()
            .map(|(action, user, pw)| auth(server, action, user, pw)),
    )
    .await;
    for ((action, user, pw), status) in requests.iter().zip(answers) {
        let expected = match *action {
            "register" => 201,
            _ if pw.starts_with("right") && !user.starts_with("ghost") => 200,
            _ => 401,
        };
        assert_eq!(status, expected, "{action} {user} with {pw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_memory_after_bursts_of_password_hashing_is_bounded_by_the_permits() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let baseline = server.status_kib("VmRSS:");

    for b in 0..BURSTS {
        let requests = (0..BURST)
            .map(|i| ("register", format!("user{b}x{i}"), "right password"))
            .collect();
        burst(&server, requests).await;
    }
    let after_registrations = server.status_kib("VmRSS:");
    // Logins: right and wrong passwords, and unknown users (the dummy hash).
    for b in 0..BURSTS {
        let requests = (0..BURST)
            .map(|i| match i % 3 {
                0 => ("login", format!("user{b}x{i}"), "right password"),
                1 => ("login", format!("user{b}x{i}"), "wrong password"),
                _ => ("login", format!("ghost{b}x{i}"), "right password"),
            })
            .collect();
        burst(&server, requests).await;
    }
    // Every request has been answered, so every hash is done: the server is idle.
    let idle = server.status_kib("VmRSS:");

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // At most this many hashes ever run at once, so at most this many
    // buffers exist (never more than a burst, on a machine with many cores).
    let buffers = (cores * HASHES_PER_CORE).min(BURST as u64);
    let bound = baseline + buffers * ARGON2_KIB + MARGIN_KIB;
    let _ = writeln!(
        std::io::stderr(),
        "memory: {} registrations and {} logins in bursts of {BURST}; \
         server RSS {baseline} KiB at start, {after_registrations} KiB after the registrations, \
         {idle} KiB idle after the logins; bound {bound} KiB \
         (start + {buffers} buffers x {ARGON2_KIB} KiB + {MARGIN_KIB} KiB)",
        BURSTS * BURST,
        BURSTS * BURST,
    );
    assert!(
        idle <= bound,
        "idle RSS {idle} KiB exceeds {bound} KiB (start {baseline} KiB + {buffers} x 19 MiB + 32 MiB)"
    );
}
