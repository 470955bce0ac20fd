//! `GET /api/conversations`: rows a client can render without asking for
//! more (names, unread counts), the v1 bare array, and paging by cursor.

use palaver_protocol::{ConversationPage, ConversationSummary};
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::*;

/// The v1 list (no paging parameters).
async fn list(app: &TestApp, who: &TestUser) -> Vec<ConversationSummary> {
    let (s, body) = app.get("/api/conversations", Some(&who.token)).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.is_array(),
        "without paging parameters, an array: {body}"
    );
    serde_json::from_value(body).unwrap()
}

/// One page of the paged form.
async fn page(app: &TestApp, who: &TestUser, query: &str) -> ConversationPage {
    let (s, body) = app
        .get(&format!("/api/conversations?{query}"), Some(&who.token))
        .await;
    assert_eq!(s, 200, "{query}: {body}");
    serde_json::from_value(body).unwrap()
}

/// `(conversation_type, receiver_id)` of each row, in order.
fn keys(rows: &[ConversationSummary]) -> Vec<(String, i64)> {
    rows.iter()
        .map(|c| (c.conversation_type.as_str().to_string(), c.receiver_id))
        .collect()
}

fn p(id: i64) -> (String, i64) {
    ("private".to_string(), id)
}

fn g(id: i64) -> (String, i64) {
    ("group".to_string(), id)
}

async fn conversation_rows_carry_peer_username_and_group_name(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("Bob.B").await;
    let club = app.group(&alice, "Book club", &[bob.id()]).await;
    let quiet = app.group(&alice, "quiet", &[]).await;
    let a = app.connect(&alice.token).await;
    send_ok(&a, private(bob.id(), "hi")).await;
    send_ok(&a, group_msg(club, "hello all")).await;

    let (_, raw) = app.get("/api/conversations", Some(&alice.token)).await;
    let rows = raw.as_array().expect("array");
    assert_eq!(rows.len(), 3, "{raw}");
    let named: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| (r["username"].clone(), r["name"].clone()))
        .collect();
    assert_eq!(
        named,
        [
            (Value::Null, "Book club".into()),
            ("Bob.B".into(), Value::Null),
            (Value::Null, "quiet".into()),
        ],
        "the group's name on group rows, the peer's username (as registered) on private rows: {raw}"
    );
    assert_eq!(rows[2]["receiver_id"], quiet);

    // Each side names the other.
    let from_bob = list(&app, &bob).await;
    let mine = from_bob
        .iter()
        .find(|c| c.receiver_id == alice.id() && c.conversation_type.as_str() == "private")
        .expect("bob sees the private conversation");
    assert_eq!(mine.username.as_deref(), Some("alice"));
    assert_eq!(mine.name, None);
}

async fn conversations_page_by_cursor_most_recent_first(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let mut peers = Vec::new();
    for i in 0..5 {
        peers.push(app.register(&format!("peer{i}")).await.id());
    }
    // Three groups without messages: they tie on activity and come last,
    // newest first, across a page boundary.
    let mut empty = Vec::new();
    for i in 0..3 {
        empty.push(app.group(&alice, &format!("empty{i}"), &[]).await);
    }
    let a = app.connect(&alice.token).await;
    for &peer in &peers {
        send_ok(&a, private(peer, "first")).await;
    }
    send_ok(&a, private(peers[1], "again")).await;
    let expected = vec![
        p(peers[1]),
        p(peers[4]),
        p(peers[3]),
        p(peers[2]),
        p(peers[0]),
        g(empty[2]),
        g(empty[1]),
        g(empty[0]),
    ];
    assert_eq!(keys(&list(&app, &alice).await), expected, "the v1 order");

    let mut seen = Vec::new();
    let mut query = "limit=3".to_string();
    let mut pages = 0;
    loop {
        let page = page(&app, &alice, &query).await;
        pages += 1;
        assert!(page.conversations.len() <= 3);
        seen.extend(keys(&page.conversations));
        match page.next_cursor {
            Some(cursor) => {
                assert!(page.has_more);
                query = format!("limit=3&cursor={cursor}");
            }
            None => {
                assert!(!page.has_more);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen, expected,
        "pages in order, nothing repeated or skipped"
    );

    // A conversation with new activity while paging moves ahead of the
    // cursor: it leaves the later pages and heads the next first page.
    let first = page(&app, &alice, "limit=3").await;
    assert_eq!(keys(&first.conversations), expected[..3]);
    send_ok(&a, private(peers[2], "news")).await;
    let cursor = first.next_cursor.expect("more pages");
    let second = page(&app, &alice, &format!("limit=3&cursor={cursor}")).await;
    assert_eq!(
        keys(&second.conversations),
        [p(peers[0]), g(empty[2]), g(empty[1])]
    );
    assert_eq!(
        keys(&page(&app, &alice, "limit=1").await.conversations),
        [p(peers[2])]
    );
}

async fn conversations_keep_the_v1_array_without_paging_parameters(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice.token).await;
    send_ok(&a, private(bob.id(), "hi")).await;

    for path in ["/api/conversations", "/api/conversations?unknown=1"] {
        let (s, body) = app.get(path, Some(&alice.token)).await;
        assert_eq!(s, 200);
        assert_eq!(body.as_array().map(Vec::len), Some(1), "{path}: {body}");
    }
    // Either parameter asks for the paged form; the default limit is 100.
    let (_, body) = app
        .get("/api/conversations?limit=100", Some(&alice.token))
        .await;
    assert_eq!(body["has_more"], false, "{body}");
    assert_eq!(body["next_cursor"], Value::Null, "{body}");
    assert_eq!(body["conversations"][0]["username"], "bob", "{body}");
    let cursor = "999999999.999999999";
    let via_cursor = page(&app, &alice, &format!("cursor={cursor}")).await;
    assert_eq!(keys(&via_cursor.conversations), [p(bob.id())]);
}

async fn conversation_paging_rejects_bad_limit_and_cursor(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=-1", "limit"),
        ("cursor=", "cursor"),
        ("cursor=garbage", "cursor"),
        ("cursor=1.2.3", "cursor"),
        ("limit=10&cursor=-5.1", "cursor"),
    ] {
        let (s, body) = app
            .get(&format!("/api/conversations?{query}"), Some(&alice.token))
            .await;
        assert_eq!(s, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_payload", "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}: expected")),
            "{query}: the message names {field} and what it expects: {message}"
        );
    }
    // The largest limit is accepted.
    assert!(page(&app, &alice, "limit=500")
        .await
        .conversations
        .is_empty());
}

async fn unread_count_after_own_send_counts_only_later_messages(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let club = app.group(&alice, "club", &[bob.id(), carol.id()]).await;
    let a = app.connect(&alice.token).await;
    let b1 = app.connect(&bob.token).await;
    for i in 0..3 {
        send_ok(&a, private(bob.id(), &format!("m{i}"))).await;
        send_ok(&a, group_msg(club, &format!("g{i}"))).await;
    }
    let row = |rows: &[ConversationSummary], kind: &str, id: i64| {
        let c = rows
            .iter()
            .find(|c| c.conversation_type.as_str() == kind && c.receiver_id == id)
            .expect("listed")
            .clone();
        (c.last_seq, c.read_seq, c.unread_count)
    };
    let rows = list(&app, &bob).await;
    assert_eq!(row(&rows, "private", alice.id()), (3, 0, 3));
    assert_eq!(row(&rows, "group", club), (3, 0, 3));

    // Answering reads what came before: nothing is unread after a reply.
    send_ok(&b1, private(alice.id(), "reply")).await;
    send_ok(&b1, group_msg(club, "reply")).await;
    let rows = list(&app, &bob).await;
    assert_eq!(row(&rows, "private", alice.id()), (4, 4, 0));
    assert_eq!(row(&rows, "group", club), (4, 4, 0));
    // Carol has not answered: the group's messages are all unread for her.
    assert_eq!(row(&list(&app, &carol).await, "group", club), (4, 0, 4));

    // Only messages after the reply count.
    send_ok(&a, private(bob.id(), "more")).await;
    send_ok(&a, private(bob.id(), "and more")).await;
    send_ok(&a, group_msg(club, "more")).await;
    let rows = list(&app, &bob).await;
    assert_eq!(row(&rows, "private", alice.id()), (6, 4, 2));
    assert_eq!(row(&rows, "group", club), (5, 4, 1));
    // Alice's own sends read her side up to her last message; bob's reply
    // came before her latest, so nothing is unread for her either.
    let rows = list(&app, &alice).await;
    assert_eq!(row(&rows, "private", bob.id()), (6, 6, 0));
    assert_eq!(row(&rows, "group", club), (5, 5, 0));
}

backend_tests!(
    conversation_rows_carry_peer_username_and_group_name,
    conversations_page_by_cursor_most_recent_first,
    conversations_keep_the_v1_array_without_paging_parameters,
    conversation_paging_rejects_bad_limit_and_cursor,
    unread_count_after_own_send_counts_only_later_messages,
);
