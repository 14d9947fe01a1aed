//! Conditional create and update (FHIR `If-None-Exist`, `POST type?criteria`,
//! `PUT type?criteria`): the criteria are matched on blind-indexed parameters
//! across every record of the type — not only those the caller sees, or a
//! record outside their care would be silently duplicated — and then:
//!
//! * no match: the resource is created;
//! * one match the caller may see: create answers it (audited as a search
//!   hit), update replaces it (audited as an update);
//! * more than one match, or a match outside the caller's care: refused
//!   with 412, one text for both, the patient never named; each match the
//!   caller may not see is audited as a refused access naming its patient
//!   (so it is in their access log and counts toward the outside-care rule).
//!
//! Conditional writes of one type are serialised in this process, so that two
//! at once cannot both find nothing and both create.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_fhir::{ResourceType, SearchParam, search_params};
use confidant_policy::records::Seen;
use confidant_policy::{Action, Principal};
use confidant_store::VersionRow;
use serde_json::Value;

use crate::{Conditional, Records, RecordsError, Result, Stored};

/// The one answer for "several match" and "one matches that you may not see".
pub const CONDITION_NOT_MET: &str = "the conditions match more than one record, or a record outside your care: \
     nothing was written. Make the conditions more specific (identifier=system|value), or ask the patient's care team";

impl Records {
    /// Create `resource` unless a record of `rt` matches `criteria` (FHIR conditional create).
    pub async fn create_conditional(
        &self,
        p: &Principal,
        rt: ResourceType,
        resource: Value,
        criteria: &[(String, String)],
    ) -> Result<Conditional> {
        self.permit(p, rt, Action::Write, AuditAction::Create).await?;
        let lock = self.bookings.of(&format!("conditional/{}", rt.as_str()));
        let _guard = lock.lock().await;
        match self.conditional_match(p, rt, criteria, AuditAction::Create).await? {
            None => Ok(Conditional::Created(self.write_any(p, rt, None, resource, None).await?)),
            Some((row, seen)) => {
                let entry = self.entry(p, AuditAction::SearchHit, Outcome::Success, Some(&row), seen);
                let stored = self.open_record(row).await?;
                Ok(Conditional::Existing(self.audited(p, &[entry], stored).await?))
            }
        }
    }

    /// Update the one record of `rt` matching `criteria` with `resource`, or
    /// create it if none matches (FHIR conditional update).
    pub async fn update_conditional(
        &self,
        p: &Principal,
        rt: ResourceType,
        mut resource: Value,
        criteria: &[(String, String)],
        if_match: Option<i64>,
    ) -> Result<Conditional> {
        self.permit(p, rt, Action::Write, AuditAction::Update).await?;
        let lock = self.bookings.of(&format!("conditional/{}", rt.as_str()));
        let _guard = lock.lock().await;
        let body_id = resource.get("id").and_then(Value::as_str).map(str::to_owned);
        match self.conditional_match(p, rt, criteria, AuditAction::Update).await? {
            None => {
                if body_id.is_some() || if_match.is_some() {
                    return Err(RecordsError::Unprocessable(
                        "no record matches the conditions, and this server assigns ids itself: leave id and \
                         If-Match out to create one"
                            .into(),
                    ));
                }
                Ok(Conditional::Created(self.write_any(p, rt, None, resource, None).await?))
            }
            Some((row, _)) => {
                if body_id.as_deref().is_some_and(|id| id != row.id) {
                    return Err(RecordsError::Invalid(
                        "the id in the body is not the id of the record the conditions match".into(),
                    ));
                }
                if let Value::Object(m) = &mut resource {
                    m.insert("id".into(), Value::String(row.id.clone()));
                }
                Ok(Conditional::Updated(self.write_any(p, rt, Some(&row.id), resource, if_match).await?))
            }
        }
    }

    /// Create (no `id`) or update, as the type writes (appointments are checked for double bookings).
    async fn write_any(
        &self,
        p: &Principal,
        rt: ResourceType,
        id: Option<&str>,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<Stored> {
        match (rt, id) {
            (ResourceType::Appointment, _) => self.write_appointment(p, id, resource, if_match).await,
            (_, None) => self.create(p, rt, resource).await,
            (_, Some(id)) => self.update(p, rt, id, resource, if_match).await,
        }
    }

    /// The one record matching `criteria` that `p` sees, `None` if none
    /// matches, else [`RecordsError::ConditionFailed`] (see the module).
    pub(crate) async fn conditional_match(
        &self,
        p: &Principal,
        rt: ResourceType,
        criteria: &[(String, String)],
        action: AuditAction,
    ) -> Result<Option<(VersionRow, Seen)>> {
        if criteria.is_empty() {
            return Err(RecordsError::Invalid("a conditional request needs at least one search parameter".into()));
        }
        for (name, _) in criteria {
            let base = name.split(':').next().unwrap_or("");
            if search_params(rt).iter().any(|sp| sp.name() == base && matches!(sp, SearchParam::Name { .. })) {
                return Err(RecordsError::NotSupported(format!(
                    "a conditional request matches exact values (identifier, birthdate, email, phone, _id): \
                     '{base}' matches the start of names"
                )));
            }
        }
        // Every record of the type, not only those the caller sees (see the module).
        let mut all = Vec::new();
        let long = self.parameter_criteria(rt, criteria, &mut all)?;
        if !long.is_empty() {
            return Err(RecordsError::NotSupported("a conditional request matches exact values only".into()));
        }
        let (rows, _) = self.store.search(rt.as_str(), &all, None, 2).await?;
        let mut found = Vec::with_capacity(rows.len());
        for (row, _) in rows {
            let seen = self.sees(p, &row).await?;
            found.push((row, seen));
        }
        match found.len() {
            0 => Ok(None),
            1 if found[0].1 != Seen::No => Ok(found.pop()),
            _ => {
                for (row, _) in found.iter().filter(|(_, seen)| *seen == Seen::No) {
                    self.audit_denied(p, action, rt, Some(row)).await;
                }
                Err(RecordsError::ConditionFailed(CONDITION_NOT_MET.into()))
            }
        }
    }
}
