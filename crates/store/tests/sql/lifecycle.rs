//! Erasure (legal holds, approvals, crypto-shredding), per-patient key
//! rotation, and the schema: migrations and objects that are not ours.

use confidant_store::{Erased, Rekeyed, Sealed, StoreError, UserRow, VersionRow, Write};

use crate::harness::{Db, T0, audit, key, patient, token, version, write};
use crate::identity::user;

both_backends!(legal_holds_and_erasure, inactive_patients_and_maintenance, rekey, schema_and_migrations);

/// Rows of the tables an erasure empties, for one patient.
async fn left_of(db: &Db, p: &str) -> (usize, usize, bool) {
    let s = &db.store;
    let keys = s.data_keys_of(p).await.unwrap().len();
    let (rows, _) =
        s.search("Encounter", &[confidant_store::Criterion::Compartment(p.into())], None, 100).await.unwrap();
    (keys, rows.len(), s.read("Patient", p).await.unwrap().is_some())
}

async fn legal_holds_and_erasure(db: &Db) {
    let s = &db.store;
    patient(s, "p1", &[token("name", "smith")]).await;
    patient(s, "p2", &[token("name", "smith")]).await;
    let e1 = version("Encounter", "e1", 1, "p1");
    let e2 = version("Encounter", "e2", 1, "p2");
    s.create_all(&[write(&e1, &[token("status", "done")]), write(&e2, &[])], &[]).await.unwrap();
    s.update(write(&version("Encounter", "e1", 2, "p1"), &[token("status", "done")]), 1, &[]).await.unwrap();
    s.insert_break_glass("bg1", "u1", "p1", (b"sealed", 1), T0, T0 + 1000, &[]).await.unwrap();
    let portal = UserRow { role: "patient".into(), patient_token: Some(b"token p1".to_vec()), ..user("u-p1", T0) };
    alone!(s, insert_user(&portal)).unwrap();

    assert!(!s.legal_hold("p1").await.unwrap());
    assert!(s.set_legal_hold("p1", true, T0, &[audit(1, "legal-hold", Some("admin"), Some("p1"))]).await.unwrap());
    assert!(
        !s.set_legal_hold("p1", true, T0, &[audit(2, "legal-hold", Some("admin"), Some("p1"))]).await.unwrap(),
        "already held"
    );
    assert!(s.legal_hold("p1").await.unwrap());
    assert!(!s.legal_hold("p2").await.unwrap());
    assert_eq!(s.audit_size().await.unwrap(), 2, "each attempt is recorded");
    let held = s.erase_patient("p1", b"token p1", None, T0, &[audit(3, "erase", Some("admin"), Some("p1"))]).await;
    assert!(matches!(held, Err(StoreError::Database(_))), "{held:?}");
    assert_eq!(left_of(db, "p1").await, (1, 1, true), "a held patient keeps everything");
    assert_eq!(s.audit_size().await.unwrap(), 2);
    assert!(s.set_legal_hold("p1", false, T0 + 1, &[audit(3, "legal-hold", Some("admin"), Some("p1"))]).await.unwrap());
    assert!(!s.set_legal_hold("p1", false, T0 + 1, &[]).await.unwrap());

    // Erasure with a second person's approval code.
    s.insert_erasure_request(
        b"approval",
        "p1",
        "admin1",
        T0 + 100,
        &[audit(4, "erase-request", Some("admin1"), Some("p1"))],
    )
    .await
    .unwrap();
    assert_eq!(s.erasure_request(b"approval", T0).await.unwrap(), Some(("p1".into(), "admin1".into())));
    assert_eq!(s.erasure_request(b"approval", T0 + 100).await.unwrap(), None, "expired");
    assert_eq!(s.erasure_request(b"other", T0).await.unwrap(), None);
    let wrong = s.erase_patient("p2", b"token p2", Some(b"approval"), T0, &[]).await;
    assert!(matches!(wrong, Err(StoreError::Conflict)), "the code approves p1 only: {wrong:?}");
    assert_eq!(left_of(db, "p2").await, (1, 1, true));

    let erased = s
        .erase_patient("p1", b"token p1", Some(b"approval"), T0 + 2, &[audit(5, "erase", Some("admin2"), Some("p1"))])
        .await
        .unwrap();
    assert_eq!(erased, Erased { data_keys: 1, versions: 3, resources: 2, search_tokens: 2, accounts_disabled: 1 });
    assert_eq!(left_of(db, "p1").await, (0, 0, false));
    assert_eq!(s.break_glass("bg1").await.unwrap(), None);
    let portal = s.user_by_id("u-p1").await.unwrap().unwrap();
    assert_eq!((portal.disabled_at, portal.patient_token), (Some(T0 + 2), None));
    assert_eq!(s.erasure_request(b"approval", T0).await.unwrap(), None, "used up");
    let again = s.erase_patient("p1", b"token p1", Some(b"approval"), T0 + 3, &[]).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    assert_eq!(left_of(db, "p2").await, (1, 1, true), "the other patient is untouched");
    let (smiths, _) = s
        .search(
            "Patient",
            &[confidant_store::Criterion::Token { param: "name", tokens: vec![b"smith".to_vec()] }],
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(smiths.into_iter().map(|(r, _)| r.id).collect::<Vec<_>>(), vec!["p2"]);
    // The audit log keeps its entries (ids only).
    assert_eq!(s.audit_size().await.unwrap(), 5);
}

async fn inactive_patients_and_maintenance(db: &Db) {
    let s = &db.store;
    // p1: last encounter at T0+10 (a later change of another record does not count);
    // p2: no encounter, last change T0+30; p3: encounter at T0+500.
    for p in ["p1", "p2", "p3"] {
        patient(s, p, &[]).await;
    }
    let at = |row: VersionRow, t: i64| VersionRow { last_updated: t, ..row };
    let rows = [
        at(version("Encounter", "e1", 1, "p1"), T0 + 10),
        at(version("Observation", "o1", 1, "p1"), T0 + 900),
        at(version("Observation", "o2", 1, "p2"), T0 + 30),
        at(version("Encounter", "e3", 1, "p3"), T0 + 500),
    ];
    let writes: Vec<Write<'_>> = rows.iter().map(|r| write(r, &[])).collect();
    s.create_all(&writes, &[]).await.unwrap();
    assert_eq!(
        s.patients_inactive_since(T0 + 100).await.unwrap(),
        vec![("p1".into(), T0 + 10), ("p2".into(), T0 + 30)]
    );
    assert_eq!(s.patients_inactive_since(T0 + 10).await.unwrap(), Vec::<(String, i64)>::new());
    assert_eq!(s.patients_inactive_since(T0 + 501).await.unwrap().len(), 3);

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    if db.is_sqlite() {
        assert_eq!(s.snapshot_sqlite(&copy).await.unwrap(), Some(()));
        let snapshot = confidant_store::Store::connect(&format!("sqlite://{}", copy.display()), false).await.unwrap();
        assert_eq!(snapshot.read("Encounter", "e3").await.unwrap(), Some(rows[3].clone()), "the copy holds the rows");
        snapshot.close().await;
        assert_eq!(s.sqlite_integrity_check().await.unwrap(), "ok");
    } else {
        assert_eq!(s.snapshot_sqlite(&copy).await.unwrap(), None, "PostgreSQL is backed up by pg_dump");
        assert!(!copy.exists());
    }
    s.checkpoint_wal().await.unwrap();
}

async fn rekey(db: &Db) {
    let s = &db.store;
    patient(s, "p1", &[]).await;
    patient(s, "p2", &[]).await;
    let e1 = version("Encounter", "e1", 1, "p1");
    s.create_all(&[write(&e1, &[])], &[]).await.unwrap();
    s.update(write(&version("Encounter", "e1", 2, "p1"), &[]), 1, &[]).await.unwrap();
    s.insert_break_glass("bg1", "u1", "p1", (b"sealed reason", 1), T0, T0 + 1000, &[]).await.unwrap();
    let untouched = s.read("Patient", "p2").await.unwrap().unwrap();

    // A re-sealing that fails: nothing changes, not even the new key.
    let failed = s
        .rekey_compartment(&key("p1", 2, 1), |_| Err("cannot open".into()), &[audit(1, "rekey", None, Some("p1"))], T0)
        .await;
    assert!(matches!(failed, Err(StoreError::Reseal(ref why)) if why == "cannot open"), "{failed:?}");
    assert_eq!(s.data_keys_of("p1").await.unwrap().len(), 1);
    assert_eq!(s.audit_size().await.unwrap(), 0);

    let mut seen = Vec::new();
    let done = s
        .rekey_compartment(
            &key("p1", 2, 1),
            |sealed| {
                let (name, bytes) = match sealed {
                    Sealed::Version(v) => (format!("{}/{} v{}", v.resource_type, v.id, v.version_id), v.body.clone()),
                    Sealed::BreakGlassReason { id, sealed } => (format!("break-glass {id}"), sealed.to_vec()),
                };
                seen.push(name);
                Ok([b"resealed ".as_slice(), &bytes].concat())
            },
            &[audit(1, "rekey", None, Some("p1"))],
            T0,
        )
        .await
        .unwrap();
    seen.sort();
    assert_eq!(seen, vec!["Encounter/e1 v1", "Encounter/e1 v2", "Patient/p1 v1", "break-glass bg1"]);
    assert_eq!(done, Rekeyed { versions: 3, break_glass: 1, old_keys: 1 });
    let keys: Vec<_> = s.data_keys_of("p1").await.unwrap().into_iter().map(|k| k.version).collect();
    assert_eq!(keys, vec![2], "the old key is gone");
    let v1 = s.read_version("Encounter", "e1", 1).await.unwrap().unwrap();
    assert_eq!((v1.key_version, v1.body), (2, b"resealed sealed Encounter/e1 v1".to_vec()));
    assert_eq!(s.break_glass("bg1").await.unwrap().unwrap().2, b"resealed sealed reason");
    assert_eq!(s.read("Patient", "p2").await.unwrap(), Some(untouched), "another compartment is untouched");
    assert_eq!(s.audit_size().await.unwrap(), 1);

    // A write sealed under the deleted key is refused; under the new one it lands.
    let stale = version("Encounter", "e1", 3, "p1");
    assert!(matches!(s.update(write(&stale, &[]), 2, &[]).await, Err(StoreError::StaleKey)));
    s.update(write(&VersionRow { key_version: 2, ..stale }, &[]), 2, &[]).await.unwrap();
    // The same new version twice: a racing rotation changes nothing.
    let racing = s.rekey_compartment(&key("p1", 2, 1), |_| Ok(b"x".to_vec()), &[], T0).await;
    assert!(matches!(racing, Err(StoreError::Conflict)), "{racing:?}");
}

async fn schema_and_migrations(db: &Db) {
    let s = &db.store;
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    assert!(s.foreign_schema_objects().await.unwrap().is_empty(), "a fresh database holds only ours");
    patient(s, "p1", &[]).await;

    // Objects planted by someone with database access are listed.
    db.raw("CREATE VIEW everything AS SELECT resource_type, id FROM resource_heads").await;
    let foreign: Vec<String> = s.foreign_schema_objects().await.unwrap().iter().map(|o| o.to_string()).collect();
    assert_eq!(foreign, vec!["view everything"]);
    db.raw("DROP VIEW everything").await;
    // So is a replacement of our own SQLite trigger under its name.
    if db.is_sqlite() {
        db.raw(
            "DROP TRIGGER audit_head_follows; CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_log \
             BEGIN DELETE FROM audit_log WHERE seq = NEW.seq; END;",
        )
        .await;
        let foreign: Vec<String> = s.foreign_schema_objects().await.unwrap().iter().map(|o| o.to_string()).collect();
        assert_eq!(foreign, vec!["trigger audit_head_follows on audit_log"]);
    }

    // A schema from a newer build: refused, with both versions named.
    db.raw("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)").await;
    match s.migrate().await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, 999);
            assert!((9..999).contains(&supported), "{supported}");
        }
        other => panic!("{other:?}"),
    }
    assert!(s.read("Patient", "p1").await.unwrap().is_some(), "and nothing is lost");
}

/// Connecting: only the two backends, and without `create` no new SQLite file.
#[tokio::test]
async fn connect_refuses_unknown_urls_and_missing_files() {
    let err = confidant_store::Store::connect("mysql://localhost/x", true).await.unwrap_err();
    assert_eq!(err.to_string(), "database error: database.url must start with sqlite:// or postgres://");
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.db");
    assert!(confidant_store::Store::connect(&format!("sqlite://{}", missing.display()), false).await.is_err());
    assert!(!missing.exists(), "nothing was created");
    let store = confidant_store::Store::connect(&format!("sqlite://{}", missing.display()), true).await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    store.close().await;
    assert!(missing.exists());
}
