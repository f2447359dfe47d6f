//! What becomes of each environment variable a user of the reference gateway
//! may bring along: honoured under the same name, read under another of ours,
//! or accepted with the reason it changes nothing here. Nothing the
//! reference's deployment guide names is dropped silently.

use std::fmt;

/// The fate of one environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// An mcpgate setting of the same name.
    Honoured,
    /// Read as this mcpgate variable (when that one is not set itself).
    ReadAs(&'static str),
    /// Accepted; nothing changes in mcpgate. The text says why, and what
    /// does the job instead.
    NoEffect(&'static str),
    /// A setting of another program of the reference's stack (PgBouncer,
    /// the PostgreSQL image, a client), not of the gateway.
    NotTheGateways(&'static str),
}

const ONE_PROCESS: &str = "one process with a thread per core (no workers to count, recycle or preload); see SERVER_THREADS and EDGE_THREADS";
const SNAPSHOT: &str = "the registry, users, teams and roles are an in-memory snapshot rebuilt on every change (and every REGISTRY_SYNC_INTERVAL), so there is no TTL cache to tune";
const METRICS: &str = "metrics are in-memory counters served at /metrics/prometheus; nothing is written to the database per request";
const PGBOUNCER: &str = "PgBouncer's; set it on the PgBouncer container, not on mcpgate";
const JWT_CACHE: &str = "verified tokens are cached under AUTH_CACHE_ENABLED, AUTH_CACHE_USER_TTL and AUTH_CACHE_MAX_ENTRIES (keyed by the snapshot version, so revocations apply at once)";
const OTEL: &str = "mcpgate has no OpenTelemetry exporter; it serves Prometheus metrics at /metrics/prometheus and logs to stderr (LOG_FORMAT=json for structured logs)";

/// The reference's variables that are not mcpgate settings of the same name.
pub const REFERENCE: &[(&str, Standing)] = &[
    (
        "ADMIN_STATS_CACHE_ENABLED",
        Standing::NoEffect("mcpgate has no admin UI statistics; see /metrics/prometheus"),
    ),
    (
        "ADMIN_STATS_CACHE_OBSERVABILITY_TTL",
        Standing::NoEffect("mcpgate has no admin UI statistics; see /metrics/prometheus"),
    ),
    (
        "ADMIN_STATS_CACHE_SYSTEM_TTL",
        Standing::NoEffect("mcpgate has no admin UI statistics; see /metrics/prometheus"),
    ),
    (
        "AUDIT_TRAIL_ENABLED",
        Standing::NoEffect("mcpgate keeps no audit-trail table: nothing is written per request"),
    ),
    (
        "AUTH_CACHE_BATCH_QUERIES",
        Standing::NoEffect(
            "authentication runs no database queries to batch: principals come from the in-memory snapshot",
        ),
    ),
    ("AUTH_CACHE_ROLE_TTL", Standing::NoEffect(SNAPSHOT)),
    ("AUTH_CACHE_TEAMS_ENABLED", Standing::NoEffect(SNAPSHOT)),
    ("AUTH_CACHE_TEAMS_TTL", Standing::NoEffect(SNAPSHOT)),
    ("AUTH_CACHE_TEAM_TTL", Standing::NoEffect(SNAPSHOT)),
    ("AUTH_TYPE", Standing::NotTheGateways(PGBOUNCER)),
    ("DEFAULT_POOL_SIZE", Standing::NotTheGateways(PGBOUNCER)),
    (
        "DISABLE_ACCESS_LOG",
        Standing::NoEffect(
            "mcpgate writes no per-request access log (requests are counted in /metrics/prometheus)",
        ),
    ),
    ("GRANIAN_BACKLOG", Standing::NoEffect(ONE_PROCESS)),
    ("GRANIAN_BACKPRESSURE", Standing::NoEffect(ONE_PROCESS)),
    (
        "GRANIAN_HTTP1_BUFFER_SIZE",
        Standing::NoEffect(
            "header size is bounded by the HTTP server; bodies by MAX_REQUEST_BODY_BYTES",
        ),
    ),
    ("GRANIAN_WORKERS", Standing::NoEffect(ONE_PROCESS)),
    (
        "GUNICORN_DEV_MODE",
        Standing::NoEffect(
            "there is no hot reload of code; configuration reloads on SIGHUP or a change of the config file",
        ),
    ),
    ("GUNICORN_MAX_REQUESTS", Standing::NoEffect(ONE_PROCESS)),
    (
        "GUNICORN_MAX_REQUESTS_JITTER",
        Standing::NoEffect(ONE_PROCESS),
    ),
    ("GUNICORN_PRELOAD_APP", Standing::NoEffect(ONE_PROCESS)),
    (
        "GUNICORN_TIMEOUT",
        Standing::NoEffect(
            "upstream requests are bounded by TOOL_TIMEOUT and FEDERATION_TIMEOUT; no worker is ever killed",
        ),
    ),
    ("GUNICORN_WORKERS", Standing::NoEffect(ONE_PROCESS)),
    (
        "HEALTH_CHECK_TIMEOUT",
        Standing::ReadAs("GATEWAY_HEALTH_CHECK_TIMEOUT"),
    ),
    (
        "HTTP_SERVER",
        Standing::NoEffect(
            "mcpgate has one built-in HTTP server (hyper for port 4444, Pingora for the edge)",
        ),
    ),
    ("JWT_CACHE_ENABLED", Standing::NoEffect(JWT_CACHE)),
    ("JWT_CACHE_MAX_SIZE", Standing::NoEffect(JWT_CACHE)),
    ("JWT_CACHE_TTL", Standing::NoEffect(JWT_CACHE)),
    ("MAX_CLIENT_CONN", Standing::NotTheGateways(PGBOUNCER)),
    ("MAX_DB_CONNECTIONS", Standing::NotTheGateways(PGBOUNCER)),
    (
        "MCPGATEWAY_BEARER_TOKEN",
        Standing::NotTheGateways(
            "read by clients and load-test scripts, not by the gateway (make one with `mcpgate token create`)",
        ),
    ),
    ("METRICS_BUFFER_ENABLED", Standing::NoEffect(METRICS)),
    ("METRICS_BUFFER_FLUSH_INTERVAL", Standing::NoEffect(METRICS)),
    ("METRICS_BUFFER_MAX_SIZE", Standing::NoEffect(METRICS)),
    ("METRICS_CACHE_ENABLED", Standing::NoEffect(METRICS)),
    ("METRICS_CACHE_TTL_SECONDS", Standing::NoEffect(METRICS)),
    ("MIN_POOL_SIZE", Standing::NotTheGateways(PGBOUNCER)),
    ("OTEL_ENABLE_OBSERVABILITY", Standing::NoEffect(OTEL)),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", Standing::NoEffect(OTEL)),
    ("OTEL_SERVICE_NAME", Standing::NoEffect(OTEL)),
    ("OTEL_TRACES_EXPORTER", Standing::NoEffect(OTEL)),
    ("POOL_MODE", Standing::NotTheGateways(PGBOUNCER)),
    (
        "POSTGRES_PASSWORD",
        Standing::NotTheGateways(
            "the PostgreSQL image's; mcpgate takes the password inside DATABASE_URL",
        ),
    ),
    ("PYTHON_GIL", Standing::NoEffect("mcpgate is not Python")),
    (
        "REDIS_PARSER",
        Standing::NoEffect(
            "the Rust Redis client has one native parser (what hiredis is to Python)",
        ),
    ),
    ("REGISTRY_CACHE_AGENTS_TTL", Standing::NoEffect(SNAPSHOT)),
    ("REGISTRY_CACHE_ENABLED", Standing::NoEffect(SNAPSHOT)),
    ("REGISTRY_CACHE_GATEWAYS_TTL", Standing::NoEffect(SNAPSHOT)),
    ("REGISTRY_CACHE_PROMPTS_TTL", Standing::NoEffect(SNAPSHOT)),
    ("REGISTRY_CACHE_RESOURCES_TTL", Standing::NoEffect(SNAPSHOT)),
    ("REGISTRY_CACHE_SERVERS_TTL", Standing::NoEffect(SNAPSHOT)),
    ("REGISTRY_CACHE_TOOLS_TTL", Standing::NoEffect(SNAPSHOT)),
    ("RESERVE_POOL_SIZE", Standing::NotTheGateways(PGBOUNCER)),
    (
        "RESOURCE_CACHE_SIZE",
        Standing::NoEffect(
            "resources/read is answered by the upstream each time; cacheable GETs are cached by the edge's api zone (EDGE_CACHE_API_*)",
        ),
    ),
    (
        "RESOURCE_CACHE_TTL",
        Standing::NoEffect(
            "resources/read is answered by the upstream each time; cacheable GETs are cached by the edge's api zone (EDGE_CACHE_API_*)",
        ),
    ),
    (
        "SECURITY_LOGGING_ENABLED",
        Standing::NoEffect(
            "mcpgate keeps no security_events table; refused requests are counted by status (401, 403, 429) in /metrics/prometheus",
        ),
    ),
    ("SERVER_IDLE_TIMEOUT", Standing::NotTheGateways(PGBOUNCER)),
    ("SERVER_LIFETIME", Standing::NotTheGateways(PGBOUNCER)),
    (
        "STRUCTURED_LOGGING_DATABASE_ENABLED",
        Standing::NoEffect("logs go to stderr only (LOG_FORMAT=json for structured logs)"),
    ),
    ("TEAM_CACHE_ENABLED", Standing::NoEffect(SNAPSHOT)),
    ("TEAM_CACHE_MEMBERS_TTL", Standing::NoEffect(SNAPSHOT)),
    ("TEAM_CACHE_ROLE_TTL", Standing::NoEffect(SNAPSHOT)),
];

/// The standing of one variable that is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub variable: String,
    pub standing: Standing,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.standing {
            Standing::Honoured => write!(f, "{}: honoured", self.variable),
            Standing::ReadAs(ours) => write!(f, "{}: read as {ours}", self.variable),
            Standing::NoEffect(why) => write!(f, "{}: no effect in mcpgate: {why}", self.variable),
            Standing::NotTheGateways(why) => {
                write!(f, "{}: not a gateway setting: {why}", self.variable)
            }
        }
    }
}

/// The reference variable that an mcpgate variable falls back to.
pub(crate) fn read_as_source(ours: &str) -> Option<&'static str> {
    REFERENCE.iter().find_map(|(theirs, s)| match s {
        Standing::ReadAs(o) if *o == ours => Some(*theirs),
        _ => None,
    })
}

/// Every variable set in `env` that mcpgate or the reference knows, with its
/// standing, sorted by name. `keys` are mcpgate's own settings.
pub fn survey<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<Line> {
    let ours = keys
        .into_iter()
        .map(|k| (k.to_ascii_uppercase(), Standing::Honoured));
    let theirs = REFERENCE.iter().map(|(v, s)| ((*v).to_owned(), *s));
    let mut lines: Vec<Line> = ours
        .chain(theirs)
        .filter(|(v, _)| env(v).is_some())
        .map(|(variable, standing)| Line { variable, standing })
        .collect();
    lines.sort_by(|a, b| a.variable.cmp(&b.variable));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names_are_sorted_and_unique() {
        let names: Vec<&str> = REFERENCE.iter().map(|(v, _)| *v).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn read_as_targets_are_mcpgate_settings() {
        let defaults = serde_json::to_value(super::super::Config::default()).unwrap();
        for (theirs, s) in REFERENCE {
            if let Standing::ReadAs(ours) = s {
                assert!(
                    defaults.get(ours.to_ascii_lowercase()).is_some(),
                    "{theirs} is read as {ours}, which is not a setting"
                );
            }
            assert!(
                defaults.get(theirs.to_ascii_lowercase()).is_none(),
                "{theirs} is a setting of ours and cannot also be listed as the reference's"
            );
        }
    }

    /// Every variable the reference's deployment guide names.
    const GUIDE: &[&str] = &[
        "ADMIN_STATS_CACHE_ENABLED",
        "ADMIN_STATS_CACHE_OBSERVABILITY_TTL",
        "ADMIN_STATS_CACHE_SYSTEM_TTL",
        "AUDIT_TRAIL_ENABLED",
        "AUTH_CACHE_BATCH_QUERIES",
        "AUTH_CACHE_ENABLED",
        "AUTH_CACHE_REVOCATION_TTL",
        "AUTH_CACHE_ROLE_TTL",
        "AUTH_CACHE_TEAMS_ENABLED",
        "AUTH_CACHE_TEAMS_TTL",
        "AUTH_CACHE_TEAM_TTL",
        "AUTH_CACHE_USER_TTL",
        "AUTH_ENCRYPTION_SECRET",
        "AUTH_TYPE",
        "CACHE_PREFIX",
        "CACHE_TYPE",
        "COMPRESSION_BROTLI_QUALITY",
        "COMPRESSION_ENABLED",
        "COMPRESSION_GZIP_LEVEL",
        "COMPRESSION_MINIMUM_SIZE",
        "COMPRESSION_ZSTD_LEVEL",
        "DATABASE_URL",
        "DB_MAX_OVERFLOW",
        "DB_MAX_RETRIES",
        "DB_POOL_RECYCLE",
        "DB_POOL_SIZE",
        "DB_POOL_TIMEOUT",
        "DB_PREPARE_THRESHOLD",
        "DB_RETRY_INTERVAL_MS",
        "DEFAULT_POOL_SIZE",
        "DISABLE_ACCESS_LOG",
        "GATEWAY_HEALTH_CHECK_TIMEOUT",
        "GRANIAN_BACKLOG",
        "GRANIAN_BACKPRESSURE",
        "GRANIAN_HTTP1_BUFFER_SIZE",
        "GRANIAN_WORKERS",
        "GUNICORN_DEV_MODE",
        "GUNICORN_MAX_REQUESTS",
        "GUNICORN_MAX_REQUESTS_JITTER",
        "GUNICORN_PRELOAD_APP",
        "GUNICORN_TIMEOUT",
        "GUNICORN_WORKERS",
        "HEALTH_CHECK_INTERVAL",
        "HEALTH_CHECK_TIMEOUT",
        "HTTP_SERVER",
        "JWT_CACHE_ENABLED",
        "JWT_CACHE_MAX_SIZE",
        "JWT_CACHE_TTL",
        "JWT_SECRET_KEY",
        "LOG_LEVEL",
        "MAX_CLIENT_CONN",
        "MAX_DB_CONNECTIONS",
        "MCPGATEWAY_BEARER_TOKEN",
        "MESSAGE_TTL",
        "METRICS_BUFFER_ENABLED",
        "METRICS_BUFFER_FLUSH_INTERVAL",
        "METRICS_BUFFER_MAX_SIZE",
        "METRICS_CACHE_ENABLED",
        "METRICS_CACHE_TTL_SECONDS",
        "MIN_POOL_SIZE",
        "OTEL_ENABLE_OBSERVABILITY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_EXPORTER",
        "POOL_MODE",
        "POSTGRES_PASSWORD",
        "PYTHON_GIL",
        "REDIS_HEALTH_CHECK_INTERVAL",
        "REDIS_LEADER_HEARTBEAT_INTERVAL",
        "REDIS_LEADER_TTL",
        "REDIS_MAX_CONNECTIONS",
        "REDIS_MAX_RETRIES",
        "REDIS_PARSER",
        "REDIS_RETRY_INTERVAL_MS",
        "REDIS_RETRY_ON_TIMEOUT",
        "REDIS_SOCKET_CONNECT_TIMEOUT",
        "REDIS_SOCKET_TIMEOUT",
        "REDIS_URL",
        "REGISTRY_CACHE_AGENTS_TTL",
        "REGISTRY_CACHE_ENABLED",
        "REGISTRY_CACHE_GATEWAYS_TTL",
        "REGISTRY_CACHE_PROMPTS_TTL",
        "REGISTRY_CACHE_RESOURCES_TTL",
        "REGISTRY_CACHE_SERVERS_TTL",
        "REGISTRY_CACHE_TOOLS_TTL",
        "RESERVE_POOL_SIZE",
        "RESOURCE_CACHE_SIZE",
        "RESOURCE_CACHE_TTL",
        "RETRY_BASE_DELAY",
        "RETRY_MAX_ATTEMPTS",
        "RETRY_MAX_DELAY",
        "SECURITY_LOGGING_ENABLED",
        "SERVER_IDLE_TIMEOUT",
        "SERVER_LIFETIME",
        "SESSION_TTL",
        "SSE_KEEPALIVE_INTERVAL",
        "STRUCTURED_LOGGING_DATABASE_ENABLED",
        "TEAM_CACHE_ENABLED",
        "TEAM_CACHE_MEMBERS_TTL",
        "TEAM_CACHE_ROLE_TTL",
        "TOOL_CONCURRENT_LIMIT",
        "TOOL_TIMEOUT",
        "UNHEALTHY_THRESHOLD",
    ];

    #[test]
    fn every_variable_of_the_guide_has_a_standing_and_a_readme_row() {
        let defaults = serde_json::to_value(super::super::Config::default()).unwrap();
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        )
        .unwrap();
        for name in GUIDE {
            let ours = defaults.get(name.to_ascii_lowercase()).is_some();
            let theirs = REFERENCE.iter().any(|(v, _)| v == name);
            assert!(ours || theirs, "{name} has no standing");
            assert!(
                readme.contains(&format!("| `{name}` | ")),
                "README lacks a row for {name}"
            );
        }
    }
}
