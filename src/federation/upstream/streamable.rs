//! Streamable HTTP: each request is a POST whose answer is JSON or an SSE
//! stream carrying the call's notifications and requests, then its result.
//! Besides, the session's standalone GET stream is kept open (re-opened
//! with `Last-Event-ID` when it drops): servers send there what relates to
//! no request — the TypeScript SDK's `server.request(...)` from a tool,
//! `list_changed`, logs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CallRelay, NoRelay, Relay, UpstreamError, UpstreamSpec, answer, rpc_result};
use crate::federation::clients::HttpClients;
use crate::mcp::jsonrpc::{self, Message};

pub(super) struct HttpConn {
    url: String,
    client: HttpClients,
    headers: Vec<(String, String)>,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    alive: AtomicBool,
    on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
    /// The calls in flight, most recent last: what arrives on the GET
    /// stream while one runs goes to it (its client's stream).
    calls: Mutex<Vec<(Value, Arc<CallRelay>)>>,
    /// Where what arrives on the GET stream goes when no call runs: the
    /// downstream session (for a connection opened on its behalf).
    session_relay: Mutex<Option<Arc<dyn Relay>>>,
    stop: CancellationToken,
}

/// Removes a call from the in-flight list however it ends.
struct InFlight<'a>(&'a HttpConn, Value);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.calls.lock().retain(|(id, _)| *id != self.1);
    }
}

impl HttpConn {
    pub(super) fn new(
        spec: &UpstreamSpec,
        client: &HttpClients,
        on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
    ) -> HttpConn {
        HttpConn {
            url: spec.url.clone(),
            client: client.clone(),
            headers: spec.headers.clone(),
            session: Mutex::new(None),
            version: Mutex::new(None),
            alive: AtomicBool::new(true),
            on_unsolicited,
            calls: Mutex::new(Vec::new()),
            session_relay: Mutex::new(None),
            stop: CancellationToken::new(),
        }
    }

    /// Stops the GET stream task.
    pub(super) fn halt(&self) {
        self.stop.cancel();
    }

    pub(super) fn set_session_relay(&self, relay: Arc<dyn Relay>) {
        *self.session_relay.lock() = Some(relay);
    }

    pub(super) fn set_version(&self, version: &str) {
        *self.version.lock() = Some(version.to_owned());
    }

    pub(super) fn set_session(&self, id: &str) {
        *self.session.lock() = Some(id.to_owned());
    }

    pub(super) fn session_id(&self) -> Option<String> {
        self.session.lock().clone()
    }

    pub(super) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .get()
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(s) = self.session.lock().clone() {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = self.version.lock().clone() {
            req = req.header("mcp-protocol-version", v);
        }
        req
    }

    fn connect_error(&self, name: &str, e: reqwest::Error) -> UpstreamError {
        self.alive.store(false, Ordering::Relaxed);
        if e.is_connect() || e.is_builder() {
            UpstreamError::Connect(name.to_owned(), crate::util::error_chain(&e))
        } else if e.is_timeout() {
            UpstreamError::Failed(name.to_owned(), "timed out".into())
        } else {
            UpstreamError::Failed(name.to_owned(), crate::util::error_chain(&e))
        }
    }

    pub(super) async fn post_notification(
        &self,
        name: &str,
        msg: &Value,
    ) -> Result<(), UpstreamError> {
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

    pub(super) async fn request(
        &self,
        name: &str,
        id: &Value,
        msg: &Value,
        relay: Option<Arc<CallRelay>>,
    ) -> Result<Value, UpstreamError> {
        let _in_flight = relay.as_ref().map(|r| {
            self.calls.lock().push((id.clone(), r.clone()));
            InFlight(self, id.clone())
        });
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
            *self.session.lock() = Some(sid.to_owned());
        }
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && self.session.lock().is_some() {
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
                Ok(other) => self.incoming(name, other, relay.as_ref()).await,
                Err(_) => {}
            }
        }
        Err(UpstreamError::Failed(
            name.to_owned(),
            "the upstream closed the stream before answering".into(),
        ))
    }

    /// A message the upstream sent that is not the answer being waited
    /// for: `list_changed` to discovery; notifications and requests to the
    /// call they belong to (`relay`, else by progress token, else the most
    /// recent call), else to the downstream session.
    async fn incoming(&self, name: &str, msg: Message, relay: Option<&Arc<CallRelay>>) {
        match msg {
            Message::Notification { method, params }
                if super::for_discovery(&method, &params, self.on_unsolicited.as_ref()) => {}
            Message::Notification { method, params } => {
                let call = relay.cloned().or_else(|| self.call_for(&params));
                match call {
                    Some(r) => r.notify(&method, params),
                    None => {
                        let session = self.session_relay.lock().clone();
                        if let Some(s) = session {
                            s.notify(&method, params);
                        }
                    }
                }
            }
            Message::Request { id, method, params } => {
                let call = relay.cloned().or_else(|| self.call_for(&Value::Null));
                let inner: Arc<dyn Relay> = match call {
                    Some(r) => r.inner.clone(),
                    None => self
                        .session_relay
                        .lock()
                        .clone()
                        .unwrap_or_else(|| Arc::new(NoRelay)),
                };
                let reply = answer(inner, id, method, params).await;
                if let Err(e) = self.post_notification(name, &reply).await {
                    tracing::warn!(upstream = name, error = %e, "could not deliver an answer upstream");
                }
            }
            Message::Response { .. } => {}
        }
    }

    /// The call a message that names no request belongs to: by progress
    /// token, else the most recent call in flight.
    fn call_for(&self, params: &Value) -> Option<Arc<CallRelay>> {
        let calls = self.calls.lock();
        if let Some(token) = params.get("progressToken") {
            return calls
                .iter()
                .map(|(_, r)| r)
                .find(|r| &r.upstream_token == token)
                .cloned();
        }
        calls.last().map(|(_, r)| r.clone())
    }

    /// Keeps the session's GET stream open until the connection closes: a
    /// server that has none answers 405 and is not asked again.
    /// `opened` is told once the first attempt has an answer (the stream
    /// is open, or the server has none), so that a call right after the
    /// handshake finds the stream in place.
    pub(super) async fn listen(
        self: Arc<Self>,
        name: String,
        opened: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut opened = Some(opened);
        let mut last_event: Option<String> = None;
        let mut failures = 0u32;
        loop {
            if self.stop.is_cancelled() || !self.is_alive() {
                return;
            }
            let Some(sid) = self.session_id() else { return };
            let mut req = self
                .client
                .get()
                .get(&self.url)
                .header("accept", "text/event-stream")
                .header("mcp-session-id", sid);
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            if let Some(v) = self.version.lock().clone() {
                req = req.header("mcp-protocol-version", v);
            }
            if let Some(id) = &last_event {
                req = req.header("last-event-id", id);
            }
            let resp = tokio::select! {
                r = req.send() => r,
                _ = self.stop.cancelled() => return,
            };
            if let Some(tx) = opened.take() {
                let _ = tx.send(());
            }
            match resp {
                Ok(r) if r.status().is_success() => {
                    failures = 0;
                    let mut events = r.bytes_stream().eventsource();
                    loop {
                        let ev = tokio::select! {
                            ev = events.next() => ev,
                            _ = self.stop.cancelled() => return,
                        };
                        let Some(Ok(ev)) = ev else { break };
                        if !ev.id.is_empty() {
                            last_event = Some(ev.id.clone());
                        }
                        if ev.data.trim().is_empty() {
                            continue;
                        }
                        if let Ok(msg) = jsonrpc::parse(ev.data.as_bytes()) {
                            self.incoming(&name, msg, None).await;
                        }
                    }
                }
                // No standalone stream offered, or the session is gone.
                Ok(r)
                    if r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED
                        || r.status() == reqwest::StatusCode::NOT_FOUND =>
                {
                    return;
                }
                Ok(_) | Err(_) => failures += 1,
            }
            // Reconnect, backing off while the upstream keeps refusing.
            let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }

    pub(super) async fn close(&self) {
        self.stop.cancel();
        let sid = self.session.lock().clone();
        if let Some(sid) = sid {
            let mut req = self
                .client
                .get()
                .delete(&self.url)
                .header("mcp-session-id", sid);
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), req.send()).await;
        }
    }
}
