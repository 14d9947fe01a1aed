//! A request body as the FHIR API reads it: strict JSON (`parse_json`), then
//! validation as every resource type this server serves. Neither may panic on
//! any input; what parses, and what validates, written out again parses.
#![no_main]

use confidant_fhir::{ResourceType, parse_json, validate};
use libfuzzer_sys::fuzz_target;

/// A fixed "now" (2026-11-29T00:00Z): validation takes the clock as an argument.
const NOW: i64 = 1_795_910_400_000;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = parse_json(data) else { return };
    // What parses, written out again, parses. (Not always to the same value: serde_json
    // without `float_roundtrip` may read a long decimal back one unit in the last place off.)
    let text = serde_json::to_vec(&value).unwrap_or_default();
    assert!(parse_json(&text).is_ok(), "a parsed body does not read back");
    for rt in ResourceType::ALL {
        let mut resource = value.clone();
        if validate(rt, &mut resource, NOW).is_ok() {
            // What the server stores (validated, normalised) is JSON it would accept again.
            let stored = serde_json::to_vec(&resource).unwrap_or_default();
            assert!(parse_json(&stored).is_ok(), "a validated {} does not read back", rt.as_str());
        }
    }
});
