//! `confidant audit verify|proof|export|checkpoint`: the app does it; this prints it.

use std::path::Path;

use anyhow::{Result, bail};
use confidant_app::Console;
use confidant_app::audit;

use crate::progress::Stderr;

/// `confidant audit verify`.
pub async fn verify(dir: &Path, witness: Option<&Path>, public_key: Option<&str>) -> Result<()> {
    let r = audit::verify(dir, witness, public_key, &Stderr).await?;
    println!("OK: the audit log is intact.");
    println!("  entries:     {}", r.entries);
    println!("  checkpoints: {} (the latest covers {} entries)", r.checkpoints, r.last_checkpoint);
    println!("  root:        {}", hex::encode(r.root));
    if r.public_key_given {
        println!("  public key:  {} (as given)", hex::encode(r.public_key));
    } else {
        println!(
            "  public key:  {} (the audit signing key {}; compare it with the one `confidant init` printed, \
             or pass --public-key)",
            hex::encode(r.public_key),
            r.signing_key
        );
    }
    println!("  checked in {:.2} s ({:.0} entries/s)", r.seconds, r.entries as f64 / r.seconds.max(1e-9));
    if r.entries > r.last_checkpoint {
        println!(
            "  note: {} newest entries are not yet covered by a signed checkpoint (one is signed every \
             {} entries or {} s while the server runs)",
            r.entries - r.last_checkpoint,
            r.checkpoint_every_entries,
            r.checkpoint_interval_seconds
        );
    }
    if r.from_witness == 0 && r.entries > 0 {
        bail!(
            "the witness {} holds no checkpoint: nothing vouches for this log. Is --witness right?",
            r.witness_path.display()
        );
    }
    Ok(())
}

/// `confidant audit checkpoint`.
pub async fn checkpoint(console: &Console, dir: &Path) -> Result<()> {
    match audit::checkpoint(console, dir).await? {
        Some(line) => println!("{line}"),
        None => println!("The latest checkpoint already covers every entry; nothing to sign."),
    }
    Ok(())
}

/// `confidant audit proof`: JSON on stdout.
pub async fn proof(dir: &Path, request: audit::ProofRequest) -> Result<()> {
    println!("{}", audit::proof(dir, request).await?);
    Ok(())
}

/// `confidant audit export`: JSON lines on stdout.
pub async fn export(console: &Console, dir: &Path, after: i64) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let count = audit::export(console, dir, after, &mut out).await?;
    eprintln!("Exported {count} entries.");
    Ok(())
}
