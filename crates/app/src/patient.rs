//! Erasure (crypto-shredding a patient, with a second person's approval or a
//! forced, reasoned erasure, never while a legal hold is set), legal holds,
//! and the retention policy.

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use confidant_audit::Action;
use confidant_records::Records;

use crate::console::Console;
use crate::instance::Instance;

/// How long an erasure approval code stays valid.
pub const APPROVAL_HOURS: i64 = 24;

/// A reason, sealed under the organisation's key (it may name people, so it is
/// never stored in the clear, not even in the audit log), for the audit entry.
async fn sealed_reason(records: &Records, patient: &str, reason: &str) -> Result<String> {
    let reason = reason.trim();
    if reason.chars().count() < 10 || reason.len() > 2000 {
        bail!("give a --reason of 10 to 2000 characters: why this patient's records must go");
    }
    let sealed = records.seal_secret("ErasureReason", patient, reason.as_bytes()).await?;
    Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed))
}

async fn existing_patient(records: &Records, id: &str) -> Result<()> {
    if !confidant_fhir::is_valid_id(id) || records.store().compartment_of("Patient", id).await?.is_none() {
        bail!("no patient has id {id} (already erased, or a typo?); nothing was changed");
    }
    Ok(())
}

fn code_hash(code: &str) -> Vec<u8> {
    confidant_vault::sha256(code.trim().as_bytes()).to_vec()
}

/// `patient hold` / `patient release`: returns whether anything changed
/// (false: the hold was already set, or already lifted).
pub async fn hold(console: &Console, dir: &Path, id: &str, hold: bool) -> Result<bool> {
    let records = Instance::open(console, dir).await?.records;
    existing_patient(&records, id).await?;
    let e = console.patient_entry(Action::LegalHold, id, if hold { "legal-hold-set" } else { "legal-hold-lifted" });
    // The hold and its audit entry are written in one transaction.
    let changed = records.store().set_legal_hold(id, hold, console.now(), &[e.to_row()]).await?;
    records.store().close().await;
    Ok(changed)
}

/// `patient erase-request`: the first person's half; returns the approval code.
pub async fn request(console: &Console, dir: &Path, id: &str, requested_by: &str, reason: &str) -> Result<String> {
    let records = Instance::open(console, dir).await?.records;
    existing_patient(&records, id).await?;
    if records.store().legal_hold(id).await? {
        bail!("Patient/{id} is on legal hold; lift it first (confidant patient release); nothing was changed");
    }
    let sealed = sealed_reason(&records, id, reason).await?;
    let code = format!("erase_{}", confidant_vault::random_id()?);
    // Who asked and who approved are kept with the request, not in the log (ids only there).
    let mut e = console.patient_entry(Action::Delete, id, "erasure-requested");
    e.purpose = Some(format!("sealed-reason:{sealed}"));
    let expires = console.now() + APPROVAL_HOURS * 3_600_000;
    records.store().insert_erasure_request(&code_hash(&code), id, requested_by.trim(), expires, &[e.to_row()]).await?;
    records.store().close().await;
    Ok(code)
}

/// How an erasure is authorised.
pub enum Authority {
    Approval { code: String, approved_by: String },
    Forced { reason: String },
}

/// `patient erase`: crypto-shred a patient.
pub async fn erase(console: &Console, dir: &Path, id: &str, authority: Authority) -> Result<confidant_store::Erased> {
    let records = Instance::open(console, dir).await?.records;
    let result = erase_with(console, &records, id, authority).await;
    records.store().close().await;
    result
}

/// Erase one patient with open records (the store stays open).
async fn erase_with(
    console: &Console,
    records: &Records,
    id: &str,
    authority: Authority,
) -> Result<confidant_store::Erased> {
    existing_patient(records, id).await?;
    let now = console.now();
    let (approval, mut e) = match &authority {
        Authority::Approval { code, approved_by } => {
            let Some((patient, requested_by)) = records.store().erasure_request(&code_hash(code), now).await? else {
                bail!("that approval code is unknown, used or expired; nothing was changed");
            };
            if patient != id {
                bail!("that approval code is for another patient; nothing was changed");
            }
            if requested_by.trim().eq_ignore_ascii_case(approved_by.trim()) || approved_by.trim().is_empty() {
                bail!("the approval must come from a second person, not from {requested_by}; nothing was changed");
            }
            (Some(code_hash(code)), console.patient_entry(Action::Delete, id, "erased-approved"))
        }
        Authority::Forced { reason } => {
            let sealed = sealed_reason(records, id, reason).await?;
            let mut e = console.patient_entry(Action::Delete, id, "erased-forced");
            e.purpose = Some(format!("sealed-reason:{sealed}"));
            (None, e)
        }
    };
    e.time = now;
    let account = confidant_identity::patient_link_token(records.keyring(), id);
    match records.store().erase_patient(id, &account, approval.as_deref(), now, &[e.to_row()]).await {
        Ok(erased) => {
            records.store().checkpoint_wal().await.context("erased, but the WAL could not be truncated")?;
            Ok(erased)
        }
        Err(confidant_store::StoreError::Database(m)) if m.contains("legal hold") => {
            bail!("Patient/{id} is on legal hold; nothing was changed")
        }
        Err(confidant_store::StoreError::Conflict) => {
            bail!("that approval code was used or expired meanwhile; nothing was changed")
        }
        Err(other) => Err(anyhow::Error::new(other).context("the erasure failed; nothing was changed")),
    }
}

/// What the retention policy decided for one expired patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// On legal hold: kept.
    Held,
    /// A dry run: it would be erased.
    WouldErase,
    Erased,
}

/// What `retention run` tells the operator as it goes.
pub trait RetentionReport {
    /// The policy and how many patients have expired (last activity before `cutoff`).
    fn policy(&mut self, years: u32, expired: usize, cutoff: i64);
    /// One expired patient (the `n`th of `of`), last active at `last`, and what was done.
    fn patient(&mut self, id: &str, last: i64, outcome: Outcome, n: usize, of: usize);
}

/// `retention run`: erase the patients the retention policy says have expired
/// (all but those on legal hold); with `dry_run`, only list them. Returns how many were erased.
pub async fn retention(
    console: &Console,
    dir: &Path,
    dry_run: bool,
    report: &mut dyn RetentionReport,
) -> Result<usize> {
    let Instance { config, records, .. } = Instance::open(console, dir).await?;
    let Some(years) = config.retention.years_after_last_encounter else {
        records.store().close().await;
        bail!(
            "no retention policy is set: add [retention] years_after_last_encounter = N to {}; nothing was changed",
            crate::config::Config::path(dir).display()
        );
    };
    let cutoff = console.now() - i64::from(years) * 365 * 86_400_000 - i64::from(years / 4) * 86_400_000;
    // Honey records are synthetic: no retention applies, and they must stay in place.
    let honey = records.honey_records().await?;
    let mut expired = records.store().patients_inactive_since(cutoff).await?;
    expired.retain(|(id, _)| !honey.contains(id));
    report.policy(years, expired.len(), cutoff);
    let mut erased = 0;
    for (i, (id, last)) in expired.iter().enumerate() {
        let held = records.store().legal_hold(id).await?;
        let outcome = if held {
            Outcome::Held
        } else if dry_run {
            Outcome::WouldErase
        } else {
            let reason = format!("retention policy: {years} years after the last encounter");
            erase_with(console, &records, id, Authority::Forced { reason }).await?;
            erased += 1;
            Outcome::Erased
        };
        report.patient(id, *last, outcome, i + 1, expired.len());
    }
    records.store().close().await;
    Ok(erased)
}
