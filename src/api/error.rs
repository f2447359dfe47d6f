//! The one place where errors become HTTP responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::registry::input::InputError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(#[from] InputError),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(kind: &str, id: &str) -> ApiError {
        ApiError::NotFound(format!("{kind} not found: {id}"))
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(format!("already exists ({m})")),
            StoreError::Referenced(m) => ApiError::Conflict(format!("still referenced ({m})")),
            f @ StoreError::Fenced(_) => ApiError::Conflict(f.to_string()),
            StoreError::Unavailable(m) => {
                ApiError::Unavailable(format!("database unavailable: {m}"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(s) => s.into(),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let body = match &self {
            ApiError::Invalid(e) => {
                json!({"error": code, "detail": e.to_string(), "field": e.field})
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                json!({"error": code, "detail": "internal error"})
            }
            other => json!({"error": code, "detail": other.to_string()}),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The database (or a dependency) is away: a client may retry.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn shape(e: ApiError) -> (StatusCode, serde_json::Value, axum::http::HeaderMap) {
        let resp = e.into_response();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            serde_json::from_slice(&bytes).unwrap(),
            parts.headers,
        )
    }

    #[tokio::test]
    async fn every_error_has_one_status_and_a_json_shape() {
        let (s, v, h) = shape(ApiError::Unauthorized("bad".into())).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        assert_eq!(h["www-authenticate"], "Bearer");
        let (s, v, h) = shape(StoreError::Unavailable("down".into()).into()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["error"], "unavailable");
        assert_eq!(h["retry-after"], "1");
        let (s, v, _) = shape(ApiError::Invalid(crate::registry::input::bad(
            "name",
            "is required",
        )))
        .await;
        assert_eq!(
            (s, v["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
        );
        let (s, v, _) = shape(ApiError::Internal("secret detail".into())).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            v["detail"], "internal error",
            "internal details stay in the log"
        );
        let (s, _, _) = shape(StoreError::Fenced(3).into()).await;
        assert_eq!(s, StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn auth_and_store_failures_map_as_the_edge_maps_them() {
        for e in [
            AuthError::Expired,
            AuthError::Store(StoreError::Unavailable("x".into())),
            AuthError::Store(StoreError::Corrupt {
                table: "users",
                column: "email",
                message: "x".into(),
            }),
        ] {
            let edge = e.status();
            let (s, _, _) = shape(e.into()).await;
            assert_eq!(s.as_u16(), edge, "the REST side and the edge agree");
        }
    }
}
