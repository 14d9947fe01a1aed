//! The web UI in headless Chromium (tests/e2e/ui.mjs, playwright-core driving
//! Debian's chromium): sign-in with TOTP enrolment, a clinician writes a note
//! and reads it back as text, a form post without the CSRF token is refused,
//! reception cannot open the note's URL, the patient sees the clinician's read
//! in their access log and downloads their data, security headers on every page.
//! Screenshots land in target/screenshots (git-ignored).
//!
//! Over 600 lines because it drives every web page with plain HTTP (forms, CSRF, refusals)
//! before the browser test runs the same flows in Chromium.

use std::path::Path;
use std::process::Command;

use crate::common::{Db, Instance, add_user, patient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_chromium() {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
    let ready = Path::new("/usr/bin/chromium").exists()
        && e2e.join("node_modules/playwright-core").exists()
        && e2e.join("node_modules/axe-core").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ready {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "Chromium, playwright-core and axe-core must be installed in CI"
        );
        eprintln!("\n*** SKIPPED ui::the_web_ui_in_chromium: install chromium and run `npm ci` in tests/e2e ***\n");
        return;
    }
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    add_user(&inst.dir, "victim", "clinician", &["--name", "Often Mistyped"]);
    // Passkeys are for the site at public_url; an IP address cannot be a WebAuthn
    // relying party, so the browser uses localhost (any port, for tests only).
    inst.configure(|t| Instance::set(t, "server", "public_url", "http://localhost".into()));
    let s = inst.start();
    // An alert for the admin to acknowledge: a burst of failed logins on one account.
    for _ in 0..5 {
        let r = s
            .http
            .post(format!("{}/api/v1/session", s.url))
            .json(&serde_json::json!({"username": "victim", "password": "not the password at all", "client": "bearer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    let p = s.create(&patient("Uitestfamily", "Anna")).await;
    add_user(&inst.dir, "anna", "patient", &["--patient", p["id"].as_str().unwrap()]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let out = Command::new("node")
        .arg(e2e.join("ui.mjs"))
        .env("BASE_URL", s.url.replace("127.0.0.1", "localhost"))
        .env("CLINICIAN", "clin1")
        .env("RECEPTION", "desk")
        .env("PASSWORD", crate::common::PASSWORD)
        .env("PATIENT_FAMILY", "Uitestfamily")
        .env("PATIENT_USER", "anna")
        .env("CLINICIAN_NAME", "Test Clinician")
        .env("ADMIN", "admin1")
        .env("CLINICIAN2", "clin2")
        .env("CLINICIAN2_NAME", "Second Clinician")
        .env("AUDITOR", "audi")
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    s.stop();
    assert!(out.status.success() && said.contains("all expectations met"), "{said}");
    for shot in [
        "login.png",
        "mfa-clinician.png",
        "patients.png",
        "chart.png",
        "reception-note-refused.png",
        "access-log.png",
        "register.png",
        "reception-patient.png",
        "schedule.png",
        "booking-form.png",
        "calendar-week-reception.png",
        "calendar-week-en-1280.png",
        "calendar-week-fi-375.png",
        "calendar-day-en-375.png",
        "calendar-day-fi-1280.png",
        "admin-hours.png",
        "calendar-hours.png",
        "calendar-hours-375.png",
    ] {
        assert!(shots.join(shot).exists(), "screenshot {shot}");
    }
}

/// Behind an HTTPS proxy (`server.public_url = https://…`) pages carry HSTS and
/// the cookies are `Secure`; over plain loopback HTTP neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_over_https_carry_hsts_and_secure_cookies() {
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let r = s.http.get(format!("{}/login", s.url)).send().await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    s.stop();
    inst.configure(|t| Instance::set(t, "server", "public_url", "https://records.clinic.example".into()));
    let s = inst.start();
    let r = s.http.get(format!("{}/login", s.url)).send().await.unwrap();
    assert!(r.headers()["strict-transport-security"].to_str().unwrap().contains("max-age=31536000"));
    let page_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(page_cookie.starts_with("confidant_login=") && page_cookie.contains("; Secure"), "{page_cookie}");
    let r = Browser::anonymous(&s)
        .await
        .login(&format!("username=clin1&password={}", crate::common::PASSWORD.replace(' ', "+")))
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let names: Vec<&str> = cookies.iter().filter_map(|c| c.split('=').next()).collect();
    assert_eq!(names, ["confidant_session", "confidant_csrf", "confidant_login"], "{cookies:?}");
    for c in &cookies {
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("; Secure"), "{c}");
    }
    s.stop();
}

/// A signed-in browser, as cookies: a login through the pages (with TOTP enrolment
/// for staff), giving the `Cookie` header and the CSRF token its forms carry.
pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
    /// The recovery codes shown at TOTP enrolment (each signs in once).
    recovery: Vec<String>,
}

fn set_cookies(r: &reqwest::Response) -> std::collections::BTreeMap<String, String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next()?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

impl Browser {
    pub(crate) async fn anonymous(s: &crate::common::Server) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { http, base: s.url.clone(), cookie: String::new(), csrf: String::new(), recovery: Vec::new() }
    }

    /// Post the sign-in form as a browser does: load it first (its token and cookie).
    pub(crate) async fn login(&self, form: &str) -> reqwest::Response {
        let page = self.get("/login").await;
        let cookie = set_cookies(&page)["confidant_login"].clone();
        let html = page.text().await.unwrap();
        let token = html.split("name=\"form\" value=\"").nth(1).unwrap().split('"').next().unwrap();
        self.http
            .post(format!("{}/login", self.base))
            .header("cookie", format!("confidant_login={cookie}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("form={token}&{form}"))
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn sign_in(s: &crate::common::Server, username: &str) -> Browser {
        let mut b = Browser::anonymous(s).await;
        let body = format!("username={username}&password={}", crate::common::PASSWORD.replace(' ', "+"));
        let r = b.login(&body).await;
        assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "{username} signs in");
        let to = r.headers()["location"].to_str().unwrap().to_owned();
        let c = set_cookies(&r);
        b.cookie = format!("confidant_session={}; confidant_csrf={}", c["confidant_session"], c["confidant_csrf"]);
        b.csrf = c["confidant_csrf"].clone();
        if to == "/mfa" {
            let page = b.get("/mfa").await.text().await.unwrap();
            let secret = page.split("<code id=\"secret\">").nth(1).unwrap().split('<').next().unwrap();
            let secret = confidant_vault::totp::TotpSecret::from_bytes(
                &data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap(),
            );
            let code = confidant_vault::totp::code_at(&secret, crate::access::now_secs());
            let r = b.post_raw("/mfa", &format!("csrf={}&code={code}", b.csrf)).await;
            assert_eq!(r.status(), reqwest::StatusCode::OK, "{username} enrols TOTP");
            // The enrolment session is replaced by a new one: new cookies.
            let c = set_cookies(&r);
            b.cookie = format!("confidant_session={}; confidant_csrf={}", c["confidant_session"], c["confidant_csrf"]);
            b.csrf = c["confidant_csrf"].clone();
            let page = r.text().await.unwrap();
            b.recovery = page.split("<li><code>").skip(1).map(|c| c.split('<').next().unwrap().to_owned()).collect();
        }
        b
    }

    /// The same session with its pages in `lang` (the language cookie).
    pub(crate) fn in_language(&self, lang: &str) -> Browser {
        Browser {
            http: self.http.clone(),
            base: self.base.clone(),
            cookie: format!("{}; confidant_lang={lang}", self.cookie),
            csrf: self.csrf.clone(),
            recovery: Vec::new(),
        }
    }

    /// The same session against `s` (the instance's server started again).
    pub(crate) fn against(&self, s: &crate::common::Server) -> Browser {
        Browser { base: s.url.clone(), ..self.in_language("en") }
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap()
    }

    pub(crate) async fn post_raw(&self, path: &str, form: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.base)).header("cookie", &self.cookie).json(body).send().await.unwrap()
    }

    /// The `Cookie` header of this session (for a real browser to continue it).
    pub(crate) fn cookie_header(&self) -> &str {
        &self.cookie
    }

    /// A form post with this session's CSRF token.
    pub(crate) async fn post(&self, path: &str, form: &str) -> reqwest::Response {
        self.post_raw(path, &format!("csrf={}&{form}", self.csrf)).await
    }
}

/// Every page against every role, the wrong patient, no session and hostile input,
/// over plain HTTP (the browser test covers the main paths).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_refuse_the_wrong_role_the_wrong_patient_no_session_and_hostile_input() {
    use reqwest::StatusCode as S;
    let inst = Instance::new(Db::Sqlite).await;
    for (u, role, extra) in [
        ("clin2", "clinician", vec!["--name", "Second Clinician"]),
        ("desk", "reception", vec![]),
        ("audi", "auditor", vec![]),
    ] {
        add_user(&inst.dir, u, role, &extra);
    }
    let clin2_token = crate::common::create_token(&inst.dir, "clin2", "user/*.*");
    let s = inst.start();
    let p1 = s.create(&patient("Pageowner", "Ulla")).await["id"].as_str().unwrap().to_owned();
    let n1 = s.create(&crate::common::note(&p1, "a private session note")).await["id"].as_str().unwrap().to_owned();
    let p2 = s.create_as(&clin2_token, &patient("Otherowner", "Olli")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "ulla", "patient", &["--patient", &p1]);
    let mut users = std::collections::BTreeMap::new();
    for u in ["clin1", "clin2", "desk", "admin1", "audi", "ulla"] {
        users.insert(u, Browser::sign_in(&s, u).await);
    }
    let pages: [(&str, &[&str]); 23] = [
        ("/calendar", &["clin1", "clin2", "desk"]),
        ("/calendar?view=week&date=2026-12-14", &["clin1", "clin2", "desk"]),
        ("/patients", &["clin1", "clin2", "desk"]),
        ("/me/passkeys", &["clin1", "clin2", "desk", "admin1", "audi"]),
        (&format!("/notes/{n1}/edit"), &["clin1"]),
        ("/admin/accounts", &["admin1"]),
        ("/admin/tokens", &["admin1"]),
        ("/admin/care-teams", &["admin1", "desk"]),
        (&format!("/admin/care-teams?patient={p1}"), &["admin1", "desk"]),
        ("/admin/keys", &["admin1"]),
        ("/admin/posture", &["admin1"]),
        ("/audit/incident", &["audi"]),
        ("/audit/incident/report", &["audi"]),
        ("/schedule", &["clin1", "clin2"]),
        ("/register", &["clin1", "clin2", "desk"]),
        ("/admin", &["admin1"]),
        ("/audit", &["audi"]),
        ("/me/access-log", &["ulla"]),
        ("/me/data", &["ulla"]),
        ("/me/appointments", &["ulla"]),
        (&format!("/patients/{p1}"), &["clin1", "desk"]),
        (&format!("/notes/{n1}"), &["clin1"]),
        ("/", &["clin1", "clin2", "desk", "admin1", "audi", "ulla"]),
    ];
    for (page, allowed) in &pages {
        for (who, b) in &users {
            let r = b.get(page).await;
            let st = r.status();
            let ok = if *page == "/" { st == S::SEE_OTHER || st == S::OK } else { st == S::OK };
            if allowed.contains(who) {
                assert!(ok, "{who} GET {page}: {st}");
            } else {
                assert!(st == S::FORBIDDEN || st == S::NOT_FOUND, "{who} GET {page}: {st}");
                let text = r.text().await.unwrap();
                assert!(!text.contains("Pageowner") && !text.contains("private session note"), "{who} {page}: {text}");
            }
        }
        // No session: to the sign-in page.
        let r = Browser::anonymous(&s).await.get(page).await;
        assert_eq!(
            (r.status(), r.headers().get("location").map(|l| l.to_str().unwrap())),
            (S::SEE_OTHER, Some("/login")),
            "{page}"
        );
    }
    // Login CSRF: a sign-in post without the form's token (or with another browser's) is refused
    // before any password is tried, and sets no session.
    let body = format!("username=clin1&password={}", crate::common::PASSWORD.replace(' ', "+"));
    for cookie in ["", "confidant_login=0123456789abcdef0123456789abcdef"] {
        let r = Browser::anonymous(&s)
            .await
            .http
            .post(format!("{}/login", s.url))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("form=fedcba9876543210fedcba9876543210&{body}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::FORBIDDEN, "cookie {cookie:?}");
        assert!(
            r.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("confidant_session"))
        );
    }
    // The wrong patient: another clinician's chart is a 404 offering break-glass, with
    // nothing of the patient; their note URL is a plain 404; writing into it is refused.
    let r = users["clin2"].get(&format!("/patients/{p1}")).await;
    assert_eq!(r.status(), S::NOT_FOUND);
    let text = r.text().await.unwrap();
    assert!(text.contains("break the glass") && !text.contains("Pageowner"), "{text}");
    let before = s.get_json(&format!("DocumentReference?patient={p1}")).await.1["total"].clone();
    let r = users["clin2"].post(&format!("/patients/{p1}/notes"), "text=written+into+someone+else%27s+chart").await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    assert_eq!(users["clin1"].get(&format!("/patients/{p2}")).await.status(), S::NOT_FOUND);
    // Posts: no session → sign in; no CSRF token → refused; nothing saved either way.
    for (path, form) in [
        (format!("/patients/{p1}/notes"), "text=forged".to_owned()),
        ("/register".to_owned(), "given=A&family=B&birth=1990-01-01".to_owned()),
        (format!("/patients/{p1}/appointments"), "practitioner=Practitioner/x&date=2026-12-14&time=09:00".to_owned()),
        ("/appointments/x/cancel".to_owned(), "reason=pat".to_owned()),
        ("/appointments/x/no-show".to_owned(), String::new()),
        ("/appointments/x/reschedule".to_owned(), "date=2026-12-15&time=09:00".to_owned()),
        (format!("/patients/{p1}/break-glass"), "reason=an+urgent+reason+of+some+length".to_owned()),
        ("/alerts/0123456789abcdef0123456789abcdef/acknowledge".to_owned(), String::new()),
        (format!("/notes/{n1}"), "text=overwritten&version=1".to_owned()),
        ("/admin/accounts".to_owned(), "role=admin".to_owned()),
        (format!("/admin/accounts/{}", users_id(&users["admin1"], "clin1").await), "change=disable".to_owned()),
        ("/admin/tokens".to_owned(), "user=x&label=y&scopes=user%2F*.read&days=3".to_owned()),
        ("/admin/tokens/abcdef123456/revoke".to_owned(), String::new()),
        ("/admin/care-teams".to_owned(), format!("patient={p2}&practitioner=Practitioner/x")),
    ] {
        let r = Browser::anonymous(&s).await.post_raw(&path, &form).await;
        assert_eq!(r.status(), S::SEE_OTHER, "{path} without a session");
        let who = if path.contains("acknowledge") || path.starts_with("/admin") {
            "admin1"
        } else if path.contains("break-glass") {
            "clin2"
        } else {
            "clin1"
        };
        let r = users[who].post_raw(&path, &form).await;
        assert_eq!(r.status(), S::FORBIDDEN, "{who} {path} without the CSRF token");
    }
    assert_eq!(s.get_json(&format!("DocumentReference?patient={p1}")).await.1["total"], before, "nothing was saved");
    assert!(!users["clin1"].get(&format!("/notes/{n1}")).await.text().await.unwrap().contains("overwritten"));
    let accounts = users["admin1"].get("/admin/accounts").await.text().await.unwrap();
    assert!(!accounts.contains("enrolment-code") && !accounts.contains(">disabled<"), "no invitation, nobody disabled");
    // The wrong role, with a valid CSRF token: refused, nothing changed.
    let clin1_id = users_id(&users["admin1"], "clin1").await;
    for (who, path, form) in [
        ("clin1", format!("/admin/accounts/{clin1_id}"), "change=disable".to_owned()),
        ("desk", "/admin/accounts".to_owned(), "role=admin".to_owned()),
        ("audi", "/admin/tokens".to_owned(), format!("user={clin1_id}&label=x&scopes=user%2F*.*&days=3")),
        ("clin2", "/admin/care-teams".to_owned(), format!("patient={p1}&practitioner=Practitioner/x")),
        ("desk", format!("/notes/{n1}"), "text=overwritten&version=1".to_owned()),
        ("admin1", format!("/patients/{p1}/notes"), "text=an+admin+note".to_owned()),
    ] {
        let r = users[who].post(&path, &form).await;
        assert_eq!(r.status(), S::FORBIDDEN, "{who} {path}");
        assert!(!r.text().await.unwrap().contains("enrol_"), "{who} {path}: no enrolment code");
    }
    assert!(users["clin1"].get("/patients").await.status() == S::OK, "clin1 is still enabled");
    assert!(!users["clin1"].get(&format!("/notes/{n1}")).await.text().await.unwrap().contains("overwritten"));
    // Hostile input: clear refusals, never a 500, markup never echoed as markup.
    let c = &users["clin1"];
    for path in [
        "/patients/..%2F..%2Fetc%2Fpasswd",
        "/notes/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &format!("/notes/{}", "a".repeat(5000)),
    ] {
        let r = c.get(path).await;
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
        assert!(!r.text().await.unwrap().contains("<script>alert"), "{path}");
    }
    let r = c.get("/patients?q=%27%20OR%201%3D1--%20%3Cscript%3E").await;
    assert_eq!(r.status(), S::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("No patients found") && !text.contains("<script>"), "{text}");
    let d = &users["desk"];
    for form in ["given=A&family=B&birth=not-a-date", "given=&family=&birth=1990-01-01"] {
        assert_eq!(d.post("/register", form).await.status(), S::BAD_REQUEST, "{form}");
    }
    let r =
        d.post(&format!("/patients/{p1}/appointments"), "practitioner=Practitioner/x&date=2026-13-45&time=25:99").await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    let a = &users["admin1"];
    for (path, form) in [
        (format!("/admin/accounts/{clin1_id}"), "change=drop-table"),
        ("/admin/accounts/%3Cscript%3E".to_owned(), "change=disable"),
        ("/admin/accounts".to_owned(), "role=%3Cscript%3E"),
        ("/admin/tokens".to_owned(), "user=x&label=y&scopes=%3Cscript%3E&days=3"),
        (
            "/admin/tokens".to_owned(),
            &*Box::leak(format!("user={clin1_id}&label=y&scopes=user%2F*.read&days=0").into_boxed_str()),
        ),
        (
            "/admin/tokens".to_owned(),
            &*Box::leak(format!("user={clin1_id}&label=y&scopes=%3Cb%3E&days=3").into_boxed_str()),
        ),
        ("/admin/care-teams".to_owned(), "patient=..%2F..&practitioner=Practitioner/x"),
    ] {
        let r = a.post(&path, form).await;
        assert!(r.status().is_client_error(), "{path} {form}: {}", r.status());
        let text = r.text().await.unwrap();
        assert!(!text.contains("<script>") && !text.contains("<b>") && !text.contains("cnf_"), "{path}: {text}");
    }
    // The language switch goes back to our own pages only (never another site); anything
    // but `fi` is English. An enrolment attempt with a hostile code is refused, not echoed.
    let anon = Browser::anonymous(&s).await;
    for (query, to, lang) in [
        ("to=fi&back=/patients", "/patients", "fi"),
        ("to=fi&back=//evil.example/x", "/", "fi"),
        ("to=fi&back=https://evil.example", "/", "fi"),
        ("to=%3Cscript%3E&back=/%0d%0aSet-Cookie:x=1", "/", "en"),
    ] {
        let r = anon.get(&format!("/lang?{query}")).await;
        assert_eq!(r.status(), S::SEE_OTHER, "{query}");
        assert_eq!(r.headers()["location"], to, "{query}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.starts_with(&format!("confidant_lang={lang};")) && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
    }
    let r = anon.post_raw("/enrol", "code=%3Cscript%3E&username=newbie&password=a+long+enough+password+1").await;
    assert_eq!(r.status(), S::FORBIDDEN);
    assert!(!r.text().await.unwrap().contains("<script>"));
    for path in ["/admin/care-teams?patient=%3Cscript%3E", "/audit/incident/report?from=yesterday"] {
        let who = if path.starts_with("/admin") { a } else { &users["audi"] };
        let r = who.get(path).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{path}");
        assert!(!r.text().await.unwrap().contains("<script>"), "{path}");
    }
    s.stop();
}

/// A user's id, read off the admin's accounts page (the row with their username).
pub(crate) async fn users_id(admin: &Browser, username: &str) -> String {
    let page = admin.get("/admin/accounts").await.text().await.unwrap();
    let row = page.split(&format!("<td>{username}</td>")).nth(1).unwrap_or_else(|| panic!("{username} in {page}"));
    row.split("action=\"/admin/accounts/").nth(1).unwrap().split('"').next().unwrap().to_owned()
}

/// The admin's pages change accounts, tokens and care teams for real, each
/// change recorded as the admin's; the admin cannot lock themselves out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_manages_accounts_tokens_and_care_teams_from_the_pages() {
    use reqwest::StatusCode as S;
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    let s = inst.start();
    let p1 = s.create(&patient("Teamowner", "Tove")).await["id"].as_str().unwrap().to_owned();
    let admin = Browser::sign_in(&s, "admin1").await;
    let mut desk = Browser::sign_in(&s, "desk").await;
    let clin2 = Browser::sign_in(&s, "clin2").await;
    let desk_id = users_id(&admin, "desk").await;
    let admin_id = users_id(&admin, "admin1").await;

    // Disable: the desk's session ends at once and they cannot sign in; enable: they can.
    assert_eq!(admin.post(&format!("/admin/accounts/{desk_id}"), "change=disable").await.status(), S::SEE_OTHER);
    assert_eq!(desk.get("/patients").await.headers()["location"], "/login", "the disabled account's session ended");
    let password = crate::common::PASSWORD.replace(' ', "+");
    let mut login = || format!("username=desk&password={password}&code={}", desk.recovery.pop().unwrap());
    assert_eq!(Browser::anonymous(&s).await.login(&login()).await.status(), S::UNAUTHORIZED);
    assert!(admin.get("/admin/accounts").await.text().await.unwrap().contains("disabled"));
    assert_eq!(admin.post(&format!("/admin/accounts/{desk_id}"), "change=enable").await.status(), S::SEE_OTHER);
    assert_eq!(Browser::anonymous(&s).await.login(&login()).await.status(), S::SEE_OTHER);
    // Nobody disables themselves or resets their own second factor.
    for change in ["disable", "reset-second-factor"] {
        let r = admin.post(&format!("/admin/accounts/{admin_id}"), &format!("change={change}")).await;
        assert_eq!(r.status(), S::FORBIDDEN, "{change} of one's own account");
    }
    assert_eq!(admin.get("/admin/accounts").await.status(), S::OK, "the admin is still signed in");

    // An invitation: a one-time code, shown once, with which someone creates their account.
    let page = admin.post("/admin/accounts", "role=auditor").await.text().await.unwrap();
    let code = page.split("<code id=\"enrolment-code\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let anon = Browser::anonymous(&s).await;
    let enrol = format!("code={code}&username=newaudit&password={}", crate::common::PASSWORD.replace(' ', "+"));
    let r = anon.post_raw("/enrol", &enrol).await;
    assert_eq!(r.status(), S::OK);
    assert!(r.text().await.unwrap().contains("Your account is ready"));
    let again = anon.post_raw("/enrol", &enrol.replace("newaudit", "another")).await;
    assert_eq!(again.status(), S::FORBIDDEN, "the code works once");
    let _new_auditor = Browser::sign_in(&s, "newaudit").await;
    assert!(admin.post("/admin/accounts", "role=clinician").await.status().is_client_error(), "clinicians are linked");

    // Tokens act as their account: not for a clinician (their notes) from this page.
    let clin1_id = users_id(&admin, "clin1").await;
    let r = admin.post("/admin/tokens", &format!("user={clin1_id}&label=x&scopes=user%2F*.read&days=3")).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    assert!(!r.text().await.unwrap().contains("cnf_"), "no token shown");
    // A token for the desk (reading only what an admin reads: pentest_reach has the
    // rest): it works on the API until the admin revokes it.
    let form = format!("user={desk_id}&label=booking+kiosk&scopes=user%2FCareTeam.read&days=3");
    let page = admin.post("/admin/tokens", &form).await.text().await.unwrap();
    let token = page.split("<code id=\"new-token\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let api = |t: String| {
        let http = s.http.clone();
        let url = format!("{}/fhir/r4/CareTeam?patient={p1}", s.url);
        async move { http.get(url).bearer_auth(t).send().await.unwrap().status() }
    };
    assert_eq!(api(token.clone()).await, S::OK);
    let id = page.split("<h2>New token ").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let page = admin.get("/admin/tokens").await.text().await.unwrap();
    assert!(page.contains("booking kiosk") && !page.contains(&token), "the token is listed, its secret never again");
    assert_eq!(admin.post(&format!("/admin/tokens/{id}/revoke"), "").await.status(), S::SEE_OTHER);
    assert_eq!(api(token).await, S::UNAUTHORIZED, "a revoked token opens nothing");

    // Care teams: clin2 opens the chart only while in the patient's care team.
    assert_eq!(clin2.get(&format!("/patients/{p1}")).await.status(), S::NOT_FOUND);
    let page = admin.get(&format!("/admin/care-teams?patient={p1}")).await.text().await.unwrap();
    assert!(!page.contains("Teamowner"), "the admin sees ids, not names");
    let clin2_practitioner = page.split("<option value=\"").find(|o| o.contains("Second Clinician")).unwrap();
    let clin2_practitioner = clin2_practitioner.split('"').next().unwrap().to_owned();
    let form = format!("patient={p1}&practitioner={clin2_practitioner}");
    assert_eq!(admin.post("/admin/care-teams", &form).await.status(), S::SEE_OTHER);
    assert_eq!(clin2.get(&format!("/patients/{p1}")).await.status(), S::OK, "in the care team now");
    let form = format!("practitioner={clin2_practitioner}");
    assert_eq!(admin.post(&format!("/admin/care-teams/{p1}/remove"), &form).await.status(), S::SEE_OTHER);
    assert_eq!(clin2.get(&format!("/patients/{p1}")).await.status(), S::NOT_FOUND, "out again");

    // Keys and posture: versions and findings, no key material.
    let keys = admin.get("/admin/keys").await.text().await.unwrap();
    assert!(keys.contains("current: new keys are wrapped with it"), "{keys}");
    let posture = admin.get("/admin/posture").await.text().await.unwrap();
    for check in ["key-files", "audit-witness", "second-factor", "honey-records"] {
        assert!(posture.contains(check), "{check} in the posture page");
    }
    // Over plain HTTP without TLS the doctor's tls check is a finding, as on the command line.
    assert!(posture.contains("high-severity finding"), "{posture}");

    // Every change is in the audit log as the admin's (not the console's).
    let audi = Browser::sign_in(&s, "audi").await;
    for action in ["user-disable", "user-enable", "invite", "token-create", "token-revoke"] {
        let page = audi.get(&format!("/audit?action={action}&agent={admin_id}")).await.text().await.unwrap();
        assert!(page.contains(&format!("<td>{action}")), "{action} by the admin: {page}");
    }
    s.stop();
}

/// Notes: a draft stays a draft until finished; an edit never overwrites a
/// version saved meanwhile; every version is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_are_drafted_edited_and_never_overwritten() {
    use reqwest::StatusCode as S;
    let inst = Instance::new(Db::Sqlite).await;
    let s = inst.start();
    let p = s.create(&patient("Draftowner", "Dora")).await["id"].as_str().unwrap().to_owned();
    let c = Browser::sign_in(&s, "clin1").await;
    let r = c.post(&format!("/patients/{p}/notes"), "text=first+thoughts&status=draft").await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let (_, found) = s.get_json(&format!("DocumentReference?patient={p}")).await;
    let doc = &found["entry"][0]["resource"];
    assert_eq!(doc["docStatus"], "preliminary", "saved as a draft");
    let id = doc["id"].as_str().unwrap().to_owned();
    let chart = c.get(&format!("/patients/{p}")).await.text().await.unwrap();
    assert!(chart.contains("Draft") && chart.contains(&format!("/notes/{id}/edit")), "{chart}");
    let edit = c.get(&format!("/notes/{id}/edit")).await.text().await.unwrap();
    assert!(edit.contains("first thoughts") && edit.contains("name=\"version\" value=\"1\""));
    // Someone else's save lands first (here: the same clinician in another tab).
    assert_eq!(c.post(&format!("/notes/{id}"), "text=second+tab&status=draft&version=1").await.status(), S::SEE_OTHER);
    let r = c.post(&format!("/notes/{id}"), "text=my+finished+note&status=final&version=1").await;
    assert_eq!(r.status(), S::CONFLICT, "a stale edit is not saved");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("my finished note") && page.contains("Nothing was overwritten"),
        "the text as typed comes back"
    );
    assert!(page.contains("name=\"version\" value=\"2\""), "the form now starts from the saved version");
    let (_, now) = s.get_json(&format!("DocumentReference/{id}")).await;
    assert_eq!(now["meta"]["versionId"], "2");
    assert_eq!(now["docStatus"], "preliminary");
    assert_eq!(
        c.post(&format!("/notes/{id}"), "text=my+finished+note&status=final&version=2").await.status(),
        S::SEE_OTHER
    );
    let (_, done) = s.get_json(&format!("DocumentReference/{id}")).await;
    assert_eq!(done["docStatus"], "final");
    let (_, history) = s.get_json(&format!("DocumentReference/{id}/_history")).await;
    assert_eq!(history["total"], 3, "every version is kept");
    let chart = c.get(&format!("/patients/{p}")).await.text().await.unwrap();
    assert!(chart.contains("my finished note") && chart.contains("edited") && !chart.contains(">Draft<"), "{chart}");
    s.stop();
}

/// The auditor downloads the incident report (JSON and CSV): exactly the
/// patients read, by whom; making it is recorded; nobody else gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_downloads_the_incident_report() {
    use reqwest::StatusCode as S;
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "audi", "auditor", &[]);
    let s = inst.start();
    let read = s.create(&patient("Readone", "Rita")).await["id"].as_str().unwrap().to_owned();
    let c = Browser::sign_in(&s, "clin1").await;
    assert_eq!(c.get(&format!("/patients/{read}")).await.status(), S::OK);
    let a = Browser::sign_in(&s, "audi").await;
    let r = a.get("/audit/incident/report?format=json").await;
    assert_eq!(r.status(), S::OK);
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("incident-report.json"));
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["type"], "confidant-incident-report");
    let patients = report["patients"].as_array().unwrap();
    let mine = patients.iter().find(|p| p["patient"] == format!("Patient/{read}")).expect("the patient read is listed");
    assert_eq!(mine["disclosed"], true);
    assert!(
        mine["by"].as_array().unwrap().iter().any(|b| b["role"] == "clinician" && b["accesses"].as_u64() >= Some(1))
    );
    assert!(!serde_json::to_string(&report).unwrap().contains("Readone"), "ids only");
    let csv = a.get("/audit/incident/report?format=csv").await.text().await.unwrap();
    assert!(csv.starts_with("patient,honey_record,actor") && csv.contains(&read), "{csv}");
    let log = a.get("/audit?action=audit-access").await.text().await.unwrap();
    assert_eq!(log.matches("<td class=\"wrap\">incident-report</td>").count(), 2, "making each report is recorded");
    for who in [c, Browser::sign_in(&s, "admin1").await] {
        assert_eq!(who.get("/audit/incident/report").await.status(), S::FORBIDDEN);
    }
    s.stop();
}

/// The passkey endpoints: JSON only (no cross-site form reaches them), the
/// session's CSRF token for registration, staff only, a wrong password never
/// reaches the passkey step, forged or replayed answers open nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_endpoints_refuse_forms_forgeries_wrong_roles_and_no_session() {
    use reqwest::StatusCode as S;
    use serde_json::json;
    let inst = Instance::new(Db::Sqlite).await;
    inst.configure(|t| Instance::set(t, "server", "public_url", "http://localhost".into()));
    let s = inst.start();
    let p = s.create(&patient("Keyowner", "Kim")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "kim", "patient", &["--patient", &p]);
    let c = Browser::sign_in(&s, "clin1").await;
    let anon = Browser::anonymous(&s).await;
    let password = crate::common::PASSWORD;

    // A form post (what a cross-site page could send) is not JSON: refused.
    let r = anon.post_raw("/login/passkey/begin", "x=1").await;
    assert_eq!(r.status(), S::UNSUPPORTED_MEDIA_TYPE);
    // The challenge names no account: nothing to learn from it.
    let begun: serde_json::Value = anon.post_json("/login/passkey/begin", &json!({})).await.json().await.unwrap();
    assert!(begun["options"]["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty), "{begun}");
    // The password and the answer together: wrong password, right password with a forged
    // answer, an unknown or used ceremony — one answer, no cookie.
    let forged_answer = json!({"id": "eA", "rawId": "eA", "type": "public-key",
        "response": {"authenticatorData": "AA", "clientDataJSON": "e30", "signature": "AA", "userHandle": "AA"}});
    let handle = begun["handle"].as_str().unwrap().to_owned();
    for (h, pw) in [(handle.as_str(), "wrong"), (handle.as_str(), password), ("<script>", password)] {
        let body = json!({"handle": h, "answer": forged_answer, "username": "clin1", "password": pw});
        let r = anon.post_json("/login/passkey/finish", &body).await;
        assert_eq!(r.status(), S::UNAUTHORIZED, "{h} {pw}");
        assert!(r.headers().get("set-cookie").is_none());
        let text = r.text().await.unwrap();
        assert!(text.contains("Wrong username, password or passkey.") && !text.contains("<script>"), "{text}");
    }
    let r = anon.post_json("/login/passkey/finish", &json!({"handle": 7})).await;
    assert!(r.status().is_client_error(), "malformed JSON: {}", r.status());
    // A malformed answer with the right password (another account: clin1 has had its
    // share of failures): refused, and neither what the client sent nor the password
    // reaches the server's log.
    let (h, _) = {
        let b: serde_json::Value = anon.post_json("/login/passkey/begin", &json!({})).await.json().await.unwrap();
        (b["handle"].as_str().unwrap().to_owned(), ())
    };
    let body = json!({"handle": h, "username": "admin1", "password": password,
        "answer": {"id": "eA", "rawId": "eA", "type": "public-key", "response": "Sensitive-Marker-Text"}});
    assert_eq!(anon.post_json("/login/passkey/finish", &body).await.status(), S::UNAUTHORIZED);

    // Registration: no session → sign in; no CSRF token → refused; a patient → not for them.
    let r = anon.post_json("/me/passkeys/begin", &json!({"csrf": "x"})).await;
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (S::SEE_OTHER, "/login"));
    assert_eq!(c.post_json("/me/passkeys/begin", &json!({})).await.status(), S::FORBIDDEN);
    assert_eq!(c.post_json("/me/passkeys/begin", &json!({"csrf": "not-the-token"})).await.status(), S::FORBIDDEN);
    let kim = Browser::sign_in(&s, "kim").await;
    assert_eq!(kim.post_json("/me/passkeys/begin", &json!({"csrf": kim.csrf})).await.status(), S::FORBIDDEN);
    assert_eq!(kim.get("/me/passkeys").await.status(), S::FORBIDDEN);
    // A real ceremony for clin1: the options name our site; a forged answer stores nothing.
    // A fresh second factor is needed: a session (even with its CSRF token) is not enough.
    let r = c.post_json("/me/passkeys/begin", &json!({"csrf": c.csrf, "code": "000000"})).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    let mut c = c;
    let code = c.recovery.pop().unwrap();
    let r = c.post_json("/me/passkeys/begin", &json!({"csrf": c.csrf, "code": code})).await;
    assert_eq!(r.status(), S::OK);
    let begun: serde_json::Value = r.json().await.unwrap();
    assert_eq!(begun["options"]["publicKey"]["rp"]["id"], "localhost");
    let handle = begun["handle"].as_str().unwrap();
    // Another staff member cannot finish clin1's ceremony.
    let desk_in = {
        add_user(&inst.dir, "desk", "reception", &[]);
        Browser::sign_in(&s, "desk").await
    };
    let forged = json!({"csrf": desk_in.csrf, "handle": handle, "label": "mine now",
        "answer": {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
                   "response": {"attestationObject": "o2NmbXRkbm9uZQ", "clientDataJSON": "e30"}}});
    let r = desk_in.post_json("/me/passkeys/finish", &forged).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    let mut mine = forged.clone();
    mine["csrf"] = json!(c.csrf);
    let r = c.post_json("/me/passkeys/finish", &mine).await;
    assert_eq!(r.status(), S::BAD_REQUEST, "the ceremony was used up by the other session's attempt");
    let page = c.get("/me/passkeys").await.text().await.unwrap();
    assert!(page.contains("No passkeys yet."), "nothing was stored");
    // Removing a passkey that is not yours: not found; without the CSRF token: refused.
    assert_eq!(c.post("/me/passkeys/abcdef0123456789/remove", "").await.status(), S::NOT_FOUND);
    assert_eq!(c.post_raw("/me/passkeys/abcdef0123456789/remove", "").await.status(), S::FORBIDDEN);
    let logs = s.output();
    assert!(logs.contains("passkey answer refused"), "the refusal is logged");
    for never in ["Sensitive-Marker-Text", password] {
        assert!(!logs.contains(never), "the log holds {never:?}");
    }
    s.stop();
}
