//! Several replicas acting as one gateway: real `mcpgate serve` processes
//! on one PostgreSQL and one Redis. Writes and revocations reach every
//! replica through the bus; one leader at a time, replaced after `kill -9`;
//! Redis, PostgreSQL and PgBouncer going away under load cost no request
//! and no acknowledged write. Each test prints what it measured.
//!
//! Runs when MCPGATE_TEST_DATABASE_URL and MCPGATE_TEST_REDIS_URL are set
//! (scripts/test does when the services run); otherwise each test says
//! NOT RUN. The fault tests start private Redis, PostgreSQL and PgBouncer
//! processes, which they stop and restart.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/fixture.rs"]
mod fixture;

use std::time::{Duration, Instant};

use cluster::*;
use common::{Backend, Db};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The replicas' environment for a test database (through PgBouncer when
/// the suite runs in that mode).
fn db_env(db: &Db, redis: Option<&str>) -> Vec<(String, String)> {
    let env = replica_env(&db.url, redis);
    if db.via_pgbouncer {
        with(env, "DB_PREPARE_THRESHOLD", "0")
    } else {
        env
    }
}

fn tool(name: &str) -> Value {
    json!({"name": name, "url": "https://api.example.com/x", "request_type": "POST"})
}

/// Polls `url` on each replica until it answers 200; the delays.
async fn visible_after(c: &Client, urls: &[String], started: Instant) -> Vec<Duration> {
    let mut out = Vec::new();
    for url in urls {
        loop {
            if c.try_get(url).await == Some(StatusCode::OK) {
                out.push(started.elapsed());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{url} never saw the write"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis: set MCPGATE_TEST_DATABASE_URL and MCPGATE_TEST_REDIS_URL and pass --include-ignored (scripts/test does)"]
async fn writes_and_revocations_reach_every_replica() {
    let Some((_pg, redis)) = services("writes_and_revocations_reach_every_replica") else {
        return;
    };
    let db = Db::new(Backend::Postgres).await;
    // No database poll: what arrives, arrives through the bus.
    let env = with(db_env(&db, Some(&redis)), "REGISTRY_SYNC_INTERVAL", "0");
    let replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| Replica::start(n, &env))
        .collect();
    let admin = Client::new(admin_token());
    let (a, others) = (&replicas[0], &replicas[1..]);

    let mut delays = Vec::new();
    for i in 0..120 {
        let (s, v, _) = admin
            .post(&format!("{}/v1/tools", a.base), &tool(&format!("t{i:03}")))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let started = Instant::now();
        let id = v["id"].as_str().unwrap();
        let urls: Vec<String> = others
            .iter()
            .map(|r| format!("{}/v1/tools/{id}", r.base))
            .collect();
        delays.extend(visible_after(&admin, &urls, started).await);
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 50), percentile(&delays, 99));
    eprintln!(
        "cross-replica visibility over {} observations: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        delays.last().unwrap().as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");

    // MCP tools/list and the edge's cached list follow too.
    for r in others {
        let (s, list) = admin.get(&format!("{}/v1/tools?limit=500", r.edge)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(list.as_array().unwrap().len(), 120);
    }
    let (s, v, _) = admin
        .post(&format!("{}/v1/tools", a.base), &tool("late"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let started = Instant::now();
    for r in others {
        loop {
            let (_, list) = admin.get(&format!("{}/v1/tools?limit=500", r.edge)).await;
            let rpc = admin
                .post(
                    &format!("{}/rpc", r.base),
                    &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}),
                )
                .await
                .1;
            let in_list = list.as_array().unwrap().len() == 121;
            let in_mcp = rpc["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "late");
            if in_list && in_mcp {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{}: edge cache or tools/list stale",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // A revoked API token is refused on every replica, on both ports,
    // although each had it cached.
    let (s, t, _) = admin
        .post(
            &format!("{}/v1/tokens", a.base),
            &json!({"name": "ci", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let user = Client::new(t["access_token"].as_str().unwrap().to_owned());
    for r in &replicas {
        for base in [&r.base, &r.edge] {
            assert_eq!(
                user.try_get(&format!("{base}/v1/tools")).await,
                Some(StatusCode::OK)
            );
        }
    }
    let tid = t["token"]["id"].as_str().unwrap();
    let r = admin
        .http
        .delete(format!("{}/v1/tokens/{tid}", a.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let started = Instant::now();
    for r in others {
        for base in [&r.base, &r.edge] {
            let url = format!("{base}/v1/tools");
            while user.try_get(&url).await != Some(StatusCode::UNAUTHORIZED) {
                assert!(
                    started.elapsed() < Duration::from_millis(500),
                    "{url} still accepts a revoked token"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    eprintln!(
        "revocation refused on every replica and port after {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    drop(replicas);
    db.drop_db().await;
}

/// The replicas that say they lead, by name.
async fn leaders(c: &Client, replicas: &[&Replica]) -> Vec<String> {
    let mut out = Vec::new();
    for r in replicas {
        if let Some(v) = c.ready(&r.base).await
            && v["cluster"]["leader"] == true
        {
            out.push(r.name.clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis: set MCPGATE_TEST_DATABASE_URL and MCPGATE_TEST_REDIS_URL and pass --include-ignored (scripts/test does)"]
async fn a_new_leader_takes_over_after_kill_9() {
    let Some((_pg, redis)) = services("a_new_leader_takes_over_after_kill_9") else {
        return;
    };
    let db = Db::new(Backend::Postgres).await;
    let env = with(db_env(&db, Some(&redis)), "HEALTH_CHECK_INTERVAL", "1");
    let env = with(env, "UNHEALTHY_THRESHOLD", "1");
    let env = with(env, "GATEWAY_HEALTH_CHECK_TIMEOUT", "0.5");
    let mut replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| Replica::start(n, &env))
        .collect();
    let admin = Client::new(admin_token());
    let all: Vec<&Replica> = replicas.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let l = leaders(&admin, &all).await;
        assert!(l.len() <= 1, "two leaders: {l:?}");
        if let [one] = l.as_slice() {
            break one.clone();
        }
        assert!(Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut fx = fixture::Fixture::start(0, &[]);
    let (s, g, _) = admin
        .post(
            &format!("{}/v1/gateways", replicas[0].base),
            &json!({"name": "up", "url": fx.url(), "transport": "STREAMABLEHTTP"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();

    let i = replicas.iter().position(|r| r.name == first).unwrap();
    let killed = Instant::now();
    replicas[i].kill9();
    let survivors: Vec<&Replica> = replicas
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, r)| r)
        .collect();
    let second = loop {
        let l = leaders(&admin, &survivors).await;
        assert!(l.len() <= 1, "two leaders at once: {l:?}");
        if let [one] = l.as_slice() {
            break one.clone();
        }
        assert!(killed.elapsed() < Duration::from_secs(8), "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let failover = killed.elapsed();
    eprintln!(
        "leader {first} killed; {second} leads after {:.2} s (REDIS_LEADER_TTL 3 s)",
        failover.as_secs_f64()
    );
    assert!(
        failover < Duration::from_secs(5),
        "within the TTL and a heartbeat"
    );

    // The new leader runs the health checks.
    fx.kill();
    let started = Instant::now();
    loop {
        let (_, v) = admin
            .get(&format!("{}/v1/gateways/{gid}", survivors[0].base))
            .await;
        if v["reachable"] == false {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "health checks stopped with the old leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Watch for a while: never two leaders.
    for _ in 0..20 {
        let l = leaders(&admin, &survivors).await;
        assert!(l.len() <= 1, "two leaders: {l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(replicas);
    db.drop_db().await;
}

/// Reads on every replica and writes on the first, counting outcomes,
/// while `outage` runs.
struct Load {
    reads_ok: u64,
    reads_failed: u64,
    writes_acked: Vec<String>,
    writes_refused: u64,
    refusals_without_retry_after: u64,
}

async fn under_load<F: std::future::Future<Output = ()>>(
    c: &Client,
    replicas: &[&Replica],
    prefix: &str,
    outage: F,
) -> Load {
    let stop = tokio_util::sync::CancellationToken::new();
    let readers: Vec<_> = replicas
        .iter()
        .map(|r| {
            let (c, url, stop) = (
                c.clone(),
                format!("{}/v1/tools?limit=5", r.base),
                stop.clone(),
            );
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                while !stop.is_cancelled() {
                    match c.try_get(&url).await {
                        Some(StatusCode::OK) => ok += 1,
                        other => {
                            failed += 1;
                            eprintln!("read {url}: {other:?}");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (ok, failed)
            })
        })
        .collect();
    let writer = {
        let (c, base, stop, prefix) = (
            c.clone(),
            replicas[0].base.clone(),
            stop.clone(),
            prefix.to_owned(),
        );
        tokio::spawn(async move {
            let (mut acked, mut refused, mut bare) = (Vec::new(), 0u64, 0u64);
            let mut i = 0;
            while !stop.is_cancelled() {
                i += 1;
                let name = format!("{prefix}{i:05}");
                let sent = c
                    .http
                    .post(format!("{base}/v1/tools"))
                    .bearer_auth(&c.token)
                    .json(&tool(&name))
                    .send()
                    .await;
                let (s, retry) = match sent {
                    Ok(r) => (
                        r.status(),
                        r.headers()
                            .get("retry-after")
                            .map(|v| v.to_str().unwrap().to_owned()),
                    ),
                    Err(e) => panic!("a write could not be sent to {base}: {e}"),
                };
                if s.is_success() {
                    acked.push(name);
                } else {
                    assert_eq!(
                        s,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "a write failed with {s}"
                    );
                    refused += 1;
                    if retry.is_none() {
                        bare += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (acked, refused, bare)
        })
    };
    outage.await;
    stop.cancel();
    let (mut reads_ok, mut reads_failed) = (0, 0);
    for r in readers {
        let (ok, failed) = r.await.unwrap();
        reads_ok += ok;
        reads_failed += failed;
    }
    let (writes_acked, writes_refused, refusals_without_retry_after) = match writer.await {
        Ok(w) => w,
        Err(e) => {
            for r in replicas {
                eprintln!("--- replica {} ---\n{}", r.name, r.logs());
            }
            panic!("writer failed: {e}");
        }
    };
    Load {
        reads_ok,
        reads_failed,
        writes_acked,
        writes_refused,
        refusals_without_retry_after,
    }
}

/// How many acknowledged writes the database does not have, asked
/// directly (not through a replica's snapshot).
async fn acknowledged_writes_lost(database_url: &str, acked: &[String]) -> usize {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(database_url)
        .await
        .expect("connect");
    let rows = sqlx::query("SELECT name FROM tools")
        .persistent(false)
        .fetch_all(&mut c)
        .await
        .unwrap();
    let all: std::collections::HashSet<String> =
        rows.iter().map(|r| r.get::<String, _>(0)).collect();
    acked.iter().filter(|n| !all.contains(*n)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis: set MCPGATE_TEST_DATABASE_URL and MCPGATE_TEST_REDIS_URL and pass --include-ignored (scripts/test does)"]
async fn redis_outage_costs_no_request() {
    let Some((_pg, _)) = services("redis_outage_costs_no_request") else {
        return;
    };
    let Some(mut redis) = PrivateRedis::start() else {
        eprintln!("redis_outage_costs_no_request: NOT RUN - redis-server is not installed");
        return;
    };
    let db = Db::new(Backend::Postgres).await;
    let env = with(
        db_env(&db, Some(&redis.url())),
        "REGISTRY_SYNC_INTERVAL",
        "1",
    );
    let replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| Replica::start(n, &env))
        .collect();
    let all: Vec<&Replica> = replicas.iter().collect();
    let admin = Client::new(admin_token());
    let load = under_load(&admin, &all, "r", async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        redis.stop();
        // A write during the outage reaches the others through the poll.
        let (s, v, _) = admin
            .post(&format!("{}/v1/tools", all[0].base), &tool("during-outage"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let started = Instant::now();
        for r in &all[1..] {
            while admin.try_get(&format!("{}/v1/tools/{id}", r.base)).await != Some(StatusCode::OK)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "no convergence without Redis"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        eprintln!(
            "without Redis a write converged through the poll in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(9)).await;
        redis.resume();
    })
    .await;
    eprintln!(
        "Redis down 10 s under load: {} reads ok, {} failed; {} writes acknowledged, {} refused",
        load.reads_ok,
        load.reads_failed,
        load.writes_acked.len(),
        load.writes_refused
    );
    assert_eq!(load.reads_failed, 0, "no read fails because Redis is down");
    assert_eq!(
        load.writes_refused, 0,
        "no write fails because Redis is down"
    );
    // Back on the bus: every replica says so, and a write travels fast again.
    let started = Instant::now();
    for r in &all {
        loop {
            let ready = admin.ready(&r.base).await.unwrap_or(Value::Null);
            let bus = ready["status_items"]
                .as_array()
                .and_then(|i| i.iter().find(|x| x["name"] == "bus").cloned());
            if bus.is_some_and(|b| b["status"] == "ok") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} did not reconnect",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let lost = acknowledged_writes_lost(&db.url, &load.writes_acked).await;
    eprintln!("acknowledged writes lost = {lost}");
    assert_eq!(lost, 0);
    // And the replica that was furthest from the writer has them all too.
    let (_, v) = admin
        .get(&format!("{}/v1/tools?limit=500", all[2].base))
        .await;
    assert!(
        v.as_array().unwrap().len() > load.writes_acked.len(),
        "replica c caught up"
    );
    drop(replicas);
    db.drop_db().await;
}

async fn database_outage(via_pgbouncer: bool) {
    let test = if via_pgbouncer {
        "pgbouncer_restart_loses_no_acknowledged_write"
    } else {
        "postgres_restart_loses_no_acknowledged_write"
    };
    let Some((_, redis)) = services(test) else {
        return;
    };
    let Some(pg) = PrivatePg::start() else {
        eprintln!("{test}: NOT RUN - cannot run a private PostgreSQL (initdb/pg_ctl missing)");
        return;
    };
    let mut bouncer = None;
    if via_pgbouncer {
        match PrivatePgBouncer::start(pg.port) {
            Some(b) => bouncer = Some(b),
            None => {
                eprintln!("{test}: NOT RUN - pgbouncer is not installed");
                return;
            }
        }
    }
    create_db(&pg.url("postgres"), "mcpgate").await;
    let url = match &bouncer {
        Some(b) => b.url("mcpgate"),
        None => pg.url("mcpgate"),
    };
    let mut env = with(replica_env(&url, Some(&redis)), "DB_POOL_TIMEOUT", "2");
    if via_pgbouncer {
        env = with(env, "DB_PREPARE_THRESHOLD", "0");
    }
    let replicas: Vec<Replica> = ["a", "b"].iter().map(|n| Replica::start(n, &env)).collect();
    let all: Vec<&Replica> = replicas.iter().collect();
    let admin = Client::new(admin_token());
    let mut unready_seen = false;
    let mut back_after = Duration::ZERO;
    let load = under_load(&admin, &all, "w", async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match bouncer.as_mut() {
            Some(b) => b.stop(),
            None => pg.stop(),
        }
        let down = Instant::now();
        while down.elapsed() < Duration::from_secs(3) {
            if admin.ready(&all[0].base).await.is_none() {
                unready_seen = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match bouncer.as_mut() {
            Some(b) => b.resume(),
            None => pg.resume(),
        }
        let up = Instant::now();
        while admin.ready(&all[0].base).await.is_none() {
            assert!(
                up.elapsed() < Duration::from_secs(5),
                "/ready not 200 within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        back_after = up.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let lost = acknowledged_writes_lost(&pg.url("mcpgate"), &load.writes_acked).await;
    eprintln!(
        "{} restarted under load: {} reads ok, {} failed; {} writes acknowledged, {} refused with 503 ({} without Retry-After); /ready back after {:.2} s; acknowledged writes lost = {lost}",
        if via_pgbouncer {
            "PgBouncer"
        } else {
            "PostgreSQL"
        },
        load.reads_ok,
        load.reads_failed,
        load.writes_acked.len(),
        load.writes_refused,
        load.refusals_without_retry_after,
        back_after.as_secs_f64()
    );
    assert!(unready_seen, "/ready said 503 while the database was down");
    assert_eq!(load.reads_failed, 0, "reads are served from the snapshot");
    assert_eq!(load.refusals_without_retry_after, 0);
    assert!(load.writes_refused > 0, "the outage was felt by writes");
    assert_eq!(lost, 0, "acknowledged writes lost");
    drop(replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis: set MCPGATE_TEST_DATABASE_URL and MCPGATE_TEST_REDIS_URL and pass --include-ignored (scripts/test does)"]
async fn postgres_restart_loses_no_acknowledged_write() {
    database_outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis: set MCPGATE_TEST_DATABASE_URL and MCPGATE_TEST_REDIS_URL and pass --include-ignored (scripts/test does)"]
async fn pgbouncer_restart_loses_no_acknowledged_write() {
    database_outage(true).await;
}

/// A Streamable HTTP client that sends every request to the next replica.
struct RoundRobin {
    http: reqwest::Client,
    urls: Vec<String>,
    turn: usize,
    token: String,
    session: Option<String>,
    next: u64,
}

struct Answer {
    status: StatusCode,
    messages: Vec<Value>,
    session: Option<String>,
}

impl RoundRobin {
    fn new(urls: Vec<String>, token: String) -> RoundRobin {
        RoundRobin {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            urls,
            turn: 0,
            token,
            session: None,
            next: 1,
        }
    }

    fn pick(&mut self) -> String {
        let u = self.urls[self.turn % self.urls.len()].clone();
        self.turn += 1;
        u
    }

    fn post_to(&self, url: &str, body: &Value, accept: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .header("accept", accept)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    async fn send(&mut self, body: Value, accept: &str) -> Answer {
        let url = self.pick();
        let resp = self
            .post_to(&url, &body, accept)
            .send()
            .await
            .expect("send");
        let status = resp.status();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let text = resp.text().await.unwrap();
        let messages = if sse {
            fixture::sse_messages(&text)
        } else if text.is_empty() {
            vec![]
        } else {
            vec![serde_json::from_str(&text).unwrap_or(Value::String(text))]
        };
        Answer {
            status,
            messages,
            session,
        }
    }

    async fn call(&mut self, method: &str, params: Value, accept: &str) -> Answer {
        let id = self.next;
        self.next += 1;
        self.send(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            accept,
        )
        .await
    }

    /// A tools/call over an SSE answer on the next replica; server requests
    /// on it are answered through the replica after it.
    async fn call_streaming(
        &mut self,
        params: Value,
        answer: impl Fn(&str) -> Value,
    ) -> Vec<Value> {
        use eventsource_stream::Eventsource;
        use futures_util::StreamExt;
        let id = self.next;
        self.next += 1;
        let url = self.pick();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let resp = self
            .post_to(&url, &body, "application/json, text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut events = resp.bytes_stream().eventsource();
        let mut seen = Vec::new();
        while let Some(ev) = events.next().await {
            let ev = ev.expect("event");
            if ev.data.trim().is_empty() {
                continue;
            }
            let msg: Value = serde_json::from_str(&ev.data).unwrap();
            seen.push(msg.clone());
            if let (Some(mid), Some(method)) =
                (msg.get("id"), msg.get("method").and_then(Value::as_str))
            {
                let reply = json!({"jsonrpc": "2.0", "id": mid, "result": answer(method)});
                let r = self
                    .send(reply, "application/json, text/event-stream")
                    .await;
                assert_eq!(
                    r.status,
                    StatusCode::ACCEPTED,
                    "the answer is taken by another replica"
                );
            } else if msg.get("id") == Some(&json!(id)) {
                break;
            }
        }
        seen
    }

    /// Opens the session's GET stream on `url`.
    async fn get_stream(&self, url: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut r = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", self.session.as_deref().unwrap());
        if let Some(l) = last_event_id {
            r = r.header("last-event-id", l);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET stream on {url}");
        resp
    }
}

/// Reads `n` events (id, message) from an SSE response, within 10 s.
async fn read_events(
    events: &mut (
             impl futures_util::Stream<
        Item = Result<
            eventsource_stream::Event,
            eventsource_stream::EventStreamError<reqwest::Error>,
        >,
    > + Unpin
         ),
    n: usize,
) -> Vec<(String, Value)> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .expect("a well-formed event");
        if ev.data.trim().is_empty() {
            continue;
        }
        out.push((ev.id, serde_json::from_str(&ev.data).unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis: set MCPGATE_TEST_DATABASE_URL and MCPGATE_TEST_REDIS_URL and pass --include-ignored (scripts/test does)"]
async fn sessions_continue_on_any_replica() {
    use eventsource_stream::Eventsource;
    let Some((_pg, redis)) = services("sessions_continue_on_any_replica") else {
        return;
    };
    let db = Db::new(Backend::Postgres).await;
    let env = db_env(&db, Some(&redis));
    let mut replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| Replica::start(n, &env))
        .collect();
    let admin = Client::new(admin_token());
    let fx = fixture::Fixture::start(0, &[]);
    let (s, v, _) = admin
        .post(
            &format!("{}/v1/gateways", replicas[0].base),
            &json!({"name": "fx", "url": fx.url(), "transport": "STREAMABLEHTTP"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, tools) = admin
        .get(&format!("{}/v1/tools?limit=500", replicas[0].base))
        .await;
    let ids: Vec<Value> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    let (s, v, _) = admin
        .post(
            &format!("{}/v1/servers", replicas[0].base),
            &json!({"id": "all", "name": "all", "associated_tools": ids, "prefix_mode": "never"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Every replica knows the server before the client starts.
    for r in &replicas {
        let started = Instant::now();
        while admin.try_get(&format!("{}/v1/servers/all", r.base)).await != Some(StatusCode::OK) {
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let urls: Vec<String> = replicas
        .iter()
        .map(|r| format!("{}/servers/all/mcp", r.base))
        .collect();
    let both = "application/json, text/event-stream";
    let mut c = RoundRobin::new(urls.clone(), admin.token.clone());

    // initialize on a, the rest of the session on the others.
    let init = c
        .call("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}, "elicitation": {}}, "clientInfo": {"name": "rr", "version": "1"}}), both)
        .await;
    assert_eq!(init.status, StatusCode::OK);
    c.session = init.session.clone();
    assert!(c.session.is_some(), "a session id");
    let r = c
        .send(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            both,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let list = c.call("tools/list", json!({}), both).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.messages);
    let names: Vec<&str> = list.messages[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
    let seen = c
        .call_streaming(
            json!({"name": "test_tool_with_progress", "_meta": {"progressToken": 9}}),
            |_| json!({}),
        )
        .await;
    assert_eq!(
        seen.iter()
            .filter(|m| m["method"] == "notifications/progress")
            .count(),
        3,
        "{seen:?}"
    );
    // Sampling: asked on one replica's stream, answered through another.
    let seen = c
        .call_streaming(json!({"name": "test_sampling", "arguments": {"prompt": "2+2?"}}), |method| {
            assert_eq!(method, "sampling/createMessage");
            json!({"role": "assistant", "content": {"type": "text", "text": "four"}, "model": "m"})
        })
        .await;
    assert_eq!(
        seen.last().unwrap()["result"]["content"][0]["text"],
        "LLM response: four",
        "{seen:?}"
    );
    let seen = c
        .call_streaming(json!({"name": "test_elicitation", "arguments": {"message": "who?"}}), |method| {
            assert_eq!(method, "elicitation/create");
            json!({"action": "accept", "content": {"username": "ann", "email": "ann@example.com"}})
        })
        .await;
    assert!(
        seen.last().unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("ann@example.com")
    );

    // The GET stream on one replica carries what requests on the others
    // say when they take no stream themselves.
    let get = c.get_stream(&urls[0], None).await;
    let mut events = get.bytes_stream().eventsource();
    let logged = c
        .call(
            "tools/call",
            json!({"name": "test_tool_with_logging"}),
            "application/json",
        )
        .await;
    assert_eq!(logged.status, StatusCode::OK, "{:?}", logged.messages);
    let first = read_events(&mut events, 3).await;
    assert!(
        first
            .iter()
            .all(|(_, m)| m["method"] == "notifications/message"),
        "{first:?}"
    );
    // A sampling request from a JSON-only call elsewhere reaches the GET
    // stream; the answer, sent to yet another replica, completes the call.
    let sampler = {
        let mut other = RoundRobin::new(vec![urls[1].clone()], admin.token.clone());
        other.session = c.session.clone();
        tokio::spawn(async move {
            other
                .call(
                    "tools/call",
                    json!({"name": "test_sampling", "arguments": {"prompt": "3+3?"}}),
                    "application/json",
                )
                .await
        })
    };
    let ask = read_events(&mut events, 1).await.remove(0).1;
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    let mut answerer = RoundRobin::new(vec![urls[2].clone()], admin.token.clone());
    answerer.session = c.session.clone();
    let r = answerer
        .send(json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "six"}, "model": "m"}}), both)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let done = sampler.await.unwrap();
    assert_eq!(
        done.messages[0]["result"]["content"][0]["text"], "LLM response: six",
        "{:?}",
        done.messages
    );

    // Resumption on another replica: the events after the first one.
    drop(events);
    let started = Instant::now();
    loop {
        let resumed = c.get_stream(&urls[1], Some(&first[0].0)).await;
        let mut ev = resumed.bytes_stream().eventsource();
        let got = tokio::time::timeout(Duration::from_millis(1500), read_events(&mut ev, 3)).await;
        if let Ok(got) = got {
            let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(
                ids[0], first[1].0,
                "replayed from the event after Last-Event-ID"
            );
            assert_eq!(ids[1], first[2].0);
            assert_eq!(got[2].1["method"], "sampling/createMessage");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no replay on another replica"
        );
    }

    // Tampered and malformed ids, on every replica.
    let sid = c.session.clone().unwrap();
    let mut tampered = sid.clone().into_bytes();
    let k = tampered.len() - 3;
    tampered[k] = if tampered[k] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for url in &urls {
        for (bad, want) in [
            (tampered.as_str(), StatusCode::NOT_FOUND),
            ("0123", StatusCode::NOT_FOUND),
            ("bad id\u{1}", StatusCode::BAD_REQUEST),
        ] {
            let r = c
                .http
                .post(url)
                .bearer_auth(&c.token)
                .header("accept", both)
                .header("content-type", "application/json")
                .header("mcp-session-id", bad)
                .body(json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}).to_string())
                .send()
                .await;
            // A control character cannot even be sent as a header value.
            let Ok(r) = r else { continue };
            assert_eq!(r.status(), want, "{url} with {bad:?}");
            let body: Value = r.json().await.unwrap();
            assert!(
                body["error"]["code"].is_i64(),
                "a JSON-RPC error body: {body}"
            );
        }
    }
    // Another user's token with this session: not found anywhere.
    let mut thief = RoundRobin::new(urls.clone(), token_for("eve@example.com", false));
    thief.session = c.session.clone();
    for _ in 0..3 {
        assert_eq!(
            thief.call("ping", json!({}), both).await.status,
            StatusCode::NOT_FOUND
        );
    }

    // kill -9 of the replica that issued the session: the next request, on
    // another replica, succeeds.
    replicas[0].kill9();
    c.urls = urls[1..].to_vec();
    let r = c
        .call(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "still here"}}),
            both,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.messages);
    assert_eq!(
        r.messages.last().unwrap()["result"]["content"][0]["text"],
        "Echo: still here"
    );

    // DELETE on one replica ends it on all.
    let r = c
        .http
        .delete(&c.urls[0])
        .bearer_auth(&c.token)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let started = Instant::now();
    loop {
        let mut late = RoundRobin::new(vec![c.urls[1].clone()], c.token.clone());
        late.session = Some(sid.clone());
        if late.call("ping", json!({}), both).await.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the ended session still works on another replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(replicas);
    db.drop_db().await;
}
