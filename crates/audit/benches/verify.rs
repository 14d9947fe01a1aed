//! How fast `audit verify` can check a log: 1,000,000 entries of ~250 bytes
//! with a signed checkpoint every 1,000, against a baseline that only
//! SHA-256-hashes the same bytes once each (the floor for any verifier).
//!
//! Run: `cargo bench -p confidant-audit --bench verify` (AUDIT_ENTRIES to change the count).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use confidant_audit::checkpoint::Checkpoint;
use confidant_audit::merkle::{Accumulator, leaf_hash};
use confidant_audit::verify::{StoredEntry, verify};
use confidant_vault::signing::SigningKey;

/// The same check as `confidant audit verify`: entries streamed from a SQLite
/// file (paged reads, leaf hashes recomputed, search columns parsed and compared).
fn from_sqlite(n: u64, key: &SigningKey) {
    use confidant_audit::{Action, Entry, Outcome};
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", tmp.path().join("audit.db").display());
        let store = confidant_store::Store::connect(&url, true).await.unwrap();
        store.migrate().await.unwrap();
        let mut acc = Accumulator::new();
        let mut checkpoints = Vec::new();
        let mut seq = 0u64;
        while seq < n {
            let batch: Vec<_> = (0..10_000.min(n - seq))
                .map(|i| {
                    let mut e = Entry::new(1_790_000_000_000 + (seq + i) as i64, Action::Read, Outcome::Success);
                    e.actor = Some("8316cd6cd686cf3889c2cc89c8a694d9".into());
                    e.role = Some("clinician".into());
                    e.source = Some("10.0.0.7".into());
                    e.patient = Some("9db99928ec3bbb07ae9de4d278b5bcbb".into());
                    e.resource = Some("DocumentReference/0a6eebf7f5cf53af07fd746b484fab14".into());
                    e.version = Some(3);
                    e.to_row()
                })
                .collect();
            store.append_audit(&batch).await.unwrap();
            for r in &batch {
                acc.push(r.leaf_hash.clone().try_into().unwrap());
                if acc.size().is_multiple_of(1000) {
                    let c = Checkpoint { origin: "bench".into(), size: acc.size(), root: acc.root(), timestamp: 0 };
                    checkpoints.push(c.sign(key).unwrap());
                }
            }
            seq += batch.len() as u64;
        }
        let t = Instant::now();
        let report =
            confidant_audit::log::verify_store(&store, &checkpoints, &key.public_key(), "bench", |_| {}).await.unwrap();
        let took = t.elapsed();
        assert_eq!(report.entries, n);
        println!(
            "  from SQLite {:>8.3} s  {:>12.0} entries/s  (what `confidant audit verify` does)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        store.close().await;
    });
}

fn main() {
    let n: u64 = std::env::var("AUDIT_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let key = SigningKey::generate().unwrap();
    let entries: Vec<StoredEntry> = (1..=n)
        .map(|seq| {
            let entry = format!(
                "{{\"seq\":{seq},\"at\":1790000000000,\"actor\":\"8316cd6cd686cf3889c2cc89c8a694d9\",\"role\":\"clinician\",\
                 \"action\":\"read\",\"type\":\"DocumentReference\",\"id\":\"0a6eebf7f5cf53af07fd746b484fab14\",\"version\":3,\
                 \"patient\":\"9db99928ec3bbb07ae9de4d278b5bcbb\",\"outcome\":\"ok\"}}"
            )
            .into_bytes();
            StoredEntry { seq, leaf_hash: leaf_hash(&entry), entry }
        })
        .collect();
    let mut acc = Accumulator::new();
    let mut checkpoints = Vec::new();
    for e in &entries {
        acc.push(e.leaf_hash);
        if acc.size().is_multiple_of(1000) {
            let c = Checkpoint { origin: "bench".into(), size: acc.size(), root: acc.root(), timestamp: 0 };
            checkpoints.push(c.sign(&key).unwrap());
        }
    }
    let bytes: usize = entries.iter().map(|e| e.entry.len()).sum();

    let t = Instant::now();
    let mut x = 0u8;
    for e in &entries {
        x ^= confidant_vault::sha256(&e.entry)[0];
    }
    let baseline = t.elapsed();

    let t = Instant::now();
    let report = verify(entries, &checkpoints, &key.public_key(), "bench").unwrap();
    let took = t.elapsed();
    assert_eq!(report.entries, n);
    println!("audit verify: {n} entries ({} MB), {} checkpoints", bytes / 1_000_000, checkpoints.len());
    println!("  verify      {:>8.3} s  {:>12.0} entries/s", took.as_secs_f64(), n as f64 / took.as_secs_f64());
    println!(
        "  sha256 only {:>8.3} s  {:>12.0} entries/s  (baseline; {x})",
        baseline.as_secs_f64(),
        n as f64 / baseline.as_secs_f64()
    );
    println!(
        "  ratio verify/baseline time: {:.2}  (target: 1,000,000 entries in under 10 s)",
        took.as_secs_f64() / baseline.as_secs_f64()
    );
    from_sqlite(n, &key);
}
