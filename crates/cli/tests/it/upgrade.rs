//! Upgrades (issue 17): a clinic's database made by an older release
//! (`tests/fixtures/schema-9`, schema version 9) is refused by every command
//! but `serve`, unchanged; `serve` makes an encrypted backup, verifies it,
//! then migrates, and the old records read back; `serve --no-backup` migrates
//! without one when the admin says so.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;

use crate::common::{Instance, create_token, run, run_stdin_env};

const FIXTURE_PATIENT: &str = "cf7a477323f44de2da65e9b77bcfb0c4";

/// The fixture, copied to a fresh folder with its key file's path rewritten.
fn old_clinic(tmp: &Path) -> (PathBuf, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-9");
    let (dir, keys) = (tmp.join("instance"), tmp.join("keys"));
    for (from, to) in [(fixture.join("instance"), &dir), (fixture.join("keys"), &keys)] {
        std::fs::create_dir_all(to).unwrap();
        for f in std::fs::read_dir(from).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [&dir, &keys] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        for f in std::fs::read_dir(&keys).unwrap() {
            std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let config = dir.join("confidant.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let key = keys.join("fixture.kek");
    std::fs::write(&config, text.replace("/tmp/fx/keys/fixture.kek", key.to_str().unwrap())).unwrap();
    (dir, key)
}

fn schema_version(dir: &Path) -> i64 {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select max(version) from schema_migrations').fetchone()[0])"])
        .arg(dir.join("confidant.db"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pre-upgrade-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_database_is_upgraded_by_serve_after_a_verified_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = old_clinic(tmp.path());
    let d = dir.to_str().unwrap();
    assert_eq!(schema_version(&dir), 9);
    let before = std::fs::read(dir.join("confidant.db")).unwrap();

    // Every other command refuses, says what to do, and changes nothing.
    for args in [vec!["user", "list", "--dir", d], vec!["doctor", "--dir", d]] {
        let out = run(&args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("schema is version 9") && text.contains("confidant serve"), "{args:?}: {text}");
    }
    assert_eq!(schema_version(&dir), 9);
    assert_eq!(std::fs::read(dir.join("confidant.db")).unwrap(), before, "nothing was changed");

    // `serve`: backup, verification, migration, then it serves the old records.
    let inst = Instance::existing(tmp, dir.clone(), key, String::new());
    let s = inst.start();
    let log = std::fs::read_to_string(&s.stderr).unwrap();
    assert!(log.contains("Backing up first") && log.contains("Backup verified"), "{log}");
    let backups = backups_in(&dir);
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].to_string_lossy().contains("pre-upgrade-schema-9-to-"));
    assert!(schema_version(&dir) > 9, "migrated");
    let token = create_token(&dir, "clin1", "user/*.*");
    let r = s.http.get(s.fhir(&format!("Patient/{FIXTURE_PATIENT}"))).bearer_auth(&token).send().await.unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"][0]["family"], "Fixturefamily");
    s.stop();
    // The backup restores into a database of the old schema, as it was.
    let out = run(&["backup", "verify", backups[0].to_str().unwrap(), "--keys-from", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The audit log holds the backup and still verifies across the upgrade.
    let out = run(&["audit", "verify", "--dir", d]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_no_backup_upgrades_without_one_when_told() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = old_clinic(tmp.path());
    let inst = Instance::existing(tmp, dir.clone(), key, String::new());
    let s = crate::common::Server::start(&inst, &["--no-backup"]);
    let log = std::fs::read_to_string(&s.stderr).unwrap();
    assert!(log.contains("without a backup (--no-backup)"), "{log}");
    s.stop();
    assert!(backups_in(&dir).is_empty());
    assert!(schema_version(&dir) > 9);
    // Once upgraded, the other commands work again.
    let out = run_stdin_env(&["user", "list", "--dir", dir.to_str().unwrap()], "", &[]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("clin1"));
}
