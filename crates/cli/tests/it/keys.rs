//! A wrong or missing key stops `serve` with a clear message, changing nothing.

use std::os::unix::fs::PermissionsExt;

use crate::both_backends;
use crate::common::{BIN, Db, Instance, Server, run, snapshot};

fn serve_fails(inst: &Instance, expect: &str) {
    let before = snapshot(&inst.dir);
    let out = std::process::Command::new(BIN)
        .args(["serve", "--dir", inst.dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve must fail: {stderr}");
    assert!(stderr.contains(expect), "message should say '{expect}': {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    assert_eq!(snapshot(&inst.dir), before, "serve changed files on disk");
}

async fn wrong_or_missing_key_refuses_to_serve(db: Db) {
    let inst = Instance::new(db).await;
    // Put some data in first, then stop cleanly.
    let s = inst.start();
    s.create(&crate::common::patient("Heikkinen", "Kaisa")).await;
    s.stop();
    let key = std::fs::read(&inst.key_file).unwrap();

    // Missing.
    std::fs::remove_file(&inst.key_file).unwrap();
    serve_fails(&inst, "missing");

    // Another instance's key.
    let other = Instance::new(Db::Sqlite).await;
    std::fs::copy(&other.key_file, &inst.key_file).unwrap();
    serve_fails(&inst, "not the key of this instance");

    // Garbage.
    std::fs::write(&inst.key_file, b"confidant-kek:v1:x:1:AAAA\n").unwrap();
    serve_fails(&inst, "key file");

    // Readable by others.
    std::fs::write(&inst.key_file, &key).unwrap();
    std::fs::set_permissions(&inst.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    serve_fails(&inst, "chmod 600");

    // A key of the right instance id and with a matching check value in the
    // config, but not the key that wrapped the data (config edited to match).
    std::fs::set_permissions(&inst.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let forged = confidant_vault::KeyFile::generate(&read_instance_id(&inst)).unwrap();
    std::fs::remove_file(&inst.key_file).unwrap();
    forged.create(&inst.key_file).unwrap();
    let cfg_path = inst.dir.join("confidant.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let old_kcv = cfg.lines().find(|l| l.starts_with("check_value")).unwrap().to_owned();
    std::fs::write(&cfg_path, cfg.replace(&old_kcv, &format!("check_value = \"{}\"", forged.check_value()))).unwrap();
    serve_fails(&inst, "does not match");
    std::fs::write(&cfg_path, cfg).unwrap();

    // The right key again: serves, and the data is there.
    std::fs::remove_file(&inst.key_file).unwrap();
    std::fs::write(&inst.key_file, &key).unwrap();
    std::fs::set_permissions(&inst.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = inst.start();
    let (_, b) = s.get_json("Patient?family=heikkinen").await;
    assert_eq!(b["total"], 1);
}
both_backends!(wrong_or_missing_key_refuses_to_serve);

fn read_instance_id(inst: &Instance) -> String {
    let cfg = std::fs::read_to_string(inst.dir.join("confidant.toml")).unwrap();
    let line = cfg.lines().find(|l| l.starts_with("instance_id")).unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

#[test]
fn init_protects_keys_and_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let key = tmp.path().join("keys").join("k.kek");
    let ok = run(&["init", "--dir", dir.to_str().unwrap(), "--key-file", key.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.contains("Back up the key file") && stdout.contains("confidant serve"));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let key_bytes = std::fs::read(&key).unwrap();

    // Never overwrites a key file.
    let dir2 = tmp.path().join("data2");
    let out = run(&["init", "--dir", dir2.to_str().unwrap(), "--key-file", key.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes);
    // Never puts the key inside the instance directory.
    let out = run(&["init", "--dir", dir2.to_str().unwrap(), "--key-file", dir2.join("k").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the instance directory"));
    // Never re-initialises an instance.
    let out = run(&["init", "--dir", dir.to_str().unwrap(), "--key-file", tmp.path().join("k2").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"));
    // The default key location is outside the directory, named by CONFIDANT_KEY_DIR here.
    let keydir = tmp.path().join("default-keys");
    let out = std::process::Command::new(BIN)
        .args(["init", "--dir", tmp.path().join("data3").to_str().unwrap()])
        .env("CONFIDANT_KEY_DIR", &keydir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The key-encryption key and the audit signing key, both 0600, and the witness
    // with the first signed checkpoint; nothing else.
    let mut names: Vec<String> =
        std::fs::read_dir(&keydir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with(".audit-key") && names[1].ends_with(".kek"), "{names:?}");
    let witness = std::fs::read_to_string(keydir.join(&names[2])).unwrap();
    assert!(names[2].ends_with(".witness") && witness.lines().count() == 1, "{names:?}: {witness}");
    for n in &names[..2] {
        assert_eq!(std::fs::metadata(keydir.join(n)).unwrap().permissions().mode() & 0o777, 0o600, "{n}");
    }
    // Without its audit signing key, an instance does not serve (and changes nothing).
    let audit_key = key.with_extension("audit-key");
    std::fs::rename(&audit_key, tmp.path().join("moved")).unwrap();
    let out = run(&["serve", "--dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit signing key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(tmp.path().join("moved"), &audit_key).unwrap();
    // A swapped audit key (same instance, another key): confidant.toml pins the public
    // key, so neither verify nor serve accepts it, and nothing changes.
    {
        use base64::Engine as _;
        use std::os::unix::fs::PermissionsExt;
        let original = std::fs::read(&audit_key).unwrap();
        let forged = format!(
            "confidant-audit-signing-key:v1:{}:{}\n",
            instance_id(&dir),
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        std::fs::write(&audit_key, forged).unwrap();
        std::fs::set_permissions(&audit_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = snapshot(&dir);
        for args in [
            vec!["audit", "verify", "--dir", dir.to_str().unwrap()],
            vec!["serve", "--dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        ] {
            let out = run(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && err.contains("not the one this instance was created with"),
                "{args:?}: {err}"
            );
        }
        assert_eq!(snapshot(&dir), before);
        std::fs::write(&audit_key, original).unwrap();
        assert!(run(&["audit", "verify", "--dir", dir.to_str().unwrap()]).status.success());
    }
    // A directory that is not an instance.
    let out = run(&["serve", "--dir", tmp.path().join("nothing").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a Confidant instance"));
}

/// A key file sealed with a passphrase: without it or with a wrong one nothing
/// starts and nothing changes; with it (from a descriptor or the environment)
/// everything works, rotation included, and the file never holds a key in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_sealed_key_file() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    const PASS: &str = "seven quiet lanterns over the harbour";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let key = tmp.path().join("keys").join("k.kek");
    let d = dir.to_str().unwrap();
    // A weak passphrase is refused before anything exists.
    let out = Command::new(BIN)
        .args(["init", "--dir", d, "--key-file", key.to_str().unwrap(), "--passphrase"])
        .env("CONFIDANT_PASSPHRASE", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase refused"), "{out:?}");
    assert!(!key.exists() && !dir.join("confidant.toml").exists(), "nothing was created");
    let out = Command::new(BIN)
        .args(["init", "--dir", d, "--key-file", key.to_str().unwrap(), "--passphrase"])
        .env("CONFIDANT_PASSPHRASE", PASS)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sealed = std::fs::read_to_string(&key).unwrap();
    assert!(sealed.contains("confidant-kek-sealed:v1:") && !sealed.contains("confidant-kek:v1:"), "{sealed}");
    assert!(std::fs::read_to_string(dir.join("confidant.toml")).unwrap().contains("provider = \"passphrase\""));

    // No passphrase (no terminal either), or a wrong one: a clear error, nothing changed.
    for (env, expect) in [(None, "cannot read the passphrase"), (Some("not the passphrase"), "wrong passphrase")] {
        let before = snapshot(&dir);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--dir", d, "--listen", "127.0.0.1:0"]).stdin(Stdio::null());
        if let Some(p) = env {
            cmd.env("CONFIDANT_PASSPHRASE", p);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expect), "{expect}: {stderr}");
        assert!(stderr.contains("nothing was changed") || env.is_none(), "{stderr}");
        assert_eq!(snapshot(&dir), before, "a refused start changed files");
    }

    // Accounts and a token from the command line, with the passphrase on a descriptor (stdin here).
    let with_fd = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .args(args)
            .env("CONFIDANT_PASSPHRASE_FD", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // (The account's password comes on stdin, so the passphrase comes from the environment here.)
    let out = crate::common::run_stdin_env(
        &[
            "user",
            "add",
            "--dir",
            d,
            "--username",
            "clin1",
            "--role",
            "clinician",
            "--name",
            "Pass Phrase",
            "--password-stdin",
        ],
        "correct horse battery staple 7\n",
        &[("CONFIDANT_PASSPHRASE", PASS)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token =
        with_fd(&["token", "create", "--dir", d, "--user", "clin1", "--scope", "user/*.*"], &format!("{PASS}\n"));
    let token = token.trim().to_owned();

    let inst = Instance::existing(tmp, dir.clone(), key.clone(), token);
    let s = Server::start_env(&inst, &[], &[("CONFIDANT_PASSPHRASE", PASS)]);
    let p = s.create(&crate::common::patient("Lind", "Eeva")).await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    assert_eq!(s.get(&path).await.status(), reqwest::StatusCode::OK);
    // Rotation seals the file anew, with the new version inside; the server keeps serving.
    let out =
        Command::new(BIN).args(["keys", "rotate", "--dir", d]).env("CONFIDANT_PASSPHRASE", PASS).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let resealed = std::fs::read_to_string(&key).unwrap();
    assert!(resealed.contains("confidant-kek-sealed:v1:") && !resealed.contains("confidant-kek:v1:"));
    assert_ne!(resealed, sealed);
    let q = s.create(&crate::common::patient("Lind", "Ville")).await;
    assert_eq!(s.get(&path).await.status(), reqwest::StatusCode::OK);
    s.stop();
    let s = Server::start_env(&inst, &[], &[("CONFIDANT_PASSPHRASE", PASS)]);
    assert_eq!(s.get(&path).await.status(), reqwest::StatusCode::OK);
    assert_eq!(s.get(&format!("Patient/{}", q["id"].as_str().unwrap())).await.status(), reqwest::StatusCode::OK);
    s.stop();

    // The audit signing key is sealed with the same passphrase; its public key stays
    // readable, so verifying the log needs no secret at all.
    let audit_key = std::fs::read_to_string(key.with_extension("audit-key")).unwrap();
    assert!(audit_key.contains("confidant-audit-signing-key-sealed:v1:"), "{audit_key}");
    assert!(!audit_key.contains("confidant-audit-signing-key:v1:"), "{audit_key}");
    let out = Command::new(BIN).args(["audit", "verify", "--dir", d]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sealed with the passphrase"));
    // Signing does need it: a wrong one signs nothing and changes nothing.
    let before = snapshot(&dir);
    let witness = std::fs::read(key.with_extension("witness")).unwrap();
    let out = Command::new(BIN)
        .args(["audit", "checkpoint", "--dir", d])
        .env("CONFIDANT_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"), "{out:?}");
    assert_eq!(snapshot(&dir), before);
    assert_eq!(std::fs::read(key.with_extension("witness")).unwrap(), witness, "nothing was signed");
}

/// The key-encryption key in a PKCS#11 token (SoftHSM2): init, write, restart,
/// read back, rotate inside the token; a wrong PIN changes nothing; the key
/// cannot be read out of the token (checked with OpenSC's pkcs11-tool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_in_a_pkcs11_token() {
    use std::process::Command;
    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    if !std::path::Path::new(MODULE).exists() || Command::new("pkcs11-tool").arg("--help").output().is_err() {
        assert!(std::env::var("CI").ok().as_deref() != Some("true"), "SoftHSM2 and OpenSC must be installed in CI");
        eprintln!("\n*** SKIPPED keys::key_in_a_pkcs11_token: install softhsm2 and opensc ***\n");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A token store of this test's own.
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\n", tokens.display()))
        .unwrap();
    let conf = conf.to_str().unwrap().to_owned();
    let env = |pin: &'static str| vec![("SOFTHSM2_CONF", conf.clone()), ("CONFIDANT_PKCS11_PIN", pin.to_owned())];
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "clinic", "--pin", "246810", "--so-pin", "13579111"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run_env = |args: &[&str], pin: &'static str| {
        let e = env(pin);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::common::run_stdin_env(args, "", &e)
    };
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap().to_owned();
    let key = tmp.path().join("keys").join("k.kek");
    let out = run_env(
        &[
            "init",
            "--dir",
            &d,
            "--key-file",
            key.to_str().unwrap(),
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            "clinic",
        ],
        "246810",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!key.exists(), "no key file: the key is in the token");
    let out = {
        let e = env("246810");
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::common::run_stdin_env(
            &[
                "user",
                "add",
                "--dir",
                &d,
                "--username",
                "clin1",
                "--role",
                "clinician",
                "--name",
                "Token User",
                "--password-stdin",
            ],
            "correct horse battery staple 7\n",
            &e,
        )
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_env(&["token", "create", "--dir", &d, "--user", "clin1", "--scope", "user/*.*"], "246810");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let inst = Instance::existing(tmp, dir.clone(), key.clone(), token);
    let server_env = [("SOFTHSM2_CONF", conf.as_str()), ("CONFIDANT_PKCS11_PIN", "246810")];
    let s = Server::start_env(&inst, &[], &server_env);
    let p = s.create(&crate::common::patient("Hsm", "Helmi")).await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    s.stop();
    // Restart: read back through the token.
    let s = Server::start_env(&inst, &[], &server_env);
    assert_eq!(s.get(&path).await.status(), reqwest::StatusCode::OK);
    // Rotation makes version 2 inside the token while the server serves.
    let out = run_env(&["keys", "rotate", "--dir", &d], "246810");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let q = s.create(&crate::common::patient("Hsm", "Hilkka")).await;
    assert_eq!(s.get(&path).await.status(), reqwest::StatusCode::OK);
    s.stop();
    let status = run_env(&["keys", "status", "--dir", &d], "246810");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("PKCS#11 token 'clinic'") && text.contains("unused: can be retired"), "{text}");
    // Retire version 1: it is destroyed in the token; everything still reads.
    let out = run_env(&["keys", "retire", "--dir", &d, "--version", "1"], "246810");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = Server::start_env(&inst, &[], &server_env);
    assert_eq!(s.get(&format!("Patient/{}", q["id"].as_str().unwrap())).await.status(), reqwest::StatusCode::OK);
    assert_eq!(s.get(&path).await.status(), reqwest::StatusCode::OK);
    s.stop();

    // A wrong PIN: a clear error, and nothing on disk changes.
    let before = snapshot(&dir);
    let out = run_env(&["serve", "--dir", &d, "--listen", "127.0.0.1:0"], "000000");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("refused the PIN"), "{stderr}");
    assert_eq!(snapshot(&dir), before);

    // The independent client: the key left is in the token, sensitive and never extractable.
    let tool = |args: &[&str]| {
        Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", "clinic", "--login", "--pin", "246810"])
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap()
    };
    let list = String::from_utf8_lossy(&tool(&["--list-objects", "--type", "secrkey"]).stdout).into_owned();
    assert_eq!(list.matches("never extractable").count(), 1, "{list}");
    assert!(!list.contains(":v1"), "version 1 was destroyed: {list}");
    let read =
        tool(&["--read-object", "--type", "secrkey", "--label", &format!("confidant-kek:{}:v2", instance_id(&dir))]);
    assert!(!read.status.success(), "the key was read out of the token");

    // The audit signing key is an Ed25519 pair in the same token: no file, a private
    // half that never leaves it, and checkpoints it signed verify.
    assert!(!key.with_extension("audit-key").exists(), "no audit key file: the key is in the token");
    let label = format!("confidant-audit-signing:{}", instance_id(&dir));
    let list = String::from_utf8_lossy(&tool(&["--list-objects", "--type", "privkey"]).stdout).into_owned();
    assert!(list.contains(&label) && list.contains("sensitive, always sensitive, never extractable"), "{list}");
    let out = run_env(&["audit", "verify", "--dir", &d], "246810");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OK: the audit log is intact") && stdout.contains("PKCS#11 token 'clinic'"), "{stdout}");
    let public = stdout.lines().find_map(|l| l.trim().strip_prefix("public key:")).unwrap().split_whitespace().next();
    // The token's own word for the public key (OpenSC prints CKA_EC_POINT) is the one verify used.
    let listed = String::from_utf8_lossy(&tool(&["--list-objects", "--type", "pubkey"]).stdout).into_owned();
    let point = listed.lines().find_map(|l| l.trim().strip_prefix("EC_POINT:")).map(|p| p.trim().to_lowercase());
    assert_eq!(point.as_deref().and_then(|p| p.strip_prefix("0420")), public, "{listed}");
    let witness = std::fs::read_to_string(key.with_extension("witness")).unwrap();
    assert!(witness.lines().count() >= 2, "the servers signed checkpoints with the token's key: {witness}");
}

fn instance_id(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("confidant.toml")).unwrap();
    text.lines().find_map(|l| l.strip_prefix("instance_id = ")).unwrap().trim_matches('"').to_owned()
}
