//! The registry REST API over real HTTP against SQLite and PostgreSQL:
//! CRUD for every kind, bad input, pagination, virtual servers, sealed
//! credentials, persistence across restarts, and SQL-free reads.

mod common;
#[path = "common/fixture.rs"]
mod fixture;

use common::*;
use mcpgate::config::Config;
use mcpgate::crypto::Sealer;
use mcpgate::registry::model::Tool;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn tool_lifecycle(backend: Backend) {
    let db = Db::new(backend).await;
    let cfg = config_for(&db);
    let gw = Gw::start(cfg.clone()).await;
    let t = gw.admin.clone();

    // Wrapped shape, as the reference's ToolCreate.
    let created = gw
        .tool(&t, json!({"tool": {"name": "get_weather", "url": "https://api.example.com/w/{city}", "request_type": "GET",
            "description": "Weather", "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "tags": ["weather", "Demo"], "timeout_ms": 5000}, "visibility": "public"}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "get_weather");
    assert_eq!(created["requestType"], "GET");
    assert_eq!(created["integrationType"], "REST");
    assert_eq!(created["tags"], json!(["weather", "demo"]));
    assert_eq!(
        created["inputSchema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(created["visibility"], "public");

    let (s, v) = gw.get(&format!("/v1/tools/{id}"), &t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, created);

    // Update applies only the fields given.
    let (s, v) = gw
        .put(
            &format!("/v1/tools/{id}"),
            &t,
            json!({"description": "Weather now"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["description"], "Weather now");
    assert_eq!(v["url"], created["url"]);

    // Deactivate: hidden from the default list, shown with include_inactive.
    let (s, v) = gw
        .post(
            &format!("/v1/tools/{id}/state?activate=false"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["enabled"], false);
    assert!(names(&gw.get("/v1/tools", &t).await.1).is_empty());
    assert_eq!(
        names(&gw.get("/v1/tools?include_inactive=true", &t).await.1),
        vec!["get_weather"]
    );
    let (s, _) = gw
        .post(&format!("/v1/tools/{id}/state"), &t, json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "activate is required");
    gw.post(
        &format!("/v1/tools/{id}/state?activate=true"),
        &t,
        json!({}),
    )
    .await;

    // Filters.
    gw.tool(&t, rest_tool("other")).await;
    assert_eq!(
        names(&gw.get("/v1/tools?tags=weather", &t).await.1),
        vec!["get_weather"]
    );
    assert_eq!(
        names(&gw.get("/v1/tools?visibility=public", &t).await.1).len(),
        2
    );
    assert!(names(&gw.get("/v1/tools?gateway_id=nope", &t).await.1).is_empty());
    // The unversioned alias answers the same.
    assert_eq!(
        gw.get("/tools", &t).await.1,
        gw.get("/v1/tools", &t).await.1
    );

    // Survives a restart.
    gw.stop().await;
    let gw = Gw::start(cfg).await;
    let (s, v) = gw.get(&format!("/v1/tools/{id}"), &gw.admin).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["description"], "Weather now");

    let (s, _) = gw.delete(&format!("/v1/tools/{id}"), &gw.admin).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = gw.get(&format!("/v1/tools/{id}"), &gw.admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
    let (s, _) = gw.delete(&format!("/v1/tools/{id}"), &gw.admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    gw.stop().await;
    db.drop_db().await;
}
both!(tool_crud_and_restart, tool_lifecycle);

async fn raw_post(gw: &Gw, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let resp = gw.post_raw(path, body).await;
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

fn nested(depth: usize) -> String {
    let mut s = "1".to_owned();
    for _ in 0..depth {
        s = format!("[{s}]");
    }
    format!(r#"{{"name":"deep","url":"https://a.example/x","annotations":{{"x":{s}}}}}"#)
}

async fn bad_input(backend: Backend) {
    let gw = Gw::on(backend).start().await;
    let t = gw.admin.clone();

    let (s, v) = raw_post(&gw, "/v1/tools", "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["detail"].as_str().unwrap().contains("malformed JSON"),
        "{v}"
    );
    let (s, _) = raw_post(&gw, "/v1/tools", "[1,2]").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = raw_post(&gw, "/v1/tools", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Depth: 30 levels pass, 31 do not (the object wrapper adds two).
    let (s, v) = raw_post(&gw, "/v1/tools", nested(28)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = raw_post(&gw, "/v1/tools", nested(29)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["detail"].as_str().unwrap().contains("depth"), "{v}");
    // Body size: 1 MiB by default.
    let big = format!(
        r#"{{"name":"big","url":"https://a.example/x","description":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    let (s, v) = raw_post(&gw, "/v1/tools", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"], "payload_too_large");

    let invalid = [
        (json!({"url": "https://a.example"}), "name"),
        (json!({"name": "-bad", "url": "https://a.example"}), "name"),
        (
            json!({"name": "a".repeat(129), "url": "https://a.example"}),
            "name",
        ),
        (json!({"name": 5, "url": "https://a.example"}), "name"),
        (json!({"name": "t"}), "url"),
        (json!({"name": "t", "url": "ftp://a.example"}), "url"),
        (
            json!({"name": "t", "url": format!("https://a.example/{}", "p".repeat(2048))}),
            "url",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "description": "d".repeat(8193)}),
            "description",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "request_type": "BREW"}),
            "request_type",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "visibility": "secret"}),
            "visibility",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "visibility": "team"}),
            "visibility",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "team_id": "nope"}),
            "team_id",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "inputSchema": [1]}),
            "input_schema",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "auth": {"auth_type": "basic", "username": "u"}}),
            "auth.password",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "integration_type": "MCP"}),
            "integration_type",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "gateway_id": "nope"}),
            "gateway_id",
        ),
        (
            json!({"name": "t", "url": "https://a.example", "timeout_ms": 0}),
            "timeout_ms",
        ),
    ];
    for (body, field) in invalid {
        let (s, v) = gw.post("/v1/tools", &t, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let (s, v) = gw
        .post(
            "/v1/gateways",
            &t,
            json!({"name": "g", "url": "https://g.example", "transport": "CARRIER_PIGEON"}),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("transport"))
    );
    let (s, v) = gw
        .post(
            "/v1/servers",
            &t,
            json!({"name": "s", "associated_tools": ["missing"]}),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("associated_tools"))
    );
    let (s, v) = gw
        .post(
            "/v1/resources",
            &t,
            json!({"name": "r", "uri": "no-scheme"}),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("uri"))
    );
    let (s, v) = gw.post("/v1/prompts", &t, json!({"name": "p"})).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("template"))
    );

    // Duplicates are 409, and nothing is lost.
    gw.tool(&t, rest_tool("dup")).await;
    let (s, v) = gw.post("/v1/tools", &t, rest_tool("dup")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("dup"));
    assert_eq!(
        names(&gw.get("/v1/tools?tags=", &t).await.1),
        vec!["deep", "dup"]
    );

    // Unknown ids and routes.
    for path in [
        "/v1/tools/nope",
        "/v1/servers/nope",
        "/v1/gateways/nope",
        "/v1/resources/nope",
        "/v1/prompts/nope",
        "/v1/teams/nope",
        "/v1/tokens/nope",
    ] {
        let (s, _) = gw.get(path, &t).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _) = gw
        .put("/v1/tools/nope", &t, json!({"description": "x"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = gw.get("/v1/tools?limit=0", &t).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = gw.get("/v1/tools?limit=501", &t).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = gw.get("/v1/tools?limit=abc", &t).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    gw.stop().await;
}
both!(bad_input_gets_clear_errors, bad_input);

async fn pagination(backend: Backend) {
    let gw = Gw::on(backend).start().await;
    let t = gw.admin.clone();
    for i in 0..7 {
        gw.tool(&t, rest_tool(&format!("t{i}"))).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tools?limit=3&cursor={c}"),
            None => "/v1/tools?limit=3".to_owned(),
        };
        let resp = gw
            .http
            .get(gw.url(&path))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        cursor = resp
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Value = resp.json().await.unwrap();
        assert!(page.as_array().unwrap().len() <= 3);
        seen.extend(names(&page));
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("t{i}")).collect::<Vec<_>>());
    let (_, v) = gw
        .get("/v1/tools?limit=5&include_pagination=true", &t)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 5);
    let next = v["nextCursor"].as_str().unwrap();
    let (_, v) = gw
        .get(
            &format!("/v1/tools?limit=5&include_pagination=true&cursor={next}"),
            &t,
        )
        .await;
    assert_eq!(names(&v["items"]), vec!["t5", "t6"]);
    assert!(v["nextCursor"].is_null());
    gw.stop().await;
}
both!(cursor_pagination, pagination);

async fn every_kind(backend: Backend) {
    let fx = fixture::Fixture::start(0, &[]);
    let db = Db::new(backend).await;
    let gw = Gw::start(Config {
        ssrf_allow_localhost: true,
        ..config_for(&db)
    })
    .await;
    let t = gw.admin.clone();
    let (s, g) = gw
        .post("/v1/gateways", &t, json!({"name": "Upstream One", "url": fx.url(), "transport": "STREAMABLEHTTP",
            "auth_type": "authheaders", "auth_header_key": "X-Api-Key", "auth_header_value": "k-123", "tags": "a,b"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert_eq!(g["slug"], "upstream-one");
    assert_eq!(g["authValue"], "*****");
    assert!(!g.to_string().contains("k-123"));
    let (s, r) = gw
        .post("/v1/resources", &t, json!({"resource": {"uri": "file:///readme.md", "name": "readme", "content": "hello", "mime_type": "text/markdown"}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["size"], 5);
    let (s, p) = gw
        .post("/v1/prompts", &t, json!({"name": "greet", "template": "Hello {{name}}", "arguments": [{"name": "name", "required": true}]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["arguments"][0]["required"], true);
    let tool = gw.tool(&t, rest_tool("echo")).await;
    let (s, srv) = gw
        .post(
            "/v1/servers",
            &t,
            json!({"server": {"id": "my-server", "name": "Bundle", "associated_tools": [tool["id"]],
            "associated_resources": r["id"].as_str().unwrap(), "associated_prompts": [p["id"]]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{srv}");
    assert_eq!(srv["id"], "my-server");
    assert_eq!(srv["associatedTools"], json!([tool["id"]]));
    assert_eq!(
        names(&gw.get("/v1/servers/my-server/tools", &t).await.1),
        vec!["echo"]
    );
    assert_eq!(
        names(&gw.get("/v1/servers/my-server/prompts", &t).await.1),
        vec!["greet"]
    );
    assert_eq!(
        names(&gw.get("/v1/servers/my-server/resources", &t).await.1),
        vec!["readme"]
    );
    let (s, _) = gw
        .post(
            "/v1/servers",
            &t,
            json!({"id": "my-server", "name": "Other"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Deleting a tool removes it from the bundle.
    gw.delete(&format!("/v1/tools/{}", tool["id"].as_str().unwrap()), &t)
        .await;
    let (_, srv) = gw.get("/v1/servers/my-server", &t).await;
    assert_eq!(srv["associatedTools"], json!([]));
    // Replacing associations on update.
    let tool2 = gw.tool(&t, rest_tool("echo2")).await;
    let (s, srv) = gw
        .put(
            "/v1/servers/my-server",
            &t,
            json!({"associated_tools": [tool2["id"]]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{srv}");
    assert_eq!(srv["associatedTools"], json!([tool2["id"]]));
    assert_eq!(
        srv["associatedPrompts"],
        json!([p["id"]]),
        "untouched associations stay"
    );
    // Deleting a gateway deletes nothing else, and lists stay consistent.
    let (s, _) = gw
        .delete(&format!("/v1/gateways/{}", g["id"].as_str().unwrap()), &t)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(gw.count("/v1/gateways", &t).await, 0);
    gw.stop().await;
    db.drop_db().await;
}
both!(gateways_resources_prompts_servers, every_kind);

async fn sealed_credentials(backend: Backend) {
    let db = Db::new(backend).await;
    let cfg = config_for(&db);
    let gw = Gw::start(cfg.clone()).await;
    let t = gw.admin.clone();
    let created = gw
        .tool(&t, json!({"name": "secretive", "url": "https://a.example/x", "auth": {"auth_type": "bearer", "token": "s3cret-bearer-value"}}))
        .await;
    for body in [created.clone(), gw.get("/v1/tools", &t).await.1] {
        assert!(
            !body.to_string().contains("s3cret"),
            "credential leaked: {body}"
        );
    }
    // At rest: sealed with AES-256-GCM under AUTH_ENCRYPTION_SECRET.
    let stored: Vec<Tool> = gw.running.state.registry.store().load_all().await.unwrap();
    let sealed = stored[0].auth_value.clone().unwrap();
    assert!(!sealed.contains("s3cret"));
    let opened = Sealer::new(cfg.auth_encryption_secret.as_deref().unwrap())
        .open(&sealed)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&opened).unwrap(),
        json!({"token": "s3cret-bearer-value"})
    );
    assert!(Sealer::new("another key").open(&sealed).is_err());
    gw.stop().await;
    db.drop_db().await;
}
both!(credentials_are_sealed_at_rest, sealed_credentials);

async fn snapshot_reads(backend: Backend) {
    let gw = Gw::on(backend).start().await;
    let store = gw.running.state.registry.store();
    let now = mcpgate::util::now();
    let tools: Vec<Tool> = (0..1000)
        .map(|i| {
            let mut tool = mcpgate::registry::input::ToolInput::new_tool("admin@example.com", &now);
            tool.name = format!("tool-{i:04}");
            tool.original_name = tool.name.clone();
            tool.url = Some("https://a.example/x".into());
            tool
        })
        .collect();
    gw.running.state.updater.create_many(&tools).await.unwrap();
    let t = gw.admin.clone();
    assert_eq!(gw.get("/v1/tools?limit=1", &t).await.0, StatusCode::OK); // token now cached
    let before = store.query_count();
    let (s, v) = gw.get("/v1/tools?limit=500", &t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 500);
    let mut total = 0;
    let mut cursor = String::new();
    loop {
        let (_, v) = gw
            .get(
                &format!("/v1/tools?limit=500&include_pagination=true{cursor}"),
                &t,
            )
            .await;
        total += v["items"].as_array().unwrap().len();
        match v["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(total, 1000);
    let (s, _) = gw.get("/v1/tools?tags=none&team_id=x", &t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(store.query_count(), before, "listing 1,000 tools ran SQL");
    // The metric says the same.
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(&format!("mcpgate_db_queries_total {before}")),
        "{metrics}"
    );
    assert!(metrics.contains("mcpgate_registry_items{kind=\"tools\"} 1000"));
    gw.stop().await;
}
both!(tool_list_is_served_from_the_snapshot, snapshot_reads);

async fn cross_instance_sync(backend: Backend) {
    let db = Db::new(backend).await;
    let cfg = Config {
        registry_sync_interval: 1,
        ..config_for(&db)
    };
    let a = Gw::start(cfg.clone()).await;
    let b = Gw::start(cfg).await;
    a.tool(&a.admin, rest_tool("shared")).await;
    let start = std::time::Instant::now();
    loop {
        if names(&b.get("/v1/tools", &b.admin).await.1) == vec!["shared"] {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "instance B never saw the write"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}
both!(other_instances_pick_up_writes, cross_instance_sync);

async fn no_prepared_statements(backend: Backend) {
    let db = Db::new(backend).await;
    let gw = Gw::start(Config {
        db_prepare_threshold: 0,
        ..config_for(&db)
    })
    .await;
    for i in 0..3 {
        gw.tool(&gw.admin, rest_tool(&format!("p{i}"))).await;
    }
    assert_eq!(
        names(&gw.get("/v1/tools", &gw.admin).await.1),
        vec!["p0", "p1", "p2"]
    );
    gw.stop().await;
    db.drop_db().await;
}
both!(
    pgbouncer_mode_without_prepared_statements,
    no_prepared_statements
);

/// `/openapi.json` and `/docs` are public, the document is OpenAPI 3.1, and
/// every operation it names is served: no documented route answers 405 or
/// the router's "no such route".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_describes_the_served_api() {
    let gw = Gw::on(Backend::Sqlite).start().await;
    let (s, doc) = gw
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for want in [
        "/v1/tools",
        "/v1/gateways/{id}",
        "/v1/teams/{id}/members/{email}",
        "/v1/tokens",
        "/health",
    ] {
        assert!(paths.contains_key(want), "{want} is not documented");
    }
    assert!(
        doc["components"]["schemas"]["Tool"]["properties"]["inputSchema"].is_object(),
        "answer schemas use the names the API answers with"
    );
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "no-such-id")
            .replace("{email}", "nobody@example.com");
        for method in ["get", "post", "put", "delete"] {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let body = matches!(method, "post" | "put").then(|| json!({}));
            let public = op["security"] == json!([]);
            let token = (!public).then_some(gw.admin.as_str());
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (s, v) = gw.call(m, &concrete, token, body).await;
            assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !(s == StatusCode::NOT_FOUND && v["detail"] == "no such route"),
                "{method} {path} is documented but not served"
            );
            assert!(!s.is_server_error(), "{method} {path}: {s} {v}");
        }
    }
    assert!(operations >= 50, "{operations} operations documented");
    let html = gw.http.get(gw.url("/docs")).send().await.unwrap();
    assert_eq!(html.status(), StatusCode::OK);
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = html.text().await.unwrap();
    assert!(
        page.contains("/v1/tools/{id}") && page.contains("Create a tool"),
        "{page}"
    );
    gw.stop().await;
}
