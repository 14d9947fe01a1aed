//! `POST /fhir/r4`: transaction and batch Bundles.
//!
//! A transaction is all or nothing ([`confidant_records::Records::transaction`]):
//! the first entry refused (invalid, not found, not allowed, a failed
//! condition) answers for the whole Bundle, as an OperationOutcome naming the
//! entry, and nothing is written. A batch runs each entry as the single
//! request would run, and answers each on its own.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use confidant_fhir::{BundleEntry, BundleError, BundleKind, EntryMethod, IssueType, MAX_BUNDLE_ENTRIES};
use confidant_identity::Authenticated;
use confidant_records::{SearchRequest, Stored, TxDone, TxEntry, TxFailed, TxOp};
use serde_json::{Value, json};

use super::{Prefer, Return, conditions, create_resource, json_body, parse_query, search_entry, update_resource};
use crate::{ApiError, AppState, fhir_json};

pub(crate) async fn bundle(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let prefer = Prefer::of(&headers);
    let v = json_body(&headers, body)?;
    let (kind, entries) = confidant_fhir::parse_bundle(&v, MAX_BUNDLE_ENTRIES).map_err(refused)?;
    let answer = match kind {
        BundleKind::Transaction => transaction(&state, &auth, entries, prefer).await?,
        BundleKind::Batch => batch(&state, &auth, entries, prefer).await,
    };
    Ok(fhir_json(&answer))
}

fn refused(e: BundleError) -> ApiError {
    let code = if e.not_supported { IssueType::NotSupported } else { IssueType::Invalid };
    ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}

/// An entry's failure as the whole Bundle's answer: its status, its text after the entry's place.
fn at_entry(index: Option<usize>, e: ApiError) -> ApiError {
    match index {
        Some(i) => ApiError { diagnostics: format!("Bundle.entry[{i}]: {}", e.diagnostics), ..e },
        None => e,
    }
}

/// A transaction entry as the records service takes it.
fn tx_entry(i: usize, e: BundleEntry) -> Result<TxEntry, ApiError> {
    let rt = e.resource_type;
    let op = match (e.method, e.id, e.resource) {
        (EntryMethod::Post, _, Some(resource)) => {
            let if_none_exist =
                e.if_none_exist.as_deref().map(conditions).transpose().map_err(|e| at_entry(Some(i), e))?;
            TxOp::Create { rt, resource, if_none_exist }
        }
        (EntryMethod::Put, Some(id), Some(resource)) => TxOp::Update { rt, id, resource, if_match: e.if_match },
        (EntryMethod::Get, Some(id), None) => TxOp::Read { rt, id },
        // `parse_bundle` admits no other shape.
        _ => return Err(at_entry(Some(i), ApiError::bad_request("this entry's request is not served here"))),
    };
    Ok(TxEntry { full_url: e.full_url, op })
}

async fn transaction(
    state: &AppState,
    auth: &Authenticated,
    entries: Vec<BundleEntry>,
    prefer: Prefer,
) -> Result<Value, ApiError> {
    let tx = entries.into_iter().enumerate().map(|(i, e)| tx_entry(i, e)).collect::<Result<Vec<_>, _>>()?;
    let done = state
        .records
        .transaction(&auth.principal, tx)
        .await
        .map_err(|TxFailed { index, error }| at_entry(index, ApiError::from(error)))?;
    let entries: Vec<Value> = done
        .into_iter()
        .map(|d| {
            let (status, s) = match d {
                TxDone::Created(s) => (StatusCode::CREATED, s),
                TxDone::Existing(s) | TxDone::Updated(s) | TxDone::Read(s) => (StatusCode::OK, s),
            };
            answered(&state.base_url, status, &s, prefer)
        })
        .collect();
    Ok(without_empty(json!({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})))
}

/// A batch: each entry as the single request would run, each answered on its own.
async fn batch(state: &AppState, auth: &Authenticated, entries: Vec<BundleEntry>, prefer: Prefer) -> Value {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let answer = match one(state, auth, e, prefer).await {
            Ok(v) => v,
            Err(err) => json!({"response": {
                "status": status_line(err.status),
                "outcome": confidant_fhir::operation_outcome(err.code, &err.diagnostics),
            }}),
        };
        out.push(answer);
    }
    without_empty(json!({"resourceType": "Bundle", "type": "batch-response", "entry": out}))
}

async fn one(state: &AppState, auth: &Authenticated, e: BundleEntry, prefer: Prefer) -> Result<Value, ApiError> {
    let rt = e.resource_type;
    match (e.method, e.id, e.resource) {
        (EntryMethod::Post, _, Some(resource)) => {
            let c = e.if_none_exist.as_deref().map(conditions).transpose()?;
            let (status, s) = create_resource(state, auth, rt, resource, c).await?;
            Ok(answered(&state.base_url, status, &s, prefer))
        }
        (EntryMethod::Put, Some(id), Some(resource)) => {
            let s = update_resource(state, auth, rt, &id, resource, e.if_match).await?;
            Ok(answered(&state.base_url, StatusCode::OK, &s, prefer))
        }
        (EntryMethod::Get, Some(id), None) => {
            let s = state.records.read(&auth.principal, rt, &id).await?;
            Ok(answered(&state.base_url, StatusCode::OK, &s, Prefer::default()))
        }
        (EntryMethod::Get, None, None) => {
            let q = parse_query(e.query.as_deref())?;
            if q.count_only || q.elements.is_some() || q.sort.is_some() || q.before.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::NotSupported,
                    "a search in a batch takes search parameters, _count and _after only",
                ));
            }
            let req = SearchRequest { params: q.params, count: q.count.max(1), after: q.after };
            let page = state.records.search(&auth.principal, rt, &req).await?;
            let entries: Vec<Value> = page.entries.iter().map(|s| search_entry(&state.base_url, s)).collect();
            let mut found = json!({"resourceType": "Bundle", "type": "searchset", "total": page.total});
            if !entries.is_empty() {
                found["entry"] = Value::Array(entries);
            }
            Ok(json!({"resource": found, "response": {"status": status_line(StatusCode::OK)}}))
        }
        _ => Err(ApiError::bad_request("this entry's request is not served here")),
    }
}

fn status_line(status: StatusCode) -> String {
    format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""))
}

/// A response entry: the resource (unless `Prefer: return=minimal`) and where it is.
fn answered(base: &str, status: StatusCode, s: &Stored, prefer: Prefer) -> Value {
    let path = format!("{}/{}", s.resource_type.as_str(), s.id);
    let mut e = json!({
        "fullUrl": format!("{base}/fhir/r4/{path}"),
        "response": {
            "status": status_line(status),
            "location": format!("{path}/_history/{}", s.version_id),
            "etag": format!("W/\"{}\"", s.version_id),
            "lastModified": confidant_fhir::instant(s.last_updated),
        },
    });
    if prefer.ret != Return::Minimal {
        e["resource"] = s.resource.clone();
    }
    e
}

/// FHIR JSON has no empty arrays: a Bundle without entries leaves `entry` out.
fn without_empty(mut b: Value) -> Value {
    if b["entry"].as_array().is_some_and(Vec::is_empty)
        && let Value::Object(m) = &mut b
    {
        m.remove("entry");
    }
    b
}
