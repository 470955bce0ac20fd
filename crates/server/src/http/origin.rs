//! Allowed origins (`--allowed-origins`): a browser request from a page of
//! another origin is refused with 403 before it reaches the API or the
//! Socket.IO handshake (WebSocket upgrades carry `Origin` and are not
//! subject to CORS, so CORS alone would not stop them), and CORS headers
//! tell browsers which origins may read answers.
//!
//! Requests without `Origin` (native apps, servers, curl) pass: Palaver
//! authenticates with bearer tokens, never cookies, so a request without
//! a token gets nothing from any origin.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ApiError;
use crate::app::App;
use crate::chat::ChatError;
use crate::config::AllowedOrigins;

/// Refuses requests whose `Origin` is not allowed.
pub async fn check(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req.headers().get(header::HOST);
        if !allowed(&app.config.allowed_origins, origin, host) {
            let shown: String = String::from_utf8_lossy(origin.as_bytes())
                .chars()
                .take(100)
                .collect();
            return ApiError::from(ChatError::Forbidden(format!(
                "origin {shown:?} is not allowed"
            )))
            .into_response();
        }
    }
    next.run(req).await
}

/// Whether a request from `origin` to the server reached as `host` passes.
fn allowed(config: &AllowedOrigins, origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    if *config == AllowedOrigins::Any {
        return true;
    }
    let Some(origin) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
        return false;
    };
    let serialized = origin.origin().ascii_serialization();
    if let AllowedOrigins::List(list) = config {
        if list.contains(&serialized) {
            return true;
        }
    }
    // Same origin: the page came from the address the request is sent to.
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    url::Url::parse(&format!("{}://{host}", origin.scheme()))
        .is_ok_and(|own| own.origin().ascii_serialization() == serialized)
}

/// The CORS layer for cross-origin pages, if any are allowed.
pub fn cors(config: &AllowedOrigins) -> Option<CorsLayer> {
    let allow = match config {
        AllowedOrigins::SameOrigin => return None,
        AllowedOrigins::Any => AllowOrigin::any(),
        AllowedOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: &AllowedOrigins, origin: &str, host: &str) -> bool {
        allowed(
            config,
            &HeaderValue::from_str(origin).unwrap(),
            Some(&HeaderValue::from_str(host).unwrap()),
        )
    }

    #[test]
    fn same_origin_by_default() {
        let c = AllowedOrigins::SameOrigin;
        assert!(check(&c, "http://localhost:3000", "localhost:3000"));
        assert!(check(&c, "https://chat.example.com", "chat.example.com"));
        assert!(check(
            &c,
            "https://chat.example.com",
            "chat.example.com:443"
        ));
        assert!(!check(&c, "http://evil.example", "localhost:3000"));
        assert!(!check(&c, "http://localhost:3001", "localhost:3000"));
        assert!(!check(&c, "null", "localhost:3000"));
    }

    #[test]
    fn listed_and_any() {
        let c = AllowedOrigins::List(vec!["https://app.example.com".into()]);
        assert!(check(&c, "https://app.example.com", "api.example.com"));
        assert!(!check(&c, "http://app.example.com", "api.example.com"));
        assert!(check(&c, "https://api.example.com", "api.example.com"));
        assert!(check(&AllowedOrigins::Any, "null", "x"));
    }
}
