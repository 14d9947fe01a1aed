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

/// The extension of a Schedule that holds one weekly stretch of working hours
/// (`day`: mon..sun, `start` and `end`: times of day, clinic-local).
pub const WORKING_HOURS_URL: &str = "urn:confidant:working-hours";
/// The days of the week, Monday first, as the working-hours extension codes them.
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A time of day `HH:MM:SS` as minutes after midnight.
pub fn parse_time(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (h, m, sec) = (num(0..2)?, num(3..5)?, num(6..8)?);
    (h < 24 && m < 60 && sec < 60 && s.bytes().filter(u8::is_ascii_digit).count() == 6).then_some(h * 60 + m)
}

/// One stretch of working hours: weekday (0 = Monday), start and end in minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    pub weekday: usize,
    pub start: u32,
    pub end: u32,
}

/// The working hours of a validated Schedule.
pub fn working_hours(schedule: &Value) -> Vec<WorkingHours> {
    let list = schedule.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    list.iter().filter_map(|e| stretch(e.as_object()?).ok()).collect()
}

fn stretch(e: &Map<String, Value>) -> Result<WorkingHours, String> {
    if e.get("url").and_then(Value::as_str) != Some(WORKING_HOURS_URL) {
        return Err(format!("a Schedule's extension must be {WORKING_HOURS_URL}"));
    }
    let parts = e.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let part = |url: &str, key: &str| {
        let mut found = parts.iter().filter(|p| p.get("url").and_then(Value::as_str) == Some(url));
        match (found.next(), found.next()) {
            (Some(p), None) => {
                p.get(key).and_then(Value::as_str).ok_or_else(|| format!("working hours: {url} needs {key}"))
            }
            _ => Err(format!("working hours need exactly one {url}")),
        }
    };
    let day = part("day", "valueCode")?;
    let weekday =
        WEEKDAYS.iter().position(|d| *d == day).ok_or("working hours: day is mon, tue, wed, thu, fri, sat or sun")?;
    let start = parse_time(part("start", "valueTime")?).ok_or("working hours: start is a time, HH:MM:SS")?;
    let end = parse_time(part("end", "valueTime")?).ok_or("working hours: end is a time, HH:MM:SS")?;
    if end <= start {
        return Err("working hours: end must be after start".into());
    }
    if parts.len() != 3 {
        return Err("working hours have day, start and end only".into());
    }
    Ok(WorkingHours { weekday, start, end })
}

/// Check a Schedule: exactly one actor, a Practitioner (indexed as `actor`),
/// and well-formed working hours.
pub(crate) fn check_schedule(
    m: &Map<String, Value>,
    index: &mut Vec<(&'static str, ValueKind, String)>,
) -> Result<(), String> {
    let actors = m.get("actor").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let practitioner = match actors {
        [one] => one.get("reference").and_then(Value::as_str).and_then(|r| r.strip_prefix("Practitioner/")),
        _ => None,
    };
    match practitioner {
        Some(id) if crate::is_valid_id(id) => index.push(("actor", ValueKind::Identifier, id.to_owned())),
        _ => return Err("a Schedule has exactly one actor, 'Practitioner/{id}'".into()),
    }
    let list = m.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for e in list {
        stretch(e.as_object().ok_or("extension must be a JSON object")?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_hours_are_checked() {
        let hours = |day: &str, start: &str, end: &str| {
            serde_json::json!({"url": WORKING_HOURS_URL, "extension": [
                {"url": "day", "valueCode": day}, {"url": "start", "valueTime": start}, {"url": "end", "valueTime": end}]})
        };
        let ok = hours("tue", "09:00:00", "17:30:00");
        assert_eq!(stretch(ok.as_object().unwrap()), Ok(WorkingHours { weekday: 1, start: 540, end: 1050 }));
        for bad in [
            hours("tuesday", "09:00:00", "17:00:00"),
            hours("tue", "17:00:00", "09:00:00"),
            hours("tue", "9:00", "17:00:00"),
            hours("tue", "24:00:00", "25:00:00"),
        ] {
            assert!(stretch(bad.as_object().unwrap()).is_err(), "{bad}");
        }
        assert_eq!(parse_time("08:05:00"), Some(485));
        assert_eq!(parse_time("+8:05:00"), None);
    }

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
