//! Socket.IO v5 as the server speaks it, over real WebSockets against the
//! conformance set-up (`/socket.io/`: namespaces `/` and `/custom`, each
//! emitting `auth` with the handshake's payload on connection, answering
//! `message` with `message-back` and acknowledging `message-with-ack`).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{spawn_app, Ws, CONNECT_TIMEOUT};

/// The attachment caps of `socketio::Config::default()`.
const MAX_ATTACHMENTS: usize = 10;
const MAX_ATTACHMENT_BYTES: usize = 1_000_000;

/// A placeholder for the `num`th attachment.
fn placeholder(num: usize) -> Value {
    json!({"_placeholder": true, "num": num})
}

/// Sends `text` on a connected session and asserts that the server
/// closes it without answering.
async fn closes_without_answer(ws: &mut Ws, text: &str) {
    ws.send(text).await;
    assert_eq!(ws.closed().await, vec![], "after {text:?}");
}

#[tokio::test]
async fn connect_with_auth_is_answered_with_a_sid_then_the_auth_event_carries_the_payload() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    let sid = ws.connect("/", Some(r#"{"token":"123"}"#)).await;
    assert!(!sid.is_empty());
    // Without a payload the `auth` event carries `{}`.
    let mut other = app.sio().await;
    assert_ne!(
        other.connect("/", None).await,
        sid,
        "a socket id per socket"
    );
}

#[tokio::test]
async fn connect_to_the_custom_namespace_is_answered_in_that_namespace() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/custom", Some(r#"{"token":"abc"}"#)).await;
    ws.send(r#"42/custom,["message","hi"]"#).await;
    assert_eq!(ws.text().await, r#"42/custom,["message-back","hi"]"#);
}

#[tokio::test]
async fn connect_to_an_unknown_namespace_gets_connect_error_invalid_namespace() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.send("40/random").await;
    assert_eq!(
        ws.text().await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    // The session is still there for a namespace that exists.
    ws.connect("/", None).await;
}

#[tokio::test]
async fn disconnect_of_one_namespace_leaves_the_session_and_the_other_namespace_working() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    let custom = ws.connect("/custom", None).await;

    ws.send("41/custom,").await;
    ws.send(r#"42["message",1]"#).await;
    assert_eq!(ws.text().await, r#"42["message-back",1]"#);
    // A CONNECT to a namespace still connected would go unanswered: a new
    // socket id says `/custom` was left.
    assert_ne!(ws.connect("/custom", None).await, custom);

    ws.send("41").await;
    ws.send(r#"42/custom,["message",2]"#).await;
    assert_eq!(ws.text().await, r#"42/custom,["message-back",2]"#);
}

#[tokio::test]
async fn an_event_is_answered_with_its_arguments() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    ws.send(r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(ws.text().await, r#"42["message-back",1,"2",{"3":[true]}]"#);
}

#[tokio::test]
async fn an_event_with_an_ack_id_is_acknowledged_with_that_id() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    ws.send(r#"42456["message-with-ack",1,"2",{"3":[true]}]"#)
        .await;
    assert_eq!(ws.text().await, r#"43456[1,"2",{"3":[true]}]"#);
}

#[tokio::test]
async fn a_binary_event_is_answered_with_placeholders_and_binary_frames() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    let args = json!(["message", placeholder(0), "x", placeholder(1)]);
    ws.send(&format!("452-{args}")).await;
    ws.send_binary(vec![1, 2, 3]).await;
    ws.send_binary(vec![4, 5]).await;
    let back = json!(["message-back", placeholder(0), "x", placeholder(1)]);
    assert_eq!(ws.text().await, format!("452-{back}"));
    assert_eq!(ws.binary().await, vec![1, 2, 3]);
    assert_eq!(ws.binary().await, vec![4, 5]);
}

#[tokio::test]
async fn a_binary_event_with_an_ack_id_is_answered_with_a_binary_ack() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    let args = json!(["message-with-ack", placeholder(0)]);
    ws.send(&format!("451-789{args}")).await;
    ws.send_binary(vec![1, 2, 3]).await;
    assert_eq!(ws.text().await, r#"461-789[{"_placeholder":true,"num":0}]"#);
    assert_eq!(ws.binary().await, vec![1, 2, 3]);
}

#[tokio::test]
async fn more_attachments_than_the_cap_close_the_connection() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    // The cap itself is taken.
    let mut args = vec![json!("message")];
    args.extend((0..MAX_ATTACHMENTS).map(placeholder));
    let head = |args: Vec<Value>| format!("45{}-{}", args.len() - 1, Value::from(args));
    ws.send(&head(args.clone())).await;
    for i in 0..MAX_ATTACHMENTS {
        ws.send_binary(vec![i as u8]).await;
    }
    args[0] = json!("message-back");
    assert_eq!(ws.text().await, head(args));
    for i in 0..MAX_ATTACHMENTS {
        assert_eq!(ws.binary().await, vec![i as u8]);
    }

    let mut args = vec![json!("message")];
    args.extend((0..=MAX_ATTACHMENTS).map(placeholder));
    closes_without_answer(&mut ws, &head(args)).await;
}

#[tokio::test]
async fn more_attachment_bytes_than_the_cap_close_the_connection() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    let args = json!(["message", placeholder(0), placeholder(1)]);
    // The cap itself is taken.
    let half = MAX_ATTACHMENT_BYTES / 2;
    ws.send(&format!("452-{args}")).await;
    ws.send_binary(vec![1; half]).await;
    ws.send_binary(vec![2; half]).await;
    let back = json!(["message-back", placeholder(0), placeholder(1)]);
    assert_eq!(ws.text().await, format!("452-{back}"));
    assert!(ws.binary().await == vec![1; half]);
    assert!(ws.binary().await == vec![2; half]);

    // Each attachment fits a WebSocket message; together they are over.
    let part = MAX_ATTACHMENT_BYTES * 6 / 10;
    ws.send(&format!("452-{args}")).await;
    ws.send_binary(vec![1; part]).await;
    ws.send_binary(vec![2; part]).await;
    assert_eq!(ws.closed().await, vec![]);
}

#[tokio::test]
async fn no_connect_within_the_connect_timeout_closes_the_session() {
    let app = spawn_app().await;
    let started = Instant::now();
    let mut ws = app.sio().await;
    // Pings are answered: only the missing CONNECT can end it.
    assert_eq!(ws.closed().await, vec![]);
    let waited = started.elapsed();
    assert!(waited >= CONNECT_TIMEOUT, "closed after {waited:?}");
    assert!(
        waited <= CONNECT_TIMEOUT + Duration::from_millis(500),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn ack_ids_up_to_u64_max_are_acknowledged_with_that_id() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    for id in [0, 1, u64::from(u32::MAX) + 1, u64::MAX] {
        ws.send(&format!(r#"42{id}["message-with-ack",1]"#)).await;
        assert_eq!(ws.text().await, format!("43{id}[1]"));
    }
}

#[tokio::test]
async fn an_ack_id_beyond_u64_closes_the_connection() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    closes_without_answer(&mut ws, r#"4218446744073709551616["message-with-ack",1]"#).await;
}

#[tokio::test]
async fn an_event_to_a_namespace_not_connected_closes_the_session() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    closes_without_answer(&mut ws, r#"42/custom,["message",1]"#).await;
}

#[tokio::test]
async fn malformed_packets_close_the_connection() {
    let app = spawn_app().await;
    // Unknown packet type, a payload that is no array, junk before it.
    for packet in ["4abc", "42{}", r#"42abc["message",1]"#] {
        let mut ws = app.sio().await;
        ws.connect("/", None).await;
        closes_without_answer(&mut ws, packet).await;
    }
}

#[tokio::test]
async fn a_connected_session_outlives_the_connect_timeout() {
    let app = spawn_app().await;
    let mut ws = app.sio().await;
    ws.connect("/", None).await;
    let until = Instant::now() + CONNECT_TIMEOUT + Duration::from_millis(300);
    while Instant::now() < until {
        ws.send(r#"42["message",0]"#).await;
        assert_eq!(ws.text().await, r#"42["message-back",0]"#);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
