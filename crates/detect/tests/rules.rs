//! Each rule against a real (SQLite) store: what fires, what it stores, what
//! it locks, and what it absorbs as a repeat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// One change committed on its own, with no audit entry: the store's SQL
/// tested alone (identity commits each change with the entry that records it).
macro_rules! alone {
    ($store:expr, $method:ident ( $($arg:expr),* $(,)? )) => {{
        let mut changes = $store.audited().await.unwrap();
        let result = changes.$method($($arg),*).await;
        if result.is_ok() {
            changes.commit(&[]).await.unwrap();
        }
        result
    }};
}

use std::collections::HashSet;
use std::sync::Arc;

use confidant_audit::{Action, Auditor, Entry, Outcome};
use confidant_detect::{Detector, Rule, Settings};
use confidant_store::{SessionRow, Store, UserRow};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

async fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", tmp.path().join("d.db").display()), true).await.unwrap();
    store.migrate().await.unwrap();
    (tmp, store)
}

async fn user(store: &Store, id: &str) {
    let u = UserRow {
        id: id.into(),
        username_token: id.as_bytes().to_vec(),
        username_sealed: Vec::new(),
        role: "clinician".into(),
        password_hash: None,
        totp_sealed: None,
        totp_last_step: None,
        mfa_enrolled_at: None,
        practitioner_id: None,
        patient_sealed: None,
        patient_token: None,
        disabled_at: None,
        created_at: T0,
    };
    alone!(store, insert_user(&u)).unwrap();
    let s = SessionRow {
        id: format!("s-{id}"),
        user_id: id.into(),
        kind: "bearer".into(),
        csrf_hash: None,
        mfa_done: true,
        created_at: T0,
        last_seen: T0,
        expires_at: T0 + 600 * MIN,
        revoked_at: None,
    };
    alone!(store, insert_session(&s, id.as_bytes())).unwrap();
}

fn entry(at: i64, action: Action, outcome: Outcome, actor: Option<&str>, patient: Option<&str>) -> Entry {
    let mut e = Entry::new(at, action, outcome);
    e.actor = actor.map(str::to_owned);
    e.role = Some("clinician".into());
    e.source = Some("192.0.2.7".into());
    e.patient = patient.map(str::to_owned);
    e
}

fn detector(store: &Store, settings: Settings, honey: &[&str]) -> Detector {
    let auditor = Arc::new(Auditor::start(store.clone()));
    let honey: HashSet<String> = honey.iter().map(|h| h.to_string()).collect();
    Detector::new(store.clone(), auditor, settings, honey, Vec::new())
}

async fn fired(store: &Store) -> Vec<(String, i64, Option<String>)> {
    let mut a: Vec<_> =
        store.alerts(false, 100).await.unwrap().into_iter().map(|a| (a.rule, a.count, a.action_taken)).collect();
    a.sort();
    a
}

#[tokio::test]
async fn bulk_reads_fire_above_the_threshold_within_the_window_and_lock_the_account_if_told() {
    let (_tmp, store) = store().await;
    user(&store, "u1").await;
    let settings =
        Settings { max_patients_per_user: 3, lock_account_on: vec![Rule::BulkPatients], ..Settings::default() };
    let d = detector(&store, settings, &[]);
    // Three patients, and the same one again: below the threshold.
    for (i, p) in ["p1", "p2", "p3", "p1"].iter().enumerate() {
        d.observe(Some("session/s-u1"), &[entry(T0 + i as i64, Action::Read, Outcome::Success, Some("u1"), Some(p))])
            .await;
    }
    // Writes are not reads.
    d.observe(None, &[entry(T0 + 5, Action::Create, Outcome::Success, Some("u1"), Some("p9"))]).await;
    assert!(fired(&store).await.is_empty());
    // Outside the window, the old reads are forgotten.
    d.observe(None, &[entry(T0 + 11 * MIN, Action::Read, Outcome::Success, Some("u1"), Some("p4"))]).await;
    assert!(fired(&store).await.is_empty());
    for (i, p) in ["p5", "p6", "p7"].iter().enumerate() {
        d.observe(
            Some("session/s-u1"),
            &[entry(T0 + 11 * MIN + 1 + i as i64, Action::Vread, Outcome::Success, Some("u1"), Some(p))],
        )
        .await;
    }
    assert_eq!(fired(&store).await, vec![("bulk-patients".into(), 1, Some("lock-account".into()))]);
    let u = store.user_by_id("u1").await.unwrap().unwrap();
    assert!(u.disabled_at.is_some(), "the account is disabled");
    assert!(store.live_sessions("u1", T0).await.unwrap().is_empty(), "and its sessions ended");
    // Firing again while the alert is open counts it up.
    d.observe(None, &[entry(T0 + 12 * MIN, Action::Read, Outcome::Success, Some("u1"), Some("p8"))]).await;
    assert_eq!(fired(&store).await, vec![("bulk-patients".into(), 2, Some("lock-account".into()))]);
}

#[tokio::test]
async fn refusals_break_glass_failed_logins_searches_and_new_addresses() {
    let (_tmp, store) = store().await;
    let settings = Settings {
        max_refusals_per_user: 2,
        max_search_hits_per_user: 2,
        max_failed_logins_per_account: 3,
        max_failed_logins_per_source: 4,
        ..Settings::default()
    };
    let d = detector(&store, settings, &["honey1"]);
    // Two refusals (records outside one's care).
    for i in 0..2 {
        d.observe(None, &[entry(T0 + i, Action::Read, Outcome::Denied, Some("u2"), Some("px"))]).await;
    }
    // A break-glass.
    let mut bg = entry(T0 + 3, Action::BreakGlass, Outcome::Success, Some("u3"), Some("py"));
    bg.purpose = Some("break-glass/abc".into());
    d.observe(None, &[bg]).await;
    // Three search hits in one search.
    let hits: Vec<Entry> = ["a", "b", "c"]
        .iter()
        .map(|p| entry(T0 + 4, Action::SearchHit, Outcome::Success, Some("u4"), Some(p)))
        .collect();
    d.observe(None, &hits).await;
    // Failed logins: three for one account, and four from one address in all.
    for i in 0..3 {
        d.observe(None, &[entry(T0 + 5 + i, Action::LoginFailed, Outcome::Denied, Some("u5"), None)]).await;
    }
    d.observe(None, &[entry(T0 + 9, Action::LoginFailed, Outcome::Denied, None, None)]).await;
    // A token used from its first address, then from another.
    let mut e = entry(T0 + 10, Action::Read, Outcome::Success, Some("u6"), Some("pz"));
    d.observe(Some("token/t6"), std::slice::from_ref(&e)).await;
    e.source = Some("198.51.100.9".into());
    d.observe(Some("token/t6"), &[e]).await;
    // A honey record, even refused.
    d.observe(None, &[entry(T0 + 11, Action::Read, Outcome::Denied, Some("u7"), Some("honey1"))]).await;
    // The console (planting, erasing) is never an attacker here.
    d.observe(None, &[entry(T0 + 12, Action::Read, Outcome::Success, Some("console"), Some("honey1"))]).await;
    let got: Vec<(String, i64)> = fired(&store).await.into_iter().map(|(r, c, _)| (r, c)).collect();
    assert_eq!(
        got,
        vec![
            ("break-glass".into(), 1),
            ("bulk-search".into(), 1),
            ("failed-logins".into(), 1),
            ("failed-logins".into(), 1),
            ("honey-record".into(), 1),
            ("new-address".into(), 1),
            ("outside-care".into(), 1),
        ]
    );
    let all = store.alerts(false, 100).await.unwrap();
    let honey = all.iter().find(|a| a.rule == "honey-record").unwrap();
    assert_eq!(honey.severity, "critical");
    assert!(!honey.summary.contains("honey1"), "the summary does not name the record");
    // Every alert is an audit entry of the detector's.
    let log = store.audit_entries(0, 100).await.unwrap();
    let alert_entries = log.iter().filter(|s| s.row.action == "alert" && s.row.actor.as_deref() == Some("detector"));
    assert_eq!(alert_entries.count(), all.len());
}

#[tokio::test]
async fn clinical_search_hits_count_as_reads_and_an_address_locks_no_account() {
    let (_tmp, store) = store().await;
    user(&store, "u8").await;
    user(&store, "u9").await;
    let settings = Settings {
        max_patients_per_user: 3,
        max_failed_logins_per_source: 2,
        max_failed_logins_per_account: 100,
        lock_account_on: vec![Rule::FailedLogins],
        lock_session_on: Vec::new(),
        ..Settings::default()
    };
    let d = detector(&store, settings, &[]);
    // A patient list (demographics) of four: bulk-search's business, not bulk-patients'.
    let list: Vec<Entry> = ["a", "b", "c", "d"]
        .iter()
        .map(|p| {
            let mut e = entry(T0, Action::SearchHit, Outcome::Success, Some("u8"), Some(p));
            e.resource = Some(format!("Patient/{p}"));
            e
        })
        .collect();
    d.observe(None, &list).await;
    assert!(fired(&store).await.is_empty());
    // Notes of four different patients in one search: as good as reading them.
    let notes: Vec<Entry> = ["a", "b", "c", "d"]
        .iter()
        .map(|p| {
            let mut e = entry(T0 + 1, Action::SearchHit, Outcome::Success, Some("u8"), Some(p));
            e.resource = Some(format!("DocumentReference/n-{p}"));
            e
        })
        .collect();
    d.observe(None, &notes).await;
    assert_eq!(fired(&store).await, vec![("bulk-patients".into(), 1, None)]);
    // Failed logins from one address, the last for account u9: an alert, and u9 stays enabled.
    d.observe(None, &[entry(T0 + 2, Action::LoginFailed, Outcome::Denied, None, None)]).await;
    d.observe(None, &[entry(T0 + 3, Action::LoginFailed, Outcome::Denied, Some("u9"), None)]).await;
    let got = fired(&store).await;
    assert!(got.iter().any(|(r, _, _)| r == "failed-logins"), "{got:?}");
    assert!(store.user_by_id("u9").await.unwrap().unwrap().disabled_at.is_none(), "an address locks no account");
}

/// With several nodes on one database, one node at a time delivers an alert
/// to a sink: a claim holds until it lapses, is released after a failed send,
/// and a delivered alert is never claimed again.
#[tokio::test]
async fn one_node_at_a_time_delivers_an_alert_to_a_sink() {
    use confidant_store::{AlertRow, Sink};
    let (_tmp, store) = store().await;
    let a = AlertRow {
        id: "a1".into(),
        rule: "bulk-patients".into(),
        severity: "high".into(),
        subject: Some("u1".into()),
        summary: "31 patients in 10 minutes".into(),
        action_taken: None,
        first_at: T0,
        last_at: T0,
        count: 1,
        acknowledged_at: None,
        acknowledged_by: None,
    };
    store.insert_alert(&a, &[], &[]).await.unwrap();
    let claim = |at: i64, sink: Sink| store.claim_alert("a1", sink, at, at + MIN);
    assert!(claim(T0, Sink::Webhook).await.unwrap(), "the first node claims it");
    assert!(!claim(T0 + 1, Sink::Webhook).await.unwrap(), "a second node does not");
    assert!(claim(T0 + 1, Sink::Email).await.unwrap(), "each sink has its own claim");
    assert!(claim(T0 + MIN, Sink::Webhook).await.unwrap(), "a lapsed claim (a node died mid-send) is taken over");
    store.release_alert("a1", Sink::Webhook).await.unwrap();
    assert!(claim(T0 + MIN + 1, Sink::Webhook).await.unwrap(), "a released claim (a failed send) at once");
    store.mark_alert_delivered("a1", Sink::Webhook, T0 + MIN + 2).await.unwrap();
    assert!(!claim(T0 + 10 * MIN, Sink::Webhook).await.unwrap(), "a delivered alert is never claimed again");
    assert!(store.undelivered_alerts(Sink::Webhook, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_response_past_the_threshold_is_stopped_before_it_is_sent_and_every_credential_ends() {
    let (_tmp, db) = store().await;
    user(&db, "u1").await;
    let settings = Settings { max_patients_per_user: 3, ..Settings::default() };
    let d = detector(&db, settings.clone(), &[]);
    let read = |i: i64, p: &str| entry(T0 + i, Action::Read, Outcome::Success, Some("u1"), Some(p));
    let hit = |i: i64, p: &str| {
        let mut e = entry(T0 + i, Action::SearchHit, Outcome::Success, Some("u1"), Some(p));
        e.resource = Some(format!("DocumentReference/{p}-note"));
        e
    };
    d.observe(Some("session/s-u1"), &[read(0, "p1"), read(1, "p2")]).await;
    // p1 again and p3 fit (3 patients); p4 would be the fourth: cut there.
    let page = [hit(2, "p1"), hit(2, "p3"), hit(2, "p1"), hit(2, "p4"), hit(2, "p5")];
    assert_eq!(d.admit(Some("session/s-u1"), &page).await, 3);
    assert_eq!(fired(&db).await, vec![("bulk-patients".into(), 1, Some("lock-session".into()))]);
    assert!(db.live_sessions("u1", T0).await.unwrap().is_empty(), "the user's sessions ended");
    assert!(db.user_by_id("u1").await.unwrap().unwrap().disabled_at.is_none(), "the account stays enabled");
    // Patient lists and writes disclose nothing clinical: never cut.
    let mut list = hit(3, "p9");
    list.resource = Some("Patient/p9".into());
    let create = entry(T0 + 3, Action::Create, Outcome::Success, Some("u1"), Some("p8"));
    assert_eq!(d.admit(None, &[list, create]).await, 2);
    // Where the rule only alerts, everything goes out (and is counted after the commit).
    let (_tmp2, store2) = store().await;
    let d = detector(&store2, Settings { lock_session_on: Vec::new(), ..settings }, &[]);
    assert_eq!(d.admit(None, &page).await, page.len());
    assert!(fired(&store2).await.is_empty());
}
