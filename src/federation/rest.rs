//! REST APIs as tools: `tools/call` on a tool with `integration_type: REST`
//! becomes one HTTP request, through the SSRF guard.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Federation, auth_headers};
use crate::registry::model::Tool;

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Fills `{param}` placeholders from the arguments (URL-encoded) and returns
/// the URL with the arguments that were not used.
pub fn fill_template(
    template: &str,
    mut args: Map<String, Value>,
) -> Result<(String, Map<String, Value>), String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let key = &rest[start + 1..start + end];
        out.push_str(&rest[..start]);
        let v = args
            .remove(key)
            .ok_or_else(|| format!("missing argument `{key}` for the URL"))?;
        let encoded: String = url::form_urlencoded::byte_serialize(scalar(&v).as_bytes()).collect();
        out.push_str(&encoded.replace('+', "%20"));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok((out, args))
}

fn error_result(text: String) -> Value {
    json!({"isError": true, "content": [{"type": "text", "text": text}]})
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("…[truncated]");
    }
    s
}

pub async fn invoke(fed: &Federation, tool: &Tool, args: Value, timeout: Duration) -> Value {
    let Some(template) = tool.url.as_deref() else {
        return error_result("this REST tool has no URL".into());
    };
    let args = match args {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => return error_result("arguments must be an object".into()),
    };
    let (url, rest) = match fill_template(template, args) {
        Ok(x) => x,
        Err(e) => return error_result(e),
    };
    if let Err(e) = fed.policy.check_url(&url) {
        return error_result(format!("request blocked by the SSRF guard: {e}"));
    }
    let method =
        reqwest::Method::from_bytes(tool.request_type.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut req = fed
        .http
        .get()
        .request(method.clone(), &url)
        .timeout(timeout);
    if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
        let pairs: Vec<(String, String)> =
            rest.iter().map(|(k, v)| (k.clone(), scalar(v))).collect();
        req = req.query(&pairs);
    } else {
        req = req.json(&Value::Object(rest));
    }
    if let Some(h) = tool.headers.as_object() {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                req = req.header(k, v);
            }
        }
    }
    if let Some(sealed) = &tool.auth_value {
        match auth_headers(&fed.sealer, tool.auth_type.as_deref(), sealed) {
            Ok(hs) => {
                for (k, v) in hs {
                    req = req.header(k, v);
                }
            }
            Err(e) => return error_result(format!("cannot use the stored credential: {e}")),
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return error_result(format!("the REST call timed out after {timeout:?}"));
        }
        Err(e) => {
            return error_result(format!(
                "the REST call failed: {}",
                crate::util::error_chain(&e)
            ));
        }
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => cut(t, fed.cfg.rest_max_len),
        Err(e) => return error_result(format!("cannot read the REST response: {e}")),
    };
    if !status.is_success() {
        return error_result(format!("HTTP {}: {text}", status.as_u16()));
    }
    let mut result = json!({"content": [{"type": "text", "text": text}]});
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
        result["structuredContent"] = v;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_and_encode() {
        let args = json!({"city": "New York", "units": "metric"})
            .as_object()
            .unwrap()
            .clone();
        let (url, rest) = fill_template("https://api.example.com/w/{city}", args).unwrap();
        assert_eq!(url, "https://api.example.com/w/New%20York");
        assert_eq!(rest.len(), 1);
        assert!(rest.contains_key("units"));
        let e = fill_template("https://a/{id}", Map::new()).unwrap_err();
        assert!(e.contains("id"));
        let (url, _) = fill_template(
            "https://a/{p}",
            json!({"p": "../x?y"}).as_object().unwrap().clone(),
        )
        .unwrap();
        assert_eq!(url, "https://a/..%2Fx%3Fy");
    }
}
