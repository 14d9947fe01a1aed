//! FHIR operations on an instance (`Patient/{id}/$everything`) and the Bundle
//! entries of `_include` / `_revinclude` (issue 19). The records service
//! decides what is seen and audits each resource; this builds the Bundles.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use confidant_fhir::{IssueType, MAX_INCLUDED, ResourceType};
use confidant_identity::Authenticated;
use confidant_policy::Principal;
use confidant_records::{COMPARTMENT, EverythingCursor, EverythingRequest, RecordsError, Stored};
use serde_json::{Value, json};

use crate::fhir::{Prefer, bundle, query_error, search_entry};
use crate::{ApiError, AppState, fhir_json};

/// An included resource's entry: `search.mode = include`.
pub(crate) fn include_entry(base: &str, s: &Stored) -> Value {
    let mut e = search_entry(base, s);
    e["search"] = json!({"mode": "include"});
    e
}

/// The entry saying that a page's includes were cut at [`MAX_INCLUDED`].
pub(crate) fn truncated_entry() -> Value {
    json!({
        "resource": {"resourceType": "OperationOutcome", "issue": [{
            "severity": "warning", "code": "too-costly",
            "diagnostics": format!(
                "more than {MAX_INCLUDED} resources would be included in this page: the first {MAX_INCLUDED} are; \
                 ask for a smaller _count to have them all"
            ),
        }]},
        "search": {"mode": "outcome"},
    })
}

/// `GET /fhir/r4/{type}/{id}/{operation}`: `Patient/{id}/$everything`; any other operation is not served.
pub(crate) async fn operation(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path((rt, id, operation)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if rt != "Patient" || operation != "$everything" {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotSupported,
            "no such operation: this server serves Patient/{id}/$everything (see /fhir/r4/metadata)",
        ));
    }
    let (req, kept) = everything_query(raw.as_deref(), Prefer::of(&headers).lenient)?;
    let page = state.records.everything(&auth.principal, &id, &req).await?;
    let path = format!("/fhir/r4/Patient/{id}/$everything");
    let link = |cursor: Option<&EverythingCursor>| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &kept {
            ser.append_pair(k, v);
        }
        ser.append_pair("_count", &req.count.to_string());
        if let Some(c) = cursor {
            ser.append_pair("_after", &c.encode());
        }
        format!("{}{path}?{}", state.base_url, ser.finish())
    };
    let mut links = vec![json!({"relation": "self", "url": link(req.after.as_ref())})];
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": link(Some(next))}));
    }
    let entries = page.entries.iter().map(|s| search_entry(&state.base_url, s)).collect();
    Ok(fhir_json(&bundle("searchset", Some(page.total), links, entries)))
}

/// The query of `$everything`: `_count` (1 to 100), `_after` (a next link's
/// cursor), `_type` (comma-separated: Patient and the types of a patient's
/// record). Other parameters are refused (ignored with lenient handling);
/// `_since`, `start` and `end` are not supported.
fn everything_query(raw: Option<&str>, lenient: bool) -> Result<(EverythingRequest, Vec<(String, String)>), ApiError> {
    let not_supported = |m: String| ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, m);
    let mut req = EverythingRequest { count: confidant_fhir::DEFAULT_COUNT, ..EverythingRequest::default() };
    let mut kept = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "_count" => {
                req.count = confidant_fhir::parse_count(&v).map_err(query_error)?;
                if req.count == 0 {
                    return Err(not_supported("$everything is not counted: _count must be from 1 to 100".into()));
                }
            }
            "_after" => {
                req.after = Some(
                    EverythingCursor::decode(&v)
                        .ok_or_else(|| ApiError::bad_request("_after must be a cursor from a Bundle's next link"))?,
                );
            }
            "_type" => {
                if req.types.is_some() {
                    return Err(ApiError::bad_request("give _type once (comma-separated types)"));
                }
                let mut types = Vec::new();
                for t in v.split(',').map(str::trim) {
                    match ResourceType::parse(t) {
                        Some(rt) if rt == ResourceType::Patient || COMPARTMENT.contains(&rt) => types.push(rt),
                        _ => {
                            return Err(not_supported(format!(
                                "_type: '{}' is not a type of a patient's record (Patient, {})",
                                t.escape_default(),
                                COMPARTMENT.map(ResourceType::as_str).join(", ")
                            )));
                        }
                    }
                }
                req.types = Some(types);
                kept.push((k.into_owned(), v.into_owned()));
            }
            "_format" | "_pretty" => {}
            _ if lenient => {}
            "_since" | "start" | "end" => {
                return Err(not_supported(format!(
                    "$everything does not support '{k}': it returns every current record (filter with _type)"
                )));
            }
            other => {
                return Err(not_supported(format!(
                    "$everything has no parameter '{}' (send Prefer: handling=lenient to have it ignored)",
                    other.escape_default()
                )));
            }
        }
    }
    Ok((req, kept))
}

/// The patient's own records as one searchset Bundle, every page of
/// `$everything` (each resource audited as a read): "download my data".
pub(crate) async fn everything_bundle(state: &AppState, p: &Principal, patient: &str) -> Result<Value, RecordsError> {
    let mut req = EverythingRequest { count: confidant_fhir::MAX_COUNT, ..EverythingRequest::default() };
    let mut entries = Vec::new();
    let total = loop {
        let page = state.records.everything(p, patient, &req).await?;
        entries.extend(page.entries.iter().map(|s| search_entry(&state.base_url, s)));
        match page.next {
            Some(next) => req.after = Some(next),
            None => break page.total,
        }
    };
    let url = format!("{}/fhir/r4/Patient/{patient}/$everything", state.base_url);
    let mut b = bundle("searchset", Some(total), vec![json!({"relation": "self", "url": url})], entries);
    b["timestamp"] = json!(confidant_fhir::instant(state.records.now_millis()));
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::everything_query;

    #[test]
    fn everything_query_strings() {
        let (r, kept) = everything_query(Some("_count=5&_type=Patient,DocumentReference&_after=3.abc"), false).unwrap();
        assert_eq!((r.count, r.types.unwrap().len(), r.after.unwrap().index), (5, 2, 3));
        assert_eq!(kept.len(), 1);
        for bad in [
            "_count=0",
            "_count=x",
            "_after=zz",
            "_type=Practitioner",
            "_type=Foo",
            "_type=Patient&_type=Patient",
            "_since=2026-01-01",
            "_include=Appointment:patient",
            "foo=bar",
        ] {
            assert!(everything_query(Some(bad), false).is_err(), "{bad}");
        }
        assert!(everything_query(Some("foo=bar&_since=2026-01-01"), true).is_ok(), "lenient");
    }
}
