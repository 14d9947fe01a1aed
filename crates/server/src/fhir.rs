//! FHIR R4 REST handlers: create, read, vread, update, history, search.
//!
//! Over 600 lines because it is the one place the FHIR interactions meet HTTP (their headers,
//! Prefer, paging links, the AuditEvent view); Bundles POSTed to the base are in `fhir/bundle.rs`.

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use confidant_fhir::{IssueType, ResourceType};
use confidant_identity::Authenticated;
use confidant_records::{AuditQuery, Conditional, SearchOptions, SearchRequest, Stored};
use serde_json::{Value, json};

use crate::{ApiError, AppState, fhir_json};

// Transaction and batch Bundles POSTed to the base (issue 19).
mod bundle;

use confidant_fhir::DEFAULT_COUNT;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/AuditEvent", get(audit_search))
        .route("/AuditEvent/{id}", get(audit_read))
        .route("/Questionnaire", get(questionnaires))
        .route("/Questionnaire/{id}", get(questionnaire))
        .route("/", axum::routing::post(bundle::bundle))
        .route("/{type}", get(search).post(create).put(conditional_update))
        .route("/{type}/{id}", get(read).put(update))
        .route("/{type}/{id}/_history", get(history))
        .route("/{type}/{id}/_history/{vid}", get(vread))
        // Operations on an instance: Patient/{id}/$everything.
        .route("/{type}/{id}/{operation}", get(crate::fhir_everything::operation))
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported, "method not supported here")
        })
}

/// `POST /fhir/r4/` (the base with a trailing slash, where some clients send Bundles),
/// outside the nested router, which answers only `/fhir/r4` itself.
pub(crate) fn base_with_slash() -> Router<AppState> {
    Router::new().route("/fhir/r4/", axum::routing::post(bundle::bundle))
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
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let prefer = Prefer::of(&headers);
    // Conditional create: `If-None-Exist: identifier=…`, or the same conditions as the POST's query.
    let if_none_exist = match headers.get("if-none-exist") {
        Some(v) => Some(v.to_str().map_err(|_| ApiError::bad_request("If-None-Exist must be a query string"))?),
        None => None,
    };
    let conditions = match (if_none_exist, raw.as_deref().filter(|q| !q.is_empty())) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give the conditions once: in If-None-Exist or in the query, not both"));
        }
        (Some(h), None) => Some(conditions(h.strip_prefix(&format!("{}?", rt.as_str())).unwrap_or(h))?),
        (None, Some(q)) => Some(conditions(q)?),
        (None, None) => None,
    };
    let resource = json_body(&headers, body)?;
    let (status, s) = create_resource(&state, &auth, rt, resource, conditions).await?;
    let location = format!("{}/fhir/r4/{}/{}/_history/{}", state.base_url, rt.as_str(), s.id, s.version_id);
    let what = if status == StatusCode::CREATED {
        "created"
    } else {
        "a record matching the conditions exists: it is returned, nothing was created"
    };
    Ok(written(prefer, status, &s, location, what))
}

/// A create (conditional with `conditions`): 201 and what was created, or 200 and the one match.
async fn create_resource(
    state: &AppState,
    auth: &Authenticated,
    rt: ResourceType,
    resource: Value,
    conditions: Option<Vec<(String, String)>>,
) -> Result<(StatusCode, Stored), ApiError> {
    Ok(match conditions {
        Some(c) => match state.records.create_conditional(&auth.principal, rt, resource, &c).await? {
            Conditional::Created(s) => (StatusCode::CREATED, s),
            Conditional::Existing(s) | Conditional::Updated(s) => (StatusCode::OK, s),
        },
        // An appointment is checked against the practitioner's other bookings (409 on a clash).
        None if rt == ResourceType::Appointment => {
            (StatusCode::CREATED, state.records.write_appointment(&auth.principal, None, resource, None).await?)
        }
        None => (StatusCode::CREATED, state.records.create(&auth.principal, rt, resource).await?),
    })
}

/// An update of `rt/id` (appointments checked for double bookings).
async fn update_resource(
    state: &AppState,
    auth: &Authenticated,
    rt: ResourceType,
    id: &str,
    resource: Value,
    expected: Option<i64>,
) -> Result<Stored, ApiError> {
    Ok(if rt == ResourceType::Appointment {
        state.records.write_appointment(&auth.principal, Some(id), resource, expected).await?
    } else {
        state.records.update(&auth.principal, rt, id, resource, expected).await?
    })
}

/// The conditions of a conditional create or update ([`confidant_fhir::parse_conditions`]).
fn conditions(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    confidant_fhir::parse_conditions(query).map_err(|e| {
        let code = if e.not_supported { IssueType::NotSupported } else { IssueType::Invalid };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.message)
    })
}

/// What a client asked for in `Prefer` (RFC 7240; unknown preferences are ignored).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Prefer {
    /// `return=`: what a create or update answers with.
    ret: Return,
    /// `handling=lenient`: unknown or unsupported search parameters are ignored, not refused.
    pub(crate) lenient: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

impl Prefer {
    pub(crate) fn of(headers: &HeaderMap) -> Prefer {
        let mut p = Prefer::default();
        for v in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
            for pref in v.split([',', ';']).map(str::trim) {
                match pref.split_once('=').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'))) {
                    Some((k, "minimal")) if k == "return" => p.ret = Return::Minimal,
                    Some((k, "representation")) if k == "return" => p.ret = Return::Representation,
                    Some((k, "OperationOutcome")) if k == "return" => p.ret = Return::OperationOutcome,
                    Some((k, "lenient")) if k == "handling" => p.lenient = true,
                    Some((k, "strict")) if k == "handling" => p.lenient = false,
                    _ => {}
                }
            }
        }
        p
    }
}

/// The answer to a create or update, as `Prefer: return=` asks: the resource
/// (default), nothing (`minimal`), or an OperationOutcome saying what happened.
fn written(prefer: Prefer, status: StatusCode, s: &Stored, location: String, what: &str) -> Response {
    let mut resp = resource_response(status, s, Some(location));
    match prefer.ret {
        Return::Representation => resp,
        Return::Minimal => {
            *resp.body_mut() = axum::body::Body::empty();
            resp.headers_mut().remove(header::CONTENT_TYPE);
            resp
        }
        Return::OperationOutcome => {
            let outcome = json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "informational", "diagnostics": what,
            }]});
            let headers = resp.headers().clone();
            let mut resp = fhir_json(&outcome);
            *resp.status_mut() = status;
            for k in [header::ETAG, header::LAST_MODIFIED, header::LOCATION] {
                if let Some(v) = headers.get(&k) {
                    resp.headers_mut().insert(k, v.clone());
                }
            }
            resp
        }
    }
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
    let prefer = Prefer::of(&headers);
    let expected = if_match(&headers)?;
    let resource = json_body(&headers, body)?;
    let s = update_resource(&state, &auth, rt, &id, resource, expected).await?;
    let location = format!("{}/fhir/r4/{}/{}/_history/{}", state.base_url, rt.as_str(), s.id, s.version_id);
    Ok(written(prefer, StatusCode::OK, &s, location, "updated"))
}

/// `PUT /fhir/r4/{type}?conditions`: FHIR conditional update.
async fn conditional_update(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path(rt): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let prefer = Prefer::of(&headers);
    let Some(query) = raw.as_deref().filter(|q| !q.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            "PUT needs an id (PUT {type}/{id}) or conditions (PUT {type}?identifier=...)",
        ));
    };
    let c = conditions(query)?;
    let expected = if_match(&headers)?;
    let resource = json_body(&headers, body)?;
    let (status, s, what) = match state.records.update_conditional(&auth.principal, rt, resource, &c, expected).await? {
        Conditional::Created(s) => (StatusCode::CREATED, s, "no record matched the conditions: created"),
        Conditional::Updated(s) | Conditional::Existing(s) => (StatusCode::OK, s, "updated"),
    };
    let location = format!("{}/fhir/r4/{}/{}/_history/{}", state.base_url, rt.as_str(), s.id, s.version_id);
    Ok(written(prefer, status, &s, location, what))
}

pub use confidant_fhir::SearchQuery as Query;

/// A refused query string as the API answers it.
pub(crate) fn query_error(e: confidant_fhir::QueryError) -> ApiError {
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

/// [`parse_query`] with lenient handling when `lenient` (`Prefer: handling=lenient`).
fn parse_query_with(raw: Option<&str>, lenient: bool) -> Result<Query, ApiError> {
    confidant_fhir::parse_search_query_with(raw, lenient).map_err(query_error)
}

/// A page link: the parameters, the kept result parameters, `_count` and the cursor.
fn link(base: &str, path: &str, q: &Query, cursor: Option<(&str, &str)>) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in q.params.iter().chain(&q.kept) {
        ser.append_pair(k, v);
    }
    for i in &q.include {
        ser.append_pair("_include", &i.name());
    }
    for i in &q.revinclude {
        ser.append_pair("_revinclude", &i.name());
    }
    ser.append_pair("_count", &q.count.to_string());
    if let Some((k, v)) = cursor {
        ser.append_pair(k, v);
    }
    format!("{base}{path}?{}", ser.finish())
}

/// The self link's cursor: the one the request gave.
fn own_cursor(q: &Query) -> Option<(&'static str, &str)> {
    q.after.as_deref().map(|a| ("_after", a)).or(q.before.as_deref().map(|b| ("_before", b)))
}

pub(crate) fn search_entry(base: &str, s: &Stored) -> Value {
    json!({
        "fullUrl": format!("{base}/fhir/r4/{}/{}", s.resource_type.as_str(), s.id),
        "resource": s.resource,
        "search": {"mode": "match"},
    })
}

/// A history entry: the resource version, the request that made it (bdl-3:
/// mandatory in a history Bundle) and its response (bdl-4).
fn history_entry(base: &str, s: &Stored) -> Value {
    let (method, url, status) = if s.version_id == 1 {
        ("POST", s.resource_type.as_str().to_owned(), "201 Created")
    } else {
        ("PUT", format!("{}/{}", s.resource_type.as_str(), s.id), "200 OK")
    };
    json!({
        "fullUrl": format!("{base}/fhir/r4/{}/{}", s.resource_type.as_str(), s.id),
        "resource": s.resource,
        "request": {"method": method, "url": url},
        "response": {
            "status": status,
            "etag": format!("W/\"{}\"", s.version_id),
            "lastModified": confidant_fhir::instant(s.last_updated),
        },
    })
}

/// A Bundle. FHIR JSON allows no empty arrays: `entry` is left out when there is none.
pub(crate) fn bundle(kind: &str, total: Option<i64>, links: Vec<Value>, entries: Vec<Value>) -> Value {
    let mut b = json!({"resourceType": "Bundle", "type": kind, "link": links});
    if let Some(t) = total {
        b["total"] = json!(t);
    }
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

/// The elements `_elements` always keeps: those FHIR requires of the type and the modifiers.
fn mandatory_elements(rt: ResourceType) -> &'static [&'static str] {
    match rt {
        ResourceType::Encounter => &["status", "class"],
        ResourceType::DocumentReference => &["status", "content"],
        ResourceType::Appointment => &["status", "participant"],
        ResourceType::Schedule => &["actor"],
        ResourceType::QuestionnaireResponse => &["status"],
        ResourceType::Observation => &["status", "code"],
        ResourceType::CareTeam => &["status"],
        ResourceType::Patient | ResourceType::Practitioner => &["active"],
    }
}

/// The code system of the `SUBSETTED` tag a summarised resource carries.
const OBSERVATION_VALUE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// `resource` with only `elements`, the mandatory ones and the modifiers, tagged SUBSETTED.
fn subset(rt: ResourceType, resource: &Value, elements: &[String]) -> Value {
    let Value::Object(m) = resource else { return resource.clone() };
    let always = ["resourceType", "id", "meta", "implicitRules", "modifierExtension"];
    let kept: serde_json::Map<String, Value> = m
        .iter()
        .filter(|(k, _)| {
            always.contains(&k.as_str())
                || mandatory_elements(rt).contains(&k.as_str())
                || elements.iter().any(|e| e == *k)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut out = Value::Object(kept);
    let tag = json!({"system": OBSERVATION_VALUE_SYSTEM, "code": "SUBSETTED"});
    match out.get_mut("meta").and_then(|meta| meta.as_object_mut()) {
        Some(meta) => match meta.get_mut("tag").and_then(Value::as_array_mut) {
            Some(tags) => tags.push(tag),
            None => {
                meta.insert("tag".into(), json!([tag]));
            }
        },
        None => out["meta"] = json!({"tag": [tag]}),
    }
    out
}

/// The date `_sort` of a search: `Some(true)` ascending, `Some(false)`
/// descending, `None` unsorted. What a type sorts by: AuditEvent `date`, an
/// Appointment search by `date` (its answer is one page).
fn sort_order(sort: Option<&str>, sortable: bool, lenient: bool) -> Result<Option<bool>, ApiError> {
    match sort {
        None => Ok(None),
        Some("date") if sortable => Ok(Some(true)),
        Some("-date") if sortable => Ok(Some(false)),
        Some(_) if lenient => Ok(None),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::NotSupported,
            "_sort supports date and -date, on AuditEvent and on an Appointment search by date; \
             other searches are in a fixed order (send Prefer: handling=lenient to have _sort ignored)",
        )),
    }
}

/// Whether `name` (perhaps with a modifier) is a search parameter of `rt`.
fn is_search_param(rt: ResourceType, name: &str) -> bool {
    let base = name.split(':').next().unwrap_or("");
    confidant_fhir::search_params(rt).iter().any(|p| p.name() == base)
        || (rt == ResourceType::Appointment && base == "date")
}

async fn search(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let prefer = Prefer::of(&headers);
    let mut q = parse_query_with(raw.as_deref(), prefer.lenient)?;
    if prefer.lenient {
        // Unknown parameters are left out (and out of the self link, which shows what was used).
        q.params.retain(|(k, _)| is_search_param(rt, k));
        q.include.retain(|i| i.source == rt);
        q.revinclude.retain(|i| i.target == rt);
    }
    confidant_fhir::check_includes(rt, &q.include, &q.revinclude)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, e))?;
    let by_date = rt == ResourceType::Appointment && q.params.iter().any(|(k, _)| k == "date");
    let order = sort_order(q.sort.as_deref(), by_date, prefer.lenient)?;
    let req = SearchRequest { params: q.params.clone(), count: q.count.max(1), after: q.after.clone() };
    let opts = SearchOptions { before: q.before.clone(), count_only: q.count_only };
    state.records.permit_includes(&auth.principal, &q.include, &q.revinclude).await?;
    let mut page = state.records.search_with(&auth.principal, rt, &req, &opts).await?;
    let path = format!("/fhir/r4/{}", rt.as_str());
    let mut links = vec![json!({"relation": "self", "url": link(&state.base_url, &path, &q, own_cursor(&q))})];
    if let Some(next) = &page.next_after {
        links.push(json!({"relation": "next", "url": link(&state.base_url, &path, &q, Some(("_after", next)))}));
    }
    if let Some(previous) = &page.previous_before {
        links.push(
            json!({"relation": "previous", "url": link(&state.base_url, &path, &q, Some(("_before", previous)))}),
        );
    }
    if let Some(ascending) = order {
        let start = |s: &Stored| confidant_records::span_of(&s.resource).map(|(st, _)| st);
        page.entries.sort_by_key(start);
        if !ascending {
            page.entries.reverse();
        }
    }
    let mut entries: Vec<Value> = page
        .entries
        .iter()
        .map(|s| {
            let mut e = search_entry(&state.base_url, s);
            if let Some(elements) = &q.elements {
                e["resource"] = subset(rt, &s.resource, elements);
            }
            e
        })
        .collect();
    // `_include` / `_revinclude`: after the matches, each audited as a read (none on a count).
    let includes = !q.include.is_empty() || !q.revinclude.is_empty();
    if includes && !q.count_only {
        let included = state.records.included(&auth.principal, rt, &page.entries, &q.include, &q.revinclude).await?;
        entries.extend(included.entries.iter().map(|s| crate::fhir_everything::include_entry(&state.base_url, s)));
        if included.truncated {
            entries.push(crate::fhir_everything::truncated_entry());
        }
    }
    Ok(fhir_json(&bundle("searchset", Some(page.total), links, entries)))
}

async fn history(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let rt = resource_type(&rt)?;
    let prefer = Prefer::of(&headers);
    let mut q = parse_query_with(raw.as_deref(), prefer.lenient)?;
    if prefer.lenient {
        q.params.clear();
        q.kept.clear();
        q.elements = None;
        q.sort = None;
    }
    if !q.params.is_empty()
        || q.elements.is_some()
        || q.sort.is_some()
        || q.count_only
        || q.before.is_some()
        || !q.include.is_empty()
        || !q.revinclude.is_empty()
    {
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
    let mut links = vec![json!({"relation": "self", "url": link(&state.base_url, &path, &q, own_cursor(&q))})];
    if let Some(last) = versions.last().filter(|l| l.version_id > 1 && versions.len() as i64 == q.count) {
        links.push(json!({"relation": "next", "url": link(&state.base_url, &path, &q, Some(("_after", &last.version_id.to_string())))}));
    }
    // Versions are numbered 1, 2, …: the previous (newer) page is the one below the version `count` above this page's first.
    if let (Some(_), Some(first)) = (&q.after, versions.first()) {
        let cursor = (first.version_id + 1 + q.count).to_string();
        links.push(json!({"relation": "previous", "url": link(&state.base_url, &path, &q, Some(("_after", &cursor)))}));
    }
    let entries: Vec<Value> = versions.iter().map(|s| history_entry(&state.base_url, s)).collect();
    Ok(fhir_json(&bundle("history", Some(total), links, entries)))
}

/// `GET /fhir/r4/AuditEvent`: the audit log, newest first (`_sort=date`: oldest first).
async fn audit_search(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let prefer = Prefer::of(&headers);
    let mut q = AuditQuery { count: DEFAULT_COUNT, ..AuditQuery::default() };
    let mut params = Vec::new();
    let mut kept = Vec::new();
    let mut backwards = None;
    let mut ascending = false;
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
                if q.count == 0 {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        IssueType::NotSupported,
                        "AuditEvent searches are not counted: _count must be from 1 to 100",
                    ));
                }
                continue;
            }
            "_after" | "_before" => {
                let seq = v
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| ApiError::bad_request("_after must be a cursor from a Bundle's next link"))?;
                if q.before.is_some() {
                    return Err(ApiError::bad_request("give _after or _before, not both"));
                }
                q.before = Some(seq);
                backwards = Some(k == "_before");
                continue;
            }
            "_sort" => {
                ascending = sort_order(Some(&v), true, prefer.lenient)? == Some(true);
                kept.push((k.into_owned(), v.into_owned()));
                continue;
            }
            "_format" | "_pretty" => continue,
            _ if prefer.lenient => continue,
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
    // A previous page is read the other way from its cursor, then turned round.
    let backwards = backwards == Some(true);
    let mut page = state.records.audit_events_in_order(&auth.principal, &q, ascending ^ backwards).await?;
    if backwards {
        page.events.reverse();
    }
    let seq_of = |e: &Value| e["id"].as_str().unwrap_or("").to_owned();
    let first = page.events.first().map(seq_of);
    let last = page.events.last().map(seq_of);
    let (next, previous) = if backwards {
        (last, page.next_before.and(first))
    } else {
        (page.next_before.and(last), first.filter(|_| q.before.is_some()))
    };
    let lq = Query { params, count: q.count, kept, ..Query::default() };
    let path = "/fhir/r4/AuditEvent";
    let own = q.before.map(|b| b.to_string());
    let own = own.as_deref().map(|b| (if backwards { "_before" } else { "_after" }, b));
    let mut links = vec![json!({"relation": "self", "url": link(&state.base_url, path, &lq, own)})];
    if let Some(next) = &next {
        links.push(json!({"relation": "next", "url": link(&state.base_url, path, &lq, Some(("_after", next)))}));
    }
    if let Some(previous) = &previous {
        links.push(
            json!({"relation": "previous", "url": link(&state.base_url, path, &lq, Some(("_before", previous)))}),
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
    Ok(fhir_json(&bundle("searchset", None, links, entries)))
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
async fn questionnaires(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    // No search parameters: the three are always listed (strict handling refuses any).
    let q = parse_query_with(raw.as_deref(), Prefer::of(&headers).lenient)?;
    if let Some((k, _)) = q.params.first().filter(|_| !Prefer::of(&headers).lenient) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::NotSupported,
            format!("Questionnaire has no search parameter '{}'", k.escape_default()),
        ));
    }
    if !(q.include.is_empty() && q.revinclude.is_empty()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, "Questionnaire has no includes"));
    }
    let entries: Vec<Value> = confidant_records::measures::INSTRUMENTS
        .iter()
        .map(|i| json!({"fullUrl": format!("{}/fhir/r4/Questionnaire/{}", state.base_url, i.id), "resource": i.questionnaire()}))
        .collect();
    let self_link = json!({"relation": "self", "url": format!("{}/fhir/r4/Questionnaire", state.base_url)});
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|mut e| {
            e["search"] = json!({"mode": "match"});
            e
        })
        .collect();
    Ok(fhir_json(&bundle("searchset", Some(entries.len() as i64), vec![self_link], entries)))
}

/// One built-in outcome measure: `phq-9`, `gad-7` or `core-10`.
async fn questionnaire(Path(id): Path<String>) -> Result<Response, ApiError> {
    confidant_records::measures::Instrument::find(&id).map(|i| fhir_json(&i.questionnaire())).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, IssueType::NotFound, "no such Questionnaire: phq-9, gad-7 or core-10")
    })
}

/// Only FHIR JSON is served: `_format` or an `Accept` header that admits no
/// JSON (`application/fhir+xml`, `xml`, `ttl`, …) gets `406`, as an
/// OperationOutcome (in JSON, the one format there is), before anything else.
pub(crate) async fn formats(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let json_format = |f: &str| {
        let f = f.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(f.as_str(), "json" | "application/json" | "application/fhir+json" | "*/*" | "application/*")
    };
    let format = req
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "_format").map(|(_, v)| v.into_owned()));
    let refused = match format {
        Some(f) => !json_format(&f) || f.trim() == "*/*" || f.trim() == "application/*",
        None => {
            let accept: Vec<&str> =
                req.headers().get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
            // No Accept header accepts anything; otherwise one of its types must be JSON
            // (a type given q=0 is one the client refuses).
            !accept.is_empty()
                && !accept.iter().flat_map(|a| a.split(',')).any(|t| {
                    let refused = t.split(';').skip(1).any(|p| {
                        p.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
                    });
                    json_format(t) && !refused
                })
        }
    };
    if refused {
        return ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            "this server serves FHIR JSON only (application/fhir+json): XML and other formats are not supported",
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::{Prefer, Return, parse_query, parse_query_with};

    #[test]
    fn counts_cursors_and_result_parameters() {
        for raw in ["_count=0", "_summary=count", "_summary=count&_count=5", "_count=5&_summary=count"] {
            let q = parse_query(Some(raw)).unwrap();
            assert!(q.count_only && q.count == 0, "{raw}");
        }
        let q = parse_query(Some("family=x&_count=500&_before=abc&_elements=name,birthDate&_sort=-date")).unwrap();
        assert_eq!((q.count, q.before.as_deref(), q.sort.as_deref()), (100, Some("abc"), Some("-date")));
        assert_eq!(q.elements.unwrap(), ["name", "birthDate"]);
        assert_eq!(q.params, [("family".to_owned(), "x".to_owned())]);
        for bad in ["_count=-1", "_after=a&_before=b", "_before=../x", "_elements=a.b", "_summary=true", "_include=x"] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
        // Lenient: unsupported `_` parameters are dropped; malformed known ones still refused.
        assert!(parse_query_with(Some("_include=x&_summary=text&family=y"), true).unwrap().params.len() == 1);
        assert!(parse_query_with(Some("_count=x"), true).is_err());
    }

    #[test]
    fn prefer_headers() {
        let of = |v: &[&str]| {
            let mut h = axum::http::HeaderMap::new();
            for v in v {
                h.append("prefer", v.parse().unwrap());
            }
            Prefer::of(&h)
        };
        assert_eq!(of(&[]).ret, Return::Representation);
        assert_eq!(of(&["return=minimal"]).ret, Return::Minimal);
        assert_eq!(of(&["return=OperationOutcome; handling=lenient"]).ret, Return::OperationOutcome);
        assert!(of(&["return=minimal", "handling=lenient"]).lenient);
        assert!(!of(&["handling=lenient, handling=strict"]).lenient);
        assert_eq!(of(&["return=<script>"]).ret, Return::Representation);
    }
}
