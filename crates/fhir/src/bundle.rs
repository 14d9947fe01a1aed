//! Transaction and batch Bundles: the shape of what a client POSTs to the
//! FHIR base, checked whole before anything is looked up or written, and the
//! `urn:uuid:` references between entries resolved once their ids are known.
//! Pure: what the entries do is the records service's.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::{ResourceType, is_valid_id};

/// Most entries a Bundle POSTed to the base may hold (the body limit applies as well).
/// A clinic's import goes through the same path without this cap (one transaction per file).
pub const MAX_BUNDLE_ENTRIES: usize = 500;

/// What a Bundle asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// All entries or none, in one store transaction.
    Transaction,
    /// Each entry on its own.
    Batch,
}

/// The HTTP method of an entry's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMethod {
    Get,
    Post,
    Put,
}

/// One entry of a transaction or batch: what it asks, with what.
#[derive(Debug, Clone)]
pub struct BundleEntry {
    /// `fullUrl` as given (a `urn:uuid:` the other entries may refer to).
    pub full_url: Option<String>,
    pub method: EntryMethod,
    pub resource_type: ResourceType,
    /// `Type/{id}` of a PUT or a GET.
    pub id: Option<String>,
    /// The query of a `GET Type?params` (a search; batch only).
    pub query: Option<String>,
    /// `request.ifNoneExist` (conditional create), without a leading `Type?`.
    pub if_none_exist: Option<String>,
    /// `request.ifMatch` of a PUT, as a version number.
    pub if_match: Option<i64>,
    /// The resource of a POST or PUT.
    pub resource: Option<Value>,
}

/// A Bundle refused whole: which entry (if one), and why. Never echoes values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    pub index: Option<usize>,
    /// The refusal is a feature this server does not have (an OperationOutcome `not-supported`).
    pub not_supported: bool,
    pub message: String,
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "Bundle.entry[{i}]: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn invalid(index: Option<usize>, message: impl Into<String>) -> BundleError {
    BundleError { index, not_supported: false, message: message.into() }
}

fn unsupported(index: Option<usize>, message: impl Into<String>) -> BundleError {
    BundleError { index, not_supported: true, message: message.into() }
}

/// Is `s` a `urn:uuid:` with a UUID in its canonical form (8-4-4-4-12 hex digits)?
pub fn is_urn_uuid(s: &str) -> bool {
    let Some(u) = s.strip_prefix("urn:uuid:") else { return false };
    let groups: Vec<&str> = u.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A transaction or batch Bundle, checked whole: its type, at most `max`
/// entries, each with a `request` this server serves, a resource where the
/// method needs one (of the type the URL names), no `fullUrl` given twice.
pub fn parse_bundle(bundle: &Value, max: usize) -> Result<(BundleKind, Vec<BundleEntry>), BundleError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(invalid(None, "POST to the FHIR base takes a Bundle of type transaction or batch"));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        Some(_) => {
            return Err(unsupported(None, "Bundle.type: only transaction and batch Bundles are processed here"));
        }
        None => return Err(invalid(None, "Bundle.type is required: transaction or batch")),
    };
    let entries = match bundle.get("entry") {
        None => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid(None, "Bundle.entry must be an array")),
    };
    if entries.len() > max {
        return Err(BundleError {
            index: None,
            not_supported: false,
            message: format!("a Bundle may hold at most {max} entries: split it"),
        });
    }
    let mut seen_urls = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let entry = parse_entry(i, e, kind)?;
        if let Some(url) = &entry.full_url
            && !seen_urls.insert(url.clone())
        {
            return Err(invalid(Some(i), "fullUrl is the same as an earlier entry's: each entry needs its own"));
        }
        out.push(entry);
    }
    Ok((kind, out))
}

fn parse_entry(i: usize, e: &Value, kind: BundleKind) -> Result<BundleEntry, BundleError> {
    let Value::Object(e) = e else { return Err(invalid(Some(i), "an entry must be an object")) };
    let full_url = match e.get("fullUrl") {
        None => None,
        Some(Value::String(u)) if u.starts_with("urn:uuid:") && !is_urn_uuid(u) => {
            return Err(invalid(Some(i), "fullUrl: a urn:uuid must hold a UUID (8-4-4-4-12 hex digits)"));
        }
        Some(Value::String(u)) if !u.is_empty() && u.len() <= 512 => Some(u.clone()),
        Some(_) => return Err(invalid(Some(i), "fullUrl must be a URI")),
    };
    let Some(Value::Object(req)) = e.get("request") else {
        return Err(invalid(Some(i), "request is required (method and url)"));
    };
    let text = |k: &str| req.get(k).and_then(Value::as_str);
    let method = match text("method") {
        Some("GET") => EntryMethod::Get,
        Some("POST") => EntryMethod::Post,
        Some("PUT") => EntryMethod::Put,
        Some("DELETE" | "PATCH" | "HEAD") => {
            return Err(unsupported(Some(i), "request.method: this server does not delete or patch records"));
        }
        _ => return Err(invalid(Some(i), "request.method must be GET, POST or PUT")),
    };
    let url = text("url").ok_or_else(|| invalid(Some(i), "request.url is required"))?;
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (url, None),
    };
    let mut parts = path.trim_matches('/').split('/');
    let rt_name = parts.next().unwrap_or("");
    let id = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return Err(unsupported(Some(i), "request.url must be Type or Type/{id} (relative to the base)"));
    }
    let resource_type = ResourceType::parse(rt_name)
        .ok_or_else(|| unsupported(Some(i), "request.url: resource type not served (see metadata)"))?;
    if let Some(id) = &id
        && !is_valid_id(id)
    {
        return Err(invalid(Some(i), "request.url: the id is not a valid FHIR id"));
    }
    let if_match = match text("ifMatch") {
        None => None,
        Some(v) => {
            let v = v.trim();
            let v = v.strip_prefix("W/").unwrap_or(v);
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or("");
            Some(
                v.parse::<i64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| invalid(Some(i), "request.ifMatch must be a version ETag such as W/\"3\""))?,
            )
        }
    };
    let if_none_exist = text("ifNoneExist").map(|c| {
        let prefix = format!("{rt_name}?");
        c.strip_prefix(&prefix).unwrap_or(c).to_owned()
    });
    for k in ["ifNoneMatch", "ifModifiedSince"] {
        if req.contains_key(k) {
            return Err(unsupported(Some(i), format!("request.{k} is not supported")));
        }
    }
    let resource = e.get("resource").cloned();
    match (method, &id, &query) {
        (EntryMethod::Post, None, None) => {}
        (EntryMethod::Post, _, _) => {
            return Err(invalid(Some(i), "a POST's request.url is the type alone (conditions go in ifNoneExist)"));
        }
        (EntryMethod::Put, Some(_), None) => {}
        (EntryMethod::Put, _, _) => {
            return Err(unsupported(
                Some(i),
                "a PUT's request.url must be Type/{id} (conditional update is not supported in a Bundle)",
            ));
        }
        (EntryMethod::Get, Some(_), None) => {}
        (EntryMethod::Get, None, _) if kind == BundleKind::Batch => {}
        (EntryMethod::Get, None, _) => {
            return Err(unsupported(Some(i), "a transaction's GET reads Type/{id}; searches go in a batch"));
        }
        (EntryMethod::Get, Some(_), Some(_)) => {
            return Err(invalid(Some(i), "request.url: a read takes no query"));
        }
    }
    if if_none_exist.is_some() && method != EntryMethod::Post {
        return Err(invalid(Some(i), "request.ifNoneExist belongs to a POST"));
    }
    if if_match.is_some() && method != EntryMethod::Put {
        return Err(invalid(Some(i), "request.ifMatch belongs to a PUT"));
    }
    match (method, &resource) {
        (EntryMethod::Get, Some(_)) => return Err(invalid(Some(i), "a GET entry carries no resource")),
        (EntryMethod::Get, None) => {}
        (_, Some(r)) if r.get("resourceType").and_then(Value::as_str) != Some(resource_type.as_str()) => {
            return Err(invalid(Some(i), "resource.resourceType must be the type request.url names"));
        }
        (_, Some(_)) => {}
        (_, None) => return Err(invalid(Some(i), "resource is required for a POST or PUT")),
    }
    Ok(BundleEntry { full_url, method, resource_type, id, query, if_none_exist, if_match, resource })
}

/// Replace every `reference` that is a `urn:uuid:` of `ids` (fullUrl →
/// `Type/{id}`) in `resource`. A `urn:uuid:` reference to no entry is refused.
pub fn resolve_references(resource: &mut Value, ids: &HashMap<String, String>) -> Result<(), String> {
    match resource {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match v {
                    Value::String(s) if k == "reference" && s.starts_with("urn:uuid:") => match ids.get(s.as_str()) {
                        Some(r) => *s = r.clone(),
                        None => return Err("a reference names a urn:uuid that is no entry's fullUrl".into()),
                    },
                    other => resolve_references(other, ids)?,
                }
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|v| resolve_references(v, ids)),
        _ => Ok(()),
    }
}

/// The conditions of a conditional create or update (`If-None-Exist`,
/// `ifNoneExist`, `PUT Type?…`): search parameters only (no paging, sorting or
/// other `_` parameters but `_id`), at least one.
pub fn parse_conditions(query: &str) -> Result<Vec<(String, String)>, BundleError> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k.starts_with('_') && k != "_id" {
            return Err(unsupported(
                None,
                format!(
                    "'{}' is not a condition: a conditional request takes search parameters only",
                    k.escape_default()
                ),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    if out.is_empty() {
        return Err(invalid(None, "a conditional request needs at least one search parameter"));
    }
    Ok(out)
}

/// Replace every `reference` that `map` holds (an exported record's
/// `Type/{id}` or fullUrl) by what it maps to; others are left as they are.
pub fn rewrite_references(resource: &mut Value, map: &HashMap<String, String>) {
    match resource {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match v {
                    Value::String(s) if k == "reference" => {
                        if let Some(r) = map.get(s.as_str()) {
                            *s = r.clone();
                        }
                    }
                    other => rewrite_references(other, map),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| rewrite_references(v, map)),
        _ => {}
    }
}

/// The conditional references of a resource (`Patient?identifier=sys|value`):
/// references that name a record by search parameters, for a transaction to
/// resolve to the one record they match. Each once, in the order met.
pub fn conditional_references(resource: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        Value::String(s) if k == "reference" && is_conditional_reference(s) => {
                            if !out.contains(s) {
                                out.push(s.clone());
                            }
                        }
                        other => walk(other, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(resource, &mut out);
    out
}

/// `Type?params` with a type name before the `?` (not a URL, not `urn:`).
fn is_conditional_reference(s: &str) -> bool {
    s.split_once('?').is_some_and(|(t, _)| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// A conditional reference to the `rt` record matching `conditions`, encoded.
pub fn conditional_reference(rt: ResourceType, conditions: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in conditions {
        ser.append_pair(k, v);
    }
    format!("{}?{}", rt.as_str(), ser.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const U1: &str = "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    const U2: &str = "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8";

    fn post(url: &str, rt: &str) -> Value {
        json!({"fullUrl": url, "resource": {"resourceType": rt}, "request": {"method": "POST", "url": rt}})
    }

    #[test]
    fn kinds_and_limits() {
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [post(U1, "Patient")]});
        let (kind, entries) = parse_bundle(&b, 10).unwrap();
        assert_eq!((kind, entries.len(), entries[0].method), (BundleKind::Transaction, 1, EntryMethod::Post));
        let e = parse_bundle(&json!({"resourceType": "Bundle", "type": "collection"}), 10).unwrap_err();
        assert!(e.not_supported && e.index.is_none());
        assert!(parse_bundle(&json!({"resourceType": "Patient"}), 10).is_err());
        let many = json!({"resourceType": "Bundle", "type": "batch", "entry": vec![post(U1, "Patient"); 11]});
        assert!(parse_bundle(&many, 10).unwrap_err().message.contains("at most 10"));
        let empty = json!({"resourceType": "Bundle", "type": "batch"});
        assert!(parse_bundle(&empty, 10).unwrap().1.is_empty());
    }

    #[test]
    fn entries_are_checked() {
        let one = |e: Value| parse_bundle(&json!({"resourceType": "Bundle", "type": "transaction", "entry": [e]}), 10);
        let twice = json!({"resourceType": "Bundle", "type": "transaction", "entry": [post(U1, "Patient"), post(U1, "Patient")]});
        assert_eq!(parse_bundle(&twice, 10).unwrap_err().index, Some(1));
        assert!(one(json!({"request": {"method": "DELETE", "url": "Patient/abc"}})).unwrap_err().not_supported);
        assert!(one(post("urn:uuid:not-a-uuid", "Patient")).is_err());
        assert!(one(json!({"resource": {"resourceType": "Patient"}})).is_err(), "no request");
        let wrong_type =
            json!({"resource": {"resourceType": "Encounter"}, "request": {"method": "POST", "url": "Patient"}});
        assert!(one(wrong_type).is_err());
        assert!(one(json!({"request": {"method": "GET", "url": "Patient?name=x"}})).unwrap_err().not_supported);
        assert!(one(json!({"request": {"method": "GET", "url": "Patient/../x"}})).is_err());
        assert!(one(json!({"request": {"method": "GET", "url": "Condition/x"}})).unwrap_err().not_supported);
        let put = json!({"resource": {"resourceType": "Patient", "id": "abc"},
            "request": {"method": "PUT", "url": "Patient/abc", "ifMatch": "W/\"3\""}});
        assert_eq!(one(put).unwrap().1[0].if_match, Some(3));
        let cond = json!({"resource": {"resourceType": "Patient"},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "Patient?identifier=x|1"}});
        assert_eq!(one(cond).unwrap().1[0].if_none_exist.as_deref(), Some("identifier=x|1"));
    }

    #[test]
    fn references_resolve() {
        let ids = HashMap::from([(U1.to_owned(), "Patient/abc".to_owned())]);
        let mut r = json!({"subject": {"reference": U1}, "participant": [{"actor": {"reference": "Practitioner/p"}}]});
        resolve_references(&mut r, &ids).unwrap();
        assert_eq!(r["subject"]["reference"], "Patient/abc");
        assert_eq!(r["participant"][0]["actor"]["reference"], "Practitioner/p");
        let mut unknown = json!({"subject": {"reference": U2}});
        assert!(resolve_references(&mut unknown, &ids).is_err());
        assert!(is_urn_uuid(U1) && !is_urn_uuid("urn:uuid:1b4e28ba") && !is_urn_uuid("Patient/x"));
        let r = conditional_reference(ResourceType::Patient, &[("identifier", "urn:oid:1|010180+123A")]);
        assert_eq!(r, "Patient?identifier=urn%3Aoid%3A1%7C010180%2B123A");
        let doc = json!({"subject": {"reference": r}, "a": [{"reference": "http://x/Patient?y=1"}, {"reference": r}]});
        assert_eq!(conditional_references(&doc), vec![r.clone()]);
        let (_, q) = r.split_once('?').unwrap();
        assert_eq!(parse_conditions(q).unwrap(), [("identifier".to_owned(), "urn:oid:1|010180+123A".to_owned())]);
    }
}
