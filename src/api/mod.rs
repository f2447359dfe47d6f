//! The HTTP application on port 4444: the registry REST API under `/v1`
//! (with the unversioned paths as deprecated aliases), health, version and
//! metrics.

pub mod error;
pub mod extract;
pub mod health;
pub mod items;
pub mod mcp_cache;
pub mod mcp_routes;
pub mod metrics;
pub mod openapi;
pub mod teams;
pub mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::access::Principal;
use crate::auth::{Auth, bearer};
use crate::cluster::{Bus, Leadership};
use crate::config::{Config, LiveConfig};
use crate::crypto::Sealer;
use crate::federation::Federation;
use crate::gateway::GatewayService;
use crate::lifecycle::Readiness;
use crate::mcp::http::Endpoint;
use crate::observability::Metrics;
use crate::registry::{Registry, Updater};
use error::ApiError;
use mcpgate_proxy::LINGER;

/// Shared by every handler. One `Arc`, so the per-request clones axum makes
/// (one per layer and extractor) cost one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl AppState {
    pub fn new(inner: AppInner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

pub struct AppInner {
    pub config: Arc<LiveConfig>,
    /// Read-only registry handle: every request path reads this.
    pub registry: Arc<Registry>,
    /// The write door: handlers that change the registry go through it.
    pub updater: Arc<Updater>,
    pub readiness: Arc<Readiness>,
    pub bus: Arc<Bus>,
    pub leadership: Arc<Leadership>,
    /// The process's Redis (`CACHE_TYPE=redis`).
    pub redis: Option<Arc<crate::cluster::redis::Redis>>,
    pub auth: Arc<Auth>,
    pub sealer: Arc<Sealer>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    pub federation: Arc<Federation>,
    pub mcp: Arc<Endpoint<GatewayService>>,
    pub edge_zones: Arc<Vec<&'static mcpgate_cache_zones::Zone>>,
    pub edge_metrics: Arc<mcpgate_proxy::metrics::EdgeMetrics>,
}

impl AppState {
    /// The configuration in force (live settings follow reloads).
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.get()
    }
}

/// Resolves the caller: a verified token, or when tokens are not required
/// the platform admin (`AUTH_REQUIRED=false`) or, on MCP routes with
/// `MCP_REQUIRE_AUTH=false`, an anonymous public-only principal.
pub(crate) async fn resolve_principal(
    st: &AppState,
    token: Option<String>,
    required: bool,
) -> Result<Arc<Principal>, ApiError> {
    let auth_required = st.config().auth_required;
    match token.as_deref() {
        Some(token) if auth_required || required => Ok(st.auth.verify(token).await?),
        Some(_) | None if !auth_required => Ok(st.auth.anonymous_admin()),
        None if !required => Ok(st.auth.anonymous()),
        _ => Err(ApiError::Unauthorized("missing bearer token".into())),
    }
}

pub(crate) fn token_of(req: &Request) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned)
}

/// Middleware of the REST API: a principal is required.
async fn require_principal(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match resolve_principal(&st, token_of(&req), true).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Middleware of the MCP endpoints: anonymous callers are let in when
/// `MCP_REQUIRE_AUTH=false`.
async fn mcp_principal(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let required = st.config().mcp_auth_required();
    match resolve_principal(&st, token_of(&req), required).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The unversioned aliases: deprecated, and gone when `LEGACY_API_ENABLED`
/// is switched off (live).
async fn deprecated(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if !st.config().legacy_api_enabled {
        return ApiError::NotFound(
            "no such route (the unversioned API is disabled; use /v1)".into(),
        )
        .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("deprecation", HeaderValue::from_static("true"));
    h.insert(
        "sunset",
        HeaderValue::from_static("Sat, 26 Sep 2026 00:00:00 GMT"),
    );
    resp
}

fn api_routes() -> openapi::Routes {
    items::routes()
        .merge(teams::routes())
        .merge(tokens::routes())
}

/// The document of everything [`router`] serves that is not MCP transport:
/// the REST API under `/v1`, and the public routes.
pub fn document() -> utoipa::openapi::OpenApi {
    use openapi::{any_object, op};
    use utoipa::openapi::path::HttpMethod;
    let mut top = openapi::Routes::default();
    top.take_doc(api_routes().doc, "/v1");
    let mut doc = top.doc;
    let public = |id: &str, summary: &str| op(id, "operations", summary).public();
    let health = vec![
        (
            "/health",
            public("health", "Liveness: 200 when the database answers")
                .answers(200, "Healthy", any_object())
                .answers(503, "The database does not answer", any_object())
                .on(HttpMethod::Get),
        ),
        (
            "/ready",
            public(
                "ready",
                "Readiness: 200 when serving and every backing service answers",
            )
            .answers(200, "Ready, with this replica's cluster view", any_object())
            .answers(
                503,
                "Starting, draining, or a dependency is down",
                any_object(),
            )
            .on(HttpMethod::Get),
        ),
        (
            "/version",
            public("version", "Version, database backend and uptime")
                .answers(200, "The version", any_object())
                .on(HttpMethod::Get),
        ),
        (
            "/metrics/prometheus",
            op(
                "metrics",
                "operations",
                "Prometheus metrics (also on METRICS_PORT without a token)",
            )
            .answers_text(200, "Prometheus text format", "text/plain")
            .fails(&[401])
            .on(HttpMethod::Get),
        ),
        (
            "/openapi.json",
            public("openapi", "This document")
                .answers(200, "OpenAPI 3.1", any_object())
                .on(HttpMethod::Get),
        ),
        (
            "/docs",
            public("docs", "This document as a page")
                .answers_text(200, "HTML", "text/html")
                .on(HttpMethod::Get),
        ),
        (
            "/rpc",
            op(
                "rpc",
                "mcp",
                "One JSON-RPC 2.0 message (MCP), answered as JSON, without a session",
            )
            .body(any_object())
            .answers(200, "The JSON-RPC answer (errors included)", any_object())
            .answers(
                400,
                "A JSON-RPC error: the message could not be parsed",
                any_object(),
            )
            .fails(&[401, 413])
            .on(HttpMethod::Post),
        ),
    ];
    for (path, (method, o)) in health {
        doc.add(path, method, o);
    }
    doc.document()
}

/// Bodies over the limit get a JSON 413 with `Connection: close` (as
/// nginx): the body is not read, so a keep-alive client must not send its
/// next request on this connection. A declared oversize body is refused
/// before the handler and read and discarded for a bounded time after the
/// answer (lingering close), so that a client still writing it gets to read
/// the 413 instead of a reset.
///
/// The limit is the live one: the body is wrapped in a limit read per
/// request, so a reload applies to the next request.
async fn too_large(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let limit = st.config().max_request_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let resp = if declared.is_some_and(|n| n > limit as u64) {
        tokio::spawn(linger(req.into_body()));
        ApiError::TooLarge(limit).into_response()
    } else {
        let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, limit)));
        let resp = next.run(req).await;
        if resp.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            return resp;
        }
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json {
            resp
        } else {
            ApiError::TooLarge(limit).into_response()
        }
    };
    let mut resp = resp;
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Reads and discards a refused body for at most [`LINGER`].
async fn linger(body: axum::body::Body) {
    use futures_util::StreamExt;
    let mut data = body.into_data_stream();
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(_)) = data.next().await {}
    })
    .await;
}

fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("panic");
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}

/// `/openapi.json` and `/docs`, rendered once: public, and cacheable by the
/// edge's `schema` zone.
fn schema_routes() -> axum::Router<AppState> {
    let doc = document();
    let json: axum::body::Bytes = doc.to_json().expect("the document serializes").into();
    let html: axum::body::Bytes = openapi::render_html(&doc).into();
    const CACHE: &str = "public, max-age=300";
    axum::Router::new()
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, CACHE),
                    ],
                    json,
                )
            }),
        )
        .route(
            "/docs",
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CACHE_CONTROL, CACHE),
                    ],
                    html,
                )
            }),
        )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

pub fn router(state: AppState) -> axum::Router {
    let protected = axum::Router::new()
        .nest("/v1", api_routes().router)
        .route("/metrics/prometheus", get(metrics::prometheus))
        .merge(
            api_routes()
                .router
                .layer(middleware::from_fn_with_state(state.clone(), deprecated)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_principal,
        ));
    let mcp = mcp_routes::routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), mcp_principal));
    axum::Router::new()
        .merge(mcp)
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/version", get(health::version))
        .merge(schema_routes())
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), too_large))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        // A bug in a handler (or a driver) answers 500 instead of dropping
        // the connection with the request in flight.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_answer,
        ))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
