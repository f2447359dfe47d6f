//! The edge on a real socket in front of a real gateway: cache results,
//! identity-safe keys, invalidation on writes, bypass classes, encodings,
//! the cache lock, streams, limits and live reload.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use mcpgate::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn edge_config(db: &Db) -> Config {
    Config {
        edge_enabled: true,
        edge_port: 0,
        edge_threads: 2,
        edge_grace_period: 0,
        ..config_for(db)
    }
}

struct Edge {
    gw: Gw,
    base: String,
}

impl Edge {
    async fn start(config: Config) -> Edge {
        let gw = Gw::start(config).await;
        let base = format!("http://{}", gw.running.edge_addr.expect("edge runs"));
        Edge { gw, base }
    }

    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self.gw.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    async fn stop(self) {
        self.gw.stop().await;
    }
}

fn status(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_hit_and_writes_invalidate() {
    let db = Db::new(Backend::Sqlite).await;
    let e = Edge::start(edge_config(&db)).await;
    let t = e.gw.admin.clone();
    e.gw.tool(&t, rest_tool("first")).await;
    let r = e.get("/v1/tools", Some(&t), &[]).await;
    assert_eq!((r.status(), status(&r)), (StatusCode::OK, "MISS".into()));
    let r = e.get("/v1/tools", Some(&t), &[]).await;
    assert_eq!(status(&r), "HIT");
    assert_eq!(names(&r.json::<Value>().await.unwrap()), vec!["first"]);
    // A write through the edge: bypassed, and the list is fresh at once.
    let resp =
        e.gw.http
            .post(format!("{}/v1/tools", e.base))
            .bearer_auth(&t)
            .json(&rest_tool("second"))
            .send()
            .await
            .unwrap();
    assert_eq!(
        (resp.status(), status(&resp)),
        (StatusCode::CREATED, "BYPASS".into())
    );
    let r = e.get("/v1/tools", Some(&t), &[]).await;
    assert_eq!(status(&r), "MISS");
    assert_eq!(
        names(&r.json::<Value>().await.unwrap()),
        vec!["first", "second"]
    );
    // A write made directly on the application invalidates too.
    e.gw.tool(&t, rest_tool("third")).await;
    let r = e.get("/v1/tools", Some(&t), &[]).await;
    assert_eq!(status(&r), "MISS");
    assert_eq!(names(&r.json::<Value>().await.unwrap()).len(), 3);
    // Queries are part of the key, normalized.
    assert_eq!(
        status(&e.get("/v1/tools?limit=2&tags=", Some(&t), &[]).await),
        "MISS"
    );
    assert_eq!(
        status(&e.get("/v1/tools?tags=&limit=2", Some(&t), &[]).await),
        "HIT"
    );
    // 401 before any lookup; the correlation id is echoed or made.
    let r = e.get("/v1/tools", None, &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = e
        .get("/v1/tools", Some(&t), &[("x-correlation-id", "abc-123")])
        .await;
    assert_eq!(r.headers()["x-correlation-id"], "abc-123");
    assert!(!e.get("/health", None, &[]).await.headers()["x-correlation-id"].is_empty());
    // Admin purge of a zone.
    let r =
        e.gw.http
            .post(format!("{}/edge/purge?zone=api", e.base))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(status(&e.get("/v1/tools", Some(&t), &[]).await), "MISS");
    let r =
        e.gw.http
            .post(format!("{}/edge/purge?zone=api", e.base))
            .bearer_auth(e.gw.token("x@example.com"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_bodies_never_cross_users_or_teams() {
    let db = Db::new(Backend::Sqlite).await;
    // Pingora's own listening service (EDGE_WORK_STEALING) serves the same way.
    let e = Edge::start(Config {
        edge_work_stealing: true,
        ..edge_config(&db)
    })
    .await;
    let alice = e.gw.token("alice@example.com");
    let bob = e.gw.token("bob@example.com");
    let (_, team) =
        e.gw.post("/v1/teams", &alice, json!({"name": "Secret team"}))
            .await;
    e.gw.tool(
        &alice,
        json!({"name": "team_only", "url": "https://a.example", "team_id": team["id"]}),
    )
    .await;
    e.gw.tool(&e.gw.admin, rest_tool("everyone")).await;
    for _ in 0..2 {
        let a = e.get("/v1/tools", Some(&alice), &[]).await;
        assert_eq!(
            names(&a.json::<Value>().await.unwrap()),
            vec!["team_only", "everyone"]
        );
        let b = e.get("/v1/tools", Some(&bob), &[]).await;
        assert_eq!(names(&b.json::<Value>().await.unwrap()), vec!["everyone"]);
    }
    // Same user, another token: same scope, so a HIT is fine and correct.
    let alice2 = Gw::token_with(&e.gw.running, "alice@example.com", None, false);
    let r = e.get("/v1/tools", Some(&alice2), &[]).await;
    assert_eq!(status(&r), "HIT");
    assert_eq!(
        names(&r.json::<Value>().await.unwrap()),
        vec!["team_only", "everyone"]
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_classes_and_limits_on_bodies() {
    let db = Db::new(Backend::Sqlite).await;
    let e = Edge::start(edge_config(&db)).await;
    let t = e.gw.admin.clone();
    let tool = e.gw.tool(&t, rest_tool("x")).await;
    let rpc =
        e.gw.http
            .post(format!("{}/rpc", e.base))
            .bearer_auth(&t)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .send()
            .await
            .unwrap();
    // (MCP reads over POST are kept: tests/mcp_cache.rs.)
    assert_eq!(
        (rpc.status(), status(&rpc)),
        (StatusCode::OK, "BYPASS".into())
    );
    assert_eq!(rpc.json::<Value>().await.unwrap()["result"], json!({}));
    for path in [
        format!("/v1/tools/{}", tool["id"].as_str().unwrap()),
        "/health".into(),
        "/v1/teams".into(),
    ] {
        for _ in 0..2 {
            let r = e.get(&path, Some(&t), &[]).await;
            assert_eq!(
                (r.status(), status(&r)),
                (StatusCode::OK, "BYPASS".into()),
                "{path}"
            );
        }
    }
    let big = format!(
        r#"{{"name":"big","url":"https://a.example","description":"{}"}}"#,
        "x".repeat(16 << 20)
    );
    let r =
        e.gw.http
            .post(format!("{}/v1/tools", e.base))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..]),
        "a refused body is not drained: the connection closes"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "payload_too_large", "{v}");
    // Without a declared length the edge counts what it reads.
    let chunks = (0..34).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 32 << 10]));
    let r =
        e.gw.http
            .post(format!("{}/v1/tools", e.base))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodings_are_negotiated_and_stored_per_encoding() {
    let db = Db::new(Backend::Sqlite).await;
    let e = Edge::start(edge_config(&db)).await;
    let t = e.gw.admin.clone();
    for i in 0..10 {
        e.gw.tool(&t, json!({"name": format!("tool_{i}"), "url": "https://a.example/x", "description": "a description long enough to compress"})).await;
    }
    let cases = [
        ("gzip, br", "br"),
        ("gzip;q=1.0, br;q=0.1", "br"),
        ("br;q=0, gzip", "gzip"),
        ("zstd, gzip", "zstd"),
        ("*;q=0, gzip;q=0.5", "gzip"),
        ("identity", ""),
        ("br;q=0, zstd;q=0, gzip;q=0", ""),
        ("deflate", ""),
    ];
    for (accept, want) in cases {
        for round in ["first", "second"] {
            let r = e
                .get("/v1/tools", Some(&t), &[("accept-encoding", accept)])
                .await;
            let enc = r
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert_eq!(enc, want, "Accept-Encoding: {accept} ({round})");
            if round == "second" {
                assert_eq!(status(&r), "HIT", "{accept}");
            }
            let body = r.bytes().await.unwrap();
            if want.is_empty() {
                assert_eq!(names(&serde_json::from_slice(&body).unwrap()).len(), 10);
            } else {
                assert!(
                    serde_json::from_slice::<Value>(&body).is_err(),
                    "{accept}: body is encoded"
                );
            }
        }
    }
    // Small bodies are sent as they are.
    let r = e.get("/health", None, &[("accept-encoding", "gzip")]).await;
    assert!(r.headers().get("content-encoding").is_none());
    e.stop().await;
}

/// A cacheable answer under the compression minimum, asked for with gzip:
/// the pre-cache compressor was adjusted after it had started, which
/// panicked on the edge thread and aborted the whole process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_cacheable_answers_with_gzip_do_not_crash_the_edge() {
    let db = Db::new(Backend::Sqlite).await;
    let e = Edge::start(edge_config(&db)).await;
    let t = e.gw.admin.clone();
    for (round, want) in [("first", "MISS"), ("second", "HIT")] {
        for accept in ["gzip", "gzip, deflate, br, zstd"] {
            let path = format!("/v1/gateways?limit=7&a={}", accept.len());
            let r = e.get(&path, Some(&t), &[("accept-encoding", accept)]).await;
            assert_eq!(r.status(), StatusCode::OK, "{round} {accept}");
            assert_eq!(status(&r), want, "{round} {accept}");
            assert!(r.headers().get("content-encoding").is_none());
            assert_eq!(r.text().await.unwrap(), "[]");
        }
    }
    let r = e.get("/health", None, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fill_for_concurrent_misses() {
    let db = Db::new(Backend::Sqlite).await;
    let e = Edge::start(edge_config(&db)).await;
    let t = e.gw.admin.clone();
    e.gw.tool(&t, rest_tool("only")).await;
    let count = || async {
        let m = e.gw.metrics().await;
        m.lines()
            .filter(|l| {
                l.starts_with("mcpgate_http_requests_total") && l.contains("route=\"/v1/servers\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    let before = count().await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let http = e.gw.http.clone();
            let url = format!("{}/v1/servers", e.base);
            let t = t.clone();
            tokio::spawn(async move { http.get(url).bearer_auth(t).send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        count().await - before,
        1,
        "50 concurrent misses caused more than one fill"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_says_updating() {
    let db = Db::new(Backend::Sqlite).await;
    let e = Edge::start(Config {
        edge_cache_api_ttl: 1,
        edge_stale_while_revalidate: 60,
        ..edge_config(&db)
    })
    .await;
    let t = e.gw.admin.clone();
    assert_eq!(status(&e.get("/v1/tools", Some(&t), &[]).await), "MISS");
    assert_eq!(status(&e.get("/v1/tools", Some(&t), &[]).await), "HIT");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = e.get("/v1/tools", Some(&t), &[]).await;
    assert_eq!(
        (r.status(), status(&r)),
        (StatusCode::OK, "UPDATING".into())
    );
    // The background refresh stores a fresh copy.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if status(&e.get("/v1/tools", Some(&t), &[]).await) == "HIT" {
            break;
        }
        assert!(Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_unbuffered() {
    let db = Db::new(Backend::Sqlite).await;
    let e = Edge::start(edge_config(&db)).await;
    let t = e.gw.admin.clone();
    e.gw.tool(&t, rest_tool("streamed")).await;
    // Legacy SSE through the edge: the first event arrives while the stream stays open.
    let resp =
        e.gw.http
            .get(format!("{}/sse", e.base))
            .bearer_auth(&t)
            .header("accept", "text/event-stream")
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get("content-encoding").is_none(),
        "SSE is never compressed"
    );
    assert_eq!(status(&resp), "BYPASS");
    let mut events = eventsource_stream::Eventsource::eventsource(resp.bytes_stream());
    let endpoint = tokio::time::timeout(Duration::from_secs(3), events.next())
        .await
        .expect("first event arrives at once")
        .unwrap()
        .unwrap();
    assert_eq!(endpoint.event, "endpoint");
    let post =
        e.gw.http
            .post(format!("{}{}", e.base, endpoint.data))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).to_string())
            .send()
            .await
            .unwrap();
    assert_eq!(post.status(), StatusCode::ACCEPTED);
    let msg = tokio::time::timeout(Duration::from_secs(3), events.next())
        .await
        .expect("answer arrives")
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&msg.data).unwrap();
    assert_eq!(v["result"]["tools"][0]["name"], "streamed");
    drop(events);

    // WebSocket through the edge.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws", e.gw.running.edge_addr.unwrap()),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {t}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket through the edge");
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(reply["result"], json!({}));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_with_retry_after_and_live_reload() {
    let db = Db::new(Backend::Sqlite).await;
    let config = Config {
        edge_rate_limit_rps: 1,
        edge_rate_limit_burst: 3,
        ..edge_config(&db)
    };
    let e = Edge::start(config.clone()).await;
    let t = e.gw.admin.clone();
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = e.get("/v1/teams", Some(&t), &[]).await;
        codes.push(r.status().as_u16());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers()["retry-after"], "1");
            assert_eq!(
                r.json::<Value>().await.unwrap()["error"],
                "too_many_requests"
            );
        }
    }
    assert_eq!(
        codes,
        vec![200, 200, 200, 200, 429, 429],
        "1 + burst pass, then 429"
    );
    // Health is never limited.
    assert_eq!(e.get("/health", None, &[]).await.status(), StatusCode::OK);
    // A reload lifts the limit live.
    let restart = e.gw.running.reload(&Config {
        edge_rate_limit_rps: 0,
        ..config.clone()
    });
    assert_eq!(restart.applied, vec!["edge_rate_limit_rps"]);
    assert!(restart.needs_restart.is_empty(), "{restart:?}");
    for _ in 0..10 {
        assert_eq!(
            e.get("/v1/teams", Some(&t), &[]).await.status(),
            StatusCode::OK
        );
    }
    // And sets it again.
    e.gw.running.reload(&Config {
        edge_rate_limit_rps: 1,
        edge_rate_limit_burst: 0,
        ..config.clone()
    });
    let codes: Vec<u16> = futures_util::future::join_all(
        (0..3).map(|_| async { e.get("/v1/teams", Some(&t), &[]).await.status().as_u16() }),
    )
    .await;
    assert!(codes.contains(&429), "{codes:?}");
    let restart = e.gw.running.reload(&Config { port: 1, ..config });
    assert_eq!(restart.needs_restart, vec!["port"]);
    e.stop().await;
}

/// Regression: `reload_applies_the_body_limit_on_both_ports`. A reload used
/// to change only the edge's copy of `MAX_REQUEST_BODY_BYTES`, so the edge
/// and the application enforced different limits. It also shows a live
/// auth cache TTL: a revocation written by another replica (no bus here)
/// is served from the cache until a reload shortens the TTL, then refused
/// on both ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_body_limit_and_auth_ttls_on_both_ports() {
    let db = Db::new(Backend::Sqlite).await;
    let config = Config {
        auth_cache_revocation_ttl: 600,
        ..edge_config(&db)
    };
    let e = Edge::start(config.clone()).await;
    let t = e.gw.token("user@example.com");
    let body = json!({"name": "big", "url": "https://a.example/x", "visibility": "private", "description": "x".repeat(20_000)}).to_string();
    let post = |base: String, body: String| {
        let http = e.gw.http.clone();
        let t = t.clone();
        async move {
            http.post(format!("{base}/v1/tools"))
                .bearer_auth(t)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // 20 KB is under the default limit: refused for its description (422),
    // not its size.
    for base in [e.gw.base.clone(), e.base.clone()] {
        assert_eq!(
            post(base, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    let report = e.gw.running.reload(&Config {
        max_request_body_bytes: 4096,
        ..config.clone()
    });
    assert_eq!(report.applied, vec!["max_request_body_bytes"]);
    for base in [e.gw.base.clone(), e.base.clone()] {
        assert_eq!(
            post(base.clone(), body.clone()).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{base} enforces the reloaded limit"
        );
    }

    // The token's revocation status is now cached as "not revoked".
    let teams = |base: String| {
        let http = e.gw.http.clone();
        let t = t.clone();
        async move {
            http.get(format!("{base}/v1/teams"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(teams(e.gw.base.clone()).await, StatusCode::OK);
    assert_eq!(teams(e.base.clone()).await, StatusCode::OK);
    let jti =
        e.gw.running
            .state
            .auth
            .verify(&t)
            .await
            .unwrap()
            .jti
            .clone()
            .unwrap();
    // Another replica revokes it straight in the database.
    let store = e.gw.running.state.registry.store();
    let mut tx = store.begin().await.unwrap();
    tx.run(
        "INSERT INTO token_revocations (jti, revoked_at, revoked_by) VALUES ($1, $2, $3)".into(),
        vec![
            jti.as_str().into(),
            mcpgate::util::now().into(),
            "elsewhere".into(),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        teams(e.gw.base.clone()).await,
        StatusCode::OK,
        "cached for the 600 s revocation TTL"
    );
    let report = e.gw.running.reload(&Config {
        max_request_body_bytes: 4096,
        auth_cache_revocation_ttl: 1,
        ..config.clone()
    });
    assert_eq!(report.applied, vec!["auth_cache_revocation_ttl"]);
    assert_eq!(teams(e.gw.base.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(teams(e.base.clone()).await, StatusCode::UNAUTHORIZED);

    // Listener changes wait for a restart.
    let report = e.gw.running.reload(&Config {
        max_request_body_bytes: 4096,
        auth_cache_revocation_ttl: 1,
        port: 1,
        ..config
    });
    assert!(report.applied.is_empty());
    assert_eq!(report.needs_restart, vec!["port"]);
    e.stop().await;
}

/// The OpenAPI document is public and kept by the `schema` zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_cached_in_the_schema_zone() {
    let db = Db::new(Backend::Sqlite).await;
    let e = Edge::start(edge_config(&db)).await;
    for (want, accept) in [
        ("MISS", "gzip"),
        ("HIT", "gzip"),
        ("MISS", "br"),
        ("HIT", "br"),
    ] {
        let r = e
            .get("/openapi.json", None, &[("accept-encoding", accept)])
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(status(&r), want, "{accept}");
        assert_eq!(r.headers()["content-encoding"], accept);
    }
    let r = e.get("/docs", None, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(status(&r), "MISS");
    assert!(e.gw.metrics().await.contains("zone=\"schema\""));
    e.stop().await;
}
