//! Verification: a bearer JWT becomes a [`Principal`], resolved against the
//! registry snapshot (users, teams, roles), with two bounded caches so that
//! a known token costs no SQL and no signature check:
//!
//! - verified tokens, by the SHA-256 of the token (never the token itself),
//!   for `AUTH_CACHE_USER_TTL`; a cached principal is rebuilt from its
//!   claims as soon as the registry version moves, so membership, role and
//!   account changes apply at once on every replica that has the new
//!   snapshot;
//! - each `jti`'s revocation status for `AUTH_CACHE_REVOCATION_TTL`;
//!   a revocation announced on the bus applies at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::{DecodingKey, Validation};
use moka::sync::Cache;

use super::AuthError;
use super::jwt::{Claims, Signer, algorithm, read_key};
use super::secrets::{Secrets, SetupError};
use crate::access::{Principal, TeamScope};
use crate::cluster::{Event, Origin, Subscriber, bus::BoxFuture};
use crate::config::Config;
use crate::registry::{Registry, Snapshot};

/// A verified token, as cached.
struct Verified {
    claims: Claims,
    principal: Arc<Principal>,
    /// The registry version `principal` was resolved against.
    version: i64,
}

/// The caches, rebuilt when their TTLs are changed by a reload.
struct Caches {
    enabled: bool,
    user_ttl: u64,
    revocation_ttl: u64,
    max_entries: u64,
    tokens: Cache<[u8; 32], Arc<Verified>>,
    revocations: Cache<String, bool>,
}

impl Caches {
    fn new(c: &Config) -> Caches {
        Caches {
            enabled: c.auth_cache_enabled,
            user_ttl: c.auth_cache_user_ttl,
            revocation_ttl: c.auth_cache_revocation_ttl,
            max_entries: c.auth_cache_max_entries,
            tokens: Cache::builder()
                .max_capacity(c.auth_cache_max_entries)
                .time_to_live(Duration::from_secs(c.auth_cache_user_ttl.max(1)))
                .build(),
            revocations: Cache::builder()
                .max_capacity(c.auth_cache_max_entries)
                .time_to_live(Duration::from_secs(c.auth_cache_revocation_ttl.max(1)))
                .build(),
        }
    }

    fn same_settings(&self, c: &Config) -> bool {
        self.enabled == c.auth_cache_enabled
            && self.user_ttl == c.auth_cache_user_ttl
            && self.revocation_ttl == c.auth_cache_revocation_ttl
            && self.max_entries == c.auth_cache_max_entries
    }
}

pub struct Auth {
    signer: Signer,
    decoding: DecodingKey,
    validation: Validation,
    registry: Arc<Registry>,
    platform_admin: String,
    caches: ArcSwap<Caches>,
}

impl Auth {
    pub fn new(
        config: &Config,
        secrets: &Secrets,
        registry: Arc<Registry>,
    ) -> Result<Auth, SetupError> {
        let alg = algorithm(&config.jwt_algorithm)?;
        let decoding = if config.jwt_algorithm.starts_with("HS") {
            DecodingKey::from_secret(secrets.jwt_secret.as_bytes())
        } else {
            let pem = read_key(config.jwt_public_key_path.as_deref(), "JWT_PUBLIC_KEY_PATH")?
                .ok_or_else(|| SetupError::Key("JWT_PUBLIC_KEY_PATH is required".into()))?;
            if config.jwt_algorithm.starts_with("RS") {
                DecodingKey::from_rsa_pem(&pem)
            } else {
                DecodingKey::from_ec_pem(&pem)
            }
            .map_err(|e| SetupError::Key(format!("JWT_PUBLIC_KEY_PATH: {e}")))?
        };
        // Only the configured algorithm is accepted: this rejects `alg: none`
        // and HMAC-with-public-key confusion.
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.set_audience(&[config.jwt_audience.as_str()]);
        validation.set_issuer(&[config.jwt_issuer.as_str()]);
        let mut required: HashSet<String> = ["sub", "aud", "iss"]
            .into_iter()
            .map(String::from)
            .collect();
        if config.require_token_expiration {
            required.insert("exp".into());
        }
        validation.required_spec_claims = required;
        validation.validate_exp = true;
        Ok(Auth {
            signer: Signer::new(config, &secrets.jwt_secret)?,
            decoding,
            validation,
            registry,
            platform_admin: config.platform_admin_email.to_ascii_lowercase(),
            caches: ArcSwap::from_pointee(Caches::new(config)),
        })
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Applies reloaded cache settings (TTLs, size, on/off); cached entries
    /// are dropped when they change.
    pub fn apply_live(&self, config: &Config) {
        if !self.caches.load().same_settings(config) {
            self.caches.store(Arc::new(Caches::new(config)));
        }
    }

    /// The principal used for every request when `AUTH_REQUIRED=false`.
    pub fn anonymous_admin(&self) -> Arc<Principal> {
        Arc::new(Principal {
            email: self.platform_admin.clone(),
            is_admin: true,
            teams: TeamScope::All,
            roles: Default::default(),
            jti: None,
            exp: None,
        })
    }

    /// An unauthenticated MCP caller: sees public items only.
    pub fn anonymous(&self) -> Arc<Principal> {
        Arc::new(Principal {
            email: "anonymous".into(),
            is_admin: false,
            teams: TeamScope::Only(HashSet::new()),
            roles: Default::default(),
            jti: None,
            exp: None,
        })
    }

    /// Verifies a bearer token and resolves its principal.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        // Cached principals are found by a hash of the token, never the
        // token itself; BLAKE3 costs a tenth of SHA-256 here.
        let key: [u8; 32] = blake3::hash(token.as_bytes()).into();
        let caches = self.caches.load_full();
        let snap = self.registry.snapshot();
        if caches.enabled
            && let Some(v) = caches.tokens.get(&key)
        {
            if v.claims
                .exp
                .is_some_and(|exp| exp <= crate::util::unix_now())
            {
                caches.tokens.invalidate(&key);
                return Err(AuthError::Expired);
            }
            self.check_revocation(&caches, v.claims.jti.as_deref())
                .await?;
            if v.version == snap.version {
                return Ok(v.principal.clone());
            }
            let principal = Arc::new(self.principal_for(&v.claims, &snap)?);
            caches.tokens.insert(
                key,
                Arc::new(Verified {
                    claims: v.claims.clone(),
                    principal: principal.clone(),
                    version: snap.version,
                }),
            );
            return Ok(principal);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::MissingRequiredClaim(c) => {
                        AuthError::Invalid(format!("missing claim {c}"))
                    }
                    ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                    ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                    ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                    ErrorKind::InvalidAlgorithm => {
                        AuthError::Invalid("algorithm not accepted".into())
                    }
                    _ => AuthError::Invalid("malformed token".into()),
                }
            })?
            .claims;
        self.check_revocation(&caches, claims.jti.as_deref())
            .await?;
        let principal = Arc::new(self.principal_for(&claims, &snap)?);
        if caches.enabled {
            caches.tokens.insert(
                key,
                Arc::new(Verified {
                    claims,
                    principal: principal.clone(),
                    version: snap.version,
                }),
            );
        }
        Ok(principal)
    }

    async fn check_revocation(&self, caches: &Caches, jti: Option<&str>) -> Result<(), AuthError> {
        let Some(jti) = jti else { return Ok(()) };
        let cached = caches
            .enabled
            .then(|| caches.revocations.get(jti))
            .flatten();
        let revoked = match cached {
            Some(r) => r,
            None => {
                let r = self
                    .registry
                    .store()
                    .exists(
                        "SELECT 1 FROM token_revocations WHERE jti = $1",
                        vec![jti.into()],
                    )
                    .await?;
                if caches.enabled {
                    caches.revocations.insert(jti.to_owned(), r);
                }
                r
            }
        };
        if revoked {
            Err(AuthError::Revoked)
        } else {
            Ok(())
        }
    }

    /// The principal of verified claims, as the directory has it now.
    fn principal_for(&self, claims: &Claims, snap: &Snapshot) -> Result<Principal, AuthError> {
        let email = claims.sub.to_ascii_lowercase();
        let user = snap.users.get(&email);
        if user.is_some_and(|u| !u.is_active) {
            return Err(AuthError::Disabled);
        }
        let is_admin =
            claims.is_admin || email == self.platform_admin || user.is_some_and(|u| u.is_admin);
        let roles = snap.roles_of(&email);
        let teams = match &claims.teams {
            Some(list) => TeamScope::Only(list.iter().cloned().collect()),
            None if is_admin => TeamScope::All,
            None => TeamScope::Only(roles.keys().cloned().collect()),
        };
        Ok(Principal {
            email,
            is_admin,
            teams,
            roles,
            jti: claims.jti.clone(),
            exp: claims.exp,
        })
    }

    fn revoked(&self, jti: &str) {
        self.caches.load().revocations.insert(jti.to_owned(), true);
    }
}

/// Revocations apply at once; a token just issued is known not to be
/// revoked (never overwriting a revocation that arrived first).
impl Subscriber for Auth {
    fn on_event<'a>(&'a self, event: &'a Event, _origin: Origin) -> BoxFuture<'a, ()> {
        match event {
            Event::TokenRevoked { jti } => self.revoked(jti),
            Event::TokenIssued { jti } => {
                let caches = self.caches.load();
                if caches.enabled {
                    caches.revocations.entry(jti.clone()).or_insert(false);
                }
            }
            Event::PrincipalsChanged { .. } => self.caches.load().tokens.invalidate_all(),
            Event::RegistryChanged { .. }
            | Event::EdgePurge { .. }
            | Event::SessionEnded { .. }
            | Event::UpstreamResourceUpdated { .. } => {}
        }
        Box::pin(async {})
    }
}
