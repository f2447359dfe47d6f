//! Route classes: how the edge treats a request before the application.

use std::collections::HashSet;

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

/// The route table (reloadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub api_paths: HashSet<String>,
    pub schema_paths: HashSet<String>,
    pub health_paths: HashSet<String>,
    pub static_extensions: HashSet<String>,
}

impl Default for RouteTable {
    /// The reference deployment's table.
    fn default() -> Self {
        let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        RouteTable {
            api_paths: set(&[
                "/v1/tools",
                "/tools",
                "/v1/servers",
                "/servers",
                "/v1/gateways",
                "/gateways",
                "/v1/resources",
                "/resources",
                "/v1/prompts",
                "/prompts",
                "/version",
            ]),
            schema_paths: set(&["/openapi.json", "/docs"]),
            health_paths: set(&["/health", "/ready"]),
            static_extensions: set(&[
                "css", "js", "png", "jpg", "jpeg", "gif", "ico", "svg", "woff", "woff2", "ttf",
                "eot", "webp", "avif", "map",
            ]),
        }
    }
}

impl RouteTable {
    pub fn classify(
        &self,
        method: &http::Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> RouteClass {
        if self.health_paths.contains(path) {
            return RouteClass::Health;
        }
        let is_read = method == http::Method::GET || method == http::Method::HEAD;
        if !is_read || is_stream_request(headers) {
            return RouteClass::Bypass;
        }
        if self.schema_paths.contains(path) {
            return RouteClass::Schema;
        }
        if self.api_paths.contains(path) {
            return RouteClass::Api;
        }
        if let Some((_, ext)) = path.rsplit_once('.')
            && !ext.contains('/')
            && self.static_extensions.contains(&ext.to_ascii_lowercase())
        {
            return RouteClass::Static;
        }
        RouteClass::Bypass
    }
}

/// SSE and WebSocket requests always bypass.
pub fn is_stream_request(headers: &http::HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, needle: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(needle))
    };
    has(http::header::UPGRADE, "websocket") || has(http::header::ACCEPT, "text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    #[test]
    fn classes_follow_the_reference_table() {
        let t = RouteTable::default();
        let h = HeaderMap::new();
        assert_eq!(t.classify(&Method::GET, "/health", &h), RouteClass::Health);
        assert_eq!(t.classify(&Method::GET, "/v1/tools", &h), RouteClass::Api);
        assert_eq!(t.classify(&Method::HEAD, "/tools", &h), RouteClass::Api);
        assert_eq!(t.classify(&Method::GET, "/version", &h), RouteClass::Api);
        assert_eq!(
            t.classify(&Method::GET, "/v1/tools/abc", &h),
            RouteClass::Bypass
        );
        assert_eq!(
            t.classify(&Method::POST, "/v1/tools", &h),
            RouteClass::Bypass
        );
        assert_eq!(
            t.classify(&Method::GET, "/openapi.json", &h),
            RouteClass::Schema
        );
        assert_eq!(
            t.classify(&Method::GET, "/static/app.JS", &h),
            RouteClass::Static
        );
        assert_eq!(t.classify(&Method::POST, "/rpc", &h), RouteClass::Bypass);
        assert_eq!(t.classify(&Method::GET, "/mcp", &h), RouteClass::Bypass);
    }

    #[test]
    fn streams_always_bypass() {
        let t = RouteTable::default();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        assert_eq!(
            t.classify(&Method::GET, "/v1/tools", &h),
            RouteClass::Bypass
        );
        let mut h = HeaderMap::new();
        h.insert(http::header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert_eq!(
            t.classify(&Method::GET, "/v1/tools", &h),
            RouteClass::Bypass
        );
    }
}
