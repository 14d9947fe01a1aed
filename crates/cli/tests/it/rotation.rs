//! Key-encryption key rotation: online under load, resumable after kill -9.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;

use crate::both_backends;
use crate::common::{Db, Instance, Server, note, patient, run};

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
    // The load reads many patients with one token: not what this test is about.
    inst.detector_locks_nothing();
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
    // The new version is recorded before it exists (write-ahead: the key file is outside the database).
    let added = log.find("kek-add-version/v2").expect("the added version is in the audit log");
    assert!(added < log.find("kek-rotation-start/v2").unwrap(), "{log}");
    assert!(run(&["audit", "verify", "--dir", inst.dir.to_str().unwrap()]).status.success());
}
both_backends!(rotation_under_load);

async fn rotation_resumes_after_kill(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let records = seed(&s, 12).await;
    s.stop();
    // Stop the rotation after 5 keys (the app's rotation, driven by a test that
    // parks in its progress callback: see `rotation_child_parks`), then kill -9.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["rotation::rotation_child_parks", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &inst.dir)
        .env(CHILD_PARK_AFTER, "5")
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
    assert_eq!(
        u,
        vec![(1, 8), (2, 5)],
        "half done: 5 of 13 data keys (12 patients, the organisation; init plants no honey record)"
    );
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

/// The instance the child rotates, and after how many re-wrapped keys it parks.
const CHILD_DIR: &str = "ROTATION_CHILD_DIR";
const CHILD_PARK_AFTER: &str = "ROTATION_CHILD_PARK_AFTER";

/// Progress that parks the rotation (as a crash would catch it) after N keys.
struct ParkAfter(u64);

struct Parking(u64);

impl confidant_app::Progress for ParkAfter {
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
    fn start(&self, _: &str, _: u64, _: confidant_app::Unit) -> Box<dyn confidant_app::Counter> {
        Box::new(Parking(self.0))
    }
}

impl confidant_app::Counter for Parking {
    fn set(&mut self, done: u64) {
        if done == self.0 {
            eprintln!("\npaused after {done} data keys");
            loop {
                std::thread::park();
            }
        }
    }
    fn finish(self: Box<Self>) {}
}

/// Not a test of its own: `rotation_resumes_after_kill` runs it in a child
/// process (this test binary, re-executed) and kills it mid-rotation. It
/// drives the app's `keys rotate` directly, so that no test hook sits in the
/// production command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by rotation_resumes_after_kill"]
async fn rotation_child_parks() {
    let (Some(dir), Some(after)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_PARK_AFTER).ok()) else {
        return;
    };
    let console = confidant_app::Console::default();
    let park = ParkAfter(after.parse().unwrap());
    confidant_app::keys::rotate(&console, std::path::Path::new(&dir), &park).await.unwrap();
    panic!("the rotation finished without reaching {after} data keys");
}

/// (data key versions, (key version, body) of every stored version) of one patient.
async fn patient_keys(inst: &Instance, pid: &str) -> (Vec<i64>, Vec<(i64, Vec<u8>)>) {
    let mut db = inst.db().await;
    let keys = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM data_keys WHERE compartment = '{pid}' ORDER BY version"
    )))
    .fetch_all(&mut db)
    .await
    .unwrap();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT key_version, body FROM resource_versions WHERE compartment = '{pid}' \
         ORDER BY resource_type, id, version_id"
    )))
    .fetch_all(&mut db)
    .await
    .unwrap();
    sqlx::Connection::close(db).await.unwrap();
    (keys.iter().map(|r| r.get(0)).collect(), rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A patient's data key rotation re-encrypts their records under a new key and
/// destroys the old one, while the server runs; a write by a server that still
/// holds the old key is sealed again under the new one; others are untouched.
async fn patient_key_rotation(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let records = seed(&s, 3).await;
    let (pid, nid) = records[0].clone();
    let mut edited = note(&pid, "the second version of the note");
    edited["id"] = Value::from(nid.clone());
    assert_eq!(s.put(&format!("DocumentReference/{nid}"), &edited, None).await.status(), StatusCode::OK);
    let (keys, before) = patient_keys(&inst, &pid).await;
    assert_eq!((keys, before.len()), (vec![1], 4), "Patient, CareTeam, and two versions of the note");
    let (_, other_before) = patient_keys(&inst, &records[1].0).await;

    let d = inst.dir.to_str().unwrap().to_owned();
    // A wrong or unknown id: a clear error, nothing changed.
    for bad in ["does-not-exist", "../../etc", &nid] {
        let out = run(&["keys", "rotate", "--dir", &d, "--patient", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"), "{out:?}");
    }
    assert_eq!(patient_keys(&inst, &pid).await.1, before);
    let dd = d.clone();
    let p2 = pid.clone();
    let out =
        tokio::task::spawn_blocking(move || run(&["keys", "rotate", "--dir", &dd, "--patient", &p2])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("4 record versions") && said.contains("1 old data key destroyed"), "{said}");
    let (keys, after) = patient_keys(&inst, &pid).await;
    assert_eq!(keys, vec![2], "the old data key is gone");
    assert_eq!(after.len(), 4);
    for ((v0, b0), (v1, b1)) in before.iter().zip(&after) {
        assert_eq!((*v0, *v1), (1, 2));
        assert_ne!(b0, b1, "re-encrypted");
    }
    assert_eq!(patient_keys(&inst, &records[1].0).await.1, other_before, "another patient is untouched");

    // The running server still knows key 1 as current: its next write is refused by the
    // store and sealed again under key 2. Every version reads back.
    let (st, n) = s.get_json(&format!("DocumentReference/{nid}")).await;
    assert_eq!(st, StatusCode::OK, "{n}");
    let (st, h) = s.get_json(&format!("DocumentReference/{nid}/_history")).await;
    assert_eq!((st, h["total"].as_i64()), (StatusCode::OK, Some(2)), "{h}");
    let fresh = s.create(&note(&pid, "written after the rotation")).await;
    let (keys, rows) = patient_keys(&inst, &pid).await;
    assert_eq!(keys, vec![2]);
    assert!(rows.iter().all(|(v, _)| *v == 2), "the new note is under the new key: {:?}", rows.len());
    s.stop();
    let s = inst.start();
    all_readable(&s, &records).await;
    let (st, v1) = s.get_json(&format!("DocumentReference/{nid}/_history/1")).await;
    assert_eq!(st, StatusCode::OK, "{v1}");
    let (st, _) = s.get_json(&format!("DocumentReference/{}", fresh["id"].as_str().unwrap())).await;
    assert_eq!(st, StatusCode::OK);
    s.stop();
    let out = run(&["audit", "export", "--dir", &d]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("patient-key-rotation/{pid}")));
    assert!(run(&["audit", "verify", "--dir", &d]).status.success());
}
both_backends!(patient_key_rotation);
