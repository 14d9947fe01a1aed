//! Notes a clinician trusts, over HTTP (web pages and FHIR API) on SQLite and
//! PostgreSQL: the session date (default today, not in the future) and the
//! chart by session date; the kind chosen with radio buttons (ordinary,
//! psychotherapy, shared with the patient) and its badge, the portal showing
//! only shared notes; sign and lock (edit refused on the page and by PUT);
//! addenda with a reason under the original; the note page naming patient,
//! author and session with its versions. Wrong role, wrong patient, no
//! session, no CSRF token, hostile input; every new shape through the
//! independent FHIR validator.

use base64::Engine as _;
use reqwest::StatusCode as S;
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, create_token, note, patient};
use crate::ui::Browser;

fn text_of(doc: &Value) -> String {
    let data = doc["content"][0]["attachment"]["data"].as_str().unwrap_or("");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap()
}

/// The patient's notes as the FHIR API gives them to `token`.
async fn notes_of(s: &Server, token: &str, patient: &str) -> Vec<Value> {
    let r =
        s.http.get(s.fhir(&format!("DocumentReference?patient={patient}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), S::OK);
    let b: Value = r.json().await.unwrap();
    b["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()).collect()
}

fn find<'a>(notes: &'a [Value], text: &str) -> &'a Value {
    notes.iter().find(|n| text_of(n).contains(text)).unwrap_or_else(|| panic!("no note with {text:?}"))
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&")
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn post_as(s: &Server, token: &str, body: &Value) -> reqwest::Response {
    s.http
        .post(s.fhir("DocumentReference"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap()
}

fn addendum_of(patient: &str, target: &str, text: &str, reason: Option<&str>) -> Value {
    let mut a = note(patient, text);
    a["relatesTo"] = json!([{"code": "appends", "target": {"reference": format!("DocumentReference/{target}")}}]);
    if let Some(r) = reason {
        a["description"] = json!(r);
    }
    a
}

/// The page's text between two markers (for ordering checks).
fn position(page: &str, needle: &str) -> usize {
    page.find(needle).unwrap_or_else(|| panic!("{needle:?} not on the page"))
}

async fn notes_flow(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");
    let s = inst.start();
    let p1 = s.create(&patient("Notefamily", "Nelli")).await["id"].as_str().unwrap().to_owned();
    let p3 = s.create(&patient("Otherfamily", "Olga")).await["id"].as_str().unwrap().to_owned();
    let p2 = s.create_as(&clin2, &patient("Elsewhere", "Eero")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "nelli", "patient", &["--patient", &p1]);
    let nelli = create_token(&inst.dir, "nelli", "user/*.read");
    let clin1 = Browser::sign_in(&s, "clin1").await;

    // The form: the session date (today by default, no later), the kind as three radio buttons.
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    let today = chart.split("max=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_eq!(today.len(), 10, "{today}");
    assert!(chart.contains(&format!("type=\"date\" value=\"{today}\" max=\"{today}\"")), "{chart}");
    for kind in ["ordinary", "psychotherapy", "shared"] {
        assert!(chart.contains(&format!("type=\"radio\" name=\"kind\" value=\"{kind}\"")), "{kind}");
    }
    assert!(chart.contains("value=\"ordinary\" checked"), "ordinary is the default");

    // Bad input: the error next to the field, what was typed kept, nothing saved.
    let notes_path = format!("/patients/{p1}/notes");
    for (fields, field, says, kept) in [
        (
            vec![("text", "  \n\t "), ("session_date", "2020-01-05"), ("kind", "shared")],
            "text",
            "it is empty",
            "2020-01-05",
        ),
        (
            vec![("text", "kept text"), ("session_date", "2999-01-01")],
            "session_date",
            "cannot be in the future",
            "kept text",
        ),
        (vec![("text", "kept text"), ("session_date", "2020-02-30")], "session_date", "YYYY-MM-DD", "kept text"),
        (
            vec![("text", "kept text"), ("session_date", "<b>x</b>")],
            "session_date",
            "YYYY-MM-DD",
            "&lt;b&gt;x&lt;/b&gt;",
        ),
        (vec![("text", "kept text"), ("kind", "secret")], "kind", "Choose the kind", "kept text"),
    ] {
        let r = clin1.post(&notes_path, &form(&fields)).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{fields:?}");
        let page = r.text().await.unwrap();
        assert!(page.contains(&format!("<p class=\"field-error\" id=\"{field}-error\">")), "{fields:?}: {page}");
        assert!(page.contains(says) && page.contains(kept), "{fields:?}: {page}");
        assert!(page.contains(&format!("aria-describedby=\"{field}-error\"")), "{page}");
        assert!(!page.contains("<b>x</b>"));
    }
    assert!(notes_of(&s, &s.token, &p1).await.is_empty(), "nothing saved");
    // Three notes, saved in an order that is not their sessions' order; markup in one.
    for (text, date, kind) in [
        ("<script>alert(1)</script> middle session", "2020-01-20", "ordinary"),
        ("latest session, process notes", "2020-01-25", "psychotherapy"),
        ("earliest session, shared", "2020-01-10", "shared"),
    ] {
        let r = clin1.post(&notes_path, &form(&[("text", text), ("session_date", date), ("kind", kind)])).await;
        assert_eq!(r.status(), S::SEE_OTHER, "{text}");
    }
    // Left out, the session date is today.
    let r = clin1.post(&notes_path, "text=today%27s+session&status=draft").await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let stored = notes_of(&s, &s.token, &p1).await;
    assert_eq!(stored.len(), 4);
    let ordinary = find(&stored, "middle session").clone();
    let psy = find(&stored, "process notes").clone();
    let shared = find(&stored, "earliest session").clone();
    assert_eq!(ordinary["context"]["period"], json!({"start": "2020-01-20", "end": "2020-01-20"}));
    assert_eq!(find(&stored, "today's session")["context"]["period"]["start"], json!(today));
    assert!(psy["meta"]["security"].as_array().unwrap().iter().any(|c| c["code"] == "PSYTHPN"));
    assert!(shared["meta"]["tag"].as_array().unwrap().iter().any(|c| c["code"] == "shared-with-patient"));
    assert!(ordinary["meta"].get("tag").is_none());
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    let (today_at, latest, middle, earliest) = (
        position(&chart, ">today's session<"),
        position(&chart, "latest session"),
        position(&chart, "middle session"),
        position(&chart, "earliest session"),
    );
    assert!(today_at < latest && latest < middle && middle < earliest, "by session date, newest first");
    assert!(chart.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !chart.contains("<script>alert"));
    assert!(chart.contains("<span class=\"badge kind\">Psychotherapy note</span>"), "{chart}");
    assert!(chart.contains("<span class=\"badge kind\">Shared with the patient</span>"));

    // The portal: the patient reads the shared note and no other.
    let theirs = notes_of(&s, &nelli, &p1).await;
    assert_eq!(theirs.iter().map(text_of).collect::<Vec<_>>(), ["earliest session, shared"]);

    // The note page: patient, author, session, its versions.
    let oid = ordinary["id"].as_str().unwrap().to_owned();
    let page = clin1.get(&format!("/notes/{oid}")).await.text().await.unwrap();
    for want in ["Notefamily", "Test Clinician", "2020-01-20", &format!("/notes/{oid}/history"), "Sign and lock"] {
        assert!(page.contains(want), "{want}: {page}");
    }
    assert!(page.contains("&lt;script&gt;") && !page.contains("<script>alert"));
    let r = clin1
        .post(
            &format!("/notes/{oid}"),
            &form(&[("text", "second version"), ("session_date", "2020-01-20"), ("version", "1")]),
        )
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let history = clin1.get(&format!("/notes/{oid}/history")).await.text().await.unwrap();
    assert!(
        history.contains("Versions (2)") && history.contains("second version") && history.contains("&lt;script&gt;")
    );

    // Signing: not without the CSRF token, not for someone else, not by the wrong role.
    let sign = format!("/notes/{oid}/sign");
    assert_eq!(clin1.post_raw(&sign, "version=2").await.status(), S::FORBIDDEN, "no CSRF token");
    assert_eq!(Browser::anonymous(&s).await.post_raw(&sign, "version=2").await.status(), S::SEE_OTHER);
    let clin2b = Browser::sign_in(&s, "clin2").await;
    let desk = Browser::sign_in(&s, "desk").await;
    let audi = Browser::sign_in(&s, "audi").await;
    let nellib = Browser::sign_in(&s, "nelli").await;
    assert_eq!(clin2b.post(&sign, "version=2").await.status(), S::NOT_FOUND, "not in their care");
    for b in [&desk, &audi, &nellib] {
        assert_eq!(b.post(&sign, "version=2").await.status(), S::FORBIDDEN);
    }
    assert!(s.get_json(&format!("DocumentReference/{oid}")).await.1.get("authenticator").is_none());
    let r = clin1.post(&sign, "version=2").await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let (_, signed) = s.get_json(&format!("DocumentReference/{oid}")).await;
    assert_eq!(signed["docStatus"], "final");
    let me = signed["author"][0]["reference"].clone();
    assert_eq!(signed["authenticator"]["reference"], me);
    let at = signed["extension"].as_array().unwrap().iter().find(|e| e["url"] == "urn:confidant:signed-at").unwrap();
    assert!(at["valueInstant"].as_str().unwrap().starts_with(&today));
    let page = clin1.get(&format!("/notes/{oid}")).await.text().await.unwrap();
    assert!(page.contains("Add an addendum") && !page.contains("Sign and lock") && !page.contains("/edit\""));

    // Locked: the edit page, the form post and the API's PUT are all refused; nothing changes.
    assert_eq!(clin1.get(&format!("/notes/{oid}/edit")).await.status(), S::CONFLICT);
    let r = clin1.post(&format!("/notes/{oid}"), "text=rewritten&version=3").await;
    assert_eq!(r.status(), S::CONFLICT);
    let mut changed = signed.clone();
    changed["content"][0]["attachment"]["data"] = json!(base64::engine::general_purpose::STANDARD.encode("rewritten"));
    let mut unsigned = signed.clone();
    unsigned.as_object_mut().unwrap().remove("authenticator");
    let mut outcomes = Vec::new();
    for body in [&changed, &unsigned, &signed] {
        let r = s.put(&format!("DocumentReference/{oid}"), body, None).await;
        assert_eq!(r.status(), S::FORBIDDEN);
        let oo: Value = r.json().await.unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert!(oo.to_string().contains("signed and locked"), "{oo}");
        outcomes.push(oo);
    }
    let (_, now) = s.get_json(&format!("DocumentReference/{oid}")).await;
    assert_eq!((now["meta"]["versionId"].clone(), text_of(&now)), (json!("3"), "second version".to_owned()));

    // An addendum: the reason and the text are required (errors next to the fields, typed kept).
    let addenda = format!("/notes/{oid}/addenda");
    let r = clin1.post(&addenda, "reason=+&text=kept+addendum").await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"reason-error\"") && page.contains("kept addendum"), "{page}");
    assert_eq!(clin1.post_raw(&addenda, "reason=r&text=t").await.status(), S::FORBIDDEN, "no CSRF token");
    assert_eq!(Browser::anonymous(&s).await.post_raw(&addenda, "reason=r&text=t").await.status(), S::SEE_OTHER);
    assert_eq!(clin2b.post(&addenda, "reason=r&text=t").await.status(), S::NOT_FOUND);
    for b in [&desk, &audi, &nellib] {
        assert_eq!(b.post(&addenda, "reason=r&text=t").await.status(), S::FORBIDDEN);
    }
    assert_eq!(notes_of(&s, &s.token, &p1).await.len(), 4, "nothing saved");
    let r =
        clin1.post(&addenda, &form(&[("reason", "Wrong dose written"), ("text", "Correction: <i>20 mg</i>")])).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let all = notes_of(&s, &s.token, &p1).await;
    let addendum = find(&all, "Correction").clone();
    assert_eq!(addendum["relatesTo"][0]["target"]["reference"], json!(format!("DocumentReference/{oid}")));
    assert_eq!(addendum["description"], "Wrong dose written");
    assert_eq!(addendum["authenticator"]["reference"], me);
    assert_eq!(addendum["context"], signed["context"]);
    let page = clin1.get(&format!("/notes/{oid}")).await.text().await.unwrap();
    assert!(page.contains("second version") && page.contains("Wrong dose written"), "original kept, addendum under it");
    assert!(
        page.contains("Correction: &lt;i&gt;20 mg&lt;/i&gt;")
            && position(&page, "second version") < position(&page, "Correction")
    );
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    assert_eq!(chart.matches("Correction: &lt;i&gt;").count(), 1, "under its note, not a note of its own");
    assert!(position(&chart, "second version") < position(&chart, "Correction"));

    // The wrong role, the wrong clinician, no session: the note's pages are not theirs.
    for path in [format!("/notes/{oid}"), format!("/notes/{oid}/history"), format!("/notes/{oid}/edit")] {
        for b in [&clin2b, &desk, &audi, &nellib] {
            let r = b.get(&path).await;
            assert!(matches!(r.status(), S::FORBIDDEN | S::NOT_FOUND), "{path}: {}", r.status());
            let text = r.text().await.unwrap();
            assert!(!text.contains("second version") && !text.contains("Notefamily"), "{path}");
        }
        let r = Browser::anonymous(&s).await.get(&path).await;
        assert_eq!(r.headers().get("location").map(|l| l.to_str().unwrap()), Some("/login"), "{path}");
    }

    // The FHIR API: signing by PUT, in one's own name only.
    let api = s.create(&note(&p1, "written through the API")).await;
    let aid = api["id"].as_str().unwrap().to_owned();
    let mut forged = api.clone();
    forged["authenticator"] = json!({"reference": "Practitioner/someone-else"});
    assert_eq!(s.put(&format!("DocumentReference/{aid}"), &forged, None).await.status(), S::FORBIDDEN);
    let mut sign_it = api.clone();
    sign_it["authenticator"] = me_ref(&me);
    sign_it["extension"] = json!([{"url": "urn:confidant:signed-at", "valueInstant": "1999-01-01T00:00:00Z"}]);
    let r = s.put(&format!("DocumentReference/{aid}"), &sign_it, None).await;
    assert_eq!(r.status(), S::OK);
    let api_signed: Value = r.json().await.unwrap();
    assert_eq!(api_signed["docStatus"], "final");
    let at = &api_signed["extension"][0]["valueInstant"];
    assert!(at.as_str().unwrap().starts_with(&today), "the server's signed-at, not the client's: {at}");
    // An empty note, by the API too.
    let r = s.post("DocumentReference", &note(&p1, " \n ")).await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("empty"));

    // Forged addenda: another patient's note (out of care, or in care), an unsigned note,
    // no reason, another relation, a psychotherapy note's addendum without its label.
    let theirs = s.create_as(&clin2, &note(&p2, "clin2's own note")).await;
    let tid = theirs["id"].as_str().unwrap().to_owned();
    let other = s.create(&note(&p3, "another patient of mine")).await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    let mut other_signed = other.clone();
    other_signed["authenticator"] = me_ref(&me);
    assert_eq!(s.put(&format!("DocumentReference/{other_id}"), &other_signed, None).await.status(), S::OK);
    let mut psy_signed = psy.clone();
    psy_signed["authenticator"] = me_ref(&me);
    let psy_id = psy["id"].as_str().unwrap();
    assert_eq!(s.put(&format!("DocumentReference/{psy_id}"), &psy_signed, None).await.status(), S::OK);
    let sid = shared["id"].as_str().unwrap();
    let mut relation = addendum_of(&p1, &oid, "x", Some("r"));
    relation["relatesTo"][0]["code"] = json!("replaces");
    for (who, body, status, says) in [
        (&s.token, addendum_of(&p1, &tid, "forged", Some("r")), S::UNPROCESSABLE_ENTITY, "not in your care"),
        (&clin2, addendum_of(&p2, &oid, "forged", Some("r")), S::UNPROCESSABLE_ENTITY, "not in your care"),
        (&s.token, addendum_of(&p1, &other_id, "forged", Some("r")), S::FORBIDDEN, "same patient"),
        (&s.token, addendum_of(&p1, sid, "x", Some("r")), S::FORBIDDEN, "only a signed note"),
        (&s.token, addendum_of(&p1, &oid, "x", None), S::FORBIDDEN, "reason"),
        (&s.token, addendum_of(&p1, &oid, "x", Some("  ")), S::FORBIDDEN, "reason"),
        (&s.token, relation, S::UNPROCESSABLE_ENTITY, "only 'appends'"),
        (&s.token, addendum_of(&p1, psy_id, "x", Some("r")), S::FORBIDDEN, "psychotherapy"),
    ] {
        let r = post_as(&s, who, &body).await;
        let st = r.status();
        let oo = r.text().await.unwrap();
        assert_eq!(st, status, "{body}: {oo}");
        assert!(oo.contains(says) && oo.contains("OperationOutcome"), "{oo}");
        assert!(!oo.contains("clin2's own note"));
    }
    assert_eq!(notes_of(&s, &clin2, &p2).await.len(), 1, "nothing added to the other patient");
    // An addendum keeps its original: relatesTo cannot be moved by an update.
    let api_add = s.create(&addendum_of(&p1, &oid, "API addendum", Some("a reason"))).await;
    let mut moved = api_add.clone();
    moved["relatesTo"][0]["target"]["reference"] = json!(format!("DocumentReference/{other_id}"));
    let r = s.put(&format!("DocumentReference/{}", api_add["id"].as_str().unwrap()), &moved, None).await;
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    // A session date in the future, by the API.
    let mut future = note(&p1, "from the future");
    future["context"] = json!({"period": {"start": "2999-01-01"}});
    assert_eq!(s.post("DocumentReference", &future).await.status(), S::BAD_REQUEST);

    // A huge note is refused whole (the body limit), and nothing is saved.
    let before = notes_of(&s, &s.token, &p1).await.len();
    let huge = "x".repeat(2 * 1024 * 1024);
    let r = clin1.post(&notes_path, &format!("text={huge}")).await;
    assert_eq!(r.status(), S::PAYLOAD_TOO_LARGE);
    assert_eq!(notes_of(&s, &s.token, &p1).await.len(), before);

    // Every new shape is valid FHIR R4.
    let (_, hist) = s.get_json(&format!("DocumentReference/{oid}/_history")).await;
    let (_, bundle) = s.get_json(&format!("DocumentReference?patient={p1}")).await;
    let mut docs = vec![signed, addendum, api_signed, api_add, psy_signed, shared.clone(), hist, bundle];
    docs.extend(outcomes);
    validate(&docs);
    s.stop();
}
both_backends!(notes_flow);

fn me_ref(me: &Value) -> Value {
    json!({"reference": me})
}

/// Through the independent validators (fhir.resources and Medplum), if they are installed.
pub(crate) fn validate(docs: &[Value]) {
    crate::common::validate_fhir("notes", docs);
}

/// A colleague on the patient's care team reads and may correct an unsigned
/// note, but sharing it with the patient, signing it and changing it once
/// signed are not theirs; an addendum to it is. A note written on the day of
/// an Encounter refers to it.
async fn a_colleague_on_the_care_team(db: Db) {
    use reqwest::Method;

    use crate::access::call;
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Colleague Clinician"]);
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");
    let s = inst.start();
    let pa = s.create(&patient("Teamfamily", "Tiina")).await["id"].as_str().unwrap().to_owned();
    let pr2 = call(&s, Some(&clin2), Method::GET, "/api/v1/me", None).await.1["practitioner_id"].clone();
    let team = json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": format!("Patient/{pa}")},
                      "participant": [{"member": {"reference": format!("Practitioner/{}", pr2.as_str().unwrap())}}]});
    assert_eq!(call(&s, Some(&s.admin_token), Method::POST, "CareTeam", Some(&team)).await.0, S::CREATED);
    let mut enc = crate::common::encounter(&pa);
    enc["period"] = json!({"start": "2020-03-02T10:00:00Z", "end": "2020-03-02T10:50:00Z"});
    let enc = s.create(&enc).await;

    let clin1 = Browser::sign_in(&s, "clin1").await;
    let r = clin1
        .post(&format!("/patients/{pa}/notes"), "text=session+on+the+encounter%27s+day&session_date=2020-03-02")
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let n = notes_of(&s, &s.token, &pa).await.remove(0);
    assert_eq!(n["context"]["encounter"], json!([{"reference": format!("Encounter/{}", enc["id"].as_str().unwrap())}]));
    let path = format!("DocumentReference/{}", n["id"].as_str().unwrap());

    // Sharing with the patient decides who reads it: the author's, not the colleague's.
    let mut share = n.clone();
    share["meta"]["tag"] = json!([{"system": "urn:confidant:sharing", "code": "shared-with-patient"}]);
    let (st, b) = call(&s, Some(&clin2), Method::PUT, &path, Some(&share)).await;
    assert_eq!(st, S::FORBIDDEN, "{b}");
    // Signing in the author's name, or their own, is not the colleague's either.
    for signer in [n["author"][0]["reference"].clone(), json!(format!("Practitioner/{}", pr2.as_str().unwrap()))] {
        let mut sign = n.clone();
        sign["authenticator"] = json!({"reference": signer});
        let (st, b) = call(&s, Some(&clin2), Method::PUT, &path, Some(&sign)).await;
        assert_eq!(st, S::FORBIDDEN, "{b}");
        assert!(b.to_string().contains("only its author may sign"), "{b}");
    }
    // The colleague may correct the unsigned content.
    let mut edit = n.clone();
    edit["description"] = json!("corrected by a colleague");
    assert_eq!(call(&s, Some(&clin2), Method::PUT, &path, Some(&edit)).await.0, S::OK);
    // The author signs it on the page; then it is locked for the colleague too,
    // who corrects it with an addendum instead.
    let r = clin1.post(&format!("/notes/{}/sign", n["id"].as_str().unwrap()), "").await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let (_, signed) = call(&s, Some(&clin2), Method::GET, &path, None).await;
    let mut late = signed.clone();
    late["description"] = json!("too late");
    let (st, b) = call(&s, Some(&clin2), Method::PUT, &path, Some(&late)).await;
    assert_eq!(st, S::FORBIDDEN, "{b}");
    let colleague = Browser::sign_in(&s, "clin2").await;
    let r = colleague
        .post(&format!("/notes/{}/addenda", n["id"].as_str().unwrap()), "reason=Date+of+onset&text=Onset+was+in+May.")
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let all = notes_of(&s, &s.token, &pa).await;
    let addendum = find(&all, "Onset was in May");
    assert_eq!(addendum["author"][0]["reference"], json!(format!("Practitioner/{}", pr2.as_str().unwrap())));
    assert_eq!(addendum["context"]["encounter"], n["context"]["encounter"]);
    let page = clin1.get(&format!("/notes/{}", n["id"].as_str().unwrap())).await.text().await.unwrap();
    assert!(page.contains("Onset was in May") && page.contains("Date of onset") && page.contains("recorded visit"));
    validate(&[signed, addendum.clone()]);
    s.stop();
}
both_backends!(a_colleague_on_the_care_team);
