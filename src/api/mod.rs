//! The HTTP application on port 4444: the registry REST API under `/v1`
//! (with the unversioned paths as deprecated aliases), health, version and
//! metrics.

pub mod error;
pub mod extract;
pub mod health;
pub mod items;
pub mod mcp_routes;
pub mod teams;
pub mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::{Auth, bearer};
use crate::config::Config;
use crate::crypto::Sealer;
use crate::federation::Federation;
use crate::federation::service::GatewayService;
use crate::mcp::http::Endpoint;
use crate::observability::Metrics;
use crate::registry::Registry;
use error::ApiError;
use mcpgate_proxy::edge::LINGER;

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
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
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
    /// After a committed registry write: rebuild the snapshot. If that
    /// fails the write still stands; the sync task retries.
    pub async fn after_write(&self) {
        if let Err(e) = self.registry.reload().await {
            tracing::warn!(error = %e, "registry reload after write failed");
        }
    }

    pub async fn after_membership_change(&self) {
        self.after_write().await;
        self.auth.invalidate_principals();
    }
}

/// Resolves the caller: a verified token, or when tokens are not required
/// the platform admin (`AUTH_REQUIRED=false`) or, on MCP routes with
/// `MCP_REQUIRE_AUTH=false`, an anonymous public-only principal.
async fn resolve_principal(
    st: &AppState,
    token: Option<String>,
    required: bool,
) -> Result<Arc<crate::auth::Principal>, ApiError> {
    match token.as_deref() {
        Some(token) if st.config.auth_required || required => {
            Ok(st.auth.authenticate(token).await?)
        }
        Some(_) | None if !st.config.auth_required => Ok(st.auth.anonymous_admin()),
        None if !required => Ok(st.auth.anonymous()),
        _ => Err(ApiError::Unauthorized("missing bearer token".into())),
    }
}

fn token_of(req: &Request) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned)
}

async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match resolve_principal(&st, token_of(&req), true).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn authenticate_mcp(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match resolve_principal(&st, token_of(&req), st.config.mcp_auth_required()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn deprecated(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("deprecation", HeaderValue::from_static("true"));
    h.insert(
        "sunset",
        HeaderValue::from_static("Sat, 26 Sep 2026 00:00:00 GMT"),
    );
    resp
}

fn api_routes() -> axum::Router<AppState> {
    items::routes()
        .merge(teams::routes())
        .merge(tokens::routes())
}

/// Bodies over the limit get a JSON 413 with `Connection: close` (as
/// nginx): the body is not read, so a keep-alive client must not send its
/// next request on this connection. A declared oversize body is refused
/// before the handler and read and discarded for a bounded time after the
/// answer (lingering close), so that a client still writing it gets to read
/// the 413 instead of a reset.
async fn too_large(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let limit = st.config.max_request_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let resp = if declared.is_some_and(|n| n > limit as u64) {
        tokio::spawn(linger(req.into_body()));
        ApiError::TooLarge(limit).into_response()
    } else {
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

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

pub fn router(state: AppState) -> axum::Router {
    let mut protected = axum::Router::new()
        .nest("/v1", api_routes())
        .route("/metrics/prometheus", get(crate::observability::prometheus));
    if state.config.legacy_api_enabled {
        protected = protected.merge(api_routes().layer(middleware::from_fn(deprecated)));
    }
    let protected =
        protected.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let mcp = mcp_routes::routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        authenticate_mcp,
    ));
    axum::Router::new()
        .merge(mcp)
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/version", get(health::version))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), too_large))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::observability::track,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_request_body_bytes))
        .with_state(state)
}
