//! A message stream (legacy SSE or stdio): one reader task routes answers
//! to their callers; other messages go to the relay of the call they belong
//! to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{CallRelay, NoRelay, Relay, UpstreamError, answer, rpc_result};
use crate::mcp::jsonrpc::{self, Message, RpcError};

type Pending = Mutex<
    HashMap<
        String,
        (
            oneshot::Sender<Result<Value, RpcError>>,
            Option<Arc<CallRelay>>,
        ),
    >,
>;

pub(super) struct StreamConn {
    pub(super) out: mpsc::UnboundedSender<String>,
    pending: Pending,
    alive: AtomicBool,
    pub(super) stop: CancellationToken,
    on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
}

impl StreamConn {
    pub(super) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    pub(super) fn new(
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

    pub(super) fn send(&self, name: &str, msg: Value) -> Result<(), UpstreamError> {
        if !self.alive.load(Ordering::Relaxed) || self.out.send(msg.to_string()).is_err() {
            return Err(UpstreamError::Connect(
                name.to_owned(),
                "connection is closed".into(),
            ));
        }
        Ok(())
    }

    pub(super) async fn request(
        &self,
        name: &str,
        id: &Value,
        msg: Value,
        relay: Option<Arc<CallRelay>>,
    ) -> Result<Value, UpstreamError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.to_string(), (tx, relay));
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

    pub(super) fn forget(&self, id: &Value) {
        self.pending.lock().remove(&id.to_string());
    }

    /// The relay for a message that names no request: by progress token,
    /// else the most recent call in flight.
    fn relay_for(&self, params: &Value) -> Option<Arc<CallRelay>> {
        let pending = self.pending.lock();
        if let Some(token) = params.get("progressToken") {
            return pending
                .values()
                .filter_map(|(_, r)| r.clone())
                .find(|r| &r.upstream_token == token);
        }
        pending.values().filter_map(|(_, r)| r.clone()).last()
    }

    pub(super) fn incoming(self: &Arc<Self>, raw: &[u8]) {
        match jsonrpc::parse(raw) {
            Ok(Message::Response { id, result }) => {
                if let Some((tx, _)) = self.pending.lock().remove(&id.to_string()) {
                    let _ = tx.send(result);
                }
            }
            Ok(Message::Notification { method, params }) => {
                if super::for_discovery(&method, &params, self.on_unsolicited.as_ref()) {
                    return;
                }
                if let Some(r) = self.relay_for(&params) {
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

    pub(super) fn fail_all(&self) {
        self.alive.store(false, Ordering::Relaxed);
        self.pending.lock().clear();
    }

    pub(super) fn close(&self) {
        self.stop.cancel();
        self.fail_all();
    }
}
