//! Intake (issue 15): registering a patient with a clinician puts them on the
//! care team (one records operation, audited), so the clinician sees the chart
//! without break-glass and without an alert; booking with a clinician does the
//! same; duplicates are refused or confirmed; what reception types is checked
//! field by field with the values kept; reception assigns care teams by a
//! patient search. Wrong roles, no session, no CSRF token and hostile input
//! change nothing.

use reqwest::StatusCode as S;
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, create_token, patient};
use crate::ui::Browser;

/// A valid Finnish personal identity code for `ddmmyy`, century sign `sign`, number `zzz`.
fn hetu(ddmmyy: &str, sign: char, zzz: &str) -> String {
    const CONTROL: &[u8; 31] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";
    let n: u64 = format!("{ddmmyy}{zzz}").parse().unwrap();
    format!("{ddmmyy}{sign}{zzz}{}", CONTROL[(n % 31) as usize] as char)
}

/// The value of the `<option>` whose text is `name`.
fn option_value(html: &str, name: &str) -> String {
    let before = html.split(&format!(">{name}</option>")).next().unwrap();
    before.rsplit("<option value=\"").next().unwrap().split('"').next().unwrap().to_owned()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{k}={}", urlencoding(v))).collect::<Vec<_>>().join("&")
}

fn urlencoding(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A FHIR read or search with an API token; it must succeed.
async fn fetch(s: &Server, token: &str, query: &str) -> Value {
    let r = s.http.get(s.fhir(query)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), S::OK, "{query}");
    r.json().await.unwrap()
}

async fn total(s: &Server, token: &str, query: &str) -> i64 {
    fetch(s, token, query).await["total"].as_i64().unwrap()
}

/// The patient id a registration redirected to.
fn registered(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), S::SEE_OTHER);
    r.headers()["location"].to_str().unwrap().trim_start_matches("/patients/").to_owned()
}

/// With CONFIDANT_TEST_DUMP=dir, keep a page for a look at it in a browser.
fn dump(name: &str, html: &str) {
    if let Ok(dir) = std::env::var("CONFIDANT_TEST_DUMP") {
        std::fs::write(format!("{dir}/{name}.html"), html).unwrap();
    }
}

async fn open_alerts(admin: &Browser) -> String {
    admin.get("/admin").await.text().await.unwrap()
}

async fn intake(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    let desk_token = create_token(&inst.dir, "desk", "user/*.*");
    let auditor_token = create_token(&inst.dir, "audi", "user/*.read");
    let s = inst.start();
    let own = s.create(&patient("Portalperson", "Ulla")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "ulla", "patient", &["--patient", &own]);
    let desk = Browser::sign_in(&s, "desk").await;
    let clin1 = Browser::sign_in(&s, "clin1").await;
    let clin2 = Browser::sign_in(&s, "clin2").await;
    let admin = Browser::sign_in(&s, "admin1").await;
    let audi = Browser::sign_in(&s, "audi").await;
    let ulla = Browser::sign_in(&s, "ulla").await;

    // The register page offers the clinic's clinicians; a clinician is preselected as themself
    // and has Register in their navigation.
    let page = desk.get("/register").await.text().await.unwrap();
    let pr1 = option_value(&page, "Test Clinician");
    let pr2 = option_value(&page, "Second Clinician");
    assert!(page.contains("<option value=\"\">Nobody yet</option>"), "{page}");
    let page = clin1.get("/register").await.text().await.unwrap();
    assert!(page.contains(&format!("<option value=\"{pr1}\" selected>Test Clinician</option>")), "{page}");
    assert!(page.contains("href=\"/register\""));
    assert!(!page.contains("Nobody yet"));

    // Reception registers a walk-in with clin2: patient and care team, both audited.
    let code = hetu("010590", '-', "123");
    let walk_in = [
        ("given", "Aino"),
        ("family", "Intakeperson"),
        ("birth", "1990-05-01"),
        ("identifier", code.as_str()),
        ("phone", "+358 40 123 4567"),
        ("email", "aino@example.fi"),
        ("clinician", pr2.as_str()),
    ];
    let r = desk.post("/register", &form(&walk_in)).await;
    let aino = registered(&r);
    let teams = fetch(&s, &inst.admin_token, &format!("CareTeam?patient={aino}")).await;
    assert_eq!(teams["total"], 1, "{teams}");
    assert_eq!(teams["entry"][0]["resource"]["participant"][0]["member"]["reference"], format!("Practitioner/{pr2}"));
    let log = fetch(&s, &auditor_token, &format!("AuditEvent?patient={aino}&action=create")).await;
    let log = log.to_string();
    assert!(log.contains(&format!("CareTeam/{}", teams["entry"][0]["resource"]["id"].as_str().unwrap())), "{log}");
    assert!(log.contains(&format!("Patient/{aino}")), "{log}");
    // clin2 reads the chart: no break-glass, no alert.
    let r = clin2.get(&format!("/patients/{aino}")).await;
    assert_eq!(r.status(), S::OK);
    let chart = r.text().await.unwrap();
    assert!(chart.contains("Intakeperson") && !chart.contains("break the glass"), "{chart}");
    assert!(open_alerts(&admin).await.contains("No open alerts."));
    // clin1 is not on it.
    assert_eq!(clin1.get(&format!("/patients/{aino}")).await.status(), S::NOT_FOUND);

    // Duplicates: the same identity code is refused (a link to the record), nothing saved.
    let same_code = [("given", "Other"), ("family", "Name"), ("birth", "1990-05-01"), ("identifier", code.as_str())];
    let r = desk.post("/register", &form(&same_code)).await;
    assert_eq!(r.status(), S::CONFLICT);
    let text = r.text().await.unwrap();
    assert!(text.contains("personal identity code is already registered"), "{text}");
    assert!(text.contains(&format!("href=\"/patients/{aino}\"")) && !text.contains("Register anyway"), "{text}");
    assert!(text.contains("value=\"Other\""), "typed values kept");
    assert_eq!(total(&s, &desk_token, "Patient?family=Name").await, 0);
    // ... even with the confirm.
    let r = desk.post("/register", &format!("{}&confirm=yes", form(&same_code))).await;
    assert_eq!(r.status(), S::CONFLICT);
    // The same names and birth date: a warning, then "register anyway" registers.
    let same_name = [("given", "Aino"), ("family", "Intakeperson"), ("birth", "1990-05-01")];
    let r = desk.post("/register", &form(&same_name)).await;
    assert_eq!(r.status(), S::CONFLICT);
    let text = r.text().await.unwrap();
    dump("register-duplicate", &text);
    assert!(text.contains("same name and birth date") && text.contains("Register anyway"), "{text}");
    assert!(text.contains(&format!("href=\"/patients/{aino}\"")));
    assert_eq!(total(&s, &desk_token, "Patient?family=Intakeperson").await, 1);
    let r = desk.post("/register", &format!("{}&confirm=yes", form(&same_name))).await;
    let second = registered(&r);
    assert_ne!(second, aino);
    assert_eq!(total(&s, &desk_token, "Patient?family=Intakeperson").await, 2);

    // Field checks: the error next to its field, the typed values kept, nothing saved.
    let good = [("given", "Veera"), ("family", "Checkperson"), ("birth", "1985-03-02")];
    let with = |field: &str, value: &str| {
        let mut f: Vec<(&str, String)> = good.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        f.retain(|(k, _)| *k != field);
        f.push((field, value.to_owned()));
        f.iter().map(|(k, v)| format!("{k}={}", urlencoding(v))).collect::<Vec<_>>().join("&")
    };
    let fi_code = hetu("020385", '-', "456");
    for (field, value, error) in [
        ("birth", "2999-01-01".to_owned(), "A birth date cannot be in the future."),
        ("birth", "1899-12-31".to_owned(), "A birth date before 1900 is not taken."),
        ("identifier", fi_code.replace(&fi_code[10..], "!"), "check character does not match"),
        ("identifier", hetu("020385", 'G', "456"), "century sign"),
        ("identifier", hetu("030385", '-', "456"), "is not the birth date"),
        ("phone", "12".to_owned(), "at least 5 digits"),
        ("phone", "040 123 4567 <b>".to_owned(), "at least 5 digits"),
        ("email", "veera@".to_owned(), "e-mail address like"),
        ("given", "x".repeat(101), "At most 100 characters"),
        ("family", String::new(), "Required."),
    ] {
        let r = desk.post("/register", &with(field, &value)).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{field}={value}");
        let text = r.text().await.unwrap();
        dump(&format!("register-error-{field}"), &text);
        let next_to = text.split(&format!("id=\"{field}\"")).nth(1).unwrap_or("");
        let next_to = &next_to[..next_to.find("<label").unwrap_or(next_to.len())];
        assert!(next_to.contains(&format!("id=\"{field}-error\"")) && next_to.contains(error), "{field}: {next_to}");
        assert!(text.contains("aria-invalid=\"true\""));
        if field != "given" {
            assert!(text.contains("value=\"Veera\""), "typed values kept: {field}");
        }
    }
    assert_eq!(total(&s, &desk_token, "Patient?family=Checkperson").await, 0);
    // In Finnish, the error is Finnish, next to its field.
    let fi = desk.in_language("fi");
    let r = fi.post("/register", &with("phone", "1")).await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    let text = r.text().await.unwrap();
    dump("register-errors-fi", &text);
    assert!(text.contains("vähintään 5 numeroa") && text.contains("Tarkista merkityt kentät"), "{text}");
    // A valid code with its date: registered.
    let r = desk.post("/register", &with("identifier", &fi_code)).await;
    registered(&r);

    // Hostile input: markup is escaped, a practitioner who is not a clinician is refused.
    let r = desk
        .post(
            "/register",
            &form(&[("given", "<script>alert(1)</script>"), ("family", "Hostile\"><b>"), ("birth", "3000-01-01")]),
        )
        .await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(!text.contains("<script>alert") && text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{text}");
    assert!(!text.contains("\"><b>"));
    let stranger = s
        .http
        .post(s.fhir("Practitioner"))
        .bearer_auth(&inst.admin_token)
        .json(&json!({"resourceType": "Practitioner", "name": [{"family": "Nonclinician", "given": ["Paavo"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), S::CREATED);
    let stranger = stranger.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for bad in [stranger.as_str(), "0123456789abcdef0123456789abcdef", "../../x", own.as_str()] {
        let mut f = good.to_vec();
        f.push(("clinician", bad));
        let r = desk.post("/register", &form(&f)).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{bad}");
        assert!(r.text().await.unwrap().contains("id=\"clinician-error\""));
    }
    assert_eq!(total(&s, &desk_token, "Patient?family=Checkperson").await, 1, "only the valid one");

    // Wrong roles, no session, no CSRF token: refused, nothing saved.
    let lone =
        form(&[("given", "Lone"), ("family", "Refusedperson"), ("birth", "1970-01-01"), ("clinician", pr1.as_str())]);
    for b in [&admin, &audi, &ulla] {
        assert_eq!(b.get("/register").await.status(), S::FORBIDDEN);
        assert_eq!(b.post("/register", &lone).await.status(), S::FORBIDDEN);
    }
    assert_eq!(desk.post_raw("/register", &lone).await.status(), S::FORBIDDEN);
    let r = Browser::anonymous(&s).await.post_raw("/register", &lone).await;
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (S::SEE_OTHER, "/login"));
    assert_eq!(total(&s, &desk_token, "Patient?family=Refusedperson").await, 0);

    // A clinician registering is put on the care team (preselected themself).
    let r = clin1.post("/register", &lone).await;
    let lone_id = registered(&r);
    assert_eq!(clin1.get(&format!("/patients/{lone_id}")).await.status(), S::OK);

    // Booking with a clinician not on the care team adds them (audited); no alert.
    let r = desk.post("/register", &form(&[("given", "Bea"), ("family", "Bookperson"), ("birth", "1975-07-07")])).await;
    let bea = registered(&r);
    assert_eq!(clin1.get(&format!("/patients/{bea}")).await.status(), S::NOT_FOUND);
    let book = |pr: &str| format!("practitioner=Practitioner/{pr}&date=2026-12-14&time=09:00");
    let r = desk.post(&format!("/patients/{bea}/appointments"), &book(&pr1)).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let r = clin1.get(&format!("/patients/{bea}")).await;
    assert_eq!(r.status(), S::OK);
    assert!(!r.text().await.unwrap().contains("break the glass"));
    assert!(open_alerts(&admin).await.contains("No open alerts."));
    let log = fetch(&s, &auditor_token, &format!("AuditEvent?patient={bea}&action=create")).await;
    assert!(log.to_string().contains("CareTeam/"), "{log}");
    // Booking again with them changes no care team.
    let before = fetch(&s, &inst.admin_token, &format!("CareTeam?patient={bea}")).await;
    // (At another time: the same one would be a double booking.)
    let later = book(&pr1).replace("09:00", "11:00");
    assert_eq!(desk.post(&format!("/patients/{bea}/appointments"), &later).await.status(), S::SEE_OTHER);
    let after = fetch(&s, &inst.admin_token, &format!("CareTeam?patient={bea}")).await;
    assert_eq!(before["entry"][0]["resource"]["meta"], after["entry"][0]["resource"]["meta"]);
    // Booking with clin2 adds them to the same team.
    assert_eq!(desk.post(&format!("/patients/{bea}/appointments"), &book(&pr2)).await.status(), S::SEE_OTHER);
    assert_eq!(clin2.get(&format!("/patients/{bea}")).await.status(), S::OK);
    assert_eq!(total(&s, &desk_token, &format!("Appointment?patient={bea}")).await, 3);
    // A practitioner who is not a clinician, or a clinician booking someone else's patient
    // with themself: refused, nothing booked, no care team changed.
    let page = desk.get(&format!("/patients/{bea}")).await.text().await.unwrap();
    assert!(page.contains("Second Clinician</option>") && !page.contains("Nonclinician</option>"), "{page}");
    assert_eq!(desk.post(&format!("/patients/{bea}/appointments"), &book(&stranger)).await.status(), S::FORBIDDEN);
    assert_eq!(clin2.post(&format!("/patients/{lone_id}/appointments"), &book(&pr2)).await.status(), S::FORBIDDEN);
    assert_eq!(total(&s, &desk_token, &format!("Appointment?patient={bea}")).await, 3);
    assert_eq!(total(&s, &desk_token, &format!("Appointment?patient={lone_id}")).await, 0);
    assert_eq!(clin2.get(&format!("/patients/{lone_id}")).await.status(), S::NOT_FOUND);

    // Care teams by search and pick, never by a typed id: reception finds, picks, adds.
    let r = desk.get("/admin/care-teams?q=Bookperson").await;
    assert_eq!(r.status(), S::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!("href=\"/admin/care-teams?patient={bea}\"")) && text.contains("Bea Bookperson"),
        "{text}"
    );
    let text = desk.get(&format!("/admin/care-teams?q={code}")).await.text().await.unwrap();
    assert!(text.contains(&format!("href=\"/admin/care-teams?patient={aino}\"")), "by identity code: {text}");
    let text = desk.get(&format!("/admin/care-teams?patient={bea}")).await.text().await.unwrap();
    dump("care-team-picked", &text);
    assert!(text.contains("Care team of patient Bea Bookperson") && text.contains("Second Clinician"), "{text}");
    let r = desk.post("/admin/care-teams", &format!("patient={aino}&practitioner=Practitioner/{pr1}")).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    assert_eq!(clin1.get(&format!("/patients/{aino}")).await.status(), S::OK);
    // Hostile searches; an admin's page shows no names; other roles and no session are refused.
    assert_eq!(desk.get(&format!("/admin/care-teams?q={}", "a".repeat(101))).await.status(), S::BAD_REQUEST);
    let text = desk.get("/admin/care-teams?q=%3Cscript%3E").await.text().await.unwrap();
    assert!(!text.contains("<script>") && text.contains("&lt;script&gt;"));
    let text = admin.get("/admin/care-teams?q=Bookperson").await.text().await.unwrap();
    assert!(!text.contains("Bookperson"), "{text}");
    for b in [&clin1, &audi, &ulla] {
        assert_eq!(b.get("/admin/care-teams?q=Bookperson").await.status(), S::FORBIDDEN);
        let r = b.post("/admin/care-teams", &format!("patient={bea}&practitioner=Practitioner/{pr1}")).await;
        assert_eq!(r.status(), S::FORBIDDEN);
    }
    let r = Browser::anonymous(&s).await.get("/admin/care-teams?q=Bookperson").await;
    assert_eq!(r.status(), S::SEE_OTHER);
    assert!(open_alerts(&admin).await.contains("No open alerts."));
}
both_backends!(intake);
