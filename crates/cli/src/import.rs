//! `confidant import`: prints what the app's import did, would do, or refused.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use confidant_app::Console;
use confidant_app::import;

use crate::progress::Stderr;

pub async fn run(console: &Console, dir: &Path, files: &[PathBuf], as_user: &str, dry_run: bool) -> Result<()> {
    import::require_files(files)?;
    let r = import::import(console, dir, files, as_user, dry_run, &Stderr).await?;
    if !r.refused.is_empty() {
        eprintln!("Refused ({}); nothing was imported:", r.refused.len());
        for f in &r.refused {
            eprintln!("  {}, {}: {}", f.file, f.place, f.reason);
        }
        bail!("the import was refused; fix the lines above and run it again");
    }
    let verb = if r.dry_run { "Would create" } else { "Created" };
    let list: Vec<String> = r.created.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!("{verb}: {}.", if list.is_empty() { "nothing".to_owned() } else { list.join(", ") });
    if r.existing > 0 {
        println!("Already there (matched by identifier, not created again): {}.", r.existing);
    }
    if r.updated > 0 {
        println!("{}: {}.", if r.dry_run { "Would update" } else { "Updated" }, r.updated);
    }
    if r.dry_run {
        println!("Dry run: nothing was written.");
    }
    Ok(())
}
