//! HTTP transports: plain JSON-RPC (`POST /rpc`) and Streamable HTTP
//! (`/mcp`, `/servers/{id}/mcp`): POST answered as JSON or as an SSE stream,
//! the standalone GET stream, DELETE, sessions bound to their principal,
//! protocol-version and Origin/Host checks.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::dispatch::{Ctx, Dispatcher, McpHandler};
use super::jsonrpc::{self, Message, RpcError};
use super::protocol;
use super::session::{Outbound, Peer, Session, SessionRefused, Sessions};
use super::stateless;
use crate::access::Principal;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// A request from a `Host` or `Origin` the endpoint does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ForeignOrigin(pub String);

/// DNS-rebinding protection: which `Host` and `Origin` values are accepted.
#[derive(Debug, Clone, Default)]
pub struct OriginGuard {
    /// Host names (no port); empty = any host.
    pub allowed_hosts: Vec<String>,
    /// Full origins (`scheme://host[:port]`); empty = same host as `Host`
    /// or one of `allowed_hosts`.
    pub allowed_origins: Vec<String>,
}

fn host_name(host_port: &str) -> String {
    let h = host_port.trim().to_ascii_lowercase();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_owned();
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => {
            name.to_owned()
        }
        _ => h,
    }
}

impl OriginGuard {
    /// A guard for a listener: loopback binds accept only loopback names.
    pub fn for_bind(host: &str, extra_hosts: &[String], origins: &[String]) -> OriginGuard {
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let mut allowed_hosts: Vec<String> =
            extra_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        if loopback {
            allowed_hosts.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
        }
        OriginGuard {
            allowed_hosts,
            allowed_origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), ForeignOrigin> {
        self.check_names(headers).map_err(ForeignOrigin)
    }

    fn check_names(&self, headers: &HeaderMap) -> Result<(), String> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(host_name);
        if !self.allowed_hosts.is_empty() {
            match &host {
                Some(h) if self.allowed_hosts.iter().any(|a| a == h) => {}
                Some(h) => return Err(format!("Host {h} is not allowed")),
                None => return Err("a Host header is required".into()),
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let origin = origin.trim_end_matches('/').to_ascii_lowercase();
            if origin == "null" {
                return Err("Origin null is not allowed".into());
            }
            if !self.allowed_origins.is_empty() {
                if !self.allowed_origins.contains(&origin) {
                    return Err(format!("Origin {origin} is not allowed"));
                }
            } else {
                let oh = url::Url::parse(&origin)
                    .ok()
                    .and_then(|u| u.host_str().map(host_name))
                    .ok_or_else(|| format!("Origin {origin} is malformed"))?;
                let ok = if self.allowed_hosts.is_empty() {
                    host.as_deref() == Some(oh.as_str())
                } else {
                    self.allowed_hosts.contains(&oh)
                };
                if !ok {
                    return Err(format!("Origin {origin} is not allowed"));
                }
            }
        }
        Ok(())
    }
}

pub struct Endpoint<H: McpHandler> {
    pub dispatcher: Dispatcher<H>,
    pub sessions: Arc<Sessions>,
    pub guard: OriginGuard,
    pub keepalive: Duration,
    pub stateful: bool,
}

pub(crate) fn owner_of(p: Option<&Principal>) -> String {
    p.map_or_else(|| "anonymous".to_owned(), Principal::scope_key)
}

pub(crate) fn http_error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        status,
        axum::Json(
            json!({"error": status.canonical_reason().unwrap_or("error"), "message": message}),
        ),
    )
        .into_response()
}

fn rpc_error(status: StatusCode, id: Value, e: RpcError) -> Response {
    (status, axum::Json(jsonrpc::error(&id, &e))).into_response()
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON answer that says how long it may be kept (the edge's MCP cache
/// reads this; so may any HTTP cache the operator puts in front).
fn json_answer(body: String, cache: Option<jsonrpc::CacheHint>) -> Response {
    let mut r = json_response(body);
    if let Some(h) = cache.filter(|h| h.ttl_ms >= 1000)
        && let Ok(v) = HeaderValue::from_str(&h.cache_control())
    {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(what) || v.contains("*/*"))
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /rpc`: one JSON-RPC message, a JSON answer, no session.
pub async fn rpc<H: McpHandler>(
    ep: &Endpoint<H>,
    principal: Option<Arc<Principal>>,
    body: Bytes,
) -> Response {
    let msg = match jsonrpc::parse(&body) {
        Ok(m) => m,
        Err((id, e)) => return rpc_error(StatusCode::BAD_REQUEST, id, e),
    };
    let ctx = Ctx::new(principal, None);
    match ep.dispatcher.dispatch(ctx, msg).await {
        Some(reply) => json_answer(reply.json, reply.cache),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// Common checks of every Streamable HTTP request (Origin/Host, protocol
/// version, scope). The error is the finished response.
#[allow(clippy::result_large_err)]
fn preflight<H: McpHandler>(
    ep: &Endpoint<H>,
    principal: Option<&Principal>,
    server_id: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    ep.guard
        .check(headers)
        .map_err(|m| http_error(StatusCode::FORBIDDEN, m.0))?;
    if let Some(v) = header_str(headers, VERSION_HEADER)
        && !protocol::is_supported(v)
    {
        return Err(http_error(
            StatusCode::BAD_REQUEST,
            format!("Unsupported protocol version: {v}"),
        ));
    }
    ep.dispatcher
        .handler
        .check_scope(principal, server_id)
        .map_err(|e| rpc_error(StatusCode::NOT_FOUND, Value::Null, e))?;
    Ok(())
}

/// The session the request names, if any: held here, or opened from its
/// sealed id (issued by any replica). `id` is the request's, for the error.
async fn named_session<H: McpHandler>(
    ep: &Endpoint<H>,
    principal: Option<&Principal>,
    server_id: Option<&str>,
    headers: &HeaderMap,
    id: &Value,
) -> Result<Option<Arc<Session>>, Response> {
    let Some(public_id) = header_str(headers, SESSION_HEADER) else {
        return Ok(None);
    };
    match ep
        .sessions
        .open(public_id, &owner_of(principal), server_id)
        .await
    {
        Ok(s) => Ok(Some(s)),
        Err(SessionRefused::Malformed) => Err(rpc_error(
            StatusCode::BAD_REQUEST,
            id.clone(),
            RpcError::invalid_request("malformed Mcp-Session-Id"),
        )),
        Err(SessionRefused::Full) => Err(http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open MCP sessions on this replica",
        )),
        Err(SessionRefused::NotFound) => Err(rpc_error(
            StatusCode::NOT_FOUND,
            id.clone(),
            RpcError::not_found("Session not found"),
        )),
    }
}

/// `POST /mcp`.
pub async fn post<H: McpHandler>(
    ep: &Endpoint<H>,
    principal: Option<Arc<Principal>>,
    server_id: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(m) = ep.guard.check(headers) {
        return http_error(StatusCode::FORBIDDEN, m.0);
    }
    if let Err(e) = ep
        .dispatcher
        .handler
        .check_scope(principal.as_deref(), server_id.as_deref())
    {
        return rpc_error(StatusCode::NOT_FOUND, Value::Null, e);
    }
    if let Some(ct) = header_str(headers, "content-type")
        && !ct.to_ascii_lowercase().starts_with("application/json")
    {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    if headers.contains_key(header::ACCEPT)
        && !accepts(headers, "application/json")
        && !accepts(headers, "text/event-stream")
    {
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must include application/json and text/event-stream",
        );
    }
    let msg = match jsonrpc::parse(&body) {
        Ok(m) => m,
        Err((id, e)) => return rpc_error(StatusCode::BAD_REQUEST, id, e),
    };
    let request_id = match &msg {
        Message::Request { id, .. } => id.clone(),
        _ => Value::Null,
    };
    let params = match &msg {
        Message::Request { params, .. } | Message::Notification { params, .. } => params.clone(),
        Message::Response { .. } => Value::Null,
    };
    let stateless = stateless::is_stateless(headers, &params);
    if stateless {
        if let Some(method) = msg.method()
            && let Err(r) = stateless::check(headers, method, &params)
        {
            return rpc_error(r.status, request_id, r.error);
        }
        if msg.method() == Some("tools/call")
            && let Some(schema) = ep.dispatcher.handler.tool_schema(
                principal.as_deref(),
                server_id.as_deref(),
                params.get("name").and_then(Value::as_str).unwrap_or(""),
            )
            && let Err(r) = stateless::check_param_headers(
                headers,
                &schema,
                params.get("arguments").unwrap_or(&Value::Null),
            )
        {
            return rpc_error(r.status, request_id, r.error);
        }
    } else if let Some(v) = header_str(headers, VERSION_HEADER)
        && !protocol::is_supported(v)
    {
        return http_error(
            StatusCode::BAD_REQUEST,
            format!("Unsupported protocol version: {v}"),
        );
    }
    let is_initialize = msg.method() == Some("initialize");
    // The stateless revision has no sessions: a session id is ignored.
    let (session, new_session) = if stateless {
        (None, false)
    } else if is_initialize && ep.stateful {
        match ep.sessions.create(
            owner_of(principal.as_deref()),
            server_id.clone(),
            protocol::LATEST,
        ) {
            Some(s) => (Some(s), true),
            None => {
                return http_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many open MCP sessions",
                );
            }
        }
    } else {
        match named_session(
            ep,
            principal.as_deref(),
            server_id.as_deref(),
            headers,
            &request_id,
        )
        .await
        {
            Ok(s) => (s, false),
            Err(r) => return r,
        }
    };
    if let Message::Request { .. } = msg {
    } else {
        let mut ctx = Ctx::new(principal, server_id);
        ctx.session = session;
        ep.dispatcher.dispatch(ctx, msg).await;
        return StatusCode::ACCEPTED.into_response();
    }
    if stateless && msg.method() == Some("subscriptions/listen") {
        return listen(ep, request_id, &params);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Outbound>();
    let mut ctx = Ctx::new(principal, server_id);
    ctx.session = session.clone();
    if stateless {
        ctx.forward_headers = headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("mcp-param-"))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
    }
    // A client that takes no stream on this POST gets what the request
    // says meanwhile on its session's stream (wherever that is).
    let streams = accepts(headers, "text/event-stream");
    ctx.peer = Peer {
        stream: streams.then(|| tx.clone()),
        session: session.clone(),
        // Stateless: log messages only when the request asked for a level.
        log_level: stateless.then(|| {
            params
                .pointer("/_meta")
                .and_then(|m| m.get(stateless::META_LOG_LEVEL))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
    };
    let dispatcher = ep.dispatcher.clone();
    tokio::spawn(async move {
        if let Some(reply) = dispatcher.dispatch(ctx, msg).await {
            let _ = tx.send(Outbound::reply(reply));
        }
    });
    let Some(first) = rx.recv().await else {
        return http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request produced no response",
        );
    };
    let mut resp = if first.last || !accepts(headers, "text/event-stream") {
        // A plain JSON answer: either nothing else was said, or the client
        // cannot take a stream (then intermediate messages are dropped).
        let mut last = first;
        while !last.last {
            match rx.recv().await {
                Some(m) => last = m,
                None => {
                    return http_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "request produced no response",
                    );
                }
            }
        }
        let status = match last.error_code {
            Some(code) if stateless && code == jsonrpc::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            Some(code) if stateless => stateless::error_status(code),
            _ => StatusCode::OK,
        };
        (status, json_answer(last.json, last.cache)).into_response()
    } else {
        sse_response(session.clone(), first, rx, ep.keepalive)
    };
    if new_session && let Some(s) = &session {
        // Sealed now that initialize has set the client's capabilities.
        let id = ep.sessions.register_sealed(s);
        resp.headers_mut().insert(
            SESSION_HEADER,
            HeaderValue::from_str(&id).expect("sealed ids are visible ASCII"),
        );
    }
    resp
}

/// `subscriptions/listen` (stateless revision): a stream that opens with
/// the acknowledgement of the filter it honours, then carries the list
/// changes the client asked for, each tagged with the listen request's id.
fn listen<H: McpHandler>(ep: &Endpoint<H>, id: Value, params: &Value) -> Response {
    const FLAGS: [(&str, &str); 3] = [
        ("toolsListChanged", "notifications/tools/list_changed"),
        ("promptsListChanged", "notifications/prompts/list_changed"),
        (
            "resourcesListChanged",
            "notifications/resources/list_changed",
        ),
    ];
    let asked = params.get("notifications").cloned().unwrap_or(Value::Null);
    let mut honoured = serde_json::Map::new();
    let mut wanted: Vec<&'static str> = Vec::new();
    for (flag, method) in FLAGS {
        if asked.get(flag) == Some(&Value::Bool(true)) {
            honoured.insert(flag.into(), Value::Bool(true));
            wanted.push(method);
        }
    }
    let uris: Vec<String> = asked
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !uris.is_empty() {
        honoured.insert("resourceSubscriptions".into(), json!(uris));
    }
    let tag = json!({stateless::META_SUBSCRIPTION: id});
    let ack = jsonrpc::notification(
        "notifications/subscriptions/acknowledged",
        &json!({"notifications": honoured, "_meta": tag}),
    );
    let changes = ep.dispatcher.handler.changes();
    let keepalive = ep.keepalive;
    let stream = async_stream::stream! {
        yield Ok::<_, Infallible>(frame_plain(&ack.to_string()));
        let Some(mut changes) = changes else {
            std::future::pending::<()>().await;
            return;
        };
        loop {
            let change = tokio::select! {
                c = changes.recv() => c,
                _ = tokio::time::sleep(keepalive) => {
                    yield Ok(Bytes::from_static(b":\n\n"));
                    continue;
                }
            };
            let (method, uri) = match change {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            let mut params = json!({"_meta": tag});
            let send = if method == "notifications/resources/updated" {
                let hit = uri.as_ref().is_some_and(|u| uris.contains(u));
                params["uri"] = json!(uri);
                hit
            } else {
                wanted.contains(&method.as_str())
            };
            if send {
                yield Ok(frame_plain(&jsonrpc::notification(&method, &params).to_string()));
            }
        }
    };
    let mut resp = Response::new(Body::from_stream(stream));
    sse_headers(&mut resp);
    resp
}

fn frame_plain(data: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {data}\n\n"))
}

/// What the edge needs to keep the answer to a read over POST (`/rpc` or
/// Streamable HTTP): the method, the protocol version and the canonical
/// parameters (everything the answer depends on, but the caller), and the
/// request's own bytes in the answer (`"id":…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePlan {
    pub method: String,
    pub version: String,
    pub params: String,
    pub own: String,
    /// `resources/read`'s URI.
    pub uri: Option<String>,
}

/// Object keys sorted at every level, `_meta` left out at the top: the same
/// request written two ways is one entry.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The plan for keeping this POST's answer, when it is a read this endpoint
/// would answer as it stands: every check a real request meets passes (or
/// the application answers, errors included), the session it names is
/// valid for this caller (and counts as active), and the method is one
/// whose answer says how long it may be kept. `streamable` is false for
/// `/rpc`.
pub async fn cache_plan<H: McpHandler>(
    ep: &Endpoint<H>,
    principal: Option<&Principal>,
    server_id: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    streamable: bool,
) -> Option<CachePlan> {
    // The message read in place: ids and parameters are looked at only as
    // far as needed (most reads carry no parameters at all).
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        jsonrpc: &'a str,
        #[serde(borrow)]
        method: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        params: Option<&'a serde_json::value::RawValue>,
    }
    let peek: Peek = serde_json::from_slice(body).ok()?;
    if peek.jsonrpc != "2.0" || !super::dispatch::CACHEABLE.contains(&peek.method.as_ref()) {
        return None;
    }
    // A request: an id that is a string or an integer (what the dispatcher
    // accepts), written back as the answer will write it.
    let id: Value = serde_json::from_str(peek.id?.get()).ok()?;
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        return None;
    }
    let params = match peek.params.map(|p| p.get().trim()) {
        None | Some("null") | Some("{}") => Value::Null,
        Some(p) if p.starts_with('{') => serde_json::from_str(p).ok()?,
        // The dispatcher refuses these: the application answers.
        Some(_) => return None,
    };
    // A retry after an input-required result (SEP-2322) is never kept.
    if params.get("inputResponses").is_some() || params.get("requestState").is_some() {
        return None;
    }
    let method = peek.method.into_owned();
    let mut version = params
        .pointer("/_meta")
        .and_then(|m| m.get(protocol::META_VERSION))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if streamable {
        preflight(ep, principal, server_id, headers).ok()?;
        if let Some(ct) = header_str(headers, "content-type")
            && !ct.to_ascii_lowercase().starts_with("application/json")
        {
            return None;
        }
        if headers.contains_key(header::ACCEPT) && !accepts(headers, "application/json") {
            return None;
        }
        if stateless::is_stateless(headers, &params) {
            // Every check of the revision, as a real request meets them
            // (the tool's own headers too: calls are never kept).
            stateless::check(headers, &method, &params).ok()?;
        }
        if header_str(headers, SESSION_HEADER).is_some() {
            let s = named_session(ep, principal, server_id, headers, &id)
                .await
                .ok()??;
            s.touch();
            version.get_or_insert_with(|| s.protocol_version());
        }
        if let Some(v) = header_str(headers, VERSION_HEADER) {
            version.get_or_insert_with(|| v.to_owned());
        }
    }
    let uri = params.get("uri").and_then(Value::as_str).map(str::to_owned);
    let mut canonical_params = String::new();
    match &params {
        Value::Object(m) => {
            let mut m = m.clone();
            m.remove("_meta");
            canonical(&Value::Object(m), &mut canonical_params);
        }
        Value::Null => canonical_params.push_str("{}"),
        // The dispatcher refuses these: the application answers.
        _ => return None,
    }
    Some(CachePlan {
        method,
        version: version.unwrap_or_else(|| protocol::DEFAULT_HEADER_VERSION.to_owned()),
        params: canonical_params,
        own: format!("\"id\":{}", serde_json::to_string(&id).ok()?),
        uri,
    })
}

pub(crate) fn sse_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

fn frame(id: &str, data: &str) -> Bytes {
    Bytes::from(format!("id: {id}\ndata: {data}\n\n"))
}

/// An SSE response carrying `first` and then every message until the final
/// one. Events are recorded in the session for `Last-Event-ID` replay.
fn sse_response(
    session: Option<Arc<Session>>,
    first: Outbound,
    rx: mpsc::UnboundedReceiver<Outbound>,
    keepalive: Duration,
) -> Response {
    let stream_id = session
        .as_ref()
        .map_or_else(|| "0.0".to_owned(), |s| s.new_stream_id());
    let state = (
        Some(first),
        rx,
        session,
        0u64,
        false,
        tokio::time::interval(keepalive),
        stream_id,
    );
    let stream = futures_util::stream::unfold(
        state,
        move |(pending, mut rx, session, mut seq, done, mut tick, stream_id)| async move {
            if done {
                return None;
            }
            let next = match pending {
                Some(m) => Some(m),
                None => loop {
                    tokio::select! {
                        m = rx.recv() => break m,
                        _ = tick.tick() => {
                            if seq > 0 {
                                return Some((Ok::<Bytes, Infallible>(Bytes::from_static(b": keepalive\n\n")), (None, rx, session, seq, false, tick, stream_id)));
                            }
                        }
                    }
                },
            };
            let m = next?;
            seq += 1;
            let id = match &session {
                Some(s) => s.record_event(&stream_id, seq, &m.json),
                None => format!("{stream_id}_{seq}"),
            };
            let last = m.last;
            Some((
                Ok(frame(&id, &m.json)),
                (None, rx, session, seq, last, tick, stream_id),
            ))
        },
    );
    let mut resp = Response::new(Body::from_stream(stream));
    sse_headers(&mut resp);
    resp
}

/// `GET /mcp`: the standalone server-to-client stream of a session, with
/// replay after `Last-Event-ID` (from any replica's events), and the
/// messages kept for the session while no stream was open anywhere.
pub async fn get<H: McpHandler>(
    ep: &Endpoint<H>,
    principal: Option<Arc<Principal>>,
    server_id: Option<String>,
    headers: &HeaderMap,
) -> Response {
    if let Err(r) = preflight(ep, principal.as_deref(), server_id.as_deref(), headers) {
        return r;
    }
    let session = match named_session(
        ep,
        principal.as_deref(),
        server_id.as_deref(),
        headers,
        &Value::Null,
    )
    .await
    {
        Ok(Some(s)) => s,
        Ok(None) => {
            return http_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET needs an Mcp-Session-Id (this endpoint has no sessionless stream)",
            );
        }
        Err(r) => return r,
    };
    if !accepts(headers, "text/event-stream") {
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must include text/event-stream",
        );
    }
    let replay: Vec<(String, u64, String)> = match header_str(headers, "last-event-id") {
        Some(last) => match session.replay_after(last).await {
            Some((stream, events)) => events
                .into_iter()
                .map(|(seq, d)| (stream.clone(), seq, d))
                .collect(),
            None => return http_error(StatusCode::BAD_REQUEST, "malformed Last-Event-ID"),
        },
        None => Vec::new(),
    };
    let (tx, rx) = mpsc::unbounded_channel::<Outbound>();
    if !session.attach_get_stream(tx.clone()) {
        return http_error(
            StatusCode::CONFLICT,
            "this session already has an open GET stream",
        );
    }
    for kept in session.net().attached(&session.sid).await {
        let _ = tx.send(Outbound::message(kept));
    }
    session.touch();
    let stream_id = session.new_stream_id();
    let closed = session.closed.clone();
    let keepalive = ep.keepalive;
    let replayed = futures_util::stream::iter(
        replay
            .into_iter()
            .map(|(s, q, d)| Ok::<Bytes, Infallible>(frame(&format!("{s}_{q}"), &d))),
    );
    let detach = DetachOnDrop(session.clone());
    let live = futures_util::stream::unfold(
        (rx, detach, 0u64, tokio::time::interval(keepalive), closed),
        move |(mut rx, detach, mut seq, mut tick, closed)| {
            let stream_id = stream_id.clone();
            async move {
                tokio::select! {
                    m = rx.recv() => {
                        let m = m?;
                        seq += 1;
                        let id = detach.0.record_event(&stream_id, seq, &m.json);
                        Some((Ok(frame(&id, &m.json)), (rx, detach, seq, tick, closed)))
                    }
                    _ = tick.tick() => Some((Ok(Bytes::from_static(b": keepalive\n\n")), (rx, detach, seq, tick, closed))),
                    _ = closed.cancelled() => None,
                }
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(replayed.chain(live)));
    sse_headers(&mut resp);
    resp
}

/// Tells the cluster when a GET stream ends, so that messages are kept
/// for the session instead of sent to a replica without its stream.
struct DetachOnDrop(Arc<Session>);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        self.0.net().detached(&self.0.sid);
    }
}

/// `DELETE /mcp`: ends a session.
pub async fn delete<H: McpHandler>(
    ep: &Endpoint<H>,
    principal: Option<Arc<Principal>>,
    server_id: Option<String>,
    headers: &HeaderMap,
) -> Response {
    if let Err(r) = preflight(ep, principal.as_deref(), server_id.as_deref(), headers) {
        return r;
    }
    match named_session(
        ep,
        principal.as_deref(),
        server_id.as_deref(),
        headers,
        &Value::Null,
    )
    .await
    {
        Ok(Some(s)) => {
            if let Some(s) = ep.sessions.end(&s.public_id()) {
                ep.dispatcher.handler.session_closed(&s);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => http_error(StatusCode::BAD_REQUEST, "DELETE needs an Mcp-Session-Id"),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::dispatch::BoxFut;
    use crate::mcp::session::Sessions;

    /// A handler with one tool, for the transport's status rules.
    struct One;
    impl McpHandler for One {
        fn server_info(&self) -> Value {
            json!({"name": "one", "version": "1"})
        }
        fn capabilities(&self, _ctx: &Ctx) -> Value {
            json!({"tools": {}})
        }
        fn handle<'a>(
            &'a self,
            _ctx: &'a Ctx,
            method: &'a str,
            _params: Value,
        ) -> BoxFut<'a, Result<jsonrpc::Json, RpcError>> {
            Box::pin(async move {
                match method {
                    "tools/list" => Ok(jsonrpc::raw(&json!({"tools": []}))),
                    other => Err(RpcError::method_not_found(other)),
                }
            })
        }
    }

    fn endpoint() -> Endpoint<One> {
        Endpoint {
            dispatcher: Dispatcher::new(Arc::new(One)),
            sessions: Sessions::new(Duration::from_secs(60), 10),
            guard: OriginGuard::for_bind("127.0.0.1", &[], &[]),
            keepalive: Duration::from_secs(30),
            stateful: true,
        }
    }

    async fn status_and_body(r: Response) -> (StatusCode, Value) {
        use http_body_util::BodyExt;
        let (parts, body) = r.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn mcp_headers(extra: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = headers(&[
            ("host", "127.0.0.1:4444"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ]);
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[tokio::test]
    async fn transport_status_rules() {
        let ep = endpoint();
        let post = |h: HeaderMap, body: &'static str| {
            let ep = &ep;
            async move {
                status_and_body(post(ep, None, None, &h, Bytes::from_static(body.as_bytes())).await)
                    .await
            }
        };
        let (s, v) = post(mcp_headers(&[]), "{bad").await;
        assert_eq!(
            (s, v["error"]["code"].as_i64()),
            (StatusCode::BAD_REQUEST, Some(-32700))
        );
        let (s, v) = post(
            mcp_headers(&[("mcp-session-id", "v1.AAAA")]),
            r#"{"jsonrpc":"2.0","id":41,"method":"ping"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "unknown session");
        assert_eq!(v["id"], 41, "the error carries the request id");
        let (s, _) = post(
            mcp_headers(&[("mcp-session-id", "has space")]),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "malformed session id");
        let (s, _) = post(mcp_headers(&[("content-type", "text/plain")]), "{}").await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (s, _) = post(
            mcp_headers(&[("accept", "text/html")]),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_ACCEPTABLE);
        let (s, _) = post(
            mcp_headers(&[("mcp-protocol-version", "1999-01-01")]),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "unsupported version header");
        let (s, _) = post(
            mcp_headers(&[("origin", "http://evil.example.com")]),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = post(
            mcp_headers(&[]),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let (s, v) = post(
            mcp_headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "nope/nope")]),
            r#"{"jsonrpc":"2.0","id":2,"method":"nope/nope","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_i64(), v["id"].as_i64()),
            (StatusCode::NOT_FOUND, Some(-32601), Some(2)),
            "stateless: unknown method is 404, with the request's id"
        );
        let (s, v) = post(
            mcp_headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")]),
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_i64(), v["id"].as_i64()),
            (StatusCode::BAD_REQUEST, Some(-32602), Some(4)),
            "stateless: _meta without client capabilities"
        );
        let (s, v) = post(
            mcp_headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")]),
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["result"]["resultType"], "complete");
        assert!(
            v["result"]["ttlMs"].is_u64() && v["result"]["cacheScope"].is_string(),
            "{v}"
        );
        let (s, v) = post(
            mcp_headers(&[]),
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
        )
        .await;
        assert_eq!((s, v["result"]["tools"].is_array()), (StatusCode::OK, true));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_guard_blocks_rebinding() {
        let g = OriginGuard::for_bind("127.0.0.1", &[], &[]);
        assert!(g.check(&headers(&[("host", "127.0.0.1:4444")])).is_ok());
        assert!(
            g.check(&headers(&[
                ("host", "localhost:4444"),
                ("origin", "http://localhost:4444")
            ]))
            .is_ok()
        );
        assert!(g.check(&headers(&[("host", "[::1]:4444")])).is_ok());
        assert!(g.check(&headers(&[("host", "evil.example.com")])).is_err());
        assert!(
            g.check(&headers(&[
                ("host", "127.0.0.1:4444"),
                ("origin", "http://evil.example.com")
            ]))
            .is_err()
        );
        assert!(
            g.check(&headers(&[("host", "127.0.0.1:4444"), ("origin", "null")]))
                .is_err()
        );
    }

    #[test]
    fn public_bind_requires_same_origin() {
        let g = OriginGuard::for_bind("0.0.0.0", &[], &[]);
        assert!(g.check(&headers(&[("host", "gw.example.com")])).is_ok());
        assert!(
            g.check(&headers(&[
                ("host", "gw.example.com"),
                ("origin", "https://gw.example.com")
            ]))
            .is_ok()
        );
        assert!(
            g.check(&headers(&[
                ("host", "gw.example.com"),
                ("origin", "https://evil.example.com")
            ]))
            .is_err()
        );
        let g = OriginGuard::for_bind("0.0.0.0", &[], &["https://app.example.com".into()]);
        assert!(
            g.check(&headers(&[
                ("host", "gw.example.com"),
                ("origin", "https://app.example.com")
            ]))
            .is_ok()
        );
    }
}
