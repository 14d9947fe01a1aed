//! Tampering with stored ciphertext is detected, never returned as garbage.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;

use crate::both_backends;
use crate::common::{Db, Instance, note, patient};

pub(crate) async fn set_body(inst: &Instance, id: &str, body: &[u8]) {
    let mut db = inst.db().await;
    let q = if inst.db == Db::Postgres {
        "UPDATE resource_versions SET body = $1 WHERE id = $2"
    } else {
        "UPDATE resource_versions SET body = ? WHERE id = ?"
    };
    let r = sqlx::query(q).bind(body).bind(id).execute(&mut db).await.unwrap();
    assert_eq!(r.rows_affected(), 1);
    db.close().await.unwrap();
}

async fn assert_integrity_error(s: &crate::common::Server, path: &str) {
    let r = s.get(path).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    let oo: Value = r.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("integrity"), "{oo}");
}

async fn tampered_ciphertext_is_refused(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let a = s.create(&patient("Virtanen", "Aino")).await;
    let b = s.create(&patient("Korhonen", "Eero")).await;
    let secret_a = "AINO-NOTE-TEXT-7f3a";
    let na = s.create(&note(a["id"].as_str().unwrap(), secret_a)).await;
    let nb = s.create(&note(b["id"].as_str().unwrap(), "eero note")).await;
    let na_id = na["id"].as_str().unwrap();
    let nb_id = nb["id"].as_str().unwrap();

    // 1. Flip one byte in the middle of A's note ciphertext.
    let original = inst.stored_body(na_id).await;
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    set_body(&inst, na_id, &flipped).await;
    assert_integrity_error(&s, &format!("DocumentReference/{na_id}")).await;
    // A search that meets the altered row leaves it out (and alerts) and answers
    // the rest: A has no other note (issue 14; pentest_records tests the rest).
    let (st, found) = s.get_json(&format!("DocumentReference?patient={}", a["id"].as_str().unwrap())).await;
    assert_eq!(st, StatusCode::OK, "{found}");
    assert!(found.get("entry").is_none() && found["total"] == 0, "{found}");
    set_body(&inst, na_id, &original).await;
    assert_eq!(s.get(&format!("DocumentReference/{na_id}")).await.status(), StatusCode::OK);

    // 2. Copy A's (intact) note ciphertext onto B's note row.
    let original_b = inst.stored_body(nb_id).await;
    set_body(&inst, nb_id, &original).await;
    assert_integrity_error(&s, &format!("DocumentReference/{nb_id}")).await;
    set_body(&inst, nb_id, &original_b).await;
    assert_eq!(s.get(&format!("DocumentReference/{nb_id}")).await.status(), StatusCode::OK);

    // 3. Truncate a ciphertext to less than a header.
    set_body(&inst, na_id, &original[..5]).await;
    assert_integrity_error(&s, &format!("DocumentReference/{na_id}")).await;

    // The log says what failed, by id, and holds no content.
    let out = s.output();
    assert!(out.contains("integrity"), "integrity failures are logged");
    assert!(out.contains(na_id));
    assert!(!out.contains(secret_a) && !out.contains("Virtanen"));
}
both_backends!(tampered_ciphertext_is_refused);
