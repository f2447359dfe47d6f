//! Federation: connections to upstream MCP servers (pooled, per downstream
//! session when relaying), discovery of their tools, resources and prompts,
//! health checks, and REST APIs wrapped as tools.

pub mod clients;
pub mod discovery;
pub mod health;
pub mod rest;
pub mod ssrf;
pub mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::crypto::Sealer;
use crate::mcp::jsonrpc::RpcError;
use crate::mcp::session::Session;
use crate::registry::model::Gateway;
use clients::HttpClients;
use ssrf::{GuardedResolver, SsrfPolicy};
use upstream::{Relay, Transport, Upstream, UpstreamError, UpstreamSpec};

#[derive(Debug, Clone)]
pub struct FedConfig {
    pub tool_timeout: Duration,
    pub federation_timeout: Duration,
    pub separator: String,
    pub retry_max_attempts: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub unhealthy_threshold: u32,
    pub rest_max_len: usize,
    pub tool_concurrent_limit: usize,
}

impl FedConfig {
    pub fn from_config(c: &Config) -> FedConfig {
        FedConfig {
            tool_timeout: Duration::from_secs(c.tool_timeout),
            federation_timeout: Duration::from_secs(c.federation_timeout),
            separator: c.gateway_tool_name_separator.clone(),
            retry_max_attempts: c.retry_max_attempts.max(1),
            retry_base_delay: Duration::from_secs_f64(c.retry_base_delay),
            retry_max_delay: Duration::from_secs_f64(c.retry_max_delay),
            health_interval: Duration::from_secs(c.health_check_interval.max(1)),
            health_timeout: Duration::from_secs_f64(c.gateway_health_check_timeout),
            unhealthy_threshold: c.unhealthy_threshold.max(1),
            rest_max_len: c.rest_response_text_max_length,
            tool_concurrent_limit: c.tool_concurrent_limit,
        }
    }
}

/// The pooled connection of one gateway. Reads take a short std lock; only
/// (re)connecting takes the async lock, so concurrent calls never queue
/// behind each other.
#[derive(Default)]
struct SlotInner {
    current: parking_lot::RwLock<Option<Arc<Upstream>>>,
    connecting: tokio::sync::Mutex<()>,
}

type Slot = Arc<SlotInner>;

pub struct Federation {
    pub http: HttpClients,
    pub policy: Arc<SsrfPolicy>,
    pub sealer: Sealer,
    pub cfg: FedConfig,
    /// `TOOL_CONCURRENT_LIMIT`: permits for tool calls in flight.
    tool_slots: Option<Arc<tokio::sync::Semaphore>>,
    shared: parking_lot::Mutex<HashMap<String, Slot>>,
    list_changed: mpsc::UnboundedSender<(String, Value)>,
    list_changed_rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<(String, Value)>>>,
}

const SESSION_KEY: &str = "upstream:";

impl Federation {
    /// A slot for one tool call, waited for at most `timeout`; `Ok(None)`
    /// when calls are not limited.
    pub async fn tool_slot(
        &self,
        timeout: Duration,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, RpcError> {
        let Some(slots) = &self.tool_slots else {
            return Ok(None);
        };
        match tokio::time::timeout(timeout, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            Ok(Err(_)) => Err(RpcError::internal("tool call slots are closed")),
            Err(_) => Err(RpcError::new(
                crate::mcp::jsonrpc::REQUEST_TIMEOUT,
                format!(
                    "no tool call slot within {} s: TOOL_CONCURRENT_LIMIT calls are in flight on this replica",
                    timeout.as_secs_f64()
                ),
            )),
        }
    }

    /// `(in use, limit)` of the tool call slots, when calls are limited.
    pub fn tool_slots_in_use(&self) -> Option<(usize, usize)> {
        let limit = self.cfg.tool_concurrent_limit;
        self.tool_slots
            .as_ref()
            .map(|s| (limit.saturating_sub(s.available_permits()), limit))
    }

    pub fn new(config: &Config, sealer: Sealer) -> Arc<Federation> {
        let policy = Arc::new(SsrfPolicy {
            enabled: config.ssrf_protection_enabled,
            allow_localhost: config.ssrf_allow_localhost,
            allow_private: config.ssrf_allow_private_networks,
            allowed: crate::util::parse_networks(&config.ssrf_allowed_networks).unwrap_or_default(),
        });
        let resolver = policy.clone();
        let http = HttpClients::new(move || {
            reqwest::Client::builder()
                .dns_resolver(Arc::new(GuardedResolver {
                    policy: resolver.clone(),
                }))
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(512)
                .redirect(ssrf::redirect_policy(resolver.clone()))
                .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("HTTP client")
        });
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Federation {
            http,
            policy,
            sealer,
            cfg: FedConfig::from_config(config),
            tool_slots: (config.tool_concurrent_limit > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(config.tool_concurrent_limit))),
            shared: parking_lot::Mutex::new(HashMap::new()),
            list_changed: tx,
            list_changed_rx: parking_lot::Mutex::new(Some(rx)),
        })
    }

    /// `(gateway id, notification)` for upstream `*/list_changed`; taken once
    /// by the refresher task.
    pub fn take_list_changed(&self) -> Option<mpsc::UnboundedReceiver<(String, Value)>> {
        self.list_changed_rx.lock().take()
    }

    /// How to reach a gateway, with its credentials opened.
    pub fn spec(&self, gw: &Gateway) -> Result<UpstreamSpec, UpstreamError> {
        let transport = gw.transport;
        if transport != Transport::Stdio {
            self.policy
                .check_url(&gw.url)
                .map_err(|e| UpstreamError::Refused(gw.name.clone(), e))?;
        }
        let headers = match &gw.auth_value {
            Some(sealed) => auth_headers(&self.sealer, gw.auth_type.as_deref(), sealed)
                .map_err(|e| UpstreamError::Failed(gw.name.clone(), e))?,
            None => vec![],
        };
        Ok(UpstreamSpec {
            name: gw.name.clone(),
            url: gw.url.clone(),
            transport,
            headers,
        })
    }

    /// Where an upstream connection of `gw` reports `*/list_changed`.
    fn unsolicited(&self, gw: &Gateway) -> Option<mpsc::UnboundedSender<(String, Value)>> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Value)>();
        let out = self.list_changed.clone();
        let id = gw.id.clone();
        tokio::spawn(async move {
            while let Some((method, params)) = rx.recv().await {
                let _ = out.send((
                    id.clone(),
                    json!({"method": method, "uri": params.get("uri")}),
                ));
            }
        });
        Some(tx)
    }

    async fn connect(
        &self,
        gw: &Gateway,
        caps: Value,
        session_relay: Option<Arc<dyn Relay>>,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let spec = self.spec(gw)?;
        let notify = self.unsolicited(gw);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Upstream::connect(
                spec.clone(),
                caps.clone(),
                &self.http,
                self.cfg.federation_timeout,
                notify.clone(),
                session_relay.clone(),
            )
            .await
            {
                Ok(u) => return Ok(u),
                Err(e) if e.retryable() && attempt < self.cfg.retry_max_attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Exponential backoff with jitter for attempt `n` (1-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let base = self.cfg.retry_base_delay.as_secs_f64() * 2f64.powi(n.saturating_sub(1) as i32);
        let jitter = rand::random::<f64>() * 0.5 * self.cfg.retry_base_delay.as_secs_f64();
        Duration::from_secs_f64((base + jitter).min(self.cfg.retry_max_delay.as_secs_f64()))
    }

    fn slot(&self, gateway_id: &str) -> Slot {
        let mut map = self.shared.lock();
        if let Some(s) = map.get(gateway_id) {
            return s.clone();
        }
        map.entry(gateway_id.to_owned()).or_default().clone()
    }

    /// The pooled connection to a gateway, opened on first use and reopened
    /// when it died.
    pub async fn shared(&self, gw: &Gateway) -> Result<Arc<Upstream>, UpstreamError> {
        let slot = self.slot(&gw.id);
        let usable = || {
            let current = slot.current.read();
            current
                .as_ref()
                .filter(|u| u.is_alive() && u.spec.url == gw.url)
                .cloned()
        };
        if let Some(u) = usable() {
            return Ok(u);
        }
        let _connecting = slot.connecting.lock().await;
        // Another call may have reconnected while this one waited.
        if let Some(u) = usable() {
            return Ok(u);
        }
        let u = self.connect(gw, json!({}), None).await?;
        *slot.current.write() = Some(u.clone());
        Ok(u)
    }

    /// Drops the pooled connection of a gateway (deleted, changed or dead).
    pub async fn forget(&self, gateway_id: &str) {
        let slot = self.shared.lock().remove(gateway_id);
        let taken = slot.and_then(|s| s.current.write().take());
        if let Some(u) = taken {
            u.close().await;
        }
    }

    /// The connection to use for a downstream request: one per downstream
    /// session (declaring that client's capabilities upstream, so sampling
    /// and elicitation can be relayed), else the pooled one. stdio upstreams
    /// are one process, always shared.
    pub async fn upstream_for(
        &self,
        gw: &Gateway,
        session: Option<&Arc<Session>>,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let Some(session) = session.filter(|_| gw.transport != Transport::Stdio) else {
            return self.shared(gw).await;
        };
        let key = format!("{SESSION_KEY}{}", gw.id);
        let existing = session.ext.lock().get(&key).cloned();
        if let Some(u) = existing
            .and_then(|a| a.downcast::<Upstream>().ok())
            .filter(|u| u.is_alive())
        {
            return Ok(u);
        }
        // Another replica may have opened this upstream session for the
        // same downstream session: continue it (the upstream keeps its
        // state, subscriptions included) instead of starting another.
        let state_key = format!("upstream:{}", gw.id);
        if gw.transport == Transport::StreamableHttp
            && let Some(saved) = session.net().state_get(&session.sid, &state_key).await
            && let Ok(resumed) = serde_json::from_str::<upstream::Resumed>(&saved)
        {
            let u = Upstream::resume(
                self.spec(gw)?,
                &self.http,
                resumed,
                self.unsolicited(gw),
                Some(SessionRelay::of(session)),
            );
            session.ext.lock().insert(key, u.clone());
            return Ok(u);
        }
        let st = session.state();
        let mut caps = serde_json::Map::new();
        for k in ["sampling", "elicitation", "roots"] {
            if let Some(v) = st.client_capabilities.get(k) {
                caps.insert(k.into(), v.clone());
            }
        }
        let u = self
            .connect(gw, Value::Object(caps), Some(SessionRelay::of(session)))
            .await?;
        if let Some(resumed) = u.resumable() {
            session.net().state_set(
                &session.sid,
                &state_key,
                serde_json::to_string(&resumed).expect("serializes"),
            );
        }
        session.ext.lock().insert(key, u.clone());
        Ok(u)
    }

    /// Sends a request to a gateway. Requests that were never delivered are
    /// retried with backoff; others are not (tool calls are not idempotent).
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        gw: &Gateway,
        session: Option<&Arc<Session>>,
        method: &str,
        params: Value,
        relay: Option<(Arc<dyn Relay>, Option<Value>)>,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<Value, RpcError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let up = match self.upstream_for(gw, session).await {
                Ok(u) => u,
                Err(e) => return Err(e.to_rpc()),
            };
            match up
                .call(
                    method,
                    params.clone(),
                    relay.clone(),
                    timeout,
                    cancel.clone(),
                )
                .await
            {
                Ok(v) => return Ok(v),
                Err(e) => self.next_attempt(gw, attempt, e).await?,
            }
        }
    }

    /// After a failed attempt: waits its backoff and says to try again, or
    /// gives the error to answer with (not retryable, or the last try).
    async fn next_attempt(
        &self,
        gw: &Gateway,
        attempt: u32,
        e: UpstreamError,
    ) -> Result<(), RpcError> {
        if !e.retryable() || attempt >= self.cfg.retry_max_attempts {
            return Err(e.to_rpc());
        }
        tracing::info!(gateway = %gw.name, error = %e, attempt, "retrying upstream request");
        tokio::time::sleep(self.backoff(attempt)).await;
        Ok(())
    }

    /// Does this gateway's upstream speak the stateless revision (as its
    /// discovery found)?
    pub fn speaks_stateless(gw: &Gateway) -> bool {
        gw.transport == Transport::StreamableHttp
            && gw
                .capabilities
                .get(discovery::VERSIONS_KEY)
                .and_then(Value::as_array)
                .is_some_and(|v| v.iter().any(|x| x == crate::mcp::protocol::STATELESS))
    }

    /// One request to the upstream in the stateless revision, for a
    /// downstream client that speaks it: its `_meta` and `Mcp-Param-*`
    /// headers go through, and the answer comes back untouched.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_stateless(
        &self,
        gw: &Gateway,
        method: &str,
        params: Value,
        headers: &[(String, String)],
        relay: Option<Arc<dyn Relay>>,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<Value, RpcError> {
        let spec = self.spec(gw).map_err(|e| e.to_rpc())?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match upstream::stateless::call(
                &self.http,
                &spec,
                method,
                params.clone(),
                headers,
                relay.clone(),
                timeout,
                cancel.clone(),
            )
            .await
            {
                Ok(v) => return Ok(v),
                Err(e) => self.next_attempt(gw, attempt, e).await?,
            }
        }
    }

    /// Closes the upstream connections a downstream session opened.
    pub fn session_closed(&self, session: &Session) {
        let ups: Vec<Arc<Upstream>> = session
            .ext
            .lock()
            .drain()
            .filter(|(k, _)| k.starts_with(SESSION_KEY))
            .filter_map(|(_, v)| v.downcast::<Upstream>().ok())
            .collect();
        if !ups.is_empty() {
            tokio::spawn(async move {
                for u in ups {
                    u.close().await;
                }
            });
        }
    }
}

/// What an upstream says to a downstream session outside any call (on its
/// GET stream): to that session's stream, wherever it is. Weak, so that an
/// upstream connection does not keep its session alive.
struct SessionRelay(std::sync::Weak<Session>);

impl SessionRelay {
    fn of(session: &Arc<Session>) -> Arc<dyn Relay> {
        Arc::new(SessionRelay(Arc::downgrade(session)))
    }

    fn peer(&self) -> Option<crate::mcp::session::Peer> {
        self.0.upgrade().map(|s| crate::mcp::session::Peer {
            stream: None,
            session: Some(s),
            log_level: None,
        })
    }
}

impl Relay for SessionRelay {
    fn notify(&self, method: &str, params: Value) {
        if let Some(p) = self.peer() {
            p.notify(method, params);
        }
    }

    fn request(
        &self,
        method: String,
        params: Value,
    ) -> crate::mcp::dispatch::BoxFut<'static, Result<Value, RpcError>> {
        let peer = self.peer();
        Box::pin(async move {
            match peer {
                Some(p) => p.request(&method, params).await,
                None => Err(RpcError::internal(format!(
                    "{method}: the session has ended"
                ))),
            }
        })
    }
}

/// HTTP headers for a sealed credential.
pub fn auth_headers(
    sealer: &Sealer,
    kind: Option<&str>,
    sealed: &str,
) -> Result<Vec<(String, String)>, String> {
    let doc: Value = serde_json::from_slice(&sealer.open(sealed).map_err(|e| e.to_string())?)
        .map_err(|_| "stored credential is not JSON".to_owned())?;
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    Ok(match kind {
        Some("basic") => {
            let b = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                s("username"),
                s("password")
            ));
            vec![("authorization".into(), format!("Basic {b}"))]
        }
        Some("bearer") => vec![("authorization".into(), format!("Bearer {}", s("token")))],
        Some("authheaders") => doc
            .get("headers")
            .and_then(Value::as_array)
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h["key"].as_str().unwrap_or("").to_owned(),
                            h["value"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => vec![],
    })
}
