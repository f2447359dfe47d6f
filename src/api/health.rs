//! Liveness, readiness and version: the only routes that need no token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

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

/// 200 only when every configured backing service answers; 503 names the
/// failing ones.
pub async fn ready(State(st): State<AppState>) -> Response {
    let db = st.registry.store().ping().await;
    let items = vec![json!({
        "name": "database",
        "backend": st.registry.store().backend().as_str(),
        "status": if db.is_ok() { "ok" } else { "failed" },
        "error": db.as_ref().err().map(|e| e.to_string()),
    })];
    let failing: Vec<&str> = db.is_err().then_some("database").into_iter().collect();
    if failing.is_empty() {
        Json(json!({"status": "ready", "status_items": items})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unready", "failing": failing, "status_items": items})),
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
