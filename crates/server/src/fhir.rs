//! FHIR R4 REST handlers: create, read, vread, update, history, search.

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use confidant_fhir::{IssueType, ResourceType};
use confidant_identity::Authenticated;
use confidant_records::{AuditQuery, SearchRequest, Stored};
use serde_json::{Value, json};

use crate::{ApiError, AppState, fhir_json};

use confidant_fhir::DEFAULT_COUNT;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/AuditEvent", get(audit_search))
        .route("/AuditEvent/{id}", get(audit_read))
        .route("/Questionnaire", get(questionnaires))
        .route("/Questionnaire/{id}", get(questionnaire))
        .route("/{type}", get(search).post(create))
        .route("/{type}/{id}", get(read).put(update))
        .route("/{type}/{id}/_history", get(history))
        .route("/{type}/{id}/_history/{vid}", get(vread))
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported, "method not supported here")
        })
}

pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    let date = confidant_fhir::instant(state.records.now_millis());
    fhir_json(&confidant_fhir::capability_statement(
        &format!("{}/fhir/r4", state.base_url),
        env!("CARGO_PKG_VERSION"),
        &date,
    ))
}

fn resource_type(s: &str) -> Result<ResourceType, ApiError> {
    ResourceType::parse(s).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotSupported,
            "resource type not supported; see /fhir/r4/metadata for what this server serves",
        )
    })
}

/// The body of a create or update: JSON, within the size limit, UTF-8.
fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = crate::error::admit_body(headers, body, &["application/fhir+json", "application/json"])?;
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::bad_request("request body is not valid UTF-8"));
    }
    // Errors give a line and column, never the input itself; a key given twice is refused.
    confidant_fhir::parse_json(&body).map_err(ApiError::bad_request)
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// One resource with its ETag and Last-Modified.
fn resource_response(status: StatusCode, s: &Stored, location: Option<String>) -> Response {
    let mut resp = fhir_json(&s.resource);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag(s.version_id));
    if let Ok(v) = HeaderValue::from_str(&confidant_fhir::http_date(s.last_updated)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, loc);
    }
    resp
}

fn parse_version(v: &str) -> Option<i64> {
    v.parse::<i64>().ok().filter(|v| *v > 0)
}

/// `If-Match: W/"3"` (or `"3"`) → 3.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("").trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(parse_version)
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("If-Match must be a version ETag such as W/\"3\""))
}

async fn create(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let resource = json_body(&headers, body)?;
    // An appointment is checked against the practitioner's other bookings (409 on a clash).
    let s = if rt == ResourceType::Appointment {
        state.records.write_appointment(&auth.principal, None, resource, None).await?
    } else {
        state.records.create(&auth.principal, rt, resource).await?
    };
    let location = format!("{}/fhir/r4/{}/{}/_history/{}", state.base_url, rt.as_str(), s.id, s.version_id);
    Ok(resource_response(StatusCode::CREATED, &s, Some(location)))
}

async fn read(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path((rt, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let s = state.records.read(&auth.principal, rt, &id).await?;
    Ok(resource_response(StatusCode::OK, &s, None))
}

async fn vread(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path((rt, id, vid)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let vid = parse_version(&vid).ok_or_else(|| ApiError::not_found("no such version"))?;
    let s = state.records.vread(&auth.principal, rt, &id, vid).await?;
    Ok(resource_response(StatusCode::OK, &s, None))
}

async fn update(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let expected = if_match(&headers)?;
    let resource = json_body(&headers, body)?;
    let s = if rt == ResourceType::Appointment {
        state.records.write_appointment(&auth.principal, Some(&id), resource, expected).await?
    } else {
        state.records.update(&auth.principal, rt, &id, resource, expected).await?
    };
    let location = format!("{}/fhir/r4/{}/{}/_history/{}", state.base_url, rt.as_str(), s.id, s.version_id);
    Ok(resource_response(StatusCode::OK, &s, Some(location)))
}

pub use confidant_fhir::SearchQuery as Query;

/// A refused query string as the API answers it.
fn query_error(e: confidant_fhir::QueryError) -> ApiError {
    match e {
        confidant_fhir::QueryError::NotSupported(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, e.to_string())
        }
        e => ApiError::bad_request(e.to_string()),
    }
}

fn parse_count(v: &str) -> Result<i64, ApiError> {
    confidant_fhir::parse_count(v).map_err(query_error)
}

/// A search or history query string ([`confidant_fhir::parse_search_query`]), refusals as API errors.
pub fn parse_query(raw: Option<&str>) -> Result<Query, ApiError> {
    confidant_fhir::parse_search_query(raw).map_err(query_error)
}

fn link(base: &str, path: &str, params: &[(String, String)], count: i64, after: Option<&str>) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    ser.append_pair("_count", &count.to_string());
    if let Some(a) = after {
        ser.append_pair("_after", a);
    }
    format!("{base}{path}?{}", ser.finish())
}

fn entry(base: &str, s: &Stored, search: bool) -> Value {
    let mut e = json!({
        "fullUrl": format!("{base}/fhir/r4/{}/{}", s.resource_type.as_str(), s.id),
        "resource": s.resource,
    });
    if search {
        e["search"] = json!({"mode": "match"});
    } else {
        e["response"] = json!({
            "status": "200",
            "etag": format!("W/\"{}\"", s.version_id),
            "lastModified": confidant_fhir::instant(s.last_updated),
        });
    }
    e
}

/// A Bundle. FHIR JSON allows no empty arrays: `entry` is left out when there is none.
fn bundle(kind: &str, total: i64, links: Vec<Value>, entries: Vec<Value>) -> Value {
    let mut b = json!({"resourceType": "Bundle", "type": kind, "total": total, "link": links});
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

async fn search(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path(rt): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let q = parse_query(raw.as_deref())?;
    let req = SearchRequest { params: q.params.clone(), count: q.count, after: q.after.clone() };
    let page = state.records.search(&auth.principal, rt, &req).await?;
    let path = format!("/fhir/r4/{}", rt.as_str());
    let mut links =
        vec![json!({"relation": "self", "url": link(&state.base_url, &path, &q.params, q.count, q.after.as_deref())})];
    if let Some(next) = &page.next_after {
        links.push(json!({"relation": "next", "url": link(&state.base_url, &path, &q.params, q.count, Some(next))}));
    }
    let entries: Vec<Value> = page.entries.iter().map(|s| entry(&state.base_url, s, true)).collect();
    Ok(fhir_json(&bundle("searchset", page.total, links, entries)))
}

async fn history(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path((rt, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let q = parse_query(raw.as_deref())?;
    if !q.params.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, "history takes only _count"));
    }
    let before = match &q.after {
        Some(a) => Some(
            parse_version(a)
                .ok_or_else(|| ApiError::bad_request("_after must be a cursor from a Bundle's next link"))?,
        ),
        None => None,
    };
    let (versions, total) = state.records.history(&auth.principal, rt, &id, before, q.count).await?;
    let path = format!("/fhir/r4/{}/{}/_history", rt.as_str(), id);
    let mut links =
        vec![json!({"relation": "self", "url": link(&state.base_url, &path, &[], q.count, q.after.as_deref())})];
    if let Some(last) = versions.last().filter(|l| l.version_id > 1 && versions.len() as i64 == q.count) {
        links.push(json!({"relation": "next", "url": link(&state.base_url, &path, &[], q.count, Some(&last.version_id.to_string()))}));
    }
    let entries: Vec<Value> = versions.iter().map(|s| entry(&state.base_url, s, false)).collect();
    Ok(fhir_json(&bundle("history", total, links, entries)))
}

/// `GET /fhir/r4/AuditEvent`: the audit log, newest first.
async fn audit_search(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = AuditQuery { count: DEFAULT_COUNT, ..AuditQuery::default() };
    let mut params = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        let once = |slot: &Option<String>| {
            if slot.is_some() {
                Err(ApiError::bad_request(format!("give '{k}' once")))
            } else {
                Ok(Some(v.clone().into_owned()))
            }
        };
        match k.as_ref() {
            "patient" => q.patient = once(&q.patient)?,
            "agent" => q.agent = once(&q.agent)?,
            "action" => q.action = once(&q.action)?,
            "date" => {
                let (from, until) = confidant_fhir::date_range(&v).ok_or_else(|| {
                    ApiError::bad_request(
                        "date must be a day (2026-11-29) or an instant, optionally prefixed eq, ge, gt, le or lt",
                    )
                })?;
                q.from = from.max(q.from);
                q.until = match (q.until, until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            "_count" => {
                q.count = parse_count(&v)?;
                continue;
            }
            "_after" => {
                q.before = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| ApiError::bad_request("_after must be a cursor from a Bundle's next link"))?,
                );
                continue;
            }
            "_format" | "_pretty" => continue,
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::NotSupported,
                    format!("AuditEvent has no search parameter '{}'", other.escape_default()),
                ));
            }
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    let page = state.records.audit_events(&auth.principal, &q).await?;
    let path = "/fhir/r4/AuditEvent";
    let before = q.before.map(|b| b.to_string());
    let mut links =
        vec![json!({"relation": "self", "url": link(&state.base_url, path, &params, q.count, before.as_deref())})];
    if let Some(next) = page.next_before {
        links.push(
            json!({"relation": "next", "url": link(&state.base_url, path, &params, q.count, Some(&next.to_string()))}),
        );
    }
    let entries: Vec<Value> = page
        .events
        .into_iter()
        .map(|e| {
            json!({
                "fullUrl": format!("{}/fhir/r4/AuditEvent/{}", state.base_url, e["id"].as_str().unwrap_or("")),
                "resource": e,
                "search": {"mode": "match"},
            })
        })
        .collect();
    // The total is left out: counting a large log for every page is not worth it.
    let mut b = bundle("searchset", 0, links, entries);
    if let Value::Object(m) = &mut b {
        m.remove("total");
    }
    Ok(fhir_json(&b))
}

/// `GET /fhir/r4/AuditEvent/{id}`.
async fn audit_read(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let event = state.records.audit_event(&auth.principal, &id).await?;
    Ok(fhir_json(&event))
}

/// The built-in outcome measures as a searchset (read-only, no patient data:
/// served from the binary, not the store, so nobody can change a validated instrument).
async fn questionnaires(State(state): State<AppState>) -> Response {
    let entries: Vec<Value> = confidant_records::measures::INSTRUMENTS
        .iter()
        .map(|i| json!({"fullUrl": format!("{}/fhir/r4/Questionnaire/{}", state.base_url, i.id), "resource": i.questionnaire()}))
        .collect();
    fhir_json(&json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}))
}

/// One built-in outcome measure: `phq-9`, `gad-7` or `core-10`.
async fn questionnaire(Path(id): Path<String>) -> Result<Response, ApiError> {
    confidant_records::measures::Instrument::find(&id).map(|i| fhir_json(&i.questionnaire())).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, IssueType::NotFound, "no such Questionnaire: phq-9, gad-7 or core-10")
    })
}
