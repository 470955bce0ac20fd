//! Blocking (PROTOCOL v1.2): a block stops writes to the two users'
//! private conversation, both ways, and hides presence; groups are
//! unaffected. On every backend.

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

async fn block(app: &TestApp, who: &TestUser, other: i64) -> u16 {
    app.post(&format!("/api/blocks/{other}"), Some(&who.token), json!({}))
        .await
        .0
}

async fn code_of(client: &palaver_client::Client, event: &str, payload: Value) -> String {
    let ack = client.emit_ack(event, &payload).await.expect("ack");
    assert_eq!(ack["ok"], false, "expected an error, got {ack}");
    ack["error"]["code"].as_str().unwrap().to_string()
}

async fn a_block_stops_private_writes_both_ways_until_lifted(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let bb = app.connect(&bob.token).await;
    let from_alice = send_ok(&a, private(bob.id(), "before")).await;
    let from_bob = send_ok(&bb, private(alice.id(), "hi")).await;
    assert_eq!(block(&app, &alice, bob.id()).await, 204);

    assert_eq!(
        send_err(&bb, private(alice.id(), "let me in")).await,
        "forbidden"
    );
    assert_eq!(
        send_err(&a, private(bob.id(), "one way?")).await,
        "forbidden"
    );
    let typing = json!({"conversationType": "private", "receiverId": alice.id(), "typing": true});
    assert_eq!(code_of(&bb, "typing", typing).await, "forbidden");
    let mut react = json!({"conversationType": "private", "receiverId": alice.id(),
                           "seq": from_alice.seq, "emoji": "👎"});
    assert_eq!(code_of(&bb, "react", react.clone()).await, "forbidden");
    let edit = json!({"conversationType": "private", "receiverId": alice.id(),
                      "seq": from_bob.seq, "content": "hi!!"});
    assert_eq!(code_of(&bb, "edit", edit).await, "forbidden");
    let delete =
        json!({"conversationType": "private", "receiverId": alice.id(), "seq": from_bob.seq});
    let ack = bb.emit_ack("delete", &delete).await.unwrap();
    assert_eq!(
        ack["ok"], true,
        "taking one's own message back is allowed: {ack}"
    );

    let history = app.history(&alice, "private", bob.id(), 0).await;
    assert_eq!(
        history.len(),
        2,
        "history stays readable, nothing new stored"
    );
    let (s, body) = app.get("/api/blocks", Some(&alice.token)).await;
    assert_eq!((s, body.as_array().unwrap().len()), (200, 1), "{body}");
    assert_eq!(body[0]["id"], bob.id());
    let (s, body) = app.get("/api/blocks", Some(&bob.token)).await;
    assert_eq!((s, body), (200, json!([])), "bob blocks nobody");

    let (s, _) = app
        .delete(&format!("/api/blocks/{}", bob.id()), Some(&alice.token))
        .await;
    assert_eq!(s, 204);
    send_ok(&bb, private(alice.id(), "thanks")).await;
    react["emoji"] = json!("👍");
    let ack = bb.emit_ack("react", &react).await.unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
}

async fn a_block_leaves_groups_alone(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let g = app.group(&alice, "g", &[bob.id()]).await;
    let mut a = app.connect(&alice.token).await;
    let bb = app.connect(&bob.token).await;
    assert_eq!(block(&app, &alice, bob.id()).await, 204);
    let sent = send_ok(&bb, group_msg(g, "still here")).await;
    assert_eq!(next_message(&mut a).await.id, sent.id);
}

async fn presence_is_hidden_across_a_block(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice.token).await;
    let bb = app.connect(&bob.token).await;
    send_ok(&bb, private(alice.id(), "hi")).await;
    // Bob's own arrival may still be on its way (his presence is worked out
    // after his connect): let it come before the block.
    while a.next_event_timeout(QUIET).await.is_some() {}
    assert_eq!(block(&app, &bob, alice.id()).await, 204);

    let (_, seen) = app
        .get(&format!("/api/users/{}", bob.id()), Some(&alice.token))
        .await;
    assert!(
        seen.get("online").is_none() && seen.get("last_seen").is_none(),
        "{seen}"
    );
    let (_, rows) = app.get("/api/conversations", Some(&alice.token)).await;
    assert_eq!(
        (&rows[0]["online"], &rows[0]["last_seen"]),
        (&Value::Null, &Value::Null)
    );
    let (_, rows) = app.get("/api/conversations", Some(&bob.token)).await;
    assert_eq!(rows[0]["online"], Value::Null, "neither way: {rows}");

    // Bob goes (offline is told 2 s after his last socket closes) and
    // comes back: alice hears of neither.
    bb.close();
    drop(bb);
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(3000);
    while let Ok(Some((name, data))) =
        tokio::time::timeout_at(until, a.next_event_timeout(WAIT)).await
    {
        assert_ne!(name, "presence", "presence across a block: {data}");
    }
    let _again = app.connect(&bob.token).await;
    while let Some((name, data)) = a.next_event_timeout(QUIET).await {
        assert_ne!(name, "presence", "presence across a block: {data}");
    }
}

async fn blocking_names_another_existing_user(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    assert_eq!(block(&app, &alice, alice.id()).await, 400);
    assert_eq!(block(&app, &alice, 9999).await, 404);
    assert_eq!(block(&app, &alice, 0).await, 404);
    assert_eq!(block(&app, &alice, bob.id()).await, 204);
    assert_eq!(block(&app, &alice, bob.id()).await, 204, "again: no change");
    let (s, _) = app.delete("/api/blocks/9999", Some(&alice.token)).await;
    assert_eq!(s, 204, "lifting a block that is not there");
    let (s, _) = app.get("/api/blocks", None).await;
    assert_eq!(s, 401);
}

backend_tests!(
    a_block_stops_private_writes_both_ways_until_lifted,
    a_block_leaves_groups_alone,
    presence_is_hidden_across_a_block,
    blocking_names_another_existing_user,
);
