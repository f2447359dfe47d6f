//! MCP sessions across replicas, over Redis (`CACHE_TYPE=redis`): the
//! [`SessionNet`] that lets any replica continue any session.
//!
//! What lives where (under `CACHE_PREFIX`):
//! - `replica:<tag>` (channel): answers to server-to-client requests this
//!   replica sent, and messages for the GET streams it holds;
//! - `session:<sid>:stream` — the tag of the replica holding the session's
//!   GET stream;
//! - `session:<sid>:pending` — messages kept while no stream is open anywhere
//!   (`MESSAGE_TTL`, at most [`PENDING_MAX`]);
//! - `session:<sid>:events` — the session's SSE events for `Last-Event-ID`
//!   on any replica (`MESSAGE_TTL`, at most [`EVENTS_MAX`]);
//! - `session:<sid>:seen` — set when a replica served the session
//!   (`SESSION_TTL`, written in batches);
//! - `session:<sid>:ended` — the tombstone after `DELETE` (`SESSION_TTL`);
//! - `session:<sid>:state` — state other layers keep (upstream session ids).
//!
//! Writes are queued and sent by one task, in order; nothing a request does
//! waits for them. The reads — a session first met here, a GET stream
//! opening, a replay — wait for one round trip at most.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster::bus::BoxFuture;
use crate::cluster::redis::{Redis, Subscriptions};
use crate::cluster::{Bus, Event, Origin, Subscriber};
use crate::mcp::jsonrpc::RpcError;
use crate::mcp::session::{Outbound, Remote, SessionNet, Sessions};

pub const PENDING_MAX: isize = 1000;
pub const EVENTS_MAX: isize = 256;

/// A short, stable name of a replica (in ids the client echoes back).
pub fn replica_tag(replica: &str) -> String {
    Sha256::digest(replica.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    /// A client's answer to a request the receiving replica sent.
    Response {
        sid: String,
        id: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
    /// A message for a GET stream the receiving replica holds.
    Deliver { sid: String, json: String },
}

/// A queued write of the relay.
pub enum Op {
    Publish(String, String),
    Deliver(String, String),
    Detached(String),
    Event(String, String),
    Ended(String),
    State(String, String, String),
}

pub struct RedisNet {
    redis: Arc<Redis>,
    tag: String,
    bus: Arc<Bus>,
    sessions: OnceLock<Weak<Sessions>>,
    touched: Mutex<HashSet<String>>,
    ops: mpsc::Sender<Op>,
    session_ttl: u64,
    message_ttl: u64,
}

const QUEUE: usize = 50_000;

/// The relay's write queue, drained by [`RedisNet::run`].
pub struct Ops(mpsc::Receiver<Op>);

impl RedisNet {
    /// The net and its writer task (to be run until shutdown).
    pub fn new(
        redis: Arc<Redis>,
        bus: Arc<Bus>,
        session_ttl: Duration,
        message_ttl: Duration,
    ) -> (Arc<RedisNet>, Ops) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let net = Arc::new(RedisNet {
            tag: replica_tag(bus.replica()),
            redis,
            bus,
            sessions: OnceLock::new(),
            touched: Mutex::new(HashSet::new()),
            ops: tx,
            session_ttl: session_ttl.as_secs().max(1),
            message_ttl: message_ttl.as_secs().max(1),
        });
        (net, Ops(rx))
    }

    /// The sessions this net serves (set once, after both exist).
    pub fn serve(&self, sessions: &Arc<Sessions>) {
        let _ = self.sessions.set(Arc::downgrade(sessions));
    }

    fn sessions(&self) -> Option<Arc<Sessions>> {
        self.sessions.get().and_then(Weak::upgrade)
    }

    fn key(&self, sid: &str, what: &str) -> String {
        self.redis.settings.key(&format!("session:{sid}:{what}"))
    }

    fn channel(&self, tag: &str) -> String {
        self.redis.settings.key(&format!("replica:{tag}"))
    }

    fn queue(&self, op: Op) {
        if self.ops.try_send(op).is_err() {
            tracing::warn!("session relay queue is full; a cross-replica message was dropped");
        }
    }

    /// Listens on this replica's channel.
    pub fn listen(self: &Arc<Self>, subscriptions: &Subscriptions) {
        let me = Arc::downgrade(self);
        subscriptions.on(
            self.channel(&self.tag),
            Arc::new(move |payload: Vec<u8>| {
                let me = me.clone();
                Box::pin(async move {
                    if let Some(me) = me.upgrade() {
                        me.incoming(&payload);
                    }
                }) as BoxFuture<'static, ()>
            }),
        );
    }

    fn incoming(&self, payload: &[u8]) {
        let Ok(wire) = serde_json::from_slice::<Wire>(payload) else {
            tracing::warn!("ignoring an unreadable session relay message");
            return;
        };
        let Some(sessions) = self.sessions() else {
            return;
        };
        match wire {
            Wire::Response {
                sid,
                id,
                result,
                error,
            } => {
                let outcome = match error {
                    Some(e) => Err(RpcError::from_json(&e)),
                    None => Ok(result.unwrap_or(Value::Null)),
                };
                if let Some(s) = sessions.by_sid(&sid) {
                    s.complete_here(&id, outcome);
                }
            }
            Wire::Deliver { sid, json } => {
                let stream = sessions.by_sid(&sid).and_then(|s| s.standalone_stream());
                match stream {
                    Some(tx) => {
                        let _ = tx.send(Outbound::message(json));
                    }
                    // The stream moved or closed meanwhile: keep it.
                    None => self.queue(Op::Deliver(sid, json)),
                }
            }
        }
    }

    /// Sends the queued writes, in order, until `stop`; flushes activity
    /// every few seconds.
    pub async fn run(self: Arc<Self>, ops: Ops, stop: CancellationToken) {
        let mut ops = ops.0;
        let every = Duration::from_secs((self.session_ttl / 10).clamp(1, 30));
        let mut flush = tokio::time::interval(every);
        let mut failing = false;
        loop {
            let r = tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => self.apply(op).await,
                    None => return,
                },
                _ = flush.tick() => self.flush_activity().await,
                _ = stop.cancelled() => return,
            };
            match r {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("the session relay reaches Redis again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "the session relay cannot reach Redis: sessions keep working on the replicas that hold them, cross-replica routing pauses");
                }
                Err(_) => {}
            }
        }
    }

    async fn flush_activity(&self) -> Result<(), crate::cluster::redis::RedisError> {
        let sids: Vec<String> = std::mem::take(&mut *self.touched.lock())
            .into_iter()
            .collect();
        if sids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for sid in &sids {
            pipe.set_ex(self.key(sid, "seen"), 1, self.session_ttl)
                .ignore();
        }
        let mut c = self.redis.commands();
        self.redis.timed(pipe.query_async::<()>(&mut c)).await
    }

    async fn apply(&self, op: Op) -> Result<(), crate::cluster::redis::RedisError> {
        let mut c = self.redis.commands();
        match op {
            Op::Publish(channel, payload) => {
                let _: i64 = self.redis.timed(c.publish(channel, payload)).await?;
            }
            Op::Deliver(sid, json) => {
                let holder: Option<String> =
                    self.redis.timed(c.get(self.key(&sid, "stream"))).await?;
                let sent = match holder {
                    Some(tag) => {
                        let payload = serde_json::to_string(&Wire::Deliver {
                            sid: sid.clone(),
                            json: json.clone(),
                        })
                        .expect("serializes");
                        let receivers: i64 = self
                            .redis
                            .timed(c.publish(self.channel(&tag), payload))
                            .await?;
                        receivers > 0
                    }
                    None => false,
                };
                if !sent {
                    let key = self.key(&sid, "pending");
                    let mut pipe = redis::pipe();
                    pipe.rpush(&key, json)
                        .ignore()
                        .ltrim(&key, -PENDING_MAX, -1)
                        .ignore()
                        .expire(&key, self.message_ttl as i64)
                        .ignore();
                    self.redis.timed(pipe.query_async::<()>(&mut c)).await?;
                }
            }
            Op::Detached(sid) => {
                // Only if this replica still holds it.
                let script = redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                );
                let mut inv = script.prepare_invoke();
                inv.key(self.key(&sid, "stream")).arg(&self.tag);
                let _: i64 = self.redis.timed(inv.invoke_async(&mut c)).await?;
            }
            Op::Event(sid, entry) => {
                let key = self.key(&sid, "events");
                let mut pipe = redis::pipe();
                pipe.rpush(&key, entry)
                    .ignore()
                    .ltrim(&key, -EVENTS_MAX, -1)
                    .ignore()
                    .expire(&key, self.message_ttl as i64)
                    .ignore();
                self.redis.timed(pipe.query_async::<()>(&mut c)).await?;
            }
            Op::Ended(sid) => {
                let mut pipe = redis::pipe();
                pipe.set_ex(self.key(&sid, "ended"), 1, self.session_ttl)
                    .ignore();
                for what in ["stream", "pending", "events", "seen", "state"] {
                    pipe.del(self.key(&sid, what)).ignore();
                }
                self.redis.timed(pipe.query_async::<()>(&mut c)).await?;
                self.bus.publish(Event::SessionEnded { sid }).await;
            }
            Op::State(sid, field, value) => {
                let key = self.key(&sid, "state");
                let mut pipe = redis::pipe();
                pipe.hset(&key, field, value)
                    .ignore()
                    .expire(&key, self.session_ttl as i64)
                    .ignore();
                self.redis.timed(pipe.query_async::<()>(&mut c)).await?;
            }
        }
        Ok(())
    }
}

impl SessionNet for RedisNet {
    fn tag(&self) -> &str {
        &self.tag
    }

    fn shared(&self) -> bool {
        true
    }

    fn touch(&self, sid: &str) {
        let mut t = self.touched.lock();
        if !t.contains(sid) {
            t.insert(sid.to_owned());
        }
    }

    fn ended(&self, sid: &str) {
        self.queue(Op::Ended(sid.to_owned()));
    }

    fn forward_response(&self, tag: &str, sid: &str, id: Value, result: Result<Value, RpcError>) {
        let (result, error) = match result {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e.to_json())),
        };
        let payload = serde_json::to_string(&Wire::Response {
            sid: sid.to_owned(),
            id,
            result,
            error,
        })
        .expect("serializes");
        self.queue(Op::Publish(self.channel(tag), payload));
    }

    fn deliver(&self, sid: &str, json: String) {
        self.queue(Op::Deliver(sid.to_owned(), json));
    }

    fn attached(&self, sid: &str) -> BoxFuture<'static, Vec<String>> {
        let (redis, stream, pending, tag, ttl) = (
            self.redis.clone(),
            self.key(sid, "stream"),
            self.key(sid, "pending"),
            self.tag.clone(),
            self.session_ttl,
        );
        Box::pin(async move {
            let mut c = redis.commands();
            let mut pipe = redis::pipe();
            pipe.set_ex(&stream, tag, ttl)
                .ignore()
                .lrange(&pending, 0, -1)
                .del(&pending)
                .ignore();
            match redis
                .timed(pipe.query_async::<(Vec<String>,)>(&mut c))
                .await
            {
                Ok((kept,)) => kept,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot register a GET stream in Redis");
                    Vec::new()
                }
            }
        })
    }

    fn detached(&self, sid: &str) {
        self.queue(Op::Detached(sid.to_owned()));
    }

    fn record_event(&self, sid: &str, event_id: &str, data: &str) {
        self.queue(Op::Event(sid.to_owned(), format!("{event_id}\n{data}")));
    }

    fn events(&self, sid: &str) -> BoxFuture<'static, Vec<(String, String)>> {
        let (redis, key) = (self.redis.clone(), self.key(sid, "events"));
        Box::pin(async move {
            let mut c = redis.commands();
            let entries: Vec<String> = redis.timed(c.lrange(&key, 0, -1)).await.unwrap_or_default();
            entries
                .into_iter()
                .filter_map(|e| {
                    let (id, data) = e.split_once('\n')?;
                    Some((id.to_owned(), data.to_owned()))
                })
                .collect()
        })
    }

    fn lookup(&self, sid: &str) -> BoxFuture<'static, Option<Remote>> {
        let (redis, ended, seen) = (
            self.redis.clone(),
            self.key(sid, "ended"),
            self.key(sid, "seen"),
        );
        Box::pin(async move {
            let mut c = redis.commands();
            let mut pipe = redis::pipe();
            pipe.exists(&ended).exists(&seen);
            match redis.timed(pipe.query_async::<(bool, bool)>(&mut c)).await {
                Ok((ended, active)) => Some(Remote { ended, active }),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot look a session up in Redis; trusting its id");
                    None
                }
            }
        })
    }

    fn state_get(&self, sid: &str, key: &str) -> BoxFuture<'static, Option<String>> {
        let (redis, hash, field) = (self.redis.clone(), self.key(sid, "state"), key.to_owned());
        Box::pin(async move {
            let mut c = redis.commands();
            redis.timed(c.hget(&hash, &field)).await.ok().flatten()
        })
    }

    fn state_set(&self, sid: &str, key: &str, value: String) {
        self.queue(Op::State(sid.to_owned(), key.to_owned(), value));
    }
}

/// Sessions ended on another replica are dropped and refused here too.
pub struct SessionEndings(
    pub Weak<Sessions>,
    pub Arc<dyn Fn(&crate::mcp::session::Session) + Send + Sync>,
);

impl Subscriber for SessionEndings {
    fn on_event<'a>(&'a self, event: &'a Event, origin: Origin) -> BoxFuture<'a, ()> {
        if let (Event::SessionEnded { sid }, Origin::Remote) = (event, origin)
            && let Some(sessions) = self.0.upgrade()
            && let Some(s) = sessions.ended_elsewhere(sid)
        {
            (self.1)(&s);
        }
        Box::pin(async {})
    }
}

/// Turns cluster events into what `subscriptions/listen` streams carry:
/// any registry change may change every list; an upstream's resource
/// change is told to those who follow that resource.
pub struct ListChanges(pub tokio::sync::broadcast::Sender<(String, Option<String>)>);

impl Subscriber for ListChanges {
    fn on_event<'a>(&'a self, event: &'a Event, _origin: Origin) -> BoxFuture<'a, ()> {
        match event {
            Event::RegistryChanged { .. } | Event::PrincipalsChanged { .. } => {
                for what in ["tools", "prompts", "resources"] {
                    let _ = self
                        .0
                        .send((format!("notifications/{what}/list_changed"), None));
                }
            }
            Event::UpstreamResourceUpdated { uri, .. } => {
                let _ = self
                    .0
                    .send(("notifications/resources/updated".into(), Some(uri.clone())));
            }
            _ => {}
        }
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_and_stable() {
        assert_eq!(replica_tag("a"), replica_tag("a"));
        assert_ne!(replica_tag("a"), replica_tag("b"));
        assert_eq!(replica_tag("mcpgate-0123").len(), 12);
    }

    #[test]
    fn wire_messages_round_trip() {
        let w = Wire::Response {
            sid: "s".into(),
            id: Value::from("t~1"),
            result: Some(serde_json::json!({"ok": true})),
            error: None,
        };
        let text = serde_json::to_string(&w).unwrap();
        assert!(text.contains("\"kind\":\"response\""));
        assert!(matches!(
            serde_json::from_str::<Wire>(&text).unwrap(),
            Wire::Response { .. }
        ));
    }
}
