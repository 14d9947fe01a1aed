//! Appointments the patient handles themselves (the portal, a reminder's
//! cancel link), and what the reminder sweep may read. Pure decisions; the
//! records service asks (`confidant_records` `reminders.rs`).

use confidant_fhir::ResourceType;

use crate::{Denied, Principal, Role};

/// The actor of the reminder sweep's audit entries (a system principal, not an account).
pub const REMINDER_ACTOR: &str = "reminders";
/// The audit purpose of the sweep's reads and sends: the patient's access log shows it.
pub const REMINDER_PURPOSE: &str = "appointment reminder";
/// The actor of a cancellation through a reminder's link (whoever holds the
/// link acts for the patient, and for nothing else).
pub const CANCEL_LINK_ACTOR: &str = "cancel-link";

/// Whose appointments `p` sees in the portal: a patient's session (never an
/// API token, never staff) sees their own, and nothing else.
pub fn own_appointments(p: &Principal) -> Result<&str, Denied> {
    match (p.role, p.patient_id.as_deref()) {
        (Role::Patient, _) if p.scopes.is_some() => Err(Denied::Scope { action: "cancel", resource: "Appointment" }),
        (Role::Patient, Some(id)) if !id.is_empty() => Ok(id),
        (Role::Patient, _) => Err(Denied::Unlinked("Patient")),
        (role, _) => Err(Denied::Role { role, action: "cancel as a patient", resource: "Appointment" }),
    }
}

/// What of an appointment decides whether its patient may cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppointmentFacts<'a> {
    /// The owning patient (the record's compartment).
    pub patient: &'a str,
    /// FHIR `Appointment.status`.
    pub status: &'a str,
    /// `Appointment.start`, Unix ms, if it has one.
    pub start: Option<i64>,
}

/// Why a patient's cancellation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRefused {
    /// Not this patient's appointment (answered like "no such appointment").
    NotTheirs,
    /// Not booked (already cancelled, or never confirmed) or already started.
    NotUpcoming,
    /// Inside the clinic's notice period: the patient calls the clinic.
    TooLate,
}

/// May the patient `acting_for` cancel the appointment `a` at `now`, under a
/// notice of `notice_hours`? Only a booked appointment of their own that
/// starts later than the notice period; the change they may make is the
/// status (to `cancelled`, reason `pat`), nothing else.
pub fn may_patient_cancel(
    acting_for: &str,
    a: &AppointmentFacts<'_>,
    now: i64,
    notice_hours: u32,
) -> Result<(), CancelRefused> {
    if acting_for.is_empty() || a.patient != acting_for {
        return Err(CancelRefused::NotTheirs);
    }
    let Some(start) = a.start.filter(|s| *s > now) else { return Err(CancelRefused::NotUpcoming) };
    if a.status != "booked" {
        return Err(CancelRefused::NotUpcoming);
    }
    if start - now < i64::from(notice_hours) * 3_600_000 {
        return Err(CancelRefused::TooLate);
    }
    Ok(())
}

/// What the reminder sweep may read, and for which purpose: appointments (to
/// find the ones due) and the patient's own resource (their e-mail, phone and
/// language); no other type, no other purpose.
pub fn reminder_may_read(rt: ResourceType, purpose: &str) -> Result<(), Denied> {
    match rt {
        ResourceType::Appointment | ResourceType::Patient if purpose == REMINDER_PURPOSE => Ok(()),
        _ => Err(Denied::Role { role: Role::Admin, action: "read for reminders", resource: rt.as_str() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, patient: Option<&str>) -> Principal {
        Principal {
            user_id: "u".into(),
            role,
            practitioner_id: None,
            patient_id: patient.map(str::to_owned),
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    #[test]
    fn only_a_patients_own_session_sees_their_appointments() {
        assert_eq!(own_appointments(&principal(Role::Patient, Some("p1"))), Ok("p1"));
        assert!(own_appointments(&principal(Role::Patient, None)).is_err());
        assert!(own_appointments(&principal(Role::Patient, Some(""))).is_err());
        let mut token = principal(Role::Patient, Some("p1"));
        token.scopes = Some(crate::Scopes::parse("user/*.*").unwrap());
        assert!(own_appointments(&token).is_err());
        for role in [Role::Admin, Role::Clinician, Role::Reception, Role::Auditor] {
            assert!(own_appointments(&principal(role, Some("p1"))).is_err(), "{role}");
        }
    }

    #[test]
    fn a_patient_cancels_their_own_booked_appointment_outside_the_notice() {
        let hour = 3_600_000;
        let now = 1_000 * hour;
        let a = AppointmentFacts { patient: "p1", status: "booked", start: Some(now + 30 * hour) };
        assert_eq!(may_patient_cancel("p1", &a, now, 24), Ok(()));
        assert_eq!(may_patient_cancel("p2", &a, now, 24), Err(CancelRefused::NotTheirs));
        assert_eq!(
            may_patient_cancel("", &AppointmentFacts { patient: "", ..a }, now, 24),
            Err(CancelRefused::NotTheirs)
        );
        assert_eq!(may_patient_cancel("p1", &a, now, 31), Err(CancelRefused::TooLate));
        // Exactly at the notice boundary: allowed (the notice is "at least N hours").
        assert_eq!(may_patient_cancel("p1", &a, now, 30), Ok(()));
        let cancelled = AppointmentFacts { status: "cancelled", ..a };
        assert_eq!(may_patient_cancel("p1", &cancelled, now, 0), Err(CancelRefused::NotUpcoming));
        let past = AppointmentFacts { start: Some(now - 1), ..a };
        assert_eq!(may_patient_cancel("p1", &past, now, 0), Err(CancelRefused::NotUpcoming));
        let undated = AppointmentFacts { start: None, ..a };
        assert_eq!(may_patient_cancel("p1", &undated, now, 0), Err(CancelRefused::NotUpcoming));
    }

    #[test]
    fn the_sweep_reads_appointments_and_patients_for_reminders_only() {
        for rt in ResourceType::ALL {
            let ok = matches!(rt, ResourceType::Appointment | ResourceType::Patient);
            assert_eq!(reminder_may_read(rt, REMINDER_PURPOSE).is_ok(), ok, "{rt:?}");
            assert!(reminder_may_read(rt, "care").is_err(), "{rt:?}");
        }
    }
}
