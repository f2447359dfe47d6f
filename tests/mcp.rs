//! MCP through the gateway over real sockets: every transport, bad input,
//! sessions, federation of our fixture server (Streamable HTTP, SSE, stdio),
//! relay of progress, logging and sampling, REST tools, and faults.

mod common;
#[path = "common/fixture.rs"]
mod fixture;

use std::time::{Duration, Instant};

use common::*;
use fixture::*;
use futures_util::{SinkExt, StreamExt};
use mcpgate::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn rpc(gw: &Gw, token: &str, method: &str, params: Value) -> Value {
    gw.rpc(token, method, params).await
}

async fn register(gw: &Gw, name: &str, url: &str, transport: &str) -> Value {
    gw.register(name, url, transport).await
}

async fn raw_rpc(gw: &Gw, body: &str) -> (StatusCode, Value) {
    let resp = gw.post_raw("/rpc", body.to_owned()).await;
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_endpoint_handles_good_and_bad_messages() {
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    let init = rpc(&gw, &gw.admin, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "mcpgate");
    let init = rpc(
        &gw,
        &gw.admin,
        "initialize",
        json!({"protocolVersion": "1999-01-01", "capabilities": {}}),
    )
    .await;
    assert_eq!(
        init["result"]["protocolVersion"], "2025-11-25",
        "unknown versions get the latest"
    );
    assert_eq!(
        rpc(&gw, &gw.admin, "ping", json!({})).await["result"],
        json!({})
    );
    assert_eq!(
        rpc(&gw, &gw.admin, "tools/list", json!({})).await["result"]["tools"],
        json!([])
    );
    let e = rpc(&gw, &gw.admin, "no/such/method", json!({})).await;
    assert_eq!(e["error"]["code"], -32601);
    let e = rpc(&gw, &gw.admin, "tools/call", json!({"name": "missing"})).await;
    assert_eq!(e["error"]["code"], -32602);
    let e = rpc(&gw, &gw.admin, "tools/call", json!({})).await;
    assert_eq!(e["error"]["code"], -32602);
    let e = rpc(
        &gw,
        &gw.admin,
        "resources/read",
        json!({"uri": "test://nothing"}),
    )
    .await;
    // SEP-2164: invalid params, with the uri.
    assert_eq!(e["error"]["code"], -32602);
    assert_eq!(e["error"]["data"]["uri"], "test://nothing");
    let e = rpc(&gw, &gw.admin, "logging/setLevel", json!({"level": "loud"})).await;
    assert_eq!(e["error"]["code"], -32602);
    let e = rpc(&gw, &gw.admin, "initialize", json!({})).await;
    assert_eq!(e["error"]["code"], -32602);

    let (s, v) = raw_rpc(&gw, "{oops").await;
    assert_eq!(
        (s, v["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32700))
    );
    let (s, v) = raw_rpc(&gw, r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
    assert_eq!(
        (s, v["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32600))
    );
    let (s, v) = raw_rpc(&gw, r#"{"jsonrpc":"1.0","id":9,"method":"ping"}"#).await;
    assert_eq!(
        (s, v["error"]["code"].as_i64(), v["id"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32600), Some(9))
    );
    let (s, _) = raw_rpc(
        &gw,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "x".repeat(16 << 20)
    );
    // Refused unread, so the answer closes the connection: a keep-alive
    // client must not send its next request on it.
    let resp = gw.post_raw("/rpc", big).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        resp.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "payload_too_large", "{v}");
    // POST / is the same endpoint; both need a token.
    let (s, v) = gw
        .post(
            "/",
            &gw.admin,
            json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
        )
        .await;
    assert_eq!((s, v["result"].clone()), (StatusCode::OK, json!({})));
    let (s, _) = gw
        .call(
            reqwest::Method::POST,
            "/rpc",
            None,
            Some(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_sessions_versions_and_origins() {
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    let mut c = McpClient::new(gw.url("/mcp"), Some(gw.admin.clone()));
    let init = c.initialize(json!({})).await;
    let sid = c.session.clone().expect("Mcp-Session-Id on initialize");
    // Sealed: visible ASCII, small enough for any header limit.
    assert!(sid.starts_with("v1.") && sid.len() < 1024, "{sid}");
    assert!(sid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    assert_eq!(
        init.result()["result"]["capabilities"]["tools"],
        json!({"listChanged": false})
    );
    assert_eq!(
        c.call("ping", json!({})).await.result()["result"],
        json!({})
    );

    // Unknown session: 404; another principal's session: 404.
    let mut other = McpClient::new(gw.url("/mcp"), Some(gw.admin.clone()));
    other.session = Some("0".repeat(64));
    assert_eq!(
        other.call("ping", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    let mut thief = McpClient::new(gw.url("/mcp"), Some(gw.token("eve@example.com")));
    thief.session = Some(sid.clone());
    assert_eq!(
        thief.call("ping", json!({})).await.status,
        StatusCode::NOT_FOUND
    );

    // Protocol version header.
    let (status, body) = c.ping_with(&[("mcp-protocol-version", "2030-01-01")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Unsupported protocol version"), "{body}");
    let ok = c.ping_with(&[("mcp-protocol-version", "2025-03-26")]).await;
    assert_eq!(ok.0, StatusCode::OK);

    // DNS rebinding: foreign Host or Origin is 403.
    for foreign in [
        ("origin", "http://evil.example.com"),
        ("host", "evil.example.com"),
    ] {
        assert_eq!(
            c.ping_with(&[foreign]).await.0,
            StatusCode::FORBIDDEN,
            "{foreign:?}"
        );
    }

    // Wrong content type, bad body.
    let post = reqwest::Method::POST;
    let (status, _) = c
        .exchange(
            post.clone(),
            false,
            &[("content-type", "text/plain")],
            Some("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = c
        .exchange(
            post,
            false,
            &[("content-type", "application/json")],
            Some("{bad"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // GET without a session is 405; with one it opens a stream.
    let sse = [("accept", "text/event-stream")];
    let (status, _) = c.exchange(reqwest::Method::GET, false, &sse, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let stream = c
        .http
        .get(gw.url("/mcp"))
        .bearer_auth(&gw.admin)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    drop(stream);

    // DELETE ends the session.
    let (status, _) = c.exchange(reqwest::Method::DELETE, true, &[], None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.call("ping", json!({})).await.status,
        StatusCode::NOT_FOUND
    );

    // Unknown virtual server: 404.
    let mut s = McpClient::new(gw.url("/servers/nope/mcp"), Some(gw.admin.clone()));
    assert_eq!(
        s.call("ping", json!({})).await.status,
        StatusCode::NOT_FOUND
    );

    // The stateless revision: headers must match the body.
    let stateless = |method_header: &'static str| {
        let c = McpClient::new(gw.url("/mcp"), Some(gw.admin.clone()));
        async move {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string();
            c.exchange(
                reqwest::Method::POST,
                false,
                &[
                    ("content-type", "application/json"),
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", method_header),
                ],
                Some(&body),
            )
            .await
        }
    };
    assert_eq!(stateless("tools/call").await.0, StatusCode::BAD_REQUEST);
    let (status, body) = stateless("tools/list").await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(v["result"]["cacheScope"], "private");
    let v = rpc(&gw, &gw.admin, "server/discover", json!({})).await;
    assert!(
        v["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_needs_auth_unless_disabled() {
    let db = Db::new(Backend::Sqlite).await;
    let gw = Gw::start(mcp_config(&db)).await;
    let mut c = McpClient::new(gw.url("/mcp"), None);
    assert_eq!(
        c.call("ping", json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
    c.token = Some("garbage".into());
    assert_eq!(
        c.call("ping", json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
    gw.stop().await;

    let gw = Gw::start(Config {
        mcp_require_auth: Some(false),
        ..mcp_config(&db)
    })
    .await;
    gw.tool(&gw.admin, rest_tool("public_tool")).await;
    gw.tool(
        &gw.admin,
        json!({"name": "secret_tool", "url": "https://a.example/x", "visibility": "private"}),
    )
    .await;
    let mut anon = McpClient::new(gw.url("/mcp"), None);
    anon.initialize(json!({})).await;
    let list = anon.call("tools/list", json!({})).await;
    let names: Vec<&str> = list.result()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["public_tool"],
        "anonymous sees public items only"
    );
    // The REST API still needs a token.
    assert_eq!(
        gw.call(reqwest::Method::GET, "/v1/tools", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    gw.stop().await;
}

async fn federation(backend: Backend) {
    let fx = Fixture::start(0, &["--tools", "3"]);
    let gw = Gw::on(backend).mcp().start().await;
    let g = register(&gw, "Fixture One", &fx.url(), "STREAMABLEHTTP").await;
    assert_eq!(g["capabilities"]["tools"]["listChanged"], true);
    let (_, tools) = gw
        .get(
            &format!(
                "/v1/tools?gateway_id={}&limit=500",
                g["id"].as_str().unwrap()
            ),
            &gw.admin,
        )
        .await;
    let listed_names = names(&tools);
    assert!(
        listed_names.contains(&"fixture-one-echo".to_owned()),
        "{listed_names:?}"
    );
    assert!(listed_names.contains(&"fixture-one-tool_002".to_owned()));
    // The input schema is passed through untouched.
    let schema_tool = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["originalName"] == "json_schema_2020_12_tool")
        .unwrap();
    assert_eq!(
        schema_tool["inputSchema"]["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema_tool["inputSchema"]["additionalProperties"], false);

    let t = gw.admin.clone();
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "fixture-one-echo", "arguments": {"message": "hello"}}),
    )
    .await;
    assert_eq!(tool_text(&r), "Echo: hello");
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "fixture-one-test_error_handling"}),
    )
    .await;
    assert_eq!(
        r["result"]["isError"], true,
        "tool errors stay results: {r}"
    );
    let r = rpc(
        &gw,
        &t,
        "resources/read",
        json!({"uri": "test://static-text"}),
    )
    .await;
    assert_eq!(r["result"]["contents"][0]["mimeType"], "text/plain");
    let r = rpc(
        &gw,
        &t,
        "resources/read",
        json!({"uri": "test://template/42/data"}),
    )
    .await;
    assert!(
        r["result"]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("42"),
        "{r}"
    );
    let r = rpc(&gw, &t, "resources/templates/list", json!({})).await;
    assert_eq!(
        r["result"]["resourceTemplates"][0]["uriTemplate"],
        "test://template/{id}/data"
    );
    let r = rpc(&gw, &t, "prompts/get", json!({"name": "fixture-one-test_prompt_with_arguments", "arguments": {"arg1": "A1", "arg2": "B2"}})).await;
    let text = r["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("A1") && text.contains("B2"), "{r}");
    let r = rpc(&gw, &t, "completion/complete", json!({"ref": {"type": "ref/prompt", "name": "fixture-one-test_prompt_with_arguments"}, "argument": {"name": "arg1", "value": "par"}})).await;
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["paris", "park", "party"])
    );

    // A virtual server without prefixes exposes the upstream names.
    let (_, all_tools) = gw.get("/v1/tools?limit=500", &t).await;
    let ids: Vec<Value> = all_tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    let (s, _) = gw.post("/v1/servers", &t, json!({"id": "plain", "name": "Plain", "prefix_mode": "never", "associated_tools": ids})).await;
    assert_eq!(s, StatusCode::CREATED);
    let mut c = McpClient::new(gw.url("/servers/plain/mcp"), Some(t.clone()));
    c.initialize(json!({})).await;
    let list = c.call("tools/list", json!({})).await;
    let listed: Vec<String> = list.result()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        listed.contains(&"echo".to_owned()) && !listed.iter().any(|n| n.starts_with("fixture-one")),
        "{listed:?}"
    );
    let r = c
        .call(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "plain"}}),
        )
        .await;
    assert_eq!(tool_text(r.result()), "Echo: plain");
    // Listing is served from the snapshot: no SQL, no upstream round trip.
    let store = gw.running.state.registry.store();
    let before = store.query_count();
    for _ in 0..5 {
        assert_eq!(c.call("tools/list", json!({})).await.status, StatusCode::OK);
        rpc(&gw, &t, "tools/list", json!({})).await;
    }
    assert_eq!(store.query_count(), before);

    // An upstream's list_changed makes the gateway discover again.
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "fixture-one-test_toggle_dynamic_tool"}),
    )
    .await;
    assert!(tool_text(&r).contains("listed"), "{r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = gw.get("/v1/tools?limit=500", &t).await;
        if names(&v).contains(&"fixture-one-test_dynamic_tool".to_owned()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "list_changed did not trigger a refresh"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "fixture-one-test_toggle_dynamic_tool"}),
    )
    .await;
    assert!(tool_text(&r).contains("gone"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(&gw.get("/v1/tools?limit=500", &t).await.1)
        .contains(&"fixture-one-test_dynamic_tool".to_owned())
    {
        assert!(Instant::now() < deadline, "removed tool still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, tools) = gw
        .get(
            &format!(
                "/v1/tools?gateway_id={}&limit=500",
                g["id"].as_str().unwrap()
            ),
            &gw.admin,
        )
        .await;

    // Refresh keeps ids; deleting the gateway removes its tools.
    let gid = g["id"].as_str().unwrap();
    let (s, v) = gw
        .post(&format!("/v1/gateways/{gid}/tools/refresh"), &t, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["toolCount"], tools.as_array().unwrap().len());
    let (_, after) = gw
        .get(&format!("/v1/tools?gateway_id={gid}&limit=500"), &t)
        .await;
    assert_eq!(
        after
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["id"])
            .collect::<Vec<_>>(),
        tools
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["id"])
            .collect::<Vec<_>>()
    );
    gw.delete(&format!("/v1/gateways/{gid}"), &t).await;
    assert_eq!(gw.count("/v1/tools", &t).await, 0);
    gw.stop().await;
}
both!(federates_a_streamable_http_upstream, federation);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_prefixes_only_on_clashes() {
    let a = Fixture::start(0, &["--tools", "1"]);
    let b = Fixture::start(0, &[]);
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    register(&gw, "alpha", &a.url(), "STREAMABLEHTTP").await;
    register(&gw, "beta", &b.url(), "STREAMABLEHTTP").await;
    let (_, tools) = gw.get("/v1/tools?limit=500", &gw.admin).await;
    let ids: Vec<Value> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    gw.post("/v1/servers", &gw.admin, json!({"id": "both", "name": "Both", "prefix_mode": "conditional", "associated_tools": ids})).await;
    let r = rpc(&gw, &gw.admin, "tools/list", json!({})).await;
    assert_eq!(r["result"]["tools"].as_array().unwrap().len(), ids.len());
    let mut c = McpClient::new(gw.url("/servers/both/mcp"), Some(gw.admin.clone()));
    let list = c.call("tools/list", json!({})).await;
    let listed: Vec<String> = list.result()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        listed.contains(&"tool_000".to_owned()),
        "unique names stay plain: {listed:?}"
    );
    assert!(
        listed.contains(&"alpha-echo".to_owned()) && listed.contains(&"beta-echo".to_owned()),
        "clashes are prefixed: {listed:?}"
    );
    let r = c
        .call(
            "tools/call",
            json!({"name": "beta-echo", "arguments": {"message": "b"}}),
        )
        .await;
    assert_eq!(tool_text(r.result()), "Echo: b");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_progress_logging_sampling_and_elicitation() {
    let fx = Fixture::start(0, &[]);
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    register(&gw, "fx", &fx.url(), "STREAMABLEHTTP").await;
    let mut c = McpClient::new(gw.url("/mcp"), Some(gw.admin.clone()));
    c.initialize(json!({"sampling": {}, "elicitation": {}}))
        .await;

    let seen = c
        .call_streaming(
            json!({"name": "fx-test_tool_with_progress", "_meta": {"progressToken": "tok-7"}}),
            |_, _| json!({}),
        )
        .await;
    let progress: Vec<&Value> = seen
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{seen:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "tok-7"),
        "the client's token comes back"
    );
    let values: Vec<f64> = progress
        .iter()
        .map(|p| p["params"]["progress"].as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]));

    let seen = c
        .call_streaming(json!({"name": "fx-test_tool_with_logging"}), |_, _| {
            json!({})
        })
        .await;
    assert_eq!(
        seen.iter()
            .filter(|m| m["method"] == "notifications/message")
            .count(),
        3,
        "{seen:?}"
    );

    let seen = c
        .call_streaming(json!({"name": "fx-test_sampling", "arguments": {"prompt": "2+2?"}}), |method, params| {
            assert_eq!(method, "sampling/createMessage");
            assert_eq!(params["messages"][0]["content"]["text"], "2+2?");
            json!({"role": "assistant", "content": {"type": "text", "text": "four"}, "model": "test-model"})
        })
        .await;
    let last = seen.last().unwrap();
    assert_eq!(
        last["result"]["content"][0]["text"], "LLM response: four",
        "{seen:?}"
    );

    let seen = c
        .call_streaming(json!({"name": "fx-test_elicitation", "arguments": {"message": "who?"}}), |method, _| {
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

    // The client's cancellation is forwarded: the call ends at once.
    let cancel_client = McpClient {
        http: c.http.clone(),
        url: c.url.clone(),
        token: c.token.clone(),
        session: c.session.clone(),
        next: 900,
    };
    let slow = tokio::spawn(async move {
        cancel_client.send(&json!({"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": {"name": "fx-test_slow", "arguments": {"ms": 20000}}})).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let r = c.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow-1", "reason": "test"}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let reply = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("cancelled call ends")
        .unwrap();
    assert!(
        reply.result().get("error").is_some(),
        "{:?}",
        reply.messages
    );
    assert!(start.elapsed() < Duration::from_secs(5));

    // Events carry ids; Last-Event-ID replays the rest of a stream.
    let resp = c.request_builder(&json!({"jsonrpc": "2.0", "id": "p2", "method": "tools/call", "params": {"name": "fx-test_tool_with_progress", "_meta": {"progressToken": "r"}}})).send().await.unwrap();
    let body = resp.text().await.unwrap();
    let first_id = body
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("event ids")
        .to_owned();
    let replay = c
        .http
        .get(gw.url("/mcp"))
        .bearer_auth(&gw.admin)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.clone().unwrap())
        .header("last-event-id", &first_id)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    let mut events = eventsource_stream::Eventsource::eventsource(replay.bytes_stream());
    let mut replayed = Vec::new();
    while replayed.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("replayed event")
            .unwrap()
            .unwrap();
        if !ev.data.is_empty() {
            replayed.push(serde_json::from_str::<Value>(&ev.data).unwrap());
        }
    }
    assert_eq!(
        replayed.last().unwrap()["id"],
        "p2",
        "the final answer is replayed: {replayed:?}"
    );
    drop(events);

    // Without a session there is no client to ask: a clear error, no hang.
    let r = rpc(
        &gw,
        &gw.admin,
        "tools/call",
        json!({"name": "fx-test_sampling", "arguments": {"prompt": "x"}}),
    )
    .await;
    assert!(r.get("error").is_some(), "{r}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federates_sse_and_stdio_upstreams() {
    let fx = Fixture::start(0, &[]);
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    register(&gw, "over sse", &fx.sse_url(), "SSE").await;
    register(
        &gw,
        "over stdio",
        &format!("{FIXTURE} --transport stdio"),
        "STDIO",
    )
    .await;
    for name in ["over-sse-echo", "over-stdio-echo"] {
        let r = rpc(
            &gw,
            &gw.admin,
            "tools/call",
            json!({"name": name, "arguments": {"message": name}}),
        )
        .await;
        assert_eq!(tool_text(&r), format!("Echo: {name}"), "{r}");
    }
    // Progress is relayed from a stream upstream too.
    let mut c = McpClient::new(gw.url("/mcp"), Some(gw.admin.clone()));
    c.initialize(json!({})).await;
    let seen = c
        .call_streaming(
            json!({"name": "over-stdio-test_tool_with_progress", "_meta": {"progressToken": 5}}),
            |_, _| json!({}),
        )
        .await;
    assert_eq!(seen.iter().filter(|m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == 5).count(), 3, "{seen:?}");
    // Only platform admins may register commands.
    let (s, _) = gw
        .post(
            "/v1/gateways",
            &gw.token("dev@example.com"),
            json!({"name": "cmd", "url": "echo hi", "transport": "STDIO"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_and_websocket_transports() {
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    gw.tool(&gw.admin, rest_tool("listed")).await;

    // Legacy SSE: the endpoint event, then answers on the stream.
    let resp = gw
        .http
        .get(gw.url("/sse"))
        .bearer_auth(&gw.admin)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut events = eventsource_stream::Eventsource::eventsource(resp.bytes_stream());
    let endpoint = events.next().await.unwrap().unwrap();
    assert_eq!(endpoint.event, "endpoint");
    assert!(endpoint.data.starts_with("/message?session_id="));
    let post = |body: Value| {
        gw.http
            .post(gw.url(&endpoint.data))
            .bearer_auth(&gw.admin)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let msg = events.next().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(&msg.data).unwrap();
    assert_eq!(v["result"]["tools"][0]["name"], "listed");
    let bad = gw
        .http
        .post(gw.url("/message?session_id=nope"))
        .bearer_auth(&gw.admin)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc": "2.0", "id": 41, "method": "ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::NOT_FOUND);
    let answer: Value = bad.json().await.unwrap();
    assert_eq!(answer["id"], 41, "the readable id comes back: {answer}");
    assert_eq!(answer["error"]["message"], "Session not found");
    drop(events);

    // WebSocket: one message per frame, malformed frames get -32700.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws", gw.running.addr),
    )
    .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", gw.admin).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connects");
    use tokio_tungstenite::tungstenite::Message as M;
    ws.send(M::Text(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(reply["result"]["tools"][0]["name"], "listed");
    ws.send(M::Text("{nope".into())).await.unwrap();
    let reply: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(reply["error"]["code"], -32700);
    // Without a token the upgrade is refused.
    let e = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.running.addr))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_fail_fast_and_recover() {
    let mut crashing = Fixture::start(0, &[]);
    let steady = Fixture::start(0, &[]);
    let db = Db::new(Backend::Sqlite).await;
    let gw = Gw::start(Config {
        tool_timeout: 3,
        ..mcp_config(&db)
    })
    .await;
    register(&gw, "crashy", &crashing.url(), "STREAMABLEHTTP").await;
    register(&gw, "steady", &steady.url(), "STREAMABLEHTTP").await;
    let t = gw.admin.clone();

    // Killed mid-call: an error well within the timeout; others still served.
    let start = Instant::now();
    let r = rpc(&gw, &t, "tools/call", json!({"name": "crashy-test_crash"})).await;
    assert!(r.get("error").is_some(), "{r}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let _ = crashing.child.wait();
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "steady-echo", "arguments": {"message": "ok"}}),
    )
    .await;
    assert_eq!(tool_text(&r), "Echo: ok");

    // Hanging: the tool's timeout applies.
    let (_, tools) = gw.get("/v1/tools?limit=500", &t).await;
    let hang = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "steady-test_hang")
        .unwrap();
    gw.put(
        &format!("/v1/tools/{}", hang["id"].as_str().unwrap()),
        &t,
        json!({"timeout_ms": 300}),
    )
    .await;
    let start = Instant::now();
    let r = rpc(&gw, &t, "tools/call", json!({"name": "steady-test_hang"})).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(start.elapsed() < Duration::from_secs(2));
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "steady-echo", "arguments": {"message": "still"}}),
    )
    .await;
    assert_eq!(tool_text(&r), "Echo: still");

    // Down: clear error. Restarted on the same port: works again, no gateway restart.
    let port = crashing.port;
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "crashy-echo", "arguments": {"message": "x"}}),
    )
    .await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("crashy"),
        "{r}"
    );
    let _revived = Fixture::start(port, &[]);
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "crashy-echo", "arguments": {"message": "back"}}),
    )
    .await;
    assert_eq!(tool_text(&r), "Echo: back", "{r}");

    // An unreachable upstream cannot be registered.
    let (s, v) = gw
        .post(
            "/v1/gateways",
            &t,
            json!({"name": "ghost", "url": "http://127.0.0.1:9/mcp"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "url", "{v}");
    assert!(
        gw.get("/v1/gateways", &t)
            .await
            .1
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["name"] != "ghost")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_mark_unreachable_and_restore() {
    let mut fx = Fixture::start(0, &[]);
    let db = Db::new(Backend::Sqlite).await;
    let gw = Gw::start(Config {
        health_check_interval: 1,
        unhealthy_threshold: 2,
        gateway_health_check_timeout: 0.5,
        ..mcp_config(&db)
    })
    .await;
    let g = register(&gw, "flaky", &fx.url(), "STREAMABLEHTTP").await;
    let gid = g["id"].as_str().unwrap().to_owned();
    let port = fx.port;
    fx.kill();
    let reachable = |v: &Value| v["reachable"].as_bool().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reachable(&gw.get(&format!("/v1/gateways/{gid}"), &gw.admin).await.1) {
        assert!(Instant::now() < deadline, "never marked unreachable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let start = Instant::now();
    let r = rpc(
        &gw,
        &gw.admin,
        "tools/call",
        json!({"name": "flaky-echo", "arguments": {"message": "x"}}),
    )
    .await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("offline"),
        "{r}"
    );
    assert!(start.elapsed() < Duration::from_millis(500), "fails fast");
    let _back = Fixture::start(port, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reachable(&gw.get(&format!("/v1/gateways/{gid}"), &gw.admin).await.1) {
        assert!(Instant::now() < deadline, "never restored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = rpc(
        &gw,
        &gw.admin,
        "tools/call",
        json!({"name": "flaky-echo", "arguments": {"message": "y"}}),
    )
    .await;
    assert_eq!(tool_text(&r), "Echo: y");
    gw.stop().await;
}

/// A tiny REST API on loopback for REST tool tests.
async fn rest_upstream() -> (String, tokio::task::JoinHandle<()>) {
    use axum::routing::get;
    async fn weather(
        axum::extract::Path(city): axum::extract::Path<String>,
        axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
        headers: axum::http::HeaderMap,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some("Bearer upstream-secret")
        {
            return (axum::http::StatusCode::UNAUTHORIZED, "no").into_response();
        }
        axum::Json(json!({"city": city, "units": q.get("units"), "temp": 21})).into_response()
    }
    async fn fail() -> (axum::http::StatusCode, &'static str) {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "upstream broke",
        )
    }
    let app = axum::Router::new()
        .route("/weather/{city}", get(weather))
        .route("/fail", get(fail).post(fail));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    (
        base,
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_tools_are_called_through_the_ssrf_guard() {
    let (base, _srv) = rest_upstream().await;
    let db = Db::new(Backend::Sqlite).await;
    let gw = Gw::start(mcp_config(&db)).await;
    let t = gw.admin.clone();
    gw.tool(&t, json!({"name": "weather", "url": format!("{base}/weather/{{city}}"), "request_type": "GET", "auth": {"auth_type": "bearer", "token": "upstream-secret"}})).await;
    gw.tool(
        &t,
        json!({"name": "broken", "url": format!("{base}/fail"), "request_type": "POST"}),
    )
    .await;
    gw.tool(&t, json!({"name": "metadata", "url": "http://169.254.169.254/latest/meta-data", "request_type": "GET"})).await;
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "weather", "arguments": {"city": "Oslo", "units": "metric"}}),
    )
    .await;
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"city": "Oslo", "units": "metric", "temp": 21}),
        "{r}"
    );
    assert!(r["result"].get("isError").is_none());
    let r = rpc(
        &gw,
        &t,
        "tools/call",
        json!({"name": "weather", "arguments": {}}),
    )
    .await;
    assert_eq!(r["result"]["isError"], true);
    let r = rpc(&gw, &t, "tools/call", json!({"name": "broken"})).await;
    assert_eq!(r["result"]["isError"], true);
    assert!(tool_text(&r).starts_with("HTTP 500"), "{r}");
    let r = rpc(&gw, &t, "tools/call", json!({"name": "metadata"})).await;
    assert!(tool_text(&r).contains("SSRF"), "{r}");
    gw.stop().await;

    // Loopback is refused unless allowed.
    let gw = Gw::start(Config {
        ssrf_allow_localhost: false,
        ..mcp_config(&db)
    })
    .await;
    let r = rpc(
        &gw,
        &gw.admin,
        "tools/call",
        json!({"name": "weather", "arguments": {"city": "Oslo"}}),
    )
    .await;
    assert_eq!(r["result"]["isError"], true);
    assert!(tool_text(&r).contains("SSRF"), "{r}");
    let (s, v) = gw
        .post(
            "/v1/gateways",
            &gw.admin,
            json!({"name": "local", "url": format!("{base}/mcp")}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "url", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("SSRF"), "{v}");
    gw.stop().await;
}

/// Regression (issue 14): an upstream that asks for sampling and elicitation
/// on its session's GET stream (as servers on the TypeScript SDK do) was
/// never relayed, and the downstream client timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_requests_an_upstream_sends_on_its_get_stream() {
    let fx = Fixture::start(0, &["--requests-on-get-stream"]);
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    register(&gw, "fx", &fx.url(), "STREAMABLEHTTP").await;
    let mut c = McpClient::new(gw.url("/mcp"), Some(gw.admin.clone()));
    c.initialize(json!({"sampling": {}, "elicitation": {}}))
        .await;
    let seen = c
        .call_streaming(json!({"name": "fx-test_sampling", "arguments": {"prompt": "2+2?"}}), |method, params| {
            assert_eq!(method, "sampling/createMessage");
            assert_eq!(params["messages"][0]["content"]["text"], "2+2?");
            json!({"role": "assistant", "content": {"type": "text", "text": "four"}, "model": "m"})
        })
        .await;
    assert_eq!(
        seen.last().unwrap()["result"]["content"][0]["text"],
        "LLM response: four",
        "{seen:?}"
    );
    let seen = c
        .call_streaming(json!({"name": "fx-test_elicitation", "arguments": {"message": "who?"}}), |method, _| {
            assert_eq!(method, "elicitation/create");
            json!({"action": "accept", "content": {"username": "ann", "email": "ann@example.com"}})
        })
        .await;
    assert!(
        seen.last().unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("ann@example.com"),
        "{seen:?}"
    );
    gw.stop().await;
}

/// `TOOL_CONCURRENT_LIMIT`: a call beyond the limit waits for a slot within
/// its own timeout, then fails with an error that names the limit; a freed
/// slot serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_beyond_the_concurrent_limit_wait_for_a_slot() {
    let fx = Fixture::start(0, &[]);
    let gw = Gw::on(Backend::Sqlite)
        .mcp()
        .config(|c| c.tool_concurrent_limit = 1)
        .start()
        .await;
    register(&gw, "fx", &fx.url(), "STREAMABLEHTTP").await;
    let t = gw.admin.clone();
    let (_, tools) = gw.get("/v1/tools?limit=500", &t).await;
    let id_of = |name: &str| {
        tools
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for (name, ms) in [("fx-test_hang", 4000), ("fx-echo", 500)] {
        gw.put(
            &format!("/v1/tools/{}", id_of(name)),
            &t,
            json!({"timeout_ms": ms}),
        )
        .await;
    }
    assert!(gw.metrics().await.contains("mcpgate_tool_slots_in_use 0"));
    let holder = {
        let gw_url = gw.url("/rpc");
        let t = t.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(gw_url)
                .bearer_auth(t)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fx-test_hang"}}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.metrics().await.contains("mcpgate_tool_slots_in_use 1") {
        assert!(
            Instant::now() < deadline,
            "the hanging call never took the slot"
        );
        tokio::task::yield_now().await;
    }
    let echo = json!({"name": "fx-echo", "arguments": {"message": "hi"}});
    let started = Instant::now();
    let r = rpc(&gw, &t, "tools/call", echo.clone()).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TOOL_CONCURRENT_LIMIT"),
        "{r}"
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    let held = holder.await.unwrap();
    assert_eq!(held["error"]["code"], -32001, "{held}");
    let r = rpc(&gw, &t, "tools/call", echo).await;
    assert_eq!(tool_text(&r), "Echo: hi", "{r}");
    assert!(gw.metrics().await.contains("mcpgate_tool_slots_in_use 0"));
    gw.stop().await;
}

/// A stop lets the calls in flight finish, on both ports, for up to the
/// grace period; what needs longer is not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_calls_in_flight_finish_within_the_grace_period() {
    let fx = Fixture::start(0, &[]);
    let gw = Gw::on(Backend::Sqlite)
        .mcp()
        .config(|c| {
            c.edge_enabled = true;
            c.edge_port = 0;
            c.edge_grace_period = 4;
            c.tool_concurrent_limit = 100;
            c.tool_timeout = 120;
        })
        .start()
        .await;
    register(&gw, "fx", &fx.url(), "STREAMABLEHTTP").await;
    let call = |url: String, ms: u64| {
        let t = gw.admin.clone();
        tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(t)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "fx-test_slow", "arguments": {"ms": ms}}}))
                .send()
                .await?;
            resp.json::<Value>().await
        })
    };
    let edge = format!("http://{}/rpc", gw.running.edge_addr.unwrap());
    let through_edge = call(edge, 1500);
    let direct = call(gw.url("/rpc"), 1500);
    let too_long = call(gw.url("/rpc"), 60_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.metrics().await.contains("mcpgate_tool_slots_in_use 3") {
        assert!(Instant::now() < deadline, "the calls never started");
        tokio::task::yield_now().await;
    }
    let asked = Instant::now();
    gw.stop().await;
    let took = asked.elapsed();
    for (lane, finished) in [("edge", through_edge), ("direct", direct)] {
        let answer = finished
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{lane}: {e}"));
        assert_eq!(tool_text(&answer), "slept 1500 ms", "{lane}: {answer}");
    }
    assert!(
        took < Duration::from_secs(6),
        "the stop waited {took:?}, past the 4 s grace period"
    );
    assert!(
        !too_long.is_finished(),
        "the 60 s call cannot have finished"
    );
    too_long.abort();
}

/// A stateless (2026-07-28) POST through the gateway: status and body.
async fn stateless_call(
    gw: &Gw,
    method: &str,
    name: Option<&str>,
    mut params: Value,
    caps: Value,
) -> (StatusCode, Value) {
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": caps});
    let mut req = gw
        .http
        .post(gw.url("/mcp"))
        .bearer_auth(&gw.admin)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}));
    if let Some(n) = name {
        req = req.header("mcp-name", n);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Clients of the stateless revision reach an upstream that speaks it
/// statelessly: tools it lists only there are discovered, input-required
/// results and their sealed state pass through untouched over several
/// rounds, a changed state is refused by the upstream, and a missing client
/// capability is the upstream's 400 -32021.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_clients_get_input_required_results_relayed() {
    let fx = Fixture::start(0, &[]);
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    let registered = register(&gw, "fx", &fx.url(), "STREAMABLEHTTP").await;
    assert!(
        registered["capabilities"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{registered}"
    );
    let caps = json!({"elicitation": {}, "sampling": {}});
    let (s, list) = stateless_call(&gw, "tools/list", None, json!({}), caps.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"fx-test_input_required_result_multi_round"),
        "{names:?}"
    );
    assert!(names.contains(&"fx-echo"));

    let tool = "fx-test_input_required_result_multi_round";
    let call = |extra: Value| {
        let mut p = json!({"name": tool, "arguments": {}});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let (_, r1) =
        stateless_call(&gw, "tools/call", Some(tool), call(json!({})), caps.clone()).await;
    assert_eq!(r1["result"]["resultType"], "input_required", "{r1}");
    assert!(r1["result"]["inputRequests"]["step1"].is_object());
    assert!(
        r1["result"].get("ttlMs").is_none(),
        "no cache hints on input-required results"
    );
    let s1 = r1["result"]["requestState"].as_str().unwrap().to_owned();
    let (_, r2) = stateless_call(&gw, "tools/call", Some(tool), call(json!({
        "inputResponses": {"step1": {"action": "accept", "content": {"name": "Alice"}}}, "requestState": s1})), caps.clone()).await;
    assert_eq!(r2["result"]["resultType"], "input_required", "{r2}");
    let s2 = r2["result"]["requestState"].as_str().unwrap().to_owned();
    assert_ne!(s1, s2);
    let (_, r3) = stateless_call(&gw, "tools/call", Some(tool), call(json!({
        "inputResponses": {"step2": {"action": "accept", "content": {"color": "blue"}}}, "requestState": s2})), caps.clone()).await;
    assert_eq!(r3["result"]["resultType"], "complete", "{r3}");
    assert_eq!(tool_text(&r3), "Alice likes blue");
    let (_, bad) = stateless_call(
        &gw,
        "tools/call",
        Some(tool),
        call(json!({
        "inputResponses": {"step1": {"action": "accept", "content": {"name": "Alice"}}},
        "requestState": format!("{s1}-TAMPERED")})),
        caps.clone(),
    )
    .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert_eq!(bad["id"], 7);

    let needy = "fx-test_missing_capability";
    let (s, e) = stateless_call(
        &gw,
        "tools/call",
        Some(needy),
        json!({"name": needy, "arguments": {}}),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32021)),
        "{e}"
    );
    assert!(e["error"]["data"]["requiredCapabilities"]["sampling"].is_object());
    // The Mcp-Name mirrors the name the client called, not the upstream's.
    let (s, e) = stateless_call(
        &gw,
        "tools/call",
        Some("test_missing_capability"),
        json!({"name": needy, "arguments": {}}),
        caps,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32020)),
        "{e}"
    );
    gw.stop().await;
}

/// `subscriptions/listen` (stateless): the stream opens with the
/// acknowledgement of the filter, and a registry change reaches it as the
/// list changes the client asked for, tagged with its subscription id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_listeners_hear_of_registry_changes() {
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    let resp = gw
        .http
        .post(gw.url("/mcp"))
        .bearer_auth(&gw.admin)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(
            &json!({"jsonrpc": "2.0", "id": 41, "method": "subscriptions/listen", "params": {
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}},
            "notifications": {"toolsListChanged": true, "promptsListChanged": false}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    let mut frames = Vec::<Value>::new();
    let mut buf = String::new();
    let mut next = async || -> Value {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("a frame within 5 s")
                .unwrap()
                .unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    frames.push(next().await);
    assert_eq!(
        frames[0]["method"],
        "notifications/subscriptions/acknowledged"
    );
    assert_eq!(
        frames[0]["params"]["notifications"],
        json!({"toolsListChanged": true})
    );
    assert_eq!(
        frames[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        41
    );
    gw.tool(&gw.admin, rest_tool("fresh")).await;
    frames.push(next().await);
    assert_eq!(
        frames[1]["method"], "notifications/tools/list_changed",
        "{frames:?}"
    );
    assert_eq!(
        frames[1]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        41
    );
    // The listener leaves: nothing is left for the stop to wait for.
    let _ = next;
    drop(stream);
    gw.stop().await;
}

/// The metrics the reference's dashboards and alerts read, and the MCP
/// series: per method, per tool and gateway, the pool, the upstreams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_under_the_references_names_and_per_tool() {
    let fx = Fixture::start(0, &[]);
    let gw = Gw::on(Backend::Sqlite).mcp().start().await;
    register(&gw, "fx", &fx.url(), "STREAMABLEHTTP").await;
    let echo = rpc(
        &gw,
        &gw.admin,
        "tools/call",
        json!({"name": "fx-echo", "arguments": {"message": "m"}}),
    )
    .await;
    assert_eq!(tool_text(&echo), "Echo: m");
    let failed = rpc(
        &gw,
        &gw.admin,
        "tools/call",
        json!({"name": "fx-test_error_handling", "arguments": {}}),
    )
    .await;
    assert_eq!(failed["result"]["isError"], true);
    rpc(&gw, &gw.admin, "no/such", json!({})).await;
    let m = gw.metrics().await;
    for want in [
        r#"mcp_tool_calls_total{gateway="fx",outcome="success",tool="fx-echo"} 1"#,
        r#"mcp_tool_calls_total{gateway="fx",outcome="error",tool="fx-test_error_handling"} 1"#,
        r#"mcp_tool_call_duration_seconds_count{gateway="fx",tool="fx-echo"} 1"#,
        r#"mcp_requests_total{method="tools/call",outcome="success",server="all"} 2"#,
        r#"mcp_requests_total{method="other",outcome="error",server="all"} 1"#,
        r#"http_requests_total{method="POST",route="/rpc",status="200"}"#,
        "http_request_duration_seconds_bucket{",
        "db_pool_size ",
        "db_pool_connections_active ",
        "db_query_duration_seconds_count ",
        r#"mcp_upstream_up{gateway="fx"} 1"#,
        "mcp_sessions_open 0",
    ] {
        assert!(m.contains(want), "{want} is not in:\n{m}");
    }
    gw.stop().await;
}

/// Regression (issue 18, items 1 and 2): a redirect cannot lead a REST tool
/// (or an upstream) past the SSRF guard, nor carry its credentials to
/// another origin. The tool's host is allowed by name (127.0.0.2 only); it
/// redirects to 127.0.0.1, which the guard refuses and which must see
/// nothing. A redirect within the same origin is still followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_cannot_pass_the_ssrf_guard_or_carry_credentials() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let target = {
        let hits = hits.clone();
        axum::Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { "reached" }
        })
    };
    let target_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target_l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(target_l, target).await.unwrap() });
    let redirector = axum::Router::new()
        .route(
            "/away",
            axum::routing::get(move || async move {
                axum::response::Redirect::temporary(&format!("http://{target_addr}/secret"))
            }),
        )
        .route(
            "/metadata",
            axum::routing::get(|| async {
                axum::response::Redirect::temporary("http://169.254.169.254/latest/meta-data")
            }),
        )
        .route(
            "/here",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/final") }),
        )
        .route("/final", axum::routing::get(|| async { "same origin" }));
    let redir_l = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let redir = redir_l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(redir_l, redirector).await.unwrap() });

    let gw = Gw::on(Backend::Sqlite)
        .mcp()
        .config(|c| {
            c.ssrf_allow_localhost = false;
            c.ssrf_allowed_networks = vec!["127.0.0.2/32".into()];
        })
        .start()
        .await;
    for (name, path) in [
        ("away", "/away"),
        ("metadata", "/metadata"),
        ("here", "/here"),
    ] {
        gw.tool(
            &gw.admin,
            json!({"name": name, "url": format!("http://{redir}{path}"), "request_type": "GET",
            "headers": {"X-Api-Key": "do-not-leak"}}),
        )
        .await;
    }
    for name in ["away", "metadata"] {
        let r = rpc(&gw, &gw.admin, "tools/call", json!({"name": name})).await;
        assert_eq!(r["result"]["isError"], true, "{r}");
        assert!(tool_text(&r).contains("redirect to another origin"), "{r}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the refused address was reached"
    );
    let r = rpc(&gw, &gw.admin, "tools/call", json!({"name": "here"})).await;
    assert!(tool_text(&r).contains("same origin"), "{r}");
    gw.stop().await;
}
