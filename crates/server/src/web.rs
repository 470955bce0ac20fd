//! The web client at `/` (`web/` in the repository): three files, built
//! and embedded when the server is compiled (see `build.rs`), or read from
//! `--web-dir` at each request while working on the client. Every other
//! path keeps its meaning: the API, Socket.IO, and JSON 404s.

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

struct Asset {
    route: &'static str,
    file: &'static str,
    content_type: &'static str,
    embedded: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        route: "/",
        file: "index.html",
        content_type: "text/html; charset=utf-8",
        embedded: include_bytes!(concat!(env!("OUT_DIR"), "/web/index.html")),
    },
    Asset {
        route: "/app.js",
        file: "app.js",
        content_type: "text/javascript; charset=utf-8",
        embedded: include_bytes!(concat!(env!("OUT_DIR"), "/web/app.js")),
    },
    Asset {
        route: "/app.css",
        file: "app.css",
        content_type: "text/css; charset=utf-8",
        embedded: include_bytes!(concat!(env!("OUT_DIR"), "/web/app.css")),
    },
];

/// What the page may load and run: its own files and its own server, no
/// inline script, no other origin. A message's content is rendered as
/// text; this is the second line of defence.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The client's routes, served from `dir` when given.
pub fn routes<S: Clone + Send + Sync + 'static>(dir: Option<PathBuf>) -> Router<S> {
    let mut router = Router::new();
    for asset in &ASSETS {
        let dir = dir.clone();
        router = router.route(
            asset.route,
            get(move || async move {
                let body = match &dir {
                    None => asset.embedded.to_vec(),
                    Some(dir) => match tokio::fs::read(dir.join(asset.file)).await {
                        Ok(body) => body,
                        Err(e) => {
                            let msg = format!("{}: {e}", dir.join(asset.file).display());
                            return (StatusCode::NOT_FOUND, msg).into_response();
                        }
                    },
                };
                asset_response(asset, body)
            }),
        );
    }
    router
}

fn asset_response(asset: &Asset, body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Small files: always revalidated, so a new server never runs an old client.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
