//! The 2026-07-28 (stateless) revision's rules for a request over HTTP:
//! which requests speak it, and the checks every one must pass, in the
//! order the specification and the conformance suite fix (each failure a
//! JSON-RPC error with the request's id and its own HTTP status).

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde_json::{Value, json};

use super::jsonrpc::{self, RpcError};
use super::protocol;

pub const HEADER_MISMATCH: i64 = -32020;
pub const MISSING_CAPABILITY: i64 = -32021;
pub const UNSUPPORTED_VERSION: i64 = -32022;

pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

/// The versions a stateless request may name.
pub const VERSIONS: &[&str] = &[protocol::STATELESS];

/// Methods of the stateless revision; anything else (the handshake, `ping`,
/// `logging/setLevel`, `resources/subscribe`, ...) is unknown there.
pub const METHODS: &[&str] = &[
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    "subscriptions/listen",
];

/// A check failed: the status and the error to answer with.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub error: RpcError,
}

fn refuse(status: StatusCode, code: i64, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error: RpcError::new(code, message),
    }
}

fn mismatch(message: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, HEADER_MISMATCH, message)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches(|c| c == ' ' || c == '\t'))
}

/// Does this request speak the stateless revision? Its version header
/// names it, or its `_meta` carries a protocol version (the revision's
/// mark, whatever version it names).
pub fn is_stateless(headers: &HeaderMap, params: &Value) -> bool {
    header(headers, super::http::VERSION_HEADER) == Some(protocol::STATELESS)
        || params
            .pointer("/_meta")
            .and_then(|m| m.get(protocol::META_VERSION))
            .is_some()
}

/// A header value as its sender meant it: `=?base64?...?=` decoded
/// (strict RFC 4648, UTF-8), anything else as it is. `None`: not decodable.
pub fn decode_sentinel(v: &str) -> Option<String> {
    let Some(b64) = v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Some(v.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// The body field `Mcp-Name` mirrors, for the methods that have one.
fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Every check of a stateless request but the tool-specific ones, in order.
pub fn check(headers: &HeaderMap, method: &str, params: &Value) -> Result<(), Refusal> {
    let Some(version) = header(headers, super::http::VERSION_HEADER) else {
        return Err(mismatch("MCP-Protocol-Version header is required"));
    };
    match header(headers, "mcp-method") {
        None => return Err(mismatch("Mcp-Method header is required")),
        Some(m) if m != method => {
            return Err(mismatch(format!(
                "Mcp-Method header {m} does not match the body's method {method}"
            )));
        }
        Some(_) => {}
    }
    let Some(meta) = params.get("_meta").filter(|m| m.is_object()) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_PARAMS,
            "params._meta is required",
        ));
    };
    for key in [protocol::META_VERSION, META_CAPABILITIES] {
        if meta.get(key).is_none() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                jsonrpc::INVALID_PARAMS,
                format!("params._meta[\"{key}\"] is required"),
            ));
        }
    }
    let meta_version = meta
        .get(protocol::META_VERSION)
        .and_then(Value::as_str)
        .unwrap_or("");
    if meta_version != version {
        return Err(mismatch(format!(
            "MCP-Protocol-Version header {version} does not match _meta ({meta_version})"
        )));
    }
    if !VERSIONS.contains(&version) {
        let mut r = refuse(
            StatusCode::BAD_REQUEST,
            UNSUPPORTED_VERSION,
            format!("Unsupported protocol version: {version}"),
        );
        r.error.data = Some(json!({"supported": VERSIONS, "requested": version}));
        return Err(r);
    }
    if !METHODS.contains(&method) {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            jsonrpc::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        ));
    }
    if let Some(field) = name_field(method) {
        let body = params.get(field).and_then(Value::as_str).unwrap_or("");
        match header(headers, "mcp-name").map(decode_sentinel) {
            None => return Err(mismatch("Mcp-Name header is required")),
            Some(None) => return Err(mismatch("Mcp-Name header is not valid base64")),
            Some(Some(n)) if n != body => {
                return Err(mismatch(format!(
                    "Mcp-Name header {n} does not match the body's {field} {body}"
                )));
            }
            Some(Some(_)) => {}
        }
    }
    Ok(())
}

/// SEP-2243: each argument whose schema names an `x-mcp-header` is mirrored
/// in `Mcp-Param-{name}`, and the two must agree.
pub fn check_param_headers(
    headers: &HeaderMap,
    input_schema: &Value,
    arguments: &Value,
) -> Result<(), Refusal> {
    let Some(props) = input_schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (prop, schema) in props {
        let Some(name) = schema.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let header_name = format!("mcp-param-{name}");
        let raw = headers.get(header_name.as_str());
        let body = arguments.get(prop).filter(|v| !v.is_null());
        let (raw, body) = match (raw, body) {
            (None, None) => continue,
            (Some(_), None) => {
                return Err(mismatch(format!(
                    "Mcp-Param-{name} is sent but {prop} is not"
                )));
            }
            (None, Some(_)) => return Err(mismatch(format!("Mcp-Param-{name} is required"))),
            (Some(raw), Some(body)) => (raw, body),
        };
        let visible = raw
            .as_bytes()
            .iter()
            .all(|b| (0x20..0x7f).contains(b) || *b == b'\t');
        let value = raw
            .to_str()
            .ok()
            .filter(|_| visible)
            .map(|v| v.trim_matches(|c| c == ' ' || c == '\t'))
            .and_then(decode_sentinel)
            .ok_or_else(|| mismatch(format!("Mcp-Param-{name} is not a valid value")))?;
        let agrees = match body {
            Value::String(s) => *s == value,
            Value::Number(n) => value.parse::<f64>().ok() == n.as_f64(),
            Value::Bool(b) => value == b.to_string(),
            _ => true,
        };
        if !agrees {
            return Err(mismatch(format!(
                "Mcp-Param-{name} does not match the argument {prop}"
            )));
        }
    }
    Ok(())
}

/// The HTTP status of a stateless answer that is an error.
pub fn error_status(code: i64) -> StatusCode {
    match code {
        HEADER_MISMATCH | MISSING_CAPABILITY | UNSUPPORTED_VERSION => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn meta() -> Value {
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                         "io.modelcontextprotocol/clientCapabilities": {}}})
    }

    #[test]
    fn checks_come_in_the_specified_order() {
        let good = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ];
        assert_eq!(check(&headers(&good), "tools/list", &meta()), Ok(()));
        let code = |h: &[(&'static str, &str)], m: &str, p: &Value| {
            let r = check(&headers(h), m, p).unwrap_err();
            (r.status.as_u16(), r.error.code)
        };
        assert_eq!(
            code(&[("mcp-method", "tools/list")], "tools/list", &meta()),
            (400, -32020)
        );
        assert_eq!(
            code(
                &[("mcp-protocol-version", "2026-07-28")],
                "tools/list",
                &meta()
            ),
            (400, -32020)
        );
        assert_eq!(
            code(
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "TOOLS/LIST")
                ],
                "tools/list",
                &meta()
            ),
            (400, -32020)
        );
        // _meta before the version comparison.
        assert_eq!(code(&good, "tools/list", &json!({})), (400, -32602));
        assert_eq!(
            code(
                &good,
                "tools/list",
                &json!({"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}})
            ),
            (400, -32602)
        );
        let v999 = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "v999.0.0",
                                    "io.modelcontextprotocol/clientCapabilities": {}}});
        assert_eq!(code(&good, "tools/list", &v999), (400, -32020));
        let r = check(
            &headers(&[
                ("mcp-protocol-version", "v999.0.0"),
                ("mcp-method", "tools/list"),
            ]),
            "tools/list",
            &v999,
        )
        .unwrap_err();
        assert_eq!((r.status.as_u16(), r.error.code), (400, -32022));
        assert_eq!(r.error.data.unwrap()["requested"], "v999.0.0");
        assert_eq!(
            code(
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "ping")
                ],
                "ping",
                &meta()
            ),
            (404, -32601)
        );
        let call = |name: &str| {
            let mut p = meta();
            p["name"] = json!("echo");
            let h = [
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", name),
            ];
            check(&headers(&h), "tools/call", &p).map_err(|r| r.error.code)
        };
        assert_eq!(call("echo"), Ok(()));
        assert_eq!(call("  echo "), Ok(()));
        assert_eq!(call("=?base64?ZWNobw==?="), Ok(()));
        assert_eq!(call("=?base64?ZWNobw?="), Err(-32020));
        assert_eq!(call("other"), Err(-32020));
    }

    #[test]
    fn param_headers_mirror_their_arguments() {
        let schema =
            json!({"properties": {"region": {"type": "string", "x-mcp-header": "Region"}}});
        let check = |h: &[(&'static str, &str)], region: Value| {
            check_param_headers(&headers(h), &schema, &json!({"region": region})).is_ok()
        };
        assert!(check(
            &[("mcp-param-region", "=?base64?SGVsbG8=?=")],
            json!("Hello")
        ));
        assert!(!check(
            &[("mcp-param-region", "=?base64?SGVsbG8?=")],
            json!("Hello")
        ));
        assert!(!check(
            &[("mcp-param-region", "=?base64?SGVs!!!bG8=?=")],
            json!("Hello")
        ));
        assert!(check(
            &[("mcp-param-region", "SGVsbG8=")],
            json!("SGVsbG8=")
        ));
        assert!(check(
            &[("mcp-param-region", "=?base64?SGVsbG8=")],
            json!("=?base64?SGVsbG8=")
        ));
        assert!(!check(&[], json!("test-value")));
        assert!(check(&[], Value::Null));
    }
}
