//! Graceful shutdown: every send the server has read is answered before the
//! sockets close, and nothing acked is lost.

use std::collections::BTreeSet;

use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

async fn shutdown_answers_every_queued_send_and_keeps_every_acked_one(b: Backend) {
    let db = TestDb::new(b).await;
    let mut config = test_config(&db.url);
    config.jwt_secret = Some(palaver::auth::random_secret());
    unlimited(&mut config);
    let app = spawn_with(db, config.clone()).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice.token).await;
    const N: usize = 300;
    let mut pending: Vec<_> = (0..N)
        .map(|i| {
            let payload = json!({"conversationType": "private", "receiverId": bob.id(),
                                 "content": format!("m{i}"), "clientMsgId": format!("c{i}")});
            a.emit_ack_deferred("message", &payload).unwrap()
        })
        .collect();
    // Shut down with the stream in full flow: after the first ack.
    let first = tokio::time::timeout(WAIT, pending.remove(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first["ok"], true, "{first}");
    let db = app.stop().await;

    // Every send the server had read is answered before the sockets close:
    // ok (committed) or unavailable (refused while shutting down). Only sends
    // still unread in the connection when it closed have no answer; their
    // outcome is unknown to the client, which retries them by clientMsgId.
    let mut acked = BTreeSet::from(["m0".to_string()]);
    let (mut refused, mut unanswered) = (0, 0);
    for rx in pending {
        let Ok(ack) = tokio::time::timeout(WAIT, rx).await.expect("no hang") else {
            unanswered += 1;
            continue;
        };
        if ack["ok"] == true {
            acked.insert(ack["message"]["content"].as_str().unwrap().to_string());
        } else {
            assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
            refused += 1;
        }
    }
    let mut disconnected = false;
    while let Some((name, _)) = a.next_event_timeout(QUIET).await {
        disconnected |= name == "disconnect";
    }
    assert!(disconnected, "the server closes the connection");

    // Everything acked is stored; refused sends are not.
    let app = spawn_with(db, config).await;
    let mut stored = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = app.history(&alice, "private", bob.id(), after).await;
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page.into_iter().map(|m| m.content));
    }
    assert!(stored.is_superset(&acked), "an acked message was lost");
    assert!(stored.len() <= N - refused, "a refused send was stored");
    // And nothing was committed without its ack reaching the client: the
    // shutdown waited for the writer before closing the sockets.
    assert_eq!(stored, acked, "committed but never answered");
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "shutdown {b:?}: sent={N} acked={} refused={refused} unanswered={unanswered} \
         acked_but_lost=0 stored_unanswered=0",
        acked.len()
    );
}

/// A stopped server closes its sockets as a node going away does, runs
/// their disconnects, and lets go of its database: socketioxide's own close
/// left each socket and its namespace holding each other, with the server
/// and its connection pools behind them (tests ran MariaDB out of
/// connections).
async fn a_stopped_server_lets_go_of_its_sockets_and_its_database(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice.token).await;
    let _b = app.connect(&bob.token).await;
    send_ok(&a, private(bob.id(), "hi")).await;
    let db = app.stop().await;

    let mut disconnected = false;
    while let Some((name, _)) = a.next_event_timeout(QUIET).await {
        disconnected |= name == "disconnect";
    }
    assert!(disconnected, "the server closes the connection");
    let Some(mut open) = db.sessions().await else {
        return; // SQLite: no server to ask
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while open > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(QUIET).await;
        open = db.sessions().await.unwrap();
    }
    assert_eq!(
        open, 0,
        "sessions still open on a stopped server's database"
    );
}

/// With `--shutdown-delay-secs`, a shutdown first turns `/readyz` to 503
/// while the node still serves everything, then stops.
async fn readiness_turns_first_while_the_node_still_serves(b: Backend) {
    let mut app = spawn_configured(b, |c| c.shutdown_delay_secs = 2).await;
    let alice = app.register("alice").await;
    let socket = app.connect(&alice.token).await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["shutting_down"], false);

    app.signal_stop();
    let started = std::time::Instant::now();
    let body = loop {
        let (status, body) = app.get("/readyz", None).await;
        if status == 503 {
            break body;
        }
        assert!(started.elapsed() < WAIT, "/readyz stayed 200: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(body["shutting_down"], true, "{body}");
    assert_eq!(body["status"], "not ready");
    // Still served meanwhile: health, the API and sockets.
    assert_eq!(app.get("/healthz", None).await.0, 200);
    assert_eq!(app.get("/api/me", Some(&alice.token)).await.0, 200);
    send_ok(&socket, private(alice.id(), "draining")).await;
    app.stop().await;
}

backend_tests!(
    readiness_turns_first_while_the_node_still_serves,
    shutdown_answers_every_queued_send_and_keeps_every_acked_one,
    a_stopped_server_lets_go_of_its_sockets_and_its_database,
);
