//! The edge's `ProxyHttp`: the phases, each a delegation to the room that
//! does the work — admission (`admission`), the edge's own answers
//! (`answers`), purges (`purge`), the in-process hand-over (`inprocess`),
//! forwarding headers (`forwarding`) — plus the cache phases: the key (route,
//! query, scope, encoding, generations), what may be stored, and the
//! `X-Cache-Status` of the answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderName;
use once_cell::sync::Lazy;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::{
    CacheKey, CacheMeta, ForcedFreshness, HitHandler, NoCacheReason, RespCacheable,
};
use pingora_core::modules::http::HttpModules;
use pingora_core::modules::http::compression::ResponseCompressionBuilder;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};

use mcpgate_cache_zones::Zone;

use crate::answers::{EdgeAnswer, send};
use crate::app::{EdgeApp, Generations};
use crate::config::EdgeConfig;
use crate::context::{Ctx, prepare};
use crate::downstream::{Downstream, chosen};
use crate::forwarding::forwarded_headers;
use crate::limits::{ConnLimiter, RateLimiter};
use crate::metrics::{EdgeMetrics, InFlight};
use crate::purge::PURGE_PATH;
use crate::routes::RouteClass;

pub(crate) const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");

static CACHE_LOCK: Lazy<Box<CacheKeyLockImpl>> =
    Lazy::new(|| CacheLock::new_boxed(Duration::from_secs(10)));

/// Cloned for each lane: clones share the limiters, zones and metrics.
pub struct EdgeProxy<A: EdgeApp> {
    pub(crate) app: Arc<A>,
    config: Arc<ArcSwap<EdgeConfig>>,
    pub(crate) zones: Arc<HashMap<String, &'static Zone>>,
    pub generations: Arc<Generations>,
    pub(crate) rate: Arc<RateLimiter>,
    pub(crate) conns: Arc<ConnLimiter>,
    pub metrics: Arc<EdgeMetrics>,
}

impl<A: EdgeApp> Clone for EdgeProxy<A> {
    fn clone(&self) -> Self {
        EdgeProxy {
            app: self.app.clone(),
            config: self.config.clone(),
            zones: self.zones.clone(),
            generations: self.generations.clone(),
            rate: self.rate.clone(),
            conns: self.conns.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<A: EdgeApp> EdgeProxy<A> {
    pub fn new(
        app: Arc<A>,
        config: Arc<ArcSwap<EdgeConfig>>,
        zones: HashMap<String, &'static Zone>,
        generations: Arc<Generations>,
        metrics: Arc<EdgeMetrics>,
    ) -> Self {
        EdgeProxy {
            app,
            config,
            zones: Arc::new(zones),
            generations,
            rate: Arc::default(),
            conns: Arc::default(),
            metrics,
        }
    }

    fn zone_for(&self, class: RouteClass) -> Option<&'static Zone> {
        match class {
            RouteClass::Api | RouteClass::Schema | RouteClass::Static => {
                self.zones.get(class.as_str()).copied()
            }
            _ => None,
        }
    }
}

fn cache_status(session: &Session) -> &'static str {
    match session.cache.phase().as_str() {
        "hit" => "HIT",
        "miss" => "MISS",
        "expired" => "EXPIRED",
        "stale" => "STALE",
        "stale-updating" => "UPDATING",
        "revalidated" | "revalidated-nocache" => "REVALIDATED",
        _ => "BYPASS",
    }
}

fn normalized_query(query: Option<&str>) -> String {
    let mut pairs: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    pairs.sort_unstable();
    pairs.join("&")
}

#[async_trait]
impl<A: EdgeApp> ProxyHttp for EdgeProxy<A> {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(
            InFlight::new(&self.metrics.inflight),
            self.config.load_full(),
        )
    }

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        // Levels are chosen per request (and off for streams).
        modules.add_module(ResponseCompressionBuilder::enable(0));
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        prepare(session, ctx)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.admit(session, ctx).await? {
            return Ok(true);
        }
        let config = ctx.config.clone();
        let req = session.req_header();
        if req.method == http::Method::POST && req.uri.path() == PURGE_PATH {
            self.purge(session, ctx).await?;
            return Ok(true);
        }
        if session.is_upgrade_req() {
            // WebSocket: proxied to the application's listener, untouched.
            return Ok(false);
        }
        let Some(zone) = self.zone_for(ctx.class) else {
            self.serve_in_process(session, ctx).await?;
            return Ok(true);
        };
        // Authenticate before the lookup: a cached body never reaches a
        // caller who could not have fetched it.
        let scope = if ctx.class == RouteClass::Static {
            "public".to_owned()
        } else {
            let auth = session
                .req_header()
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match self.app.scope_of(auth).await {
                Ok(s) => s,
                Err(r) => {
                    send(session, ctx, EdgeAnswer::Refused(r)).await?;
                    return Ok(true);
                }
            }
        };
        ctx.scope = Some(scope);
        ctx.zone = Some(zone);
        // Compress once, before the cache: a hit then costs no compression.
        session.upstream_compression.adjust_level(0);
        if let Some((algorithm, level)) = chosen(&config.compression, ctx.encoding, true) {
            session
                .upstream_compression
                .adjust_algorithm_level(algorithm, level);
        }
        session.compress(&config.compression, ctx.encoding, false);
        Ok(false)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        if let Some(zone) = ctx.zone {
            session.cache.enable(
                zone,
                Some(zone.eviction()),
                None,
                Some(CACHE_LOCK.as_ref()),
                None,
            );
            // Larger answers pass through uncached instead of failing the
            // fill halfway.
            session
                .cache
                .set_max_file_size_bytes(zone.max_object_bytes());
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        let req = session.req_header();
        let path = req.uri.path();
        let zone = ctx.zone.map_or("", |z| z.name.as_str());
        let generation = ctx.zone.map_or(0, |z| z.generation.current());
        // Every part that changes the body is in the key; the scope keeps
        // users and teams apart; generations make writes visible at once.
        let key = format!(
            "{zone}|g{generation}.{}.{}|{path}?{}|{}|{}",
            self.generations.get("registry"),
            self.generations.get(&format!("path:{path}")),
            normalized_query(req.uri.query()),
            ctx.scope.as_deref().unwrap_or(""),
            ctx.encoding.token(),
        );
        Ok(CacheKey::new(key, ""))
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.app.upstream(), false, String::new());
        if ctx.zone.is_none() {
            peer.options.read_timeout = Some(ctx.config.stream_timeout);
            peer.options.idle_timeout = Some(ctx.config.stream_timeout);
        } else {
            peer.options.read_timeout = Some(Duration::from_secs(60));
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for (k, v) in forwarded_headers(&session.req_header().headers, ctx)? {
            match v {
                Some(v) => upstream.insert_header(k, v)?,
                None => {
                    upstream.remove_header(&k);
                }
            }
        }
        if ctx.zone.is_some() {
            // Accept-Encoding stays (already reduced to our choice): the
            // pre-cache compressor reads it from this request.
            if let Some(meta) = session.cache.maybe_cache_meta() {
                pingora_cache::filters::upstream::request_filter(upstream, Some(meta));
            }
        }
        Ok(())
    }

    /// Answers under the minimum size are stored uncompressed. This runs
    /// before the pre-cache compressor reads the header; in
    /// `upstream_response_filter` it ran after, and adjusting a compressor
    /// already at work panics (which aborted the process).
    async fn adjust_upstream_modules(
        &self,
        session: &mut Session,
        resp: &ResponseHeader,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let small = resp
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|l| l < ctx.config.compression.minimum_size);
        if small && session.upstream_compression.is_header_phase() {
            session.upstream_compression.adjust_level(0);
        }
        Ok(())
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        let Some(zone) = ctx.zone else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        let h = &resp.headers;
        if h.contains_key("set-cookie") {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(
                "set-cookie",
            )));
        }
        let cc = h
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if cc.contains("no-store") || cc.contains("private") {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache));
        }
        let ttl = match resp.status.as_u16() {
            200 => cc
                .split(',')
                .find_map(|d| {
                    d.trim()
                        .strip_prefix("s-maxage=")
                        .or_else(|| d.trim().strip_prefix("max-age="))
                })
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or(*zone.default_ttl.read()),
            404 => Duration::from_secs(60),
            _ => return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache)),
        };
        let now = SystemTime::now();
        let c = &ctx.config;
        Ok(RespCacheable::Cacheable(CacheMeta::new(
            now + ttl,
            now,
            c.stale_while_revalidate,
            c.stale_if_error,
            resp.clone(),
        )))
    }

    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        _meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<ForcedFreshness>> {
        ctx.found_expired = !is_fresh;
        Ok(None)
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        match error {
            None => ctx.config.stale_while_revalidate > 0,
            Some(_) => ctx.config.stale_if_error > 0,
        }
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let status = match (ctx.zone.is_some(), cache_status(session)) {
            (false, _) => "BYPASS",
            (true, "BYPASS") if ctx.found_expired => "EXPIRED",
            (true, status) => status,
        };
        if let Some(z) = ctx.zone {
            self.metrics
                .cache
                .with_label_values(&[z.name.as_str(), status])
                .inc();
            resp.insert_header("vary", "Accept-Encoding")?;
        }
        resp.insert_header("x-cache-status", status)?;
        resp.insert_header("x-correlation-id", ctx.correlation_id.clone())?;
        ctx.status = resp.status.as_u16();
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = if ctx.status != 0 {
            ctx.status
        } else {
            session.response_written().map_or(0, |r| r.status.as_u16())
        };
        self.record(ctx, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_normalized() {
        assert_eq!(normalized_query(Some("b=2&a=1")), "a=1&b=2");
        assert_eq!(normalized_query(Some("")), "");
        assert_eq!(normalized_query(None), "");
        assert_eq!(normalized_query(Some("a=1&&b=2")), "a=1&b=2");
    }
}
