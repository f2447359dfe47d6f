//! Several replicas as real processes, and the services they share: the
//! PostgreSQL and Redis given by the environment, or private instances the
//! test starts itself (Redis, PostgreSQL, PgBouncer) when it must stop and
//! restart them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");
pub const REDIS_ENV: &str = "MCPGATE_TEST_REDIS_URL";
pub const SECRET: &str = "cluster-test-secret-0123456789-0123456789";
pub const SEALING: &str = "cluster-test-encryption-0123456789-abcdef";

/// The shared services of the multi-replica suite, or a plain `NOT RUN`.
pub fn services(test: &str) -> Option<(String, String)> {
    match (
        std::env::var(crate::common::PG_ENV).ok(),
        std::env::var(REDIS_ENV).ok(),
    ) {
        (Some(pg), Some(redis)) => Some((pg, redis)),
        _ => {
            eprintln!(
                "{test}: NOT RUN - needs {} and {REDIS_ENV} (scripts/test sets both when the services run)",
                crate::common::PG_ENV
            );
            None
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An admin token every replica accepts (they share `SECRET`).
pub fn admin_token() -> String {
    token_for("admin@example.com", true)
}

pub fn token_for(email: &str, admin: bool) -> String {
    let config = mcpgate::config::Config {
        jwt_secret_key: Some(SECRET.into()),
        ..Default::default()
    };
    let signer = mcpgate::auth::Signer::new(&config, SECRET).unwrap();
    signer.sign(&signer.claims(email, 60, None, admin)).unwrap()
}

/// The environment every replica of one test shares.
pub fn replica_env(database_url: &str, redis_url: Option<&str>) -> Vec<(String, String)> {
    let prefix = format!(
        "mcpgw-t-{}:",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut env = vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("JWT_SECRET_KEY", SECRET.to_owned()),
        ("AUTH_ENCRYPTION_SECRET", SEALING.to_owned()),
        ("PORT", "0".to_owned()),
        ("EDGE_PORT", "0".to_owned()),
        ("EDGE_THREADS", "1".to_owned()),
        ("SERVER_THREADS", "1".to_owned()),
        ("EDGE_GRACE_PERIOD", "0".to_owned()),
        ("DB_POOL_SIZE", "5".to_owned()),
        ("DB_MAX_OVERFLOW", "0".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
        ("SSRF_ALLOW_LOCALHOST", "true".to_owned()),
        ("CACHE_PREFIX", prefix),
        ("REDIS_LEADER_TTL", "3".to_owned()),
        ("REDIS_LEADER_HEARTBEAT_INTERVAL", "1".to_owned()),
        ("REDIS_RETRY_INTERVAL_MS", "200".to_owned()),
        ("REDIS_SOCKET_TIMEOUT", "1.0".to_owned()),
        ("REDIS_SOCKET_CONNECT_TIMEOUT", "1.0".to_owned()),
        ("REDIS_HEALTH_CHECK_INTERVAL", "1".to_owned()),
    ];
    if let Some(r) = redis_url {
        env.push(("CACHE_TYPE", "redis".to_owned()));
        env.push(("REDIS_URL", r.to_owned()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Replaces or adds `key` in an environment.
pub fn with(mut env: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
    env
}

/// One `mcpgate serve` process.
pub struct Replica {
    pub name: String,
    child: Child,
    pub base: String,
    pub edge: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    pub fn start(name: &str, env: &[(String, String)]) -> Replica {
        let dir = std::env::temp_dir().join(format!("mcpgate-replica-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").current_dir(&dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("MCPGATE_") || k.starts_with("REDIS_") || k == "CACHE_TYPE" {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOSTNAME", name)
            .env("EDGE_UPGRADE_SOCK", dir.join("upgrade.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mcpgate");
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send((line.contains("edge"), addr));
                }
                sink.lock().push(line);
            }
        });
        let (mut base, mut edge) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while base.is_none() || edge.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, a)) => edge = Some(format!("http://{a}")),
                Ok((false, a)) => base = Some(format!("http://{a}")),
                Err(_) => panic!("replica {name} did not start:\n{}", logs.lock().join("\n")),
            }
        }
        Replica {
            name: name.to_owned(),
            child,
            base: base.unwrap(),
            edge: edge.unwrap(),
            logs,
        }
    }

    /// `kill -9`: no shutdown, no lease release.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        self.logs.lock().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An async client of the replicas.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub token: String,
}

impl Client {
    pub fn new(token: String) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            token,
        }
    }

    pub async fn get(&self, url: &str) -> (StatusCode, Value) {
        match self.http.get(url).bearer_auth(&self.token).send().await {
            Ok(r) => {
                let s = r.status();
                (s, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    /// The status of a GET, or `None` when the request itself failed.
    pub async fn try_get(&self, url: &str) -> Option<StatusCode> {
        self.http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()
            .map(|r| r.status())
    }

    pub async fn post(&self, url: &str, body: &Value) -> (StatusCode, Value, Option<String>) {
        match self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
        {
            Ok(r) => {
                let s = r.status();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (s, r.json().await.unwrap_or(Value::Null), retry)
            }
            Err(e) => panic!("POST {url}: {e}"),
        }
    }

    pub async fn ready(&self, base: &str) -> Option<Value> {
        let r = self.http.get(format!("{base}/ready")).send().await.ok()?;
        if r.status() != StatusCode::OK {
            return None;
        }
        r.json().await.ok()
    }
}

/// Percentile `p` (0..=100) of a sorted sample.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs a command as the `postgres` user when this process is root
/// (PostgreSQL and PgBouncer refuse to run as root).
fn as_service_user(cmd: &mut Command) {
    if effective_uid() == 0
        && let (Some(uid), Some(gid)) = (id_of("-u"), id_of("-g"))
    {
        cmd.uid(uid).gid(gid);
    }
}

fn effective_uid() -> u32 {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn id_of(flag: &str) -> Option<u32> {
    Command::new("id")
        .args([flag, "postgres"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
}

fn which(bin: &str) -> Option<PathBuf> {
    let candidates = [
        format!("/usr/bin/{bin}"),
        format!("/usr/sbin/{bin}"),
        format!("/usr/local/bin/{bin}"),
    ];
    candidates
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn pg_bin(name: &str) -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.exists())
}

fn wait_port(port: u16, up: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if open == up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A private `redis-server` the test may stop and start again.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Option<PrivateRedis> {
        which("redis-server")?;
        let mut r = PrivateRedis {
            port: free_port(),
            child: None,
        };
        r.resume();
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(wait_port(self.port, false, Duration::from_secs(5)));
    }

    pub fn resume(&mut self) {
        let child = Command::new(which("redis-server").unwrap())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        assert!(
            wait_port(self.port, true, Duration::from_secs(10)),
            "redis-server listens"
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private PostgreSQL cluster (initdb in a temp dir) the test may
/// restart.
pub struct PrivatePg {
    pub port: u16,
    dir: PathBuf,
}

impl PrivatePg {
    pub fn start() -> Option<PrivatePg> {
        let initdb = pg_bin("initdb")?;
        pg_bin("pg_ctl")?;
        let dir = std::env::temp_dir().join(format!("mcpgate-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        if let (Some(uid), Some(gid)) = (id_of("-u"), id_of("-g")) {
            let _ = Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(&dir)
                .status();
        }
        let mut init = Command::new(initdb);
        init.args(["-D"])
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_service_user(&mut init);
        if !init.status().ok()?.success() {
            return None;
        }
        let pg = PrivatePg {
            port: free_port(),
            dir,
        };
        pg.resume();
        Some(pg)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn ctl(&self, args: &[&str]) {
        let mut c = Command::new(pg_bin("pg_ctl").unwrap());
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_service_user(&mut c);
        assert!(c.status().unwrap().success(), "pg_ctl {args:?}");
    }

    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        self.ctl(&["-l", log.to_str().unwrap(), "-o", &opts, "-w", "start"]);
    }

    pub fn stop(&self) {
        self.ctl(&["-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let mut c = Command::new(pg_bin("pg_ctl").unwrap());
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_service_user(&mut c);
        let _ = c.status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private PgBouncer in transaction pooling mode, with the settings of
/// the reference's compose file, in front of `pg_port`.
pub struct PrivatePgBouncer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivatePgBouncer {
    pub fn start(pg_port: u16) -> Option<PrivatePgBouncer> {
        which("pgbouncer")?;
        let dir = std::env::temp_dir().join(format!("mcpgate-pgb-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={pg_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}/users.txt\npool_mode = transaction\n\
                 max_client_conn = 3000\ndefault_pool_size = 20\nmin_pool_size = 2\n\
                 reserve_pool_size = 5\nmax_db_connections = 50\nserver_lifetime = 3600\n\
                 server_idle_timeout = 600\nignore_startup_parameters = extra_float_digits\n\
                 admin_users = postgres\n",
                dir.display()
            ),
        )
        .unwrap();
        if let (Some(uid), Some(gid)) = (id_of("-u"), id_of("-g")) {
            let _ = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(&dir)
                .status();
        }
        let mut b = PrivatePgBouncer {
            port,
            dir,
            child: None,
        };
        b.resume();
        Some(b)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn resume(&mut self) {
        let mut c = Command::new(which("pgbouncer").unwrap());
        c.arg(self.dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_service_user(&mut c);
        self.child = Some(c.spawn().expect("pgbouncer starts"));
        assert!(
            wait_port(self.port, true, Duration::from_secs(10)),
            "pgbouncer listens"
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(wait_port(self.port, false, Duration::from_secs(5)));
    }
}

impl Drop for PrivatePgBouncer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates database `name` on a server reachable at `admin`.
pub async fn create_db(admin: &str, name: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(admin).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("create database");
}
