//! Client side of MCP: one connection to an upstream server over Streamable
//! HTTP, legacy HTTP+SSE or stdio. Messages the upstream sends while a call
//! is running (progress, logs, sampling and elicitation requests) are handed
//! to that call's [`Relay`].

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::mcp::dispatch::BoxFut;
use crate::mcp::jsonrpc::{self, Message, RpcError};
use crate::mcp::protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    StreamableHttp,
    Sse,
    Stdio,
}

impl Transport {
    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "STREAMABLEHTTP" => Some(Transport::StreamableHttp),
            "SSE" => Some(Transport::Sse),
            "STDIO" => Some(Transport::Stdio),
            _ => None,
        }
    }
}

/// How to reach an upstream.
#[derive(Clone)]
pub struct UpstreamSpec {
    pub name: String,
    pub url: String,
    pub transport: Transport,
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers carry credentials: never print them.
        f.debug_struct("UpstreamSpec")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing was delivered: safe to retry.
    #[error("cannot connect to upstream {0}: {1}")]
    Connect(String, String),
    #[error("upstream {0} failed: {1}")]
    Failed(String, String),
    #[error("upstream {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("request to upstream {0} was cancelled")]
    Cancelled(String),
    #[error("upstream {0} answered with an error: {1}")]
    Rpc(String, RpcError),
}

impl UpstreamError {
    pub fn retryable(&self) -> bool {
        matches!(self, UpstreamError::Connect(..))
    }

    pub fn to_rpc(&self) -> RpcError {
        match self {
            UpstreamError::Rpc(_, e) => e.clone(),
            UpstreamError::Timeout(..) | UpstreamError::Cancelled(_) => {
                RpcError::new(jsonrpc::REQUEST_TIMEOUT, self.to_string())
            }
            _ => RpcError::upstream(self.to_string()),
        }
    }
}

/// Receives what an upstream says to the client during a call.
pub trait Relay: Send + Sync {
    fn notify(&self, method: &str, params: Value);
    fn request(&self, method: String, params: Value) -> BoxFut<'static, Result<Value, RpcError>>;
}

/// A relay that drops notifications and refuses requests (no client to ask).
pub struct NoRelay;

impl Relay for NoRelay {
    fn notify(&self, _method: &str, _params: Value) {}
    fn request(&self, method: String, _params: Value) -> BoxFut<'static, Result<Value, RpcError>> {
        Box::pin(async move { Err(RpcError::method_not_found(&method)) })
    }
}

/// Maps the progress token sent upstream back to the client's own.
struct CallRelay {
    inner: Arc<dyn Relay>,
    upstream_token: Value,
    client_token: Option<Value>,
}

impl CallRelay {
    fn notify(&self, method: &str, mut params: Value) {
        if method == "notifications/progress" {
            match &self.client_token {
                Some(t) if params.get("progressToken") == Some(&self.upstream_token) => {
                    params["progressToken"] = t.clone()
                }
                _ => return,
            }
        }
        self.inner.notify(method, params);
    }
}

/// Serves a server-to-client request through the relay and sends the answer back.
async fn answer(relay: Arc<dyn Relay>, id: Value, method: String, params: Value) -> Value {
    match relay.request(method, params).await {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err(e) => jsonrpc::error(&id, &e),
    }
}

static TOKENS: AtomicU64 = AtomicU64::new(1);

fn with_progress_token(mut params: Value, token: &Value) -> Value {
    if !params.is_object() {
        params = json!({});
    }
    let meta = params
        .as_object_mut()
        .expect("object")
        .entry("_meta")
        .or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.insert("progressToken".into(), token.clone());
    }
    params
}

/// One upstream connection, initialized.
pub struct Upstream {
    pub spec: UpstreamSpec,
    inner: Inner,
    pub server_capabilities: Value,
    pub server_info: Value,
    pub protocol_version: String,
    next_id: AtomicU64,
}

enum Inner {
    Http(HttpConn),
    Stream(Arc<StreamConn>),
}

impl Upstream {
    /// Connects and performs the `initialize` handshake, declaring
    /// `client_capabilities` (the downstream client's, when relaying).
    pub async fn connect(
        spec: UpstreamSpec,
        client_capabilities: Value,
        http: &reqwest::Client,
        timeout: Duration,
        on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let inner = match spec.transport {
            Transport::StreamableHttp => Inner::Http(HttpConn {
                url: spec.url.clone(),
                client: http.clone(),
                headers: spec.headers.clone(),
                session: Mutex::new(None),
                version: Mutex::new(None),
                alive: AtomicBool::new(true),
                on_unsolicited: on_unsolicited.clone(),
            }),
            Transport::Sse => {
                Inner::Stream(StreamConn::sse(&spec, http, timeout, on_unsolicited).await?)
            }
            Transport::Stdio => Inner::Stream(StreamConn::stdio(&spec, on_unsolicited)?),
        };
        let mut up = Upstream {
            spec,
            inner,
            server_capabilities: json!({}),
            server_info: json!({}),
            protocol_version: protocol::LATEST.into(),
            next_id: AtomicU64::new(1),
        };
        let init = json!({
            "protocolVersion": protocol::LATEST,
            "capabilities": client_capabilities,
            "clientInfo": {"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")},
        });
        let r = up
            .call("initialize", init, None, timeout, CancellationToken::new())
            .await
            .map_err(|e| match e {
                UpstreamError::Rpc(n, err) => {
                    UpstreamError::Failed(n, format!("initialize refused: {}", err.message))
                }
                other => other,
            })?;
        up.protocol_version = r
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(protocol::LATEST)
            .to_owned();
        up.server_capabilities = r.get("capabilities").cloned().unwrap_or_else(|| json!({}));
        up.server_info = r.get("serverInfo").cloned().unwrap_or_else(|| json!({}));
        if let Inner::Http(h) = &up.inner {
            *h.version.lock().expect("lock") = Some(up.protocol_version.clone());
        }
        up.notify("notifications/initialized", Value::Null).await?;
        Ok(Arc::new(up))
    }

    pub fn is_alive(&self) -> bool {
        match &self.inner {
            Inner::Http(h) => h.alive.load(Ordering::Relaxed),
            Inner::Stream(s) => s.alive.load(Ordering::Relaxed),
        }
    }

    pub async fn notify(&self, method: &str, params: Value) -> Result<(), UpstreamError> {
        let msg = jsonrpc::notification(method, &params);
        match &self.inner {
            Inner::Http(h) => h.post_notification(&self.spec.name, &msg).await,
            Inner::Stream(s) => s.send(&self.spec.name, msg),
        }
    }

    /// Sends a request and waits for its answer, relaying what the upstream
    /// says meanwhile. On timeout or cancellation the upstream is told.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        relay: Option<(Arc<dyn Relay>, Option<Value>)>,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<Value, UpstreamError> {
        let id = Value::from(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (params, relay) = match relay {
            Some((inner, client_token)) => {
                let upstream_token =
                    json!(format!("gw-{}", TOKENS.fetch_add(1, Ordering::Relaxed)));
                let params = if client_token.is_some() {
                    with_progress_token(params, &upstream_token)
                } else {
                    params
                };
                (
                    params,
                    Some(Arc::new(CallRelay {
                        inner,
                        upstream_token,
                        client_token,
                    })),
                )
            }
            None => (params, None),
        };
        let msg = jsonrpc::request(&id, method, &params);
        let name = self.spec.name.clone();
        let fut = async {
            match &self.inner {
                Inner::Http(h) => h.request(&name, &id, &msg, relay).await,
                Inner::Stream(s) => s.request(&name, &id, msg, relay).await,
            }
        };
        let result = tokio::select! {
            r = fut => r,
            _ = tokio::time::sleep(timeout) => Err(UpstreamError::Timeout(name.clone(), timeout)),
            _ = cancel.cancelled() => Err(UpstreamError::Cancelled(name.clone())),
        };
        if matches!(
            result,
            Err(UpstreamError::Timeout(..) | UpstreamError::Cancelled(_))
        ) {
            if let Inner::Stream(s) = &self.inner {
                s.forget(&id);
            }
            let reason = if cancel.is_cancelled() {
                "cancelled by the client"
            } else {
                "timed out at the gateway"
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.notify(
                    "notifications/cancelled",
                    json!({"requestId": id, "reason": reason}),
                ),
            )
            .await;
        }
        result
    }

    pub async fn close(&self) {
        match &self.inner {
            Inner::Http(h) => h.close().await,
            Inner::Stream(s) => s.close(),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Inner::Stream(s) = &self.inner {
            s.close();
        }
    }
}

fn rpc_result(name: &str, result: Result<Value, RpcError>) -> Result<Value, UpstreamError> {
    result.map_err(|e| UpstreamError::Rpc(name.to_owned(), e))
}

/// Streamable HTTP: each request is a POST whose answer is JSON or an SSE
/// stream carrying the call's notifications and requests, then its result.
struct HttpConn {
    url: String,
    client: reqwest::Client,
    headers: Vec<(String, String)>,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    alive: AtomicBool,
    on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
}

impl HttpConn {
    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(s) = self.session.lock().expect("lock").clone() {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = self.version.lock().expect("lock").clone() {
            req = req.header("mcp-protocol-version", v);
        }
        req
    }

    fn connect_error(&self, name: &str, e: reqwest::Error) -> UpstreamError {
        self.alive.store(false, Ordering::Relaxed);
        if e.is_connect() || e.is_builder() {
            UpstreamError::Connect(name.to_owned(), e.to_string())
        } else if e.is_timeout() {
            UpstreamError::Failed(name.to_owned(), "timed out".into())
        } else {
            UpstreamError::Failed(name.to_owned(), e.to_string())
        }
    }

    async fn post_notification(&self, name: &str, msg: &Value) -> Result<(), UpstreamError> {
        let resp = self
            .post(msg)
            .send()
            .await
            .map_err(|e| self.connect_error(name, e))?;
        if !resp.status().is_success() {
            return Err(UpstreamError::Failed(
                name.to_owned(),
                format!("HTTP {} for a notification", resp.status()),
            ));
        }
        Ok(())
    }

    async fn request(
        &self,
        name: &str,
        id: &Value,
        msg: &Value,
        relay: Option<Arc<CallRelay>>,
    ) -> Result<Value, UpstreamError> {
        let resp = self
            .post(msg)
            .send()
            .await
            .map_err(|e| self.connect_error(name, e))?;
        if let Some(sid) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *self.session.lock().expect("lock") = Some(sid.to_owned());
        }
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && self.session.lock().expect("lock").is_some()
        {
            // The upstream forgot our session (it restarted): start over.
            self.alive.store(false, Ordering::Relaxed);
            return Err(UpstreamError::Connect(
                name.to_owned(),
                "upstream session expired".into(),
            ));
        }
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ctype.starts_with("text/event-stream") {
            return self.read_stream(name, id, resp, relay).await;
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.connect_error(name, e))?;
        match jsonrpc::parse(&body) {
            Ok(Message::Response { id: rid, result }) if &rid == id => rpc_result(name, result),
            Ok(_) | Err(_) if !status.is_success() => Err(UpstreamError::Failed(
                name.to_owned(),
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            )),
            Ok(Message::Response { .. }) => Err(UpstreamError::Failed(
                name.to_owned(),
                "answer for another request".into(),
            )),
            Ok(_) => Err(UpstreamError::Failed(
                name.to_owned(),
                "expected a response".into(),
            )),
            Err((_, e)) => Err(UpstreamError::Failed(
                name.to_owned(),
                format!("unreadable answer: {}", e.message),
            )),
        }
    }

    async fn read_stream(
        &self,
        name: &str,
        id: &Value,
        resp: reqwest::Response,
        relay: Option<Arc<CallRelay>>,
    ) -> Result<Value, UpstreamError> {
        let mut events = resp.bytes_stream().eventsource();
        while let Some(ev) = events.next().await {
            let ev = ev.map_err(|e| {
                UpstreamError::Failed(name.to_owned(), format!("broken event stream: {e}"))
            })?;
            if ev.data.trim().is_empty() {
                continue;
            }
            match jsonrpc::parse(ev.data.as_bytes()) {
                Ok(Message::Response { id: rid, result }) if &rid == id => {
                    return rpc_result(name, result);
                }
                Ok(Message::Notification { method, params })
                    if method.ends_with("/list_changed") =>
                {
                    if let Some(tx) = &self.on_unsolicited {
                        let _ = tx.send((method, params));
                    }
                }
                Ok(Message::Notification { method, params }) => {
                    if let Some(r) = &relay {
                        r.notify(&method, params);
                    }
                }
                Ok(Message::Request {
                    id: rid,
                    method,
                    params,
                }) => {
                    let inner: Arc<dyn Relay> = match &relay {
                        Some(r) => r.inner.clone(),
                        None => Arc::new(NoRelay),
                    };
                    let reply = answer(inner, rid, method, params).await;
                    if let Err(e) = self.post_notification(name, &reply).await {
                        tracing::warn!(upstream = name, error = %e, "could not deliver an answer upstream");
                    }
                }
                _ => {}
            }
        }
        Err(UpstreamError::Failed(
            name.to_owned(),
            "the upstream closed the stream before answering".into(),
        ))
    }

    async fn close(&self) {
        let sid = self.session.lock().expect("lock").clone();
        if let Some(sid) = sid {
            let mut req = self.client.delete(&self.url).header("mcp-session-id", sid);
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), req.send()).await;
        }
    }
}

type Pending = Mutex<
    HashMap<
        String,
        (
            oneshot::Sender<Result<Value, RpcError>>,
            Option<Arc<CallRelay>>,
        ),
    >,
>;

/// A message stream (legacy SSE or stdio): one reader task routes answers to
/// their callers; other messages go to the relay of the call they belong to.
struct StreamConn {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    alive: AtomicBool,
    stop: CancellationToken,
    on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
}

impl StreamConn {
    fn new(
        out: mpsc::UnboundedSender<String>,
        on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
    ) -> Arc<StreamConn> {
        Arc::new(StreamConn {
            out,
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            stop: CancellationToken::new(),
            on_unsolicited,
        })
    }

    fn send(&self, name: &str, msg: Value) -> Result<(), UpstreamError> {
        if !self.alive.load(Ordering::Relaxed) || self.out.send(msg.to_string()).is_err() {
            return Err(UpstreamError::Connect(
                name.to_owned(),
                "connection is closed".into(),
            ));
        }
        Ok(())
    }

    async fn request(
        &self,
        name: &str,
        id: &Value,
        msg: Value,
        relay: Option<Arc<CallRelay>>,
    ) -> Result<Value, UpstreamError> {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("lock")
            .insert(id.to_string(), (tx, relay));
        if let Err(e) = self.send(name, msg) {
            self.forget(id);
            return Err(e);
        }
        match rx.await {
            Ok(r) => rpc_result(name, r),
            Err(_) => Err(UpstreamError::Failed(
                name.to_owned(),
                "the upstream went away during the call".into(),
            )),
        }
    }

    fn forget(&self, id: &Value) {
        self.pending.lock().expect("lock").remove(&id.to_string());
    }

    /// The relay for a message that names no request: by progress token,
    /// else the most recent call in flight.
    fn relay_for(&self, params: &Value) -> Option<Arc<CallRelay>> {
        let pending = self.pending.lock().expect("lock");
        if let Some(token) = params.get("progressToken") {
            return pending
                .values()
                .filter_map(|(_, r)| r.clone())
                .find(|r| &r.upstream_token == token);
        }
        pending.values().filter_map(|(_, r)| r.clone()).last()
    }

    fn incoming(self: &Arc<Self>, raw: &[u8]) {
        match jsonrpc::parse(raw) {
            Ok(Message::Response { id, result }) => {
                if let Some((tx, _)) = self.pending.lock().expect("lock").remove(&id.to_string()) {
                    let _ = tx.send(result);
                }
            }
            Ok(Message::Notification { method, params }) => {
                if method.ends_with("/list_changed") {
                    if let Some(tx) = &self.on_unsolicited {
                        let _ = tx.send((method, params));
                    }
                } else if let Some(r) = self.relay_for(&params) {
                    r.notify(&method, params);
                }
            }
            Ok(Message::Request { id, method, params }) => {
                let relay: Arc<dyn Relay> = match self.relay_for(&Value::Null) {
                    Some(r) => r.inner.clone(),
                    None => Arc::new(NoRelay),
                };
                let me = self.clone();
                tokio::spawn(async move {
                    let reply = answer(relay, id, method, params).await;
                    let _ = me.out.send(reply.to_string());
                });
            }
            Err(_) => tracing::debug!("ignoring an unreadable message from an upstream"),
        }
    }

    fn fail_all(&self) {
        self.alive.store(false, Ordering::Relaxed);
        self.pending.lock().expect("lock").clear();
    }

    fn close(&self) {
        self.stop.cancel();
        self.fail_all();
    }

    async fn sse(
        spec: &UpstreamSpec,
        http: &reqwest::Client,
        timeout: Duration,
        on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
    ) -> Result<Arc<StreamConn>, UpstreamError> {
        let name = spec.name.clone();
        let mut req = http.get(&spec.url).header("accept", "text/event-stream");
        for (k, v) in &spec.headers {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| UpstreamError::Connect(name.clone(), e.to_string()))?;
        if !resp.status().is_success() {
            return Err(UpstreamError::Connect(
                name.clone(),
                format!("HTTP {}", resp.status()),
            ));
        }
        let mut events = resp.bytes_stream().eventsource();
        let endpoint = tokio::time::timeout(timeout, async {
            while let Some(Ok(ev)) = events.next().await {
                if ev.event == "endpoint" {
                    return Some(ev.data);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            UpstreamError::Connect(name.clone(), "no endpoint event on the SSE stream".into())
        })?;
        let post_url = url::Url::parse(&spec.url)
            .and_then(|base| base.join(endpoint.trim()))
            .map_err(|e| UpstreamError::Failed(name.clone(), format!("bad endpoint URL: {e}")))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let conn = StreamConn::new(tx, on_unsolicited);
        let reader = conn.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(Ok(ev)) if ev.event == "message" || ev.event.is_empty() => reader.incoming(ev.data.as_bytes()),
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = reader.stop.cancelled() => break,
                }
            }
            reader.fail_all();
        });
        let writer = conn.clone();
        let client = http.clone();
        let headers = spec.headers.clone();
        tokio::spawn(async move {
            while let Some(body) =
                tokio::select! { b = rx.recv() => b, _ = writer.stop.cancelled() => None }
            {
                let mut req = client
                    .post(post_url.clone())
                    .header("content-type", "application/json")
                    .body(body);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                if req.send().await.is_err() {
                    writer.fail_all();
                    break;
                }
            }
        });
        Ok(conn)
    }

    fn stdio(
        spec: &UpstreamSpec,
        on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
    ) -> Result<Arc<StreamConn>, UpstreamError> {
        let name = spec.name.clone();
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&spec.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                UpstreamError::Connect(name.clone(), format!("cannot start command: {e}"))
            })?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let conn = StreamConn::new(tx, on_unsolicited);
        let reader = conn.clone();
        let log_name = name.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::debug!(upstream = %log_name, "stderr: {l}");
            }
        });
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            loop {
                tokio::select! {
                    l = lines.next_line() => match l {
                        Ok(Some(l)) if !l.trim().is_empty() => reader.incoming(l.as_bytes()),
                        Ok(Some(_)) => {}
                        _ => break,
                    },
                    _ = reader.stop.cancelled() => break,
                }
            }
            reader.fail_all();
            // Shutdown as the spec asks: close stdin, then terminate.
            drop(child.stdin.take());
            if tokio::time::timeout(Duration::from_secs(2), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        });
        let stopper = conn.clone();
        tokio::spawn(async move {
            while let Some(line) =
                tokio::select! { l = rx.recv() => l, _ = stopper.stop.cancelled() => None }
            {
                if stdin.write_all(line.as_bytes()).await.is_err()
                    || stdin.write_all(b"\n").await.is_err()
                    || stdin.flush().await.is_err()
                {
                    break;
                }
            }
        });
        Ok(conn)
    }
}
