//! SMART App Launch: registered apps, authorization codes (by hash, used
//! once, replay visible) and which app a token was given to.

use confidant_store::{ApiTokenRow, AppTokenRow, OAuthCodeRow, SmartAppRow};

use crate::harness::{Db, T0};
use crate::identity::user;

both_backends!(apps_codes_and_app_tokens);

fn app(id: &str, at: i64) -> SmartAppRow {
    SmartAppRow {
        client_id: id.into(),
        name: format!("app {id}"),
        redirect_uris: vec!["https://app.example/cb".into(), "http://127.0.0.1:9/cb?x=1".into()],
        scopes: "user/Patient.read".into(),
        created_at: at,
        created_by: "u1".into(),
    }
}

fn code(client_id: &str, expires_at: i64) -> OAuthCodeRow {
    OAuthCodeRow {
        client_id: client_id.into(),
        user_id: "u1".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "c".repeat(43),
        scopes: "user/Patient.read".into(),
        expires_at,
        used_at: None,
        token_id: None,
    }
}

async fn apps_codes_and_app_tokens(db: &Db) {
    let s = &db.store;
    alone!(s, insert_user(&user("u1", T0))).unwrap();
    alone!(s, insert_smart_app(&app("b2", T0 + 2))).unwrap();
    alone!(s, insert_smart_app(&app("a1", T0 + 1))).unwrap();
    assert!(alone!(s, insert_smart_app(&app("a1", T0 + 3))).is_err(), "a client id is unique");
    let apps = s.smart_apps().await.unwrap();
    assert_eq!(apps, vec![app("a1", T0 + 1), app("b2", T0 + 2)], "oldest first, redirect URIs as registered");
    assert_eq!(s.smart_app("b2").await.unwrap(), Some(app("b2", T0 + 2)));
    assert_eq!(s.smart_app("zz").await.unwrap(), None);

    s.insert_oauth_code(b"code hash 1", &code("a1", T0 + 60_000), T0).await.unwrap();
    assert_eq!(s.oauth_code(b"code hash 1").await.unwrap(), Some(code("a1", T0 + 60_000)));
    assert_eq!(s.oauth_code(b"code hash 9").await.unwrap(), None);
    // Used once: the second use, and a use after expiry, change nothing.
    assert!(!alone!(s, use_oauth_code(b"code hash 1", "t1", T0 + 60_000)).unwrap(), "expired");
    assert!(alone!(s, use_oauth_code(b"code hash 1", "t1", T0 + 10)).unwrap());
    assert!(!alone!(s, use_oauth_code(b"code hash 1", "t2", T0 + 11)).unwrap(), "used");
    let used = s.oauth_code(b"code hash 1").await.unwrap().unwrap();
    assert_eq!((used.used_at, used.token_id.as_deref()), (Some(T0 + 10), Some("t1")), "its token is known");
    // Codes expired a day ago are forgotten when the next is stored.
    s.insert_oauth_code(b"code hash 2", &code("a1", T0 + 90_000_000), T0 + 86_400_000 + 60_001).await.unwrap();
    assert_eq!(s.oauth_code(b"code hash 1").await.unwrap(), None);

    let token = ApiTokenRow {
        id: "t1".into(),
        label_sealed: b"sealed".to_vec(),
        user_id: Some("u1".into()),
        scopes: Some("user/Patient.read".into()),
        created_at: T0,
        expires_at: Some(T0 + 3_600_000),
        revoked_at: None,
    };
    let mut changes = s.audited().await.unwrap();
    changes.insert_api_token(&token, b"token hash 1").await.unwrap();
    changes.set_token_client("t1", "a1").await.unwrap();
    changes.commit(&[]).await.unwrap();
    let app_token = AppTokenRow {
        token_id: "t1".into(),
        user_id: Some("u1".into()),
        client_id: Some("a1".into()),
        revoked_at: None,
    };
    assert_eq!(s.app_token_by_hash(b"token hash 1").await.unwrap(), Some(app_token.clone()));
    assert_eq!(s.app_token_by_hash(b"token hash 9").await.unwrap(), None);
    assert!(alone!(s, revoke_api_token("t1", T0 + 5)).unwrap());
    let revoked = AppTokenRow { revoked_at: Some(T0 + 5), ..app_token };
    assert_eq!(s.app_token_by_hash(b"token hash 1").await.unwrap(), Some(revoked), "revoked, still found");
}
