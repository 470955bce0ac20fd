//! `GET /api/openapi.json`: an OpenAPI 3.1 document that describes every
//! route of `http::router` with its method, its security and, for every
//! error status, the one error body. That the document holds nothing the
//! router does not serve is checked against the live server; that the
//! router serves nothing the document does not hold, against [`ROUTES`],
//! which mirrors `http::api` in `src/http/mod.rs` (the web client's `/`,
//! `/app.js`, `/app.css` and the Socket.IO endpoint are left out of the
//! document).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::helpers::*;

/// Every API route (`http::api`): method, path, and whether it needs a
/// token.
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("post", "/api/auth/register", false),
    ("post", "/api/auth/login", false),
    ("post", "/api/auth/logout", true),
    ("post", "/api/auth/logout-all", true),
    ("get", "/api/me", true),
    ("post", "/api/me/password", true),
    ("get", "/api/users", true),
    ("get", "/api/users/{id}", true),
    ("get", "/api/blocks", true),
    ("post", "/api/blocks/{id}", true),
    ("delete", "/api/blocks/{id}", true),
    ("post", "/api/groups", true),
    ("get", "/api/groups", true),
    ("get", "/api/groups/{id}", true),
    ("patch", "/api/groups/{id}", true),
    ("delete", "/api/groups/{id}", true),
    ("post", "/api/groups/{id}/owner", true),
    ("put", "/api/groups/{id}/members/{user_id}/role", true),
    ("post", "/api/groups/{id}/members", true),
    ("delete", "/api/groups/{id}/members/{user_id}", true),
    ("get", "/api/conversations", true),
    ("get", "/api/messages", true),
    ("get", "/healthz", false),
    ("get", "/readyz", false),
    ("get", "/api/openapi.json", false),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The document's operations: (method, path) → operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            ops.insert((method.clone(), path.clone()), op.clone());
        }
    }
    ops
}

/// A response object, its `$ref` to `#/components/responses/…` followed.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/responses/")
                .unwrap_or_else(|| panic!("a response $ref elsewhere: {r}"));
            let found = &doc["components"]["responses"][name];
            assert!(found.is_object(), "no response component {name}");
            found
        }
        None => response,
    }
}

async fn the_document_is_openapi_3_1_and_describes_every_route() {
    let app = spawn_app(Backend::Sqlite).await;
    let resp = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "no token needed");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();

    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Palaver");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let about = doc["info"]["description"].as_str().unwrap_or_default();
    assert!(about.contains("PROTOCOL.md"), "{about}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    );

    let ops = operations(&doc);
    let documented: BTreeSet<_> = ops.keys().cloned().collect();
    let listed: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, listed, "the document and ROUTES differ");

    let mut ids = BTreeSet::new();
    for (method, path, authenticated) in ROUTES {
        let op = &ops[&(method.to_string(), path.to_string())];
        let at = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_string()), "{at}: operationId {id} twice");
        assert!(op["tags"][0].is_string(), "{at}: no tag");

        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{at}: no success"
        );
        if *authenticated {
            assert_eq!(op["security"], json!([{"bearer": []}]), "{at}");
            assert!(responses.contains_key("401"), "{at}: no 401");
            assert!(responses.contains_key("503"), "{at}: no 503");
        } else {
            assert!(op.get("security").is_none(), "{at}: needs no token");
        }
        if op.get("requestBody").is_some() {
            let body = &op["requestBody"];
            assert_eq!(body["required"], true, "{at}");
            assert!(body["content"]["application/json"]["schema"].is_object());
            for status in ["400", "413"] {
                assert!(responses.contains_key(status), "{at}: a body, no {status}");
            }
        }
        for parameter in op["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap();
            if parameter["in"] == "path" {
                assert!(path.contains(&format!("{{{name}}}")), "{at}: {name}");
            }
            assert!(responses.contains_key("400"), "{at}: {name}, no 400");
        }

        // Every error status carries the one error body; /healthz's 503
        // (and /readyz's) is its own body, the same as its 200.
        for (status, response) in responses {
            let code: u16 = status.parse().expect("a status code");
            if code < 400 || (matches!(*path, "/healthz" | "/readyz") && code == 503) {
                continue;
            }
            let response = resolve(&doc, response);
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/HttpError",
                "{at} {status}"
            );
            let header = match code {
                401 => Some("WWW-Authenticate"),
                429 => Some("Retry-After"),
                _ => None,
            };
            if let Some(header) = header {
                assert!(response["headers"][header].is_object(), "{at} {status}");
            }
        }
    }
    let error = &doc["components"]["schemas"]["HttpError"];
    assert_eq!(error["required"], json!(["error"]));
    let body = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(body["required"], json!(["code", "message"]));
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for code in [
        "invalid_payload",
        "unauthorized",
        "rate_limited",
        "unavailable",
    ] {
        assert!(codes.as_array().unwrap().contains(&json!(code)), "{code}");
    }

    // Nothing is documented that the router does not serve: each
    // operation, called, reaches its handler rather than the fallbacks.
    let alice = app.register("alice").await;
    for (method, path) in ops.keys() {
        let url = app.url(&path.replace("{id}", "1").replace("{user_id}", "1"));
        let req = app
            .http
            .request(method.to_uppercase().parse().unwrap(), url)
            .bearer_auth(&alice.token);
        let req = match method.as_str() {
            "get" | "delete" => req,
            _ => req.json(&json!({})),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert_ne!(
            body["error"]["message"], "no such route",
            "{method} {path} is documented, not routed"
        );
    }
}

crate::tests!(async the_document_is_openapi_3_1_and_describes_every_route);
