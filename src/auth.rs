//! Authentication and authorization: JWT verification, API tokens,
//! revocation, principals, visibility and roles.
//!
//! A request with a known token runs no SQL: the verified principal is cached
//! by the SHA-256 of the token (never the token itself) for
//! `AUTH_CACHE_USER_TTL`, and each `jti`'s revocation status for
//! `AUTH_CACHE_REVOCATION_TTL`. A revocation made on this instance applies at
//! once; one made on another instance applies within the revocation TTL.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::crypto;
use crate::registry::model::{Owned, TeamMember, TeamRole, User, Visibility};
use crate::store::{Store, StoreError, Val};

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

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(String),
    #[error("refusing to start in production: {0}")]
    Production(String),
}

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

/// Which teams a principal acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamScope {
    /// Platform admin without a team restriction: sees everything.
    All,
    Only(HashSet<String>),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub email: String,
    pub is_admin: bool,
    pub teams: TeamScope,
    pub roles: HashMap<String, TeamRole>,
    pub jti: Option<String>,
    pub exp: Option<i64>,
}

impl Principal {
    pub fn in_team(&self, team: &str) -> bool {
        match &self.teams {
            TeamScope::All => true,
            TeamScope::Only(t) => t.contains(team),
        }
    }

    pub fn role_in(&self, team: &str) -> Option<TeamRole> {
        if !self.in_team(team) {
            return None;
        }
        self.roles.get(team).copied()
    }

    /// `private` items are seen by their owner, `team` items by the team's
    /// members, `public` by everyone; an unrestricted admin sees all.
    pub fn can_see(&self, item: &dyn Owned) -> bool {
        if self.teams == TeamScope::All {
            return true;
        }
        match item.visibility() {
            Visibility::Public => true,
            Visibility::Private => item.owner_email() == self.email,
            Visibility::Team => {
                item.owner_email() == self.email || item.team_id().is_some_and(|t| self.in_team(t))
            }
        }
    }

    /// May this principal place a new item in `team` with `visibility`?
    pub fn can_create(&self, team: Option<&str>, visibility: Visibility) -> Result<(), String> {
        if self.is_admin {
            return Ok(());
        }
        match team {
            Some(t) => match self.role_in(t) {
                Some(r) if r >= TeamRole::Developer => Ok(()),
                Some(_) => Err(format!("role viewer in team {t} cannot create items")),
                None => Err(format!("not a member of team {t}")),
            },
            None if visibility == Visibility::Public => {
                Err("only platform admins may publish items outside a team".into())
            }
            None => Ok(()),
        }
    }

    /// May this principal change or delete `item`?
    pub fn can_modify(&self, item: &dyn Owned) -> bool {
        if self.is_admin || item.owner_email() == self.email {
            return true;
        }
        match (item.team_id(), item.visibility()) {
            (Some(t), Visibility::Team | Visibility::Public) => {
                self.role_in(t).is_some_and(|r| r >= TeamRole::Developer)
            }
            _ => false,
        }
    }

    /// A stable description of what this principal may see, for cache keys
    /// at the edge: never the token, always the whole visibility scope.
    pub fn scope_key(&self) -> String {
        match &self.teams {
            TeamScope::All => "admin".into(),
            TeamScope::Only(t) => {
                let mut teams: Vec<&str> = t.iter().map(String::as_str).collect();
                teams.sort_unstable();
                format!("user:{}|teams:{}", self.email, teams.join(","))
            }
        }
    }
}

/// The secrets mcpgate signs and seals with.
#[derive(Clone)]
pub struct Secrets {
    pub jwt_secret: String,
    pub encryption_secret: String,
    /// True when a secret came from the generated file rather than config.
    pub generated: bool,
    pub newly_generated: bool,
}

const SECRETS_FILE: &str = ".mcpgate-secrets.json";

#[derive(Serialize, Deserialize, Default)]
struct SecretsFile {
    jwt_secret_key: Option<String>,
    auth_encryption_secret: Option<String>,
}

/// Takes the secrets from config, or from the generated secrets file beside
/// the database, generating it (mode 0600) on first use. Production refuses
/// generated and well-known secrets.
pub fn resolve_secrets(config: &Config) -> Result<Secrets, SetupError> {
    let path = config.state_dir().join(SECRETS_FILE);
    let mut file: SecretsFile = if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|source| SetupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text)
            .map_err(|e| SetupError::Key(format!("{}: {e}", path.display())))?
    } else {
        SecretsFile::default()
    };
    let mut generated = false;
    let mut changed = false;
    let mut pick = |configured: &Option<String>, stored: &mut Option<String>| -> String {
        if let Some(s) = configured.as_ref().filter(|s| !s.is_empty()) {
            return s.clone();
        }
        generated = true;
        stored
            .get_or_insert_with(|| {
                changed = true;
                crypto::random_secret()
            })
            .clone()
    };
    let jwt_secret = pick(&config.jwt_secret_key, &mut file.jwt_secret_key);
    let encryption_secret = pick(
        &config.auth_encryption_secret,
        &mut file.auth_encryption_secret,
    );
    let jwt_needed = config.jwt_algorithm.starts_with("HS");
    if config.is_production() {
        if jwt_needed {
            check_production_secret("JWT_SECRET_KEY", config.jwt_secret_key.as_deref())?;
        }
        check_production_secret(
            "AUTH_ENCRYPTION_SECRET",
            config.auth_encryption_secret.as_deref(),
        )?;
    }
    if changed {
        write_private(
            &path,
            &serde_json::to_string_pretty(&file).expect("serializes"),
        )?;
    }
    Ok(Secrets {
        jwt_secret,
        encryption_secret,
        generated,
        newly_generated: changed,
    })
}

fn check_production_secret(name: &str, value: Option<&str>) -> Result<(), SetupError> {
    match value.filter(|v| !v.is_empty()) {
        None => Err(SetupError::Production(format!(
            "{name} is not set (generated secrets are for development only)"
        ))),
        Some(v) => match crypto::weak_secret_reason(v) {
            Some(reason) => Err(SetupError::Production(format!("{name} {reason}"))),
            None => Ok(()),
        },
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), SetupError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| SetupError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

fn algorithm(name: &str) -> Result<Algorithm, SetupError> {
    name.parse::<Algorithm>()
        .map_err(|_| SetupError::Key(format!("unsupported JWT_ALGORITHM {name}")))
}

fn read_key(path: Option<&Path>, what: &str) -> Result<Option<Vec<u8>>, SetupError> {
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

pub struct Auth {
    signer: Signer,
    decoding: DecodingKey,
    validation: Validation,
    store: Store,
    platform_admin: String,
    cache_enabled: bool,
    principals: Cache<[u8; 32], Arc<Principal>>,
    revocations: Cache<String, bool>,
}

impl Auth {
    pub fn new(config: &Config, secrets: &Secrets, store: Store) -> Result<Auth, SetupError> {
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
        let principals = Cache::builder()
            .max_capacity(config.auth_cache_max_entries)
            .time_to_live(Duration::from_secs(config.auth_cache_user_ttl.max(1)))
            .build();
        let revocations = Cache::builder()
            .max_capacity(config.auth_cache_max_entries)
            .time_to_live(Duration::from_secs(config.auth_cache_revocation_ttl.max(1)))
            .build();
        Ok(Auth {
            signer: Signer::new(config, &secrets.jwt_secret)?,
            decoding,
            validation,
            store,
            platform_admin: config.platform_admin_email.to_ascii_lowercase(),
            cache_enabled: config.auth_cache_enabled,
            principals,
            revocations,
        })
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The principal used for every request when `AUTH_REQUIRED=false`.
    pub fn anonymous_admin(&self) -> Arc<Principal> {
        Arc::new(Principal {
            email: self.platform_admin.clone(),
            is_admin: true,
            teams: TeamScope::All,
            roles: HashMap::new(),
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
            roles: HashMap::new(),
            jti: None,
            exp: None,
        })
    }

    pub async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.cache_enabled
            && let Some(p) = self.principals.get(&key)
        {
            if p.exp.is_some_and(|exp| exp <= crate::util::unix_now()) {
                self.principals.invalidate(&key);
                return Err(AuthError::Expired);
            }
            self.check_revocation(p.jti.as_deref()).await?;
            return Ok(p);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
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
            })?;
        let claims = data.claims;
        self.check_revocation(claims.jti.as_deref()).await?;
        let principal = Arc::new(self.principal_for(claims).await?);
        if self.cache_enabled {
            self.principals.insert(key, principal.clone());
        }
        Ok(principal)
    }

    async fn check_revocation(&self, jti: Option<&str>) -> Result<(), AuthError> {
        let Some(jti) = jti else { return Ok(()) };
        let revoked = match self
            .cache_enabled
            .then(|| self.revocations.get(jti))
            .flatten()
        {
            Some(r) => r,
            None => {
                let r = self
                    .store
                    .exists(
                        "SELECT 1 FROM token_revocations WHERE jti = $1",
                        vec![jti.into()],
                    )
                    .await?;
                if self.cache_enabled {
                    self.revocations.insert(jti.to_owned(), r);
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

    async fn principal_for(&self, claims: Claims) -> Result<Principal, AuthError> {
        let email = claims.sub.to_ascii_lowercase();
        let user: Option<User> = self
            .store
            .fetch_optional("email", Val::from(email.as_str()))
            .await?;
        if user.as_ref().is_some_and(|u| !u.is_active) {
            return Err(AuthError::Disabled);
        }
        let is_admin = claims.is_admin
            || email == self.platform_admin
            || user.as_ref().is_some_and(|u| u.is_admin);
        let memberships: Vec<TeamMember> = self
            .store
            .fetch_where("user_email", email.as_str().into())
            .await?;
        let roles: HashMap<String, TeamRole> = memberships
            .iter()
            .filter_map(|m| Some((m.team_id.clone(), TeamRole::parse(&m.role)?)))
            .collect();
        let teams = match claims.teams {
            Some(list) => TeamScope::Only(list.into_iter().collect()),
            None if is_admin => TeamScope::All,
            None => TeamScope::Only(roles.keys().cloned().collect()),
        };
        Ok(Principal {
            email,
            is_admin,
            teams,
            roles,
            jti: claims.jti,
            exp: claims.exp,
        })
    }

    /// Records a revocation and applies it on this instance at once.
    pub async fn revoke(
        &self,
        jti: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.store
            .execute(
                "INSERT INTO token_revocations (jti, revoked_at, revoked_by, reason) VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING",
                vec![jti.into(), crate::util::now().into(), by.into(), reason.map(str::to_owned).into()],
            )
            .await?;
        self.revocations.insert(jti.to_owned(), true);
        Ok(())
    }

    /// Drops cached principals after a change of memberships or roles.
    pub fn invalidate_principals(&self) {
        self.principals.invalidate_all();
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

    struct Item(Option<&'static str>, &'static str, Visibility);
    impl Owned for Item {
        fn team_id(&self) -> Option<&str> {
            self.0
        }
        fn owner_email(&self) -> &str {
            self.1
        }
        fn visibility(&self) -> Visibility {
            self.2
        }
        fn enabled(&self) -> bool {
            true
        }
        fn tags(&self) -> &[String] {
            &[]
        }
    }

    fn user(teams: &[(&str, TeamRole)]) -> Principal {
        Principal {
            email: "u@x".into(),
            is_admin: false,
            teams: TeamScope::Only(teams.iter().map(|(t, _)| t.to_string()).collect()),
            roles: teams.iter().map(|(t, r)| (t.to_string(), *r)).collect(),
            jti: None,
            exp: None,
        }
    }

    #[test]
    fn visibility_rules() {
        let p = user(&[("t1", TeamRole::Viewer)]);
        assert!(p.can_see(&Item(None, "o@x", Visibility::Public)));
        assert!(!p.can_see(&Item(None, "o@x", Visibility::Private)));
        assert!(p.can_see(&Item(None, "u@x", Visibility::Private)));
        assert!(p.can_see(&Item(Some("t1"), "o@x", Visibility::Team)));
        assert!(!p.can_see(&Item(Some("t2"), "o@x", Visibility::Team)));
        assert!(!p.can_see(&Item(Some("t1"), "o@x", Visibility::Private)));
    }

    #[test]
    fn roles_gate_writes() {
        let viewer = user(&[("t1", TeamRole::Viewer)]);
        assert!(viewer.can_create(Some("t1"), Visibility::Team).is_err());
        assert!(viewer.can_create(None, Visibility::Private).is_ok());
        assert!(viewer.can_create(None, Visibility::Public).is_err());
        assert!(!viewer.can_modify(&Item(Some("t1"), "o@x", Visibility::Team)));
        let dev = user(&[("t1", TeamRole::Developer)]);
        assert!(dev.can_create(Some("t1"), Visibility::Team).is_ok());
        assert!(dev.can_create(Some("t2"), Visibility::Team).is_err());
        assert!(dev.can_modify(&Item(Some("t1"), "o@x", Visibility::Team)));
        assert!(!dev.can_modify(&Item(Some("t1"), "o@x", Visibility::Private)));
    }

    #[test]
    fn scope_keys_separate_users_and_teams() {
        let a = user(&[("t1", TeamRole::Viewer), ("t2", TeamRole::Viewer)]);
        let b = user(&[("t2", TeamRole::Viewer), ("t1", TeamRole::Viewer)]);
        assert_eq!(a.scope_key(), b.scope_key());
        assert_ne!(a.scope_key(), user(&[("t1", TeamRole::Viewer)]).scope_key());
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
