//! The CapabilityStatement at `/fhir/r4/metadata`: exactly what is implemented.

use serde_json::{Value, json};

use crate::{MAX_BUNDLE_ENTRIES, ResourceType, SearchParam, search_params};

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
            let mut params = params;
            if *rt == ResourceType::Appointment {
                params.push(json!({"name": "date", "type": "date",
                    "documentation": "With practitioner: the practitioner's appointments in a range, e.g. date=ge2027-03-01&date=lt2027-03-08 (one page; _sort=date or -date)"}));
            }
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
            // Conditional create and update match on the exact (blind-indexed) parameters.
            let conditional = !rt.written_by_server();
            let mut resource = json!({
                "type": rt.as_str(),
                "interaction": interaction,
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": false,
                "conditionalCreate": conditional,
                "conditionalUpdate": conditional,
                "conditionalRead": "not-supported",
                "conditionalDelete": "not-supported",
                "searchParam": params,
            });
            // `_include` and `_revinclude`: exactly the references served (issue 19).
            let include: Vec<String> = crate::includes_from(*rt).map(crate::Include::name).collect();
            if !include.is_empty() {
                resource["searchInclude"] = json!(include);
            }
            let revinclude: Vec<String> = crate::revincludes_into(*rt).map(crate::Include::name).collect();
            if !revinclude.is_empty() {
                resource["searchRevInclude"] = json!(revinclude);
            }
            if *rt == ResourceType::Patient {
                resource["operation"] = json!([{
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "GET Patient/{id}/$everything: the patient and every record of theirs the caller may read, paged (_count, next links; _type to choose types). Each resource returned is audited as a read.",
                }]);
            }
            resource
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
            {"name": "agent", "type": "reference", "documentation": "Entries by this user: Practitioner/{id} (a clinician), the user id, or urn:confidant:user|{id}"},
            {"name": "action", "type": "token", "documentation": "The event's action (C, R, U, D, E), or an action code of urn:confidant:audit-action, e.g. read, search-hit, create, update, break-glass, login-failed"},
            {"name": "date", "type": "date", "documentation": "When: a day or instant, with eq, ge, gt, le or lt; repeat for a range. Newest first; _sort=date for oldest first"},
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
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every resource is encrypted at rest with a per-patient key. Search is exact-match only, through blind indexes. Page with _count (at most 100; 0 for the total only); follow the Bundle's next and previous links. Also: _summary=count, _elements, _sort (date, where listed). Unknown parameters are refused (400) unless Prefer: handling=lenient. Creates and updates honour Prefer: return=minimal|representation|OperationOutcome. Conditional create (If-None-Exist) and update (PUT type?params) match on the exact parameters; several matches, or one outside the caller's care, give 412. JSON only: other formats get 406.",
            "interaction": [
                {"code": "transaction", "documentation": format!("POST a Bundle of type transaction to the base: POST (with ifNoneExist), PUT Type/id (with ifMatch), GET Type/id; urn:uuid fullUrls resolved between entries; all or nothing. At most {MAX_BUNDLE_ENTRIES} entries.")},
                {"code": "batch", "documentation": format!("POST a Bundle of type batch to the base: each entry on its own (POST, PUT, GET read or search), each answered with its status or an OperationOutcome. At most {MAX_BUNDLE_ENTRIES} entries.")}
            ],
            "security": security(base),
            "resource": resources,
        }]
    })
}

/// `rest.security`: bearer tokens, from `confidant token create` or the SMART
/// App Launch flow, whose endpoints the oauth-uris extension names (so that
/// clients see this server is not open). `base` is the FHIR base URL, under
/// the server's own (`/fhir/r4`).
fn security(base: &str) -> Value {
    let server = base.strip_suffix("/fhir/r4").unwrap_or(base);
    json!({
        "cors": false,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
                "display": "SMART-on-FHIR"
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
        }],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": format!("{server}/oauth/authorize")},
                {"url": "token", "valueUri": format!("{server}/oauth/token")},
                {"url": "revoke", "valueUri": format!("{server}/oauth/revoke")}
            ]
        }],
        "description": "Bearer token in the Authorization header: an API token (confidant token create) or one a SMART app gets through the authorization code flow with PKCE (see /.well-known/smart-configuration)."
    })
}
