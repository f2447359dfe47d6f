//! Semantic checks of a loaded configuration, grouped by the room that owns
//! the settings. Every problem is collected; none hides another.

use super::{Config, ConfigError, invalid};

const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
];

pub fn problems(c: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    listeners(c, &mut out);
    store(c, &mut out);
    cluster(c, &mut out);
    auth(c, &mut out);
    requests(c, &mut out);
    federation(c, &mut out);
    edge(c, &mut out);
    out
}

fn check(out: &mut Vec<ConfigError>, ok: bool, key: &str, message: &str) {
    if !ok {
        out.push(invalid(key, message));
    }
}

fn listeners(c: &Config, out: &mut Vec<ConfigError>) {
    check(
        out,
        c.host.parse::<std::net::IpAddr>().is_ok() || c.host == "localhost",
        "host",
        "must be an IP address or `localhost`",
    );
    check(
        out,
        !(c.edge_enabled && c.edge_port != 0 && c.edge_port == c.port),
        "edge_port",
        "must differ from port",
    );
    if let Some(m) = c.metrics_port.filter(|m| *m != 0) {
        check(
            out,
            m != c.port && !(c.edge_enabled && m == c.edge_port),
            "metrics_port",
            "must differ from port and edge_port",
        );
    }
    if let Some(h) = &c.metrics_host {
        check(
            out,
            h.parse::<std::net::IpAddr>().is_ok() || h == "localhost",
            "metrics_host",
            "must be an IP address or `localhost`",
        );
    }
}

fn store(c: &Config, out: &mut Vec<ConfigError>) {
    let url = super::normalize_database_url(&c.database_url);
    check(
        out,
        url.starts_with("sqlite:") || url.starts_with("postgres://"),
        "database_url",
        "must start with sqlite:, postgres:// or postgresql:// (postgresql+psycopg:// and postgresql+asyncpg:// are accepted)",
    );
    check(
        out,
        c.db_pool_size > 0,
        "db_pool_size",
        "must be at least 1",
    );
    check(
        out,
        c.db_pool_timeout > 0,
        "db_pool_timeout",
        "must be at least 1 second",
    );
}

fn cluster(c: &Config, out: &mut Vec<ConfigError>) {
    check(
        out,
        matches!(
            c.cache_type.to_ascii_lowercase().as_str(),
            "database" | "memory" | "redis" | "none"
        ),
        "cache_type",
        "must be database, memory, redis or none",
    );
    if c.uses_redis() {
        match c.redis_url.as_deref() {
            None | Some("") => out.push(invalid("redis_url", "is required with cache_type=redis")),
            Some(u) if !(u.starts_with("redis://") || u.starts_with("rediss://")) => out.push(
                invalid("redis_url", "must start with redis:// or rediss://"),
            ),
            Some(_) => {}
        }
    }
    check(
        out,
        !c.cache_prefix.is_empty() && !c.cache_prefix.contains(char::is_whitespace),
        "cache_prefix",
        "must be non-empty without spaces",
    );
    check(
        out,
        c.redis_max_connections > 0,
        "redis_max_connections",
        "must be at least 1",
    );
    for (key, v) in [
        ("redis_socket_timeout", c.redis_socket_timeout),
        (
            "redis_socket_connect_timeout",
            c.redis_socket_connect_timeout,
        ),
    ] {
        check(out, v.is_finite() && v > 0.0, key, "must be above 0");
    }
    check(
        out,
        c.redis_leader_ttl >= 2,
        "redis_leader_ttl",
        "must be at least 2 seconds",
    );
    check(
        out,
        c.redis_leader_heartbeat_interval >= 1
            && c.redis_leader_heartbeat_interval < c.redis_leader_ttl,
        "redis_leader_heartbeat_interval",
        "must be at least 1 second and below redis_leader_ttl",
    );
}

fn auth(c: &Config, out: &mut Vec<ConfigError>) {
    if !ALGORITHMS.contains(&c.jwt_algorithm.as_str()) {
        out.push(invalid(
            "jwt_algorithm",
            format!("must be one of {}", ALGORITHMS.join(", ")),
        ));
    } else if !c.jwt_algorithm.starts_with("HS") && c.jwt_public_key_path.is_none() {
        out.push(invalid(
            "jwt_public_key_path",
            "is required for asymmetric algorithms",
        ));
    }
    check(
        out,
        c.platform_admin_email.contains('@'),
        "platform_admin_email",
        "must be an email address",
    );
}

fn requests(c: &Config, out: &mut Vec<ConfigError>) {
    check(
        out,
        c.max_request_body_bytes >= 1024,
        "max_request_body_bytes",
        "must be at least 1024",
    );
    check(
        out,
        c.max_json_depth > 0,
        "max_json_depth",
        "must be at least 1",
    );
    check(
        out,
        tracing_subscriber::EnvFilter::try_new(c.log_filter()).is_ok(),
        "log_level",
        "must be one of trace, debug, info, warn, error",
    );
    check(
        out,
        matches!(c.log_format.as_str(), "json" | "text"),
        "log_format",
        "must be json or text",
    );
    check(
        out,
        c.sse_keepalive_interval > 0,
        "sse_keepalive_interval",
        "must be at least 1 second",
    );
    check(
        out,
        c.mcp_page_size > 0,
        "mcp_page_size",
        "must be at least 1",
    );
}

fn federation(c: &Config, out: &mut Vec<ConfigError>) {
    check(
        out,
        matches!(
            c.gateway_tool_name_separator.as_str(),
            "-" | "--" | "_" | "."
        ),
        "gateway_tool_name_separator",
        "must be one of -, --, _ or .",
    );
    if let Err(m) = crate::util::parse_networks(&c.ssrf_allowed_networks) {
        out.push(invalid("ssrf_allowed_networks", m.to_string()));
    }
    check(
        out,
        !c.gateway_health_check_timeout.is_nan() && c.gateway_health_check_timeout > 0.0,
        "gateway_health_check_timeout",
        "must be above 0",
    );
    check(
        out,
        !(c.retry_base_delay.is_nan()
            || c.retry_base_delay < 0.0
            || c.retry_max_delay.is_nan()
            || c.retry_max_delay < c.retry_base_delay),
        "retry_max_delay",
        "must be at least retry_base_delay, both non-negative",
    );
    check(
        out,
        c.tool_timeout > 0,
        "tool_timeout",
        "must be at least 1 second",
    );
    check(
        out,
        c.federation_timeout > 0,
        "federation_timeout",
        "must be at least 1 second",
    );
}

fn edge(c: &Config, out: &mut Vec<ConfigError>) {
    check(
        out,
        (1..=9).contains(&c.compression_gzip_level),
        "compression_gzip_level",
        "must be 1 to 9",
    );
    check(
        out,
        c.compression_brotli_quality <= 11,
        "compression_brotli_quality",
        "must be 0 to 11",
    );
    check(
        out,
        (1..=22).contains(&c.compression_zstd_level),
        "compression_zstd_level",
        "must be 1 to 22",
    );
    if let Err(m) = crate::util::parse_networks(&c.edge_trusted_proxies) {
        out.push(invalid("edge_trusted_proxies", m.to_string()));
    }
    for (key, bytes) in [
        ("edge_cache_static_bytes", c.edge_cache_static_bytes),
        ("edge_cache_api_bytes", c.edge_cache_api_bytes),
        ("edge_cache_schema_bytes", c.edge_cache_schema_bytes),
        ("edge_cache_mcp_bytes", c.edge_cache_mcp_bytes),
    ] {
        check(out, bytes > 0, key, "must be above 0");
    }
    for (key, paths) in [
        ("edge_api_paths", &c.edge_api_paths),
        ("edge_schema_paths", &c.edge_schema_paths),
    ] {
        check(
            out,
            paths.iter().all(|p| p.starts_with('/')),
            key,
            "paths must start with /",
        );
    }
}
