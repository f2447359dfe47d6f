//! Secret provisioning: the JWT signing secret and the encryption key come
//! from configuration, or are generated once into a file beside the
//! database (mode 0600). Production refuses generated and weak secrets.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::crypto;

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

/// The secrets mcpgate signs and seals with.
#[derive(Clone)]
pub struct Secrets {
    pub jwt_secret: String,
    pub encryption_secret: String,
    /// True when a secret came from the generated file rather than config.
    pub generated: bool,
    pub newly_generated: bool,
    /// The git work tree that holds the generated secrets file, if any:
    /// one `git add .` away from being committed.
    pub in_work_tree: Option<std::path::PathBuf>,
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
        let mut wanted = Vec::new();
        if jwt_needed {
            wanted.push(("JWT_SECRET_KEY", config.jwt_secret_key.as_deref()));
        }
        wanted.push((
            "AUTH_ENCRYPTION_SECRET",
            config.auth_encryption_secret.as_deref(),
        ));
        check_production_secrets(&wanted)?;
    }
    if changed {
        write_private(
            &path,
            &serde_json::to_string_pretty(&file).expect("serializes"),
        )?;
    }
    let in_work_tree = if generated { work_tree_of(&path) } else { None };
    Ok(Secrets {
        jwt_secret,
        encryption_secret,
        generated,
        newly_generated: changed,
        in_work_tree,
    })
}

/// The nearest directory at or above `file`'s that holds a `.git` entry
/// (a directory, or a file for worktrees and submodules).
fn work_tree_of(file: &Path) -> Option<std::path::PathBuf> {
    let dir = std::fs::canonicalize(file.parent()?).ok()?;
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// Every missing or weak secret at once, with what to set.
fn check_production_secrets(wanted: &[(&str, Option<&str>)]) -> Result<(), SetupError> {
    let mut missing = Vec::new();
    let mut weak = Vec::new();
    for (name, value) in wanted {
        match value.filter(|v| !v.is_empty()) {
            None => missing.push(*name),
            Some(v) => {
                if let Some(reason) = crypto::weak_secret_reason(v) {
                    weak.push(format!("{name} {reason}"));
                }
            }
        }
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "set {} (generated secrets are for development only; make each with `openssl rand -hex 32`, and keep them: tokens and stored credentials depend on them)",
            missing.join(" and ")
        ));
    }
    problems.extend(weak);
    match problems.is_empty() {
        true => Ok(()),
        false => Err(SetupError::Production(problems.join("; "))),
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
