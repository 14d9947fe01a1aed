//! `/metrics` (issue 17): a Prometheus scrape on its own listener shows
//! requests by route template and status, latency histograms, audit appends,
//! logins and failures, alerts, the pool and the key's age — and no canary,
//! no patient, user or record id, no username, no query string. A token, when
//! configured, is required; a listener beyond loopback without one is refused.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{Db, Instance, Server, patient, run, run_stdin_env};

/// The metrics listener's address, from the line `serve` logs before it announces itself.
fn metrics_addr(s: &Server) -> String {
    let log = std::fs::read_to_string(&s.stderr).unwrap();
    log.lines()
        .find_map(|l| l.split("serving /metrics").nth(1).and_then(|r| r.split("addr=").nth(1)))
        .map(|a| a.split_whitespace().next().unwrap().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("the metrics address is logged: {log}"))
}

/// The value of one sample line (`name{labels} value`), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

async fn a_scrape_counts_without_naming_anyone(db: Db) {
    let inst = Instance::new(db).await;
    inst.configure(|t| Instance::set(t, "metrics", "listen", "127.0.0.1:0".into()));
    let s = inst.start();
    let canary = "Metricscanaryfamily";
    let p = s.create(&patient(canary, "Quietly")).await;
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&format!("Patient/{id}")).await.status(), StatusCode::OK);
    assert_eq!(s.get(&format!("Patient?family={canary}")).await.status(), StatusCode::OK);
    assert_eq!(s.get("Patient/0123456789abcdef0123456789abcdef").await.status(), StatusCode::NOT_FOUND);
    // A failed login, and a request with a made-up method (it must not become a label).
    let r = s
        .http
        .post(format!("{}/api/v1/session", s.url))
        .json(&json!({"username": "clin1", "password": "not the password at all", "client": "bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let odd = Method::from_bytes(b"XYZZY").unwrap();
    let _ = s.http.request(odd, format!("{}/healthz", s.url)).send().await.unwrap();

    let at = metrics_addr(&s);
    let r = reqwest::get(format!("http://{at}/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();

    // Requests by route template and status, with their latency.
    let created = r#"confidant_http_requests_total{method="POST",route="/fhir/r4/{type}",status="201"}"#;
    assert!(value(&text, created).is_some_and(|n| n >= 1.0), "{text}");
    let read = r#"confidant_http_requests_total{method="GET",route="/fhir/r4/{type}/{id}",status="200"}"#;
    assert!(value(&text, read).is_some_and(|n| n >= 1.0), "{text}");
    let missing = r#"confidant_http_requests_total{method="GET",route="/fhir/r4/{type}/{id}",status="404"}"#;
    assert_eq!(value(&text, missing), Some(1.0), "{text}");
    assert!(text.contains(r#"method="other""#) && !text.contains("XYZZY"), "unknown methods are folded");
    assert!(text.contains("# TYPE confidant_http_request_duration_seconds histogram"));
    let reads = r#"confidant_http_request_duration_seconds_count{route="/fhir/r4/{type}/{id}"}"#;
    assert!(value(&text, reads).is_some_and(|n| n >= 2.0), "{text}");
    // The audit log, logins, the pool, the key.
    assert_eq!(
        value(&text, r#"confidant_audit_entries_total{action="login-failed",outcome="denied"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&text, r#"confidant_audit_entries_total{action="read",outcome="success"}"#).is_some_and(|n| n >= 1.0)
    );
    assert!(
        value(&text, r#"confidant_audit_entries_total{action="search-hit",outcome="success"}"#)
            .is_some_and(|n| n >= 1.0)
    );
    assert!(value(&text, "confidant_audit_entries_since_checkpoint").is_some_and(|n| n >= 3.0), "{text}");
    assert!(value(&text, "confidant_audit_group_commits_total").is_some(), "{text}");
    // Audit append and group-commit latency as histograms: cumulative buckets,
    // `+Inf` equal to `_count`, which counts what the counters count.
    for (histogram, counter) in [
        ("confidant_audit_append_duration_seconds", "confidant_audit_appends_total"),
        ("confidant_audit_group_commit_duration_seconds", "confidant_audit_group_commits_total"),
    ] {
        assert!(text.contains(&format!("# TYPE {histogram} histogram\n")), "{text}");
        let buckets: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{histogram}_bucket{{le=")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(buckets.len() >= 2 && buckets.windows(2).all(|w| w[0] <= w[1]), "{histogram} buckets: {text}");
        let count = value(&text, &format!("{histogram}_count")).unwrap();
        assert_eq!(buckets.last().copied(), Some(count), "{histogram}: +Inf is the count");
        assert!(count >= 1.0, "{histogram} observed the reads: {text}");
        assert_eq!(Some(count), value(&text, counter), "{histogram} counts what {counter} counts");
        assert!(value(&text, &format!("{histogram}_sum")).is_some_and(|s| s > 0.0), "{text}");
        let inf = format!("{histogram}_bucket{{le=\"+Inf\"}}");
        assert_eq!(value(&text, &inf), Some(count), "{text}");
    }
    assert_eq!(value(&text, "confidant_kek_age_days"), Some(0.0), "{text}");
    assert!(value(&text, r#"confidant_db_connections{state="idle"}"#).is_some(), "{text}");

    // Nothing that names anyone or anything.
    let clin1 = {
        let out = run(&["user", "list", "--dir", inst.dir.to_str().unwrap()]);
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = list.lines().find(|l| l.split_whitespace().any(|w| w == "clin1")).unwrap().to_owned();
        line.split_whitespace().find(|w| w.len() == 32 && w.chars().all(|c| c.is_ascii_hexdigit())).unwrap().to_owned()
    };
    for secret in [canary, "Quietly", id.as_str(), clin1.as_str(), "clin1", "127.0.0.1", "family="] {
        assert!(!text.contains(secret), "/metrics shows {secret:?}");
    }
    // Any 32-hex string would be an id of something.
    let hex_run = text.as_bytes().windows(32).any(|w| w.iter().all(u8::is_ascii_hexdigit));
    assert!(!hex_run, "no id-shaped string in /metrics");
    // Only /metrics is there.
    assert_eq!(reqwest::get(format!("http://{at}/fhir/r4/Patient")).await.unwrap().status(), StatusCode::NOT_FOUND);
    s.stop();

    // With a token: a scrape without it, or with another, is refused.
    let token_file = inst.logs_dir().join("metrics.token");
    let token = "m".repeat(20) + "etrics-token-long-enough-1234567890";
    std::fs::write(&token_file, &token).unwrap();
    inst.configure(|t| Instance::set(t, "metrics", "token_file", token_file.to_str().unwrap().into()));
    let s = inst.start();
    let at = metrics_addr(&s);
    let client = reqwest::Client::new();
    let r = client.get(format!("http://{at}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.get(format!("http://{at}/metrics")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.get(format!("http://{at}/metrics")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop();

    // Beyond loopback without a token: `serve` refuses, saying what to add.
    inst.configure(|t| {
        Instance::set(t, "metrics", "listen", "0.0.0.0:0".into());
        t["metrics"].as_table_mut().unwrap().remove("token_file");
    });
    let out = run_stdin_env(&["serve", "--dir", inst.dir.to_str().unwrap(), "--listen", "127.0.0.1:0"], "", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("set metrics.token_file"), "{err}");
}
both_backends!(a_scrape_counts_without_naming_anyone);

/// `CONFIDANT_LOGGING__FORMAT=json` (an environment override, as any key of the
/// configuration can be): every line on standard error is one JSON object, the
/// request lines carry route templates, and the canary appears in none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_environment_overrides() {
    let inst = Instance::new(Db::Sqlite).await;
    let s = Server::start_env(
        &inst,
        &[],
        &[("CONFIDANT_LOGGING__FORMAT", "json"), ("CONFIDANT_CLINIC__NAME", "Environment Clinic")],
    );
    let canary = "Jsonlogcanary";
    let p = s.create(&patient(canary, "Lines")).await;
    assert_eq!(s.get(&format!("Patient/{}", p["id"].as_str().unwrap())).await.status(), StatusCode::OK);
    assert_eq!(s.get(&format!("Patient?family={canary}")).await.status(), StatusCode::OK);
    let stderr = s.stderr.clone();
    s.stop();
    let log = std::fs::read_to_string(&stderr).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    assert!(!lines.is_empty());
    let requests: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(
        requests.iter().any(|l| l["route"] == "/fhir/r4/{type}/{id}" && l["status"] == 200 && l["level"] == "INFO"),
        "{log}"
    );
    let overridden = lines.iter().find(|l| l["message"] == "configuration overridden by the environment");
    let names = overridden.map(|l| l["overrides"].as_str().unwrap_or_default().to_owned()).unwrap_or_default();
    assert!(names.contains("CONFIDANT_CLINIC__NAME"), "the override is logged by name: {log}");
    assert!(!log.contains("Environment Clinic"), "values are not logged");
    assert!(!log.contains(canary), "no record content in the log");
    // An override that makes the configuration invalid stops the command, naming it.
    let out = run_stdin_env(
        &["serve", "--dir", inst.dir.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        "",
        &[("CONFIDANT_CLINIC__TIME_ZONE", "Mars/Olympus")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Mars/Olympus"), "{err}");
    // The file itself was never changed by an override.
    let file = std::fs::read_to_string(inst.dir.join("confidant.toml")).unwrap();
    assert!(!file.contains("Environment Clinic") && !file.contains("Mars"));
}
