//! Staff security training at the console and for the rest of the app
//! (issue 16): [`assign`] a module to someone now (a phishing drill calls it
//! for everyone who clicked), [`read_pack`] and [`import`] a module pack
//! (`confidant training import FILE`), bring the built-in pack in when an
//! instance is opened, and `doctor`'s "training coverage" check.
//!
//! The service itself is the identity service's (`confidant_identity`'s
//! `training` module); policy decides who may do what.

use std::path::Path;

use anyhow::{Context, Result, bail};
use confidant_identity::{Identity, IdentityError, ImportReport};
use confidant_policy::Enforcement;
use confidant_training::{MAX_PACK_BYTES, Pack};

use crate::console::Console;
use crate::doctor::{Finding, Severity};

/// Assign module `module_key` to the staff account `user_id` now, so that it
/// is due regardless of any earlier completion (with the grace period before
/// it blocks), for `reason`: a short code such as `phishing-drill/<campaign
/// id>` (a–z, 0–9, `- _ . / :`; never free text). Audited as
/// `training-assigned` (the assigner: the server itself, `console`).
pub async fn assign(identity: &Identity, user_id: &str, module_key: &str, reason: &str) -> Result<(), IdentityError> {
    identity.assign_training(None, user_id, module_key, reason).await
}

/// Read and check the pack at `path` (pages named by `page_file` are read
/// from the same folder). Nothing is changed.
pub fn read_pack(path: &Path) -> Result<Pack> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_PACK_BYTES as u64 {
        bail!("{} is larger than {MAX_PACK_BYTES} bytes: not a training pack", path.display());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let pack = confidant_training::parse_pack(&text, |name| {
        let file = folder.join(name);
        match std::fs::metadata(&file) {
            Ok(m) if m.len() > MAX_PACK_BYTES as u64 => Err("too large".into()),
            Ok(_) => std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display())),
            Err(e) => Err(format!("cannot read {}: {e}", file.display())),
        }
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was changed", path.display()))?;
    Ok(pack)
}

/// `confidant training import`: check the whole pack, then bring it into
/// force (audited, as the console). Nothing changes on any error.
pub async fn import(console: &Console, dir: &Path, path: &Path) -> Result<ImportReport> {
    let pack = read_pack(path)?;
    let instance = crate::instance::Instance::open(console, dir).await?;
    let result = instance.identity.import_training_pack(None, &pack, false).await;
    instance.records.store().close().await;
    result.map_err(|e| anyhow::anyhow!("{e}; nothing was changed"))
}

/// Bring the built-in pack's modules in where the database holds an older
/// version or none (an opened instance does this once per new release).
pub(crate) async fn bring_in_built_in(identity: &Identity) -> Result<()> {
    let pack = confidant_training::built_in_pack().map_err(|e| anyhow::anyhow!("the built-in training pack: {e}"))?;
    match identity.import_training_pack(None, &pack, true).await {
        Ok(_) | Err(IdentityError::Conflict(_)) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot bring in the built-in training modules")),
    }
}

/// `doctor`: the share of staff whose training is current. Overdue training
/// is high under `enforce = "block"` (they are kept from patient data) and
/// medium under `warn`. Counts only: no names in the report or the log.
pub(crate) async fn coverage_finding(identity: &Identity, dir: &Path) -> Result<Finding> {
    const CHECK: &str = "training-coverage";
    let coverage = identity.training_coverage(&Console::principal()).await?;
    let (current, staff) = coverage.current();
    let (done, due, overdue, assigned) = coverage.counts();
    let evidence = format!(
        "{current} of {staff} staff current; modules done {done}, due {due}, overdue {overdue}, assigned {assigned}; training.enforce = \"{}\"",
        coverage.enforce.as_str()
    );
    let fix = format!(
        "open Administration → Training for who is due, and ask them to complete it at /training (or `confidant training import --dir {}` a corrected pack)",
        dir.display()
    );
    Ok(match coverage.enforce {
        Enforcement::Off => Finding::fail(
            CHECK,
            Severity::Low,
            "staff security training is off",
            evidence,
            "set [training] enforce = \"warn\" (a banner) or \"block\" in confidant.toml",
        ),
        _ if overdue > 0 && coverage.enforce == Enforcement::Block => {
            Finding::fail(CHECK, Severity::High, "staff are kept from patient data by overdue training", evidence, fix)
        }
        _ if overdue > 0 => Finding::fail(CHECK, Severity::Medium, "staff security training is overdue", evidence, fix),
        _ => Finding::pass(CHECK, "staff security training is current or within its grace period", evidence),
    })
}
