//! Breach detection: a stolen session reading patients in a loop is locked and
//! reported (webhook, e-mail, incident report); honey records alert on every
//! path; a normal clinic day raises nothing; a dead webhook slows nobody and
//! gets every alert once it is back.
//!
//! Over 600 lines because each detection rule gets its scenario end to end (requests, the
//! alert, the lock), which is long by nature.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::access::{call, mfa_bearer_session};
use crate::both_backends;
use crate::common::{Db, Instance, PASSWORD, add_user, create_token, note, patient, run};

/// HMAC-SHA256 written out (RFC 2104) with the `sha2` crate: the receiver's
/// own check, independent of Confidant's crypto.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for i in 0..64 {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(opad).chain_update(inner).finalize().to_vec()
}

/// A webhook receiver: each request's (signature header, body); answers 200.
pub(crate) async fn webhook_receiver(listener: TcpListener) -> mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                let (mut len, mut sig) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "x-confidant-signature" => sig = v.trim().to_owned(),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).await.unwrap();
                let mut sock = r.into_inner();
                sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.unwrap();
                let _ = tx.send((sig, body));
            });
        }
    });
    rx
}

/// A minimal SMTP server: the DATA of each message.
pub(crate) async fn smtp_receiver(listener: TcpListener) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                r.get_mut().write_all(b"220 test.invalid ESMTP\r\n").await.unwrap();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                        b"250 test.invalid\r\n"
                    } else if cmd.starts_with("DATA") {
                        r.get_mut().write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            let mut l = String::new();
                            r.read_line(&mut l).await.unwrap();
                            if l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                        }
                        let _ = tx.send(data);
                        b"250 queued\r\n"
                    } else if cmd.starts_with("QUIT") {
                        r.get_mut().write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    r.get_mut().write_all(reply).await.unwrap();
                }
            });
        }
    });
    rx
}

/// Wait for the next item, failing the test after a generous deadline.
pub(crate) async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(90), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} arrived"))
        .unwrap()
}

/// A secret file for the webhook, mode 0600, outside the instance directory.
pub(crate) fn webhook_secret(inst: &Instance) -> (String, std::path::PathBuf) {
    let secret = "w3bh00k-s3cret-for-the-test-0123456789abcdef".to_owned();
    let path = inst.key_file.parent().unwrap().join("webhook.secret");
    std::fs::write(&path, &secret).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (secret, path)
}

async fn alerts(s: &crate::common::Server, token: &str) -> Vec<Value> {
    let (st, b) = call(s, Some(token), Method::GET, "/api/v1/alerts?status=all", None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["alerts"].as_array().unwrap().clone()
}

fn user_id(inst: &Instance, username: &str) -> String {
    let out = run(&["user", "list", "--dir", inst.dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.split_whitespace().any(|w| w == username)).unwrap_or_else(|| panic!("{text}"));
    line.split_whitespace().find(|w| w.len() == 32 && w.chars().all(|c| c.is_ascii_hexdigit())).unwrap().to_owned()
}

// The server under test runs on the system clock: the test reads the same one.
#[allow(clippy::disallowed_methods)]
fn now_instant() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    now.format(&f).unwrap()
}

/// The UTC date `days` from now (YYYY-MM-DD), on the server's clock.
#[allow(clippy::disallowed_methods)]
fn days_from_now(days: i64) -> String {
    let then = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let f = time::macros::format_description!("[year]-[month]-[day]");
    then.format(&f).unwrap()
}

/// S3: a stolen clinician session reads the clinician's patients in a loop.
async fn stolen_session_is_locked_alerted_and_reported(db: Db) {
    let inst = Instance::new(db).await;
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/confidant-alerts", hook.local_addr().unwrap());
    let mut hooks = webhook_receiver(hook).await;
    let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = smtp.local_addr().unwrap().port();
    let mut mails = smtp_receiver(smtp).await;
    let (secret, secret_file) = webhook_secret(&inst);
    inst.configure(|t| {
        Instance::set(t, "detection", "max_patients_per_user", 10.into());
        Instance::set(t, "alerts", "webhook_url", hook_url.clone().into());
        Instance::set(t, "alerts", "webhook_secret_file", secret_file.display().to_string().into());
        Instance::set(t, "alerts", "smtp_host", "127.0.0.1".into());
        Instance::set(t, "alerts", "smtp_port", i64::from(smtp_port).into());
        Instance::set(t, "alerts", "smtp_security", "none".into());
        Instance::set(t, "alerts", "email_from", "confidant@clinic.example".into());
        Instance::set(t, "alerts", "email_to", toml::Value::Array(vec!["security@clinic.example".into()]));
        Instance::set(t, "alerts", "max_backoff_seconds", 1.into());
    });
    let s = inst.start();
    // Clinician 1 has 15 patients of their own (creating them is no read).
    let mut pids = Vec::new();
    for i in 0..15 {
        let p = s.create(&patient(&format!("Caseload{i}"), "Test")).await;
        pids.push(p["id"].as_str().unwrap().to_owned());
    }
    let clin1 = user_id(&inst, "clin1");
    // The attacker has clinician 1's session (MFA done) and reads patient after patient.
    let session = mfa_bearer_session(&s, "clin1").await;
    let from = now_instant();
    let mut read = BTreeSet::new();
    let mut refused_at = None;
    for pid in &pids {
        let (st, b) = call(&s, Some(&session), Method::GET, &format!("Patient/{pid}"), None).await;
        match st {
            StatusCode::OK => {
                read.insert(pid.clone());
            }
            StatusCode::FORBIDDEN => {
                assert!(b.to_string().contains("stopped by breach detection"), "{b}");
                refused_at = Some(read.len());
                break;
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert_eq!(
        refused_at,
        Some(10),
        "the 11th different patient (threshold 10) is refused before it is sent, fires the rule and locks the session"
    );
    let (st, _) = call(&s, Some(&session), Method::GET, &format!("Patient/{}", pids[0]), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the session is locked");
    // The same user's API token is as stolen: it is locked too.
    assert_eq!(s.get(&format!("Patient/{}", pids[0])).await.status(), StatusCode::UNAUTHORIZED);

    // The signed webhook arrives at a real listener.
    let (sig, body) = next(&mut hooks, "webhook").await;
    assert_eq!(sig, format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &body))), "HMAC-signed body");
    let alert: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alert["rule"], "bulk-patients", "{alert}");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["response"], "lock-session");
    assert_eq!(alert["subject"], clin1.as_str());
    let text = alert.to_string();
    assert!(!text.contains("Caseload") && !pids.iter().any(|p| text.contains(p.as_str())), "ids and counts only");
    // ...and the e-mail.
    let mail = next(&mut mails, "e-mail").await;
    assert!(mail.contains("Subject: [Confidant] high alert: bulk-patients"), "{mail}");
    assert!(mail.contains(alert["id"].as_str().unwrap()), "{mail}");

    // The admin sees it, acknowledges it once.
    let list = alerts(&s, &inst.admin_token).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], alert["id"]);
    let path = format!("/api/v1/alerts/{}/acknowledge", alert["id"].as_str().unwrap());
    // Not with an API token (a person closes an alert), nor by its own subject.
    assert_eq!(call(&s, Some(&inst.admin_token), Method::POST, &path, None).await.0, StatusCode::FORBIDDEN);
    let admin = mfa_bearer_session(&s, "admin1").await;
    let (st, acked) = call(&s, Some(&admin), Method::POST, &path, None).await;
    assert_eq!(st, StatusCode::OK, "{acked}");
    assert!(acked["acknowledged_at"].is_string());
    assert_eq!(call(&s, Some(&admin), Method::POST, &path, None).await.0, StatusCode::NOT_FOUND);
    // Not without a session (other roles: the access matrix); hostile ids are just not found.
    assert_eq!(call(&s, None, Method::GET, "/api/v1/alerts", None).await.0, StatusCode::UNAUTHORIZED);
    for bad in ["..%2f..%2fetc", "x'%20OR%201=1", "%3Cscript%3E"] {
        let p = format!("/api/v1/alerts/{bad}/acknowledge");
        assert_eq!(call(&s, Some(&admin), Method::POST, &p, None).await.0, StatusCode::NOT_FOUND, "{bad}");
    }
    let (st, _) = call(&s, Some(&inst.admin_token), Method::GET, "/api/v1/alerts?status=%27", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // The server's log saw the alert, the lock and the sinks at work: ids and counts only,
    // never a name, the webhook secret or a password (DESIGN.md §11.2).
    let logs = s.output();
    assert!(logs.contains("SECURITY ALERT"), "the alert is logged");
    for secret_or_phi in ["Caseload", secret.as_str(), crate::common::PASSWORD] {
        assert!(!logs.contains(secret_or_phi), "the log holds {secret_or_phi:?}");
    }
    s.stop();

    // The incident report lists exactly the patients the attacker read.
    let d = inst.dir.to_str().unwrap();
    let out = run(&["incident", "report", "--dir", d, "--from", &from, "--actor", "clin1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: BTreeSet<String> = report["patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["patient"].as_str().unwrap().trim_start_matches("Patient/").to_owned())
        .collect();
    assert_eq!(listed, read, "{report}");
    assert_eq!(report["patients_disclosed"], 10);
    assert!(report["patients"].as_array().unwrap().iter().all(|p| p["by"][0]["actions"] == json!(["read"])));
    let csv = run(&["incident", "report", "--dir", d, "--from", &from, "--actor", "clin1", "--format", "csv"]);
    assert_eq!(String::from_utf8_lossy(&csv.stdout).lines().count(), 11, "a header and a row per patient");
    for bad in [vec!["--from", "yesterday"], vec!["--format", "xml"], vec!["--actor", "nobody-here"]] {
        let mut args = vec!["incident", "report", "--dir", d];
        args.extend(bad.iter());
        let out = run(&args);
        assert!(!out.status.success(), "{bad:?}");
    }
    // Containment: the account's credentials end and it is disabled.
    let out = run(&["incident", "contain", "--dir", d, "--actor", "clin1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = inst.start();
    assert_eq!(s.get(&format!("Patient/{}", pids[0])).await.status(), StatusCode::UNAUTHORIZED);
    s.stop();
    // All of it is in the audit log, which still verifies.
    let log = String::from_utf8(run(&["audit", "export", "--dir", d]).stdout).unwrap();
    assert!(log.contains("\"action\":\"alert\"") && log.contains("\"actor\":\"detector\""), "alerts are audited");
    assert!(log.contains("\"action\":\"session-revoke\""), "the lock is audited");
    assert!(log.contains("incident-contain") && log.contains("incident-report"));
    assert!(run(&["audit", "verify", "--dir", d]).status.success());
}
both_backends!(stolen_session_is_locked_alerted_and_reported);

/// Every Patient id in the database.
async fn patient_ids(inst: &Instance) -> Vec<String> {
    use sqlx::Row;
    let mut db = inst.db().await;
    let rows = sqlx::query("SELECT id FROM resource_heads WHERE resource_type = 'Patient' ORDER BY id")
        .fetch_all(&mut db)
        .await
        .unwrap();
    sqlx::Connection::close(db).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Three honey records planted by `honey plant` before any real patient
/// (tests create none before calling this): in the care of clin1, the one
/// clinician, and the only patients in the database.
pub(crate) async fn planted(inst: &Instance) -> Vec<String> {
    assert!(patient_ids(inst).await.is_empty(), "init plants no honey record, and no patient is registered yet");
    let out = run(&["honey", "plant", "--dir", inst.dir.to_str().unwrap(), "--count", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    patient_ids(inst).await
}

async fn honey_records_alert_on_every_path(db: Db) {
    let inst = Instance::new(db).await;
    let honey = planted(&inst).await;
    assert_eq!(honey.len(), 3);
    // Nothing marks them: the list is sealed, and they are stored like any patient.
    {
        use sqlx::Row;
        let mut db = inst.db().await;
        let sealed: Vec<u8> = sqlx::query("SELECT value FROM instance_settings WHERE name = 'honey_records'")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get(0);
        sqlx::Connection::close(db).await.unwrap();
        for h in &honey {
            assert!(!sealed.windows(h.len()).any(|w| w == h.as_bytes()), "the honey list is not sealed");
        }
    }
    add_user(&inst.dir, "desk", "reception", &[]);
    let desk = create_token(&inst.dir, "desk", "user/*.*");
    let s = inst.start();
    let real = s.create(&patient("Realpatient", "Test")).await;
    let real = real["id"].as_str().unwrap().to_owned();
    let honey_alert =
        |list: &[Value], by: &str| list.iter().find(|a| a["rule"] == "honey-record" && a["subject"] == by).cloned();
    let desk_id = user_id(&inst, "desk");
    // Ordinary work on a real patient: no alert.
    assert_eq!(call(&s, Some(&desk), Method::GET, &format!("Patient/{real}"), None).await.0, StatusCode::OK);
    assert!(alerts(&s, &inst.admin_token).await.is_empty());
    // Every path that touches a honey record alerts (the same user's touches count up one alert).
    let paths = [
        format!("Patient/{}", honey[0]),
        format!("Patient?_id={}", honey[1]),
        format!("Patient/{}/_history", honey[2]),
        format!("Patient/{}/_history/1", honey[0]),
    ];
    for (i, path) in paths.iter().enumerate() {
        let (st, b) = call(&s, Some(&desk), Method::GET, path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {b}");
        let a = honey_alert(&alerts(&s, &inst.admin_token).await, &desk_id).unwrap_or_else(|| panic!("{path}"));
        assert_eq!(a["count"], i as i64 + 1, "{path} alerted");
        assert_eq!(a["severity"], "critical");
        assert!(!honey.iter().any(|h| a.to_string().contains(h.as_str())), "the alert does not name the record");
    }
    // Normal use never meets them: they are in clin1's care, but clin1's own
    // list, searches (even by id) and the notes of that care leave them out; no alert.
    for path in
        ["Patient?_count=50".to_owned(), format!("Patient?_id={}", honey[1]), "DocumentReference?_count=50".into()]
    {
        let (st, b) = call(&s, Some(&inst.token), Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {b}");
        let total = if path.starts_with("Patient?_count") { 1 } else { 0 };
        assert_eq!(b["total"], total, "{path}: only the clinician's own patient: {b}");
    }
    // Nor their calendar: `honey plant` booked each an appointment with clin1 within two
    // weeks, which clin1's calendar (and the FHIR search by practitioner) leaves out.
    let pr: String = {
        use sqlx::Row;
        let mut db = inst.db().await;
        let q = "SELECT practitioner_id FROM users WHERE practitioner_id IS NOT NULL";
        let pr = sqlx::query(q).fetch_one(&mut db).await.unwrap().get(0);
        let q = "SELECT COUNT(*) FROM resource_heads WHERE resource_type = 'Appointment'";
        let booked: i64 = sqlx::query(q).fetch_one(&mut db).await.unwrap().get(0);
        assert_eq!(booked, 3, "one appointment per honey record");
        sqlx::Connection::close(db).await.unwrap();
        pr
    };
    let (from, until) = (&now_instant()[..10], days_from_now(20));
    for path in [
        format!("Appointment?practitioner=Practitioner/{pr}&date=ge{from}&date=lt{until}"),
        format!("Appointment?practitioner=Practitioner/{pr}"),
    ] {
        let (st, b) = call(&s, Some(&inst.token), Method::GET, &path, None).await;
        assert_eq!((st, &b["total"]), (StatusCode::OK, &json!(0)), "{path}: {b}");
    }
    assert!(honey_alert(&alerts(&s, &inst.admin_token).await, &user_id(&inst, "clin1")).is_none());
    // Their care-team clinician who opens one by id anyway is alerted on too.
    let (st, _) = call(&s, Some(&inst.token), Method::GET, &format!("Patient/{}", honey[1]), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(honey_alert(&alerts(&s, &inst.admin_token).await, &user_id(&inst, "clin1")).is_some());
    s.stop();
    // The incident report marks them.
    let out = run(&["incident", "report", "--dir", inst.dir.to_str().unwrap(), "--actor", "desk"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let marked = report["patients"].as_array().unwrap().iter().filter(|p| p["honey_record"] == true).count();
    assert_eq!(marked, 3, "{report}");
    // More can be planted later, among the real patients; they alert too once served.
    let out = run(&["honey", "plant", "--dir", inst.dir.to_str().unwrap(), "--count", "2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Planted 2 honey records (5 in all)"), "{out:?}");
    let now: Vec<String> = patient_ids(&inst).await;
    let new: Vec<&String> = now.iter().filter(|p| !honey.contains(p) && **p != real).collect();
    assert_eq!(new.len(), 2);
    let s = inst.start();
    let touches = |list: &[Value]| -> i64 {
        list.iter().filter(|a| a["rule"] == "honey-record").map(|a| a["count"].as_i64().unwrap()).sum()
    };
    let before = touches(&alerts(&s, &inst.admin_token).await);
    let (st, _) = call(&s, Some(&desk), Method::GET, &format!("Patient/{}", new[0]), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(touches(&alerts(&s, &inst.admin_token).await), before + 1, "a newly planted record alerts");
    s.stop();
}
both_backends!(honey_records_alert_on_every_path);

/// A realistic day: three clinicians with their own patients, sessions and
/// notes; reception registering, searching and booking; a mistyped password.
/// Not one alert.
async fn a_clinic_day_raises_no_alert(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    add_user(&inst.dir, "clin3", "clinician", &["--name", "Third Clinician"]);
    add_user(&inst.dir, "desk", "reception", &[]);
    let clinicians = [
        inst.token.clone(),
        create_token(&inst.dir, "clin2", "user/*.*"),
        create_token(&inst.dir, "clin3", "user/*.*"),
    ];
    let desk = create_token(&inst.dir, "desk", "user/*.*");
    let s = inst.start();
    const FAMILIES: &[&str] = &["Berg", "Castell", "Dahl", "Eklund", "Falk", "Gran", "Holm", "Isaksson"];
    for (c, token) in clinicians.iter().enumerate() {
        let (_, me) = call(&s, Some(token), Method::GET, "/api/v1/me", None).await;
        let practitioner = me["practitioner_id"].as_str().unwrap_or_default().to_owned();
        let mut mine = Vec::new();
        for (i, family) in FAMILIES.iter().enumerate() {
            let p = s.create_as(token, &patient(family, &format!("C{c}P{i}"))).await;
            mine.push(p["id"].as_str().unwrap().to_owned());
        }
        // Reception books each of them a session with this clinician.
        for (i, pid) in mine.iter().enumerate() {
            // One after another: the same time would be a double booking.
            let appt = json!({
                "resourceType": "Appointment", "status": "booked",
                "start": format!("2026-12-02T{:02}:00:00Z", 6 + i), "end": format!("2026-12-02T{:02}:50:00Z", 6 + i),
                "participant": [
                    {"actor": {"reference": format!("Patient/{pid}")}, "status": "accepted"},
                    {"actor": {"reference": format!("Practitioner/{practitioner}")}, "status": "accepted"}
                ]
            });
            let (st, b) = call(&s, Some(&desk), Method::POST, "Appointment", Some(&appt)).await;
            assert_eq!(st, StatusCode::CREATED, "{b}");
        }
        // The day's sessions: find the patient, open the chart, write and correct the note.
        for (i, pid) in mine.iter().enumerate() {
            let (st, _) = call(&s, Some(token), Method::GET, &format!("Patient?family={}", FAMILIES[i]), None).await;
            assert_eq!(st, StatusCode::OK);
            assert_eq!(call(&s, Some(token), Method::GET, &format!("Patient/{pid}"), None).await.0, StatusCode::OK);
            let (st, _) = call(&s, Some(token), Method::GET, &format!("DocumentReference?patient={pid}"), None).await;
            assert_eq!(st, StatusCode::OK);
            let n = s.create_as(token, &note(pid, "Session held as planned; discussed sleep.")).await;
            let nid = n["id"].as_str().unwrap().to_owned();
            let mut fixed = n.clone();
            fixed["status"] = "current".into();
            let (st, b) = call(&s, Some(token), Method::PUT, &format!("DocumentReference/{nid}"), Some(&fixed)).await;
            assert_eq!(st, StatusCode::OK, "{b}");
            let (st, _) = call(&s, Some(token), Method::GET, &format!("DocumentReference/{nid}/_history"), None).await;
            assert_eq!(st, StatusCode::OK);
        }
    }
    // Reception registers walk-ins and looks people up by name and birth date.
    for (i, family) in ["Jansson", "Karlsson", "Lund"].iter().enumerate() {
        let (st, _) = call(&s, Some(&desk), Method::POST, "Patient", Some(&patient(family, &format!("W{i}")))).await;
        assert_eq!(st, StatusCode::CREATED);
        let (st, _) =
            call(&s, Some(&desk), Method::GET, &format!("Patient?family={family}&birthdate=1980-02-01"), None).await;
        assert_eq!(st, StatusCode::OK);
    }
    // Someone mistypes their password once, then gets it right.
    let bad = json!({"username": "clin2", "password": "not the password at all", "client": "bearer"});
    assert_eq!(crate::access::login(&s, &bad).await.status(), StatusCode::UNAUTHORIZED);
    let good = json!({"username": "clin2", "password": PASSWORD, "client": "bearer"});
    assert_eq!(crate::access::login(&s, &good).await.status(), StatusCode::OK);
    let list = alerts(&s, &inst.admin_token).await;
    assert!(list.is_empty(), "a normal day raised alerts: {list:?}");
    s.stop();
}
both_backends!(a_clinic_day_raises_no_alert);

/// The webhook endpoint hangs: requests go on regardless, alerts queue; when
/// it is back, every alert is delivered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_queues_alerts_and_slows_nobody() {
    let inst = Instance::new(Db::Sqlite).await;
    // An endpoint that accepts connections and never answers; it says when the
    // alert worker has connected (and is now stuck waiting on it).
    let hanging = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hanging.local_addr().unwrap();
    let (connected, mut worker_stuck) = mpsc::unbounded_channel();
    let held = tokio::spawn(async move {
        let mut socks = Vec::new();
        while let Ok((sock, _)) = hanging.accept().await {
            socks.push(sock);
            let _ = connected.send(());
        }
    });
    let (secret, secret_file) = webhook_secret(&inst);
    inst.configure(|t| {
        Instance::set(t, "detection", "max_failed_logins_per_account", 2.into());
        Instance::set(t, "alerts", "webhook_url", format!("http://{addr}/hook").into());
        Instance::set(t, "alerts", "webhook_secret_file", secret_file.display().to_string().into());
        Instance::set(t, "alerts", "max_backoff_seconds", 1.into());
    });
    for u in ["usr1", "usr2", "usr3"] {
        add_user(&inst.dir, u, "clinician", &["--name", "Some One"]);
    }
    let s = inst.start();
    let fail_twice = |u: &'static str| {
        let (http, url) = (s.http.clone(), format!("{}/api/v1/session", s.url));
        async move {
            for _ in 0..2 {
                let body = json!({"username": u, "password": "wrong wrong wrong wrong", "client": "bearer"});
                let r = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            }
        }
    };
    // The first alert: its delivery hangs on the endpoint.
    fail_twice("usr1").await;
    next(&mut worker_stuck, "the alert worker's connection").await;
    // While the worker is stuck there, requests (and new alerts) are answered all the
    // same: were any of them waiting on the webhook, it would never return.
    fail_twice("usr2").await;
    fail_twice("usr3").await;
    let list = alerts(&s, &inst.admin_token).await;
    assert_eq!(list.iter().filter(|a| a["rule"] == "failed-logins").count(), 3, "{list:?}");
    // The endpoint comes back on the same address (the old listener is gone once its task is).
    held.abort();
    let _ = held.await;
    let back = TcpListener::bind(addr).await.unwrap();
    let mut hooks = webhook_receiver(back).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let (sig, body) = next(&mut hooks, "queued alert").await;
        assert_eq!(sig, format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &body))));
        let a: Value = serde_json::from_slice(&body).unwrap();
        if !got.contains(&a["id"]) {
            got.push(a["id"].clone());
        }
    }
    let mut oldest_first: Vec<Value> = list.iter().map(|a| a["id"].clone()).collect();
    oldest_first.reverse();
    assert_eq!(got, oldest_first, "delivered in order");
    s.stop();
}

/// Behind a reverse proxy: `X-Forwarded-For` is believed only from a proxy named
/// in `server.trusted_proxies`, and then the audit log, throttling and the
/// new-address rule see the real client; without it, a forged header changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_client_is_the_forwarded_address() {
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "audi", "auditor", &[]);
    let reader = create_token(&inst.dir, "clin1", "user/*.*");
    let auditor = create_token(&inst.dir, "audi", "user/*.read");
    let s = inst.start();
    let p = s.create(&patient("Proxyread", "Pia")).await["id"].as_str().unwrap().to_owned();
    s.stop();
    let read_from = |s: &crate::common::Server, forwarded: &'static str| {
        let url = s.fhir(&format!("Patient/{p}"));
        let req = s.http.get(url).bearer_auth(&reader).header("x-forwarded-for", forwarded);
        async move { assert_eq!(req.send().await.unwrap().status(), StatusCode::OK) }
    };
    let sources = |s: &crate::common::Server| {
        let (http, url, auditor) = (s.http.clone(), s.fhir("AuditEvent?action=read"), auditor.clone());
        async move {
            let b: Value = http.get(url).bearer_auth(auditor).send().await.unwrap().json().await.unwrap();
            b["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["resource"]["agent"][0]["network"]["address"].as_str().map(str::to_owned))
                .collect::<BTreeSet<String>>()
        }
    };

    // Not trusted (the default): the header is the client's own say-so.
    let s = inst.start();
    read_from(&s, "203.0.113.7").await;
    read_from(&s, "198.51.100.9").await;
    assert_eq!(sources(&s).await, BTreeSet::from(["127.0.0.1".to_owned()]), "forged headers are ignored");
    assert!(alerts(&s, &auditor).await.iter().all(|a| a["rule"] != "new-address"));
    s.stop();

    // The proxy on this machine is trusted: the rightmost address it did not add is the client.
    inst.configure(|t| Instance::set(t, "server", "trusted_proxies", toml::Value::Array(vec!["127.0.0.1".into()])));
    let s = inst.start();
    read_from(&s, "203.0.113.7").await;
    read_from(&s, "10.9.9.9, 203.0.113.7").await;
    assert!(alerts(&s, &auditor).await.iter().all(|a| a["rule"] != "new-address"), "the same client twice");
    read_from(&s, "203.0.113.7, 198.51.100.9").await;
    let seen = sources(&s).await;
    assert!(seen.contains("203.0.113.7") && seen.contains("198.51.100.9") && !seen.contains("10.9.9.9"), "{seen:?}");
    let raised = alerts(&s, &auditor).await;
    assert!(raised.iter().any(|a| a["rule"] == "new-address"), "the token used from a second client: {raised:?}");
    s.stop();

    // A setting that is not an address stops the server with a clear error.
    inst.configure(|t| Instance::set(t, "server", "trusted_proxies", toml::Value::Array(vec!["10.0.0.0/8".into()])));
    let out = run(&["doctor", "--dir", inst.dir.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("is not an IP address"), "{said}");
}

/// Issue 14: one page of notes across many patients used to go out whole
/// before the lock (82 notes of 49 patients at a threshold of 30), and the
/// same user's API token then read them all again. A page that would cross
/// the threshold is refused before it is sent, and every credential of the
/// user ends.
async fn a_page_past_the_threshold_is_refused_and_every_credential_locked(db: Db) {
    let inst = Instance::new(db).await;
    inst.configure(|t| Instance::set(t, "detection", "max_patients_per_user", 10.into()));
    let s = inst.start();
    let mut secrets = Vec::new();
    for i in 0..14 {
        let p = s.create(&patient(&format!("Pagepatient{i}"), "Test")).await;
        let text = format!("PAGE-NOTE-{i}-{}", crate::common::random_hex(4));
        s.create(&note(p["id"].as_str().unwrap(), &text)).await;
        secrets.push(text);
    }
    let session = mfa_bearer_session(&s, "clin1").await;
    // A page within the threshold goes out.
    let (st, page) = call(&s, Some(&session), Method::GET, "DocumentReference?_count=5", None).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["entry"].as_array().unwrap().len(), 5);
    // One page of all 14 patients' notes: refused, nothing of it sent.
    let (st, body) = call(&s, Some(&session), Method::GET, "DocumentReference?_count=100", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(body["issue"][0]["diagnostics"].as_str().unwrap().contains("stopped by breach detection"), "{body}");
    assert!(!secrets.iter().any(|t| body.to_string().contains(t.as_str())), "note text in the refusal");
    // The session and the same user's API token are both ended.
    assert_eq!(call(&s, Some(&session), Method::GET, "Patient?_count=1", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get("DocumentReference?_count=100").await.status(), StatusCode::UNAUTHORIZED);
    // The alert says what happened; the refused page is not in the log as disclosed.
    let list = alerts(&s, &inst.admin_token).await;
    let bulk: Vec<&Value> = list.iter().filter(|a| a["rule"] == "bulk-patients").collect();
    assert_eq!(bulk.len(), 1, "{list:?}");
    assert_eq!(bulk[0]["response"], "lock-session");
    assert!(bulk[0]["summary"].as_str().unwrap().contains("refused before it was sent"), "{}", bulk[0]);
    s.stop();
    let log = String::from_utf8(run(&["audit", "export", "--dir", inst.dir.to_str().unwrap()]).stdout).unwrap();
    let hits = log.lines().filter(|l| l.contains("\"action\":\"search-hit\"")).count();
    assert_eq!(hits, 5, "only the first page's hits were disclosed and audited");

    // Where the rule only alerts (locks nothing), pages go out as before.
    let inst = Instance::new(db).await;
    inst.configure(|t| Instance::set(t, "detection", "max_patients_per_user", 3.into()));
    inst.detector_locks_nothing();
    let s = inst.start();
    for i in 0..5 {
        let p = s.create(&patient(&format!("Alertonly{i}"), "Test")).await;
        s.create(&note(p["id"].as_str().unwrap(), "text")).await;
    }
    let (st, page) = s.get_json("DocumentReference?_count=100").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(page["entry"].as_array().unwrap().len(), 5);
    s.stop();
}
both_backends!(a_page_past_the_threshold_is_refused_and_every_credential_locked);
