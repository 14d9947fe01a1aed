//! Key-encryption key rotation: online under load, resumable after kill -9.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;

use crate::both_backends;
use crate::common::{BIN, Db, Instance, Server, note, patient, run};

/// (KEK version, data keys it wraps), from the database.
async fn usage(inst: &Instance) -> Vec<(i64, i64)> {
    let mut db = inst.db().await;
    let rows = sqlx::query("SELECT kek_version, COUNT(*) FROM data_keys GROUP BY kek_version ORDER BY kek_version")
        .fetch_all(&mut db)
        .await
        .unwrap();
    sqlx::Connection::close(db).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

async fn seed(s: &Server, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let p = s.create(&patient(&format!("Rotation{i}"), "Test")).await;
        let pid = p["id"].as_str().unwrap().to_owned();
        let nt = s.create(&note(&pid, &format!("rotation note {i}"))).await;
        out.push((pid, nt["id"].as_str().unwrap().to_owned()));
    }
    out
}

async fn all_readable(s: &Server, records: &[(String, String)]) {
    for (pid, nid) in records {
        let (st, p) = s.get_json(&format!("Patient/{pid}")).await;
        assert_eq!(st, StatusCode::OK, "{p}");
        let (st, n) = s.get_json(&format!("DocumentReference/{nid}")).await;
        assert_eq!(st, StatusCode::OK, "{n}");
    }
}

async fn rotation_under_load(db: Db) {
    let inst = Instance::new(db).await;
    let s = Arc::new(inst.start());
    let mut records = seed(&s, 20).await;
    assert_eq!(usage(&inst).await.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [1]);

    // Clients read and write throughout the rotation; not one request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (s, stop, requests, records) = (s.clone(), stop.clone(), requests.clone(), records.clone());
        clients.push(tokio::spawn(async move {
            let mut created = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (pid, nid) = &records[i % records.len()];
                let (st, b) = s.get_json(&format!("DocumentReference/{nid}")).await;
                assert_eq!(st, StatusCode::OK, "read during rotation: {b}");
                let p = s.create(&patient(&format!("During{c}x{i}"), "Load")).await;
                let new_pid = p["id"].as_str().unwrap().to_owned();
                let n = s.create(&note(&new_pid, "written during the rotation")).await;
                let _ = pid;
                created.push((new_pid, n["id"].as_str().unwrap().to_owned()));
                requests.fetch_add(3, Ordering::Relaxed);
                i += 1;
            }
            created
        }));
    }
    let dir = inst.dir.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || run(&["keys", "rotate", "--dir", &dir])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Rotation to key version 2 complete"));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        records.extend(c.await.unwrap());
    }
    assert!(requests.load(Ordering::Relaxed) > 0);
    // New keys made by the server during the rotation may have used version 1 until it
    // saw version 2; a second run (or the next) catches them.
    let out = run(&["keys", "rotate", "--dir", inst.dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let u = usage(&inst).await;
    assert!(u.iter().all(|(v, _)| *v >= 2), "every data key wrapped under a newer version: {u:?}");
    // Every record reads back, from the running server and after a restart.
    all_readable(&s, &records).await;
    let s = Arc::try_unwrap(s).ok().unwrap();
    s.stop();
    let s = inst.start();
    all_readable(&s, &records).await;
    // The rotation is in the audit log, and `keys status` tells the story.
    let status = run(&["keys", "status", "--dir", inst.dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("unused: can be retired"), "{text}");
    let versions = text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).count();
    assert!(versions >= 2 && text.matches(" days ").count() == versions, "every version's age is known: {text}");
    s.stop();
    let out = run(&["audit", "export", "--dir", inst.dir.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("kek-rotation-start/v2") && log.contains("kek-rotation-done/v2"), "{log}");
    assert!(run(&["audit", "verify", "--dir", inst.dir.to_str().unwrap()]).status.success());
}
both_backends!(rotation_under_load);

async fn rotation_resumes_after_kill(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let records = seed(&s, 12).await;
    s.stop();
    // Stop the rotation after 5 keys (a test hook parks it there), then kill -9.
    let mut child = Command::new(BIN)
        .args(["keys", "rotate", "--dir", inst.dir.to_str().unwrap()])
        .env("CONFIDANT_TEST_PAUSE_ROTATION_AFTER", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    for line in stderr.split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line).into_owned();
        seen.push_str(&line);
        if line.contains("paused") {
            break;
        }
    }
    assert!(seen.contains("paused"), "{seen}");
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    let u = usage(&inst).await;
    assert_eq!(u, vec![(1, 8), (2, 5)], "half done: 5 of 13 data keys (12 patients and the organisation)");
    // A version still in use cannot be retired.
    let out = run(&["keys", "retire", "--dir", inst.dir.to_str().unwrap(), "--version", "1"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("still wraps 8 data keys"));
    // Mid-rotation, the data is readable: both versions are in the key file.
    let s = inst.start();
    all_readable(&s, &records).await;
    s.stop();
    // Run again: it resumes (no third version) and completes.
    let out = run(&["keys", "rotate", "--dir", inst.dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Resuming the rotation to key version 2"));
    assert_eq!(usage(&inst).await, vec![(2, 13)]);
    // Version 1 wraps nothing now: retire it. The current version cannot be retired.
    let d = inst.dir.to_str().unwrap();
    let out = run(&["keys", "retire", "--dir", d, "--version", "2"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("current version"));
    let out = run(&["keys", "retire", "--dir", d, "--version", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key_text = std::fs::read_to_string(&inst.key_file).unwrap();
    assert!(!key_text.contains(":1:") && key_text.contains(":2:"), "version 1 is gone from the key file");
    let s = inst.start();
    all_readable(&s, &records).await;
    let (st, b): (StatusCode, Value) = s.get_json("Patient?family=rotation3").await;
    assert_eq!((st, b["total"].as_i64()), (StatusCode::OK, Some(1)), "blind-index search after rotation: {b}");
    s.stop();
}
both_backends!(rotation_resumes_after_kill);
