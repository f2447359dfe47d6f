//! The MCP front doors of the application: `POST /rpc` and `POST /`,
//! Streamable HTTP at `/mcp` and `/servers/{id}/mcp`, legacy SSE at `/sse`
//! and `/servers/{id}/sse` with `POST /message`, WebSocket at `/ws` and
//! `/servers/{id}/ws`. All are authenticated like the REST API (anonymous
//! public-only access when `MCP_REQUIRE_AUTH=false`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use crate::access::Principal;
use crate::mcp::{conn, http};

/// The caller, put in the request by the MCP authentication middleware.
type Caller = Extension<Arc<Principal>>;

async fn rpc(State(st): State<AppState>, Extension(p): Caller, body: Bytes) -> Response {
    http::rpc(&st.mcp, Some(p), body).await
}

async fn mcp_post(
    State(st): State<AppState>,
    Extension(p): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    http::post(&st.mcp, Some(p), None, &headers, body).await
}
async fn mcp_get(State(st): State<AppState>, Extension(p): Caller, headers: HeaderMap) -> Response {
    http::get(&st.mcp, Some(p), None, &headers).await
}
async fn mcp_delete(
    State(st): State<AppState>,
    Extension(p): Caller,
    headers: HeaderMap,
) -> Response {
    http::delete(&st.mcp, Some(p), None, &headers).await
}
async fn server_post(
    State(st): State<AppState>,
    Extension(p): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    http::post(&st.mcp, Some(p), Some(id), &headers, body).await
}
async fn server_get(
    State(st): State<AppState>,
    Extension(p): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    http::get(&st.mcp, Some(p), Some(id), &headers).await
}
async fn server_delete(
    State(st): State<AppState>,
    Extension(p): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    http::delete(&st.mcp, Some(p), Some(id), &headers).await
}

async fn sse(State(st): State<AppState>, Extension(p): Caller, headers: HeaderMap) -> Response {
    conn::sse_open(st.mcp.clone(), Some(p), None, &headers, "/message").await
}
async fn server_sse(
    State(st): State<AppState>,
    Extension(p): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/servers/{id}/message");
    conn::sse_open(st.mcp.clone(), Some(p), Some(id), &headers, &path).await
}

#[derive(Deserialize)]
struct SessionQuery {
    session_id: Option<String>,
}

async fn message(
    State(st): State<AppState>,
    Extension(p): Caller,
    Query(q): Query<SessionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    conn::sse_message(&st.mcp, Some(p), q.session_id.as_deref(), &headers, body).await
}
async fn server_message(
    State(st): State<AppState>,
    Extension(p): Caller,
    Path(_id): Path<String>,
    Query(q): Query<SessionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    conn::sse_message(&st.mcp, Some(p), q.session_id.as_deref(), &headers, body).await
}

fn upgrade(
    st: AppState,
    p: Arc<Principal>,
    id: Option<String>,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(m) = st.mcp.guard.check(headers) {
        return (axum::http::StatusCode::FORBIDDEN, m.0).into_response();
    }
    use crate::mcp::McpHandler;
    if let Err(e) = st
        .mcp
        .dispatcher
        .handler
        .check_scope(Some(&p), id.as_deref())
    {
        return (axum::http::StatusCode::NOT_FOUND, e.message).into_response();
    }
    let ep = st.mcp.clone();
    ws.max_message_size(st.config().max_request_body_bytes)
        .on_upgrade(move |socket| conn::websocket(ep, Some(p), id, socket))
}

async fn ws(
    State(st): State<AppState>,
    Extension(p): Caller,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(st, p, None, &headers, ws)
}
async fn server_ws(
    State(st): State<AppState>,
    Extension(p): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(st, p, Some(id), &headers, ws)
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/rpc", post(rpc))
        .route("/", post(rpc))
        .route("/mcp", post(mcp_post).get(mcp_get).delete(mcp_delete))
        .route("/mcp/", post(mcp_post).get(mcp_get).delete(mcp_delete))
        .route(
            "/servers/{id}/mcp",
            post(server_post).get(server_get).delete(server_delete),
        )
        .route(
            "/servers/{id}/mcp/",
            post(server_post).get(server_get).delete(server_delete),
        )
        .route("/sse", get(sse))
        .route("/servers/{id}/sse", get(server_sse))
        .route("/message", post(message))
        .route("/servers/{id}/message", post(server_message))
        .route("/ws", get(ws))
        .route("/servers/{id}/ws", get(server_ws))
}
