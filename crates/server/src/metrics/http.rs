//! HTTP requests: a middleware around every route of the API that times
//! each request and counts its error answer by code.
//!
//! Labels never come from the raw request: the route is the router's
//! template (`/api/users/{id}`, never an id), `unmatched` for a path no
//! route has; the method is one of the standard ones or `other`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use palaver_protocol::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;

use super::{Metrics, Transport};

/// The labels of one HTTP series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// A method as a label: one of a fixed few, so a client cannot make up
/// series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    /// Counts one HTTP request to `route` (a template) answered `status`
    /// after `seconds`.
    pub fn http_request(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route.to_string(),
            status,
        };
        self.http.get_or_create(&labels).observe(seconds);
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`): an error
/// answer carries its [`ErrorCode`] in the response's extensions
/// (`http::error`), which this counts.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics.http_request(
        &method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    if let Some(&code) = response.extensions().get::<ErrorCode>() {
        metrics.error(Transport::Http, code);
    }
    response
}
