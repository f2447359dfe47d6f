//! The mcpgate edge (port 8080).
//!
//! This crate knows HTTP, route classes, limits, caching and compression; it
//! knows nothing about MCP. The application behind it is anything that can
//! answer an `http::Request` (see [`EdgeApp`]), so the edge can be tested with a
//! tiny app. The Pingora `ProxyHttp` implementation lands with the edge work;
//! what exists now is the seam the application is written against and the
//! route classification the edge and the application share.

use std::future::Future;

/// How the edge treats a request before it reaches the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// UI assets, long-lived and identical for everyone.
    Static,
    /// Read-only collection GETs, cached per visibility scope.
    Api,
    /// OpenAPI document and docs pages.
    Schema,
    /// Liveness and readiness: never cached, never rate-limited.
    Health,
    /// Everything else: writes, JSON-RPC, streams. Passed through untouched.
    Bypass,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Static => "static",
            RouteClass::Api => "api",
            RouteClass::Schema => "schema",
            RouteClass::Health => "health",
            RouteClass::Bypass => "bypass",
        }
    }
}

const API_COLLECTIONS: &[&str] = &["tools", "servers", "gateways", "resources", "prompts"];
const STATIC_EXTENSIONS: &[&str] = &[
    "css", "js", "png", "jpg", "jpeg", "gif", "ico", "svg", "woff", "woff2", "ttf", "eot", "webp",
    "avif", "map",
];

/// Classifies a request by method, path and upgrade/SSE intent with the
/// default route table of the reference deployment.
pub fn classify(method: &http::Method, path: &str, headers: &http::HeaderMap) -> RouteClass {
    if path == "/health" || path == "/ready" {
        return RouteClass::Health;
    }
    let is_read = method == http::Method::GET || method == http::Method::HEAD;
    if !is_read || is_stream_request(headers) {
        return RouteClass::Bypass;
    }
    if path == "/openapi.json" || path == "/docs" {
        return RouteClass::Schema;
    }
    let collection = path.strip_prefix("/v1").unwrap_or(path);
    if path == "/version"
        || API_COLLECTIONS
            .iter()
            .any(|c| collection.strip_prefix('/') == Some(c))
    {
        return RouteClass::Api;
    }
    if let Some((_, ext)) = path.rsplit_once('.')
        && !ext.contains('/')
        && STATIC_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
    {
        return RouteClass::Static;
    }
    RouteClass::Bypass
}

fn is_stream_request(headers: &http::HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, needle: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(needle))
    };
    has(http::header::UPGRADE, "websocket") || has(http::header::ACCEPT, "text/event-stream")
}

/// Errors the application can report to the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("application unavailable: {0}")]
    Unavailable(String),
}

/// The application behind the edge. Requests the edge does not answer from
/// cache are handed to it in-process.
pub trait EdgeApp: Send + Sync + 'static {
    type Body: Send + 'static;
    fn call(
        &self,
        request: http::Request<Self::Body>,
    ) -> impl Future<Output = Result<http::Response<Self::Body>, EdgeError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    #[test]
    fn classes_follow_the_reference_table() {
        let h = HeaderMap::new();
        assert_eq!(classify(&Method::GET, "/health", &h), RouteClass::Health);
        assert_eq!(classify(&Method::GET, "/v1/tools", &h), RouteClass::Api);
        assert_eq!(classify(&Method::GET, "/tools", &h), RouteClass::Api);
        assert_eq!(classify(&Method::GET, "/version", &h), RouteClass::Api);
        assert_eq!(
            classify(&Method::GET, "/v1/tools/abc", &h),
            RouteClass::Bypass
        );
        assert_eq!(classify(&Method::POST, "/v1/tools", &h), RouteClass::Bypass);
        assert_eq!(
            classify(&Method::GET, "/openapi.json", &h),
            RouteClass::Schema
        );
        assert_eq!(
            classify(&Method::GET, "/static/app.JS", &h),
            RouteClass::Static
        );
        assert_eq!(classify(&Method::POST, "/rpc", &h), RouteClass::Bypass);
    }

    #[test]
    fn streams_always_bypass() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        assert_eq!(classify(&Method::GET, "/v1/tools", &h), RouteClass::Bypass);
        let mut h = HeaderMap::new();
        h.insert(http::header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert_eq!(classify(&Method::GET, "/v1/tools", &h), RouteClass::Bypass);
    }
}
