//! `confidant incident report|contain`: who was affected, from the audit log
//! (the list a GDPR Art. 33/34 notification needs), and stopping an account.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use confidant_audit::Action;

use crate::audit::console_entry;
use crate::instance::open_identity;

fn time_arg(value: Option<&str>, what: &str, end: bool) -> Result<Option<i64>> {
    let Some(v) = value else { return Ok(None) };
    let (from, until) =
        confidant_fhir::date_range(v).filter(|_| !v.starts_with(|c: char| c.is_ascii_alphabetic())).with_context(
            || format!("{what} must be a date (2026-11-30) or an instant (2026-11-30T14:00:00Z), not {v:?}"),
        )?;
    Ok(if end { until } else { from })
}

/// `incident report`.
pub async fn report(dir: &Path, from: Option<&str>, to: Option<&str>, actor: Option<&str>, format: &str) -> Result<()> {
    if !matches!(format, "json" | "csv") {
        bail!("--format must be json or csv");
    }
    let from = time_arg(from, "--from", false)?;
    let until = time_arg(to, "--to", true)?;
    let (config, records, identity) = open_identity(dir).await?;
    let result = async {
        let actor_id = match actor {
            Some(a) => Some(
                // A user id of an account since erased still names its entries.
                identity.find_user(a).await.map(|u| u.id).or_else(|_| {
                    if a.len() == 32 && a.bytes().all(|b| b.is_ascii_hexdigit()) {
                        Ok(a.to_owned())
                    } else {
                        bail!("there is no user {a:?}")
                    }
                })?,
            ),
            None => None,
        };
        let q = confidant_records::IncidentQuery { from, until, actor: actor_id };
        let report = records.incident_report(None, &q).await.context("cannot make the report")?;
        Ok::<_, anyhow::Error>(report)
    }
    .await;
    records.store().close().await;
    let report = result?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == "csv" {
        out.write_all(report.to_csv().as_bytes())?;
    } else {
        serde_json::to_writer_pretty(&mut out, &report.to_json(&config.instance_id))?;
        writeln!(out)?;
    }
    out.flush()?;
    eprintln!(
        "{} patients' records were disclosed ({} patients touched, {} audit entries read).",
        report.patients_disclosed(),
        report.by_patient.len(),
        report.entries_scanned
    );
    Ok(())
}

/// `incident contain`: end every session and token of an account and disable it.
pub async fn contain(dir: &Path, actor: &str) -> Result<()> {
    let (_, records, identity) = open_identity(dir).await?;
    let result = async {
        let user = identity
            .find_user(actor)
            .await
            .with_context(|| format!("there is no user {actor:?}; nothing was changed"))?;
        let ended = identity.revoke_all(&user.id).await?;
        identity.disable(&user.id).await?;
        let mut e = console_entry(Action::UserDisable, &user.id);
        e.purpose = Some("incident-contain".to_owned());
        records.auditor().append(&[e]).await.context("contained, but the audit log could not record it")?;
        Ok::<_, anyhow::Error>((user.id, ended))
    }
    .await;
    records.store().close().await;
    let (id, ended) = result?;
    println!("Contained user {id}: {ended} sessions and API tokens ended, the account is disabled.");
    println!("Next: `confidant incident report --dir {} --actor {id}` lists what it touched.", dir.display());
    println!("Re-enable only after review: confidant user enable --dir {} --user {id}", dir.display());
    Ok(())
}
