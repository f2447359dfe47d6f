//! The edge's live settings; swapped whole on reload.

use std::time::Duration;

use ipnet::IpNet;
use mcpgate_cache_zones::ZoneSpec;

use crate::routes::RouteTable;

#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    pub enabled: bool,
    pub minimum_size: usize,
    pub gzip_level: u32,
    pub brotli_quality: u32,
    pub zstd_level: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            enabled: true,
            minimum_size: 500,
            gzip_level: 6,
            brotli_quality: 4,
            zstd_level: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub routes: RouteTable,
    pub zones: Vec<ZoneSpec>,
    /// Sustained requests per second per IP (0 = off) and burst.
    pub rate: u32,
    pub burst: u32,
    /// Concurrent requests per IP (0 = off).
    pub conn_limit: u32,
    pub compression: Compression,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub max_body_bytes: usize,
    /// Read/idle timeout of streams (SSE, WebSocket) through the edge.
    pub stream_timeout: Duration,
    /// Stale windows of cached entries (0 = off).
    pub stale_while_revalidate: u32,
    pub stale_if_error: u32,
    /// The zone that keeps the answers to POSTs the application calls
    /// cacheable (`None`: such POSTs are handed over like any write).
    pub post_zone: Option<String>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            routes: RouteTable::default(),
            zones: ZoneSpec::defaults(),
            rate: 3000,
            burst: 3000,
            conn_limit: 3000,
            compression: Compression::default(),
            trusted_proxies: vec![],
            max_body_bytes: 1 << 20,
            stream_timeout: Duration::from_secs(3600),
            stale_while_revalidate: 0,
            stale_if_error: 0,
            post_zone: None,
        }
    }
}
