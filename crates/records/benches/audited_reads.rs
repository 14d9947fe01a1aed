//! Audited reads against the same reads with auditing off.
//!
//! A clinician reads session notes through the records service (access
//! check, decrypt), 8 at a time, on SQLite (WAL, synchronous=FULL). Audited,
//! every read waits until its entry is committed (group commit); unaudited,
//! the entry is dropped — a switch that exists only in this benchmark's
//! build (`bench-switch` feature), never in the product. The two run
//! alternately on the same database, twice each, and the ratio is printed.
//!
//! Run: `cargo bench -p confidant-records --bench audited_reads`.
//! Tunables: BENCH_OPS (reads per phase, default 4000), BENCH_CLIENTS (concurrent readers,
//! default 8). Group commit batches what arrives together, so the ratio grows with the
//! number of concurrent readers; run it at 8, 32 and 64.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use confidant_audit::Auditor;
use confidant_fhir::ResourceType;
use confidant_policy::{Principal, Role};
use confidant_records::{Records, SystemClock};
use confidant_store::Store;
use confidant_vault::{KeyFile, Vault};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn principal(role: Role, practitioner: Option<String>) -> Principal {
    Principal {
        user_id: format!("bench-{}", role.as_str()),
        role,
        practitioner_id: practitioner,
        patient_id: None,
        scopes: None,
        source: Some("127.0.0.1".into()),
        credential: None,
        training: Default::default(),
    }
}

async fn phase(records: &Arc<Records>, who: &Principal, notes: &Arc<Vec<String>>, ops: usize, clients: usize) -> f64 {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (records, who, notes, next) = (records.clone(), who.clone(), notes.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                let id = &notes[i % notes.len()];
                records.read(&who, ResourceType::DocumentReference, id).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let ops = env_usize("BENCH_OPS", 4000);
    let clients = env_usize("BENCH_CLIENTS", 8);
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("bench.db").display());
    let store = Store::connect(&url, true).await.unwrap();
    store.migrate().await.unwrap();
    let keys = Arc::new(KeyFile::generate("bench").unwrap());
    confidant_records::initialise(&store, &Vault::new(keys.clone()), "bench", 0).await.unwrap();
    let open = |auditor: Auditor| {
        let (store, keys) = (store.clone(), keys.clone());
        async move {
            Arc::new(
                Records::open_with_auditor(store, Vault::new(keys), Arc::new(SystemClock), Arc::new(auditor))
                    .await
                    .unwrap(),
            )
        }
    };
    let audited = open(Auditor::start(store.clone())).await;
    let unaudited = open(Auditor::off_for_benchmarks()).await;

    // A clinician with 50 patients, 4 notes each.
    let admin = principal(Role::Admin, None);
    let practitioner = audited
        .create(
            &admin,
            ResourceType::Practitioner,
            json!({"resourceType": "Practitioner", "name": [{"family": "Bench"}]}),
        )
        .await
        .unwrap();
    let clinician = principal(Role::Clinician, Some(practitioner.id));
    let text = "Client reflected on the week, sleep and work stress; we reviewed the thought record. ".repeat(18);
    let mut notes = Vec::new();
    for p in 0..50 {
        let patient = json!({"resourceType": "Patient", "name": [{"family": format!("Bench{p}")}]});
        let patient = audited.create(&clinician, ResourceType::Patient, patient).await.unwrap();
        for _ in 0..4 {
            use base64::Engine as _;
            let note = json!({
                "resourceType": "DocumentReference", "status": "current",
                "subject": {"reference": format!("Patient/{}", patient.id)},
                "content": [{"attachment": {"contentType": "text/plain",
                    "data": base64::engine::general_purpose::STANDARD.encode(&text)}}]
            });
            notes.push(audited.create(&clinician, ResourceType::DocumentReference, note).await.unwrap().id);
        }
    }
    let notes = Arc::new(notes);
    // Warm the key caches of both.
    phase(&audited, &clinician, &notes, 200, clients).await;
    phase(&unaudited, &clinician, &notes, 200, clients).await;

    let before = store.audit_size().await.unwrap();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        off.push(phase(&unaudited, &clinician, &notes, ops, clients).await);
        on.push(phase(&audited, &clinician, &notes, ops, clients).await);
    }
    let appended = store.audit_size().await.unwrap() - before;
    assert_eq!(appended as usize, 2 * ops, "one entry per audited read, none for the unaudited ones");
    // The floor of one group commit: a one-entry append, alone.
    let row = confidant_audit::Entry::new(0, confidant_audit::Action::Read, confidant_audit::Outcome::Success).to_row();
    let t = Instant::now();
    for _ in 0..500 {
        store.append_audit(std::slice::from_ref(&row)).await.unwrap();
    }
    let commit_ms = t.elapsed().as_secs_f64() * 1000.0 / 500.0;
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!("audited reads vs unaudited, {ops} reads per phase, {clients} clients, SQLite (synchronous=FULL)");
    println!("  unaudited: {:>8.0} reads/s (runs: {:.0?})", best(&off), off);
    println!("  audited:   {:>8.0} reads/s (runs: {:.0?})", best(&on), on);
    println!("  one append alone, no load: {commit_ms:.3} ms (the floor of a group commit: one INSERT and its fsync)");
    println!("  ratio audited/unaudited: {:.2} (target ≥ 0.70)", best(&on) / best(&off));
    store.close().await;
}
