//! A FHIR search query string as the API reads it (`/fhir/r4/{type}?…`):
//! `parse_search_query` takes out `_count`, `_after`, `_before`, `_summary`,
//! `_elements`, `_sort`, `_include` and `_revinclude` and refuses unknown
//! `_` parameters; `date_range` reads an AuditEvent `date` value. Neither may
//! panic; what they accept keeps their promises.
#![no_main]

use confidant_fhir::{date_range, is_valid_id, parse_search_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(q) = parse_search_query(Some(raw)) {
        assert!((0..=100).contains(&q.count), "_count out of bounds");
        assert_eq!(q.count == 0, q.count_only, "a count of 0 is count-only, and only that");
        assert!(q.after.as_deref().is_none_or(is_valid_id), "_after is not an id");
        assert!(q.before.as_deref().is_none_or(is_valid_id), "_before is not an id");
        assert!(q.after.is_none() || q.before.is_none(), "both cursors kept");
        assert!(
            q.elements.iter().flatten().all(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric())),
            "an _elements name that is not an element name"
        );
        assert!(q.params.iter().all(|(k, _)| k == "_id" || !k.starts_with('_')), "a control parameter kept");
        assert!(q.include.len() + q.revinclude.len() <= confidant_fhir::MAX_INCLUDE_PARAMS, "too many includes");
        for list in [&q.include, &q.revinclude] {
            assert!(list.iter().all(|i| confidant_fhir::INCLUDES.contains(*i)), "an include not served");
            assert!(list.iter().enumerate().all(|(n, i)| !list[..n].contains(i)), "an include twice");
        }
        // Each value as a date search value (AuditEvent `date`).
        for (_, v) in &q.params {
            if let Some((from, until)) = date_range(v) {
                assert!(from.is_some() || until.is_some(), "a date range open at both ends");
                if let (Some(a), Some(b)) = (from, until) {
                    assert!(a < b, "an empty date range");
                }
            }
        }
    }
    let _ = date_range(raw);
});
