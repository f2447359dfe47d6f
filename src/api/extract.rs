//! Request extractors that turn every malformed input into an [`ApiError`]:
//! body size, JSON syntax, JSON depth, field types (named), query strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::registry::input::InputError;

/// A JSON object body, size- and depth-checked, not yet typed.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config().max_request_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(limit)
            } else {
                ApiError::BadRequest(format!("cannot read body: {e}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::BadRequest(
                "request body is empty; a JSON object is expected".into(),
            ));
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        let depth = crate::util::json_depth(&value);
        if depth > state.config().max_json_depth {
            return Err(ApiError::BadRequest(format!(
                "JSON nesting depth {depth} exceeds the limit of {}",
                state.config().max_json_depth
            )));
        }
        if !value.is_object() {
            return Err(ApiError::BadRequest("a JSON object is expected".into()));
        }
        Ok(JsonBody(value))
    }
}

impl JsonBody {
    /// Accepts the body bare or wrapped as `{"<wrapper>": {...}, "team_id": ..,
    /// "visibility": ..}` as the reference does.
    pub fn unwrap_as(self, wrapper: &str) -> Value {
        let Value::Object(mut outer) = self.0 else {
            return self.0;
        };
        match outer.remove(wrapper) {
            Some(Value::Object(mut inner)) => {
                for key in ["team_id", "teamId", "visibility"] {
                    if let Some(v) = outer.remove(key)
                        && !inner.contains_key(key)
                    {
                        inner.insert(key.to_owned(), v);
                    }
                }
                Value::Object(inner)
            }
            Some(other) => {
                outer.insert(wrapper.to_owned(), other);
                Value::Object(outer)
            }
            None => Value::Object(outer),
        }
    }
}

/// Deserializes into `T`, naming the offending field on failure.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::Invalid(InputError {
            field,
            message: e.inner().to_string(),
        })
    })
}

/// Query string extractor with JSON errors.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_from(query).map(QueryParams)
    }
}

fn serde_urlencoded_from<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::BadRequest("bad query string".into()))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
}
