//! `confidant demo` serves synthetic patients with a working token, and
//! Ctrl-C stops it cleanly and deletes its data.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::BIN;

#[tokio::test]
async fn demo_serves_and_stops_cleanly_on_ctrl_c() {
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut token, mut data) = (String::new(), String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(v) = line.trim().strip_prefix("FHIR API:") {
            url = v.trim().to_owned();
        } else if let Some(v) = line.trim().strip_prefix("API token:") {
            token = v.trim().to_owned();
        } else if let Some(v) = line.trim().strip_prefix("data:") {
            data = v.trim().split(' ').next().unwrap().to_owned();
        } else if line.starts_with("listening on") {
            break;
        }
    }
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(std::path::Path::new(&data).exists());
    let http = reqwest::Client::new();
    let b: Value =
        http.get(format!("{url}/Patient?_count=100")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(b["total"], 2, "the demo token is a clinician's: her own patients only");
    let b: Value = http
        .get(format!("{url}/DocumentReference?_count=1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(b["total"].as_i64().unwrap() >= 2);
    let r = http.get(format!("{url}/Patient")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Ctrl-C
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exited with {status}");
    assert!(rest.iter().any(|l| l.contains("temporary data deleted")), "{rest:?}");
    assert!(!std::path::Path::new(&data).exists(), "demo data must be deleted");
}
