//! Liveness, readiness and version: the only routes that need no token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::lifecycle::Phase;

/// 200 after a successful `SELECT 1`, else 503 with the error.
pub async fn health(State(st): State<AppState>) -> Response {
    match st.registry.store().ping().await {
        Ok(()) => Json(json!({"status": "healthy"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "error": e.to_string()})),
        )
            .into_response(),
    }
}

/// 200 only when the process is serving (migrations applied, first
/// snapshot loaded, not shutting down) and every configured backing service
/// answers; 503 names what fails. Also says which replica this is and
/// whether it leads.
pub async fn ready(State(st): State<AppState>) -> Response {
    let phase = st.readiness.phase();
    let db = st.registry.store().ping().await;
    let mut items = vec![json!({
        "name": "database",
        "backend": st.registry.store().backend().as_str(),
        "status": if db.is_ok() { "ok" } else { "failed" },
        "error": db.as_ref().err().map(|e| e.to_string()),
    })];
    let transport = st.bus.transport();
    items.push(json!({
        "name": "bus",
        "transport": transport.kind(),
        "status": if transport.kind() == "local" || transport.connected() { "ok" } else { "degraded" },
    }));
    let mut failing: Vec<&str> = Vec::new();
    match phase {
        Phase::Ready => {}
        Phase::Starting => failing.push("starting"),
        Phase::Draining => failing.push("shutting_down"),
    }
    if db.is_err() {
        failing.push("database");
    }
    let cluster = json!({
        "replica": st.bus.replica(),
        "leader": st.leadership.is_leader(),
        "lease": st.leadership.kind(),
        "registry_version": st.registry.version(),
    });
    if failing.is_empty() {
        Json(json!({"status": "ready", "cluster": cluster, "status_items": items})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            Json(json!({"status": "unready", "failing": failing, "cluster": cluster, "status_items": items})),
        )
            .into_response()
    }
}

pub async fn version(State(st): State<AppState>) -> Response {
    Json(json!({
        "name": "mcpgate",
        "version": env!("CARGO_PKG_VERSION"),
        "database": st.registry.store().backend().as_str(),
        "auth_required": st.config().auth_required,
        "uptime_seconds": st.started.elapsed().as_secs(),
    }))
    .into_response()
}
