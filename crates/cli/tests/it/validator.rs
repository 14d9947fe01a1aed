//! What the API returns is valid FHIR R4 according to two independent
//! validators: the `fhir.resources` Python package (FHIR 4.0.1) and Medplum's
//! `validateResource` (npm `@medplum/core`, which checks the invariants too).

use serde_json::{Value, json};

use crate::common::{Db, Instance, add_user, create_token, encounter, note, patient};

#[tokio::test]
async fn responses_are_valid_fhir_r4() {
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let mut p = patient("Virtanen", "Aino");
    p["identifier"] = json!([{"system": "urn:oid:1.2.246.21", "value": "131052-308T"}]);
    p["telecom"] = json!([{"system": "email", "value": "aino@example.fi"}]);
    let p = s.create(&p).await;
    let pid = p["id"].as_str().unwrap();
    let pr = s
        .create_as(
            &s.admin_token,
            &json!({"resourceType": "Practitioner", "name": [{"family": "Salo", "given": ["Juhani"]}]}),
        )
        .await;
    let e = s.create(&encounter(pid)).await;
    let n = s.create(&note(pid, "Session note text.")).await;
    let mut n2 = n.clone();
    n2["description"] = json!("updated");
    assert!(s.put(&format!("DocumentReference/{}", n["id"].as_str().unwrap()), &n2, None).await.status().is_success());

    let appt = s
        .create(&json!({"resourceType": "Appointment", "status": "booked",
                        "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:50:00Z",
                        "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "accepted"}]}))
        .await;
    // The calendar's shape: a series member with its type, length, and a coded cancellation.
    let prid = pr["id"].as_str().unwrap().to_owned();
    let series = s
        .create(&json!({"resourceType": "Appointment", "status": "cancelled",
                        "identifier": [{"system": "urn:confidant:series", "value": "0123456789abcdef"}],
                        "appointmentType": {"coding": [{"system": "urn:confidant:appointment-type", "code": "session"}]},
                        "cancelationReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason", "code": "pat"}]},
                        "start": "2027-03-29T07:00:00.000Z", "end": "2027-03-29T08:00:00.000Z", "minutesDuration": 60,
                        "created": "2026-12-03T10:00:00.000Z",
                        "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "accepted"},
                                        {"actor": {"reference": format!("Practitioner/{prid}")}, "status": "accepted"}]}))
        .await;
    let hours = s
        .create_as(
            &s.admin_token,
            &json!({"resourceType": "Schedule", "active": true, "actor": [{"reference": format!("Practitioner/{prid}")}],
                    "extension": [{"url": "urn:confidant:working-hours", "extension": [
                        {"url": "day", "valueCode": "mon"}, {"url": "start", "valueTime": "08:00:00"},
                        {"url": "end", "valueTime": "16:00:00"}]}]}),
        )
        .await;
    assert_eq!(hours["resourceType"], "Schedule", "{hours}");
    let (_, by_practitioner) = s.get_json(&format!("Appointment?practitioner=Practitioner/{prid}")).await;
    assert_eq!(by_practitioner["total"], 1, "{by_practitioner}");
    let (_, team) = s.get_json(&format!("CareTeam?patient={pid}")).await;
    let mut docs: Vec<Value> = vec![p.clone(), pr, e, n, appt, series, by_practitioner, hours, team];
    for path in [
        "Patient?identifier=131052-308T".to_owned(),
        format!("DocumentReference?patient={pid}&_count=1"),
        format!("DocumentReference/{}/_history", n2["id"].as_str().unwrap()),
        "metadata".to_owned(),
        "Patient/doesnotexist".to_owned(),
        "Patient?nosuchparam=1".to_owned(),
        "Patient?family=nobody".to_owned(),
        // Issue 19: a count only, a subset, a malformed prefix, an unsupported format.
        "Patient?identifier=131052-308T&_count=0".to_owned(),
        "Patient?identifier=131052-308T&_summary=count".to_owned(),
        "Patient?identifier=131052-308T&_elements=birthDate,name".to_owned(),
        "Patient?birthdate=%3E1980-01-01".to_owned(),
        "Patient?identifier=131052-308T&_format=xml".to_owned(),
        "Questionnaire".to_owned(),
    ] {
        let (_, v) = s.get_json(&path).await;
        docs.push(v);
    }
    // The audit log as AuditEvents: everything so far (reads, creates, updates, refusals,
    // security events), as the auditor sees it, and one patient's access log.
    let r = s
        .http
        .post(format!("{}/api/v1/session", s.url))
        .json(&json!({"username": "nobody-here", "password": "not the password", "client": "bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let auditor = create_token(&inst.dir, "aud1", "user/*.read");
    add_user(&inst.dir, "aino", "patient", &["--patient", pid]);
    let aino = create_token(&inst.dir, "aino", "user/*.read");
    for (token, path) in [
        (&auditor, "AuditEvent?_count=100"),
        (&aino, "AuditEvent"),
        (&auditor, "AuditEvent/1"),
        (&auditor, "AuditEvent?_count=2&_after=5"),
        (&auditor, "AuditEvent?_count=2&_sort=date&action=R"),
    ] {
        let r = s.http.get(s.fhir(path)).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "{path}");
        docs.push(r.json().await.unwrap());
    }
    // Page links (next, and previous on every page after the first) and a history
    // Bundle's entries with their requests (bdl-3), through both validators.
    let (_, page2) = s.get_json(&format!("DocumentReference?patient={pid}&_count=1&_after=0")).await;
    docs.push(page2);
    crate::common::validate_fhir("responses_are_valid_fhir_r4", &docs);

    // Neither validator is a rubber stamp: each rejects what is invalid, the
    // second one invariants too (ele-1, bdl-3, ext-1, app-3).
    let bad = [
        json!({"resourceType": "Patient", "birthDate": "1980-02-30"}),
        json!({"resourceType": "Patient", "name": [{}]}),
        json!({"resourceType": "Bundle", "type": "history", "entry": [{"fullUrl": "https://x/fhir/r4/Patient/1", "resource": {"resourceType": "Patient", "id": "1"}}]}),
        json!({"resourceType": "Patient", "extension": [{"url": "urn:x"}]}),
        json!({"resourceType": "Appointment", "status": "booked", "participant": [{"status": "accepted", "actor": {"reference": "Patient/1"}}]}),
    ];
    let reports = crate::common::fhir_validators("responses_are_valid_fhir_r4", &bad[..1]);
    assert!(reports.iter().all(|(ok, _)| !ok), "{reports:?}");
    for (i, b) in bad.iter().enumerate().skip(1) {
        let reports = crate::common::fhir_validators("responses_are_valid_fhir_r4", std::slice::from_ref(b));
        if let Some((ok, report)) = reports.iter().find(|(_, r)| r.starts_with("medplum")) {
            assert!(!ok, "medplum accepted bad[{i}]: {report}");
        }
    }
}
