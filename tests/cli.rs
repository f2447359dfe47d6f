//! The `mcpgate` binary as a user runs it: serve with nothing configured,
//! make a token, check config, migrate, refuse weak production secrets.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

fn mcpgate(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    // A clean environment for the settings under test.
    for (k, _) in std::env::vars() {
        if k.starts_with("JWT_")
            || k.starts_with("DATABASE_")
            || k == "PORT"
            || k == "HOST"
            || k == "ENVIRONMENT"
            || k == "AUTH_ENCRYPTION_SECRET"
            || k == "MCPGATE_CONFIG"
        {
            c.env_remove(k);
        }
    }
    c
}

struct Served {
    child: Child,
    base: String,
    /// What it printed before its address.
    banner: Vec<String>,
    /// Everything it printed so far.
    log: std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
}

impl Served {
    /// The first printed line `find` accepts, waited for up to 30 s.
    fn wait_for_line(&self, find: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.log.lock().iter().find(|l| find(l)) {
                return l.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no such line");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mcpgate serve` on a free port and waits for its banner.
fn serve(dir: &Path) -> Served {
    serve_in(dir, &[])
}

fn serve_in(dir: &Path, env: &[(&str, &str)]) -> Served {
    let mut child = mcpgate(dir)
        .arg("serve")
        .envs(env.iter().copied())
        .env("PORT", "0")
        .env("EDGE_PORT", "0")
        .env("LOG_LEVEL", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn mcpgate");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        let mut banner = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().push(line.clone());
            if sent {
                continue;
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                let base = rest.split_whitespace().next().unwrap().to_owned();
                let _ = tx.send((base, std::mem::take(&mut banner)));
                sent = true;
            } else {
                banner.push(line);
            }
        }
    });
    let (base, banner) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("mcpgate printed its address");
    Served {
        child,
        base,
        banner,
        log,
    }
}

fn token(dir: &Path, extra: &[&str]) -> String {
    let out = mcpgate(dir)
        .args([
            "token",
            "create",
            "--username",
            "admin@example.com",
            "--admin",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn get(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

#[test]
fn version_flag() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("mcpgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn serve_with_nothing_configured_then_token_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    assert_eq!(
        get(&served.base, "/health", None),
        (200, r#"{"status":"healthy"}"#.to_owned())
    );
    assert!(
        !served.banner.iter().any(|l| l.contains("git work tree")),
        "{:?}",
        served.banner
    );
    assert!(
        dir.path().join("mcpgate.db").exists(),
        "SQLite file created in the working directory"
    );
    let secrets = dir.path().join(".mcpgate-secrets.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let t = token(dir.path(), &[]);
    assert_eq!(get(&served.base, "/v1/tools", Some(&t)).0, 200);
    assert_eq!(get(&served.base, "/v1/tools", None).0, 401);
    // A token signed with another secret is refused.
    let forged = token(dir.path(), &["--secret", "some-other-secret"]);
    assert_eq!(get(&served.base, "/v1/tools", Some(&forged)).0, 401);
    // Graceful stop on SIGTERM, then the same secret after a restart.
    let mut served = served;
    #[cfg(unix)]
    {
        Command::new("kill")
            .args(["-TERM", &served.child.id().to_string()])
            .status()
            .unwrap();
        let asked = std::time::Instant::now();
        let status = served.child.wait().unwrap();
        assert!(status.success(), "exit on SIGTERM: {status}");
        // Idle: nothing to drain, so no wait for the grace period (5 s).
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "an idle instance took {:?} to stop",
            asked.elapsed()
        );
    }
    drop(served);
    let served = serve(dir.path());
    assert_eq!(get(&served.base, "/v1/tools", Some(&t)).0, 200);
}

/// Generated secrets in a git work tree are one `git add .` from a commit:
/// mcpgate says so, and its own checkout ignores the file.
#[test]
fn generated_secrets_inside_a_git_work_tree_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let served = serve_in(&data, &[]);
    let warning = served
        .banner
        .iter()
        .find(|l| l.contains("git work tree"))
        .unwrap_or_else(|| panic!("no warning in {:?}", served.banner));
    assert!(warning.contains(".mcpgate-secrets.json"), "{warning}");
    drop(served);
    // Provided secrets: nothing generated, nothing to warn about.
    let served = serve_in(
        &data,
        &[
            ("JWT_SECRET_KEY", "a-provided-secret-0123456789abcdef0123"),
            (
                "AUTH_ENCRYPTION_SECRET",
                "another-provided-secret-0123456789ab",
            ),
        ],
    );
    assert!(
        !served.banner.iter().any(|l| l.contains("git work tree")),
        "{:?}",
        served.banner
    );
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".gitignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == ".mcpgate-secrets.json"),
        ".gitignore does not ignore the generated secrets file"
    );
}

#[test]
fn config_check_names_bad_keys_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "port: 4444\njwt_secret_key: very-secret-value-0123456789-0123456789\n",
    )
    .unwrap();
    let out = mcpgate(dir.path())
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("port: 4444"));
    assert!(!text.contains("very-secret-value"));

    std::fs::write(&cfg, "prot: 4444\n").unwrap();
    let out = mcpgate(dir.path())
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`prot`"));

    let out = mcpgate(dir.path())
        .args(["config", "check"])
        .env("DB_POOL_SIZE", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("db_pool_size"));
}

/// `config check` reports every problem at once, not the first.
#[test]
fn config_check_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "prot: 4444\nedge_rate_limit_rps: fast\nlog_format: xml\ncache_type: redis\n",
    )
    .unwrap();
    let out = mcpgate(dir.path())
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .env("DB_POOL_SIZE", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for named in [
        "`prot`",
        "edge_rate_limit_rps",
        "log_format",
        "redis_url",
        "db_pool_size",
    ] {
        assert!(err.contains(named), "{named} is not named in:\n{err}");
    }
    assert!(err.contains("5 problems"), "{err}");
}

#[test]
fn production_refuses_generated_and_weak_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = mcpgate(dir.path())
        .arg("serve")
        .env("ENVIRONMENT", "production")
        .env("PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Both variables are named at once, with how to make them.
    assert!(
        err.contains("production")
            && err.contains("set JWT_SECRET_KEY and AUTH_ENCRYPTION_SECRET")
            && err.contains("openssl rand"),
        "{err}"
    );
    assert!(
        !dir.path().join(".mcpgate-secrets.json").exists(),
        "production generates no secrets file"
    );

    let out = mcpgate(dir.path())
        .arg("serve")
        .env("ENVIRONMENT", "production")
        .env("PORT", "0")
        .env("EDGE_PORT", "0")
        .env("JWT_SECRET_KEY", "changeme")
        .env("AUTH_ENCRYPTION_SECRET", "x".repeat(40))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("well-known"));
}

#[test]
fn migrate_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = mcpgate(dir.path()).arg("migrate").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("migrations applied"));
    }
}

/// `DATABASE_URL=postgresql://... mcpgate serve` against a fresh database.
#[test]
#[ignore = "needs PostgreSQL: set MCPGATE_TEST_DATABASE_URL and pass --include-ignored (scripts/test does)"]
fn serve_on_postgresql() {
    let admin = std::env::var("MCPGATE_TEST_DATABASE_URL")
        .expect("MCPGATE_TEST_DATABASE_URL is not set: this test needs a PostgreSQL server");
    let name = format!("mcpgate_t_{}", uuid::Uuid::new_v4().simple());
    let psql = |sql: &str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        })
    };
    // Before the database exists: a clear error that says how to make it,
    // at once (no retries: waiting does not create it).
    {
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        let out = mcpgate(tempfile::tempdir().unwrap().path())
            .arg("migrate")
            .env("DATABASE_URL", url.to_string())
            .env("DB_RETRY_INTERVAL_MS", "60000")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("does not exist") && err.contains("createdb") && err.contains(&name),
            "{err}"
        );
    }
    psql(&format!("CREATE DATABASE {name}"));
    // Through PgBouncer when the suite runs in that mode.
    let bouncer = std::env::var("MCPGATE_TEST_PGBOUNCER_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let mut url = url::Url::parse(bouncer.as_deref().unwrap_or(&admin)).unwrap();
    url.set_path(&format!("/{name}"));
    let url = url.to_string().replacen("postgres://", "postgresql://", 1);
    let prepare_threshold = if bouncer.is_some() { "0" } else { "5" };
    let dir = tempfile::tempdir().unwrap();
    {
        let mut cmd = mcpgate(dir.path());
        cmd.arg("serve")
            .env("PORT", "0")
            .env("DATABASE_URL", &url)
            .env("DB_PREPARE_THRESHOLD", prepare_threshold)
            .env("LOG_LEVEL", "warn")
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let banner = loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("banner");
            if line.contains("listening on") {
                break line;
            }
        };
        assert!(banner.contains("postgresql database"), "{banner}");
        let base = banner
            .split("listening on ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        let served = Served {
            child,
            base,
            banner: Vec::new(),
            log: Default::default(),
        };
        let t = token(dir.path(), &[]);
        assert_eq!(get(&served.base, "/health", None).0, 200);
        assert_eq!(get(&served.base, "/ready", None).0, 200);
        assert_eq!(get(&served.base, "/v1/tools", Some(&t)).0, 200);
        drop(served);
    }
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Graceful binary upgrade: a new process started with `--upgrade` takes the
/// edge's socket over when the old one gets SIGQUIT; no request fails.
#[cfg(unix)]
#[test]
fn graceful_upgrade_hands_the_edge_over() {
    let dir = tempfile::tempdir().unwrap();
    let (port, edge) = (free_port(), free_port());
    let sock = dir.path().join("upgrade.sock");
    let start = |upgrade: bool| {
        let mut c = mcpgate(dir.path());
        c.arg("serve");
        if upgrade {
            c.arg("--upgrade");
        }
        c.env("PORT", port.to_string())
            .env("EDGE_PORT", edge.to_string())
            .env("EDGE_UPGRADE_SOCK", &sock)
            .env("EDGE_GRACE_PERIOD", "1")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let lines = |child: &mut Child| {
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        rx
    };
    let wait_for = |rx: &std::sync::mpsc::Receiver<String>, what: &str| loop {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no `{what}` line"));
        if l.contains(what) {
            break;
        }
    };
    let mut old = start(false);
    let old_lines = lines(&mut old);
    wait_for(&old_lines, "edge listening");
    let base = format!("http://127.0.0.1:{edge}");
    assert_eq!(get(&base, "/health", None).0, 200);

    let mut new = start(true);
    let new_lines = lines(&mut new);
    std::thread::sleep(Duration::from_millis(1500));
    // Load through the swap.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let base = base.clone();
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                codes.push(get(&base, "/health", None).0);
                std::thread::sleep(Duration::from_millis(20));
            }
            codes
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-QUIT", &old.id().to_string()])
        .status()
        .unwrap();
    wait_for(&new_lines, "edge listening");
    let status = old.wait().unwrap();
    assert!(status.success(), "old process: {status}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let codes = load.join().unwrap();
    assert!(codes.len() > 10, "{codes:?}");
    assert!(
        codes.iter().all(|c| *c == 200),
        "a request failed during the upgrade: {codes:?}"
    );
    assert_eq!(
        get(&base, "/health", None).0,
        200,
        "the new process serves the edge"
    );
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}"), "/health", None).0,
        200,
        "and the application"
    );
    let _ = new.kill();
    let _ = new.wait();
}

/// A change of the config file reloads the edge's limits live; a bad file is
/// refused and the running configuration stays.
#[test]
fn config_file_change_reloads_limits_live() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mcpgate.yaml");
    std::fs::write(&cfg, "edge_rate_limit_rps: 1\nedge_rate_limit_burst: 0\n").unwrap();
    let mut child = mcpgate(dir.path())
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("PORT", "0")
        .env("EDGE_PORT", free_port().to_string())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let edge = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("edge banner");
        if let Some(rest) = l.split("edge listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    let statuses = |n: usize| {
        (0..n)
            .map(|_| get(&edge, "/version", None).0)
            .collect::<Vec<_>>()
    };
    assert!(statuses(3).contains(&429), "1 r/s without burst limits");
    std::fs::write(
        &cfg,
        "edge_rate_limit_rps: 1\nedge_rate_limit_burst: 0\nbogus_key: 1\n",
    )
    .unwrap();
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("reload is reported");
        if l.contains("reload rejected") {
            assert!(l.contains("bogus_key"), "{l}");
            break;
        }
    }
    std::fs::write(&cfg, "edge_rate_limit_rps: 0\n").unwrap();
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("reload is reported");
        if l.contains("configuration reloaded") {
            break;
        }
    }
    assert!(
        statuses(10).iter().all(|s| *s == 200),
        "the limit is gone without a restart"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `mcpgate-fixture --help` prints its usage instead of starting a server.
#[test]
fn fixture_help_prints_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgate-fixture"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("usage: mcpgate-fixture"), "{text}");
    assert!(
        !text.contains("listening on http://127"),
        "it did not start a server"
    );
}

/// The deployment guide's section 11 `config:` block and section 6's Redis
/// block, as a user copies them into the environment.
const GUIDE_ENV: &[(&str, &str)] = &[
    ("GUNICORN_WORKERS", "16"),
    ("GUNICORN_TIMEOUT", "600"),
    ("GUNICORN_MAX_REQUESTS", "100000"),
    ("GUNICORN_PRELOAD_APP", "true"),
    ("DB_POOL_SIZE", "50"),
    ("DB_MAX_OVERFLOW", "10"),
    ("DB_POOL_TIMEOUT", "60"),
    ("DB_POOL_RECYCLE", "3600"),
    ("CACHE_TYPE", "redis"),
    ("CACHE_PREFIX", "mcpgw:"),
    ("SESSION_TTL", "3600"),
    ("MESSAGE_TTL", "600"),
    ("TOOL_CONCURRENT_LIMIT", "20"),
    ("RESOURCE_CACHE_SIZE", "2000"),
    ("REDIS_URL", "redis://redis-service:6379/0"),
    ("REDIS_MAX_RETRIES", "3"),
    ("REDIS_RETRY_INTERVAL_MS", "2000"),
    ("REDIS_MAX_CONNECTIONS", "50"),
    ("REDIS_SOCKET_TIMEOUT", "2.0"),
    ("REDIS_SOCKET_CONNECT_TIMEOUT", "2.0"),
    ("REDIS_RETRY_ON_TIMEOUT", "true"),
    ("REDIS_HEALTH_CHECK_INTERVAL", "30"),
    ("REDIS_LEADER_TTL", "15"),
    ("REDIS_LEADER_HEARTBEAT_INTERVAL", "5"),
    ("REDIS_PARSER", "auto"),
    // Elsewhere in the guide.
    ("HEALTH_CHECK_TIMEOUT", "10"),
    ("DISABLE_ACCESS_LOG", "true"),
    ("OTEL_ENABLE_OBSERVABILITY", "true"),
    ("AUDIT_TRAIL_ENABLED", "false"),
    ("METRICS_BUFFER_ENABLED", "true"),
    (
        "DATABASE_URL",
        "postgresql+psycopg://postgres:password@pgbouncer:6432/mcp",
    ),
    ("POOL_MODE", "transaction"),
];

/// Every variable of the guide's environment gets a status line from
/// `config check`: none is dropped silently.
#[test]
fn config_check_gives_every_reference_variable_a_status() {
    let dir = tempfile::tempdir().unwrap();
    let out = mcpgate(dir.path())
        .args(["config", "check"])
        .envs(GUIDE_ENV.iter().copied())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let yaml = String::from_utf8_lossy(&out.stdout);
    for (name, _) in GUIDE_ENV {
        let line = err
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no status line for {name} in:\n{err}"));
        assert!(!line.contains("password"), "{line}");
    }
    for (name, status) in [
        ("DB_POOL_SIZE", "honoured"),
        ("TOOL_CONCURRENT_LIMIT", "honoured"),
        ("GUNICORN_WORKERS", "no effect in mcpgate: one process"),
        ("REDIS_PARSER", "no effect"),
        (
            "HEALTH_CHECK_TIMEOUT",
            "read as GATEWAY_HEALTH_CHECK_TIMEOUT",
        ),
        ("POOL_MODE", "not a gateway setting"),
    ] {
        assert!(
            err.contains(&format!("{name}: {status}")),
            "{name} is not `{status}` in:\n{err}"
        );
    }
    assert!(
        yaml.contains("gateway_health_check_timeout: 10.0"),
        "{yaml}"
    );
    assert!(yaml.contains("tool_concurrent_limit: 20"), "{yaml}");
    assert!(yaml.contains("cache_type: redis"), "{yaml}");
}

/// A reader that closes its SSE stream through the edge is routine: no
/// error in the log, and the request counts as answered, not as a 500.
#[test]
fn a_client_closing_its_stream_is_not_an_edge_error() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let served = serve_in(
        dir.path(),
        &[("SSE_KEEPALIVE_INTERVAL", "1"), ("LOG_LEVEL", "info")],
    );
    let edge = served.wait_for_line(|l| l.contains("edge listening on http://"));
    let edge = edge.rsplit("http://").next().unwrap().trim().to_owned();
    let t = token(dir.path(), &[]);
    let bypassed = |status: &str| {
        let (_, text) = get(&served.base, "/metrics/prometheus", Some(&t));
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "mcpgate_edge_requests_total{{class=\"bypass\",status=\"{status}\"}}"
                ))
            })
            .map_or(0, |l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
    };
    let before = bypassed("200");
    let mut tcp = std::net::TcpStream::connect(&edge).unwrap();
    write!(
        tcp,
        "GET /sse HTTP/1.1\r\nHost: {edge}\r\nAuthorization: Bearer {t}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: endpoint") {
        let n = tcp.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream closed early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    drop(tcp);
    // The next keep-alive finds the client gone and ends the request.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while bypassed("200") == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bypassed("500"), 0);
    let log = served.log.lock();
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("ERROR") || l.contains("Fail to") || l.contains("Broken pipe"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
}

/// The README's walkthrough block, run as written by bash (`set -eu`), with
/// `cargo run [...] -- ARGS` standing for the binary under test. It uses the
/// fixed ports 4444 and 8080, as a reader would.
#[test]
fn the_readme_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Five-minute walkthrough")
        .expect("walkthrough")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    for port in [4444, 8080] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: the walkthrough needs it"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let shim = dir.path().join("bin");
    std::fs::create_dir(&shim).unwrap();
    let cargo = shim.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\n# cargo run [options] -- ARGS: the binary under test\n\
         while [ \"$#\" -gt 0 ] && [ \"$1\" != \"--\" ]; do shift; done\n\
         shift\nexec \"$MCPGATE_BIN\" \"$@\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let run = Command::new("bash")
        .args(["-eu", "-c", block])
        .current_dir(&work)
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:{}",
                shim.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", dir.path())
        .env("MCPGATE_BIN", BIN)
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(r#""name":"get_weather""#), "{stdout}");
    assert!(
        stdout.contains(r#""*****""#),
        "the credential is masked: {stdout}"
    );
    assert!(!stdout.contains("upstream-secret"), "{stdout}");
    assert!(stdout.contains(r#"{"status":"healthy"}"#), "{stdout}");
    assert!(work.join(".mcpgate-secrets.json").exists());
    // Step 6 stopped it: the port is free again soon.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", 4444)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway still runs after the walkthrough's kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn health_fails_clearly_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let out = mcpgate(dir.path())
        .args(["health", "--url", "http://127.0.0.1:9", "--wait", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http://127.0.0.1:9/health cannot be reached"),
        "{err}"
    );
    let served = serve(dir.path());
    let out = mcpgate(dir.path())
        .args(["health", "--url", &served.base])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"status":"healthy"}"#
    );
}
