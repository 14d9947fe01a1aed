//! Erasure (crypto-shredding): two-person approval or a forced, reasoned
//! erasure; refused under a legal hold; afterwards nothing of the patient can be
//! read by any path of the running system, and their ciphertext is gone from disk.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;

use crate::both_backends;
use crate::common::{Db, Instance, add_user, create_token, encounter, files_under, note, patient, run};

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = run(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn count(inst: &Instance, sql: &str, id: &str) -> i64 {
    let mut db = inst.db().await;
    let sql = if inst.db == Db::Postgres { sql.replace('?', "$1") } else { sql.to_owned() };
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut db).await.unwrap().get(0);
    sqlx::Connection::close(db).await.unwrap();
    n
}

async fn erasure(db: Db) {
    let inst = Instance::new(db).await;
    let d = inst.dir.to_str().unwrap().to_owned();
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let auditor = create_token(&inst.dir, "aud1", "user/*.read");
    let s = inst.start();
    let a = s.create(&patient("Erasable", "Aino")).await;
    let b = s.create(&patient("Keepable", "Bertta")).await;
    let (pa, pb) = (a["id"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned());
    let na = s.create(&note(&pa, "ERASE-ME-CANARY-51f3 session note")).await;
    let nb = s.create(&note(&pb, "bertta note")).await;
    s.create(&encounter(&pa)).await;
    let (na, nb) = (na["id"].as_str().unwrap().to_owned(), nb["id"].as_str().unwrap().to_owned());
    add_user(&inst.dir, "aino", "patient", &["--patient", &pa]);
    let aino = create_token(&inst.dir, "aino", "user/*.read");
    let ciphertext = inst.stored_body(&na).await;

    // Neither without authority, nor with one's own approval, nor under a legal hold.
    let (ok, _, err) = cli(&["patient", "erase", "--dir", &d, "--id", &pa]);
    assert!(!ok && err.contains("--approval"), "{err}");
    let (ok, _, err) =
        cli(&["patient", "erase", "--dir", &d, "--id", "nosuchpatient", "--force", "--reason", "duplicate record"]);
    assert!(!ok && err.contains("no patient has id"), "{err}");
    let request = || {
        let reason = "patient asked under GDPR Art. 17";
        cli(&["patient", "erase-request", "--dir", &d, "--id", &pa, "--requested-by", "alice", "--reason", reason])
    };
    assert!(cli(&["patient", "hold", "--dir", &d, "--id", &pa]).0);
    let (ok, _, err) =
        cli(&["patient", "erase", "--dir", &d, "--id", &pa, "--force", "--reason", "patient asked under GDPR Art. 17"]);
    assert!(!ok && err.contains("legal hold"), "{err}");
    let (ok, _, err) = request();
    assert!(!ok && err.contains("legal hold"), "{err}");
    assert!(cli(&["patient", "release", "--dir", &d, "--id", &pa]).0);
    let (ok, code, err) = request();
    assert!(ok, "{err}");
    let code = code.trim().to_owned();
    for (approver, other_id, expect) in
        [("alice", &pa, "second person"), ("Alice ", &pa, "second person"), ("bob", &pb, "another patient")]
    {
        let (ok, _, err) =
            cli(&["patient", "erase", "--dir", &d, "--id", other_id, "--approval", &code, "--approved-by", approver]);
        assert!(!ok && err.contains(expect), "{approver}: {err}");
    }
    assert_eq!(s.get(&format!("Patient/{pa}")).await.status(), StatusCode::OK, "nothing changed yet");

    // Approved by a second person: erased, while the server runs.
    let (ok, out, err) =
        cli(&["patient", "erase", "--dir", &d, "--id", &pa, "--approval", &code, "--approved-by", "bob"]);
    assert!(ok, "{err}");
    assert!(out.contains("data keys destroyed"), "{out}");
    let (ok, _, err) =
        cli(&["patient", "erase", "--dir", &d, "--id", &pa, "--approval", &code, "--approved-by", "bob"]);
    assert!(!ok && err.contains("no patient has id"), "the code works once: {err}");

    // No path of the running system reads the patient back.
    for path in [
        format!("Patient/{pa}"),
        format!("Patient/{pa}/_history/1"),
        format!("Patient/{pa}/_history"),
        format!("DocumentReference/{na}"),
    ] {
        assert_eq!(s.get(&path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        "Patient?family=erasable".to_owned(),
        format!("DocumentReference?patient={pa}"),
        format!("Encounter?patient={pa}"),
    ] {
        let (st, body): (StatusCode, Value) = s.get_json(&path).await;
        assert_eq!((st, body["total"].as_i64()), (StatusCode::OK, Some(0)), "{path}: {body}");
    }
    let r = s.http.get(s.fhir(&format!("Patient/{pa}"))).bearer_auth(&aino).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the patient's portal account is disabled");
    // Patient B is untouched.
    assert_eq!(s.get(&format!("DocumentReference/{nb}")).await.status(), StatusCode::OK);
    // The audit log keeps the story (ids only), and the erasure is in it.
    let r =
        s.http.get(s.fhir(&format!("AuditEvent?patient={pa}&_count=100"))).bearer_auth(&auditor).send().await.unwrap();
    let log: Value = r.json().await.unwrap();
    let actions: Vec<&str> =
        log["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["subtype"][0]["code"].as_str()).collect();
    for a in ["create", "legal-hold", "delete"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    s.stop();

    // In the database: no key, no version, no head, no token of theirs.
    for sql in [
        "SELECT COUNT(*) FROM data_keys WHERE compartment = ?",
        "SELECT COUNT(*) FROM resource_versions WHERE compartment = ?",
        "SELECT COUNT(*) FROM resource_heads WHERE compartment = ?",
        "SELECT COUNT(*) FROM care_team_members WHERE patient_id = ?",
    ] {
        assert_eq!(count(&inst, sql, &pa).await, 0, "{sql}");
    }
    // On disk (SQLite: database, WAL): the note's ciphertext is gone, overwritten.
    if db == Db::Sqlite {
        let needle = &ciphertext[18..18 + 48];
        for f in files_under(&inst.dir) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "ciphertext left in {}", f.display());
            assert!(!String::from_utf8_lossy(&bytes).contains("ERASE-ME-CANARY"));
        }
    }
    let (ok, out, err) = cli(&["audit", "verify", "--dir", &d]);
    assert!(ok, "{out}{err}");
}
both_backends!(erasure);

/// The retention policy: a dry run lists and changes nothing; a run erases all
/// expired patients except those on legal hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_policy() {
    let inst = Instance::new(Db::Sqlite).await;
    let d = inst.dir.to_str().unwrap().to_owned();
    let (ok, _, err) = cli(&["retention", "run", "--dir", &d, "--dry-run"]);
    assert!(!ok && err.contains("no retention policy"), "{err}");
    let s = inst.start();
    let mut ids = Vec::new();
    for family in ["Expired", "Held", "Alsoexpired"] {
        let p = s.create(&patient(family, "R")).await;
        let id = p["id"].as_str().unwrap().to_owned();
        s.create(&encounter(&id)).await;
        ids.push(id);
    }
    s.stop();
    // Zero years: everything before now has expired (a test of the mechanism, not a policy).
    let config = inst.dir.join("confidant.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let policy = "[retention]\nyears_after_last_encounter = 0\n";
    let text = if text.contains("[retention]\n") {
        text.replace("[retention]\n", policy)
    } else {
        format!("{text}\n{policy}")
    };
    std::fs::write(&config, text).unwrap();
    assert!(cli(&["patient", "hold", "--dir", &d, "--id", &ids[1]]).0);
    let (ok, out, err) = cli(&["retention", "run", "--dir", &d, "--dry-run"]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("would be erased").count(), 2, "{out}");
    assert!(out.contains(&format!("Patient/{}", ids[1])) && out.contains("kept: legal hold"), "{out}");
    let s = inst.start();
    for id in &ids {
        assert_eq!(s.get(&format!("Patient/{id}")).await.status(), StatusCode::OK, "a dry run changes nothing");
    }
    s.stop();
    let (ok, out, err) = cli(&["retention", "run", "--dir", &d]);
    assert!(ok, "{err}");
    assert!(out.contains("2 patients erased"), "{out}");
    let s = inst.start();
    let statuses: Vec<StatusCode> =
        futures_statuses(&s, &ids.iter().map(|id| format!("Patient/{id}")).collect::<Vec<_>>()).await;
    assert_eq!(statuses, [StatusCode::NOT_FOUND, StatusCode::OK, StatusCode::NOT_FOUND]);
    s.stop();
    assert!(cli(&["audit", "verify", "--dir", &d]).0);
}

async fn futures_statuses(s: &crate::common::Server, paths: &[String]) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for p in paths {
        out.push(s.get(p).await.status());
    }
    out
}
