//! The audit log as FHIR R4 AuditEvent: a read-only view for auditors, and
//! each patient's own access log (who, with their role; when; what; why).
//!
//! Entries hold ids only; this view resolves them for people: a clinician's
//! name from their Practitioner record, a break-glass reason from the
//! patient's record (where it is sealed). Nothing here writes, except the
//! audit entry saying the log itself was read.

use std::collections::HashMap;

use confidant_audit::{Action as AuditAction, Entry, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::{self as policy, AuditScope, Principal};
use confidant_store::{AuditFilter, ORGANISATION, StoredAudit};
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result, Seen};

/// An AuditEvent search.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// `Patient/id` or `id`.
    pub patient: Option<String>,
    /// A user id.
    pub agent: Option<String>,
    /// An action code (`read`, `search-hit`, `login-failed`, ...).
    pub action: Option<String>,
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// Page cursor: entries older than this sequence number (newer, oldest first).
    pub before: Option<i64>,
    pub count: i64,
}

/// One page of AuditEvents, newest first.
#[derive(Debug)]
pub struct AuditPage {
    pub events: Vec<Value>,
    /// The cursor of the next (older) page.
    pub next_before: Option<i64>,
}

/// The coding system of our action codes.
pub const ACTION_SYSTEM: &str = "urn:confidant:audit-action";

impl Records {
    /// Search the audit log as AuditEvents, within what `p` may see.
    pub async fn audit_events(&self, p: &Principal, q: &AuditQuery) -> Result<AuditPage> {
        self.audit_events_in_order(p, q, false).await
    }

    /// [`Records::audit_events`], oldest first if `ascending` (`_sort=date`), the
    /// cursor then being the newest entry seen.
    pub async fn audit_events_in_order(&self, p: &Principal, q: &AuditQuery, ascending: bool) -> Result<AuditPage> {
        let scope = self.audit_scope(p).await?;
        // `agent` as the events carry it: `Practitioner/{id}` (a clinician's
        // record), `urn:confidant:user|{id}` (the agent's identifier) or the user id.
        let (actor, practitioner) = match q.agent.as_deref() {
            Some(a) => match a.strip_prefix("Practitioner/") {
                Some(pr) => (None, Some(pr)),
                None => (Some(a.strip_prefix("urn:confidant:user|").unwrap_or(a).to_owned()), None),
            },
            None => (None, None),
        };
        // `action` as the events carry it: the CRUDE code (R, C, U, D, E) or one of our subtype codes.
        let (action, actions) = match q.action.as_deref() {
            Some(code @ ("C" | "R" | "U" | "D" | "E")) => (
                None,
                AuditAction::ALL
                    .iter()
                    .filter(|a| crud_code(Some(**a)) == code)
                    .map(|a| a.as_str().to_owned())
                    .collect(),
            ),
            Some(a) => (Some(a.strip_prefix(&format!("{ACTION_SYSTEM}|")).unwrap_or(a).to_owned()), Vec::new()),
            None => (None, Vec::new()),
        };
        let mut filter = AuditFilter {
            patient: q.patient.as_deref().map(|s| s.strip_prefix("Patient/").unwrap_or(s).to_owned()),
            actor,
            action,
            from: q.from,
            until: q.until,
            actions,
            ascending,
            ..AuditFilter::default()
        };
        if let Some(pr) = practitioner {
            if !confidant_fhir::is_valid_id(pr) {
                return Err(RecordsError::Invalid(
                    "agent must be Practitioner/{id}, a user id or urn:confidant:user|{id}".into(),
                ));
            }
            let users = self.store.users().await?;
            filter.actors =
                users.into_iter().filter(|u| u.practitioner_id.as_deref() == Some(pr)).map(|u| u.id).collect();
            if filter.actors.is_empty() {
                // Nobody signs in as this practitioner: no entry can be theirs.
                filter.actors.push(String::new());
            }
        }
        // Filter values are ids; anything else (a name, say) is refused before it
        // could reach the audit-access entry written below.
        for (name, value) in [("patient", &filter.patient), ("agent", &filter.actor)] {
            if value.as_deref().is_some_and(|v| !confidant_fhir::is_valid_id(v)) {
                return Err(RecordsError::Invalid(format!(
                    "{name} must be an id (Patient/{{id}}, a user id), not a name or other value"
                )));
            }
        }
        if let Some(a) = &filter.action
            && AuditAction::parse(a).is_none()
        {
            return Err(RecordsError::Invalid(format!(
                "unknown action '{}'; use R, C, U, D, E or one of: {}",
                a.escape_default(),
                AuditAction::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        if let AuditScope::Patient(own) = &scope {
            match &filter.patient {
                Some(asked) if asked != own => {
                    return Ok(AuditPage { events: Vec::new(), next_before: None });
                }
                _ => filter.patient = Some(own.clone()),
            }
        }
        let count = q.count.clamp(0, 100);
        let rows = self.store.audit_search(&filter, q.before, count + 1).await?;
        let more = rows.len() as i64 > count;
        let rows: Vec<StoredAudit> = rows.into_iter().take(count as usize).collect();
        self.audit_read(p, &filter).await?;
        let next_before = if more { rows.last().map(|r| r.seq) } else { None };
        let events = self.events(&rows, &scope, p).await?;
        Ok(AuditPage { events, next_before })
    }

    /// One AuditEvent by its sequence number.
    pub async fn audit_event(&self, p: &Principal, seq: &str) -> Result<Value> {
        let scope = self.audit_scope(p).await?;
        let not_found = || RecordsError::NotFound(format!("AuditEvent/{}", seq.escape_default()));
        let n: i64 = seq.parse().ok().filter(|n| *n > 0).ok_or_else(not_found)?;
        let row = self.store.audit_entry(n).await?.ok_or_else(not_found)?;
        if let AuditScope::Patient(own) = &scope
            && row.row.patient.as_deref() != Some(own)
        {
            return Err(not_found());
        }
        let filter = AuditFilter { patient: row.row.patient.clone(), ..AuditFilter::default() };
        self.audit_read(p, &filter).await?;
        self.events(std::slice::from_ref(&row), &scope, p).await?.pop().ok_or_else(not_found)
    }

    async fn audit_scope(&self, p: &Principal) -> Result<AuditScope> {
        match policy::audit_scope(p) {
            Ok(s) => Ok(s),
            Err(d) => {
                let e = self.entry(p, AuditAction::AuditAccess, Outcome::Denied, None, Seen::Yes);
                if let Err(err) = self.auditor.append(&[e]).await {
                    tracing::error!(error = %err, "audit append of a refused access failed");
                }
                Err(RecordsError::Forbidden(d.to_string()))
            }
        }
    }

    /// Reading the log is itself an entry (fail closed, like any access).
    async fn audit_read(&self, p: &Principal, filter: &AuditFilter) -> Result<()> {
        let mut e = self.entry(p, AuditAction::AuditAccess, Outcome::Success, None, Seen::Yes);
        e.patient = filter.patient.clone();
        self.audited(p, &[e], ()).await
    }

    /// Record that `p` read part of the log outside the AuditEvent view (a
    /// proof with its entry); an error means nothing may be returned.
    pub async fn audit_log_read(&self, p: &Principal, target: &str) -> Result<()> {
        let mut e = self.entry(p, AuditAction::AuditAccess, Outcome::Success, None, Seen::Yes);
        e.target = Some(target.to_owned());
        self.audited(p, &[e], ()).await
    }

    async fn events(&self, rows: &[StoredAudit], scope: &AuditScope, viewer: &Principal) -> Result<Vec<Value>> {
        let mut names: HashMap<String, Option<(String, String)>> = HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(entry) = Entry::parse(&r.row.entry) else {
                tracing::error!(seq = r.seq, "audit entry is not valid JSON");
                return Err(RecordsError::Integrity);
            };
            // Rows are chosen by their columns but shown from their entry: they must agree.
            let consistent = entry.columns_match(&r.row);
            if !consistent {
                tracing::error!(seq = r.seq, "audit entry disagrees with its columns; run `confidant audit verify`");
                if matches!(scope, AuditScope::Patient(_)) {
                    continue;
                }
            }
            let who = match &entry.actor {
                Some(a) => {
                    if !names.contains_key(a) {
                        let n = self.practitioner_of(a).await?;
                        names.insert(a.clone(), n);
                    }
                    names.get(a).cloned().flatten()
                }
                None => None,
            };
            let reason = match entry.purpose.as_deref().and_then(|p| p.strip_prefix("break-glass/")) {
                Some(id) => self.break_glass_reason(id).await?,
                None => None,
            };
            let mut event = audit_event_json(r.seq, &entry, who.as_ref(), reason.as_deref(), scope, &viewer.user_id);
            if !consistent {
                event["outcomeDesc"] =
                    json!("this entry disagrees with the columns stored beside it: run confidant audit verify");
            }
            out.push(event);
        }
        Ok(out)
    }

    /// A user's Practitioner reference and name, if they are a clinician.
    async fn practitioner_of(&self, user_id: &str) -> Result<Option<(String, String)>> {
        let Some(user) = self.store.user_by_id(user_id).await? else { return Ok(None) };
        let Some(pid) = user.practitioner_id else { return Ok(None) };
        let Some(row) = self.store.read(ResourceType::Practitioner.as_str(), &pid).await? else { return Ok(None) };
        let practitioner = self.open_record(row).await?;
        let name = practitioner.resource["name"]
            .as_array()
            .and_then(|n| n.first())
            .map(|n| {
                let given: Vec<&str> =
                    n["given"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let family = n["family"].as_str().unwrap_or("");
                n["text"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{} {family}", given.join(" ")))
            })
            .unwrap_or_default();
        Ok(Some((format!("Practitioner/{pid}"), name.trim().to_owned())))
    }

    /// The stated reason of a break-glass (sealed with the patient's key).
    async fn break_glass_reason(&self, id: &str) -> Result<Option<String>> {
        let Some((_, patient, sealed)) = self.store.break_glass(id).await? else { return Ok(None) };
        if patient == ORGANISATION {
            return Ok(None);
        }
        let plain = self.keyring.open_break_glass(id, &patient, &sealed).await?;
        // Reasons stored before invisible characters were removed are cleaned here.
        Ok(Some(crate::visible_text(&String::from_utf8_lossy(&plain))))
    }
}

/// The AuditEvent `action` (create, read, update, delete, execute) of an entry's action.
fn crud_code(action: Option<AuditAction>) -> &'static str {
    match action {
        Some(AuditAction::Create | AuditAction::UserAdd | AuditAction::Invite | AuditAction::TokenCreate) => "C",
        Some(AuditAction::Update) => "U",
        Some(AuditAction::Delete) => "D",
        Some(AuditAction::Read | AuditAction::Vread | AuditAction::History | AuditAction::SearchHit) => "R",
        _ => "E",
    }
}

/// FHIR R4 AuditEvent of one entry.
fn audit_event_json(
    seq: i64,
    e: &Entry,
    who: Option<&(String, String)>,
    break_glass_reason: Option<&str>,
    scope: &AuditScope,
    viewer: &str,
) -> Value {
    // A patient sees who (a clinician's name, or a role), not staff ids or addresses.
    let for_patient = matches!(scope, AuditScope::Patient(_));
    let action = AuditAction::parse(&e.action);
    let rest = action.is_some_and(AuditAction::is_record_access);
    let event_type = if rest {
        json!({"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"})
    } else if matches!(
        action,
        Some(AuditAction::Login | AuditAction::LoginFailed | AuditAction::Logout | AuditAction::Lockout)
    ) {
        json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114", "display": "User Authentication"})
    } else {
        json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110113", "display": "Security Alert"})
    };
    let crud = crud_code(action);
    let role = e.role.as_deref().unwrap_or(if e.actor.as_deref() == Some(confidant_audit::CONSOLE) {
        "admin"
    } else {
        "unknown"
    });
    let mut agent = json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]},
        "role": [{"text": role}],
        "requestor": true,
    });
    match (who, &e.actor) {
        (Some((reference, name)), _) => {
            agent["who"] = json!({"reference": reference, "display": name});
        }
        (None, Some(actor)) => {
            let display = match (role, actor.as_str()) {
                (_, confidant_audit::CONSOLE) => "system administrator (server console)".to_owned(),
                (_, confidant_policy::appointments::REMINDER_ACTOR) => "automatic appointment reminder".to_owned(),
                (_, confidant_policy::appointments::CANCEL_LINK_ACTOR) => "the cancel link of a reminder".to_owned(),
                _ if actor == viewer => "you".to_owned(),
                ("patient", _) => "another patient account".to_owned(),
                (r, _) => format!("{r} staff member"),
            };
            agent["who"] = if for_patient {
                json!({"display": display})
            } else {
                json!({"identifier": {"system": "urn:confidant:user", "value": actor}, "display": display})
            };
        }
        (None, None) => {
            agent["who"] = json!({"display": "unknown user"});
        }
    }
    if let Some(src) = e.source.as_ref().filter(|_| !for_patient) {
        agent["network"] = json!({"address": src, "type": "2"});
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": seq.to_string(),
        "type": event_type,
        "subtype": [{"system": ACTION_SYSTEM, "code": e.action}],
        "action": crud,
        "recorded": confidant_fhir::instant(e.time),
        "outcome": if e.outcome == Outcome::Success { "0" } else { "4" },
        "agent": [agent],
        "source": {"observer": {"display": "Confidant"}},
    });
    if e.outcome == Outcome::Denied {
        ev["outcomeDesc"] = json!("refused");
    }
    if e.purpose.as_deref() == Some(confidant_policy::appointments::REMINDER_PURPOSE) {
        ev["purposeOfEvent"] = json!([{"text": confidant_policy::appointments::REMINDER_PURPOSE}]);
    }
    if let Some(p) = &e.purpose
        && p.starts_with("break-glass")
    {
        let mut purpose = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]});
        if let Some(reason) = break_glass_reason {
            purpose["text"] = json!(reason);
        }
        ev["purposeOfEvent"] = json!([purpose]);
    }
    let mut entities = Vec::new();
    if let Some(r) = &e.resource {
        let reference = match e.version {
            Some(v) if r.contains('/') => format!("{r}/_history/{v}"),
            _ => r.clone(),
        };
        if r.contains('/') {
            entities.push(json!({"what": {"reference": reference}}));
        } else {
            entities.push(json!({"what": {"display": reference}}));
        }
    }
    if let Some(patient) = &e.patient {
        entities.push(json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }));
    }
    if let Some(t) = &e.target {
        entities.push(json!({"what": {"identifier": {"system": "urn:confidant:object", "value": t}}}));
    }
    if !entities.is_empty() {
        ev["entity"] = Value::Array(entities);
    }
    ev
}
