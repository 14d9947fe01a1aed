//! Access control over HTTP: the authorization matrix (every route × every
//! role × own / other patient), session states (none, expired, revoked,
//! missing or wrong CSRF token), MFA enrolment, no user enumeration,
//! psychotherapy notes, the patient portal and break-glass.
//!
//! Over 600 lines because it is the authorization matrix, cell by cell, over HTTP.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, PASSWORD, Server, add_user, create_token, encounter, note, patient, run};

/// What each role may do to each type: R read, W write, - nothing.
/// This is the README's table; the test derives every expected status from it.
/// QuestionnaireResponse and Observation (outcome measures) are read-only here: the
/// measures flow writes them (tests/it/measures.rs), never a client.
pub(crate) const TYPES: [&str; 9] = [
    "Patient",
    "Practitioner",
    "Encounter",
    "DocumentReference",
    "CareTeam",
    "Appointment",
    "Schedule",
    "QuestionnaireResponse",
    "Observation",
];
pub(crate) const MATRIX: &[(&str, [&str; 9])] = &[
    ("admin", ["-", "RW", "-", "-", "RW", "-", "RW", "-", "-"]),
    ("clinician", ["RW", "R", "RW", "RW", "RW", "RW", "R", "R", "R"]),
    ("reception", ["RW", "R", "-", "-", "RW", "RW", "R", "-", "-"]),
    ("auditor", ["-", "R", "-", "-", "-", "-", "-", "-", "-"]),
    ("patient", ["R", "-", "-", "R", "-", "-", "-", "R", "R"]),
];
/// Types that are no patient's data (the staff directory, working hours): all see all of them.
const STAFF_TYPES: &[&str] = &["Practitioner", "Schedule"];
/// Roles that see only their patients (care team / own record); the others see all of an allowed type.
pub(crate) const NARROW: &[&str] = &["clinician", "patient"];
/// The FHIR interactions each type offers (checked against the CapabilityStatement).
const INTERACTIONS: &[&str] = &["search-type", "read", "vread", "history-instance", "create", "update"];
/// The management API routes (checked against the OpenAPI document).
const API_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/session"),
    ("DELETE", "/api/v1/session"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/sessions"),
    ("DELETE", "/api/v1/sessions/{id}"),
    ("POST", "/api/v1/mfa/totp"),
    ("POST", "/api/v1/mfa/totp/confirm"),
    ("POST", "/api/v1/enrol"),
    ("POST", "/api/v1/break-glass"),
    ("GET", "/api/v1/audit/checkpoint"),
    ("GET", "/api/v1/audit/proof"),
    ("GET", "/api/v1/alerts"),
    ("POST", "/api/v1/alerts/{id}/acknowledge"),
];

/// A small clinic: two clinicians with a patient each, reception, auditor,
/// admin, and a patient account for patient A.
pub(crate) struct Clinic {
    pub(crate) inst: Instance,
    pub(crate) s: Server,
    pub(crate) tokens: BTreeMap<&'static str, String>,
    /// Per type: (resource of patient A / clinician 1, resource of patient B / clinician 2).
    pub(crate) ids: BTreeMap<&'static str, (String, String)>,
    pub(crate) clin2_token: String,
    pub(crate) psy_note: String,
    /// A practitioner with no account: new care teams in the matrix name them,
    /// so that creating one grants none of the tested users anything.
    pub(crate) spare_practitioner: String,
}

pub(crate) async fn call(
    s: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let url = if path.starts_with("/api/") { format!("{}{path}", s.url) } else { s.fhir(path) };
    let mut req = s.http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        let ct = if path.starts_with("/api/") { "application/json" } else { "application/fhir+json" };
        req = req.header("content-type", ct).body(serde_json::to_vec(b).unwrap());
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

pub(crate) async fn clinic(db: Db) -> Clinic {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Other Clinician"]);
    add_user(&inst.dir, "rec1", "reception", &[]);
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let s = inst.start();
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");

    let pa = id_of(&s.create(&patient("Virtanen", "Aino")).await);
    let pb = id_of(&s.create_as(&clin2, &patient("Korhonen", "Eero")).await);
    let ea = id_of(&s.create(&encounter(&pa)).await);
    let eb = id_of(&s.create_as(&clin2, &encounter(&pb)).await);
    let shared = |p: &str| {
        let mut n = note(p, "a summary the patient may read");
        n["meta"] = json!({"tag": [{"system": "urn:confidant:sharing", "code": "shared-with-patient"}]});
        n
    };
    let na = id_of(&s.create(&shared(&pa)).await);
    let nb = id_of(&s.create_as(&clin2, &shared(&pb)).await);
    let mut psy = note(&pa, "process note: only my eyes");
    psy["meta"] =
        json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSYTHPN"}]});
    let psy_note = id_of(&s.create(&psy).await);
    let aa = id_of(&s.create(&appointment(&pa, "x")).await);
    let ab = id_of(&s.create_as(&clin2, &appointment(&pb, "x")).await);

    let cta = team_of(&s, &inst.admin_token, &pa).await;
    let ctb = team_of(&s, &inst.admin_token, &pb).await;
    let pr1 = me(&s, &inst.token).await["practitioner_id"].as_str().unwrap().to_owned();
    let pr2 = me(&s, &clin2).await["practitioner_id"].as_str().unwrap().to_owned();

    add_user(&inst.dir, "pat1", "patient", &["--patient", &pa]);
    let mut tokens = BTreeMap::new();
    tokens.insert("admin", inst.admin_token.clone());
    tokens.insert("clinician", inst.token.clone());
    tokens.insert("reception", create_token(&inst.dir, "rec1", "user/*.*"));
    tokens.insert("auditor", create_token(&inst.dir, "aud1", "user/*.*"));
    tokens.insert("patient", create_token(&inst.dir, "pat1", "user/*.*"));
    let sa = id_of(&s.create_as(&inst.admin_token, &schedule(&pr1)).await);
    let sb = id_of(&s.create_as(&inst.admin_token, &schedule(&pr2)).await);
    let mut ids = BTreeMap::new();
    ids.insert("Patient", (pa, pb));
    ids.insert("Practitioner", (pr1, pr2));
    ids.insert("Encounter", (ea, eb));
    ids.insert("DocumentReference", (na, nb));
    ids.insert("CareTeam", (cta, ctb));
    ids.insert("Appointment", (aa, ab));
    ids.insert("Schedule", (sa, sb));
    let spare = json!({"resourceType": "Practitioner", "name": [{"family": "Spare"}]});
    let spare_practitioner = id_of(&s.create_as(&inst.admin_token, &spare).await);
    Clinic { inst, s, tokens, ids, clin2_token: clin2, psy_note, spare_practitioner }
}

async fn team_of(s: &Server, admin: &str, p: &str) -> String {
    let (_, b) = call(s, Some(admin), Method::GET, &format!("CareTeam?patient={p}"), None).await;
    assert_eq!(b["total"], 1, "{b}");
    b["entry"][0]["resource"]["id"].as_str().unwrap().to_owned()
}

async fn me(s: &Server, token: &str) -> Value {
    call(s, Some(token), Method::GET, "/api/v1/me", None).await.1
}

/// An appointment, each at a time of its own (the same practitioner is never double-booked).
pub(crate) fn appointment(p: &str, practitioner: &str) -> Value {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let hour = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (day, hour) = (1 + hour / 20, hour % 20);
    json!({"resourceType": "Appointment", "status": "booked",
    "start": format!("2026-12-{day:02}T{hour:02}:00:00Z"), "end": format!("2026-12-{day:02}T{hour:02}:50:00Z"),
    "participant": [
        {"actor": {"reference": format!("Patient/{p}")}, "status": "accepted"},
        {"actor": {"reference": format!("Practitioner/{practitioner}")}, "status": "accepted"}
    ]})
}

/// A practitioner's working hours (Monday 08:00–16:00).
fn schedule(practitioner: &str) -> Value {
    json!({"resourceType": "Schedule", "active": true, "actor": [{"reference": format!("Practitioner/{practitioner}")}],
           "extension": [{"url": "urn:confidant:working-hours", "extension": [
               {"url": "day", "valueCode": "mon"}, {"url": "start", "valueTime": "08:00:00"},
               {"url": "end", "valueTime": "16:00:00"}]}]})
}

/// A new resource of `ty` for the patient `p` (or none for Patient / Practitioner).
pub(crate) fn new_resource(ty: &str, p: &str, practitioner: &str) -> Value {
    match ty {
        "Patient" => patient("Uusi", "Potilas"),
        "Practitioner" => json!({"resourceType": "Practitioner", "name": [{"family": "Uusi"}]}),
        "Encounter" => encounter(p),
        "DocumentReference" => note(p, "new note"),
        "CareTeam" => {
            json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": format!("Patient/{p}")},
                             "participant": [{"member": {"reference": format!("Practitioner/{practitioner}")}}]})
        }
        "Appointment" => appointment(p, practitioner),
        "Schedule" => schedule(practitioner),
        "QuestionnaireResponse" => json!({"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": "urn:confidant:questionnaire:phq-9", "subject": {"reference": format!("Patient/{p}")}}),
        "Observation" => json!({"resourceType": "Observation", "status": "final", "valueInteger": 0,
            "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
            "subject": {"reference": format!("Patient/{p}")}}),
        other => panic!("no test resource for {other}: add one"),
    }
}

/// A completed PHQ-9 (its response and score) for each clinician's patient,
/// through the pages (the only way they are written).
pub(crate) async fn measures_of(c: &mut Clinic) {
    for (clinician, patient) in [("clin1", c.ids["Patient"].0.clone()), ("clin2", c.ids["Patient"].1.clone())] {
        let b = crate::ui::Browser::sign_in(&c.s, clinician).await;
        let r = b.post(&format!("/patients/{patient}/measures"), "instrument=phq-9&action=now").await;
        let form = r.headers()["location"].to_str().unwrap().to_owned();
        let r = b.post(&form, "1=0&2=0&3=0&4=0&5=0&6=0&7=0&8=0&9=0").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{clinician} answers a PHQ-9");
    }
    let token = |i: usize| if i == 0 { c.inst.token.clone() } else { c.clin2_token.clone() };
    for ty in ["QuestionnaireResponse", "Observation"] {
        let mut ids = Vec::new();
        for (i, p) in [c.ids["Patient"].0.clone(), c.ids["Patient"].1.clone()].iter().enumerate() {
            let (_, b) = call(&c.s, Some(&token(i)), Method::GET, &format!("{ty}?patient={p}"), None).await;
            ids.push(b["entry"][0]["resource"]["id"].as_str().unwrap().to_owned());
        }
        c.ids.insert(ty, (ids[0].clone(), ids[1].clone()));
    }
}

async fn authorization_matrix(db: Db) {
    let mut c = clinic(db).await;
    measures_of(&mut c).await;
    // The table covers exactly what the server says it serves.
    let (_, cs) = call(&c.s, None, Method::GET, "metadata", None).await;
    let mut served: BTreeSet<String> =
        cs["rest"][0]["resource"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap().to_owned()).collect();
    // The audit log's view has its own test (audit::audit_event_access).
    assert!(served.remove("AuditEvent"), "AuditEvent is served");
    // The built-in outcome measures, read-only, no patient data (tests/it/measures.rs).
    assert!(served.remove("Questionnaire"), "Questionnaire is served");
    assert_eq!(served, TYPES.iter().map(|t| t.to_string()).collect(), "a resource type without a matrix row");
    for r in cs["rest"][0]["resource"].as_array().unwrap() {
        for i in r["interaction"].as_array().unwrap() {
            assert!(INTERACTIONS.contains(&i["code"].as_str().unwrap()), "interaction {i} without a matrix entry");
        }
    }
    let (_, api) = call(&c.s, None, Method::GET, "/api/v1/openapi.json", None).await;
    let mut documented = BTreeSet::new();
    for (path, ops) in api["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            documented.insert((m.to_uppercase(), path.clone()));
        }
    }
    let tested: BTreeSet<(String, String)> = API_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, tested, "an API route without a matrix entry");

    let mut cells = 0;
    for (role, perms) in MATRIX {
        let token = &c.tokens[role];
        for (ty, perm) in TYPES.iter().zip(perms) {
            let (read, write) = (perm.contains('R'), perm.contains('W'));
            for (which, target) in [("own", &c.ids[ty].0), ("other", &c.ids[ty].1)] {
                let visible = STAFF_TYPES.contains(ty) || !NARROW.contains(role) || which == "own";
                let what = format!("{role} {ty} {which}");
                let patient_of_target = match *ty {
                    "Patient" => target.clone(),
                    _ => {
                        if which == "own" {
                            c.ids["Patient"].0.clone()
                        } else {
                            c.ids["Patient"].1.clone()
                        }
                    }
                };
                // search by id
                let (st, b) = call(&c.s, Some(token), Method::GET, &format!("{ty}?_id={target}"), None).await;
                if read {
                    assert_eq!(st, StatusCode::OK, "{what} search");
                    assert_eq!(b["total"], i64::from(visible), "{what} search total");
                } else {
                    assert_eq!(st, StatusCode::FORBIDDEN, "{what} search");
                }
                // read, vread, history
                for path in
                    [format!("{ty}/{target}"), format!("{ty}/{target}/_history/1"), format!("{ty}/{target}/_history")]
                {
                    let (st, b) = call(&c.s, Some(token), Method::GET, &path, None).await;
                    let expected = match (read, visible) {
                        (false, _) => StatusCode::FORBIDDEN,
                        (true, true) => StatusCode::OK,
                        (true, false) => StatusCode::NOT_FOUND,
                    };
                    assert_eq!(st, expected, "{what} GET {path}: {b}");
                    cells += 1;
                }
                // update (the current version, unchanged)
                let (_, current) =
                    call(&c.s, Some(&c.inst.admin_token), Method::GET, &format!("{ty}/{target}"), None).await;
                let current = if current["resourceType"] == *ty {
                    current
                } else {
                    // Admin cannot read clinical types; the clinician who owns it can.
                    let owner = if which == "own" { &c.inst.token } else { &c.clin2_token };
                    call(&c.s, Some(owner), Method::GET, &format!("{ty}/{target}"), None).await.1
                };
                let (st, b) = call(&c.s, Some(token), Method::PUT, &format!("{ty}/{target}"), Some(&current)).await;
                let expected = match (write, visible) {
                    (false, _) => StatusCode::FORBIDDEN,
                    (true, true) => StatusCode::OK,
                    (true, false) => StatusCode::NOT_FOUND,
                };
                assert_eq!(st, expected, "{what} update: {b}");
                // create (into this patient's record)
                let body = new_resource(ty, &patient_of_target, &c.spare_practitioner);
                let (st, b) = call(&c.s, Some(token), Method::POST, ty, Some(&body)).await;
                let creates_into_patient = *ty != "Patient" && !STAFF_TYPES.contains(ty);
                let expected = match (write, visible || !creates_into_patient) {
                    (false, _) => StatusCode::FORBIDDEN,
                    (true, true) => StatusCode::CREATED,
                    (true, false) => StatusCode::UNPROCESSABLE_ENTITY,
                };
                assert_eq!(st, expected, "{what} create: {b}");
                cells += 3;
            }
        }
    }
    assert!(cells > 250, "{cells} cells");

    // Management API, per role, with an API token.
    for (role, _) in MATRIX {
        let t = Some(c.tokens[role].as_str());
        assert_eq!(call(&c.s, t, Method::GET, "/api/v1/me", None).await.1["role"], *role);
        assert_eq!(call(&c.s, t, Method::GET, "/api/v1/sessions", None).await.0, StatusCode::OK);
        assert_eq!(call(&c.s, t, Method::DELETE, "/api/v1/sessions/nosuch", None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&c.s, t, Method::DELETE, "/api/v1/session", None).await.0,
            StatusCode::BAD_REQUEST,
            "a token is no session"
        );
        assert_eq!(call(&c.s, t, Method::POST, "/api/v1/mfa/totp", None).await.0, StatusCode::BAD_REQUEST);
        let code = json!({"code": "123456"});
        assert!(call(&c.s, t, Method::POST, "/api/v1/mfa/totp/confirm", Some(&code)).await.0.is_client_error());
        // Break-glass needs a login session with MFA: an API token never opens it.
        let bg = json!({"patient": c.ids["Patient"].1, "reason": "urgent: covering for a colleague on sick leave"});
        let (st, _) = call(&c.s, t, Method::POST, "/api/v1/break-glass", Some(&bg)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{role} break-glass with an API token");
        // The audit log's proofs are the auditor's alone.
        let (st, b) = call(&c.s, t, Method::GET, "/api/v1/audit/proof?seq=1&size=1", None).await;
        let expected = if *role == "auditor" { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(st, expected, "{role} audit proof: {b}");
        let (st, _) = call(&c.s, t, Method::GET, "/api/v1/audit/checkpoint", None).await;
        if *role == "auditor" {
            assert!(st == StatusCode::OK || st == StatusCode::NOT_FOUND, "auditor checkpoint: {st}");
        } else {
            assert_eq!(st, StatusCode::FORBIDDEN, "{role} audit checkpoint");
        }
        let (st, _) = call(&c.s, t, Method::GET, "/api/v1/sessions?user=someone-else", None).await;
        let expected = if *role == "admin" { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(st, expected, "{role} lists others' sessions");
        // Alerts are the admin's and the auditor's (ids and counts, no clinical content).
        let handles_alerts = matches!(*role, "admin" | "auditor");
        let (st, b) = call(&c.s, t, Method::GET, "/api/v1/alerts?status=all", None).await;
        let expected = if handles_alerts { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(st, expected, "{role} lists alerts: {b}");
        // Closing one is a person's decision: never with an API token.
        let (st, _) =
            call(&c.s, t, Method::POST, "/api/v1/alerts/0123456789abcdef0123456789abcdef/acknowledge", None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{role} acknowledges an alert with an API token");
    }
    // Without a session: everything but the public routes is 401.
    for (method, path) in API_ROUTES {
        let path = path.replace("{id}", "x");
        let body = json!({});
        let (st, _) = call(&c.s, None, Method::from_bytes(method.as_bytes()).unwrap(), &path, Some(&body)).await;
        let public = matches!(path.as_str(), "/api/v1/session" | "/api/v1/enrol") && *method == "POST";
        if public {
            assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {path} with an empty body");
        } else {
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {path} without a session");
        }
    }
    for ty in TYPES {
        assert_eq!(call(&c.s, None, Method::GET, ty, None).await.0, StatusCode::UNAUTHORIZED);
        let body = new_resource(ty, &c.ids["Patient"].0, &c.ids["Practitioner"].0);
        assert_eq!(call(&c.s, None, Method::POST, ty, Some(&body)).await.0, StatusCode::UNAUTHORIZED);
    }
}
both_backends!(authorization_matrix);

pub(crate) async fn login(s: &Server, body: &Value) -> reqwest::Response {
    s.http.post(format!("{}/api/v1/session", s.url)).json(body).send().await.unwrap()
}

fn session_cookie(r: &reqwest::Response) -> String {
    let c = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"), "{c}");
    c.split(';').next().unwrap().to_owned()
}

// The server under test runs on the system clock: the test reads the same one.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn sessions_mfa_csrf_and_enumeration(db: Db) {
    let c = clinic(db).await;
    let s = &c.s;
    // No enumeration: unknown user and wrong password give the same status and body.
    let a = login(s, &json!({"username": "clin1", "password": "wrong password here"})).await;
    let (sa, ba) = (a.status(), a.text().await.unwrap());
    let b = login(s, &json!({"username": "nosuchuser", "password": "wrong password here"})).await;
    let (sb, bb) = (b.status(), b.text().await.unwrap());
    assert_eq!((sa, &ba), (sb, &bb));
    assert_eq!(sa, StatusCode::UNAUTHORIZED);

    // First login: password only, a session that can do nothing but enrol MFA.
    let r = login(s, &json!({"username": "clin1", "password": PASSWORD})).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The session cookie changes when the second factor is done (see below).
    let cookie = std::cell::RefCell::new(session_cookie(&r));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_enrolment_required"], true);
    let csrf = v["csrf_token"].as_str().unwrap().to_owned();
    let with_cookie = |m: Method, path: &str, csrf: Option<&str>| {
        let url = if path.starts_with("/api/") { format!("{}{path}", s.url) } else { s.fhir(path) };
        let mut req = s.http.request(m, url).header("cookie", cookie.borrow().clone());
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        req
    };
    let r = with_cookie(Method::GET, "Patient", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no records before the second factor");
    let r = with_cookie(Method::POST, "/api/v1/mfa/totp", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "enrolment is a change: it needs the CSRF token");
    let e: Value =
        with_cookie(Method::POST, "/api/v1/mfa/totp", Some(&csrf)).send().await.unwrap().json().await.unwrap();
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    let secret = confidant_vault::totp::TotpSecret::from_bytes(
        &data_encoding::BASE32_NOPAD.decode(e["secret"].as_str().unwrap().as_bytes()).unwrap(),
    );
    let code = confidant_vault::totp::code_at(&secret, now_secs());
    let r = with_cookie(Method::POST, "/api/v1/mfa/totp/confirm", Some(&csrf))
        .header("content-type", "application/json")
        .body(json!({"code": code}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The enrolment session is replaced by a new one (issue 14): new cookie, new CSRF token.
    let enrolment_cookie = cookie.replace(session_cookie(&r));
    assert_ne!(*cookie.borrow(), enrolment_cookie);
    let confirmed: Value = r.json().await.unwrap();
    let recovery: Vec<String> =
        confirmed["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    let old_csrf = csrf;
    let csrf = confirmed["csrf_token"].as_str().unwrap().to_owned();
    assert_ne!(csrf, old_csrf);
    let me = s.http.get(format!("{}/api/v1/me", s.url)).header("cookie", enrolment_cookie).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED, "the enrolment session has ended");

    // Now the cookie session works, and every change needs the CSRF token.
    assert_eq!(with_cookie(Method::GET, "Patient", None).send().await.unwrap().status(), StatusCode::OK);
    let post = |csrf: Option<&str>| {
        with_cookie(Method::POST, "Patient", csrf)
            .header("content-type", "application/fhir+json")
            .body(serde_json::to_vec(&patient("Csrf", "Test")).unwrap())
            .send()
    };
    assert_eq!(post(None).await.unwrap().status(), StatusCode::FORBIDDEN, "missing CSRF token");
    assert_eq!(post(Some("forged")).await.unwrap().status(), StatusCode::FORBIDDEN, "wrong CSRF token");
    assert_eq!(post(Some(&csrf)).await.unwrap().status(), StatusCode::CREATED);

    // A bearer session for an API client, with a recovery code (a TOTP step may not be reused).
    let r =
        login(s, &json!({"username": "clin1", "password": PASSWORD, "code": recovery[0], "client": "bearer"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let bearer = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(call(s, Some(&bearer), Method::GET, "Patient", None).await.0, StatusCode::OK);
    let (st, _) = call(s, Some(&bearer), Method::POST, "Patient", Some(&patient("Bearer", "Client"))).await;
    assert_eq!(st, StatusCode::CREATED, "bearer requests need no CSRF token");
    // The same recovery code does not work twice; the password alone does not either.
    let r = login(s, &json!({"username": "clin1", "password": PASSWORD, "code": recovery[0]})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login(s, &json!({"username": "clin1", "password": PASSWORD})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // List own sessions; revoke the bearer one from the cookie session.
    let list: Value = with_cookie(Method::GET, "/api/v1/sessions", None).send().await.unwrap().json().await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let other = sessions.iter().find(|x| x["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();
    let r = with_cookie(Method::DELETE, &format!("/api/v1/sessions/{other}"), Some(&csrf)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        call(s, Some(&bearer), Method::GET, "Patient", None).await.0,
        StatusCode::UNAUTHORIZED,
        "revoked session"
    );
    // Another user cannot revoke it (not theirs): 404. An admin can.
    let r =
        login(s, &json!({"username": "clin1", "password": PASSWORD, "code": recovery[1], "client": "bearer"})).await;
    let bearer2 = r.json::<Value>().await.unwrap();
    let sid = bearer2["session_id"].as_str().unwrap();
    let t2 = bearer2["token"].as_str().unwrap();
    let (st, _) = call(s, Some(&c.tokens["reception"]), Method::DELETE, &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(call(s, Some(t2), Method::GET, "Patient", None).await.0, StatusCode::OK);
    let (st, _) = call(s, Some(&c.tokens["admin"]), Method::DELETE, &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(call(s, Some(t2), Method::GET, "Patient", None).await.0, StatusCode::UNAUTHORIZED);

    // An expired session (written behind the server's back) is refused.
    let me = call(s, Some(&c.inst.token), Method::GET, "/api/v1/me", None).await.1;
    let expired_token = "cns_expired-session-token-for-the-test-000000000";
    let hash = confidant_vault::sha256(expired_token.as_bytes()).to_vec();
    let mut db = c.inst.db().await;
    let q = if db_is_pg(&c.inst) {
        "INSERT INTO sessions (id, user_id, kind, csrf_hash, mfa_done, created_at, last_seen, expires_at, revoked_at, token_hash) VALUES ('expired1', $1, 'bearer', NULL, 1, 1, 1, 2, NULL, $2)"
    } else {
        "INSERT INTO sessions (id, user_id, kind, csrf_hash, mfa_done, created_at, last_seen, expires_at, revoked_at, token_hash) VALUES ('expired1', ?, 'bearer', NULL, 1, 1, 1, 2, NULL, ?)"
    };
    sqlx::query(q).bind(me["user_id"].as_str().unwrap()).bind(hash).execute(&mut db).await.unwrap();
    assert_eq!(call(s, Some(expired_token), Method::GET, "Patient", None).await.0, StatusCode::UNAUTHORIZED);

    // Logout ends the cookie session and clears the cookie.
    let r = with_cookie(Method::DELETE, "/api/v1/session", Some(&csrf)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(with_cookie(Method::GET, "Patient", None).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Hostile login bodies: a clear 400, never a 500.
    for body in ["{", "[]", "{\"username\": 1}", "{\"username\":\"a\",\"password\":\"b\",\"evil\":1}"] {
        let r = s
            .http
            .post(format!("{}/api/v1/session", s.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    // Disabling a user ends their tokens at once.
    assert!(run(&["user", "disable", "--dir", c.inst.dir.to_str().unwrap(), "--user", "rec1"]).status.success());
    assert_eq!(call(s, Some(&c.tokens["reception"]), Method::GET, "Patient", None).await.0, StatusCode::UNAUTHORIZED);
}
both_backends!(sessions_mfa_csrf_and_enumeration);

/// Log in as `username` (password only), enrol TOTP, and return the bearer
/// session token, now with its second factor done.
pub(crate) async fn mfa_bearer_session(s: &Server, username: &str) -> String {
    let r = login(s, &json!({"username": username, "password": PASSWORD, "client": "bearer"})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_enrolment_required"], true);
    let token = v["token"].as_str().unwrap().to_owned();
    let (_, e) = call(s, Some(&token), Method::POST, "/api/v1/mfa/totp", None).await;
    let secret = confidant_vault::totp::TotpSecret::from_bytes(
        &data_encoding::BASE32_NOPAD.decode(e["secret"].as_str().unwrap().as_bytes()).unwrap(),
    );
    let code = json!({"code": confidant_vault::totp::code_at(&secret, now_secs())});
    let (st, v) = call(s, Some(&token), Method::POST, "/api/v1/mfa/totp/confirm", Some(&code)).await;
    assert_eq!(st, StatusCode::OK);
    // The enrolment session's token is replaced by a new one.
    v["token"].as_str().unwrap().to_owned()
}

fn db_is_pg(inst: &Instance) -> bool {
    inst.db == Db::Postgres
}

async fn psychotherapy_notes_portal_and_break_glass(db: Db) {
    let c = clinic(db).await;
    let s = &c.s;
    let (pa, pb) = c.ids["Patient"].clone();
    let pr2 = c.ids["Practitioner"].1.clone();
    let clin1 = c.inst.token.clone();
    let clin2 = c.clin2_token.clone();
    let psy = format!("DocumentReference/{}", c.psy_note);

    // Put clinician 2 on patient A's care team too (an admin's job).
    let team = json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": format!("Patient/{pa}")},
                      "participant": [{"member": {"reference": format!("Practitioner/{pr2}")}}]});
    assert_eq!(call(s, Some(&c.inst.admin_token), Method::POST, "CareTeam", Some(&team)).await.0, StatusCode::CREATED);
    // The care team sees A's notes, but not the author's psychotherapy note; totals agree.
    assert_eq!(call(s, Some(&clin2), Method::GET, &format!("Patient/{pa}"), None).await.0, StatusCode::OK);
    assert_eq!(call(s, Some(&clin2), Method::GET, &psy, None).await.0, StatusCode::NOT_FOUND);
    let (_, b) = call(s, Some(&clin2), Method::GET, &format!("DocumentReference?patient={pa}"), None).await;
    assert_eq!(b["total"], 1, "{b}");
    let (_, b) = call(s, Some(&clin1), Method::GET, &format!("DocumentReference?patient={pa}"), None).await;
    assert_eq!(b["total"], 2);
    // Only the author may write a psychotherapy note, and only as themself.
    let (st, _) =
        call(s, Some(&clin2), Method::PUT, &psy, Some(&call(s, Some(&clin1), Method::GET, &psy, None).await.1)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The patient portal: own record and shared notes only; never psychotherapy notes.
    let pat = &c.tokens["patient"];
    let (_, b) = call(s, Some(pat), Method::GET, "DocumentReference", None).await;
    assert_eq!(b["total"], 1);
    assert_eq!(call(s, Some(pat), Method::GET, &psy, None).await.0, StatusCode::NOT_FOUND);
    let (_, b) = call(s, Some(pat), Method::GET, "Patient", None).await;
    assert_eq!(b["total"], 1);
    assert_eq!(b["entry"][0]["resource"]["id"], json!(pa));
    // A note shared only from its second version: the patient sees that version
    // alone, and the history's total does not count the first.
    let later = id_of(&s.create(&note(&pa, "draft, not for the patient")).await);
    let mut v2 = call(s, Some(&clin1), Method::GET, &format!("DocumentReference/{later}"), None).await.1;
    v2["meta"]["tag"] = json!([{"system": "urn:confidant:sharing", "code": "shared-with-patient"}]);
    assert_eq!(
        call(s, Some(&clin1), Method::PUT, &format!("DocumentReference/{later}"), Some(&v2)).await.0,
        StatusCode::OK
    );
    let (st, h) = call(s, Some(pat), Method::GET, &format!("DocumentReference/{later}/_history"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["total"], 1, "{h}");
    assert_eq!(h["entry"].as_array().unwrap().len(), 1);
    assert_eq!(
        call(s, Some(pat), Method::GET, &format!("DocumentReference/{later}/_history/1"), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, h) = call(s, Some(&clin1), Method::GET, &format!("DocumentReference/{later}/_history"), None).await;
    assert_eq!(h["total"], 2);

    // The author releases the note to the care team.
    let mut released = call(s, Some(&clin1), Method::GET, &psy, None).await.1;
    released["meta"]["tag"] = json!([{"system": "urn:confidant:sharing", "code": "released-to-care-team"}]);
    assert_eq!(call(s, Some(&clin1), Method::PUT, &psy, Some(&released)).await.0, StatusCode::OK);
    assert_eq!(call(s, Some(&clin2), Method::GET, &psy, None).await.0, StatusCode::OK);
    assert_eq!(call(s, Some(pat), Method::GET, &psy, None).await.0, StatusCode::NOT_FOUND, "still not in the portal");

    // A clinician on the care team, but not the author, may not change it.
    let (st, _) = call(s, Some(&clin2), Method::PUT, &psy, Some(&released)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "only the author changes a psychotherapy note");
    let mut unlabelled = released.clone();
    unlabelled["meta"].as_object_mut().unwrap().remove("security");
    unlabelled["meta"]["tag"] = json!([{"system": "urn:confidant:sharing", "code": "shared-with-patient"}]);
    assert_eq!(call(s, Some(&clin2), Method::PUT, &psy, Some(&unlabelled)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(s, Some(pat), Method::GET, &psy, None).await.0, StatusCode::NOT_FOUND);

    // Break-glass needs a login session with the second factor: enrol clinician 1's TOTP.
    let clin1 = mfa_bearer_session(s, "clin1").await;
    // Break-glass: clinician 1 cannot see patient B...
    assert_eq!(call(s, Some(&clin1), Method::GET, &format!("Patient/{pb}"), None).await.0, StatusCode::NOT_FOUND);
    // ...without a reason it is refused...
    for body in
        [json!({"patient": pb}), json!({"patient": pb, "reason": ""}), json!({"patient": pb, "reason": "because"})]
    {
        let (st, _) = call(s, Some(&clin1), Method::POST, "/api/v1/break-glass", Some(&body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    }
    let (st, _) = call(
        s,
        Some(&clin1),
        Method::POST,
        "/api/v1/break-glass",
        Some(&json!({"patient": "nosuch", "reason": "acute crisis call from the emergency unit"})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(call(s, Some(&clin1), Method::GET, &format!("Patient/{pb}"), None).await.0, StatusCode::NOT_FOUND);
    // ...with one it opens the record, for a limited time.
    let (st, b) = call(
        s,
        Some(&clin1),
        Method::POST,
        "/api/v1/break-glass",
        Some(&json!({"patient": format!("Patient/{pb}"), "reason": "acute crisis call from the emergency unit"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert!(b["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(call(s, Some(&clin1), Method::GET, &format!("Patient/{pb}"), None).await.0, StatusCode::OK);
    let (_, b) = call(s, Some(&clin1), Method::GET, &format!("DocumentReference?patient={pb}"), None).await;
    assert_eq!(b["total"], 1);
    // Break-glass does not let a clinician put anyone on the patient's care team.
    let team_b = json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": format!("Patient/{pb}")},
                        "participant": [{"member": {"reference": format!("Practitioner/{}", c.ids["Practitioner"].0)}}]});
    assert_eq!(call(s, Some(&clin1), Method::POST, "CareTeam", Some(&team_b)).await.0, StatusCode::FORBIDDEN);
    let ctb = format!("CareTeam/{}", c.ids["CareTeam"].1);
    let current = call(s, Some(&clin1), Method::GET, &ctb, None).await.1;
    assert_eq!(call(s, Some(&clin1), Method::PUT, &ctb, Some(&current)).await.0, StatusCode::FORBIDDEN);
    // The reason is stored sealed, and the server log names ids only.
    let out = s.output();
    assert!(out.contains("break-glass access opened"));
    assert!(!out.contains("acute crisis"));
    // The audit log says why: the break-glass with its reason (shown only through the
    // AuditEvent view, never in the entry), and every access it allowed, searches included.
    let auditor = &c.tokens["auditor"];
    let clin1_user = call(s, Some(&c.inst.token), Method::GET, "/api/v1/me", None).await.1["user_id"].clone();
    let clin1_user = clin1_user.as_str().unwrap();
    let (st, bg) =
        call(s, Some(auditor), Method::GET, &format!("AuditEvent?patient={pb}&action=break-glass"), None).await;
    assert_eq!(st, StatusCode::OK, "{bg}");
    let event = &bg["entry"][0]["resource"];
    assert_eq!(event["purposeOfEvent"][0]["coding"][0]["code"], "BTG", "{event}");
    assert_eq!(event["purposeOfEvent"][0]["text"], "acute crisis call from the emergency unit");
    for action in ["read", "search-hit"] {
        let (_, log) = call(
            s,
            Some(auditor),
            Method::GET,
            &format!("AuditEvent?patient={pb}&action={action}&agent={clin1_user}"),
            None,
        )
        .await;
        let events = log["entry"].as_array().unwrap_or_else(|| panic!("no {action} entries: {log}"));
        // Before the break-glass, clinician 1's reads were refused (and recorded as such).
        let (allowed, refused): (Vec<&Value>, Vec<&Value>) =
            events.iter().map(|e| &e["resource"]).partition(|e| e["outcome"] == "0");
        assert!(!allowed.is_empty(), "{action}: {log}");
        assert!(
            allowed.iter().all(|e| e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"),
            "{action} under break-glass must say so: {log}"
        );
        if action == "read" {
            assert!(!refused.is_empty(), "the refused reads before the break-glass are recorded");
        }
    }
}
both_backends!(psychotherapy_notes_portal_and_break_glass);

/// The note-template, supervision and co-sign pages × every role (signed in
/// in a browser session) and no session: GET and form posts (with the CSRF
/// token). Expected: the page (200), a redirect after a post that did
/// something (303), refused (403), not found (404), or sign in first.
async fn template_and_cosign_pages(db: Db) {
    use crate::ui::Browser;
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    let s = inst.start();
    let p = s.create(&patient("Matrixfamily", "Maija")).await["id"].as_str().unwrap().to_owned();
    let n = s.create(&note(&p, "a note for the matrix")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "pat", "patient", &["--patient", &p]);
    let template = "name=Matrix+template&sections=One";
    let cosign = format!("/notes/{n}/cosign");
    // (role, GET templates, GET supervision, GET co-sign list, POST template, POST supervision, POST co-sign)
    use StatusCode as S;
    let table = [
        ("admin1", [S::OK, S::OK, S::FORBIDDEN, S::SEE_OTHER, S::BAD_REQUEST, S::FORBIDDEN]),
        // A clinician: their co-sign list; co-signing a note that needs no co-signature is refused.
        ("clin1", [S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN]),
        ("desk", [S::FORBIDDEN; 6]),
        ("audi", [S::FORBIDDEN; 6]),
        ("pat", [S::FORBIDDEN; 6]),
    ];
    for (user, expected) in table {
        let b = Browser::sign_in(&s, user).await;
        let got = [
            b.get("/admin/templates").await.status(),
            b.get("/admin/supervision").await.status(),
            b.get("/cosign").await.status(),
            b.post("/admin/templates", template).await.status(),
            b.post("/admin/supervision", "trainee=x&supervisor=y").await.status(),
            b.post(&cosign, "version=1").await.status(),
        ];
        assert_eq!(got, expected, "{user}");
        // Without the form's CSRF token: refused, whatever the role.
        for path in ["/admin/templates", "/admin/supervision", cosign.as_str()] {
            assert_eq!(b.post_raw(path, template).await.status(), S::FORBIDDEN, "{user} {path} without CSRF");
        }
    }
    let nobody = Browser::anonymous(&s).await;
    for path in ["/admin/templates", "/admin/templates/soap", "/admin/supervision", "/cosign"] {
        assert_eq!(nobody.get(path).await.headers()["location"], "/login", "{path}");
    }
    for path in ["/admin/templates", "/admin/templates/soap", "/admin/supervision", cosign.as_str()] {
        assert_eq!(nobody.post_raw(path, template).await.headers()["location"], "/login", "{path}");
    }
}
both_backends!(template_and_cosign_pages);
