//! HL7 FHIR R4 for Confidant: the resource types we serve, their validation,
//! the values we blind-index, and the Bundle, OperationOutcome and
//! CapabilityStatement documents. Pure functions: no I/O, no keys.
//!
//! Resources are kept as JSON documents (`serde_json::Value`), so that every
//! element a client sends is stored (encrypted) and returned as sent. What we
//! depend on (ids, references, search values, required elements, value sets)
//! is checked here; elements a resource type does not define are refused.
#![forbid(unsafe_code)]

// Transaction and batch Bundles (issue 19).
mod bundle;
mod capability;
// `_include` and `_revinclude` (issue 19).
mod include;
mod invariants;
mod outcome;
mod query;
mod resource;
mod schedule;
mod search;
mod shape;

pub use bundle::{
    BundleEntry, BundleError, BundleKind, EntryMethod, MAX_BUNDLE_ENTRIES, conditional_reference,
    conditional_references, is_urn_uuid, parse_bundle, parse_conditions, resolve_references, rewrite_references,
};
pub use capability::capability_statement;
pub use include::{
    INCLUDES, Include, MAX_INCLUDE_PARAMS, MAX_INCLUDED, check_includes, includes_from, parse_include, revincludes_into,
};
pub use outcome::{IssueType, operation_outcome};
pub use query::{
    DEFAULT_COUNT, MAX_COUNT, QueryError, SearchQuery, parse_count, parse_search_query, parse_search_query_with,
};
pub use resource::{
    ACT_CODE_SYSTEM, Membership, PSYCHOTHERAPY_NOTE, RELEASED_TO_CARE_TEAM, ResourceType, SHARED_WITH_PATIENT,
    SHARING_SYSTEM, Validated, is_psychotherapy_note, is_valid_id, time_range, validate,
};
pub use schedule::{
    APPOINTMENT_TYPE_SYSTEM, CANCELLATION_REASON_SYSTEM, PRACTITIONER_DAY, SERIES_SYSTEM, WEEKDAYS, WORKING_HOURS_URL,
    WorkingHours, day_number, practitioner_day, working_hours,
};
pub use search::{
    PREFIX_INDEX, PREFIX_MAX, PREFIX_MIN, PREFIX_TOKENS, SearchParam, ValueKind, fold_name, name_starts_with,
    prefix_indexed, search_params, search_prefix,
};
pub use shape::parse_json;

/// A FHIR instant (`2026-11-29T04:40:14.123Z`) from Unix milliseconds.
pub fn instant(unix_millis: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&f).unwrap_or_default()
}

/// A FHIR date search value (`2026-11-29`, `ge2026-11-01`, `lt2026-11-29T12:00:00Z`)
/// as a half-open range of Unix milliseconds `[from, until)`; either end may be open.
/// `None` if it is not a date or instant with an optional eq/ge/gt/le/lt prefix.
pub fn date_range(value: &str) -> Option<(Option<i64>, Option<i64>)> {
    let (prefix, v) = match value.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let (start, end) = if v.len() == 10 {
        let f = time::macros::format_description!("[year]-[month]-[day]");
        let d = time::Date::parse(v, &f).ok()?;
        let start = d.midnight().assume_utc().unix_timestamp() * 1000;
        (start, start + 86_400_000)
    } else {
        let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()?;
        let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?;
        (ms, ms + 1)
    };
    Some(match prefix {
        "ge" => (Some(start), None),
        "gt" => (Some(end), None),
        "le" => (None, Some(end)),
        "lt" => (None, Some(start)),
        _ => (Some(start), Some(end)),
    })
}

/// An HTTP date (RFC 9110 IMF-fixdate) from Unix milliseconds, for Last-Modified.
pub fn http_date(unix_millis: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_millis.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_formats() {
        assert_eq!(super::instant(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(super::http_date(1_700_000_000_123), "Tue, 14 Nov 2023 22:13:20 GMT");
        let day = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000; // 2023-11-14T00:00Z
        assert_eq!(super::date_range("2023-11-14"), Some((Some(day), Some(day + 86_400_000))));
        assert_eq!(super::date_range("ge2023-11-14"), Some((Some(day), None)));
        assert_eq!(super::date_range("lt2023-11-14"), Some((None, Some(day))));
        assert_eq!(super::date_range("le2023-11-14"), Some((None, Some(day + 86_400_000))));
        assert_eq!(super::date_range("gt2023-11-14T22:13:20.123Z"), Some((Some(1_700_000_000_124), None)));
        for bad in ["", "2023-13-01", "xx2023-11-14", "2023-11-14T25:00:00Z", "yesterday"] {
            assert_eq!(super::date_range(bad), None, "{bad}");
        }
    }
}
