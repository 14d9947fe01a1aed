//! Who runs phishing drills, who reports a mail, and who sees whose results.
//! A drill mail and its results are about staff, never about patients.

use crate::{Denied, Principal, Role};

/// Who may make drill campaigns, set staff e-mail addresses and see the
/// results: admins, in a signed-in session (not with an API token).
pub fn may_run_drills(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Admin if p.scopes.is_none() => Ok(()),
        Role::Admin => Err(Denied::Scope { action: "run", resource: "phishing drills" }),
        role => Err(Denied::Role { role, action: "run", resource: "phishing drills" }),
    }
}

/// Who may report a suspected phishing mail and see their own drill results:
/// every staff member (drill mails go to staff only), in a signed-in session.
pub fn may_report_phishing(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Patient => Err(Denied::Role { role: Role::Patient, action: "report", resource: "phishing" }),
        _ if p.scopes.is_some() => Err(Denied::Scope { action: "report", resource: "phishing" }),
        _ => Ok(()),
    }
}

/// Whether a drill's results name people: only when the clinic turned
/// `phishing.show_names` on (after telling staff, as Finnish workplace
/// privacy law asks), and only to those who run drills.
pub fn drill_results_name_people(p: &Principal, show_names: bool) -> bool {
    show_names && may_run_drills(p).is_ok()
}

/// Who gets drill mails: staff, never patients.
pub fn may_receive_drills(role: Role) -> bool {
    role.is_staff()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scopes;

    fn principal(role: Role, token: bool) -> Principal {
        Principal {
            user_id: "u".into(),
            role,
            practitioner_id: None,
            patient_id: None,
            scopes: token.then(|| Scopes(Vec::new())),
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    #[test]
    fn admins_run_drills_and_staff_report() {
        for role in [Role::Admin, Role::Clinician, Role::Reception, Role::Auditor, Role::Patient] {
            let p = principal(role, false);
            assert_eq!(may_run_drills(&p).is_ok(), role == Role::Admin, "{role:?}");
            assert_eq!(may_report_phishing(&p).is_ok(), role != Role::Patient, "{role:?}");
            assert_eq!(may_receive_drills(role), role != Role::Patient, "{role:?}");
            assert_eq!(drill_results_name_people(&p, true), role == Role::Admin, "{role:?}");
            assert!(!drill_results_name_people(&p, false), "{role:?}");
            let t = principal(role, true);
            assert!(may_run_drills(&t).is_err() && may_report_phishing(&t).is_err(), "{role:?} with a token");
        }
    }
}
