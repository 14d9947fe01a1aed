//! `confidant keys status|rotate|retire`: the app does it; this prints it.

use std::path::Path;

use anyhow::Result;
use confidant_app::Console;
use confidant_app::config::KeyProvider;
use confidant_app::keys;

use crate::progress::Stderr;

/// `confidant keys status`.
pub async fn status(console: &Console, dir: &Path) -> Result<()> {
    let s = keys::status(console, dir).await?;
    match &s.provider {
        KeyProvider::Pkcs11 { module, token } => {
            println!("Key-encryption key: PKCS#11 token '{token}' ({}), not extractable", module.display())
        }
        KeyProvider::Passphrase => {
            println!("Key-encryption key: key file {} sealed with a passphrase", s.key_file.display())
        }
        KeyProvider::File => println!("Key-encryption key: key file {} (mode 0600)", s.key_file.display()),
    }
    println!("  {:<8} {:<18} {:>10} {:>10}  notes", "version", "key check value", "age", "data keys");
    for v in &s.versions {
        let mut notes = Vec::new();
        if v.current {
            notes.push("current: new keys are wrapped with it");
        }
        if v.blind_index {
            notes.push("the blind-index key");
        }
        if v.retirable() {
            notes.push("unused: can be retired");
        }
        let age =
            v.created_at.map(|t| format!("{} days", (s.now - t).max(0) / 86_400_000)).unwrap_or_else(|| "-".to_owned());
        let cv = v.check_value.as_deref().unwrap_or("(in the token)");
        println!("  {:<8} {cv:<18} {age:>10} {:>10}  {}", v.version, v.data_keys, notes.join("; "));
    }
    if s.stale_data_keys > 0 || s.stale_blind_index {
        println!(
            "{} data keys still wrap under an older version: run `confidant keys rotate --dir {}` to finish.",
            s.stale_data_keys,
            dir.display()
        );
    }
    match &s.signing_key {
        Ok((place, pk)) => println!("Audit signing key: {place} (public key {})", hex::encode(pk)),
        Err(e) => println!("Audit signing key: {e}"),
    }
    Ok(())
}

/// `confidant keys rotate`.
pub async fn rotate(console: &Console, dir: &Path) -> Result<()> {
    let done = keys::rotate(console, dir, &Stderr).await?;
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

/// `confidant keys rotate --patient ID`.
pub async fn rotate_patient(console: &Console, dir: &Path, patient_id: &str) -> Result<()> {
    let done = keys::rotate_patient(console, dir, patient_id, &Stderr).await?;
    println!(
        "Patient/{patient_id}: {} record versions{} re-encrypted under a new data key; {} old data key{} destroyed.",
        done.versions,
        if done.break_glass > 0 { format!(" and {} break-glass reasons", done.break_glass) } else { String::new() },
        done.old_keys,
        if done.old_keys == 1 { "" } else { "s" }
    );
    println!(
        "Backups made before now still hold the old key (wrapped by the key-encryption key): see docs/security.md, Backups."
    );
    Ok(())
}

/// `confidant keys retire`.
pub async fn retire(console: &Console, dir: &Path, version: u32) -> Result<()> {
    let provider = keys::retire(console, dir, version).await?;
    println!(
        "Key version {version} retired: it is gone from the {}.",
        if matches!(provider, KeyProvider::Pkcs11 { .. }) { "token" } else { "key file" }
    );
    println!("Backups made while it was in use can no longer be opened with the current key — which is the point.");
    Ok(())
}
