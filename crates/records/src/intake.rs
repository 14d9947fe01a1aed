//! Intake: registering a patient *with* a clinician, and booking one with a
//! clinician who is not yet on the patient's care team. Either puts the
//! clinician on the care team (audited), so that they see the patient without
//! break-glass; who may do that is [`policy::records::may_assign_on_intake`].

use confidant_audit::Action as AuditAction;
use confidant_fhir::ResourceType;
use confidant_policy::{self as policy, Action, Principal, Role};
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result, SearchRequest, Stored};

impl Records {
    /// The Practitioner ids of active clinician accounts: whom intake may put
    /// on a care team. Ids only, no names.
    pub async fn clinician_practitioners(&self) -> Result<Vec<String>> {
        let users = self.store.users().await?;
        Ok(users
            .into_iter()
            .filter(|u| u.role == Role::Clinician.as_str() && u.disabled_at.is_none())
            .filter_map(|u| u.practitioner_id)
            .collect())
    }

    /// May `p` put `practitioner` (a Practitioner id) on a care team through
    /// intake? Refusals are audited.
    async fn permit_intake(&self, p: &Principal, practitioner: &str, audit: AuditAction) -> Result<()> {
        self.permit(p, ResourceType::CareTeam, Action::Write, audit).await?;
        let is_clinician = self.clinician_practitioners().await?.iter().any(|c| c == practitioner);
        if let Err(refused) = policy::records::may_assign_on_intake(p, is_clinician) {
            self.audit_denied(p, audit, ResourceType::CareTeam, None).await;
            return Err(refused.into());
        }
        Ok(())
    }

    /// Register a patient with a clinician: the Patient and a CareTeam with
    /// that clinician, in one transaction, each with its audit entry.
    pub async fn register_with_clinician(&self, p: &Principal, patient: Value, practitioner: &str) -> Result<Stored> {
        self.permit_intake(p, practitioner, AuditAction::Create).await?;
        self.create_with_team(p, ResourceType::Patient, patient, Some(practitioner)).await
    }

    /// Before booking `patient` with `practitioner`: must they be put on the
    /// care team, and may `p` do it? Checked before the appointment is written,
    /// so that a refusal books nothing. A clinician adds someone only as a
    /// member of the care team (never on the strength of a break-glass).
    pub async fn check_booking_care_team(&self, p: &Principal, patient: &str, practitioner: &str) -> Result<bool> {
        if !confidant_fhir::is_valid_id(patient) {
            return Err(RecordsError::NotFound(format!("Patient/{patient}")));
        }
        let (on_team, _) = self.store.relationship(practitioner, "", patient, self.clock.now_millis()).await?;
        if on_team {
            return Ok(false);
        }
        self.permit_intake(p, practitioner, AuditAction::Update).await?;
        self.require_care_team_for_care_team_change(p, ResourceType::CareTeam, patient).await?;
        Ok(true)
    }

    /// After booking: put `practitioner` on `patient`'s active care team (made
    /// if there is none) unless they are already on it. Whether they were added.
    pub async fn book_onto_care_team(&self, p: &Principal, patient: &str, practitioner: &str) -> Result<bool> {
        self.permit_intake(p, practitioner, AuditAction::Update).await?;
        if !confidant_fhir::is_valid_id(patient) {
            return Err(RecordsError::NotFound(format!("Patient/{patient}")));
        }
        let (on_team, _) = self.store.relationship(practitioner, "", patient, self.clock.now_millis()).await?;
        if on_team {
            return Ok(false);
        }
        let member = json!({"member": {"reference": format!("Practitioner/{practitioner}")}});
        let req = SearchRequest { params: vec![("patient".to_owned(), patient.to_owned())], count: 10, after: None };
        let teams = self.search(p, ResourceType::CareTeam, &req).await?.entries;
        match teams.into_iter().find(|t| matches!(t.resource["status"].as_str(), None | Some("active"))) {
            Some(t) => {
                let mut team = t.resource;
                match team["participant"].as_array_mut() {
                    Some(list) => list.push(member),
                    None => team["participant"] = json!([member]),
                }
                self.update(p, ResourceType::CareTeam, &t.id, team, Some(t.version_id)).await?;
            }
            None => {
                let team = json!({
                    "resourceType": "CareTeam", "status": "active",
                    "subject": {"reference": format!("Patient/{patient}")},
                    "participant": [member],
                });
                self.create(p, ResourceType::CareTeam, team).await?;
            }
        }
        Ok(true)
    }
}
