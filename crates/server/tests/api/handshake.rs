//! Socket.IO authentication and transport.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use palaver_client::{Client, Error};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_with(secret: &str, alg: jsonwebtoken::Algorithm, claims: serde_json::Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn refusal(app: &TestApp, auth: Option<serde_json::Value>) -> String {
    match Client::connect(app.addr, auth).await {
        Err(Error::Refused(msg)) => msg,
        Err(e) => panic!("expected connect_error, got {e}"),
        Ok(_) => panic!("expected connect_error, connected"),
    }
}

async fn connect_with_valid_token_succeeds(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let client = app.connect(&alice.token).await;
    assert!(!client.sid.is_empty());
}

async fn connect_without_token_is_refused_unauthorized(b: Backend) {
    let app = spawn_app(b).await;
    assert_eq!(refusal(&app, None).await, "unauthorized: missing token");
    assert_eq!(
        refusal(&app, Some(json!({}))).await,
        "unauthorized: missing token"
    );
    assert_eq!(
        refusal(&app, Some(json!({"token": 42}))).await,
        "unauthorized: missing token"
    );
}

async fn connect_with_malformed_or_wrongly_signed_token_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    assert_eq!(
        refusal(&app, Some(json!({"token": "not-a-jwt"}))).await,
        "unauthorized: invalid token"
    );
    let forged = token_with(
        "some other secret",
        jsonwebtoken::Algorithm::HS256,
        json!({"sub": "1", "exp": now() + 600}),
    );
    assert_eq!(
        refusal(&app, Some(json!({ "token": forged }))).await,
        "unauthorized: invalid token"
    );
}

async fn connect_with_expired_token_is_refused_with_reason(b: Backend) {
    let app = spawn_app(b).await;
    let expired = token_with(
        &app.secret,
        jsonwebtoken::Algorithm::HS256,
        json!({"sub": "1", "exp": now() - 600, "iat": now() - 1200}),
    );
    assert_eq!(
        refusal(&app, Some(json!({ "token": expired }))).await,
        "unauthorized: token expired"
    );
}

async fn tokens_with_other_algorithms_or_without_sub_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let hs512 = token_with(
        &app.secret,
        jsonwebtoken::Algorithm::HS512,
        json!({"sub": "1", "exp": now() + 600}),
    );
    assert!(refusal(&app, Some(json!({ "token": hs512 })))
        .await
        .starts_with("unauthorized"));
    let no_sub = token_with(
        &app.secret,
        jsonwebtoken::Algorithm::HS256,
        json!({"exp": now() + 600}),
    );
    assert!(refusal(&app, Some(json!({ "token": no_sub })))
        .await
        .starts_with("unauthorized"));
    // alg "none": header {"alg":"none"}, no signature.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(json!({"sub": "1", "exp": now() + 600}).to_string())
    );
    assert!(refusal(&app, Some(json!({ "token": none })))
        .await
        .starts_with("unauthorized"));
}

async fn token_in_query_string_is_not_accepted(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let result = Client::connect_with(
        app.addr,
        palaver_client::Options {
            auth: None,
            query: Some(format!("token={}", alice.token)),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(result, Err(Error::Refused(m)) if m.starts_with("unauthorized")));
}

async fn minted_token_for_unknown_id_creates_the_user(b: Backend) {
    let app = spawn_app(b).await;
    let token = app.mint(4242);
    let _client = app.connect(&token).await;
    let (status, body) = app.get("/api/users/4242", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "user4242");
}

async fn many_minted_tokens_connecting_at_once_all_get_their_users(b: Backend) {
    let app = spawn_app(b).await;
    // Someone registered the name a minted id would get by default.
    let taken = app.register("user5010").await;
    let ids: Vec<i64> = (5000..5040).filter(|&id| id != taken.id()).collect();
    let connecting = ids.iter().map(|&id| {
        let token = app.mint(id);
        let app = &app;
        async move { app.connect(&token).await }
    });
    let clients = futures_util::future::join_all(connecting).await;
    assert_eq!(clients.len(), ids.len());
    let token = app.mint(5000);
    for id in ids {
        let (status, body) = app.get(&format!("/api/users/{id}"), Some(&token)).await;
        assert_eq!(status, 200, "user {id}: {body}");
        let expected = if id == 5010 {
            "user5010-1".to_string()
        } else {
            format!("user{id}")
        };
        assert_eq!(body["username"], expected.as_str(), "user {id}");
    }
}

/// Polls until a packet starting with `prefix` arrives (a poll may carry
/// several packets separated by \x1e, or only a ping); returns it.
async fn poll_until(app: &TestApp, url: &str, prefix: &str) -> String {
    for _ in 0..5 {
        let reply = app.polling_get(url).await;
        if let Some(p) = reply.split('\x1e').find(|p| p.starts_with(prefix)) {
            return p.to_string();
        }
    }
    panic!("no {prefix} packet within 5 polls");
}

async fn long_polling_transport_authenticates_and_connects(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let url = app.polling_session().await;
    let connect = format!("40{}", json!({"token": alice.token}));
    let resp = app.http.post(&url).body(connect).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let reply = poll_until(&app, &url, "40{\"sid\"").await;
    assert!(reply.starts_with("40{\"sid\""), "{reply:?}");

    // And a refused one over polling.
    let url = app.polling_session().await;
    app.http.post(&url).body("40{}").send().await.unwrap();
    let refusal = poll_until(&app, &url, "44{").await;
    assert!(refusal.contains("unauthorized"), "{refusal:?}");
}

backend_tests!(
    connect_with_valid_token_succeeds,
    connect_without_token_is_refused_unauthorized,
    connect_with_malformed_or_wrongly_signed_token_is_refused,
    connect_with_expired_token_is_refused_with_reason,
    tokens_with_other_algorithms_or_without_sub_are_refused,
    token_in_query_string_is_not_accepted,
    minted_token_for_unknown_id_creates_the_user,
    many_minted_tokens_connecting_at_once_all_get_their_users,
    long_polling_transport_authenticates_and_connects,
);
