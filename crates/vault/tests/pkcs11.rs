//! The PKCS#11 provider against a real SoftHSM2 token, cross-checked with an
//! independent PKCS#11 client (`pkcs11-tool` from OpenSC): the key is in the
//! token, sensitive and never extractable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use confidant_vault::Vault;
use confidant_vault::pkcs11::Pkcs11Kek;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn available() -> bool {
    let ok = Path::new(MODULE).exists()
        && Command::new("softhsm2-util").arg("--version").output().is_ok()
        && Command::new("pkcs11-tool").arg("--help").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "SoftHSM2 and pkcs11-tool must be installed in CI (.ci/run installs softhsm2 and opensc)"
        );
        eprintln!("\n*** SKIPPED pkcs11 tests: install softhsm2 and opensc ***\n");
    }
    ok
}

struct Token(String);

impl Token {
    fn new() -> Token {
        let label = format!("ct-{}", confidant_vault::random_id().unwrap()[..12].to_owned());
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &label, "--pin", "4321", "--so-pin", "87654321"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Token(label)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let _ = Command::new("softhsm2-util").args(["--delete-token", "--token", &self.0]).output();
    }
}

#[test]
fn a_kek_inside_softhsm2() {
    if !available() {
        return;
    }
    // SoftHSM2 reads its configuration from the environment when it is loaded:
    // run this test again in a child process whose token store is its own.
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        let tmp = std::env::temp_dir().join(format!("confidant-softhsm-{}", confidant_vault::random_id().unwrap()));
        std::fs::create_dir_all(tmp.join("tokens")).unwrap();
        let conf = tmp.join("softhsm2.conf");
        std::fs::write(&conf, format!("directories.tokendir = {}\n", tmp.join("tokens").display())).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "a_kek_inside_softhsm2", "--nocapture"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran the test");
        return;
    }
    let token = Token::new();
    let module = Path::new(MODULE);
    // A wrong PIN is refused.
    let wrong = Pkcs11Kek::open(module, &token.0, "0000", "inst").unwrap_err().to_string();
    assert!(wrong.contains("refused the PIN"), "{wrong}");
    assert!(Pkcs11Kek::open(module, "no-such-token", "4321", "inst").unwrap_err().to_string().contains("no token"));

    let kek = Pkcs11Kek::open(module, &token.0, "4321", "inst").unwrap();
    assert_eq!(kek.generate_version().unwrap(), 1);
    let check = kek.check_value().unwrap();
    let vault = Vault::new(std::sync::Arc::new(kek));
    let (dk, wrapped) = vault.new_data_key("p1", 1).unwrap();
    let ctx = confidant_vault::RecordContext { resource_type: "Patient", id: "p1", version: 1, compartment: "p1" };
    let sealed = dk.seal(&ctx, b"note").unwrap();
    drop(vault);

    // Another process (a restart): the same key, found by its label; data opens.
    let again = Pkcs11Kek::open(module, &token.0, "4321", "inst").unwrap();
    assert_eq!(again.check_value().unwrap(), check);
    let vault = Vault::new(std::sync::Arc::new(again));
    let dk2 = vault.open_data_key("p1", 1, &wrapped).unwrap();
    assert_eq!(&dk2.open(&ctx, &sealed).unwrap()[..], b"note");
    assert!(vault.open_data_key("p2", 1, &wrapped).is_err(), "bound to its label");
    // A new version, made in the token; old wraps still open; new ones use it.
    let kek = Pkcs11Kek::open(module, &token.0, "4321", "inst").unwrap();
    assert_eq!(kek.generate_version().unwrap(), 2);
    assert_eq!(vault.provider().current_version(), 2, "a running provider finds the new version");
    let rewrapped = vault.rewrap_data_key("p1", 1, &wrapped).unwrap();
    assert_eq!(rewrapped.kek_version().unwrap(), 2);
    assert_eq!(&vault.open_data_key("p1", 1, &rewrapped).unwrap().open(&ctx, &sealed).unwrap()[..], b"note");

    // The audit signing key: an Ed25519 pair made in the token; its signatures verify
    // with the ordinary verifier; a second one for the same instance is refused.
    use confidant_vault::signing::{Signer, verify};
    let signer = confidant_vault::pkcs11::Pkcs11Signer::generate(module, &token.0, "4321", "inst").unwrap();
    let sig = signer.sign(b"checkpoint").unwrap();
    assert!(verify(&signer.public_key(), b"checkpoint", &sig));
    assert!(!verify(&signer.public_key(), b"checkpoinT", &sig));
    let reopened = confidant_vault::pkcs11::Pkcs11Signer::open(module, &token.0, "4321", "inst").unwrap();
    assert_eq!(reopened.public_key(), signer.public_key());
    assert!(verify(&signer.public_key(), b"x", &reopened.sign(b"x").unwrap()));
    assert!(confidant_vault::pkcs11::Pkcs11Signer::generate(module, &token.0, "4321", "inst").is_err());
    let none = confidant_vault::pkcs11::Pkcs11Signer::open(module, &token.0, "4321", "other").unwrap_err();
    assert!(none.to_string().contains("holds no audit signing key"), "{none}");
    drop((signer, reopened));
    // The KEK still works after those sessions closed (the library stays initialised).
    assert_eq!(&vault.open_data_key("p1", 1, &rewrapped).unwrap().open(&ctx, &sealed).unwrap()[..], b"note");

    // The independent client: the key is sensitive and never extractable, and reading it fails.
    let tool = |args: &[&str]| {
        Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", &token.0, "--login", "--pin", "4321"])
            .args(args)
            .output()
            .unwrap()
    };
    let list = tool(&["--list-objects", "--type", "secrkey"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("confidant-kek:inst:v1"), "{text}");
    assert!(text.contains("never extractable") && text.contains("sensitive"), "{text}");
    let read = tool(&["--read-object", "--type", "secrkey", "--label", "confidant-kek:inst:v1"]);
    assert!(!read.status.success(), "the key was exported: {}", String::from_utf8_lossy(&read.stdout));
    let list = tool(&["--list-objects", "--type", "privkey"]);
    let text = String::from_utf8_lossy(&list.stdout);
    // (pkcs11-tool cannot read out private EC keys at all, so its attributes are the evidence.)
    assert!(text.contains("EC_EDWARDS") && text.contains("confidant-audit-signing:inst"), "{text}");
    assert!(text.contains("sensitive, always sensitive, never extractable"), "{text}");
}
