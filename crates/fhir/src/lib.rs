//! HL7 FHIR R4 for Confidant: the resource types we serve, their validation,
//! the values we blind-index, and the Bundle, OperationOutcome and
//! CapabilityStatement documents. Pure functions: no I/O, no keys.
//!
//! Resources are kept as JSON documents (`serde_json::Value`), so that every
//! element a client sends is stored (encrypted) and returned as sent. What we
//! depend on (ids, references, search values, required elements, value sets)
//! is checked here; elements a resource type does not define are refused.
#![forbid(unsafe_code)]

mod capability;
mod outcome;
mod resource;
mod search;

pub use capability::capability_statement;
pub use outcome::{IssueType, operation_outcome};
pub use resource::{
    ACT_CODE_SYSTEM, PSYCHOTHERAPY_NOTE, RELEASED_TO_CARE_TEAM, ResourceType, SHARED_WITH_PATIENT, SHARING_SYSTEM,
    Validated, is_valid_id, validate,
};
pub use search::{SearchParam, ValueKind, search_params};

/// A FHIR instant (`2026-11-29T04:40:14.123Z`) from Unix milliseconds.
pub fn instant(unix_millis: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&f).unwrap_or_default()
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
    }
}
