//! The incident report: whose records were touched, by whom, how often and
//! when, read from the audit log. It is the list a GDPR Art. 33/34
//! notification needs. The console (`confidant incident report`) and
//! auditors (the web UI's download) share it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use confidant_audit::{Action as AuditAction, Entry, Outcome};
use confidant_policy::Principal;
use confidant_store::AuditFilter;
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result, Seen};

/// What the report covers.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// Only this user's accesses (a user id).
    pub actor: Option<String>,
}

/// One patient's accesses by one user.
#[derive(Debug, Default, Clone)]
pub struct Accesses {
    pub role: String,
    pub count: u64,
    pub refused: u64,
    pub first: i64,
    pub last: i64,
    pub actions: BTreeSet<String>,
}

/// Patients touched, each with who touched them.
#[derive(Debug)]
pub struct IncidentReport {
    pub query: IncidentQuery,
    /// Patient id → user id → accesses.
    pub by_patient: BTreeMap<String, BTreeMap<String, Accesses>>,
    /// Which of those patients are honey records (synthetic: nobody to notify).
    pub honey: HashSet<String>,
    pub entries_scanned: u64,
    pub generated_at: i64,
}

impl IncidentReport {
    /// Patients whose records were disclosed: refusals alone disclose nothing,
    /// and honey records are nobody.
    pub fn patients_disclosed(&self) -> usize {
        self.by_patient.iter().filter(|(p, m)| !self.honey.contains(*p) && m.values().any(|a| a.count > 0)).count()
    }

    pub fn to_json(&self, instance: &str) -> Value {
        let t = confidant_fhir::instant;
        let patients: Vec<Value> = self
            .by_patient
            .iter()
            .map(|(patient, actors)| {
                json!({
                    "patient": format!("Patient/{patient}"),
                    "honey_record": self.honey.contains(patient),
                    "disclosed": actors.values().any(|a| a.count > 0),
                    "by": actors.iter().map(|(who, a)| json!({
                        "actor": who, "role": a.role, "accesses": a.count, "refused": a.refused,
                        "first": t(a.first), "last": t(a.last), "actions": a.actions,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "type": "confidant-incident-report",
            "instance": instance,
            "generated_at": t(self.generated_at),
            "from": self.query.from.map(t),
            "to": self.query.until.map(t),
            "actor": self.query.actor,
            "entries_scanned": self.entries_scanned,
            "patients_disclosed": self.patients_disclosed(),
            "patients": patients,
            "note": "Patient ids only: look each up in Confidant to reach the person. honey_record = synthetic, nobody to notify.",
        })
    }

    /// One line per patient and user (ids, counts and times only: nothing to escape).
    pub fn to_csv(&self) -> String {
        let t = confidant_fhir::instant;
        let mut out = String::from("patient,honey_record,actor,role,accesses,refused,first,last,actions\n");
        for (patient, actors) in &self.by_patient {
            for (who, a) in actors {
                let actions: Vec<&str> = a.actions.iter().map(String::as_str).collect();
                out.push_str(&format!(
                    "{patient},{},{who},{},{},{},{},{},{}\n",
                    self.honey.contains(patient),
                    a.role,
                    a.count,
                    a.refused,
                    t(a.first),
                    t(a.last),
                    actions.join(" ")
                ));
            }
        }
        out
    }
}

impl Records {
    /// Build the incident report. `by` is the auditor asking; `None` is the
    /// server console. Reading the log for a report is itself an entry,
    /// committed before anything is read (fail closed).
    pub async fn incident_report(&self, by: Option<&Principal>, q: &IncidentQuery) -> Result<IncidentReport> {
        if q.actor.as_deref().is_some_and(|a| !confidant_fhir::is_valid_id(a)) {
            return Err(RecordsError::Invalid("the user must be given by id".into()));
        }
        let mut e = match by {
            Some(p) => {
                if let Err(refused) = confidant_policy::records::may_read_incident_report(p) {
                    let e = self.entry(p, AuditAction::AuditAccess, Outcome::Denied, None, Seen::Yes);
                    if let Err(err) = self.auditor.append(&[e]).await {
                        tracing::error!(error = %err, "audit append of a refused access failed");
                    }
                    return Err(refused.into());
                }
                self.entry(p, AuditAction::AuditAccess, Outcome::Success, None, Seen::Yes)
            }
            None => Entry::by_console(self.clock.now_millis(), AuditAction::AuditAccess),
        };
        e.target = Some("incident-report".into());
        e.purpose = q.actor.as_ref().map(|a| format!("actor/{a}"));
        self.auditor.append(std::slice::from_ref(&e)).await.map_err(|err| {
            tracing::error!(error = %err, "audit append for an incident report failed");
            RecordsError::AuditFailed
        })?;
        let honey = self.honey_records().await?;
        let filter = AuditFilter { actor: q.actor.clone(), from: q.from, until: q.until, ..Default::default() };
        let mut by_patient: BTreeMap<String, BTreeMap<String, Accesses>> = BTreeMap::new();
        let mut before = None;
        let mut scanned = 0u64;
        loop {
            let page = self.store.audit_search(&filter, before, 5000).await?;
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
        Ok(IncidentReport {
            query: q.clone(),
            by_patient,
            honey,
            entries_scanned: scanned,
            generated_at: self.clock.now_millis(),
        })
    }
}
