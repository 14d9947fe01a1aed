//! The web UI in headless Chromium (tests/e2e/ui.mjs, playwright-core driving
//! Debian's chromium): sign-in with TOTP enrolment, a clinician writes a note
//! and reads it back as text, a form post without the CSRF token is refused,
//! reception cannot open the note's URL, the patient sees the clinician's read
//! in their access log and downloads their data, security headers on every page.
//! Screenshots land in target/screenshots (git-ignored).

use std::path::Path;
use std::process::Command;

use crate::common::{Db, Instance, add_user, patient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_chromium() {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
    let ready = Path::new("/usr/bin/chromium").exists()
        && e2e.join("node_modules/playwright-core").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ready {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "Chromium and playwright-core must be installed in CI"
        );
        eprintln!("\n*** SKIPPED ui::the_web_ui_in_chromium: install chromium and run `npm ci` in tests/e2e ***\n");
        return;
    }
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    add_user(&inst.dir, "victim", "clinician", &["--name", "Often Mistyped"]);
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
        .env("BASE_URL", &s.url)
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
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client
        .post(format!("{}/login", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username=clin1&password={}", crate::common::PASSWORD.replace(' ', "+")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("; Secure"), "{c}");
    }
    s.stop();
}

/// A signed-in browser, as cookies: a login through the pages (with TOTP enrolment
/// for staff), giving the `Cookie` header and the CSRF token its forms carry.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

fn set_cookies(r: &reqwest::Response) -> std::collections::BTreeMap<String, String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next()?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

impl Browser {
    async fn anonymous(s: &crate::common::Server) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { http, base: s.url.clone(), cookie: String::new(), csrf: String::new() }
    }

    async fn sign_in(s: &crate::common::Server, username: &str) -> Browser {
        let mut b = Browser::anonymous(s).await;
        let body = format!("username={username}&password={}", crate::common::PASSWORD.replace(' ', "+"));
        let r = b.post_raw("/login", &body).await;
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
        }
        b
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap()
    }

    async fn post_raw(&self, path: &str, form: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// A form post with this session's CSRF token.
    async fn post(&self, path: &str, form: &str) -> reqwest::Response {
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
    let pages: [(&str, &[&str]); 10] = [
        ("/patients", &["clin1", "clin2", "desk"]),
        ("/schedule", &["clin1", "clin2"]),
        ("/register", &["clin1", "clin2", "desk"]),
        ("/admin", &["admin1"]),
        ("/audit", &["audi"]),
        ("/me/access-log", &["ulla"]),
        ("/me/data", &["ulla"]),
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
        (format!("/patients/{p1}/break-glass"), "reason=an+urgent+reason+of+some+length".to_owned()),
        ("/alerts/0123456789abcdef0123456789abcdef/acknowledge".to_owned(), String::new()),
    ] {
        let r = Browser::anonymous(&s).await.post_raw(&path, &form).await;
        assert_eq!(r.status(), S::SEE_OTHER, "{path} without a session");
        let who = if path.contains("acknowledge") {
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
    s.stop();
}
