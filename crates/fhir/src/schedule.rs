//! What the calendar needs of an Appointment: its practitioner, the days it
//! falls on and its series, blind-indexed; and the code systems of its type
//! and of its cancellation reason.
//!
//! Appointments are sealed with their patient's key, so the calendar finds a
//! clinician's day by blind tokens: one `practitioner` token, and one
//! `practitioner-day` token per UTC day the appointment touches (an HMAC of
//! practitioner and day number). A stolen database shows which appointment
//! rows share a clinician and a day (equal tokens), not which clinician or
//! which day.

use serde_json::{Map, Value};

use crate::search::ValueKind;

/// The identifier system of a recurring series: appointments with the same value are one series.
pub const SERIES_SYSTEM: &str = "urn:confidant:series";
/// Confidant's appointment types (`appointmentType`; the R4 binding is only preferred).
pub const APPOINTMENT_TYPE_SYSTEM: &str = "urn:confidant:appointment-type";
/// HL7's appointment cancellation reasons (`cancelationReason`).
pub const CANCELLATION_REASON_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason";
/// The internal index of a practitioner's day (not a FHIR search parameter).
pub const PRACTITIONER_DAY: &str = "practitioner-day";

const DAY_MS: i64 = 86_400_000;
/// The most days one appointment is indexed under (a longer one is not a visit).
const MAX_DAYS: i64 = 7;

/// The UTC day number (days since 1970-01-01) of Unix milliseconds.
pub fn day_number(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The value blinded for `practitioner`'s UTC day `day`.
pub fn practitioner_day(practitioner: &str, day: i64) -> String {
    format!("{practitioner}|{day}")
}

/// Index a practitioner of an appointment spanning `[start, end)` (ms, either unknown).
pub(crate) fn index_practitioner(
    id: &str,
    [start, end]: [Option<i64>; 2],
    index: &mut Vec<(&'static str, ValueKind, String)>,
) {
    index.push(("practitioner", ValueKind::Identifier, id.to_owned()));
    if let Some(start) = start {
        let first = day_number(start);
        let last = end.map(|e| day_number(e - 1)).unwrap_or(first).clamp(first, first + MAX_DAYS - 1);
        for day in first..=last {
            index.push((PRACTITIONER_DAY, ValueKind::Identifier, practitioner_day(id, day)));
        }
    }
}

/// Index an appointment's identifiers (the series among them): value, and system|value.
pub(crate) fn index_series(
    m: &Map<String, Value>,
    index: &mut Vec<(&'static str, ValueKind, String)>,
) -> Result<(), String> {
    let Some(list) = m.get("identifier").and_then(Value::as_array) else { return Ok(()) };
    for (i, ident) in list.iter().enumerate() {
        let value = ident.get("value").and_then(Value::as_str);
        let system = ident.get("system").and_then(Value::as_str);
        match (system, value) {
            (_, None) => return Err(format!("identifier[{i}].value is required")),
            (Some(s), Some(v)) => {
                index.push(("identifier", ValueKind::Identifier, v.to_owned()));
                index.push(("identifier", ValueKind::Identifier, format!("{s}|{v}")));
            }
            (None, Some(v)) => index.push(("identifier", ValueKind::Identifier, v.to_owned())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appointment_is_indexed_under_each_utc_day_it_touches() {
        let mut index = Vec::new();
        // 2027-03-27T23:30Z to 2027-03-28T00:30Z: two UTC days.
        let start = 1_806_190_200_000;
        index_practitioner("pr1", [Some(start), Some(start + 3_600_000)], &mut index);
        let days: Vec<&str> =
            index.iter().filter(|(p, _, _)| *p == PRACTITIONER_DAY).map(|(_, _, v)| v.as_str()).collect();
        let d = day_number(start);
        assert_eq!(days, [practitioner_day("pr1", d), practitioner_day("pr1", d + 1)]);
        assert_eq!(index[0], ("practitioner", ValueKind::Identifier, "pr1".to_owned()));
        // Ending exactly at midnight: one day.
        let mut index = Vec::new();
        let midnight = (d + 1) * DAY_MS;
        index_practitioner("pr1", [Some(midnight - 3_600_000), Some(midnight)], &mut index);
        assert_eq!(index.len(), 2);
        assert_eq!(day_number(-1), -1, "before 1970 the day is the one before");
    }
}
