//! Authentication: JWT verification with its caches ([`verify`]), token
//! issuing ([`jwt`]) and secret provisioning ([`secrets`]). Who may do
//! what is the access vocabulary's job (`crate::access`).

pub mod jwt;
pub mod secrets;
pub mod verify;

pub use jwt::{Claims, Signer};
pub use secrets::{Secrets, SetupError, resolve_secrets};
pub use verify::Auth;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("token has been revoked")]
    Revoked,
    #[error("user account is disabled")]
    Disabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// The one mapping to an HTTP status, used by the REST side and the edge.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Store(e) => e.status(),
            _ => 401,
        }
    }
}

/// Extracts the token from an `Authorization: Bearer ...` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn store_failures_map_to_one_status() {
        let down = AuthError::Store(StoreError::Unavailable("x".into()));
        assert_eq!(down.status(), 503);
        let corrupt = AuthError::Store(StoreError::Corrupt {
            table: "users",
            column: "email",
            message: "x".into(),
        });
        assert_eq!(corrupt.status(), 500);
        assert_eq!(AuthError::Expired.status(), 401);
    }
}
