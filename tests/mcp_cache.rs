//! The edge's MCP cache over real sockets: reads over POST (`/rpc`,
//! Streamable HTTP) answered from the `mcp` zone per caller, each hit with
//! its own JSON-RPC id; public upstream resources shared by every caller
//! who may read them; invalidation by registry writes and upstream
//! `list_changed`; what is never kept.

mod common;
#[path = "common/fixture.rs"]
mod fixture;

use std::time::{Duration, Instant};

use common::*;
use fixture::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Answer {
    status: StatusCode,
    cache: String,
    body: Value,
}

async fn edge_gw() -> Gw {
    Gw::on(Backend::Sqlite)
        .mcp()
        .config(|c| {
            c.edge_enabled = true;
            c.edge_port = 0;
            c.edge_threads = 2;
            c.edge_grace_period = 0;
        })
        .start()
        .await
}

/// POSTs one JSON-RPC message through the edge.
async fn post(gw: &Gw, path: &str, token: &str, msg: Value, headers: &[(&str, &str)]) -> Answer {
    let edge = gw.running.edge_addr.expect("edge runs");
    let mut req = gw
        .http
        .post(format!("http://{edge}{path}"))
        .bearer_auth(token)
        .json(&msg);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let cache = r
        .headers()
        .get("x-cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        cache,
        body,
    }
}

fn call(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn tool_names(v: &Value) -> Vec<String> {
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_is_kept_per_caller_and_each_hit_gets_its_own_id() {
    let gw = edge_gw().await;
    let alice = gw.token("alice@example.com");
    let bob = gw.token("bob@example.com");
    let (_, team) = gw
        .post("/v1/teams", &alice, json!({"name": "Secret team"}))
        .await;
    gw.tool(
        &alice,
        json!({"name": "team_only", "url": "https://a.example", "team_id": team["id"]}),
    )
    .await;
    gw.tool(&gw.admin, rest_tool("everyone")).await;

    let list = |id: Value| call(id, "tools/list", json!({}));
    let a = post(&gw, "/rpc", &alice, list(json!(1)), &[]).await;
    assert_eq!((a.status, a.cache.as_str()), (StatusCode::OK, "MISS"));
    assert_eq!(tool_names(&a.body), vec!["team_only", "everyone"]);
    for id in [json!(2), json!("two"), json!(18446744073709551615u64)] {
        let a = post(&gw, "/rpc", &alice, list(id.clone()), &[]).await;
        assert_eq!(a.cache, "HIT", "{id}");
        assert_eq!(a.body["id"], id, "the hit carries this request's id");
        assert_eq!(tool_names(&a.body), vec!["team_only", "everyone"]);
    }
    // Parameters written another way are the same request.
    let a = post(
        &gw,
        "/rpc",
        &alice,
        call(json!(3), "tools/list", json!({"_meta": {"x": 1}})),
        &[],
    )
    .await;
    assert_eq!(a.cache, "HIT");
    // Another caller with other teams never gets alice's entry.
    let b = post(&gw, "/rpc", &bob, list(json!(1)), &[]).await;
    assert_eq!(b.cache, "MISS");
    assert_eq!(tool_names(&b.body), vec!["everyone"]);
    let b = post(&gw, "/rpc", &bob, list(json!(2)), &[]).await;
    assert_eq!(b.cache, "HIT");
    assert_eq!(tool_names(&b.body), vec!["everyone"]);
    // A bad token is the application's to refuse, never a hit.
    let x = post(&gw, "/rpc", "not-a-token", list(json!(1)), &[]).await;
    assert_eq!(x.status, StatusCode::UNAUTHORIZED);
    assert_ne!(x.cache, "HIT");

    // A registry write: the next read is a miss, and sees it.
    gw.tool(&gw.admin, rest_tool("newer")).await;
    let a = post(&gw, "/rpc", &alice, list(json!(4)), &[]).await;
    assert_eq!(a.cache, "MISS");
    assert_eq!(tool_names(&a.body), vec!["team_only", "everyone", "newer"]);

    // Never kept: calls, errors.
    for _ in 0..2 {
        let c = post(
            &gw,
            "/rpc",
            &alice,
            call(json!(5), "tools/call", json!({"name": "nope"})),
            &[],
        )
        .await;
        assert_eq!(c.cache, "BYPASS");
        let e = post(
            &gw,
            "/rpc",
            &alice,
            call(json!(6), "tools/list", json!({"cursor": "zz"})),
            &[],
        )
        .await;
        assert_eq!(e.body["error"]["code"], -32602, "{}", e.body);
        assert_eq!(e.cache, "MISS", "an error answer is not kept");
    }
    assert!(
        gw.metrics()
            .await
            .contains(r#"mcpgate_edge_cache_results_total{result="HIT",zone="mcp"}"#)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_reads_are_kept_and_sessions_still_checked() {
    let gw = edge_gw().await;
    gw.tool(&gw.admin, rest_tool("everyone")).await;
    let t = gw.admin.clone();
    let accept = ("accept", "application/json, text/event-stream");
    let init = post(
        &gw,
        "/mcp",
        &t,
        call(json!(0), "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})),
        &[accept],
    )
    .await;
    assert_eq!(init.cache, "BYPASS");
    let edge = gw.running.edge_addr.unwrap();
    let sid = gw
        .http
        .post(format!("http://{edge}/mcp"))
        .bearer_auth(&t)
        .header(accept.0, accept.1)
        .json(&call(json!(0), "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})))
        .send()
        .await
        .unwrap()
        .headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let version = ("mcp-protocol-version", "2025-11-25");
    let with =
        |sid: &str| [accept, ("mcp-session-id", sid), version].map(|(k, v)| (k, v.to_owned()));
    fn refs<'a>(h: &'a [(&'static str, String); 3]) -> Vec<(&'static str, &'a str)> {
        h.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
    let list = |id: i64| call(json!(id), "tools/list", json!({}));
    let session = with(&sid);
    let first = post(&gw, "/mcp", &t, list(1), &refs(&session)).await;
    assert_eq!(first.cache, "MISS");
    let second = post(&gw, "/mcp", &t, list(2), &refs(&session)).await;
    assert_eq!(second.cache, "HIT");
    assert_eq!(second.body["id"], 2);
    assert_eq!(tool_names(&second.body), vec!["everyone"]);
    // A session id that is not valid is refused as ever, not served.
    let forged = with(&format!("{sid}x"));
    let bad = post(&gw, "/mcp", &t, list(3), &refs(&forged)).await;
    assert!(bad.status.is_client_error(), "{}", bad.status);
    assert_ne!(bad.cache, "HIT");
    // Ended sessions too.
    let edge_url = format!("http://{edge}/mcp");
    let ended = gw
        .http
        .delete(&edge_url)
        .bearer_auth(&t)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success());
    let gone = post(&gw, "/mcp", &t, list(4), &refs(&session)).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_ne!(gone.cache, "HIT");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_upstream_resources_are_one_entry_and_private_ones_per_caller() {
    let fx = Fixture::start(0, &[]);
    let gw = edge_gw().await;
    gw.register("fx", &fx.url(), "STREAMABLEHTTP").await;
    let alice = gw.token("alice@example.com");
    let bob = gw.token("bob@example.com");
    let carol = gw.token("carol@example.com");
    let read = |uri: &str| call(json!(1), "resources/read", json!({"uri": uri}));
    // Unknown scope: kept for its caller first; once the upstream said
    // public, one entry serves everyone who may read it.
    let a = post(&gw, "/rpc", &alice, read("test://static-text"), &[]).await;
    assert_eq!(a.cache, "MISS");
    assert_eq!(a.body["result"]["cacheScope"], "public", "{}", a.body);
    let b = post(&gw, "/rpc", &bob, read("test://static-text"), &[]).await;
    assert_eq!(b.cache, "MISS");
    for who in [&alice, &bob, &carol] {
        let r = post(&gw, "/rpc", who, read("test://static-text"), &[]).await;
        assert_eq!(r.cache, "HIT");
        assert_eq!(
            r.body["result"]["contents"][0]["text"],
            "This is the content of the static text resource."
        );
    }
    // Private: per caller.
    let a = post(&gw, "/rpc", &alice, read("test://example-resource"), &[]).await;
    assert_eq!(a.cache, "MISS");
    assert_eq!(
        post(&gw, "/rpc", &alice, read("test://example-resource"), &[])
            .await
            .cache,
        "HIT"
    );
    assert_eq!(
        post(&gw, "/rpc", &bob, read("test://example-resource"), &[])
            .await
            .cache,
        "MISS"
    );
    // Said to change (ttlMs 0): never kept.
    for _ in 0..2 {
        assert_eq!(
            post(&gw, "/rpc", &alice, read("test://watched-resource"), &[])
                .await
                .cache,
            "MISS"
        );
    }
    // Unknown resources are errors, never kept.
    for _ in 0..2 {
        let r = post(&gw, "/rpc", &alice, read("test://nope"), &[]).await;
        assert_eq!(r.cache, "MISS");
        assert!(r.body["error"].is_object());
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_list_changed_makes_the_next_list_a_miss() {
    let fx = Fixture::start(0, &[]);
    let gw = edge_gw().await;
    gw.register("fx", &fx.url(), "STREAMABLEHTTP").await;
    let t = gw.admin.clone();
    let list = |id: i64| call(json!(id), "tools/list", json!({}));
    assert_eq!(post(&gw, "/rpc", &t, list(1), &[]).await.cache, "MISS");
    let before = post(&gw, "/rpc", &t, list(2), &[]).await;
    assert_eq!(before.cache, "HIT");
    assert!(!tool_names(&before.body).contains(&"fx-test_dynamic_tool".to_owned()));
    let toggled = gw
        .rpc(
            &t,
            "tools/call",
            json!({"name": "fx-test_toggle_dynamic_tool"}),
        )
        .await;
    assert!(toggled["result"].is_object(), "{toggled}");
    // The refresh lands: watched on :4444, which keeps nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let direct = gw.rpc(&t, "tools/list", json!({})).await;
        if tool_names(&direct).contains(&"fx-test_dynamic_tool".to_owned()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "list_changed never refreshed the gateway"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = post(&gw, "/rpc", &t, list(3), &[]).await;
    assert_eq!(after.cache, "MISS");
    assert!(tool_names(&after.body).contains(&"fx-test_dynamic_tool".to_owned()));
    gw.stop().await;
}

/// Concurrent misses on one key make one fill: the others wait for it and
/// are served what it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_fill() {
    let gw = edge_gw().await;
    for i in 0..50 {
        gw.tool(&gw.admin, rest_tool(&format!("t{i}"))).await;
    }
    let t = gw.admin.clone();
    let mut all = Vec::new();
    for i in 0..16 {
        let gw_http = gw.http.clone();
        let edge = gw.running.edge_addr.unwrap();
        let t = t.clone();
        all.push(tokio::spawn(async move {
            let r = gw_http
                .post(format!("http://{edge}/rpc"))
                .bearer_auth(t)
                .json(&call(json!(i), "tools/list", json!({})))
                .send()
                .await
                .unwrap();
            let cache = r.headers()["x-cache-status"].to_str().unwrap().to_owned();
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["id"], i);
            cache
        }));
    }
    let mut misses = 0;
    for h in all {
        if h.await.unwrap() == "MISS" {
            misses += 1;
        }
    }
    assert_eq!(misses, 1, "one fill for sixteen concurrent requests");
    gw.stop().await;
}
