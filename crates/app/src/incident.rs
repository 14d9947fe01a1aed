//! Incident response from the console: who was affected, from the audit log
//! (the list a GDPR Art. 33/34 notification needs), and stopping an account.

use std::path::Path;

use anyhow::{Context, Result, bail};
use confidant_audit::Action;
use confidant_records::IncidentReport;

use crate::console::Console;
use crate::instance::Instance;

fn time_arg(value: Option<&str>, what: &str, end: bool) -> Result<Option<i64>> {
    let Some(v) = value else { return Ok(None) };
    let (from, until) =
        confidant_fhir::date_range(v).filter(|_| !v.starts_with(|c: char| c.is_ascii_alphabetic())).with_context(
            || format!("{what} must be a date (2026-11-30) or an instant (2026-11-30T14:00:00Z), not {v:?}"),
        )?;
    Ok(if end { until } else { from })
}

/// What an incident report covers: a time window (dates or instants, as
/// typed) and optionally one account (username or user id).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub actor: Option<&'a str>,
}

/// `incident report`: the report, and the instance id it is about.
pub async fn report(console: &Console, dir: &Path, window: Window<'_>) -> Result<(IncidentReport, String)> {
    let from = time_arg(window.from, "--from", false)?;
    let until = time_arg(window.to, "--to", true)?;
    let actor = window.actor;
    let Instance { config, records, identity, .. } = Instance::open(console, dir).await?;
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
    Ok((result?, config.instance_id))
}

/// `incident contain`: end every session and token of an account and disable
/// it; audited. Returns the user id and how many sessions and tokens ended.
pub async fn contain(console: &Console, dir: &Path, actor: &str) -> Result<(String, u64)> {
    let Instance { records, identity, .. } = Instance::open(console, dir).await?;
    let result = async {
        let user = identity
            .find_user(actor)
            .await
            .with_context(|| format!("there is no user {actor:?}; nothing was changed"))?;
        let ended = identity.revoke_all(&user.id).await?;
        identity.disable(&user.id).await?;
        let mut e = console.entry(Action::UserDisable, &user.id);
        e.purpose = Some("incident-contain".to_owned());
        console.record_with(records.auditor(), e).await.context("contained, but the audit log could not record it")?;
        Ok::<_, anyhow::Error>((user.id, ended))
    }
    .await;
    records.store().close().await;
    result
}
