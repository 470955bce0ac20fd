//! Engine.IO v4 as the server speaks it, driven over real HTTP and
//! WebSocket connections against the conformance set-up (`/engine.io/`
//! echoes every message).

mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use palaver_sio::conformance::{engine_config, Echo};
use palaver_sio::engine::{self, Engine};
use serde_json::json;
use support::{
    spawn_app, Answer, App, Got, Polling, Ws, ENGINE, PING_INTERVAL, PING_TIMEOUT, WAIT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Slack on timing bounds, for a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(150);

/// A request that must be waiting in the server before the next one is
/// sent (no answer can tell that it is) is given this long.
const SETTLE: Duration = Duration::from_millis(60);

/// The conformance set-up's raw Engine.IO endpoint (an echo) with
/// `config`, served as `conformance::serve` serves it.
async fn spawn_engine(config: engine::Config) -> App {
    let engine = Engine::new(
        engine::Config {
            connect_timeout: None,
            ..config
        },
        Echo,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app = App::at(listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let engine = engine.clone();
            let service = service_fn(move |req| {
                let engine = engine.clone();
                async move { Ok::<_, Infallible>(engine.handle(req, peer).await) }
            });
            let io = TokioIo::new(tcp);
            tokio::spawn(
                http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades(),
            );
        }
    });
    app
}

/// A raw endpoint that pings no session within a test: for the
/// behaviours that end a waiting GET, which a ping would end as well.
async fn spawn_quiet_engine() -> App {
    spawn_engine(engine::Config {
        ping_interval: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(60),
        ..engine_config()
    })
    .await
}

#[tokio::test]
async fn polling_handshake_announces_sid_upgrades_ping_interval_timeout_and_max_payload() {
    let app = spawn_app().await;
    let open = app.open(ENGINE).await;
    let sid = open["sid"].as_str().expect("sid is a string");
    assert!(!sid.is_empty());
    let mut announced = open.clone();
    announced["sid"] = json!("");
    assert_eq!(
        announced,
        json!({"sid": "", "upgrades": ["websocket"], "pingInterval": 300,
               "pingTimeout": 200, "maxPayload": 1_000_000})
    );
    assert_ne!(
        app.open(ENGINE).await["sid"],
        open["sid"],
        "a sid per session"
    );
}

#[tokio::test]
async fn websocket_handshake_announces_sid_no_upgrades_ping_interval_timeout_and_max_payload() {
    let app = spawn_app().await;
    let mut ws = app.ws(ENGINE).await;
    let mut open = support::open_packet(&ws.text().await);
    assert!(!open["sid"].as_str().expect("sid is a string").is_empty());
    open["sid"] = json!("");
    assert_eq!(
        open,
        json!({"sid": "", "upgrades": [], "pingInterval": 300,
               "pingTimeout": 200, "maxPayload": 1_000_000})
    );
}

#[tokio::test]
async fn a_missing_or_bad_eio_or_transport_is_refused_400() {
    let app = spawn_app().await;
    // Engine.IO's codes: 0 transport unknown, 5 unsupported version.
    for (query, code) in [
        ("transport=polling", 5),
        ("EIO=abc&transport=polling", 5),
        ("EIO=3&transport=polling", 5),
        ("EIO=4", 0),
        ("EIO=4&transport=abc", 0),
    ] {
        assert_eq!(app.get(ENGINE, query).await.code(), code, "{query}");
    }
    for query in [
        "transport=websocket",
        "EIO=abc&transport=websocket",
        "EIO=4",
        "EIO=4&transport=abc",
    ] {
        assert_eq!(app.ws_refused(ENGINE, query).await, 400, "{query}");
    }
}

#[tokio::test]
async fn a_request_naming_an_unknown_sid_is_refused_400() {
    let app = spawn_app().await;
    app.open(ENGINE).await;
    for sid in ["AAAAAAAAAAAAAAAAAAAA", "not-a-sid", ""] {
        let query = format!("EIO=4&transport=polling&sid={sid}");
        assert_eq!(app.get(ENGINE, &query).await.code(), 1, "GET {sid:?}");
        let post = app
            .request(reqwest::Method::POST, ENGINE, &query, Some(b"4x".to_vec()))
            .await;
        assert_eq!(post.code(), 1, "POST {sid:?}");
        let ws = format!("EIO=4&transport=websocket&sid={sid}");
        assert_eq!(app.ws_refused(ENGINE, &ws).await, 400, "WebSocket {sid:?}");
    }
}

#[tokio::test]
async fn a_handshake_by_another_method_than_get_is_refused_400() {
    let app = spawn_app().await;
    for method in [reqwest::Method::POST, reqwest::Method::PUT] {
        let answer = app
            .request(method.clone(), ENGINE, "EIO=4&transport=polling", None)
            .await;
        assert_eq!(answer.code(), 2, "{method}");
    }
    // Nor does a session take anything but GET and POST.
    let session = app.polling(ENGINE).await;
    let query = format!("EIO=4&transport=polling&sid={}", session.sid);
    let put = app
        .request(reqwest::Method::PUT, ENGINE, &query, Some(b"4x".to_vec()))
        .await;
    assert_eq!(put.code(), 3);
}

#[tokio::test]
async fn a_second_concurrent_get_closes_the_session_first_gets_close_second_400() {
    let app = spawn_quiet_engine().await;
    let session = app.polling(ENGINE).await;
    let (a, b) = tokio::join!(session.get(), async {
        tokio::time::sleep(SETTLE).await;
        session.get().await
    });
    // Whichever the server saw first waits and is ended with `1`.
    let mut answers = [a, b];
    answers.sort_by_key(|a| a.status);
    assert_eq!(answers[0], Answer::ok("1"));
    assert_eq!(answers[1].code(), 3);
    assert_eq!(session.get().await.status, 400, "the session is gone");
}

#[tokio::test]
async fn a_second_concurrent_post_closes_the_session() {
    let app = spawn_app().await;
    let session = app.polling(ENGINE).await;
    // A first POST whose body is still coming: the server's `100
    // Continue` says that it has begun reading it.
    let mut slow = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {ENGINE}?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: {}\r\n\
         Expect: 100-continue\r\nContent-Length: 6\r\n\r\n",
        session.sid, app.addr
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    let mut continued = [0u8; 25];
    tokio::time::timeout(WAIT, slow.read_exact(&mut continued))
        .await
        .expect("an answer in time")
        .expect("read");
    assert_eq!(&continued, b"HTTP/1.1 100 Continue\r\n\r\n");

    assert_eq!(session.post("4second").await.code(), 3);
    slow.write_all(b"4first").await.expect("write");
    assert_eq!(session.get().await.status, 400, "the session is gone");
}

#[tokio::test]
async fn polling_payloads_join_packets_with_the_record_separator() {
    let app = spawn_app().await;
    let session = app.polling(ENGINE).await;
    session.send("4test1\x1e4test2\x1e4test3").await;
    assert_eq!(session.recv().await, "4test1\x1e4test2\x1e4test3");
}

#[tokio::test]
async fn polling_carries_binary_as_b_base64_records() {
    let app = spawn_app().await;
    let session = app.polling(ENGINE).await;
    session.send("4hello\x1ebAQIDBA==").await;
    assert_eq!(session.recv().await, "4hello\x1ebAQIDBA==");
}

#[tokio::test]
async fn websocket_carries_binary_as_binary_frames() {
    let app = spawn_app().await;
    let mut ws = app.ws(ENGINE).await;
    ws.text().await;
    ws.send_binary(vec![1, 2, 3, 4]).await;
    assert_eq!(ws.binary().await, vec![1, 2, 3, 4]);
    ws.send("4hello").await;
    assert_eq!(ws.text().await, "4hello");
}

#[tokio::test]
async fn a_post_over_max_payload_gets_413_and_one_at_max_payload_is_taken() {
    let app = spawn_app().await;
    let session = app.polling(ENGINE).await;
    let over = format!("4{}", "a".repeat(1_000_000));
    assert_eq!(session.post(over).await.status, 413);
    let session = app.polling(ENGINE).await;
    let at_max = format!("4{}", "a".repeat(999_999));
    session.send(at_max.clone()).await;
    assert!(
        session.recv().await == at_max,
        "the echo of 1,000,000 bytes"
    );
}

#[tokio::test]
async fn an_invalid_packet_over_polling_is_refused_400_and_ends_the_session() {
    let app = spawn_app().await;
    let session = app.polling(ENGINE).await;
    assert_eq!(session.post("abc").await.status, 400);
    assert_eq!(session.get().await.status, 400, "the session is gone");
}

#[tokio::test]
async fn an_invalid_packet_over_websocket_closes_it() {
    let app = spawn_app().await;
    let mut ws = app.ws(ENGINE).await;
    ws.text().await;
    ws.send("abc").await;
    assert_eq!(ws.closed().await, vec![]);
}

/// Upgrades a long-polling session: `2probe`, `3probe`, `5`, and the
/// WebSocket then carries the session (its echo comes back).
async fn upgrade(session: &Polling<'_>) -> Ws {
    let mut ws = session.websocket().await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    ws.send("5").await;
    ws.send("4upgraded").await;
    assert_eq!(ws.text().await, "4upgraded");
    ws
}

#[tokio::test]
async fn the_upgrade_answers_2probe_with_3probe_ends_the_pending_get_with_a_noop_then_takes_5() {
    let app = spawn_quiet_engine().await;
    let session = app.polling(ENGINE).await;
    let (pending, mut ws) = tokio::join!(session.get(), async {
        tokio::time::sleep(SETTLE).await;
        let mut ws = session.websocket().await;
        ws.send("2probe").await;
        assert_eq!(ws.text().await, "3probe");
        ws
    });
    assert_eq!(pending, Answer::ok("6"));
    ws.send("5").await;
    ws.send("4hello").await;
    assert_eq!(ws.text().await, "4hello");
}

#[tokio::test]
async fn a_polling_request_after_the_upgrade_is_refused_400() {
    let app = spawn_app().await;
    let session = app.polling(ENGINE).await;
    let mut ws = upgrade(&session).await;
    assert_eq!(session.get().await.status, 400);
    assert_eq!(session.post("4hello").await.status, 400);
    ws.send("4still").await;
    assert_eq!(ws.text().await, "4still", "the WebSocket carries on");
}

#[tokio::test]
async fn a_second_websocket_naming_an_upgraded_sid_is_opened_and_closed() {
    let app = spawn_app().await;
    let session = app.polling(ENGINE).await;
    let mut ws = upgrade(&session).await;
    let mut second = session.websocket().await;
    assert_eq!(second.closed().await, vec![]);
    ws.send("4still").await;
    assert_eq!(ws.text().await, "4still", "the first carries on");
}

#[tokio::test]
async fn an_upgrade_without_5_times_out_and_the_session_keeps_polling() {
    const UPGRADE_TIMEOUT: Duration = Duration::from_millis(300);
    // While the probe waits, the client reads nothing (its GET is ended
    // with a noop): the first ping comes after the probe has timed out.
    let app = spawn_engine(engine::Config {
        upgrade_timeout: UPGRADE_TIMEOUT,
        ping_interval: Duration::from_millis(1000),
        ping_timeout: Duration::from_millis(1000),
        ..engine_config()
    })
    .await;
    let session = app.polling(ENGINE).await;
    let started = Instant::now();
    let mut ws = session.websocket().await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    assert_eq!(ws.closed().await, vec![]);
    let waited = started.elapsed();
    assert!(waited >= UPGRADE_TIMEOUT, "closed after {waited:?}");
    assert!(
        waited < UPGRADE_TIMEOUT + WAIT / 2,
        "closed after {waited:?}"
    );

    session.send("4hello").await;
    assert_eq!(session.recv().await, "4hello");
    assert_eq!(session.recv().await, "2", "the heartbeat goes on");
    session.send("3").await;
    session.send("4again").await;
    assert_eq!(session.recv().await, "4again");
}

#[tokio::test]
async fn websocket_pings_come_every_ping_interval_the_first_not_at_once() {
    let app = spawn_app().await;
    let started = Instant::now();
    let mut ws = app.ws(ENGINE).await;
    ws.text().await;
    let mut since = Instant::now();
    for i in 0..3 {
        assert_eq!(ws.next_raw().await, Got::Text("2".into()));
        // Exact lower bounds: the first ping is due an interval after the
        // server opened the session (after `started`), each next one an
        // interval after the pong came (after `since`). The upper bound
        // counts from the open packet's or the pong's arrival.
        let floor = if i == 0 { started } else { since };
        assert!(
            floor.elapsed() >= PING_INTERVAL,
            "ping {i} after {:?}",
            floor.elapsed()
        );
        assert!(
            since.elapsed() <= PING_INTERVAL + SLACK,
            "ping {i} after {:?}",
            since.elapsed()
        );
        since = Instant::now();
        ws.send("3").await;
    }
}

#[tokio::test]
async fn polling_pings_come_every_ping_interval_the_first_not_at_once() {
    let app = spawn_app().await;
    let started = Instant::now();
    let session = app.polling(ENGINE).await;
    let mut since = Instant::now();
    for i in 0..3 {
        assert_eq!(session.recv().await, "2");
        // As over WebSocket: the interval counts from the open, then from
        // each pong.
        let floor = if i == 0 { started } else { since };
        assert!(
            floor.elapsed() >= PING_INTERVAL,
            "ping {i} after {:?}",
            floor.elapsed()
        );
        assert!(
            since.elapsed() <= PING_INTERVAL + SLACK,
            "ping {i} after {:?}",
            since.elapsed()
        );
        since = Instant::now();
        session.send("3").await;
    }
}

#[tokio::test]
async fn a_missing_pong_ends_a_polling_session_after_ping_interval_and_timeout() {
    let app = spawn_app().await;
    let started = Instant::now();
    let session = app.polling(ENGINE).await;
    assert_eq!(session.recv().await, "2");
    // No pong: the GET waiting next is ended with the close packet.
    assert_eq!(session.recv().await, "1");
    let waited = started.elapsed();
    assert!(
        waited >= PING_INTERVAL + PING_TIMEOUT,
        "closed after {waited:?}"
    );
    assert!(
        waited <= PING_INTERVAL + PING_TIMEOUT + SLACK * 2,
        "closed after {waited:?}"
    );
    assert_eq!(session.get().await.status, 400, "the session is gone");
}

#[tokio::test]
async fn a_missing_pong_closes_a_websocket_after_ping_interval_and_timeout() {
    let app = spawn_app().await;
    let started = Instant::now();
    let mut ws = app.ws(ENGINE).await;
    ws.text().await;
    assert_eq!(ws.next_raw().await, Got::Text("2".into()));
    assert_eq!(ws.next_raw().await, Got::Closed);
    let waited = started.elapsed();
    assert!(
        waited >= PING_INTERVAL + PING_TIMEOUT,
        "closed after {waited:?}"
    );
    assert!(
        waited <= PING_INTERVAL + PING_TIMEOUT + SLACK * 2,
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_close_packet_over_polling_ends_the_pending_get_with_a_noop_then_refuses_400() {
    let app = spawn_quiet_engine().await;
    let session = app.polling(ENGINE).await;
    let (pending, ()) = tokio::join!(session.get(), async {
        tokio::time::sleep(SETTLE).await;
        session.send("1").await;
    });
    assert_eq!(pending, Answer::ok("6"));
    assert_eq!(session.get().await.status, 400, "the session is gone");
}

#[tokio::test]
async fn a_close_packet_over_websocket_closes_it() {
    let app = spawn_app().await;
    let mut ws = app.ws(ENGINE).await;
    ws.text().await;
    ws.send("1").await;
    assert_eq!(ws.closed().await, vec![]);
}
