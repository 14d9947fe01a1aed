//! `confidant backup create|verify|restore`: an online snapshot of the
//! database, sealed whole with the backup key (AES-256-GCM, a key of its own,
//! kept apart from the data) and signed with the audit signing key (Ed25519).
//! The records inside stay sealed under their own data keys as well.
//!
//! File layout:
//! ```text
//! confidant-backup v1\n
//! <header: one line of JSON (instance, time, backup key check value, signing public key)>\n
//! <AES-256-GCM envelope of: manifest JSON \n database content>   (the header is its associated data)
//! <64-byte Ed25519 signature of everything before it>
//! ```
//!
//! The database content is what the manifest's `version` says:
//! - 1 (`"database": "sqlite"`): the SQLite file itself (`VACUUM INTO`);
//! - 2 (`"database": "postgres"`, `"content": "logical"`): every table of the
//!   PostgreSQL schema read in one `REPEATABLE READ` transaction, rows in
//!   primary-key order, values as stored (ciphertext stays ciphertext), in the
//!   byte form of [`confidant_store::Snapshot`]; the manifest lists each table's rows.
//!
//! Either restores into SQLite (a new folder) or into an EMPTY PostgreSQL
//! database or schema (`--database-url`): the schema is shared, so a logical
//! copy moves between them. A restore never drops anything, and verifies the
//! audit log of what it restored before it says it is done.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use confidant_audit::Action;
use confidant_vault::backup::{self, BackupKey};
use confidant_vault::signing;
use serde_json::{Value, json};

use crate::config::{Config, Database};
use crate::console::Console;
use crate::instance::open_store;
use crate::progress::{Progress, Unit, read_file, write_new_private};
use confidant_store::Snapshot;

const MAGIC: &[u8] = backup::FILE_MAGIC;
const SIG_LEN: usize = backup::SIGNATURE_LEN;

/// Where an instance's backup key lives: beside its key file.
pub fn backup_key_path(config: &Config) -> PathBuf {
    config.keys.key_file.with_extension("backup-key")
}

fn mb(n: usize) -> String {
    format!("{:.1} MB", n as f64 / 1_000_000.0)
}

/// What `backup create` wrote.
#[derive(Debug)]
pub struct Created {
    pub out: PathBuf,
    /// The file's size, in words ("1.2 MB").
    pub size: String,
    pub audit_entries: i64,
    pub backup_key: PathBuf,
}

/// `backup create`: snapshot, seal, sign, write (never over an existing file).
pub async fn create(console: &Console, dir: &Path, out: &Path, progress: &dyn Progress) -> Result<Created> {
    let config = Config::load(dir)?;
    create_with(console, dir, out, &backup_key_path(&config), progress).await
}

/// [`create`] under the backup key at `key_path` (the drill's private copy has one of its own).
pub async fn create_with(
    console: &Console,
    dir: &Path,
    out: &Path,
    key_path: &Path,
    progress: &dyn Progress,
) -> Result<Created> {
    if out.exists() {
        bail!("{} exists; a backup never overwrites a file. Choose another --out", out.display());
    }
    let config = Config::load(dir)?;
    // The keys before the database: a wrong passphrase or PIN changes nothing.
    let signer = crate::audit::load_signing_key(&config)?;
    let (config, store) = open_store(dir).await?;
    let backup_key = if key_path.exists() {
        BackupKey::load_file(key_path)?
    } else {
        let k = BackupKey::generate(&config.instance_id)?;
        k.create_file(key_path)?;
        progress.note(&format!(
            "Created the backup key {} (mode 0600). Back it up apart from the backups.",
            key_path.display()
        ));
        k
    };
    // The backup is an audited event, recorded before the snapshot so that the backup holds it.
    let e = console.entry(Action::Backup, "backup-create");
    console.record(&store, e).await.context("cannot record the backup in the audit log")?;

    let created = console.now();
    let (db, manifest) = if config.sqlite_path(dir).is_some() {
        let tmp = tempfile::Builder::new().prefix("confidant-backup-").tempdir()?;
        let snap = tmp.path().join("snapshot.db");
        progress.note("[1/3] taking a consistent snapshot of the database (the server may keep running)…");
        store.snapshot_sqlite(&snap).await?.context("snapshots need SQLite")?;
        let entries = store.audit_size().await?;
        store.close().await;
        let db = read_file(&snap, "reading the snapshot", progress)?;
        drop(tmp);
        let manifest = json!({
            "format": "confidant-backup-manifest", "version": 1,
            "instance_id": config.instance_id,
            "created": confidant_fhir::instant(created),
            "database": "sqlite",
            "database_bytes": db.len(),
            "database_sha256": hex::encode(confidant_vault::sha256(&db)),
            "audit_entries_at_least": entries,
            "config": std::fs::read_to_string(Config::path(dir))?,
        });
        (db, manifest)
    } else {
        progress.note(
            "[1/3] reading every table in one consistent snapshot (REPEATABLE READ; the server may keep running)…",
        );
        let snapshot = store.logical_snapshot().await;
        store.close().await;
        let snapshot = snapshot.context("cannot read a snapshot of the PostgreSQL database")?;
        let rows = table_rows(&snapshot);
        let entries = rows.get("audit_log").cloned().unwrap_or(Value::from(0));
        let db = zeroize::Zeroizing::new(snapshot.encode());
        let manifest = json!({
            "format": "confidant-backup-manifest", "version": 2,
            "instance_id": config.instance_id,
            "created": confidant_fhir::instant(created),
            "database": "postgres",
            "content": "logical",
            "schema_version": snapshot.schema_version,
            "tables": rows,
            "database_bytes": db.len(),
            "database_sha256": hex::encode(confidant_vault::sha256(&db)),
            "audit_entries_at_least": entries,
            "config": std::fs::read_to_string(Config::path(dir))?,
        });
        (db, manifest)
    };
    let entries = manifest["audit_entries_at_least"].as_i64().unwrap_or(0);
    progress.note(&format!("[2/3] sealing {} with the backup key and signing it…", mb(db.len())));
    let header = serde_json::to_vec(&json!({
        "format": "confidant-backup", "version": 1,
        "instance_id": config.instance_id,
        "created": confidant_fhir::instant(created),
        "backup_key_check": backup_key.check_value(),
        "signing_public_key": hex::encode(signer.public_key()),
    }))?;
    let mut payload = zeroize::Zeroizing::new(serde_json::to_vec(&manifest)?);
    payload.push(b'\n');
    payload.extend_from_slice(&db);
    let sealed = backup_key.seal(&header, &payload)?;
    // Only ciphertext from here on: the sealed payload, framed and signed.
    let mut sealed_file = Vec::with_capacity(MAGIC.len() + header.len() + 1 + sealed.len() + SIG_LEN);
    sealed_file.extend_from_slice(MAGIC);
    sealed_file.extend_from_slice(&header);
    sealed_file.push(b'\n');
    sealed_file.extend_from_slice(&sealed);
    let signature = signer.sign(&sealed_file).context("cannot sign the backup")?;
    sealed_file.extend_from_slice(&signature);
    let size = mb(sealed_file.len());
    progress.note(&format!("[3/3] writing {size} to {}…", out.display()));
    write_new_private(out, &sealed_file, "writing", progress)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(Created { out: out.to_path_buf(), size, audit_entries: entries, backup_key: key_path.to_path_buf() })
}

/// Rows per table of a snapshot, as the manifest lists them.
fn table_rows(snapshot: &Snapshot) -> serde_json::Map<String, Value> {
    snapshot.row_counts().into_iter().map(|(t, n)| (t, Value::from(n))).collect()
}

/// What a backup's database content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// The SQLite file (manifest version 1).
    SqliteFile,
    /// A logical snapshot of every table (manifest version 2, from PostgreSQL).
    Logical,
}

/// A backup file taken apart and checked.
struct Opened {
    manifest: Value,
    db: zeroize::Zeroizing<Vec<u8>>,
}

/// The keys to check and open a backup: given, or beside the instance's key file.
pub struct BackupKeys {
    pub backup_key: Option<PathBuf>,
    pub public_key: Option<String>,
    pub dir: Option<PathBuf>,
}

fn open_backup(file: &Path, keys: &BackupKeys, progress: &dyn Progress) -> Result<Opened> {
    let bytes = read_file(file, "reading", progress).with_context(|| format!("cannot read {}", file.display()))?;
    let not_backup = || anyhow::anyhow!("{} is not a Confidant backup (or is truncated)", file.display());
    let backup::FileParts { signed, signature, header: header_bytes, sealed } =
        backup::split_file(&bytes).ok_or_else(not_backup)?;
    let header: Value = serde_json::from_slice(header_bytes).map_err(|_| not_backup())?;
    let instance = header["instance_id"].as_str().ok_or_else(not_backup)?;
    let config = keys.dir.as_deref().map(Config::load).transpose()?;
    // The public key: given, or the instance's audit signing key — never the file's own word.
    let pk: [u8; 32] = match (&keys.public_key, &config) {
        (Some(h), _) => {
            hex::decode(h.trim()).ok().and_then(|b| b.try_into().ok()).context("--public-key must be 64 hex digits")?
        }
        (None, Some(c)) => crate::audit::instance_public_key(c)?,
        (None, None) => bail!("give --dir (the instance whose keys open it) or --public-key and --backup-key"),
    };
    progress.note("[1/3] checking the signature…");
    if !signing::verify(&pk, signed, signature) {
        bail!(
            "BACKUP VERIFICATION FAILED: the signature does not match: the file was altered or damaged, or was not \
             signed by this instance's audit key. Do not restore it."
        );
    }
    let key_path = match (&keys.backup_key, &config) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => backup_key_path(c),
        (None, None) => bail!("give --backup-key FILE"),
    };
    let backup_key = BackupKey::load_file(&key_path)?;
    if backup_key.instance_id() != instance || header["backup_key_check"] != backup_key.check_value() {
        bail!("{} is not the backup key this backup was made with", key_path.display());
    }
    progress.note(&format!("[2/3] decrypting {} …", mb(sealed.len())));
    let payload = backup_key
        .open(header_bytes, sealed)
        .map_err(|_| anyhow::anyhow!("BACKUP VERIFICATION FAILED: the sealed content does not open: it was altered"))?;
    let (manifest, db) = backup::split_payload(&payload).ok_or_else(not_backup)?;
    let manifest: Value = serde_json::from_slice(manifest).map_err(|_| not_backup())?;
    let db = zeroize::Zeroizing::new(db.to_vec());
    progress.note(&format!("[3/3] checking the database inside ({})…", mb(db.len())));
    if manifest["database_sha256"] != hex::encode(confidant_vault::sha256(&db)) || manifest["instance_id"] != instance {
        bail!("BACKUP VERIFICATION FAILED: the manifest does not match the database inside");
    }
    Ok(Opened { manifest, db })
}

impl Opened {
    fn content(&self) -> Result<Content> {
        match (self.manifest["version"].as_i64(), self.manifest["content"].as_str()) {
            (Some(1), None) => Ok(Content::SqliteFile),
            (Some(2), Some("logical")) => Ok(Content::Logical),
            _ => bail!(
                "this backup was made by a newer Confidant (manifest version {}): upgrade to restore it",
                self.manifest["version"]
            ),
        }
    }

    /// The logical snapshot inside, checked against the manifest's row counts.
    fn snapshot(&self) -> Result<Snapshot> {
        let snapshot =
            Snapshot::decode(&self.db).context("BACKUP VERIFICATION FAILED: the snapshot inside is malformed")?;
        if Value::Object(table_rows(&snapshot)) != self.manifest["tables"]
            || Some(snapshot.schema_version) != self.manifest["schema_version"].as_i64()
        {
            bail!("BACKUP VERIFICATION FAILED: the tables inside do not match the manifest");
        }
        Ok(snapshot)
    }
}

/// SQLite's own check of a database file.
async fn integrity_check(path: &Path) -> Result<()> {
    let store = confidant_store::Store::connect(&format!("sqlite://{}", path.display()), false).await?;
    let result = store.sqlite_integrity_check().await;
    store.close().await;
    match result? {
        s if s == "ok" => Ok(()),
        s => bail!("BACKUP VERIFICATION FAILED: the database inside is damaged: {s}"),
    }
}

/// What a backup file says about itself, once verified.
#[derive(Debug)]
pub struct Verified {
    pub instance_id: String,
    pub created: String,
    pub database_bytes: Value,
    pub audit_entries_at_least: Value,
}

/// `backup verify`: signature, seal and database; with the instance at hand
/// (`--keys-from`), the check is recorded (`confidant doctor` asks when it last passed).
pub async fn verify(console: &Console, file: &Path, keys: &BackupKeys, progress: &dyn Progress) -> Result<Verified> {
    let opened = open_backup(file, keys, progress)?;
    match opened.content()? {
        Content::SqliteFile => {
            let tmp = tempfile::Builder::new().prefix("confidant-verify-").tempdir()?;
            let path = tmp.path().join("check.db");
            std::fs::write(&path, &opened.db)?;
            integrity_check(&path).await?;
        }
        Content::Logical => {
            opened.snapshot()?;
        }
    }
    if let Some(dir) = &keys.dir
        && opened.manifest["instance_id"].as_str() == Config::load(dir).ok().map(|c| c.instance_id).as_deref()
    {
        let (_, store) = open_store(dir).await?;
        let e = console.entry(Action::Backup, "backup-verify");
        let recorded = console.record(&store, e).await;
        store.close().await;
        recorded.context("the backup is intact, but the check could not be recorded in the audit log")?;
    }
    Ok(Verified {
        instance_id: opened.manifest["instance_id"].as_str().unwrap_or("?").to_owned(),
        created: opened.manifest["created"].as_str().unwrap_or("?").to_owned(),
        database_bytes: opened.manifest["database_bytes"].clone(),
        audit_entries_at_least: opened.manifest["audit_entries_at_least"].clone(),
    })
}

/// `backup restore`: into a new directory, after full verification; the
/// database into the SQLite file there, or into the EMPTY database at
/// `database_url` (PostgreSQL, or a `sqlite://` path). Afterwards the restored
/// audit log is verified. Returns the restored instance's configuration.
pub async fn restore(
    file: &Path,
    keys: &BackupKeys,
    to: &Path,
    database_url: Option<&str>,
    progress: &dyn Progress,
) -> Result<Config> {
    if Config::path(to).exists() {
        bail!("{} already holds an instance; restore into a new directory", to.display());
    }
    let target = database_url.map(Database::parse).transpose()?.unwrap_or_else(Database::embedded);
    let opened = open_backup(file, keys, progress)?;
    let content = opened.content()?;
    let config_text = opened.manifest["config"].as_str().context("the backup holds no configuration")?;
    let mut config: Config = toml::from_str(config_text).context("the configuration in the backup is not valid")?;
    config.database = target.clone();
    let sqlite_target = config.sqlite_path(to);
    if let Some(path) = &sqlite_target
        && path.exists()
    {
        bail!("{} exists; a restore never overwrites a database. Choose another --dir", path.display());
    }
    std::fs::create_dir_all(to)?;
    match (content, &sqlite_target) {
        (Content::SqliteFile, Some(db_path)) => {
            write_new_private(db_path, &opened.db, "restoring the database", progress)
                .with_context(|| format!("cannot write {}", db_path.display()))?;
            integrity_check(db_path).await?;
        }
        _ => {
            let snapshot = match content {
                Content::Logical => opened.snapshot()?,
                Content::SqliteFile => {
                    // A SQLite backup into PostgreSQL: the file read table by table.
                    let tmp = tempfile::Builder::new().prefix("confidant-restore-").tempdir()?;
                    let path = tmp.path().join("backup.db");
                    write_new_private(&path, &opened.db, "unpacking the database", progress)?;
                    integrity_check(&path).await?;
                    let source =
                        confidant_store::Store::connect(&format!("sqlite://{}", path.display()), false).await?;
                    let snapshot = source.logical_snapshot().await;
                    source.close().await;
                    snapshot?
                }
            };
            drop(opened);
            let url = config.database_url(to)?;
            let store = confidant_store::Store::connect(&url, sqlite_target.is_some())
                .await
                .context("cannot connect to the target database")?;
            let total: usize = snapshot.tables.iter().map(|t| t.rows.len()).sum();
            progress.note(&format!(
                "loading {} tables ({total} rows) into {}…",
                snapshot.tables.len(),
                if sqlite_target.is_some() { "the new SQLite file" } else { "the empty PostgreSQL database" }
            ));
            let mut bar = std::sync::Mutex::new(progress.start("restoring", total as u64, Unit::Items("rows")));
            let done = std::sync::atomic::AtomicU64::new(0);
            let loaded = store
                .load_snapshot(&snapshot, &|_, n| {
                    let now = done.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed) + n as u64;
                    if let Ok(mut b) = bar.lock() {
                        b.set(now);
                    }
                })
                .await;
            store.close().await;
            if let Ok(b) = bar.get_mut() {
                b.set(total as u64);
            }
            if let Ok(b) = bar.into_inner() {
                b.finish();
            }
            loaded.context("the restore did not load (the target is left as it was, or holds only empty tables)")?;
            if let Some(db_path) = &sqlite_target {
                integrity_check(db_path).await?;
            }
        }
    }
    config.save_new(to)?;
    progress.note("checking the restored audit log against the signed checkpoints…");
    crate::audit::verify(to, None, None, progress)
        .await
        .context("the database was restored, but its audit log does not verify: do not serve it")?;
    Ok(config)
}
