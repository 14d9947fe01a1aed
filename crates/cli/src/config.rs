//! `DIR/confidant.toml`: an instance's configuration.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "confidant.toml";
pub const SQLITE_FILE: &str = "confidant.db";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Random id of this instance; the key file names it too.
    pub instance_id: String,
    pub database: Database,
    pub keys: Keys,
    #[serde(default)]
    pub server: Server,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `sqlite://confidant.db` (relative to the instance directory) or `postgres://...`.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Where the key-encryption key is held: `key-file` (more providers follow).
    pub provider: String,
    /// The key file, outside the instance directory.
    pub key_file: PathBuf,
    /// Identifies the key without revealing it; `serve` refuses a key that does not match.
    pub check_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on. Loopback by default: put a TLS-terminating proxy in front.
    pub listen: String,
    /// The URL clients use to reach this server (for links in responses).
    /// Defaults to `http://` and the listen address.
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes (larger gets 413).
    pub max_body_bytes: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl Config {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CONFIG_FILE)
    }

    pub fn load(dir: &Path) -> Result<Config> {
        let path = Self::path(dir);
        if !path.exists() {
            bail!(
                "{} is not a Confidant instance (no {CONFIG_FILE}); create one with `confidant init --dir {}`",
                dir.display(),
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    /// Write the config atomically (temporary file, then rename).
    pub fn save_new(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!(".{CONFIG_FILE}.tmp"));
        let text = format!(
            "# Confidant instance configuration. See README.md, \"Configuration\".\n{}",
            toml::to_string_pretty(self)?
        );
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// The database URL with a relative SQLite path resolved against `dir`.
    pub fn database_url(&self, dir: &Path) -> Result<String> {
        match self.database.url.strip_prefix("sqlite://") {
            Some(p) if Path::new(p).is_relative() => {
                Ok(format!("sqlite://{}", dir.join(p).display()))
            }
            Some(_) => Ok(self.database.url.clone()),
            None if self.database.url.starts_with("postgres://")
                || self.database.url.starts_with("postgresql://") =>
            {
                Ok(self.database.url.clone())
            }
            None => bail!("database.url must start with sqlite:// or postgres://"),
        }
    }

    /// The path of the SQLite file, if this instance uses SQLite.
    pub fn sqlite_path(&self, dir: &Path) -> Option<PathBuf> {
        let p = self.database.url.strip_prefix("sqlite://")?;
        Some(if Path::new(p).is_relative() {
            dir.join(p)
        } else {
            PathBuf::from(p)
        })
    }
}

/// The default key file path: outside the data directory, per user.
/// `$CONFIDANT_KEY_DIR/<instance>.kek`, else `$XDG_CONFIG_HOME/confidant/keys/`,
/// else `~/.config/confidant/keys/`.
pub fn default_key_file(instance_id: &str) -> Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("CONFIDANT_KEY_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        PathBuf::from(d).join("confidant").join("keys")
    } else if let Some(h) = std::env::var_os("HOME") {
        PathBuf::from(h)
            .join(".config")
            .join("confidant")
            .join("keys")
    } else {
        bail!("cannot choose a key file location: set HOME or pass --key-file");
    };
    Ok(dir.join(format!("{instance_id}.kek")))
}
