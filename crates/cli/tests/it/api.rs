//! The FHIR API does what the CapabilityStatement says.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, encounter, note, patient, run};

async fn crud_versions_and_history(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();

    let p = s.create(&patient("Virtanen", "Aino")).await;
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "server-assigned random id");
    assert_eq!(p["meta"]["versionId"], "1");

    // read, with ETag
    let r = s.get(&format!("Patient/{id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["name"][0]["family"], "Virtanen");

    // update with the right If-Match → version 2
    let mut changed = body.clone();
    changed["name"][0]["family"] = json!("Korhonen");
    let r = s.put(&format!("Patient/{id}"), &changed, Some("W/\"1\"")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "W/\"2\"");

    // stale If-Match → 412, nothing changes
    let r = s.put(&format!("Patient/{id}"), &body, Some("W/\"1\"")).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let oo: Value = r.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let (_, now) = s.get_json(&format!("Patient/{id}")).await;
    assert_eq!(now["name"][0]["family"], "Korhonen");

    // vread both versions
    let (st, v1) = s.get_json(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v1["name"][0]["family"], "Virtanen");
    let (_, v2) = s.get_json(&format!("Patient/{id}/_history/2")).await;
    assert_eq!(v2["name"][0]["family"], "Korhonen");
    let (st, _) = s.get_json(&format!("Patient/{id}/_history/3")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // _history, newest first, paged
    for _ in 0..3 {
        let (_, cur) = s.get_json(&format!("Patient/{id}")).await;
        assert_eq!(s.put(&format!("Patient/{id}"), &cur, None).await.status(), StatusCode::OK);
    }
    let (st, h) = s.get_json(&format!("Patient/{id}/_history?_count=2")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 5);
    let versions: Vec<&str> =
        h["entry"].as_array().unwrap().iter().map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap()).collect();
    assert_eq!(versions, ["5", "4"]);
    let mut seen = versions.iter().map(|v| v.to_string()).collect::<Vec<_>>();
    let mut next = h["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_owned());
    while let Some(url) = next {
        let page: Value = s.http.get(&url).bearer_auth(&s.token).send().await.unwrap().json().await.unwrap();
        for e in page["entry"].as_array().unwrap() {
            seen.push(e["resource"]["meta"]["versionId"].as_str().unwrap().to_owned());
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["5", "4", "3", "2", "1"]);

    // the URL id wins over nothing: a different id in the body is refused
    let mut wrong = now.clone();
    wrong["id"] = json!("someoneelse");
    assert_eq!(s.put(&format!("Patient/{id}"), &wrong, None).await.status(), StatusCode::BAD_REQUEST);
    // update of a resource that does not exist (the body names it, as an update must)
    let mut absent = patient("A", "B");
    absent["id"] = json!("doesnotexist");
    assert_eq!(s.put("Patient/doesnotexist", &absent, None).await.status(), StatusCode::NOT_FOUND);
}
both_backends!(crud_versions_and_history);

async fn search_by_blind_index_and_patient(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let mut p = patient("Mäkinen", "Helmi");
    p["identifier"] = json!([{"system": "urn:oid:1.2.246.21", "value": "131052-308T"}]);
    p["telecom"] =
        json!([{"system": "email", "value": "Helmi@Example.FI"}, {"system": "phone", "value": "+358 40 123 4567"}]);
    p["birthDate"] = json!("1952-10-13");
    let helmi = s.create(&p).await;
    let hid = helmi["id"].as_str().unwrap();
    let other = s.create(&patient("Laine", "Väinö")).await;
    let oid = other["id"].as_str().unwrap();

    let found = |b: &Value| -> Vec<String> {
        b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect()
    };
    // Normalised exact matches: case, whitespace, Unicode NFC (A + combining ring vs Å)
    for q in [
        "identifier=131052-308t",
        "identifier=urn:oid:1.2.246.21|131052-308T",
        "family=M%C3%A4kinen",
        "family=%20MA%CC%88KINEN%20",
        "given=helmi",
        "birthdate=1952-10-13",
        "birthdate=eq1952-10-13",
        "email=helmi@example.fi",
        "phone=%2B358401234567",
        "family=makinen,m%C3%A4kinen",
    ] {
        let (st, b) = s.get_json(&format!("Patient?{q}")).await;
        assert_eq!(st, StatusCode::OK, "{q}: {b}");
        assert_eq!(found(&b), vec![hid.to_owned()], "{q}");
        assert_eq!(b["total"], 1, "{q}");
    }
    // Names match by their start (see prefix.rs), nothing else does; AND across parameters
    for q in ["family=M%C3%A4kk", "family=M%C3%A4kinen&given=aino", "identifier=other|131052-308T", "email=helmi"] {
        let (_, b) = s.get_json(&format!("Patient?{q}")).await;
        assert_eq!(b["total"], 0, "{q}");
    }
    // Unsupported searches say so
    for q in ["birthdate=ge1950", "name=x", "family:contains=x", "_sort=family", "identifier=urn:x|"] {
        let (st, b) = s.get_json(&format!("Patient?{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }

    // patient / subject reference search on notes and encounters
    s.create(&note(hid, "note one")).await;
    s.create(&note(hid, "note two")).await;
    s.create(&note(oid, "other")).await;
    s.create(&encounter(hid)).await;
    for q in [format!("DocumentReference?patient=Patient/{hid}"), format!("DocumentReference?subject={hid}")] {
        let (_, b) = s.get_json(&q).await;
        assert_eq!(b["total"], 2, "{q}");
    }
    let (_, b) = s.get_json(&format!("Encounter?patient={hid}")).await;
    assert_eq!(b["total"], 1);
    // A note for a patient that does not exist is refused
    assert_eq!(
        s.post("DocumentReference", &note("nosuchpatient", "x")).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A note gets a confidentiality label
    let (_, b) = s.get_json(&format!("DocumentReference?patient={hid}")).await;
    assert_eq!(b["entry"][0]["resource"]["meta"]["security"][0]["code"], "R");
}
both_backends!(search_by_blind_index_and_patient);

async fn paging_with_next_links(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(s.create(&patient("Nieminen", &format!("N{i}"))).await["id"].as_str().unwrap().to_owned());
    }
    s.create(&patient("Other", "X")).await;
    let mut url = s.fhir("Patient?family=nieminen&_count=3");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let b: Value = s.http.get(&url).bearer_auth(&s.token).send().await.unwrap().json().await.unwrap();
        assert_eq!(b["total"], 7);
        assert_eq!(b["type"], "searchset");
        for e in b["entry"].as_array().unwrap() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_owned());
        }
        pages += 1;
        match b["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(l) => url = l["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    created.sort();
    assert_eq!(seen, created, "every match exactly once, in id order");
    // A count without the matches (issue 19): the total only, each match counted
    // audited as a search hit (fhir_conformance.rs checks the audit), so it is no
    // unaudited "is X a patient here?".
    let (st, b) = s.get_json("Patient?family=nieminen&_count=0").await;
    assert_eq!((st, b["total"].as_i64(), b.get("entry")), (StatusCode::OK, Some(7), None), "{b}");
    let (_, b) = s.get_json("Patient?family=nobody-by-this-name").await;
    assert_eq!(b["total"], 0);
    assert!(b.get("entry").is_none(), "no empty arrays in FHIR JSON");
}
both_backends!(paging_with_next_links);

async fn tokens_metadata_and_health(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    // healthz: no auth, no detail
    let r = s.http.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ok");
    // metadata lists exactly what is implemented
    let r = s.http.get(s.fhir("metadata")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cs: Value = r.json().await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let types: Vec<&str> =
        cs["rest"][0]["resource"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "Patient",
            "Practitioner",
            "Encounter",
            "DocumentReference",
            "CareTeam",
            "Appointment",
            "Schedule",
            "QuestionnaireResponse",
            "Observation",
            "Questionnaire",
            "AuditEvent"
        ]
    );
    let patient_params: Vec<&str> = cs["rest"][0]["resource"][0]["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(patient_params, ["_id", "identifier", "name", "family", "given", "birthdate", "email", "phone"]);

    let p = s.create(&patient("A", "B")).await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    // no token, wrong token, malformed header → 401 OperationOutcome
    for auth in [None, Some("Bearer cnf_wrong"), Some("Basic abc"), Some("Bearer ")] {
        let mut req = s.http.get(s.fhir(&path));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"confidant\"");
        let oo: Value = r.json().await.unwrap();
        assert_eq!(oo["issue"][0]["code"], "login");
    }
    // a revoked token stops working at once
    let list = run(&["token", "list", "--dir", inst.dir.to_str().unwrap()]);
    let listing = String::from_utf8(list.stdout).unwrap();
    let id = listing.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(!listing.contains(&s.token), "token list must not print tokens");
    assert!(run(&["token", "revoke", "--dir", inst.dir.to_str().unwrap(), "--id", &id]).status.success());
    assert_eq!(s.get(&path).await.status(), StatusCode::UNAUTHORIZED);
    assert!(!run(&["token", "revoke", "--dir", inst.dir.to_str().unwrap(), "--id", &id]).status.success());
}
both_backends!(tokens_metadata_and_health);

async fn concurrent_updates_lose_nothing(db: Db) {
    let inst = Instance::new(db).await;
    let s = std::sync::Arc::new(inst.start());
    let p = s.create(&patient("Salo", "Juhani")).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let path = format!("Patient/{id}");
    // Rounds of two updates racing with the same If-Match: exactly one wins.
    for round in 1..=15 {
        let (_, cur) = s.get_json(&path).await;
        let etag = format!("W/\"{round}\"");
        let mut a = cur.clone();
        a["name"][0]["given"] = json!([format!("A{round}")]);
        let mut b = cur.clone();
        b["name"][0]["given"] = json!([format!("B{round}")]);
        let (ra, rb) = tokio::join!(s.put(&path, &a, Some(&etag)), s.put(&path, &b, Some(&etag)));
        let mut codes = [ra.status().as_u16(), rb.status().as_u16()];
        codes.sort();
        assert_eq!(codes, [200, 412], "round {round}");
    }
    let (_, h) = s.get_json(&format!("{path}/_history?_count=100")).await;
    assert_eq!(h["total"], 16);
    // Without If-Match both writes land, as consecutive versions: none is lost.
    let (_, cur) = s.get_json(&path).await;
    let (ra, rb) = tokio::join!(s.put(&path, &cur, None), s.put(&path, &cur, None));
    let ok = [ra.status(), rb.status()].iter().filter(|s| **s == StatusCode::OK).count();
    let conflicts = [ra.status(), rb.status()].iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!(ok + conflicts, 2);
    assert!(ok >= 1);
    let (_, h) = s.get_json(&format!("{path}/_history?_count=100")).await;
    assert_eq!(h["total"].as_i64().unwrap(), 16 + ok as i64);
}
both_backends!(concurrent_updates_lose_nothing);
