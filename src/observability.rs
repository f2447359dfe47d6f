//! Logging set-up (with a live log level) and the application's
//! Prometheus metrics; the HTTP side of metrics is in `api::metrics`.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};

use crate::config::Config;

static LOG_FILTER: std::sync::OnceLock<reload::Handle<EnvFilter, tracing_subscriber::Registry>> =
    std::sync::OnceLock::new();

/// Installs the process's log subscriber; its level can be changed later
/// by [`set_log_level`] (a live setting).
pub fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(config.log_filter()).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if config.log_format == "json" {
        registry.with(fmt.json()).try_init()
    } else {
        registry.with(fmt).try_init()
    };
    if installed.is_ok() {
        let _ = LOG_FILTER.set(handle);
    }
}

/// Applies a reloaded `LOG_LEVEL`.
pub fn set_log_level(config: &Config) {
    if let (Some(handle), Ok(filter)) = (LOG_FILTER.get(), EnvFilter::try_new(config.log_filter()))
    {
        let _ = handle.reload(filter);
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub db_queries: IntCounter,
    pub items: IntGaugeVec,
    /// `mcp_requests_total{method,server,outcome}`.
    pub mcp_requests: IntCounterVec,
    /// `mcp_tool_calls_total{tool,gateway,outcome}`.
    pub tool_calls: IntCounterVec,
    /// `mcp_tool_call_duration_seconds{tool,gateway}`.
    pub tool_latency: HistogramVec,
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
        let mcp_requests = IntCounterVec::new(
            Opts::new(
                "mcp_requests_total",
                "MCP requests by method, virtual server (all: /mcp and /rpc) and outcome",
            ),
            &["method", "server", "outcome"],
        )
        .expect("valid metric");
        let tool_calls = IntCounterVec::new(
            Opts::new(
                "mcp_tool_calls_total",
                "tools/call by tool, its gateway (rest: a REST tool) and outcome",
            ),
            &["tool", "gateway", "outcome"],
        )
        .expect("valid metric");
        let tool_latency = HistogramVec::new(
            HistogramOpts::new(
                "mcp_tool_call_duration_seconds",
                "tools/call time by tool and gateway",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            &["tool", "gateway"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(db_queries.clone()),
            Box::new(items.clone()),
            Box::new(mcp_requests.clone()),
            Box::new(tool_calls.clone()),
            Box::new(tool_latency.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
            db_queries,
            items,
            mcp_requests,
            tool_calls,
            tool_latency,
        }
    }
}
