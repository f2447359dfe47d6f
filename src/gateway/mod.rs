//! The gateway's own MCP server: lists come from the registry snapshot
//! (pre-serialized, no database or upstream round trip), calls are routed to
//! the owning upstream under its original name (through `federation`), or
//! performed as REST calls.

use std::sync::Arc;
use std::time::Duration;

use crate::mcp::jsonrpc::Json;
use serde_json::{Value, json};

use crate::access::Principal;
use crate::config::LiveConfig;
use crate::federation::Federation;
use crate::federation::upstream::Relay;
use crate::mcp::dispatch::BoxFut;
use crate::mcp::jsonrpc::{self, RpcError};
use crate::mcp::session::{Peer, Session};
use crate::mcp::{Ctx, McpHandler};
use crate::registry::Registry;
use crate::registry::model::{Gateway, IntegrationType, Owned, Prompt, Resource, Tool};
use crate::registry::snapshot::{McpScope, Snapshot};

/// The gateway's MCP metrics (created and served by the observability
/// room; the labels are bounded: methods from the protocol's list, servers
/// and tools from the registry).
#[derive(Clone)]
pub struct McpMetrics {
    pub requests: prometheus::IntCounterVec,
    pub tool_calls: prometheus::IntCounterVec,
    pub tool_latency: prometheus::HistogramVec,
}

/// Methods counted by name; anything else is `other` (a client chooses
/// the method: it must not choose the metric's cardinality).
const COUNTED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "subscriptions/listen",
];

pub struct GatewayService {
    pub registry: Arc<Registry>,
    pub fed: Arc<Federation>,
    /// For the live page size (`MCP_PAGE_SIZE`).
    pub config: Arc<LiveConfig>,
    pub read_scopes: ReadScopes,
    /// List and resource changes, for `subscriptions/listen`.
    pub changes: tokio::sync::broadcast::Sender<(String, Option<String>)>,
    pub metrics: McpMetrics,
}

/// Relays an upstream's messages to the downstream client.
struct PeerRelay(Peer);

impl Relay for PeerRelay {
    fn notify(&self, method: &str, params: Value) {
        self.0.notify(method, params);
    }
    fn request(&self, method: String, params: Value) -> BoxFut<'static, Result<Value, RpcError>> {
        let peer = self.0.clone();
        Box::pin(async move { peer.request(&method, params).await })
    }
}

fn visible(ctx: &Ctx, item: &dyn Owned) -> bool {
    ctx.principal.as_ref().is_some_and(|p| p.can_see(item)) && item.enabled()
}

fn str_param<'p>(params: &'p Value, key: &str) -> Result<&'p str, RpcError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params(format!("{key} is required")))
}

fn raw_string(s: String) -> Json {
    Json::trusted(s)
}

/// What upstream resources said of their scope, by (virtual server, URI):
/// the edge keeps one answer for every caller of a `public` one, and keys a
/// `private` (or not yet seen) one by caller. Bounded: forgotten whole when
/// full, which only costs a private entry until the next answer.
#[derive(Default)]
pub struct ReadScopes(
    parking_lot::Mutex<std::collections::HashMap<(Option<String>, String), bool>>,
);

const READ_SCOPES_MAX: usize = 10_000;

impl ReadScopes {
    pub fn record(&self, server_id: Option<&str>, uri: &str, public: bool) {
        let mut m = self.0.lock();
        if m.len() >= READ_SCOPES_MAX {
            m.clear();
        }
        m.insert((server_id.map(str::to_owned), uri.to_owned()), public);
    }

    pub fn is_public(&self, server_id: Option<&str>, uri: &str) -> bool {
        self.0
            .lock()
            .get(&(server_id.map(str::to_owned), uri.to_owned()))
            .copied()
            .unwrap_or(false)
    }
}

/// `{"<key>": [items], "nextCursor": ..}`, kept for `ttl_ms` by this caller
/// (the dispatcher writes the hints into the result on the stateless wire).
fn list_result(ttl_ms: u64, key: &str, items: &[&str], next: Option<usize>) -> Json {
    let mut out = format!("{{\"{key}\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(it);
    }
    out.push(']');
    if let Some(n) = next {
        out.push_str(&format!(",\"nextCursor\":\"{n}\""));
    }
    out.push('}');
    // Who sees what depends on who asks: private.
    raw_string(out).with_cache(Some(jsonrpc::CacheHint::private(ttl_ms)))
}

fn page_bounds(
    params: &Value,
    len: usize,
    size: usize,
) -> Result<(usize, usize, Option<usize>), RpcError> {
    let start = match params.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => c
            .parse::<usize>()
            .map_err(|_| RpcError::invalid_params("invalid cursor"))?,
        Some(_) => return Err(RpcError::invalid_params("invalid cursor")),
    };
    let start = start.min(len);
    let end = (start + size).min(len);
    Ok((start, end, (end < len).then_some(end)))
}

/// `upstream` with the client's answers to an earlier input-required
/// result (SEP-2322), passed on untouched.
fn with_inputs(mut upstream: Value, params: &Value) -> Value {
    for key in ["inputResponses", "requestState"] {
        if let Some(v) = params.get(key) {
            upstream[key] = v.clone();
        }
    }
    upstream
}

/// Does `uri` match an RFC 6570 level-1 template such as `test://t/{id}/data`?
pub fn template_matches(template: &str, uri: &str) -> bool {
    let mut pattern = String::from("^");
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        pattern.push_str(&regex::escape(&rest[..start]));
        let var = &rest[start + 1..start + end];
        pattern.push_str(if var.starts_with('+') || var.starts_with('#') {
            ".+"
        } else {
            "[^/?#]+"
        });
        rest = &rest[start + end + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    regex::Regex::new(&pattern).is_ok_and(|r| r.is_match(uri))
}

impl GatewayService {
    /// `MCP_LIST_TTL_MS`: how long the gateway's own answers may be kept.
    fn list_ttl(&self) -> u64 {
        self.config.get().mcp_list_ttl_ms
    }

    /// May this caller read `uri` through this scope (a virtual server, or
    /// the whole gateway)? As `resources/read` decides, without reading.
    pub fn can_read(&self, principal: &Arc<Principal>, server_id: Option<&str>, uri: &str) -> bool {
        let snap = self.registry.snapshot();
        let ctx = Ctx::new(Some(principal.clone()), server_id.map(str::to_owned));
        self.check_scope(Some(principal), server_id).is_ok()
            && self.find_resource(&snap, &ctx, uri).is_some()
    }

    fn scope<'s>(&self, snap: &'s Snapshot, ctx: &Ctx) -> &'s McpScope {
        static EMPTY: std::sync::OnceLock<McpScope> = std::sync::OnceLock::new();
        match &ctx.server_id {
            Some(id) => snap
                .mcp_servers
                .get(id)
                .unwrap_or_else(|| EMPTY.get_or_init(McpScope::default)),
            None => &snap.mcp_global,
        }
    }

    fn scoped_resources<'s>(&self, snap: &'s Snapshot, ctx: &Ctx) -> Vec<&'s Resource> {
        let all: Box<dyn Iterator<Item = &'s Resource>> = match &ctx.server_id {
            Some(id) => Box::new(
                snap.associations
                    .get(id)
                    .map(|a| a.associated_resources.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |rid| snap.resources.get(&rid).map(|e| &e.item)),
            ),
            None => Box::new(snap.resources.iter().map(|e| &e.item)),
        };
        all.filter(|r| visible(ctx, *r)).collect()
    }

    fn gateway<'s>(&self, snap: &'s Snapshot, id: Option<&str>) -> Result<&'s Gateway, RpcError> {
        let gw = id
            .and_then(|g| snap.gateways.get(g))
            .map(|e| &e.item)
            .ok_or_else(|| RpcError::internal("the item's gateway is gone"))?;
        if !gw.enabled {
            return Err(RpcError::upstream(format!(
                "gateway {} is disabled",
                gw.name
            )));
        }
        if !gw.reachable {
            return Err(RpcError::upstream(format!(
                "gateway {} is unreachable (failed health checks)",
                gw.name
            )));
        }
        Ok(gw)
    }

    /// Sends a request to the gateway's upstream and returns its result.
    /// `params` are the upstream's, without `_meta`: a client of the
    /// stateless revision has its own `_meta` passed on (statelessly, to an
    /// upstream that speaks the revision); any other gets the request's
    /// `_meta` without the revision's keys.
    async fn forward(
        &self,
        ctx: &Ctx,
        gw: &Gateway,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Json, RpcError> {
        Ok(jsonrpc::raw(
            &self.forward_value(ctx, gw, method, params, timeout).await?,
        ))
    }

    async fn forward_value(
        &self,
        ctx: &Ctx,
        gw: &Gateway,
        method: &str,
        mut params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let relay: Arc<dyn Relay> = Arc::new(PeerRelay(ctx.peer.clone()));
        if let Some(p) = params.as_object_mut() {
            p.remove("_meta");
        }
        if ctx.protocol_version == crate::mcp::protocol::STATELESS
            && Federation::speaks_stateless(gw)
        {
            params["_meta"] = ctx.meta.clone();
            return self
                .fed
                .call_stateless(
                    gw,
                    method,
                    params,
                    &ctx.forward_headers,
                    Some(relay),
                    timeout,
                    ctx.cancel.clone(),
                )
                .await;
        }
        if let Some(meta) = ctx.meta.as_object() {
            // The progress token is the relay's to map; the revision's keys
            // mean nothing on a session.
            let kept: serde_json::Map<String, Value> = meta
                .iter()
                .filter(|(k, _)| {
                    *k != "progressToken" && !k.starts_with("io.modelcontextprotocol/")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !kept.is_empty() {
                params["_meta"] = Value::Object(kept);
            }
        }
        self.fed
            .call(
                gw,
                ctx.session.as_ref(),
                method,
                params,
                Some((relay, ctx.progress_token.clone())),
                timeout,
                ctx.cancel.clone(),
            )
            .await
    }

    fn find_tool<'s>(&self, snap: &'s Snapshot, ctx: &Ctx, name: &str) -> Option<&'s Tool> {
        self.scope(snap, ctx)
            .tool_by_name
            .get(name)?
            .iter()
            .filter_map(|id| snap.tools.get(id))
            .map(|e| &e.item)
            .find(|t| ctx.principal.as_ref().is_some_and(|p| p.can_see(*t)))
    }

    fn find_prompt<'s>(&self, snap: &'s Snapshot, ctx: &Ctx, name: &str) -> Option<&'s Prompt> {
        self.scope(snap, ctx)
            .prompt_by_name
            .get(name)?
            .iter()
            .filter_map(|id| snap.prompts.get(id))
            .map(|e| &e.item)
            .find(|p| visible(ctx, *p))
    }

    fn find_resource<'s>(&self, snap: &'s Snapshot, ctx: &Ctx, uri: &str) -> Option<&'s Resource> {
        let scoped = self.scoped_resources(snap, ctx);
        scoped
            .iter()
            .find(|r| r.uri_template.is_none() && r.uri == uri)
            .or_else(|| {
                scoped.iter().find(|r| {
                    r.uri_template
                        .as_deref()
                        .is_some_and(|t| template_matches(t, uri))
                })
            })
            .copied()
    }

    async fn call_tool(&self, ctx: &Ctx, params: Value) -> Result<Json, RpcError> {
        let name = str_param(&params, "name")?;
        let args = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if !args.is_object() {
            return Err(RpcError::invalid_params("arguments must be an object"));
        }
        let snap = self.registry.snapshot();
        let tool = self
            .find_tool(&snap, ctx, name)
            .ok_or_else(|| RpcError::invalid_params(format!("Unknown tool: {name}")))?;
        if !tool.enabled {
            return Err(RpcError::not_found(format!("Tool {name} is inactive")));
        }
        if !tool.reachable {
            return Err(RpcError::upstream(format!(
                "Tool {name} is currently offline (its gateway is unreachable)"
            )));
        }
        let timeout = tool.timeout_ms.map_or(self.fed.cfg.tool_timeout, |ms| {
            Duration::from_millis(ms as u64)
        });
        // Waiting for a slot is part of the call's time.
        let started = std::time::Instant::now();
        let _slot = tokio::select! {
            s = self.fed.tool_slot(timeout) => s?,
            _ = ctx.cancel.cancelled() => return Err(RpcError::new(jsonrpc::REQUEST_TIMEOUT, "request cancelled")),
        };
        let timeout = timeout.saturating_sub(started.elapsed());
        let (result, gateway) = if tool.integration_type == IntegrationType::Rest {
            let r = tokio::select! {
                r = crate::federation::rest::invoke(&self.fed, tool, args, timeout) => Ok(jsonrpc::raw(&r)),
                _ = ctx.cancel.cancelled() => Err(RpcError::new(jsonrpc::REQUEST_TIMEOUT, "request cancelled")),
            };
            (r, "rest")
        } else {
            let gw = self.gateway(&snap, tool.gateway_id.as_deref())?;
            let upstream = with_inputs(
                json!({"name": tool.original_name, "arguments": args}),
                &params,
            );
            (
                self.forward(ctx, gw, "tools/call", upstream, timeout).await,
                gw.name.as_str(),
            )
        };
        let failed = match &result {
            Err(_) => true,
            // Parsed only when it may say so (a tool's error result).
            Ok(j) => {
                j.get().contains("\"isError\"")
                    && serde_json::from_str::<Value>(j.get())
                        .ok()
                        .and_then(|v| v.get("isError")?.as_bool())
                        .unwrap_or(false)
            }
        };
        let outcome = if failed { "error" } else { "success" };
        self.metrics
            .tool_calls
            .with_label_values(&[tool.name.as_str(), gateway, outcome])
            .inc();
        self.metrics
            .tool_latency
            .with_label_values(&[tool.name.as_str(), gateway])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    fn list_tools(&self, ctx: &Ctx, params: &Value) -> Result<Json, RpcError> {
        let snap = self.registry.snapshot();
        let items: Vec<&str> = self
            .scope(&snap, ctx)
            .tools
            .iter()
            .filter_map(|(id, plain)| {
                let t = &snap.tools.get(id)?.item;
                if !visible(ctx, t) {
                    return None;
                }
                let j = snap.mcp_tools.get(id)?;
                Some(if *plain {
                    j.plain.get()
                } else {
                    j.prefixed.get()
                })
            })
            .collect();
        let (start, end, next) = page_bounds(params, items.len(), self.config.get().mcp_page_size)?;
        Ok(list_result(
            self.list_ttl(),
            "tools",
            &items[start..end],
            next,
        ))
    }

    fn list_prompts(&self, ctx: &Ctx, params: &Value) -> Result<Json, RpcError> {
        let snap = self.registry.snapshot();
        let items: Vec<Json> = self
            .scope(&snap, ctx)
            .prompts
            .iter()
            .filter_map(|(id, plain)| {
                let p = &snap.prompts.get(id)?.item;
                if !visible(ctx, p) {
                    return None;
                }
                let mut v = json!({"name": if *plain { &p.original_name } else { &p.name }, "arguments": p.argument_schema});
                if let Some(d) = &p.description {
                    v["description"] = json!(d);
                }
                Some(jsonrpc::raw(&v))
            })
            .collect();
        let refs: Vec<&str> = items.iter().map(Json::get).collect();
        let (start, end, next) = page_bounds(params, refs.len(), self.config.get().mcp_page_size)?;
        Ok(list_result(
            self.list_ttl(),
            "prompts",
            &refs[start..end],
            next,
        ))
    }

    fn list_resources(&self, ctx: &Ctx, params: &Value, templates: bool) -> Result<Json, RpcError> {
        let snap = self.registry.snapshot();
        let items: Vec<Json> = self
            .scoped_resources(&snap, ctx)
            .into_iter()
            .filter(|r| r.uri_template.is_some() == templates)
            .map(|r| {
                let mut v = if templates {
                    json!({"uriTemplate": r.uri, "name": r.name})
                } else {
                    json!({"uri": r.uri, "name": r.name})
                };
                if let Some(d) = &r.description {
                    v["description"] = json!(d);
                }
                if let Some(m) = &r.mime_type {
                    v["mimeType"] = json!(m);
                }
                if let (Some(s), false) = (r.size, templates) {
                    v["size"] = json!(s);
                }
                jsonrpc::raw(&v)
            })
            .collect();
        let refs: Vec<&str> = items.iter().map(Json::get).collect();
        let (start, end, next) = page_bounds(params, refs.len(), self.config.get().mcp_page_size)?;
        Ok(list_result(
            self.list_ttl(),
            if templates {
                "resourceTemplates"
            } else {
                "resources"
            },
            &refs[start..end],
            next,
        ))
    }

    async fn read_resource(
        &self,
        ctx: &Ctx,
        params: Value,
        method: &str,
    ) -> Result<Json, RpcError> {
        let uri = str_param(&params, "uri")?.to_owned();
        let snap = self.registry.snapshot();
        let Some(res) = self.find_resource(&snap, ctx, &uri) else {
            // SEP-2164: an unknown resource is invalid params, with its uri.
            let mut e = RpcError::invalid_params(format!("Resource not found: {uri}"));
            e.data = Some(json!({"uri": uri}));
            return Err(e);
        };
        if res.gateway_id.is_some() {
            let gw = self.gateway(&snap, res.gateway_id.as_deref())?;
            let upstream = with_inputs(json!({"uri": uri}), &params);
            let r = self
                .forward_value(ctx, gw, method, upstream, self.fed.cfg.federation_timeout)
                .await?;
            // Kept as long as, and by whom, the upstream says; nothing said,
            // not kept.
            let hint = (method == "resources/read")
                .then(|| jsonrpc::CacheHint::of(&r))
                .flatten();
            if let Some(h) = hint {
                self.read_scopes
                    .record(ctx.server_id.as_deref(), &uri, h.public);
            }
            return Ok(jsonrpc::raw(&r).with_cache(hint));
        }
        match method {
            "resources/read" => {
                let mut c =
                    json!({"uri": uri, "text": res.text_content.clone().unwrap_or_default()});
                if let Some(m) = &res.mime_type {
                    c["mimeType"] = json!(m);
                }
                Ok(jsonrpc::raw(&json!({"contents": [c]}))
                    .with_cache(Some(jsonrpc::CacheHint::private(self.list_ttl()))))
            }
            _ => Ok(jsonrpc::raw(&json!({}))),
        }
    }

    async fn get_prompt(&self, ctx: &Ctx, params: Value) -> Result<Json, RpcError> {
        let name = str_param(&params, "name")?;
        let snap = self.registry.snapshot();
        let p = self
            .find_prompt(&snap, ctx, name)
            .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
        let args = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if p.gateway_id.is_some() {
            let gw = self.gateway(&snap, p.gateway_id.as_deref())?;
            let upstream =
                with_inputs(json!({"name": p.original_name, "arguments": args}), &params);
            return self
                .forward(
                    ctx,
                    gw,
                    "prompts/get",
                    upstream,
                    self.fed.cfg.federation_timeout,
                )
                .await;
        }
        let mut text = p.template.clone();
        for a in p.argument_schema.as_array().into_iter().flatten() {
            let an = a["name"].as_str().unwrap_or("");
            let value = args
                .get(an)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            if value.is_none() && a["required"].as_bool() == Some(true) {
                return Err(RpcError::invalid_params(format!(
                    "missing required argument {an}"
                )));
            }
            let value = value.unwrap_or_default();
            text = text
                .replace(&format!("{{{{{an}}}}}"), &value)
                .replace(&format!("{{{{ {an} }}}}"), &value);
        }
        Ok(jsonrpc::raw(&json!({
            "description": p.description,
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        })))
    }

    async fn complete(&self, ctx: &Ctx, params: Value) -> Result<Json, RpcError> {
        let r = params.get("ref").cloned().unwrap_or(Value::Null);
        let snap = self.registry.snapshot();
        let empty = || {
            Ok(jsonrpc::raw(
                &json!({"completion": {"values": [], "total": 0, "hasMore": false}}),
            ))
        };
        match r.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                let p = self
                    .find_prompt(&snap, ctx, name)
                    .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
                if p.gateway_id.is_none() {
                    return empty();
                }
                let gw = self.gateway(&snap, p.gateway_id.as_deref())?;
                let mut upstream = params.clone();
                upstream["ref"]["name"] = json!(p.original_name);
                self.forward(
                    ctx,
                    gw,
                    "completion/complete",
                    upstream,
                    self.fed.cfg.federation_timeout,
                )
                .await
            }
            Some("ref/resource") => {
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or("");
                let res = self
                    .scoped_resources(&snap, ctx)
                    .into_iter()
                    .find(|x| x.uri == uri)
                    .or_else(|| self.find_resource(&snap, ctx, uri));
                match res {
                    Some(res) if res.gateway_id.is_some() => {
                        let gw = self.gateway(&snap, res.gateway_id.as_deref())?;
                        self.forward(
                            ctx,
                            gw,
                            "completion/complete",
                            params.clone(),
                            self.fed.cfg.federation_timeout,
                        )
                        .await
                    }
                    Some(_) => empty(),
                    None => Err(RpcError::not_found(format!("Resource not found: {uri}"))),
                }
            }
            _ => Err(RpcError::invalid_params(
                "ref.type must be ref/prompt or ref/resource",
            )),
        }
    }
}

impl McpHandler for GatewayService {
    fn server_info(&self) -> Value {
        json!({"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")})
    }

    fn capabilities(&self, ctx: &Ctx) -> Value {
        // Stateless clients hear of changes on `subscriptions/listen`.
        let changes = ctx.protocol_version == crate::mcp::protocol::STATELESS;
        json!({
            "tools": {"listChanged": changes},
            "resources": {"subscribe": true, "listChanged": changes},
            "prompts": {"listChanged": changes},
            "logging": {},
            "completions": {},
        })
    }

    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<(String, Option<String>)>> {
        Some(self.changes.subscribe())
    }

    fn observe(&self, ctx: &Ctx, method: &str, ok: bool, _elapsed: Duration) {
        let method = COUNTED_METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        let server = ctx.server_id.as_deref().unwrap_or("all");
        let outcome = if ok { "success" } else { "error" };
        self.metrics
            .requests
            .with_label_values(&[method, server, outcome])
            .inc();
    }

    fn handle<'a>(
        &'a self,
        ctx: &'a Ctx,
        method: &'a str,
        params: Value,
    ) -> BoxFut<'a, Result<Json, RpcError>> {
        Box::pin(async move {
            match method {
                "tools/list" => self.list_tools(ctx, &params),
                "tools/call" => self.call_tool(ctx, params).await,
                "resources/list" => self.list_resources(ctx, &params, false),
                "resources/templates/list" => self.list_resources(ctx, &params, true),
                "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                    self.read_resource(ctx, params, method).await
                }
                "prompts/list" => self.list_prompts(ctx, &params),
                "prompts/get" => self.get_prompt(ctx, params).await,
                "completion/complete" => self.complete(ctx, params).await,
                other => Err(RpcError::method_not_found(other)),
            }
        })
    }

    fn tool_schema(
        &self,
        principal: Option<&Principal>,
        server_id: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let snap = self.registry.snapshot();
        let ctx = Ctx::new(
            principal.map(|p| Arc::new(p.clone())),
            server_id.map(str::to_owned),
        );
        self.find_tool(&snap, &ctx, name)
            .map(|t| t.input_schema.clone())
    }

    fn check_scope(
        &self,
        principal: Option<&Principal>,
        server_id: Option<&str>,
    ) -> Result<(), RpcError> {
        let Some(id) = server_id else { return Ok(()) };
        let snap = self.registry.snapshot();
        match (snap.servers.get(id), principal) {
            (Some(e), Some(p)) if e.item.enabled && p.can_see(&e.item) => Ok(()),
            _ => Err(RpcError::not_found(format!("Server not found: {id}"))),
        }
    }

    fn session_closed(&self, session: &Session) {
        self.fed.session_closed(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_uris() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/123/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template/1/2/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template/123/data/x"
        ));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(!template_matches("a.b/{x}", "aXb/1"));
    }

    #[test]
    fn pages() {
        assert_eq!(page_bounds(&json!({}), 10, 4).unwrap(), (0, 4, Some(4)));
        assert_eq!(
            page_bounds(&json!({"cursor": "8"}), 10, 4).unwrap(),
            (8, 10, None)
        );
        assert!(page_bounds(&json!({"cursor": "x"}), 10, 4).is_err());
    }
}
