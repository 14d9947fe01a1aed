//! The records service's own decisions, beyond the role matrix and
//! visibility of the crate root: on what grounds a record is seen,
//! break-glass, psychotherapy notes, care-team changes, the incident report
//! and alerts. Pure functions; the records service asks, tests enumerate
//! every cell (role × case).

use confidant_fhir::ResourceType;

use crate::{Principal, RecordAccess, Relationship, Role, Visibility, sees};

/// Why the records service refuses. The message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub &'static str);

/// Whether the principal sees a record, and on what grounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    No,
    Yes,
    /// Only thanks to an active break-glass: the audit entry says so.
    ByBreakGlass,
}

/// Does a principal with `visibility` and relationship `rel` see `access`,
/// and is it only thanks to a break-glass?
pub fn seen(visibility: &Visibility, access: &RecordAccess<'_>, rel: Relationship) -> Seen {
    if !sees(visibility, access, rel) {
        Seen::No
    } else if rel.break_glass && !sees(visibility, access, Relationship { break_glass: false, ..rel }) {
        Seen::ByBreakGlass
    } else {
        Seen::Yes
    }
}

/// Only a clinician (linked to their Practitioner) may open a record outside
/// their care teams by break-glass.
pub fn may_break_glass(p: &Principal) -> Result<(), Refused> {
    if p.training == crate::TrainingStanding::Blocked {
        return Err(Refused("complete your security training first: /training"));
    }
    match (p.role, &p.practitioner_id) {
        (Role::Clinician, Some(_)) => Ok(()),
        _ => Err(Refused("only a clinician may use break-glass")),
    }
}

/// Only a clinician (linked to their Practitioner) may write a psychotherapy note.
pub fn may_write_psychotherapy_note(p: &Principal) -> Result<(), Refused> {
    match (p.role, &p.practitioner_id) {
        (Role::Clinician, Some(_)) => Ok(()),
        _ => Err(Refused("only a clinician may write a psychotherapy note")),
    }
}

/// Does changing a resource of `rt` for a patient need `p` to be on one of
/// their care teams (see [`may_change_care_teams`])? Only for a clinician
/// changing a CareTeam.
pub fn care_team_change_needs_membership(p: &Principal, rt: ResourceType) -> bool {
    rt == ResourceType::CareTeam && p.role == Role::Clinician
}

/// Care-team membership grants access, so a clinician may change a patient's
/// care teams only as a member of one (`on_care_team`) — never on the strength
/// of a break-glass, which would turn a one-hour exception into permanent
/// access. Reception and admins assign care teams; other types are unaffected.
pub fn may_change_care_teams(p: &Principal, rt: ResourceType, on_care_team: bool) -> Result<(), Refused> {
    if !care_team_change_needs_membership(p, rt) || on_care_team {
        Ok(())
    } else {
        Err(Refused("only a member of a patient's care team (or reception, or an admin) may change its care teams"))
    }
}

/// A clinician who registers a patient is put on that patient's care team (in
/// the same transaction: never a patient nobody can see). The practitioner to
/// put on it, if creating `rt` makes one.
pub fn care_team_of_new_record(p: &Principal, rt: ResourceType) -> Option<&str> {
    match (rt, p.role, &p.practitioner_id) {
        (ResourceType::Patient, Role::Clinician, Some(practitioner)) => Some(practitioner),
        _ => None,
    }
}

/// Who may put whom on a patient's care team through intake: registering a
/// patient *with* a clinician, or booking one with them. Reception may put any
/// clinician; a clinician (linked to their Practitioner) may put themself or a
/// colleague (booking already needs the patient in their care, and a member
/// may change the care team anyway); nobody else, and never a practitioner
/// that is not an active clinician's (`chosen_is_clinician`).
pub fn may_assign_on_intake(p: &Principal, chosen_is_clinician: bool) -> Result<(), Refused> {
    let assigner = matches!((p.role, &p.practitioner_id), (Role::Reception, _) | (Role::Clinician, Some(_)));
    if !assigner {
        Err(Refused("only reception or a clinician may put a clinician on a care team at registration or booking"))
    } else if !chosen_is_clinician {
        Err(Refused("the practitioner chosen is not an active clinician"))
    } else {
        Ok(())
    }
}

/// The incident report covers every patient: auditors only (with a session,
/// or a token that may read the audit log).
pub fn may_read_incident_report(p: &Principal) -> Result<(), Refused> {
    match crate::audit_scope(p) {
        Ok(crate::AuditScope::All) => Ok(()),
        _ => Err(Refused("only auditors may read the incident report")),
    }
}

/// Closing an alert is a person's decision: a login session, not an API
/// token (after [`crate::may_handle_alerts`]).
pub fn may_acknowledge_alerts(p: &Principal) -> Result<(), Refused> {
    match p.scopes {
        None => Ok(()),
        Some(_) => Err(Refused("acknowledging an alert needs a login session, not an API token")),
    }
}

/// Nobody closes an alert about themselves (`subject`: the user it is about).
pub fn may_acknowledge_alert_about(p: &Principal, subject: Option<&str>) -> Result<(), Refused> {
    if subject == Some(p.user_id.as_str()) {
        Err(Refused("an alert about your own account is for someone else to acknowledge"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scopes, visibility};

    /// `u1` of `role`; a clinician is `pr1`, a patient `pa1`.
    fn principal(role: Role) -> Principal {
        let linked = |r: Role, id: &str| (role == r).then(|| id.to_owned());
        let (practitioner_id, patient_id) = (linked(Role::Clinician, "pr1"), linked(Role::Patient, "pa1"));
        Principal {
            user_id: "u1".into(),
            role,
            practitioner_id,
            patient_id,
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    fn unlinked(role: Role) -> Principal {
        Principal { practitioner_id: None, patient_id: None, ..principal(role) }
    }

    fn token(role: Role, scopes: &str) -> Principal {
        Principal { scopes: Some(Scopes::parse(scopes).unwrap()), ..principal(role) }
    }

    /// Every role, linked and unlinked: clinicians with a Practitioner only.
    #[test]
    fn break_glass_and_psychotherapy_notes_are_for_linked_clinicians() {
        for role in Role::ALL {
            let linked = role == Role::Clinician;
            assert_eq!(may_break_glass(&principal(role)).is_ok(), linked, "{role}");
            assert_eq!(may_write_psychotherapy_note(&principal(role)).is_ok(), linked, "{role}");
            assert!(may_break_glass(&unlinked(role)).is_err(), "unlinked {role}");
            assert!(may_write_psychotherapy_note(&unlinked(role)).is_err(), "unlinked {role}");
        }
        assert_eq!(
            may_break_glass(&principal(Role::Admin)).unwrap_err().to_string(),
            "only a clinician may use break-glass"
        );
        assert_eq!(
            may_write_psychotherapy_note(&principal(Role::Reception)).unwrap_err().to_string(),
            "only a clinician may write a psychotherapy note"
        );
    }

    /// Every role × every type × on a care team or not.
    #[test]
    fn only_care_team_members_among_clinicians_change_care_teams() {
        let mut cells = 0;
        for role in Role::ALL {
            for rt in ResourceType::ALL {
                for member in [false, true] {
                    let p = principal(role);
                    let needs = role == Role::Clinician && rt == ResourceType::CareTeam;
                    assert_eq!(care_team_change_needs_membership(&p, rt), needs, "{role} {rt:?}");
                    let allowed = !needs || member;
                    assert_eq!(may_change_care_teams(&p, rt, member).is_ok(), allowed, "{role} {rt:?} {member}");
                    cells += 1;
                }
            }
        }
        assert_eq!(cells, Role::ALL.len() * ResourceType::ALL.len() * 2);
    }

    /// Every role × every type: a clinician's new patient, and nothing else, gets their care team.
    #[test]
    fn a_clinicians_new_patient_gets_their_care_team() {
        for role in Role::ALL {
            for rt in ResourceType::ALL {
                let expected = (role == Role::Clinician && rt == ResourceType::Patient).then_some("pr1");
                assert_eq!(care_team_of_new_record(&principal(role), rt), expected, "{role} {rt:?}");
                assert_eq!(care_team_of_new_record(&unlinked(role), rt), None, "unlinked {role} {rt:?}");
            }
        }
    }

    /// Every role × linked or not × the chosen practitioner a clinician or not.
    #[test]
    fn reception_and_clinicians_put_clinicians_on_care_teams_at_intake() {
        let mut cells = 0;
        for role in Role::ALL {
            for linked in [true, false] {
                for chosen_is_clinician in [true, false] {
                    let p = if linked { principal(role) } else { unlinked(role) };
                    let assigner = role == Role::Reception || (role == Role::Clinician && linked);
                    let result = may_assign_on_intake(&p, chosen_is_clinician);
                    assert_eq!(
                        result.is_ok(),
                        assigner && chosen_is_clinician,
                        "{role} {linked} {chosen_is_clinician}"
                    );
                    if !assigner {
                        assert!(result.unwrap_err().0.starts_with("only reception or a clinician"), "{role}");
                    } else if !chosen_is_clinician {
                        assert_eq!(result.unwrap_err().0, "the practitioner chosen is not an active clinician");
                    }
                    cells += 1;
                }
            }
        }
        assert_eq!(cells, Role::ALL.len() * 4);
    }

    /// Every role, with a session, a token that may read the log, and one that may not.
    #[test]
    fn incident_reports_are_for_auditors() {
        for role in Role::ALL {
            let auditor = role == Role::Auditor;
            assert_eq!(may_read_incident_report(&principal(role)).is_ok(), auditor, "{role}");
            assert_eq!(may_read_incident_report(&token(role, "user/*.read")).is_ok(), auditor, "{role} token");
            assert!(may_read_incident_report(&token(role, "user/Patient.read")).is_err(), "{role} narrow token");
        }
    }

    /// Every role × session or token × about oneself or another.
    #[test]
    fn alerts_are_acknowledged_by_a_person_about_someone_else() {
        for role in Role::ALL {
            assert!(may_acknowledge_alerts(&principal(role)).is_ok(), "{role}");
            assert!(may_acknowledge_alerts(&token(role, "user/*.*")).is_err(), "{role} token");
            for (subject, allowed) in [(None, true), (Some("u2"), true), (Some("u1"), false)] {
                assert_eq!(
                    may_acknowledge_alert_about(&principal(role), subject).is_ok(),
                    allowed,
                    "{role} {subject:?}"
                );
            }
        }
    }

    /// Seen by care, by break-glass only, or not at all: every relationship.
    #[test]
    fn break_glass_is_named_only_when_it_is_the_reason() {
        let v = visibility(&principal(Role::Clinician), ResourceType::Encounter, 0);
        let record = RecordAccess {
            resource_type: ResourceType::Encounter,
            patient: Some("pa1"),
            restricted_to: None,
            patient_visible: false,
        };
        for (care_team, break_glass, expected) in [
            (false, false, Seen::No),
            (false, true, Seen::ByBreakGlass),
            (true, false, Seen::Yes),
            (true, true, Seen::Yes),
        ] {
            assert_eq!(
                seen(&v, &record, Relationship { care_team, break_glass }),
                expected,
                "{care_team} {break_glass}"
            );
        }
        // A psychotherapy note of another clinician: only break-glass opens it.
        let note =
            RecordAccess { resource_type: ResourceType::DocumentReference, restricted_to: Some("other"), ..record };
        let v = visibility(&principal(Role::Clinician), ResourceType::DocumentReference, 0);
        assert_eq!(seen(&v, &note, Relationship { care_team: true, break_glass: false }), Seen::No);
        assert_eq!(seen(&v, &note, Relationship { care_team: true, break_glass: true }), Seen::ByBreakGlass);
        // Staff without a care relationship to consult see by role.
        let admin = visibility(&principal(Role::Admin), ResourceType::CareTeam, 0);
        let team = RecordAccess { resource_type: ResourceType::CareTeam, ..record };
        assert_eq!(seen(&admin, &team, Relationship { care_team: false, break_glass: false }), Seen::Yes);
    }
}
