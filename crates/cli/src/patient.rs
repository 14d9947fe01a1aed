//! `confidant patient ...` and `confidant retention run`: the app does it; this prints it.

use std::path::Path;

use anyhow::Result;
use confidant_app::Console;
use confidant_app::patient::{self, Authority, Outcome, RetentionReport};

/// `patient hold` / `patient release`.
pub async fn hold(console: &Console, dir: &Path, id: &str, hold: bool) -> Result<()> {
    let changed = patient::hold(console, dir, id, hold).await?;
    match (hold, changed) {
        (true, true) => println!("Legal hold set on Patient/{id}: it cannot be erased until released."),
        (true, false) => println!("Patient/{id} was already on legal hold."),
        (false, true) => println!("Legal hold on Patient/{id} lifted."),
        (false, false) => println!("Patient/{id} had no legal hold."),
    }
    Ok(())
}

/// `patient erase-request`: the approval code on stdout.
pub async fn request(console: &Console, dir: &Path, id: &str, requested_by: &str, reason: &str) -> Result<()> {
    let code = patient::request(console, dir, id, requested_by, reason).await?;
    println!("{code}");
    eprintln!(
        "Erasure of Patient/{id} requested by {requested_by}. A second person approves it within {} h with:\n  \
         confidant patient erase --dir {} --id {id} --approval <the code above> --approved-by <their name>",
        patient::APPROVAL_HOURS,
        dir.display()
    );
    Ok(())
}

/// `patient erase`.
pub async fn erase(console: &Console, dir: &Path, id: &str, authority: Authority) -> Result<()> {
    let erased = patient::erase(console, dir, id, authority).await?;
    println!(
        "Patient/{id} erased: {} data keys destroyed, {} records ({} versions) and {} search tokens deleted{}.",
        erased.data_keys,
        erased.resources,
        erased.versions,
        erased.search_tokens,
        if erased.accounts_disabled > 0 { ", their portal account disabled" } else { "" }
    );
    println!("The audit log keeps its entries about them (ids only). Backups made before now still hold");
    println!("their records, sealed under the destroyed key: see docs/security.md, \"Erasure\".");
    Ok(())
}

/// Prints each patient as the retention run decides.
struct Printed;

impl RetentionReport for Printed {
    fn policy(&mut self, years: u32, expired: usize, cutoff: i64) {
        println!(
            "Retention: {years} years after the last encounter; {expired} patients expired (last activity before {}).",
            &confidant_fhir::instant(cutoff)[..10]
        );
    }

    fn patient(&mut self, id: &str, last: i64, outcome: Outcome, n: usize, of: usize) {
        let when = &confidant_fhir::instant(last)[..10];
        match outcome {
            Outcome::Held => println!("  Patient/{id}  last activity {when}  kept: legal hold"),
            Outcome::WouldErase => println!("  Patient/{id}  last activity {when}  would be erased"),
            Outcome::Erased => println!("  Patient/{id}  last activity {when}  erased ({n}/{of})"),
        }
    }
}

/// `retention run`.
pub async fn retention(console: &Console, dir: &Path, dry_run: bool) -> Result<()> {
    let erased = patient::retention(console, dir, dry_run, &mut Printed).await?;
    if dry_run {
        println!("Dry run: nothing was changed. Run without --dry-run to erase them.");
    } else {
        println!("{erased} patients erased.");
    }
    Ok(())
}
