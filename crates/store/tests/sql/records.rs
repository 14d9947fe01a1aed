//! Instance settings and data keys; record versions and heads; search tokens;
//! care teams with their periods, break-glass and a patient's own record.

use confidant_store::{
    CareTeamMember, Criterion, StoreError, TrainingAssignmentRow, TrainingCompletionRow, TrainingModuleRow, VersionRow,
    Write,
};

use crate::harness::{Db, T0, audit, key, patient, token, version, write};

both_backends!(
    settings_and_data_keys,
    versions_and_heads,
    search_tokens,
    tokens_that_normalise_alike,
    care_teams_and_periods,
    own_record,
    an_update_with_creates_is_all_or_none,
    writes_of_a_transaction_are_all_or_none,
    read_related_is_read_and_relationship,
    training_standing_facts_are_the_modules_and_records
);

async fn settings_and_data_keys(db: &Db) {
    let s = &db.store;
    assert_eq!(s.setting("instance-id").await.unwrap(), None);
    assert_eq!(s.setting_created("instance-id").await.unwrap(), None);
    s.insert_setting("instance-id", b"\x00\x01opaque", T0).await.unwrap();
    assert_eq!(s.setting("instance-id").await.unwrap(), Some(b"\x00\x01opaque".to_vec()));
    assert_eq!(s.setting_created("instance-id").await.unwrap(), Some(T0));
    let again = s.insert_setting("instance-id", b"other", T0 + 1).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    // Compare-and-swap: only from the value it still has.
    assert!(!s.replace_setting("instance-id", b"not the value", b"new").await.unwrap());
    assert!(!s.replace_setting("no-such-setting", b"\x00\x01opaque", b"new").await.unwrap());
    assert!(s.replace_setting("instance-id", b"\x00\x01opaque", b"new").await.unwrap());
    assert_eq!(s.setting("instance-id").await.unwrap(), Some(b"new".to_vec()));
    assert_eq!(s.setting_created("instance-id").await.unwrap(), Some(T0), "creation time kept");

    assert!(s.current_data_key("p1").await.unwrap().is_none());
    s.insert_data_key(&key("p1", 1, 1), T0).await.unwrap();
    s.insert_data_key(&key("p1", 2, 1), T0).await.unwrap();
    s.insert_data_key(&key("p2", 1, 2), T0).await.unwrap();
    let dup = s.insert_data_key(&key("p1", 2, 2), T0).await;
    assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");
    let current = s.current_data_key("p1").await.unwrap().unwrap();
    assert_eq!((current.version, current.kek_version, current.wrapped), (2, 1, b"wrapped p1 v2".to_vec()));
    assert_eq!(s.data_key("p1", 1).await.unwrap().unwrap().wrapped, b"wrapped p1 v1");
    assert!(s.data_key("p1", 3).await.unwrap().is_none());
    assert!(s.data_key("p3", 1).await.unwrap().is_none());
    assert_eq!(s.kek_usage().await.unwrap(), vec![(1, 2), (2, 1)]);

    let older: Vec<_> =
        s.data_keys_older_than(2, 10).await.unwrap().into_iter().map(|k| (k.compartment, k.version)).collect();
    assert_eq!(older, vec![("p1".to_owned(), 1), ("p1".to_owned(), 2)]);
    let first = s.data_keys_older_than(2, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(s.data_keys_older_than(1, 10).await.unwrap().is_empty());
    // Rewrapping is compare-and-swap on the wrapped bytes: a second rotation
    // holding the old row changes nothing.
    assert!(s.rewrap_data_key(&first[0], b"rewrapped", 2).await.unwrap());
    assert!(!s.rewrap_data_key(&first[0], b"rewrapped again", 3).await.unwrap());
    assert_eq!(s.kek_usage().await.unwrap(), vec![(1, 1), (2, 2)]);
    let p1: Vec<_> =
        s.data_keys_of("p1").await.unwrap().into_iter().map(|k| (k.version, k.kek_version, k.wrapped)).collect();
    assert_eq!(p1, vec![(1, 2, b"rewrapped".to_vec()), (2, 1, b"wrapped p1 v2".to_vec())]);
}

async fn versions_and_heads(db: &Db) {
    let s = &db.store;
    let k = key("p1", 1, 1);
    let pat = version("Patient", "p1", 1, "p1");
    let enc = version("Encounter", "e1", 1, "p1");
    s.create_all(
        &[Write { new_key: Some(&k), ..write(&pat, &[]) }, write(&enc, &[])],
        &[audit(1, "create", Some("u1"), Some("p1"))],
    )
    .await
    .unwrap();
    assert_eq!(s.read("Patient", "p1").await.unwrap(), Some(pat.clone()));
    assert_eq!(s.read("Encounter", "e1").await.unwrap(), Some(enc.clone()));
    assert_eq!(s.read("Patient", "e1").await.unwrap(), None, "a head is per resource type");
    assert_eq!(s.compartment_of("Encounter", "e1").await.unwrap().as_deref(), Some("p1"));
    assert_eq!(s.compartment_of("Encounter", "nope").await.unwrap(), None);
    assert_eq!(s.audit_size().await.unwrap(), 1, "the audit entry committed with the write");

    // A second create of an existing id: Conflict, and nothing of the batch lands.
    let e2 = version("Encounter", "e2", 1, "p1");
    let again = s.create_all(&[write(&e2, &[]), write(&enc, &[])], &[audit(2, "create", Some("u1"), Some("p1"))]).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    assert_eq!(s.read("Encounter", "e2").await.unwrap(), None);
    assert_eq!(s.audit_size().await.unwrap(), 1);

    // Sealed with a key that is not the compartment's current one (or of a
    // compartment with no key at all): StaleKey, nothing written.
    let stale = VersionRow { key_version: 7, ..version("Encounter", "e3", 1, "p1") };
    assert!(matches!(s.create_all(&[write(&stale, &[])], &[]).await, Err(StoreError::StaleKey)));
    let keyless = version("Encounter", "e4", 1, "p9");
    assert!(matches!(s.create_all(&[write(&keyless, &[])], &[]).await, Err(StoreError::StaleKey)));
    assert_eq!(s.read("Encounter", "e3").await.unwrap(), None);
    assert_eq!(s.read("Encounter", "e4").await.unwrap(), None);

    // Updates are optimistic on the head's version.
    let v2 =
        VersionRow { restricted_to: Some("pr1".into()), patient_visible: true, ..version("Encounter", "e1", 2, "p1") };
    s.update(write(&v2, &[]), 1, &[audit(2, "update", Some("u1"), Some("p1"))]).await.unwrap();
    assert_eq!(s.read("Encounter", "e1").await.unwrap(), Some(v2.clone()));
    assert_eq!(s.read_version("Encounter", "e1", 1).await.unwrap(), Some(enc.clone()));
    assert_eq!(s.read_version("Encounter", "e1", 3).await.unwrap(), None);
    let v3 = version("Encounter", "e1", 3, "p1");
    let lost = s.update(write(&v3, &[]), 1, &[audit(3, "update", None, None)]).await;
    assert!(matches!(lost, Err(StoreError::Conflict)), "{lost:?}");
    let moved = version("Encounter", "e1", 3, "p2");
    assert!(
        matches!(s.update(write(&moved, &[]), 2, &[]).await, Err(StoreError::Conflict)),
        "no move to another compartment"
    );
    let stale = VersionRow { key_version: 5, ..v3.clone() };
    assert!(matches!(s.update(write(&stale, &[]), 2, &[]).await, Err(StoreError::StaleKey)));
    assert_eq!(s.read("Encounter", "e1").await.unwrap(), Some(v2.clone()), "refused updates changed nothing");
    assert_eq!(s.audit_size().await.unwrap(), 2);
    s.update(write(&v3, &[]), 2, &[]).await.unwrap();

    assert_eq!(
        s.version_access("Encounter", "e1").await.unwrap(),
        vec![(None, false), (Some("pr1".into()), true), (None, false)]
    );
    let ids = |rows: Vec<VersionRow>| rows.into_iter().map(|r| r.version_id).collect::<Vec<_>>();
    assert_eq!(ids(s.history("Encounter", "e1", None, 10).await.unwrap()), vec![3, 2, 1]);
    assert_eq!(ids(s.history("Encounter", "e1", None, 2).await.unwrap()), vec![3, 2]);
    assert_eq!(ids(s.history("Encounter", "e1", Some(3), 1).await.unwrap()), vec![2]);
    assert_eq!(ids(s.history("Encounter", "e1", Some(1), 10).await.unwrap()), Vec::<i64>::new());
    assert_eq!(s.history("Encounter", "e1", None, 10).await.unwrap()[2], enc);
}

/// The ids of a search's page, its break-glass flags, and its total.
async fn found(
    db: &Db,
    resource_type: &str,
    criteria: &[Criterion],
    after: Option<&str>,
    limit: i64,
) -> (Vec<String>, i64) {
    let (rows, total) = db.store.search(resource_type, criteria, after, limit).await.unwrap();
    (rows.into_iter().map(|(r, _)| r.id).collect(), total)
}

fn ids(ids: &[&str], total: i64) -> (Vec<String>, i64) {
    (ids.iter().map(|s| s.to_string()).collect(), total)
}

async fn search_tokens(db: &Db) {
    let s = &db.store;
    patient(s, "p1", &[token("name", "smith"), token("birthdate", "1970")]).await;
    patient(s, "p2", &[token("name", "smith"), token("birthdate", "1980")]).await;
    patient(s, "p3", &[token("name", "jones"), token("birthdate", "1980")]).await;
    let by = |param: &'static str, values: &[&str]| Criterion::Token {
        param,
        tokens: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
    };

    assert_eq!(found(db, "Patient", &[by("name", &["smith"])], None, 10).await, ids(&["p1", "p2"], 2));
    assert_eq!(found(db, "Patient", &[by("name", &["smith", "jones"])], None, 10).await, ids(&["p1", "p2", "p3"], 3));
    assert_eq!(found(db, "Patient", &[by("name", &[])], None, 10).await, ids(&[], 0), "no token matches nothing");
    assert_eq!(found(db, "Patient", &[by("name", &["1980"])], None, 10).await, ids(&[], 0), "tokens are per parameter");
    assert_eq!(found(db, "Encounter", &[by("name", &["smith"])], None, 10).await, ids(&[], 0), "and per resource type");
    let both = [by("name", &["smith"]), by("birthdate", &["1980"])];
    assert_eq!(found(db, "Patient", &both, None, 10).await, ids(&["p2"], 1), "criteria are ANDed");
    assert_eq!(found(db, "Patient", &[Criterion::Compartment("p3".into())], None, 10).await, ids(&["p3"], 1));
    assert_eq!(found(db, "Patient", &[Criterion::Id("p2".into())], None, 10).await, ids(&["p2"], 1));
    assert_eq!(
        found(db, "Patient", &[by("birthdate", &["1980"]), Criterion::Id("p3".into())], None, 10).await,
        ids(&["p3"], 1)
    );

    // Pages in id order; the total counts every match.
    assert_eq!(found(db, "Patient", &[], None, 2).await, ids(&["p1", "p2"], 3));
    assert_eq!(found(db, "Patient", &[], Some("p2"), 2).await, ids(&["p3"], 3));
    assert_eq!(found(db, "Patient", &[by("name", &["smith", "jones"])], Some("p1"), 1).await, ids(&["p2"], 3));
    assert_eq!(found(db, "Patient", &[], None, 0).await, ids(&[], 3));
    // Backwards (a `previous` page): the matches before the cursor, nearest first, and the total.
    let before = |criteria: Vec<Criterion>, cursor: &'static str, limit: i64| async move {
        let (rows, total) = s.search_before("Patient", &criteria, cursor, limit).await.unwrap();
        (rows.into_iter().map(|(r, _)| r.id).collect::<Vec<_>>(), total)
    };
    assert_eq!(before(vec![], "p3", 10).await, ids(&["p2", "p1"], 3));
    assert_eq!(before(vec![], "p3", 1).await, ids(&["p2"], 3));
    assert_eq!(before(vec![by("name", &["smith", "jones"])], "p3", 1).await, ids(&["p2"], 3));
    assert_eq!(before(vec![by("name", &["jones"])], "p3", 10).await, ids(&[], 1));
    assert_eq!(before(vec![], "p1", 10).await, ids(&[], 3));

    // A new version replaces the previous version's tokens.
    let v2 = version("Patient", "p1", 2, "p1");
    s.update(write(&v2, &[token("name", "jones")]), 1, &[]).await.unwrap();
    assert_eq!(found(db, "Patient", &[by("name", &["smith"])], None, 10).await, ids(&["p2"], 1));
    assert_eq!(found(db, "Patient", &[by("name", &["jones"])], None, 10).await, ids(&["p1", "p3"], 2));
    assert_eq!(found(db, "Patient", &[by("birthdate", &["1970"])], None, 10).await, ids(&[], 0));
    let (rows, _) = s.search("Patient", &[Criterion::Id("p1".into())], None, 10).await.unwrap();
    assert_eq!(rows, vec![(v2, false)], "a search returns the current version");
}

/// Two values of one resource that normalise alike give the same token
/// twice: the write succeeds and the token is stored once.
async fn tokens_that_normalise_alike(db: &Db) {
    let s = &db.store;
    let twice = [token("name", "smith"), token("name", "smith"), token("birthdate", "1970")];
    patient(s, "p1", &twice).await;
    let by_name = [Criterion::Token { param: "name", tokens: vec![b"smith".to_vec()] }];
    assert_eq!(found(db, "Patient", &by_name, None, 10).await, ids(&["p1"], 1));
    let v2 = version("Patient", "p1", 2, "p1");
    s.update(write(&v2, &twice), 1, &[]).await.unwrap();
    assert_eq!(found(db, "Patient", &by_name, None, 10).await, ids(&["p1"], 1));
}

fn member(practitioner: &str, starts_at: Option<i64>, ends_at: Option<i64>) -> CareTeamMember {
    CareTeamMember { practitioner_id: practitioner.into(), starts_at, ends_at }
}

async fn care_teams_and_periods(db: &Db) {
    let s = &db.store;
    patient(s, "p1", &[]).await;
    patient(s, "p2", &[]).await;
    // pr1 from T0 until T0+100 (exclusive), and again from T0+200; pr2 always.
    let members =
        [member("pr1", Some(T0), Some(T0 + 100)), member("pr1", Some(T0 + 200), None), member("pr2", None, None)];
    let team = version("CareTeam", "ct1", 1, "p1");
    s.create_all(&[Write { care_team: Some(&members), ..write(&team, &[]) }], &[]).await.unwrap();
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(s.care_team_pairs(T0 + 50).await.unwrap(), pairs(&[("pr1", "p1"), ("pr2", "p1")]));
    assert_eq!(s.care_team_pairs(T0 + 150).await.unwrap(), pairs(&[("pr2", "p1")]), "between pr1's periods");
    assert_eq!(s.care_team_pairs(T0 + 250).await.unwrap(), pairs(&[("pr1", "p1"), ("pr2", "p1")]), "once each");
    for (at, pr1) in [(T0 - 1, false), (T0, true), (T0 + 99, true), (T0 + 100, false), (T0 + 200, true)] {
        assert_eq!(s.relationship("pr1", "u1", "p1", at).await.unwrap(), (pr1, false), "pr1 at T0{:+}", at - T0);
        assert_eq!(s.relationship("pr2", "u2", "p1", at).await.unwrap(), (true, false));
        assert_eq!(s.relationship("pr2", "u2", "p2", at).await.unwrap(), (false, false), "another patient");
    }

    let e1 = version("Encounter", "e1", 1, "p1");
    let note = VersionRow { restricted_to: Some("pr2".into()), ..version("Encounter", "e2", 1, "p1") };
    let other = version("Encounter", "e3", 1, "p2");
    s.create_all(&[write(&e1, &[]), write(&note, &[]), write(&other, &[])], &[]).await.unwrap();
    let care = |practitioner: &str, user: &str, now: i64| Criterion::CareTeam {
        practitioner_id: practitioner.into(),
        user_id: user.into(),
        now,
    };
    assert_eq!(
        found(db, "Encounter", &[care("pr1", "u1", T0 + 50)], None, 10).await,
        ids(&["e1"], 1),
        "not the note of pr2"
    );
    assert_eq!(found(db, "Encounter", &[care("pr2", "u2", T0 + 50)], None, 10).await, ids(&["e1", "e2"], 2));
    assert_eq!(found(db, "Encounter", &[care("pr1", "u1", T0 + 150)], None, 10).await, ids(&[], 0), "between periods");

    // A new version of the team replaces its members.
    let team2 = version("CareTeam", "ct1", 2, "p1");
    let only_pr2 = [member("pr2", None, None)];
    s.update(Write { care_team: Some(&only_pr2), ..write(&team2, &[]) }, 1, &[]).await.unwrap();
    assert_eq!(s.relationship("pr1", "u1", "p1", T0 + 50).await.unwrap(), (false, false));
    assert_eq!(s.relationship("pr2", "u2", "p1", T0 + 50).await.unwrap(), (true, false));

    // Break-glass: u1 reaches p2 until it expires, and the search says how.
    let bg = audit(1, "break-glass", Some("u1"), Some("p2"));
    s.insert_break_glass("bg1", "u1", "p2", (b"sealed reason", 1), T0, T0 + 1000, &[bg]).await.unwrap();
    assert_eq!(s.break_glass("bg1").await.unwrap(), Some(("u1".into(), "p2".into(), b"sealed reason".to_vec())));
    assert_eq!(s.break_glass("bg2").await.unwrap(), None);
    assert_eq!(s.audit_size().await.unwrap(), 1);
    assert_eq!(s.relationship("pr1", "u1", "p2", T0 + 10).await.unwrap(), (false, true));
    assert_eq!(s.relationship("pr1", "u9", "p2", T0 + 10).await.unwrap(), (false, false), "another user's break-glass");
    assert_eq!(s.relationship("pr1", "u1", "p2", T0 + 1000).await.unwrap(), (false, false), "expired");
    let (rows, _) = s.search("Encounter", &[care("pr2", "u1", T0 + 10)], None, 10).await.unwrap();
    let seen: Vec<_> = rows.iter().map(|(r, via)| (r.id.as_str(), *via)).collect();
    assert_eq!(seen, vec![("e1", false), ("e2", false), ("e3", true)]);
    // A reason sealed under a key that is not current: refused, nothing kept.
    let stale = s.insert_break_glass("bg2", "u1", "p2", (b"sealed", 9), T0, T0 + 1000, &[]).await;
    assert!(matches!(stale, Err(StoreError::StaleKey)), "{stale:?}");
    assert_eq!(s.break_glass("bg2").await.unwrap(), None);
    let dup = s.insert_break_glass("bg1", "u1", "p2", (b"sealed", 1), T0, T0 + 1000, &[]).await;
    assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");
}

async fn own_record(db: &Db) {
    let s = &db.store;
    patient(s, "p1", &[]).await;
    patient(s, "p2", &[]).await;
    let shared = VersionRow { patient_visible: true, ..version("DocumentReference", "d1", 1, "p1") };
    let unshared = version("DocumentReference", "d2", 1, "p1");
    let restricted = VersionRow {
        patient_visible: true,
        restricted_to: Some("pr1".into()),
        ..version("DocumentReference", "d3", 1, "p1")
    };
    let theirs = VersionRow { patient_visible: true, ..version("DocumentReference", "d4", 1, "p2") };
    s.create_all(&[write(&shared, &[]), write(&unshared, &[]), write(&restricted, &[]), write(&theirs, &[])], &[])
        .await
        .unwrap();
    let own = [Criterion::OwnRecord { patient_id: "p1".into() }];
    assert_eq!(found(db, "DocumentReference", &own, None, 10).await, ids(&["d1"], 1));
    assert_eq!(found(db, "Patient", &own, None, 10).await, ids(&["p1"], 1));
}

/// A measure's completed answers and their score: the new version and the
/// new resource commit together, or (a stale version) neither does.
async fn an_update_with_creates_is_all_or_none(db: &Db) {
    let s = &db.store;
    patient(s, "p1", &[]).await;
    let r1 = version("QuestionnaireResponse", "r1", 1, "p1");
    s.create_all(&[write(&r1, &[])], &[audit(1, "create", Some("u1"), Some("p1"))]).await.unwrap();
    let r2 = VersionRow { patient_visible: true, ..version("QuestionnaireResponse", "r1", 2, "p1") };
    let o1 = VersionRow { patient_visible: true, ..version("Observation", "o1", 1, "p1") };
    // Expecting a version that is no longer current: Conflict, nothing lands.
    let stale = s
        .update_and_create(write(&r2, &[]), 2, &[write(&o1, &[])], &[audit(2, "update", Some("u1"), Some("p1"))])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    assert_eq!(s.read("QuestionnaireResponse", "r1").await.unwrap(), Some(r1.clone()));
    assert_eq!(s.read("Observation", "o1").await.unwrap(), None);
    assert_eq!(s.audit_size().await.unwrap(), 1);
    // A create that collides: the update is rolled back with it.
    let taken = version("Observation", "o0", 1, "p1");
    s.create_all(&[write(&taken, &[])], &[]).await.unwrap();
    let clash = s.update_and_create(write(&r2, &[]), 1, &[write(&taken, &[])], &[]).await;
    assert!(matches!(clash, Err(StoreError::Conflict)), "{clash:?}");
    assert_eq!(s.read("QuestionnaireResponse", "r1").await.unwrap(), Some(r1));
    // Both, with their audit entries.
    let audit_rows = [audit(3, "update", Some("u1"), Some("p1")), audit(4, "create", Some("u1"), Some("p1"))];
    s.update_and_create(write(&r2, &[]), 1, &[write(&o1, &[])], &audit_rows).await.unwrap();
    assert_eq!(s.read("QuestionnaireResponse", "r1").await.unwrap(), Some(r2));
    assert_eq!(s.read("Observation", "o1").await.unwrap(), Some(o1));
    assert_eq!(s.audit_size().await.unwrap(), 3);
}

/// `write_all` (a FHIR transaction): a new patient with its key, records of
/// it and an update of another record, in order, with their audit entries;
/// a stale expected version or a taken id anywhere writes none of it.
async fn writes_of_a_transaction_are_all_or_none(db: &Db) {
    let s = &db.store;
    patient(s, "p1", &[]).await;
    let e1 = version("Encounter", "e1", 1, "p1");
    s.create_all(&[write(&e1, &[])], &[audit(1, "create", Some("u1"), Some("p1"))]).await.unwrap();
    let k2 = key("p2", 1, 1);
    let p2 = version("Patient", "p2", 1, "p2");
    let a2 = version("Appointment", "a2", 1, "p2");
    let e1v2 = version("Encounter", "e1", 2, "p1");
    let rows = [audit(2, "create", Some("u1"), Some("p2")), audit(3, "create", Some("u1"), Some("p2"))];
    // The update expects a version that is not current: nothing lands, not even the new patient's key.
    let stale = [
        (Write { new_key: Some(&k2), ..write(&p2, &[]) }, None),
        (write(&a2, &[]), None),
        (write(&e1v2, &[]), Some(2)),
    ];
    assert!(matches!(s.write_all(&stale, &rows).await, Err(StoreError::Conflict)));
    assert_eq!(s.read("Patient", "p2").await.unwrap(), None);
    assert_eq!(s.read("Appointment", "a2").await.unwrap(), None);
    assert!(s.current_data_key("p2").await.unwrap().is_none());
    assert_eq!(s.audit_size().await.unwrap(), 1);
    // A record of the new patient before its key is written: stale key, nothing lands.
    let early = [(write(&a2, &[]), None), (Write { new_key: Some(&k2), ..write(&p2, &[]) }, None)];
    assert!(matches!(s.write_all(&early, &rows).await, Err(StoreError::StaleKey)));
    assert_eq!(s.read("Patient", "p2").await.unwrap(), None);
    // In order, all of it, with the audit entries.
    let good = [
        (Write { new_key: Some(&k2), ..write(&p2, &[]) }, None),
        (write(&a2, &[]), None),
        (write(&e1v2, &[]), Some(1)),
    ];
    s.write_all(&good, &rows).await.unwrap();
    assert_eq!(s.read("Patient", "p2").await.unwrap(), Some(p2));
    assert_eq!(s.read("Appointment", "a2").await.unwrap(), Some(a2));
    assert_eq!(s.read("Encounter", "e1").await.unwrap(), Some(e1v2));
    assert_eq!(s.current_data_key("p2").await.unwrap().map(|k| k.version), Some(1));
    assert_eq!(s.audit_size().await.unwrap(), 3);
}

/// `read_related` answers what `read` and `relationship` answer together: the
/// head, and the care-team and break-glass facts of its patient at `now`; for
/// an unknown id, no row and the facts of the id in the place of a patient.
async fn read_related_is_read_and_relationship(db: &Db) {
    let s = &db.store;
    patient(s, "p1", &[]).await;
    patient(s, "p2", &[]).await;
    let members = [member("pr1", Some(T0), Some(T0 + 100)), member("pr2", None, None)];
    let team = version("CareTeam", "ct1", 1, "p1");
    s.create_all(&[Write { care_team: Some(&members), ..write(&team, &[]) }], &[]).await.unwrap();
    let e1 = version("Encounter", "e1", 1, "p1");
    let e2 = version("Encounter", "e2", 1, "p2");
    s.create_all(&[write(&e1, &[]), write(&e2, &[])], &[]).await.unwrap();
    let e1v2 = version("Encounter", "e1", 2, "p1");
    s.update(write(&e1v2, &[]), 1, &[]).await.unwrap();
    let bg = audit(1, "break-glass", Some("u1"), Some("p2"));
    s.insert_break_glass("bg1", "u1", "p2", (b"sealed reason", 1), T0, T0 + 1000, &[bg]).await.unwrap();
    for (rt, id) in
        [("Encounter", "e1"), ("Encounter", "e2"), ("Patient", "p1"), ("Encounter", "nope"), ("Patient", "e1")]
    {
        for (practitioner, user) in [("pr1", "u1"), ("pr2", "u2"), ("pr9", "u9")] {
            for at in [T0 - 1, T0, T0 + 99, T0 + 100, T0 + 1000] {
                let row = s.read(rt, id).await.unwrap();
                let patient = row.as_ref().map_or(id, |r| r.compartment.as_str());
                let rel = s.relationship(practitioner, user, patient, at).await.unwrap();
                let related = s.read_related(rt, id, practitioner, user, at).await.unwrap();
                assert_eq!(related, (row, rel), "{rt}/{id} for {practitioner}/{user} at T0{:+}", at - T0);
            }
        }
    }
    // The current version, not the first.
    assert_eq!(s.read_related("Encounter", "e1", "pr2", "u2", T0).await.unwrap(), (Some(e1v2), (true, false)));
    assert_eq!(s.read_related("Encounter", "e2", "pr1", "u1", T0).await.unwrap(), (Some(e2), (false, true)));
    assert_eq!(s.read_related("Encounter", "nope", "pr1", "u1", T0).await.unwrap(), (None, (false, false)));
}

/// `training_standing_facts` (one statement) gives what `training_module_versions`
/// and `training_records` give for the user: their rows only, in their order.
async fn training_standing_facts_are_the_modules_and_records(db: &Db) {
    let s = &db.store;
    let module = |key: &str, version: i64, roles: &str| TrainingModuleRow {
        module_key: key.into(),
        version,
        roles: roles.into(),
        definition: "{}".into(),
        active_since: T0 + version,
        source: "built-in".into(),
    };
    assert_eq!(s.training_standing_facts("u1").await.unwrap(), (vec![], vec![], vec![]));
    s.put_training_modules(&[module("privacy", 2, "all"), module("phishing", 1, "clinician,reception")], &[])
        .await
        .unwrap();
    let pass = |user: &str, key: &str, at: i64| TrainingCompletionRow {
        user_id: user.into(),
        module_key: key.into(),
        version: 1,
        score: 4,
        out_of: 5,
        passed_at: at,
    };
    let assigned = |user: &str, key: &str, at: i64| TrainingAssignmentRow {
        user_id: user.into(),
        module_key: key.into(),
        reason: "drill".into(),
        assigned_at: at,
    };
    for p in [pass("u1", "privacy", T0 + 30), pass("u1", "phishing", T0 + 10), pass("u2", "privacy", T0 + 20)] {
        s.record_training_pass(&p, &[]).await.unwrap();
    }
    for a in [assigned("u1", "phishing", T0 + 50), assigned("u1", "privacy", T0 + 40), assigned("u2", "privacy", T0)] {
        s.assign_training(&a, &[]).await.unwrap();
    }
    for user in ["u1", "u2", "u3"] {
        let (mut versions, completions, assignments) = s.training_standing_facts(user).await.unwrap();
        let mut expected = s.training_module_versions().await.unwrap();
        versions.sort();
        expected.sort();
        assert_eq!(versions, expected, "{user}");
        assert_eq!((completions, assignments), s.training_records(Some(user)).await.unwrap(), "{user}");
    }
    let (_, completions, assignments) = s.training_standing_facts("u1").await.unwrap();
    assert_eq!(completions.iter().map(|c| c.passed_at).collect::<Vec<_>>(), vec![T0 + 10, T0 + 30]);
    assert_eq!(assignments.iter().map(|a| a.assigned_at).collect::<Vec<_>>(), vec![T0 + 40, T0 + 50]);
}
