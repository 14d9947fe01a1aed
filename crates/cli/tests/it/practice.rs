//! A clinic's day in Chromium (issue 15, "must hold"; tests/e2e/practice.mjs):
//! reception registers a walk-in with a therapist and books a weekly series;
//! the therapist sees them on the week calendar without any admin step and
//! without an alert; a SOAP note is written, signed, refused editing and
//! corrected by an addendum; the patient answers a PHQ-9 in the portal and the
//! therapist sees the score and the trend. Screenshots in target/screenshots.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};

use crate::access::call;
use crate::common::{Db, Instance, add_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinics_day_in_chromium() {
    let Some(e2e) = crate::common::e2e_ready("practice::a_clinics_day_in_chromium") else { return };
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "therapist", "clinician", &["--name", "Tove Therapist"]);
    inst.configure(|t| Instance::set(t, "clinic", "time_zone", "UTC".into()));
    let s = inst.start();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let handshake = inst.logs_dir().join("patient-account-made");
    let mut node = Command::new("node")
        .arg(e2e.join("practice.mjs"))
        .env("BASE_URL", &s.url)
        .env("RECEPTION", "desk")
        .env("CLINICIAN", "therapist")
        .env("CLINICIAN_NAME", "Tove Therapist")
        .env("PATIENT_USER", "wendy")
        .env("PASSWORD", crate::common::PASSWORD)
        .env("SCREENSHOTS", &shots)
        .env("HANDSHAKE", &handshake)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Half way the script names the record reception registered: its portal account is made now.
    let mut said = String::new();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if let Some(id) = line.strip_prefix("PATIENT_ID=") {
            add_user(&inst.dir, "wendy", "patient", &["--patient", id.trim()]);
            std::fs::write(&handshake, b"ok").unwrap();
            break;
        }
    }
    for line in lines {
        said.push_str(&line.unwrap());
        said.push('\n');
    }
    let out = node.wait_with_output().unwrap();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    // No admin step and no alert: the therapist was on the care team from the booking on.
    let (st, alerts) = call(&s, Some(&inst.admin_token), Method::GET, "/api/v1/alerts?status=all", None).await;
    s.stop();
    assert!(out.status.success() && said.contains("all expectations met"), "{said}");
    assert_eq!(st, StatusCode::OK);
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 0, "no alert in a normal day: {alerts}");
    for shot in [
        "1-register",
        "2-book-series",
        "3-week-calendar",
        "3-week-calendar-375",
        "4-soap-form",
        "5-edit-refused",
        "6-signed-with-addendum",
        "7-portal-phq9",
        "8-score-and-trend",
    ] {
        assert!(shots.join(format!("practice-{shot}.png")).exists(), "{shot}");
    }
}
