//! `DIR/confidant.toml`: an instance's configuration, typed: the key
//! provider, the signing key provider and the storage backend are enums,
//! parsed (and refused, with the error saying why) once, when it is loaded.

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
    /// The practice itself: its name, its time zone, its cancellation rule.
    #[serde(default)]
    pub clinic: Clinic,
    /// `/metrics` for Prometheus, on a listener of its own.
    #[serde(default)]
    pub metrics: Metrics,
    /// How the log is written (to standard error).
    #[serde(default)]
    pub logging: Logging,
    /// Appointment reminders to patients: e-mail (through the SMTP server of `[alerts]`) and an SMS webhook.
    #[serde(default)]
    pub reminders: Reminders,
    /// Staff security training: what missing training does, its grace period and validity.
    #[serde(default)]
    pub training: Training,
    /// Phishing drills for staff: drill mails through the SMTP server of `[alerts]`.
    #[serde(default)]
    pub phishing: Phishing,
}

/// `[training]`: staff security training (docs/training.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Training {
    /// `off` (nothing), `warn` (a banner on every page until done; the
    /// default) or `block` (the banner, and patient data refused once a
    /// module is overdue).
    pub enforce: TrainingEnforce,
    /// New accounts, new or changed modules and assigned modules give this many
    /// days before they block; a pass shows as due this long before it expires.
    pub grace_days: u32,
    /// A pass counts for this many months.
    pub valid_months: u32,
}

impl Default for Training {
    fn default() -> Self {
        Training { enforce: TrainingEnforce::Warn, grace_days: 14, valid_months: 12 }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainingEnforce {
    Off,
    #[default]
    Warn,
    Block,
}

impl Training {
    pub fn settings(&self) -> confidant_identity::TrainingSettings {
        confidant_identity::TrainingSettings {
            enforce: match self.enforce {
                TrainingEnforce::Off => confidant_policy::Enforcement::Off,
                TrainingEnforce::Warn => confidant_policy::Enforcement::Warn,
                TrainingEnforce::Block => confidant_policy::Enforcement::Block,
            },
            rules: confidant_training::Rules {
                // A pass that lasts no month would block at once; 10 years is the longest that makes sense.
                valid_months: self.valid_months.clamp(1, 120),
                grace_days: self.grace_days.min(365),
            },
        }
    }
}

impl Config {
    /// The identity service's settings: `[access]` and `[training]`.
    pub fn identity_settings(&self) -> confidant_identity::Settings {
        confidant_identity::Settings { training: self.training.settings(), ..self.access.identity_settings() }
    }
}

/// The log's shape: `text` for people, `json` (one object a line) for a SIEM.
/// Which events are logged is `CONFIDANT_LOG` (e.g. `info`, `warn`); the log
/// never holds record content in either shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `/metrics` (Prometheus text format): off unless `listen` is set. It serves
/// counts only (no patient, user or record ids), on its own address so that
/// it can stay on loopback or a monitoring network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Where to serve `GET /metrics`, e.g. `"127.0.0.1:9464"`. Unset: no metrics listener.
    pub listen: Option<String>,
    /// A file holding the bearer token a scraper must send (≥ 32 characters,
    /// mode 0600). Required when `listen` is not on loopback.
    pub token_file: Option<PathBuf>,
}

impl Metrics {
    /// The token, read from its file; a listener beyond loopback without one is an error.
    pub fn token(&self) -> Result<Option<String>> {
        let Some(listen) = &self.listen else { return Ok(None) };
        let Some(path) = &self.token_file else {
            let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen).trim_matches(['[', ']']);
            let loopback = host == "localhost" || host == "::1" || host.starts_with("127.");
            if !loopback {
                bail!("metrics.listen = {listen:?} is beyond this machine: set metrics.token_file too");
            }
            return Ok(None);
        };
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read metrics.token_file {}", path.display()))?
            .trim()
            .to_owned();
        if token.len() < 32 {
            bail!("metrics.token_file {} holds fewer than 32 characters: write a long random token", path.display());
        }
        Ok(Some(token))
    }
}

/// Apply the environment's overrides to a configuration table: a variable
/// `CONFIDANT_<SECTION>__<KEY>` sets `<key>` in `[<section>]` (lower case; e.g.
/// `CONFIDANT_SERVER__LISTEN=0.0.0.0:8443`, `CONFIDANT_CLINIC__TIME_ZONE=Europe/Helsinki`).
/// The value is read as TOML when it is a TOML value (`true`, `24`, `["a", "b"]`,
/// `"quoted text"`), else as a string. Returns the names applied (never their values:
/// they may be secrets' paths). Top-level keys and `instance_id` cannot be overridden.
pub fn env_overrides(table: &mut toml::Table, env: impl Iterator<Item = (String, String)>) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> =
        env.filter(|(k, _)| k.starts_with("CONFIDANT_") && k.contains("__")).collect();
    vars.sort();
    for (name, raw) in vars {
        let rest = &name["CONFIDANT_".len()..];
        let Some((section, key)) = rest.split_once("__") else { continue };
        if section.is_empty() || key.is_empty() || key.contains("__") {
            bail!("{name}: an override is CONFIDANT_<SECTION>__<KEY>, e.g. CONFIDANT_SERVER__LISTEN");
        }
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            bail!("{name}: [{section}] is not a section of the configuration");
        };
        section_table.insert(key, value);
        applied.push(name);
    }
    if !applied.is_empty() {
        tracing::info!(overrides = %applied.join(", "), "configuration overridden by the environment");
    }
    Ok(applied)
}

/// `[reminders]`: reminders of booked appointments, with no clinical content
/// (the clinic, the date and time in its zone, a cancel link).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reminders {
    /// Off by default; `confidant reminders send` and `serve` send nothing until it is on.
    pub enabled: bool,
    /// Remind of appointments starting within this many hours.
    pub lead_hours: u32,
    /// Send by e-mail to the patient's `telecom` e-mail, through the SMTP server of `[alerts]`.
    pub email: bool,
    /// The sender address of reminder e-mails (required with `email`).
    pub from: Option<String>,
    /// POST `{"to": phone, "text": message}` here for each patient with a mobile phone.
    pub sms_webhook: Option<String>,
    /// Signs SMS webhook bodies like the alert webhook (`X-Confidant-Signature`), if given.
    pub sms_webhook_secret_file: Option<PathBuf>,
    /// How often `serve` looks for reminders due.
    pub interval_seconds: u64,
}

impl Default for Reminders {
    fn default() -> Self {
        Reminders {
            enabled: false,
            lead_hours: 24,
            email: true,
            from: None,
            sms_webhook: None,
            sms_webhook_secret_file: None,
            interval_seconds: 300,
        }
    }
}

/// `[phishing]`: phishing drills. Campaigns are made by an admin (web UI or
/// `confidant phishing campaign`); their mails go out through the SMTP server
/// of `[alerts]`, from `serve` every `interval_seconds` or with
/// `confidant phishing send`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Phishing {
    /// Off by default: nothing is sent until it is on.
    pub enabled: bool,
    /// The sender address of drill mails (the template's display name goes with it).
    pub from: Option<String>,
    /// The language of staff who chose none: `fi` or `en`.
    pub default_language: String,
    /// Results name people. Off: admins see aggregates only. Before turning it
    /// on in Finland, tell staff (laki yksityisyyden suojasta työelämässä, 759/2004).
    pub show_names: bool,
    /// Open tracking (a pixel per mail): not built, and must stay `false`.
    pub track_opens: bool,
    /// How often `serve` sends the drill mails due.
    pub interval_seconds: u64,
}

impl Default for Phishing {
    fn default() -> Self {
        Phishing {
            enabled: false,
            from: None,
            default_language: "fi".into(),
            show_names: false,
            track_opens: false,
            interval_seconds: 300,
        }
    }
}

impl Phishing {
    /// As the identity service needs it; errors say what to fix.
    pub fn settings(&self) -> anyhow::Result<confidant_identity::PhishingSettings> {
        if self.track_opens {
            anyhow::bail!("phishing.track_opens: open tracking is not built; set it to false");
        }
        if !matches!(self.default_language.as_str(), "fi" | "en") {
            anyhow::bail!("phishing.default_language must be \"fi\" or \"en\"");
        }
        Ok(confidant_identity::PhishingSettings {
            show_names: self.show_names,
            default_language: self.default_language.clone(),
        })
    }
}

/// The practice: what patients and staff see of it, and the rules of its day.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Clinic {
    /// The clinic's name, as reminders and the portal show it.
    pub name: String,
    /// The IANA time zone the clinic's day runs in (e.g. `Europe/Helsinki`):
    /// calendars, "today" and reminders use it. `init` writes the machine's zone.
    pub time_zone: String,
    /// Patients may cancel an appointment themselves (portal, reminder link)
    /// up to this many hours before it starts; later, they call the clinic.
    pub cancel_notice_hours: u32,
}

impl Default for Clinic {
    fn default() -> Self {
        Clinic { name: "Confidant clinic".into(), time_zone: "UTC".into(), cancel_notice_hours: 24 }
    }
}

impl Clinic {
    /// The settings the HTTP layer needs; a time zone name that is not one is
    /// an error that says what to write instead.
    pub fn settings(&self) -> Result<confidant_server::ClinicSettings> {
        let time_zone = jiff::tz::TimeZone::get(self.time_zone.trim()).map_err(|_| {
            anyhow::anyhow!(
                "clinic.time_zone: {:?} is not an IANA time zone name (write e.g. \"Europe/Helsinki\" or \"UTC\")",
                self.time_zone
            )
        })?;
        Ok(confidant_server::ClinicSettings {
            name: self.name.trim().to_owned(),
            time_zone,
            cancel_notice_hours: self.cancel_notice_hours,
        })
    }

    /// The clinic as `init` writes it: the machine's own time zone, if it has an IANA name.
    pub fn for_this_machine() -> Clinic {
        let zone = jiff::tz::TimeZone::system();
        let name = zone.iana_name().filter(|n| jiff::tz::TimeZone::get(n).is_ok()).unwrap_or("UTC");
        Clinic { time_zone: name.to_owned(), ..Clinic::default() }
    }
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
    pub signing_key_provider: Option<SigningKeyProvider>,
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

/// Where the records are stored: parsed once from `database.url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DatabaseFile", into = "DatabaseFile")]
pub enum Database {
    /// The embedded SQLite file (`sqlite://confidant.db`; relative to the instance directory).
    Sqlite { path: PathBuf },
    /// A PostgreSQL server (`postgres://...` or `postgresql://...`).
    Postgres { url: String },
}

/// `[database]` as written in confidant.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseFile {
    /// `sqlite://confidant.db` (relative to the instance directory) or `postgres://...`.
    url: String,
}

impl Database {
    /// Parse `database.url`.
    pub fn parse(url: &str) -> Result<Database> {
        if let Some(p) = url.strip_prefix("sqlite://") {
            Ok(Database::Sqlite { path: PathBuf::from(p) })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Database::Postgres { url: url.to_owned() })
        } else {
            bail!("database.url must start with sqlite:// or postgres://")
        }
    }

    /// The embedded SQLite file `confidant.db` in the instance directory.
    pub fn embedded() -> Database {
        Database::Sqlite { path: PathBuf::from(SQLITE_FILE) }
    }

    /// `database.url` as written.
    pub fn url(&self) -> String {
        match self {
            Database::Sqlite { path } => format!("sqlite://{}", path.display()),
            Database::Postgres { url } => url.clone(),
        }
    }
}

impl TryFrom<DatabaseFile> for Database {
    type Error = String;
    fn try_from(f: DatabaseFile) -> std::result::Result<Self, String> {
        Database::parse(&f.url).map_err(|e| e.to_string())
    }
}

impl From<Database> for DatabaseFile {
    fn from(d: Database) -> Self {
        DatabaseFile { url: d.url() }
    }
}

/// Where the key-encryption key is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProvider {
    /// A key file (mode 0600, outside the instance directory).
    File,
    /// A key file sealed with a passphrase (argon2id).
    Passphrase,
    /// A non-extractable key in a PKCS#11 token.
    Pkcs11 { module: PathBuf, token: String },
}

impl KeyProvider {
    /// The name written in `keys.provider`.
    pub fn name(&self) -> &'static str {
        match self {
            KeyProvider::File => "key-file",
            KeyProvider::Passphrase => "passphrase",
            KeyProvider::Pkcs11 { .. } => "pkcs11",
        }
    }
}

/// Where the audit signing key is held (`audit.signing_key_provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SigningKeyProvider {
    File,
    Passphrase,
    Pkcs11,
}

impl SigningKeyProvider {
    pub fn name(self) -> &'static str {
        match self {
            SigningKeyProvider::File => "key-file",
            SigningKeyProvider::Passphrase => "passphrase",
            SigningKeyProvider::Pkcs11 => "pkcs11",
        }
    }
}

impl TryFrom<String> for SigningKeyProvider {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.as_str() {
            "key-file" => Ok(SigningKeyProvider::File),
            "passphrase" => Ok(SigningKeyProvider::Passphrase),
            "pkcs11" => Ok(SigningKeyProvider::Pkcs11),
            other => Err(format!(
                "audit.signing_key_provider '{other}' is not supported by this build (supported: key-file, passphrase, pkcs11)"
            )),
        }
    }
}

impl From<SigningKeyProvider> for String {
    fn from(p: SigningKeyProvider) -> String {
        p.name().to_owned()
    }
}

impl From<&KeyProvider> for SigningKeyProvider {
    fn from(k: &KeyProvider) -> Self {
        match k {
            KeyProvider::File => SigningKeyProvider::File,
            KeyProvider::Passphrase => SigningKeyProvider::Passphrase,
            KeyProvider::Pkcs11 { .. } => SigningKeyProvider::Pkcs11,
        }
    }
}

/// `[keys]`: the key-encryption key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "KeysFile", into = "KeysFile")]
pub struct Keys {
    /// Where the key-encryption key is held.
    pub provider: KeyProvider,
    /// The key file, outside the instance directory. For `pkcs11` no key file
    /// exists: this names the folder the audit key and backup key are kept in.
    pub key_file: PathBuf,
    /// Identifies the key without revealing it; `serve` refuses a key that does not match.
    pub check_value: String,
    /// `confidant doctor` reports a key-encryption key older than this.
    pub rotate_after_days: u32,
}

/// `[keys]` as written in confidant.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    /// Where the key-encryption key is held: `key-file`, `passphrase` (a key file
    /// sealed with a passphrase) or `pkcs11` (a non-extractable key in a token).
    provider: String,
    key_file: PathBuf,
    check_value: String,
    /// For `pkcs11`: the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pkcs11_module: Option<PathBuf>,
    /// For `pkcs11`: the label of the token that holds the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pkcs11_token: Option<String>,
    #[serde(default = "default_rotate_after_days")]
    rotate_after_days: u32,
}

impl TryFrom<KeysFile> for Keys {
    type Error = String;
    fn try_from(f: KeysFile) -> std::result::Result<Self, String> {
        let provider = match f.provider.as_str() {
            "key-file" => KeyProvider::File,
            "passphrase" => KeyProvider::Passphrase,
            "pkcs11" => match (f.pkcs11_module, f.pkcs11_token) {
                (Some(module), Some(token)) => KeyProvider::Pkcs11 { module, token },
                _ => {
                    return Err(
                        "keys.provider is pkcs11, but keys.pkcs11_module or keys.pkcs11_token is not set".into()
                    );
                }
            },
            other => {
                return Err(format!(
                    "keys.provider '{other}' is not supported by this build (supported: key-file, passphrase, pkcs11)"
                ));
            }
        };
        Ok(Keys { provider, key_file: f.key_file, check_value: f.check_value, rotate_after_days: f.rotate_after_days })
    }
}

impl From<Keys> for KeysFile {
    fn from(k: Keys) -> Self {
        let (pkcs11_module, pkcs11_token) = match &k.provider {
            KeyProvider::Pkcs11 { module, token } => (Some(module.clone()), Some(token.clone())),
            _ => (None, None),
        };
        KeysFile {
            provider: k.provider.name().to_owned(),
            key_file: k.key_file,
            check_value: k.check_value,
            pkcs11_module,
            pkcs11_token,
            rotate_after_days: k.rotate_after_days,
        }
    }
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
    /// HTTPS in the binary: the certificate chain (PEM). With `tls_key_file`;
    /// both are read again when they change (a certbot renewal needs no restart).
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<PathBuf>,
    /// With TLS, also listen here for plain HTTP that only redirects to HTTPS
    /// (e.g. `"0.0.0.0:80"`). Unset: no plain-HTTP listener.
    pub redirect_http_listen: Option<String>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            redirect_http_listen: None,
        }
    }
}

impl Server {
    /// The TLS files, if TLS is on; one without the other, or a redirect
    /// without TLS, is an error that says what to add.
    pub fn tls_files(&self) -> anyhow::Result<Option<confidant_server::tls::TlsFiles>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                Ok(Some(confidant_server::tls::TlsFiles { cert: cert.clone(), key: key.clone() }))
            }
            (None, None) if self.redirect_http_listen.is_some() => anyhow::bail!(
                "server.redirect_http_listen redirects to HTTPS, which needs server.tls_cert_file and server.tls_key_file"
            ),
            (None, None) => Ok(None),
            (Some(_), None) => anyhow::bail!("server.tls_cert_file is set but server.tls_key_file is not: give both"),
            (None, Some(_)) => anyhow::bail!("server.tls_key_file is set but server.tls_cert_file is not: give both"),
        }
    }

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

    /// The instance's configuration: the file, then the environment's
    /// overrides (`CONFIDANT_<SECTION>__<KEY>`, see [`env_overrides`]), checked.
    pub fn load(dir: &Path) -> Result<Config> {
        Self::read(dir, std::env::vars())
    }

    /// The file alone, without the environment's overrides: for a command that
    /// writes the configuration back, so that an override never lands in the file.
    pub fn load_file(dir: &Path) -> Result<Config> {
        Self::read(dir, std::iter::empty())
    }

    fn read(dir: &Path, env: impl Iterator<Item = (String, String)>) -> Result<Config> {
        let path = Self::path(dir);
        if !path.exists() {
            bail!(
                "{} is not a Confidant instance (no {CONFIG_FILE}); create one with `confidant init --dir {}`",
                dir.display(),
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        let overridden = env_overrides(&mut table, env)?;
        let config: Config = table.try_into().with_context(|| {
            if overridden.is_empty() {
                format!("{} is not valid", path.display())
            } else {
                format!("{} with the environment's {} is not valid", path.display(), overridden.join(", "))
            }
        })?;
        config.server.trusted_proxy_addresses().with_context(|| format!("{} is not valid", path.display()))?;
        config.clinic.settings().with_context(|| format!("{} is not valid", path.display()))?;
        config.server.tls_files().with_context(|| format!("{} is not valid", path.display()))?;
        Ok(config)
    }

    /// Write the config atomically (temporary file, then rename).
    pub fn save_new(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!(".{CONFIG_FILE}.tmp"));
        let text = format!(
            "# Confidant instance configuration. See docs/admin.md, \"Configuration\".\n{}",
            toml::to_string_pretty(self)?
        );
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// The database URL with a relative SQLite path resolved against `dir`.
    pub fn database_url(&self, dir: &Path) -> Result<String> {
        Ok(match &self.database {
            Database::Sqlite { path } if path.is_relative() => format!("sqlite://{}", dir.join(path).display()),
            other => other.url(),
        })
    }

    /// Where the audit signing key lives (default: where the key-encryption key does).
    pub fn signing_provider(&self) -> SigningKeyProvider {
        self.audit.signing_key_provider.unwrap_or_else(|| SigningKeyProvider::from(&self.keys.provider))
    }

    /// The PKCS#11 token that holds the keys, if they are in one.
    pub fn token(&self) -> Option<(&Path, &str)> {
        match &self.keys.provider {
            KeyProvider::Pkcs11 { module, token } => Some((module.as_path(), token.as_str())),
            _ => None,
        }
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
        match &self.database {
            Database::Sqlite { path } => Some(if path.is_relative() { dir.join(path) } else { path.clone() }),
            Database::Postgres { .. } => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "instance_id = \"i\"\n[database]\nurl = \"sqlite://confidant.db\"\n[keys]\nprovider = \"pkcs11\"\nkey_file = \"/k/i.kek\"\ncheck_value = \"00\"\npkcs11_module = \"/usr/lib/softhsm/libsofthsm2.so\"\npkcs11_token = \"clinic\"\n[audit]\nsigning_key_provider = \"pkcs11\"\n";

    fn error_of(text: &str) -> String {
        toml::from_str::<Config>(text).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn the_environment_overrides_a_key_of_a_section_and_never_the_file() {
        let mut t: toml::Table = toml::from_str(TOKEN).unwrap();
        let env = [
            ("CONFIDANT_SERVER__LISTEN", "0.0.0.0:8443"),
            ("CONFIDANT_CLINIC__CANCEL_NOTICE_HOURS", "48"),
            ("CONFIDANT_ACCESS__REQUIRE_SECOND_FACTOR", "true"),
            ("CONFIDANT_SERVER__TRUSTED_PROXIES", "[\"10.0.0.1\"]"),
            ("CONFIDANT_LOG", "debug"),
            ("CONFIDANT_PASSPHRASE_FD", "3"),
            ("HOME", "/root"),
        ];
        let applied = env_overrides(&mut t, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert_eq!(applied.len(), 4, "only CONFIDANT_<SECTION>__<KEY> variables: {applied:?}");
        let c: Config = t.try_into().unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:8443");
        assert_eq!(c.clinic.cancel_notice_hours, 48);
        assert!(c.access.require_second_factor);
        assert_eq!(c.server.trusted_proxies, vec!["10.0.0.1".to_owned()]);
        assert_eq!(c.instance_id, "i", "the file's other settings stay");
        // A misspelt key is refused like one in the file; a malformed name says what it should be.
        let mut t: toml::Table = toml::from_str(TOKEN).unwrap();
        env_overrides(&mut t, [("CONFIDANT_SERVER__LISTN".to_owned(), "x".to_owned())].into_iter()).unwrap();
        assert!(t.try_into::<Config>().unwrap_err().to_string().contains("listn"));
        let mut t: toml::Table = toml::from_str(TOKEN).unwrap();
        let e = env_overrides(&mut t, [("CONFIDANT___LISTEN".to_owned(), "x".to_owned())].into_iter()).unwrap_err();
        assert!(e.to_string().contains("CONFIDANT_<SECTION>__<KEY>"), "{e}");
        // Loading names the overrides when they make the configuration invalid.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Config::path(dir.path()), TOKEN).unwrap();
        let env = [("CONFIDANT_CLINIC__TIME_ZONE".to_owned(), "Mars/Olympus".to_owned())];
        let e = format!("{:#}", Config::read(dir.path(), env.into_iter()).unwrap_err());
        assert!(e.contains("Mars/Olympus"), "{e}");
        assert_eq!(Config::load_file(dir.path()).unwrap().clinic.time_zone, "UTC");
    }

    #[test]
    fn the_clinic_time_zone_must_be_a_real_one() {
        let mut c: Config = toml::from_str(TOKEN).unwrap();
        assert_eq!(c.clinic.time_zone, "UTC", "an older configuration without [clinic] keeps UTC");
        c.clinic.time_zone = "Europe/Helsinki".into();
        assert_eq!(c.clinic.settings().unwrap().time_zone.iana_name(), Some("Europe/Helsinki"));
        c.clinic.time_zone = "Mars/Olympus".into();
        let e = c.clinic.settings().unwrap_err().to_string();
        assert!(e.contains("clinic.time_zone") && e.contains("Europe/Helsinki"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Config::path(dir.path()), format!("{TOKEN}[clinic]\ntime_zone = \"Mars/Olympus\"\n")).unwrap();
        let e = format!("{:#}", Config::load(dir.path()).unwrap_err());
        assert!(e.contains("is not valid") && e.contains("Mars/Olympus"), "{e}");
    }

    #[test]
    fn providers_and_backend_are_typed_and_written_back_as_they_were_read() {
        let c: Config = toml::from_str(TOKEN).unwrap();
        assert_eq!(
            c.keys.provider,
            KeyProvider::Pkcs11 { module: "/usr/lib/softhsm/libsofthsm2.so".into(), token: "clinic".into() }
        );
        assert_eq!(c.signing_provider(), SigningKeyProvider::Pkcs11);
        assert_eq!(c.database, Database::Sqlite { path: "confidant.db".into() });
        assert_eq!(c.sqlite_path(Path::new("/d")), Some(PathBuf::from("/d/confidant.db")));
        assert_eq!(c.database_url(Path::new("/d")).unwrap(), "sqlite:///d/confidant.db");
        let written = toml::to_string_pretty(&c).unwrap();
        for line in [
            "url = \"sqlite://confidant.db\"",
            "provider = \"pkcs11\"",
            "pkcs11_module = \"/usr/lib/softhsm/libsofthsm2.so\"",
            "pkcs11_token = \"clinic\"",
            "rotate_after_days = 365",
            "signing_key_provider = \"pkcs11\"",
        ] {
            assert!(written.lines().any(|l| l == line), "{line} in {written}");
        }
        let again: Config = toml::from_str(&written).unwrap();
        assert_eq!(again.keys.provider, c.keys.provider);
        // A key file names no token, and the signing key follows the key's provider.
        let file = TOKEN.replace("provider = \"pkcs11\"\nkey_file", "provider = \"passphrase\"\nkey_file");
        let file = file.replace("signing_key_provider = \"pkcs11\"\n", "");
        let c: Config = toml::from_str(&file).unwrap();
        assert_eq!(
            (c.keys.provider.clone(), c.signing_provider()),
            (KeyProvider::Passphrase, SigningKeyProvider::Passphrase)
        );
        assert!(!toml::to_string_pretty(&c).unwrap().contains("pkcs11"));
        let pg = TOKEN.replace("sqlite://confidant.db", "postgresql://u@db/c");
        let c: Config = toml::from_str(&pg).unwrap();
        assert_eq!((c.sqlite_path(Path::new("/d")), c.database.url()), (None, "postgresql://u@db/c".to_owned()));
    }

    #[test]
    fn what_is_not_supported_is_refused_at_load_saying_why() {
        let e = error_of(&TOKEN.replace("provider = \"pkcs11\"\nkey_file", "provider = \"vault\"\nkey_file"));
        assert!(
            e.contains(
                "keys.provider 'vault' is not supported by this build (supported: key-file, passphrase, pkcs11)"
            ),
            "{e}"
        );
        let e = error_of(&TOKEN.replace("pkcs11_token = \"clinic\"\n", ""));
        assert!(e.contains("keys.provider is pkcs11, but keys.pkcs11_module or keys.pkcs11_token is not set"), "{e}");
        let e = error_of(&TOKEN.replace("signing_key_provider = \"pkcs11\"", "signing_key_provider = \"kms\""));
        assert!(e.contains("audit.signing_key_provider 'kms' is not supported by this build"), "{e}");
        let e = error_of(&TOKEN.replace("sqlite://confidant.db", "mysql://db"));
        assert!(e.contains("database.url must start with sqlite:// or postgres://"), "{e}");
    }
}
