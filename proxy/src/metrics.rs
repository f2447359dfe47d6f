//! Prometheus metrics of the edge: requests and latency by route class and
//! status, cache results by zone, zone sizes and evictions, rate-limit
//! rejections, requests in flight.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use mcpgate_cache_zones::Zone;
use prometheus::{Histogram, IntCounter};
use std::sync::OnceLock;

use crate::routes::RouteClass;

/// In declaration order, so `class as usize` indexes it.
const CLASSES: [RouteClass; 5] = [
    RouteClass::Static,
    RouteClass::Api,
    RouteClass::Schema,
    RouteClass::Health,
    RouteClass::Bypass,
];
/// Status codes 100..=599 get a cached counter handle per class.
const STATUSES: usize = 500;

/// Handles resolved once, so a request costs no label hashing.
struct ClassHandles {
    latency: Histogram,
    by_status: Box<[OnceLock<IntCounter>]>,
}

/// A request counted in flight for as long as this lives: whatever way a
/// request ends (answered, failed, or its task dropped at shutdown), the
/// count comes down.
pub struct InFlight(IntGauge);

impl InFlight {
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct EdgeMetrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub cache: IntCounterVec,
    pub rejected: IntCounterVec,
    pub inflight: IntGauge,
    zone_bytes: IntGaugeVec,
    zone_entries: IntGaugeVec,
    zone_evictions: IntGaugeVec,
    handles: Vec<ClassHandles>,
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mcpgate_edge_requests_total",
                "Edge requests by route class and status",
            ),
            &["class", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "mcpgate_edge_request_duration_seconds",
                "Edge request latency by route class",
            )
            .buckets(vec![
                0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["class"],
        )
        .expect("metric");
        let cache = IntCounterVec::new(
            Opts::new(
                "mcpgate_edge_cache_results_total",
                "Cache results by zone (HIT, MISS, ...)",
            ),
            &["zone", "result"],
        )
        .expect("metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "mcpgate_edge_rejected_total",
                "Requests refused by the rate or connection limit",
            ),
            &["limit"],
        )
        .expect("metric");
        let inflight = IntGauge::new(
            "mcpgate_edge_inflight_requests",
            "Requests in flight at the edge",
        )
        .expect("metric");
        let zone_bytes = IntGaugeVec::new(
            Opts::new("mcpgate_edge_zone_bytes", "Bytes stored per cache zone"),
            &["zone"],
        )
        .expect("metric");
        let zone_entries = IntGaugeVec::new(
            Opts::new("mcpgate_edge_zone_entries", "Entries per cache zone"),
            &["zone"],
        )
        .expect("metric");
        let zone_evictions = IntGaugeVec::new(
            Opts::new(
                "mcpgate_edge_zone_evictions",
                "Entries evicted per cache zone",
            ),
            &["zone"],
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(cache.clone()),
            Box::new(rejected.clone()),
            Box::new(inflight.clone()),
            Box::new(zone_bytes.clone()),
            Box::new(zone_entries.clone()),
            Box::new(zone_evictions.clone()),
        ] {
            registry.register(c).expect("registered once");
        }
        // Series that exist before their first event, so that a rate over
        // them is 0 rather than nothing.
        for limit in ["rate", "conn"] {
            rejected.with_label_values(&[limit]);
        }
        let handles = CLASSES
            .iter()
            .map(|c| ClassHandles {
                latency: latency.with_label_values(&[c.as_str()]),
                by_status: (0..STATUSES).map(|_| OnceLock::new()).collect(),
            })
            .collect();
        EdgeMetrics {
            handles,
            registry,
            requests,
            latency,
            cache,
            rejected,
            inflight,
            zone_bytes,
            zone_entries,
            zone_evictions,
        }
    }
}

impl EdgeMetrics {
    /// Counts a finished request and its latency.
    pub fn observe(&self, class: RouteClass, status: u16, seconds: f64) {
        let h = &self.handles[class as usize];
        h.latency.observe(seconds);
        let counter = |status: u16| {
            self.requests
                .with_label_values(&[class.as_str(), &status.to_string()])
        };
        match usize::from(status).checked_sub(100) {
            Some(i) if i < STATUSES => h.by_status[i].get_or_init(|| counter(status)).inc(),
            _ => counter(status).inc(),
        }
    }

    /// The text exposition, with zone gauges refreshed.
    pub fn render(&self, zones: &[&'static Zone]) -> String {
        for z in zones {
            let s = z.snapshot();
            self.zone_bytes
                .with_label_values(&[z.name.as_str()])
                .set(s.bytes as i64);
            self.zone_entries
                .with_label_values(&[z.name.as_str()])
                .set(s.entries as i64);
            self.zone_evictions
                .with_label_values(&[z.name.as_str()])
                .set(s.evictions as i64);
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_index_their_handles() {
        for (i, c) in CLASSES.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    #[test]
    fn requests_are_counted_by_class_and_status() {
        let m = EdgeMetrics::default();
        m.observe(RouteClass::Api, 200, 0.001);
        m.observe(RouteClass::Api, 200, 0.002);
        m.observe(RouteClass::Bypass, 0, 0.001);
        m.observe(RouteClass::Health, 799, 0.001);
        let text = m.render(&[]);
        assert!(text.contains(r#"mcpgate_edge_requests_total{class="api",status="200"} 2"#));
        assert!(text.contains(r#"mcpgate_edge_requests_total{class="bypass",status="0"} 1"#));
        assert!(text.contains(r#"mcpgate_edge_requests_total{class="health",status="799"} 1"#));
        assert!(text.contains(r#"mcpgate_edge_request_duration_seconds_count{class="api"} 2"#));
    }
}
