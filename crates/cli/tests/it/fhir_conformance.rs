//! FHIR conformance that real clients need (issue 19): conditional create and
//! update on blind-indexed parameters (through the same policy and audit path
//! as any write), count-only searches, `previous` links, malformed prefixes,
//! JSON only (406), `Prefer` (return, handling), `_elements`, `_sort`, the
//! element-level invariants refused on write, AuditEvent by `agent` and
//! `action` as the events carry them, conformant history Bundles, and a
//! CapabilityStatement checked against what the router answers. A real FHIR
//! client library (npm `fhir-kit-client`) drives conditional create, paging
//! and history.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, create_token, note, patient, row_counts, validate_fhir};

const HETU: &str = "urn:oid:1.2.246.21";

async fn send(
    s: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = if path.starts_with("http") { path.to_owned() } else { s.fhir(path) };
    let mut req = s.http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/fhir+json").body(serde_json::to_vec(b).unwrap());
    }
    let r = req.send().await.unwrap();
    let (status, h) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap();
    (status, h, serde_json::from_str(&text).unwrap_or(if text.is_empty() { Value::Null } else { json!(text) }))
}

fn with_identifier(family: &str, value: &str) -> Value {
    let mut p = patient(family, "Testi");
    p["identifier"] = json!([{"system": HETU, "value": value}]);
    p
}

pub(crate) fn diagnostics(v: &Value) -> String {
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    v["issue"][0]["diagnostics"].as_str().unwrap_or("").to_owned()
}

pub(crate) async fn user_id(s: &Server, token: &str) -> (String, Option<String>) {
    let r = s.http.get(format!("{}/api/v1/me", s.url)).bearer_auth(token).send().await.unwrap();
    let me: Value = r.json().await.unwrap();
    (me["user_id"].as_str().unwrap().to_owned(), me["practitioner_id"].as_str().map(str::to_owned))
}

pub(crate) async fn audit_events(s: &Server, auditor: &str, query: &str) -> Vec<Value> {
    let (st, _, b) = send(s, Some(auditor), Method::GET, &format!("AuditEvent?{query}&_count=100"), &[], None).await;
    assert_eq!(st, StatusCode::OK, "{query}: {b}");
    b["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
}

both_backends!(conditional_create_and_update);
both_backends!(counts_pages_prefixes_formats_and_handling);

/// Conditional create (`If-None-Exist`, `POST Patient?identifier=`) and update
/// (`PUT Patient?identifier=`): 0 matches create, 1 visible match answers or
/// updates it, more (or one outside the caller's care) 412 without naming it,
/// audited. Wrong role, no token, hostile conditions.
async fn conditional_create_and_update(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Toinen Kliinikko"]);
    add_user(&inst.dir, "rec1", "reception", &[]);
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");
    let reception = create_token(&inst.dir, "rec1", "user/*.*");
    let auditor = create_token(&inst.dir, "aud1", "user/*.*");
    let cond = format!("identifier={HETU}|010180-123A");
    let body = with_identifier("Ehdollinen", "010180-123A");

    // No match: created (201); the same again: the existing one (200), no duplicate.
    let (st, h, first) =
        send(&s, Some(&s.token), Method::POST, "Patient", &[("If-None-Exist", &cond)], Some(&body)).await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    assert!(h.get("location").is_some());
    let pid = first["id"].as_str().unwrap().to_owned();
    let (st, _, again) =
        send(&s, Some(&s.token), Method::POST, "Patient", &[("If-None-Exist", &cond)], Some(&body)).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["id"], pid.as_str());
    // The same as the query of the POST.
    let (st, _, q) = send(&s, Some(&s.token), Method::POST, &format!("Patient?{cond}"), &[], Some(&body)).await;
    assert_eq!(st, StatusCode::OK, "{q}");
    assert_eq!(q["id"], pid.as_str());
    let (_, _, all) = send(&s, Some(&reception), Method::GET, "Patient?identifier=010180-123A", &[], None).await;
    assert_eq!(all["total"], 1, "no duplicate: {all}");
    // The answer that found it is audited as a search hit naming the patient.
    let (me, _) = user_id(&s, &s.token).await;
    let hits = audit_events(&s, &auditor, &format!("patient={pid}&agent={me}&action=search-hit")).await;
    assert!(hits.len() >= 2, "{hits:?}");

    // A clinician who may not see that patient: 412, the patient not named, nothing created; audited as refused.
    let (before_v, before_h, _) = row_counts(&inst).await;
    let (st, _, refused) =
        send(&s, Some(&clin2), Method::POST, "Patient", &[("If-None-Exist", &cond)], Some(&body)).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{refused}");
    assert!(!refused.to_string().contains(&pid), "{refused}");
    assert_eq!(diagnostics(&refused), confidant_records::CONDITION_NOT_MET);
    let (after_v, after_h, _) = row_counts(&inst).await;
    assert_eq!((before_v, before_h), (after_v, after_h), "nothing written");
    let (clin2_id, _) = user_id(&s, &clin2).await;
    let denied = audit_events(&s, &auditor, &format!("patient={pid}&agent={clin2_id}")).await;
    assert!(denied.iter().any(|e| e["outcome"] == "4" && e["action"] == "C"), "{denied:?}");
    // The patient sees it in their access log.
    add_user(&inst.dir, "pat1", "patient", &["--patient", &pid]);
    let own = create_token(&inst.dir, "pat1", "user/*.read");
    let (_, _, log) = send(&s, Some(&own), Method::GET, "AuditEvent?_count=100", &[], None).await;
    assert!(log["entry"].as_array().unwrap().iter().any(|e| e["resource"]["outcome"] == "4"), "{log}");

    // Two matches: 412 for the clinician who sees both.
    let mut twin = with_identifier("Kaksonen", "020202-222B");
    twin["telecom"] = json!([{"system": "email", "value": "twins@example.fi"}]);
    s.create(&twin).await;
    twin["identifier"][0]["value"] = json!("030303-333C");
    s.create(&twin).await;
    let (st, _, b) =
        send(&s, Some(&s.token), Method::POST, "Patient", &[("If-None-Exist", "email=twins@example.fi")], Some(&twin))
            .await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{b}");

    // Conditional update: the one match is updated; no match creates; an id in the body must be that one's.
    let mut changed = body.clone();
    changed["gender"] = json!("female");
    let (st, _, up) = send(&s, Some(&s.token), Method::PUT, &format!("Patient?{cond}"), &[], Some(&changed)).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    assert_eq!((up["id"].as_str(), up["meta"]["versionId"].as_str()), (Some(pid.as_str()), Some("2")));
    let mut wrong_id = changed.clone();
    wrong_id["id"] = json!("someotherid");
    let (st, _, b) = send(&s, Some(&s.token), Method::PUT, &format!("Patient?{cond}"), &[], Some(&wrong_id)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let fresh = with_identifier("Uusi", "040404-444D");
    let (st, _, created) =
        send(&s, Some(&s.token), Method::PUT, &format!("Patient?identifier={HETU}|040404-444D"), &[], Some(&fresh))
            .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let mut with_id = with_identifier("Uusi", "050505-555E");
    with_id["id"] = json!("clientchosen");
    let (st, _, b) = send(&s, Some(&s.token), Method::PUT, "Patient?identifier=050505-555E", &[], Some(&with_id)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (st, _, b) = send(&s, Some(&clin2), Method::PUT, &format!("Patient?{cond}"), &[], Some(&changed)).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{b}");
    assert!(!b.to_string().contains(&pid));
    // A stale If-Match on the match: 412 (the version), nothing changed.
    let (st, _, b) =
        send(&s, Some(&s.token), Method::PUT, &format!("Patient?{cond}"), &[("If-Match", "W/\"1\"")], Some(&changed))
            .await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{b}");
    assert!(diagnostics(&b).contains("version"), "{b}");

    // Prefer: return=minimal (no body), OperationOutcome, representation (default).
    let (st, h, b) = send(
        &s,
        Some(&s.token),
        Method::POST,
        "Patient",
        &[("If-None-Exist", &cond), ("Prefer", "return=minimal")],
        Some(&body),
    )
    .await;
    assert_eq!((st, b), (StatusCode::OK, Value::Null));
    assert!(h.get("etag").is_some() && h.get("location").is_some());
    let (st, _, b) = send(
        &s,
        Some(&s.token),
        Method::POST,
        "Patient",
        &[("Prefer", "return=OperationOutcome")],
        Some(&patient("Tulos", "Olio")),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        (b["resourceType"].as_str(), b["issue"][0]["severity"].as_str()),
        (Some("OperationOutcome"), Some("information"))
    );
    let (st, _, b) = send(
        &s,
        Some(&s.token),
        Method::PUT,
        &format!("Patient?{cond}"),
        &[("Prefer", "return=representation")],
        Some(&changed),
    )
    .await;
    assert_eq!((st, b["resourceType"].as_str()), (StatusCode::OK, Some("Patient")));

    // Wrong role, no token: refused before anything is matched.
    for (token, expected) in [
        (Some(own.as_str()), StatusCode::FORBIDDEN),
        (Some(auditor.as_str()), StatusCode::FORBIDDEN),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        let (st, _, b) = send(&s, token, Method::POST, "Patient", &[("If-None-Exist", &cond)], Some(&body)).await;
        assert_eq!(st, expected, "{b}");
        assert!(!b.to_string().contains(&pid));
        let (st, _, _) = send(&s, token, Method::PUT, &format!("Patient?{cond}"), &[], Some(&changed)).await;
        assert_eq!(st, expected);
    }

    // Hostile or unusable conditions: 400, nothing created, nothing echoed.
    let (v0, h0, _) = row_counts(&inst).await;
    let long = (0..25).map(|i| format!("identifier=x{i}")).collect::<Vec<_>>().join("&");
    for c in [
        "_count=1",
        "name=Ehdollinen",
        "family=Ehdollinen",
        "nosuchparam=<script>alert(1)</script>",
        "birthdate=%3E1980-01-01",
        "",
        long.as_str(),
    ] {
        let (st, _, b) = send(&s, Some(&s.token), Method::POST, "Patient", &[("If-None-Exist", c)], Some(&body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{c}: {b}");
        assert!(!b.to_string().contains("<script>"), "{b}");
    }
    let (st, _, _) =
        send(&s, Some(&s.token), Method::POST, &format!("Patient?{cond}"), &[("If-None-Exist", &cond)], Some(&body))
            .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "conditions given twice");
    let (st, _, _) = send(&s, Some(&s.token), Method::PUT, "Patient", &[], Some(&changed)).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "PUT without id or conditions");
    let r = s
        .http
        .post(s.fhir("Patient"))
        .bearer_auth(&s.token)
        .header("content-type", "application/fhir+json")
        .header("If-None-Exist", reqwest::header::HeaderValue::from_bytes(b"identifier=\xff\xfe").unwrap())
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // An invalid body with valid conditions: the body's error, nothing created.
    let (st, _, b) = send(
        &s,
        Some(&s.token),
        Method::POST,
        "Patient",
        &[("If-None-Exist", "identifier=zzz")],
        Some(&json!({"resourceType": "Patient", "name": [{}]})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(row_counts(&inst).await.0, v0);
    assert_eq!(row_counts(&inst).await.1, h0);
}

/// `_count=0` and `_summary=count` (audited per match), `previous` links,
/// a malformed prefix, JSON only, strict and lenient handling, `_elements`, `_sort`.
async fn counts_pages_prefixes_formats_and_handling(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Toinen Kliinikko"]);
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");
    let auditor = create_token(&inst.dir, "aud1", "user/*.*");
    let mut ids = Vec::new();
    for given in ["Aa", "Bb", "Cc", "Dd", "Ee"] {
        ids.push(s.create(&patient("Sivutus", given)).await["id"].as_str().unwrap().to_owned());
    }
    ids.sort();

    // Count only: a total, no entries; every match counted is audited as a search hit.
    let (me, _) = user_id(&s, &s.token).await;
    let hits_before = audit_events(&s, &auditor, &format!("agent={me}&action=search-hit")).await.len();
    for q in ["Patient?family=Sivutus&_count=0", "Patient?family=Sivutus&_summary=count"] {
        let (st, _, b) = send(&s, Some(&s.token), Method::GET, q, &[], None).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!((b["total"].as_i64(), b.get("entry")), (Some(5), None), "{b}");
    }
    let hits_after = audit_events(&s, &auditor, &format!("agent={me}&action=search-hit")).await.len();
    assert_eq!(hits_after - hits_before, 10, "each counted match audited");
    // Another clinician counts none of them (not in their care).
    let (_, _, b) = send(&s, Some(&clin2), Method::GET, "Patient?family=Sivutus&_count=0", &[], None).await;
    assert_eq!(b["total"], 0, "{b}");

    // Paging forwards and back: previous on every page after the first.
    let page_ids = |b: &Value| -> Vec<String> {
        b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect()
    };
    let link = |b: &Value, rel: &str| -> Option<String> {
        b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == rel)
            .map(|l| l["url"].as_str().unwrap().to_owned())
    };
    let (_, _, p1) = send(&s, Some(&s.token), Method::GET, "Patient?family=Sivutus&_count=2", &[], None).await;
    assert_eq!(page_ids(&p1), ids[..2]);
    assert!(link(&p1, "previous").is_none(), "{p1}");
    let (_, _, p2) = send(&s, Some(&s.token), Method::GET, &link(&p1, "next").unwrap(), &[], None).await;
    assert_eq!(page_ids(&p2), ids[2..4]);
    let (_, _, p3) = send(&s, Some(&s.token), Method::GET, &link(&p2, "next").unwrap(), &[], None).await;
    assert_eq!(page_ids(&p3), ids[4..]);
    assert!(link(&p3, "next").is_none());
    let (_, _, back2) = send(&s, Some(&s.token), Method::GET, &link(&p3, "previous").unwrap(), &[], None).await;
    assert_eq!(page_ids(&back2), ids[2..4], "{back2}");
    let (_, _, back1) = send(&s, Some(&s.token), Method::GET, &link(&back2, "previous").unwrap(), &[], None).await;
    assert_eq!(page_ids(&back1), ids[..2], "{back1}");
    assert!(link(&back1, "previous").is_none(), "the first page again: {back1}");
    assert_eq!(link(&back1, "next").map(|n| n.contains("_after")), Some(true));
    validate_fhir("counts_pages_prefixes_formats_and_handling", &[p1.clone(), p2.clone(), p3.clone(), back2.clone()]);

    // Hostile paging and result parameters: 400, nothing echoed; a Prefer it does not know is ignored.
    for q in [
        "Patient?family=Sivutus&_count=-1",
        "Patient?family=Sivutus&_count=1e3",
        "Patient?family=Sivutus&_before=..%2F..%2Fetc",
        "Patient?family=Sivutus&_after=a&_before=b",
        "Patient?family=Sivutus&_elements=",
        "Patient?family=Sivutus&_sort=%3Cscript%3E",
    ] {
        let (st, _, b) = send(&s, Some(&s.token), Method::GET, q, &[], None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {b}");
        assert!(!b.to_string().contains("<script>") && !b.to_string().contains("etc"), "{b}");
    }
    let (st, _, b) = send(
        &s,
        Some(&s.token),
        Method::POST,
        "Patient",
        &[("Prefer", "return=<script>")],
        Some(&patient("Prefer", "Outo")),
    )
    .await;
    assert_eq!((st, b["resourceType"].as_str()), (StatusCode::CREATED, Some("Patient")));
    // No token: 401 for every new parameter as for any search.
    let (st, _, _) = send(&s, None, Method::GET, "Patient?family=Sivutus&_count=0", &[], None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A patient counts only their own record.
    add_user(&inst.dir, "pat1", "patient", &["--patient", &ids[0]]);
    let own = create_token(&inst.dir, "pat1", "user/*.read");
    let (_, _, b) = send(&s, Some(&own), Method::GET, "Patient?_count=0", &[], None).await;
    assert_eq!(b["total"], 1, "{b}");

    // A malformed prefix is a 400 with an OperationOutcome, not an empty Bundle.
    for q in [
        "Patient?birthdate=%3E1980-01-01",
        "Patient?birthdate=1980-13-01",
        "Patient?birthdate=19800201",
        "Patient?birthdate=ge1980-01-01",
    ] {
        let (st, _, b) = send(&s, Some(&s.token), Method::GET, q, &[], None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {b}");
        diagnostics(&b);
    }
    let (st, _, b) =
        send(&s, Some(&s.token), Method::GET, "Patient?birthdate=eq1980-02-01&family=Sivutus", &[], None).await;
    assert_eq!((st, b["total"].as_i64()), (StatusCode::OK, Some(5)));

    // JSON only: 406 for XML and other formats (the metadata too), before authentication.
    for (path, headers) in [
        ("Patient?family=Sivutus&_format=xml", vec![]),
        ("Patient?family=Sivutus&_format=application/fhir%2Bxml", vec![]),
        ("Patient?family=Sivutus", vec![("Accept", "application/fhir+xml")]),
        ("metadata", vec![("Accept", "application/xml")]),
        ("metadata?_format=ttl", vec![]),
        ("Patient?family=Sivutus", vec![("Accept", "application/fhir+json;q=0, application/fhir+xml")]),
    ] {
        for token in [Some(s.token.as_str()), None] {
            let (st, h, b) = send(&s, token, Method::GET, path, &headers, None).await;
            assert_eq!(st, StatusCode::NOT_ACCEPTABLE, "{path} {headers:?}: {b}");
            assert!(h["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
            diagnostics(&b);
        }
    }
    for (path, headers) in [
        ("Patient?family=Sivutus&_format=json", vec![]),
        ("Patient?family=Sivutus", vec![("Accept", "application/fhir+xml, application/fhir+json;q=0.5")]),
        ("Patient?family=Sivutus", vec![("Accept", "*/*")]),
        ("metadata", vec![("Accept", "application/json")]),
    ] {
        let (st, _, b) = send(&s, Some(&s.token), Method::GET, path, &headers, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {b}");
    }

    // Strict handling (the default) refuses unknown parameters; lenient ignores them.
    for q in [
        "Patient?family=Sivutus&nosuch=1",
        "Patient?family=Sivutus&_summary=true",
        "Patient?family=Sivutus&_sort=birthdate",
        "Patient?family=Sivutus&_include=Patient:x",
    ] {
        let (st, _, b) = send(&s, Some(&s.token), Method::GET, q, &[("Prefer", "handling=strict")], None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {b}");
        let (st, _, b) = send(&s, Some(&s.token), Method::GET, q, &[], None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {b}");
        let (st, _, b) = send(&s, Some(&s.token), Method::GET, q, &[("Prefer", "handling=lenient")], None).await;
        assert_eq!((st, b["total"].as_i64()), (StatusCode::OK, Some(5)), "{q}: {b}");
        assert!(!link(&b, "self").unwrap().contains("nosuch"), "{b}");
    }

    // _elements: the elements asked for and the mandatory ones, tagged SUBSETTED.
    let (_, _, b) = send(&s, Some(&s.token), Method::GET, "Patient?family=Sivutus&_elements=name", &[], None).await;
    for e in b["entry"].as_array().unwrap() {
        let r = &e["resource"];
        assert!(r.get("name").is_some() && r.get("birthDate").is_none() && r.get("id").is_some(), "{r}");
        assert!(r["meta"]["tag"].as_array().unwrap().iter().any(|t| t["code"] == "SUBSETTED"), "{r}");
    }
    let (st, _, _) = send(&s, Some(&s.token), Method::GET, "Patient?family=Sivutus&_elements=na%3Cme", &[], None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    validate_fhir("counts_pages_prefixes_formats_and_handling", &[b]);

    // _sort on dates: an Appointment search by date, both ways.
    let (_, pr) = user_id(&s, &s.token).await;
    let pr = pr.unwrap();
    for (h, pid) in [(11, &ids[0]), (9, &ids[1]), (10, &ids[2])] {
        s.create(&json!({"resourceType": "Appointment", "status": "booked",
            "start": format!("2027-03-01T{h:02}:00:00Z"), "end": format!("2027-03-01T{h:02}:45:00Z"),
            "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "accepted"},
                            {"actor": {"reference": format!("Practitioner/{pr}")}, "status": "accepted"}]}))
            .await;
    }
    let starts = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["start"].as_str().unwrap()[11..13].to_owned())
            .collect()
    };
    let by_date = format!("Appointment?practitioner=Practitioner/{pr}&date=ge2027-03-01&date=lt2027-03-02");
    let (_, _, up) = send(&s, Some(&s.token), Method::GET, &format!("{by_date}&_sort=date"), &[], None).await;
    assert_eq!(starts(&up), ["09", "10", "11"], "{up}");
    let (_, _, down) = send(&s, Some(&s.token), Method::GET, &format!("{by_date}&_sort=-date"), &[], None).await;
    assert_eq!(starts(&down), ["11", "10", "09"]);
    let (st, _, _) = send(&s, Some(&s.token), Method::GET, &format!("{by_date}&_sort=status"), &[], None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

/// A history Bundle: every entry with its request (bdl-3) and response (bdl-4);
/// `next` and `previous` links; both validators accept it.
#[tokio::test]
async fn history_bundles_are_conformant() {
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let p = s.create(&patient("Historia", "Hanna")).await;
    let pid = p["id"].as_str().unwrap();
    let mut n = s.create(&note(pid, "first")).await;
    let nid = n["id"].as_str().unwrap().to_owned();
    for v in 2..=5 {
        n["description"] = json!(format!("version {v}"));
        let r = s.put(&format!("DocumentReference/{nid}"), &n, None).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let (_, all) = s.get_json(&format!("DocumentReference/{nid}/_history")).await;
    let entries = all["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    for e in entries {
        let v = e["resource"]["meta"]["versionId"].as_str().unwrap();
        let (method, url, status) = if v == "1" {
            ("POST", "DocumentReference".to_owned(), "201 Created")
        } else {
            ("PUT", format!("DocumentReference/{nid}"), "200 OK")
        };
        assert_eq!(e["request"], json!({"method": method, "url": url}), "{e}");
        assert_eq!(e["response"]["status"], status);
        assert_eq!(e["response"]["etag"], format!("W/\"{v}\""));
    }
    let link = |b: &Value, rel: &str| {
        b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == rel)
            .map(|l| l["url"].as_str().unwrap().to_owned())
    };
    let versions = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, h1) = s.get_json(&format!("DocumentReference/{nid}/_history?_count=2")).await;
    assert_eq!(versions(&h1), ["5", "4"]);
    assert!(link(&h1, "previous").is_none());
    let r = s.http.get(link(&h1, "next").unwrap()).bearer_auth(&s.token).send().await.unwrap();
    let h2: Value = r.json().await.unwrap();
    assert_eq!(versions(&h2), ["3", "2"]);
    let r = s.http.get(link(&h2, "previous").unwrap()).bearer_auth(&s.token).send().await.unwrap();
    let back: Value = r.json().await.unwrap();
    assert_eq!(versions(&back), ["5", "4"], "{back}");
    validate_fhir("history_bundles_are_conformant", &[all.clone(), h1, h2]);
}

/// What real clients found stored and served back is refused on write, with
/// an OperationOutcome naming the element's path; nothing is stored.
#[tokio::test]
async fn element_invariants_are_refused_on_write() {
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let p = s.create(&patient("Invariantti", "Iida")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let subject = json!({"reference": format!("Patient/{pid}")});
    let n = note(&pid, "a note");
    let with = |base: &Value, k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let appt = json!({"resourceType": "Appointment", "status": "booked",
        "participant": [{"actor": subject.clone(), "status": "accepted"}]});
    let enc = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": subject.clone()});
    let xhtml = |inner: &str| json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>")});
    let cases: Vec<(Value, &str, &str)> = vec![
        (with(&n, "relatesTo", json!([{}])), "DocumentReference.relatesTo[0]", "ele-1"),
        (with(&patient("X", "Y"), "name", json!([{}])), "name[0]", "empty object"),
        (with(&enc, "reasonCode", json!([{}])), "Encounter.reasonCode[0]", "ele-1"),
        (with(&enc, "identifier", json!([])), "Encounter.identifier", "ele-1"),
        (with(&n, "description", json!("")), "DocumentReference.description", "ele-1"),
        (with(&enc, "extension", json!([{"valueString": "x"}])), "Encounter.extension[0].url", "url"),
        (
            with(
                &enc,
                "extension",
                json!([{"url": "urn:x", "valueString": "x", "extension": [{"url": "urn:y", "valueCode": "c"}]}]),
            ),
            "Encounter.extension[0]",
            "ext-1",
        ),
        (appt.clone(), "Appointment.start", "app-3"),
        (with(&n, "text", xhtml("<script>alert(1)</script>")), "DocumentReference.text.div", "txt-1"),
        (with(&enc, "text", xhtml("<p onmouseover=\"alert(1)\">x</p>")), "Encounter.text.div", "txt-1"),
        (with(&n, "text", xhtml("<a href=\"javascript:alert(1)\">x</a>")), "DocumentReference.text.div", "txt-1"),
        (with(&patient("X", "Y"), "telecom", json!([{"value": "040 123"}])), "Patient.telecom[0]", "cpt-2"),
        (
            with(&n, "content", json!([{"attachment": {"contentType": "application/pdf", "url": "notes/1.pdf"}}])),
            "DocumentReference.content[0].attachment.url",
            "scheme",
        ),
        (
            with(&n, "content", json!([{"attachment": {"data": "aGk="}}])),
            "DocumentReference.content[0].attachment",
            "att-1",
        ),
        (with(&enc, "period", json!({"start": "2026-02-01", "end": "2026-01-01"})), "Encounter.period", "per-1"),
        (with(&patient("X", "Y"), "contact", json!([{"gender": "female"}])), "Patient.contact[0]", "pat-1"),
    ];
    let before = row_counts(&inst).await;
    for (body, path, says) in cases {
        let rt = body["resourceType"].as_str().unwrap();
        let (st, _, b) = send(&s, Some(&s.token), Method::POST, rt, &[], Some(&body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {b}");
        let d = diagnostics(&b);
        assert!(d.contains(path) && d.contains(says), "{path} {says}: {d}");
        assert!(!d.contains("alert"), "{d}");
        if path.contains('.') && !path.starts_with("name") {
            assert!(b["issue"][0]["expression"][0].as_str().is_some_and(|e| e.starts_with(rt)), "{b}");
        }
    }
    // An update is checked the same way.
    let mut bad = p.clone();
    bad["telecom"] = json!([{"value": "040 123"}]);
    let r = s.put(&format!("Patient/{pid}"), &bad, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(row_counts(&inst).await, before, "nothing stored");
    // What is valid still is: a narrative of basic formatting, an absolute attachment URL.
    s.create(&with(&enc, "text", xhtml("<p>Session <b>one</b></p>"))).await;
    s.create(&with(
        &n,
        "content",
        json!([{"attachment": {"contentType": "application/pdf", "url": "https://docs.example.fi/1.pdf"}}]),
    ))
    .await;
}

/// AuditEvent by `agent` and `action` as the events carry them, oldest
/// first with `_sort=date`, and a `previous` link; who may search it is unchanged.
#[tokio::test]
async fn audit_events_by_agent_and_action() {
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let auditor = create_token(&inst.dir, "aud1", "user/*.*");
    let p = s.create(&patient("Loki", "Liisa")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        s.get_json(&format!("Patient/{pid}")).await;
    }
    let (uid, pr) = user_id(&s, &s.token).await;
    let pr = pr.unwrap();
    let by_practitioner = audit_events(&s, &auditor, &format!("agent=Practitioner/{pr}")).await;
    assert!(by_practitioner.len() >= 5, "{by_practitioner:?}");
    for e in &by_practitioner {
        assert_eq!(e["agent"][0]["who"]["reference"], format!("Practitioner/{pr}"), "{e}");
    }
    assert_eq!(audit_events(&s, &auditor, &format!("agent={uid}")).await, by_practitioner);
    assert_eq!(audit_events(&s, &auditor, &format!("agent=urn:confidant:user|{uid}")).await, by_practitioner);
    assert!(audit_events(&s, &auditor, "agent=Practitioner/nosuchpractitioner").await.is_empty());
    for code in ["R", "C", "U", "D", "E"] {
        for e in audit_events(&s, &auditor, &format!("action={code}")).await {
            assert_eq!(e["action"], code, "{e}");
        }
    }
    let reads = audit_events(&s, &auditor, &format!("action=R&agent=Practitioner/{pr}&patient={pid}")).await;
    assert_eq!(reads.len(), 3, "{reads:?}");
    assert_eq!(
        audit_events(&s, &auditor, &format!("action=C&patient={pid}")).await.len(),
        2,
        "the patient and their care team"
    );
    for bad in ["action=X", "action=read%20OR%201=1", "agent=Practitioner/..%2Fx", "agent=Virtanen%20Aino"] {
        let (st, _, b) = send(&s, Some(&auditor), Method::GET, &format!("AuditEvent?{bad}"), &[], None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    // Oldest first, and paging both ways.
    let seqs = |b: &Value| -> Vec<i64> {
        b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().parse().unwrap()).collect()
    };
    let link = |b: &Value, rel: &str| {
        b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == rel)
            .map(|l| l["url"].as_str().unwrap().to_owned())
    };
    let (_, _, asc) = send(&s, Some(&auditor), Method::GET, "AuditEvent?_sort=date&_count=3", &[], None).await;
    assert_eq!(seqs(&asc), [1, 2, 3], "{asc}");
    let (_, _, d1) = send(&s, Some(&auditor), Method::GET, "AuditEvent?_count=3", &[], None).await;
    assert!(link(&d1, "previous").is_none());
    let (_, _, d2) = send(&s, Some(&auditor), Method::GET, &link(&d1, "next").unwrap(), &[], None).await;
    let (_, _, back) = send(&s, Some(&auditor), Method::GET, &link(&d2, "previous").unwrap(), &[], None).await;
    assert_eq!(seqs(&back), seqs(&d1), "{back}");
    validate_fhir("audit_events_by_agent_and_action", &[asc, d1, d2, back]);
    // Who may search the log is unchanged: a clinician may not; no token, 401.
    let (st, _, _) = send(&s, Some(&s.token), Method::GET, "AuditEvent?action=R", &[], None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = send(&s, None, Method::GET, "AuditEvent?action=R", &[], None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A patient asking for another agent's entries sees only their own record's.
    add_user(&inst.dir, "pat1", "patient", &["--patient", &pid]);
    let own = create_token(&inst.dir, "pat1", "user/*.read");
    let (_, _, mine) =
        send(&s, Some(&own), Method::GET, &format!("AuditEvent?agent=Practitioner/{pr}&action=R"), &[], None).await;
    for e in mine["entry"].as_array().unwrap() {
        assert!(e["resource"]["entity"].to_string().contains(&pid), "{e}");
    }
}

/// The CapabilityStatement lists exactly what the router answers: every
/// interaction listed is served and every one not listed refused; every
/// search parameter listed is accepted and others refused; conditional
/// create and update as flagged; JSON only.
#[tokio::test]
async fn capability_statement_matches_the_router() {
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let auditor = create_token(&inst.dir, "aud1", "user/*.*");
    let (_, cs) = s.get_json("metadata").await;
    assert_eq!(cs["format"], json!(["json", "application/fhir+json"]));
    let p = s.create(&with_identifier("Kyky", "060606-666F")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let (_, own_pr) = user_id(&s, &s.token).await;
    let own_pr = own_pr.unwrap();
    // Conditional create as flagged (before the update below empties the patient).
    let (st, _, b) =
        send(&s, Some(&s.token), Method::POST, "Patient", &[("If-None-Exist", "identifier=060606-666F")], Some(&p))
            .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let all =
        ["read", "vread", "update", "create", "search-type", "history-instance", "delete", "patch", "history-type"];
    for r in cs["rest"][0]["resource"].as_array().unwrap() {
        let ty = r["type"].as_str().unwrap();
        let listed: Vec<&str> =
            r["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
        for i in all {
            let id = if ty == "Patient" { pid.clone() } else { "nosuchid".to_owned() };
            let (method, path, body) = match i {
                "read" => (Method::GET, format!("{ty}/{id}"), None),
                "vread" => (Method::GET, format!("{ty}/{id}/_history/1"), None),
                "update" => (Method::PUT, format!("{ty}/{id}"), Some(json!({"resourceType": ty, "id": id}))),
                "create" => (Method::POST, ty.to_owned(), Some(json!({"resourceType": ty}))),
                "search-type" => (Method::GET, ty.to_owned(), None),
                "history-instance" => (Method::GET, format!("{ty}/{id}/_history"), None),
                "delete" => (Method::DELETE, format!("{ty}/{id}"), None),
                "patch" => (Method::PATCH, format!("{ty}/{id}"), Some(json!([]))),
                _ => (Method::GET, format!("{ty}/_history"), None),
            };
            let token = match ty {
                "Practitioner" | "Schedule" => &s.admin_token,
                "AuditEvent" => &auditor,
                _ => &s.token,
            };
            let (st, _, b) = send(&s, Some(token), method, &path, &[], body.as_ref()).await;
            let code = b["issue"][0]["code"].as_str().unwrap_or("");
            let refused = st == StatusCode::METHOD_NOT_ALLOWED
                || (st == StatusCode::FORBIDDEN && ["QuestionnaireResponse", "Observation"].contains(&ty))
                || (st == StatusCode::NOT_FOUND && i == "history-type");
            if listed.contains(&i) {
                assert!(!refused && code != "not-supported", "{ty} {i} is listed but answered {st}: {b}");
            } else {
                assert!(refused || code == "not-supported", "{ty} {i} is not listed but answered {st}: {b}");
            }
        }
        // Search parameters: the listed ones are accepted, an unknown one refused.
        for sp in r["searchParam"].as_array().into_iter().flatten() {
            let name = sp["name"].as_str().unwrap();
            let value = match (ty, name, sp["type"].as_str().unwrap()) {
                ("AuditEvent", "action", _) => "R".to_owned(),
                ("AuditEvent", "date", _) => "ge2020-01-01".to_owned(),
                ("Appointment", "date", _) => {
                    format!("ge2026-01-01&date=lt2026-01-02&practitioner=Practitioner/{own_pr}")
                }
                (_, _, "date") => "1980-02-01".to_owned(),
                (_, "name" | "family" | "given", _) => "Kyky".to_owned(),
                _ => pid.clone(),
            };
            let token = match ty {
                "AuditEvent" => &auditor,
                "Practitioner" | "Schedule" => &s.admin_token,
                _ => &s.token,
            };
            let (st, _, b) = send(&s, Some(token), Method::GET, &format!("{ty}?{name}={value}"), &[], None).await;
            assert_eq!(st, StatusCode::OK, "{ty}?{name} is listed but answered {st}: {b}");
        }
        if r.get("searchParam").is_some() || listed.contains(&"search-type") {
            let token = if ty == "AuditEvent" { &auditor } else { &s.token };
            let (st, _, b) = send(&s, Some(token), Method::GET, &format!("{ty}?nosuchparameter=1"), &[], None).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{ty}?nosuchparameter answered {st}: {b}");
        }
        // Conditional create and update, as flagged.
        let conditional = r["conditionalCreate"].as_bool().unwrap_or(false);
        assert_eq!(r["conditionalUpdate"].as_bool().unwrap_or(false), conditional, "{ty}");
        assert_eq!(
            conditional,
            ty != "QuestionnaireResponse" && ty != "Observation" && r.get("conditionalCreate").is_some(),
            "{ty}"
        );
    }
    // A type not listed is not served.
    let (st, _, b) = send(&s, Some(&s.token), Method::GET, "Condition", &[], None).await;
    assert_eq!((st, b["issue"][0]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not-supported")));
    validate_fhir("capability_statement_matches_the_router", &[cs]);
}

/// A real FHIR client library (npm `fhir-kit-client`) against the server:
/// conditional create twice (one Patient), paging forwards and back through
/// the Bundle's links, and a resource's history.
#[tokio::test]
async fn a_real_fhir_client_library() {
    let Some(e2e) = crate::common::fhir_client_ready("a_real_fhir_client_library") else { return };
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "rec1", "reception", &[]);
    let s = inst.start();
    let reception = create_token(&inst.dir, "rec1", "user/*.*");
    for given in ["Aa", "Bb", "Cc"] {
        s.create(&patient("Asiakas", given)).await;
    }
    let out = std::process::Command::new("node")
        .arg(e2e.join("fhir_client.mjs"))
        .current_dir(&e2e)
        .env("FHIR_BASE", s.fhir(""))
        .env("FHIR_TOKEN", &s.token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["created"], true, "{report}");
    assert_eq!(report["again"], report["id"], "the second conditional create found the first");
    assert_eq!(report["total"], 1, "{report}");
    let pages = report["pages"].as_array().unwrap();
    assert_eq!((pages[0].as_array().unwrap().len(), pages[1].as_array().unwrap().len()), (2, 1), "{report}");
    assert_eq!(pages[2], pages[0], "back through previous: {report}");
    let mut seen: Vec<&str> =
        pages[..2].iter().flat_map(|p| p.as_array().unwrap()).map(|g| g.as_str().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, ["Aa", "Bb", "Cc"]);
    assert_eq!(report["againStatus"], 200);
    assert_eq!(report["history"], json!(["2", "1"]), "{report}");
    assert_eq!(report["historyRequests"], json!(["PUT", "POST"]), "{report}");
    // What the client made is what the server holds: one patient with that identifier.
    let (_, _, b) = send(&s, Some(&reception), Method::GET, "Patient?identifier=070707-777G", &[], None).await;
    assert_eq!(b["total"], 1, "{b}");
}
