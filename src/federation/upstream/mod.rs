//! Client side of MCP: one connection to an upstream server, over one of a
//! closed set of transports — Streamable HTTP ([`streamable`]), legacy
//! HTTP+SSE ([`sse`]) or stdio ([`stdio`]); the last two share the message
//! stream of [`stream`]. Messages the upstream sends while a call is running
//! (progress, logs, sampling and elicitation requests) are handed to that
//! call's [`Relay`].

mod sse;
pub mod stateless;
mod stdio;
mod stream;
mod streamable;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::federation::clients::HttpClients;
use crate::mcp::dispatch::BoxFut;
use crate::mcp::jsonrpc::{self, RpcError};
use crate::mcp::protocol;
pub use crate::registry::model::Transport;
use stream::StreamConn;
use streamable::HttpConn;

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
    /// The SSRF guard refused the upstream's address: a setting or the
    /// registration is wrong, not the upstream.
    #[error("upstream {0} refused by the SSRF guard: {1}")]
    Refused(String, crate::federation::ssrf::SsrfRefusal),
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

/// Tells discovery what an upstream said unasked: a `*/list_changed` is
/// taken (true: discovery refreshes the gateway); a
/// `notifications/resources/updated` is told too but still relayed to the
/// client (false).
fn for_discovery(
    method: &str,
    params: &Value,
    to: Option<&mpsc::UnboundedSender<(String, Value)>>,
) -> bool {
    let list_changed = method.ends_with("/list_changed");
    if (list_changed || method == "notifications/resources/updated")
        && let Some(tx) = to
    {
        let _ = tx.send((method.to_owned(), params.clone()));
    }
    list_changed
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
pub(crate) struct CallRelay {
    pub(crate) inner: Arc<dyn Relay>,
    pub(crate) upstream_token: Value,
    client_token: Option<Value>,
}

impl CallRelay {
    pub(crate) fn notify(&self, method: &str, mut params: Value) {
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
pub(crate) async fn answer(
    relay: Arc<dyn Relay>,
    id: Value,
    method: String,
    params: Value,
) -> Value {
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

/// Where a connection's request ids start: random, below 2^40 (exact in a
/// JavaScript number), so that replicas sharing one upstream session never
/// have the same id in flight.
fn first_request_id() -> u64 {
    (rand::random::<u64>() >> 24).max(1)
}

/// What another replica needs to continue an upstream Streamable HTTP
/// session: its id and the negotiated protocol version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resumed {
    pub session_id: String,
    pub protocol_version: String,
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
    Http(Arc<HttpConn>),
    Stream(Arc<StreamConn>),
}

impl Upstream {
    /// Connects and performs the `initialize` handshake, declaring
    /// `client_capabilities` (the downstream client's, when relaying).
    pub async fn connect(
        spec: UpstreamSpec,
        client_capabilities: Value,
        http: &HttpClients,
        timeout: Duration,
        on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
        session_relay: Option<Arc<dyn Relay>>,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let inner = match spec.transport {
            Transport::StreamableHttp => {
                Inner::Http(Arc::new(HttpConn::new(&spec, http, on_unsolicited.clone())))
            }
            Transport::Sse => {
                Inner::Stream(sse::connect(&spec, &http.get(), timeout, on_unsolicited).await?)
            }
            Transport::Stdio => Inner::Stream(stdio::spawn(&spec, on_unsolicited)?),
        };
        let mut up = Upstream {
            spec,
            inner,
            server_capabilities: json!({}),
            server_info: json!({}),
            protocol_version: protocol::LATEST.into(),
            next_id: AtomicU64::new(first_request_id()),
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
            h.set_version(&up.protocol_version);
        }
        up.notify("notifications/initialized", Value::Null).await?;
        if let Some(opened) = up.listen(session_relay) {
            // Bounded: a server that never answers the GET does not hold
            // the connection up.
            let _ = tokio::time::timeout(Duration::from_secs(2), opened).await;
        }
        Ok(Arc::new(up))
    }

    /// Continues an upstream session another replica opened (no
    /// handshake: the upstream already knows it). If the upstream has
    /// forgotten it, the first call fails as undelivered and the caller
    /// connects afresh.
    pub fn resume(
        spec: UpstreamSpec,
        http: &HttpClients,
        resumed: Resumed,
        on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
        session_relay: Option<Arc<dyn Relay>>,
    ) -> Arc<Upstream> {
        let conn = Arc::new(HttpConn::new(&spec, http, on_unsolicited));
        conn.set_version(&resumed.protocol_version);
        conn.set_session(&resumed.session_id);
        let up = Upstream {
            spec,
            inner: Inner::Http(conn),
            server_capabilities: json!({}),
            server_info: json!({}),
            protocol_version: resumed.protocol_version,
            next_id: AtomicU64::new(first_request_id()),
        };
        let _ = up.listen(session_relay);
        Arc::new(up)
    }

    /// Opens the session's standalone stream (Streamable HTTP with a
    /// session): what arrives there goes to the call in flight, else to
    /// `session_relay` (the downstream session this connection serves).
    fn listen(
        &self,
        session_relay: Option<Arc<dyn Relay>>,
    ) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let Inner::Http(h) = &self.inner else {
            return None;
        };
        h.session_id()?;
        if let Some(r) = session_relay {
            h.set_session_relay(r);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(h.clone().listen(self.spec.name.clone(), tx));
        Some(rx)
    }

    /// What another replica needs to continue this session, when it is one
    /// (Streamable HTTP with a session id).
    pub fn resumable(&self) -> Option<Resumed> {
        match &self.inner {
            Inner::Http(h) => h.session_id().map(|session_id| Resumed {
                session_id,
                protocol_version: self.protocol_version.clone(),
            }),
            Inner::Stream(_) => None,
        }
    }

    pub fn is_alive(&self) -> bool {
        match &self.inner {
            Inner::Http(h) => h.is_alive(),
            Inner::Stream(s) => s.is_alive(),
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
        match &self.inner {
            Inner::Stream(s) => s.close(),
            // Ends the GET stream task (the session itself is not ended:
            // another replica may continue it).
            Inner::Http(h) => h.halt(),
        }
    }
}

pub(crate) fn rpc_result(
    name: &str,
    result: Result<Value, RpcError>,
) -> Result<Value, UpstreamError> {
    result.map_err(|e| UpstreamError::Rpc(name.to_owned(), e))
}
