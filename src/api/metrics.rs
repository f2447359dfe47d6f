//! Request metrics middleware and the Prometheus text endpoint.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, TextEncoder};

use super::AppState;

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

/// The routes of the unauthenticated scrape listener (`METRICS_PORT`):
/// the metrics text and nothing else.
pub fn scrape_router(st: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(prometheus))
        .route("/metrics/prometheus", axum::routing::get(prometheus))
        .with_state(st)
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
    let mut families = m.registry.gather();
    // The names of the reference's dashboards and alert rules, for the
    // same series (copied at scrape time: nothing is counted twice).
    for (ours, theirs) in [
        ("mcpgate_http_requests_total", "http_requests_total"),
        (
            "mcpgate_http_request_duration_seconds",
            "http_request_duration_seconds",
        ),
    ] {
        if let Some(f) = families.iter().find(|f| f.name() == ours) {
            let mut alias = f.clone();
            alias.set_name(theirs.to_owned());
            families.push(alias);
        }
    }
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    buf.extend_from_slice(pool_and_upstream_metrics(&st).as_bytes());
    if !st.edge_zones.is_empty() {
        buf.extend_from_slice(st.edge_metrics.render(&st.edge_zones).as_bytes());
    }
    buf.extend_from_slice(cluster_metrics(&st).as_bytes());
    if let Some((in_use, limit)) = st.federation.tool_slots_in_use() {
        buf.extend_from_slice(
            format!(
                "# HELP mcpgate_tool_slots_in_use Tool calls holding one of the TOOL_CONCURRENT_LIMIT slots\n\
                 # TYPE mcpgate_tool_slots_in_use gauge\nmcpgate_tool_slots_in_use {in_use}\n\
                 # HELP mcpgate_tool_slots_limit TOOL_CONCURRENT_LIMIT\n\
                 # TYPE mcpgate_tool_slots_limit gauge\nmcpgate_tool_slots_limit {limit}\n"
            )
            .as_bytes(),
        );
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

/// The database pool as the reference names it, and each upstream's health.
fn pool_and_upstream_metrics(st: &AppState) -> String {
    use std::fmt::Write;
    let (size, active) = st.registry.store().pool_usage();
    let mut out = format!(
        "# HELP db_pool_size Connections the database pool may open\n# TYPE db_pool_size gauge\ndb_pool_size {size}\n\
         # HELP db_pool_connections_active Pooled connections in use\n# TYPE db_pool_connections_active gauge\ndb_pool_connections_active {active}\n\
         # HELP mcp_sessions_open MCP sessions held by this replica\n# TYPE mcp_sessions_open gauge\nmcp_sessions_open {}\n\
         # HELP mcp_upstream_up 1 while an upstream MCP server passes its health checks\n# TYPE mcp_upstream_up gauge\n",
        st.mcp.sessions.len()
    );
    let snap = st.registry.snapshot();
    for e in snap.gateways.iter() {
        let g = &e.item;
        let name = g.name.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "mcp_upstream_up{{gateway=\"{name}\"}} {}",
            u8::from(g.enabled && g.reachable)
        );
    }
    out
}

/// The replica's view of the cluster: whether it leads, what the bus
/// carried, how far its snapshot is, and how many Redis commands it sent.
fn cluster_metrics(st: &AppState) -> String {
    use std::fmt::Write;
    let transport = st.bus.transport();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "mcpgate_cluster_leader",
        "1 while this replica holds the leader lease",
        "gauge",
        st.leadership.is_leader() as u64,
    );
    gauge(
        "mcpgate_cluster_bus_connected",
        "1 while cluster events reach other replicas (Redis pub/sub)",
        "gauge",
        transport.connected() as u64,
    );
    gauge(
        "mcpgate_cluster_bus_published_total",
        "Cluster events published by this replica",
        "counter",
        st.bus.published(),
    );
    gauge(
        "mcpgate_cluster_bus_received_total",
        "Cluster events received from other replicas",
        "counter",
        st.bus.received(),
    );
    gauge(
        "mcpgate_registry_version",
        "Registry version of the snapshot being served",
        "gauge",
        u64::try_from(st.registry.version()).unwrap_or(0),
    );
    if let Some(r) = &st.redis {
        gauge(
            "mcpgate_redis_commands_total",
            "Redis commands sent by this process",
            "counter",
            r.commands_sent(),
        );
    }
    out
}
