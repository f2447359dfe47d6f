//! Connection-oriented transports: legacy HTTP+SSE, WebSocket and stdio.
//! Each connection is one session; every message the server sends goes out
//! on the connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::dispatch::{Ctx, Dispatcher, McpHandler};
use super::http::{Endpoint, http_error, owner_of};
use super::jsonrpc;
use super::protocol;
use super::session::{OutTx, Outbound, Peer, Session};
use crate::access::Principal;

/// Handles one incoming message of a connection: requests are dispatched
/// concurrently and answered on the connection.
pub fn handle_incoming<H: McpHandler>(
    dispatcher: &Dispatcher<H>,
    principal: Option<Arc<Principal>>,
    session: &Arc<Session>,
    out: &OutTx,
    raw: &[u8],
) {
    let msg = match jsonrpc::parse(raw) {
        Ok(m) => m,
        Err((id, e)) => {
            let _ = out.send(Outbound::message(jsonrpc::error(&id, &e).to_string()));
            return;
        }
    };
    let mut ctx = Ctx::new(principal, session.server_id.clone());
    ctx.session = Some(session.clone());
    ctx.peer = Peer {
        stream: Some(out.clone()),
        session: Some(session.clone()),
        log_level: None,
    };
    let dispatcher = dispatcher.clone();
    let out = out.clone();
    tokio::spawn(async move {
        if let Some(reply) = dispatcher.dispatch(ctx, msg).await {
            // A connection carries every message alike: not the stream's end.
            let _ = out.send(Outbound::message(reply.json));
        }
    });
}

/// Removes a legacy SSE session when its stream ends.
struct SessionGuard<H: McpHandler> {
    ep: Arc<Endpoint<H>>,
    id: String,
}

impl<H: McpHandler> Drop for SessionGuard<H> {
    fn drop(&mut self) {
        if let Some(s) = self.ep.sessions.remove(&self.id) {
            self.ep.dispatcher.handler.session_closed(&s);
        }
    }
}

/// `GET /sse`: opens a legacy session; the first event names the URL to POST
/// messages to.
pub async fn sse_open<H: McpHandler>(
    ep: Arc<Endpoint<H>>,
    principal: Option<Arc<Principal>>,
    server_id: Option<String>,
    headers: &HeaderMap,
    message_path: &str,
) -> Response {
    if let Err(m) = ep.guard.check(headers) {
        return http_error(StatusCode::FORBIDDEN, m.0);
    }
    if let Err(e) = ep
        .dispatcher
        .handler
        .check_scope(principal.as_deref(), server_id.as_deref())
    {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(jsonrpc::error(&Value::Null, &e)),
        )
            .into_response();
    }
    let session = Session::new(owner_of(principal.as_deref()), server_id, protocol::LATEST);
    let (tx, rx) = mpsc::unbounded_channel::<Outbound>();
    session.attach_get_stream(tx);
    if !ep.sessions.insert(session.clone()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open MCP sessions",
        )
            .into_response();
    }
    let endpoint = format!(
        "event: endpoint\ndata: {message_path}?session_id={}\n\n",
        session.sid
    );
    let guard = SessionGuard {
        ep: ep.clone(),
        id: session.sid.clone(),
    };
    let keepalive = ep.keepalive;
    let closed = session.closed.clone();
    let first =
        futures_util::stream::once(async move { Ok::<Bytes, Infallible>(Bytes::from(endpoint)) });
    let live = futures_util::stream::unfold(
        (
            rx,
            guard,
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive),
            closed,
        ),
        |(mut rx, guard, mut tick, closed)| async move {
            tokio::select! {
                m = rx.recv() => {
                    let m = m?;
                    Some((Ok(Bytes::from(format!("event: message\ndata: {}\n\n", m.json))), (rx, guard, tick, closed)))
                }
                _ = tick.tick() => Some((Ok(Bytes::from_static(b": keepalive\n\n")), (rx, guard, tick, closed))),
                _ = closed.cancelled() => None,
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(first.chain(live)));
    super::http::sse_headers(&mut resp);
    resp
}

/// `POST /message?session_id=`: a message for a legacy session; the answer
/// goes out on the session's SSE stream.
pub async fn sse_message<H: McpHandler>(
    ep: &Endpoint<H>,
    principal: Option<Arc<Principal>>,
    session_id: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(m) = ep.guard.check(headers) {
        return http_error(StatusCode::FORBIDDEN, m.0);
    }
    let Some(sid) = session_id else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                serde_json::json!({"error": "Bad Request", "message": "session_id is required"}),
            ),
        )
            .into_response();
    };
    // Read first, so that every error answer carries the request's id.
    let id = match jsonrpc::parse(&body) {
        Ok(m) => m.id().clone(),
        Err((id, e)) => {
            return (StatusCode::BAD_REQUEST, axum::Json(jsonrpc::error(&id, &e))).into_response();
        }
    };
    let Some(session) = ep
        .sessions
        .get(sid)
        .filter(|s| s.owner == owner_of(principal.as_deref()))
    else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(jsonrpc::error(
                &id,
                &jsonrpc::RpcError::not_found("Session not found"),
            )),
        )
            .into_response();
    };
    let Some(out) = session.standalone_stream() else {
        return (StatusCode::GONE, "the session's stream is closed").into_response();
    };
    session.touch();
    handle_incoming(&ep.dispatcher, principal, &session, &out, &body);
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

/// A WebSocket connection: one JSON-RPC message per text frame.
pub async fn websocket<H: McpHandler>(
    ep: Arc<Endpoint<H>>,
    principal: Option<Arc<Principal>>,
    server_id: Option<String>,
    socket: WebSocket,
) {
    let session = Session::new(owner_of(principal.as_deref()), server_id, protocol::LATEST);
    let (tx, mut rx) = mpsc::unbounded_channel::<Outbound>();
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(WsMessage::Text(m.json.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(frame)) = stream.next().await {
        match frame {
            WsMessage::Text(t) => handle_incoming(
                &ep.dispatcher,
                principal.clone(),
                &session,
                &tx,
                t.as_bytes(),
            ),
            WsMessage::Binary(b) => {
                handle_incoming(&ep.dispatcher, principal.clone(), &session, &tx, &b)
            }
            WsMessage::Close(_) => break,
            _ => {}
        }
    }
    session.close();
    ep.dispatcher.handler.session_closed(&session);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Serves MCP over stdin/stdout, newline-delimited (used by the fixture).
pub async fn stdio<H: McpHandler>(dispatcher: Dispatcher<H>) {
    let session = Session::new("stdio".into(), None, protocol::LATEST);
    let (tx, mut rx) = mpsc::unbounded_channel::<Outbound>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(m) = rx.recv().await {
            if out.write_all(m.json.as_bytes()).await.is_err()
                || out.write_all(b"\n").await.is_err()
            {
                break;
            }
            let _ = out.flush().await;
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        handle_incoming(&dispatcher, None, &session, &tx, line.as_bytes());
    }
    session.close();
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}
