//! Writing and reading records: create, update, read, vread, history. Each
//! write is sealed by the keyring and stored with its audit entries in one
//! transaction; each read is audited before it is returned.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::records::Seen;
use confidant_policy::{self as policy, Action, Principal};
use confidant_store::{CareTeamMember, ORGANISATION, StoreError, VersionRow, Write};
use confidant_vault::DataKey;
use serde_json::Value;

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
        mut resource: Value,
        clinician: Option<&str>,
    ) -> Result<Stored> {
        let team_of =
            clinician.filter(|_| rt == ResourceType::Patient).or(policy::records::care_team_of_new_record(p, rt));
        let checked =
            confidant_fhir::validate(rt, &mut resource, self.clock.now_millis()).map_err(RecordsError::Invalid)?;
        if rt == ResourceType::DocumentReference {
            Self::set_author_of_new_note(p, &mut resource)?;
        }
        let id = confidant_vault::random_id().map_err(RecordsError::Vault)?;
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
            let exists = self.store.compartment_of("Patient", &compartment).await?.is_some();
            seen = self.sees(p, &probe).await?;
            if !exists || seen == Seen::No {
                // The refusal names the patient: it belongs in their access log (if they exist).
                let owner = if exists { compartment.clone() } else { ORGANISATION.to_owned() };
                let target =
                    VersionRow { resource_type: rt.as_str().into(), id: String::new(), compartment: owner, ..probe };
                self.audit_denied(p, AuditAction::Create, rt, Some(&target)).await;
                return Err(RecordsError::Unprocessable(NOT_IN_CARE.into()));
            }
            self.require_care_team_for_care_team_change(p, rt, &compartment).await?;
        }
        if rt == ResourceType::DocumentReference {
            self.require_new_note_allowed(p, &compartment, &mut resource, &checked).await?;
        }
        // A clinician's new patient gets a care team: the token must allow writing one.
        if team_of.is_some() {
            Self::allow(p, ResourceType::CareTeam, Action::Write)?;
        }
        let (restricted_to, patient_visible) = Self::access_of(p, rt, &checked, &resource)?;
        let now = self.clock.now_millis();
        let members = Self::members(&checked);
        // Sealed again, once, if a key rotation replaced the patient's key meanwhile.
        let mut retried = false;
        let (key, new_key, audit) = loop {
            let (key, new_key) = if rt == ResourceType::Patient {
                let (key, row) = self.keyring.new_compartment_key(&compartment)?;
                (key, Some(row))
            } else {
                (self.keyring.current_key(&compartment).await?, None)
            };
            Self::stamp(&mut resource, &id, 1, now);
            let body = self.seal_body(&key, rt, &id, 1, &compartment, &resource)?;
            let row =
                Self::version_row(rt, &id, 1, &compartment, &key, now, body, (restricted_to.clone(), patient_visible));
            let care_team = (rt == ResourceType::CareTeam).then_some(members.as_slice());
            let tokens = self.tokens(rt, &checked.index);
            let write = Write { row: &row, tokens: &tokens, new_key: new_key.as_ref(), care_team };
            // A clinician who registers a patient is put on that patient's care team,
            // in the same transaction: never a patient that nobody can see.
            let team = match team_of {
                Some(practitioner) => Some(self.new_care_team_row(&id, practitioner, &key, now)?),
                None => None,
            };
            let mut audit = vec![self.entry(p, AuditAction::Create, Outcome::Success, Some(&row), seen).to_row()];
            let stored = match &team {
                Some((team_row, members)) => {
                    audit.push(self.entry(p, AuditAction::Create, Outcome::Success, Some(team_row), seen).to_row());
                    let team_write = Write { row: team_row, tokens: &[], new_key: None, care_team: Some(members) };
                    self.store.create_all(&[write, team_write], &audit).await
                }
                None => self.store.create_all(&[write], &audit).await,
            };
            match stored {
                Ok(()) => break (key, new_key, audit),
                Err(StoreError::StaleKey) if !retried => {
                    retried = true;
                    self.keyring.forget_current_key(&compartment);
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.committed(Some(p), &audit).await;
        if let Some(k) = new_key {
            self.keyring.stored_new_key(&compartment, k.version, key);
        }
        if rt == ResourceType::DocumentReference {
            self.note_saved(&id, &compartment, &resource).await;
        }
        Ok(Stored { resource_type: rt, id, version_id: 1, last_updated: now, resource })
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
        mut resource: Value,
        if_match: Option<i64>,
    ) -> Result<Stored> {
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
        let (restricted_to, patient_visible) = Self::access_of(p, rt, &checked, &resource)?;
        let version = current.version_id + 1;
        let now = self.clock.now_millis();
        Self::stamp(&mut resource, id, version, now);
        let members = Self::members(&checked);
        let care_team = (rt == ResourceType::CareTeam).then_some(members.as_slice());
        let tokens = self.tokens(rt, &checked.index);
        // Sealed again, once, if a key rotation replaced the patient's key meanwhile.
        let mut retried = false;
        loop {
            let key = self.keyring.current_key(&compartment).await?;
            let body = self.seal_body(&key, rt, id, version, &compartment, &resource)?;
            let row = Self::version_row(
                rt,
                id,
                version,
                &compartment,
                &key,
                now,
                body,
                (restricted_to.clone(), patient_visible),
            );
            let write = Write { row: &row, tokens: &tokens, new_key: None, care_team };
            let audit = [self.entry(p, AuditAction::Update, Outcome::Success, Some(&row), seen).to_row()];
            match self.store.update(write, current.version_id, &audit).await {
                Ok(()) => {
                    self.committed(Some(p), &audit).await;
                    if rt == ResourceType::DocumentReference {
                        self.note_saved(id, &compartment, &resource).await;
                    }
                    return Ok(Stored {
                        resource_type: rt,
                        id: id.to_owned(),
                        version_id: version,
                        last_updated: now,
                        resource,
                    });
                }
                Err(StoreError::StaleKey) if !retried => {
                    retried = true;
                    self.keyring.forget_current_key(&compartment);
                }
                Err(StoreError::Conflict) if if_match.is_some() => {
                    let now_at = self.store.read(rt.as_str(), id).await?.map(|r| r.version_id).unwrap_or(version);
                    return Err(RecordsError::PreconditionFailed { current: now_at });
                }
                Err(e) => return Err(e.into()),
            }
        }
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
