//! JWT issuing: the claims mcpgate signs and accepts, and the [`Signer`]
//! (usable without a database, so the CLI can mint tokens).

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::secrets::SetupError;
use crate::config::Config;

/// JWT claims issued and accepted by mcpgate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    pub aud: String,
    pub iss: String,
    /// `None`: the user's team memberships, resolved on the server.
    /// `Some(list)`: exactly those teams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<String>>,
    #[serde(default)]
    pub is_admin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
}

pub(crate) fn algorithm(name: &str) -> Result<Algorithm, SetupError> {
    name.parse::<Algorithm>()
        .map_err(|_| SetupError::Key(format!("unsupported JWT_ALGORITHM {name}")))
}

pub(crate) fn read_key(path: Option<&Path>, what: &str) -> Result<Option<Vec<u8>>, SetupError> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read(p)
            .map(Some)
            .map_err(|source| SetupError::Read {
                path: format!("{what} {}", p.display()),
                source,
            }),
    }
}

/// Signs tokens. Separate from [`Auth`] so the CLI can mint tokens without a
/// database.
pub struct Signer {
    alg: Algorithm,
    key: Option<EncodingKey>,
    audience: String,
    issuer: String,
}

impl Signer {
    pub fn new(config: &Config, secret: &str) -> Result<Signer, SetupError> {
        let alg = algorithm(&config.jwt_algorithm)?;
        let key = if config.jwt_algorithm.starts_with("HS") {
            Some(EncodingKey::from_secret(secret.as_bytes()))
        } else {
            match read_key(
                config.jwt_private_key_path.as_deref(),
                "JWT_PRIVATE_KEY_PATH",
            )? {
                None => None,
                Some(pem) => Some(
                    if config.jwt_algorithm.starts_with("RS") {
                        EncodingKey::from_rsa_pem(&pem)
                    } else {
                        EncodingKey::from_ec_pem(&pem)
                    }
                    .map_err(|e| SetupError::Key(format!("JWT_PRIVATE_KEY_PATH: {e}")))?,
                ),
            }
        };
        Ok(Signer {
            alg,
            key,
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
        })
    }

    /// Claims for `email`, expiring after `minutes` (0 = never).
    pub fn claims(
        &self,
        email: &str,
        minutes: u64,
        teams: Option<Vec<String>>,
        is_admin: bool,
    ) -> Claims {
        let iat = crate::util::unix_now();
        Claims {
            sub: email.to_owned(),
            exp: (minutes > 0).then(|| iat + minutes as i64 * 60),
            iat,
            jti: Some(uuid::Uuid::new_v4().to_string()),
            aud: self.audience.clone(),
            iss: self.issuer.clone(),
            teams,
            is_admin,
            token_use: None,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, SetupError> {
        let key = self.key.as_ref().ok_or_else(|| {
            SetupError::Key(
                "JWT_PRIVATE_KEY_PATH is required to sign tokens with an asymmetric algorithm"
                    .into(),
            )
        })?;
        jsonwebtoken::encode(&Header::new(self.alg), claims, key)
            .map_err(|e| SetupError::Key(format!("cannot sign token: {e}")))
    }
}
