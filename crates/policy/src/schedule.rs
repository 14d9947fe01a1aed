//! Whose calendar a principal keeps: who may look at a clinician's day and
//! week, and book, cancel, mark a no-show or reschedule in it. Pure functions;
//! the records service asks, the tests enumerate every cell.
//!
//! Reception keeps every clinician's calendar (it sees appointments, never
//! notes). A clinician keeps their own: the double-booking check can only be
//! as complete as what its caller sees, and a clinician sees the appointments
//! of their own care team, so they book only with themself (reception books
//! with colleagues). Nobody else keeps a calendar.

use crate::records::Refused;
use crate::{Principal, Role};

/// May `p` see and change the calendar of the practitioner `practitioner`?
pub fn may_keep_calendar_of(p: &Principal, practitioner: &str) -> Result<(), Refused> {
    match (p.role, p.practitioner_id.as_deref()) {
        (Role::Reception, _) => Ok(()),
        (Role::Clinician, Some(own)) if own == practitioner => Ok(()),
        (Role::Clinician, Some(_)) => {
            Err(Refused("a clinician keeps their own calendar: reception books and changes a colleague's"))
        }
        _ => Err(Refused("only reception and clinicians keep calendars")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, practitioner: Option<&str>) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            practitioner_id: practitioner.map(str::to_owned),
            patient_id: None,
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    #[test]
    fn reception_keeps_every_calendar_a_clinician_their_own() {
        let mut cells = 0;
        for role in Role::ALL {
            for linked in [None, Some("pr1"), Some("pr2")] {
                let p = principal(role, linked);
                let allowed = role == Role::Reception || (role == Role::Clinician && linked == Some("pr1"));
                assert_eq!(may_keep_calendar_of(&p, "pr1").is_ok(), allowed, "{role} {linked:?}");
                cells += 1;
            }
        }
        assert_eq!(cells, Role::ALL.len() * 3);
        let colleague = may_keep_calendar_of(&principal(Role::Clinician, Some("pr2")), "pr1").unwrap_err();
        assert!(colleague.0.contains("own calendar"), "{colleague}");
    }
}
