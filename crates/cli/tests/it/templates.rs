//! Note templates, sectioned notes and co-signing, over HTTP on SQLite and
//! PostgreSQL: a SOAP note written with its sections, sealed (its section
//! text nowhere in the database's bytes), read back with its sections,
//! edited, signed, then locked, with an addendum shown; a clinic template
//! created by the admin (audited), changed to version 2 while a note written
//! with version 1 keeps version 1's sections; hostile template input
//! refused or escaped; a trainee's signed note awaiting its supervisor's
//! co-signature, refused to anyone else, co-signed by the supervisor and
//! showing both names. Wrong role, wrong patient, no session, no CSRF token
//! for every new route; the new shapes through the independent validator.

use base64::Engine as _;
use reqwest::StatusCode as S;
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, create_token, files_under, note, patient};
use crate::notes::{form, validate};
use crate::ui::Browser;
use crate::vastaamo::{canary, hits};

fn option_value(html: &str, name: &str) -> String {
    let before = html.split(&format!(">{name}</option>")).next().unwrap();
    before.rsplit("<option value=\"").next().unwrap().split('"').next().unwrap().to_owned()
}

/// The patient's notes as the FHIR API gives them to `token`.
async fn notes_of(s: &Server, token: &str, patient: &str) -> Vec<Value> {
    let r =
        s.http.get(s.fhir(&format!("DocumentReference?patient={patient}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), S::OK);
    let b: Value = r.json().await.unwrap();
    b["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()).collect()
}

/// (title, text) of each attachment.
fn sections(doc: &Value) -> Vec<(String, String)> {
    doc["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let a = &c["attachment"];
            let text = base64::engine::general_purpose::STANDARD.decode(a["data"].as_str().unwrap()).unwrap();
            (a["title"].as_str().unwrap_or("").to_owned(), String::from_utf8(text).unwrap())
        })
        .collect()
}

fn extension<'a>(doc: &'a Value, url: &str) -> Option<&'a Value> {
    doc["extension"].as_array()?.iter().find(|e| e["url"] == url)
}

/// Every byte the database holds: the files under DIR (SQLite), or pg_dump.
async fn database_bytes(inst: &Instance) -> Vec<(String, Vec<u8>)> {
    match &inst.pg {
        Some((url, _, _)) => {
            let dump = std::process::Command::new("pg_dump").arg(url).output().unwrap();
            assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
            assert!(dump.stdout.len() > 1000, "pg_dump wrote the database");
            vec![("pg_dump".to_owned(), dump.stdout)]
        }
        None => files_under(&inst.dir)
            .into_iter()
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default()))
            .collect(),
    }
}

/// The audit log's entries (ids only, JSON) as text.
async fn audit_entries(inst: &Instance) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut db = inst.db().await;
    let rows = sqlx::query("SELECT entry FROM audit_log ORDER BY seq").fetch_all(&mut db).await.unwrap();
    db.close().await.unwrap();
    rows.iter().map(|r| String::from_utf8(r.get::<Vec<u8>, _>(0)).unwrap()).collect()
}

async fn soap_note_signed_locked_with_addendum(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Other Clinician"]);
    add_user(&inst.dir, "desk", "reception", &[]);
    let clin2_token = create_token(&inst.dir, "clin2", "user/*.*");
    let s = inst.start();
    let p1 = s.create(&patient("Soapfamily", "Sanna")).await["id"].as_str().unwrap().to_owned();
    let p2 = s.create_as(&clin2_token, &patient("Elsewhere", "Eino")).await["id"].as_str().unwrap().to_owned();
    let clin1 = Browser::sign_in(&s, "clin1").await;

    // The picker works without script: GET ?template=soap shows the sections, with prompts.
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    assert!(chart.contains("<select id=\"template\" name=\"template\">"), "{chart}");
    for t in ["SOAP", "DAP", "BIRP", "Intake assessment", "Risk assessment"] {
        assert!(chart.contains(&format!(">{t}</option>")), "{t}");
    }
    let r = clin1.get(&format!("/patients/{p1}?template=soap")).await;
    assert_eq!(r.status(), S::OK);
    let page = r.text().await.unwrap();
    for (key, title) in
        [("subjective", "Subjective"), ("objective", "Objective"), ("assessment", "Assessment"), ("plan", "Plan")]
    {
        assert!(page.contains(&format!("<label for=\"section-{key}\">{title}</label>")), "{key}: {page}");
        assert!(page.contains(&format!("name=\"section.{key}\"")), "{key}");
        assert!(page.contains(&format!("id=\"prompt-{key}\"")), "{key}");
    }
    assert!(page.contains("value=\"soap\" selected"), "the chosen template is kept in the picker");
    let fi = clin1.in_language("fi").get(&format!("/patients/{p1}?template=risk")).await.text().await.unwrap();
    assert!(fi.contains(">Turvasuunnitelma</label>") && fi.contains(">Riskitaso</label>"), "{fi}");
    assert_eq!(clin1.get(&format!("/patients/{p1}?template=nosuch")).await.status(), S::BAD_REQUEST);

    // An entirely empty note is refused, the form kept; nothing is saved.
    let notes_path = format!("/patients/{p1}/notes");
    let empty = form(&[
        ("template", "soap"),
        ("template_version", "1"),
        ("section.subjective", "  \n "),
        ("section.plan", ""),
        ("kind", "ordinary"),
        ("status", "final"),
    ]);
    let r = clin1.post(&notes_path, &empty).await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("Write at least one section") && page.contains("name=\"section.subjective\""), "{page}");
    assert!(notes_of(&s, &s.token, &p1).await.is_empty());

    // The SOAP note: empty sections allowed (left out), each section a titled attachment.
    let (subjective, plan) = (canary(), canary());
    let body = form(&[
        ("template", "soap"),
        ("template_version", "1"),
        ("section.subjective", &format!("Reports better sleep. {subjective}")),
        ("section.objective", ""),
        ("section.assessment", "Improving <script>alert(1)</script>"),
        ("section.plan", &format!("Continue. {plan}")),
        ("kind", "ordinary"),
        ("status", "final"),
    ]);
    assert_eq!(clin1.post(&notes_path, &body).await.status(), S::SEE_OTHER);
    let notes = notes_of(&s, &s.token, &p1).await;
    assert_eq!(notes.len(), 1);
    let n = &notes[0];
    let id = n["id"].as_str().unwrap().to_owned();
    let got = sections(n);
    assert_eq!(got.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["Subjective", "Assessment", "Plan"]);
    assert!(got[0].1.ends_with(&subjective) && got[2].1.ends_with(&plan));
    assert_eq!(n["content"][0]["attachment"]["id"], "subjective");
    assert_eq!(extension(n, "urn:confidant:template").unwrap()["valueString"], "soap|1");

    // Sealed: no section text in the database's bytes.
    let stored = inst.stored_body(&id).await;
    assert!(hits(&[("body".into(), stored)], &[subjective.clone(), plan.clone()]).is_empty());
    let bytes = database_bytes(&inst).await;
    assert_eq!(hits(&bytes, &[subjective.clone(), plan.clone()]), Vec::<String>::new(), "a section in the clear");

    // The note page: patient, author, session, template, sections under headings, escaped.
    let page = clin1.get(&format!("/notes/{id}")).await.text().await.unwrap();
    for want in [
        "Sanna Soapfamily",
        "Test Clinician",
        "Session date",
        "SOAP · Version 1",
        "<h3>Subjective</h3>",
        "<h3>Assessment</h3>",
        "<h3>Plan</h3>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        &subjective,
    ] {
        assert!(page.contains(want), "{want}: {page}");
    }
    assert!(!page.contains("<h3>Objective</h3>") && !page.contains("<script>alert"), "{page}");
    let fi = clin1.in_language("fi").get(&format!("/notes/{id}")).await.text().await.unwrap();
    assert!(fi.contains("<h3>Subjektiivinen</h3>") && fi.contains("<h3>Suunnitelma</h3>"), "{fi}");

    // Edit keeps the sections (and the template).
    let edit = clin1.get(&format!("/notes/{id}/edit")).await.text().await.unwrap();
    assert!(edit.contains("name=\"section.subjective\"") && edit.contains(&subjective), "{edit}");
    assert!(edit.contains("name=\"section.objective\""), "the empty section is offered again");
    let changed = form(&[
        ("version", "1"),
        ("section.subjective", &format!("Reports better sleep. {subjective}")),
        ("section.objective", "Calm, good eye contact."),
        ("section.assessment", "Improving"),
        ("section.plan", &format!("Continue. {plan}")),
        ("kind", "ordinary"),
        ("status", "final"),
    ]);
    assert_eq!(clin1.post(&format!("/notes/{id}"), &changed).await.status(), S::SEE_OTHER);
    let n = notes_of(&s, &s.token, &p1).await.remove(0);
    assert_eq!(sections(&n).len(), 4);
    assert_eq!(sections(&n)[1], ("Objective".to_owned(), "Calm, good eye contact.".to_owned()));
    assert_eq!(extension(&n, "urn:confidant:template").unwrap()["valueString"], "soap|1");
    let history = clin1.get(&format!("/notes/{id}/history")).await.text().await.unwrap();
    assert!(history.contains("<h3>Objective</h3>") && history.contains("<strong>Version 1</strong>"), "{history}");

    // Sign; then editing is refused (page, form post, PUT) and an addendum is shown.
    assert_eq!(clin1.post(&format!("/notes/{id}/sign"), "version=2").await.status(), S::SEE_OTHER);
    assert_eq!(clin1.get(&format!("/notes/{id}/edit")).await.status(), S::CONFLICT);
    assert_eq!(
        clin1.post(&format!("/notes/{id}"), &changed.replace("version=1", "version=3")).await.status(),
        S::CONFLICT
    );
    let signed = notes_of(&s, &s.token, &p1).await.remove(0);
    let mut put = signed.clone();
    put["content"][0]["attachment"]["data"] = json!(base64::engine::general_purpose::STANDARD.encode("rewritten"));
    assert_eq!(s.put(&format!("DocumentReference/{id}"), &put, None).await.status(), S::FORBIDDEN);
    let addendum = canary();
    let r =
        clin1.post(&format!("/notes/{id}/addenda"), &form(&[("reason", "Plan clarified"), ("text", &addendum)])).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let page = clin1.get(&format!("/notes/{id}")).await.text().await.unwrap();
    assert!(page.contains("Addendum") && page.contains(&addendum) && page.contains("Plan clarified"), "{page}");
    assert!(
        page.contains("<h3>Subjective</h3>") && !page.contains(&format!("/notes/{id}/cosign")),
        "no co-sign for a non-trainee"
    );
    let chart = clin1.get(&format!("/patients/{p1}")).await.text().await.unwrap();
    assert!(chart.contains("<h3>Subjective</h3>") && chart.contains(&addendum), "{chart}");
    assert!(hits(&database_bytes(&inst).await, std::slice::from_ref(&addendum)).is_empty());

    // Wrong role, wrong patient, no session, no CSRF token: nothing saved.
    let desk = Browser::sign_in(&s, "desk").await;
    assert_eq!(desk.post(&notes_path, &body).await.status(), S::FORBIDDEN);
    let clin2 = Browser::sign_in(&s, "clin2").await;
    // Not in their care: refused as for a plain note (the subject is not one of theirs).
    assert_eq!(clin2.post(&notes_path, &body).await.status(), S::BAD_REQUEST);
    assert_eq!(clin1.post_raw(&notes_path, &body).await.status(), S::FORBIDDEN, "no CSRF token");
    assert_eq!(Browser::anonymous(&s).await.post_raw(&notes_path, &body).await.status(), S::SEE_OTHER);
    assert_eq!(clin1.get(&format!("/patients/{p2}?template=soap")).await.status(), S::NOT_FOUND);
    assert_eq!(notes_of(&s, &s.token, &p1).await.len(), 2, "the note and its addendum only");

    // Independent validation of a sectioned, signed note.
    validate(&[signed]);
}
both_backends!(soap_note_signed_locked_with_addendum);

async fn clinic_templates_are_versioned(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    let s = inst.start();
    let p1 = s.create(&patient("Tplfamily", "Tuula")).await["id"].as_str().unwrap().to_owned();
    let admin = Browser::sign_in(&s, "admin1").await;
    let clin1 = Browser::sign_in(&s, "clin1").await;
    let page = admin.get("/admin/templates").await.text().await.unwrap();
    assert!(page.contains("SOAP") && page.contains("Risk assessment") && page.contains("Built in"), "{page}");

    // Only an admin: other roles and no session are refused, nothing is created.
    let create =
        form(&[("name", "Couples session"), ("sections", "Partner A | What A said\nPartner B | What B said\nPlan")]);
    let (desk, audi) = (Browser::sign_in(&s, "desk").await, Browser::sign_in(&s, "audi").await);
    for (who, b) in [("clin1", &clin1), ("desk", &desk), ("audi", &audi)] {
        assert_eq!(b.get("/admin/templates").await.status(), S::FORBIDDEN, "{who}");
        assert_eq!(b.post("/admin/templates", &create).await.status(), S::FORBIDDEN, "{who}");
        assert_eq!(b.get("/admin/supervision").await.status(), S::FORBIDDEN, "{who}");
    }
    let anonymous = Browser::anonymous(&s).await;
    assert_eq!(anonymous.get("/admin/templates").await.headers()["location"], "/login");
    assert_eq!(anonymous.post_raw("/admin/templates", &create).await.status(), S::SEE_OTHER);
    assert_eq!(admin.post_raw("/admin/templates", &create).await.status(), S::FORBIDDEN, "no CSRF token");
    // Nothing was created by any of them.
    assert!(!admin.get("/admin/templates").await.text().await.unwrap().contains("Couples session"));

    // Hostile input: refused whole, with a clear message, nothing stored.
    let many: Vec<String> = (0..200).map(|i| format!("Section {i} | prompt")).collect();
    for (fields, says) in [
        (vec![("name", "   "), ("sections", "A")], "give the template a name"),
        (vec![("name", "No sections"), ("sections", "\n \n")], "at least one section"),
        (vec![("name", "Too many"), ("sections", many.join("\n").as_str())], "at most 30"),
        (vec![("name", &"x".repeat(100_000)), ("sections", "A")], "at most 100 characters"),
        (vec![("name", "Long prompt"), ("sections", &format!("A | {}", "p".repeat(600)))], "at most 500"),
        (vec![("name", "No title"), ("sections", " | a prompt without a title")], "give it a title"),
    ] {
        let r = admin.post("/admin/templates", &form(&fields)).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{says}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{says}: {}", &text[..text.len().min(3000)]);
    }
    let hostile = "<script>alert('t')</script>";
    let r = admin
        .post("/admin/templates", &form(&[("name", hostile), ("sections", &format!("{hostile} | {hostile}"))]))
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let page = admin.get("/admin/templates").await.text().await.unwrap();
    assert!(page.contains("&lt;script&gt;") && !page.contains("<script>alert"), "escaped: {page}");

    // A clinic template: created, used for a note (version 1), changed (version 2).
    assert_eq!(admin.post("/admin/templates", &create).await.status(), S::SEE_OTHER);
    let page = admin.get("/admin/templates").await.text().await.unwrap();
    let tid = page.split("Couples session</strong>").nth(1).unwrap().split("href=\"/admin/templates/").nth(1).unwrap();
    let tid = tid.split('"').next().unwrap().to_owned();
    let chart = clin1.get(&format!("/patients/{p1}?template={tid}")).await.text().await.unwrap();
    assert!(chart.contains(">Partner A</label>") && chart.contains("What B said"), "{chart}");
    let v1_note = form(&[
        ("template", &tid),
        ("template_version", "1"),
        ("section.s1", "A felt heard."),
        ("section.s2", "B wants more time."),
        ("kind", "ordinary"),
        ("status", "draft"),
    ]);
    assert_eq!(clin1.post(&format!("/patients/{p1}/notes"), &v1_note).await.status(), S::SEE_OTHER);
    let note_id = notes_of(&s, &s.token, &p1).await[0]["id"].as_str().unwrap().to_owned();

    let edit = admin.get(&format!("/admin/templates/{tid}")).await.text().await.unwrap();
    assert!(edit.contains("Partner A | What A said") && edit.contains("name=\"version\" value=\"1\""), "{edit}");
    let v2 = form(&[
        ("version", "1"),
        ("name", "Couples session"),
        ("sections", "Together | What they said together\nPlan"),
    ]);
    assert_eq!(admin.post(&format!("/admin/templates/{tid}"), &v2).await.status(), S::SEE_OTHER);
    assert_eq!(admin.post(&format!("/admin/templates/{tid}"), &v2).await.status(), S::CONFLICT, "from a stale version");
    assert_eq!(admin.post("/admin/templates/soap", &v2).await.status(), S::BAD_REQUEST, "built in");
    assert_eq!(admin.post("/admin/templates/nosuch", &v2).await.status(), S::NOT_FOUND);
    let page = admin.get("/admin/templates").await.text().await.unwrap();
    assert!(page.contains("Version 2"), "{page}");

    // The new-note form has version 2; the note written with version 1 keeps version 1's sections.
    let chart = clin1.get(&format!("/patients/{p1}?template={tid}")).await.text().await.unwrap();
    assert!(chart.contains(">Together</label>") && !chart.contains(">Partner A</label>"), "{chart}");
    let page = clin1.get(&format!("/notes/{note_id}")).await.text().await.unwrap();
    assert!(page.contains("<h3>Partner A</h3>") && page.contains("Version 1"), "{page}");
    let edit = clin1.get(&format!("/notes/{note_id}/edit")).await.text().await.unwrap();
    assert!(edit.contains(">Partner A</label>") && edit.contains("B wants more time."), "{edit}");
    assert!(!edit.contains(">Together</label>"), "{edit}");
    let n = notes_of(&s, &s.token, &p1).await.remove(0);
    assert_eq!(extension(&n, "urn:confidant:template").unwrap()["valueString"], format!("{tid}|1"));

    // Creating and changing a template are audited (ids and versions, no names).
    let entries = audit_entries(&inst).await;
    let resource = format!("\"resource\":\"NoteTemplate/{tid}\"");
    assert!(entries.iter().any(|e| e.contains(&resource) && e.contains("\"action\":\"create\"")), "{entries:?}");
    assert!(entries.iter().any(|e| e.contains(&resource) && e.contains("\"version\":2")), "{entries:?}");
    assert!(!entries.iter().any(|e| e.contains("Couples")), "no template text in the audit log");
}
both_backends!(clinic_templates_are_versioned);

async fn trainee_notes_are_cosigned_by_the_supervisor(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "trainee", "clinician", &["--name", "Tina Trainee"]);
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Other Clinician"]);
    add_user(&inst.dir, "desk", "reception", &[]);
    let trainee_token = create_token(&inst.dir, "trainee", "user/*.*");
    let s = inst.start();
    let p1 = s.create_as(&trainee_token, &patient("Cosignfamily", "Cilla")).await["id"].as_str().unwrap().to_owned();
    let admin = Browser::sign_in(&s, "admin1").await;
    let page = admin.get("/admin/supervision").await.text().await.unwrap();
    let (tr, sup, other) = (
        option_value(&page, "Tina Trainee"),
        option_value(&page, "Test Clinician"),
        option_value(&page, "Other Clinician"),
    );
    // The supervisor is on the patient's care team (the normal rules: they must read the note).
    let r = admin.post("/admin/care-teams", &format!("patient={p1}&practitioner=Practitioner/{sup}")).await;
    assert_eq!(r.status(), S::SEE_OTHER);

    // Setting a supervisor: the admin only; hostile input refused.
    let set = format!("trainee={tr}&supervisor={sup}");
    let clin1 = Browser::sign_in(&s, "clin1").await;
    assert_eq!(clin1.post("/admin/supervision", &set).await.status(), S::FORBIDDEN);
    assert_eq!(admin.post_raw("/admin/supervision", &set).await.status(), S::FORBIDDEN, "no CSRF token");
    for bad in
        [format!("trainee={tr}&supervisor=nosuch"), format!("trainee={tr}&supervisor={tr}"), "trainee=%3Cb%3E".into()]
    {
        assert_eq!(admin.post("/admin/supervision", &bad).await.status(), S::BAD_REQUEST, "{bad}");
    }
    assert!(admin.get("/admin/supervision").await.text().await.unwrap().contains("Nobody is in training."));
    assert_eq!(admin.post("/admin/supervision", &set).await.status(), S::SEE_OTHER);
    let page = admin.get("/admin/supervision").await.text().await.unwrap();
    assert!(page.contains("Tina Trainee · supervised by Test Clinician"), "{page}");

    // The trainee writes a SOAP note and signs it: awaiting the supervisor.
    let trainee = Browser::sign_in(&s, "trainee").await;
    let body = form(&[
        ("template", "soap"),
        ("template_version", "1"),
        ("section.subjective", "First session."),
        ("kind", "ordinary"),
        ("status", "final"),
    ]);
    assert_eq!(trainee.post(&format!("/patients/{p1}/notes"), &body).await.status(), S::SEE_OTHER);
    let id = notes_of(&s, &trainee_token, &p1).await[0]["id"].as_str().unwrap().to_owned();
    let cosign = format!("/notes/{id}/cosign");
    assert_eq!(clin1.post(&cosign, "version=1").await.status(), S::FORBIDDEN, "not signed yet");
    assert_eq!(trainee.post(&format!("/notes/{id}/sign"), "version=1").await.status(), S::SEE_OTHER);
    let page = trainee.get(&format!("/notes/{id}")).await.text().await.unwrap();
    assert!(page.contains("Awaiting co-sign by <strong>Test Clinician</strong>"), "{page}");
    assert!(!page.contains(&format!("action=\"{cosign}\"")), "no co-sign button for the trainee");
    let fi = trainee.in_language("fi").get(&format!("/notes/{id}")).await.text().await.unwrap();
    assert!(fi.contains("Odottaa vahvistusta:"), "{fi}");

    // Nobody else co-signs: the trainee, another clinician (not in care: 404; in care: 403),
    // other roles, no session, no CSRF token.
    assert_eq!(trainee.post(&cosign, "version=2").await.status(), S::FORBIDDEN);
    let clin2 = Browser::sign_in(&s, "clin2").await;
    assert_eq!(clin2.post(&cosign, "version=2").await.status(), S::NOT_FOUND, "wrong patient");
    let r = admin.post("/admin/care-teams", &format!("patient={p1}&practitioner=Practitioner/{other}")).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    assert_eq!(clin2.post(&cosign, "version=2").await.status(), S::FORBIDDEN, "not the supervisor");
    let desk = Browser::sign_in(&s, "desk").await;
    for b in [&admin, &desk] {
        assert_eq!(b.post(&cosign, "version=2").await.status(), S::FORBIDDEN);
        assert_eq!(b.get("/cosign").await.status(), S::FORBIDDEN);
    }
    assert_eq!(Browser::anonymous(&s).await.post_raw(&cosign, "version=2").await.status(), S::SEE_OTHER);
    assert_eq!(Browser::anonymous(&s).await.get("/cosign").await.headers()["location"], "/login");
    assert_eq!(clin1.post_raw(&cosign, "version=2").await.status(), S::FORBIDDEN, "no CSRF token");
    // A forged co-signature through the API: refused (and a client cannot name a co-signer).
    let mut forged = notes_of(&s, &trainee_token, &p1).await.remove(0);
    forged["extension"].as_array_mut().unwrap().push(
        json!({"url": "urn:confidant:cosigned-by", "valueReference": {"reference": format!("Practitioner/{sup}")}}),
    );
    let r = s
        .http
        .put(s.fhir(&format!("DocumentReference/{id}")))
        .bearer_auth(&trainee_token)
        .header("content-type", "application/fhir+json")
        .body(serde_json::to_vec(&forged).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::FORBIDDEN);
    let mut planted = note(&p1, "a note that claims a co-signature");
    planted["extension"] =
        json!([{"url": "urn:confidant:cosigned-by", "valueReference": {"reference": format!("Practitioner/{sup}")}}]);
    let made = s.create_as(&trainee_token, &planted).await;
    assert!(extension(&made, "urn:confidant:cosigned-by").is_none(), "{made}");
    let n = notes_of(&s, &trainee_token, &p1).await;
    let n = n.iter().find(|n| n["id"] == id.as_str()).unwrap();
    assert!(extension(n, "urn:confidant:cosigned-by").is_none());

    // The supervisor's list, and the co-signature: both names shown.
    let list = clin1.get("/cosign").await.text().await.unwrap();
    assert!(list.contains(&format!("href=\"/notes/{id}\"")) && list.contains("Cilla Cosignfamily"), "{list}");
    let other_list = clin2.get("/cosign").await.text().await.unwrap();
    assert!(other_list.contains("No notes are waiting"), "{other_list}");
    let page = clin1.get(&format!("/notes/{id}")).await.text().await.unwrap();
    assert!(page.contains(&format!("action=\"{cosign}\"")), "{page}");
    assert_eq!(clin1.post(&cosign, "version=2").await.status(), S::SEE_OTHER);
    let page = clin1.get(&format!("/notes/{id}")).await.text().await.unwrap();
    assert!(page.contains("Co-signed by <strong>Test Clinician</strong>") && page.contains("Tina Trainee"), "{page}");
    assert!(!page.contains("Awaiting co-sign"), "{page}");
    assert!(clin1.get("/cosign").await.text().await.unwrap().contains("No notes are waiting"));
    assert_eq!(clin1.post(&cosign, "version=3").await.status(), S::FORBIDDEN, "co-signed once");
    let n = notes_of(&s, &trainee_token, &p1).await;
    let n = n.iter().find(|n| n["id"] == id.as_str()).unwrap().clone();
    assert_eq!(
        extension(&n, "urn:confidant:cosigned-by").unwrap()["valueReference"]["reference"],
        format!("Practitioner/{sup}")
    );
    assert_eq!(
        extension(&n, "urn:confidant:cosign-required-by").unwrap()["valueReference"]["reference"],
        format!("Practitioner/{sup}")
    );
    assert!(extension(&n, "urn:confidant:cosigned-at").unwrap()["valueInstant"].is_string());
    assert_eq!(sections(&n), [("Subjective".to_owned(), "First session.".to_owned())], "the note itself unchanged");
    let entries = audit_entries(&inst).await;
    assert!(entries.iter().any(|e| e.contains(&format!("\"resource\":\"Supervision/{tr}\""))), "supervision audited");
    assert!(entries.iter().any(|e| e.contains(&format!("DocumentReference/{id}")) && e.contains("\"version\":3")));

    // A psychotherapy note is its author's alone: it asks for no co-signature.
    let psy = body.replace("kind=ordinary", "kind=psychotherapy");
    assert_eq!(trainee.post(&format!("/patients/{p1}/notes"), &psy).await.status(), S::SEE_OTHER);
    let all = notes_of(&s, &trainee_token, &p1).await;
    let psy_note = all.iter().find(|n| n["meta"]["security"].to_string().contains("PSYTHPN")).unwrap();
    let psy_id = psy_note["id"].as_str().unwrap();
    assert_eq!(trainee.post(&format!("/notes/{psy_id}/sign"), "version=1").await.status(), S::SEE_OTHER);
    let all = notes_of(&s, &trainee_token, &p1).await;
    let psy_note = all.iter().find(|n| n["id"] == psy_id).unwrap();
    assert!(psy_note["authenticator"].is_object() && extension(psy_note, "urn:confidant:cosign-required-by").is_none());
    validate(&[n]);
}
both_backends!(trainee_notes_are_cosigned_by_the_supervisor);

/// The SOAP form, a signed SOAP note with an addendum (awaiting co-sign) and
/// the admin's templates page in headless Chromium: desktop and 375 px, EN
/// and FI, no console (CSP) errors, nothing wider than the screen; the
/// screenshots land in target/screenshots/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_pages_in_chromium() {
    use std::path::Path;
    use std::process::Command;
    let Some(e2e) = crate::common::e2e_ready("templates::template_pages_in_chromium") else { return };
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "trainee", "clinician", &["--name", "Tina Trainee"]);
    let trainee_token = create_token(&inst.dir, "trainee", "user/*.*");
    let s = inst.start();
    let p = s.create_as(&trainee_token, &patient("Screenfamily", "Saara")).await["id"].as_str().unwrap().to_owned();
    let admin = Browser::sign_in(&s, "admin1").await;
    let page = admin.get("/admin/supervision").await.text().await.unwrap();
    let (tr, sup) = (option_value(&page, "Tina Trainee"), option_value(&page, "Test Clinician"));
    assert_eq!(
        admin.post("/admin/care-teams", &format!("patient={p}&practitioner=Practitioner/{sup}")).await.status(),
        S::SEE_OTHER
    );
    assert_eq!(
        admin.post("/admin/supervision", &format!("trainee={tr}&supervisor={sup}")).await.status(),
        S::SEE_OTHER
    );
    let create =
        form(&[("name", "Couples session"), ("sections", "Partner A | What A said\nPartner B | What B said\nPlan")]);
    assert_eq!(admin.post("/admin/templates", &create).await.status(), S::SEE_OTHER);
    let trainee = Browser::sign_in(&s, "trainee").await;
    let body = form(&[
        ("template", "soap"),
        ("template_version", "1"),
        ("section.subjective", "Sleeping better; less worry at work."),
        ("section.objective", "Calm, good eye contact, brighter affect."),
        ("section.assessment", "Improving; anxiety lower than at intake."),
        ("section.plan", "Continue weekly; practise the breathing exercise."),
        ("kind", "ordinary"),
        ("status", "final"),
    ]);
    assert_eq!(trainee.post(&format!("/patients/{p}/notes"), &body).await.status(), S::SEE_OTHER);
    let id = notes_of(&s, &trainee_token, &p).await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(trainee.post(&format!("/notes/{id}/sign"), "version=1").await.status(), S::SEE_OTHER);
    let addendum = form(&[("reason", "Homework clarified"), ("text", "Breathing exercise twice a day.")]);
    assert_eq!(trainee.post(&format!("/notes/{id}/addenda"), &addendum).await.status(), S::SEE_OTHER);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let out = Command::new("node")
        .arg(e2e.join("templates.mjs"))
        .env("BASE_URL", &s.url)
        .env("CLINICIAN_COOKIE", trainee.cookie_header())
        .env("ADMIN_COOKIE", admin.cookie_header())
        .env("PATIENT", &p)
        .env("NOTE", &id)
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("all pages checked"), "{said}");
}

/// `confidant user supervise`: the same supervision as the admin's page, audited
/// as the console; refused for a non-clinician, nothing changed.
async fn supervision_from_the_command_line(db: Db) {
    use crate::common::run;
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "trainee", "clinician", &["--name", "Tina Trainee"]);
    add_user(&inst.dir, "desk", "reception", &[]);
    let dir = inst.dir.to_str().unwrap();
    let supervise = |extra: &[&str]| {
        let mut args = vec!["user", "supervise", "--dir", dir];
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = supervise(&["--user", "trainee", "--supervisor", "desk"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a clinician"));
    assert!(!supervise(&["--user", "trainee", "--supervisor", "trainee"]).status.success(), "not themselves");
    assert!(!supervise(&["--user", "nobody-at-all", "--supervisor", "clin1"]).status.success());
    assert!(!supervise(&["--user", "trainee"]).status.success(), "--supervisor or --none");
    let out = supervise(&["--user", "trainee", "--supervisor", "clin1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = inst.start();
    let admin = Browser::sign_in(&s, "admin1").await;
    let page = admin.get("/admin/supervision").await.text().await.unwrap();
    assert!(page.contains("Tina Trainee · supervised by Test Clinician"), "{page}");
    // While the server runs (the page reads the same database).
    assert!(supervise(&["--user", "trainee", "--none"]).status.success());
    assert!(admin.get("/admin/supervision").await.text().await.unwrap().contains("Nobody is in training."));
    let entries = audit_entries(&inst).await;
    let by_console =
        entries.iter().filter(|e| e.contains("\"resource\":\"Supervision/") && e.contains("\"actor\":\"console\""));
    assert_eq!(by_console.count(), 2);
}
both_backends!(supervision_from_the_command_line);
