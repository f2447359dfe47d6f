//! Calls to an upstream in the 2026-07-28 (stateless) revision: one POST a
//! request, no session, the client's own `_meta` (its capabilities, log
//! level, progress token) passed through, and the headers that mirror the
//! body. What the upstream answers — an `InputRequiredResult` with its
//! `requestState` included — comes back untouched; notifications on the
//! answer's stream go to the caller's relay.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Relay, UpstreamError, UpstreamSpec, rpc_result};
use crate::federation::clients::HttpClients;
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::protocol;

/// A header value as the revision writes one: as it is when it is visible
/// ASCII, else `=?base64?...?=`.
fn mirrored(v: &str) -> String {
    if v.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        v.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    }
}

/// Asks the upstream whether it speaks the stateless revision
/// (`server/discover`): its supported versions, when it does.
pub async fn discover(
    http: &HttpClients,
    spec: &UpstreamSpec,
    timeout: Duration,
) -> Option<Vec<String>> {
    let meta = json!({"_meta": {
        protocol::META_VERSION: protocol::STATELESS,
        crate::mcp::stateless::META_CAPABILITIES: {"sampling": {}, "elicitation": {}, "roots": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")},
    }});
    let r = call(
        http,
        spec,
        "server/discover",
        meta,
        &[],
        None,
        timeout,
        CancellationToken::new(),
    )
    .await
    .ok()?;
    let versions: Vec<String> = r
        .get("supportedVersions")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    versions
        .iter()
        .any(|v| v == protocol::STATELESS)
        .then_some(versions)
}

/// One request, statelessly. `extra` are headers of the client's request
/// that go through as they are (`Mcp-Param-*`).
#[allow(clippy::too_many_arguments)]
pub async fn call(
    http: &HttpClients,
    spec: &UpstreamSpec,
    method: &str,
    params: Value,
    extra: &[(String, String)],
    relay: Option<Arc<dyn Relay>>,
    timeout: Duration,
    cancel: CancellationToken,
) -> Result<Value, UpstreamError> {
    let name = spec.name.as_str();
    let id = json!(rand::random::<u32>());
    let mut req = http
        .get()
        .post(&spec.url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", protocol::STATELESS)
        .header("mcp-method", method);
    let mirrored_name = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        _ => None,
    };
    if let Some(n) = mirrored_name.and_then(Value::as_str) {
        req = req.header("mcp-name", mirrored(n));
    }
    for (k, v) in extra.iter().chain(spec.headers.iter()) {
        req = req.header(k, v);
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let exchange =
        async {
            let resp = req.body(body.to_string()).send().await.map_err(|e| {
                UpstreamError::Connect(name.to_owned(), crate::util::error_chain(&e))
            })?;
            let status = resp.status();
            let sse = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
            if sse {
                let mut events = resp.bytes_stream().eventsource();
                while let Some(ev) = events.next().await {
                    let ev = ev.map_err(|e| {
                        UpstreamError::Failed(name.to_owned(), format!("broken event stream: {e}"))
                    })?;
                    match jsonrpc::parse(ev.data.as_bytes()) {
                        Ok(Message::Response { id: rid, result }) if rid == id => {
                            return rpc_result(name, result);
                        }
                        Ok(Message::Notification { method, params }) => {
                            if let Some(r) = &relay {
                                r.notify(&method, params);
                            }
                        }
                        // The revision has no server-to-client requests: a
                        // server that sends one is not heard.
                        _ => {}
                    }
                }
                return Err(UpstreamError::Failed(
                    name.to_owned(),
                    "the upstream closed the stream before answering".into(),
                ));
            }
            let text = resp.bytes().await.map_err(|e| {
                UpstreamError::Failed(name.to_owned(), crate::util::error_chain(&e))
            })?;
            match jsonrpc::parse(&text) {
                // Errors come with 4xx statuses in this revision: the error is
                // the answer.
                Ok(Message::Response { id: rid, result }) if rid == id || result.is_err() => {
                    rpc_result(name, result)
                }
                _ => Err(UpstreamError::Failed(
                    name.to_owned(),
                    format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&text[..text.len().min(200)])
                    ),
                )),
            }
        };
    tokio::select! {
        r = tokio::time::timeout(timeout, exchange) => {
            r.unwrap_or_else(|_| Err(UpstreamError::Timeout(name.to_owned(), timeout)))
        }
        _ = cancel.cancelled() => Err(UpstreamError::Cancelled(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::mirrored;

    #[test]
    fn names_outside_visible_ascii_are_base64() {
        assert_eq!(mirrored("test_simple_text"), "test_simple_text");
        assert_eq!(mirrored("test://static-text"), "test://static-text");
        assert_eq!(mirrored("a b"), "=?base64?YSBi?=");
        assert_eq!(mirrored("café"), "=?base64?Y2Fmw6k=?=");
    }
}
