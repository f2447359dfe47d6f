//! Downstream MCP sessions and the [`Peer`] through which the server talks
//! back to its client (notifications and server-to-client requests).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::dispatch::BoxFut;
use super::jsonrpc::{self, RpcError};
use super::sealed::{SessionClaims, SessionIdError, SessionSealer};

/// A message on its way to the client, already serialized.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub json: String,
    /// True for the final response of the request that owns the stream.
    pub last: bool,
    /// The JSON-RPC error code of a final response that is an error.
    pub error_code: Option<i64>,
    /// How long a final answer may be kept, and by whom.
    pub cache: Option<super::jsonrpc::CacheHint>,
}

impl Outbound {
    /// A notification or server-to-client request.
    pub fn message(json: String) -> Outbound {
        Outbound {
            json,
            last: false,
            error_code: None,
            cache: None,
        }
    }

    /// The final response of a request.
    pub fn reply(reply: super::dispatch::Reply) -> Outbound {
        Outbound {
            json: reply.json,
            last: true,
            error_code: reply.error_code,
            cache: reply.cache,
        }
    }
}

pub type OutTx = mpsc::UnboundedSender<Outbound>;

/// How sessions reach the other replicas: activity, endings, answers to
/// server-to-client requests, messages for a stream held elsewhere, the
/// event log for `Last-Event-ID`, and per-session state other layers keep
/// (upstream session ids). [`LocalNet`] is a lone instance's: nothing
/// leaves the process. Nothing here is awaited on a request path but the
/// first time a replica meets a session it did not issue.
pub trait SessionNet: Send + Sync + 'static {
    /// A short tag naming this replica (in request and event ids).
    fn tag(&self) -> &str;
    /// Whether other replicas are reachable at all.
    fn shared(&self) -> bool {
        false
    }
    /// The session served a request (batched, never awaited).
    fn touch(&self, _sid: &str) {}
    /// The session was ended here (DELETE).
    fn ended(&self, _sid: &str) {}
    /// A client's answer to a request the replica `tag` sent.
    fn forward_response(
        &self,
        _tag: &str,
        _sid: &str,
        _id: Value,
        _result: Result<Value, RpcError>,
    ) {
    }
    /// A message for a session with no stream here: to the replica holding
    /// its GET stream, or kept until one opens.
    fn deliver(&self, _sid: &str, _json: String) {}
    /// This replica now holds the session's GET stream; the messages kept
    /// for it meanwhile.
    fn attached(&self, _sid: &str) -> BoxFut<'static, Vec<String>> {
        Box::pin(async { Vec::new() })
    }
    fn detached(&self, _sid: &str) {}
    /// An SSE event of the session, for resumption on any replica.
    fn record_event(&self, _sid: &str, _event_id: &str, _data: &str) {}
    /// The session's logged events, oldest first.
    fn events(&self, _sid: &str) -> BoxFut<'static, Vec<(String, String)>> {
        Box::pin(async { Vec::new() })
    }
    /// What the cluster knows of a session this replica does not hold:
    /// `None` when it cannot tell (no shared store, or it is unreachable).
    fn lookup(&self, _sid: &str) -> BoxFut<'static, Option<Remote>> {
        Box::pin(async { None })
    }
    /// Per-session state kept by other layers.
    fn state_get(&self, _sid: &str, _key: &str) -> BoxFut<'static, Option<String>> {
        Box::pin(async { None })
    }
    fn state_set(&self, _sid: &str, _key: &str, _value: String) {}
}

/// What the cluster knows of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    /// Some replica ended it.
    pub ended: bool,
    /// Some replica served it within `SESSION_TTL`.
    pub active: bool,
}

/// A lone instance: sessions live in this process only.
pub struct LocalNet;

impl SessionNet for LocalNet {
    fn tag(&self) -> &str {
        "local"
    }
}

/// Replay buffer of one session's SSE events, for `Last-Event-ID`.
#[derive(Default)]
struct EventLog {
    events: VecDeque<(String, u64, String)>,
}

const EVENT_LOG_MAX: usize = 256;

#[derive(Debug, Clone)]
pub struct SessionState {
    pub protocol_version: String,
    pub client_capabilities: Value,
    pub client_info: Value,
    pub initialized: bool,
    pub log_level: String,
}

pub struct Session {
    /// The random id behind the public one: the key of the session's state
    /// in this process and in the cluster.
    pub sid: String,
    /// What the client sends as `Mcp-Session-Id` (sealed; for legacy SSE
    /// sessions the `sid` itself). Set once the session is registered.
    public_id: Mutex<String>,
    /// The principal's scope key: only the same principal may use it.
    pub owner: String,
    pub server_id: Option<String>,
    /// Unix seconds.
    pub issued_at: i64,
    net: Arc<dyn SessionNet>,
    state: Mutex<SessionState>,
    pending: Mutex<HashMap<String, oneshot::Sender<Result<Value, RpcError>>>>,
    inflight: Mutex<HashMap<String, CancellationToken>>,
    get_stream: Mutex<Option<OutTx>>,
    next_id: AtomicU64,
    next_stream: AtomicU64,
    events: Mutex<EventLog>,
    last_seen: Mutex<Instant>,
    pub closed: CancellationToken,
    /// Per-session state owned by other layers (upstream connections).
    pub ext: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The owner and the public id stay out of logs.
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

/// A random session id (the sealed id's `sid`, or a legacy SSE session's
/// id): unguessable, visible ASCII.
pub fn new_session_id() -> String {
    super::sealed::new_sid()
}

impl Session {
    /// A new session on this replica (not yet registered).
    pub fn new(owner: String, server_id: Option<String>, protocol_version: &str) -> Arc<Session> {
        Self::with_net(owner, server_id, protocol_version, Arc::new(LocalNet))
    }

    pub fn with_net(
        owner: String,
        server_id: Option<String>,
        protocol_version: &str,
        net: Arc<dyn SessionNet>,
    ) -> Arc<Session> {
        let sid = new_session_id();
        Self::build(
            sid,
            owner,
            server_id,
            crate::util::unix_now(),
            SessionState {
                protocol_version: protocol_version.to_owned(),
                client_capabilities: json!({}),
                client_info: json!({}),
                initialized: false,
                log_level: "debug".into(),
            },
            net,
        )
    }

    /// A session another replica issued, as its id describes it.
    pub fn from_claims(claims: SessionClaims, net: Arc<dyn SessionNet>) -> Arc<Session> {
        Self::build(
            claims.sid,
            claims.owner,
            claims.server_id,
            claims.issued_at,
            SessionState {
                protocol_version: claims.protocol_version,
                client_capabilities: claims.capabilities,
                client_info: claims.client_info,
                initialized: true,
                log_level: "debug".into(),
            },
            net,
        )
    }

    fn build(
        sid: String,
        owner: String,
        server_id: Option<String>,
        issued_at: i64,
        state: SessionState,
        net: Arc<dyn SessionNet>,
    ) -> Arc<Session> {
        Arc::new(Session {
            public_id: Mutex::new(sid.clone()),
            sid,
            owner,
            server_id,
            issued_at,
            net,
            state: Mutex::new(state),
            pending: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            get_stream: Mutex::new(None),
            next_id: AtomicU64::new(1),
            next_stream: AtomicU64::new(1),
            events: Mutex::new(EventLog::default()),
            last_seen: Mutex::new(Instant::now()),
            closed: CancellationToken::new(),
            ext: Mutex::new(HashMap::new()),
        })
    }

    /// The id the client uses.
    pub fn public_id(&self) -> String {
        self.public_id.lock().clone()
    }

    pub fn net(&self) -> &Arc<dyn SessionNet> {
        &self.net
    }

    /// The claims to seal into this session's id.
    pub fn claims(&self) -> SessionClaims {
        let st = self.state.lock();
        SessionClaims {
            sid: self.sid.clone(),
            owner: self.owner.clone(),
            server_id: self.server_id.clone(),
            protocol_version: st.protocol_version.clone(),
            capabilities: st.client_capabilities.clone(),
            client_info: st.client_info.clone(),
            issued_at: self.issued_at,
        }
    }

    pub fn state(&self) -> SessionState {
        self.state.lock().clone()
    }

    /// The negotiated version, without copying the rest of the state.
    pub fn protocol_version(&self) -> String {
        self.state.lock().protocol_version.clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut SessionState)) {
        f(&mut self.state.lock());
    }

    pub fn touch(&self) {
        *self.last_seen.lock() = Instant::now();
        self.net.touch(&self.sid);
    }

    pub fn idle_for(&self) -> Duration {
        self.last_seen.lock().elapsed()
    }

    /// A stream name unique across replicas: `<replica tag>.<n>`.
    pub fn new_stream_id(&self) -> String {
        format!(
            "{}.{}",
            self.net.tag(),
            self.next_stream.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Records an SSE event for replay (here, and for the other replicas);
    /// returns its id.
    pub fn record_event(&self, stream: &str, seq: u64, data: &str) -> String {
        let id = format!("{stream}_{seq}");
        {
            let mut log = self.events.lock();
            if log.events.len() == EVENT_LOG_MAX {
                log.events.pop_front();
            }
            log.events
                .push_back((stream.to_owned(), seq, data.to_owned()));
        }
        self.net.record_event(&self.sid, &id, data);
        id
    }

    /// Events of the stream named by `last_event_id` that came after it:
    /// from this replica's log when the stream was here, else from the
    /// cluster's. `None` for an id of no known shape.
    pub async fn replay_after(&self, last_event_id: &str) -> Option<(String, Vec<(u64, String)>)> {
        let (stream, seq) = last_event_id.rsplit_once('_')?;
        let seq: u64 = seq.parse().ok()?;
        if stream.is_empty() || !stream.contains('.') {
            return None;
        }
        let local: Vec<(u64, String)> = self
            .events
            .lock()
            .events
            .iter()
            .filter(|(s, q, _)| s == stream && *q > seq)
            .map(|(_, q, d)| (*q, d.clone()))
            .collect();
        let mine = stream.split('.').next() == Some(self.net.tag());
        if mine || !local.is_empty() {
            return Some((stream.to_owned(), local));
        }
        let remote = self
            .net
            .events(&self.sid)
            .await
            .into_iter()
            .filter_map(|(id, data)| {
                let (s, q) = id.rsplit_once('_')?;
                let q: u64 = q.parse().ok()?;
                (s == stream && q > seq).then_some((q, data))
            })
            .collect();
        Some((stream.to_owned(), remote))
    }

    /// Opens the session's standalone (GET) stream; false if one is open.
    pub fn attach_get_stream(&self, tx: OutTx) -> bool {
        let mut g = self.get_stream.lock();
        if g.as_ref().is_some_and(|t| !t.is_closed()) {
            return false;
        }
        *g = Some(tx);
        true
    }

    /// The open standalone stream (GET stream, or a legacy SSE connection).
    pub fn standalone_stream(&self) -> Option<OutTx> {
        self.get_stream.lock().clone().filter(|t| !t.is_closed())
    }

    /// A server-to-client request id that names this replica, so that the
    /// answer finds its way back from any replica.
    pub fn next_request_id(&self) -> String {
        format!(
            "{}~{}",
            self.net.tag(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn expect_response(&self, id: &str) -> oneshot::Receiver<Result<Value, RpcError>> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.to_owned(), tx);
        rx
    }

    fn forget_response(&self, id: &str) {
        self.pending.lock().remove(id);
    }

    /// Routes a client's response to the server request waiting for it,
    /// here or on the replica that sent the request.
    pub fn complete(&self, id: &Value, result: Result<Value, RpcError>) -> bool {
        if let Some((tag, _)) = id.as_str().and_then(|s| s.rsplit_once('~'))
            && tag != self.net.tag()
        {
            self.net
                .forward_response(tag, &self.sid, id.clone(), result);
            return true;
        }
        self.complete_here(id, result)
    }

    /// Completes a request this replica sent.
    pub fn complete_here(&self, id: &Value, result: Result<Value, RpcError>) -> bool {
        let key = id
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| id.to_string());
        match self.pending.lock().remove(&key) {
            Some(tx) => tx.send(result).is_ok(),
            None => false,
        }
    }

    pub fn begin_request(&self, id: &Value) -> CancellationToken {
        let token = self.closed.child_token();
        self.inflight.lock().insert(id.to_string(), token.clone());
        token
    }

    pub fn end_request(&self, id: &Value) {
        self.inflight.lock().remove(&id.to_string());
    }

    /// `notifications/cancelled` from the client.
    pub fn cancel_request(&self, id: &Value) {
        if let Some(t) = self.inflight.lock().get(&id.to_string()) {
            t.cancel();
        }
    }

    pub fn close(&self) {
        self.closed.cancel();
        self.pending.lock().clear();
    }
}

/// Why a session id does not name a session this principal may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error("malformed session id")]
    Malformed,
    #[error("Session not found")]
    NotFound,
    #[error("too many open MCP sessions")]
    Full,
}

/// The live sessions of one endpoint on this replica.
pub struct Sessions {
    map: parking_lot::RwLock<HashMap<String, Arc<Session>>>,
    by_sid: parking_lot::RwLock<HashMap<String, Arc<Session>>>,
    /// Sessions ended (here or elsewhere): refused until their ids expire.
    ended: Mutex<HashMap<String, Instant>>,
    pub ttl: Duration,
    pub max: usize,
    pub sealer: Arc<SessionSealer>,
    pub net: Arc<dyn SessionNet>,
}

impl Sessions {
    pub fn new(ttl: Duration, max: usize) -> Arc<Sessions> {
        Self::with(
            ttl,
            max,
            Arc::new(SessionSealer::new(None, None, &new_session_id())),
            Arc::new(LocalNet),
        )
    }

    pub fn with(
        ttl: Duration,
        max: usize,
        sealer: Arc<SessionSealer>,
        net: Arc<dyn SessionNet>,
    ) -> Arc<Sessions> {
        Arc::new(Sessions {
            map: parking_lot::RwLock::new(HashMap::new()),
            by_sid: parking_lot::RwLock::new(HashMap::new()),
            ended: Mutex::new(HashMap::new()),
            ttl,
            max,
            sealer,
            net,
        })
    }

    /// A new session, unless this replica holds `MAX_SESSIONS` already.
    pub fn create(
        &self,
        owner: String,
        server_id: Option<String>,
        protocol_version: &str,
    ) -> Option<Arc<Session>> {
        if self.len() >= self.max {
            return None;
        }
        Some(Session::with_net(
            owner,
            server_id,
            protocol_version,
            self.net.clone(),
        ))
    }

    /// Seals a session's id and makes it findable by it.
    pub fn register_sealed(&self, s: &Arc<Session>) -> String {
        let id = self.sealer.seal(&s.claims());
        self.register(s.clone(), id.clone());
        id
    }

    /// Makes a session findable by `public_id` (legacy SSE: its sid).
    pub fn register(&self, s: Arc<Session>, public_id: String) -> bool {
        let mut m = self.map.write();
        if m.len() >= self.max {
            return false;
        }
        *s.public_id.lock() = public_id.clone();
        self.by_sid.write().insert(s.sid.clone(), s.clone());
        m.insert(public_id, s);
        true
    }

    /// Kept for the connection transports (legacy SSE, WebSocket): the
    /// session is found by its sid.
    pub fn insert(&self, s: Arc<Session>) -> bool {
        let id = s.sid.clone();
        self.register(s, id)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map.read().get(id).cloned()
    }

    pub fn by_sid(&self, sid: &str) -> Option<Arc<Session>> {
        self.by_sid.read().get(sid).cloned()
    }

    /// The session `public_id` names, for this principal and scope: held
    /// here, or issued by another replica (opened from the id; the cluster
    /// is asked only whether it ended or expired).
    pub async fn open(
        &self,
        public_id: &str,
        owner: &str,
        server_id: Option<&str>,
    ) -> Result<Arc<Session>, SessionRefused> {
        if let Some(s) = self.get(public_id) {
            return if s.owner == owner && s.server_id.as_deref() == server_id {
                Ok(s)
            } else {
                Err(SessionRefused::NotFound)
            };
        }
        let claims = self.sealer.open(public_id).map_err(|e| match e {
            SessionIdError::Malformed => SessionRefused::Malformed,
            SessionIdError::Unknown => SessionRefused::NotFound,
        })?;
        if claims.owner != owner
            || claims.server_id.as_deref() != server_id
            || self.is_ended(&claims.sid)
        {
            return Err(SessionRefused::NotFound);
        }
        let age = crate::util::unix_now().saturating_sub(claims.issued_at);
        let young = age >= 0 && (age as u64) < self.ttl.as_secs();
        match self.net.lookup(&claims.sid).await {
            Some(r) if r.ended => {
                self.tombstone(&claims.sid);
                return Err(SessionRefused::NotFound);
            }
            Some(r) if !young && !r.active => return Err(SessionRefused::NotFound),
            Some(_) => {}
            // Nobody to ask: a lone instance that does not hold it lost it
            // to idleness (or a restart) unless it is young; with the
            // cluster unreachable, the id is trusted.
            None if !young && !self.net.shared() => return Err(SessionRefused::NotFound),
            None => {}
        }
        // Another request may have opened it meanwhile.
        if let Some(s) = self.get(public_id) {
            return Ok(s);
        }
        let s = Session::from_claims(claims, self.net.clone());
        if self.net.shared()
            && let Some(level) = self
                .net
                .state_get(&s.sid, super::dispatch::LOG_LEVEL_KEY)
                .await
        {
            s.update(|st| st.log_level = level);
        }
        if !self.register(s.clone(), public_id.to_owned()) {
            return Err(SessionRefused::Full);
        }
        Ok(s)
    }

    /// Drops a session here; returns it if it was held.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.map.write().remove(id);
        if let Some(s) = &s {
            self.by_sid.write().remove(&s.sid);
            s.close();
        }
        s
    }

    /// Ends a session everywhere (DELETE): dropped here, refused from now
    /// on, and the other replicas told.
    pub fn end(&self, public_id: &str) -> Option<Arc<Session>> {
        let s = self.remove(public_id)?;
        self.tombstone(&s.sid);
        self.net.ended(&s.sid);
        Some(s)
    }

    /// Another replica ended `sid`: drop it here too.
    pub fn ended_elsewhere(&self, sid: &str) -> Option<Arc<Session>> {
        self.tombstone(sid);
        let s = self.by_sid(sid)?;
        self.remove(&s.public_id())
    }

    fn tombstone(&self, sid: &str) {
        self.ended
            .lock()
            .insert(sid.to_owned(), Instant::now() + self.ttl);
    }

    fn is_ended(&self, sid: &str) -> bool {
        self.ended
            .lock()
            .get(sid)
            .is_some_and(|until| Instant::now() < *until)
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops sessions idle here for longer than the TTL, and expired
    /// tombstones.
    pub fn sweep(&self) -> usize {
        let expired: Vec<String> = self
            .map
            .read()
            .iter()
            .filter(|(_, s)| s.idle_for() > self.ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        let now = Instant::now();
        self.ended.lock().retain(|_, until| *until > now);
        expired.len()
    }

    /// Sweeps idle sessions until `stop`.
    pub async fn run_sweeper(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let every = (self.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => { self.sweep(); }
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// Where the messages a request produces go: the request's own stream when
/// it has one, else the session's standalone stream.
#[derive(Clone, Default)]
pub struct Peer {
    pub stream: Option<OutTx>,
    pub session: Option<Arc<Session>>,
    /// A stateless request's `_meta` log level: `Some(None)` when it asked
    /// for none (then no log message is sent at all); `None` off that
    /// revision.
    pub log_level: Option<Option<String>>,
}

const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Peer {
    fn route(&self) -> Option<OutTx> {
        self.stream
            .clone()
            .filter(|s| !s.is_closed())
            .or_else(|| self.session.as_ref().and_then(|s| s.standalone_stream()))
    }

    /// Sends a notification: on the request's stream, else the session's
    /// stream here, else wherever the session's stream is (or kept for it).
    /// Log messages below the session's `logging/setLevel` are dropped.
    pub fn notify(&self, method: &str, params: Value) {
        if method == "notifications/message" {
            let level = params.get("level").and_then(Value::as_str);
            match (&self.log_level, &self.session, level) {
                (Some(None), _, _) => return,
                (Some(Some(threshold)), _, Some(level))
                    if !super::dispatch::log_passes(level, threshold) =>
                {
                    return;
                }
                (None, Some(s), Some(level))
                    if !super::dispatch::log_passes(level, &s.state.lock().log_level) =>
                {
                    return;
                }
                _ => {}
            }
        }
        let json = jsonrpc::notification(method, &params).to_string();
        match self.route() {
            Some(tx) => {
                let _ = tx.send(Outbound::message(json));
            }
            None => {
                if let Some(s) = self.session.as_ref().filter(|s| s.net.shared()) {
                    s.net.deliver(&s.sid, json);
                }
            }
        }
    }

    /// Sends a request to the client and waits for its answer.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let Some(session) = &self.session else {
            return Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!(
                    "{method}: the client cannot receive requests on this transport (no session)"
                ),
            ));
        };
        let route = self.route();
        if route.is_none() && !session.net.shared() {
            return Err(RpcError::internal(format!(
                "{method}: the client has no open stream"
            )));
        }
        let id = session.next_request_id();
        let rx = session.expect_response(&id);
        let msg = jsonrpc::request(&Value::String(id.clone()), method, &params).to_string();
        match route {
            Some(tx) => {
                if tx.send(Outbound::message(msg)).is_err() {
                    session.forget_response(&id);
                    return Err(RpcError::internal(format!(
                        "{method}: the client stream is closed"
                    )));
                }
            }
            // The session's stream is on another replica (or none is open
            // yet): the request goes there, the answer comes back by its id.
            None => session.net.deliver(&session.sid, msg),
        }
        let r = tokio::select! {
            r = rx => r.unwrap_or_else(|_| Err(RpcError::internal("session closed"))),
            _ = tokio::time::sleep(CLIENT_REQUEST_TIMEOUT) => Err(RpcError::new(jsonrpc::REQUEST_TIMEOUT, format!("{method}: the client did not answer in time"))),
        };
        session.forget_response(&id);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn log_messages_below_the_sessions_level_are_dropped() {
        let s = Session::new("o".into(), None, "2025-11-25");
        s.update(|st| st.log_level = "warning".into());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let peer = Peer {
            stream: Some(tx),
            session: Some(s),
            log_level: None,
        };
        peer.notify(
            "notifications/message",
            json!({"level": "info", "data": "quiet"}),
        );
        peer.notify(
            "notifications/message",
            json!({"level": "error", "data": "loud"}),
        );
        peer.notify(
            "notifications/progress",
            json!({"progressToken": 1, "progress": 1}),
        );
        let first: Value = serde_json::from_str(&rx.recv().await.unwrap().json).unwrap();
        assert_eq!(first["params"]["data"], "loud");
        let second: Value = serde_json::from_str(&rx.recv().await.unwrap().json).unwrap();
        assert_eq!(second["method"], "notifications/progress");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn session_ids_are_random_and_visible_ascii() {
        let a = new_session_id();
        assert_ne!(a, new_session_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }

    #[tokio::test]
    async fn replay_returns_later_events_of_the_same_stream() {
        let s = Session::new("o".into(), None, "2025-11-25");
        let (one, two) = (s.new_stream_id(), s.new_stream_id());
        s.record_event(&one, 1, "a");
        s.record_event(&one, 2, "b");
        s.record_event(&two, 1, "c");
        let (stream, ev) = s.replay_after(&format!("{one}_1")).await.unwrap();
        assert_eq!(stream, one);
        assert_eq!(ev, vec![(2, "b".to_owned())]);
        assert!(s.replay_after("garbage").await.is_none());
    }

    #[tokio::test]
    async fn a_sealed_id_opens_on_a_replica_that_never_saw_it() {
        let sealer = Arc::new(SessionSealer::new(
            None,
            None,
            "k-0123456789-0123456789-0123456789",
        ));
        let issuer = Sessions::with(
            Duration::from_secs(3600),
            10,
            sealer.clone(),
            Arc::new(LocalNet),
        );
        let other = Sessions::with(Duration::from_secs(3600), 10, sealer, Arc::new(LocalNet));
        let s = issuer
            .create("user:a|teams:".into(), None, "2025-11-25")
            .unwrap();
        s.update(|st| st.client_capabilities = json!({"sampling": {}}));
        let id = issuer.register_sealed(&s);
        let opened = other.open(&id, "user:a|teams:", None).await.unwrap();
        assert_eq!(opened.sid, s.sid);
        assert_eq!(opened.state().client_capabilities, json!({"sampling": {}}));
        assert!(opened.state().initialized);
        assert_eq!(
            other.open(&id, "user:b|teams:", None).await.unwrap_err(),
            SessionRefused::NotFound,
            "bound to its principal"
        );
        assert_eq!(
            other
                .open(&id, "user:a|teams:", Some("srv"))
                .await
                .unwrap_err(),
            SessionRefused::NotFound,
            "bound to its server"
        );
        assert!(issuer.end(&id).is_some());
        assert_eq!(
            issuer.open(&id, "user:a|teams:", None).await.unwrap_err(),
            SessionRefused::NotFound,
            "refused after DELETE although it still decrypts"
        );
        assert_eq!(
            other
                .open("not an id", "user:a|teams:", None)
                .await
                .unwrap_err(),
            SessionRefused::Malformed
        );
    }

    #[tokio::test]
    async fn peer_requests_round_trip_through_the_session() {
        let s = Session::new("o".into(), None, "2025-11-25");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let peer = Peer {
            stream: Some(tx),
            session: Some(s.clone()),
            log_level: None,
        };
        let answer = tokio::spawn(async move { peer.request("roots/list", json!({})).await });
        let sent: Value = serde_json::from_str(&rx.recv().await.unwrap().json).unwrap();
        assert_eq!(sent["method"], "roots/list");
        assert!(s.complete(&sent["id"], Ok(json!({"roots": []}))));
        assert_eq!(answer.await.unwrap().unwrap(), json!({"roots": []}));
    }

    #[tokio::test]
    async fn requests_without_a_session_fail_clearly() {
        let e = Peer::default()
            .request("sampling/createMessage", json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.code, jsonrpc::METHOD_NOT_FOUND);
    }
}
