//! Issue 15: a patient is found by the start of a family or given name (at
//! least 3 characters; case- and accent-insensitive, as FHIR string search
//! is), still without any plaintext column: blind-indexed prefixes. Names
//! stored before prefix search get their prefixes when the instance opens.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode as S};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::access::call;
use crate::both_backends;
use crate::common::{Db, Instance, add_user, create_token, row_counts};
use crate::ui::Browser;

fn person(family: &str, given: &[&str]) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": given}], "birthDate": "1980-02-01"})
}

fn ids(b: &Value) -> BTreeSet<String> {
    b["entry"]
        .as_array()
        .map(|es| es.iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The clinic's patients of these tests, by a short name.
struct Clinic {
    aino: String,
    hama: String,
    virtala: String,
    li: String,
    long1: String,
    long2: String,
}

async fn register(s: &crate::common::Server) -> Clinic {
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    Clinic {
        aino: id(s.create(&person("Virtanen", &["Aino", "Maria"])).await),
        hama: id(s.create(&person("Hämäläinen", &["Åsa"])).await),
        virtala: id(s.create(&person("Virtala", &["Eero"])).await),
        li: id(s.create(&person("Li", &["Bo"])).await),
        long1: id(s.create(&person("Vanhatalo-Rautiainen", &["Ilona"])).await),
        long2: id(s.create(&person("Vanhatalo-Rautio", &["Juho"])).await),
    }
}

/// The searches and whom each must find (exactly those).
fn expectations(c: &Clinic) -> Vec<(&'static str, Vec<&String>)> {
    vec![
        // 3 and 5 characters, the full name, mixed case.
        ("family=vir", vec![&c.aino, &c.virtala]),
        ("family=Virta", vec![&c.aino, &c.virtala]),
        ("family=VIRTAN", vec![&c.aino]),
        ("family=Virtanen", vec![&c.aino]),
        ("family=vIrTaLa", vec![&c.virtala]),
        ("family=virtanenx", vec![]),
        ("given=mar", vec![&c.aino]),
        ("given=MARIA", vec![&c.aino]),
        ("given=eer", vec![&c.virtala]),
        // name: family or given.
        ("name=vir", vec![&c.aino, &c.virtala]),
        ("name=ain", vec![&c.aino]),
        ("name=eero", vec![&c.virtala]),
        // Accents: ä/å/ö meet a/o, precomposed or decomposed, either way round.
        ("family=H%C3%A4m", vec![&c.hama]),
        ("family=hamalainen", vec![&c.hama]),
        ("family=HA%CC%88MA%CC%88", vec![&c.hama]),
        ("given=asa", vec![&c.hama]),
        ("given=%C3%85SA", vec![&c.hama]),
        ("name=%C3%A5s%C3%B6", vec![]),
        // No false match across parts or patients.
        ("family=ain", vec![]),
        ("given=vir", vec![]),
        ("family=vir&given=eer", vec![&c.virtala]),
        ("family=vir&given=mar", vec![&c.aino]),
        ("family=virtala&given=mar", vec![]),
        // Commas OR.
        ("family=virtala,hama", vec![&c.virtala, &c.hama]),
        // Longer than the 12 indexed characters: compared whole after decryption.
        ("family=Vanhatalo-Rauti", vec![&c.long1, &c.long2]),
        ("family=vanhatalo-rautia", vec![&c.long1]),
        ("family=vanhatalo-rautio", vec![&c.long2]),
        ("family=Vanhatalo-Rautiainen", vec![&c.long1]),
        ("name=vanhatalo-rautiainenx", vec![]),
        ("family=vanhatalo-rautia,virtala", vec![&c.long1, &c.virtala]),
        // :exact keeps the whole-name index (and takes short names).
        ("family:exact=Virtanen", vec![&c.aino]),
        ("family:exact=virt", vec![]),
        ("family:exact=Li", vec![&c.li]),
        ("given:exact=bo", vec![&c.li]),
    ]
}

async fn names_are_found_by_their_start(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    let s = inst.start();
    let c = register(&s).await;
    let desk = create_token(&inst.dir, "desk", "user/*.*");
    for (q, want) in expectations(&c) {
        let want: BTreeSet<String> = want.into_iter().cloned().collect();
        for token in [&inst.token, &desk] {
            let (st, b) = call(&s, Some(token), Method::GET, &format!("Patient?{q}"), None).await;
            assert_eq!(st, S::OK, "{q}: {b}");
            assert_eq!(ids(&b), want, "{q}");
            assert_eq!(b["total"], want.len(), "{q}");
        }
    }
    // Paging a search compared after decryption: the total counts the matches, the pages hold them all.
    let (st, b) = s.get_json("Patient?family=vanhatalo-rauti&_count=1").await;
    assert_eq!((st, b["total"].clone(), ids(&b).len()), (S::OK, json!(2), 1), "{b}");
    let next = b["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"].clone();
    let r = s.http.get(next.as_str().unwrap()).bearer_auth(&inst.token).send().await.unwrap();
    let b2: Value = r.json().await.unwrap();
    assert_eq!(b2["total"], 2, "{b2}");
    let both: BTreeSet<String> = ids(&b).union(&ids(&b2)).cloned().collect();
    assert_eq!(both, [c.long1.clone(), c.long2.clone()].into_iter().collect(), "two pages, each patient once");

    // Fewer than 3 characters: a 400 OperationOutcome that says so, whatever the parameter.
    for q in [
        "family=Li",
        "family=vi",
        "given=bo",
        "name=ab",
        "name=%C3%A4",
        "family=%20%20ab%20",
        "family=A%CC%88%CC%88",
        "family=vir,ab",
        "family=%00",
    ] {
        let (st, b) = s.get_json(&format!("Patient?{q}")).await;
        assert_eq!(st, S::BAD_REQUEST, "{q}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome", "{q}");
        let diag = b["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        assert!(diag.contains("at least 3 characters"), "{q}: {diag}");
        assert!(b.get("entry").is_none());
    }
    let (st, b) = s.get_json("Patient?name:exact=Virtanen").await;
    assert_eq!((st, b["resourceType"].clone()), (S::BAD_REQUEST, json!("OperationOutcome")), "{b}");

    // The wrong patient: another clinician's search finds nobody outside their care.
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");
    let (st, b) = call(&s, Some(&clin2), Method::GET, "Patient?name=vir", None).await;
    assert_eq!((st, b["total"].clone()), (S::OK, json!(0)), "{b}");
    let (st, b) = call(&s, Some(&clin2), Method::GET, "Patient?family=vanhatalo-rautia", None).await;
    assert_eq!((st, b["total"].clone()), (S::OK, json!(0)), "not even compared after decryption: {b}");
    // The wrong role and no session: refused as before.
    let audi = create_token(&inst.dir, "audi", "user/*.*");
    for token in [&audi, &inst.admin_token] {
        let (st, b) = call(&s, Some(token), Method::GET, "Patient?family=vir", None).await;
        assert_eq!(st, S::FORBIDDEN, "{b}");
    }
    for q in ["family=vir", "name=ab", "family=vanhatalo-rautia"] {
        assert_eq!(call(&s, None, Method::GET, &format!("Patient?{q}"), None).await.0, S::UNAUTHORIZED, "{q}");
    }

    // Hostile input: a clean 400 or an empty result, and nothing changes.
    let before = row_counts(&inst).await;
    let very_long = "%C3%A4".repeat(4000);
    let sqlish = [
        "family=%27%20OR%201%3D1%20--",
        "name=x%27)%3B%20DROP%20TABLE%20search_tokens%3B%20--",
        "given=%25%25%25",
        "name=___",
        "family=%00%00%00",
        "name=%F0%9F%92%A9%F0%9F%92%A9%F0%9F%92%A9",
        "family=%E2%80%AEvir",
        "family=vir*",
    ];
    for q in sqlish.iter().map(|q| q.to_string()).chain([format!("family={very_long}"), format!("name=vir{very_long}")])
    {
        let (st, b) = s.get_json(&format!("Patient?{q}")).await;
        assert_eq!(st, S::OK, "{}: {b}", &q[..q.len().min(40)]);
        assert_eq!(b["total"], 0, "{}", &q[..q.len().min(40)]);
    }
    for q in ["family:contains=vir", "family:missing=true", "name:text=vir", "family=vir&family=ab"] {
        let (st, b) = s.get_json(&format!("Patient?{q}")).await;
        assert_eq!((st, b["resourceType"].clone()), (S::BAD_REQUEST, json!("OperationOutcome")), "{q}: {b}");
    }
    assert_eq!(row_counts(&inst).await, before, "searches change nothing");

    // What a dump holds: ten prefix tokens per name part, whatever its length, and
    // none of them equal to an exact-value token.
    let mut conn = inst.db().await;
    let counts = sqlx::query(
        "SELECT id, COUNT(*) FROM search_tokens WHERE resource_type = 'Patient' AND param = 'name.prefix' GROUP BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let counts: std::collections::BTreeMap<String, i64> =
        counts.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1))).collect();
    assert_eq!(counts[&c.aino], 30, "Virtanen, Aino, Maria");
    for short in [&c.hama, &c.virtala, &c.li, &c.long1, &c.long2] {
        assert_eq!(counts[short], 20, "a family and a given name, whatever their lengths");
    }
    let shared: i64 = sqlx::query(
        "SELECT COUNT(*) FROM search_tokens a JOIN search_tokens b ON a.token = b.token AND a.param <> b.param",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get(0);
    assert_eq!(shared, 0, "prefix tokens never equal exact tokens");
    // Virtanen and Virtala share exactly their 3-, 4- and 5-letter prefixes ("vir", "virt", "virta").
    let q = if db == Db::Postgres {
        "SELECT COUNT(*) FROM search_tokens a JOIN search_tokens b ON a.token = b.token \
         WHERE a.param = 'name.prefix' AND a.id = $1 AND b.id = $2"
    } else {
        "SELECT COUNT(*) FROM search_tokens a JOIN search_tokens b ON a.token = b.token \
         WHERE a.param = 'name.prefix' AND a.id = ? AND b.id = ?"
    };
    let common: i64 = sqlx::query(q).bind(&c.aino).bind(&c.virtala).fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(common, 3, "what a reader of the dump learns: a common prefix of 5 letters");
    conn.close().await.unwrap();
    s.stop();
}
both_backends!(names_are_found_by_their_start);

/// The web UI's patient search box searches by the start of a name (family or
/// given); too short a name is said next to the box, the typed value kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_box_finds_a_patient_by_the_start_of_a_name() {
    let inst = Instance::new(Db::Sqlite).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    let s = inst.start();
    register(&s).await;
    let desk = Browser::sign_in(&s, "desk").await;
    let clin = Browser::sign_in(&s, "clin1").await;
    for b in [&desk, &clin] {
        let r = b.get("/patients?q=virt").await;
        assert_eq!(r.status(), S::OK);
        let page = r.text().await.unwrap();
        assert!(page.contains("Aino Maria Virtanen") && page.contains("Eero Virtala"), "{page}");
        assert!(!page.contains("Hämäläinen"));
        let page = b.get("/patients?q=%C3%85sa").await.text().await.unwrap();
        assert!(page.contains("Åsa Hämäläinen"), "a given name, accent and all: {page}");
        let page = b.get("/patients?q=hamal").await.text().await.unwrap();
        assert!(page.contains("Åsa Hämäläinen"), "without the accents: {page}");
        let page = b.get("/patients?q=Vanhatalo-Rautia").await.text().await.unwrap();
        assert!(page.contains("Vanhatalo-Rautiainen") && !page.contains("Vanhatalo-Rautio<"), "{page}");
        assert!(page.contains("at least 3 letters"), "the box says what it takes");
        // Too short: 400, the message next to the box, the value kept, nobody listed.
        let r = b.get("/patients?q=Vi").await;
        assert_eq!(r.status(), S::BAD_REQUEST);
        let page = r.text().await.unwrap();
        assert!(page.contains("id=\"q-error\"") && page.contains("Type at least 3 letters of the name."), "{page}");
        assert!(page.contains("value=\"Vi\"") && page.contains("aria-invalid=\"true\""), "{page}");
        assert!(!page.contains("Virtanen") && !page.contains("No patients found"), "{page}");
        // Hostile input: an empty list, the input shown escaped.
        let r = b.get("/patients?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
        assert_eq!(r.status(), S::OK);
        let page = r.text().await.unwrap();
        assert!(page.contains("No patients found") && !page.contains("<script>alert"), "{page}");
    }
    // The wrong role and no session.
    let audi = Browser::sign_in(&s, "audi").await;
    assert_eq!(audi.get("/patients?q=virt").await.status(), S::FORBIDDEN);
    let anon = Browser::anonymous(&s).await;
    let r = anon.get("/patients?q=virt").await;
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (S::SEE_OTHER, "/login"));
    s.stop();
}

/// How many re-index passes the audit log records.
async fn reindex_passes(conn: &mut sqlx::AnyConnection) -> usize {
    let rows = sqlx::query("SELECT entry FROM audit_log WHERE action = 'key-operation'").fetch_all(conn).await.unwrap();
    rows.iter()
        .map(|r| String::from_utf8_lossy(&r.get::<Vec<u8>, _>(0)).into_owned())
        .filter(|e| e.contains("search-index/name-prefixes"))
        .count()
}

/// An instance from before prefix search (its rows hold the old token set
/// only): opening it with its key indexes the names once, audited, and
/// opening it again changes nothing.
async fn opening_an_older_instance_indexes_its_names(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let c = register(&s).await;
    let practitioner =
        s.create_as(&inst.admin_token, &json!({"resourceType": "Practitioner", "name": [{"family": "Lääkäri"}]})).await;
    s.stop();
    let (_, _, indexed) = row_counts(&inst).await;
    // Back to what the old version wrote: no prefix tokens, no record of the pass.
    let mut conn = inst.db().await;
    sqlx::query("DELETE FROM search_tokens WHERE param = 'name.prefix'").execute(&mut conn).await.unwrap();
    sqlx::query("DELETE FROM instance_settings WHERE name = 'search_index_name_prefixes'")
        .execute(&mut conn)
        .await
        .unwrap();
    let (_, _, old) = row_counts(&inst).await;
    // Six patients (one with a second given name), the practitioner, the clinician's own: at least.
    assert!(indexed - old >= 6 * 20 + 10 + 10, "the prefix tokens are gone: {indexed} then {old}");
    assert_eq!(reindex_passes(&mut conn).await, 0);
    conn.close().await.unwrap();

    // Opened with its key: the names are indexed, the pass audited once.
    let s = inst.start();
    assert_eq!(row_counts(&inst).await.2, indexed, "every token back");
    let (st, b) = s.get_json("Patient?name=vir").await;
    assert_eq!((st, ids(&b)), (S::OK, [c.aino.clone(), c.virtala.clone()].into_iter().collect()), "{b}");
    let (_, b) = s.get_json("Patient?given=%C3%A5sa").await;
    assert_eq!(ids(&b), [c.hama.clone()].into_iter().collect());
    let (st, b) = call(&s, Some(&inst.admin_token), Method::GET, "Practitioner?family=laak", None).await;
    assert_eq!(ids(&b).into_iter().collect::<Vec<_>>(), [practitioner["id"].as_str().unwrap()], "{st}: {b}");
    // The exact index works as before.
    let (_, b) = s.get_json("Patient?family:exact=li").await;
    assert_eq!(ids(&b), [c.li.clone()].into_iter().collect());
    s.stop();
    let mut conn = inst.db().await;
    assert_eq!(reindex_passes(&mut conn).await, 1, "the pass is in the audit log");
    conn.close().await.unwrap();

    // Again: nothing to do, nothing audited, the same tokens.
    let s = inst.start();
    let (_, b) = s.get_json("Patient?family=hama").await;
    assert_eq!(ids(&b), [c.hama.clone()].into_iter().collect());
    s.stop();
    assert_eq!(row_counts(&inst).await.2, indexed);
    let mut conn = inst.db().await;
    assert_eq!(reindex_passes(&mut conn).await, 1, "done once");
    conn.close().await.unwrap();
}
both_backends!(opening_an_older_instance_indexes_its_names);
