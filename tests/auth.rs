//! Authentication over real HTTP: missing, malformed, forged, expired and
//! revoked tokens; algorithm confusion; the revocation TTL across instances.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use mcpgate::auth::{Claims, Signer};
use mcpgate::config::Config;
use reqwest::StatusCode;
use serde_json::json;

fn forge(config: &Config, secret: &str, edit: impl FnOnce(&mut Claims)) -> String {
    let signer = Signer::new(config, secret).unwrap();
    let mut c = signer.claims("mallory@example.com", 60, None, true);
    edit(&mut c);
    signer.sign(&c).unwrap()
}

async fn rejects_bad_tokens(backend: Backend) {
    let db = Db::new(backend).await;
    let cfg = config_for(&db);
    let gw = Gw::start(cfg.clone()).await;
    let secret = cfg.jwt_secret_key.clone().unwrap();

    let (s, v) = gw.call(reqwest::Method::GET, "/v1/tools", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"], "unauthorized");

    let resp = gw
        .http
        .get(gw.url("/v1/tools"))
        .header("authorization", "Basic YWRtaW46Y2hhbmdlbWU=")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");

    let cases = [
        ("garbage", "not.a.jwt".to_owned()),
        (
            "other secret",
            forge(&cfg, "another-secret-0123456789-0123456789", |_| {}),
        ),
        (
            "expired",
            forge(&cfg, &secret, |c| c.exp = Some(c.iat - 10)),
        ),
        (
            "wrong audience",
            forge(&cfg, &secret, |c| c.aud = "someone-else".into()),
        ),
        (
            "wrong issuer",
            forge(&cfg, &secret, |c| c.iss = "evil".into()),
        ),
        (
            "no expiry while required",
            forge(&cfg, &secret, |c| c.exp = None),
        ),
    ];
    for (what, token) in cases {
        let (s, v) = gw.get("/v1/tools", &token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {v}");
    }

    // alg=none: a valid-looking token with no signature.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let now = chrono::Utc::now().timestamp();
    let body = URL_SAFE_NO_PAD.encode(
        json!({"sub": "admin@example.com", "aud": cfg.jwt_audience, "iss": cfg.jwt_issuer, "iat": now, "exp": now + 600, "is_admin": true})
            .to_string(),
    );
    let (s, _) = gw.get("/v1/tools", &format!("{header}.{body}.")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "alg none");

    // Algorithm confusion: HS512 with the right secret is still not HS256.
    let hs512 = Config {
        jwt_algorithm: "HS512".into(),
        ..cfg.clone()
    };
    let (s, _) = gw.get("/v1/tools", &forge(&hs512, &secret, |_| {})).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "HS512 accepted by an HS256 gateway"
    );

    // The good token works.
    let (s, _) = gw.get("/v1/tools", &gw.admin).await;
    assert_eq!(s, StatusCode::OK);
    gw.stop().await;
    db.drop_db().await;
}
both!(bad_tokens_are_rejected, rejects_bad_tokens);

async fn token_without_expiry(backend: Backend) {
    let db = Db::new(backend).await;
    let cfg = Config {
        require_token_expiration: false,
        ..config_for(&db)
    };
    let gw = Gw::start(cfg.clone()).await;
    let token = forge(&cfg, cfg.jwt_secret_key.as_deref().unwrap(), |c| {
        c.exp = None
    });
    let (s, v) = gw.get("/v1/tools", &token).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.stop().await;
    db.drop_db().await;
}
both!(tokens_without_expiry_when_allowed, token_without_expiry);

async fn public_routes(backend: Backend) {
    let gw = Gw::on(backend).start().await;
    for path in ["/health", "/ready", "/version"] {
        let (s, v) = gw.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
    let (_, v) = gw.call(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(v, json!({"status": "healthy"}));
    let (_, v) = gw.call(reqwest::Method::GET, "/ready", None, None).await;
    assert_eq!(v["status"], "ready");
    let (_, v) = gw.call(reqwest::Method::GET, "/version", None, None).await;
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        v["database"],
        if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgresql"
        }
    );
    for path in [
        "/metrics/prometheus",
        "/v1/servers",
        "/tools",
        "/v1/teams",
        "/v1/tokens",
    ] {
        let (s, _) = gw.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} must need a token");
    }
    // With the database gone, health and readiness say so.
    gw.running.state.registry.store().close().await;
    let (s, v) = gw.call(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["status"], "unhealthy");
    assert!(v["error"].as_str().is_some());
    let (s, v) = gw.call(reqwest::Method::GET, "/ready", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["failing"], json!(["database"]));
    gw.stop().await;
}
both!(health_ready_version_are_public, public_routes);

/// `METRICS_PORT`: a scraper reads the metrics without a token there, and
/// nothing else; the main port still asks for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_serves_metrics_only_and_without_a_token() {
    let gw = Gw::on(Backend::Sqlite)
        .config(|c| c.metrics_port = Some(0))
        .start()
        .await;
    let at = gw.running.metrics_addr.expect("metrics listener");
    assert_ne!(at.port(), gw.running.addr.port());
    let http = reqwest::Client::new();
    for path in ["/metrics", "/metrics/prometheus"] {
        let resp = http.get(format!("http://{at}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = resp.text().await.unwrap();
        assert!(text.contains("mcpgate_db_queries_total"), "{text}");
    }
    for path in ["/v1/tools", "/health", "/rpc", "/v1/tokens"] {
        let s = http
            .get(format!("http://{at}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{path} is not on the metrics port"
        );
    }
    let s = http
        .post(format!("http://{at}/metrics"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = gw
        .call(reqwest::Method::GET, "/metrics/prometheus", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    gw.stop().await;
    assert!(
        std::net::TcpStream::connect(at).is_err(),
        "the metrics listener stops with the gateway"
    );
}

async fn revocation(backend: Backend) {
    let db = Db::new(backend).await;
    let cfg = Config {
        auth_cache_revocation_ttl: 1,
        ..config_for(&db)
    };
    let a = Gw::start(cfg.clone()).await;
    let b = Gw::start(cfg).await;

    let user = a.token("dev@example.com");
    let (s, v) = a
        .post(
            "/v1/tokens",
            &user,
            json!({"name": "ci", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let api_token = v["access_token"].as_str().unwrap().to_owned();
    let id = v["token"]["id"].as_str().unwrap().to_owned();
    assert!(v["token"].get("token_hash").is_none() && v["token"].get("tokenHash").is_none());

    // The listing never shows the token again.
    let (_, list) = a.get("/v1/tokens", &user).await;
    assert!(!list.to_string().contains(&api_token));
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Both instances accept it (and cache it).
    assert_eq!(a.get("/v1/tools", &api_token).await.0, StatusCode::OK);
    assert_eq!(b.get("/v1/tools", &api_token).await.0, StatusCode::OK);

    // Someone else cannot revoke it.
    let (s, _) = a
        .delete(&format!("/v1/tokens/{id}"), &a.token("eve@example.com"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let revoked_at = Instant::now();
    let (s, v) = a.delete(&format!("/v1/tokens/{id}"), &user).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // At once on the instance that revoked it.
    let (s, v) = a.get("/v1/tools", &api_token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["detail"].as_str().unwrap().contains("revoked"));
    // Within the revocation TTL (1 s here) on the other one.
    loop {
        let (s, _) = b.get("/v1/tools", &api_token).await;
        if s == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_millis(2500),
            "revocation not applied within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}
both!(revoked_token_stops_working_within_ttl, revocation);

async fn known_token_runs_no_sql(backend: Backend) {
    let gw = Gw::on(backend).start().await;
    let user = gw.token("reader@example.com");
    assert_eq!(gw.get("/v1/tools", &user).await.0, StatusCode::OK);
    let store = gw.running.state.registry.store();
    let before = store.query_count();
    for _ in 0..20 {
        assert_eq!(gw.get("/v1/tools", &user).await.0, StatusCode::OK);
    }
    assert_eq!(
        store.query_count(),
        before,
        "authenticating a known token ran SQL"
    );
    gw.stop().await;
}
both!(
    known_token_is_served_from_the_auth_cache,
    known_token_runs_no_sql
);

async fn auth_off(backend: Backend) {
    let db = Db::new(backend).await;
    let gw = Gw::start(Config {
        auth_required: false,
        ..config_for(&db)
    })
    .await;
    let (s, _) = gw.call(reqwest::Method::GET, "/v1/tools", None, None).await;
    assert_eq!(s, StatusCode::OK);
    gw.stop().await;
    db.drop_db().await;
}
both!(auth_required_false_opens_the_api, auth_off);

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed to make test keys");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn asymmetric(backend: Backend) {
    let db = Db::new(backend).await;
    let dir = db.dir.path();
    for (alg, keygen) in [
        (
            "RS256",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
        (
            "ES256",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
    ] {
        let private = dir.join(format!("{alg}.key"));
        let public = dir.join(format!("{alg}.pub"));
        let mut args = keygen.clone();
        args.extend(["-out", private.to_str().unwrap()]);
        openssl(&args);
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        let cfg = Config {
            jwt_algorithm: alg.into(),
            jwt_public_key_path: Some(public),
            jwt_private_key_path: Some(private),
            ..config_for(&db)
        };
        let gw = Gw::start(cfg.clone()).await;
        let (s, v) = gw.get("/v1/tools", &gw.admin).await;
        assert_eq!(s, StatusCode::OK, "{alg}: {v}");
        // An HMAC token signed with the public key's bytes is refused.
        let pem = std::fs::read_to_string(cfg.jwt_public_key_path.as_ref().unwrap()).unwrap();
        let hs = Config {
            jwt_algorithm: "HS256".into(),
            ..cfg.clone()
        };
        let (s, _) = gw.get("/v1/tools", &forge(&hs, &pem, |_| {})).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{alg}: HS256 with the public key accepted"
        );
        gw.stop().await;
    }
    db.drop_db().await;
}
both!(rs256_and_es256_keys, asymmetric);
