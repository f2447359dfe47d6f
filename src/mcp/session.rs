//! Downstream MCP sessions and the [`Peer`] through which the server talks
//! back to its client (notifications and server-to-client requests).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::jsonrpc::{self, RpcError};

/// A message on its way to the client, already serialized.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub json: String,
    /// True for the final response of the request that owns the stream.
    pub last: bool,
    /// The JSON-RPC error code of a final response that is an error.
    pub error_code: Option<i64>,
}

impl Outbound {
    /// A notification or server-to-client request.
    pub fn message(json: String) -> Outbound {
        Outbound {
            json,
            last: false,
            error_code: None,
        }
    }

    /// The final response of a request.
    pub fn reply(reply: super::dispatch::Reply) -> Outbound {
        Outbound {
            json: reply.json,
            last: true,
            error_code: reply.error_code,
        }
    }
}

pub type OutTx = mpsc::UnboundedSender<Outbound>;

/// Replay buffer of one session's SSE events, for `Last-Event-ID`.
#[derive(Default)]
struct EventLog {
    events: VecDeque<(u64, u64, String)>,
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
    pub id: String,
    /// The principal's scope key: only the same principal may use it.
    pub owner: String,
    pub server_id: Option<String>,
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

/// A session id: 32 random bytes, hex (visible ASCII, unguessable).
pub fn new_session_id() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Session {
    pub fn new(owner: String, server_id: Option<String>, protocol_version: &str) -> Arc<Session> {
        Arc::new(Session {
            id: new_session_id(),
            owner,
            server_id,
            state: Mutex::new(SessionState {
                protocol_version: protocol_version.to_owned(),
                client_capabilities: json!({}),
                client_info: json!({}),
                initialized: false,
                log_level: "info".into(),
            }),
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
    }

    pub fn idle_for(&self) -> Duration {
        self.last_seen.lock().elapsed()
    }

    pub fn new_stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// Records an SSE event for replay; returns its id.
    pub fn record_event(&self, stream: u64, seq: u64, data: &str) -> String {
        let mut log = self.events.lock();
        if log.events.len() == EVENT_LOG_MAX {
            log.events.pop_front();
        }
        log.events.push_back((stream, seq, data.to_owned()));
        format!("{stream}_{seq}")
    }

    /// Events of the stream named by `last_event_id` that came after it.
    pub fn replay_after(&self, last_event_id: &str) -> Option<(u64, Vec<(u64, String)>)> {
        let (stream, seq) = last_event_id.split_once('_')?;
        let (stream, seq): (u64, u64) = (stream.parse().ok()?, seq.parse().ok()?);
        let log = self.events.lock();
        Some((
            stream,
            log.events
                .iter()
                .filter(|(s, q, _)| *s == stream && *q > seq)
                .map(|(_, q, d)| (*q, d.clone()))
                .collect(),
        ))
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

    pub fn next_request_id(&self) -> String {
        format!("srv-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn expect_response(&self, id: &str) -> oneshot::Receiver<Result<Value, RpcError>> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.to_owned(), tx);
        rx
    }

    fn forget_response(&self, id: &str) {
        self.pending.lock().remove(id);
    }

    /// Routes a client's response to the server request waiting for it.
    pub fn complete(&self, id: &Value, result: Result<Value, RpcError>) -> bool {
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

/// The live sessions of one endpoint.
pub struct Sessions {
    map: parking_lot::RwLock<HashMap<String, Arc<Session>>>,
    pub ttl: Duration,
    pub max: usize,
}

impl Sessions {
    pub fn new(ttl: Duration, max: usize) -> Arc<Sessions> {
        Arc::new(Sessions {
            map: parking_lot::RwLock::new(HashMap::new()),
            ttl,
            max,
        })
    }

    pub fn insert(&self, s: Arc<Session>) -> bool {
        let mut m = self.map.write();
        if m.len() >= self.max {
            return false;
        }
        m.insert(s.id.clone(), s);
        true
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map.read().get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.map.write().remove(id);
        if let Some(s) = &s {
            s.close();
        }
        s
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops sessions idle for longer than the TTL.
    pub fn sweep(&self) -> usize {
        let expired: Vec<String> = self
            .map
            .read()
            .values()
            .filter(|s| s.idle_for() > self.ttl)
            .map(|s| s.id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
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
}

const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Peer {
    fn route(&self) -> Option<OutTx> {
        self.stream
            .clone()
            .filter(|s| !s.is_closed())
            .or_else(|| self.session.as_ref().and_then(|s| s.standalone_stream()))
    }

    /// Sends a notification; dropped when the client has no open stream.
    pub fn notify(&self, method: &str, params: Value) {
        if let Some(tx) = self.route() {
            let _ = tx.send(Outbound::message(
                jsonrpc::notification(method, &params).to_string(),
            ));
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
        let Some(tx) = self.route() else {
            return Err(RpcError::internal(format!(
                "{method}: the client has no open stream"
            )));
        };
        let id = session.next_request_id();
        let rx = session.expect_response(&id);
        let msg = jsonrpc::request(&Value::String(id.clone()), method, &params).to_string();
        if tx.send(Outbound::message(msg)).is_err() {
            session.forget_response(&id);
            return Err(RpcError::internal(format!(
                "{method}: the client stream is closed"
            )));
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

    #[test]
    fn session_ids_are_random_and_visible_ascii() {
        let a = new_session_id();
        assert_ne!(a, new_session_id());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }

    #[test]
    fn replay_returns_later_events_of_the_same_stream() {
        let s = Session::new("o".into(), None, "2025-11-25");
        s.record_event(1, 1, "a");
        s.record_event(1, 2, "b");
        s.record_event(2, 1, "c");
        let (stream, ev) = s.replay_after("1_1").unwrap();
        assert_eq!(stream, 1);
        assert_eq!(ev, vec![(2, "b".to_owned())]);
        assert!(s.replay_after("garbage").is_none());
    }

    #[tokio::test]
    async fn peer_requests_round_trip_through_the_session() {
        let s = Session::new("o".into(), None, "2025-11-25");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let peer = Peer {
            stream: Some(tx),
            session: Some(s.clone()),
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
