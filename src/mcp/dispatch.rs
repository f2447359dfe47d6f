//! One dispatcher for every transport: the protocol-level methods
//! (initialize, ping, logging, discovery, notifications) are answered here;
//! feature methods go to an [`McpHandler`] (the gateway, or a test fixture).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::jsonrpc::{self, Message, RpcError};
use super::protocol;
use super::session::{Peer, Session};
use crate::access::Principal;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything a handler knows about the request it serves.
#[derive(Clone)]
pub struct Ctx {
    pub principal: Option<Arc<Principal>>,
    pub server_id: Option<String>,
    pub session: Option<Arc<Session>>,
    pub peer: Peer,
    pub request_id: Value,
    pub progress_token: Option<Value>,
    pub cancel: CancellationToken,
    pub protocol_version: String,
    pub meta: Value,
    /// Headers of a stateless request that a relay passes on as they are
    /// (`Mcp-Param-*`).
    pub forward_headers: Vec<(String, String)>,
}

impl Ctx {
    pub fn new(principal: Option<Arc<Principal>>, server_id: Option<String>) -> Ctx {
        Ctx {
            principal,
            server_id,
            session: None,
            peer: Peer::default(),
            request_id: Value::Null,
            progress_token: None,
            cancel: CancellationToken::new(),
            protocol_version: protocol::LATEST.to_owned(),
            meta: Value::Null,
            forward_headers: Vec::new(),
        }
    }

    /// Sends `notifications/progress` for this request, if the client asked.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        if let Some(token) = &self.progress_token {
            let mut p = json!({"progressToken": token, "progress": progress});
            if let Some(t) = total {
                p["total"] = json!(t);
            }
            if let Some(m) = message {
                p["message"] = json!(m);
            }
            self.peer.notify("notifications/progress", p);
        }
    }
}

pub trait McpHandler: Send + Sync + 'static {
    fn server_info(&self) -> Value;
    fn capabilities(&self, ctx: &Ctx) -> Value;
    fn instructions(&self) -> Option<String> {
        None
    }
    /// Feature methods: tools, resources, prompts, completion.
    fn handle<'a>(
        &'a self,
        ctx: &'a Ctx,
        method: &'a str,
        params: Value,
    ) -> BoxFut<'a, Result<jsonrpc::Json, RpcError>>;
    /// Is this principal allowed to open this scope (a virtual server id)?
    fn check_scope(
        &self,
        _principal: Option<&Principal>,
        _server_id: Option<&str>,
    ) -> Result<(), RpcError> {
        Ok(())
    }
    /// Called when a downstream session ends.
    fn session_closed(&self, _session: &Session) {}
    /// The input schema of a tool this caller may call, for the checks of
    /// its mirrored `Mcp-Param-*` headers (stateless revision).
    fn tool_schema(
        &self,
        _principal: Option<&Principal>,
        _server_id: Option<&str>,
        _name: &str,
    ) -> Option<Value> {
        None
    }
    /// Told of each answered request (for metrics): its method, whether it
    /// succeeded, and how long it took.
    fn observe(&self, _ctx: &Ctx, _method: &str, _ok: bool, _elapsed: std::time::Duration) {}
    /// What changed, as `(notification method, resource uri)`, for
    /// `subscriptions/listen` streams; `None`: nothing is ever told.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<(String, Option<String>)>> {
        None
    }
}

/// The answer to a request: its serialized JSON-RPC response, and the error
/// code when it is an error, so transports choose an HTTP status from the
/// type rather than from the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub json: String,
    pub error_code: Option<i64>,
    /// How long the (successful) answer may be kept, and by whom.
    pub cache: Option<jsonrpc::CacheHint>,
}

pub struct Dispatcher<H: McpHandler> {
    pub handler: Arc<H>,
}

impl<H: McpHandler> Clone for Dispatcher<H> {
    fn clone(&self) -> Self {
        Dispatcher {
            handler: self.handler.clone(),
        }
    }
}

/// Methods whose 2026-07-28 results must say how long they may be kept.
pub const CACHEABLE: &[&str] = &[
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// The 2026-07-28 revision requires `resultType` on every result, and
/// `ttlMs` + `cacheScope` on the cacheable ones (a result that says nothing
/// of its life may not be kept: 0 ms, private).
fn stateless_result(method: &str, raw: jsonrpc::Json) -> jsonrpc::Json {
    let hint = raw.cache();
    let needs_hints = CACHEABLE.contains(&method);
    match serde_json::from_str::<Value>(raw.get()) {
        // An input-required result says nothing of caching, and is never kept.
        Ok(Value::Object(m)) if m.get("resultType").is_some_and(|t| t == "input_required") => {
            jsonrpc::raw(&Value::Object(m))
        }
        Ok(Value::Object(mut m))
            if !m.contains_key("resultType") || (needs_hints && !m.contains_key("ttlMs")) =>
        {
            m.entry("resultType").or_insert_with(|| json!("complete"));
            if needs_hints {
                let h = hint.unwrap_or(jsonrpc::CacheHint::private(0));
                m.entry("ttlMs").or_insert_with(|| json!(h.ttl_ms));
                m.entry("cacheScope").or_insert_with(|| json!(h.scope()));
            }
            jsonrpc::raw(&Value::Object(m)).with_cache(hint)
        }
        _ => raw,
    }
}

/// RFC 5424 severities as MCP names them, least severe first.
pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Where a session's `logging/setLevel` is kept for the other replicas.
pub const LOG_LEVEL_KEY: &str = "log_level";

/// Whether a log message at `level` passes a session set to `threshold`.
pub fn log_passes(level: &str, threshold: &str) -> bool {
    let rank = |l: &str| LOG_LEVELS.iter().position(|x| *x == l);
    match (rank(level), rank(threshold)) {
        (Some(l), Some(t)) => l >= t,
        _ => true,
    }
}

impl<H: McpHandler> Dispatcher<H> {
    pub fn new(handler: Arc<H>) -> Self {
        Dispatcher { handler }
    }

    /// Handles one message. Requests produce a reply; notifications and
    /// client responses produce nothing.
    pub async fn dispatch(&self, mut ctx: Ctx, msg: Message) -> Option<Reply> {
        match msg {
            Message::Request { id, method, params } => {
                ctx.request_id = id.clone();
                ctx.progress_token = params.pointer("/_meta/progressToken").cloned();
                ctx.meta = params.get("_meta").cloned().unwrap_or(Value::Null);
                if let Some(v) = ctx.meta.get(protocol::META_VERSION).and_then(Value::as_str) {
                    ctx.protocol_version = v.to_owned();
                } else if let Some(s) = &ctx.session {
                    ctx.protocol_version = s.protocol_version();
                }
                if let Some(s) = &ctx.session {
                    s.touch();
                    let token = s.begin_request(&id);
                    ctx.cancel = token;
                }
                let started = std::time::Instant::now();
                let result = tokio::select! {
                    r = self.request(&ctx, &method, params) => r,
                    _ = ctx.cancel.cancelled() => Err(RpcError::new(jsonrpc::REQUEST_TIMEOUT, "request cancelled")),
                };
                self.handler
                    .observe(&ctx, &method, result.is_ok(), started.elapsed());
                if let Some(s) = &ctx.session {
                    s.end_request(&id);
                }
                let result = match result {
                    Ok(raw) if ctx.protocol_version == protocol::STATELESS => {
                        Ok(stateless_result(&method, raw))
                    }
                    other => other,
                };
                Some(match result {
                    Ok(raw) => Reply {
                        json: jsonrpc::success_raw(&id, &raw),
                        error_code: None,
                        cache: raw.cache(),
                    },
                    Err(e) => Reply {
                        json: jsonrpc::error(&id, &e).to_string(),
                        error_code: Some(e.code),
                        cache: None,
                    },
                })
            }
            Message::Notification { method, params } => {
                if let Some(s) = &ctx.session {
                    s.touch();
                    match method.as_str() {
                        "notifications/initialized" => s.update(|st| st.initialized = true),
                        "notifications/cancelled" => {
                            if let Some(id) = params.get("requestId") {
                                s.cancel_request(id);
                            }
                        }
                        _ => {}
                    }
                }
                None
            }
            Message::Response { id, result } => {
                if let Some(s) = &ctx.session {
                    s.complete(&id, result);
                }
                None
            }
        }
    }

    async fn request(
        &self,
        ctx: &Ctx,
        method: &str,
        params: Value,
    ) -> Result<jsonrpc::Json, RpcError> {
        match method {
            "initialize" => self.initialize(ctx, params),
            "ping" => Ok(jsonrpc::raw(&json!({}))),
            "logging/setLevel" => {
                let level = params.get("level").and_then(Value::as_str).unwrap_or("");
                if !LOG_LEVELS.contains(&level) {
                    return Err(RpcError::invalid_params(format!(
                        "level must be one of {}",
                        LOG_LEVELS.join(", ")
                    )));
                }
                if let Some(s) = &ctx.session {
                    s.update(|st| st.log_level = level.to_owned());
                    // Any replica that serves the session later keeps it.
                    s.net().state_set(&s.sid, LOG_LEVEL_KEY, level.to_owned());
                }
                Ok(jsonrpc::raw(&json!({})))
            }
            "server/discover" => {
                let info = self.handler.server_info();
                let mut result = json!({
                    "supportedVersions": protocol::SUPPORTED,
                    "capabilities": self.handler.capabilities(ctx),
                    // In the body too, for clients of the first drafts.
                    "serverInfo": info,
                    "_meta": {super::stateless::META_SERVER_INFO: info},
                });
                // Absent, not null: strict clients refuse a null here.
                if let Some(i) = self.handler.instructions() {
                    result["instructions"] = json!(i);
                }
                Ok(jsonrpc::raw(&result).with_cache(Some(jsonrpc::CacheHint::private(60_000))))
            }
            _ => {
                let params = if params.is_null() { json!({}) } else { params };
                if !params.is_object() {
                    return Err(RpcError::invalid_params("params must be an object"));
                }
                self.handler.handle(ctx, method, params).await
            }
        }
    }

    fn initialize(&self, ctx: &Ctx, params: Value) -> Result<jsonrpc::Json, RpcError> {
        let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
            return Err(RpcError::invalid_params(
                "initialize: protocolVersion is required",
            ));
        };
        let version = protocol::negotiate(requested);
        if let Some(s) = &ctx.session {
            s.update(|st| {
                st.protocol_version = version.to_owned();
                st.client_capabilities = params
                    .get("capabilities")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                st.client_info = params
                    .get("clientInfo")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
            });
        }
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": self.handler.capabilities(ctx),
            "serverInfo": self.handler.server_info(),
        });
        if let Some(i) = self.handler.instructions() {
            result["instructions"] = json!(i);
        }
        Ok(jsonrpc::raw(&result))
    }
}
