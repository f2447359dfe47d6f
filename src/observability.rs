//! Logging set-up and Prometheus metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::api::AppState;
use crate::config::Config;

pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(config.log_filter())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    db_queries: IntCounter,
    items: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mcpgate_http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "mcpgate_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let db_queries = IntCounter::new("mcpgate_db_queries_total", "SQL statements run")
            .expect("valid metric");
        let items = IntGaugeVec::new(
            Opts::new("mcpgate_registry_items", "Registry items by kind"),
            &["kind"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(db_queries.clone()),
            Box::new(items.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
            db_queries,
            items,
        }
    }
}

pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // Both are reference-counted: no string is copied per request.
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let resp = next.run(req).await;
    let m = &st.metrics;
    m.requests
        .with_label_values(&[method.as_str(), route, resp.status().as_str()])
        .inc();
    m.latency
        .with_label_values(&[route])
        .observe(start.elapsed().as_secs_f64());
    resp
}

pub async fn prometheus(State(st): State<AppState>) -> Response {
    let m = &st.metrics;
    let total = st.registry.store().query_count();
    let seen = m.db_queries.get();
    if total > seen {
        m.db_queries.inc_by(total - seen);
    }
    let snap = st.registry.snapshot();
    for (kind, n) in [
        ("tools", snap.tools.len()),
        ("gateways", snap.gateways.len()),
        ("resources", snap.resources.len()),
        ("prompts", snap.prompts.len()),
        ("servers", snap.servers.len()),
        ("teams", snap.teams.len()),
    ] {
        m.items.with_label_values(&[kind]).set(n as i64);
    }
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    if !st.edge_zones.is_empty() {
        buf.extend_from_slice(st.edge_metrics.render(&st.edge_zones).as_bytes());
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        buf,
    )
        .into_response()
}
