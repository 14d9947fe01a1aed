//! `confidant incident report|contain`: who was affected, from the audit log
//! (the list a GDPR Art. 33/34 notification needs), and stopping an account.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use confidant_audit::{Action, Entry, Outcome};
use confidant_store::AuditFilter;

use crate::audit::console_entry;
use crate::instance::open_identity;

/// One patient's accesses by one user.
#[derive(Debug, Default)]
struct Accesses {
    role: String,
    count: u64,
    refused: u64,
    first: i64,
    last: i64,
    actions: BTreeSet<String>,
}

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
    let store = records.store().clone();
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
        // Reading the log for a report is itself an access to it.
        let mut e = console_entry(Action::AuditAccess, "incident-report");
        e.purpose = actor_id.as_ref().map(|a| format!("actor/{a}"));
        records.auditor().append(&[e]).await.context("cannot record the report in the audit log; nothing was read")?;
        let honey = records.honey_records().await?;
        let filter = AuditFilter { actor: actor_id.clone(), from, until, ..Default::default() };
        let mut by_patient: BTreeMap<String, BTreeMap<String, Accesses>> = BTreeMap::new();
        let mut before = None;
        let mut scanned = 0u64;
        loop {
            let page = store.audit_search(&filter, before, 5000).await?;
            let Some(last) = page.last() else { break };
            before = Some(last.seq);
            for s in &page {
                scanned += 1;
                let Some(e) = Entry::parse(&s.row.entry) else { continue };
                let (Some(patient), Some(who)) = (&e.patient, &e.actor) else { continue };
                if !e.is_record_access() || who == confidant_audit::CONSOLE {
                    continue;
                }
                let a = by_patient.entry(patient.clone()).or_default().entry(who.clone()).or_default();
                if a.count + a.refused == 0 {
                    a.first = e.time;
                    a.role = e.role.clone().unwrap_or_default();
                }
                a.first = a.first.min(e.time);
                a.last = a.last.max(e.time);
                match e.outcome {
                    Outcome::Success => {
                        a.count += 1;
                        a.actions.insert(e.action.clone());
                    }
                    Outcome::Denied => a.refused += 1,
                }
            }
        }
        Ok::<_, anyhow::Error>((actor_id, honey, by_patient, scanned))
    }
    .await;
    store.close().await;
    let (actor_id, honey, by_patient, scanned) = result?;
    // Patients whose records were disclosed (refusals alone disclose nothing, but are listed).
    // Honey records are synthetic: nobody to notify, so they are not counted (but listed, marked).
    let disclosed = by_patient.iter().filter(|(p, m)| !honey.contains(*p) && m.values().any(|a| a.count > 0)).count();
    let t = |ms: i64| confidant_fhir::instant(ms);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == "csv" {
        writeln!(out, "patient,honey_record,actor,role,accesses,refused,first,last,actions")?;
        for (patient, actors) in &by_patient {
            for (who, a) in actors {
                let actions: Vec<&str> = a.actions.iter().map(String::as_str).collect();
                writeln!(
                    out,
                    "{patient},{},{who},{},{},{},{},{},{}",
                    honey.contains(patient),
                    a.role,
                    a.count,
                    a.refused,
                    t(a.first),
                    t(a.last),
                    actions.join(" ")
                )?;
            }
        }
    } else {
        let patients: Vec<serde_json::Value> = by_patient
            .iter()
            .map(|(patient, actors)| {
                serde_json::json!({
                    "patient": format!("Patient/{patient}"),
                    "honey_record": honey.contains(patient),
                    "disclosed": actors.values().any(|a| a.count > 0),
                    "by": actors.iter().map(|(who, a)| serde_json::json!({
                        "actor": who, "role": a.role, "accesses": a.count, "refused": a.refused,
                        "first": t(a.first), "last": t(a.last), "actions": a.actions,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let report = serde_json::json!({
            "type": "confidant-incident-report",
            "instance": config.instance_id,
            "generated_at": t(crate::instance::now_millis()),
            "from": from.map(t),
            "to": until.map(t),
            "actor": actor_id,
            "entries_scanned": scanned,
            "patients_disclosed": disclosed,
            "patients": patients,
            "note": "Patient ids only: look each up in Confidant to reach the person. honey_record = synthetic, nobody to notify.",
        });
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    }
    out.flush()?;
    eprintln!(
        "{disclosed} patients' records were disclosed ({} patients touched, {scanned} audit entries read).",
        by_patient.len()
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
