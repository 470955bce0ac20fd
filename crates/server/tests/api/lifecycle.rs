//! The message life cycle (PROTOCOL v1.2): edit, delete, reply, react,
//! mention, and catching up on changes, on every backend.

use std::time::Duration;

use palaver_protocol::{ConversationSummary, Message};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

fn change(kind: &str, receiver: i64, seq: i64) -> Value {
    json!({"conversationType": kind, "receiverId": receiver, "seq": seq})
}

fn edit(kind: &str, receiver: i64, seq: i64, content: &str) -> Value {
    let mut v = change(kind, receiver, seq);
    v["content"] = json!(content);
    v
}

/// Emits `event` and returns its ack.
async fn ack_of(client: &palaver_client::Client, event: &str, payload: Value) -> Value {
    client.emit_ack(event, &payload).await.expect("ack")
}

async fn ok_message(client: &palaver_client::Client, event: &str, payload: Value) -> Message {
    let ack = ack_of(client, event, payload).await;
    assert_eq!(ack["ok"], true, "expected ok, got {ack}");
    serde_json::from_value(ack["message"].clone()).unwrap()
}

async fn err_code(client: &palaver_client::Client, event: &str, payload: Value) -> String {
    let ack = ack_of(client, event, payload).await;
    assert_eq!(ack["ok"], false, "expected an error, got {ack}");
    ack["error"]["code"].as_str().unwrap().to_string()
}

/// The next `message_updated` event (other events are skipped).
async fn next_update(client: &mut palaver_client::Client) -> Message {
    loop {
        let (name, data) = client
            .next_event_timeout(WAIT)
            .await
            .expect("a message_updated event arrives");
        if name == "message_updated" {
            return serde_json::from_value(data).unwrap();
        }
    }
}

/// Asserts that no `message_updated` arrives within [`QUIET`].
async fn no_update(client: &mut palaver_client::Client) {
    while let Some((name, data)) = client.next_event_timeout(QUIET).await {
        assert_ne!(name, "message_updated", "unexpected update {data}");
    }
}

async fn conversation_with(app: &TestApp, who: &TestUser, peer: i64) -> ConversationSummary {
    let (s, body) = app.get("/api/conversations", Some(&who.token)).await;
    assert_eq!(s, 200, "{body}");
    let rows: Vec<ConversationSummary> = serde_json::from_value(body).unwrap();
    rows.into_iter()
        .find(|r| r.receiver_id == peer)
        .expect("the conversation is listed")
}

async fn a_sender_edits_their_message_and_every_participant_sees_it(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut a2 = app.connect(&alice.token).await;
    let mut bb = app.connect(&bob.token).await;
    let sent = send_ok(&a, private(bob.id(), "helo")).await;
    assert_eq!(next_message(&mut bb).await.id, sent.id);
    assert_eq!(next_message(&mut a2).await.id, sent.id);

    let edited = ok_message(&a, "edit", edit("private", bob.id(), sent.seq, "hello")).await;
    assert_eq!((edited.id, edited.seq), (sent.id, sent.seq), "same message");
    assert_eq!(edited.content, "hello");
    assert!(edited.edited_at.is_some());
    assert_eq!(edited.change_seq, 1, "the conversation's first change");
    assert_eq!(next_update(&mut bb).await, edited, "the peer is told");
    assert_eq!(
        next_update(&mut a2).await,
        edited,
        "so are the editor's other sockets"
    );

    let history = app.history(&bob, "private", alice.id(), 0).await;
    assert_eq!(
        history,
        vec![edited.clone()],
        "history has the current content"
    );
    let row = conversation_with(&app, &bob, alice.id()).await;
    assert_eq!(row.last_change, 1);
    assert_eq!(row.last_message.unwrap().content, "hello");
}

async fn only_the_sender_edits_and_a_deleted_message_cannot_be(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let bb = app.connect(&bob.token).await;
    let sent = send_ok(&a, private(bob.id(), "mine")).await;
    let to_alice = |seq, content: &str| edit("private", alice.id(), seq, content);
    assert_eq!(
        err_code(&bb, "edit", to_alice(sent.seq, "theirs")).await,
        "forbidden"
    );
    let to_bob = |seq, content: &str| edit("private", bob.id(), seq, content);
    assert_eq!(err_code(&a, "edit", to_bob(99, "x")).await, "not_found");
    assert_eq!(
        err_code(&a, "edit", to_bob(0, "x")).await,
        "invalid_payload"
    );
    assert_eq!(
        err_code(&a, "edit", to_bob(sent.seq, "")).await,
        "invalid_payload"
    );
    let long = "x".repeat(4001);
    assert_eq!(
        err_code(&a, "edit", to_bob(sent.seq, &long)).await,
        "too_large"
    );
    let no_content = change("private", bob.id(), sent.seq);
    assert_eq!(err_code(&a, "edit", no_content).await, "invalid_payload");

    ok_message(&a, "delete", change("private", bob.id(), sent.seq)).await;
    assert_eq!(
        err_code(&a, "edit", to_bob(sent.seq, "again")).await,
        "conflict"
    );
    let history = app.history(&alice, "private", bob.id(), 0).await;
    assert_eq!(history[0].content, "", "nothing any refused edit wrote");
}

async fn a_deleted_message_is_a_tombstone_that_keeps_its_place(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bb = app.connect(&bob.token).await;
    let first = send_ok(&a, private(bob.id(), "oops")).await;
    let second = send_ok(&a, private(bob.id(), "fine")).await;
    next_message(&mut bb).await;
    next_message(&mut bb).await;

    let gone = ok_message(&a, "delete", change("private", bob.id(), first.seq)).await;
    assert_eq!((gone.id, gone.seq), (first.id, first.seq));
    assert_eq!(gone.content, "");
    assert!(gone.deleted_at.is_some());
    assert_eq!(next_update(&mut bb).await, gone, "the peer is told");

    let third = send_ok(&a, private(bob.id(), "after")).await;
    assert_eq!(third.seq, second.seq + 1, "no gap, no reuse");
    let seqs: Vec<(i64, String)> = app
        .history(&bob, "private", alice.id(), 0)
        .await
        .into_iter()
        .map(|m| (m.seq, m.content))
        .collect();
    assert_eq!(
        seqs,
        vec![(1, "".into()), (2, "fine".into()), (3, "after".into())]
    );
}

async fn repeating_an_edit_or_a_delete_changes_nothing_twice(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bb = app.connect(&bob.token).await;
    let sent = send_ok(&a, private(bob.id(), "v1")).await;
    next_message(&mut bb).await;
    let once = ok_message(&a, "edit", edit("private", bob.id(), sent.seq, "v2")).await;
    let twice = ok_message(&a, "edit", edit("private", bob.id(), sent.seq, "v2")).await;
    assert_eq!(once, twice, "the retry answers as the first did");
    next_update(&mut bb).await;
    no_update(&mut bb).await;

    let del = change("private", bob.id(), sent.seq);
    let once = ok_message(&a, "delete", del.clone()).await;
    let twice = ok_message(&a, "delete", del).await;
    assert_eq!(once, twice);
    assert_eq!(once.change_seq, 2, "the repeats took no change position");
    next_update(&mut bb).await;
    no_update(&mut bb).await;
}

/// With `--delete-window-secs 1`: the sender's own delete is refused after
/// a second, while a group's owner deletes any message at any time and a
/// plain member deletes nobody else's.
async fn the_delete_window_binds_the_sender_but_not_a_groups_owner(b: Backend) {
    let app = spawn_configured(b, |c| c.delete_window_secs = 1).await;
    let owner = app.register("owner").await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    let g = app.group(&owner, "g", &[alice.id(), carol.id()]).await;
    let o = app.connect(&owner.token).await;
    let a = app.connect(&alice.token).await;
    let c = app.connect(&carol.token).await;
    let old = send_ok(&a, group_msg(g, "old")).await;
    let fresh = send_ok(&a, group_msg(g, "fresh")).await;
    assert_eq!(
        err_code(&c, "delete", change("group", g, old.seq)).await,
        "forbidden",
        "a member deletes nobody else's message"
    );
    ok_message(&a, "delete", change("group", g, fresh.seq)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ack = ack_of(&a, "delete", change("group", g, old.seq)).await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delete window"),
        "{ack}"
    );
    let gone = ok_message(&o, "delete", change("group", g, old.seq)).await;
    assert!(
        gone.deleted_at.is_some(),
        "the owner deletes it after the window"
    );
}

async fn outsiders_change_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;
    let g = app.group(&alice, "g", &[bob.id()]).await;
    let a = app.connect(&alice.token).await;
    let m = app.connect(&mallory.token).await;
    let sent = send_ok(&a, group_msg(g, "members only")).await;
    for event in ["edit", "delete"] {
        let payload = edit("group", g, sent.seq, "pwned");
        assert_eq!(err_code(&m, event, payload).await, "forbidden", "{event}");
    }
    let missing = edit("group", 9999, 1, "x");
    assert_eq!(err_code(&m, "edit", missing).await, "not_found");
    let history = app.history(&alice, "group", g, 0).await;
    assert_eq!(history, vec![sent]);
}

async fn a_reply_shows_the_answered_message_as_it_now_is(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice.token).await;
    let bb = app.connect(&bob.token).await;
    let question = send_ok(&a, private(bob.id(), "lunch?")).await;
    let mut reply = private(alice.id(), "yes");
    reply["replyToSeq"] = json!(question.seq);
    let answer = send_ok(&bb, reply).await;
    let shown = answer.reply_to.clone().expect("reply_to");
    assert_eq!(
        (shown.seq, shown.sender_id, shown.excerpt.as_deref()),
        (question.seq, alice.id(), Some("lunch?"))
    );
    assert_eq!(
        next_message(&mut a).await,
        answer,
        "delivered with reply_to"
    );

    ok_message(
        &a,
        "edit",
        edit("private", bob.id(), question.seq, "dinner?"),
    )
    .await;
    let history = app.history(&alice, "private", bob.id(), 0).await;
    let excerpt = history[1].reply_to.as_ref().unwrap().excerpt.clone();
    assert_eq!(
        excerpt.as_deref(),
        Some("dinner?"),
        "the excerpt follows edits"
    );
    ok_message(&a, "delete", change("private", bob.id(), question.seq)).await;
    let history = app.history(&bob, "private", alice.id(), 0).await;
    let shown = history[1].reply_to.clone().unwrap();
    assert_eq!(
        (shown.seq, shown.excerpt),
        (question.seq, None),
        "gone with it"
    );
    let row = conversation_with(&app, &alice, bob.id()).await;
    let last = row.last_message.unwrap();
    assert_eq!(last.reply_to.unwrap().seq, question.seq, "also in the list");
}

async fn a_reply_must_name_a_message_of_its_conversation(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let a = app.connect(&alice.token).await;
    for i in 1..=3 {
        send_ok(&a, private(carol.id(), &format!("to carol {i}"))).await;
    }
    send_ok(&a, private(bob.id(), "to bob")).await;
    let with_reply = |seq: Value| {
        let mut p = private(bob.id(), "re");
        p["replyToSeq"] = seq;
        p
    };
    assert_eq!(
        send_err(&a, with_reply(json!(3))).await,
        "not_found",
        "seq 3 is carol's"
    );
    assert_eq!(send_err(&a, with_reply(json!(0))).await, "invalid_payload");
    assert_eq!(
        send_err(&a, with_reply(json!("1"))).await,
        "invalid_payload"
    );
    assert_eq!(app.history(&bob, "private", alice.id(), 0).await.len(), 1);
}

async fn changes_are_caught_up_in_change_order(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut seqs = Vec::new();
    for i in 1..=4 {
        seqs.push(send_ok(&a, private(bob.id(), &format!("m{i}"))).await.seq);
    }
    let to_bob = |seq| edit("private", bob.id(), seq, "changed");
    ok_message(&a, "edit", to_bob(seqs[2])).await; // change 1
    ok_message(&a, "delete", change("private", bob.id(), seqs[0])).await; // 2
    ok_message(&a, "edit", to_bob(seqs[1])).await; // 3
    ok_message(&a, "delete", change("private", bob.id(), seqs[2])).await; // 4: again m3

    let (app, bob, alice_id) = (&app, &bob, alice.id());
    let changed = |q: String| async move {
        let path = format!("/api/messages?conversationType=private&receiverId={alice_id}{q}");
        app.get(&path, Some(&bob.token)).await
    };
    let (s, body) = changed("&changedAfter=0".into()).await;
    assert_eq!(s, 200, "{body}");
    let got: Vec<(i64, i64)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["change_seq"].as_i64().unwrap(),
                m["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(2, 1), (3, 2), (4, 3)],
        "each message once, at its last change"
    );
    let (_, body) = changed("&changedAfter=2&limit=1".into()).await;
    assert_eq!(body["messages"][0]["seq"], 2);
    assert_eq!(body["has_more"], true);
    let (_, body) = changed("&changedAfter=4".into()).await;
    assert_eq!(
        (
            body["messages"].as_array().unwrap().len(),
            &body["has_more"]
        ),
        (0, &json!(false))
    );
    for bad in [
        "&changedAfter=-1",
        "&changedAfter=0&afterSeq=1",
        "&changedAfter=0&beforeSeq=3",
    ] {
        let (s, body) = changed(bad.into()).await;
        assert_eq!(
            (s, &body["error"]["code"]),
            (400, &json!("invalid_payload")),
            "{bad}"
        );
    }
    assert_eq!(conversation_with(app, bob, alice_id).await.last_change, 4);
}

/// A socket's send, edit and delete, emitted without waiting, apply and
/// reach the peer in the order sent.
async fn a_sockets_changes_apply_in_the_order_sent(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let mut bb = app.connect(&bob.token).await;
    let sent = send_ok(&a, private(bob.id(), "v1")).await;
    let mut acks: Vec<_> = ["v2", "v3", "v4"]
        .iter()
        .map(|c| {
            a.emit_ack_deferred("edit", &edit("private", bob.id(), sent.seq, c))
                .unwrap()
        })
        .collect();
    let delete = change("private", bob.id(), sent.seq);
    acks.push(a.emit_ack_deferred("delete", &delete).unwrap());
    let mut positions = Vec::new();
    let mut all = Vec::new();
    for rx in acks {
        all.push(rx.await.unwrap());
    }
    for ack in all.iter() {
        assert_eq!(ack["ok"], true, "{all:?}");
        positions.push(ack["message"]["change_seq"].as_i64().unwrap());
    }
    assert_eq!(positions, vec![1, 2, 3, 4]);
    assert_eq!(next_message(&mut bb).await.id, sent.id);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let m = next_update(&mut bb).await;
        seen.push((m.change_seq, m.content));
    }
    let want: Vec<(i64, String)> = vec![
        (1, "v2".into()),
        (2, "v3".into()),
        (3, "v4".into()),
        (4, "".into()),
    ];
    assert_eq!(seen, want);
}

/// Edits draw on the sender's message rate like sends.
async fn edits_count_against_the_message_rate(b: Backend) {
    let app = spawn_configured(b, |c| {
        c.message_rate = 1;
        c.message_burst = 2;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let sent = send_ok(&a, private(bob.id(), "one")).await;
    ok_message(&a, "edit", edit("private", bob.id(), sent.seq, "two")).await;
    let code = err_code(&a, "edit", edit("private", bob.id(), sent.seq, "three")).await;
    assert_eq!(code, "rate_limited");
}

fn react(receiver: i64, seq: i64, emoji: &str, on: bool) -> Value {
    let mut v = change("private", receiver, seq);
    v["emoji"] = json!(emoji);
    v["on"] = json!(on);
    v
}

/// The `reaction` of an ok `react` ack.
async fn ok_reaction(client: &palaver_client::Client, payload: Value) -> Value {
    let ack = ack_of(client, "react", payload).await;
    assert_eq!(ack["ok"], true, "expected ok, got {ack}");
    ack["reaction"].clone()
}

/// The next `reaction` event, or `None` within [`QUIET`].
async fn next_reaction(client: &mut palaver_client::Client) -> Option<Value> {
    while let Some((name, data)) = client.next_event_timeout(QUIET).await {
        if name == "reaction" {
            return Some(data);
        }
    }
    None
}

async fn a_reaction_counts_once_per_user_and_emoji(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice.token).await;
    let bb = app.connect(&bob.token).await;
    let sent = send_ok(&a, private(bob.id(), "cake?")).await;
    let r = ok_reaction(&bb, react(alice.id(), sent.seq, "👍", true)).await;
    assert_eq!(
        (&r["emoji"], &r["count"], &r["on"], &r["user_id"]),
        (&json!("👍"), &json!(1), &json!(true), &json!(bob.id()))
    );
    assert_eq!(
        (&r["message_id"], &r["change_seq"]),
        (&json!(sent.id), &json!(1))
    );
    assert_eq!(
        next_reaction(&mut a).await,
        Some(r.clone()),
        "the sender is told"
    );
    let again = ok_reaction(&bb, react(alice.id(), sent.seq, "👍", true)).await;
    assert_eq!(again, r, "a repeat answers as the first did");
    assert_eq!(next_reaction(&mut a).await, None, "and is not delivered");
    let both = ok_reaction(&a, react(bob.id(), sent.seq, "👍", true)).await;
    assert_eq!(both["count"], 2);
    ok_reaction(&a, react(bob.id(), sent.seq, "🎂", true)).await;

    let history = app.history(&bob, "private", alice.id(), 0).await;
    let seen: Vec<(String, i64, bool)> = history[0]
        .reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.count, r.me))
        .collect();
    assert_eq!(
        seen,
        vec![("👍".into(), 2, true), ("🎂".into(), 1, false)],
        "most reacted first, `me` for the reader"
    );
    let off = ok_reaction(&bb, react(alice.id(), sent.seq, "👍", false)).await;
    assert_eq!((&off["on"], &off["count"]), (&json!(false), &json!(1)));
    let off_again = ok_reaction(&bb, react(alice.id(), sent.seq, "👍", false)).await;
    assert_eq!(
        off_again["change_seq"], off["change_seq"],
        "nothing to remove twice"
    );
    let row = conversation_with(&app, &alice, bob.id()).await;
    assert_eq!(row.last_change, off["change_seq"].as_i64().unwrap());
}

async fn a_message_holds_at_most_20_different_reactions(b: Backend) {
    let app = spawn_configured(b, unlimited).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    let bb = app.connect(&bob.token).await;
    let sent = send_ok(&a, private(bob.id(), "vote")).await;
    let emoji = |i: u32| char::from_u32(0x1F600 + i).unwrap().to_string();
    for i in 0..20 {
        ok_reaction(&a, react(bob.id(), sent.seq, &emoji(i), true)).await;
    }
    let ack = ack_of(&bb, "react", react(alice.id(), sent.seq, &emoji(20), true)).await;
    assert_eq!(ack["error"]["code"], "too_large", "{ack}");
    let same = ok_reaction(&bb, react(alice.id(), sent.seq, &emoji(3), true)).await;
    assert_eq!(
        same["count"], 2,
        "an emoji already there can still be added"
    );
}

async fn bad_reactions_are_refused_and_store_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;
    let a = app.connect(&alice.token).await;
    let m = app.connect(&mallory.token).await;
    let sent = send_ok(&a, private(bob.id(), "hi")).await;
    let too_long = "😀".repeat(5); // 20 bytes
    for bad in ["", "ok", "👍 ", "\u{7}😀", too_long.as_str()] {
        let ack = ack_of(&a, "react", react(bob.id(), sent.seq, bad, true)).await;
        assert_eq!(ack["error"]["code"], "invalid_payload", "{bad:?}: {ack}");
    }
    let no_emoji = change("private", bob.id(), sent.seq);
    assert_eq!(err_code(&a, "react", no_emoji).await, "invalid_payload");
    // Mallory's conversation with alice has no message 1.
    let ack = ack_of(&m, "react", react(alice.id(), sent.seq, "👍", true)).await;
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");
    ok_message(&a, "delete", change("private", bob.id(), sent.seq)).await;
    let ack = ack_of(&a, "react", react(bob.id(), sent.seq, "👍", true)).await;
    assert_eq!(ack["error"]["code"], "conflict", "{ack}");
    let history = app.history(&bob, "private", alice.id(), 0).await;
    assert!(history[0].reactions.is_empty());
}

fn mentioning(group: i64, content: &str, users: &[i64]) -> Value {
    let mut p = group_msg(group, content);
    p["mentions"] = json!(users);
    p
}

async fn mention_count_of(app: &TestApp, who: &TestUser, group: i64) -> i64 {
    conversation_with(app, who, group).await.mention_count
}

async fn a_mention_counts_until_the_member_reads_past_it(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let g = app.group(&owner, "g", &[bob.id(), carol.id()]).await;
    let o = app.connect(&owner.token).await;
    let mut bb = app.connect(&bob.token).await;
    let first = send_ok(&o, mentioning(g, "@bob look", &[bob.id(), bob.id()])).await;
    assert_eq!(first.mentions, vec![bob.id()], "repeats dropped");
    assert_eq!(
        next_message(&mut bb).await.mentions,
        vec![bob.id()],
        "delivered with them"
    );
    send_ok(&o, mentioning(g, "@bob @carol", &[carol.id(), bob.id()])).await;
    send_ok(&o, group_msg(g, "no one")).await;
    assert_eq!(mention_count_of(&app, &bob, g).await, 2);
    assert_eq!(mention_count_of(&app, &carol, g).await, 1);
    assert_eq!(mention_count_of(&app, &owner, g).await, 0);
    let history = app.history(&carol, "group", g, 0).await;
    assert_eq!(history[1].mentions, vec![bob.id(), carol.id()]);
    assert!(history[2].mentions.is_empty());

    let read = json!({"conversationType": "group", "receiverId": g, "seq": first.seq});
    assert_eq!(ack_of(&bb, "read", read).await["ok"], true);
    assert_eq!(
        mention_count_of(&app, &bob, g).await,
        1,
        "read past the first"
    );
    send_ok(&bb, group_msg(g, "seen")).await;
    assert_eq!(
        mention_count_of(&app, &bob, g).await,
        0,
        "sending reads up to it"
    );

    ok_message(&o, "delete", change("group", g, 2)).await;
    assert_eq!(
        mention_count_of(&app, &carol, g).await,
        0,
        "a deleted mention is gone"
    );
    let history = app.history(&carol, "group", g, 0).await;
    assert!(history[1].mentions.is_empty());
}

async fn mentions_name_members_of_a_group_only(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let stranger = app.register("stranger").await;
    let g = app.group(&owner, "g", &[bob.id()]).await;
    let o = app.connect(&owner.token).await;
    let not_member = mentioning(g, "hey", &[stranger.id()]);
    assert_eq!(send_err(&o, not_member).await, "invalid_payload");
    let mut private_one = private(bob.id(), "hey");
    private_one["mentions"] = json!([bob.id()]);
    assert_eq!(send_err(&o, private_one).await, "invalid_payload");
    let many: Vec<i64> = (1..=51).collect();
    assert_eq!(
        send_err(&o, mentioning(g, "all", &many)).await,
        "invalid_payload"
    );
    let mut bad = group_msg(g, "x");
    bad["mentions"] = json!(["bob"]);
    assert_eq!(send_err(&o, bad).await, "invalid_payload");
    assert_eq!(
        send_err(&o, mentioning(g, "zero", &[0])).await,
        "invalid_payload"
    );
    assert!(
        app.history(&owner, "group", g, 0).await.is_empty(),
        "nothing stored"
    );
}

backend_tests!(
    a_mention_counts_until_the_member_reads_past_it,
    mentions_name_members_of_a_group_only,
    a_reaction_counts_once_per_user_and_emoji,
    a_message_holds_at_most_20_different_reactions,
    bad_reactions_are_refused_and_store_nothing,
    a_sender_edits_their_message_and_every_participant_sees_it,
    only_the_sender_edits_and_a_deleted_message_cannot_be,
    a_deleted_message_is_a_tombstone_that_keeps_its_place,
    repeating_an_edit_or_a_delete_changes_nothing_twice,
    the_delete_window_binds_the_sender_but_not_a_groups_owner,
    outsiders_change_nothing,
    a_reply_shows_the_answered_message_as_it_now_is,
    a_reply_must_name_a_message_of_its_conversation,
    changes_are_caught_up_in_change_order,
    a_sockets_changes_apply_in_the_order_sent,
    edits_count_against_the_message_rate,
);
