//! The CapabilityStatement at `/fhir/r4/metadata`: exactly what is implemented.

use serde_json::{Value, json};

use crate::{ResourceType, SearchParam, search_params};

/// The server's CapabilityStatement. `base` is the FHIR base URL.
pub fn capability_statement(base: &str, software_version: &str, date: &str) -> Value {
    let mut resources: Vec<Value> = ResourceType::ALL
        .iter()
        .map(|rt| {
            let params: Vec<Value> = search_params(*rt)
                .iter()
                .map(|p| match p {
                    SearchParam::Blind { name, fhir_type, doc, .. } => {
                        json!({"name": name, "type": fhir_type, "documentation": doc})
                    }
                    SearchParam::Patient { name } => json!({
                        "name": name, "type": "reference",
                        "documentation": "The patient the record belongs to: Patient/{id} or {id}"
                    }),
                    SearchParam::Id => json!({"name": "_id", "type": "token"}),
                    SearchParam::Name { name, doc, .. } => {
                        json!({"name": name, "type": "string", "documentation": doc})
                    }
                })
                .collect();
            // The outcome measures' answers and scores are written by the server's
            // measures flow (answers checked, scores computed), never by a client.
            let interaction = if rt.written_by_server() {
                json!([{"code": "read"}, {"code": "vread"}, {"code": "history-instance"}, {"code": "search-type"}])
            } else {
                json!([
                    {"code": "read"}, {"code": "vread"}, {"code": "update"},
                    {"code": "history-instance"}, {"code": "create"}, {"code": "search-type"}
                ])
            };
            json!({
                "type": rt.as_str(),
                "interaction": interaction,
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": params,
            })
        })
        .collect();
    // The outcome measures (PHQ-9, GAD-7, CORE-10), built in and read-only.
    resources.push(json!({
        "type": "Questionnaire",
        "documentation": "The built-in outcome measures (PHQ-9, GAD-7, CORE-10), read-only: GET Questionnaire and Questionnaire/{id} (phq-9, gad-7, core-10).",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
    }));
    // The audit log, read-only: auditors search it all, a patient reads their own access log.
    resources.push(json!({
        "type": "AuditEvent",
        "documentation": "The tamper-evident audit log, read-only. Auditors see every entry; a patient sees the entries about their own record.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": "patient", "type": "reference", "documentation": "Entries about this patient: Patient/{id} or {id}"},
            {"name": "agent", "type": "reference", "documentation": "Entries by this user (user id)"},
            {"name": "action", "type": "token", "documentation": "An action code of urn:confidant:audit-action, e.g. read, search-hit, create, update, break-glass, login-failed"},
            {"name": "date", "type": "date", "documentation": "When: a day or instant, with eq, ge, gt, le or lt; repeat for a range"},
        ],
    }));
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Confidant",
        "kind": "instance",
        "software": {"name": "Confidant", "version": software_version},
        "implementation": {"description": "Confidant clinical records server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every resource is encrypted at rest with a per-patient key. Search is exact-match only, through blind indexes. Page with _count (at most 100); follow the Bundle's next link.",
            "security": {
                "cors": false,
                "description": "Bearer token in the Authorization header (confidant token create)."
            },
            "resource": resources,
        }]
    })
}
