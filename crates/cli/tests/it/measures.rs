//! Outcome measures over HTTP on SQLite and PostgreSQL: the clinician sends a
//! PHQ-9 to the portal, the patient answers it there (radio buttons, a form
//! post with the CSRF token), the server scores it (an Observation derived
//! from the response) and the chart shows the score, its band and an SVG trend;
//! item 9 above 0 flags the chart and the patients list until acknowledged
//! (audited); "fill in now" during the session; CORE-10's reversed items.
//! Wrong patient, wrong role, no session, hostile input (out-of-scale values,
//! missing items, unknown items and questionnaires, a huge body): refused with
//! nothing written. No answer in the database in plaintext; every new shape
//! through the independent FHIR validator.

use reqwest::StatusCode as S;
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, create_token, patient};
use crate::ui::Browser;

/// `1=a&2=b&...` for the answers in order.
fn answers(values: &[u8]) -> String {
    values.iter().enumerate().map(|(i, v)| format!("{}={v}", i + 1)).collect::<Vec<_>>().join("&")
}

async fn search(s: &Server, token: &str, query: &str) -> Vec<Value> {
    let r = s.http.get(s.fhir(query)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), S::OK, "{query}");
    let b: Value = r.json().await.unwrap();
    b["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()).collect()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Every stored body, and for SQLite the database files themselves.
async fn stored_bytes(inst: &Instance) -> Vec<Vec<u8>> {
    use sqlx::{Connection, Row};
    let mut db = inst.db().await;
    let rows = sqlx::query("SELECT body FROM resource_versions").fetch_all(&mut db).await.unwrap();
    let mut out: Vec<Vec<u8>> = rows.iter().map(|r| r.get::<Vec<u8>, _>(0)).collect();
    db.close().await.unwrap();
    for f in crate::common::files_under(&inst.dir) {
        out.push(std::fs::read(&f).unwrap_or_default());
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn measures_flow(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    let clin2_token = create_token(&inst.dir, "clin2", "user/*.*");
    // The refusals below are deliberate: the detector would lock their accounts.
    inst.detector_locks_nothing();
    let s = inst.start();
    let p1 = s.create(&patient("Measurefamily", "Mirja")).await["id"].as_str().unwrap().to_owned();
    let p2 = s.create_as(&clin2_token, &patient("Elsewhere", "Otto")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "mirja", "patient", &["--patient", &p1]);
    add_user(&inst.dir, "otto", "patient", &["--patient", &p2]);
    let mirja_token = create_token(&inst.dir, "mirja", "user/*.read");
    let clin1 = Browser::sign_in(&s, "clin1").await;
    let mirja = Browser::sign_in(&s, "mirja").await;
    let otto = Browser::sign_in(&s, "otto").await;
    let desk = Browser::sign_in(&s, "desk").await;
    let audi = Browser::sign_in(&s, "audi").await;
    let anon = Browser::anonymous(&s).await;

    // The instruments, built in, as FHIR Questionnaires.
    let (st, all) = s.get_json("Questionnaire").await;
    assert_eq!((st, all["total"].clone()), (S::OK, json!(3)), "{all}");
    let (st, phq) = s.get_json("Questionnaire/phq-9").await;
    assert_eq!(st, S::OK);
    assert_eq!(phq["item"].as_array().unwrap().len(), 10, "the stem and nine items");
    assert!(phq["copyright"].as_str().unwrap().contains("Pfizer"));
    assert_eq!(s.get_json("Questionnaire/phq-10").await.0, S::NOT_FOUND);
    let (_, core) = s.get_json("Questionnaire/core-10").await;
    let (_, gad) = s.get_json("Questionnaire/gad-7").await;
    let r = s.http.get(s.fhir("Questionnaire")).send().await.unwrap();
    assert_eq!(r.status(), S::UNAUTHORIZED, "no token");
    // Nobody writes answers or scores through the API.
    let qr = json!({"resourceType": "QuestionnaireResponse", "status": "completed",
        "questionnaire": "urn:confidant:questionnaire:phq-9", "subject": {"reference": format!("Patient/{p1}")}});
    assert_eq!(s.post("QuestionnaireResponse", &qr).await.status(), S::FORBIDDEN);
    let obs = json!({"resourceType": "Observation", "status": "final", "valueInteger": 0,
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]}, "subject": {"reference": format!("Patient/{p1}")}});
    assert_eq!(s.post("Observation", &obs).await.status(), S::FORBIDDEN);

    // The chart: the section and its form.
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    for want in [
        "<section id=\"measures\">",
        "Send to the portal",
        "Fill in now",
        "value=\"phq-9\" checked",
        "value=\"core-10\"",
    ] {
        assert!(chart.contains(want), "{want}: {chart}");
    }
    assert!(chart.contains("No measures completed yet."));

    // Sending: not by the wrong role, not without the token, not for someone else's patient, not an unknown one.
    let send = format!("/patients/{p1}/measures");
    for b in [&desk, &audi, &mirja] {
        assert_eq!(b.post(&send, "instrument=phq-9&action=send").await.status(), S::FORBIDDEN);
    }
    assert_eq!(clin1.post_raw(&send, "instrument=phq-9&action=send").await.status(), S::FORBIDDEN, "no CSRF");
    let r = anon.post_raw(&send, "instrument=phq-9&action=send").await;
    assert_eq!((r.status(), location(&r)), (S::SEE_OTHER, "/login".to_owned()));
    let r = clin1.post(&send, "instrument=phq-10&action=send").await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("unknown questionnaire"));
    assert_eq!(clin1.post(&send, "instrument=phq-9&action=delete").await.status(), S::BAD_REQUEST);
    assert_eq!(
        clin1.post(&format!("/patients/{p2}/measures"), "instrument=phq-9&action=send").await.status(),
        S::BAD_REQUEST
    );
    assert!(search(&s, &s.token, &format!("QuestionnaireResponse?patient={p1}")).await.is_empty(), "nothing sent");
    assert!(search(&s, &clin2_token, &format!("QuestionnaireResponse?patient={p2}")).await.is_empty());

    // The clinician sends a PHQ-9 to the portal.
    let r = clin1.post(&send, "instrument=phq-9&action=send").await;
    assert_eq!((r.status(), location(&r)), (S::SEE_OTHER, format!("/patients/{p1}#measures")));
    let sent = search(&s, &s.token, &format!("QuestionnaireResponse?patient={p1}")).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["status"], "in-progress");
    let qid = sent[0]["id"].as_str().unwrap().to_owned();
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    assert!(chart.contains("Waiting for answers") && chart.contains(&format!("/measures/{qid}")));

    // The patient's portal lists it; the form is radio buttons, the items verbatim.
    assert!(mirja.get("/").await.text().await.unwrap().contains("href=\"/me/measures\""));
    let list = mirja.get("/me/measures").await.text().await.unwrap();
    assert!(list.contains(&format!("href=\"/measures/{qid}\"")) && list.contains("PHQ-9"), "{list}");
    assert!(otto.get("/me/measures").await.text().await.unwrap().contains("Nothing to fill in."));
    let form_path = format!("/measures/{qid}");
    let form = mirja.get(&form_path).await.text().await.unwrap();
    assert_eq!(form.matches("<fieldset class=\"item\">").count(), 9);
    assert!(form.contains("Thoughts that you would be better off dead or of hurting yourself in some way"));
    assert!(form.contains("type=\"radio\" name=\"9\" value=\"3\""));
    assert!(form.contains("name=\"csrf\""));
    let fi = mirja.in_language("fi").get(&form_path).await.text().await.unwrap();
    assert!(
        fi.contains("Kysymykset näytetään englanniksi") && fi.contains("Little interest or pleasure in doing things")
    );

    // Not another patient's, not reception's or the auditor's, not without a session.
    let eight = [1, 2, 1, 2, 1, 1, 2, 1];
    let flagged = answers(&[&eight[..], &[1]].concat());
    assert_eq!(otto.get(&form_path).await.status(), S::NOT_FOUND);
    assert_eq!(otto.post(&form_path, &flagged).await.status(), S::NOT_FOUND);
    assert_eq!(desk.get(&form_path).await.status(), S::FORBIDDEN);
    assert_eq!(audi.post(&form_path, &flagged).await.status(), S::FORBIDDEN);
    assert_eq!(anon.get(&form_path).await.status(), S::SEE_OTHER);
    assert_eq!(mirja.post_raw(&form_path, &flagged).await.status(), S::FORBIDDEN, "no CSRF token");
    // Hostile input: each refused with a clear error.
    let mut seven = eight.to_vec();
    seven.push(7);
    for (body, says) in [
        (answers(&seven), "item 9 takes an answer from 0 to 3"),
        (answers(&eight), "not answered: 9"),
        (format!("{flagged}&10=1"), "PHQ-9 has no item 10"),
        (format!("{flagged}&score=0"), "a field this questionnaire does not have"),
        (format!("{flagged}&1=0"), "answered twice"),
        (format!("{}&9=x", answers(&eight)), "a field this questionnaire does not have"),
    ] {
        let r = mirja.post(&form_path, &body).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{body}");
        let page = r.text().await.unwrap();
        assert!(page.contains(says), "{body}: {page}");
    }
    let huge = format!("{flagged}&{}", "x".repeat(3_000_000));
    assert!(mirja.post(&form_path, &huge).await.status().is_client_error());
    let still = search(&s, &s.token, &format!("QuestionnaireResponse?patient={p1}")).await;
    assert_eq!((still[0]["status"].clone(), still[0]["meta"]["versionId"].clone()), (json!("in-progress"), json!("1")));
    assert!(search(&s, &s.token, &format!("Observation?patient={p1}")).await.is_empty(), "nothing scored");

    // The patient answers: item 9 "several days".
    let r = mirja.post(&form_path, &flagged).await;
    assert_eq!(r.status(), S::OK);
    assert!(r.text().await.unwrap().contains("Your answers have been saved"));
    let done = search(&s, &s.token, &format!("QuestionnaireResponse?patient={p1}")).await;
    assert_eq!(done[0]["status"], "completed");
    assert_eq!(done[0]["item"][8]["answer"][0]["valueCoding"]["code"], "1");
    assert_eq!(done[0]["author"]["reference"], format!("Patient/{p1}"));
    let scores = search(&s, &s.token, &format!("Observation?patient={p1}")).await;
    assert_eq!(scores.len(), 1);
    let score = scores[0].clone();
    assert_eq!(score["valueInteger"], 12, "1+2+1+2+1+1+2+1+1");
    assert_eq!(score["code"]["coding"][0]["code"], "44261-6");
    assert_eq!(score["interpretation"][0]["coding"][0]["code"], "moderate");
    assert_eq!(score["derivedFrom"][0]["reference"], format!("QuestionnaireResponse/{qid}"));
    assert_eq!(score["meta"]["tag"][0]["code"], "needs-attention");
    // Answered once: a second answer is refused, and nothing new is scored.
    assert_eq!(mirja.post(&form_path, &answers(&[0; 9])).await.status(), S::FORBIDDEN);
    assert_eq!(mirja.get(&form_path).await.status(), S::CONFLICT);
    assert_eq!(search(&s, &s.token, &format!("Observation?patient={p1}")).await.len(), 1);
    // The patient reads their own answers and score (their data), no one else's.
    assert_eq!(search(&s, &mirja_token, &format!("Observation?patient={p1}")).await.len(), 1);
    assert_eq!(search(&s, &mirja_token, &format!("Observation?patient={p2}")).await.len(), 0);
    assert!(search(&s, &clin2_token, &format!("Observation?patient={p1}")).await.is_empty(), "not clin2's patient");

    // The chart: the flag, the score and band in text, the trend as SVG.
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    assert!(chart.contains("Needs attention:") && chart.contains("PHQ-9 item 9: “Several days”"), "{chart}");
    assert!(chart.contains("Latest PHQ-9: 12 / 27 (moderate)"), "{chart}");
    assert!(chart.contains("<svg class=\"trend\""));
    assert_eq!(chart.matches("<circle class=\"point\"").count(), 1);
    assert_eq!(chart.matches("class=\"band band-").count(), 5, "PHQ-9's five bands");
    assert!(!chart.contains("style="), "no style attributes (CSP)");
    let list = clin1.get("/patients").await.text().await.unwrap();
    assert!(list.contains("Needs attention") && list.contains(&format!("/patients/{p1}#measures")), "{list}");
    let clin2 = Browser::sign_in(&s, "clin2").await;
    let list2 = clin2.get("/patients").await.text().await.unwrap();
    assert!(!list2.contains("Needs attention"), "not clin2's patient");

    // Acknowledging: the clinician, with the token; audited as an update of the score.
    let sid = score["id"].as_str().unwrap().to_owned();
    let ack = format!("/observations/{sid}/acknowledge");
    assert_eq!(desk.post(&ack, "version=1").await.status(), S::FORBIDDEN);
    assert_eq!(mirja.post(&ack, "version=1").await.status(), S::FORBIDDEN);
    assert_eq!(clin1.post_raw(&ack, "version=1").await.status(), S::FORBIDDEN, "no CSRF");
    assert_eq!(clin2.post(&ack, "version=1").await.status(), S::NOT_FOUND);
    let r = clin1.post(&ack, "version=1").await;
    assert_eq!((r.status(), location(&r)), (S::SEE_OTHER, format!("/patients/{p1}#measures")));
    let (_, acked) = s.get_json(&format!("Observation/{sid}")).await;
    assert_eq!(
        (acked["meta"]["versionId"].clone(), acked["meta"]["tag"][0]["code"].clone()),
        (json!("2"), json!("acknowledged"))
    );
    assert_eq!(clin1.post(&ack, "version=2").await.status(), S::BAD_REQUEST, "nothing left to acknowledge");
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    assert!(!chart.contains("Needs attention:"));
    let audit_token = create_token(&inst.dir, "audi", "user/*.read");
    let r = s
        .http
        .get(s.fhir(&format!("AuditEvent?patient={p1}&_count=100")))
        .bearer_auth(&audit_token)
        .send()
        .await
        .unwrap();
    let audit: Value = r.json().await.unwrap();
    let updates: Vec<&Value> = audit["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["resource"]["entity"][0]["what"]["reference"] == format!("Observation/{sid}/_history/2")
                && e["resource"]["subtype"][0]["code"] == "update"
        })
        .collect();
    assert_eq!(updates.len(), 1, "the acknowledgement is audited");

    // Fill in now, during the session: the clinician answers, the trend grows.
    let r = clin1.post(&send, "instrument=phq-9&action=now").await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let now_path = location(&r);
    assert!(now_path.starts_with("/measures/"), "{now_path}");
    let r = clin1.post(&now_path, &answers(&[0, 1, 0, 1, 0, 1, 0, 1, 0])).await;
    assert_eq!((r.status(), location(&r)), (S::SEE_OTHER, format!("/patients/{p1}#measures")));
    // CORE-10 with every answer "not at all": items 2 and 3 reversed, 4 each.
    let r = clin1.post(&send, "instrument=core-10&action=now").await;
    let core_path = location(&r);
    assert_eq!(clin1.post(&core_path, &answers(&[0; 10])).await.status(), S::SEE_OTHER);
    let scores = search(&s, &s.token, &format!("Observation?patient={p1}")).await;
    let mut totals: Vec<(String, i64)> = scores
        .iter()
        .map(|o| (o["code"]["coding"][0]["code"].as_str().unwrap().to_owned(), o["valueInteger"].as_i64().unwrap()))
        .collect();
    totals.sort();
    assert_eq!(totals, [("44261-6".to_owned(), 4), ("44261-6".to_owned(), 12), ("core-10-total".to_owned(), 8)]);
    let core_score = scores.iter().find(|o| o["valueInteger"] == 8).unwrap().clone();
    assert_eq!(core_score["interpretation"][0]["coding"][0]["code"], "low");
    assert!(core_score["meta"].get("tag").is_none(), "item 6 not flagged at 0");
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    assert_eq!(chart.matches("<circle class=\"point\"").count(), 3);
    assert_eq!(chart.matches("<polyline class=\"line\"").count(), 1, "PHQ-9's two points joined");
    assert!(
        chart.contains("Latest PHQ-9: 4 / 27 (minimal)") && chart.contains("Latest CORE-10: 8 / 40 (low level)"),
        "{chart}"
    );
    let fi = clin1.in_language("fi").get(&format!("/patients/{p1}")).await.text().await.unwrap();
    assert!(fi.contains("Mittarit") && fi.contains("Viimeisin PHQ-9: 4 / 27 (vähäinen)"), "{fi}");

    // At rest: no answer, item text, code or band in plaintext.
    for blob in stored_bytes(&inst).await {
        for canary in [
            "better off dead",
            "Several days",
            "44261-6",
            "needs-attention",
            "moderate",
            "valueCoding",
            "core-10-total",
        ] {
            assert!(!contains(&blob, canary), "{canary} stored in plaintext");
        }
    }

    // The independent validator: the responses (in progress, completed), the scores, the questionnaires.
    let (_, responses) = s.get_json(&format!("QuestionnaireResponse?patient={p1}")).await;
    let (_, observations) = s.get_json(&format!("Observation?patient={p1}")).await;
    let (_, first) = s.get_json(&format!("Observation/{sid}/_history/1")).await;
    let mut docs = vec![phq, gad, core, all, responses, observations, first, acked, sent[0].clone(), score];
    docs.extend(done);
    crate::notes::validate(&docs);
    s.stop();
}
both_backends!(measures_flow);

/// The flow in headless Chromium, with screenshots (target/screenshots/measure*-{en,fi}-{desktop,narrow}.png).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_in_chromium() {
    use std::path::Path;
    use std::process::Command;
    let Some(e2e) = crate::common::e2e_ready("measures::measures_in_chromium") else { return };
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let p = s.create(&patient("Browserfamily", "Bea")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "bea", "patient", &["--patient", &p]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let out = Command::new("node")
        .arg(e2e.join("measures.mjs"))
        .env("BASE_URL", &s.url)
        .env("CLINICIAN", "clin1")
        .env("PATIENT_USER", "bea")
        .env("PATIENT_ID", &p)
        .env("PASSWORD", crate::common::PASSWORD)
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    s.stop();
    assert!(out.status.success() && said.contains("all expectations met"), "{said}");
    for name in ["measure-form", "measures-chart"] {
        for shot in ["en-desktop", "en-narrow", "fi-desktop", "fi-narrow"] {
            assert!(shots.join(format!("{name}-{shot}.png")).exists(), "{name}-{shot}");
        }
    }
}
