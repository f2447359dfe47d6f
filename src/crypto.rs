//! Secrets at rest and secret handling.
//!
//! Upstream credentials are sealed with AES-256-GCM under SHA-256 of
//! `AUTH_ENCRYPTION_SECRET` and stored as base64url(nonce(12) ‖ ciphertext),
//! the reference's format, so a database moved between the two stays readable.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("stored secret is not valid base64")]
    Encoding,
    #[error("stored secret cannot be decrypted with the configured AUTH_ENCRYPTION_SECRET")]
    Decrypt,
}

#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(secret: &str) -> Self {
        let key = Sha256::digest(secret.as_bytes());
        Sealer {
            cipher: Aes256Gcm::new_from_slice(&key).expect("SHA-256 yields a 32-byte key"),
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed.trim_end_matches('='))
            .map_err(|_| CryptoError::Encoding)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// Constant-time equality for secrets.
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random secret of 32 bytes, base64url encoded.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Secrets that ship in examples and documentation and so protect nothing.
const WELL_KNOWN: &[&str] = &[
    "changeme",
    "my-test-key",
    "my-test-salt",
    "secret",
    "password",
    "__REPLACE_ME__run_init-secrets_before_starting",
    "your-secret-key",
    "change-me",
];

/// Why a secret is unfit for production, if it is.
pub fn weak_secret_reason(secret: &str) -> Option<&'static str> {
    if WELL_KNOWN.iter().any(|w| w.eq_ignore_ascii_case(secret)) {
        Some("is a well-known example value")
    } else if secret.len() < 32 {
        Some("is shorter than 32 characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_hides_plaintext() {
        let s = Sealer::new("k1");
        let sealed = s.seal(b"Bearer abc");
        assert!(!sealed.contains("abc"));
        assert_eq!(s.open(&sealed).unwrap(), b"Bearer abc");
        assert_ne!(s.seal(b"Bearer abc"), sealed, "nonces differ");
    }

    #[test]
    fn wrong_key_and_garbage_fail() {
        let sealed = Sealer::new("k1").seal(b"x");
        assert!(matches!(
            Sealer::new("k2").open(&sealed),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            Sealer::new("k1").open("@@@"),
            Err(CryptoError::Encoding)
        ));
        assert!(matches!(
            Sealer::new("k1").open("AAAA"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn weak_secrets_are_recognised() {
        assert!(weak_secret_reason("changeme").is_some());
        assert!(weak_secret_reason("short").is_some());
        assert!(weak_secret_reason(&random_secret()).is_none());
    }

    #[test]
    fn constant_time_eq() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abd"));
        assert!(!secret_eq(b"abc", b"ab"));
    }
}
