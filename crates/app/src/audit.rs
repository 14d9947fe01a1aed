//! The audit log from the console: the signing key, the serving node's
//! checkpointer and witness (and its schedule), verification, proofs, export.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use confidant_audit::log::{self as audit_log, AuditError, Checkpointer, Witness};
use confidant_audit::{Action, Auditor};
use confidant_detect::{Detector, Rule};
use confidant_store::Store;
use confidant_vault::pkcs11::Pkcs11Signer;
use confidant_vault::signing::{Signer, SigningKey};
use tokio::sync::Mutex;

use crate::config::{Config, SigningKeyProvider};
use crate::console::Console;
use crate::instance::open_store;
use crate::progress::{Progress, Unit};

/// Refuse a public key other than the one pinned in confidant.toml at `init`.
fn check_pinned(config: &Config, public: &[u8; 32]) -> Result<()> {
    if let Some(pinned) = &config.audit.public_key
        && !pinned.eq_ignore_ascii_case(&hex::encode(public))
    {
        bail!(
            "the audit signing key ({}) is not the one this instance was created with: confidant.toml pins \
             public key {pinned}, the key found is {}. Someone replaced it. Treat this as a security incident; \
             restore the key from your key backup; nothing was changed",
            describe_signing_key(config),
            hex::encode(public)
        );
    }
    Ok(())
}

/// Load the audit signing key named by the config; it must be this instance's.
pub fn load_signing_key(config: &Config) -> Result<Box<dyn Signer>> {
    let key = load_signing_key_unpinned(config)?;
    check_pinned(config, &key.public_key())?;
    Ok(key)
}

fn load_signing_key_unpinned(config: &Config) -> Result<Box<dyn Signer>> {
    match config.signing_provider() {
        SigningKeyProvider::Pkcs11 => {
            let (module, token) = token_of(config)?;
            let pin = crate::secrets::pkcs11_pin()?;
            let signer = Pkcs11Signer::open(module, token, &pin, &config.instance_id)
                .context("cannot use the audit signing key in the token; nothing was changed")?;
            Ok(Box::new(signer))
        }
        SigningKeyProvider::File | SigningKeyProvider::Passphrase => {
            let path = signing_key_file(config)?;
            let passphrase =
                if SigningKey::file_is_sealed(&path)? { Some(crate::secrets::passphrase()?) } else { None };
            let (instance, key) = SigningKey::load_file_with(&path, passphrase.as_ref().map(|p| p.as_str()))
                .context("cannot use the audit signing key; nothing was changed")?;
            if instance != config.instance_id {
                bail!("the audit signing key {} belongs to another instance; nothing was changed", path.display());
            }
            Ok(Box::new(key))
        }
    }
}

/// The token that holds the keys, as the config names it.
fn token_of(config: &Config) -> Result<(&Path, &str)> {
    match config.token() {
        Some(t) => Ok(t),
        None => {
            bail!("the audit signing key is in a PKCS#11 token, but keys.pkcs11_module or keys.pkcs11_token is not set")
        }
    }
}

/// The audit signing key file, which must exist.
fn signing_key_file(config: &Config) -> Result<std::path::PathBuf> {
    let path = config.signing_key_path();
    if !path.exists() {
        bail!(
            "the audit signing key {} is missing. Restore it from your key backup, or set audit.signing_key_file \
             in confidant.toml; nothing was changed",
            path.display()
        );
    }
    Ok(path)
}

/// The instance's audit public key, read without any passphrase (a sealed key
/// file keeps it in the clear; a token shows it after the PIN).
pub fn instance_public_key(config: &Config) -> Result<[u8; 32]> {
    if config.signing_provider() == SigningKeyProvider::Pkcs11 {
        return Ok(load_signing_key(config)?.public_key());
    }
    let path = signing_key_file(config)?;
    let (instance, pk) = SigningKey::public_key_of_file(&path).context("cannot read the audit signing key")?;
    if instance != config.instance_id {
        bail!("the audit signing key {} belongs to another instance", path.display());
    }
    check_pinned(config, &pk)?;
    Ok(pk)
}

/// Where the audit signing key is, in words.
pub fn describe_signing_key(config: &Config) -> String {
    match config.signing_provider() {
        SigningKeyProvider::Pkcs11 => {
            format!("in the PKCS#11 token '{}' (not extractable)", config.token().map(|(_, t)| t).unwrap_or("?"))
        }
        SigningKeyProvider::Passphrase => {
            format!("{} (sealed with the passphrase)", config.signing_key_path().display())
        }
        SigningKeyProvider::File => format!("{} (mode 0600)", config.signing_key_path().display()),
    }
}

/// The public key that checkpoints must verify against: `--public-key`, else
/// the signing key's. Never the database's word.
fn public_key(config: &Config, given: Option<&str>) -> Result<[u8; 32]> {
    match given {
        Some(hexkey) => hex::decode(hexkey.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("--public-key must be 64 hexadecimal characters (from `confidant init`)"),
        None => instance_public_key(config)
            .context("without --public-key, the audit signing key is needed to know the public key"),
    }
}

/// The node's checkpointer, shared with the HTTP API (proofs).
pub type SharedCheckpointer = Arc<Mutex<Checkpointer>>;

/// Open the checkpointer of a serving node: load and verify the log against
/// the witness. A log that fails is an alarm, not a reason to stop serving:
/// the failure is logged and entered into the log itself.
pub async fn start_checkpointer(
    console: &Console,
    config: &Config,
    dir: &Path,
    store: Store,
    auditor: &Auditor,
    detector: &Detector,
) -> Result<SharedCheckpointer> {
    let key = load_signing_key(config)?;
    let witness = Witness::new(config.witness_path(dir));
    let (checkpointer, problem) =
        Checkpointer::open(store, key, &config.instance_id, witness).await.context("cannot open the audit log")?;
    if let Some(p) = problem {
        let summary = format!("the audit log does not match its signed checkpoints: {p}; run `confidant audit verify`");
        detector.raise_event(Rule::AuditTamper, "audit-log", summary, console.now()).await;
    }
    auditor.set_checkpoint_every(config.audit.checkpoint_every_entries);
    // Vouch at once for what is already there (e.g. entries made from the command line).
    let mut checkpointer = checkpointer;
    checkpointer.checkpoint(console.now(), Some(auditor)).await.context("cannot sign the first audit checkpoint")?;
    Ok(Arc::new(Mutex::new(checkpointer)))
}

/// The optional second witness: each new checkpoint line POSTed to a URL.
/// A failed delivery is logged, not queued: the next checkpoint covers every
/// entry the lost one did, and it is sent in its turn.
pub struct Webhook {
    url: String,
    client: reqwest::Client,
}

impl Webhook {
    pub fn new(url: &str) -> Result<Webhook> {
        let parsed = reqwest::Url::parse(url).with_context(|| "audit.witness_webhook is not a URL")?;
        if !matches!(parsed.scheme(), "https" | "http") {
            bail!("audit.witness_webhook must be an https:// (or http://) URL");
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot set up the webhook client")?;
        Ok(Webhook { url: url.to_owned(), client })
    }

    /// POST one checkpoint line (text/plain).
    pub async fn deliver(&self, line: &str) {
        let sent = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(format!("{line}\n"))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => tracing::debug!("audit checkpoint delivered to the webhook"),
            Ok(r) => tracing::error!(
                status = r.status().as_u16(),
                "audit witness webhook refused a checkpoint; the next one will be sent"
            ),
            Err(e) => {
                tracing::error!(error = %e, "audit witness webhook unreachable; the next checkpoint will be sent")
            }
        }
    }
}

/// Sign checkpoints every N entries or T seconds until `stop` fires; then a last one.
pub async fn run_checkpoints(
    console: Console,
    checkpointer: SharedCheckpointer,
    auditor: Arc<Auditor>,
    detector: Arc<Detector>,
    interval: Duration,
    webhook: Option<Webhook>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = auditor.checkpoint_due() => false,
            _ = stop.changed() => true,
        };
        let signed = checkpointer.lock().await.checkpoint(console.now(), Some(&auditor)).await;
        match (signed, &webhook) {
            (Ok(Some(s)), Some(w)) => w.deliver(&s.to_line()).await,
            (Ok(_), _) => {}
            // The log was rewritten behind this node's back: nothing more is signed
            // (the checkpointer refuses until restarted) and the alert goes out.
            (Err(AuditError::Tampered(p)), _) => {
                let summary = format!(
                    "the audit log was altered in the database: {p}. No checkpoint is signed any more; \
                     run `confidant audit verify` and treat this as a security incident"
                );
                detector.raise_event(Rule::AuditTamper, "audit-log", summary, console.now()).await;
            }
            (Err(e), _) => tracing::error!(error = %e, "audit checkpoint failed; will retry"),
        }
        if stopping {
            return;
        }
    }
}

/// What `audit verify` found, when the log is intact.
#[derive(Debug)]
pub struct Verified {
    pub witness_path: std::path::PathBuf,
    /// Checkpoints read from the witness file (0 with entries in the log: the
    /// log is consistent, but nothing vouches for it — the CLI fails then).
    pub from_witness: usize,
    pub entries: u64,
    pub checkpoints: usize,
    /// The size of the tree the latest checkpoint signed.
    pub last_checkpoint: u64,
    pub root: [u8; 32],
    pub public_key: [u8; 32],
    /// The public key was given (`--public-key`), not read from the signing key.
    pub public_key_given: bool,
    /// Where the signing key is, in words.
    pub signing_key: String,
    pub seconds: f64,
    pub checkpoint_every_entries: u64,
    pub checkpoint_interval_seconds: u64,
}

/// `confidant audit verify`: the whole log against the signed checkpoints.
pub async fn verify(
    dir: &Path,
    witness: Option<&Path>,
    public_key_hex: Option<&str>,
    progress: &dyn Progress,
) -> Result<Verified> {
    // The key first: a swapped or missing key stops here, before the database is opened.
    let pk = public_key(&Config::load(dir)?, public_key_hex)?;
    let (config, store) = open_store(dir).await?;
    let witness_path = witness.map(Path::to_path_buf).unwrap_or_else(|| config.witness_path(dir));
    let mut checkpoints = Witness::new(&witness_path).read()?;
    let from_witness = checkpoints.len();
    // The database keeps signed copies too. They are checked like the witness's and
    // can only add constraints: a witness cut short is still held to them.
    for line in store.audit_checkpoint_lines().await? {
        let copy = confidant_audit::checkpoint::SignedCheckpoint::parse(&line)
            .filter(|c| c.checkpoint.origin == config.instance_id && c.verify(&pk));
        match copy {
            Some(c) => checkpoints.push(c),
            None => {
                store.close().await;
                bail!(
                    "AUDIT LOG VERIFICATION FAILED: a checkpoint copy in the database (table audit_checkpoints) is \
                     not signed by this instance's audit key: the database was tampered with. Treat this as a \
                     security incident."
                );
            }
        }
    }
    let total = store.audit_size().await?;
    progress.note(&format!(
        "Verifying {total} audit entries against {from_witness} signed checkpoints in {} and {} copies in the database",
        witness_path.display(),
        checkpoints.len() - from_witness
    ));
    let started = std::time::Instant::now();
    let mut bar = progress.start("verifying", total.max(0) as u64, Unit::Items("entries"));
    let result = audit_log::verify_store(&store, &checkpoints, &pk, &config.instance_id, |done| bar.set(done)).await;
    store.close().await;
    bar.finish();
    match result {
        Ok(r) => Ok(Verified {
            witness_path,
            from_witness,
            entries: r.entries,
            checkpoints: r.checkpoints,
            last_checkpoint: r.last_checkpoint,
            root: r.root,
            public_key: pk,
            public_key_given: public_key_hex.is_some(),
            signing_key: describe_signing_key(&config),
            seconds: started.elapsed().as_secs_f64(),
            checkpoint_every_entries: config.audit.checkpoint_every_entries,
            checkpoint_interval_seconds: config.audit.checkpoint_interval_seconds,
        }),
        Err(AuditError::Tampered(p)) => {
            bail!(
                "AUDIT LOG VERIFICATION FAILED: {p}. Treat this as a security incident: keep a copy of the database and the witness file as they are."
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// `confidant audit checkpoint`: sign a checkpoint now. Returns its line,
/// or `None` if the latest checkpoint already covers every entry.
pub async fn checkpoint(console: &Console, dir: &Path) -> Result<Option<String>> {
    // The key first: a wrong passphrase or PIN stops here, before the database is opened.
    let key = load_signing_key(&Config::load(dir)?)?;
    let (config, store) = open_store(dir).await?;
    let witness = Witness::new(config.witness_path(dir));
    let (mut c, problem) = Checkpointer::open(store.clone(), key, &config.instance_id, witness).await?;
    if let Some(p) = problem {
        store.close().await;
        bail!("{p}; no checkpoint was signed. Run `confidant audit verify` and treat this as a security incident.");
    }
    let signed = c.checkpoint(console.now(), None).await;
    store.close().await;
    Ok(signed?.map(|s| s.to_line()))
}

/// What `audit proof` proves.
#[derive(Debug)]
pub enum ProofRequest {
    Inclusion { seq: u64, size: Option<u64> },
    Consistency { from: u64, to: Option<u64> },
}

/// `confidant audit proof`: the proof, as pretty JSON.
pub async fn proof(dir: &Path, request: ProofRequest) -> Result<String> {
    let (config, store) = open_store(dir).await?;
    let leaves = audit_log::load_leaves(&store).await;
    store.close().await;
    let leaves = leaves?;
    let latest = Witness::new(config.witness_path(dir))
        .read()?
        .into_iter()
        .filter(|c| c.checkpoint.origin == config.instance_id)
        .map(|c| c.checkpoint.size)
        .max();
    let default_size = latest.unwrap_or(leaves.len() as u64);
    let json = match request {
        ProofRequest::Inclusion { seq, size } => {
            let size = size.unwrap_or(default_size);
            let p = audit_log::inclusion(&leaves, seq, size).with_context(|| {
                format!("no entry {seq} in a tree of {size} entries (the log holds {})", leaves.len())
            })?;
            serde_json::to_string_pretty(&p)?
        }
        ProofRequest::Consistency { from, to } => {
            let to = to.unwrap_or(default_size);
            let p = audit_log::consistency(&leaves, from, to)
                .with_context(|| format!("need 0 < --from ≤ --to ≤ {} entries (got {from} and {to})", leaves.len()))?;
            serde_json::to_string_pretty(&p)?
        }
    };
    Ok(json)
}

/// `confidant audit export`: every entry after `after`, as JSON lines, to
/// `out` (for a SIEM). The export is audited before anything is written.
/// Returns how many entries were written.
pub async fn export(console: &Console, dir: &Path, after: i64, out: &mut dyn Write) -> Result<u64> {
    let (_, store) = open_store(dir).await?;
    let e = console.entry(Action::AuditAccess, "export");
    console.record(&store, e).await.context("cannot record the export in the audit log; nothing was exported")?;
    let mut next = after.max(0);
    let mut count = 0u64;
    loop {
        let page = store.audit_entries(next, 5000).await?;
        let Some(last) = page.last() else { break };
        next = last.seq;
        for s in &page {
            let entry: serde_json::Value =
                serde_json::from_slice(&s.row.entry).unwrap_or_else(|_| serde_json::Value::String("(not JSON)".into()));
            let line = serde_json::json!({"seq": s.seq, "leaf_hash": hex::encode(&s.row.leaf_hash), "entry": entry});
            writeln!(out, "{line}")?;
            count += 1;
        }
    }
    out.flush()?;
    store.close().await;
    Ok(count)
}
