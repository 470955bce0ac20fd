//! Account life cycle (v1.3): logging out one token or all, changing the
//! password, disabling an account; revoked tokens fail over HTTP and at
//! the handshake, and open sockets of a revoked token are ended.

use std::time::Duration;

use palaver::chat::CredentialChange;
use palaver::ids::UserId;
use palaver_client::{Client, Error};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

const REVOKED: &str = "unauthorized: token revoked";
const DISABLED: &str = "unauthorized: account disabled";

/// Logs `user` in again: a second token of the same account.
async fn login(app: &TestApp, username: &str, password: &str) -> (u16, serde_json::Value) {
    app.post(
        "/api/auth/login",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

async fn second_token(app: &TestApp, user: &TestUser) -> String {
    let (status, body) = login(app, &user.user.username, "correct horse").await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// The error message of a request made with `token`, or "ok".
async fn me(app: &TestApp, token: &str) -> String {
    let (status, body) = app.get("/api/me", Some(token)).await;
    if status == 200 {
        return "ok".into();
    }
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

/// Waits for the server to end `client`'s socket: a `session_ended` event
/// with `message`, then the connection closes.
async fn ended(client: &mut Client, message: &str) {
    let (name, body) = client
        .next_event_timeout(Duration::from_secs(3))
        .await
        .expect("the socket is ended within a second or so");
    assert_eq!(name, "session_ended", "{body}");
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(body["message"], message);
    let (name, _) = client
        .next_event_timeout(Duration::from_secs(3))
        .await
        .expect("then closed");
    assert_eq!(name, "disconnect");
}

/// The handshake refusal of `token`.
async fn refused(app: &TestApp, token: &str) -> String {
    match Client::connect(app.addr, Some(json!({ "token": token }))).await {
        Err(Error::Refused(m)) => m,
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a socket")),
    }
}

async fn logout_ends_that_token_only(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let other = second_token(&app, &alice).await;
    let mut doomed = app.connect(&alice.token).await;
    let kept = app.connect(&other).await;

    let (status, body) = app
        .post("/api/auth/logout", Some(&alice.token), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me(&app, &alice.token).await, REVOKED);
    assert_eq!(me(&app, &other).await, "ok", "the other token holds");
    ended(&mut doomed, REVOKED).await;
    assert_eq!(refused(&app, &alice.token).await, REVOKED);
    // The other socket is untouched and still sends.
    send_ok(&kept, private(alice.id(), "still here")).await;

    // Logging out again with the revoked token is refused like any use.
    let (status, _) = app
        .post("/api/auth/logout", Some(&alice.token), json!({}))
        .await;
    assert_eq!(status, 401);
    // A token without an id (minted by an application) cannot be logged
    // out alone, and says what to do instead.
    let minted = app.mint(alice.id());
    let unsigned_jti = strip_jti(&app, alice.id());
    let (status, body) = app
        .post("/api/auth/logout", Some(&unsigned_jti), json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("logout-all"),
        "{body}"
    );
    assert_eq!(me(&app, &minted).await, "ok");
}

/// A token for `user` in the form an application mints: no `gen`, no
/// `jti`, issued now.
fn strip_jti(app: &TestApp, user: i64) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let exp = chrono_now() + 3600;
    encode(
        &Header::default(),
        &json!({"sub": user.to_string(), "exp": exp, "iat": chrono_now()}),
        &EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .unwrap()
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn logout_all_ends_every_token_and_socket(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let other = second_token(&app, &alice).await;
    let minted = strip_jti(&app, alice.id());
    let mut first = app.connect(&alice.token).await;
    let mut second = app.connect(&minted).await;
    let bobs = app.connect(&bob.token).await;

    let (status, body) = app
        .post("/api/auth/logout-all", Some(&other), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    for token in [&alice.token, &other, &minted] {
        assert_eq!(me(&app, token).await, REVOKED);
        assert_eq!(refused(&app, token).await, REVOKED);
    }
    ended(&mut first, REVOKED).await;
    ended(&mut second, REVOKED).await;
    // Someone else's socket stays.
    assert_eq!(me(&app, &bob.token).await, "ok");
    send_ok(&bobs, private(bob.id(), "mine")).await;
    // An application's token minted after it holds (minted in a later
    // second: one from the same second as the revocation is refused).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let minted_after = strip_jti(&app, alice.id());
    assert_eq!(me(&app, &minted_after).await, "ok");
    // Logging in again gives a token that holds.
    let fresh = second_token(&app, &alice).await;
    assert_eq!(me(&app, &fresh).await, "ok");
    app.connect(&fresh).await;
}

async fn changing_the_password_needs_the_current_one_and_revokes_the_rest(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let mut socket = app.connect(&alice.token).await;
    let change = |token: Option<&str>, body: serde_json::Value| {
        let token = token.map(str::to_string);
        let app = &app;
        async move { app.post("/api/me/password", token.as_deref(), body).await }
    };
    let token = Some(alice.token.as_str());

    let (status, body) = change(
        token,
        json!({"currentPassword": "wrong horse", "newPassword": "battery staple"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    let (status, body) = change(
        token,
        json!({"currentPassword": "correct horse", "newPassword": "short"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("newPassword"), "{body}");
    let (status, body) = change(token, json!({"current_password": "correct horse"})).await;
    assert_eq!(status, 400, "{body}");
    let right = json!({"currentPassword": "correct horse", "newPassword": "battery staple"});
    assert_eq!(change(None, right).await.0, 401);
    assert_eq!(
        me(&app, &alice.token).await,
        "ok",
        "failed attempts change nothing"
    );

    let snake = json!({"current_password": "correct horse", "new_password": "battery staple"});
    let (status, body) = change(token, snake).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], alice.id());
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(me(&app, &token).await, "ok");
    assert_eq!(me(&app, &alice.token).await, REVOKED);
    ended(&mut socket, REVOKED).await;
    assert_eq!(login(&app, "alice", "correct horse").await.0, 401);
    assert_eq!(login(&app, "alice", "battery staple").await.0, 200);
}

async fn a_disabled_account_cannot_log_in_or_use_its_tokens(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut socket = app.connect(&alice.token).await;
    let id = UserId::parse(alice.id()).unwrap();
    let chat = &app.app.chat;

    chat.change_credentials(id, &CredentialChange::Disabled(true))
        .await
        .unwrap();
    ended(&mut socket, DISABLED).await;
    assert_eq!(me(&app, &alice.token).await, DISABLED);
    assert_eq!(refused(&app, &app.mint(alice.id())).await, DISABLED);
    let (status, body) = login(&app, "alice", "correct horse").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["message"], "this account is disabled");
    // A wrong password says nothing about the account.
    assert_eq!(login(&app, "alice", "wrong horse").await.0, 401);
    assert_eq!(me(&app, &bob.token).await, "ok");

    chat.change_credentials(id, &CredentialChange::Disabled(false))
        .await
        .unwrap();
    // Tokens from before stay revoked; a new login holds.
    assert_eq!(me(&app, &alice.token).await, REVOKED);
    let fresh = second_token(&app, &alice).await;
    assert_eq!(me(&app, &fresh).await, "ok");
    let unknown = UserId::parse(999_999).unwrap();
    assert!(chat
        .change_credentials(unknown, &CredentialChange::RevokeAll)
        .await
        .is_err());
}

/// Over long-polling too, the client gets `session_ended` and the
/// Socket.IO DISCONNECT before the session's close packet.
async fn a_polling_session_hears_why_it_ended(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let url = app.polling_session().await;
    let connect = format!("40{}", json!({"token": alice.token}));
    let posted = app.http.post(&url).body(connect).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    let connected = app.polling_get(&url).await;
    assert!(connected.starts_with("40{"), "{connected}");

    let poll = tokio::spawn({
        let (http, url) = (app.http.clone(), url.clone());
        async move { http.get(&url).send().await.unwrap().text().await.unwrap() }
    });
    // As a polling client always has, a GET waits at the server.
    tokio::time::sleep(QUIET).await;
    let (status, _) = app
        .post("/api/auth/logout-all", Some(&alice.token), json!({}))
        .await;
    assert_eq!(status, 204);
    let last = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the poll is answered")
        .unwrap();
    // The close packet comes with them, or (when the GET was answered
    // between the two) on the next GET.
    let packets: Vec<&str> = last.split('\u{1e}').collect();
    assert_eq!(
        packets[..2],
        [
            r#"42["session_ended",{"code":"unauthorized","message":"unauthorized: token revoked"}]"#,
            "41",
        ],
        "{last:?}"
    );
    assert!(packets.len() == 2 || packets[2..] == ["1"], "{last:?}");
}

backend_tests!(
    a_polling_session_hears_why_it_ended,
    logout_ends_that_token_only,
    logout_all_ends_every_token_and_socket,
    changing_the_password_needs_the_current_one_and_revokes_the_rest,
    a_disabled_account_cannot_log_in_or_use_its_tokens,
);
