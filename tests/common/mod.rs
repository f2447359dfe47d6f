//! Test harness: a real mcpgate on a real socket, over SQLite in a temp dir
//! or over a fresh PostgreSQL database made for the test.
#![allow(dead_code)]

use std::time::Duration;

use mcpgate::config::Config;
use mcpgate::server::{Running, start};
use reqwest::StatusCode;
use serde_json::Value;

pub const PG_ENV: &str = "MCPGATE_TEST_DATABASE_URL";
/// When set (to a PgBouncer in transaction pooling mode in front of the
/// same server), every PostgreSQL test connects through it.
pub const PGBOUNCER_ENV: &str = "MCPGATE_TEST_PGBOUNCER_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend. The PostgreSQL one is ignored unless run
/// with `--include-ignored` (scripts/test does that when
/// MCPGATE_TEST_DATABASE_URL is set) and fails loudly without the URL.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL: set MCPGATE_TEST_DATABASE_URL and pass --include-ignored (scripts/test does)"]
            async fn postgres() {
                super::$body($crate::common::Backend::Postgres).await
            }
        }
    };
}

pub struct Db {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg: Option<(String, String)>,
    /// Connected through PgBouncer's transaction pooling.
    pub via_pgbouncer: bool,
}

impl Db {
    pub async fn new(backend: Backend) -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Db {
                url: format!("sqlite://{}/mcpgate.db", dir.path().display()),
                dir,
                pg: None,
                via_pgbouncer: false,
            },
            Backend::Postgres => {
                let admin = std::env::var(PG_ENV).unwrap_or_else(|_| {
                    panic!("{PG_ENV} is not set: the PostgreSQL suite needs a server, e.g. postgresql://postgres@127.0.0.1:5432/postgres")
                });
                let name = format!("mcpgate_t_{}", uuid::Uuid::new_v4().simple());
                exec_pg(&admin, &format!("CREATE DATABASE {name}")).await;
                let bouncer = std::env::var(PGBOUNCER_ENV).ok().filter(|u| !u.is_empty());
                let mut u = url::Url::parse(bouncer.as_deref().unwrap_or(&admin))
                    .expect("valid PostgreSQL URL");
                u.set_path(&format!("/{name}"));
                Db {
                    url: u.to_string(),
                    dir,
                    pg: Some((admin, name)),
                    via_pgbouncer: bouncer.is_some(),
                }
            }
        }
    }

    pub async fn drop_db(&self) {
        if let Some((admin, name)) = &self.pg {
            exec_pg(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    }
}

async fn exec_pg(admin: &str, sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .expect("connect to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .expect("admin statement");
}

pub fn config_for(db: &Db) -> Config {
    Config {
        port: 0,
        database_url: db.url.clone(),
        jwt_secret_key: Some("test-secret-0123456789-0123456789-abcdef".into()),
        auth_encryption_secret: Some("test-encryption-0123456789-0123456789".into()),
        db_pool_size: 5,
        db_max_overflow: 0,
        registry_sync_interval: 0,
        edge_enabled: false,
        edge_port: 0,
        // One instance leads anyway: no lease heartbeat among the statements
        // the tests count.
        redis_leader_ttl: 3600,
        redis_leader_heartbeat_interval: 1800,
        // What PgBouncer's transaction pooling needs (README, "PgBouncer").
        db_prepare_threshold: if db.via_pgbouncer { 0 } else { 5 },
        ..Config::default()
    }
}

/// A gateway config for MCP tests: upstreams on loopback, short timeouts
/// and retries.
pub fn mcp_config(db: &Db) -> Config {
    Config {
        ssrf_allow_localhost: true,
        tool_timeout: 10,
        federation_timeout: 10,
        retry_base_delay: 0.05,
        retry_max_delay: 0.2,
        ..config_for(db)
    }
}

pub struct Gw {
    pub running: Running,
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    /// The database made for this gateway by [`GwBuilder`], dropped with it.
    db: Option<Db>,
}

/// A gateway for a test: a fresh database on `backend`, the test defaults,
/// MCP-friendly settings when asked, any tweak, started on free ports.
type Tweak = Box<dyn FnOnce(&mut Config) + Send>;

pub struct GwBuilder {
    backend: Backend,
    mcp: bool,
    tweaks: Vec<Tweak>,
}

impl GwBuilder {
    /// Upstreams on loopback, short timeouts and retries ([`mcp_config`]).
    pub fn mcp(mut self) -> Self {
        self.mcp = true;
        self
    }

    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    pub async fn start(self) -> Gw {
        let db = Db::new(self.backend).await;
        let mut config = if self.mcp {
            mcp_config(&db)
        } else {
            config_for(&db)
        };
        for t in self.tweaks {
            t(&mut config);
        }
        let mut gw = Gw::start(config).await;
        gw.db = Some(db);
        gw
    }
}

impl Gw {
    pub fn on(backend: Backend) -> GwBuilder {
        GwBuilder {
            backend,
            mcp: false,
            tweaks: Vec::new(),
        }
    }

    pub async fn start(config: Config) -> Gw {
        let running = start(config).await.expect("gateway starts");
        let base = format!("http://{}", running.addr);
        let admin = Self::token_with(&running, "admin@example.com", None, true);
        Gw {
            running,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            admin,
            db: None,
        }
    }

    pub fn token_with(
        running: &Running,
        email: &str,
        teams: Option<Vec<String>>,
        admin: bool,
    ) -> String {
        let signer = running.state.auth.signer();
        signer
            .sign(&signer.claims(email, 60, teams, admin))
            .unwrap()
    }

    pub fn token(&self, email: &str) -> String {
        Self::token_with(&self.running, email, None, false)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// The Prometheus text of `/metrics/prometheus`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics/prometheus"))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// How many items a list answers.
    pub async fn count(&self, path: &str, token: &str) -> usize {
        let (s, v) = self.get(path, token).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        v.as_array().map_or(0, Vec::len)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    /// POSTs `body` as it is (not JSON-encoded here) with the admin token,
    /// labelled as JSON: for malformed and oversize bodies.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// One JSON-RPC request on `POST /rpc`; the answer must be HTTP 200.
    pub async fn rpc(&self, token: &str, method: &str, params: Value) -> Value {
        let (s, v) = self
            .post(
                "/rpc",
                token,
                serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Registers an upstream MCP server as a gateway (admin); returns it.
    pub async fn register(&self, name: &str, url: &str, transport: &str) -> Value {
        let (s, v) = self
            .post(
                "/v1/gateways",
                &self.admin,
                serde_json::json!({"name": name, "url": url, "transport": transport}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Creates a REST tool and returns its JSON.
    pub async fn tool(&self, token: &str, body: Value) -> Value {
        let (s, v) = self.post("/v1/tools", token, body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Stops the gateway and drops the database the builder made for it.
    pub async fn stop(self) {
        self.running.stop().await.expect("clean stop");
        if let Some(db) = self.db {
            db.drop_db().await;
        }
    }
}

pub fn rest_tool(name: &str) -> Value {
    serde_json::json!({"name": name, "url": "https://api.example.com/x", "request_type": "POST"})
}

pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}
