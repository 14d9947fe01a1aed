//! Writing and reading records: create, update, read, vread, history. Each
//! write is sealed by the keyring and stored with its audit entries in one
//! transaction; each read is audited before it is returned.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::records::Seen;
use confidant_policy::{self as policy, Action, Principal};
use confidant_store::{CareTeamMember, ORGANISATION, VersionRow};
use confidant_vault::DataKey;
use serde_json::Value;

use crate::transaction::{Pending, Prepared};
use crate::{Records, RecordsError, Result, Stored};

/// One answer for "no such patient" and "not your patient": ids are not probed.
const NOT_IN_CARE: &str = "subject refers to a Patient that does not exist or is not in your care";

impl Records {
    pub(crate) fn stamp(resource: &mut Value, id: &str, version: i64, now: i64) {
        if let Value::Object(m) = resource {
            m.insert("id".into(), Value::String(id.to_owned()));
            let meta = m.entry("meta").or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(meta) = meta {
                meta.insert("versionId".into(), Value::String(version.to_string()));
                meta.insert("lastUpdated".into(), Value::String(confidant_fhir::instant(now)));
            }
        }
    }

    pub(crate) async fn compartment_for(&self, rt: ResourceType, id: &str, subject: Option<&str>) -> Result<String> {
        match (rt, subject) {
            (ResourceType::Patient, _) => Ok(id.to_owned()),
            (ResourceType::Practitioner | ResourceType::Schedule, _) => Ok(ORGANISATION.to_owned()),
            // Whether the patient exists is checked with the caller's relationship
            // to them (`create`), so that both refusals take the same path.
            (_, Some(patient)) => Ok(patient.to_owned()),
            (_, None) => Err(RecordsError::Invalid("subject is required".into())),
        }
    }

    /// Create a resource with a new random id (FHIR create).
    pub async fn create(&self, p: &Principal, rt: ResourceType, resource: Value) -> Result<Stored> {
        self.create_with_team(p, rt, resource, None).await
    }

    /// [`Records::create`], putting `clinician` (a Practitioner id, already
    /// allowed by the caller) on a new patient's care team in the same
    /// transaction; without one, the policy's [`policy::records::care_team_of_new_record`].
    pub(crate) async fn create_with_team(
        &self,
        p: &Principal,
        rt: ResourceType,
        resource: Value,
        clinician: Option<&str>,
    ) -> Result<Stored> {
        self.permit(p, rt, Action::Write, AuditAction::Create).await?;
        self.create_permitted(p, rt, resource, clinician).await
    }

    /// [`Records::create_with_team`] once the role matrix has allowed the write
    /// (or, for what the server writes itself, the policy's own rule has: see `measures`).
    pub(crate) async fn create_permitted(
        &self,
        p: &Principal,
        rt: ResourceType,
        resource: Value,
        clinician: Option<&str>,
    ) -> Result<Stored> {
        let id = confidant_vault::random_id().map_err(RecordsError::Vault)?;
        let prepared = self.prepare_create(p, rt, resource, id, clinician, &mut Pending::default()).await?;
        self.commit_prepared(p, vec![prepared], Vec::new()).await?.pop().ok_or(RecordsError::Integrity)
    }

    /// Everything a create decides before it is sealed and stored: validation,
    /// the caller's relationship to the patient (refusals audited), the note
    /// rules, who the record is restricted to. `pending` holds what earlier
    /// entries of the same transaction create (a new patient and its care team),
    /// and learns what this one creates.
    pub(crate) async fn prepare_create(
        &self,
        p: &Principal,
        rt: ResourceType,
        mut resource: Value,
        id: String,
        clinician: Option<&str>,
        pending: &mut Pending,
    ) -> Result<Prepared> {
        let team_of =
            clinician.filter(|_| rt == ResourceType::Patient).or(policy::records::care_team_of_new_record(p, rt));
        let checked =
            confidant_fhir::validate(rt, &mut resource, self.clock.now_millis()).map_err(RecordsError::Invalid)?;
        if rt == ResourceType::DocumentReference {
            Self::set_author_of_new_note(p, &mut resource)?;
        }
        let compartment = self.compartment_for(rt, &id, checked.subject_patient.as_deref()).await?;
        // Writing into a patient's record needs the same relationship as reading it.
        let mut seen = Seen::Yes;
        if rt.has_subject() {
            let probe = VersionRow {
                resource_type: ResourceType::Patient.as_str().into(),
                id: compartment.clone(),
                version_id: 0,
                compartment: compartment.clone(),
                key_version: 0,
                last_updated: 0,
                body: Vec::new(),
                restricted_to: None,
                patient_visible: false,
            };
            // A patient who does not exist and one outside the caller's care are
            // refused alike: looked up, related, audited (timing tells nothing).
            // A patient an earlier entry of the same transaction creates exists, with its care team.
            let (exists, on_team) = match pending.care_team_of(&compartment) {
                Some(team) => {
                    seen = self.sees_new_patient(p, &probe, team);
                    (true, Some(p.practitioner_id.as_ref().is_some_and(|me| team.contains(me))))
                }
                None => {
                    seen = self.sees(p, &probe).await?;
                    (self.store.compartment_of("Patient", &compartment).await?.is_some(), None)
                }
            };
            if !exists || seen == Seen::No {
                // The refusal names the patient: it belongs in their access log (if they exist).
                let owner = if exists { compartment.clone() } else { ORGANISATION.to_owned() };
                let target =
                    VersionRow { resource_type: rt.as_str().into(), id: String::new(), compartment: owner, ..probe };
                self.audit_denied(p, AuditAction::Create, rt, Some(&target)).await;
                return Err(RecordsError::Unprocessable(NOT_IN_CARE.into()));
            }
            match on_team {
                Some(member) if policy::records::care_team_change_needs_membership(p, rt) => {
                    policy::records::may_change_care_teams(p, rt, member)?;
                }
                Some(_) => {}
                None => self.require_care_team_for_care_team_change(p, rt, &compartment).await?,
            }
        }
        if rt == ResourceType::DocumentReference {
            self.require_new_note_allowed(p, &compartment, &mut resource, &checked).await?;
        }
        // A clinician's new patient gets a care team: the token must allow writing one.
        if team_of.is_some() {
            Self::allow(p, ResourceType::CareTeam, Action::Write)?;
        }
        let access = Self::access_of(p, rt, &checked, &resource)?;
        let members = Self::members(&checked);
        match rt {
            ResourceType::Patient => pending.new_patient(&id, team_of),
            ResourceType::CareTeam => pending.add_to_team(&compartment, &members),
            _ => {}
        }
        Ok(Prepared {
            rt,
            id,
            version: 1,
            compartment,
            tokens: self.tokens(rt, &checked.index),
            resource,
            access,
            members,
            team_of: team_of.map(str::to_owned),
            seen,
            expected: None,
            if_match: None,
            now: self.clock.now_millis(),
        })
    }

    /// The stored form of one sealed version.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn version_row(
        rt: ResourceType,
        id: &str,
        version: i64,
        compartment: &str,
        key: &DataKey,
        now: i64,
        body: Vec<u8>,
        (restricted_to, patient_visible): (Option<String>, bool),
    ) -> VersionRow {
        VersionRow {
            resource_type: rt.as_str().into(),
            id: id.to_owned(),
            version_id: version,
            compartment: compartment.to_owned(),
            key_version: i64::from(key.version()),
            last_updated: now,
            body,
            restricted_to,
            patient_visible,
        }
    }

    /// The CareTeam (sealed, ready to store) that puts `practitioner` on a new patient's care.
    pub(crate) fn new_care_team_row(
        &self,
        patient: &str,
        practitioner: &str,
        key: &DataKey,
        now: i64,
    ) -> Result<(VersionRow, Vec<CareTeamMember>)> {
        let mut team = serde_json::json!({
            "resourceType": "CareTeam", "status": "active",
            "subject": {"reference": format!("Patient/{patient}")},
            "participant": [{"member": {"reference": format!("Practitioner/{practitioner}")}}]
        });
        let checked =
            confidant_fhir::validate(ResourceType::CareTeam, &mut team, now).map_err(RecordsError::Invalid)?;
        let id = confidant_vault::random_id().map_err(RecordsError::Vault)?;
        Self::stamp(&mut team, &id, 1, now);
        let body = self.seal_body(key, ResourceType::CareTeam, &id, 1, patient, &team)?;
        let row = Self::version_row(ResourceType::CareTeam, &id, 1, patient, key, now, body, (None, false));
        Ok((row, Self::members(&checked)))
    }

    /// The memberships a validated CareTeam makes, as the store keeps them.
    pub(crate) fn members(checked: &confidant_fhir::Validated) -> Vec<CareTeamMember> {
        checked
            .care_team_members
            .iter()
            .map(|m| CareTeamMember { practitioner_id: m.practitioner_id.clone(), starts_at: m.from, ends_at: m.until })
            .collect()
    }

    /// Replace a resource with a new version (FHIR update). With `if_match`,
    /// only if the current version is that one.
    pub async fn update(
        &self,
        p: &Principal,
        rt: ResourceType,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<Stored> {
        self.permit(p, rt, Action::Write, AuditAction::Update).await?;
        self.update_permitted(p, rt, id, resource, if_match).await
    }

    /// [`Records::update`] once the write is allowed (see [`Records::create_permitted`]).
    pub(crate) async fn update_permitted(
        &self,
        p: &Principal,
        rt: ResourceType,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<Stored> {
        let prepared = self.prepare_update(p, rt, id, resource, if_match).await?;
        self.commit_prepared(p, vec![prepared], Vec::new()).await?.pop().ok_or(RecordsError::Integrity)
    }

    /// Everything an update decides before it is sealed and stored (see [`Records::prepare_create`]).
    pub(crate) async fn prepare_update(
        &self,
        p: &Principal,
        rt: ResourceType,
        id: &str,
        mut resource: Value,
        if_match: Option<i64>,
    ) -> Result<Prepared> {
        let not_found = || RecordsError::NotFound(format!("{}/{id}", rt.as_str()));
        if !confidant_fhir::is_valid_id(id) {
            return Err(not_found());
        }
        let checked =
            confidant_fhir::validate(rt, &mut resource, self.clock.now_millis()).map_err(RecordsError::Invalid)?;
        // FHIR update: the body names the resource it replaces.
        match resource.get("id").and_then(Value::as_str) {
            Some(body_id) if body_id == id => {}
            Some(_) => {
                return Err(RecordsError::Invalid("the id in the body must match the id in the URL".into()));
            }
            None => {
                return Err(RecordsError::Invalid(
                    "id is required in the body of an update (the id in the URL)".into(),
                ));
            }
        }
        let (current, seen) = self.visible_head(p, rt, id, AuditAction::Update).await?;
        self.require_care_team_for_care_team_change(p, rt, &current.compartment).await?;
        if rt == ResourceType::DocumentReference {
            self.require_note_change_allowed(p, &current, &mut resource, &checked).await?;
        }
        if let Some(expected) = if_match
            && expected != current.version_id
        {
            return Err(RecordsError::PreconditionFailed { current: current.version_id });
        }
        let compartment = match rt {
            ResourceType::Patient => id.to_owned(),
            ResourceType::Practitioner | ResourceType::Schedule => ORGANISATION.to_owned(),
            _ => {
                if checked.subject_patient.as_deref() != Some(current.compartment.as_str()) {
                    return Err(RecordsError::Unprocessable(
                        "subject cannot change: a record stays with its patient".into(),
                    ));
                }
                current.compartment.clone()
            }
        };
        let access = Self::access_of(p, rt, &checked, &resource)?;
        Ok(Prepared {
            rt,
            id: id.to_owned(),
            version: current.version_id + 1,
            compartment,
            tokens: self.tokens(rt, &checked.index),
            resource,
            access,
            members: Self::members(&checked),
            team_of: None,
            seen,
            expected: Some(current.version_id),
            if_match,
            now: self.clock.now_millis(),
        })
    }

    /// The current version of a resource (FHIR read).
    pub async fn read(&self, p: &Principal, rt: ResourceType, id: &str) -> Result<Stored> {
        self.permit(p, rt, Action::Read, AuditAction::Read).await?;
        let (row, seen) = self.visible_head(p, rt, id, AuditAction::Read).await?;
        let entry = self.entry(p, AuditAction::Read, Outcome::Success, Some(&row), seen);
        let stored = self.open_record(row).await?;
        self.audited(p, &[entry], stored).await
    }

    /// One version of a resource (FHIR vread). Visible if the current version is.
    pub async fn vread(&self, p: &Principal, rt: ResourceType, id: &str, version: i64) -> Result<Stored> {
        self.permit(p, rt, Action::Read, AuditAction::Vread).await?;
        self.visible_head(p, rt, id, AuditAction::Vread).await?;
        let row = self
            .store
            .read_version(rt.as_str(), id, version)
            .await?
            .ok_or_else(|| RecordsError::NotFound(format!("{}/{id}/_history/{version}", rt.as_str())))?;
        let seen = self.sees(p, &row).await?;
        if seen == Seen::No {
            self.audit_denied(p, AuditAction::Vread, rt, Some(&row)).await;
            return Err(RecordsError::NotFound(format!("{}/{id}/_history/{version}", rt.as_str())));
        }
        let entry = self.entry(p, AuditAction::Vread, Outcome::Success, Some(&row), seen);
        let stored = self.open_record(row).await?;
        self.audited(p, &[entry], stored).await
    }

    /// Versions of a resource, newest first (FHIR history-instance), with the
    /// total number of versions. Versions the principal may not see (say, before
    /// a note was shared) are left out.
    pub async fn history(
        &self,
        p: &Principal,
        rt: ResourceType,
        id: &str,
        before: Option<i64>,
        count: i64,
    ) -> Result<(Vec<Stored>, i64)> {
        self.permit(p, rt, Action::Read, AuditAction::History).await?;
        let count = count.clamp(1, 100);
        let (head, _) = self.visible_head(p, rt, id, AuditAction::History).await?;
        let visibility = policy::visibility(p, rt, self.clock.now_millis());
        let rel = self.relationship(&visibility, &head.compartment).await?;
        // The total counts only versions the caller may see (a note's versions
        // from before it was shared stay uncounted as well as unshown).
        let mut total = 0;
        let base = VersionRow { body: Vec::new(), ..head };
        for (restricted_to, patient_visible) in self.store.version_access(rt.as_str(), id).await? {
            let row = VersionRow { restricted_to, patient_visible, ..base.clone() };
            total += i64::from(policy::sees(&visibility, &Self::access(rt, &row), rel));
        }
        let rows = self.store.history(rt.as_str(), id, before, count).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let seen = Self::seen(&visibility, &Self::access(rt, &row), rel);
            if seen != Seen::No {
                entries.push(self.entry(p, AuditAction::History, Outcome::Success, Some(&row), seen));
                out.push(self.open_record(row).await?);
            }
        }
        self.audited(p, &entries, (out, total)).await
    }
}
