//! kill -9 during a stream of creates loses no acknowledged write.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::both_backends;
use crate::common::{Db, Instance, patient};

async fn kill_9_loses_no_acknowledged_create(db: Db) {
    let inst = Instance::new(db).await;
    // Reading back 150+ patients at once is what the bulk rule locks: not the point here.
    inst.detector_locks_nothing();
    let s = Arc::new(inst.start());
    let pid = s.child.id();
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let successes = Arc::new(AtomicUsize::new(0));
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let enough = Arc::new(tokio::sync::Notify::new());

    let mut writers = Vec::new();
    for w in 0..4 {
        let (s, acknowledged, successes, killed, enough) =
            (s.clone(), acknowledged.clone(), successes.clone(), killed_rx.clone(), enough.clone());
        writers.push(tokio::spawn(async move {
            // Bounded: at most 2,000 attempts per writer.
            for i in 0..2000 {
                let given = format!("w{w}i{i}");
                let r = s
                    .http
                    .post(s.fhir("Patient"))
                    .bearer_auth(&s.token)
                    .header("content-type", "application/fhir+json")
                    .body(serde_json::to_vec(&patient("Crash", &given)).unwrap())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let v: Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => break, // killed mid-response: not acknowledged
                        };
                        acknowledged.lock().await.push((v["id"].as_str().unwrap().to_owned(), given));
                        if successes.fetch_add(1, Ordering::SeqCst) + 1 == 150 {
                            enough.notify_one();
                        }
                    }
                    _ => {
                        assert!(*killed.borrow(), "a create failed before the kill");
                        break;
                    }
                }
            }
        }));
    }
    // Kill once enough creates are acknowledged (a condition, not a delay).
    // Writers stop on their own after a failure, so this cannot wait forever.
    let all_done = async {
        for w in &mut writers {
            let _ = w.await;
        }
    };
    tokio::select! {
        _ = enough.notified() => {}
        _ = all_done => panic!("the writers stopped before 150 creates were acknowledged"),
    }
    killed_tx.send(true).unwrap();
    let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    for w in writers {
        w.await.unwrap();
    }
    drop(s);
    let acknowledged = acknowledged.lock().await.clone();
    assert!(acknowledged.len() >= 150);

    let s = inst.start();
    for (id, given) in &acknowledged {
        let (st, p) = s.get_json(&format!("Patient/{id}")).await;
        assert_eq!(st, StatusCode::OK, "acknowledged create {id} lost");
        assert_eq!(p["name"][0]["given"][0], Value::String(given.clone()));
    }
    let (_, b) = s.get_json("Patient?family=crash&_count=1").await;
    let stored = b["total"].as_i64().unwrap();
    eprintln!("kill -9 after {} acknowledged creates; {stored} stored after restart", acknowledged.len());
    assert!(stored >= acknowledged.len() as i64);
}
both_backends!(kill_9_loses_no_acknowledged_create);
