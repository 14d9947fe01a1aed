//! `confidant backup create|verify|restore`: the app does it; this prints it.

use std::path::Path;

use anyhow::Result;
use confidant_app::Console;
use confidant_app::backup::{self, BackupKeys};

use crate::progress::Stderr;

/// `confidant backup create`.
pub async fn create(console: &Console, dir: &Path, out: &Path) -> Result<()> {
    let made = backup::create(console, dir, out, &Stderr).await?;
    println!("Backup written: {} ({}, {} audit entries).", made.out.display(), made.size, made.audit_entries);
    println!(
        "It opens only with the backup key ({}) and is checked with `confidant backup verify`.",
        made.backup_key.display()
    );
    Ok(())
}

/// `confidant backup verify`.
pub async fn verify(console: &Console, file: &Path, keys: &BackupKeys) -> Result<()> {
    let v = backup::verify(console, file, keys, &Stderr).await?;
    println!(
        "OK: {} is intact: signed by the instance's audit key, sealed with its backup key, database consistent.",
        file.display()
    );
    println!(
        "  instance {}, made {}, {} database bytes, at least {} audit entries.",
        v.instance_id, v.created, v.database_bytes, v.audit_entries_at_least
    );
    Ok(())
}

/// `confidant backup restore`.
pub async fn restore(file: &Path, keys: &BackupKeys, to: &Path, database_url: Option<&str>) -> Result<()> {
    let config = backup::restore(file, keys, to, database_url, &Stderr).await?;
    println!(
        "Restored into {} ({}): instance {}; its audit log verifies.",
        to.display(),
        if database_url.is_some() { "the database given" } else { "a new SQLite file" },
        config.instance_id
    );
    println!(
        "It uses the key file {} and the audit key beside it: they must be present here.",
        config.keys.key_file.display()
    );
    println!("Serve it: confidant serve --dir {}", to.display());
    Ok(())
}
