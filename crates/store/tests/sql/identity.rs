//! Users, second factors, sessions, API tokens, login throttling, enrolment
//! codes, and the rows migration 9 seals.

use confidant_store::{ApiTokenRow, PasskeyRow, SessionRow, StoreError, ThrottleRow, UserRow};

use crate::harness::{Db, T0};

both_backends!(users_and_second_factors, sessions, api_tokens, login_throttling, enrolment_codes, sealing_old_rows);

pub fn user(id: &str, created_at: i64) -> UserRow {
    UserRow {
        id: id.into(),
        username_token: format!("token of {id}").into_bytes(),
        username_sealed: format!("sealed {id}").into_bytes(),
        role: "clinician".into(),
        password_hash: Some(format!("$argon2id$hash-of-{id}")),
        totp_sealed: None,
        totp_last_step: None,
        mfa_enrolled_at: None,
        practitioner_id: Some(format!("pr-{id}")),
        patient_sealed: None,
        patient_token: None,
        disabled_at: None,
        created_at,
    }
}

fn session(id: &str, user_id: &str, created_at: i64) -> SessionRow {
    SessionRow {
        id: id.into(),
        user_id: user_id.into(),
        kind: "cookie".into(),
        csrf_hash: Some(b"csrf".to_vec()),
        mfa_done: true,
        created_at,
        last_seen: created_at,
        expires_at: created_at + 1000,
        revoked_at: None,
    }
}

fn api_token(id: &str, user_id: &str, created_at: i64) -> ApiTokenRow {
    ApiTokenRow {
        id: id.into(),
        label_sealed: format!("sealed label of {id}").into_bytes(),
        user_id: Some(user_id.into()),
        scopes: Some("user/*.read".into()),
        created_at,
        expires_at: Some(created_at + 1000),
        revoked_at: None,
    }
}

async fn users_and_second_factors(db: &Db) {
    let s = &db.store;
    let (u1, u2) = (user("u1", T0 + 1), user("u2", T0));
    alone!(s, insert_user(&u1)).unwrap();
    alone!(s, insert_user(&u2)).unwrap();
    assert_eq!(s.user_by_id("u1").await.unwrap(), Some(u1.clone()));
    assert_eq!(s.user_by_username_token(b"token of u2").await.unwrap(), Some(u2.clone()));
    assert_eq!(s.user_by_username_token(b"token of nobody").await.unwrap(), None);
    let ids: Vec<_> = s.users().await.unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(ids, vec!["u2", "u1"], "oldest first");
    let same_id = alone!(s, insert_user(&UserRow { username_token: b"fresh".to_vec(), ..user("u1", T0) }));
    assert!(matches!(same_id, Err(StoreError::Conflict)), "{same_id:?}");
    let same_name = alone!(s, insert_user(&UserRow { username_token: b"token of u1".to_vec(), ..user("u3", T0) }));
    assert!(matches!(same_name, Err(StoreError::Conflict)), "usernames are unique: {same_name:?}");

    assert!(alone!(s, set_user_disabled("u1", Some(T0 + 5))).unwrap());
    assert_eq!(s.user_by_id("u1").await.unwrap().unwrap().disabled_at, Some(T0 + 5));
    assert!(alone!(s, set_user_disabled("u1", None)).unwrap());
    assert_eq!(s.user_by_id("u1").await.unwrap().unwrap().disabled_at, None);
    assert!(!alone!(s, set_user_disabled("nobody", Some(T0))).unwrap());
    assert!(s.set_password_hash("u1", "$argon2id$new").await.unwrap());
    assert!(!s.set_password_hash("nobody", "$argon2id$new").await.unwrap());
    assert_eq!(s.user_by_id("u1").await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$new"));

    // TOTP: enrol, then each step is accepted once and never an older one.
    assert!(alone!(s, set_totp("u1", Some(b"sealed totp"), Some(T0 + 10))).unwrap());
    assert!(s.advance_totp_step("u1", 100).await.unwrap());
    assert!(!s.advance_totp_step("u1", 100).await.unwrap(), "a replayed code");
    assert!(!s.advance_totp_step("u1", 99).await.unwrap());
    assert!(s.advance_totp_step("u1", 101).await.unwrap());
    let u = s.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!(
        (u.totp_sealed, u.mfa_enrolled_at, u.totp_last_step),
        (Some(b"sealed totp".to_vec()), Some(T0 + 10), Some(101))
    );

    assert!(!s.has_recovery_codes("u1").await.unwrap());
    alone!(s, replace_recovery_codes("u1", &[b"code a".to_vec(), b"code b".to_vec()])).unwrap();
    assert!(s.has_recovery_codes("u1").await.unwrap());
    assert!(!s.has_recovery_codes("u2").await.unwrap());
    assert!(s.use_recovery_code("u1", b"code a", T0).await.unwrap());
    assert!(!s.use_recovery_code("u1", b"code a", T0).await.unwrap(), "used up");
    assert!(!s.use_recovery_code("u2", b"code b", T0).await.unwrap(), "another user's code");
    assert!(s.has_recovery_codes("u1").await.unwrap(), "used codes still count as given");
    alone!(s, replace_recovery_codes("u1", &[b"code c".to_vec()])).unwrap();
    assert!(!s.use_recovery_code("u1", b"code b", T0).await.unwrap(), "replaced");
    assert!(s.use_recovery_code("u1", b"code c", T0).await.unwrap());

    let pk = |id: &str, user: &str, at: i64| PasskeyRow {
        id: id.into(),
        user_id: user.into(),
        label: format!("key {id}"),
        sealed: format!("sealed {id}").into_bytes(),
        created_at: at,
        last_used_at: None,
    };
    alone!(s, insert_passkey(&pk("k2", "u1", T0 + 2))).unwrap();
    alone!(s, insert_passkey(&pk("k1", "u1", T0 + 1))).unwrap();
    alone!(s, insert_passkey(&pk("k3", "u2", T0))).unwrap();
    assert!(matches!(alone!(s, insert_passkey(&pk("k1", "u2", T0))), Err(StoreError::Conflict)));
    s.passkey_used("k2", b"sealed k2, counter 2", T0 + 50).await.unwrap();
    let keys: Vec<_> = s
        .passkeys("u1")
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.label, p.sealed, p.created_at, p.last_used_at))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("k1".into(), "key k1".into(), b"sealed k1".to_vec(), T0 + 1, None),
            ("k2".into(), "key k2".into(), b"sealed k2, counter 2".to_vec(), T0 + 2, Some(T0 + 50)),
        ]
    );
    assert!(!alone!(s, delete_passkey("u2", "k1")).unwrap(), "not u2's");
    assert!(alone!(s, delete_passkey("u1", "k1")).unwrap());
    assert!(!alone!(s, delete_passkey("u1", "k1")).unwrap());
    assert_eq!(s.passkeys("u1").await.unwrap().len(), 1);

    // A second-factor reset clears the secret, the recovery codes and the passkeys.
    assert!(alone!(s, set_totp("u1", None, None)).unwrap());
    let u = s.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!((u.totp_sealed, u.mfa_enrolled_at, u.totp_last_step), (None, None, None));
    assert!(!s.has_recovery_codes("u1").await.unwrap());
    assert!(s.passkeys("u1").await.unwrap().is_empty());
    assert_eq!(s.passkeys("u2").await.unwrap().len(), 1, "other users keep theirs");
    assert!(!alone!(s, set_totp("nobody", None, None)).unwrap());
}

async fn sessions(db: &Db) {
    let s = &db.store;
    alone!(s, insert_user(&user("u1", T0))).unwrap();
    alone!(s, insert_user(&user("u2", T0))).unwrap();
    let a = session("s-a", "u1", T0);
    alone!(s, insert_session(&a, b"hash a")).unwrap();
    alone!(s, insert_session(&session("s-b", "u1", T0 + 10), b"hash b")).unwrap();
    alone!(s, insert_session(&session("s-c", "u2", T0 + 5), b"hash c")).unwrap();
    let dup = alone!(s, insert_session(&session("s-d", "u2", T0), b"hash a"));
    assert!(matches!(dup, Err(StoreError::Conflict)), "token hashes are unique: {dup:?}");
    assert_eq!(s.session_by_token_hash(b"hash a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.session_by_token_hash(b"hash z").await.unwrap(), None);

    // last_seen only moves forward.
    s.touch_session("s-a", T0 + 20).await.unwrap();
    s.touch_session("s-a", T0 + 15).await.unwrap();
    assert_eq!(s.session_by_token_hash(b"hash a").await.unwrap().unwrap().last_seen, T0 + 20);

    let live = |user: &'static str, now: i64| async move {
        s.live_sessions(user, now).await.unwrap().into_iter().map(|x| x.id).collect::<Vec<_>>()
    };
    assert_eq!(live("u1", T0 + 20).await, vec!["s-b", "s-a"], "newest first");
    assert_eq!(live("u1", T0 + 1000).await, vec!["s-b"], "s-a expired");
    let mut last = s.last_logins().await.unwrap();
    last.sort();
    assert_eq!(last, vec![("u1".into(), T0 + 10), ("u2".into(), T0 + 5)]);

    assert!(!alone!(s, revoke_session("s-a", Some("u2"), T0 + 30)).unwrap(), "not u2's session");
    assert!(alone!(s, revoke_session("s-a", Some("u1"), T0 + 30)).unwrap());
    assert!(!alone!(s, revoke_session("s-a", None, T0 + 31)).unwrap(), "revoked once");
    assert_eq!(s.session_by_token_hash(b"hash a").await.unwrap().unwrap().revoked_at, Some(T0 + 30));
    assert_eq!(live("u1", T0 + 20).await, vec!["s-b"]);

    // Every live credential of a user at once: sessions and API tokens.
    alone!(s, insert_api_token(&api_token("t1", "u1", T0), b"token hash 1")).unwrap();
    alone!(s, insert_api_token(&api_token("t2", "u2", T0), b"token hash 2")).unwrap();
    assert_eq!(alone!(s, revoke_user_credentials("u1", T0 + 40)).unwrap(), 2, "s-b and t1");
    assert_eq!(alone!(s, revoke_user_credentials("u1", T0 + 41)).unwrap(), 0);
    assert!(live("u1", T0 + 20).await.is_empty());
    assert!(s.api_token_by_hash(b"token hash 1").await.unwrap().is_none());
    assert_eq!(live("u2", T0 + 20).await, vec!["s-c"]);
    assert!(s.api_token_by_hash(b"token hash 2").await.unwrap().is_some());
}

async fn api_tokens(db: &Db) {
    let s = &db.store;
    let u1 = user("u1", T0);
    alone!(s, insert_user(&u1)).unwrap();
    alone!(s, insert_api_token(&api_token("t2", "u1", T0 + 2), b"hash 2")).unwrap();
    alone!(s, insert_api_token(&api_token("t1", "u1", T0 + 1), b"hash 1")).unwrap();
    let dup = alone!(s, insert_api_token(&api_token("t3", "u1", T0), b"hash 1"));
    assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");
    let (auth, owner) = s.api_token_by_hash(b"hash 1").await.unwrap().unwrap();
    assert_eq!(
        (auth.id.as_str(), auth.user_id.as_deref(), auth.scopes.as_deref(), auth.expires_at),
        ("t1", Some("u1"), Some("user/*.read"), Some(T0 + 1001))
    );
    assert_eq!(owner, u1);
    assert!(s.api_token_by_hash(b"hash 9").await.unwrap().is_none());
    let listed: Vec<_> =
        s.api_tokens().await.unwrap().into_iter().map(|t| (t.id, t.label_sealed, t.revoked_at)).collect();
    assert_eq!(
        listed,
        vec![("t1".into(), b"sealed label of t1".to_vec(), None), ("t2".into(), b"sealed label of t2".to_vec(), None)]
    );
    assert!(alone!(s, revoke_api_token("t1", T0 + 9)).unwrap());
    assert!(!alone!(s, revoke_api_token("t1", T0 + 10)).unwrap());
    assert!(!alone!(s, revoke_api_token("t9", T0 + 10)).unwrap());
    assert!(s.api_token_by_hash(b"hash 1").await.unwrap().is_none(), "a revoked token grants nothing");
    assert_eq!(s.api_tokens().await.unwrap()[0].revoked_at, Some(T0 + 9), "but is still listed");
}

async fn login_throttling(db: &Db) {
    let s = &db.store;
    let key = b"throttle: account u1";
    assert_eq!(s.throttle(key).await.unwrap(), None);
    // Window 100 ms, lock from the 3rd attempt for 50 ms.
    let count = |now: i64| s.count_login_attempt(key, now, 100, 3, 50);
    assert_eq!(count(T0).await.unwrap(), ThrottleRow { failures: 1, window_start: T0, locked_until: None });
    assert_eq!(count(T0 + 10).await.unwrap(), ThrottleRow { failures: 2, window_start: T0, locked_until: None });
    assert_eq!(
        count(T0 + 20).await.unwrap(),
        ThrottleRow { failures: 3, window_start: T0, locked_until: Some(T0 + 70) }
    );
    // Further attempts while locked do not extend the lock.
    assert_eq!(
        count(T0 + 30).await.unwrap(),
        ThrottleRow { failures: 4, window_start: T0, locked_until: Some(T0 + 70) }
    );
    assert_eq!(
        s.throttle(key).await.unwrap(),
        Some(ThrottleRow { failures: 4, window_start: T0, locked_until: Some(T0 + 70) })
    );
    // Once the lock has lapsed, counting starts again.
    assert_eq!(count(T0 + 70).await.unwrap(), ThrottleRow { failures: 1, window_start: T0 + 70, locked_until: None });
    // And once the window has passed.
    assert_eq!(count(T0 + 80).await.unwrap().failures, 2);
    assert_eq!(count(T0 + 171).await.unwrap(), ThrottleRow { failures: 1, window_start: T0 + 171, locked_until: None });
    // A maximum of one locks at the first attempt.
    let once = s.count_login_attempt(b"other", T0, 100, 1, 50).await.unwrap();
    assert_eq!(once, ThrottleRow { failures: 1, window_start: T0, locked_until: Some(T0 + 50) });

    let t = ThrottleRow { failures: 9, window_start: T0 - 5, locked_until: Some(T0 + 500) };
    s.put_throttle(key, t).await.unwrap();
    assert_eq!(s.throttle(key).await.unwrap(), Some(t));
    let t2 = ThrottleRow { failures: 0, window_start: T0, locked_until: None };
    s.put_throttle(key, t2).await.unwrap();
    assert_eq!(s.throttle(key).await.unwrap(), Some(t2), "put replaces");
    assert!(alone!(s, clear_throttle(key)).unwrap());
    assert!(!alone!(s, clear_throttle(key)).unwrap());
    assert_eq!(s.throttle(key).await.unwrap(), None);
    assert!(s.throttle(b"other").await.unwrap().is_some());
}

async fn enrolment_codes(db: &Db) {
    let s = &db.store;
    alone!(s, insert_enrolment_code(b"code 1", "clinician", T0 + 100)).unwrap();
    alone!(s, insert_enrolment_code(b"code 2", "admin", T0 + 100)).unwrap();
    assert!(matches!(alone!(s, insert_enrolment_code(b"code 1", "admin", T0)), Err(StoreError::Conflict)));
    assert!(s.enrolment_code_role(b"code 1", T0).await.unwrap().is_some());
    assert!(s.enrolment_code_role(b"code 1", T0).await.unwrap().is_some(), "checking does not use it");
    assert!(s.enrolment_code_role(b"code 1", T0 + 100).await.unwrap().is_none(), "expired");
    assert!(s.enrolment_code_role(b"code 9", T0).await.unwrap().is_none());
    assert_eq!(alone!(s, consume_enrolment_code(b"code 1", T0 + 100)).unwrap(), None, "expired");
    assert_eq!(alone!(s, consume_enrolment_code(b"code 1", T0)).unwrap().as_deref(), Some("clinician"));
    assert_eq!(alone!(s, consume_enrolment_code(b"code 1", T0)).unwrap(), None, "used once");
    assert!(s.enrolment_code_role(b"code 1", T0).await.unwrap().is_none());
    assert_eq!(alone!(s, consume_enrolment_code(b"code 2", T0)).unwrap().as_deref(), Some("admin"));
}

async fn sealing_old_rows(db: &Db) {
    let s = &db.store;
    alone!(s, insert_user(&user("u1", T0))).unwrap();
    alone!(s, insert_user(&user("u2", T0))).unwrap();
    assert!(s.plaintext_patient_links().await.unwrap().is_empty());
    assert!(s.plaintext_token_labels().await.unwrap().is_empty());
    // Rows as a build before migration 9 wrote them.
    db.raw(
        "UPDATE users SET patient_id = 'p1' WHERE id = 'u2'; \
         INSERT INTO api_tokens (id, token_hash, label, created_at) VALUES ('t-old', 'old hash', 'old label', 1)",
    )
    .await;
    assert_eq!(s.plaintext_patient_links().await.unwrap(), vec![("u2".into(), "p1".into())]);
    assert_eq!(s.plaintext_token_labels().await.unwrap(), vec![("t-old".into(), "old label".into())]);
    assert!(s.api_tokens().await.unwrap().is_empty(), "an unsealed token is not listed");
    s.seal_patient_link("u2", b"sealed p1", b"token p1").await.unwrap();
    s.seal_token_label("t-old", b"sealed old label").await.unwrap();
    assert!(s.plaintext_patient_links().await.unwrap().is_empty());
    assert!(s.plaintext_token_labels().await.unwrap().is_empty());
    let u2 = s.user_by_id("u2").await.unwrap().unwrap();
    assert_eq!((u2.patient_sealed, u2.patient_token), (Some(b"sealed p1".to_vec()), Some(b"token p1".to_vec())));
    let listed: Vec<_> = s.api_tokens().await.unwrap().into_iter().map(|t| (t.id, t.label_sealed)).collect();
    assert_eq!(listed, vec![("t-old".into(), b"sealed old label".to_vec())]);
}
