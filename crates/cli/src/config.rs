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
    #[serde(default)]
    pub access: Access,
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub retention: Retention,
    /// Breach detection: honey records, rules and their thresholds.
    #[serde(default)]
    pub detection: confidant_detect::Settings,
    /// Where alerts go besides the log: a webhook, e-mail.
    #[serde(default)]
    pub alerts: confidant_detect::sinks::AlertSettings,
}

/// How long records are kept (`confidant retention run`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Erase a patient this many years after their last encounter (or, without
    /// one, the last change to their records). Unset: no policy.
    pub years_after_last_encounter: Option<u32>,
}

/// The audit log's signing key, witness and checkpoint schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Where the Ed25519 key that signs checkpoints and backups lives:
    /// `key-file`, `passphrase` (the key file sealed with the passphrase of
    /// the key-encryption key) or `pkcs11` (a non-extractable key pair in the
    /// token of `keys.pkcs11_token`). Default: the same as `keys.provider`.
    pub signing_key_provider: Option<String>,
    /// The audit signing key's public key (hex), pinned at `init`: a key file
    /// or token key that does not match it is refused (someone replaced it).
    pub public_key: Option<String>,
    /// The Ed25519 key that signs checkpoints, held apart from the data like
    /// the key-encryption key. Default: beside the key file, `<instance>.audit-key`.
    pub signing_key_file: Option<PathBuf>,
    /// The append-only file checkpoints are written to: outside the instance
    /// directory, so that whoever can change the database there cannot cut it
    /// too (better still on another disk or a mount of another machine).
    /// Default: beside the key file, `<instance>.witness`.
    pub witness_file: Option<PathBuf>,
    /// Optionally, a URL each checkpoint line is also POSTed to (text/plain), e.g.
    /// a collector on another machine. Failures are logged and retried with the next.
    pub witness_webhook: Option<String>,
    /// Sign a checkpoint after this many entries...
    pub checkpoint_every_entries: u64,
    /// ...or this many seconds, whichever comes first (if anything was appended).
    pub checkpoint_interval_seconds: u64,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            signing_key_provider: None,
            public_key: None,
            signing_key_file: None,
            witness_file: None,
            witness_webhook: None,
            checkpoint_every_entries: 1000,
            checkpoint_interval_seconds: 60,
        }
    }
}

/// Sessions, lockout and break-glass. Defaults follow OWASP's session and
/// authentication cheat sheets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// A browser session ends after this many minutes without activity.
    pub idle_timeout_minutes: i64,
    /// A browser session ends this many hours after login.
    pub session_hours: i64,
    /// An API client's bearer session lasts this many minutes.
    pub bearer_minutes: i64,
    /// Failed logins per account (within 15 minutes) before a lockout.
    pub max_failed_logins: i64,
    /// Failed logins per source address (within 15 minutes) before it is locked out.
    pub max_failed_logins_per_source: i64,
    /// How long a lockout lasts (an admin can lift it: `confidant user unlock`).
    pub lockout_minutes: i64,
    /// How long a break-glass access lasts.
    pub break_glass_minutes: i64,
    /// Staff must enrol and use a second factor (TOTP). Turning this off lets
    /// a stolen password alone in; `confidant doctor` reports it as high.
    pub require_second_factor: bool,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            idle_timeout_minutes: 30,
            session_hours: 12,
            bearer_minutes: 60,
            max_failed_logins: 5,
            max_failed_logins_per_source: 50,
            lockout_minutes: 15,
            break_glass_minutes: 60,
            require_second_factor: true,
        }
    }
}

impl Access {
    pub fn identity_settings(&self) -> confidant_identity::Settings {
        const MIN: i64 = 60_000;
        confidant_identity::Settings {
            idle_timeout_ms: self.idle_timeout_minutes.max(1) * MIN,
            absolute_lifetime_ms: self.session_hours.max(1) * 60 * MIN,
            bearer_lifetime_ms: self.bearer_minutes.max(1) * MIN,
            account_max_failures: self.max_failed_logins.max(1),
            source_max_failures: self.max_failed_logins_per_source.max(1),
            window_ms: 15 * MIN,
            lockout_ms: self.lockout_minutes.max(1) * MIN,
            require_second_factor: self.require_second_factor,
            ..confidant_identity::Settings::default()
        }
    }
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
    /// Where the key-encryption key is held: `key-file`, `passphrase` (a key file
    /// sealed with a passphrase) or `pkcs11` (a non-extractable key in a token).
    pub provider: String,
    /// The key file, outside the instance directory. For `pkcs11` no key file
    /// exists: this names the folder the audit key and backup key are kept in.
    pub key_file: PathBuf,
    /// Identifies the key without revealing it; `serve` refuses a key that does not match.
    pub check_value: String,
    /// For `pkcs11`: the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11_module: Option<PathBuf>,
    /// For `pkcs11`: the label of the token that holds the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11_token: Option<String>,
    /// `confidant doctor` reports a key-encryption key older than this.
    #[serde(default = "default_rotate_after_days")]
    pub rotate_after_days: u32,
}

fn default_rotate_after_days() -> u32 {
    365
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
    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` header names the
    /// client. Empty (the default): the connection's address is the client's,
    /// whatever a header says.
    pub trusted_proxies: Vec<String>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Server {
    /// `trusted_proxies` as addresses; an entry that is not one is an error that says so.
    pub fn trusted_proxy_addresses(&self) -> anyhow::Result<Vec<std::net::IpAddr>> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.trim().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "server.trusted_proxies: {p:?} is not an IP address (one address per entry, no ranges)"
                    )
                })
            })
            .collect()
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
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let config: Config = toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        config.server.trusted_proxy_addresses().with_context(|| format!("{} is not valid", path.display()))?;
        Ok(config)
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
            Some(p) if Path::new(p).is_relative() => Ok(format!("sqlite://{}", dir.join(p).display())),
            Some(_) => Ok(self.database.url.clone()),
            None if self.database.url.starts_with("postgres://") || self.database.url.starts_with("postgresql://") => {
                Ok(self.database.url.clone())
            }
            None => bail!("database.url must start with sqlite:// or postgres://"),
        }
    }

    /// Where the audit signing key lives: `key-file`, `passphrase` or `pkcs11`.
    pub fn signing_provider(&self) -> &str {
        self.audit.signing_key_provider.as_deref().unwrap_or(&self.keys.provider)
    }

    /// The audit signing key file.
    pub fn signing_key_path(&self) -> PathBuf {
        self.audit.signing_key_file.clone().unwrap_or_else(|| self.keys.key_file.with_extension("audit-key"))
    }

    /// The witness file, resolved against `dir`.
    pub fn witness_path(&self, dir: &Path) -> PathBuf {
        match &self.audit.witness_file {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => dir.join(p),
            None => self.keys.key_file.with_extension("witness"),
        }
    }

    /// The path of the SQLite file, if this instance uses SQLite.
    pub fn sqlite_path(&self, dir: &Path) -> Option<PathBuf> {
        let p = self.database.url.strip_prefix("sqlite://")?;
        Some(if Path::new(p).is_relative() { dir.join(p) } else { PathBuf::from(p) })
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
        PathBuf::from(h).join(".config").join("confidant").join("keys")
    } else {
        bail!("cannot choose a key file location: set HOME or pass --key-file");
    };
    Ok(dir.join(format!("{instance_id}.kek")))
}
