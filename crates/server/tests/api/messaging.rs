//! The `message` event: acks, delivery, validation, idempotency, order.

use std::collections::HashSet;

use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

async fn private_message_is_acked_with_the_stored_message_and_delivered(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bob_sock = app.connect(&bob.token).await;

    let sent = send_ok(&a, private(bob.id(), "hi bob")).await;
    assert_eq!(sent.sender_id, alice.id());
    assert_eq!(sent.receiver_id, bob.id());
    assert_eq!(sent.seq, 1);
    assert_eq!(sent.content, "hi bob");
    assert!(sent.id > 0);
    assert_eq!(next_message(&mut bob_sock).await, sent);
}

/// The workspace's own client in the client matrix (e2e/clients.mjs and
/// e2e/clients.py run the same flow with the official JavaScript client and
/// python-socketio): both ends reconnect, each with a new session, and the
/// conversation goes on live where it stopped.
async fn clients_that_reconnect_send_and_receive_live_again(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bob_sock = app.connect(&bob.token).await;
    let first = send_ok(&a, private(bob.id(), "before")).await;
    assert_eq!(next_message(&mut bob_sock).await, first);

    let (a_sid, bob_sid) = (a.sid.clone(), bob_sock.sid.clone());
    a.close();
    bob_sock.close();
    drop((a, bob_sock));
    let a = app.connect(&alice.token).await;
    let mut bob_sock = app.connect(&bob.token).await;
    assert_ne!(a.sid, a_sid, "a reconnect is a new socket");
    assert_ne!(bob_sock.sid, bob_sid, "a reconnect is a new socket");

    let second = send_ok(&a, private(bob.id(), "after")).await;
    assert_eq!(second.seq, first.seq + 1);
    assert_eq!(next_message(&mut bob_sock).await, second);
    no_message(&mut bob_sock).await; // the first is not delivered again
}

async fn ack_comes_only_after_the_message_is_committed(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    for i in 0..20 {
        let sent = send_ok(&a, private(bob.id(), &format!("m{i}"))).await;
        // Readable through another connection the moment the ack arrives.
        let stored = app.history(&bob, "private", alice.id(), sent.seq - 1).await;
        assert_eq!(stored.first(), Some(&sent));
    }
}

async fn every_socket_of_the_receiver_and_the_senders_other_sockets_get_it(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let mut a1 = app.connect(&alice.token).await;
    let mut a2 = app.connect(&alice.token).await;
    let mut b1 = app.connect(&bob.token).await;
    let mut b2 = app.connect(&bob.token).await;
    let mut c = app.connect(&carol.token).await;

    let sent = send_ok(&a1, private(bob.id(), "to all my devices")).await;
    assert_eq!(next_message(&mut b1).await, sent);
    assert_eq!(next_message(&mut b2).await, sent);
    assert_eq!(next_message(&mut a2).await, sent, "sender's other socket");
    no_message(&mut a1).await; // not echoed to the sending socket
    no_message(&mut c).await; // nor to anyone else
}

async fn group_message_reaches_every_members_sockets_only(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let dave = app.register("dave").await;
    let g = app.group(&alice, "friends", &[bob.id(), carol.id()]).await;
    let a1 = app.connect(&alice.token).await;
    let mut a2 = app.connect(&alice.token).await;
    let mut b1 = app.connect(&bob.token).await;
    let mut c1 = app.connect(&carol.token).await;
    let mut d1 = app.connect(&dave.token).await;

    let sent = send_ok(&a1, group_msg(g, "hello group")).await;
    assert_eq!(sent.receiver_id, g);
    assert_eq!(sent.seq, 1);
    for s in [&mut a2, &mut b1, &mut c1] {
        assert_eq!(next_message(s).await, sent);
    }
    no_message(&mut d1).await;
}

async fn group_send_by_non_member_is_forbidden(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let eve = app.register("eve").await;
    let g = app.group(&alice, "private club", &[]).await;
    let mut a = app.connect(&alice.token).await;
    let e = app.connect(&eve.token).await;
    assert_eq!(send_err(&e, group_msg(g, "let me in")).await, "forbidden");
    no_message(&mut a).await;
    assert!(app.history(&alice, "group", g, 0).await.is_empty());
}

async fn unknown_receiver_or_group_is_not_found(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let a = app.connect(&alice.token).await;
    assert_eq!(send_err(&a, private(999, "anyone?")).await, "not_found");
    assert_eq!(send_err(&a, group_msg(999, "anyone?")).await, "not_found");
}

async fn spoofed_sender_id_is_forbidden_and_the_original_payload_shape_works(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bob_sock = app.connect(&bob.token).await;
    // What a client written for the original server sends.
    let original = json!({"conversationType": "private", "senderId": alice.id(),
                          "receiverId": bob.id(), "content": "like before"});
    let sent = send_ok(&a, original).await;
    assert_eq!(next_message(&mut bob_sock).await, sent);
    let spoofed = json!({"conversationType": "private", "senderId": bob.id(),
                         "receiverId": bob.id(), "content": "I am bob"});
    assert_eq!(send_err(&a, spoofed).await, "forbidden");
    no_message(&mut bob_sock).await;
}

async fn snake_case_payload_is_accepted(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let sent = send_ok(
        &a,
        json!({"conversation_type": "private", "receiver_id": bob.id(), "content": "snake",
               "client_msg_id": "s-1", "sender_id": alice.id()}),
    )
    .await;
    assert_eq!(sent.client_msg_id.as_deref(), Some("s-1"));
}

async fn sending_to_yourself_is_allowed(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let a1 = app.connect(&alice.token).await;
    let mut a2 = app.connect(&alice.token).await;
    let sent = send_ok(&a1, private(alice.id(), "note to self")).await;
    assert_eq!(next_message(&mut a2).await, sent);
}

async fn malformed_payloads_get_error_acks_and_store_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bob_sock = app.connect(&bob.token).await;
    let to = bob.id();
    let cases = [
        (json!("just a string"), "invalid_payload"),
        (json!(42), "invalid_payload"),
        (json!(null), "invalid_payload"),
        (json!([1, 2]), "invalid_payload"),
        (json!({"receiverId": to, "content": "x"}), "invalid_payload"),
        (
            json!({"conversationType": "private", "content": "x"}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "private", "receiverId": to}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "private", "receiverId": "bob", "content": "x"}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "private", "receiverId": to, "content": 5}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "private", "receiverId": -3, "content": "x"}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "channel", "receiverId": to, "content": "x"}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "private", "receiverId": to, "content": ""}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "private", "receiverId": to, "content": "x",
                "clientMsgId": "c".repeat(65)}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "private", "receiverId": to, "content": "x",
                "clientMsgId": 7}),
            "invalid_payload",
        ),
        (
            json!({"conversationType": "private", "receiverId": to,
                "content": "x".repeat(4001)}),
            "too_large",
        ),
    ];
    for (payload, code) in cases {
        assert_eq!(
            send_err(&a, payload.clone()).await,
            code,
            "payload {payload}"
        );
    }
    // The error names the offending field.
    let ack = a
        .emit_ack(
            "message",
            &json!({"conversationType": "private", "receiverId": to, "content": 5}),
        )
        .await
        .unwrap();
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content"),
        "{ack}"
    );
    no_message(&mut bob_sock).await;
    assert!(app.history(&alice, "private", to, 0).await.is_empty());
    // The connection survived all of it.
    let ok = send_ok(&a, private(to, &"x".repeat(4000))).await;
    assert_eq!(ok.seq, 1);
}

async fn unknown_event_is_answered_with_an_error_ack(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let a = app.connect(&alice.token).await;
    let ack = a.emit_ack("shout", &json!({"x": 1})).await.unwrap();
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "invalid_payload");
    assert!(ack["error"]["message"].as_str().unwrap().contains("shout"));
}

async fn retry_with_the_same_client_msg_id_returns_the_original_and_delivers_once(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bob_sock = app.connect(&bob.token).await;
    let payload = json!({"conversationType": "private", "receiverId": bob.id(),
                         "content": "once", "clientMsgId": "c-81"});
    let first = send_ok(&a, payload.clone()).await;
    let again = send_ok(&a, payload.clone()).await;
    assert_eq!(first, again);
    assert_eq!(next_message(&mut bob_sock).await, first);
    no_message(&mut bob_sock).await;
    assert_eq!(
        app.history(&bob, "private", alice.id(), 0).await,
        vec![first]
    );

    // The same id from a fresh connection is still the same message.
    let a2 = app.connect(&alice.token).await;
    let third = send_ok(&a2, payload).await;
    assert_eq!(third.id, again.id);
}

async fn same_client_msg_id_with_different_content_is_a_conflict(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    send_ok(
        &a,
        json!({"conversationType": "private", "receiverId": bob.id(),
                       "content": "one", "clientMsgId": "k"}),
    )
    .await;
    let code = send_err(
        &a,
        json!({"conversationType": "private", "receiverId": bob.id(),
                                   "content": "two", "clientMsgId": "k"}),
    )
    .await;
    assert_eq!(code, "conflict");
    // Another sender may use the same key.
    let b_sock = app.connect(&bob.token).await;
    send_ok(
        &b_sock,
        json!({"conversationType": "private", "receiverId": alice.id(),
                            "content": "mine", "clientMsgId": "k"}),
    )
    .await;
}

async fn sends_without_waiting_for_acks_are_committed_and_delivered_in_order(b: Backend) {
    let app = spawn_configured(b, unlimited).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let g = app.group(&alice, "g", &[bob.id(), carol.id()]).await;
    let a = app.connect(&alice.token).await;
    let mut bob_sock = app.connect(&bob.token).await;
    // Far more than socketioxide's default per-socket queue (128), which once
    // dropped acks under load.
    const N: usize = 1000;
    // Interleave a private and a group conversation, firing all at once.
    let mut pending = Vec::new();
    for i in 0..N {
        let payload = if i % 2 == 0 {
            private(bob.id(), &format!("{i}"))
        } else {
            group_msg(g, &format!("{i}"))
        };
        pending.push(a.emit_ack_deferred("message", &payload).unwrap());
    }
    let mut acked = Vec::new();
    for rx in pending {
        let ack = tokio::time::timeout(WAIT, rx).await.unwrap().unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
        acked.push(
            serde_json::from_value::<palaver_protocol::Message>(ack["message"].clone()).unwrap(),
        );
    }
    // Commit order == send order: ids ascend, seqs count up per conversation.
    assert!(acked.windows(2).all(|w| w[0].id < w[1].id));
    let private_seqs: Vec<i64> = acked.iter().step_by(2).map(|m| m.seq).collect();
    let group_seqs: Vec<i64> = acked.iter().skip(1).step_by(2).map(|m| m.seq).collect();
    assert_eq!(private_seqs, (1..=N as i64 / 2).collect::<Vec<_>>());
    assert_eq!(group_seqs, (1..=N as i64 / 2).collect::<Vec<_>>());
    // Delivery order == send order.
    for expected in &acked {
        assert_eq!(&next_message(&mut bob_sock).await, expected);
    }
}

async fn seq_is_gap_free_and_unique_with_concurrent_senders(b: Backend) {
    let app = spawn_app(b).await;
    let mut users = Vec::new();
    for name in ["user1", "user2", "user3", "user4"] {
        users.push(app.register(name).await);
    }
    let ids: Vec<i64> = users[1..].iter().map(|u| u.id()).collect();
    let g = app.group(&users[0], "busy", &ids).await;
    let mut tasks = Vec::new();
    for u in &users {
        let client = app.connect(&u.token).await;
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                let m = send_ok(&client, group_msg(g, &format!("{i}"))).await;
                seqs.push(m.seq);
            }
            seqs
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for s in t.await.unwrap() {
            assert!(all.insert(s), "seq {s} handed out twice");
        }
    }
    assert_eq!(all, (1..=200).collect::<HashSet<i64>>());
    let stored = app.history(&users[0], "group", g, 0).await;
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
}

async fn member_added_can_send_at_once_and_removed_member_stops_receiving(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let g = app.group(&alice, "g", &[]).await;
    let a = app.connect(&alice.token).await;
    let mut b1 = app.connect(&bob.token).await;
    let mut b2 = app.connect(&bob.token).await;
    // Warm the roster cache, then add bob: he can send and receive at once.
    send_ok(&a, group_msg(g, "before bob")).await;
    let (status, _) = app
        .post(
            &format!("/api/groups/{g}/members"),
            Some(&alice.token),
            json!({"userId": bob.id()}),
        )
        .await;
    assert_eq!(status, 201);
    // Both of bob's sockets are told he was added (v1.2).
    next_system(&mut b1, "member_added").await;
    next_system(&mut b2, "member_added").await;
    send_ok(&b1, group_msg(g, "hi, I'm bob")).await;
    let m = send_ok(&a, group_msg(g, "welcome")).await;
    assert_eq!(next_message(&mut b1).await, m);
    assert_eq!(next_message(&mut b2).await.content, "hi, I'm bob");
    assert_eq!(next_message(&mut b2).await, m);
    // Removed: no more deliveries on any socket, and no more sending.
    let (status, _) = app
        .delete(
            &format!("/api/groups/{g}/members/{}", bob.id()),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, 204);
    // Told of his removal, then nothing more.
    next_system(&mut b1, "member_removed").await;
    next_system(&mut b2, "member_removed").await;
    send_ok(&a, group_msg(g, "bob is gone")).await;
    no_message(&mut b1).await;
    no_message(&mut b2).await;
    assert_eq!(
        send_err(&b1, group_msg(g, "still here?")).await,
        "forbidden"
    );
}

/// Text one of the databases cannot store, or would compare differently
/// (PostgreSQL refuses NUL; MySQL's unique index ignores trailing spaces),
/// is refused at the edge on every backend, and fails no one else's send
/// in the same batch.
async fn text_the_databases_disagree_on_is_refused_and_fails_no_other_send(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let a = app.connect(&alice.token).await;
    let c = app.connect(&carol.token).await;
    let to = bob.id();
    let send = |content: &str, key: &str| {
        json!({"conversationType": "private", "receiverId": to, "content": content,
            "clientMsgId": key})
    };
    // Pipelined from two users, so that the writer takes them together.
    let cases = [
        (&c, send("carol 1", "k"), "ok"),
        (&a, send("nul \u{0} inside", "a1"), "invalid_payload"),
        (&c, send("carol 2", "k "), "invalid_payload"),
        (&a, send("alice 1", "a\u{0}2"), "invalid_payload"),
        (&c, send("carol 3", " k"), "invalid_payload"),
        (&c, send("carol 4", "k2"), "ok"),
        (&a, send("alice 2", "a3"), "ok"),
    ];
    let pending: Vec<_> = cases
        .iter()
        .map(|(client, payload, want)| {
            let rx = client.emit_ack_deferred("message", payload).unwrap();
            (rx, *want, payload)
        })
        .collect();
    for (rx, want, payload) in pending {
        let ack = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .expect("answered")
            .unwrap();
        let got = if ack["ok"] == true {
            "ok"
        } else {
            ack["error"]["code"].as_str().unwrap_or("?")
        };
        assert_eq!(got, want, "{payload}: {ack}");
    }
    let contents = |m: Vec<palaver_protocol::Message>| -> Vec<String> {
        m.into_iter().map(|m| m.content).collect()
    };
    assert_eq!(
        contents(app.history(&carol, "private", to, 0).await),
        ["carol 1", "carol 4"]
    );
    assert_eq!(
        contents(app.history(&alice, "private", to, 0).await),
        ["alice 2"]
    );

    // The same over HTTP: a group name with a control character is refused,
    // a user search or a login with NUL finds no one (not a 500).
    let (status, body) = app
        .post(
            "/api/groups",
            Some(&alice.token),
            json!({"name": "a\u{0}b"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .post(
            "/api/groups",
            Some(&alice.token),
            json!({"name": "club", "memberIds": null}),
        )
        .await;
    assert_eq!(status, 201, "memberIds null is as if absent: {body}");
    let (status, body) = app.get("/api/users?q=al%00", Some(&alice.token)).await;
    assert_eq!((status, body), (200, json!([])));
    let (status, body) = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "al\u{0}ice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
}

backend_tests!(
    private_message_is_acked_with_the_stored_message_and_delivered,
    clients_that_reconnect_send_and_receive_live_again,
    ack_comes_only_after_the_message_is_committed,
    every_socket_of_the_receiver_and_the_senders_other_sockets_get_it,
    group_message_reaches_every_members_sockets_only,
    group_send_by_non_member_is_forbidden,
    unknown_receiver_or_group_is_not_found,
    spoofed_sender_id_is_forbidden_and_the_original_payload_shape_works,
    snake_case_payload_is_accepted,
    sending_to_yourself_is_allowed,
    malformed_payloads_get_error_acks_and_store_nothing,
    unknown_event_is_answered_with_an_error_ack,
    retry_with_the_same_client_msg_id_returns_the_original_and_delivers_once,
    same_client_msg_id_with_different_content_is_a_conflict,
    sends_without_waiting_for_acks_are_committed_and_delivered_in_order,
    seq_is_gap_free_and_unique_with_concurrent_senders,
    member_added_can_send_at_once_and_removed_member_stops_receiving,
    text_the_databases_disagree_on_is_refused_and_fails_no_other_send,
);
