//! The seam between the edge and the application behind it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use mcpgate_cache_zones::Generation;
use parking_lot::RwLock;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type EdgeBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request the edge answers itself, on the application's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub body: String,
}

/// A POST whose answer the edge may keep (the application's reads over
/// POST, such as MCP `tools/list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostCache {
    /// Everything the answer depends on, the caller's authorization context
    /// included unless `shared`.
    pub key: String,
    /// One entry for every caller allowed to see the answer: it is kept only
    /// when the answer says `Cache-Control: public`.
    pub shared: bool,
    /// The bytes of the answer that are this request's own (its JSON-RPC
    /// id); they come first in the answer, before anything that could repeat
    /// them. The entry is kept without them, and each hit gets its own.
    pub own: Bytes,
}

/// The decision of [`EdgeApp::cacheable_post`], for an application that
/// hands it to another part of itself.
pub trait PostCachePolicy: Send + Sync + 'static {
    fn plan<'a>(
        &'a self,
        head: &'a http::request::Parts,
        body: &'a Bytes,
    ) -> BoxFuture<'a, Option<PostCache>>;
}

pub trait EdgeApp: Send + Sync + 'static {
    /// Verifies the caller of a cacheable request; returns its visibility
    /// scope (the cache key part that keeps users and teams apart).
    fn scope_of(&self, authorization: Option<String>) -> BoxFuture<'_, Result<String, Rejection>>;
    /// Serves one request in-process.
    fn call(&self, request: http::Request<Bytes>) -> BoxFuture<'static, http::Response<EdgeBody>>;
    /// The application's own listener: cache fills and WebSocket upgrades.
    fn upstream(&self) -> SocketAddr;
    /// May this scope purge caches?
    fn can_purge(&self, scope: &str) -> bool {
        scope == "admin"
    }
    /// Whether this POST's answer may come from (and go to) the edge's POST
    /// zone; `None` hands it to the application as any write.
    fn cacheable_post<'a>(
        &'a self,
        _head: &'a http::request::Parts,
        _body: &'a Bytes,
    ) -> BoxFuture<'a, Option<PostCache>> {
        Box::pin(async { None })
    }
    /// Told after the edge purged a zone or a path, so that the application
    /// can have other replicas do the same.
    fn purged(&self, _zone: Option<&str>, _path: Option<&str>) {}
}

/// Generations by name (a collection, a path, a zone). Cache keys embed the
/// ones they depend on; bumping one makes those entries unservable at once.
#[derive(Debug, Default)]
pub struct Generations {
    map: RwLock<HashMap<String, Arc<Generation>>>,
    all: Generation,
}

impl Generations {
    pub fn get(&self, name: &str) -> u64 {
        let g = self.map.read().get(name).map(|g| g.current()).unwrap_or(0);
        g.wrapping_add(self.all.current() << 32)
    }

    pub fn bump(&self, name: &str) {
        let g = self.map.write().entry(name.to_owned()).or_default().clone();
        g.bump();
    }

    /// Invalidates everything (a registry change on any instance).
    pub fn bump_all(&self) {
        self.all.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_change_on_bump() {
        let g = Generations::default();
        let a = g.get("path:/v1/tools");
        g.bump("path:/v1/tools");
        let b = g.get("path:/v1/tools");
        assert_ne!(a, b);
        assert_eq!(g.get("other"), 0);
        g.bump_all();
        assert_ne!(g.get("other"), 0);
        assert_ne!(g.get("path:/v1/tools"), b);
    }
}
