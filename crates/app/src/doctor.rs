//! `confidant doctor`: the instance's security posture, check by check, each
//! with its evidence and its fix — from the console, and for the admin's
//! posture page of a running server ([`Running`] is the server's posture hook).
//!
//! Over 600 lines because each check is a few dozen lines of evidence and
//! advice in the operator's words; they belong together, in the order run.

use std::path::{Path, PathBuf};

use anyhow::Result;
use confidant_audit::log::Witness;
use confidant_store::{AuditFilter, Sink};
use serde::Serialize;

use crate::config::{Config, Database, KeyProvider};
use crate::console::Console;

const DAY: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl Severity {
    /// As the JSON report and the posture page spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    /// `None`: the check passed.
    pub severity: Option<Severity>,
    pub title: String,
    pub evidence: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Finding {
    pub(crate) fn pass(check: &'static str, title: impl Into<String>, evidence: impl Into<String>) -> Finding {
        Finding { check, severity: None, title: title.into(), evidence: evidence.into(), fix: String::new() }
    }

    pub(crate) fn fail(
        check: &'static str,
        severity: Severity,
        title: impl Into<String>,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding { check, severity: Some(severity), title: title.into(), evidence: evidence.into(), fix: fix.into() }
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode(_: &Path) -> Option<u32> {
    None
}

/// Others (group or world) may read or enter it.
fn open_to_others(path: &Path) -> Option<u32> {
    mode(path).filter(|m| m & 0o077 != 0)
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host == "::1" || host.starts_with("127.") || host.is_empty() || host.starts_with('/')
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}

/// A certificate this close to its end is a finding: renewal has failed or was never set up.
const CERT_WARN_DAYS: i64 = 14;

/// TLS in the binary: the certificate is readable and not about to expire.
fn check_certificate(files: &confidant_server::tls::TlsFiles, now: i64) -> Finding {
    const C: &str = "tls";
    let fix_files = "give server.tls_cert_file a PEM certificate chain and server.tls_key_file its key (e.g. certbot's fullchain.pem and privkey.pem)";
    let pem = match std::fs::read(&files.cert) {
        Ok(p) => p,
        Err(e) => {
            return Finding::fail(
                C,
                Severity::High,
                "the TLS certificate cannot be read",
                format!("{}: {e}", files.cert.display()),
                fix_files,
            );
        }
    };
    let parsed = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| e.to_string()).and_then(|(_, p)| {
        p.parse_x509().map(|c| (c.subject().to_string(), c.validity().not_after.timestamp())).map_err(|e| e.to_string())
    });
    let (subject, not_after) = match parsed {
        Ok(c) => c,
        Err(e) => {
            return Finding::fail(
                C,
                Severity::High,
                "the TLS certificate is not a PEM X.509 certificate",
                format!("{}: {e}", files.cert.display()),
                fix_files,
            );
        }
    };
    let days = (not_after * 1000 - now).div_euclid(DAY);
    let until = confidant_fhir::instant(not_after * 1000);
    let evidence = format!("{}: {subject}, valid until {until}", files.cert.display());
    let renew = "renew the certificate (certbot renew, or your CA) and write it over the same files: Confidant reads them again without a restart";
    if days < 0 {
        Finding::fail(C, Severity::High, "the TLS certificate has expired", evidence, renew)
    } else if days < CERT_WARN_DAYS {
        Finding::fail(C, Severity::High, format!("the TLS certificate expires in {days} days"), evidence, renew)
    } else {
        Finding::pass(
            C,
            format!("Confidant serves HTTPS itself; the certificate is valid for {days} more days"),
            evidence,
        )
    }
}

fn check_tls(config: &Config, now: i64) -> Finding {
    const C: &str = "tls";
    match config.server.tls_files() {
        Ok(Some(files)) => return check_certificate(&files, now),
        Ok(None) => {}
        Err(e) => {
            return Finding::fail(
                C,
                Severity::High,
                "the TLS settings are incomplete",
                e.to_string(),
                "set both server.tls_cert_file and server.tls_key_file, or neither",
            );
        }
    }
    let listen = &config.server.listen;
    let public = config.server.public_url.as_deref().unwrap_or("");
    let loopback = is_loopback_host(host_of(listen));
    let https = public.starts_with("https://");
    let evidence =
        format!("server.listen = {listen}, server.public_url = {}", if public.is_empty() { "unset" } else { public });
    match (loopback, https) {
        (true, _)
            if public.starts_with("http://")
                && !is_loopback_host(host_of(public.trim_start_matches("http://").split('/').next().unwrap_or(""))) =>
        {
            Finding::fail(
                C,
                Severity::Medium,
                "clients are sent to a plain http:// address",
                evidence,
                "put a TLS reverse proxy in front (Caddy, nginx) and set server.public_url to its https:// URL",
            )
        }
        (true, _) => Finding::pass(C, "listening on this machine only; TLS belongs to the proxy in front", evidence),
        (false, false) => Finding::fail(
            C,
            Severity::High,
            "serving beyond this machine without TLS",
            evidence,
            "set server.tls_cert_file and server.tls_key_file (Confidant then serves HTTPS itself), or listen on 127.0.0.1 behind a TLS reverse proxy and set server.public_url to its https:// URL",
        ),
        (false, true) => Finding::fail(
            C,
            Severity::Medium,
            "TLS is at the proxy, but Confidant listens beyond this machine",
            evidence,
            "clients could bypass the proxy in plain HTTP: listen on 127.0.0.1, or firewall the port to the proxy alone",
        ),
    }
}

/// Behind a TLS proxy every connection comes from the proxy: unless it is named
/// in `server.trusted_proxies`, the audit log shows the proxy's address,
/// per-address limits count the whole clinic together and `new-address` never fires.
fn check_client_addresses(config: &Config) -> Finding {
    const C: &str = "client-addresses";
    let public = config.server.public_url.as_deref().unwrap_or("");
    let behind_proxy = public.starts_with("https://") && is_loopback_host(host_of(&config.server.listen));
    let trusted = &config.server.trusted_proxies;
    let evidence = format!(
        "server.public_url = {}, server.trusted_proxies = {trusted:?}",
        if public.is_empty() { "unset" } else { public }
    );
    if behind_proxy && trusted.is_empty() {
        Finding::fail(
            C,
            Severity::Low,
            "behind a proxy, every client has the proxy's address",
            evidence,
            "set server.trusted_proxies to the proxy's address (e.g. [\"127.0.0.1\"]) and let it send X-Forwarded-For",
        )
    } else {
        Finding::pass(C, "client addresses are the clients'", evidence)
    }
}

fn check_key_files(config: &Config, dir: &Path) -> Finding {
    const C: &str = "key-files";
    let mut files = vec![config.signing_key_path(), crate::backup::backup_key_path(config)];
    if !matches!(config.keys.provider, KeyProvider::Pkcs11 { .. }) {
        files.insert(0, config.keys.key_file.clone());
    }
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let inside: Vec<String> = files
        .iter()
        .filter(|f| f.exists() && f.canonicalize().map(|f| f.starts_with(&dir)).unwrap_or(false))
        .map(|f| f.display().to_string())
        .collect();
    if !inside.is_empty() {
        return Finding::fail(
            C,
            Severity::High,
            "a key lives inside the data folder",
            inside.join(", "),
            "move the keys out of the instance directory (a stolen copy of the folder must not carry them) and update [keys]/[audit] in confidant.toml",
        );
    }
    let mut loose: Vec<String> =
        files.iter().filter_map(|f| open_to_others(f).map(|m| format!("{} (mode {m:o})", f.display()))).collect();
    if let Some(folder) = config.keys.key_file.parent()
        && let Some(m) = open_to_others(folder)
    {
        loose.push(format!("{} (mode {m:o})", folder.display()));
    }
    if !loose.is_empty() {
        return Finding::fail(
            C,
            Severity::High,
            "keys are readable by other users",
            loose.join(", "),
            "chmod 600 the key files and 700 their folder",
        );
    }
    let held = if matches!(config.keys.provider, KeyProvider::Pkcs11 { .. }) {
        "in the PKCS#11 token"
    } else {
        "in files outside the data folder, owner only"
    };
    Finding::pass(
        C,
        format!("keys are {held}"),
        files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
    )
}

fn check_permissions(config: &Config, dir: &Path) -> Finding {
    const C: &str = "file-permissions";
    if let Some(m) = open_to_others(dir) {
        let mut files: Vec<PathBuf> = vec![Config::path(dir)];
        if let Some(db) = config.sqlite_path(dir) {
            for ext in ["", "-wal", "-shm"] {
                files.push(PathBuf::from(format!("{}{ext}", db.display())));
            }
        }
        let readable: Vec<String> =
            files.iter().filter(|f| mode(f).is_some_and(|m| m & 0o044 != 0)).map(|f| f.display().to_string()).collect();
        let severity = if readable.is_empty() { Severity::Medium } else { Severity::High };
        return Finding::fail(
            C,
            severity,
            "the data folder is open to other users",
            format!(
                "{} is mode {m:o}{}",
                dir.display(),
                if readable.is_empty() { String::new() } else { format!("; readable: {}", readable.join(", ")) }
            ),
            format!("chmod 700 {}", dir.display()),
        );
    }
    Finding::pass(
        C,
        "the data folder is the owner's alone",
        format!("{} is mode {:o}", dir.display(), mode(dir).unwrap_or(0o700)),
    )
}

fn check_database_url(config: &Config) -> Finding {
    const C: &str = "database-tls";
    let Database::Postgres { url } = &config.database else {
        return Finding::pass(C, "the embedded SQLite database: no network", "database.url = sqlite://…");
    };
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")).unwrap_or(url);
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = host_of(host);
    let sslmode = query.split('&').find_map(|kv| kv.strip_prefix("sslmode=")).unwrap_or("prefer");
    let evidence = format!("host {host}, sslmode={sslmode}");
    if is_loopback_host(host) || matches!(sslmode, "require" | "verify-ca" | "verify-full") {
        Finding::pass(C, "the database connection is local or encrypted", evidence)
    } else {
        Finding::fail(
            C,
            Severity::High,
            "PostgreSQL on another host without required TLS",
            evidence,
            "add ?sslmode=verify-full to database.url (and give the server a certificate), or run PostgreSQL on this machine",
        )
    }
}

fn check_logging() -> Finding {
    const C: &str = "debug-logging";
    let filter = std::env::var("CONFIDANT_LOG").unwrap_or_default();
    if filter.contains("debug") || filter.contains("trace") {
        Finding::fail(
            C,
            Severity::Medium,
            "debug logging is on",
            format!("CONFIDANT_LOG={filter}"),
            "unset CONFIDANT_LOG (default: info) in the service's environment; debug output includes SQL statements",
        )
    } else {
        Finding::pass(
            C,
            "logging at info (ids only)",
            format!("CONFIDANT_LOG={}", if filter.is_empty() { "unset" } else { &filter }),
        )
    }
}

fn check_alert_config(config: &Config) -> Option<Finding> {
    config.alerts.sinks().is_empty().then(|| {
        Finding::fail("alert-sinks", Severity::Medium, "alerts reach only the log", "[alerts] has no webhook_url and no smtp_host",
            "set alerts.webhook_url (your SIEM or chat) and/or alerts.smtp_host with email_to, so that someone is told within minutes")
    })
}

/// Every check, in a fixed order.
pub async fn examine(console: &Console, dir: &Path) -> Result<Vec<Finding>> {
    let config = Config::load(dir)?;
    let mut out = vec![
        check_tls(&config, console.now()),
        check_client_addresses(&config),
        check_key_files(&config, dir),
        check_permissions(&config, dir),
        check_database_url(&config),
        check_logging(),
    ];
    let crate::instance::Instance { records, identity, .. } = match crate::instance::Instance::open(console, dir).await
    {
        Ok(opened) => opened,
        Err(e) => {
            // The checks above still stand; the rest need the instance open.
            out.push(Finding::fail(
                "instance",
                Severity::High,
                "the instance cannot be opened: the rest was not checked",
                format!("{e:#}"),
                "fix what the error says (a key, a passphrase, the database), then run doctor again",
            ));
            return Ok(out);
        }
    };
    let result = examine_instance(console, &config, dir, &records, &identity, &mut out).await;
    records.store().close().await;
    result?;
    Ok(out)
}

/// The same checks, from inside a running server (its open instance): the
/// admin's posture page. An error of one check shows as a finding.
pub async fn examine_running(
    console: &Console,
    config: &Config,
    dir: &Path,
    records: &confidant_records::Records,
    identity: &confidant_identity::Identity,
) -> Vec<Finding> {
    let mut out = vec![
        check_tls(config, console.now()),
        check_client_addresses(config),
        check_key_files(config, dir),
        check_permissions(config, dir),
        check_database_url(config),
        check_logging(),
    ];
    if let Err(e) = examine_instance(console, config, dir, records, identity, &mut out).await {
        out.push(Finding::fail(
            "instance",
            Severity::High,
            "a check could not read the instance",
            format!("{e:#}"),
            "run `confidant doctor` at the server for the details",
        ));
    }
    out
}

/// The checks of a running server, for its admin's posture page: the
/// server's [`confidant_server::PostureChecks`] hook.
pub struct Running {
    pub console: Console,
    pub config: Config,
    pub dir: PathBuf,
    pub records: std::sync::Arc<confidant_records::Records>,
    pub identity: std::sync::Arc<confidant_identity::Identity>,
}

impl confidant_server::PostureChecks for Running {
    fn examine(&self) -> confidant_server::PostureFuture {
        let (console, config, dir) = (self.console.clone(), self.config.clone(), self.dir.clone());
        let (records, identity) = (self.records.clone(), self.identity.clone());
        Box::pin(async move { for_page(examine_running(&console, &config, &dir, &records, &identity).await) })
    }
}

/// Findings as the web UI shows them.
fn for_page(findings: Vec<Finding>) -> Vec<confidant_server::PostureFinding> {
    findings
        .into_iter()
        .map(|f| confidant_server::PostureFinding {
            check: f.check.to_owned(),
            severity: f.severity.map(|s| s.as_str().to_owned()),
            title: f.title,
            evidence: f.evidence,
            fix: f.fix,
        })
        .collect()
}

async fn examine_instance(
    console: &Console,
    config: &Config,
    dir: &Path,
    records: &confidant_records::Records,
    identity: &confidant_identity::Identity,
    out: &mut Vec<Finding>,
) -> Result<()> {
    let store = records.store();
    let now = console.now();
    // Key age.
    let current = records.current_kek_version();
    let made = confidant_records::kek_made_at(store, current).await?.unwrap_or(now);
    let age_days = (now - made) / DAY;
    out.push(if age_days > i64::from(config.keys.rotate_after_days) {
        Finding::fail(
            "key-age",
            Severity::Medium,
            "the key-encryption key is older than policy",
            format!(
                "version {current} is {age_days} days old; keys.rotate_after_days = {}",
                config.keys.rotate_after_days
            ),
            format!("confidant keys rotate --dir {}, then retire the old version once nothing uses it", dir.display()),
        )
    } else {
        Finding::pass(
            "key-age",
            "the key-encryption key is within policy",
            format!("version {current} is {age_days} days old"),
        )
    });
    // Triggers, rules, views and row policies nobody should have made.
    let foreign = store.foreign_schema_objects().await?;
    out.push(if foreign.is_empty() {
        Finding::pass(
            "schema-objects",
            "the database runs nothing but Confidant's own statements",
            "no triggers, rules, views or row policies besides those the migrations created",
        )
    } else {
        let list: Vec<String> = foreign.iter().map(ToString::to_string).collect();
        Finding::fail(
            "schema-objects",
            Severity::High,
            "the database holds triggers, rules, views or policies Confidant did not create",
            list.join(", "),
            "treat it as an incident: keep a copy of the database, drop the objects listed, then run \
             `confidant audit verify`; `confidant serve` refuses to start until they are gone",
        )
    });
    // The audit witness.
    let witness_path = config.witness_path(dir);
    let entries = store.audit_size().await?;
    let witness = Witness::new(witness_path.clone()).read();
    let in_db = store
        .audit_checkpoint_lines()
        .await?
        .iter()
        .filter_map(|l| confidant_audit::checkpoint::SignedCheckpoint::parse(l))
        .filter(|c| c.checkpoint.origin == config.instance_id)
        .map(|c| c.checkpoint.size)
        .max()
        .unwrap_or(0);
    out.push(match witness {
        Err(e) => Finding::fail("audit-witness", Severity::High, "the audit witness cannot be read", e.to_string(),
            format!("restore {} from its copy, or check its permissions", witness_path.display())),
        Ok(w) => {
            let size = w.iter().filter(|c| c.checkpoint.origin == config.instance_id).map(|c| c.checkpoint.size).max().unwrap_or(0);
            let evidence = format!("{}: latest checkpoint covers {size} of {entries} entries; the database holds copies up to {in_db}", witness_path.display());
            if entries > 0 && size == 0 {
                Finding::fail("audit-witness", Severity::High, "no signed checkpoint vouches for the audit log", evidence,
                    format!("if the witness was lost, restore it; else run `confidant audit checkpoint --dir {}`", dir.display()))
            } else if in_db > size {
                Finding::fail("audit-witness", Severity::High, "the witness lacks checkpoints the database has: it was truncated or replaced", evidence,
                    "treat it as an incident: restore the witness from its copy or the webhook collector, then run `confidant audit verify`")
            } else if (entries as u64).saturating_sub(size) > 2 * config.audit.checkpoint_every_entries.max(1) {
                Finding::fail("audit-witness", Severity::Medium, "the witness is stale", evidence,
                    format!("is the server signing checkpoints? Run `confidant audit checkpoint --dir {}`", dir.display()))
            } else {
                Finding::pass("audit-witness", "signed checkpoints cover the audit log", evidence)
            }
        }
    });
    // People: second factors, unused accounts.
    let users = identity.list_users().await?;
    let staff: Vec<_> = users.iter().filter(|u| u.role.is_staff() && !u.disabled).collect();
    if !config.access.require_second_factor {
        out.push(Finding::fail(
            "second-factor",
            Severity::High,
            "staff can log in with a password alone",
            "access.require_second_factor = false",
            "set access.require_second_factor = true (the default)",
        ));
    } else {
        let without: Vec<&str> = staff.iter().filter(|u| !u.mfa_enrolled).map(|u| u.username.as_str()).collect();
        out.push(if without.is_empty() {
            Finding::pass(
                "second-factor",
                "every staff account has a second factor",
                format!("{} staff accounts", staff.len()),
            )
        } else {
            Finding::fail(
                "second-factor",
                Severity::Medium,
                "staff accounts without a second factor",
                without.join(", "),
                "they must enrol at their next login (nothing else works until then); disable accounts nobody uses",
            )
        });
    }
    let last: std::collections::HashMap<String, i64> = store.last_logins().await?.into_iter().collect();
    let mut unused = Vec::new();
    for u in &staff {
        let since = match last.get(&u.id) {
            Some(t) => *t,
            None => store.user_by_id(&u.id).await?.map(|r| r.created_at).unwrap_or(now),
        };
        if now - since > 90 * DAY {
            unused.push(format!("{} ({} days)", u.username, (now - since) / DAY));
        }
    }
    out.push(if unused.is_empty() {
        Finding::pass(
            "unused-accounts",
            "no staff account unused for 90 days",
            format!("{} staff accounts", staff.len()),
        )
    } else {
        Finding::fail(
            "unused-accounts",
            Severity::Low,
            "staff accounts unused for months",
            unused.join(", "),
            format!("confidant user disable --dir {} --user NAME for each one nobody needs", dir.display()),
        )
    });
    // API tokens.
    let live: Vec<_> = store
        .api_tokens()
        .await?
        .into_iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now))
        .collect();
    let forever: Vec<String> = live.iter().filter(|t| t.expires_at.is_none()).map(|t| t.id.clone()).collect();
    out.push(if forever.is_empty() {
        Finding::pass("token-expiry", "every API token expires", format!("{} live tokens", live.len()))
    } else {
        Finding::fail(
            "token-expiry",
            Severity::Medium,
            "API tokens that never expire",
            forever.join(", "),
            format!("confidant token revoke --dir {} --id ID, and create them again with --expires-in", dir.display()),
        )
    });
    // Backups.
    out.push({
        let mut created = None;
        let mut verified = None;
        let filter = AuditFilter { action: Some("backup".into()), ..Default::default() };
        for s in store.audit_search(&filter, None, 1000).await? {
            let Some(e) = confidant_audit::Entry::parse(&s.row.entry) else { continue };
            match e.target.as_deref() {
                Some("backup-create") => created = created.max(Some(e.time)),
                Some("backup-verify") => verified = verified.max(Some(e.time)),
                _ => {}
            }
        }
        let fix = format!("confidant backup create --dir {} --out /mnt/offsite/confidant-$(date +%F).backup daily, then `confidant backup verify FILE --keys-from {}`", dir.display(), dir.display());
        match (created, verified) {
            (None, _) => Finding::fail("backups", Severity::High, "no backup was ever made", "no `backup create` in the audit log", fix),
            (Some(c), _) if now - c > 7 * DAY => Finding::fail("backups", Severity::Medium, "the last backup is old",
                format!("last made {} days ago", (now - c) / DAY), fix),
            (Some(_), None) => Finding::fail("backups", Severity::Medium, "backups were never verified", "no `backup verify` in the audit log", fix),
            (Some(c), Some(v)) => Finding::pass("backups", "backups are recent and verified",
                format!("made {} days ago, last verified {} days ago", (now - c) / DAY, (now - v) / DAY)),
        }
    });
    // Detection.
    let honey = records.honey_records().await?;
    let per_100 = config.detection.honey_records;
    let (_, patients) = records.store().search("Patient", &[], None, 1).await?;
    let real = (patients.max(0) as usize).saturating_sub(honey.len());
    // Planted at `per_100` of the registrations: five expected and none there is no chance (e^-5).
    let expected = real * per_100 as usize / 100;
    out.push(if per_100 == 0 {
        Finding::fail(
            "honey-records",
            Severity::High,
            "honey records are off: a thief reading everything goes unnoticed by them",
            "[detection] honey_records = 0",
            format!("set honey_records = 3 in [detection] of {}, and restart serve", Config::path(dir).display()),
        )
    } else if honey.is_empty() && expected >= 5 {
        Finding::fail(
            "honey-records",
            Severity::Medium,
            "no honey record among the patients registered: is serve's honey keeper running?",
            format!("0 planted among {real} patients ({per_100} per 100 expected)"),
            format!("confidant honey plant --dir {} --count 3", dir.display()),
        )
    } else if honey.is_empty() {
        Finding::pass(
            "honey-records",
            "honey records are on; serve plants them as patients are registered",
            format!("none yet among {real} patients ({per_100} per 100)"),
        )
    } else {
        Finding::pass("honey-records", "honey records are in place", format!("{} planted", honey.len()))
    });
    out.push(match check_alert_config(config) {
        Some(f) => f,
        None => {
            let mut stuck = Vec::new();
            for sink in config.alerts.sinks() {
                if let Some(a) = store.undelivered_alerts(sink, 1).await?.first()
                    && now - a.first_at > 3_600_000
                {
                    stuck.push(format!("{} since {}", if sink == Sink::Webhook { "webhook" } else { "e-mail" }, confidant_fhir::instant(a.first_at)));
                }
            }
            if stuck.is_empty() {
                Finding::pass("alert-sinks", "alerts are delivered", format!("{:?}", config.alerts.sinks()))
            } else {
                Finding::fail("alert-sinks", Severity::High, "alerts are not being delivered", stuck.join(", "),
                    "check the webhook endpoint or SMTP server (the server log says why); undelivered alerts are retried")
            }
        }
    });
    out.push(crate::training::coverage_finding(identity, dir).await?);
    out.push(check_phishing_drill(identity.last_drill_sent().await?, now, dir));
    Ok(())
}

/// `phishing-drill`: staff had a phishing drill within the last 12 months.
fn check_phishing_drill(last: Option<i64>, now: i64, dir: &Path) -> Finding {
    const YEAR: i64 = 365 * DAY;
    let fix = format!(
        "run a drill: the admin's \"Phishing drills\" tab, or `confidant phishing campaign --dir {} --templates password-reset --roles clinician,reception`",
        dir.display()
    );
    match last {
        Some(t) if now - t <= YEAR => Finding::pass(
            "phishing-drill",
            "staff had a phishing drill within the last 12 months",
            format!("the last drill mail went out on {}", confidant_fhir::instant(t).get(..10).unwrap_or("")),
        ),
        Some(t) => Finding::fail(
            "phishing-drill",
            Severity::Medium,
            "no phishing drill in the last 12 months",
            format!("the last drill mail went out on {}", confidant_fhir::instant(t).get(..10).unwrap_or("")),
            fix,
        ),
        None => Finding::fail(
            "phishing-drill",
            Severity::Medium,
            "staff never had a phishing drill",
            "no drill mail was ever sent",
            fix,
        ),
    }
}

/// `confidant doctor`: every check, the worst first, passes last.
pub async fn run(console: &Console, dir: &Path) -> Result<Vec<Finding>> {
    let mut findings = examine(console, dir).await?;
    findings.sort_by_key(|f| (f.severity.is_none(), f.severity));
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_db(url: &str) -> Config {
        let mut c: Config = toml::from_str(
            "instance_id = \"i\"\n[database]\nurl = \"sqlite://x.db\"\n[keys]\nprovider = \"key-file\"\nkey_file = \"/k/i.kek\"\ncheck_value = \"00\"\n",
        )
        .unwrap();
        c.database = Database::parse(url).unwrap();
        c
    }

    #[test]
    fn a_remote_database_needs_tls() {
        let sev = |url: &str| check_database_url(&config_with_db(url)).severity;
        assert_eq!(sev("sqlite://confidant.db"), None);
        assert_eq!(sev("postgres://postgres@127.0.0.1:5432/test"), None);
        assert_eq!(sev("postgres://u:p@localhost/db"), None);
        assert_eq!(sev("postgres://u@db.clinic.example/confidant?sslmode=verify-full"), None);
        assert_eq!(sev("postgres://u@db.clinic.example/confidant"), Some(Severity::High));
        assert_eq!(sev("postgresql://u@10.0.0.5:5432/confidant?sslmode=disable"), Some(Severity::High));
        assert_eq!(sev("postgres://u@[2001:db8::5]:5432/c?sslmode=prefer"), Some(Severity::High));
    }

    #[test]
    fn a_phishing_drill_a_year() {
        let now = 400 * DAY;
        let dir = Path::new("/d");
        assert_eq!(check_phishing_drill(None, now, dir).severity, Some(Severity::Medium));
        assert_eq!(check_phishing_drill(Some(now - 30 * DAY), now, dir).severity, None);
        assert_eq!(check_phishing_drill(Some(now - 366 * DAY), now, dir).severity, Some(Severity::Medium));
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8080"), "::1");
        assert_eq!(host_of("0.0.0.0:80"), "0.0.0.0");
        assert!(is_loopback_host("localhost") && is_loopback_host("::1") && is_loopback_host("127.0.0.2"));
        assert!(!is_loopback_host("0.0.0.0") && !is_loopback_host("db.clinic.example"));
    }
}
