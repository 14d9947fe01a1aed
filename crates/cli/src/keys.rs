//! `confidant keys status|rotate`: the key-encryption key's versions and
//! what each wraps; rotation to a new version while the server runs.

use std::path::Path;

use anyhow::{Context, Result};
use confidant_audit::{Action, Auditor};
use confidant_records::rotation;
use confidant_vault::{Vault, WrappedKey};

use crate::audit::console_entry;
use crate::instance::{load_key, now_millis, open_store};
use crate::progress::{Progress, Unit};

/// Data keys re-wrapped per query.
const BATCH: i64 = 200;

/// `confidant keys status`.
pub async fn status(dir: &Path) -> Result<()> {
    let (config, store) = open_store(dir).await?;
    let key = load_key(&config)?;
    let usage = store.kek_usage().await?;
    let blind = store.setting("blind_index_key").await?.map(WrappedKey);
    let mut made = std::collections::BTreeMap::new();
    for (v, _) in key.versions() {
        if let Some(t) = confidant_records::kek_made_at(&store, v).await? {
            made.insert(v, t);
        }
    }
    store.close().await;
    let blind_version = blind.as_ref().and_then(|w| w.kek_version().ok());
    match config.keys.provider.as_str() {
        "pkcs11" => println!(
            "Key-encryption key: PKCS#11 token '{}' ({}), not extractable",
            config.keys.pkcs11_token.as_deref().unwrap_or("?"),
            config.keys.pkcs11_module.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
        ),
        "passphrase" => {
            println!("Key-encryption key: key file {} sealed with a passphrase", config.keys.key_file.display())
        }
        _ => println!("Key-encryption key: key file {} (mode 0600)", config.keys.key_file.display()),
    }
    println!("  {:<8} {:<18} {:>10} {:>10}  notes", "version", "key check value", "age", "data keys");
    let current = key.versions().last().map(|(v, _)| *v).unwrap_or(1);
    for (v, cv) in key.versions() {
        let n = usage.iter().find(|(kv, _)| *kv == i64::from(v)).map(|(_, n)| *n).unwrap_or(0);
        let mut notes = Vec::new();
        if v == current {
            notes.push("current: new keys are wrapped with it".to_owned());
        }
        if blind_version == Some(v) {
            notes.push("the blind-index key".to_owned());
        }
        if v != current && n == 0 && blind_version != Some(v) {
            notes.push("unused: can be retired".to_owned());
        }
        let age = made
            .get(&v)
            .map(|t| format!("{} days", (now_millis() - t).max(0) / 86_400_000))
            .unwrap_or_else(|| "-".to_owned());
        println!("  {v:<8} {cv:<18} {age:>10} {n:>10}  {}", notes.join("; "));
    }
    let stale: i64 = usage.iter().filter(|(v, _)| *v < i64::from(current)).map(|(_, n)| n).sum();
    if stale > 0 || blind_version.is_some_and(|b| b < current) {
        println!(
            "{stale} data keys still wrap under an older version: run `confidant keys rotate --dir {}` to finish.",
            dir.display()
        );
    }
    match crate::audit::instance_public_key(&config) {
        Ok(pk) => println!(
            "Audit signing key: {} (public key {})",
            crate::audit::describe_signing_key(&config),
            hex::encode(pk)
        ),
        Err(e) => println!("Audit signing key: {e:#}"),
    }
    Ok(())
}

/// `confidant keys rotate`: add a KEK version (unless a rotation is unfinished)
/// and re-wrap every key under it. Safe while `serve` runs; safe to rerun.
pub async fn rotate(dir: &Path) -> Result<()> {
    let (config, store) = open_store(dir).await?;
    let key = load_key(&config)?;
    let current = key.versions().last().map(|(v, _)| *v).unwrap_or(1);
    let usage = store.kek_usage().await?;
    let blind = store.setting("blind_index_key").await?.map(WrappedKey);
    let unfinished = usage.iter().any(|(v, n)| *v < i64::from(current) && *n > 0)
        || blind.as_ref().and_then(|w| w.kek_version().ok()).is_some_and(|b| b < current);
    let auditor = Auditor::start(store.clone());
    let target = if unfinished {
        eprintln!("Resuming the rotation to key version {current}.");
        current
    } else {
        let v = key.add_version(&config).context("cannot add a key version")?;
        // When it was made, for `keys status` (a second record of the same version is harmless).
        let _ = store.insert_setting(&confidant_records::kek_made_setting(v), b"", now_millis()).await;
        eprintln!("Added key version {v} ({}).", config.keys.provider);
        v
    };
    let e = console_entry(Action::KeyOperation, &format!("kek-rotation-start/v{target}"));
    auditor.append(&[e]).await.context("cannot record the rotation in the audit log; nothing was re-wrapped")?;

    let vault = Vault::new(key.provider());
    // Test hook: stop (as a crash would) after this many keys, waiting to be killed.
    let pause_after: Option<u64> =
        std::env::var("CONFIDANT_TEST_PAUSE_ROTATION_AFTER").ok().and_then(|v| v.parse().ok());
    let mut bar: Option<Progress> = None;
    let result = rotation::rewrap_to_current(&store, &vault, BATCH, |done, total| {
        bar.get_or_insert_with(|| Progress::new("re-wrapping", total, Unit::Items("data keys"))).set(done);
        if pause_after == Some(done) {
            eprintln!("\npaused (test hook)");
            loop {
                std::thread::park();
            }
        }
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
    let e = console_entry(Action::KeyOperation, &format!("kek-rotation-done/v{}", done.kek_version));
    auditor.append(&[e]).await.context("cannot record the end of the rotation in the audit log")?;
    store.close().await;
    println!(
        "Rotation to key version {} complete: {} data keys re-wrapped{}.",
        done.kek_version,
        done.data_keys,
        if done.blind_index_key { " and the blind-index key" } else { "" }
    );
    println!(
        "Back up the key file now: it holds the new version. `confidant keys status` shows what each version wraps."
    );
    Ok(())
}

/// `confidant keys rotate --patient ID`: a new data key for one patient, their
/// records re-encrypted under it, the old key destroyed.
pub async fn rotate_patient(dir: &Path, patient_id: &str) -> Result<()> {
    let (_config, records) = crate::instance::open(dir).await?;
    let mut e = console_entry(Action::KeyOperation, &format!("patient-key-rotation/{patient_id}"));
    e.patient = Some(patient_id.to_owned());
    eprintln!("Re-encrypting the records of Patient/{patient_id} under a new data key…");
    let result = rotation::rotate_patient_key(&records, patient_id, &[e]).await;
    let store = records.store().clone();
    let done = match result {
        Ok(d) => d,
        Err(confidant_records::RecordsError::NotFound(_)) => {
            store.close().await;
            anyhow::bail!("there is no Patient/{patient_id}; nothing was changed")
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
    println!(
        "Patient/{patient_id}: {} record versions{} re-encrypted under a new data key; {} old data key{} destroyed.",
        done.versions,
        if done.break_glass > 0 { format!(" and {} break-glass reasons", done.break_glass) } else { String::new() },
        done.old_keys,
        if done.old_keys == 1 { "" } else { "s" }
    );
    println!(
        "Backups made before now still hold the old key (wrapped by the key-encryption key): see README, Backups."
    );
    Ok(())
}

/// `confidant keys retire`: remove a key version nothing is wrapped under any more.
pub async fn retire(dir: &Path, version: u32) -> Result<()> {
    let (mut config, store) = open_store(dir).await?;
    let key = load_key(&config)?;
    let usage = store.kek_usage().await?;
    let blind = store.setting("blind_index_key").await?.map(WrappedKey);
    if key.versions().last().map(|(v, _)| *v) == Some(version) {
        store.close().await;
        anyhow::bail!("key version {version} is the current version: rotate first; nothing was changed");
    }
    let in_use = usage.iter().find(|(v, _)| *v == i64::from(version)).map(|(_, n)| *n).unwrap_or(0);
    let blind_uses = blind.as_ref().and_then(|w| w.kek_version().ok()) == Some(version);
    if in_use > 0 || blind_uses {
        store.close().await;
        anyhow::bail!(
            "key version {version} still wraps {in_use} data keys{}; run `confidant keys rotate` first; nothing was changed",
            if blind_uses { " and the blind-index key" } else { "" }
        );
    }
    if !key.versions().iter().any(|(v, _)| *v == version) {
        store.close().await;
        anyhow::bail!("there is no key version {version}; see `confidant keys status`");
    }
    let e = console_entry(Action::KeyOperation, &format!("kek-retire/v{version}"));
    Auditor::start(store.clone()).append(&[e]).await.context("cannot record the retirement in the audit log")?;
    store.close().await;
    let check = key.retire(&config, version).context("cannot retire the key version; nothing was changed")?;
    if check != config.keys.check_value {
        config.keys.check_value = check;
        config.save_new(dir).context("the version is retired, but confidant.toml could not be updated")?;
    }
    println!(
        "Key version {version} retired: it is gone from the {}.",
        if config.keys.provider == "pkcs11" { "token" } else { "key file" }
    );
    println!("Backups made while it was in use can no longer be opened with the current key — which is the point.");
    Ok(())
}
