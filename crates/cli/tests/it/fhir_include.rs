//! `_include`, `_revinclude` and `Patient/{id}/$everything` (issue 19), over
//! HTTP against the real binary: what each role brings along and never what
//! it may not see (care team, psychotherapy label, role matrix), one audit
//! entry (a read) per included or exported resource and none for what is
//! left out, paging, the bulk-read rule, hostile input refused with an
//! OperationOutcome and nothing changed, the CapabilityStatement listing
//! exactly what is served, every Bundle validated by both validators, and a
//! real FHIR client library (npm `fhir-kit-client`) driving it.
//!
//! Over 600 lines because it is two features, each role by role with its
//! hostile inputs and audit counts, sharing one small clinic; split it by
//! feature (includes / `$everything`) if it grows.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::access::{MATRIX, NARROW, TYPES, appointment, call, clinic, measures_of, new_resource};
use crate::both_backends;
use crate::common::{
    Db, Instance, Server, add_user, create_token, encounter, note, patient, row_counts, validate_fhir,
};

both_backends!(include_and_revinclude);
both_backends!(everything_pages_and_rules);
both_backends!(everything_matrix);

/// GET a FHIR path, a management API path (`/api/…`) or an absolute URL (a Bundle's link), as `token`.
async fn get(s: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    let url = match path {
        p if p.starts_with("http") => p.to_owned(),
        p if p.starts_with("/api/") => format!("{}{p}", s.url),
        p => s.fhir(p),
    };
    let r = s.http.get(url).bearer_auth(token).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

/// (user id, practitioner id) of a token's account.
async fn me(s: &Server, token: &str) -> (String, Option<String>) {
    let (_, me) = get(s, token, "/api/v1/me").await;
    (me["user_id"].as_str().unwrap().to_owned(), me["practitioner_id"].as_str().map(str::to_owned))
}

/// The entries of a Bundle as (resource type/id, search mode).
fn entries(b: &Value) -> Vec<(String, String)> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let r = &e["resource"];
            (
                format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap_or("")),
                e["search"]["mode"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn with_mode(b: &Value, mode: &str) -> BTreeSet<String> {
    entries(b).into_iter().filter(|(_, m)| m == mode).map(|(r, _)| r).collect()
}

/// The resources (type/id) of the successful reads by `agent`, as the audit log's AuditEvent view shows them.
async fn reads_by(s: &Server, auditor: &str, agent: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut url = format!("AuditEvent?agent={agent}&action=read&_count=100");
    loop {
        let (st, b) = get(s, auditor, &url).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        for e in b["entry"].as_array().into_iter().flatten() {
            if e["resource"]["outcome"] == "0" {
                let what = e["resource"]["entity"][0]["what"]["reference"].as_str().unwrap_or("");
                // `Type/id/_history/n` → `Type/id`.
                out.push(what.split("/_history").next().unwrap().to_owned());
            }
        }
        match b["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => return out,
        }
    }
}

fn care_team(p: &str, practitioner: &str) -> Value {
    new_resource("CareTeam", p, practitioner)
}

fn psychotherapy_note(p: &str, text: &str) -> Value {
    let mut n = note(p, text);
    n["meta"] =
        json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSYTHPN"}]});
    n
}

fn outcome(st: StatusCode, b: &Value, expected: StatusCode, what: &str) -> String {
    assert_eq!(st, expected, "{what}: {b}");
    assert_eq!(b["resourceType"], "OperationOutcome", "{what}: {b}");
    b["issue"][0]["diagnostics"].as_str().unwrap_or("").to_owned()
}

/// A small clinic for includes: patient A of clin1 (two notes, one of them a
/// psychotherapy note, an appointment, an encounter), clin2 added to A's care
/// team, clin3 outside it; reception, an admin and an auditor.
struct Clinic {
    inst: Instance,
    s: Server,
    a: String,
    note: String,
    psy: String,
    appt: String,
    teams: Vec<String>,
    enc: String,
    clin2: String,
    clin3: String,
    reception: String,
    auditor: String,
}

async fn small_clinic(db: Db) -> Clinic {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Toinen Kliinikko"]);
    add_user(&inst.dir, "clin3", "clinician", &["--name", "Kolmas Kliinikko"]);
    add_user(&inst.dir, "rec1", "reception", &[]);
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");
    let clin3 = create_token(&inst.dir, "clin3", "user/*.*");
    let reception = create_token(&inst.dir, "rec1", "user/*.*");
    let auditor = create_token(&inst.dir, "aud1", "user/*.*");
    let a = id_of(&s.create(&patient("Virtanen", "Aino")).await);
    let note_id = id_of(&s.create(&note(&a, "a session note")).await);
    let psy = id_of(&s.create(&psychotherapy_note(&a, "process note: only my eyes")).await);
    let (_, pr1) = me(&s, &s.token).await;
    let (_, pr2) = me(&s, &clin2).await;
    let appt = id_of(&s.create(&appointment(&a, &pr1.unwrap())).await);
    let enc = id_of(&s.create(&encounter(&a)).await);
    let second = id_of(&s.create_as(&s.admin_token, &care_team(&a, &pr2.unwrap())).await);
    let (_, b) = call(&s, Some(&s.admin_token), Method::GET, &format!("CareTeam?patient={a}"), None).await;
    let teams: Vec<String> = entries(&b).into_iter().map(|(r, _)| r).collect();
    assert_eq!(teams.len(), 2, "clin1's team from registration and clin2's: {b}");
    assert!(teams.contains(&format!("CareTeam/{second}")));
    Clinic { inst, s, a, note: note_id, psy, appt, teams, enc, clin2, clin3, reception, auditor }
}

/// `_include` and `_revinclude` for each reference held, per role, with the
/// care team and the psychotherapy label holding; audited per resource;
/// hostile input refused.
async fn include_and_revinclude(db: Db) {
    let c = small_clinic(db).await;
    let s = &c.s;
    let (a, pa) = (&c.a, format!("Patient/{}", c.a));
    let (clin1, _) = me(s, &s.token).await;
    let (clin2, _) = me(s, &c.clin2).await;
    let (clin3, _) = me(s, &c.clin3).await;
    let mut valid = Vec::new();

    // _include: a note's subject, once for two notes; the matches' total counts only the matches.
    let before = reads_by(s, &c.auditor, &clin1).await.len();
    let (st, b) = get(s, &s.token, &format!("DocumentReference?patient={a}&_include=DocumentReference:subject")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["total"], 2, "{b}");
    let notes: BTreeSet<String> = [&c.note, &c.psy].iter().map(|n| format!("DocumentReference/{n}")).collect();
    assert_eq!(with_mode(&b, "match"), notes);
    assert_eq!(with_mode(&b, "include"), BTreeSet::from([pa.clone()]));
    assert!(b["link"][0]["url"].as_str().unwrap().contains("_include=DocumentReference%3Asubject"), "{b}");
    let reads = reads_by(s, &c.auditor, &clin1).await;
    assert_eq!(reads.len(), before + 1, "one read entry for the included Patient");
    assert_eq!(reads.iter().filter(|r| **r == pa).count(), 1, "{reads:?}");
    valid.push(b);

    // _revinclude of everything held, on a Patient search, by the patient's clinician.
    let all_rev = "_revinclude=DocumentReference:subject&_revinclude=Appointment:patient&_revinclude=CareTeam:subject";
    let (st, b) = get(s, &s.token, &format!("Patient?_id={a}&{all_rev}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let mut expected: BTreeSet<String> = notes.clone();
    expected.insert(format!("Appointment/{}", c.appt));
    expected.extend(c.teams.iter().cloned());
    assert_eq!(with_mode(&b, "include"), expected, "{b}");
    assert_eq!(with_mode(&b, "match"), BTreeSet::from([pa.clone()]));
    assert!(!with_mode(&b, "include").contains(&format!("Encounter/{}", c.enc)), "no revinclude asked for it");
    valid.push(b);

    // Another clinician on the care team: not the psychotherapy note, and no read of it audited.
    let (st, b) = get(s, &c.clin2, &format!("Patient?_id={a}&{all_rev}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let included = with_mode(&b, "include");
    assert!(included.contains(&format!("DocumentReference/{}", c.note)), "{b}");
    assert!(!included.contains(&format!("DocumentReference/{}", c.psy)), "the psychotherapy note stays its author's");
    assert!(!b.to_string().contains("only my eyes"));
    let reads = reads_by(s, &c.auditor, &clin2).await;
    assert_eq!(reads.len(), included.len(), "one read per included resource: {reads:?}");
    assert!(!reads.contains(&format!("DocumentReference/{}", c.psy)));
    valid.push(b);

    // A clinician outside the care team: nothing matches, nothing is included, no read audited.
    for q in [
        format!("Patient?_id={a}&{all_rev}"),
        format!("DocumentReference?patient={a}&_include=DocumentReference:subject"),
    ] {
        let (st, b) = get(s, &c.clin3, &q).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!((b["total"].as_i64(), b.get("entry")), (Some(0), None), "{q}: {b}");
        valid.push(b);
    }
    assert!(reads_by(s, &c.auditor, &clin3).await.is_empty());

    // Reception: the appointments' patients (its role reads Patient) and its care teams, never notes.
    let (st, b) = get(s, &c.reception, &format!("Appointment?patient={a}&_include=Appointment:patient")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(with_mode(&b, "include"), BTreeSet::from([pa.clone()]));
    valid.push(b);
    let (st, b) =
        get(s, &c.reception, &format!("Patient?_id={a}&_revinclude=CareTeam:subject&_revinclude=Appointment:patient"))
            .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(with_mode(&b, "include").len(), 3, "two care teams and the appointment: {b}");
    valid.push(b);
    let (st, b) = get(s, &c.reception, &format!("Patient?_id={a}&_revinclude=DocumentReference:subject")).await;
    let d = outcome(st, &b, StatusCode::FORBIDDEN, "reception revincludes notes");
    assert!(d.contains("DocumentReference"), "{d}");
    // An admin reads care teams but no Patient: asking to include one is refused, not quietly emptied.
    let (st, b) = get(s, &s.admin_token, &format!("CareTeam?patient={a}&_include=CareTeam:subject")).await;
    outcome(st, &b, StatusCode::FORBIDDEN, "admin includes a Patient");
    let (st, b) = get(s, &s.admin_token, &format!("CareTeam?patient={a}")).await;
    assert_eq!((st, b["total"].as_i64()), (StatusCode::OK, Some(2)), "{b}");
    // The patient: their own Patient with their notes shared with them (none here).
    add_user(&c.inst.dir, "pat1", "patient", &["--patient", a]);
    let own = create_token(&c.inst.dir, "pat1", "user/*.read");
    let (st, b) = get(s, &own, &format!("Patient?_id={a}&_revinclude=DocumentReference:subject")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!((with_mode(&b, "match").len(), with_mode(&b, "include").len()), (1, 0), "{b}");
    valid.push(b);

    // Paging keeps the includes in its links; a count-only search includes nothing.
    let (st, b) =
        get(s, &s.token, &format!("DocumentReference?patient={a}&_count=1&_include=DocumentReference:subject")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let next = b["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("_include=DocumentReference%3Asubject"), "{next}");
    let (st, b2) = get(s, &s.token, &next).await;
    assert_eq!((st, with_mode(&b2, "include")), (StatusCode::OK, BTreeSet::from([pa.clone()])), "{b2}");
    valid.extend([b, b2]);
    let (st, b) =
        get(s, &s.token, &format!("DocumentReference?patient={a}&_summary=count&_include=DocumentReference:subject"))
            .await;
    assert_eq!((st, b["total"].as_i64(), b.get("entry")), (StatusCode::OK, Some(2), None), "{b}");

    // No session.
    let (st, _) = call(s, None, Method::GET, &format!("Patient?_id={a}&{all_rev}"), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Hostile and unsupported: a 400 OperationOutcome, nothing written, nothing read.
    let rows = row_counts(&c.inst).await;
    let reads_before = reads_by(s, &c.auditor, &clin1).await.len();
    // 1000 includes in 26 KB (under the 32 KiB URI limit, past which the answer is 414).
    let thousand = ["_include=CareTeam:subject"; 1000].join("&");
    for q in [
        "DocumentReference?_include=Foo:bar".to_owned(),
        "DocumentReference?_include=*".to_owned(),
        "DocumentReference?_include=DocumentReference:*".to_owned(),
        "DocumentReference?_include=DocumentReference:author".to_owned(),
        "DocumentReference?_include:iterate=DocumentReference:subject".to_owned(),
        "Patient?_revinclude:iterate=CareTeam:subject".to_owned(),
        "Patient?_include=DocumentReference:subject".to_owned(),
        "DocumentReference?_revinclude=DocumentReference:subject".to_owned(),
        "Encounter?_include=DocumentReference:subject".to_owned(),
        format!("DocumentReference?patient={a}&{thousand}"),
        "DocumentReference?_include=DocumentReference:subject%27%20OR%201%3D1--".to_owned(),
        "DocumentReference?_include=DocumentReference%3Bsubject%3B%20DROP%20TABLE%20resource_versions".to_owned(),
        "Patient/x/_history?_include=DocumentReference:subject".to_owned(),
        "Questionnaire?_revinclude=DocumentReference:subject".to_owned(),
    ] {
        let (st, b) = get(s, &s.token, &q).await;
        let d = outcome(st, &b, StatusCode::BAD_REQUEST, &q[..q.len().min(120)]);
        assert_eq!(b["issue"][0]["code"], "not-supported", "{q}: {b}");
        assert!(!d.contains('\n') && d.len() < 400, "{q}: {d}");
    }
    assert_eq!(row_counts(&c.inst).await, rows, "nothing written");
    assert_eq!(reads_by(s, &c.auditor, &clin1).await.len(), reads_before, "nothing read");
    // Lenient handling ignores what cannot be served, as for other parameters.
    let r = s
        .http
        .get(s.fhir(&format!("DocumentReference?patient={a}&_include=Foo:bar")))
        .bearer_auth(&s.token)
        .header("prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Past 200 included resources a page says so, with an OperationOutcome entry, and includes the first 200.
    for i in 0..200 {
        s.create(&note(a, &format!("note {i}"))).await;
    }
    let (st, b) = get(s, &s.token, &format!("Patient?_id={a}&_revinclude=DocumentReference:subject")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(with_mode(&b, "include").len(), 200);
    let last = b["entry"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["search"]["mode"].as_str(), last["resource"]["issue"][0]["code"].as_str()),
        (Some("outcome"), Some("too-costly"))
    );
    valid.push(b);
    validate_fhir("include_and_revinclude", &valid);
}

/// `$everything`: the patient's record per role and care team, paged with
/// `_count` and next links, `_type`, audited one read per resource, the
/// bulk-read rule, hostile input.
async fn everything_pages_and_rules(db: Db) {
    let c = small_clinic(db).await;
    let s = &c.s;
    let a = &c.a;
    let (clin1, _) = me(s, &s.token).await;
    let path = format!("Patient/{a}/$everything");
    let mut valid = Vec::new();
    let mut all: BTreeSet<String> =
        [format!("Patient/{a}"), format!("Appointment/{}", c.appt), format!("Encounter/{}", c.enc)].into();
    all.extend([&c.note, &c.psy].iter().map(|n| format!("DocumentReference/{n}")));
    all.extend(c.teams.iter().cloned());

    // One page: everything of the clinician's patient, each resource audited as one read.
    let before = reads_by(s, &c.auditor, &clin1).await.len();
    let (st, b) = get(s, &s.token, &path).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["type"], "searchset");
    assert_eq!(with_mode(&b, "match"), all, "{b}");
    assert_eq!(b["total"], all.len(), "{b}");
    assert_eq!(entries(&b)[0].0, format!("Patient/{a}"), "the Patient first");
    let reads = reads_by(s, &c.auditor, &clin1).await;
    assert_eq!(reads.len() - before, all.len(), "one read entry per resource");
    assert_eq!(reads[..reads.len() - before].iter().cloned().collect::<BTreeSet<_>>(), all);
    valid.push(b);

    // Paged two at a time through the next links: the same resources, each once.
    let mut seen = Vec::new();
    let mut url = format!("{path}?_count=2");
    let mut pages = 0;
    loop {
        let (st, b) = get(s, &s.token, &url).await;
        assert_eq!(st, StatusCode::OK, "{url}: {b}");
        assert_eq!(b["total"], all.len(), "{b}");
        let page = entries(&b);
        assert!(page.len() <= 2, "{b}");
        seen.extend(page.into_iter().map(|(r, _)| r));
        pages += 1;
        assert!(pages < 10, "the next links end");
        match b["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => {
                valid.push(b);
                break;
            }
        }
        valid.push(b);
    }
    assert_eq!(seen.len(), all.len(), "no resource twice: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);

    // _type: only the types named.
    let (st, b) = get(s, &s.token, &format!("{path}?_type=DocumentReference,Encounter")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(with_mode(&b, "match").len(), 3, "{b}");
    assert!(b["link"][0]["url"].as_str().unwrap().contains("_type="), "{b}");
    valid.push(b);

    // A care-team colleague: not the psychotherapy note (and no read of it audited).
    let (clin2, _) = me(s, &c.clin2).await;
    let (st, b) = get(s, &c.clin2, &path).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let got = with_mode(&b, "match");
    assert_eq!(got.len(), all.len() - 1, "{b}");
    assert!(!got.contains(&format!("DocumentReference/{}", c.psy)) && !b.to_string().contains("only my eyes"));
    assert!(!reads_by(s, &c.auditor, &clin2).await.contains(&format!("DocumentReference/{}", c.psy)));
    valid.push(b);

    // Outside the care team: 404 as for a read, the refusal audited, nothing read.
    let (clin3, _) = me(s, &c.clin3).await;
    let (st, b) = get(s, &c.clin3, &path).await;
    outcome(st, &b, StatusCode::NOT_FOUND, "clin3 $everything");
    let (st, nosuch) = get(s, &c.clin3, "Patient/0123456789abcdef0123456789abcdef/$everything").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        b["issue"][0]["diagnostics"].as_str().unwrap().replace(a, "X"),
        nosuch["issue"][0]["diagnostics"].as_str().unwrap().replace("0123456789abcdef0123456789abcdef", "X"),
        "the same 404"
    );
    assert!(reads_by(s, &c.auditor, &clin3).await.is_empty());
    let (st, log) = get(s, &c.auditor, &format!("AuditEvent?agent={clin3}&patient={a}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(log["entry"].as_array().unwrap().iter().any(|e| e["resource"]["outcome"] == "4"), "{log}");

    // Reception: what its role reads (Patient, CareTeam, Appointment); a type it does not read, named: 403.
    let (st, b) = get(s, &c.reception, &path).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let types: BTreeSet<String> =
        with_mode(&b, "match").iter().map(|r| r.split('/').next().unwrap().to_owned()).collect();
    assert_eq!(types, BTreeSet::from(["Appointment", "CareTeam", "Patient"].map(String::from)));
    valid.push(b);
    let (st, b) = get(s, &c.reception, &format!("{path}?_type=DocumentReference")).await;
    outcome(st, &b, StatusCode::FORBIDDEN, "reception _type=DocumentReference");
    for t in [&s.admin_token, &c.auditor] {
        let (st, b) = get(s, t, &path).await;
        outcome(st, &b, StatusCode::FORBIDDEN, "admin or auditor $everything");
    }
    // No session.
    assert_eq!(call(s, None, Method::GET, &path, None).await.0, StatusCode::UNAUTHORIZED);

    // Hostile: refused with an OperationOutcome, nothing written or read.
    let rows = row_counts(&c.inst).await;
    let reads_before = reads_by(s, &c.auditor, &clin1).await.len();
    for (q, expected) in [
        (format!("{path}?_count=0"), StatusCode::BAD_REQUEST),
        (format!("{path}?_count=-1"), StatusCode::BAD_REQUEST),
        (format!("{path}?_after=9.abc"), StatusCode::BAD_REQUEST),
        (format!("{path}?_after=1.%27%20OR%20%271%27%3D%271"), StatusCode::BAD_REQUEST),
        (format!("{path}?_type=Practitioner"), StatusCode::BAD_REQUEST),
        (format!("{path}?_type=Patient%27;DROP%20TABLE%20resource_versions;--"), StatusCode::BAD_REQUEST),
        (format!("{path}?_since=2026-01-01"), StatusCode::BAD_REQUEST),
        (format!("{path}?_include=Appointment:patient"), StatusCode::BAD_REQUEST),
        (format!("{path}?foo=bar"), StatusCode::BAD_REQUEST),
        ("Patient/x%27%20OR%20%271%27%3D%271/$everything".to_owned(), StatusCode::NOT_FOUND),
        (format!("Patient/{a}/$export"), StatusCode::NOT_FOUND),
        (format!("Encounter/{}/$everything", c.enc), StatusCode::NOT_FOUND),
    ] {
        let (st, b) = get(s, &s.token, &q).await;
        outcome(st, &b, expected, &q);
    }
    let (st, _) = call(s, Some(&s.token), Method::POST, &path, Some(&json!({"resourceType": "Parameters"}))).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(row_counts(&c.inst).await, rows, "nothing written");
    assert_eq!(reads_by(s, &c.auditor, &clin1).await.len(), reads_before, "nothing read");
    validate_fhir("everything_pages_and_rules", &valid);

    // The bulk-read rule: a clinician's $everything counts its patient as any read does;
    // the one that would cross the threshold is refused before it is sent, and the token locked.
    let inst = Instance::new(db).await;
    inst.configure(|t| Instance::set(t, "detection", "max_patients_per_user", 2.into()));
    let s = inst.start();
    let mut ids = Vec::new();
    for i in 0..3 {
        let p = id_of(&s.create(&patient(&format!("Bulkpatient{i}"), "Test")).await);
        s.create(&note(&p, &format!("BULK-NOTE-{i}"))).await;
        ids.push(p);
    }
    for p in &ids[..2] {
        let (st, b) = s.get_json(&format!("Patient/{p}/$everything")).await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
    let (st, b) = s.get_json(&format!("Patient/{}/$everything", ids[2])).await;
    let d = outcome(st, &b, StatusCode::FORBIDDEN, "the third patient's $everything");
    assert!(d.contains("stopped by breach detection"), "{d}");
    assert!(!b.to_string().contains("BULK-NOTE-2"));
    assert_eq!(s.get("Patient?_count=1").await.status(), StatusCode::UNAUTHORIZED, "the token is locked");
}

/// The authorization matrix, extended to `$everything`: per role, on the
/// role's own patient and another, the status and exactly the types the role
/// reads (from the matrix table). The CapabilityStatement lists no operation
/// but this one.
async fn everything_matrix(db: Db) {
    let mut c = clinic(db).await;
    measures_of(&mut c).await;
    let (_, cs) = call(&c.s, None, Method::GET, "metadata", None).await;
    let mut operations = Vec::new();
    for r in cs["rest"][0]["resource"].as_array().unwrap() {
        for o in r["operation"].as_array().into_iter().flatten() {
            operations.push(format!("{}/{}", r["type"].as_str().unwrap(), o["name"].as_str().unwrap()));
        }
    }
    assert_eq!(operations, ["Patient/everything"], "an operation without a matrix entry");
    let compartment =
        ["CareTeam", "Appointment", "Encounter", "DocumentReference", "QuestionnaireResponse", "Observation"];
    let mut valid = Vec::new();
    let mut cells = 0;
    for (role, perms) in MATRIX {
        let readable = |ty: &str| perms[TYPES.iter().position(|t| *t == ty).unwrap()].contains('R');
        let token = &c.tokens[role];
        for (which, target) in [("own", &c.ids["Patient"].0), ("other", &c.ids["Patient"].1)] {
            let what = format!("{role} $everything {which}");
            let (st, b) = call(&c.s, Some(token), Method::GET, &format!("Patient/{target}/$everything"), None).await;
            let visible = !NARROW.contains(role) || which == "own";
            cells += 1;
            if !readable("Patient") {
                assert_eq!(st, StatusCode::FORBIDDEN, "{what}: {b}");
                continue;
            }
            if !visible {
                assert_eq!(st, StatusCode::NOT_FOUND, "{what}: {b}");
                continue;
            }
            assert_eq!(st, StatusCode::OK, "{what}: {b}");
            let types: BTreeSet<&str> = b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["resourceType"].as_str().unwrap())
                .collect();
            let mut expected: BTreeSet<&str> = compartment.into_iter().filter(|t| readable(t)).collect();
            expected.insert("Patient");
            assert_eq!(types, expected, "{what}: {b}");
            // Never another patient's record.
            let other = if which == "own" { &c.ids["Patient"].1 } else { &c.ids["Patient"].0 };
            assert!(!b.to_string().contains(other.as_str()), "{what}: the other patient in {b}");
            if *role == "patient" {
                assert!(!b.to_string().contains(c.psy_note.as_str()), "the psychotherapy note in the patient's own");
            }
            valid.push(b);
        }
    }
    assert_eq!(cells, MATRIX.len() * 2);
    // The portal's "download my data" is the patient's own $everything, all of it in one searchset.
    let pa = &c.ids["Patient"].0;
    let (_, api) =
        call(&c.s, Some(&c.tokens["patient"]), Method::GET, &format!("Patient/{pa}/$everything"), None).await;
    let r = crate::ui::Browser::sign_in(&c.s, "pat1").await.get("/me/data").await;
    assert_eq!(r.status(), StatusCode::OK);
    let download: Value = r.json().await.unwrap();
    assert_eq!((download["type"].as_str(), download["total"].as_i64()), (Some("searchset"), api["total"].as_i64()));
    assert_eq!(with_mode(&download, "match"), with_mode(&api, "match"), "{download}");
    assert!(download["entry"].as_array().unwrap().iter().all(|e| e["fullUrl"].is_string()), "re-importable");
    valid.push(download);
    let (st, _) = call(&c.s, None, Method::GET, &format!("Patient/{}/$everything", c.ids["Patient"].0), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    validate_fhir("everything_matrix", &valid);
}

/// The CapabilityStatement's `searchInclude`, `searchRevInclude` and
/// operations are exactly what is served: each listed one answers, every
/// include not listed for a type is refused.
#[tokio::test]
async fn capability_statement_lists_the_includes_served() {
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let (_, cs) = s.get_json("metadata").await;
    let all = ["DocumentReference:subject", "Appointment:patient", "CareTeam:subject"];
    let mut listed = 0;
    for r in cs["rest"][0]["resource"].as_array().unwrap() {
        let ty = r["type"].as_str().unwrap();
        if ["AuditEvent", "Questionnaire"].contains(&ty) {
            assert!(r.get("searchInclude").is_none() && r.get("searchRevInclude").is_none(), "{ty}");
            continue;
        }
        let token = if ["Practitioner", "Schedule"].contains(&ty) { &s.admin_token } else { &s.token };
        for (param, key) in [("_include", "searchInclude"), ("_revinclude", "searchRevInclude")] {
            let names: Vec<&str> = r[key].as_array().into_iter().flatten().map(|n| n.as_str().unwrap()).collect();
            for name in all {
                let (st, b) =
                    call(&s, Some(token), Method::GET, &format!("{ty}?_id=nosuchid&{param}={name}"), None).await;
                if names.contains(&name) {
                    assert_eq!(st, StatusCode::OK, "{ty} {param}={name} is listed: {b}");
                    listed += 1;
                } else {
                    assert_eq!(st, StatusCode::BAD_REQUEST, "{ty} {param}={name} is not listed: {b}");
                }
            }
        }
    }
    assert_eq!(listed, 6, "three includes, each both ways");
    let p = id_of(&s.create(&patient("Kyky", "Testi")).await);
    assert_eq!(s.get(&format!("Patient/{p}/$everything")).await.status(), StatusCode::OK);
    validate_fhir("capability_statement_lists_the_includes_served", &[cs]);
}

/// A real FHIR client library (npm `fhir-kit-client`): a search with
/// `_include`, one with `_revinclude`, and `$everything` paged through its
/// next links (tests/e2e/fhir_client.mjs, scenario `include`).
#[tokio::test]
async fn a_real_fhir_client_includes_and_exports() {
    let Some(e2e) = crate::common::fhir_client_ready("a_real_fhir_client_includes_and_exports") else { return };
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let out = std::process::Command::new("node")
        .arg(e2e.join("fhir_client.mjs"))
        .current_dir(&e2e)
        .env("FHIR_BASE", s.fhir(""))
        .env("FHIR_TOKEN", &s.token)
        .env("FHIR_SCENARIO", "include")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let pid = report["patient"].as_str().unwrap();
    assert_eq!(report["include"], json!({"match": 2, "include": [format!("Patient/{pid}")]}), "{report}");
    assert_eq!(report["revinclude"]["match"], 1, "{report}");
    assert_eq!(
        report["revinclude"]["include"].as_array().unwrap().len(),
        4,
        "two notes, an appointment, the care team: {report}"
    );
    assert_eq!(report["everythingPages"], 3, "five resources, two a page: {report}");
    assert_eq!(report["everything"].as_array().unwrap().len(), 5, "{report}");
    assert_eq!(report["everythingTotal"], 5, "{report}");
    let distinct: BTreeSet<&str> =
        report["everything"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 5, "each resource once: {report}");
    assert_eq!(report["refused"], 400, "{report}");
}
