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

/// PostgreSQL instances are backed up with PostgreSQL's tools: the command says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backups_point_to_pg_dump() {
    if crate::common::pg_url().is_none() {
        assert!(std::env::var("CI").ok().as_deref() != Some("true"), "PostgreSQL must be set in CI");
        eprintln!("\n*** SKIPPED backup::postgres_backups_point_to_pg_dump: set CONFIDANT_TEST_POSTGRES_URL ***\n");
        return;
    }
    let inst = Instance::new(Db::Postgres).await;
    let out = inst.tmp.path().join("pg.cbk");
    let (ok, text) = cli(&["backup", "create", "--dir", inst.dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && text.contains("pg_dump"), "{text}");
    assert!(!out.exists());
}
