//! Limits: per-user message rate, connections per user, failed logins (per
//! address, per username and address, per username; successes never
//! count), registrations per address, group changes per user, HTTP body
//! size, allowed origins, `Retry-After` on 429. Limits are kept in memory,
//! not in the database, so these run on SQLite only.

use std::time::{Duration, Instant};

use palaver_client::{Client, Error as ClientError};
use serde_json::json;

use crate::helpers::*;
use crate::tests;

/// Latencies of `n` sends spaced `gap` apart, in milliseconds, sorted.
async fn paced_sends(client: &Client, to: i64, tag: &str, n: usize, gap: Duration) -> Vec<f64> {
    let mut lat = Vec::with_capacity(n);
    let mut tick = tokio::time::interval(gap);
    for i in 0..n {
        tick.tick().await;
        let start = Instant::now();
        send_ok(client, private(to, &format!("{tag}{i}"))).await;
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn a_flooder_is_limited_and_a_well_behaved_user_barely_notices() {
    let app = spawn_configured(Backend::Sqlite, |c| {
        c.message_rate = 20;
        c.message_burst = 40;
    })
    .await;
    let flooder = app.register("flooder").await;
    let victim = app.register("victim").await;
    let good = app.register("good").await;
    let friend = app.register("friend").await;
    let f = app.connect(&flooder.token).await;
    let g = app.connect(&good.token).await;

    // The well-behaved user alone: 40 sends at 10 a second.
    let gap = Duration::from_millis(100);
    let quiet = paced_sends(&g, friend.id(), "q", 40, gap).await;

    // The same while another user sends as fast as the server answers,
    // with up to 200 sends in flight.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let victim = victim.id();
        tokio::spawn(async move {
            let (mut ok, mut limited, mut other) = (0u64, 0u64, 0u64);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<_> = (0..200)
                    .map(|_| {
                        i += 1;
                        f.emit_ack_deferred("message", &private(victim, &format!("f{i}")))
                            .unwrap()
                    })
                    .collect();
                for ack in batch {
                    let ack = ack.await.expect("flooder ack");
                    match ack["error"]["code"].as_str() {
                        None => ok += 1,
                        Some("rate_limited") => limited += 1,
                        Some(_) => other += 1,
                    }
                }
            }
            (ok, limited, other, f)
        })
    };
    let flooded = paced_sends(&g, friend.id(), "l", 40, gap).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, limited, other, _f) = flood.await.unwrap();

    // What was refused was not stored.
    let stored = app.history(&flooder, "private", victim.id(), 0).await.len() as u64;
    let mut more = stored;
    let mut after = stored as i64;
    while more == 200 {
        let page = app.history(&flooder, "private", victim.id(), after).await;
        more = page.len() as u64;
        after += more as i64;
    }
    let stored = after as u64;
    // Written past the test harness's capture: the figure is the point.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "flood: flooder sent={} ok={ok} rate_limited={limited}; well-behaved user p50/max \
         alone {:.1}/{:.1} ms, during the flood {:.1}/{:.1} ms",
        ok + limited + other,
        pct(&quiet, 0.5),
        pct(&quiet, 1.0),
        pct(&flooded, 0.5),
        pct(&flooded, 1.0),
    );
    assert_eq!(other, 0, "the flooder only ever hears ok or rate_limited");
    assert!(limited > 0, "the flooder was limited");
    assert!(ok >= 40, "the burst went through: {ok}");
    assert_eq!(stored, ok, "stored exactly the accepted sends");
}

async fn the_rate_limited_answer_says_when_to_retry_and_the_limit_refills() {
    let app = spawn_configured(Backend::Sqlite, |c| {
        // One a second: the third send comes well within the second even
        // on a loaded machine.
        c.message_rate = 1;
        c.message_burst = 2;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let a2 = app.connect(&alice.token).await;
    send_ok(&a, private(bob.id(), "1")).await;
    send_ok(&a, private(bob.id(), "2")).await;
    // The limit is per user: her second socket shares the bucket.
    let ack = a2
        .emit_ack("message", &private(bob.id(), "3"))
        .await
        .unwrap();
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    let text = ack["error"]["message"].as_str().unwrap();
    assert!(text.contains("retry in"), "{text}");
    // Bob is not limited by Alice's sending.
    let b = app.connect(&bob.token).await;
    send_ok(&b, private(alice.id(), "hi")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send_ok(&a2, private(bob.id(), "3 again")).await;
    assert_eq!(app.history(&alice, "private", bob.id(), 0).await.len(), 4);
}

async fn connections_per_user_are_bounded() {
    let app = spawn_configured(Backend::Sqlite, |c| c.max_connections_per_user = 2).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let first = app.connect(&alice.token).await;
    let _second = app.connect(&alice.token).await;
    let third = Client::connect(app.addr, Some(json!({ "token": alice.token }))).await;
    match third {
        Err(ClientError::Refused(msg)) => {
            assert!(msg.starts_with("rate_limited"), "{msg}");
            assert!(msg.contains("at most 2 connections"), "{msg}");
        }
        Err(e) => panic!("expected a refusal, got {e:?}"),
        Ok(_) => panic!("a third connection was accepted"),
    }
    // Other users are unaffected.
    let _b = app.connect(&bob.token).await;
    // A closed connection frees its place.
    first.close();
    let started = Instant::now();
    loop {
        match Client::connect(app.addr, Some(json!({ "token": alice.token }))).await {
            Ok(_) => break,
            Err(ClientError::Refused(_)) if started.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("reconnect after close: {e:?}"),
        }
    }
}

async fn login(app: &TestApp, username: &str, password: &str) -> (u16, serde_json::Value) {
    app.post(
        "/api/auth/login",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

async fn login_attempts_are_limited_per_username() {
    let app = spawn_configured(Backend::Sqlite, |c| {
        c.login_failures_per_user = 3;
        c.login_failures_per_ip = 1000;
    })
    .await;
    app.register("alice").await;
    app.register("bob").await;
    for _ in 0..3 {
        let (status, body) = login(&app, "alice", "wrong password").await;
        assert_eq!(status, 401, "{body}");
    }
    // Even the right password is refused now, under any spelling.
    let (status, body) = login(&app, "ALICE", "correct horse").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Other users log in.
    let (status, body) = login(&app, "bob", "correct horse").await;
    assert_eq!(status, 200, "{body}");
}

async fn registrations_are_limited_per_address() {
    let app = spawn_configured(Backend::Sqlite, |c| c.registrations_per_ip = 3).await;
    for name in ["alice", "bob", "carol"] {
        app.register(name).await;
    }
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "dave", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Nothing was created for the refused one: the name is still free.
    let (status, body) = login(&app, "dave", "correct horse").await;
    assert_eq!(status, 401, "{body}");
}

async fn group_changes_are_limited_per_user() {
    let app = spawn_configured(Backend::Sqlite, |c| c.group_changes_per_minute = 5).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let members = |g: i64| format!("/api/groups/{g}/members");
    // Creating, adding and removing share one allowance of five.
    let g = app.group(&alice, "first", &[]).await;
    let (status, body) = app
        .post(&members(g), Some(&alice.token), json!({"userId": bob.id()}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .delete(&format!("{}/{}", members(g), bob.id()), Some(&alice.token))
        .await;
    assert_eq!(status, 204, "{body}");
    app.group(&alice, "second", &[]).await;
    app.group(&alice, "third", &[]).await;
    let (status, body) = app
        .post("/api/groups", Some(&alice.token), json!({"name": "fourth"}))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let (status, body) = app
        .post(
            &members(g),
            Some(&alice.token),
            json!({"userId": carol.id()}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    // The refused ones changed nothing; others are not limited by her.
    let (_, groups) = app.get("/api/groups", Some(&alice.token)).await;
    assert_eq!(groups.as_array().unwrap().len(), 3, "{groups}");
    let (_, first) = app
        .get(&format!("/api/groups/{g}"), Some(&alice.token))
        .await;
    assert_eq!(first["members"].as_array().unwrap().len(), 1, "{first}");
    app.group(&bob, "bob's", &[]).await;
}

async fn login_attempts_are_limited_per_address() {
    let app = spawn_configured(Backend::Sqlite, |c| {
        c.login_failures_per_user = 1000;
        c.login_failures_per_ip = 5;
    })
    .await;
    app.register("alice").await;
    for i in 0..5 {
        let (status, body) = login(&app, &format!("guess{i}"), "password1").await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = login(&app, "alice", "correct horse").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
}

async fn http_bodies_are_bounded() {
    let app = spawn_configured(Backend::Sqlite, |c| c.max_body_bytes = 4096).await;
    let alice = app.register("alice").await;
    let (status, body) = app
        .post(
            "/api/groups",
            Some(&alice.token),
            json!({"name": "x".repeat(8000)}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large", "{body}");
    // A 2 MiB body on an unauthenticated route: refused the same way, from
    // its Content-Length alone, before any of it is read. (Sent raw: a
    // client that writes the whole body may see the connection closed under
    // it instead of the answer, which is the point of refusing early.)
    let head = raw_http(
        app.addr,
        "POST /api/auth/login HTTP/1.1\r\nHost: palaver\r\n\
         Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let (status, _) = app.get("/api/me", Some(&alice.token)).await;
    assert_eq!(status, 200);
}

/// Writes `request` (a head, no body) and returns the answer's head.
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("no answer before the body was sent")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `GET /healthz` with an `Origin` header.
async fn from_origin(app: &TestApp, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url("/healthz"))
        .header("origin", origin)
        .send()
        .await
        .unwrap()
}

/// Opens a Socket.IO WebSocket with an `Origin` header; the HTTP status of
/// the refusal, or 101.
async fn websocket_from(app: &TestApp, origin: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("websocket: {e}"),
    }
}

async fn other_origins_are_refused_by_default() {
    let app = spawn_app(Backend::Sqlite).await;
    let own = format!("http://{}", app.addr);
    assert_eq!(from_origin(&app, &own).await.status(), 200);
    let refused = from_origin(&app, "https://evil.example").await;
    assert_eq!(refused.status(), 403);
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert_eq!(websocket_from(&app, "https://evil.example").await, 403);
    assert_eq!(websocket_from(&app, &own).await, 101);
    // Clients that send no Origin (native apps, servers) are not browsers.
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
}

async fn listed_origins_pass_with_cors_headers() {
    let app = spawn_configured(Backend::Sqlite, |c| {
        c.allowed_origins =
            palaver::config::AllowedOrigins::List(vec!["https://chat.example.com".into()])
    })
    .await;
    let ok = from_origin(&app, "https://chat.example.com").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        "https://chat.example.com"
    );
    assert_eq!(websocket_from(&app, "https://chat.example.com").await, 101);
    assert_eq!(websocket_from(&app, "https://evil.example").await, 403);
    // A preflight for the API from the listed origin.
    let pre = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, app.url("/api/groups"))
        .header("origin", "https://chat.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(
        pre.headers().get("access-control-allow-origin").unwrap(),
        "https://chat.example.com"
    );
}

/// A login from `from` (a loopback address other than the server's own).
async fn login_from(
    app: &TestApp,
    from: &str,
    username: &str,
    password: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let resp = client
        .post(app.url("/api/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, resp.json().await.unwrap())
}

async fn a_guesser_is_held_off_while_the_owner_logs_in_from_elsewhere() {
    let app = spawn_configured(Backend::Sqlite, |c| {
        c.login_failures_per_pair = 3;
        c.login_failures_per_user = 1000;
        c.login_failures_per_ip = 1000;
    })
    .await;
    app.register("alice").await;
    for _ in 0..3 {
        let (status, _, body) = login_from(&app, "127.0.0.1", "alice", "wrong password").await;
        assert_eq!(status, 401, "{body}");
    }
    // The guessing address waits, even with the right password…
    let (status, retry_after, body) = login_from(&app, "127.0.0.1", "alice", "correct horse").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
    // …and the owner, from an address that has not been failing, gets in.
    let (status, _, body) = login_from(&app, "127.0.0.2", "alice", "correct horse").await;
    assert_eq!(status, 200, "{body}");
    // The back-off doubles with each further failure once it has passed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = login_from(&app, "127.0.0.1", "alice", "still wrong").await;
    assert_eq!(status, 401, "{body}");
    let (status, retry_after, body) = login_from(&app, "127.0.0.1", "alice", "correct horse").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry_after.as_deref(), Some("2"), "{body}");
}

async fn successful_logins_are_not_counted_against_any_limit() {
    let app = spawn_configured(Backend::Sqlite, |c| {
        c.login_failures_per_pair = 2;
        c.login_failures_per_user = 2;
        c.login_failures_per_ip = 2;
    })
    .await;
    app.register("alice").await;
    for i in 0..8 {
        let (status, _, body) = login_from(&app, "127.0.0.1", "alice", "correct horse").await;
        assert_eq!(status, 200, "login {i}: {body}");
    }
    // A failure, then the right password from the same address: in.
    let (status, _, _) = login_from(&app, "127.0.0.1", "alice", "wrong password").await;
    assert_eq!(status, 401);
    let (status, _, _) = login_from(&app, "127.0.0.1", "alice", "correct horse").await;
    assert_eq!(status, 200);
}

tests!(
    async a_flooder_is_limited_and_a_well_behaved_user_barely_notices,
    async the_rate_limited_answer_says_when_to_retry_and_the_limit_refills,
    async connections_per_user_are_bounded,
    async login_attempts_are_limited_per_username,
    async registrations_are_limited_per_address,
    async group_changes_are_limited_per_user,
    async login_attempts_are_limited_per_address,
    async http_bodies_are_bounded,
    async other_origins_are_refused_by_default,
    async listed_origins_pass_with_cors_headers,
    async a_guesser_is_held_off_while_the_owner_logs_in_from_elsewhere,
    async successful_logins_are_not_counted_against_any_limit,
);
