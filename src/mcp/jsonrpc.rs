//! JSON-RPC 2.0 messages as MCP uses them: one message per body (batches
//! are rejected), ids that are strings or numbers.

use serde_json::{Map, Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// The reference's codes: upstream failure, not found, forbidden.
pub const UPSTREAM_ERROR: i64 = -32000;
pub const NOT_FOUND: i64 = -32002;
pub const FORBIDDEN: i64 = -32003;
/// Request timed out or was cancelled.
pub const REQUEST_TIMEOUT: i64 = -32001;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    pub fn parse(m: impl Into<String>) -> RpcError {
        Self::new(PARSE_ERROR, m)
    }
    pub fn invalid_request(m: impl Into<String>) -> RpcError {
        Self::new(INVALID_REQUEST, m)
    }
    pub fn method_not_found(method: &str) -> RpcError {
        Self::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }
    pub fn invalid_params(m: impl Into<String>) -> RpcError {
        Self::new(INVALID_PARAMS, m)
    }
    pub fn internal(m: impl Into<String>) -> RpcError {
        Self::new(INTERNAL_ERROR, m)
    }
    pub fn not_found(m: impl Into<String>) -> RpcError {
        Self::new(NOT_FOUND, m)
    }
    pub fn forbidden(m: impl Into<String>) -> RpcError {
        Self::new(FORBIDDEN, m)
    }
    pub fn upstream(m: impl Into<String>) -> RpcError {
        Self::new(UPSTREAM_ERROR, m)
    }

    pub fn to_json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }

    pub fn from_json(v: &Value) -> RpcError {
        RpcError {
            code: v
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(INTERNAL_ERROR),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned(),
            data: v.get("data").cloned(),
        }
    }
}

/// One incoming JSON-RPC message.
#[derive(Debug, Clone)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    Response {
        id: Value,
        result: Result<Value, RpcError>,
    },
}

impl Message {
    /// The id of a request or response; `null` for a notification.
    pub fn id(&self) -> &Value {
        match self {
            Message::Request { id, .. } | Message::Response { id, .. } => id,
            Message::Notification { .. } => &Value::Null,
        }
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Message::Request { id, method, params } => request(id, method, params),
            Message::Notification { method, params } => notification(method, params),
            Message::Response { id, result } => match result {
                Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
                Err(e) => error(id, e),
            },
        }
    }
}

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

/// Parses one message. Errors carry the request id when one could be read.
pub fn parse(body: &[u8]) -> Result<Message, (Value, RpcError)> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| (Value::Null, RpcError::parse(format!("Parse error: {e}"))))?;
    from_value(v)
}

pub fn from_value(v: Value) -> Result<Message, (Value, RpcError)> {
    let mut obj: Map<String, Value> = match v {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err((
                Value::Null,
                RpcError::invalid_request("batch requests are not supported"),
            ));
        }
        _ => {
            return Err((
                Value::Null,
                RpcError::invalid_request("a JSON-RPC message must be an object"),
            ));
        }
    };
    let id = obj.remove("id");
    let id_for_error = id.clone().filter(valid_id).unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            id_for_error,
            RpcError::invalid_request("jsonrpc must be \"2.0\""),
        ));
    }
    if let Some(method) = obj.remove("method") {
        let Value::String(method) = method else {
            return Err((
                id_for_error,
                RpcError::invalid_request("method must be a string"),
            ));
        };
        let params = obj.remove("params").unwrap_or(Value::Null);
        if !(params.is_null() || params.is_object() || params.is_array()) {
            return Err((
                id_for_error,
                RpcError::invalid_request("params must be an object or an array"),
            ));
        }
        return match id {
            None => Ok(Message::Notification { method, params }),
            Some(id) if valid_id(&id) => Ok(Message::Request { id, method, params }),
            Some(_) => Err((
                Value::Null,
                RpcError::invalid_request("id must be a string or an integer"),
            )),
        };
    }
    let Some(id) = id.filter(valid_id) else {
        return Err((
            Value::Null,
            RpcError::invalid_request("a message needs a method, or an id with a result or error"),
        ));
    };
    if let Some(result) = obj.remove("result") {
        return Ok(Message::Response {
            id,
            result: Ok(result),
        });
    }
    if let Some(err) = obj.remove("error") {
        return Ok(Message::Response {
            id,
            result: Err(RpcError::from_json(&err)),
        });
    }
    Err((
        id,
        RpcError::invalid_request("a response needs a result or an error"),
    ))
}

pub fn request(id: &Value, method: &str, params: &Value) -> Value {
    if params.is_null() {
        json!({"jsonrpc": "2.0", "id": id, "method": method})
    } else {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }
}

pub fn notification(method: &str, params: &Value) -> Value {
    if params.is_null() {
        json!({"jsonrpc": "2.0", "method": method})
    } else {
        json!({"jsonrpc": "2.0", "method": method, "params": params})
    }
}

pub fn error(id: &Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()})
}

/// How long a result may be kept and by whom: MCP 2026-07-28's `ttlMs` and
/// `cacheScope` (`public`: the same for every caller allowed to see it;
/// `private`: for this authorization context only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheHint {
    pub ttl_ms: u64,
    pub public: bool,
}

impl CacheHint {
    pub fn private(ttl_ms: u64) -> CacheHint {
        CacheHint {
            ttl_ms,
            public: false,
        }
    }

    /// The hints a result carries, when both are there and valid.
    pub fn of(result: &Value) -> Option<CacheHint> {
        let ttl_ms = result.get("ttlMs")?.as_u64()?;
        let public = match result.get("cacheScope")?.as_str()? {
            "public" => true,
            "private" => false,
            _ => return None,
        };
        Some(CacheHint { ttl_ms, public })
    }

    /// What a result merged from two may promise: the shorter life, and
    /// private if either is.
    pub fn min(self, other: CacheHint) -> CacheHint {
        CacheHint {
            ttl_ms: self.ttl_ms.min(other.ttl_ms),
            public: self.public && other.public,
        }
    }

    pub fn scope(&self) -> &'static str {
        if self.public { "public" } else { "private" }
    }

    /// As an HTTP `Cache-Control` value (whole seconds).
    pub fn cache_control(&self) -> String {
        format!("{}, max-age={}", self.scope(), self.ttl_ms / 1000)
    }
}

/// A result already serialized by the server itself. Unlike `RawValue` it is
/// not parsed again: results assembled from pre-serialized registry items
/// (a `tools/list` page) are trusted as they are. It may carry how long it
/// can be kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Json {
    text: String,
    cache: Option<CacheHint>,
}

impl Json {
    /// Text the caller guarantees is one valid JSON value.
    pub fn trusted(text: String) -> Json {
        Json { text, cache: None }
    }

    pub fn get(&self) -> &str {
        &self.text
    }

    pub fn with_cache(mut self, hint: Option<CacheHint>) -> Json {
        self.cache = hint;
        self
    }

    pub fn cache(&self) -> Option<CacheHint> {
        self.cache
    }
}

/// A success response around an already serialized result.
pub fn success_raw(id: &Value, result: &Json) -> String {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#, result.get())
}

pub fn raw(v: &Value) -> Json {
    Json::trusted(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Message, (Value, RpcError)> {
        parse(s.as_bytes())
    }

    #[test]
    fn requests_notifications_responses() {
        assert!(matches!(
            parse_str(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Message::Request { .. })
        ));
        assert!(matches!(
            parse_str(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            parse_str(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response { result: Ok(_), .. })
        ));
        assert!(matches!(
            parse_str(r#"{"jsonrpc":"2.0","id":"a","error":{"code":-1,"message":"x"}}"#),
            Ok(Message::Response { result: Err(_), .. })
        ));
    }

    #[test]
    fn bad_messages() {
        assert_eq!(parse_str("{nope").unwrap_err().1.code, PARSE_ERROR);
        assert_eq!(parse_str("[]").unwrap_err().1.code, INVALID_REQUEST);
        assert_eq!(
            parse_str(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
                .unwrap_err()
                .1
                .code,
            INVALID_REQUEST
        );
        let (id, e) = parse_str(r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#).unwrap_err();
        assert_eq!((id, e.code), (json!(7), INVALID_REQUEST));
        assert_eq!(
            parse_str(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#)
                .unwrap_err()
                .1
                .code,
            INVALID_REQUEST
        );
        assert_eq!(
            parse_str(r#"{"jsonrpc":"2.0","id":1,"method":5}"#)
                .unwrap_err()
                .1
                .code,
            INVALID_REQUEST
        );
        assert_eq!(
            parse_str(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#)
                .unwrap_err()
                .1
                .code,
            INVALID_REQUEST
        );
        assert_eq!(parse_str("3").unwrap_err().1.code, INVALID_REQUEST);
    }

    #[test]
    fn raw_success() {
        let r = raw(&json!({"a": 1}));
        let s = success_raw(&json!("x"), &r);
        assert_eq!(
            serde_json::from_str::<Value>(&s).unwrap(),
            json!({"jsonrpc":"2.0","id":"x","result":{"a":1}})
        );
    }
}
