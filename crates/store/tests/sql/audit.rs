//! The audit log's rows (append, read, search, checkpoints) and the
//! detector's alerts (deduplication, acknowledgement, the sinks' queue).

use confidant_store::{AlertRow, AuditFilter, Sink, StoreError};

use crate::harness::{Db, T0, audit};

both_backends!(audit_append_and_read, audit_search, audit_checkpoints, audit_refuses_what_it_did_not_keep, alerts);

async fn audit_append_and_read(db: &Db) {
    let s = &db.store;
    assert_eq!(s.audit_size().await.unwrap(), 0);
    assert_eq!(s.audit_extent().await.unwrap(), (0, None, None));
    s.append_audit(&[]).await.unwrap();
    assert_eq!(s.audit_size().await.unwrap(), 0, "an empty append is nothing");
    let rows: Vec<_> = (1..=3).map(|i| audit(i, "read", Some("u1"), Some("p1"))).collect();
    s.append_audit(&rows).await.unwrap();
    // A batch larger than one INSERT statement (64 rows) is numbered on.
    let many: Vec<_> = (4..=140).map(|i| audit(i, "search-hit", Some("u2"), None)).collect();
    s.append_audit(&many).await.unwrap();
    assert_eq!(s.audit_size().await.unwrap(), 140);
    assert_eq!(s.audit_extent().await.unwrap(), (140, Some(1), Some(140)));

    let one = s.audit_entry(2).await.unwrap().unwrap();
    assert_eq!((one.seq, one.row), (2, rows[1].clone()));
    assert_eq!(s.audit_entry(141).await.unwrap(), None);
    let page = s.audit_entries(0, 3).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(page.into_iter().map(|e| e.row).collect::<Vec<_>>(), rows);
    let tail = s.audit_entries(138, 10).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![139, 140]);
    assert_eq!(tail[1].row, many[136]);
    let all = s.audit_entries(0, 1000).await.unwrap();
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as i64 + 1 && e.row.entry == format!("entry {}", i + 1).into_bytes())
    );

    // What this process committed, for the checkpointer, taken once.
    let (taken, forgotten) = s.take_appended();
    assert_eq!(forgotten, 0);
    assert_eq!(taken.iter().map(|a| a.seq).collect::<Vec<_>>(), (1..=140).collect::<Vec<_>>());
    assert_eq!(taken[2].leaf_hash, vec![3; 32]);
    assert!(s.take_appended().0.is_empty());
}

async fn audit_search(db: &Db) {
    let s = &db.store;
    let rows = [
        audit(1, "read", Some("u1"), Some("p1")),
        audit(2, "read", Some("u2"), Some("p1")),
        audit(3, "update", Some("u1"), Some("p2")),
        audit(4, "read", Some("u1"), Some("p2")),
        audit(5, "login", Some("u1"), None),
    ];
    s.append_audit(&rows).await.unwrap();
    let seqs = |f: AuditFilter, before: Option<i64>, limit: i64| async move {
        s.audit_search(&f, before, limit).await.unwrap().into_iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    let f = |patient: Option<&str>, actor: Option<&str>, action: Option<&str>| AuditFilter {
        patient: patient.map(str::to_owned),
        actor: actor.map(str::to_owned),
        action: action.map(str::to_owned),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(AuditFilter::default(), None, 10).await, vec![5, 4, 3, 2, 1], "newest first");
    assert_eq!(seqs(AuditFilter::default(), Some(4), 2).await, vec![3, 2]);
    assert_eq!(seqs(AuditFilter::default(), None, 0).await, Vec::<i64>::new());
    assert_eq!(seqs(f(Some("p1"), None, None), None, 10).await, vec![2, 1]);
    assert_eq!(seqs(f(None, Some("u1"), None), None, 10).await, vec![5, 4, 3, 1]);
    assert_eq!(seqs(f(None, None, Some("read")), None, 10).await, vec![4, 2, 1]);
    assert_eq!(seqs(f(Some("p2"), Some("u1"), Some("read")), None, 10).await, vec![4]);
    assert_eq!(seqs(f(Some("p3"), None, None), None, 10).await, Vec::<i64>::new());
    // From (inclusive) until (exclusive), with the text conditions.
    let window = AuditFilter { from: Some(T0 + 2), until: Some(T0 + 5), ..f(None, Some("u1"), None) };
    assert_eq!(seqs(window, None, 10).await, vec![4, 3]);
    let from = AuditFilter { from: Some(T0 + 4), ..AuditFilter::default() };
    assert_eq!(seqs(from, None, 10).await, vec![5, 4]);
    // Lists (any of), and oldest first with the cursor the last one seen.
    let any = |actors: &[&str], actions: &[&str]| AuditFilter {
        actors: actors.iter().map(|a| (*a).to_owned()).collect(),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        ..AuditFilter::default()
    };
    assert_eq!(
        seqs(any(&["u1"], &["read", "create"]), None, 10).await,
        seqs(f(None, Some("u1"), Some("read")), None, 10).await
    );
    assert_eq!(seqs(any(&["nobody", "u1"], &[]), None, 10).await, vec![5, 4, 3, 1]);
    assert_eq!(seqs(any(&[], &["nothing-like-this"]), None, 10).await, Vec::<i64>::new());
    let ascending = AuditFilter { ascending: true, ..AuditFilter::default() };
    assert_eq!(seqs(ascending.clone(), None, 2).await, vec![1, 2], "oldest first");
    assert_eq!(seqs(ascending, Some(2), 2).await, vec![3, 4]);
}

async fn audit_checkpoints(db: &Db) {
    let s = &db.store;
    assert_eq!(s.latest_audit_checkpoint().await.unwrap(), None);
    assert!(s.audit_checkpoint_lines().await.unwrap().is_empty());
    s.insert_audit_checkpoint("checkpoint 20", 20, T0 + 2).await.unwrap();
    s.insert_audit_checkpoint("checkpoint 10", 10, T0 + 1).await.unwrap();
    s.insert_audit_checkpoint("checkpoint 10", 10, T0 + 3).await.unwrap(); // the same line again: kept once
    assert_eq!(s.audit_checkpoint_lines().await.unwrap(), vec!["checkpoint 10", "checkpoint 20"], "by size");
    assert_eq!(s.latest_audit_checkpoint().await.unwrap().as_deref(), Some("checkpoint 20"));
    s.insert_audit_checkpoint("checkpoint 20 again", 20, T0 + 4).await.unwrap();
    assert_eq!(
        s.latest_audit_checkpoint().await.unwrap().as_deref(),
        Some("checkpoint 20 again"),
        "the newest of a size"
    );
}

async fn audit_refuses_what_it_did_not_keep(db: &Db) {
    let s = &db.store;
    s.append_audit(&[audit(1, "read", Some("u1"), Some("p1"))]).await.unwrap();
    s.take_appended();
    // Someone with database access plants a trigger that rewrites new entries.
    if db.is_sqlite() {
        db.raw("CREATE TRIGGER rewrite AFTER INSERT ON audit_log BEGIN UPDATE audit_log SET actor = 'x' WHERE seq = NEW.seq; END;")
            .await;
    } else {
        db.raw(
            "CREATE FUNCTION rewrite() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.actor := 'x'; RETURN NEW; END $$; \
             CREATE TRIGGER rewrite BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION rewrite();",
        )
        .await;
    }
    let err = s.append_audit(&[audit(2, "read", Some("u1"), Some("p1"))]).await.unwrap_err();
    assert!(matches!(err, StoreError::AuditNotKept { seq: 2 }), "{err}");
    assert_eq!(s.audit_size().await.unwrap(), 1, "nothing committed");
    assert_eq!(s.audit_extent().await.unwrap(), (1, Some(1), Some(1)));
    assert!(s.take_appended().0.is_empty());
    let foreign: Vec<String> = s.foreign_schema_objects().await.unwrap().iter().map(|o| o.to_string()).collect();
    assert_eq!(foreign, vec!["trigger rewrite on audit_log"]);
}

fn alert(id: &str, first_at: i64) -> AlertRow {
    AlertRow {
        id: id.into(),
        rule: "bulk-patients".into(),
        severity: "high".into(),
        subject: Some("u1".into()),
        summary: format!("alert {id}"),
        action_taken: Some("lock-session".into()),
        first_at,
        last_at: first_at,
        count: 1,
        acknowledged_at: None,
        acknowledged_by: None,
    }
}

async fn alerts(db: &Db) {
    let s = &db.store;
    let a1 = alert("a1", T0);
    s.insert_alert(&a1, &[audit(1, "alert", Some("detector"), None)], &[]).await.unwrap();
    s.insert_alert(&alert("a2", T0 + 10), &[audit(2, "alert", Some("detector"), None)], &[Sink::Email]).await.unwrap();
    s.insert_alert(&alert("a3", T0 + 10), &[], &[Sink::Webhook, Sink::Email]).await.unwrap();
    let dup = s.insert_alert(&alert("a1", T0), &[audit(3, "alert", None, None)], &[]).await;
    assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");
    assert_eq!(s.audit_size().await.unwrap(), 2, "each alert with its audit entry, or neither");
    assert_eq!(s.alert("a1").await.unwrap(), Some(a1.clone()));
    assert_eq!(s.alert("a9").await.unwrap(), None);
    let ids = |v: Vec<AlertRow>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(s.alerts(false, 10).await.unwrap()), vec!["a3", "a2", "a1"], "newest first, then by id");
    assert_eq!(ids(s.alerts(false, 1).await.unwrap()), vec!["a3"]);

    // The same rule again: counted up, with the new summary.
    assert!(s.repeat_alert("a1", T0 + 5, "alert a1, again").await.unwrap());
    let a = s.alert("a1").await.unwrap().unwrap();
    assert_eq!((a.count, a.first_at, a.last_at, a.summary.as_str()), (2, T0, T0 + 5, "alert a1, again"));
    assert!(!s.repeat_alert("a9", T0, "x").await.unwrap());

    assert!(
        s.acknowledge_alert("a1", "admin1", T0 + 20, &[audit(4, "alert-ack", Some("admin1"), None)]).await.unwrap()
    );
    assert!(
        !s.acknowledge_alert("a1", "admin2", T0 + 21, &[audit(5, "alert-ack", Some("admin2"), None)]).await.unwrap()
    );
    assert_eq!(s.audit_size().await.unwrap(), 3, "a refused acknowledgement records nothing");
    let a = s.alert("a1").await.unwrap().unwrap();
    assert_eq!((a.acknowledged_at, a.acknowledged_by.as_deref()), (Some(T0 + 20), Some("admin1")));
    assert!(!s.repeat_alert("a1", T0 + 30, "x").await.unwrap(), "an acknowledged alert is not counted up");
    assert_eq!(ids(s.alerts(true, 10).await.unwrap()), vec!["a3", "a2"]);

    // The sinks' queue: oldest first, without what a sink need not deliver.
    assert_eq!(ids(s.undelivered_alerts(Sink::Webhook, 10).await.unwrap()), vec!["a1", "a2"]);
    assert_eq!(ids(s.undelivered_alerts(Sink::Email, 10).await.unwrap()), vec!["a1"]);
    assert!(s.claim_alert("a2", Sink::Webhook, T0, T0 + 100).await.unwrap());
    assert!(!s.claim_alert("a2", Sink::Webhook, T0 + 99, T0 + 200).await.unwrap(), "another node holds it");
    assert!(s.claim_alert("a2", Sink::Webhook, T0 + 100, T0 + 200).await.unwrap(), "the claim lapsed");
    s.release_alert("a2", Sink::Webhook).await.unwrap();
    assert!(s.claim_alert("a2", Sink::Webhook, T0 + 101, T0 + 300).await.unwrap(), "released");
    assert!(!s.claim_alert("a3", Sink::Webhook, T0, T0 + 100).await.unwrap(), "nothing to deliver");
    s.mark_alert_delivered("a2", Sink::Webhook, T0 + 150).await.unwrap();
    assert!(!s.claim_alert("a2", Sink::Webhook, T0 + 400, T0 + 500).await.unwrap(), "delivered");
    assert_eq!(ids(s.undelivered_alerts(Sink::Webhook, 10).await.unwrap()), vec!["a1"]);
    assert_eq!(ids(s.undelivered_alerts(Sink::Webhook, 0).await.unwrap()), Vec::<String>::new());
    assert!(s.claim_alert("a1", Sink::Email, T0, T0 + 100).await.unwrap(), "claims are per sink");
}
