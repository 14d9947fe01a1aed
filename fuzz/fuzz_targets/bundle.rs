//! A transaction or batch Bundle as a client POSTs it to the FHIR base:
//! `parse_bundle` checks it whole, then each entry's `urn:uuid:` references
//! are resolved against the fullUrls. Nothing may panic, and what is accepted
//! keeps its promises: at most the maximum of entries, each with a resource
//! exactly where the method needs one, ids that are ids, fullUrls given once;
//! an error names an entry inside the Bundle and echoes no value.
#![no_main]

use std::collections::HashMap;

use confidant_fhir::{EntryMethod, is_valid_id, parse_bundle, resolve_references};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 20;

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    match parse_bundle(&bundle, MAX) {
        Ok((_, entries)) => {
            assert!(entries.len() <= MAX, "more entries than the maximum");
            let mut seen = std::collections::HashSet::new();
            let mut ids = HashMap::new();
            for (n, e) in entries.iter().enumerate() {
                if let Some(u) = &e.full_url {
                    assert!(seen.insert(u.clone()), "a fullUrl given twice");
                    ids.insert(u.clone(), format!("id{n}"));
                }
                match e.method {
                    EntryMethod::Post => assert!(e.resource.is_some() && e.id.is_none(), "a POST without its resource"),
                    EntryMethod::Put => assert!(e.resource.is_some() && e.id.is_some(), "a PUT without resource or id"),
                    EntryMethod::Get => assert!(e.resource.is_none(), "a GET with a resource"),
                }
                assert!(e.id.as_deref().is_none_or(is_valid_id), "an id that is not an id");
            }
            for e in entries {
                if let Some(mut r) = e.resource {
                    let _ = resolve_references(&mut r, &ids);
                }
            }
        }
        Err(e) => {
            let entries = bundle.get("entry").and_then(|v| v.as_array()).map_or(0, Vec::len);
            assert!(e.index.is_none_or(|i| i < entries), "an error naming an entry the Bundle does not have");
            assert!(!e.message.is_empty(), "an error that says nothing");
        }
    }
});
