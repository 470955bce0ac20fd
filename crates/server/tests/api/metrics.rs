//! `--metrics-listen`: the numbers at `/metrics` after known traffic, and
//! that `/metrics` is served only there, never on the public port.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

/// The text at the server's `/metrics` (checked to be Prometheus's text
/// format by its content type).
pub async fn scrape(app: &TestApp) -> String {
    let addr = app.metrics_addr.expect("the server serves metrics");
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    resp.text().await.unwrap()
}

/// The value of one series (name and labels exactly as exposed).
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// Registers two users, connects both, sends `n` private messages from
/// one to the other (each delivered), one message that is refused and
/// one HTTP request answered `not_found`.
pub async fn known_traffic(app: &TestApp, n: usize) -> (Client, Client) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut b = app.connect(&bob.token).await;
    for i in 0..n {
        let sent = send_ok(&a, private(bob.id(), &format!("m{i}"))).await;
        assert_eq!(next_message(&mut b).await, sent);
    }
    assert_eq!(send_err(&a, private(bob.id(), "")).await, "invalid_payload");
    let (status, body) = app.get("/api/users/987654", Some(&alice.token)).await;
    assert_eq!(status, 404, "{body}");
    (a, b)
}

pub use palaver_client::Client;

async fn metrics_count_known_traffic(b: Backend) {
    let app = spawn_metered(b, |_| {}).await;
    let (a, bob) = known_traffic(&app, 5).await;
    let text = scrape(&app).await;
    let v = |series: &str| value(&text, series);

    assert_eq!(v("palaver_messages_committed_total"), 5.0);
    assert_eq!(
        v("palaver_message_batch_size_sum"),
        5.0,
        "every message in a batch"
    );
    assert_eq!(
        v("palaver_message_commit_duration_seconds_count"),
        v("palaver_message_batch_size_count")
    );
    assert_eq!(
        v("palaver_message_ack_duration_seconds_count"),
        5.0,
        "each committed send acked"
    );
    assert_eq!(
        v(r#"palaver_socketio_events_received_total{event="message"}"#),
        6.0
    );
    assert_eq!(
        v(r#"palaver_socketio_events_received_total{event="typing"}"#),
        0.0
    );
    assert!(
        v("palaver_deliveries_total") >= 5.0,
        "each message reached bob's socket"
    );
    assert_eq!(v("palaver_sockets_connected"), 2.0);
    assert_eq!(v("palaver_users_online"), 2.0);
    assert_eq!(
        v(r#"palaver_error_answers_total{transport="socketio",code="invalid_payload"}"#),
        1.0
    );
    assert_eq!(
        v(r#"palaver_error_answers_total{transport="http",code="not_found"}"#),
        1.0
    );
    // The route's template, never the id asked for.
    assert_eq!(
        v(
            r#"palaver_http_request_duration_seconds_count{method="GET",route="/api/users/{id}",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        v(
            r#"palaver_http_request_duration_seconds_count{method="POST",route="/api/auth/register",status="201"}"#
        ),
        2.0
    );
    assert!(!text.contains("987654"), "no id in any label");
    assert_eq!(v("palaver_db_connections_max"), 8.0);
    assert!(
        v(r#"palaver_db_connections{state="idle"}"#)
            + v(r#"palaver_db_connections{state="in_use"}"#)
            >= 1.0
    );
    assert!(
        !text.contains("palaver_redis_up"),
        "a single node has no Redis link"
    );
    assert!(v("process_resident_memory_bytes") > 0.0);

    // Gone sockets are no longer counted.
    a.close();
    bob.close();
    drop((a, bob));
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(&app).await;
        if value(&text, "palaver_sockets_connected") == 0.0 {
            assert_eq!(value(&text, "palaver_users_online"), 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "sockets still counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Refusals by a limit are counted by kind, and their answers by code.
async fn rate_limit_refusals_are_counted_by_kind(b: Backend) {
    let app = spawn_metered(b, |c| c.login_failures_per_pair = 1).await;
    app.register("alice").await;
    let wrong = json!({"username": "alice", "password": "wrong password"});
    let (status, _) = app.post("/api/auth/login", None, wrong.clone()).await;
    assert_eq!(status, 401);
    let (status, body) = app.post("/api/auth/login", None, wrong).await;
    assert_eq!(status, 429, "{body}");
    let text = scrape(&app).await;
    let v = |series: &str| value(&text, series);
    assert_eq!(v(r#"palaver_rate_limited_total{kind="login"}"#), 1.0);
    assert_eq!(v(r#"palaver_rate_limited_total{kind="message"}"#), 0.0);
    assert_eq!(
        v(r#"palaver_error_answers_total{transport="http",code="unauthorized"}"#),
        1.0
    );
    assert_eq!(
        v(r#"palaver_error_answers_total{transport="http",code="rate_limited"}"#),
        1.0
    );
}

/// `/metrics` is never on the public port, and the metrics listener
/// serves nothing else.
async fn metrics_are_served_only_on_their_own_listener(b: Backend) {
    let app = spawn_metered(b, |_| {}).await;
    let (status, body) = app.get("/metrics", None).await;
    assert_eq!(status, 404, "{body}");
    let addr = app.metrics_addr.unwrap();
    let other = reqwest::get(format!("http://{addr}/api/me")).await.unwrap();
    assert_eq!(other.status(), 404);
    let plain = spawn_app(b).await;
    let (status, _) = plain.get("/metrics", None).await;
    assert_eq!(status, 404, "off by default");
}

backend_tests!(
    metrics_count_known_traffic,
    rate_limit_refusals_are_counted_by_kind,
    metrics_are_served_only_on_their_own_listener,
);
