//! End-to-end benchmark: create a note, read a note, search a patient by
//! identifier — over HTTP, encrypted, access-checked and audited — against a
//! baseline that writes and reads same-sized plaintext rows straight into a
//! SQLite file (same WAL and fsync settings) with no HTTP and no crypto.
//!
//! Run: `cargo bench -p confidant --bench records` (release build).
//! Tunables: BENCH_OPS (per phase, default 3000), BENCH_CLIENTS (default 8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sqlx::{AnyPool, Row};

const BIN: &str = env!("CARGO_BIN_EXE_confidant");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A synthetic session note of realistic size (~1.5 KiB of text).
fn note_text(i: usize) -> String {
    let mut s = format!("Session {i}. ");
    while s.len() < 1500 {
        s.push_str("Client reflected on the week, sleep and work stress; we reviewed the thought record. ");
    }
    s
}

struct Stats {
    name: &'static str,
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l[i].as_secs_f64() * 1000.0
    }
}

/// Run `ops` operations over `clients` concurrent tasks; `op(i)` does one.
async fn run<F, Fut>(name: &'static str, ops: usize, clients: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Stats { name, ops, elapsed: started.elapsed(), latencies }
}

async fn baseline(dir: &std::path::Path, ops: usize, clients: usize, note_len: usize) -> Vec<Stats> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", dir.join("baseline.db").display());
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(8)
        .after_connect(|c, _| {
            Box::pin(async move {
                use sqlx::Executor;
                c.execute("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;").await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE patients (id TEXT PRIMARY KEY, identifier TEXT NOT NULL, body BLOB NOT NULL);
         CREATE INDEX patients_identifier ON patients (identifier);
         CREATE TABLE notes (id TEXT PRIMARY KEY, patient TEXT NOT NULL, body BLOB NOT NULL);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let patient_body = vec![b'p'; 400];
    for i in 0..200 {
        sqlx::query("INSERT INTO patients VALUES (?, ?, ?)")
            .bind(format!("p{i}"))
            .bind(format!("ident-{i}"))
            .bind(patient_body.clone())
            .execute(&pool)
            .await
            .unwrap();
    }
    let pool: Arc<AnyPool> = Arc::new(pool);
    let body = Arc::new(vec![b'n'; note_len]);
    let p = pool.clone();
    let create = run("baseline create", ops, clients, move |i| {
        let (p, body) = (p.clone(), body.clone());
        async move {
            sqlx::query("INSERT INTO notes VALUES (?, ?, ?)")
                .bind(format!("n{i}"))
                .bind(format!("p{}", i % 200))
                .bind(body.as_slice())
                .execute(&*p)
                .await
                .unwrap();
        }
    })
    .await;
    let p = pool.clone();
    let read = run("baseline read", ops, clients, move |i| {
        let p = p.clone();
        async move {
            let r = sqlx::query("SELECT body FROM notes WHERE id = ?")
                .bind(format!("n{}", i % ops))
                .fetch_one(&*p)
                .await
                .unwrap();
            let b: Vec<u8> = r.get(0);
            assert!(!b.is_empty());
        }
    })
    .await;
    let p = pool.clone();
    let search = run("baseline search", ops, clients, move |i| {
        let p = p.clone();
        async move {
            let rows = sqlx::query("SELECT id, body FROM patients WHERE identifier = ?")
                .bind(format!("ident-{}", i % 200))
                .fetch_all(&*p)
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
        }
    })
    .await;
    pool.close().await;
    vec![create, read, search]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; other arguments are ignored.
    let ops = env_usize("BENCH_OPS", 3000);
    let clients = env_usize("BENCH_CLIENTS", 8);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let key = tmp.path().join("k.kek");
    let out = Command::new(BIN)
        .args(["init", "--dir", dir.to_str().unwrap(), "--key-file", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One clinician reading 200 patients over and over is exactly what the bulk-read
    // rule stops: thresholds out of reach, so the detector runs on every request
    // (its normal cost) but never fires.
    let config = dir.join("confidant.toml");
    let mut t: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let d = t.entry("detection").or_insert(toml::Value::Table(Default::default())).as_table_mut().unwrap();
    d.insert("max_patients_per_user".into(), toml::Value::Integer(1_000_000_000));
    d.insert("max_search_hits_per_user".into(), toml::Value::Integer(1_000_000_000));
    std::fs::write(&config, toml::to_string(&t).unwrap()).unwrap();
    // A clinician: patients they create land on their care team, so every
    // read and search below also pays for the access check.
    let mut add = Command::new(BIN)
        .args(["user", "add", "--dir", dir.to_str().unwrap(), "--username", "bench", "--role", "clinician"])
        .args(["--name", "Bench Clinician", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"correct horse battery staple 7\n").unwrap();
    assert!(add.wait().unwrap().success());
    let out = Command::new(BIN)
        .args(["token", "create", "--dir", dir.to_str().unwrap(), "--user", "bench", "--scope", "user/*.*"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let log = std::fs::File::create(tmp.path().join("serve.log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("CONFIDANT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    let base = format!("{}/fhir/r4", line.trim().trim_start_matches("listening on "));
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();

    // Set-up: 200 patients with identifiers.
    let mut patients = Vec::new();
    for i in 0..200 {
        let p: Value = http
            .post(format!("{base}/Patient"))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .json(&json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": format!("ident-{i}")}],
                          "name": [{"family": format!("Family{i}"), "given": ["Given"]}], "birthDate": "1980-01-01"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        patients.push(p["id"].as_str().unwrap().to_owned());
    }
    let patients = Arc::new(patients);
    let note = |i: usize, pid: &str| {
        json!({"resourceType": "DocumentReference", "status": "current",
               "subject": {"reference": format!("Patient/{pid}")},
               "content": [{"attachment": {"contentType": "text/plain", "data": base64::engine::general_purpose::STANDARD.encode(note_text(i))}}]})
    };
    let note_len = serde_json::to_vec(&note(0, &patients[0])).unwrap().len();

    let ids = Arc::new(tokio::sync::Mutex::new(vec![String::new(); ops]));
    let (h, b, t, p, ids2) = (http.clone(), base.clone(), token.clone(), patients.clone(), ids.clone());
    let create = run("confidant create note", ops, clients, move |i| {
        let (h, b, t, p, ids) = (h.clone(), b.clone(), t.clone(), p.clone(), ids2.clone());
        let body = note(i, &p[i % p.len()]);
        async move {
            let r = h
                .post(format!("{b}/DocumentReference"))
                .bearer_auth(&t)
                .json(&body)
                .header("content-type", "application/fhir+json")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let v: Value = r.json().await.unwrap();
            ids.lock().await[i] = v["id"].as_str().unwrap().to_owned();
        }
    })
    .await;
    let ids: Arc<Vec<String>> = Arc::new(ids.lock().await.clone());
    let (h, b, t) = (http.clone(), base.clone(), token.clone());
    let read = run("confidant read note", ops, clients, move |i| {
        let (h, b, t, ids) = (h.clone(), b.clone(), t.clone(), ids.clone());
        async move {
            let r = h.get(format!("{b}/DocumentReference/{}", ids[i])).bearer_auth(&t).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.unwrap();
        }
    })
    .await;
    let (h, b, t) = (http.clone(), base.clone(), token.clone());
    let search = run("confidant search patient", ops, clients, move |i| {
        let (h, b, t) = (h.clone(), b.clone(), t.clone());
        async move {
            let r = h.get(format!("{b}/Patient?identifier=ident-{}", i % 200)).bearer_auth(&t).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["total"], 1);
        }
    })
    .await;
    // The floor: what one HTTP round trip costs here, with no database and no crypto.
    let (h, root) = (http.clone(), base.trim_end_matches("/fhir/r4").to_owned());
    let floor = run("http floor (GET /healthz)", ops, clients, move |_| {
        let (h, root) = (h.clone(), root.clone());
        async move {
            let r = h.get(format!("{root}/healthz")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.unwrap();
        }
    })
    .await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    let base_stats = baseline(tmp.path(), ops, clients, note_len).await;

    println!("\nConfidant end-to-end (HTTP + AES-256-GCM + blind index, SQLite WAL, synchronous=FULL)");
    println!("vs baseline (plaintext rows of the same size into SQLite, same settings, no HTTP, no crypto)");
    println!("{ops} operations per phase, {clients} concurrent clients, note body {note_len} bytes\n");
    println!(
        "{:<26} {:>10} {:>9} {:>9} | {:>10} {:>9} {:>9} | {:>7}",
        "operation", "ops/s", "p50 ms", "p99 ms", "base ops/s", "p50 ms", "p99 ms", "ratio"
    );
    for (c, b) in [create, read, search].iter().zip(&base_stats) {
        println!(
            "{:<26} {:>10.0} {:>9.2} {:>9.2} | {:>10.0} {:>9.2} {:>9.2} | {:>7.2}",
            c.name,
            c.ops_per_sec(),
            c.pct(0.5),
            c.pct(0.99),
            b.ops_per_sec(),
            b.pct(0.5),
            b.pct(0.99),
            c.ops_per_sec() / b.ops_per_sec()
        );
        let _ = b.name;
    }
    println!(
        "{:<26} {:>10.0} {:>9.2} {:>9.2} | (no baseline: the cost of HTTP alone on this machine)",
        floor.name,
        floor.ops_per_sec(),
        floor.pct(0.5),
        floor.pct(0.99)
    );
    println!("\nratio = Confidant ops/s ÷ baseline ops/s (goal: ≥ 0.5)");
}
