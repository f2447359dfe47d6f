//! The edge's `ProxyHttp`: classify, limit, authenticate, then answer from
//! a cache zone, fill it from the application's listener, or hand the
//! request to the application in-process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
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

use crate::app::{EdgeApp, Generations};
use crate::config::EdgeConfig;
use crate::downstream::{Downstream, bodiless, chosen, content_length};
use crate::encoding::{Encoding, negotiate};
use crate::limits::{ConnGuard, ConnLimiter, RateLimiter};
use crate::metrics::{EdgeMetrics, InFlight};
use crate::routes::RouteClass;

const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

static CACHE_LOCK: Lazy<Box<CacheKeyLockImpl>> =
    Lazy::new(|| CacheLock::new_boxed(Duration::from_secs(10)));

/// Per-request state.
pub struct Ctx {
    start: Instant,
    class: RouteClass,
    encoding: Encoding,
    client_ip: Option<IpAddr>,
    correlation_id: HeaderValue,
    scope: Option<String>,
    zone: Option<&'static Zone>,
    /// The lookup found an expired entry (nginx's EXPIRED when the refresh
    /// answer is not stored).
    found_expired: bool,
    pub(crate) status: u16,
    _conn: Option<ConnGuard>,
    _inflight: InFlight,
    config: Arc<EdgeConfig>,
}

/// Cloned for each lane: clones share the limiters, zones and metrics.
pub struct EdgeProxy<A: EdgeApp> {
    app: Arc<A>,
    config: Arc<ArcSwap<EdgeConfig>>,
    zones: Arc<HashMap<String, &'static Zone>>,
    pub generations: Arc<Generations>,
    rate: Arc<RateLimiter>,
    conns: Arc<ConnLimiter>,
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

/// The client's address: the socket peer, or `X-Forwarded-For` when the
/// peer is a trusted proxy (the rightmost untrusted hop).
fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, config: &EdgeConfig) -> Option<IpAddr> {
    let peer = peer?;
    let trusted = |ip: &IpAddr| config.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let xff = headers
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let hops: Vec<IpAddr> = xff
        .split(',')
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer),
    )
}

async fn answer<D: Downstream>(
    session: &mut D,
    correlation_id: &HeaderValue,
    status: u16,
    headers: &[(&str, String)],
    body: String,
    close: bool,
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(headers.len() + 3))?;
    h.insert_header("content-type", "application/json")?;
    if !correlation_id.is_empty() {
        h.insert_header(X_CORRELATION_ID, correlation_id.clone())?;
    }
    h.insert_header("content-length", body.len().to_string())?;
    for (k, v) in headers {
        h.insert_header(k.to_string(), v.as_str())?;
    }
    if close {
        // An unwanted body is not worth keeping the connection for.
        session.close_after();
    }
    session.send_header(Box::new(h), false).await?;
    session.send_body(Some(Bytes::from(body)), true).await?;
    if close {
        // Lingering close (as nginx): read and discard what the client is
        // still sending, for a bounded time, so that it gets to read the
        // answer instead of a reset on a write into a closed socket.
        let _ = tokio::time::timeout(LINGER, session.drain_body()).await;
    }
    Ok(())
}

/// How long a refused request's body is read and discarded before closing
/// (the application on its own port lingers as long).
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Facts read once from the request head: the encoding negotiated (the
/// request's Accept-Encoding is reduced to it) and the correlation id.
pub(crate) fn prepare<D: Downstream>(session: &mut D, ctx: &mut Ctx) -> Result<()> {
    let headers = &session.request().headers;
    ctx.encoding = negotiate(headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
    ctx.correlation_id = headers
        .get(X_CORRELATION_ID)
        .filter(|v| {
            let v = v.as_bytes();
            !v.is_empty() && v.len() <= 128 && v.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(new_correlation_id);
    session.reduce_accept_encoding(ctx.encoding)
}

/// A unique request id without a system call: a random per-process prefix
/// and a counter (in hex).
fn new_correlation_id() -> HeaderValue {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: Lazy<String> =
        Lazy::new(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_owned());
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    let mut id = String::with_capacity(PREFIX.len() + 1 + 16);
    id.push_str(&PREFIX);
    id.push('-');
    for i in (0..digits).rev() {
        id.push(char::from(
            b"0123456789abcdef"[((n >> (i * 4)) & 0xf) as usize],
        ));
    }
    HeaderValue::try_from(id).expect("hex digits are a valid header value")
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

/// The text of a client address, formatted once per thread for as long as
/// the same client keeps coming (formatting costs more than the rest of the
/// forwarding headers together).
fn ip_text(ip: IpAddr) -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((seen, text)) if *seen == ip => text.clone(),
        _ => {
            let text = HeaderValue::from_str(&ip.to_string())
                .expect("an IP address is a valid header value");
            *last = Some((ip, text.clone()));
            text
        }
    })
}

/// The headers the application learns the client from, read from the
/// request's `headers` (`None`: the header must go, so that a client cannot
/// speak for the edge).
fn forwarded_headers(
    headers: &HeaderMap,
    ctx: &Ctx,
) -> Result<[(HeaderName, Option<HeaderValue>); 5]> {
    let (real, xff) = match ctx.client_ip {
        Some(ip) => {
            let text = ip_text(ip);
            let xff = match headers.get(X_FORWARDED_FOR).map(|v| v.as_bytes()) {
                Some(prev) => {
                    let mut v = Vec::with_capacity(prev.len() + 2 + text.len());
                    v.extend_from_slice(prev);
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(text.as_bytes());
                    HeaderValue::from_bytes(&v).map_err(|e| {
                        Error::because(
                            pingora_error::ErrorType::InvalidHTTPHeader,
                            "forwarded header",
                            e,
                        )
                    })?
                }
                None => text.clone(),
            };
            (Some(text), Some(xff))
        }
        None => (None, None),
    };
    Ok([
        (X_CORRELATION_ID, Some(ctx.correlation_id.clone())),
        (X_FORWARDED_PROTO, Some(HeaderValue::from_static("http"))),
        (X_REAL_IP, real),
        (X_FORWARDED_FOR, xff),
        (X_FORWARDED_HOST, headers.get(HOST).cloned()),
    ])
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

impl<A: EdgeApp> EdgeProxy<A> {
    /// Classifies the request and applies the per-IP limits: `Ok(true)`
    /// when it was refused (answered 429).
    pub(crate) async fn admit<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
    ) -> Result<bool> {
        let config = &*ctx.config;
        let req = session.request();
        ctx.class = config
            .routes
            .classify(&req.method, req.uri.path(), &req.headers);
        ctx.client_ip = client_ip(session.peer(), &req.headers, config);
        if ctx.class != RouteClass::Health
            && let Some(ip) = ctx.client_ip
        {
            match self.conns.enter(ip, config.conn_limit) {
                Ok(g) => ctx._conn = g,
                Err(_) => {
                    self.metrics.rejected.with_label_values(&["conn"]).inc();
                    ctx.status = 429;
                    let body = r#"{"error":"too_many_requests","detail":"too many concurrent requests from this address"}"#.to_owned();
                    answer(
                        session,
                        &ctx.correlation_id,
                        429,
                        &[
                            ("retry-after", "1".into()),
                            ("x-cache-status", "BYPASS".into()),
                        ],
                        body,
                        true,
                    )
                    .await?;
                    return Ok(true);
                }
            }
            if let Err(wait) = self.rate.check(ip, config.rate, config.burst) {
                self.metrics.rejected.with_label_values(&["rate"]).inc();
                ctx.status = 429;
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                let body = format!(
                    r#"{{"error":"too_many_requests","detail":"rate limit exceeded; retry in {secs} s"}}"#
                );
                answer(
                    session,
                    &ctx.correlation_id,
                    429,
                    &[
                        ("retry-after", secs.to_string()),
                        ("x-cache-status", "BYPASS".into()),
                    ],
                    body,
                    true,
                )
                .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records a finished request.
    pub(crate) fn record(&self, ctx: &Ctx, status: u16) {
        self.metrics
            .observe(ctx.class, status, ctx.start.elapsed().as_secs_f64());
    }

    /// 413, and the connection closes rather than drain an unwanted body.
    async fn too_large<D: Downstream>(&self, session: &mut D, ctx: &mut Ctx) -> Result<()> {
        ctx.status = 413;
        let msg = format!(
            r#"{{"error":"payload_too_large","detail":"request body is larger than {} bytes"}}"#,
            ctx.config.max_body_bytes
        );
        answer(
            session,
            &ctx.correlation_id,
            413,
            &[("x-cache-status", "BYPASS".into())],
            msg,
            true,
        )
        .await
    }

    /// Hands the request to the application and streams its answer back.
    pub(crate) async fn serve_in_process<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let config = ctx.config.clone();
        // A declared length over the limit is refused before reading a byte.
        let declared = content_length(&session.request().headers);
        if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
            return self.too_large(session, ctx).await;
        }
        // One chunk (the usual case) is handed over as is, without a copy.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0;
        while let Some(chunk) = session.read_body().await? {
            total += chunk.len();
            if total > config.max_body_bytes {
                return self.too_large(session, ctx).await;
            }
            chunks.push(chunk);
        }
        let body = match chunks.len() {
            1 => chunks.pop().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        };
        let mut parts = session.take_request();
        let method = parts.method.clone();
        for (k, v) in forwarded_headers(&parts.headers, ctx)? {
            match v {
                Some(v) => parts.headers.insert(k, v),
                None => parts.headers.remove(k),
            };
        }
        let request = http::Request::from_parts(parts, body);
        let response = self.app.call(request).await;
        let (mut parts, mut body) = response.into_parts();
        ctx.status = parts.status.as_u16();
        let is_stream = parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut length = content_length(&parts.headers);
        if length.is_none()
            && method != http::Method::HEAD
            && !bodiless(parts.status)
            && !parts.headers.contains_key(TRANSFER_ENCODING)
            && let Some(n) = http_body::Body::size_hint(&body).exact()
        {
            // A body that knows its size is sent with it (as hyper does),
            // not chunked.
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            length = Some(n);
        }
        parts
            .headers
            .insert(X_CACHE_STATUS, HeaderValue::from_static("BYPASS"));
        parts
            .headers
            .insert(X_CORRELATION_ID, ctx.correlation_id.clone());
        // The application's header moves over whole, without a copy.
        let header = ResponseHeader::from(parts);
        let small = length.is_some_and(|l| l < config.compression.minimum_size as u64);
        session.compress(&config.compression, ctx.encoding, !is_stream && !small);
        session.send_header(Box::new(header), false).await?;
        loop {
            let frame = if is_stream {
                match tokio::time::timeout(config.stream_timeout, body.frame()).await {
                    Ok(f) => f,
                    Err(_) => break,
                }
            } else {
                body.frame().await
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        // A body that knows it is done (the usual whole JSON
                        // answer) ends with its data: one pass through the
                        // writer instead of two.
                        let last = http_body::Body::is_end_stream(&body);
                        session.send_body(Some(data), last).await?;
                        if last {
                            return Ok(());
                        }
                    }
                }
                Some(Err(e)) => {
                    // The answer is cut short: closing without ending the
                    // body tells the client so (as hyper does on :4444).
                    tracing::warn!(error = %e, "in-process response body failed");
                    return Err(Error::explain(
                        pingora_error::ErrorType::ReadError,
                        "in-process response body failed",
                    ));
                }
                None => break,
            }
        }
        session.send_body(None, true).await
    }

    async fn purge(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let auth = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let scope = match self.app.authenticate(auth).await {
            Ok(s) => s,
            Err(r) => {
                ctx.status = r.status;
                return answer(session, &ctx.correlation_id, r.status, &[], r.body, false).await;
            }
        };
        if !self.app.can_purge(&scope) {
            ctx.status = 403;
            return answer(
                session,
                &ctx.correlation_id,
                403,
                &[],
                r#"{"error":"forbidden","detail":"purging needs a platform admin"}"#.into(),
                false,
            )
            .await;
        }
        let query = session.req_header().uri.query().unwrap_or("").to_owned();
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .map(str::to_owned)
        };
        let body = match (param("zone"), param("path")) {
            (Some(z), _) => match self.zones.get(&z) {
                Some(zone) => format!(
                    r#"{{"status":"purged","zone":"{z}","entries":{}}}"#,
                    zone.purge_all()
                ),
                None => {
                    ctx.status = 404;
                    return answer(
                        session,
                        &ctx.correlation_id,
                        404,
                        &[],
                        format!(r#"{{"error":"not_found","detail":"no zone {z}"}}"#),
                        false,
                    )
                    .await;
                }
            },
            (None, Some(p)) => {
                self.generations.bump(&format!("path:{p}"));
                format!(r#"{{"status":"purged","path":"{p}"}}"#)
            }
            (None, None) => {
                ctx.status = 400;
                return answer(
                    session,
                    &ctx.correlation_id,
                    400,
                    &[],
                    r#"{"error":"bad_request","detail":"give zone=NAME or path=/PATH"}"#.into(),
                    false,
                )
                .await;
            }
        };
        ctx.status = 200;
        answer(session, &ctx.correlation_id, 200, &[], body, false).await
    }
}

#[async_trait]
impl<A: EdgeApp> ProxyHttp for EdgeProxy<A> {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            _inflight: InFlight::new(&self.metrics.inflight),
            start: Instant::now(),
            class: RouteClass::Bypass,
            encoding: Encoding::Identity,
            client_ip: None,
            correlation_id: HeaderValue::from_static(""),
            scope: None,
            zone: None,
            found_expired: false,
            status: 0,
            _conn: None,
            config: self.config.load_full(),
        }
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
        if req.method == http::Method::POST && req.uri.path() == "/edge/purge" {
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
            match self.app.authenticate(auth).await {
                Ok(s) => s,
                Err(r) => {
                    ctx.status = r.status;
                    let headers = [
                        ("x-cache-status", "BYPASS".to_owned()),
                        ("www-authenticate", "Bearer".to_owned()),
                    ];
                    answer(
                        session,
                        &ctx.correlation_id,
                        r.status,
                        if r.status == 401 {
                            &headers[..]
                        } else {
                            &headers[..1]
                        },
                        r.body,
                        false,
                    )
                    .await?;
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

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let small = resp
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|l| l < ctx.config.compression.minimum_size);
        if small {
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
