//! The edge in front of an origin the test controls, over real sockets: an
//! origin that starts failing (stale-if-error) and one that holds its body
//! back halfway (streaming partial writes to concurrent readers).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use mcpgate_cache_zones::{Zone, ZoneSpec};
use mcpgate_proxy::edge::EdgeProxy;
use mcpgate_proxy::metrics::EdgeMetrics;
use mcpgate_proxy::server::EdgeOptions;
use mcpgate_proxy::{BoxFuture, EdgeApp, EdgeBody, EdgeConfig, EdgeHandle, Generations, Rejection};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;
use tower::ServiceExt;

#[derive(Default)]
struct OriginState {
    tools_calls: AtomicUsize,
    slow_calls: AtomicUsize,
    failing: AtomicBool,
    /// Lets the slow route send the rest of its body.
    release: Notify,
}

type Shared = Arc<OriginState>;

async fn tools(State(s): State<Shared>) -> Response {
    let n = s.tools_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if s.failing.load(Ordering::SeqCst) {
        return (http::StatusCode::INTERNAL_SERVER_ERROR, "origin down").into_response();
    }
    (
        [
            ("content-type", "application/json"),
            ("cache-control", "max-age=1"),
        ],
        format!("{{\"fill\":{n}}}"),
    )
        .into_response()
}

async fn slow(State(s): State<Shared>) -> Response {
    s.slow_calls.fetch_add(1, Ordering::SeqCst);
    let first =
        futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("first-part;")) });
    let rest = futures_util::stream::once(async move {
        s.release.notified().await;
        Ok::<_, std::io::Error>(Bytes::from("second-part"))
    });
    (
        [("content-type", "application/javascript")],
        Body::from_stream(first.chain(rest)),
    )
        .into_response()
}

/// Answers with the forwarding headers it was given.
async fn echo_headers(headers: http::HeaderMap) -> axum::Json<serde_json::Value> {
    let h = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
    };
    axum::Json(serde_json::json!({
        "x-real-ip": h("x-real-ip"),
        "x-forwarded-for": h("x-forwarded-for"),
        "x-forwarded-proto": h("x-forwarded-proto"),
        "x-forwarded-host": h("x-forwarded-host"),
        "x-correlation-id": h("x-correlation-id"),
    }))
}

/// Sends a first part, then fails halfway (an origin that dies).
async fn dies(State(s): State<Shared>) -> Response {
    s.slow_calls.fetch_add(1, Ordering::SeqCst);
    let first =
        futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("first-part;")) });
    let rest = futures_util::stream::once(async move {
        s.release.notified().await;
        Err::<Bytes, _>(std::io::Error::other("origin died"))
    });
    (
        [("content-type", "application/javascript")],
        Body::from_stream(first.chain(rest)),
    )
        .into_response()
}

/// Answers with the body it was given.
async fn echo_body(body: Bytes) -> Response {
    ([("content-type", "application/octet-stream")], body).into_response()
}

/// A write whose answer fails after its first part.
async fn fails_midway() -> Response {
    let parts = futures_util::stream::iter([
        Ok(Bytes::from("first-part;")),
        Err(std::io::Error::other("origin died")),
    ]);
    Body::from_stream(parts).into_response()
}

/// A write whose answer is shorter than the length it declares.
async fn short() -> Response {
    ([("content-length", "100")], "short").into_response()
}

/// A write whose answer is worth compressing.
async fn big() -> Response {
    let items: Vec<String> = (0..200).map(|i| format!("item number {i}")).collect();
    axum::Json(serde_json::json!({ "items": items })).into_response()
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/assets/dies.js", get(dies))
        .route("/v1/tools", get(tools))
        .route("/echo", axum::routing::post(echo_headers))
        .route("/big", axum::routing::post(big))
        .route("/body", axum::routing::post(echo_body))
        .route("/fails", axum::routing::post(fails_midway))
        .route("/short", axum::routing::post(short))
        .route("/v1/servers", get(echo_headers))
        .route("/assets/slow.js", get(slow))
        .with_state(state)
}

/// The application behind the edge: the origin's router, called in-process
/// for bypass requests, and its listener for cache fills.
struct TestApp {
    router: Router,
    addr: SocketAddr,
}

impl EdgeApp for TestApp {
    fn scope_of(&self, _auth: Option<String>) -> BoxFuture<'_, Result<String, Rejection>> {
        Box::pin(async { Ok("user:test".to_owned()) })
    }

    fn call(&self, request: http::Request<Bytes>) -> BoxFuture<'static, http::Response<EdgeBody>> {
        let router = self.router.clone();
        Box::pin(async move {
            let response = router
                .oneshot(request.map(Body::from))
                .await
                .expect("infallible");
            response.map(|b| b.map_err(|e| Box::new(e) as _).boxed_unsync())
        })
    }

    fn upstream(&self) -> SocketAddr {
        self.addr
    }
}

struct Setup {
    origin: Shared,
    edge: EdgeHandle,
    http: reqwest::Client,
    metrics: Arc<EdgeMetrics>,
}

impl Setup {
    async fn start(config: EdgeConfig) -> Setup {
        let origin = Shared::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(origin.clone());
        tokio::spawn(axum::serve(listener, app.clone()).into_future());
        let zones: HashMap<String, &'static Zone> = config
            .zones
            .iter()
            .map(|spec: &ZoneSpec| (spec.name.clone(), Zone::leak(spec)))
            .collect();
        let metrics = Arc::new(EdgeMetrics::default());
        let proxy = EdgeProxy::new(
            Arc::new(TestApp { router: app, addr }),
            Arc::new(ArcSwap::from_pointee(config)),
            zones,
            Arc::new(Generations::default()),
            metrics.clone(),
        );
        let sock =
            std::env::temp_dir().join(format!("mcpgate-origin-test-{}", uuid::Uuid::new_v4()));
        let edge = tokio::task::spawn_blocking(move || {
            EdgeHandle::start(
                proxy,
                "127.0.0.1:0".parse().unwrap(),
                EdgeOptions {
                    threads: 2,
                    upgrade: false,
                    upgrade_sock: sock.to_string_lossy().into_owned(),
                    grace_period_seconds: 0,
                    work_stealing: false,
                },
            )
        })
        .await
        .unwrap()
        .expect("edge starts");
        Setup {
            origin,
            metrics,
            edge,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("http://{}{path}", self.edge.addr))
            .send()
            .await
            .unwrap()
    }

    async fn stop(self) {
        let edge = self.edge;
        tokio::task::spawn_blocking(move || edge.stop(mcpgate_proxy::Stop::Terminate))
            .await
            .unwrap();
    }
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The next chunk of a streamed body, which must come within 5 s.
async fn next_chunk(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin),
    what: &str,
) -> Bytes {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap_or_else(|_| panic!("{what}"))
        .expect("a chunk")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_origin_is_covered_by_the_stale_copy() {
    let s = Setup::start(EdgeConfig {
        stale_if_error: 60,
        ..EdgeConfig::default()
    })
    .await;
    let r = s.get("/v1/tools").await;
    assert_eq!(cache_status(&r), "MISS");
    assert_eq!(r.text().await.unwrap(), r#"{"fill":1}"#);
    assert_eq!(cache_status(&s.get("/v1/tools").await), "HIT");
    // The origin said max-age=1: let the entry expire, then break the origin.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.origin.failing.store(true, Ordering::SeqCst);
    let r = s.get("/v1/tools").await;
    assert_eq!(
        (r.status(), cache_status(&r)),
        (reqwest::StatusCode::OK, "STALE".to_owned())
    );
    assert_eq!(r.text().await.unwrap(), r#"{"fill":1}"#);
    // The edge did ask the origin, which failed.
    assert_eq!(s.origin.tools_calls.load(Ordering::SeqCst), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stale_if_error_the_failure_reaches_the_client() {
    let s = Setup::start(EdgeConfig::default()).await;
    assert_eq!(cache_status(&s.get("/v1/tools").await), "MISS");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.origin.failing.store(true, Ordering::SeqCst);
    let r = s.get("/v1/tools").await;
    assert_eq!(r.status(), reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(cache_status(&r), "EXPIRED");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_a_fill_in_progress_stream_what_has_arrived() {
    let s = Setup::start(EdgeConfig::default()).await;
    let first = s.get("/assets/slow.js").await;
    assert_eq!(cache_status(&first), "MISS");
    let mut first = first.bytes_stream();
    let chunk = next_chunk(
        &mut first,
        "the filling request streams its first part at once",
    )
    .await;
    assert_eq!(&chunk[..], b"first-part;");
    // A second reader joins the fill while the origin still holds the rest
    // back: it is served the part already stored instead of waiting on the
    // cache lock for the whole object.
    let second = tokio::time::timeout(Duration::from_secs(5), s.get("/assets/slow.js"))
        .await
        .expect("a concurrent reader does not wait for the fill to finish");
    assert_eq!(cache_status(&second), "HIT");
    let mut second = second.bytes_stream();
    let chunk = next_chunk(&mut second, "the stored part arrives before the fill ends").await;
    assert_eq!(&chunk[..], b"first-part;");
    s.origin.release.notify_one();
    let rest = |mut st: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>| async move {
        let mut out = Vec::new();
        while let Some(c) = st.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    };
    assert_eq!(rest(first.boxed()).await, b"second-part");
    assert_eq!(rest(second.boxed()).await, b"second-part");
    assert_eq!(s.origin.slow_calls.load(Ordering::SeqCst), 1);
    // The finished object is a plain hit now.
    let third = s.get("/assets/slow.js").await;
    assert_eq!(cache_status(&third), "HIT");
    assert_eq!(third.text().await.unwrap(), "first-part;second-part");
    assert_eq!(s.origin.slow_calls.load(Ordering::SeqCst), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_learns_the_client_on_both_paths() {
    let s = Setup::start(EdgeConfig::default()).await;
    // In-process (bypass): a client-given correlation id is kept and echoed;
    // the socket peer is appended to a forwarded chain it does not trust.
    let r = s
        .http
        .post(format!("http://{}/echo", s.edge.addr))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-correlation-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-correlation-id"], "req-42");
    assert_eq!(cache_status(&r), "BYPASS");
    let seen: serde_json::Value = r.json().await.unwrap();
    let host = format!("127.0.0.1:{}", s.edge.addr.port());
    assert_eq!(
        seen,
        serde_json::json!({
            "x-real-ip": "127.0.0.1",
            "x-forwarded-for": "203.0.113.9, 127.0.0.1",
            "x-forwarded-proto": "http",
            "x-forwarded-host": host,
            "x-correlation-id": "req-42",
        })
    );
    // A cache fill over the application's listener carries the same
    // headers, with a generated correlation id echoed to the client.
    let r = s.get("/v1/servers").await;
    assert_eq!(cache_status(&r), "MISS");
    let id = r.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    assert!(!id.is_empty());
    let seen: serde_json::Value = r.json().await.unwrap();
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], host.as_str());
    assert_eq!(seen["x-correlation-id"], id.as_str());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_dies_fails_its_readers_and_stores_nothing() {
    let s = Setup::start(EdgeConfig::default()).await;
    let first = s.get("/assets/dies.js").await;
    assert_eq!(cache_status(&first), "MISS");
    let mut first = first.bytes_stream();
    let chunk = next_chunk(&mut first, "first part").await;
    assert_eq!(&chunk[..], b"first-part;");
    let second = tokio::time::timeout(Duration::from_secs(5), s.get("/assets/dies.js"))
        .await
        .expect("a reader joins the fill");
    let mut second = second.bytes_stream();
    let chunk = next_chunk(&mut second, "stored part").await;
    assert_eq!(&chunk[..], b"first-part;");
    s.origin.release.notify_one();
    // Both clients see the body cut short, never a silently complete one.
    for (name, mut stream) in [("writer", first), ("reader", second)] {
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.next().await {
                    Some(Ok(more)) => assert!(more.is_empty(), "{name} got more data"),
                    Some(Err(_)) => return true,
                    None => return false,
                }
            }
        })
        .await
        .expect("the failure reaches the client");
        assert!(outcome, "{name}: a truncated body ended as if complete");
    }
    // Nothing was stored: the next request fills again.
    let again = s.get("/assets/dies.js").await;
    assert_eq!(cache_status(&again), "MISS");
    assert_eq!(s.origin.slow_calls.load(Ordering::SeqCst), 2);
    s.origin.release.notify_one();
    drop(again);
    s.stop().await;
}

/// Sends one request on `c` and reads its answer: the head (lowercased) and
/// the body, by length or chunked.
async fn exchange(c: &mut BufReader<tokio::net::TcpStream>, request: &str) -> (String, Vec<u8>) {
    c.get_mut().write_all(request.as_bytes()).await.unwrap();
    answer(c).await
}

/// [`exchange`], where the answer must be a 200.
async fn ok(c: &mut BufReader<tokio::net::TcpStream>, request: &str) -> (String, Vec<u8>) {
    let (head, body) = exchange(c, request).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    (head, body)
}

/// Reads one answer from `c`.
async fn answer(c: &mut BufReader<tokio::net::TcpStream>) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            c.read_line(&mut line).await.unwrap() > 0,
            "connection closed"
        );
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let mut body = Vec::new();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        body.resize(len.trim().parse().unwrap(), 0);
        c.read_exact(&mut body).await.unwrap();
    } else if head.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            c.read_line(&mut size).await.unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            c.read_exact(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    (head, body)
}

/// Whether the server closed `c` (after all it sent was read).
async fn closed(c: &mut BufReader<tokio::net::TcpStream>) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await,
        Ok(Ok(0))
    )
}

/// Sends `request` on a new connection and reads until the edge closes it.
async fn all_of_one_answer(s: &Setup, request: &[u8]) -> String {
    let mut c = connect(s).await;
    c.get_mut().write_all(request).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut all))
        .await
        .expect("the edge closes the connection")
        .unwrap();
    String::from_utf8_lossy(&all).into_owned()
}

async fn connect(s: &Setup) -> BufReader<tokio::net::TcpStream> {
    BufReader::new(tokio::net::TcpStream::connect(s.edge.addr).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_are_answered_in_order() {
    let s = Setup::start(EdgeConfig::default()).await;
    let mut c = connect(&s).await;
    let post = |body: &str| {
        format!(
            "POST /body HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Three requests in one write; the last one's head is cut short.
    let all = format!("{}{}{}", post("first"), post("second"), post("third"));
    let cut = all.len() - 12;
    c.get_mut().write_all(&all.as_bytes()[..cut]).await.unwrap();
    for expected in ["first", "second"] {
        let (head, body) = answer(&mut c).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, expected.as_bytes());
    }
    c.get_mut().write_all(&all.as_bytes()[cut..]).await.unwrap();
    let (head, body) = answer(&mut c).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: keep-alive"), "{head}");
    assert_eq!(body, b"third");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_larger_than_one_read_arrives_whole() {
    let s = Setup::start(EdgeConfig::default()).await;
    let mut c = connect(&s).await;
    let body: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let request = format!(
        "POST /body HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.get_mut().write_all(request.as_bytes()).await.unwrap();
    // The body in pieces, the last one after the server had to wait.
    for piece in body.as_bytes().chunks(65_536) {
        c.get_mut().write_all(piece).await.unwrap();
        tokio::task::yield_now().await;
    }
    let (head, got) = answer(&mut c).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(got.len(), body.len());
    assert!(got == body.as_bytes());
    // The connection carries on.
    let (_, got) = ok(
        &mut c,
        "POST /body HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    assert_eq!(got, b"ok");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_honoured_on_writes() {
    let s = Setup::start(EdgeConfig::default()).await;
    let mut c = connect(&s).await;
    let (head, body) = ok(
        &mut c,
        "POST /body HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye",
    )
    .await;
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, b"bye");
    assert!(closed(&mut c).await, "the edge closes after the answer");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_writes_take_the_proxy_and_are_answered_alike() {
    let s = Setup::start(EdgeConfig::default()).await;
    let mut c = connect(&s).await;
    // A chunked body, then a plain one, on one connection.
    let (head, body) = ok(&mut c, "POST /body HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await;
    assert!(head.contains("x-cache-status: bypass"), "{head}");
    assert_eq!(body, b"abcde");
    let (head, body) = ok(
        &mut c,
        "POST /body HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nfg",
    )
    .await;
    assert!(head.contains("x-cache-status: bypass"), "{head}");
    assert_eq!(body, b"fg");
    // HTTP/1.0.
    let mut c = connect(&s).await;
    let (head, body) = exchange(
        &mut c,
        "POST /body HTTP/1.0\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi",
    )
    .await;
    assert!(
        head.starts_with("http/1.") && head.contains(" 200 "),
        "{head}"
    );
    assert_eq!(body, b"hi");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_short_is_not_passed_off_as_whole() {
    let s = Setup::start(EdgeConfig::default()).await;
    // A streamed answer that fails: the body is not ended, the connection
    // closes.
    let text = all_of_one_answer(
        &s,
        b"POST /fails HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("first-part;"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
    // An answer shorter than its declared length: what there is, then the
    // connection closes (a client would otherwise wait for the rest).
    let text = all_of_one_answer(
        &s,
        b"POST /short HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-length: 100\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nshort"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_speak_for_the_edge() {
    let s = Setup::start(EdgeConfig::default()).await;
    let mut c = connect(&s).await;
    // No Host: the client's own X-Forwarded-Host does not reach the app.
    let (_, body) = ok(&mut c, "POST /echo HTTP/1.1\r\nx-forwarded-host: evil\r\nx-real-ip: 6.6.6.6\r\ncontent-length: 0\r\n\r\n").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["x-forwarded-host"], serde_json::Value::Null, "{v}");
    assert_eq!(v["x-real-ip"], "127.0.0.1", "{v}");
    s.stop().await;
}

/// Waits (up to 10 s) until `metrics` count `n` requests in flight.
async fn in_flight_reaches(metrics: &EdgeMetrics, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.inflight.get() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "in flight: {} (expected {n})",
            metrics.inflight.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_counted_until_they_end_however_they_end() {
    let s = Setup::start(EdgeConfig::default()).await;
    // A write waiting for the rest of its body is in flight.
    let mut c = connect(&s).await;
    c.get_mut()
        .write_all(b"POST /body HTTP/1.1\r\nhost: t\r\ncontent-length: 6\r\n\r\nabc")
        .await
        .unwrap();
    in_flight_reaches(&s.metrics, 1).await;
    c.get_mut().write_all(b"def").await.unwrap();
    let (_, body) = answer(&mut c).await;
    assert_eq!(body, b"abcdef");
    // Reads through the proxy, a head that is not a request, a client that
    // leaves mid-body: none stays counted.
    assert_eq!(s.get("/v1/tools").await.status(), 200);
    let text = all_of_one_answer(&s, b"POST /a<b HTTP/1.1\r\ncontent-length: 0\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    let mut c = connect(&s).await;
    c.get_mut()
        .write_all(b"POST /body HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nab")
        .await
        .unwrap();
    in_flight_reaches(&s.metrics, 1).await;
    drop(c);
    in_flight_reaches(&s.metrics, 0).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_short_is_not_handed_over() {
    let s = Setup::start(EdgeConfig::default()).await;
    let mut c = connect(&s).await;
    c.get_mut()
        .write_all(b"POST /body HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    c.get_mut().shutdown().await.unwrap();
    // The client is gone: no answer (as on the proxy lane), just the close.
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // A target that httparse takes but is not a URI.
    let text = all_of_one_answer(
        &s,
        b"POST /a<b HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_share_a_keep_alive_connection() {
    // Writes are served on the direct lane, reads through the proxy: one
    // connection goes back and forth between them.
    let s = Setup::start(EdgeConfig::default()).await;
    let tcp = tokio::net::TcpStream::connect(s.edge.addr).await.unwrap();
    let mut c = BufReader::new(tcp);
    let post = "POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
    let get = "GET /v1/tools HTTP/1.1\r\nhost: t\r\n\r\n";
    let expected = [
        (post, "bypass"),
        (get, "miss"),
        (post, "bypass"),
        (get, "hit"),
        (post, "bypass"),
    ];
    for (i, (request, status)) in expected.into_iter().enumerate() {
        let (head, body) = exchange(&mut c, request).await;
        assert!(head.starts_with("http/1.1 200"), "request {i}: {head}");
        assert!(
            head.contains(&format!("x-cache-status: {status}\r\n")),
            "request {i}: {head}"
        );
        assert!(!head.contains("connection: close"), "request {i}: {head}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v.is_object(), "request {i}");
    }
    assert_eq!(s.origin.tools_calls.load(Ordering::SeqCst), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_writes_are_compressed_as_negotiated() {
    let s = Setup::start(EdgeConfig::default()).await;
    let url = format!("http://{}/big", s.edge.addr);
    let plain = s.http.post(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() > 500, "{}", plain.len());
    let r = s
        .http
        .post(&url)
        .header("accept-encoding", "br;q=0, gzip;q=0.8, identity;q=0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(cache_status(&r), "BYPASS");
    let packed = r.bytes().await.unwrap();
    assert!(packed.len() < plain.len());
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, plain);
    // Small answers are not worth it.
    let r = s
        .http
        .post(format!("http://{}/echo", s.edge.addr))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    s.stop().await;
}
