//! Registration, login, users, health and HTTP error shapes.

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

async fn register_returns_201_with_user_and_a_working_token(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("Alice").await;
    assert_eq!(alice.user.username, "Alice");
    let (status, me) = app.get("/api/me", Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["id"], alice.id());
    assert!(me["created_at"].as_str().unwrap().ends_with('Z'));
}

async fn taken_username_is_a_conflict_case_insensitively(b: Backend) {
    let app = spawn_app(b).await;
    app.register("alice").await;
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "ALICE", "password": "password1"}),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "conflict");
}

async fn invalid_usernames_and_passwords_are_rejected(b: Backend) {
    let app = spawn_app(b).await;
    for (username, password) in [
        ("al", "password1"),
        ("has space", "password1"),
        (&*"x".repeat(33), "password1"),
        ("alice", "short"),
        ("alice", &*"p".repeat(129)),
    ] {
        let (status, body) = app
            .post(
                "/api/auth/register",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 400, "{username} / {password}: {body}");
        assert_eq!(body["error"]["code"], "invalid_payload");
    }
}

async fn login_accepts_the_right_password_only(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let (status, body) = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], alice.id());
    let _socket = app.connect(body["token"].as_str().unwrap()).await;
    for (username, password) in [("alice", "wrong horse"), ("nobody", "correct horse")] {
        let (status, body) = app
            .post(
                "/api/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

async fn api_requires_a_valid_bearer_token(b: Backend) {
    let app = spawn_app(b).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "1", "exp": now - 600, "iat": now - 1200}),
        &jsonwebtoken::EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .unwrap();
    for token in [None, Some("garbage"), Some(expired.as_str())] {
        for path in ["/api/me", "/api/users", "/api/groups", "/api/conversations"] {
            let (status, body) = app.get(path, token).await;
            assert_eq!(status, 401, "{path}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    let (_, body) = app.get("/api/me", Some(&expired)).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    // The scheme name is case-insensitive.
    let alice = app.register("alice").await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = app
            .http
            .get(app.url("/api/me"))
            .header("authorization", format!("{scheme} {}", alice.token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
}

/// A user search answers 20 users unless asked for more, and at most 100.
async fn user_search_pages_default_to_20_and_are_capped_at_100(b: Backend) {
    let app = spawn_app(b).await;
    // Users named `user<id>`, created on first use of minted tokens.
    for id in 1..=105 {
        let (status, body) = app.get("/api/me", Some(&app.mint(id))).await;
        assert_eq!(status, 200, "{body}");
    }
    let token = app.mint(1);
    let count = |q: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let (status, body) = app.get(&format!("/api/users?q=user{q}"), Some(token)).await;
            assert_eq!(status, 200, "{body}");
            body.as_array().unwrap().len()
        }
    };
    assert_eq!(count("").await, 20, "the default page");
    assert_eq!(count("&limit=50").await, 50);
    assert_eq!(count("&limit=1000").await, 100, "clamped to 100");
}

async fn users_can_be_searched_by_prefix_and_read_by_id(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    app.register("alfred").await;
    app.register("bob").await;
    app.register("al_x").await;
    let (status, body) = app
        .get("/api/users?q=AL&limit=10", Some(&alice.token))
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["al_x", "alfred", "alice"]);
    // `_` is literal, not a wildcard.
    let (_, body) = app.get("/api/users?q=al_", Some(&alice.token)).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    let (_, body) = app.get("/api/users?q=a&limit=1", Some(&alice.token)).await;
    assert_eq!(body.as_array().unwrap().len(), 1);

    let (status, body) = app
        .get(&format!("/api/users/{}", alice.id()), Some(&alice.token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["username"], "alice");
    let (status, body) = app.get("/api/users/9999", Some(&alice.token)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = app.get("/api/users/abc", Some(&alice.token)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_payload");
}

async fn health_unknown_routes_and_malformed_json_answer_properly(b: Backend) {
    let app = spawn_app(b).await;
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    let backend = match b {
        Backend::Sqlite => "sqlite",
        Backend::MySql => "mysql",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["database"], backend, "{body}");
    let (status, body) = app.get("/api/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    // A known route with the wrong method: 405 with the usual error body.
    let (status, body) = app.delete("/api/me", None).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let resp = app
        .http
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_payload");
}

async fn generated_secret_is_kept_in_the_database_across_restarts(b: Backend) {
    let db = TestDb::new(b).await;
    let config = test_config(&db.url); // no --jwt-secret
    let app = spawn_with(db, config.clone()).await;
    let alice = app.register("alice").await;
    let db = app.stop().await;
    let app = spawn_with(db, config).await;
    let (status, _) = app.get("/api/me", Some(&alice.token)).await;
    assert_eq!(status, 200, "a token from before the restart still works");

    // Each database generates its own secret: a token of this server means
    // nothing to a server on another database, though the same user id
    // exists there.
    let other_db = TestDb::new(b).await;
    let other_config = test_config(&other_db.url); // no --jwt-secret either
    let other = spawn_with(other_db, other_config).await;
    let alice_there = other.register("alice").await;
    assert_eq!(alice_there.id(), alice.id());
    let (status, _) = other.get("/api/me", Some(&alice.token)).await;
    assert_eq!(status, 401, "a token signed with another database's secret");
}

async fn presence_is_shown_only_to_those_sharing_a_conversation(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let stranger = app.register("stranger").await;
    let _online = app.connect(&alice.token).await;
    let alice_path = format!("/api/users/{}", alice.id());
    let presence_keys = |u: &Value| (u.get("online").cloned(), u.get("last_seen").cloned());

    // Herself: always.
    let (_, me) = app.get(&alice_path, Some(&alice.token)).await;
    assert_eq!(me["online"], true, "{me}");
    // Someone she shares nothing with: the name, no presence.
    let (status, seen) = app.get(&alice_path, Some(&stranger.token)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["username"], "alice");
    assert_eq!(presence_keys(&seen), (None, None), "{seen}");
    // Once they share a conversation: presence.
    let (_, before) = app.get(&alice_path, Some(&bob.token)).await;
    assert_eq!(presence_keys(&before), (None, None), "{before}");
    let b = app.connect(&bob.token).await;
    send_ok(&b, private(alice.id(), "hi")).await;
    let (_, after) = app.get(&alice_path, Some(&bob.token)).await;
    assert_eq!(after["online"], true, "{after}");
    // A group shared counts too.
    app.group(&stranger, "club", &[alice.id()]).await;
    let (_, member) = app.get(&alice_path, Some(&stranger.token)).await;
    assert_eq!(member["online"], true, "{member}");

    // The directory: a prefix of one character at least, names only.
    let (status, body) = app.get("/api/users", Some(&stranger.token)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_payload", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`q`"),
        "{body}"
    );
    let (status, body) = app.get("/api/users?q=", Some(&stranger.token)).await;
    assert_eq!(status, 400, "{body}");
    let (_, found) = app.get("/api/users?q=al", Some(&stranger.token)).await;
    assert_eq!(found[0]["username"], "alice", "{found}");
    assert_eq!(presence_keys(&found[0]), (None, None), "{found}");
}

async fn parse_failures_name_the_field_in_plain_words(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let message = |body: &Value| {
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (status, body) = app.get("/api/users/abc", Some(&alice.token)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        message(&body),
        "`id` in the path must be a whole number (got `abc`)"
    );
    let (status, body) = app
        .get("/api/users?q=a&limit=ten", Some(&alice.token))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(message(&body), "`limit` must be a whole number", "{body}");
    let (status, body) = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": 5, "password": "x"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        message(&body),
        "`username` must be a string (got integer `5`)"
    );
    let (status, body) = app
        .post("/api/auth/login", None, json!({"username": "alice"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(message(&body), "`password` is required");
}

backend_tests!(
    presence_is_shown_only_to_those_sharing_a_conversation,
    parse_failures_name_the_field_in_plain_words,
    register_returns_201_with_user_and_a_working_token,
    taken_username_is_a_conflict_case_insensitively,
    invalid_usernames_and_passwords_are_rejected,
    login_accepts_the_right_password_only,
    api_requires_a_valid_bearer_token,
    user_search_pages_default_to_20_and_are_capped_at_100,
    users_can_be_searched_by_prefix_and_read_by_id,
    health_unknown_routes_and_malformed_json_answer_properly,
    generated_secret_is_kept_in_the_database_across_restarts,
);
