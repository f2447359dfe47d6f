//! The application behind the edge: authentication for cache keys, the
//! in-process call into the axum router, and the cluster events that make
//! cached entries unservable (registry changes, purges on other replicas).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::BodyExt;
use mcpgate_cache_zones::{Zone, ZoneSpec};
use mcpgate_proxy::app::BoxError;
use mcpgate_proxy::{
    BoxFuture, Compression, EdgeApp, EdgeBody, EdgeConfig, Generations, PostCache, PostCachePolicy,
    Rejection, RouteTable,
};
use tower::ServiceExt;

use crate::auth::{Auth, bearer};
use crate::cluster::{Bus, Event, Origin, PurgeTarget, Subscriber};
use crate::config::{Config, LiveConfig};

pub struct AppEdge {
    pub router: axum::Router,
    pub auth: Arc<Auth>,
    pub config: Arc<LiveConfig>,
    pub bus: Arc<Bus>,
    pub upstream: SocketAddr,
    /// Which POSTs the edge may keep, and their keys: the MCP reads,
    /// decided by the API room (it knows callers and MCP).
    pub post_cache: Option<Arc<dyn PostCachePolicy>>,
}

fn reject(status: u16, code: &str, detail: &str) -> Rejection {
    Rejection {
        status,
        body: serde_json::json!({"error": code, "detail": detail}).to_string(),
    }
}

impl EdgeApp for AppEdge {
    fn scope_of(&self, authorization: Option<String>) -> BoxFuture<'_, Result<String, Rejection>> {
        Box::pin(async move {
            if !self.config.get().auth_required {
                return Ok("admin".to_owned());
            }
            // No credentials: the application decides (public routes such as
            // /version answer, the others say 401, which is never stored).
            let Some(header) = authorization.as_deref() else {
                return Ok("anonymous".to_owned());
            };
            let Some(token) = bearer(header) else {
                return Err(reject(401, "unauthorized", "missing bearer token"));
            };
            match self.auth.verify(token).await {
                Ok(p) => Ok(p.scope_key()),
                Err(e) => {
                    let status = e.status();
                    let code = match status {
                        401 => "unauthorized",
                        503 => "unavailable",
                        _ => "internal_error",
                    };
                    Err(reject(status, code, &e.to_string()))
                }
            }
        })
    }

    fn call(&self, request: http::Request<Bytes>) -> BoxFuture<'static, http::Response<EdgeBody>> {
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(request.map(axum::body::Body::from)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
        })
    }

    fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    fn cacheable_post<'a>(
        &'a self,
        head: &'a http::request::Parts,
        body: &'a Bytes,
    ) -> BoxFuture<'a, Option<PostCache>> {
        match &self.post_cache {
            Some(policy) => policy.plan(head, body),
            None => Box::pin(async { None }),
        }
    }

    fn purged(&self, zone: Option<&str>, path: Option<&str>) {
        let target = match (zone, path) {
            (Some(z), _) => PurgeTarget::Zone(z.to_owned()),
            (None, Some(p)) => PurgeTarget::Path(p.to_owned()),
            (None, None) => return,
        };
        let bus = self.bus.clone();
        tokio::spawn(async move { bus.publish(Event::EdgePurge { target }).await });
    }
}

/// Turns cluster events into cache invalidation: any registry change (here
/// or on another replica, after the snapshot has it) makes every cached
/// entry unservable; a purge made on another replica is repeated here.
pub struct EdgeInvalidation {
    pub generations: Arc<Generations>,
    pub zones: Vec<&'static Zone>,
}

impl Subscriber for EdgeInvalidation {
    fn on_event<'a>(
        &'a self,
        event: &'a Event,
        origin: Origin,
    ) -> crate::cluster::bus::BoxFuture<'a, ()> {
        match event {
            Event::RegistryChanged { .. } | Event::PrincipalsChanged { .. } => {
                self.generations.bump_all()
            }
            // This replica's edge already purged its own.
            Event::EdgePurge { .. } if origin == Origin::Local => {}
            Event::EdgePurge {
                target: PurgeTarget::Zone(z),
            } => {
                if let Some(zone) = self.zones.iter().find(|zone| zone.name == *z) {
                    zone.purge_all();
                }
            }
            Event::EdgePurge {
                target: PurgeTarget::Path(p),
            } => self.generations.bump(&format!("path:{p}")),
            // Kept reads of upstream resources are stale (the mcp zone
            // keeps them; its entries are cheap to make again).
            Event::UpstreamResourceUpdated { .. } => {
                if let Some(zone) = self.zones.iter().find(|zone| zone.name == "mcp") {
                    zone.purge_all();
                }
            }
            Event::TokenRevoked { .. } | Event::TokenIssued { .. } | Event::SessionEnded { .. } => {
            }
        }
        Box::pin(async {})
    }
}

/// The edge's live settings from mcpgate's configuration.
pub fn edge_config(c: &Config) -> EdgeConfig {
    let set = |xs: &[String]| xs.iter().cloned().collect();
    let mut routes = RouteTable {
        api_paths: set(&c.edge_api_paths),
        schema_paths: set(&c.edge_schema_paths),
        static_extensions: c
            .edge_static_extensions
            .iter()
            .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
            .collect(),
        ..RouteTable::default()
    };
    routes.health_paths = ["/health", "/ready"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    EdgeConfig {
        routes,
        zones: zone_specs(c),
        rate: c.edge_rate_limit_rps,
        burst: c.edge_rate_limit_burst,
        conn_limit: c.edge_conn_limit,
        compression: Compression {
            enabled: c.compression_enabled,
            minimum_size: c.compression_minimum_size,
            gzip_level: c.compression_gzip_level,
            brotli_quality: c.compression_brotli_quality,
            zstd_level: c.compression_zstd_level,
        },
        trusted_proxies: crate::util::parse_networks(&c.edge_trusted_proxies).unwrap_or_default(),
        max_body_bytes: c.max_request_body_bytes,
        stream_timeout: std::time::Duration::from_secs(c.edge_stream_timeout),
        stale_while_revalidate: c.edge_stale_while_revalidate,
        stale_if_error: c.edge_stale_if_error,
        post_zone: c.edge_mcp_cache_enabled.then(|| "mcp".to_owned()),
    }
}

pub fn zone_specs(c: &Config) -> Vec<ZoneSpec> {
    use std::time::Duration;
    vec![
        ZoneSpec::new(
            "static",
            c.edge_cache_static_bytes,
            Duration::from_secs(c.edge_cache_static_ttl),
        ),
        ZoneSpec::new(
            "api",
            c.edge_cache_api_bytes,
            Duration::from_secs(c.edge_cache_api_ttl),
        ),
        ZoneSpec::new(
            "schema",
            c.edge_cache_schema_bytes,
            Duration::from_secs(c.edge_cache_schema_ttl),
        ),
        ZoneSpec::new(
            "mcp",
            c.edge_cache_mcp_bytes,
            Duration::from_secs(c.edge_cache_mcp_ttl),
        ),
    ]
}

/// The process's zones, created once; a reload reconfigures them in place.
pub fn make_zones(c: &Config) -> Vec<&'static Zone> {
    zone_specs(c).iter().map(Zone::leak).collect()
}
