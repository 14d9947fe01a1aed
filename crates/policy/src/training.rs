//! Staff security training (issue 16): what a staff member's training
//! standing means for access, and who may see and manage the clinic's
//! training. The standing itself (which modules are done, due, overdue) is
//! computed by `confidant-training` where the principal is built (identity);
//! here it is only turned into a decision.

use confidant_fhir::ResourceType;

use crate::{Denied, Principal, Role};

/// `[training] enforce`: what missing training does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Nothing: no banner, no block.
    Off,
    /// A banner on every page until done (the default).
    #[default]
    Warn,
    /// The banner, and patient data refused once a module is overdue (past the grace period).
    Block,
}

impl Enforcement {
    pub fn parse(s: &str) -> Option<Enforcement> {
        match s {
            "off" => Some(Enforcement::Off),
            "warn" => Some(Enforcement::Warn),
            "block" => Some(Enforcement::Block),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Off => "off",
            Enforcement::Warn => "warn",
            Enforcement::Block => "block",
        }
    }
}

/// Where a principal stands with the training required of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainingStanding {
    /// Not asked (patients, the console, `enforce = "off"`).
    #[default]
    NotRequired,
    /// Everything required is done.
    Current,
    /// Something is due: the banner; nothing is refused.
    Due,
    /// Overdue under `enforce = "block"`: patient data is refused until done.
    Blocked,
}

impl TrainingStanding {
    /// Is the training banner shown?
    pub fn shows_banner(self) -> bool {
        matches!(self, TrainingStanding::Due | TrainingStanding::Blocked)
    }
}

/// The standing of `role` under `enforce`, given whether anything required
/// of them is `due` (or due soon) and whether anything is `overdue`.
pub fn training_standing(role: Role, enforce: Enforcement, due: bool, overdue: bool) -> TrainingStanding {
    if !role.is_staff() || enforce == Enforcement::Off {
        return TrainingStanding::NotRequired;
    }
    match (enforce, due || overdue, overdue) {
        (Enforcement::Block, _, true) => TrainingStanding::Blocked,
        (_, true, _) => TrainingStanding::Due,
        _ => TrainingStanding::Current,
    }
}

/// Is `rt` patient data (a patient, or a record about one)? Training that
/// blocks keeps these back; the staff directory and working hours stay.
pub fn is_patient_data(rt: ResourceType) -> bool {
    rt == ResourceType::Patient || rt.has_subject()
}

/// Refuse patient data to a principal whose training blocks it.
pub(crate) fn training_permits(p: &Principal, rt: ResourceType) -> Result<(), Denied> {
    if p.training == TrainingStanding::Blocked && is_patient_data(rt) {
        return Err(Denied::Training);
    }
    Ok(())
}

/// Who takes training: staff, signed in (a session or a token of theirs).
pub fn may_take_training(p: &Principal) -> Result<(), Denied> {
    if p.role.is_staff() {
        Ok(())
    } else {
        Err(Denied::Role { role: p.role, action: "take", resource: "staff training" })
    }
}

/// Who sees the clinic's training coverage (names and dates of completion,
/// no clinical content): admins, and auditors read-only. Tokens need
/// `user/*.read`, as for the audit log.
pub fn may_see_training_coverage(p: &Principal) -> Result<(), Denied> {
    if let Some(scopes) = &p.scopes
        && !scopes.permits_audit_read()
    {
        return Err(Denied::Scope { action: "read", resource: "training coverage" });
    }
    match p.role {
        Role::Admin | Role::Auditor => Ok(()),
        role => Err(Denied::Role { role, action: "read", resource: "training coverage" }),
    }
}

/// Who changes the clinic's training (imports a pack, assigns a module by
/// hand): an admin's own session (never a token), or the console.
pub fn may_manage_training(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Admin if p.scopes.is_none() => Ok(()),
        Role::Admin => Err(Denied::Scope { action: "manage", resource: "training" }),
        role => Err(Denied::Role { role, action: "manage", resource: "training" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Scopes, allowed};

    fn principal(role: Role, training: TrainingStanding) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            practitioner_id: (role == Role::Clinician).then(|| "pr1".into()),
            patient_id: (role == Role::Patient).then(|| "pa1".into()),
            scopes: None,
            source: None,
            credential: None,
            training,
        }
    }

    /// Every cell: role × enforcement × (due, overdue).
    #[test]
    fn only_overdue_training_under_block_blocks_and_patients_are_never_asked() {
        use Enforcement::*;
        use TrainingStanding::*;
        for role in Role::ALL {
            for enforce in [Off, Warn, Block] {
                for (due, overdue) in [(false, false), (true, false), (true, true), (false, true)] {
                    let s = training_standing(role, enforce, due, overdue);
                    let expected = match (role.is_staff(), enforce, due || overdue, overdue) {
                        (false, _, _, _) | (_, Off, _, _) => NotRequired,
                        (_, Block, _, true) => Blocked,
                        (_, _, true, _) => Due,
                        _ => Current,
                    };
                    assert_eq!(s, expected, "{role} {enforce:?} due={due} overdue={overdue}");
                    assert_eq!(s.shows_banner(), role.is_staff() && enforce != Off && (due || overdue));
                }
            }
        }
    }

    #[test]
    fn blocked_training_refuses_patient_data_only() {
        let blocked = principal(Role::Clinician, TrainingStanding::Blocked);
        for rt in ResourceType::ALL {
            for a in [Action::Read, Action::Write] {
                let due = principal(Role::Clinician, TrainingStanding::Due);
                let r = allowed(&blocked, rt, a);
                if is_patient_data(rt) && crate::role_permits(Role::Clinician, rt, a) {
                    assert_eq!(r, Err(Denied::Training), "{rt:?} {a:?}");
                    assert_eq!(allowed(&due, rt, a), Ok(()), "a banner blocks nothing: {rt:?} {a:?}");
                } else if crate::role_permits(Role::Clinician, rt, a) {
                    assert_eq!(r, Ok(()), "{rt:?} {a:?}: the staff directory stays");
                }
            }
        }
        assert!(Denied::Training.to_string().contains("/training"));
        let mut token = blocked.clone();
        token.scopes = Some(Scopes::parse("user/*.*").unwrap());
        assert_eq!(allowed(&token, ResourceType::Patient, Action::Read), Err(Denied::Training));
        let reception = principal(Role::Reception, TrainingStanding::Blocked);
        assert_eq!(allowed(&reception, ResourceType::Appointment, Action::Write), Err(Denied::Training));
        assert!(crate::records::may_break_glass(&blocked).is_err());
        assert!(crate::records::may_break_glass(&principal(Role::Clinician, TrainingStanding::Due)).is_ok());
    }

    #[test]
    fn coverage_for_admins_and_auditors_management_for_admin_sessions() {
        for role in Role::ALL {
            let p = principal(role, TrainingStanding::Current);
            assert_eq!(may_see_training_coverage(&p).is_ok(), matches!(role, Role::Admin | Role::Auditor), "{role}");
            assert_eq!(may_manage_training(&p).is_ok(), role == Role::Admin, "{role}");
            assert_eq!(may_take_training(&p).is_ok(), role.is_staff(), "{role}");
        }
        let mut token = principal(Role::Admin, TrainingStanding::Current);
        token.scopes = Some(Scopes::parse("user/*.*").unwrap());
        assert!(may_manage_training(&token).is_err());
        assert!(may_see_training_coverage(&token).is_ok());
        token.scopes = Some(Scopes::parse("user/Practitioner.read").unwrap());
        assert!(may_see_training_coverage(&token).is_err());
    }
}
