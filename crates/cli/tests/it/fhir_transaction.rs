//! Transaction and batch Bundles POSTed to the FHIR base (issue 19): `urn:uuid`
//! references between entries, `ifNoneExist`, all or nothing (row counts and
//! the audit log unchanged by a refused transaction), per-entry answers of a
//! batch, the authorization matrix (wrong role, wrong patient, no session) and
//! hostile Bundles. Every answer is validated by both validators; a real FHIR
//! client library (npm `fhir-kit-client`) posts a transaction and a batch.

use confidant_fhir::ResourceType;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, create_token, note, patient, row_counts, validate_fhir};
use crate::fhir_conformance::{audit_events, diagnostics, user_id as me};

const HETU: &str = "urn:oid:1.2.246.21";
const U1: &str = "urn:uuid:0b8c3f6e-6a3c-4d52-9f8e-1a2b3c4d5e01";
const U2: &str = "urn:uuid:0b8c3f6e-6a3c-4d52-9f8e-1a2b3c4d5e02";
const U3: &str = "urn:uuid:0b8c3f6e-6a3c-4d52-9f8e-1a2b3c4d5e03";

async fn post_bundle(s: &Server, token: Option<&str>, bundle: &Value) -> (StatusCode, Value) {
    let mut req = s.http.post(s.fhir("")).header("content-type", "application/fhir+json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.body(serde_json::to_vec(bundle).unwrap()).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

fn tx(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn post(full_url: Option<&str>, resource: Value) -> Value {
    let rt = resource["resourceType"].as_str().unwrap().to_owned();
    let mut e = json!({"resource": resource, "request": {"method": "POST", "url": rt}});
    if let Some(u) = full_url {
        e["fullUrl"] = json!(u);
    }
    e
}

fn with_identifier(family: &str, value: &str) -> Value {
    let mut p = patient(family, "Tapahtuma");
    p["identifier"] = json!([{"system": HETU, "value": value}]);
    p
}

fn appointment(patient_ref: &str, practitioner: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Appointment", "status": "booked", "start": start, "end": end,
        "participant": [{"actor": {"reference": patient_ref}, "status": "accepted"},
                        {"actor": {"reference": format!("Practitioner/{practitioner}")}, "status": "accepted"}]})
}

async fn get(s: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    let r = s.http.request(Method::GET, s.fhir(path)).bearer_auth(token).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// An instance with an auditor, served: the auditor's token, the clinician's user and Practitioner ids.
async fn with_auditor(db: Db) -> (Instance, Server, String, String, String) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let auditor = create_token(&inst.dir, "aud1", "user/*.*");
    let (my_id, pr) = me(&s, &s.token).await;
    (inst, s, auditor, my_id, pr.unwrap())
}

both_backends!(transaction_resolves_references_and_answers_each_entry);
both_backends!(a_refused_entry_fails_the_whole_transaction);
both_backends!(transactions_and_batches_follow_the_access_rules);
both_backends!(hostile_bundles_are_refused_and_change_nothing);
both_backends!(bundles_answer_as_single_requests_do_for_every_role);

/// A Patient, its Appointment and a note in one transaction, the later entries
/// referring to the first by `urn:uuid`; the answer has each entry's status,
/// location, etag and lastModified; one audit entry per write. Again with
/// `ifNoneExist`: the Patient is found (200), the new Appointment refers to it.
/// A PUT with `ifMatch` and a GET in a transaction; a batch.
async fn transaction_resolves_references_and_answers_each_entry(db: Db) {
    let (inst, s, auditor, my_id, pr) = with_auditor(db).await;
    let bundle = tx(
        "transaction",
        vec![
            post(Some(U1), with_identifier("Siirto", "121280-111A")),
            post(Some(U2), appointment(U1, &pr, "2027-05-03T09:00:00Z", "2027-05-03T09:45:00Z")),
            post(Some(U3), note("placeholder", "Ensikäynti, tapahtumassa.")),
        ],
    );
    // The note's subject refers to the new patient by its urn:uuid too.
    let mut bundle = bundle;
    bundle["entry"][2]["resource"]["subject"]["reference"] = json!(U1);
    let (before_v, before_h, _) = row_counts(&inst).await;
    let (st, answer) = post_bundle(&s, Some(&s.token), &bundle).await;
    assert_eq!(st, StatusCode::OK, "{answer}");
    assert_eq!(answer["type"], "transaction-response");
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for (e, rt) in entries.iter().zip(["Patient", "Appointment", "DocumentReference"]) {
        assert_eq!(e["response"]["status"], "201 Created", "{e}");
        assert_eq!(e["response"]["etag"], "W/\"1\"", "{e}");
        assert!(e["response"]["lastModified"].as_str().unwrap().ends_with('Z'), "{e}");
        let loc = e["response"]["location"].as_str().unwrap();
        assert!(loc.starts_with(&format!("{rt}/")) && loc.ends_with("/_history/1"), "{e}");
        assert_eq!(e["resource"]["resourceType"], rt);
    }
    let pid = entries[0]["resource"]["id"].as_str().unwrap().to_owned();
    let appt_id = entries[1]["resource"]["id"].as_str().unwrap().to_owned();
    // Stored with the references resolved, readable one by one.
    let (st, appt) = get(&s, &s.token, &format!("Appointment/{appt_id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(appt["participant"][0]["actor"]["reference"], format!("Patient/{pid}"));
    let note_id = entries[2]["resource"]["id"].as_str().unwrap();
    let (st, n) = get(&s, &s.token, &format!("DocumentReference/{note_id}")).await;
    assert_eq!((st, n["subject"]["reference"].as_str()), (StatusCode::OK, Some(format!("Patient/{pid}").as_str())));
    assert!(!answer.to_string().contains("urn:uuid"), "{answer}");
    // Three resources and the clinician's care team of the new patient; one audit entry each.
    let (after_v, after_h, _) = row_counts(&inst).await;
    assert_eq!((after_v - before_v, after_h - before_h), (4, 4));
    let created = audit_events(&s, &auditor, &format!("patient={pid}&agent={my_id}&action=create")).await;
    assert_eq!(created.len(), 4, "{created:?}");

    // Again, conditional on the identifier: the patient is found, not duplicated.
    let mut again = post(Some(U1), with_identifier("Siirto", "121280-111A"));
    again["request"]["ifNoneExist"] = json!(format!("identifier={HETU}|121280-111A"));
    let bundle2 = tx(
        "transaction",
        vec![again, post(None, appointment(U1, &pr, "2027-05-10T09:00:00Z", "2027-05-10T09:45:00Z"))],
    );
    let (st, answer2) = post_bundle(&s, Some(&s.token), &bundle2).await;
    assert_eq!(st, StatusCode::OK, "{answer2}");
    assert_eq!(answer2["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(answer2["entry"][0]["resource"]["id"], pid.as_str());
    assert_eq!(answer2["entry"][1]["resource"]["participant"][0]["actor"]["reference"], format!("Patient/{pid}"));
    let (_, found) = get(&s, &s.token, "Patient?identifier=121280-111A").await;
    assert_eq!(found["total"], 1, "{found}");
    // A conditional reference names the stored patient by identifier; one that matches nothing is refused.
    let by_identifier = format!("Patient?identifier={HETU}%7C121280-111A");
    let appt3 = appointment(&by_identifier, &pr, "2027-05-17T09:00:00Z", "2027-05-17T09:45:00Z");
    let (st, answer5) = post_bundle(&s, Some(&s.token), &tx("transaction", vec![post(None, appt3)])).await;
    assert_eq!(st, StatusCode::OK, "{answer5}");
    assert_eq!(answer5["entry"][0]["resource"]["participant"][0]["actor"]["reference"], format!("Patient/{pid}"));
    let nobody = appointment("Patient?identifier=999999-999X", &pr, "2027-05-18T09:00:00Z", "2027-05-18T09:45:00Z");
    let (st, none) = post_bundle(&s, Some(&s.token), &tx("transaction", vec![post(None, nobody)])).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{none}");

    // A PUT with ifMatch and a GET in one transaction; then the same PUT again: 412, whole.
    let mut changed = appt.clone();
    changed["end"] = json!("2027-05-03T10:00:00Z");
    let put = json!({"resource": changed, "request": {"method": "PUT", "url": format!("Appointment/{appt_id}"), "ifMatch": "W/\"1\""}});
    let read = json!({"request": {"method": "GET", "url": format!("Patient/{pid}")}});
    let (st, answer3) = post_bundle(&s, Some(&s.token), &tx("transaction", vec![put.clone(), read])).await;
    assert_eq!(st, StatusCode::OK, "{answer3}");
    assert_eq!(answer3["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(answer3["entry"][0]["response"]["etag"], "W/\"2\"");
    assert_eq!(answer3["entry"][1]["resource"]["id"], pid.as_str());
    let (st, stale) = post_bundle(&s, Some(&s.token), &tx("transaction", vec![put])).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{stale}");
    assert!(diagnostics(&stale).starts_with("Bundle.entry[0]"), "{stale}");

    // A batch: each entry answered on its own, a failure among successes.
    let batch = tx(
        "batch",
        vec![
            post(None, patient("Erä", "Eka")),
            json!({"request": {"method": "GET", "url": "Patient/nosuchpatient"}}),
            json!({"request": {"method": "GET", "url": "Patient?identifier=121280-111A"}}),
        ],
    );
    let (st, answer4) = post_bundle(&s, Some(&s.token), &batch).await;
    assert_eq!(st, StatusCode::OK, "{answer4}");
    assert_eq!(answer4["type"], "batch-response");
    assert_eq!(answer4["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(answer4["entry"][1]["response"]["status"], "404 Not Found");
    assert_eq!(answer4["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(answer4["entry"][2]["resource"]["total"], 1, "{answer4}");
    // The system-level interactions are in the CapabilityStatement.
    let (_, cs) = s.get_json("metadata").await;
    let system: Vec<&str> =
        cs["rest"][0]["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(system, ["transaction", "batch"]);
    validate_fhir(
        "transaction_resolves_references_and_answers_each_entry",
        &[answer, answer2, answer3, stale, answer4, answer5, none, appt],
    );
}

/// One bad entry (an invariant, a failed condition, a double booking, an
/// unknown reference) fails the whole transaction with an OperationOutcome
/// naming it: no row and no audit entry of a write is added.
async fn a_refused_entry_fails_the_whole_transaction(db: Db) {
    let (inst, s, auditor, my_id, pr) = with_auditor(db).await;
    // Two patients with one identifier: a condition on it matches both.
    for _ in 0..2 {
        let mut p = with_identifier("Kaksoset", "020202-222B");
        p["identifier"][0]["system"] = json!("urn:example:mrn");
        s.create(&p).await;
    }
    let booked = s.create(&patient("Varattu", "Vilja")).await;
    let booked_id = booked["id"].as_str().unwrap();
    let r = s
        .post(
            "Appointment",
            &appointment(&format!("Patient/{booked_id}"), &pr, "2027-06-01T10:00:00Z", "2027-06-01T11:00:00Z"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let good = || post(Some(U1), with_identifier("Kesken", "030303-333C"));
    let mut bad_name = patient("x", "y");
    bad_name["name"] = json!([{}]);
    let mut cond = post(None, patient("Ehto", "Eino"));
    cond["request"]["ifNoneExist"] = json!("identifier=020202-222B");
    let clash = post(None, appointment(U1, &pr, "2027-06-01T10:30:00Z", "2027-06-01T11:30:00Z"));
    let self_clash = [
        post(None, appointment(U1, &pr, "2027-07-01T10:00:00Z", "2027-07-01T11:00:00Z")),
        post(None, appointment(U1, &pr, "2027-07-01T10:30:00Z", "2027-07-01T11:30:00Z")),
    ];
    let unknown = with_subject(post(None, note(booked_id, "x")), U2);
    let twice = || {
        let mut e = post(None, with_identifier("Kahdesti", "040404-444D"));
        e["request"]["ifNoneExist"] = json!("identifier=040404-444D");
        e
    };
    let cases: Vec<(Vec<Value>, StatusCode, &str)> = vec![
        (vec![good(), post(None, bad_name)], StatusCode::BAD_REQUEST, "Bundle.entry[1]"),
        (vec![twice(), good(), twice()], StatusCode::BAD_REQUEST, "Bundle.entry[2]"),
        (vec![good(), cond], StatusCode::PRECONDITION_FAILED, "Bundle.entry[1]"),
        (vec![good(), clash], StatusCode::CONFLICT, "Bundle.entry[1]"),
        (vec![good(), self_clash[0].clone(), self_clash[1].clone()], StatusCode::CONFLICT, "Bundle.entry[2]"),
        (vec![good(), unknown], StatusCode::BAD_REQUEST, "Bundle.entry[1]"),
    ];
    let mut outcomes = Vec::new();
    for (entries, status, names) in cases {
        let counts = row_counts(&inst).await;
        let writes = audit_events(&s, &auditor, &format!("agent={my_id}&action=create")).await.len();
        let (st, outcome) = post_bundle(&s, Some(&s.token), &tx("transaction", entries)).await;
        assert_eq!(st, status, "{outcome}");
        assert!(diagnostics(&outcome).starts_with(names), "{outcome}");
        assert_eq!(row_counts(&inst).await, counts, "nothing written: {outcome}");
        let after = audit_events(&s, &auditor, &format!("agent={my_id}&action=create")).await.len();
        assert_eq!(after, writes, "no audit entry of a write: {outcome}");
        outcomes.push(outcome);
    }
    let (_, none) = get(&s, &s.token, "Patient?identifier=030303-333C").await;
    assert_eq!(none["total"], 0, "{none}");
    validate_fhir("a_refused_entry_fails_the_whole_transaction", &outcomes);
}

/// `entry` with its resource's subject replaced by `reference`.
fn with_subject(mut entry: Value, reference: &str) -> Value {
    entry["resource"]["subject"]["reference"] = json!(reference);
    entry
}

/// The access rules hold entry by entry: an entry the caller may not touch
/// (wrong role, a patient outside their care) fails a whole transaction with
/// the answer a single request gets, and only that entry in a batch; without
/// a session nothing is read.
async fn transactions_and_batches_follow_the_access_rules(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Toinen Kliinikko"]);
    add_user(&inst.dir, "rec1", "reception", &[]);
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");
    let reception = create_token(&inst.dir, "rec1", "user/*.*");
    let auditor = create_token(&inst.dir, "aud1", "user/*.*");
    let mine = s.create(&patient("Oma", "Olli")).await;
    let pid = mine["id"].as_str().unwrap().to_owned();
    s.put(
        &format!("Patient/{pid}"),
        &{
            let mut p = mine.clone();
            p["identifier"] = json!([{"system": HETU, "value": "050505-555E"}]);
            p
        },
        None,
    )
    .await;
    let counts = row_counts(&inst).await;

    // Wrong role: reception may not write notes; an auditor no records at all.
    let with_note = tx("transaction", vec![post(None, patient("Vastaanotto", "Veera")), post(None, note(&pid, "x"))]);
    let (st, b) = post_bundle(&s, Some(&reception), &with_note).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert!(diagnostics(&b).starts_with("Bundle.entry[1]"), "{b}");
    let (st, b2) = post_bundle(&s, Some(&auditor), &tx("transaction", vec![post(None, patient("A", "B"))])).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b2}");
    // Wrong patient: a clinician not on the care team writes to and reads the patient.
    let theirs = tx("transaction", vec![post(None, patient("Toisen", "Tuula")), post(None, note(&pid, "vieras"))]);
    let (st, b3) = post_bundle(&s, Some(&clin2), &theirs).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b3}");
    assert!(!b3.to_string().contains(&pid), "{b3}");
    // A conditional reference to a patient outside the caller's care: 412, as a conditional create.
    let by_identifier = json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient?identifier=050505-555E"}});
    let (st, b8) = post_bundle(&s, Some(&clin2), &tx("transaction", vec![post(None, by_identifier)])).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{b8}");
    assert!(!b8.to_string().contains(&pid), "{b8}");
    let read = tx("transaction", vec![json!({"request": {"method": "GET", "url": format!("Patient/{pid}")}})]);
    let (st, b4) = post_bundle(&s, Some(&clin2), &read).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b4}");
    assert_eq!(row_counts(&inst).await, counts, "nothing written");
    // In a batch only the refused entry fails.
    let batch = tx(
        "batch",
        vec![
            post(None, patient("Oma2", "Oona")),
            post(None, note(&pid, "vieras")),
            json!({"request": {"method": "GET", "url": format!("Patient/{pid}")}}),
        ],
    );
    let (st, b5) = post_bundle(&s, Some(&clin2), &batch).await;
    assert_eq!(st, StatusCode::OK, "{b5}");
    let statuses: Vec<&str> =
        b5["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201 Created", "422 Unprocessable Entity", "404 Not Found"], "{b5}");
    assert!(!b5.to_string().contains("Olli"), "{b5}");
    // The refusals are audited against the patient, as a single request's are.
    let (clin2_id, _) = me(&s, &clin2).await;
    let denied = audit_events(&s, &auditor, &format!("patient={pid}&agent={clin2_id}")).await;
    assert!(denied.iter().filter(|e| e["outcome"] == "4").count() >= 3, "{denied:?}");
    // No session: 401, nothing written.
    let counts = row_counts(&inst).await;
    let (st, b6) = post_bundle(&s, None, &tx("transaction", vec![post(None, patient("Anonyymi", "A"))])).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b6}");
    let (st, b7) = post_bundle(&s, Some("not-a-token"), &tx("batch", vec![post(None, patient("A", "B"))])).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b7}");
    assert_eq!(row_counts(&inst).await, counts);
    validate_fhir("transactions_and_batches_follow_the_access_rules", &[b, b2, b3, b4, b5, b6, b7, b8]);
}

/// Not a Bundle, the wrong Bundle type, too many entries, an unknown or
/// malformed `urn:uuid`, a self-reference, a fullUrl twice, DELETE, two
/// entries on one resource, malformed JSON and the wrong media type: a clear
/// OperationOutcome each, and nothing written.
async fn hostile_bundles_are_refused_and_change_nothing(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let mine = s.create(&patient("Oma", "Olli")).await;
    let pid = mine["id"].as_str().unwrap().to_owned();
    let counts = row_counts(&inst).await;
    let many: Vec<Value> = (0..10_000).map(|_| json!({"request": {"method": "GET", "url": "Patient/x"}})).collect();
    let mut own = post(Some(U1), note(&pid, "itseensä"));
    own["resource"]["subject"]["reference"] = json!(U1);
    let put = |given: &str| {
        let mut p = mine.clone();
        p["name"][0]["given"] = json!([given]);
        json!({"resource": p, "request": {"method": "PUT", "url": format!("Patient/{pid}")}})
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (patient("Ei", "Nippu"), StatusCode::BAD_REQUEST, "invalid"),
        (tx("collection", vec![post(None, patient("A", "B"))]), StatusCode::BAD_REQUEST, "not-supported"),
        (tx("searchset", vec![]), StatusCode::BAD_REQUEST, "not-supported"),
        (json!({"resourceType": "Bundle"}), StatusCode::BAD_REQUEST, "invalid"),
        (tx("transaction", many), StatusCode::BAD_REQUEST, "invalid"),
        (tx("transaction", vec![with_subject(post(None, note(&pid, "x")), U2)]), StatusCode::BAD_REQUEST, "invalid"),
        (
            tx("transaction", vec![post(Some("urn:uuid:../../etc"), patient("A", "B"))]),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (tx("transaction", vec![own]), StatusCode::BAD_REQUEST, "invalid"),
        (
            tx("transaction", vec![post(Some(U1), patient("A", "B")), post(Some(U1), patient("C", "D"))]),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            tx("transaction", vec![json!({"request": {"method": "DELETE", "url": format!("Patient/{pid}")}})]),
            StatusCode::BAD_REQUEST,
            "not-supported",
        ),
        (tx("transaction", vec![put("Yksi"), put("Kaksi")]), StatusCode::BAD_REQUEST, "invalid"),
        (tx("transaction", vec![json!("entry")]), StatusCode::BAD_REQUEST, "invalid"),
        (
            tx(
                "transaction",
                vec![json!({"request": {"method": "POST", "url": "Patient/../../x"}, "resource": patient("A", "B")})],
            ),
            StatusCode::BAD_REQUEST,
            "not-supported",
        ),
        (
            tx(
                "transaction",
                vec![
                    json!({"request": {"method": "POST", "url": "Patient", "ifNoneExist": "_count=1"}, "resource": patient("A", "B")}),
                ],
            ),
            StatusCode::BAD_REQUEST,
            "not-supported",
        ),
    ];
    let mut outcomes = Vec::new();
    for (body, status, code) in cases {
        let (st, b) = post_bundle(&s, Some(&s.token), &body).await;
        assert_eq!(st, status, "{b}");
        assert_eq!(b["issue"][0]["code"], code, "{b}");
        assert!(!b.to_string().contains("Olli"), "{b}");
        outcomes.push(b);
    }
    // Malformed JSON and the wrong media type.
    let r = s.http.post(s.fhir("")).bearer_auth(&s.token).header("content-type", "application/fhir+json");
    let r = r.body("{\"resourceType\": \"Bundle\", \"type\": ").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    outcomes.push(r.json().await.unwrap());
    let r = s.http.post(s.fhir("")).bearer_auth(&s.token).header("content-type", "text/plain").body("{}").send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    outcomes.push(r.json().await.unwrap());
    assert_eq!(row_counts(&inst).await, counts, "nothing written");
    validate_fhir("hostile_bundles_are_refused_and_change_nothing", &outcomes);
}

/// The authorization matrix through Bundles: for every role (a clinician with
/// and without the patient in their care, reception, admin, auditor, the
/// patient) and every type, a create in a transaction and in a batch is
/// answered exactly as the single create is — refused alike, or created.
async fn bundles_answer_as_single_requests_do_for_every_role(db: Db) {
    let inst = Instance::new(db).await;
    inst.detector_locks_nothing();
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Toinen Kliinikko"]);
    add_user(&inst.dir, "rec1", "reception", &[]);
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let pid = s.create(&patient("Matriisi", "Maija")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "pat1", "patient", &["--patient", &pid]);
    let (_, pr) = me(&s, &s.token).await;
    let pr = pr.unwrap();
    let roles = [
        ("clinician", s.token.clone()),
        ("other clinician", create_token(&inst.dir, "clin2", "user/*.*")),
        ("reception", create_token(&inst.dir, "rec1", "user/*.*")),
        ("admin", inst.admin_token.clone()),
        ("auditor", create_token(&inst.dir, "aud1", "user/*.*")),
        ("patient", create_token(&inst.dir, "pat1", "user/*.*")),
    ];
    let mut hour = 0;
    let mut resource = |ty: &str| -> Value {
        hour += 1;
        let (day, h) = (1 + hour / 20, hour % 20);
        match ty {
            "Patient" => patient("Uusi", "Potilas"),
            "Practitioner" => json!({"resourceType": "Practitioner", "name": [{"family": "Uusi"}]}),
            "Encounter" => crate::common::encounter(&pid),
            "DocumentReference" => note(&pid, "uusi muistiinpano"),
            "CareTeam" => json!({"resourceType": "CareTeam", "status": "active",
                "subject": {"reference": format!("Patient/{pid}")},
                "participant": [{"member": {"reference": format!("Practitioner/{pr}")}}]}),
            "Appointment" => appointment(
                &format!("Patient/{pid}"),
                &pr,
                &format!("2027-10-{day:02}T{h:02}:00:00Z"),
                &format!("2027-10-{day:02}T{h:02}:30:00Z"),
            ),
            _ => json!({"resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": "urn:confidant:questionnaire:phq-9", "subject": {"reference": format!("Patient/{pid}")}}),
        }
    };
    // Every type the server stores but those the fixture has no body for (Schedule, Observation).
    let types: Vec<&str> =
        ResourceType::ALL.iter().map(|t| t.as_str()).filter(|t| !["Schedule", "Observation"].contains(t)).collect();
    let mut answers = Vec::new();
    let mut created = 0;
    for (role, token) in &roles {
        for ty in types.iter().copied() {
            let single = s
                .http
                .post(s.fhir(ty))
                .bearer_auth(token)
                .header("content-type", "application/fhir+json")
                .body(serde_json::to_vec(&resource(ty)).unwrap())
                .send()
                .await
                .unwrap()
                .status();
            let (st, t) = post_bundle(&s, Some(token), &tx("transaction", vec![post(None, resource(ty))])).await;
            if single == StatusCode::CREATED {
                created += 1;
                assert_eq!(st, StatusCode::OK, "{role} {ty}: {t}");
                assert_eq!(t["entry"][0]["response"]["status"], "201 Created", "{role} {ty}: {t}");
            } else {
                assert_eq!(st, single, "{role} {ty} in a transaction: {t}");
                assert!(diagnostics(&t).starts_with("Bundle.entry[0]"), "{role} {ty}: {t}");
            }
            let (st, b) = post_bundle(&s, Some(token), &tx("batch", vec![post(None, resource(ty))])).await;
            assert_eq!(st, StatusCode::OK, "{role} {ty}: {b}");
            let line = b["entry"][0]["response"]["status"].as_str().unwrap().to_owned();
            assert!(line.starts_with(&single.as_u16().to_string()), "{role} {ty} in a batch: {line} vs {single}");
            answers.push(t);
            answers.push(b);
        }
    }
    // The matrix is not all refusals: the clinician, reception and admin create what they may.
    assert!(created >= 8, "{created}");
    validate_fhir("bundles_answer_as_single_requests_do_for_every_role", &answers);
}

/// A real FHIR client library (npm `fhir-kit-client`) posts a transaction
/// (a Patient and its Appointment by urn:uuid) and a batch (a read that
/// works and one that does not).
#[tokio::test]
async fn a_real_fhir_client_posts_bundles() {
    let Some(e2e) = crate::common::fhir_client_ready("a_real_fhir_client_posts_bundles") else { return };
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let (_, pr) = me(&s, &s.token).await;
    let out = std::process::Command::new("node")
        .arg(e2e.join("fhir_bundle.mjs"))
        .current_dir(&e2e)
        .env("FHIR_BASE", s.fhir(""))
        .env("FHIR_TOKEN", &s.token)
        .env("PRACTITIONER", pr.unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["transactionType"], "transaction-response", "{report}");
    assert_eq!(report["statuses"], json!(["201 Created", "201 Created"]), "{report}");
    let pid = report["patient"].as_str().unwrap();
    assert_eq!(report["appointmentPatient"], format!("Patient/{pid}"), "{report}");
    assert_eq!(report["batchType"], "batch-response", "{report}");
    assert_eq!(report["batchStatuses"], json!(["200 OK", "404 Not Found"]), "{report}");
    // What the client made is what the server holds.
    let (st, p) = get(&s, &s.token, &format!("Patient/{pid}")).await;
    assert_eq!((st, p["name"][0]["family"].as_str()), (StatusCode::OK, Some("Kirjasto")));
}
