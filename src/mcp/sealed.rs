//! Self-contained session ids: an `Mcp-Session-Id` is sealed with
//! AES-256-GCM and carries what any replica needs to serve the session (a
//! random id, the principal it is bound to, the virtual server, protocol
//! version, client capabilities and info, when it was issued). A replica
//! that has never seen a session opens the id — microseconds, no lookup —
//! and serves it.
//!
//! The key comes from `SESSION_KEY`, or is derived with HKDF-SHA256 from
//! `AUTH_ENCRYPTION_SECRET`; ids sealed under `SESSION_KEY_PREVIOUS` still
//! open during a rotation. Format: `v1.` + base64url(key id ‖ nonce ‖
//! ciphertext), visible ASCII as the transport requires.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

const PREFIX: &str = "v1.";
/// Longer ids are refused unread (a header is not a place for megabytes).
pub const MAX_ID_LEN: usize = 8192;

/// What a session id says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The session's own random id (hex), the key of its state everywhere.
    #[serde(rename = "s")]
    pub sid: String,
    /// The principal's scope key: only the same principal may use it.
    #[serde(rename = "o")]
    pub owner: String,
    /// The virtual server it was opened on (`/servers/{id}/mcp`).
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(rename = "p")]
    pub protocol_version: String,
    #[serde(rename = "c", default)]
    pub capabilities: Value,
    #[serde(rename = "i", default)]
    pub client_info: Value,
    /// Unix seconds.
    #[serde(rename = "t")]
    pub issued_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    /// Not an id of any shape (control characters, far too long): 400.
    #[error("malformed session id")]
    Malformed,
    /// Tampered, sealed under another key, or garbage: 404.
    #[error("session not found")]
    Unknown,
}

struct Key {
    id: u8,
    cipher: Aes256Gcm,
}

impl Key {
    fn derive(secret: &str) -> Key {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"mcpgate session id"), secret.as_bytes());
        let mut key = [0u8; 32];
        hk.expand(b"v1", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Key {
            id: Sha256::digest(key)[0],
            cipher: Aes256Gcm::new_from_slice(&key).expect("32-byte key"),
        }
    }
}

/// The keys that seal and open session ids.
pub struct SessionSealer {
    current: Key,
    previous: Option<Key>,
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSealer(..)")
    }
}

impl SessionSealer {
    /// `session_key` (`SESSION_KEY`) when set, else a key derived from the
    /// encryption secret; `previous` (`SESSION_KEY_PREVIOUS`) still opens.
    pub fn new(session_key: Option<&str>, previous: Option<&str>, encryption_secret: &str) -> Self {
        let secret = session_key
            .filter(|k| !k.is_empty())
            .unwrap_or(encryption_secret);
        SessionSealer {
            current: Key::derive(secret),
            previous: previous.filter(|k| !k.is_empty()).map(Key::derive),
        }
    }

    pub fn seal(&self, claims: &SessionClaims) -> String {
        let plain = serde_json::to_vec(claims).expect("claims serialize");
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .expect("AES-GCM encryption of a buffer cannot fail");
        let mut out = Vec::with_capacity(1 + 12 + sealed.len());
        out.push(self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn open(&self, id: &str) -> Result<SessionClaims, SessionIdError> {
        if id.len() > MAX_ID_LEN || !id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(SessionIdError::Malformed);
        }
        let body = id.strip_prefix(PREFIX).ok_or(SessionIdError::Unknown)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SessionIdError::Unknown)?;
        if raw.len() < 1 + 12 + 16 {
            return Err(SessionIdError::Unknown);
        }
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == raw[0])
            .ok_or(SessionIdError::Unknown)?;
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(&raw[1..13]), &raw[13..])
            .map_err(|_| SessionIdError::Unknown)?;
        serde_json::from_slice(&plain).map_err(|_| SessionIdError::Unknown)
    }
}

/// A new random session id (the `sid` claim): 16 bytes, hex.
pub fn new_sid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> SessionClaims {
        SessionClaims {
            sid: new_sid(),
            owner: "user:a@example.com|teams:t1".into(),
            server_id: Some("srv".into()),
            protocol_version: "2025-11-25".into(),
            capabilities: json!({"sampling": {}}),
            client_info: json!({"name": "c", "version": "1"}),
            issued_at: 1_700_000_000,
        }
    }

    #[test]
    fn ids_round_trip_and_are_visible_ascii() {
        let s = SessionSealer::new(None, None, "secret-0123456789-0123456789-0123");
        let c = claims();
        let id = s.seal(&c);
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert!(!id.contains("a@example.com"), "the owner is not readable");
        assert_eq!(s.open(&id).unwrap(), c);
        assert_ne!(s.seal(&c), id, "a fresh nonce each time");
    }

    #[test]
    fn tampered_foreign_and_garbage_ids_are_unknown() {
        let s = SessionSealer::new(None, None, "k1-0123456789-0123456789-0123456789");
        let id = s.seal(&claims());
        let mut t = id.clone().into_bytes();
        let last = t.len() - 2;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            s.open(std::str::from_utf8(&t).unwrap()),
            Err(SessionIdError::Unknown)
        );
        let other = SessionSealer::new(None, None, "k2-0123456789-0123456789-0123456789");
        assert_eq!(other.open(&id), Err(SessionIdError::Unknown));
        assert_eq!(s.open("v1.garbage"), Err(SessionIdError::Unknown));
        assert_eq!(s.open("0f0f0f"), Err(SessionIdError::Unknown));
        assert_eq!(s.open("bad id"), Err(SessionIdError::Malformed));
        assert_eq!(
            s.open(&"x".repeat(MAX_ID_LEN + 1)),
            Err(SessionIdError::Malformed)
        );
    }

    #[test]
    fn the_previous_key_still_opens_during_rotation() {
        let old = SessionSealer::new(Some("old-key"), None, "enc");
        let id = old.seal(&claims());
        let rotated = SessionSealer::new(Some("new-key"), Some("old-key"), "enc");
        assert!(rotated.open(&id).is_ok());
        let done = SessionSealer::new(Some("new-key"), None, "enc");
        assert_eq!(done.open(&id), Err(SessionIdError::Unknown));
    }

    /// A measurement, not a check: `cargo test --release --lib --
    /// --ignored measure_session_id_open --nocapture` prints what opening an
    /// id costs (the README quotes it).
    #[test]
    #[ignore = "a measurement; run it in release mode"]
    fn measure_session_id_open() {
        let s = SessionSealer::new(None, None, "secret-0123456789-0123456789-0123");
        let id = s.seal(&claims());
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(s.open(std::hint::black_box(&id)).unwrap());
        }
        eprintln!(
            "opening a session id of {} bytes: {:?} each",
            id.len(),
            start.elapsed() / n
        );
    }
}
