//! Streamable HTTP: each request is a POST whose answer is JSON or an SSE
//! stream carrying the call's notifications and requests, then its result.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{CallRelay, NoRelay, Relay, UpstreamError, UpstreamSpec, answer, rpc_result};
use crate::mcp::jsonrpc::{self, Message};

pub(super) struct HttpConn {
    url: String,
    client: reqwest::Client,
    headers: Vec<(String, String)>,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    alive: AtomicBool,
    on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
}

impl HttpConn {
    pub(super) fn new(
        spec: &UpstreamSpec,
        client: &reqwest::Client,
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
        }
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
            UpstreamError::Connect(name.to_owned(), e.to_string())
        } else if e.is_timeout() {
            UpstreamError::Failed(name.to_owned(), "timed out".into())
        } else {
            UpstreamError::Failed(name.to_owned(), e.to_string())
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
                Ok(Message::Notification { method, params })
                    if method.ends_with("/list_changed") =>
                {
                    if let Some(tx) = &self.on_unsolicited {
                        let _ = tx.send((method, params));
                    }
                }
                Ok(Message::Notification { method, params }) => {
                    if let Some(r) = &relay {
                        r.notify(&method, params);
                    }
                }
                Ok(Message::Request {
                    id: rid,
                    method,
                    params,
                }) => {
                    let inner: Arc<dyn Relay> = match &relay {
                        Some(r) => r.inner.clone(),
                        None => Arc::new(NoRelay),
                    };
                    let reply = answer(inner, rid, method, params).await;
                    if let Err(e) = self.post_notification(name, &reply).await {
                        tracing::warn!(upstream = name, error = %e, "could not deliver an answer upstream");
                    }
                }
                _ => {}
            }
        }
        Err(UpstreamError::Failed(
            name.to_owned(),
            "the upstream closed the stream before answering".into(),
        ))
    }

    pub(super) async fn close(&self) {
        let sid = self.session.lock().clone();
        if let Some(sid) = sid {
            let mut req = self.client.delete(&self.url).header("mcp-session-id", sid);
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), req.send()).await;
        }
    }
}
