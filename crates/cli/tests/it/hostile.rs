//! Hostile input gets a clear OperationOutcome and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, note, patient, row_counts};

async fn expect_outcome(r: reqwest::Response, status: StatusCode, what: &str) {
    assert_eq!(r.status(), status, "{what}");
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(ct.starts_with("application/fhir+json"), "{what}: content-type {ct}");
    let oo: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    assert_eq!(oo["resourceType"], "OperationOutcome", "{what}");
    assert!(!oo["issue"][0]["diagnostics"].as_str().unwrap_or("").is_empty(), "{what}");
}

async fn hostile_input_changes_nothing(db: Db) {
    let inst = Instance::new(db).await;
    // A small configured limit, so that the oversized body below fits in the
    // socket buffers and the client reads the 413 instead of a reset.
    let cfg_path = inst.dir.join("confidant.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    assert!(cfg.contains("max_body_bytes = 1048576"));
    std::fs::write(&cfg_path, cfg.replace("max_body_bytes = 1048576", "max_body_bytes = 65536")).unwrap();
    let s = inst.start();
    let p = s.create(&patient("Laine", "Väinö")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    s.create(&note(&pid, "note")).await;
    let before = row_counts(&inst).await;

    let raw = |method: reqwest::Method, path: &str, ct: &str, body: Vec<u8>| {
        s.http
            .request(method, s.fhir(path))
            .bearer_auth(&s.token)
            .header("content-type", ct.to_owned())
            .body(body)
            .send()
    };
    let fj = "application/fhir+json";
    use reqwest::Method as M;
    type Case<'a> = (M, String, &'a str, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            M::POST,
            "Patient".into(),
            fj,
            b"{\"resourceType\": \"Patient\",".to_vec(),
            StatusCode::BAD_REQUEST,
            "truncated JSON",
        ),
        (M::POST, "Patient".into(), fj, b"not json at all".to_vec(), StatusCode::BAD_REQUEST, "not JSON"),
        (M::POST, "Patient".into(), fj, b"[1,2,3]".to_vec(), StatusCode::BAD_REQUEST, "array"),
        (
            M::POST,
            "Patient".into(),
            fj,
            b"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid UTF-8",
        ),
        (
            M::POST,
            "Patient".into(),
            fj,
            serde_json::to_vec(&json!({"resourceType": "Practitioner"})).unwrap(),
            StatusCode::BAD_REQUEST,
            "wrong resourceType",
        ),
        (
            M::POST,
            "Patient".into(),
            fj,
            serde_json::to_vec(&json!({"name": []})).unwrap(),
            StatusCode::BAD_REQUEST,
            "no resourceType",
        ),
        (
            M::POST,
            "Patient".into(),
            fj,
            serde_json::to_vec(&json!({"resourceType": "Patient", "birthDate": "1980-02-30"})).unwrap(),
            StatusCode::BAD_REQUEST,
            "impossible date",
        ),
        (
            M::POST,
            "Patient".into(),
            fj,
            serde_json::to_vec(&json!({"resourceType": "Patient", "evil": "x"})).unwrap(),
            StatusCode::BAD_REQUEST,
            "unknown element",
        ),
        (
            M::POST,
            "Patient".into(),
            fj,
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "deep nesting",
        ),
        (M::POST, "Patient".into(), fj, vec![b' '; 100 * 1024], StatusCode::PAYLOAD_TOO_LARGE, "body over the limit"),
        (
            M::POST,
            "Patient".into(),
            "text/plain",
            serde_json::to_vec(&patient("A", "B")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong content type",
        ),
        (
            M::POST,
            "DocumentReference".into(),
            fj,
            serde_json::to_vec(&note("../../etc/passwd", "x")).unwrap(),
            StatusCode::BAD_REQUEST,
            "path in reference",
        ),
        (M::POST, "Condition".into(), fj, b"{}".to_vec(), StatusCode::NOT_FOUND, "unsupported type"),
        (
            M::PUT,
            format!("Patient/{pid}"),
            fj,
            b"{\"resourceType\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad update body",
        ),
        (
            M::PUT,
            "Patient/..%2F..%2Fetc".into(),
            fj,
            serde_json::to_vec(&patient("A", "B")).unwrap(),
            StatusCode::NOT_FOUND,
            "malformed id in update",
        ),
        (M::DELETE, format!("Patient/{pid}"), fj, vec![], StatusCode::METHOD_NOT_ALLOWED, "delete is not offered"),
    ];
    for (method, path, ct, body, status, what) in cases {
        expect_outcome(raw(method, &path, ct, body).await.unwrap(), status, what).await;
    }
    // If-Match that is not a version
    let r = s.put(&format!("Patient/{pid}"), &p, Some("\"; DROP TABLE resource_versions; --\"")).await;
    expect_outcome(r, StatusCode::BAD_REQUEST, "garbage If-Match").await;

    // Malformed ids on read, vread and history: 404, never an error page or a crash.
    let long = "a".repeat(1000);
    for path in [
        "Patient/..%2F..%2Fetc%2Fpasswd".to_owned(),
        "Patient/%00".to_owned(),
        "Patient/%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_owned(),
        "Patient/'%20OR%20'1'%3D'1".to_owned(),
        format!("Patient/{long}"),
        format!("Patient/{pid}/_history/abc"),
        format!("Patient/{pid}/_history/-1"),
        format!("Patient/{pid}/_history/99999999999999999999999"),
        "Patient/%E2%80%AE/_history".to_owned(),
    ] {
        expect_outcome(s.get(&path).await, StatusCode::NOT_FOUND, &path).await;
    }
    // SQL metacharacters in search values are data, not SQL.
    for q in [
        "family=' OR 1=1 --",
        "family=x'); DROP TABLE resource_heads; --",
        "given=%25%25%25",
        "identifier=*",
        "_id=' OR '1'='1",
        "email=a@b\" OR \"\"=\"",
        "phone=1;DELETE FROM search_tokens",
    ] {
        let (st, b) = s.get_json(&format!("Patient?{q}")).await;
        assert_eq!(st, StatusCode::OK, "{q}: {b}");
        assert_eq!(b["total"], 0, "{q}");
    }
    for q in ["patient=' OR 1=1 --", "subject=Patient/x%27%3B%20DROP"] {
        expect_outcome(s.get(&format!("DocumentReference?{q}")).await, StatusCode::BAD_REQUEST, q).await;
    }
    let many_params = format!("Patient?{}", vec!["family=a"; 3000].join("&"));
    let many_values = format!("Patient?family={}", vec!["a"; 3000].join(","));
    for q in
        ["Patient?_count=-1", "Patient?_count=abc", "Patient?_after=%27", "Patient?family=", &many_params, &many_values]
    {
        expect_outcome(s.get(q).await, StatusCode::BAD_REQUEST, q).await;
    }

    // Nothing changed: same rows, and the resources read back as before.
    assert_eq!(row_counts(&inst).await, before);
    let (st, again) = s.get_json(&format!("Patient/{pid}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(again, p);
    let (_, b) = s.get_json("Patient?_count=100").await;
    assert_eq!(b["total"], 1);
}
both_backends!(hostile_input_changes_nothing);
