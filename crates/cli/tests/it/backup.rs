//! Backups: made while serving, worthless without the backup key (the canary
//! scan finds nothing in them), any flipped byte refused, and a restore into a
//! fresh folder answers every read exactly as the original did.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Db, Instance, Server, note, patient, run};
use crate::vastaamo::{canary, hits};

fn cli(args: &[&str]) -> (bool, String) {
    let out = run(args);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_restore() {
    let inst = Instance::new(Db::Sqlite).await;
    let d = inst.dir.to_str().unwrap().to_owned();
    let (family, text) = (canary(), canary());
    let s = inst.start();
    let p = s.create(&patient(&family, "Backup")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let n = s.create(&note(&pid, &text)).await;
    let nid = n["id"].as_str().unwrap().to_owned();
    let paths = [format!("Patient/{pid}"), format!("DocumentReference/{nid}"), format!("Patient?family={family}")];
    let mut before: Vec<Value> = Vec::new();
    for path in &paths {
        before.push(s.get_json(path).await.1);
    }
    // Made while the server serves.
    let file = inst.tmp.path().join("clinic.cbk");
    let f = file.to_str().unwrap().to_owned();
    let (ok, out) = cli(&["backup", "create", "--dir", &d, "--out", &f]);
    assert!(ok, "{out}");
    assert!(out.contains("[1/3]") && out.contains("[3/3]"), "progress is shown: {out}");
    let (ok, out) = cli(&["backup", "create", "--dir", &d, "--out", &f]);
    assert!(!ok && out.contains("never overwrites"), "{out}");
    s.stop();

    // Nothing readable in it: no canary in any encoding.
    let bytes = std::fs::read(&file).unwrap();
    assert!(hits(&[("backup".into(), bytes.clone())], &[family.clone(), text.clone()]).is_empty());
    assert_eq!(
        std::fs::metadata(&file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap(),
        0o600
    );

    let (ok, out) = cli(&["backup", "verify", &f, "--keys-from", &d]);
    assert!(ok, "{out}");
    assert!(out.contains("OK:"), "{out}");
    // One flipped byte anywhere — header, sealed content, signature — is refused; so is a cut.
    for at in [25, bytes.len() / 2, bytes.len() - 3] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let path = inst.tmp.path().join(format!("bad-{at}.cbk"));
        std::fs::write(&path, &bad).unwrap();
        let (ok, out) = cli(&["backup", "verify", path.to_str().unwrap(), "--keys-from", &d]);
        assert!(!ok && out.contains("BACKUP VERIFICATION FAILED"), "byte {at}: {out}");
        let to = inst.tmp.path().join(format!("restored-bad-{at}"));
        let (ok, _) =
            cli(&["backup", "restore", path.to_str().unwrap(), "--dir", to.to_str().unwrap(), "--keys-from", &d]);
        assert!(!ok && !to.join("confidant.toml").exists(), "a bad backup is never restored");
    }
    let cut = inst.tmp.path().join("cut.cbk");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    assert!(!cli(&["backup", "verify", cut.to_str().unwrap(), "--keys-from", &d]).0);
    // Without the backup key it opens nothing: another key is refused.
    let other = Instance::new(Db::Sqlite).await;
    let (ok, _) = cli(&[
        "backup",
        "create",
        "--dir",
        other.dir.to_str().unwrap(),
        "--out",
        inst.tmp.path().join("o.cbk").to_str().unwrap(),
    ]);
    assert!(ok);
    let (ok, out) = cli(&[
        "backup",
        "verify",
        &f,
        "--backup-key",
        other.key_file.with_extension("backup-key").to_str().unwrap(),
        "--public-key",
        &hex_public_key(&inst),
    ]);
    assert!(!ok && out.contains("not the backup key"), "{out}");

    // Restored into a fresh folder: the same answers, and the audit log verifies.
    let to = inst.tmp.path().join("restored");
    let (ok, out) = cli(&["backup", "restore", &f, "--dir", to.to_str().unwrap(), "--keys-from", &d]);
    assert!(ok, "{out}");
    let restored =
        Instance::existing(tempfile::tempdir().unwrap(), to.clone(), inst.key_file.clone(), inst.token.clone());
    let s = Server::start(&restored, &[]);
    for (path, expected) in paths.iter().zip(&before) {
        let (st, got) = s.get_json(path).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        let strip = |v: &Value| {
            let mut v = v.clone();
            // Search bundles carry the server's own address in their links.
            if let Some(m) = v.as_object_mut() {
                m.remove("link");
            }
            if let Some(entries) = v.get_mut("entry").and_then(Value::as_array_mut) {
                for e in entries {
                    e.as_object_mut().unwrap().remove("fullUrl");
                }
            }
            v
        };
        assert_eq!(strip(&got), strip(expected), "{path} differs after restore");
    }
    s.stop();
    let (ok, out) = cli(&["audit", "verify", "--dir", to.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["audit", "export", "--dir", &d]);
    assert!(ok && out.contains("backup-create"), "the backup is in the audit log");
}

fn hex_public_key(inst: &Instance) -> String {
    let out = run(&["keys", "status", "--dir", inst.dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("public key ").nth(1).unwrap().trim_end_matches([')', '\n']).split(')').next().unwrap().to_owned()
}

/// Say loudly that a PostgreSQL test is skipped (it may not be in CI); true when it runs.
fn postgres_here(test: &str) -> bool {
    if crate::common::pg_url().is_some() {
        return true;
    }
    assert!(std::env::var("CI").ok().as_deref() != Some("true"), "PostgreSQL must be set in CI");
    eprintln!("\n*** SKIPPED backup::{test}: set CONFIDANT_TEST_POSTGRES_URL ***\n");
    false
}

/// A new, empty PostgreSQL database (a restore's target): its URL, the admin URL and its name.
async fn empty_pg_database() -> (String, String, String) {
    use sqlx::{Connection, Executor};
    let admin = crate::common::pg_url().unwrap();
    let name = format!("confidant_it_{}", crate::common::random_hex(6));
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    conn.close().await.unwrap();
    let (base, query) = admin.split_once('?').map(|(b, q)| (b, format!("?{q}"))).unwrap_or((&admin, String::new()));
    let url = format!("{}/{name}{query}", &base[..base.rfind('/').unwrap()]);
    (url, admin.clone(), name)
}

/// Rows of every table of the database at `url` (its current schema), and the audit head.
async fn table_counts(url: &str) -> (std::collections::BTreeMap<String, i64>, i64) {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await.unwrap();
    let list = if url.starts_with("sqlite:") {
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    } else {
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()"
    };
    let names: Vec<String> =
        sqlx::query(list).fetch_all(&mut db).await.unwrap().iter().map(|r| r.get::<String, _>(0)).collect();
    let mut counts = std::collections::BTreeMap::new();
    for n in names {
        let c: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{n}\"")))
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get(0);
        counts.insert(n, c);
    }
    let head: i64 = if counts.contains_key("audit_head") {
        sqlx::query("SELECT size FROM audit_head WHERE id = 1").fetch_one(&mut db).await.unwrap().get(0)
    } else {
        0
    };
    db.close().await.unwrap();
    (counts, head)
}

/// A restored instance, to serve: its database dropped with it when on PostgreSQL.
fn restored(inst: &Instance, to: &std::path::Path, pg: Option<(String, String, String)>) -> Instance {
    let mut r =
        Instance::existing(tempfile::tempdir().unwrap(), to.to_path_buf(), inst.key_file.clone(), inst.token.clone());
    if pg.is_some() {
        r.db = Db::Postgres;
        r.pg = pg;
    }
    r
}

/// PostgreSQL (issue 17): made while serving, a logical snapshot sealed and signed like a
/// SQLite backup; verified; any flipped byte refused; never restored over a database that
/// holds tables; restored into a fresh PostgreSQL database and into SQLite, both serve the
/// same records, and their audit logs verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_round_trip() {
    if !postgres_here("postgres_backup_round_trip") {
        return;
    }
    let inst = Instance::new(Db::Postgres).await;
    let d = inst.dir.to_str().unwrap().to_owned();
    let (family, text) = (canary(), canary());
    let s = inst.start();
    let p = s.create(&patient(&family, "Postgres")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let n = s.create(&note(&pid, &text)).await;
    let nid = n["id"].as_str().unwrap().to_owned();
    let paths = [format!("Patient/{pid}"), format!("DocumentReference/{nid}")];
    let mut before: Vec<Value> = Vec::new();
    for path in &paths {
        before.push(s.get_json(path).await.1);
    }
    let file = inst.tmp.path().join("pg.cbk");
    let f = file.to_str().unwrap().to_owned();
    let (ok, out) = cli(&["backup", "create", "--dir", &d, "--out", &f]);
    assert!(ok, "{out}");
    assert!(out.contains("[1/3]") && out.contains("REPEATABLE READ") && out.contains("[3/3]"), "{out}");
    s.stop();
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"confidant-backup v1\n"), "the same file format");
    assert!(hits(&[("backup".into(), bytes.clone())], &[family.clone(), text.clone()]).is_empty());
    let (ok, out) = cli(&["backup", "verify", &f, "--keys-from", &d]);
    assert!(ok && out.contains("OK:"), "{out}");

    // Tampered: refused by verify and by restore, which touches no database.
    let (target, admin, name) = empty_pg_database().await;
    for at in [25, bytes.len() / 2, bytes.len() - 3] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let path = inst.tmp.path().join(format!("bad-{at}.cbk"));
        std::fs::write(&path, &bad).unwrap();
        let (ok, out) = cli(&["backup", "verify", path.to_str().unwrap(), "--keys-from", &d]);
        assert!(!ok && out.contains("BACKUP VERIFICATION FAILED"), "byte {at}: {out}");
        let to = inst.tmp.path().join(format!("restored-bad-{at}"));
        let (ok, _) = cli(&[
            "backup",
            "restore",
            path.to_str().unwrap(),
            "--dir",
            to.to_str().unwrap(),
            "--keys-from",
            &d,
            "--database-url",
            &target,
        ]);
        assert!(!ok && !to.join("confidant.toml").exists(), "a bad backup is never restored");
    }
    assert!(table_counts(&target).await.0.is_empty(), "a refused restore created nothing");

    // A target that holds tables (here: the live database itself) is refused, and left as it was.
    let live = table_counts(&inst.database_url()).await;
    let to = inst.tmp.path().join("restored-over-live");
    let (ok, out) = cli(&[
        "backup",
        "restore",
        &f,
        "--dir",
        to.to_str().unwrap(),
        "--keys-from",
        &d,
        "--database-url",
        &inst.database_url(),
    ]);
    assert!(!ok && out.contains("already holds") && out.contains("nothing was changed"), "{out}");
    assert!(!to.join("confidant.toml").exists());
    assert_eq!(table_counts(&inst.database_url()).await, live, "a refused restore changed the live database");

    // Into the fresh PostgreSQL database, and into SQLite: the same answers, the log verifies.
    let pg_to = inst.tmp.path().join("restored-pg");
    let (ok, out) =
        cli(&["backup", "restore", &f, "--dir", pg_to.to_str().unwrap(), "--keys-from", &d, "--database-url", &target]);
    assert!(ok && out.contains("audit log verifies"), "{out}");
    assert!(out.contains("rows"), "progress is shown: {out}");
    let sqlite_to = inst.tmp.path().join("restored-sqlite");
    let (ok, out) = cli(&["backup", "restore", &f, "--dir", sqlite_to.to_str().unwrap(), "--keys-from", &d]);
    assert!(ok && out.contains("audit log verifies"), "{out}");
    // Both restores hold every row of the snapshot, the same on either backend.
    let on_pg = table_counts(&target).await;
    let sqlite_url = format!("sqlite://{}", sqlite_to.join("confidant.db").display());
    assert_eq!(on_pg, table_counts(&sqlite_url).await, "PostgreSQL and SQLite restores differ");
    assert!(on_pg.0["resource_versions"] >= 2 && on_pg.1 >= 1, "{on_pg:?}");
    // Two copies of one instance serving would fork its log (and `audit verify` says so):
    // the second copy gets a witness of its own, as a staging copy should.
    let second = restored(&inst, &sqlite_to, None);
    let own_witness = inst.tmp.path().join("staging.witness");
    std::fs::copy(inst.key_file.with_extension("witness"), &own_witness).unwrap();
    second.configure(|t| Instance::set(t, "audit", "witness_file", own_witness.to_str().unwrap().into()));
    for r in [restored(&inst, &pg_to, Some((target.clone(), admin, name))), second] {
        let s = Server::start(&r, &[]);
        for (path, expected) in paths.iter().zip(&before) {
            let (st, got) = s.get_json(path).await;
            assert_eq!(st, StatusCode::OK, "{path}");
            assert_eq!(&got, expected, "{path} differs after restore");
        }
        s.stop();
        let (ok, out) = cli(&["audit", "verify", "--dir", r.dir.to_str().unwrap()]);
        assert!(ok, "{out}");
    }
}

/// A SQLite instance's backup restores into an empty PostgreSQL database (the schema is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_restores_into_postgres() {
    if !postgres_here("sqlite_backup_restores_into_postgres") {
        return;
    }
    let inst = Instance::new(Db::Sqlite).await;
    let d = inst.dir.to_str().unwrap().to_owned();
    let s = inst.start();
    let p = s.create(&patient(&canary(), "Crossing")).await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    let before = s.get_json(&path).await.1;
    s.stop();
    let f = inst.tmp.path().join("s.cbk");
    assert!(cli(&["backup", "create", "--dir", &d, "--out", f.to_str().unwrap()]).0);
    let (target, admin, name) = empty_pg_database().await;
    let to = inst.tmp.path().join("on-postgres");
    let (ok, out) = cli(&[
        "backup",
        "restore",
        f.to_str().unwrap(),
        "--dir",
        to.to_str().unwrap(),
        "--keys-from",
        &d,
        "--database-url",
        &target,
    ]);
    assert!(ok && out.contains("audit log verifies"), "{out}");
    let r = restored(&inst, &to, Some((target, admin, name)));
    let s = Server::start(&r, &[]);
    assert_eq!(s.get_json(&path).await, (StatusCode::OK, before));
    s.stop();
}

/// `confidant drill` on PostgreSQL works on a private copy: it passes, and the live
/// database is as it was — every table's rows and the audit head — but for the one
/// audit entry that records the drill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_on_postgres_leaves_the_live_database_alone() {
    if !postgres_here("drill_on_postgres_leaves_the_live_database_alone") {
        return;
    }
    let inst = Instance::new(Db::Postgres).await;
    let s = inst.start();
    s.create(&patient(&canary(), "Drilled")).await;
    s.stop();
    let (mut counts, head) = table_counts(&inst.database_url()).await;
    let out = run(&["drill", "--dir", inst.dir.to_str().unwrap(), "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("not JSON: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert!(out.status.success(), "{report:#}");
    let failed: Vec<&Value> = report["steps"].as_array().unwrap().iter().filter(|s| s["passed"] != true).collect();
    assert!(failed.is_empty(), "{report:#}");
    assert_eq!(report["steps"].as_array().unwrap().len(), 11, "{report:#}");
    *counts.get_mut("audit_log").unwrap() += 1;
    assert_eq!(table_counts(&inst.database_url()).await, (counts, head + 1), "the drill changed live data");
    let (ok, out) = cli(&["audit", "verify", "--dir", inst.dir.to_str().unwrap()]);
    assert!(ok, "{out}");
}
