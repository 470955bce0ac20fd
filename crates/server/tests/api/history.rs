//! History, conversations and catching up after being offline.

use palaver_protocol::{ConversationSummary, Message};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

/// The seqs of a history page of bob's conversation with `peer`, and `has_more`.
async fn page_of(app: &TestApp, who: &TestUser, peer: i64, q: &str) -> (Vec<i64>, bool) {
    let (s, body) = app
        .get(
            &format!("/api/messages?conversationType=private&receiverId={peer}{q}"),
            Some(&who.token),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let seqs = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    (seqs, body["has_more"].as_bool().unwrap())
}

async fn history_pages_forwards_and_backwards(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    for i in 1..=7 {
        send_ok(&a, private(bob.id(), &format!("m{i}"))).await;
    }
    let page = |q: &'static str| page_of(&app, &bob, alice.id(), q);
    assert_eq!(page("").await, (vec![1, 2, 3, 4, 5, 6, 7], false));
    assert_eq!(page("&limit=3").await, (vec![5, 6, 7], true), "newest page");
    assert_eq!(page("&limit=3&beforeSeq=5").await, (vec![2, 3, 4], true));
    assert_eq!(page("&limit=3&beforeSeq=2").await, (vec![1], false));
    assert_eq!(page("&afterSeq=2&limit=3").await, (vec![3, 4, 5], true));
    assert_eq!(page("&afterSeq=5&limit=3").await, (vec![6, 7], false));
    assert_eq!(page("&after_seq=2&before_seq=5").await, (vec![3, 4], false));
    assert_eq!(
        page("&limit=100000").await.0.len(),
        7,
        "limit is clamped, not refused"
    );
}

/// A page holds 50 messages unless asked for more, and at most 200; times
/// are RFC 3339 UTC with milliseconds.
async fn history_pages_default_to_50_and_are_capped_at_200(b: Backend) {
    let app = spawn_configured(b, unlimited).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let pending: Vec<_> = (1..=210)
        .map(|i| {
            a.emit_ack_deferred("message", &private(bob.id(), &format!("m{i}")))
                .unwrap()
        })
        .collect();
    for rx in pending {
        let ack = rx.await.unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let page = |q: &'static str| page_of(&app, &bob, alice.id(), q);
    let (seqs, more) = page("").await;
    assert_eq!(
        (seqs, more),
        ((161..=210).collect(), true),
        "the default page"
    );
    let (seqs, more) = page("&limit=1000").await;
    assert_eq!((seqs, more), ((11..=210).collect(), true), "clamped to 200");
    let (seqs, more) = page("&afterSeq=0&limit=1000").await;
    assert_eq!((seqs, more), ((1..=200).collect(), true));

    let (_, body) = app
        .get(
            &format!(
                "/api/messages?conversationType=private&receiverId={}&limit=1",
                alice.id()
            ),
            Some(&bob.token),
        )
        .await;
    let (_, me) = app.get("/api/me", Some(&bob.token)).await;
    for at in [&body["messages"][0]["created_at"], &me["created_at"]] {
        let at = at.as_str().unwrap();
        let shape: String = at
            .chars()
            .map(|c| if c.is_ascii_digit() { 'd' } else { c })
            .collect();
        assert_eq!(shape, "dddd-dd-ddTdd:dd:dd.dddZ", "{at}");
    }
}

async fn history_rejects_bad_parameters_and_outsiders(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let eve = app.register("eve").await;
    let g = app.group(&alice, "g", &[]).await;
    for q in [
        "conversationType=private".to_string(),
        "conversationType=chan&receiverId=1".into(),
        "conversationType=private&receiverId=x".into(),
        format!("conversationType=private&receiverId={}&limit=0", alice.id()),
        format!(
            "conversationType=private&receiverId={}&afterSeq=-1",
            alice.id()
        ),
    ] {
        let (s, body) = app
            .get(&format!("/api/messages?{q}"), Some(&eve.token))
            .await;
        assert_eq!(s, 400, "{q}: {body}");
        assert_eq!(body["error"]["code"], "invalid_payload");
    }
    let (s, _) = app
        .get(
            &format!("/api/messages?conversationType=group&receiverId={g}"),
            Some(&eve.token),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .get(
            "/api/messages?conversationType=group&receiverId=999",
            Some(&eve.token),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .get(
            "/api/messages?conversationType=private&receiverId=999",
            Some(&eve.token),
        )
        .await;
    assert_eq!(s, 404);
}

async fn conversations_list_most_recent_first_with_last_message(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let g = app.group(&alice, "g", &[carol.id()]).await;
    let empty = app.group(&alice, "quiet", &[]).await;
    let a = app.connect(&alice.token).await;
    send_ok(&a, private(bob.id(), "b1")).await;
    send_ok(&a, group_msg(g, "g1")).await;
    let last_bob = send_ok(&a, private(bob.id(), "b2")).await;

    let (s, body) = app.get("/api/conversations", Some(&alice.token)).await;
    assert_eq!(s, 200);
    let list: Vec<ConversationSummary> = serde_json::from_value(body).unwrap();
    let keys: Vec<(String, i64, i64)> = list
        .iter()
        .map(|c| {
            (
                c.conversation_type.as_str().to_string(),
                c.receiver_id,
                c.last_seq,
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("private".to_string(), bob.id(), 2),
            ("group".into(), g, 1),
            ("group".into(), empty, 0)
        ]
    );
    assert_eq!(list[0].last_message.as_ref(), Some(&last_bob));
    assert!(list[2].last_message.is_none());

    // From bob's side the private conversation names alice.
    let (_, body) = app.get("/api/conversations", Some(&bob.token)).await;
    let list: Vec<ConversationSummary> = serde_json::from_value(body).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].receiver_id, alice.id());
}

async fn a_client_that_was_offline_catches_up_with_nothing_missing(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bob_sock = app.connect(&bob.token).await;
    let first = send_ok(&a, private(bob.id(), "while online")).await;
    assert_eq!(next_message(&mut bob_sock).await, first);
    bob_sock.close();
    drop(bob_sock);

    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(send_ok(&a, private(bob.id(), &format!("missed {i}"))).await);
    }
    // Reconnect: compare last_seq with the last one held, fetch the gap.
    let _bob_sock = app.connect(&bob.token).await;
    let (_, body) = app.get("/api/conversations", Some(&bob.token)).await;
    let list: Vec<ConversationSummary> = serde_json::from_value(body).unwrap();
    assert_eq!(list[0].last_seq, 6);
    let (_, body) = app
        .get(
            &format!(
                "/api/messages?conversationType=private&receiverId={}&afterSeq={}",
                alice.id(),
                first.seq
            ),
            Some(&bob.token),
        )
        .await;
    let gap: Vec<Message> = serde_json::from_value(body["messages"].clone()).unwrap();
    assert_eq!(gap, missed);
    assert_eq!(body["has_more"], json!(false));
}

backend_tests!(
    history_pages_forwards_and_backwards,
    history_pages_default_to_50_and_are_capped_at_200,
    history_rejects_bad_parameters_and_outsiders,
    conversations_list_most_recent_first_with_last_message,
    a_client_that_was_offline_catches_up_with_nothing_missing,
);
