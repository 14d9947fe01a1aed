//! The key-encryption key: loading it from wherever the configuration says
//! (through the vault's [`KeyProvider`] trait), its status, rotation to a new
//! version while the server runs, retirement of an old one; and rotating one
//! patient's data key.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use confidant_audit::Action;
use confidant_records::rotation;
use confidant_vault::pkcs11::Pkcs11Kek;
use confidant_vault::{KeyFile, KeyProvider, Vault, WrappedKey};

use crate::config::{self, Config};
use crate::console::Console;
use crate::instance::open_store;
use crate::progress::{Counter, Progress, Unit};
use crate::secrets::{passphrase, pkcs11_pin};

/// Data keys re-wrapped per query.
const BATCH: i64 = 200;

/// Load the key named by the config, checking that it is this instance's key.
/// Touches nothing on disk.
pub fn load_key(config: &Config) -> Result<Arc<dyn KeyProvider>> {
    let sealed = match &config.keys.provider {
        config::KeyProvider::File => false,
        config::KeyProvider::Passphrase => true,
        config::KeyProvider::Pkcs11 { module, token } => return load_token(config, module, token),
    };
    let path = &config.keys.key_file;
    if !path.exists() {
        bail!(
            "the key file {} is missing. Restore it from your key backup (it is kept apart from the data); \
             nothing was changed",
            path.display()
        );
    }
    let passphrase = if sealed { Some(passphrase()?) } else { None };
    let key = KeyFile::load_with(path, passphrase.as_ref().map(|p| p.as_str()))
        .with_context(|| "cannot use the key file; nothing was changed".to_string())?;
    if key.instance_id() != config.instance_id || key.check_value() != config.keys.check_value {
        bail!(
            "the key file {} is not the key of this instance (expected key check value {}, found {}); \
             nothing was changed",
            path.display(),
            config.keys.check_value,
            key.check_value()
        );
    }
    Ok(Arc::new(key))
}

fn load_token(config: &Config, module: &Path, token: &str) -> Result<Arc<dyn KeyProvider>> {
    let pin = pkcs11_pin()?;
    let kek = Pkcs11Kek::open(module, token, &pin, &config.instance_id)
        .context("cannot use the PKCS#11 token; nothing was changed")?;
    let check = kek.check_value().context("the token holds no key of this instance; nothing was changed")?;
    if check != config.keys.check_value {
        bail!("the token's key is not the key of this instance (key check value {check}); nothing was changed");
    }
    Ok(Arc::new(kek))
}

fn current_of(key: &dyn KeyProvider) -> u32 {
    key.versions().last().map(|v| v.version).unwrap_or(1)
}

/// What `keys status` reports.
#[derive(Debug)]
pub struct KeyStatus {
    pub provider: config::KeyProvider,
    pub key_file: std::path::PathBuf,
    /// Oldest first: every version the provider holds (one account with the
    /// admin's page: [`confidant_records::kek_versions`]).
    pub versions: Vec<confidant_records::KekVersion>,
    /// Data keys still wrapped under an older version than the current one.
    pub stale_data_keys: i64,
    /// The blind-index key is wrapped under an older version.
    pub stale_blind_index: bool,
    /// The audit signing key: where it is, and its public key — or why it cannot be read.
    pub signing_key: std::result::Result<(String, [u8; 32]), String>,
    pub now: i64,
}

/// `confidant keys status`.
pub async fn status(console: &Console, dir: &Path) -> Result<KeyStatus> {
    let (config, store) = open_store(dir).await?;
    let key = load_key(&config)?;
    let versions = confidant_records::kek_versions(&store, key.as_ref()).await?;
    store.close().await;
    let current = current_of(key.as_ref());
    let blind_version = versions.iter().find(|v| v.blind_index).map(|v| v.version);
    let stale_data_keys: i64 = versions.iter().filter(|v| v.version < current).map(|v| v.data_keys).sum();
    let signing_key = crate::audit::instance_public_key(&config)
        .map(|pk| (crate::audit::describe_signing_key(&config), pk))
        .map_err(|e| format!("{e:#}"));
    Ok(KeyStatus {
        provider: config.keys.provider.clone(),
        key_file: config.keys.key_file.clone(),
        versions,
        stale_data_keys,
        stale_blind_index: blind_version.is_some_and(|b| b < current),
        signing_key,
        now: console.now(),
    })
}

/// `confidant keys rotate`: add a KEK version (unless a rotation is unfinished)
/// and re-wrap every key under it. Safe while `serve` runs; safe to rerun, and
/// to interrupt at any point: each batch commits on its own, and a rerun resumes.
pub async fn rotate(console: &Console, dir: &Path, progress: &dyn Progress) -> Result<rotation::Rewrapped> {
    let (config, store) = open_store(dir).await?;
    let key = load_key(&config)?;
    let current = current_of(key.as_ref());
    let usage = store.kek_usage().await?;
    let blind = store.setting("blind_index_key").await?.map(WrappedKey);
    let unfinished = usage.iter().any(|(v, n)| *v < i64::from(current) && *n > 0)
        || blind.as_ref().and_then(|w| w.kek_version().ok()).is_some_and(|b| b < current);
    let target = if unfinished {
        progress.note(&format!("Resuming the rotation to key version {current}."));
        current
    } else {
        // Write-ahead: the key provider lives outside the database, so no transaction can hold
        // both; the entry goes first, and a crash never leaves a version that nothing records.
        let e = console.entry(Action::KeyOperation, &format!("kek-add-version/v{}", current + 1));
        console
            .record(&store, e)
            .await
            .context("cannot record the new key version in the audit log; nothing was changed")?;
        let v = key.add_version().context("cannot add a key version")?;
        // When it was made, for `keys status` (a second record of the same version is harmless).
        let _ = store.insert_setting(&confidant_records::kek_made_setting(v), b"", console.now()).await;
        progress.note(&format!("Added key version {v} ({}).", config.keys.provider.name()));
        v
    };
    let e = console.entry(Action::KeyOperation, &format!("kek-rotation-start/v{target}"));
    console.record(&store, e).await.context("cannot record the rotation in the audit log; nothing was re-wrapped")?;

    let vault = Vault::new(key);
    let mut bar: Option<Box<dyn Counter>> = None;
    let result = rotation::rewrap_to_current(&store, &vault, BATCH, |done, total| {
        bar.get_or_insert_with(|| progress.start("re-wrapping", total, Unit::Items("data keys"))).set(done);
    })
    .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let done = match result {
        Ok(r) => r,
        Err(e) => {
            store.close().await;
            return Err(
                anyhow::Error::new(e).context("the rotation stopped; run `confidant keys rotate` again to resume")
            );
        }
    };
    let e = console.entry(Action::KeyOperation, &format!("kek-rotation-done/v{}", done.kek_version));
    console.record(&store, e).await.context("cannot record the end of the rotation in the audit log")?;
    store.close().await;
    Ok(done)
}

/// `confidant keys rotate --patient ID`: a new data key for one patient, their
/// records re-encrypted under it, the old key destroyed.
pub async fn rotate_patient(
    console: &Console,
    dir: &Path,
    patient_id: &str,
    progress: &dyn Progress,
) -> Result<confidant_store::Rekeyed> {
    let records = crate::instance::Instance::open(console, dir).await?.records;
    let e = {
        let mut e = console.entry(Action::KeyOperation, &format!("patient-key-rotation/{patient_id}"));
        e.patient = Some(patient_id.to_owned());
        e
    };
    progress.note(&format!("Re-encrypting the records of Patient/{patient_id} under a new data key…"));
    let result = rotation::rotate_patient_key(&records, patient_id, &[e]).await;
    let store = records.store().clone();
    let done = match result {
        Ok(d) => d,
        Err(confidant_records::RecordsError::NotFound(_)) => {
            store.close().await;
            bail!("there is no Patient/{patient_id}; nothing was changed")
        }
        Err(e) => {
            store.close().await;
            return Err(anyhow::Error::new(e).context("the rotation failed; nothing was changed"));
        }
    };
    // Old pages are overwritten (secure_delete); the WAL is cut so no copy of the old key lingers there.
    let wal = store.checkpoint_wal().await;
    store.close().await;
    wal.context("rotated, but the WAL could not be truncated")?;
    Ok(done)
}

/// `confidant keys retire`: remove a key version nothing is wrapped under any
/// more. Returns the provider (the CLI says where the version is gone from).
pub async fn retire(console: &Console, dir: &Path, version: u32) -> Result<config::KeyProvider> {
    let (mut config, store) = open_store(dir).await?;
    let key = load_key(&config)?;
    let usage = store.kek_usage().await?;
    let blind = store.setting("blind_index_key").await?.map(WrappedKey);
    let versions = key.versions();
    if versions.last().map(|v| v.version) == Some(version) {
        store.close().await;
        bail!("key version {version} is the current version: rotate first; nothing was changed");
    }
    let in_use = usage.iter().find(|(v, _)| *v == i64::from(version)).map(|(_, n)| *n).unwrap_or(0);
    let blind_uses = blind.as_ref().and_then(|w| w.kek_version().ok()) == Some(version);
    if in_use > 0 || blind_uses {
        store.close().await;
        bail!(
            "key version {version} still wraps {in_use} data keys{}; run `confidant keys rotate` first; nothing was changed",
            if blind_uses { " and the blind-index key" } else { "" }
        );
    }
    if !versions.iter().any(|v| v.version == version) {
        store.close().await;
        bail!("there is no key version {version}; see `confidant keys status`");
    }
    let e = console.entry(Action::KeyOperation, &format!("kek-retire/v{version}"));
    console.record(&store, e).await.context("cannot record the retirement in the audit log")?;
    store.close().await;
    let check = key.retire_version(version).context("cannot retire the key version; nothing was changed")?;
    if check != config.keys.check_value {
        config.keys.check_value = check.clone();
        // Written back from the file alone: the environment's overrides stay out of it.
        let mut on_disk = Config::load_file(dir)?;
        on_disk.keys.check_value = check;
        on_disk.save_new(dir).context("the version is retired, but confidant.toml could not be updated")?;
    }
    Ok(config.keys.provider)
}
