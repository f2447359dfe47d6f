//! Configuration: a YAML file overlaid with environment variables that use
//! the reference gateway's names (`PORT`, `DATABASE_URL`, `JWT_SECRET_KEY`, ...).
//!
//! A YAML key is the lower-case environment variable name. Unknown keys and
//! bad values are errors that name the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod live;
pub mod standing;
mod validate;

pub use live::{LiveConfig, ReloadReport};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("config file {0} must be a mapping of settings")]
    NotAMapping(PathBuf),
    #[error("unknown setting `{0}`")]
    UnknownKey(String),
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
    /// Every problem found, one per line.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// The single problems (a `Many` is flattened).
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(v) => v.iter().flat_map(|e| e.problems()).collect(),
            other => vec![other],
        }
    }
}

/// The reference's URL spellings (`postgresql+psycopg://`,
/// `postgresql+asyncpg://`, `sqlite:///./file.db`) in the driver's form.
pub fn normalize_database_url(url: &str) -> String {
    let url = url.trim();
    for scheme in [
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
        "postgresql+asyncpg://",
        "postgres+psycopg://",
    ] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return format!("postgres://{rest}");
        }
    }
    if let Some(rest) = url.strip_prefix("postgresql://") {
        return format!("postgres://{rest}");
    }
    // The reference's `sqlite:///./mcp.db` (relative) and `sqlite:////abs`
    // (absolute); `sqlite:///abs` already means an absolute path here.
    if let Some(rest) = url.strip_prefix("sqlite:///./") {
        return format!("sqlite://./{rest}");
    }
    if let Some(rest) = url.strip_prefix("sqlite:////") {
        return format!("sqlite:///{rest}");
    }
    url.to_owned()
}

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Every setting of mcpgate. Field names are the lower-case environment names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub metrics_port: Option<u16>,
    pub metrics_host: Option<String>,
    pub environment: String,
    pub database_url: String,
    pub db_pool_size: u32,
    pub db_max_overflow: u32,
    pub db_pool_timeout: u64,
    pub db_pool_recycle: u64,
    pub db_prepare_threshold: u32,
    pub db_max_retries: u32,
    pub db_retry_interval_ms: u64,
    pub cache_type: String,
    pub redis_url: Option<String>,
    pub cache_prefix: String,
    pub redis_max_connections: u32,
    pub redis_socket_timeout: f64,
    pub redis_socket_connect_timeout: f64,
    pub redis_retry_on_timeout: bool,
    pub redis_max_retries: u32,
    pub redis_retry_interval_ms: u64,
    pub redis_health_check_interval: u64,
    pub redis_leader_ttl: u64,
    pub redis_leader_heartbeat_interval: u64,
    pub jwt_secret_key: Option<String>,
    pub jwt_algorithm: String,
    pub jwt_public_key_path: Option<PathBuf>,
    pub jwt_private_key_path: Option<PathBuf>,
    pub jwt_audience: String,
    pub jwt_issuer: String,
    pub require_token_expiration: bool,
    pub token_expiry: u64,
    pub auth_required: bool,
    pub platform_admin_email: String,
    pub auth_encryption_secret: Option<String>,
    pub auth_cache_enabled: bool,
    pub auth_cache_user_ttl: u64,
    pub auth_cache_revocation_ttl: u64,
    pub auth_cache_max_entries: u64,
    pub registry_sync_interval: u64,
    pub max_request_body_bytes: usize,
    pub max_json_depth: usize,
    pub legacy_api_enabled: bool,
    pub log_level: String,
    pub log_format: String,
    pub tool_timeout: u64,
    pub tool_concurrent_limit: usize,
    pub federation_timeout: u64,
    pub gateway_tool_name_separator: String,
    pub health_check_interval: u64,
    pub gateway_health_check_timeout: f64,
    pub unhealthy_threshold: u32,
    pub retry_max_attempts: u32,
    pub retry_base_delay: f64,
    pub retry_max_delay: f64,
    pub sse_keepalive_interval: u64,
    pub use_stateful_sessions: bool,
    pub session_ttl: u64,
    pub message_ttl: u64,
    pub session_key: Option<String>,
    pub session_key_previous: Option<String>,
    pub max_sessions: usize,
    pub mcp_require_auth: Option<bool>,
    pub mcp_allowed_hosts: Vec<String>,
    pub mcp_allowed_origins: Vec<String>,
    pub mcp_page_size: usize,
    pub mcp_list_ttl_ms: u64,
    pub ssrf_protection_enabled: bool,
    pub ssrf_allow_localhost: bool,
    pub ssrf_allow_private_networks: bool,
    pub ssrf_allowed_networks: Vec<String>,
    pub rest_response_text_max_length: usize,
    pub server_threads: usize,
    pub edge_enabled: bool,
    pub edge_port: u16,
    pub edge_threads: usize,
    pub edge_rate_limit_rps: u32,
    pub edge_rate_limit_burst: u32,
    pub edge_conn_limit: u32,
    pub edge_trusted_proxies: Vec<String>,
    pub edge_stream_timeout: u64,
    pub edge_stale_while_revalidate: u32,
    pub edge_stale_if_error: u32,
    pub edge_cache_static_bytes: u64,
    pub edge_cache_static_ttl: u64,
    pub edge_cache_api_bytes: u64,
    pub edge_cache_api_ttl: u64,
    pub edge_cache_schema_bytes: u64,
    pub edge_cache_schema_ttl: u64,
    pub edge_mcp_cache_enabled: bool,
    pub edge_cache_mcp_bytes: u64,
    pub edge_cache_mcp_ttl: u64,
    pub edge_api_paths: Vec<String>,
    pub edge_schema_paths: Vec<String>,
    pub edge_static_extensions: Vec<String>,
    pub edge_upgrade_sock: String,
    pub edge_grace_period: u64,
    pub edge_work_stealing: bool,
    pub compression_enabled: bool,
    pub compression_minimum_size: usize,
    pub compression_gzip_level: u32,
    pub compression_brotli_quality: u32,
    pub compression_zstd_level: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 4444,
            metrics_port: None,
            metrics_host: None,
            environment: "development".into(),
            database_url: "sqlite://mcpgate.db".into(),
            db_pool_size: 20,
            db_max_overflow: 10,
            db_pool_timeout: 30,
            db_pool_recycle: 3600,
            db_prepare_threshold: 5,
            db_max_retries: 3,
            db_retry_interval_ms: 2000,
            cache_type: "database".into(),
            redis_url: None,
            cache_prefix: "mcpgw:".into(),
            redis_max_connections: 50,
            redis_socket_timeout: 2.0,
            redis_socket_connect_timeout: 2.0,
            redis_retry_on_timeout: true,
            redis_max_retries: 3,
            redis_retry_interval_ms: 2000,
            redis_health_check_interval: 30,
            redis_leader_ttl: 15,
            redis_leader_heartbeat_interval: 5,
            jwt_secret_key: None,
            jwt_algorithm: "HS256".into(),
            jwt_public_key_path: None,
            jwt_private_key_path: None,
            jwt_audience: "mcpgateway-api".into(),
            jwt_issuer: "mcpgateway".into(),
            require_token_expiration: true,
            token_expiry: 10080,
            auth_required: true,
            platform_admin_email: "admin@example.com".into(),
            auth_encryption_secret: None,
            auth_cache_enabled: true,
            auth_cache_user_ttl: 60,
            auth_cache_revocation_ttl: 30,
            auth_cache_max_entries: 100_000,
            registry_sync_interval: 5,
            max_request_body_bytes: 1 << 20,
            max_json_depth: 30,
            legacy_api_enabled: true,
            log_level: "info".into(),
            log_format: "text".into(),
            tool_timeout: 60,
            tool_concurrent_limit: 0,
            federation_timeout: 120,
            gateway_tool_name_separator: "-".into(),
            health_check_interval: 60,
            gateway_health_check_timeout: 5.0,
            unhealthy_threshold: 3,
            retry_max_attempts: 3,
            retry_base_delay: 1.0,
            retry_max_delay: 60.0,
            sse_keepalive_interval: 30,
            use_stateful_sessions: true,
            session_ttl: 3600,
            message_ttl: 600,
            session_key: None,
            session_key_previous: None,
            max_sessions: 10_000,
            mcp_require_auth: None,
            mcp_allowed_hosts: vec![],
            mcp_allowed_origins: vec![],
            mcp_page_size: 500,
            mcp_list_ttl_ms: 5000,
            ssrf_protection_enabled: true,
            ssrf_allow_localhost: false,
            ssrf_allow_private_networks: false,
            ssrf_allowed_networks: vec![],
            rest_response_text_max_length: 100_000,
            server_threads: 0,
            edge_enabled: true,
            edge_port: 8080,
            edge_threads: 0,
            edge_rate_limit_rps: 3000,
            edge_rate_limit_burst: 3000,
            edge_conn_limit: 3000,
            edge_trusted_proxies: vec![],
            edge_stream_timeout: 3600,
            edge_stale_while_revalidate: 0,
            edge_stale_if_error: 0,
            edge_cache_static_bytes: 1 << 30,
            edge_cache_static_ttl: 30 * 86400,
            edge_cache_api_bytes: 512 << 20,
            edge_cache_api_ttl: 300,
            edge_cache_schema_bytes: 256 << 20,
            edge_cache_schema_ttl: 86400,
            edge_mcp_cache_enabled: true,
            edge_cache_mcp_bytes: 256 << 20,
            edge_cache_mcp_ttl: 300,
            edge_api_paths: sorted(mcpgate_proxy::RouteTable::default().api_paths),
            edge_schema_paths: sorted(mcpgate_proxy::RouteTable::default().schema_paths),
            edge_static_extensions: sorted(mcpgate_proxy::RouteTable::default().static_extensions),
            edge_upgrade_sock: "/tmp/mcpgate_upgrade.sock".into(),
            edge_grace_period: 5,
            edge_work_stealing: false,
            compression_enabled: true,
            compression_minimum_size: 500,
            compression_gzip_level: 6,
            compression_brotli_quality: 4,
            compression_zstd_level: 3,
        }
    }
}

fn sorted(set: std::collections::HashSet<String>) -> Vec<String> {
    let mut v: Vec<String> = set.into_iter().collect();
    v.sort();
    v
}

/// Settings whose value is a secret: masked when printed.
const SECRET_KEYS: &[&str] = &[
    "jwt_secret_key",
    "auth_encryption_secret",
    "session_key",
    "session_key_previous",
];
/// Settings whose value is a URL that may carry a password.
const URL_KEYS: &[&str] = &["database_url", "redis_url"];

impl Config {
    /// Loads the YAML file (if any) and overlays the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, |k| std::env::var(k).ok())
    }

    /// As [`Config::load`], with the environment supplied by the caller.
    /// Every problem is reported, not just the first.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let defaults = match serde_json::to_value(Config::default()) {
            Ok(Value::Object(m)) => m,
            _ => unreachable!("Config serializes to a map"),
        };
        let mut problems = Vec::new();
        let mut merged = Map::new();
        if let Some(path) = path {
            merged = read_yaml(path)?;
            let mut unknown: Vec<&String> = merged
                .keys()
                .filter(|k| !defaults.contains_key(*k))
                .collect();
            unknown.sort();
            problems.extend(
                unknown
                    .into_iter()
                    .map(|k| ConfigError::UnknownKey(k.clone())),
            );
            merged.retain(|k, _| defaults.contains_key(k));
        }
        for (key, default) in &defaults {
            let name = key.to_ascii_uppercase();
            let raw = env(&name).or_else(|| standing::read_as_source(&name).and_then(&env));
            if let Some(raw) = raw {
                match env_value(key, &raw, default) {
                    Ok(v) => {
                        merged.insert(key.clone(), v);
                    }
                    Err(e) => {
                        merged.remove(key);
                        problems.push(e);
                    }
                }
            }
        }
        // Each key is checked on its own, so that one bad type does not hide
        // the next.
        let mut keys: Vec<&String> = merged.keys().collect();
        keys.sort();
        let mut bad_types = Vec::new();
        for key in keys {
            let single = Map::from_iter([(key.clone(), merged[key].clone())]);
            if let Err(e) = serde_path_to_error::deserialize::<_, Config>(Value::Object(single)) {
                bad_types.push(key.clone());
                problems.push(invalid(&e.path().to_string(), e.inner().to_string()));
            }
        }
        for key in bad_types {
            merged.remove(&key);
        }
        let config: Config = serde_path_to_error::deserialize(Value::Object(merged))
            .map_err(|e| invalid(&e.path().to_string(), e.inner().to_string()))?;
        problems.extend(validate::problems(&config));
        match problems.len() {
            0 => Ok(config),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Many(problems)),
        }
    }

    /// The standing of every known variable set in the process environment.
    pub fn survey_env() -> Vec<standing::Line> {
        Self::survey_with_env(|k| std::env::var_os(k).map(|_| String::new()))
    }

    /// As [`Config::survey_env`], with the environment supplied by the caller.
    pub fn survey_with_env(env: impl Fn(&str) -> Option<String>) -> Vec<standing::Line> {
        let defaults = serde_json::to_value(Config::default()).expect("config serializes");
        let keys: Vec<&str> = defaults
            .as_object()
            .expect("config is a map")
            .keys()
            .map(String::as_str)
            .collect();
        standing::survey(keys, env)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = validate::problems(self);
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Many(problems)),
        }
    }

    pub fn log_filter(&self) -> String {
        let level = self.log_level.to_ascii_lowercase();
        match level.as_str() {
            "critical" => "error".into(),
            "warning" => "warn".into(),
            _ => level,
        }
    }

    pub fn is_production(&self) -> bool {
        self.environment.eq_ignore_ascii_case("production")
    }

    pub fn is_postgres(&self) -> bool {
        !normalize_database_url(&self.database_url).starts_with("sqlite:")
    }

    /// Whether replicas share state through Redis (`CACHE_TYPE=redis`).
    pub fn uses_redis(&self) -> bool {
        self.cache_type.eq_ignore_ascii_case("redis")
    }

    /// Directory where generated secrets are kept: beside the SQLite file, or
    /// the working directory for PostgreSQL.
    pub fn state_dir(&self) -> PathBuf {
        let url = normalize_database_url(&self.database_url);
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let file = rest.trim_start_matches("//");
            let file = file.split('?').next().unwrap_or(file);
            if let Some(parent) = Path::new(file).parent()
                && !parent.as_os_str().is_empty()
            {
                return parent.to_path_buf();
            }
        }
        PathBuf::from(".")
    }

    /// Where the unauthenticated metrics listener binds, when it is on.
    pub fn metrics_addr(&self) -> Option<String> {
        let port = self.metrics_port?;
        let host = self.metrics_host.as_deref().unwrap_or(&self.host);
        Some(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    /// Whether the MCP endpoints need a token.
    pub fn mcp_auth_required(&self) -> bool {
        self.mcp_require_auth.unwrap_or(self.auth_required)
    }

    /// The effective configuration as YAML with secrets masked.
    pub fn masked_yaml(&self) -> String {
        let mut value = serde_json::to_value(self).expect("config serializes");
        if let Value::Object(map) = &mut value {
            for key in SECRET_KEYS {
                if let Some(v) = map.get_mut(*key)
                    && !v.is_null()
                {
                    *v = Value::String("********".into());
                }
            }
            for key in URL_KEYS {
                if let Some(Value::String(url)) = map.get_mut(*key) {
                    *url = mask_url_password(url);
                }
            }
        }
        serde_yaml_ng::to_string(&value).unwrap_or_default()
    }
}

fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("********"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}

fn read_yaml(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    match value {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => Err(ConfigError::NotAMapping(path.to_path_buf())),
    }
}

/// Optional booleans: unset by default, `true`/`false` when given.
const NULLABLE_BOOLS: &[&str] = &["mcp_require_auth"];
/// Optional numbers: unset by default, a number when given.
const NULLABLE_NUMBERS: &[&str] = &["metrics_port"];

/// Converts an environment string to the JSON type of the setting's default.
fn env_value(key: &str, raw: &str, default: &Value) -> Result<Value, ConfigError> {
    let raw = raw.trim();
    if default.is_null() && NULLABLE_BOOLS.contains(&key) && !raw.is_empty() {
        return env_value(key, raw, &Value::Bool(false));
    }
    if default.is_null() && NULLABLE_NUMBERS.contains(&key) && !raw.is_empty() {
        return env_value(key, raw, &Value::from(0u64));
    }
    Ok(match default {
        Value::Number(n) if n.is_f64() => {
            let f: f64 = raw
                .parse()
                .map_err(|_| invalid(key, format!("`{raw}` is not a number")))?;
            if !(f.is_finite() && f >= 0.0) {
                return Err(invalid(
                    key,
                    format!("`{raw}` must be a non-negative number"),
                ));
            }
            Value::from(f)
        }
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Value::Bool(_) => match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Value::Bool(true),
            "0" | "false" | "no" | "off" => Value::Bool(false),
            _ => return Err(invalid(key, format!("`{raw}` is not a boolean"))),
        },
        Value::Number(_) => {
            let n: u64 = raw
                .parse()
                .or_else(|_| raw.parse::<f64>().map(|f| f as u64))
                .map_err(|_| invalid(key, format!("`{raw}` is not a non-negative number")))?;
            Value::from(n)
        }
        _ if raw.is_empty() => Value::Null,
        _ => Value::String(raw.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(yaml: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        if let Some(y) = yaml {
            std::fs::write(&path, y).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(yaml.map(|_| path.as_path()), |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_reference() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 4444);
        assert_eq!(c.jwt_algorithm, "HS256");
        assert_eq!(c.auth_cache_revocation_ttl, 30);
        assert!(!c.is_postgres());
    }

    #[test]
    fn env_overrides_yaml() {
        let c = load(
            Some("port: 5000\nauth_required: true\n"),
            &[("PORT", "6000"), ("AUTH_REQUIRED", "false")],
        )
        .unwrap();
        assert_eq!(c.port, 6000);
        assert!(!c.auth_required);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load(Some("prot: 5000\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = load(Some("port: nope\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
        let e = load(None, &[("DB_POOL_SIZE", "many")]).unwrap_err();
        assert!(e.to_string().contains("db_pool_size"), "{e}");
        let e = load(None, &[("JWT_ALGORITHM", "none")]).unwrap_err();
        assert!(e.to_string().contains("jwt_algorithm"), "{e}");
        let e = load(None, &[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(e.to_string().contains("database_url"), "{e}");
    }

    #[test]
    fn secrets_are_masked() {
        let c = load(
            None,
            &[
                ("JWT_SECRET_KEY", "topsecretvalue"),
                ("DATABASE_URL", "postgresql://u:pw@h/db"),
            ],
        )
        .unwrap();
        let y = c.masked_yaml();
        assert!(!y.contains("topsecretvalue"));
        assert!(!y.contains(":pw@"));
        assert!(y.contains("********"));
    }

    #[test]
    fn the_references_database_urls_are_accepted() {
        assert_eq!(
            normalize_database_url("postgresql+psycopg://u:p@pgbouncer:6432/mcp"),
            "postgres://u:p@pgbouncer:6432/mcp"
        );
        assert_eq!(
            normalize_database_url("postgresql+asyncpg://h/db"),
            "postgres://h/db"
        );
        assert_eq!(
            normalize_database_url("sqlite:///./mcp.db"),
            "sqlite://./mcp.db"
        );
        assert_eq!(
            normalize_database_url("sqlite:////var/m.db"),
            "sqlite:///var/m.db"
        );
        let c = load(None, &[("DATABASE_URL", "postgresql+psycopg://u@h/db")]).unwrap();
        assert!(c.is_postgres());
        let c = load(None, &[("DATABASE_URL", "sqlite:///./data/m.db")]).unwrap();
        assert_eq!(c.state_dir(), PathBuf::from("./data"));
    }

    #[test]
    fn state_dir_is_beside_the_sqlite_file() {
        let c = load(None, &[("DATABASE_URL", "sqlite:///tmp/x/m.db")]).unwrap();
        assert_eq!(c.state_dir(), PathBuf::from("/tmp/x"));
        let c = load(None, &[]).unwrap();
        assert_eq!(c.state_dir(), PathBuf::from("."));
    }
}

#[cfg(test)]
mod shipped_config {
    use super::*;

    /// The documented file lists every setting with its default.
    #[test]
    fn conf_file_documents_every_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/mcpgate.yaml");
        let file = read_yaml(&path).unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let defaults = defaults.as_object().unwrap();
        for key in defaults.keys() {
            assert!(file.contains_key(key), "conf/mcpgate.yaml lacks `{key}`");
        }
        let loaded = Config::load_with_env(Some(&path), |_| None).unwrap();
        assert_eq!(
            serde_json::to_value(loaded).unwrap(),
            serde_json::Value::Object(defaults.clone())
        );
    }
}
