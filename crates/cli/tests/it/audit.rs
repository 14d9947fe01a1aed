//! The audit log: every access leaves an entry, nobody can change the log
//! unnoticed, no entry means no data, several nodes keep one log, proofs
//! check out with a verifier written here from RFC 9162, and the AuditEvent
//! view shows auditors everything and each patient their own access log.
//!
//! Over 600 lines because each audit guarantee (entries, proofs, checkpoints, witness,
//! verification, export) is tested against a running instance.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, create_token, note, patient, pg_url, run};

/// One stored row of `audit_log`, as the attacker with database access sees it.
#[derive(Clone, Debug)]
pub(crate) struct Row7 {
    pub(crate) seq: i64,
    pub(crate) entry: Vec<u8>,
    pub(crate) leaf_hash: Vec<u8>,
    pub(crate) at: i64,
    pub(crate) actor: Option<String>,
    pub(crate) patient: Option<String>,
    pub(crate) action: String,
}

/// Where an instance's witness file is by default: beside its key file, outside DIR.
pub(crate) fn witness_path(inst: &Instance) -> std::path::PathBuf {
    inst.key_file.with_extension("witness")
}

pub(crate) fn q(inst: &Instance, sql: &str) -> String {
    if inst.db == Db::Sqlite {
        return sql.to_owned();
    }
    let mut out = String::new();
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) async fn rows(inst: &Instance) -> Vec<Row7> {
    let mut db = inst.db().await;
    let rows = sqlx::query("SELECT seq, entry, leaf_hash, at, actor, patient, action FROM audit_log ORDER BY seq")
        .fetch_all(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    rows.iter()
        .map(|r| Row7 {
            seq: r.get(0),
            entry: r.get(1),
            leaf_hash: r.get(2),
            at: r.get(3),
            actor: r.get(4),
            patient: r.get(5),
            action: r.get(6),
        })
        .collect()
}

/// Replace the whole table (and the head's size) by `rows`: the attacker's tool.
pub(crate) async fn write_rows(inst: &Instance, rows: &[Row7]) {
    let mut db = inst.db().await;
    let mut tx = db.begin().await.unwrap();
    sqlx::query("DELETE FROM audit_log").execute(&mut *tx).await.unwrap();
    let insert = q(
        inst,
        "INSERT INTO audit_log (seq, entry, leaf_hash, at, actor, patient, action) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    for r in rows {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(r.seq)
            .bind(r.entry.as_slice())
            .bind(r.leaf_hash.as_slice())
            .bind(r.at)
            .bind(r.actor.as_deref())
            .bind(r.patient.as_deref())
            .bind(r.action.as_str())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let max = rows.iter().map(|r| r.seq).max().unwrap_or(0);
    sqlx::query(sqlx::AssertSqlSafe(q(inst, "UPDATE audit_head SET size = ?")))
        .bind(max)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    db.close().await.unwrap();
}

/// RFC 6962 leaf hash, computed here with another SHA-256 implementation.
pub(crate) fn leaf(entry: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().to_vec()
}

pub(crate) fn verify(inst: &Instance) -> (bool, String) {
    let out = run(&["audit", "verify", "--dir", inst.dir.to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn assert_detected(inst: &Instance, what: &str, expect: &str) {
    let (ok, text) = verify(inst);
    assert!(!ok, "{what}: verify passed a tampered log:\n{text}");
    assert!(text.contains("AUDIT LOG VERIFICATION FAILED"), "{what}: {text}");
    assert!(text.contains(expect), "{what}: expected '{expect}' in:\n{text}");
}

async fn entries_of(inst: &Instance) -> Vec<Value> {
    rows(inst).await.iter().map(|r| serde_json::from_slice(&r.entry).unwrap()).collect()
}

async fn tamper_evident_log(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let p = s.create(&patient("Virtanen", "Aino")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let n = s.create(&note(&pid, "AUDIT-CANARY-NOTE-9d2c")).await;
    let nid = n["id"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&format!("DocumentReference/{nid}")).await.status(), StatusCode::OK);
    let (_, b) = s.get_json("Patient?family=virtanen").await;
    assert_eq!(b["total"], 1);
    // The admin may not read notes: a refused access is an entry too.
    let r =
        s.http.get(s.fhir(&format!("DocumentReference/{nid}"))).bearer_auth(&inst.admin_token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    s.stop();

    // What the log says: who did what to whose record, ids only.
    let entries = entries_of(&inst).await;
    let find = |action: &str, resource: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["resource"].as_str().is_some_and(|r| r.starts_with(resource)))
    };
    let read = find("read", &format!("DocumentReference/{nid}")).expect("the read is logged");
    assert_eq!(read["patient"], pid.as_str());
    assert_eq!(read["role"], "clinician");
    assert_eq!(read["outcome"], "success");
    assert_eq!(read["source"], "127.0.0.1");
    assert!(find("create", &format!("Patient/{pid}")).is_some(), "create logged");
    assert!(find("create", "CareTeam/").is_some(), "the clinician's new care team is logged");
    assert!(find("search-hit", &format!("Patient/{pid}")).is_some(), "a search hit is logged");
    let denied = entries.iter().find(|e| e["outcome"] == "denied").expect("the refusal is logged");
    assert_eq!(denied["role"], "admin");
    for action in ["user-add", "token-create"] {
        assert!(entries.iter().any(|e| e["action"] == action), "{action} is logged");
    }
    let all = String::from_utf8(rows(&inst).await.iter().flat_map(|r| r.entry.clone()).collect()).unwrap();
    for phi in ["Virtanen", "virtanen", "Aino", "AUDIT-CANARY", "1980-02-01"] {
        assert!(!all.contains(phi), "the audit log holds '{phi}'");
    }

    // Intact: verify passes, and checks every entry against the witness.
    let (ok, text) = verify(&inst);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("entries:     {}", entries.len())), "{text}");
    let original = rows(&inst).await;
    assert!(original.len() >= 10, "{} entries", original.len());
    // A verifier of our own format agrees: each stored leaf hash is SHA-256(0x00 || entry).
    for r in &original {
        assert_eq!(r.leaf_hash, leaf(&r.entry), "entry {}", r.seq);
    }
    let mid = original.len() / 2;

    // 1. One byte of one entry changed, its hash left alone.
    let mut t = original.clone();
    t[mid].entry[5] ^= 1;
    write_rows(&inst, &t).await;
    assert_detected(&inst, "one byte", &format!("entry {} was altered", mid + 1));
    // 2. ...and its hash recomputed: the signed checkpoint catches it.
    t[mid].leaf_hash = leaf(&t[mid].entry);
    write_rows(&inst, &t).await;
    assert_detected(&inst, "one byte, re-hashed", "does not match the signed checkpoint");
    // 3. One entry deleted.
    let mut t = original.clone();
    t.remove(mid);
    write_rows(&inst, &t).await;
    assert_detected(&inst, "deleted", &format!("entry {} is missing", mid + 1));
    // 4. Deleted, and the rest renumbered to hide the gap.
    for (i, r) in t.iter_mut().enumerate() {
        r.seq = i as i64 + 1;
    }
    write_rows(&inst, &t).await;
    // The log is now one entry shorter than the last signed checkpoint says.
    let (ok, text) = verify(&inst);
    assert!(!ok, "deleted and renumbered: verify passed:\n{text}");
    // Caught by whichever signed checkpoint comes first: one inside the log, or the last.
    assert!(
        text.contains("the tail was removed") || text.contains("does not match the signed checkpoint"),
        "deleted and renumbered: {text}"
    );
    // 5. Two entries swapped.
    let mut t = original.clone();
    let (a, b) = (t[mid].clone(), t[mid + 1].clone());
    t[mid] = Row7 { seq: a.seq, ..b };
    t[mid + 1] = Row7 { seq: a.seq + 1, ..a };
    write_rows(&inst, &t).await;
    assert_detected(&inst, "swapped", "does not match the signed checkpoint");
    // 6. An entry inserted (a forged alibi), the rest renumbered.
    let mut t = original.clone();
    let mut forged = original[mid].clone();
    forged.entry = br#"{"v":1,"time":0,"action":"read","outcome":"success"}"#.to_vec();
    forged.leaf_hash = leaf(&forged.entry);
    // A careful forger makes the search columns agree with the forged entry.
    (forged.at, forged.actor, forged.patient, forged.action) = (0, None, None, "read".into());
    t.insert(mid, forged);
    for (i, r) in t.iter_mut().enumerate() {
        r.seq = i as i64 + 1;
    }
    write_rows(&inst, &t).await;
    assert_detected(&inst, "inserted", "does not match the signed checkpoint");
    // 7. The tail cut off (the witness holds a checkpoint beyond it).
    let t: Vec<Row7> = original[..original.len() - 3].to_vec();
    write_rows(&inst, &t).await;
    assert_detected(&inst, "truncated", "the tail was removed");
    // 8. The search columns edited to hide an entry from a patient's access log.
    let mut t = original.clone();
    let i = t.iter().position(|r| r.patient.is_some()).unwrap();
    t[i].patient = None;
    write_rows(&inst, &t).await;
    assert_detected(&inst, "columns", &format!("entry {} was altered", i + 1));
    // 9. The whole table replaced by a re-hashed forgery, without the signing key.
    let t: Vec<Row7> = original
        .iter()
        .map(|r| {
            let entry = String::from_utf8(r.entry.clone()).unwrap().replace("\"read\"", "\"create\"").into_bytes();
            Row7 { leaf_hash: leaf(&entry), entry, action: r.action.replace("read", "create"), ..r.clone() }
        })
        .collect();
    write_rows(&inst, &t).await;
    assert_detected(&inst, "forged table", "does not match the signed checkpoint");
    // ...with a forged checkpoint line appended, signed by another key: refused.
    let witness = witness_path(&inst);
    let real = std::fs::read_to_string(&witness).unwrap();
    let last = real.lines().last().unwrap();
    let (body, _sig) = last.rsplit_once(' ').unwrap();
    std::fs::write(&witness, format!("{real}{body} {}\n", "ab".repeat(64))).unwrap();
    assert_detected(&inst, "forged checkpoint", "invalid signature");
    std::fs::write(&witness, &real).unwrap();

    // 10. A row numbered outside the sequence (0 or negative), where an in-order read never
    // meets it: the attacker first disarms the table's CHECK constraint.
    write_rows(&inst, &original).await;
    let mut db = inst.db().await;
    let disarm = match inst.db {
        Db::Sqlite => "PRAGMA ignore_check_constraints = ON",
        Db::Postgres => "ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_seq_check",
    };
    sqlx::raw_sql(disarm).execute(&mut db).await.unwrap();
    let framed = br#"{"v":1,"time":1,"action":"read","outcome":"success"}"#.to_vec();
    sqlx::query(sqlx::AssertSqlSafe(q(
        &inst,
        "INSERT INTO audit_log (seq, entry, leaf_hash, at, action) VALUES (-1, ?, ?, 1, 'read')",
    )))
    .bind(framed.as_slice())
    .bind(leaf(&framed))
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();
    assert_detected(&inst, "stray row", "rows were inserted out of sequence");
    write_rows(&inst, &original).await;
    // 11. The witness file cut back to its first line, and the log's tail with it: the
    // signed copies in the database still hold the log to its length.
    let witness = witness_path(&inst);
    let real = std::fs::read_to_string(&witness).unwrap();
    std::fs::write(&witness, format!("{}\n", real.lines().next().unwrap())).unwrap();
    write_rows(&inst, &original[..original.len() - 2]).await;
    assert_detected(&inst, "witness and tail cut", "the tail was removed");
    std::fs::write(&witness, &real).unwrap();
    // 12. A forged checkpoint copy in the database is refused.
    write_rows(&inst, &original).await;
    let mut db = inst.db().await;
    let last = real.lines().last().unwrap();
    let (body, sig) = last.rsplit_once(' ').unwrap();
    let forged_line = format!("{} {sig}", body.replacen(&format!(" {} ", original.len()), " 99999 ", 1));
    sqlx::query(sqlx::AssertSqlSafe(q(
        &inst,
        "INSERT INTO audit_checkpoints (line, size, created_at) VALUES (?, 99999, 0)",
    )))
    .bind(forged_line.as_str())
    .execute(&mut db)
    .await
    .unwrap();
    assert_detected(&inst, "forged checkpoint copy", "not signed by this instance's audit key");
    sqlx::raw_sql("DELETE FROM audit_checkpoints WHERE size = 99999").execute(&mut db).await.unwrap();
    db.close().await.unwrap();

    // Restored, it verifies again; and a serving node notices tampering at start-up.
    write_rows(&inst, &original).await;
    assert!(verify(&inst).0, "restored log verifies");
    let mut t = original.clone();
    t[mid].entry[5] ^= 1;
    t[mid].leaf_hash = leaf(&t[mid].entry);
    write_rows(&inst, &t).await;
    let s = inst.start();
    let out = s.output();
    assert!(out.contains("SECURITY ALERT") && out.contains("audit log"), "{out}");
    s.stop();
    let alert = entries_of(&inst).await.into_iter().any(|e| e["action"] == "alert");
    assert!(alert, "the alert is itself in the log");
    // A deleted row does not keep the server from starting: it serves, and raises the alert.
    let mut t = rows(&inst).await;
    t.remove(3);
    write_rows(&inst, &t).await;
    let s = inst.start();
    assert!(s.output().contains("SECURITY ALERT"), "{}", s.output());
    assert_eq!(s.get(&format!("Patient/{pid}")).await.status(), StatusCode::OK);
    s.stop();
}
both_backends!(tamper_evident_log);

/// Make every audit append fail inside the database, as a full disk or a
/// broken replica would.
async fn break_audit_appends(inst: &Instance, broken: bool) {
    let mut db = inst.db().await;
    let sql = match (inst.db, broken) {
        (Db::Sqlite, true) => {
            "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit appends broken by the test'); END;"
        }
        (Db::Sqlite, false) => "DROP TRIGGER audit_fail;",
        (Db::Postgres, true) => {
            "CREATE FUNCTION audit_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit appends broken by the test'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_fail();"
        }
        (Db::Postgres, false) => "DROP TRIGGER audit_fail ON audit_log; DROP FUNCTION audit_fail();",
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut db).await.unwrap();
    db.close().await.unwrap();
}

async fn no_audit_no_data(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let p = s.create(&patient("Korhonen", "Eero")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let before = crate::common::row_counts(&inst).await;
    break_audit_appends(&inst, true).await;
    for path in [
        format!("Patient/{pid}"),
        format!("Patient/{pid}/_history/1"),
        format!("Patient/{pid}/_history"),
        "Patient?family=korhonen".to_owned(),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("Korhonen") && !body.contains("Eero"), "{path} returned data: {body}");
        assert!(body.contains("audit log"), "{body}");
    }
    // A write whose entry cannot be appended does not happen either.
    let r = s.post("DocumentReference", &note(&pid, "must not be stored")).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    assert_eq!(crate::common::row_counts(&inst).await, before, "the write was kept without its audit entry");
    // Repaired, the same read works.
    break_audit_appends(&inst, false).await;
    assert_eq!(s.get(&format!("Patient/{pid}")).await.status(), StatusCode::OK);
    s.stop();
    let (ok, text) = verify(&inst);
    assert!(ok, "{text}");
}
both_backends!(no_audit_no_data);

/// Two `confidant serve` processes on one PostgreSQL, reading concurrently:
/// one linear log, no gaps, no duplicates, one entry per audited read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_one_log() {
    if pg_url().is_none() {
        assert!(std::env::var("CI").ok().as_deref() != Some("true"), "PostgreSQL must be set in CI");
        eprintln!("\n*** SKIPPED audit::two_nodes_one_log: set CONFIDANT_TEST_POSTGRES_URL to run it ***\n");
        return;
    }
    let inst = Instance::new(Db::Postgres).await;
    let a = inst.start();
    let b = inst.start();
    let p = a.create(&patient("Lahtinen", "Kaisa")).await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    let before = rows(&inst).await.len();
    const PER_TASK: usize = 40;
    let mut tasks = Vec::new();
    for node in [&a, &b] {
        for _ in 0..4 {
            let (http, url, token, path) = (node.http.clone(), node.fhir(&path), node.token.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::OK, "{path}");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read = |(out, err): (std::path::PathBuf, std::path::PathBuf)| {
        std::fs::read_to_string(out).unwrap() + &std::fs::read_to_string(err).unwrap()
    };
    let (out_a, out_b) = (read(a.stop()), read(b.stop()));
    let all = rows(&inst).await;
    let seqs: Vec<i64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>(), "no gaps, no duplicates");
    let reads = all[before..].iter().filter(|r| r.action == "read").count();
    assert_eq!(reads, 8 * PER_TASK, "one entry per audited read");
    assert_eq!(all.len() - before, 8 * PER_TASK, "nothing else was appended");
    let witness = std::fs::read_to_string(witness_path(&inst)).unwrap();
    assert!(witness.lines().count() >= 2, "both nodes signed checkpoints");
    let (ok, text) = verify(&inst);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("entries:     {}", all.len())), "{text}");
    // Each node checked the other's entries against the heads it signed: no false alarm.
    for (name, out) in [("a", &out_a), ("b", &out_b)] {
        assert!(!out.contains("audit-tamper"), "node {name} raised a false tamper alarm:\n{out}");
    }
}

// ----- an independent RFC 9162 verifier (§2.1.3.2, §2.1.4.2), from the RFC's text --------

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    sha(&[&[1u8], l, r])
}

fn hex32(s: &Value) -> [u8; 32] {
    hex::decode(s.as_str().unwrap()).unwrap().try_into().unwrap()
}

/// RFC 9162 §2.1.3.2.
fn rfc_inclusion_ok(leaf_index: u64, tree_size: u64, leaf_hash: [u8; 32], path: &[[u8; 32]], root: [u8; 32]) -> bool {
    if leaf_index >= tree_size {
        return false;
    }
    let (mut fn_, mut sn) = (leaf_index, tree_size - 1);
    let mut r = leaf_hash;
    for p in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == root
}

/// RFC 9162 §2.1.4.2.
fn rfc_consistency_ok(
    first: u64,
    second: u64,
    first_hash: [u8; 32],
    second_hash: [u8; 32],
    proof: &[[u8; 32]],
) -> bool {
    if first == second {
        return proof.is_empty() && first_hash == second_hash;
    }
    if first == 0 || first > second {
        return false;
    }
    let mut path: Vec<[u8; 32]> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, first_hash);
    }
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let Some((c, rest)) = path.split_first() else { return false };
    let (mut fr, mut sr) = (*c, *c);
    for p in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node(p, &fr);
            sr = node(p, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node(&sr, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == first_hash && sr == second_hash
}

async fn api(s: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    let r = s.http.request(Method::GET, format!("{}{path}", s.url)).bearer_auth(token).send().await.unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn proofs_check_out_independently(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "aud1", "auditor", &[]);
    let auditor = create_token(&inst.dir, "aud1", "user/*.read");
    // Grow the log, sign a checkpoint in the middle, grow it again, sign again.
    let s = inst.start();
    let p = s.create(&patient("Nieminen", "Satu")).await;
    for _ in 0..6 {
        assert_eq!(s.get(&format!("Patient/{}", p["id"].as_str().unwrap())).await.status(), StatusCode::OK);
    }
    s.stop();
    let s = inst.start();
    for _ in 0..9 {
        assert_eq!(s.get(&format!("Patient/{}", p["id"].as_str().unwrap())).await.status(), StatusCode::OK);
    }
    let out = run(&["audit", "checkpoint", "--dir", inst.dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let witness = std::fs::read_to_string(witness_path(&inst)).unwrap();
    let sizes: Vec<u64> = witness.lines().map(|l| l.split(' ').nth(3).unwrap().parse().unwrap()).collect();
    assert!(sizes.len() >= 2, "{witness}");
    let (first, latest) = (sizes[0], *sizes.iter().max().unwrap());
    assert!(first < latest);

    // The latest checkpoint, as served: its line is the witness's.
    let (st, cp) = api(&s, &auditor, "/api/v1/audit/checkpoint").await;
    assert_eq!(st, StatusCode::OK, "{cp}");
    let root_latest = hex32(&cp["root"]);
    let size = cp["tree_size"].as_u64().unwrap();
    assert!(witness.lines().any(|l| l == cp["checkpoint"].as_str().unwrap()), "served checkpoint is in the witness");
    let root_first: [u8; 32] =
        hex::decode(witness.lines().next().unwrap().split(' ').nth(4).unwrap()).unwrap().try_into().unwrap();

    // Every entry's inclusion in the latest tree, checked here from the entry's own bytes.
    for seq in 1..=size {
        let (st, pr) = api(&s, &auditor, &format!("/api/v1/audit/proof?seq={seq}&size={size}")).await;
        assert_eq!(st, StatusCode::OK, "{pr}");
        let entry = pr["entry"].as_str().unwrap().as_bytes();
        let leaf_hash: [u8; 32] = leaf(entry).try_into().unwrap();
        let path: Vec<[u8; 32]> = pr["inclusion"]["audit_path"].as_array().unwrap().iter().map(hex32).collect();
        let idx = pr["inclusion"]["leaf_index"].as_u64().unwrap();
        assert_eq!(idx, seq - 1);
        assert!(rfc_inclusion_ok(idx, size, leaf_hash, &path, root_latest), "inclusion of {seq} in {size}");
        // A wrong leaf, index or root fails.
        assert!(!rfc_inclusion_ok(idx, size, sha(&[b"x"]), &path, root_latest));
        assert!(!rfc_inclusion_ok(idx ^ 1, size, leaf_hash, &path, root_latest) || size == 1);
    }
    // The first signed tree is a prefix of the latest.
    let (st, pr) = api(&s, &auditor, &format!("/api/v1/audit/proof?from={first}&to={size}")).await;
    assert_eq!(st, StatusCode::OK, "{pr}");
    let proof: Vec<[u8; 32]> = pr["consistency"]["proof"].as_array().unwrap().iter().map(hex32).collect();
    assert!(rfc_consistency_ok(first, size, root_first, root_latest, &proof), "consistency {first} → {size}");
    assert!(!rfc_consistency_ok(first, size, sha(&[b"forged"]), root_latest, &proof), "a forged old root fails");
    // The CLI prints the same proofs.
    let out = run(&["audit", "proof", "--dir", inst.dir.to_str().unwrap(), "--seq", "1", "--size", &size.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["root"], hex::encode(root_latest));

    // Only auditors; hostile parameters get a clear 400, no session a 401.
    for (path, want) in [
        ("/api/v1/audit/proof?seq=0", StatusCode::BAD_REQUEST),
        ("/api/v1/audit/proof?seq=999999", StatusCode::BAD_REQUEST),
        ("/api/v1/audit/proof?seq=-1", StatusCode::BAD_REQUEST),
        ("/api/v1/audit/proof?seq=1&from=1", StatusCode::BAD_REQUEST),
        ("/api/v1/audit/proof?from=5&to=2", StatusCode::BAD_REQUEST),
        ("/api/v1/audit/proof?seq=1%27%20OR%201=1", StatusCode::BAD_REQUEST),
        ("/api/v1/audit/proof?bogus=1", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(api(&s, &auditor, path).await.0, want, "{path}");
    }
    assert_eq!(api(&s, &inst.token, "/api/v1/audit/proof?seq=1").await.0, StatusCode::FORBIDDEN);
    assert_eq!(api(&s, &inst.admin_token, "/api/v1/audit/checkpoint").await.0, StatusCode::FORBIDDEN);
    let r = s.http.get(format!("{}/api/v1/audit/checkpoint", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop();
}
both_backends!(proofs_check_out_independently);

async fn fhir(s: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    let r = s.http.get(s.fhir(path)).bearer_auth(token).send().await.unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn audit_event_access(db: Db) {
    let inst = Instance::new(db).await;
    let dir = inst.dir.to_str().unwrap().to_owned();
    add_user(&inst.dir, "aud1", "auditor", &[]);
    add_user(&inst.dir, "rec1", "reception", &[]);
    let auditor = create_token(&inst.dir, "aud1", "user/*.read");
    let reception = create_token(&inst.dir, "rec1", "user/*.*");
    let s = inst.start();
    let a = s.create(&patient("Mäkinen", "Anna")).await;
    let b = s.create(&patient("Heikkinen", "Olli")).await;
    let (pa, pb) = (a["id"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned());
    add_user(&inst.dir, "anna", "patient", &["--patient", &pa]);
    let anna = create_token(&inst.dir, "anna", "user/*.read");
    let n = s.create(&note(&pa, "session notes")).await;
    let nid = n["id"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&format!("DocumentReference/{nid}")).await.status(), StatusCode::OK);
    assert_eq!(s.get(&format!("Patient/{pb}")).await.status(), StatusCode::OK);
    // A failed login is a security event.
    let r = s
        .http
        .post(format!("{}/api/v1/session", s.url))
        .json(&json!({"username": "rec1", "password": "wrong password entirely", "client": "bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The patient's access log: who (name and role), when, what, why.
    let (st, log) = fhir(&s, &anna, "AuditEvent").await;
    assert_eq!(st, StatusCode::OK, "{log}");
    let events: Vec<&Value> = log["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    assert!(!events.is_empty());
    for e in &events {
        let about_a = e["entity"].as_array().unwrap().iter().any(|x| x["what"]["reference"] == format!("Patient/{pa}"));
        assert!(about_a, "a patient sees only entries about their own record: {e}");
    }
    let note_read = events
        .iter()
        .find(|e| {
            e["subtype"][0]["code"] == "read" && e["entity"][0]["what"]["reference"].as_str().unwrap().contains(&nid)
        })
        .expect("the note's read is in the patient's log");
    assert_eq!(note_read["agent"][0]["who"]["display"], "Test Clinician");
    assert_eq!(note_read["agent"][0]["role"][0]["text"], "clinician");
    assert_eq!(note_read["action"], "R");
    assert!(note_read["recorded"].as_str().unwrap().ends_with('Z'));
    let text = log.to_string();
    assert!(!text.contains(&pb), "another patient's id leaked into the patient's log");
    // Asking for another patient's log gives nothing; their entries are not found.
    let (st, other) = fhir(&s, &anna, &format!("AuditEvent?patient={pb}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(other.get("entry").is_none(), "{other}");
    let (_, auditor_view) = fhir(&s, &auditor, &format!("AuditEvent?patient={pb}&action=read")).await;
    let seq_b = auditor_view["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    assert_eq!(fhir(&s, &anna, &format!("AuditEvent/{seq_b}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(fhir(&s, &auditor, &format!("AuditEvent/{seq_b}")).await.0, StatusCode::OK);

    // The auditor searches by patient, agent, action and date.
    let (_, me) = api(&s, &inst.token, "/api/v1/me").await;
    let clin = me["user_id"].as_str().or(me["id"].as_str()).unwrap().to_owned();
    let (st, by_agent) = fhir(&s, &auditor, &format!("AuditEvent?agent={clin}&action=create&_count=100")).await;
    assert_eq!(st, StatusCode::OK, "{by_agent}");
    let created = by_agent["entry"].as_array().unwrap();
    assert!(created.len() >= 3, "two patients, a note and care teams: {by_agent}");
    assert!(created.iter().all(|e| e["resource"]["subtype"][0]["code"] == "create"));
    let (_, failed) = fhir(&s, &auditor, "AuditEvent?action=login-failed").await;
    assert_eq!(failed["entry"][0]["resource"]["outcome"], "4", "{failed}");
    let today = &note_read["recorded"].as_str().unwrap()[..10];
    let (_, dated) = fhir(&s, &auditor, &format!("AuditEvent?date=ge{today}&date=lt2999-01-01&_count=2")).await;
    assert_eq!(dated["entry"].as_array().unwrap().len(), 2);
    let next = dated["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").expect("a next page");
    assert!(next["url"].as_str().unwrap().contains("_after="));
    let (_, none) = fhir(&s, &auditor, "AuditEvent?date=lt2000-01-01").await;
    assert!(none.get("entry").is_none());

    // Wrong roles, no session, hostile input.
    for token in [&inst.token, &inst.admin_token, &reception] {
        assert_eq!(fhir(&s, token, "AuditEvent").await.0, StatusCode::FORBIDDEN);
        assert_eq!(fhir(&s, token, &format!("AuditEvent/{seq_b}")).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(s.http.get(s.fhir("AuditEvent")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    for bad in [
        "AuditEvent?date=yesterday",
        "AuditEvent?action=nonsense",
        "AuditEvent?_count=-1",
        "AuditEvent?subject=x",
        "AuditEvent?patient=a&patient=b",
        "AuditEvent?_after=0",
        "AuditEvent?patient=Aino%20Virtanen%20010190-123A",
        "AuditEvent?agent=x%27%20OR%201=1",
    ] {
        assert_eq!(fhir(&s, &auditor, bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    for bad in ["AuditEvent/0", "AuditEvent/abc", "AuditEvent/99999999", "AuditEvent/1%27%20OR%201=1"] {
        assert_eq!(fhir(&s, &auditor, bad).await.0, StatusCode::NOT_FOUND, "{bad}");
    }
    // Reading the log is itself logged.
    let (_, reads) = fhir(&s, &auditor, "AuditEvent?action=audit-access&_count=100").await;
    assert!(reads["entry"].as_array().unwrap().len() >= 5);
    s.stop();

    // The export: one JSON line per entry, for a SIEM.
    let out = run(&["audit", "export", "--dir", &dir]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), rows(&inst).await.len(), "every entry, the export's own (appended first) included");
    assert_eq!(lines.last().unwrap()["entry"]["action"], "audit-access");
    assert_eq!(lines[0]["seq"], 1);
    assert!(lines.iter().all(|l| l["entry"]["action"].is_string() && l["leaf_hash"].as_str().unwrap().len() == 64));
}
both_backends!(audit_event_access);

/// A minimal HTTP receiver: collects request bodies, answers 204.
async fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/witness", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head_end, length) = loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + length {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                sink.lock().unwrap().push(String::from_utf8_lossy(&buf[head_end..]).into_owned());
                let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (url, got)
}

/// The optional webhook witness receives the checkpoints the witness file holds;
/// an unreachable webhook neither stops the server nor the witness file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_witness() {
    let inst = Instance::new(Db::Sqlite).await;
    let config_path = inst.dir.join("confidant.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("[audit]\n"), "{config}");
    let (url, got) = webhook_receiver().await;
    std::fs::write(&config_path, config.replace("[audit]\n", &format!("[audit]\nwitness_webhook = \"{url}\"\n")))
        .unwrap();
    let s = inst.start();
    let p = s.create(&patient("Salo", "Ilmari")).await;
    assert_eq!(s.get(&format!("Patient/{}", p["id"].as_str().unwrap())).await.status(), StatusCode::OK);
    s.stop();
    let witness = std::fs::read_to_string(witness_path(&inst)).unwrap();
    let last = witness.lines().last().unwrap().to_owned();
    let received = got.lock().unwrap().clone();
    assert_eq!(received.last().map(|l| l.trim_end()), Some(last.as_str()), "the webhook got the final checkpoint");
    for line in &received {
        assert!(witness.lines().any(|w| w == line.trim_end()), "the webhook got a line the file does not hold");
    }

    // Pointed at nothing: the server serves, the file witness still grows, the failure is logged.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, config.replace(&url, &format!("http://{dead}/witness"))).unwrap();
    let s = inst.start();
    assert_eq!(s.get(&format!("Patient/{}", p["id"].as_str().unwrap())).await.status(), StatusCode::OK);
    let (_, stderr) = s.stop();
    let log = std::fs::read_to_string(stderr).unwrap();
    assert!(log.contains("webhook unreachable"), "{log}");
    let after = std::fs::read_to_string(witness_path(&inst)).unwrap();
    assert!(after.lines().count() > witness.lines().count(), "the file witness still gets checkpoints");
    assert!(verify(&inst).0);
}
