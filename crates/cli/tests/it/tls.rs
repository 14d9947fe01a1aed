//! HTTPS in the binary (issue 17): real clients (reqwest on rustls, curl,
//! Python's ssl on OpenSSL) reach it over TLS 1.2 and 1.3; TLS 1.0, 1.1 and
//! CBC suites are refused by the server; a renewed certificate written over
//! the files is served at the next handshake without a restart, and a broken
//! renewal leaves the working one in place; plain HTTP only redirects; an
//! unusable certificate stops `serve` with the file named; `doctor` reports a
//! certificate about to expire as high.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{Db, Instance, run, run_stdin_env};

/// A self-signed server certificate (not a CA: rustls refuses a CA as a server's
/// certificate) for localhost and 127.0.0.1, valid `days`, made by OpenSSL.
fn certificate(dir: &Path, name: &str, days: u32) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", &days.to_string(), "-subj", &format!("/CN={name}.confidant.test")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=critical,digitalSignature", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// The certificate's DER bytes, hex (what a client's handshake shows).
fn der_hex(cert: &Path) -> String {
    let out = Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(cert).output().unwrap();
    assert!(out.status.success());
    hex(&out.stdout)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `from` over `to` as a renewal does: a new file renamed into place.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Handshakes from Python's ssl (OpenSSL), one per protocol or suite set:
/// each says whether it succeeded, with what, and which certificate it saw.
const HANDSHAKES: &str = r#"
import json, socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
V = ssl.TLSVersion
def hs(lo, hi, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    ctx.minimum_version, ctx.maximum_version = lo, hi
    try:
        with socket.create_connection((host, port), timeout=30) as s, ctx.wrap_socket(s) as t:
            return {"ok": True, "version": t.version(), "cipher": t.cipher()[0], "der": t.getpeercert(True).hex()}
    except (ssl.SSLError, OSError) as e:
        return {"ok": False, "error": str(e)}
print(json.dumps({
    "tls1.0": hs(V.TLSv1, V.TLSv1, "ALL:@SECLEVEL=0"),
    "tls1.1": hs(V.TLSv1_1, V.TLSv1_1, "ALL:@SECLEVEL=0"),
    "tls1.2": hs(V.TLSv1_2, V.TLSv1_2),
    "tls1.3": hs(V.TLSv1_3, V.TLSv1_3),
    "cbc": hs(V.TLSv1_2, V.TLSv1_2, "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0"),
}))
"#;

fn handshakes(addr: &str) -> Value {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("python3").args(["-c", HANDSHAKES, host, port]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tls_settings(inst: &Instance, cert: &Path, key: &Path, redirect: bool) {
    inst.configure(|t| {
        Instance::set(t, "server", "tls_cert_file", cert.to_str().unwrap().into());
        Instance::set(t, "server", "tls_key_file", key.to_str().unwrap().into());
        if redirect {
            Instance::set(t, "server", "redirect_http_listen", "127.0.0.1:0".into());
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_in_the_binary_with_real_clients_and_a_renewal_without_restart() {
    let inst = Instance::new(Db::Sqlite).await;
    let certs = inst.logs_dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (first, first_key) = certificate(&certs, "first", 90);
    let (second, second_key) = certificate(&certs, "second", 90);
    let (live, live_key) = (certs.join("live.pem"), certs.join("live.key"));
    replace(&first, &live);
    replace(&first_key, &live_key);
    tls_settings(&inst, &live, &live_key, true);

    let s = inst.start();
    assert!(s.url.starts_with("https://127.0.0.1:"), "serve announces an https URL: {}", s.url);
    let addr = s.url.trim_start_matches("https://").to_owned();

    // rustls (reqwest), trusting only the clinic's certificate.
    let pem = std::fs::read(&first).unwrap();
    let client =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]).build().unwrap();
    let r = client.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let hsts = r.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned());
    assert!(hsts.is_some_and(|h| h.contains("max-age=31536000")), "HSTS on every HTTPS response");
    assert_eq!(r.text().await.unwrap(), "ok");
    // The FHIR API works over it, with the instance's token.
    let r = client.get(format!("{}/fhir/r4/Patient?family=Nobody", s.url)).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    // curl (OpenSSL), verifying the certificate for "localhost".
    let port = addr.rsplit_once(':').unwrap().1;
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--cacert"])
        .arg(&first)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1"), &format!("https://localhost:{port}/healthz")])
        .output()
        .expect("curl must be installed");
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    // Plain HTTP on the TLS port is not answered as HTTP.
    let plain = reqwest::Client::new().get(format!("http://{addr}/healthz")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "no plain HTTP on the TLS port");

    // Python's ssl: the old protocols and CBC suites are refused by the server.
    let h = handshakes(&addr);
    for old in ["tls1.0", "tls1.1"] {
        assert_eq!(h[old]["ok"], false, "{old} must be refused: {h}");
        let e = h[old]["error"].as_str().unwrap();
        // The server's alert, not the client declining to try.
        assert!(e.contains("PROTOCOL_VERSION") || e.contains("HANDSHAKE_FAILURE"), "{old}: {e}");
    }
    assert_eq!(h["cbc"]["ok"], false, "CBC suites must be refused: {h}");
    for (modern, version) in [("tls1.2", "TLSv1.2"), ("tls1.3", "TLSv1.3")] {
        assert_eq!(h[modern]["ok"], true, "{modern}: {h}");
        assert_eq!(h[modern]["version"], version);
        let cipher = h[modern]["cipher"].as_str().unwrap();
        assert!(cipher.contains("GCM") || cipher.contains("CHACHA20"), "{modern} negotiated an AEAD suite: {cipher}");
        assert_eq!(h[modern]["der"], der_hex(&first), "the first certificate is served");
    }

    // A renewal written over the files is served at the next handshake, no restart.
    replace(&second, &live);
    replace(&second_key, &live_key);
    let h = handshakes(&addr);
    assert_eq!(h["tls1.3"]["der"], der_hex(&second), "the renewed certificate is served: {h}");
    // A broken renewal (half-written file) leaves the working certificate in place.
    std::fs::write(&live, b"-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let h = handshakes(&addr);
    assert_eq!(h["tls1.3"]["der"], der_hex(&second), "the previous certificate stays: {h}");
    let log = std::fs::read_to_string(&s.stderr).unwrap();
    assert!(log.contains("TLS certificate reloaded"), "the reload is logged");
    assert!(log.contains("cannot be used; the previous certificate stays"), "the broken renewal is logged");

    // Plain HTTP elsewhere only redirects to the HTTPS URL, path and query kept.
    let redirect = log
        .lines()
        .find_map(|l| l.split("redirecting plain HTTP to HTTPS").nth(1).and_then(|r| r.split("addr=").nth(1)))
        .map(|a| a.split_whitespace().next().unwrap().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("the redirect listener's address is logged: {log}"));
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_follow.get(format!("http://{redirect}/patients?family=x")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()["location"], format!("{}/patients?family=x", s.url).as_str());
    assert!(r.text().await.unwrap().is_empty(), "nothing is served over plain HTTP");
    s.stop();

    // An unusable certificate stops `serve` before it listens, naming the file.
    let out = run_stdin_env(&["serve", "--dir", inst.dir.to_str().unwrap(), "--listen", "127.0.0.1:0"], "", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the TLS certificate") && err.contains("live.pem"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
    // A certificate with another certificate's key, likewise.
    replace(&first, &live);
    replace(&second_key, &live_key);
    let out = run_stdin_env(&["serve", "--dir", inst.dir.to_str().unwrap(), "--listen", "127.0.0.1:0"], "", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("does not belong to the certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_certificate_about_to_expire_and_half_a_tls_setting() {
    let inst = Instance::new(Db::Sqlite).await;
    let certs = inst.logs_dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let tls_finding = |inst: &Instance| -> Value {
        let out = run(&["doctor", "--dir", inst.dir.to_str().unwrap(), "--format", "json"]);
        let report: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        report["checks"].as_array().unwrap().iter().find(|c| c["check"] == "tls").unwrap().clone()
    };
    let (soon, soon_key) = certificate(&certs, "soon", 5);
    tls_settings(&inst, &soon, &soon_key, false);
    let f = tls_finding(&inst);
    assert_eq!(f["severity"], "high", "{f}");
    assert!(f["title"].as_str().unwrap().contains("expires in 4 days"), "{f}");
    assert!(f["evidence"].as_str().unwrap().contains("soon.confidant.test"), "{f}");

    let (good, good_key) = certificate(&certs, "good", 90);
    tls_settings(&inst, &good, &good_key, false);
    let f = tls_finding(&inst);
    assert!(f["severity"].is_null(), "a certificate valid for 90 days passes: {f}");
    assert!(f["title"].as_str().unwrap().contains("89 more days"), "{f}");

    // Half a setting is refused when the configuration is read, by every command.
    inst.configure(|t| {
        t["server"].as_table_mut().unwrap().remove("tls_key_file");
    });
    let out = run(&["doctor", "--dir", inst.dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tls_key_file is not"), "{err}");
}

/// SSLyze (PyPI, installed by `.ci/run` into `target/sslyze`) grades the TLS
/// configuration: no SSL 2/3, TLS 1.0 or 1.1 suite accepted, TLS 1.2 and 1.3
/// with forward-secret AEAD suites only, no compression, no client
/// renegotiation, not vulnerable to Heartbleed, ROBOT or CCS injection (HSTS is
/// checked with reqwest above);
/// and against Mozilla's "intermediate" configuration the only finding is the
/// test certificate's path (a private CA, not in Mozilla's store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_grades_the_configuration() {
    let Some(sslyze) = std::env::var_os("CONFIDANT_SSLYZE_PATH") else {
        assert!(std::env::var("CI").ok().as_deref() != Some("true"), "CI must install SSLyze (CONFIDANT_SSLYZE_PATH)");
        eprintln!("\n*** SKIPPED tls::sslyze_grades_the_configuration: set CONFIDANT_SSLYZE_PATH (see .ci/run) ***\n");
        return;
    };
    let inst = Instance::new(Db::Sqlite).await;
    let certs = inst.logs_dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = certificate(&certs, "graded", 90);
    tls_settings(&inst, &cert, &key, false);
    let s = inst.start();
    let port = s.url.rsplit_once(':').unwrap().1.to_owned();
    let json = certs.join("sslyze.json");
    let out = Command::new("python3")
        .args(["-m", "sslyze", "--mozilla_config=intermediate"])
        .arg(format!("--json_out={}", json.display()))
        .arg(format!("localhost:{port}"))
        .env("PYTHONPATH", &sslyze)
        .output()
        .unwrap();
    s.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &report["server_scan_results"][0]["scan_result"];
    let accepted = |k: &str| -> Vec<String> {
        assert_eq!(r[k]["status"], "COMPLETED", "{k}: {}", r[k]);
        r[k]["result"]["accepted_cipher_suites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cipher_suite"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for old in ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"] {
        assert!(accepted(old).is_empty(), "{old} accepted: {:?}", accepted(old));
    }
    for modern in ["tls_1_2_cipher_suites", "tls_1_3_cipher_suites"] {
        let suites = accepted(modern);
        assert!(!suites.is_empty(), "{modern}");
        for s in &suites {
            let aead = s.contains("_GCM_") || s.contains("CHACHA20_POLY1305");
            let forward_secret = modern == "tls_1_3_cipher_suites" || s.contains("ECDHE");
            assert!(aead && forward_secret, "{modern}: {s}");
        }
    }
    assert_eq!(r["tls_compression"]["result"]["supports_compression"], false);
    assert_eq!(r["session_renegotiation"]["result"]["is_vulnerable_to_client_renegotiation_dos"], false);
    assert_eq!(r["heartbleed"]["result"]["is_vulnerable_to_heartbleed"], false);
    assert_eq!(r["openssl_ccs_injection"]["result"]["is_vulnerable_to_ccs_injection"], false);
    assert!(r["robot"]["result"]["robot_result"].as_str().unwrap().starts_with("NOT_VULNERABLE"));
    // Mozilla's intermediate profile: nothing but the private certificate's path.
    let compliance = text.split("COMPLIANCE AGAINST TLS CONFIGURATION").nth(1).unwrap_or_else(|| panic!("{text}"));
    let findings: Vec<&str> = compliance.lines().filter(|l| l.trim_start().starts_with("* ")).collect();
    assert!(compliance.contains("Mozilla's \"intermediate\" configuration"), "{text}");
    assert!(
        findings.iter().all(|l| l.contains("certificate_path_validation")),
        "SSLyze's findings against Mozilla's intermediate configuration: {findings:?}\n{text}"
    );
}
