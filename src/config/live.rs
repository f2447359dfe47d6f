//! The live part of the configuration: one value shared by the application
//! and the edge, swapped whole on `SIGHUP` or a change of the file. Only the
//! settings in [`LIVE_KEYS`] take effect without a restart; a reload keeps
//! the running value of every other setting and names it in the report.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use serde_json::Value;

use super::Config;

/// Settings applied by a reload, each read where it is used from the
/// current [`LiveConfig`] (or re-applied by the reload's wiring).
pub const LIVE_KEYS: &[&str] = &[
    "auth_cache_enabled",
    "auth_cache_max_entries",
    "auth_cache_revocation_ttl",
    "auth_cache_user_ttl",
    "compression_brotli_quality",
    "compression_enabled",
    "compression_gzip_level",
    "compression_minimum_size",
    "compression_zstd_level",
    "edge_api_paths",
    "edge_cache_api_bytes",
    "edge_cache_api_ttl",
    "edge_cache_mcp_bytes",
    "edge_cache_mcp_ttl",
    "edge_cache_schema_bytes",
    "edge_cache_schema_ttl",
    "edge_cache_static_bytes",
    "edge_cache_static_ttl",
    "edge_conn_limit",
    "edge_mcp_cache_enabled",
    "edge_rate_limit_burst",
    "edge_rate_limit_rps",
    "edge_schema_paths",
    "edge_stale_if_error",
    "edge_stale_while_revalidate",
    "edge_static_extensions",
    "edge_stream_timeout",
    "edge_trusted_proxies",
    "legacy_api_enabled",
    "log_level",
    "max_json_depth",
    "max_request_body_bytes",
    "mcp_list_ttl_ms",
    "mcp_page_size",
];

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Live settings that changed and now apply.
    pub applied: Vec<String>,
    /// Settings that changed in the file or environment but keep their
    /// running value until a restart (or a graceful upgrade).
    pub needs_restart: Vec<String>,
}

pub struct LiveConfig {
    current: ArcSwap<Config>,
}

fn as_map(c: &Config) -> serde_json::Map<String, Value> {
    match serde_json::to_value(c) {
        Ok(Value::Object(m)) => m,
        _ => unreachable!("Config serializes to a map"),
    }
}

impl LiveConfig {
    pub fn new(config: Config) -> Arc<LiveConfig> {
        Arc::new(LiveConfig {
            current: ArcSwap::from_pointee(config),
        })
    }

    /// The configuration in force. An atomic load: cheap on every request.
    pub fn get(&self) -> Guard<Arc<Config>> {
        self.current.load()
    }

    pub fn snapshot(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Takes the live settings of `new`; reports the rest by name.
    pub fn apply(&self, new: &Config) -> ReloadReport {
        let old = self.current.load_full();
        let (old_map, new_map) = (as_map(&old), as_map(new));
        let mut merged = old_map.clone();
        let mut report = ReloadReport::default();
        for (key, value) in &new_map {
            if old_map.get(key) == Some(value) {
                continue;
            }
            if LIVE_KEYS.contains(&key.as_str()) {
                merged.insert(key.clone(), value.clone());
                report.applied.push(key.clone());
            } else {
                report.needs_restart.push(key.clone());
            }
        }
        if !report.applied.is_empty() {
            let config: Config = serde_json::from_value(Value::Object(merged))
                .expect("a merge of two valid configurations deserializes");
            self.current.store(Arc::new(config));
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_exist() {
        let keys = as_map(&Config::default());
        for k in LIVE_KEYS {
            assert!(keys.contains_key(*k), "{k} is not a setting");
        }
    }

    #[test]
    fn reload_applies_live_keys_and_names_the_rest() {
        let live = LiveConfig::new(Config::default());
        let new = Config {
            max_request_body_bytes: 4096,
            auth_cache_user_ttl: 5,
            port: 5000,
            database_url: "sqlite://other.db".into(),
            ..Config::default()
        };
        let r = live.apply(&new);
        assert_eq!(
            r.applied,
            vec!["auth_cache_user_ttl", "max_request_body_bytes"]
        );
        assert_eq!(r.needs_restart, vec!["database_url", "port"]);
        let now = live.get();
        assert_eq!(now.max_request_body_bytes, 4096);
        assert_eq!(now.auth_cache_user_ttl, 5);
        assert_eq!(now.port, 4444, "a listener change waits for a restart");
    }
}
