//! Protocol versions and their negotiation.

pub const SUPPORTED: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];
/// The newest version with sessions and `initialize`; offered when a client
/// asks for one we do not know.
pub const LATEST: &str = "2025-11-25";
/// The stateless revision.
pub const STATELESS: &str = "2026-07-28";
/// The `_meta` key carrying a request's protocol version (2026-07-28).
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// What a request without `MCP-Protocol-Version` is assumed to speak.
pub const DEFAULT_HEADER_VERSION: &str = "2025-03-26";

pub fn is_supported(v: &str) -> bool {
    SUPPORTED.contains(&v)
}

/// Echo the client's version when supported, else offer the latest.
pub fn negotiate(requested: &str) -> &'static str {
    SUPPORTED
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LATEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate("2024-11-05"), "2024-11-05");
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("1999-01-01"), LATEST);
        assert!(is_supported("2026-07-28"));
        assert!(!is_supported("2025-01-01"));
    }
}
