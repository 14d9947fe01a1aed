//! `confidant doctor` and `confidant drill`: a misconfigured instance gets each
//! expected finding, a well-configured one no high finding; on a healthy
//! instance every drill step passes, and breaking one control at a time fails
//! the matching step.

use serde_json::Value;

use crate::common::{Db, Instance, run, run_stdin_env};

fn doctor(inst: &Instance, env: &[(&str, &str)]) -> (bool, Value) {
    let out = run_stdin_env(&["doctor", "--dir", inst.dir.to_str().unwrap(), "--format", "json"], "", env);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("not JSON: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), report)
}

/// check → severity ("pass" when it passed).
fn by_check(report: &Value) -> std::collections::BTreeMap<String, String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap().to_owned(), c["severity"].as_str().unwrap_or("pass").to_owned()))
        .collect()
}

async fn sql(inst: &Instance, statement: &str) {
    let mut db = inst.db().await;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).execute(&mut db).await.unwrap();
    sqlx::Connection::close(db).await.unwrap();
}

#[cfg(unix)]
fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_each_misconfiguration_and_passes_a_good_instance() {
    let inst = Instance::new(Db::Sqlite).await;
    let d = inst.dir.to_str().unwrap();
    // Well configured: a backup made and verified (init signed the first checkpoint,
    // turned honey records on: none is due among no patients; tokens expire). Staff
    // without a second factor yet is medium.
    let backup = inst.dir.parent().unwrap().join("first.backup");
    assert!(run(&["backup", "create", "--dir", d, "--out", backup.to_str().unwrap()]).status.success());
    let out = run(&["backup", "verify", backup.to_str().unwrap(), "--keys-from", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, report) = doctor(&inst, &[]);
    assert!(ok, "a well-configured instance has no high finding: {report:#}");
    assert_eq!(report["summary"]["high"], 0);
    let checks = by_check(&report);
    for pass in [
        "tls",
        "key-files",
        "file-permissions",
        "database-tls",
        "audit-witness",
        "backups",
        "honey-records",
        "token-expiry",
        "key-age",
        "debug-logging",
    ] {
        assert_eq!(checks[pass], "pass", "{pass}: {report:#}");
    }
    assert_eq!(checks["second-factor"], "medium", "staff who have not enrolled yet");
    assert_eq!(checks["alert-sinks"], "medium", "alerts only in the log");
    assert_eq!(checks["client-addresses"], "pass", "no proxy in front");
    // Behind a TLS proxy that is not named as trusted, every client has the proxy's address.
    inst.configure(|t| Instance::set(t, "server", "public_url", "https://records.clinic.example".into()));
    assert_eq!(by_check(&doctor(&inst, &[]).1)["client-addresses"], "low");
    inst.configure(|t| Instance::set(t, "server", "trusted_proxies", toml::Value::Array(vec!["127.0.0.1".into()])));
    assert_eq!(by_check(&doctor(&inst, &[]).1)["client-addresses"], "pass");
    inst.configure(|t| {
        let server = t["server"].as_table_mut().unwrap();
        server.remove("public_url");
        server.remove("trusted_proxies");
    });

    // Now everything wrong at once.
    inst.configure(|t| {
        Instance::set(t, "server", "listen", "0.0.0.0:8080".into());
        Instance::set(t, "access", "require_second_factor", false.into());
        Instance::set(t, "keys", "rotate_after_days", 30.into());
        Instance::set(t, "detection", "honey_records", 0.into());
    });
    chmod(&inst.dir, 0o755);
    chmod(&inst.dir.join("confidant.db"), 0o644);
    std::fs::write(inst.key_file.with_extension("witness"), "").unwrap();
    sql(&inst, "UPDATE api_tokens SET expires_at = NULL").await;
    sql(&inst, "UPDATE instance_settings SET created_at = created_at - 400 * 86400000 WHERE name = 'instance_id'")
        .await;
    sql(&inst, "UPDATE users SET created_at = created_at - 200 * 86400000").await;
    sql(&inst, "DELETE FROM audit_log WHERE action = 'backup'").await;
    let (ok, report) = doctor(&inst, &[("CONFIDANT_LOG", "debug")]);
    assert!(!ok, "high findings exit non-zero");
    let checks = by_check(&report);
    let expected = [
        ("tls", "high"),
        ("file-permissions", "high"),
        ("audit-witness", "high"),
        ("second-factor", "high"),
        ("honey-records", "high"),
        ("backups", "high"),
        ("token-expiry", "medium"),
        ("key-age", "medium"),
        ("debug-logging", "medium"),
        ("unused-accounts", "low"),
        ("alert-sinks", "medium"),
    ];
    for (check, severity) in expected {
        assert_eq!(checks[check], severity, "{check}: {report:#}");
    }
    // Each finding says what it saw and how to fix it.
    for c in report["checks"].as_array().unwrap() {
        if c["severity"].is_string() {
            assert!(!c["evidence"].as_str().unwrap().is_empty() && !c["fix"].as_str().unwrap().is_empty(), "{c}");
        }
    }
    // A key file others can read: found even though nothing else can be checked then.
    chmod(&inst.key_file, 0o644);
    let (ok, report) = doctor(&inst, &[]);
    assert!(!ok);
    let checks = by_check(&report);
    assert_eq!(checks["key-files"], "high", "{report:#}");
    assert_eq!(checks["instance"], "high", "the instance cannot be opened with a world-readable key: {report:#}");
    chmod(&inst.key_file, 0o600);
    // Text output for people, too.
    let out = run(&["doctor", "--dir", d]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("HIGH") && text.contains("fix:") && text.contains("evidence:"), "{text}");
}

fn drill(inst: &Instance) -> (bool, Value) {
    let out = run(&["drill", "--dir", inst.dir.to_str().unwrap(), "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("not JSON: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), report)
}

/// The drill's private folders in the temporary directory (only this test runs drills).
fn drill_folders() -> usize {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("confidant-drill-"))
        .count()
}

fn failed_steps(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["passed"] == false)
        .map(|s| s["step"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_passes_on_a_healthy_instance_and_fails_the_step_of_each_broken_control() {
    let inst = Instance::new(Db::Sqlite).await;
    let before = crate::common::row_counts(&inst).await;
    let drills_before = drill_folders();
    let (ok, report) = drill(&inst);
    assert!(ok, "{report:#}");
    let steps: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        [
            "file-permissions",
            "password-only",
            "other-clinician",
            "bulk-read",
            "honey-record",
            "hostile-input",
            "phishing-lookalike",
            "audit-trigger",
            "audit-live-rewrite",
            "stolen-files",
            "audit-tamper"
        ]
    );
    assert!(failed_steps(&report).is_empty(), "{report:#}");
    // It worked on a copy: the real records are as they were, and the log still verifies.
    assert_eq!(crate::common::row_counts(&inst).await, before, "the drill changed real data");
    assert!(run(&["audit", "verify", "--dir", inst.dir.to_str().unwrap()]).status.success());
    assert_eq!(drill_folders(), drills_before, "the drill deleted its private copy");

    // MFA off: the password step fails.
    inst.configure(|t| Instance::set(t, "access", "require_second_factor", false.into()));
    assert_eq!(failed_steps(&drill(&inst).1), ["password-only"]);
    inst.configure(|t| Instance::set(t, "access", "require_second_factor", true.into()));
    // Honey records off (and none planted): the honey step fails. On, the drill
    // plants one in its copy when the clinic has none yet, and the step passes.
    inst.configure(|t| Instance::set(t, "detection", "honey_records", 0.into()));
    assert_eq!(failed_steps(&drill(&inst).1), ["honey-record"]);
    inst.configure(|t| Instance::set(t, "detection", "honey_records", 3.into()));
    // The witness truncated: an edited audit entry goes unnoticed.
    let witness = inst.key_file.with_extension("witness");
    let kept = std::fs::read(&witness).unwrap();
    std::fs::write(&witness, "").unwrap();
    assert_eq!(failed_steps(&drill(&inst).1), ["audit-tamper"]);
    std::fs::write(&witness, kept).unwrap();
    // A loosened permission: the file step fails.
    chmod(&inst.dir, 0o755);
    assert_eq!(failed_steps(&drill(&inst).1), ["file-permissions"]);
    chmod(&inst.dir, 0o700);
    let (ok, report) = drill(&inst);
    assert!(ok, "every control restored: {report:#}");
}
