//! Read receipts, unread counts and typing indicators.

use palaver_protocol::ConversationSummary;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

/// The next event named `name`, skipping others.
async fn next_named(client: &mut palaver_client::Client, name: &str) -> Value {
    loop {
        let (n, data) = client
            .next_event_timeout(WAIT)
            .await
            .expect("an event arrives");
        if n == name {
            return data;
        }
    }
}

/// Asserts that no event named `name` arrives within [`QUIET`].
async fn none_named(client: &mut palaver_client::Client, name: &str) {
    while let Some((n, data)) = client.next_event_timeout(QUIET).await {
        assert_ne!(n, name, "unexpected {name}: {data}");
    }
}

async fn conversation(
    app: &TestApp,
    who: &TestUser,
    kind: &str,
    receiver: i64,
) -> ConversationSummary {
    let (s, body) = app.get("/api/conversations", Some(&who.token)).await;
    assert_eq!(s, 200, "{body}");
    let list: Vec<ConversationSummary> = serde_json::from_value(body).unwrap();
    list.into_iter()
        .find(|c| c.conversation_type.as_str() == kind && c.receiver_id == receiver)
        .expect("conversation listed")
}

async fn read(client: &palaver_client::Client, kind: &str, receiver: i64, seq: i64) -> Value {
    client
        .emit_ack(
            "read",
            &json!({"conversationType": kind, "receiverId": receiver, "seq": seq}),
        )
        .await
        .unwrap()
}

async fn read_position_moves_forward_only_and_is_relayed(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice.token).await;
    let mut b1 = app.connect(&bob.token).await;
    let mut b2 = app.connect(&bob.token).await;
    for i in 0..3 {
        send_ok(&a, private(bob.id(), &format!("m{i}"))).await;
    }
    let ack = read(&b1, "private", alice.id(), 2).await;
    assert_eq!(ack, json!({"ok": true, "read_seq": 2}));
    let expected = json!({"conversation_type": "private", "reader_id": bob.id(),
                          "receiver_id": alice.id(), "seq": 2});
    assert_eq!(next_named(&mut a, "read").await, expected);
    assert_eq!(
        next_named(&mut b2, "read").await,
        expected,
        "the reader's other socket"
    );
    none_named(&mut b1, "read").await;

    // Backwards is a no-op: the position stays, nobody is told.
    assert_eq!(
        read(&b1, "private", alice.id(), 1).await,
        json!({"ok": true, "read_seq": 2})
    );
    none_named(&mut a, "read").await;
    // Beyond the last message is refused.
    let ack = read(&b1, "private", alice.id(), 4).await;
    assert_eq!(ack["error"]["code"], "invalid_payload", "{ack}");
    let ack = read(&b1, "private", alice.id(), -1).await;
    assert_eq!(ack["error"]["code"], "invalid_payload", "{ack}");
    let ack = b1
        .emit_ack("read", &json!({"conversationType": "private"}))
        .await
        .unwrap();
    assert_eq!(ack["error"]["code"], "invalid_payload", "{ack}");
}

async fn unread_counts_messages_from_others_after_the_read_position(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let b1 = app.connect(&bob.token).await;
    for i in 0..3 {
        send_ok(&a, private(bob.id(), &format!("m{i}"))).await;
    }
    let c = conversation(&app, &bob, "private", alice.id()).await;
    assert_eq!((c.last_seq, c.read_seq, c.unread_count), (3, 0, 3));
    read(&b1, "private", alice.id(), 2).await;
    let c = conversation(&app, &bob, "private", alice.id()).await;
    assert_eq!((c.read_seq, c.unread_count), (2, 1));
    // A reply reads what came before it (before v1.1 the reply left
    // read_seq at 0 and three messages unread).
    send_ok(&b1, private(alice.id(), "reply")).await;
    let c = conversation(&app, &bob, "private", alice.id()).await;
    assert_eq!(
        (c.last_seq, c.read_seq, c.unread_count),
        (4, 4, 0),
        "own messages never unread"
    );
    send_ok(&a, private(bob.id(), "after the reply")).await;
    assert_eq!(
        conversation(&app, &bob, "private", alice.id())
            .await
            .unread_count,
        1
    );
    read(&b1, "private", alice.id(), 5).await;
    assert_eq!(
        conversation(&app, &bob, "private", alice.id())
            .await
            .unread_count,
        0
    );
    let c = conversation(&app, &alice, "private", bob.id()).await;
    assert_eq!(
        (c.read_seq, c.unread_count),
        (5, 0),
        "alice's last message reads bob's reply before it"
    );
}

async fn read_at_or_below_own_last_message_answers_it_and_relays_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice.token).await;
    let b1 = app.connect(&bob.token).await;
    for i in 0..3 {
        send_ok(&a, private(bob.id(), &format!("m{i}"))).await;
    }
    send_ok(&b1, private(alice.id(), "reply")).await;
    send_ok(&a, private(bob.id(), "m3")).await;
    for seq in [2, 4] {
        assert_eq!(
            read(&b1, "private", alice.id(), seq).await,
            json!({"ok": true, "read_seq": 4}),
            "read {seq}: the reply already read up to 4"
        );
    }
    none_named(&mut a, "read").await;
    // Past the reply, the position moves and is relayed as before.
    assert_eq!(
        read(&b1, "private", alice.id(), 5).await,
        json!({"ok": true, "read_seq": 5})
    );
    assert_eq!(next_named(&mut a, "read").await["seq"], 5);
}

async fn group_unread_counts_follow_membership(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let g = app.group(&alice, "g", &[bob.id()]).await;
    let a = app.connect(&alice.token).await;
    send_ok(&a, group_msg(g, "one")).await;
    send_ok(&a, group_msg(g, "two")).await;
    assert_eq!(conversation(&app, &bob, "group", g).await.unread_count, 2);
    // A member added later starts at the latest message: the system
    // message that adds them (v1.2) is their only unread one.
    app.post(
        &format!("/api/groups/{g}/members"),
        Some(&alice.token),
        json!({"userId": carol.id()}),
    )
    .await;
    let c = conversation(&app, &carol, "group", g).await;
    assert_eq!((c.read_seq, c.unread_count), (2, 1));
    assert_eq!(
        c.last_message.unwrap().system.unwrap().user_id,
        Some(carol.id())
    );
    send_ok(&a, group_msg(g, "three")).await;
    assert_eq!(conversation(&app, &carol, "group", g).await.unread_count, 2);
    assert_eq!(conversation(&app, &bob, "group", g).await.unread_count, 4);
    // A non-member cannot mark a group read.
    let outsider = app.register("dave").await;
    let d = app.connect(&outsider.token).await;
    assert_eq!(read(&d, "group", g, 1).await["error"]["code"], "forbidden");
}

async fn typing_is_relayed_to_the_others_only_and_never_stored(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let eve = app.register("eve").await;
    let g = app.group(&alice, "g", &[bob.id(), carol.id()]).await;
    let a1 = app.connect(&alice.token).await;
    let mut a2 = app.connect(&alice.token).await;
    let mut b1 = app.connect(&bob.token).await;
    let mut c1 = app.connect(&carol.token).await;
    let e1 = app.connect(&eve.token).await;

    let ack = a1
        .emit_ack(
            "typing",
            &json!({"conversationType": "group", "receiverId": g, "typing": true}),
        )
        .await
        .unwrap();
    assert_eq!(ack, json!({"ok": true}));
    let expected = json!({"conversation_type": "group", "sender_id": alice.id(), "receiver_id": g, "typing": true});
    assert_eq!(next_named(&mut b1, "typing").await, expected);
    assert_eq!(next_named(&mut c1, "typing").await, expected);
    none_named(&mut a2, "typing").await;

    let ack = a1
        .emit_ack(
            "typing",
            &json!({"conversationType": "private", "receiverId": bob.id(), "typing": false}),
        )
        .await
        .unwrap();
    assert_eq!(ack["ok"], true);
    assert_eq!(next_named(&mut b1, "typing").await["typing"], false);
    none_named(&mut c1, "typing").await;

    let ack = e1
        .emit_ack(
            "typing",
            &json!({"conversationType": "group", "receiverId": g, "typing": true}),
        )
        .await
        .unwrap();
    assert_eq!(ack["error"]["code"], "forbidden");
    assert!(
        app.history(&alice, "group", g, 0).await.is_empty(),
        "typing is never stored"
    );
}

async fn typing_floods_are_rate_limited_per_socket(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let other = app.connect(&alice.token).await;
    let payload = json!({"conversationType": "private", "receiverId": bob.id(), "typing": true});
    let mut limited = 0;
    for _ in 0..30 {
        let ack = a.emit_ack("typing", &payload).await.unwrap();
        if ack["ok"] == false {
            assert_eq!(ack["error"]["code"], "rate_limited");
            limited += 1;
        }
    }
    assert!(
        limited >= 10,
        "only {limited} of 30 rapid typing events were limited"
    );
    // Another socket is not affected.
    assert_eq!(
        other.emit_ack("typing", &payload).await.unwrap()["ok"],
        true
    );
}

async fn read_floods_are_rate_limited_per_user(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let other = app.connect(&alice.token).await;
    let b_sock = app.connect(&bob.token).await;
    send_ok(&a, private(bob.id(), "one")).await;
    let payload = json!({"conversationType": "private", "receiverId": bob.id(), "seq": 1});
    // Pipelined from two sockets of one user: every one is answered, those
    // past the user's burst of 50 `rate_limited` (a limit per socket would
    // let 100 through).
    let pending: Vec<_> = (0..200)
        .map(|i| {
            let socket = if i % 2 == 0 { &a } else { &other };
            socket.emit_ack_deferred("read", &payload).unwrap()
        })
        .collect();
    let mut limited = 0;
    for rx in pending {
        let ack = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .expect("every read is answered")
            .unwrap();
        if ack["ok"] == false {
            assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
            limited += 1;
        } else {
            assert_eq!(ack["read_seq"], 1, "{ack}");
        }
    }
    assert!(
        limited >= 130,
        "only {limited} of 200 pipelined reads were limited"
    );
    // Another user is not affected.
    assert_eq!(read(&b_sock, "private", alice.id(), 1).await["ok"], true);
}

backend_tests!(
    read_position_moves_forward_only_and_is_relayed,
    unread_counts_messages_from_others_after_the_read_position,
    read_at_or_below_own_last_message_answers_it_and_relays_nothing,
    group_unread_counts_follow_membership,
    typing_is_relayed_to_the_others_only_and_never_stored,
    typing_floods_are_rate_limited_per_socket,
    read_floods_are_rate_limited_per_user,
);

pub mod presence_tests {
    use super::*;

    /// The next `presence` event about `user`.
    async fn presence_of(client: &mut palaver_client::Client, user: i64) -> Value {
        loop {
            let data = next_named(client, "presence").await;
            if data["user_id"] == user {
                return data;
            }
        }
    }

    async fn presence_goes_to_contacts_once_per_user_not_per_socket(b: Backend) {
        let app = spawn_app(b).await;
        let alice = app.register("alice").await;
        let bob = app.register("bob").await;
        let stranger = app.register("stranger").await;
        let mut a = app.connect(&alice.token).await;
        let mut s = app.connect(&stranger.token).await;
        send_ok(&a, private(bob.id(), "are you there?")).await;

        let b1 = app.connect(&bob.token).await;
        let online = presence_of(&mut a, bob.id()).await;
        assert_eq!(online["online"], true, "{online}");
        assert!(online["last_seen"].is_string());
        let (_, user) = app
            .get(&format!("/api/users/{}", bob.id()), Some(&alice.token))
            .await;
        assert_eq!(user["online"], true);
        let (_, list) = app.get("/api/conversations", Some(&alice.token)).await;
        assert_eq!(list[0]["online"], true);

        // A second socket, and a flap of it, are no news.
        let b2 = app.connect(&bob.token).await;
        b2.close();
        none_named(&mut a, "presence").await;

        // The last socket leaving: offline after the grace period.
        b1.close();
        let offline = presence_of(&mut a, bob.id()).await;
        assert_eq!(offline["online"], false, "{offline}");
        let (_, user) = app
            .get(&format!("/api/users/{}", bob.id()), Some(&alice.token))
            .await;
        assert_eq!(user["online"], false);
        assert_eq!(user["last_seen"], offline["last_seen"]);
        none_named(&mut s, "presence").await; // shares no conversation with bob
    }

    backend_tests!(presence_goes_to_contacts_once_per_user_not_per_socket);
}
