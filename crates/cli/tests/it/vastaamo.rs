//! The Vastaamo test: a thief with a copy of the data directory, a database
//! dump or the logs finds none of the clinical text, in any common encoding.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, files_under, random_hex, run_stdin};

/// A canary: a random mixed-case string that cannot occur by chance.
pub fn canary() -> String {
    format!("CnRy{}", random_hex(10).to_uppercase())
}

/// Byte strings whose presence would reveal `canary`: raw, lower-cased,
/// base64 at each of the three alignments, hex, UTF-16 LE and BE.
fn needles(canary: &str) -> Vec<Vec<u8>> {
    let raw = canary.as_bytes();
    let mut out = vec![raw.to_vec(), canary.to_lowercase().into_bytes(), canary.to_uppercase().into_bytes()];
    for k in 0..3usize {
        let mut prefixed = vec![0u8; k];
        prefixed.extend_from_slice(raw);
        let enc = STANDARD.encode(&prefixed);
        let enc = enc.trim_end_matches('=');
        let start = (8 * k).div_ceil(6);
        out.push(enc.as_bytes()[start..enc.len() - 2].to_vec());
    }
    out.push(hex::encode(raw).into_bytes());
    out.push(hex::encode_upper(raw).into_bytes());
    out.push(canary.encode_utf16().flat_map(u16::to_le_bytes).collect());
    out.push(canary.encode_utf16().flat_map(u16::to_be_bytes).collect());
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every (place, canary) where a needle is found.
pub fn hits(places: &[(String, Vec<u8>)], canaries: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, bytes) in places {
        for c in canaries {
            if needles(c).iter().any(|n| contains(bytes, n)) {
                found.push(format!("{c} in {name}"));
            }
        }
    }
    found
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir).into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default())).collect()
}

#[test]
fn the_scanner_finds_what_it_should() {
    let c = canary();
    let note = STANDARD.encode(format!("ab{c}cd"));
    let utf16: Vec<u8> = c.encode_utf16().flat_map(u16::to_le_bytes).collect();
    for hay in [c.as_bytes().to_vec(), note.into_bytes(), hex::encode(c.as_bytes()).into_bytes(), utf16] {
        assert_eq!(hits(&[("x".into(), hay)], std::slice::from_ref(&c)).len(), 1);
    }
    assert!(hits(&[("x".into(), b"nothing here".to_vec())], &[c]).is_empty());
}

async fn no_plaintext_at_rest_or_in_logs(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let mut canaries = Vec::new();
    let mut c = || {
        let x = canary();
        canaries.push(x.clone());
        x
    };

    let practitioner = s
        .create_as(
            &s.admin_token,
            &json!({
                "resourceType": "Practitioner",
                "name": [{"family": c(), "given": [c()]}],
                "telecom": [{"system": "email", "value": format!("{}@example.fi", c())}],
                "qualification": [{"code": {"coding": [{"system": "urn:test:qualification", "code": c()}]}}]
            }),
        )
        .await;
    let mut patient_ids = Vec::new();
    let mut family_names = Vec::new();
    for _ in 0..3 {
        let family = c();
        family_names.push(family.clone());
        let p = s
            .create(&json!({
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.246.21", "value": c()}],
                "name": [{"family": family, "given": [c(), c()], "text": c()}],
                "telecom": [
                    {"system": "email", "value": format!("{}@example.fi", c())},
                    {"system": "phone", "value": c()}
                ],
                "birthDate": "1911-07-13",
                "address": [{"line": [c()], "city": c(), "postalCode": c()}],
                "maritalStatus": {"coding": [{"system": "urn:test:marital", "code": c()}]},
                "contact": [{"name": {"family": c()}, "telecom": [{"system": "phone", "value": c()}]}]
            }))
            .await;
        let pid = p["id"].as_str().unwrap().to_owned();
        let enc = s
            .create(&json!({
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [{"text": c()}],
                "reasonCode": [{"text": c()}],
                "subject": {"reference": format!("Patient/{pid}")},
                "participant": [{"individual": {"reference": format!("Practitioner/{}", practitioner["id"].as_str().unwrap())}}]
            }))
            .await;
        let text = format!("Session note. {} Client discussed {} at length. {}", c(), c(), c());
        let n = s
            .create(&json!({
                "resourceType": "DocumentReference", "status": "current",
                "description": c(),
                "type": {"text": c()},
                "subject": {"reference": format!("Patient/{pid}")},
                "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "title": c(), "data": STANDARD.encode(&text)}}],
                "context": {"encounter": [{"reference": format!("Encounter/{}", enc["id"].as_str().unwrap())}]}
            }))
            .await;
        // Update the note too, so that several versions exist.
        let mut n2 = n.clone();
        n2["description"] = json!(c());
        assert!(
            s.put(&format!("DocumentReference/{}", n["id"].as_str().unwrap()), &n2, None).await.status().is_success()
        );
        patient_ids.push(pid);
    }
    canaries.push("1911-07-13".into()); // the birth date

    // Credentials are canaries too: a username, a password, a TOTP secret
    // (as text and as raw bytes), recovery codes, session and CSRF tokens.
    let username = format!("cnry{}", random_hex(10));
    let password = canary();
    let out = run_stdin(
        &[
            "user",
            "add",
            "--dir",
            inst.dir.to_str().unwrap(),
            "--username",
            &username,
            "--role",
            "auditor",
            "--password-stdin",
        ],
        &format!("{password}\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = s
        .http
        .post(format!("{}/api/v1/session", s.url))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let session_token = cookie.trim_start_matches("confidant_session=").to_owned();
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    let api = |path: &str| {
        s.http
            .post(format!("{}/api/v1/{path}", s.url))
            .header("cookie", cookie.clone())
            .header("x-csrf-token", csrf.clone())
    };
    let enrol: Value = api("mfa/totp").send().await.unwrap().json().await.unwrap();
    let secret_b32 = enrol["secret"].as_str().unwrap().to_owned();
    let secret = confidant_vault::totp::TotpSecret::from_bytes(
        &data_encoding::BASE32_NOPAD.decode(secret_b32.as_bytes()).unwrap(),
    );
    // The server under test runs on the system clock: the test reads the same one.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let confirm: Value = api("mfa/totp/confirm")
        .json(&json!({"code": confidant_vault::totp::code_at(&secret, now)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recovery: Vec<String> =
        confirm["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    let raw_secret = secret.as_bytes().to_vec();
    // The secret's hex form is how a bytea column would show it in pg_dump.
    canaries.extend([username, password, secret_b32, session_token, csrf, hex::encode(&raw_secret)]);
    for code in recovery {
        canaries.push(code.replace('-', ""));
        canaries.push(code);
    }
    // Outcome measures: a PHQ-9 answered through the pages. The answers are the
    // instrument's own words (no client text to mark), so its item texts, answer
    // labels and codes are the canaries.
    let clin = crate::ui::Browser::sign_in(&s, "clin1").await;
    let r = clin.post(&format!("/patients/{}/measures", patient_ids[0]), "instrument=phq-9&action=now").await;
    let form = r.headers()["location"].to_str().unwrap().to_owned();
    let r = clin.post(&form, "1=2&2=2&3=2&4=2&5=2&6=2&7=2&8=2&9=2").await;
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "a PHQ-9 answered");
    let (_, scores) = s.get_json(&format!("Observation?patient={}", patient_ids[0])).await;
    assert_eq!(scores["entry"][0]["resource"]["valueInteger"], 18, "positive control: the score is there");
    canaries.extend(
        [
            "Thoughts that you would be better off dead",
            "More than half the days",
            "Little interest or pleasure",
            "44261-6",
            "moderately-severe",
            "needs-attention",
        ]
        .map(String::from),
    );
    // Positive control: the data is really there, and searchable.
    for (pid, family) in patient_ids.iter().zip(&family_names) {
        let (_, b) = s.get_json(&format!("Patient?family={}", family.to_lowercase())).await;
        assert_eq!(b["entry"][0]["resource"]["id"], Value::String(pid.clone()));
        let (_, notes) = s.get_json(&format!("DocumentReference?patient={pid}")).await;
        let data = notes["entry"][0]["resource"]["content"][0]["attachment"]["data"].as_str().unwrap();
        let text = String::from_utf8(STANDARD.decode(data).unwrap()).unwrap();
        assert!(text.starts_with("Session note. CnRy"));
    }
    let (st, _) = s.get_json(&format!("Patient?given={}", canaries[5])).await;
    assert!(st.is_success());

    // While the server runs: database, WAL, shared memory, everything under DIR.
    let running = files(&inst.dir);
    for (name, bytes) in &running {
        assert!(!contains(bytes, &raw_secret), "the raw TOTP secret is in {name}");
    }
    assert!(running.iter().any(|(n, _)| n.ends_with("confidant.db")) || db == Db::Postgres);
    assert_eq!(hits(&running, &canaries), Vec::<String>::new(), "plaintext in the data directory while running");
    let logs_running = vec![("server output".to_owned(), s.output().into_bytes())];
    assert!(!logs_running[0].1.is_empty(), "the server logged its requests");
    assert_eq!(hits(&logs_running, &canaries), Vec::<String>::new(), "plaintext in the server's output");

    let (out, err) = s.stop();
    let mut after = files(&inst.dir);
    after.push(("stdout".into(), std::fs::read(out).unwrap()));
    after.push(("stderr".into(), std::fs::read(err).unwrap()));
    assert_eq!(hits(&after, &canaries), Vec::<String>::new(), "plaintext after the server stopped");

    if let Some((url, _, _)) = &inst.pg {
        let dump = std::process::Command::new("pg_dump").arg(url).output().unwrap();
        assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
        assert!(dump.stdout.len() > 1000 && contains(&dump.stdout, b"resource_versions"));
        let dumps = vec![("pg_dump".to_owned(), dump.stdout)];
        assert_eq!(hits(&dumps, &canaries), Vec::<String>::new(), "plaintext in pg_dump");
    }
}
both_backends!(no_plaintext_at_rest_or_in_logs);
