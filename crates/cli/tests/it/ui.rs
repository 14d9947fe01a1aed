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
