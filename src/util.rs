//! Small helpers shared by several modules.

/// Current time as RFC 3339 UTC with microseconds: sortable as text.
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// An error and its causes, `outer: inner: innermost`: reqwest's own text
/// ("error sending request") says nothing of why.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A new time-ordered identifier (UUIDv7, simple form as the reference uses).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Lower-case ASCII slug: runs of anything but letters and digits become `-`.
pub fn slugify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut dash = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Depth of a JSON value: a scalar is 0, `[]` or `{}` is 1.
pub fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("My Server (v2)"), "my-server-v2");
        assert_eq!(slugify("--a__b--"), "a-b");
        assert_eq!(slugify("Ünïcode"), "n-code");
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = new_id();
        let b = new_id();
        assert!(a < b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn depth() {
        assert_eq!(json_depth(&serde_json::json!(1)), 0);
        assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": 2}]})), 3);
    }

    #[test]
    fn now_sorts() {
        let a = now();
        assert!(a.ends_with('Z'));
        assert!(a <= now());
    }
}

/// A list entry that is neither a CIDR network nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP network")]
pub struct BadNetwork(pub String);

/// Parses CIDR networks (`10.0.0.0/8`) or single addresses.
pub fn parse_networks(list: &[String]) -> Result<Vec<ipnet::IpNet>, BadNetwork> {
    list.iter()
        .map(|n| {
            let n = n.trim();
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| BadNetwork(n.to_owned()))
        })
        .collect()
}
