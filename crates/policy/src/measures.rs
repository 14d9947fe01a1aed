//! Outcome measures (PHQ-9, GAD-7, CORE-10): who sends one, who answers it,
//! who acknowledges a risk flag. Which patient's records a caller reaches is
//! the visibility rule's (a clinician: their care; a patient: their own); these
//! say which roles may write at all. Answers and scores are never written
//! through the FHIR API (`role_permits` gives reads only): the records
//! service writes them here, after checking the answers and scoring them.

use confidant_fhir::ResourceType;

use crate::{Action, Denied, Principal, Role};

fn scoped(p: &Principal, rt: ResourceType, what: &'static str) -> Result<(), Denied> {
    match &p.scopes {
        Some(s) if !s.permits(rt, Action::Write) => Err(Denied::Scope { action: "write", resource: what }),
        _ => Ok(()),
    }
}

fn linked(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Clinician if p.practitioner_id.is_none() => Err(Denied::Unlinked("Practitioner")),
        Role::Patient if p.patient_id.is_none() => Err(Denied::Unlinked("Patient")),
        _ => Ok(()),
    }
}

/// Who sends a measure to a patient (or starts one to fill in during the session): clinicians.
pub fn may_send_measure(p: &Principal) -> Result<(), Denied> {
    if p.role != Role::Clinician {
        return Err(Denied::Role { role: p.role, action: "send", resource: "outcome measures" });
    }
    scoped(p, ResourceType::QuestionnaireResponse, "QuestionnaireResponse")?;
    linked(p)
}

/// Who answers a pending measure: the patient it was sent to (in the portal)
/// or a clinician in their care (during the session). `pending`: the response
/// is still in progress; a completed one is locked.
pub fn may_answer_measure(p: &Principal, pending: bool) -> Result<(), Denied> {
    if !matches!(p.role, Role::Patient | Role::Clinician) {
        return Err(Denied::Role { role: p.role, action: "answer", resource: "outcome measures" });
    }
    scoped(p, ResourceType::QuestionnaireResponse, "QuestionnaireResponse")?;
    linked(p)?;
    if !pending {
        return Err(Denied::Locked("this questionnaire has been completed and cannot be changed"));
    }
    Ok(())
}

/// Who acknowledges a risk flag (a PHQ-9 item 9 or CORE-10 item 6 answered above 0): clinicians.
pub fn may_acknowledge_flag(p: &Principal) -> Result<(), Denied> {
    if p.role != Role::Clinician {
        return Err(Denied::Role { role: p.role, action: "acknowledge", resource: "measure flags" });
    }
    scoped(p, ResourceType::Observation, "Observation")?;
    linked(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scopes;

    fn principal(role: Role) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            practitioner_id: (role == Role::Clinician).then(|| "pr1".into()),
            patient_id: (role == Role::Patient).then(|| "pa1".into()),
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    /// Every role × pending or not, for each decision.
    #[test]
    fn every_cell() {
        for role in Role::ALL {
            let p = principal(role);
            assert_eq!(may_send_measure(&p).is_ok(), role == Role::Clinician, "send {role}");
            assert_eq!(may_acknowledge_flag(&p).is_ok(), role == Role::Clinician, "ack {role}");
            for pending in [false, true] {
                let expected = pending && matches!(role, Role::Patient | Role::Clinician);
                assert_eq!(may_answer_measure(&p, pending).is_ok(), expected, "answer {role} {pending}");
            }
        }
        assert!(matches!(may_answer_measure(&principal(Role::Patient), false), Err(Denied::Locked(_))));
    }

    #[test]
    fn tokens_need_the_write_scope_and_accounts_a_link() {
        let mut p = principal(Role::Clinician);
        p.scopes = Some(Scopes::parse("user/*.read").unwrap());
        assert!(may_send_measure(&p).is_err());
        assert!(may_answer_measure(&p, true).is_err());
        assert!(may_acknowledge_flag(&p).is_err());
        p.scopes = Some(Scopes::parse("user/QuestionnaireResponse.write user/Observation.write").unwrap());
        assert!(may_send_measure(&p).is_ok() && may_acknowledge_flag(&p).is_ok());
        let mut unlinked = principal(Role::Patient);
        unlinked.patient_id = None;
        assert_eq!(may_answer_measure(&unlinked, true), Err(Denied::Unlinked("Patient")));
        let mut unlinked = principal(Role::Clinician);
        unlinked.practitioner_id = None;
        assert_eq!(may_send_measure(&unlinked), Err(Denied::Unlinked("Practitioner")));
    }

    /// Reads only through the FHIR API: nobody writes answers or scores there.
    #[test]
    fn answers_and_scores_are_read_only_in_the_role_matrix() {
        for role in Role::ALL {
            for rt in [ResourceType::QuestionnaireResponse, ResourceType::Observation] {
                assert!(!crate::role_permits(role, rt, Action::Write), "{role} {rt:?}");
                let reads = matches!(role, Role::Clinician | Role::Patient);
                assert_eq!(crate::role_permits(role, rt, Action::Read), reads, "{role} {rt:?}");
            }
        }
    }
}
