//! `palaver admin`, `palaver migrate` and `palaver config check`, run as
//! processes against the database of a running server (v1.3): what they
//! change reaches the server within a second, through the change log.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;
use crate::support::process::palaver;

/// Runs `palaver <args>` on `app`'s database and secret, with `stdin`.
fn admin(app: &TestApp, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = palaver()
        .args(args)
        .env("PALAVER_DATABASE_URL", app.db_url())
        .env("PALAVER_JWT_SECRET", &app.secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("palaver runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The JSON lines a command printed, after checking it succeeded.
fn ok(out: Output) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The one-line error of a command that failed.
fn failed(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

async fn login(app: &TestApp, username: &str, password: &str) -> (u16, Value) {
    app.post(
        "/api/auth/login",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

/// Users made, listed, shown, disabled and enabled, given a password and
/// a token from the command line; the running server follows each.
async fn admin_user_commands_act_on_a_running_server(b: Backend) {
    let app = spawn_app(b).await;
    let out = ok(admin(
        &app,
        &["admin", "user", "create", "alice", "--password-stdin"],
        Some("correct horse\n"),
    ));
    let alice = out[0]["user"]["id"].as_i64().unwrap();
    assert!(
        out[0].get("password").is_none(),
        "a given password is not printed"
    );
    let (status, body) = login(&app, "alice", "correct horse").await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    // Generated when not given, and printed once.
    let out = ok(admin(&app, &["admin", "user", "create", "bob"], None));
    let bobs = out[0]["password"].as_str().unwrap().to_string();
    assert_eq!(login(&app, "bob", &bobs).await.0, 200);
    assert!(failed(admin(&app, &["admin", "user", "create", "bob"], None)).contains("conflict"));
    assert!(
        failed(admin(&app, &["admin", "user", "create", "x"], None)).contains("invalid_payload")
    );

    let listed = ok(admin(
        &app,
        &["admin", "user", "list", "--limit", "1"],
        None,
    ));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["user"]["username"], "alice");
    let after = alice.to_string();
    let listed = ok(admin(
        &app,
        &["admin", "user", "list", "--after", &after],
        None,
    ));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["user"]["username"], "bob");
    let shown = ok(admin(&app, &["admin", "user", "show", "ALICE"], None));
    assert_eq!(
        (shown[0]["user"]["id"].as_i64(), &shown[0]["disabled"]),
        (Some(alice), &json!(false))
    );
    assert!(failed(admin(&app, &["admin", "user", "show", "nobody"], None)).contains("not_found"));

    // Disabled: the open socket is ended and the token refused within a
    // second or so, by the server's watch over the change log.
    let mut socket = app.connect(&token).await;
    let shown = ok(admin(&app, &["admin", "user", "disable", "alice"], None));
    assert_eq!(shown[0]["disabled"], true);
    let (name, body) = socket
        .next_event_timeout(Duration::from_secs(3))
        .await
        .expect("the socket is ended");
    assert_eq!(
        (name.as_str(), &body["message"]),
        ("session_ended", &json!("unauthorized: account disabled"))
    );
    assert_eq!(app.get("/api/me", Some(&token)).await.0, 401);
    assert_eq!(login(&app, "alice", "correct horse").await.0, 403);
    ok(admin(
        &app,
        &["admin", "user", "enable", &alice.to_string()],
        None,
    ));
    assert_eq!(login(&app, "alice", "correct horse").await.0, 200);

    // A new password: the old one and the old tokens fail.
    let (_, body) = login(&app, "bob", &bobs).await;
    let bob_token = body["token"].as_str().unwrap().to_string();
    // Cached by the server now: only the change log can tell it otherwise.
    assert_eq!(app.get("/api/me", Some(&bob_token)).await.0, 200);
    // Enabling an account that is not disabled changes nothing.
    ok(admin(&app, &["admin", "user", "enable", "bob"], None));
    assert_eq!(app.get("/api/me", Some(&bob_token)).await.0, 200);
    ok(admin(
        &app,
        &["admin", "user", "set-password", "bob", "--password-stdin"],
        Some("battery staple\n"),
    ));
    assert_eq!(login(&app, "bob", &bobs).await.0, 401);
    assert_eq!(login(&app, "bob", "battery staple").await.0, 200);
    // Through the change log, within a second or so.
    let started = std::time::Instant::now();
    while app.get("/api/me", Some(&bob_token)).await.0 != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the old token still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A token for a bot, honoured by the server.
    let out = ok(admin(
        &app,
        &["admin", "token", "--user", "bob", "--ttl", "120"],
        None,
    ));
    assert_eq!(out[0]["expires_in"], 120);
    let (status, me) = app.get("/api/me", out[0]["token"].as_str()).await;
    assert_eq!((status, &me["username"]), (200, &json!("bob")));
}

/// Groups listed and shown; members added and removed in the owner's
/// name, each a system message, and the running server's cached roster
/// follows within a second.
async fn admin_group_commands_act_on_a_running_server(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let carol = app.register("carol").await;
    let group = app.group(&owner, "club", &[]).await;
    // The server caches the roster: carol is refused.
    let socket = app.connect(&carol.token).await;
    let say = json!({"conversationType": "group", "receiverId": group, "content": "hi"});
    assert_eq!(send_err(&socket, say.clone()).await, "forbidden");

    let g = group.to_string();
    let listed = ok(admin(&app, &["admin", "group", "list"], None));
    assert_eq!((listed.len(), &listed[0]["members"]), (1, &json!(1)));
    let out = ok(admin(
        &app,
        &["admin", "group", "add-member", &g, "carol"],
        None,
    ));
    assert_eq!(out[0]["system_message"]["system"]["event"], "member_added");
    assert_eq!(out[0]["system_message"]["system"]["actor_id"], owner.id());
    let shown = ok(admin(&app, &["admin", "group", "show", &g], None));
    assert_eq!(shown[0]["members"].as_array().unwrap().len(), 2);
    let started = std::time::Instant::now();
    loop {
        let ack = socket.emit_ack("message", &say).await.unwrap();
        if ack["ok"] == true {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the server kept its roster: {ack}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = ok(admin(
        &app,
        &[
            "admin",
            "group",
            "remove-member",
            &g,
            &carol.id().to_string(),
        ],
        None,
    ));
    assert_eq!(
        out[0]["system_message"]["system"]["event"],
        "member_removed"
    );
    assert!(failed(admin(&app, &["admin", "group", "show", "999999"], None)).contains("not_found"));
    assert!(failed(admin(
        &app,
        &["admin", "group", "add-member", &g, "nobody"],
        None
    ))
    .contains("not_found"));
}

backend_tests!(
    admin_user_commands_act_on_a_running_server,
    admin_group_commands_act_on_a_running_server,
);
