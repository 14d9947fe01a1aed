#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A patient's data key rotated by another process (the CLI) while a server
//! runs with the old key cached: break-glass reasons sealed afterwards use the
//! new key, the access log opens every reason, and later rotations succeed.
//! (Found by a review: the reason was sealed under the deleted key.)

use std::sync::Arc;

use confidant_audit::{Action, Entry, Outcome};
use confidant_policy::{Principal, Role};
use confidant_records::{AuditQuery, Records, SystemClock};
use confidant_store::Store;
use confidant_vault::{KeyFile, Vault};
use serde_json::json;

fn who(id: &str, role: Role, pract: Option<&str>) -> Principal {
    Principal {
        user_id: id.into(),
        role,
        practitioner_id: pract.map(str::to_owned),
        patient_id: None,
        scopes: None,
        source: None,
        credential: None,
        training: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_reasons_survive_a_rotation_by_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("t.db").display());
    let store = Store::connect(&url, true).await.unwrap();
    store.migrate().await.unwrap();
    let kek: Arc<KeyFile> = Arc::new(KeyFile::generate("test").unwrap());
    let vault = Vault::new(kek.clone());
    confidant_records::initialise(&store, &vault, "test", 1).await.unwrap();
    // "server" process
    let a = Records::open(store.clone(), Vault::new(kek.clone()), Arc::new(SystemClock)).await.unwrap();
    let admin = who("console", Role::Admin, None);
    let p1 = a
        .create(
            &admin,
            confidant_fhir::ResourceType::Practitioner,
            json!({"resourceType":"Practitioner","name":[{"family":"One"}]}),
        )
        .await
        .unwrap()
        .id;
    let p2 = a
        .create(
            &admin,
            confidant_fhir::ResourceType::Practitioner,
            json!({"resourceType":"Practitioner","name":[{"family":"Two"}]}),
        )
        .await
        .unwrap()
        .id;
    let c1 = who("u1", Role::Clinician, Some(&p1));
    let c2 = who("u2", Role::Clinician, Some(&p2));
    let pat = a
        .create(&c1, confidant_fhir::ResourceType::Patient, json!({"resourceType":"Patient","name":[{"family":"X"}]}))
        .await
        .unwrap()
        .id;
    // The server caches key v1 as current.
    a.break_glass(&c2, &pat, "first reason, long enough", 60).await.unwrap();

    // "CLI" process rotates the patient's key.
    let b = Records::open(store.clone(), Vault::new(kek.clone()), Arc::new(SystemClock)).await.unwrap();
    let mut e = Entry::new(2, Action::KeyOperation, Outcome::Success);
    e.actor = Some("console".into());
    let r = confidant_records::rotation::rotate_patient_key(&b, &pat, &[e.clone()]).await.unwrap();
    assert_eq!((r.break_glass, r.old_keys), (1, 1));

    {
        let auditor = who("aud", Role::Auditor, None);
        let q = AuditQuery {
            patient: Some(pat.clone()),
            action: Some("break-glass".into()),
            count: 50,
            ..Default::default()
        };
        let events = a.audit_events(&auditor, &q).await.expect("the stale server opens the re-sealed reason").events;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["purposeOfEvent"][0]["text"], "first reason, long enough");
    }
    // The server, with its stale cache, opens another break-glass.
    a.break_glass(&c2, &pat, "second reason, long enough", 60).await.unwrap();

    // A fresh process (restart) shows the patient's access log with reasons.
    let c = Records::open(store.clone(), Vault::new(kek.clone()), Arc::new(SystemClock)).await.unwrap();
    let auditor = who("aud", Role::Auditor, None);
    let q =
        AuditQuery { patient: Some(pat.clone()), action: Some("break-glass".into()), count: 50, ..Default::default() };
    for (who, r) in [("a restarted server", &c), ("the running server", &a)] {
        let events = r.audit_events(&auditor, &q).await.unwrap_or_else(|e| panic!("{who}: {e:?}")).events;
        let reasons: Vec<&str> = events.iter().filter_map(|e| e["purposeOfEvent"][0]["text"].as_str()).collect();
        assert_eq!(reasons, ["second reason, long enough", "first reason, long enough"], "{who}");
    }
    // Both reasons are under the current key: a second rotation re-seals them.
    let r = confidant_records::rotation::rotate_patient_key(&c, &pat, &[e]).await.expect("a second rotation");
    assert_eq!(r.break_glass, 2);
}
