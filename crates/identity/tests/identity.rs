//! The identity service with a controlled clock, on a real SQLite store:
//! lockout and its end, session timeouts, TOTP replay, recovery codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use confidant_identity::{Identity, IdentityError, Services, SessionKind, Settings};
use confidant_policy::Role;
use confidant_records::{Clock, Records};
use confidant_store::Store;
use confidant_vault::{KeyFile, Vault, totp};

#[derive(Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn advance_minutes(&self, m: i64) {
        self.0.fetch_add(m * 60_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const PASSWORD: &str = "correct horse battery staple 7";

pub struct Fixture {
    _tmp: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub records: Arc<Records>,
    pub identity: Identity,
}

pub async fn fixture() -> Fixture {
    fixture_with(Settings::default()).await
}

pub async fn fixture_with(settings: Settings) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", tmp.path().join("t.db").display()), true).await.unwrap();
    store.migrate().await.unwrap();
    let vault = Vault::new(Arc::new(KeyFile::generate("test").unwrap()));
    // Starts at a realistic time: TOTP steps count from the Unix epoch.
    let clock = Arc::new(ManualClock(AtomicI64::new(1_790_000_000_000)));
    confidant_records::initialise(&store, &vault, "test", clock.now_millis()).await.unwrap();
    let records = Arc::new(Records::open(store, vault, clock.clone()).await.unwrap());
    let identity = Identity::new(services(&records), settings);
    Fixture { _tmp: tmp, clock, records, identity }
}

/// Identity on the same store, keys, audit log and clock as `records`.
fn services(records: &Records) -> Services {
    Services {
        store: records.store().clone(),
        keyring: records.keyring().clone(),
        auditor: records.auditor().clone(),
        clock: records.clock().clone(),
        subscriber: records.subscriber().cloned(),
    }
}

fn now_secs(f: &Fixture) -> u64 {
    u64::try_from(f.clock.now_millis() / 1000).unwrap()
}

fn secret_of(base32: &str) -> totp::TotpSecret {
    totp::TotpSecret::from_bytes(&data_encoding::BASE32_NOPAD.decode(base32.as_bytes()).unwrap())
}

/// Add a user with TOTP enrolled; returns (user id, TOTP secret).
async fn staff(f: &Fixture, username: &str, role: Role) -> (String, totp::TotpSecret) {
    let id = f.identity.add_user(username, role, PASSWORD, None, None).await.unwrap();
    let e = f.identity.totp_begin(&id).await.unwrap();
    let secret = secret_of(&e.secret_base32);
    f.identity.totp_confirm(&id, None, &totp::code_at(&secret, now_secs(f))).await.unwrap();
    (id, secret)
}

/// A fresh code: one minute later, so that no step is reused.
fn next_code(f: &Fixture, secret: &totp::TotpSecret) -> String {
    f.clock.advance_minutes(1);
    totp::code_at(secret, now_secs(f))
}

#[tokio::test]
async fn brute_force_locks_the_account_until_the_lock_ends() {
    let f = fixture().await;
    let (_, secret) = staff(&f, "maria", Role::Admin).await;
    let mut throttled = 0;
    for i in 0..1000 {
        match f
            .identity
            .login("maria", &format!("wrong password {i}"), Some("000000"), "10.0.0.1", SessionKind::Bearer)
            .await
        {
            Err(IdentityError::BadCredentials) => assert!(i < 5, "attempt {i} was not throttled"),
            Err(IdentityError::Throttled { .. }) => throttled += 1,
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    assert_eq!(throttled, 995, "after 5 failures every attempt is throttled");
    // The right password and code are refused while the lock lasts...
    let code = next_code(&f, &secret);
    assert!(matches!(
        f.identity.login("maria", PASSWORD, Some(&code), "10.0.0.2", SessionKind::Bearer).await,
        Err(IdentityError::Throttled { .. })
    ));
    // ...and accepted once it ends.
    f.clock.advance_minutes(15);
    let code = next_code(&f, &secret);
    let login = f.identity.login("maria", PASSWORD, Some(&code), "10.0.0.2", SessionKind::Bearer).await.unwrap();
    assert!(!login.mfa_enrolment_required);
    // An admin can lift a lock early.
    for _ in 0..5 {
        let _ = f.identity.login("maria", "nope nope nope", None, "10.0.0.3", SessionKind::Bearer).await;
    }
    let code = next_code(&f, &secret);
    assert!(matches!(
        f.identity.login("maria", PASSWORD, Some(&code), "10.0.0.3", SessionKind::Bearer).await,
        Err(IdentityError::Throttled { .. })
    ));
    assert!(f.identity.unlock("maria").await.unwrap());
    f.identity.login("maria", PASSWORD, Some(&code), "10.0.0.3", SessionKind::Bearer).await.unwrap();
}

#[tokio::test]
async fn a_source_address_is_throttled_across_accounts() {
    let f = fixture().await;
    for i in 0..50 {
        let r = f.identity.login(&format!("nobody{i}"), "wrong password", None, "192.0.2.7", SessionKind::Bearer).await;
        assert!(matches!(r, Err(IdentityError::BadCredentials)), "{i}: {r:?}");
    }
    let r = f.identity.login("somebody", "wrong password", None, "192.0.2.7", SessionKind::Bearer).await;
    assert!(matches!(r, Err(IdentityError::Throttled { .. })));
    let r = f.identity.login("somebody", "wrong password", None, "192.0.2.8", SessionKind::Bearer).await;
    assert!(matches!(r, Err(IdentityError::BadCredentials)));
}

#[tokio::test]
async fn unknown_user_and_wrong_password_or_code_are_indistinguishable() {
    let f = fixture().await;
    staff(&f, "juhani", Role::Reception).await;
    let a = f.identity.login("juhani", "wrong password!", None, "a", SessionKind::Bearer).await.unwrap_err();
    let b = f.identity.login("nosuchuser", "wrong password!", None, "b", SessionKind::Bearer).await.unwrap_err();
    let c = f.identity.login("juhani", PASSWORD, Some("000000"), "c", SessionKind::Bearer).await.unwrap_err();
    assert!(matches!(a, IdentityError::BadCredentials));
    assert_eq!(a.to_string(), b.to_string());
    assert_eq!(a.to_string(), c.to_string());
}

#[tokio::test]
async fn totp_codes_are_single_use_and_recovery_codes_work_once() {
    let f = fixture().await;
    assert!(
        f.identity.add_user("kaisa", Role::Clinician, PASSWORD, None, None).await.is_err(),
        "a clinician must be linked to a Practitioner"
    );
    let id = f.identity.add_user("kaisa", Role::Auditor, PASSWORD, None, None).await.unwrap();
    // Before enrolment the password alone gives a session limited to enrolment.
    let first = f.identity.login("kaisa", PASSWORD, None, "x", SessionKind::Cookie).await.unwrap();
    assert!(first.mfa_enrolment_required);
    let auth = f.identity.authenticate(&first.token).await.unwrap();
    assert!(!auth.session.as_ref().unwrap().mfa_done);
    let e = f.identity.totp_begin(&id).await.unwrap();
    assert!(e.otpauth_uri.starts_with("otpauth://totp/") && e.qr_svg.contains("<svg"));
    let secret = secret_of(&e.secret_base32);
    assert!(f.identity.totp_confirm(&id, auth.session.as_ref(), "abcdef").await.is_err());
    let done =
        f.identity.totp_confirm(&id, auth.session.as_ref(), &totp::code_at(&secret, now_secs(&f))).await.unwrap();
    let recovery = done.recovery_codes;
    assert_eq!(recovery.len(), 10);
    // The enrolment session's token has ended; a new one carries on, second factor done.
    assert!(matches!(f.identity.authenticate(&first.token).await, Err(IdentityError::Unauthenticated)));
    let renewed = done.session.unwrap();
    assert_ne!(renewed.token, first.token);
    assert_eq!(renewed.kind, SessionKind::Cookie);
    assert!(renewed.csrf_token.is_some() && renewed.csrf_token != first.csrf_token);
    assert!(f.identity.authenticate(&renewed.token).await.unwrap().session.unwrap().mfa_done);
    // The password alone no longer logs in.
    assert!(matches!(
        f.identity.login("kaisa", PASSWORD, None, "x", SessionKind::Bearer).await,
        Err(IdentityError::BadCredentials)
    ));
    // A code works once.
    let code = next_code(&f, &secret);
    f.identity.login("kaisa", PASSWORD, Some(&code), "x", SessionKind::Bearer).await.unwrap();
    assert!(matches!(
        f.identity.login("kaisa", PASSWORD, Some(&code), "x", SessionKind::Bearer).await,
        Err(IdentityError::BadCredentials)
    ));
    // A recovery code works once, typed loosely.
    let loose = recovery[0].to_lowercase().replace('-', " ");
    f.identity.login("kaisa", PASSWORD, Some(&loose), "x", SessionKind::Bearer).await.unwrap();
    assert!(matches!(
        f.identity.login("kaisa", PASSWORD, Some(&recovery[0]), "x", SessionKind::Bearer).await,
        Err(IdentityError::BadCredentials)
    ));
    // An admin's reset removes the factor: the next login must enrol again,
    // with the one-time code the reset gave the admin.
    let one_time = f.identity.reset_mfa("kaisa").await.unwrap();
    let with_code = f.identity.login("kaisa", PASSWORD, Some(&one_time), "x", SessionKind::Bearer).await.unwrap();
    assert!(with_code.mfa_enrolment_required);
}

/// Issue 14: after an admin's reset, the password alone no longer opens an
/// enrolment session (someone who knows it would enrol their own factor).
#[tokio::test]
async fn after_a_reset_enrolment_needs_the_admins_one_time_code() {
    let f = fixture().await;
    let (id, secret) = staff(&f, "ilona", Role::Auditor).await;
    let code = next_code(&f, &secret);
    let before = f.identity.login("ilona", PASSWORD, Some(&code), "x", SessionKind::Bearer).await.unwrap();
    let one_time = f.identity.reset_mfa("ilona").await.unwrap();
    assert!(matches!(f.identity.authenticate(&before.token).await, Err(IdentityError::Unauthenticated)));
    for wrong in [None, Some("000000"), Some("AAAA-BBBB-CCCC"), Some("")] {
        let r = f.identity.login("ilona", PASSWORD, wrong, "x", SessionKind::Bearer).await;
        assert!(matches!(r, Err(IdentityError::BadCredentials)), "{wrong:?}: {r:?}");
    }
    // The right code, typed loosely, with the password: an enrolment session.
    let loose = one_time.to_lowercase().replace('-', " ");
    let login = f.identity.login("ilona", PASSWORD, Some(&loose), "x", SessionKind::Cookie).await.unwrap();
    assert!(login.mfa_enrolment_required);
    // It works once: a second sign-in with it, or with the password alone, is refused.
    let again = f.identity.login("ilona", PASSWORD, Some(&one_time), "x", SessionKind::Cookie).await;
    assert!(matches!(again, Err(IdentityError::BadCredentials)));
    let alone = f.identity.login("ilona", PASSWORD, None, "x", SessionKind::Cookie).await;
    assert!(matches!(alone, Err(IdentityError::BadCredentials)));
    // The enrolment session enrols a new factor, and the account is whole again.
    let auth = f.identity.authenticate(&login.token).await.unwrap();
    let e = f.identity.totp_begin(&id).await.unwrap();
    let secret = secret_of(&e.secret_base32);
    let done =
        f.identity.totp_confirm(&id, auth.session.as_ref(), &totp::code_at(&secret, now_secs(&f))).await.unwrap();
    assert!(f.identity.authenticate(&done.session.unwrap().token).await.unwrap().session.unwrap().mfa_done);
    let code = next_code(&f, &secret);
    f.identity.login("ilona", PASSWORD, Some(&code), "x", SessionKind::Bearer).await.unwrap();
    // A user who never enrolled still signs in the first time with the password alone.
    f.identity.add_user("first-timer", Role::Auditor, PASSWORD, None, None).await.unwrap();
    let first = f.identity.login("first-timer", PASSWORD, None, "x", SessionKind::Cookie).await.unwrap();
    assert!(first.mfa_enrolment_required);
}

/// Issue 14: a bearer session ends when idle, as a cookie session does.
#[tokio::test]
async fn bearer_sessions_end_when_idle() {
    let f = fixture_with(Settings { bearer_lifetime_ms: 12 * 60 * 60_000, ..Settings::default() }).await;
    let (_, secret) = staff(&f, "oskari", Role::Reception).await;
    let code = next_code(&f, &secret);
    let b = f.identity.login("oskari", PASSWORD, Some(&code), "x", SessionKind::Bearer).await.unwrap();
    // Activity keeps it alive; 31 idle minutes end it (well within its lifetime).
    f.clock.advance_minutes(20);
    f.identity.authenticate(&b.token).await.unwrap();
    f.clock.advance_minutes(20);
    f.identity.authenticate(&b.token).await.unwrap();
    f.clock.advance_minutes(31);
    assert!(matches!(f.identity.authenticate(&b.token).await, Err(IdentityError::Unauthenticated)));
}

#[tokio::test]
async fn sessions_end_by_idle_timeout_lifetime_and_disabling() {
    let f = fixture().await;
    let (_, secret) = staff(&f, "eero", Role::Reception).await;
    let code = next_code(&f, &secret);
    let s = f.identity.login("eero", PASSWORD, Some(&code), "x", SessionKind::Cookie).await.unwrap();
    assert!(s.csrf_token.is_some());
    // Activity keeps it alive; 31 idle minutes end it.
    f.clock.advance_minutes(20);
    f.identity.authenticate(&s.token).await.unwrap();
    f.clock.advance_minutes(20);
    f.identity.authenticate(&s.token).await.unwrap();
    f.clock.advance_minutes(31);
    assert!(matches!(f.identity.authenticate(&s.token).await, Err(IdentityError::Unauthenticated)));
    // The absolute lifetime (12 h) ends even an active session.
    let code = next_code(&f, &secret);
    let s = f.identity.login("eero", PASSWORD, Some(&code), "x", SessionKind::Cookie).await.unwrap();
    for _ in 0..35 {
        f.clock.advance_minutes(20);
        f.identity.authenticate(&s.token).await.unwrap();
    }
    f.clock.advance_minutes(20);
    assert!(matches!(f.identity.authenticate(&s.token).await, Err(IdentityError::Unauthenticated)));
    // Bearer sessions last an hour.
    let code = next_code(&f, &secret);
    let b = f.identity.login("eero", PASSWORD, Some(&code), "x", SessionKind::Bearer).await.unwrap();
    assert!(b.csrf_token.is_none());
    f.clock.advance_minutes(61);
    assert!(matches!(f.identity.authenticate(&b.token).await, Err(IdentityError::Unauthenticated)));
    // Disabling ends sessions at once, and the account cannot log in.
    let code = next_code(&f, &secret);
    let s = f.identity.login("eero", PASSWORD, Some(&code), "x", SessionKind::Bearer).await.unwrap();
    f.identity.authenticate(&s.token).await.unwrap();
    f.identity.disable("eero").await.unwrap();
    assert!(matches!(f.identity.authenticate(&s.token).await, Err(IdentityError::Unauthenticated)));
    let code = next_code(&f, &secret);
    assert!(matches!(
        f.identity.login("eero", PASSWORD, Some(&code), "x", SessionKind::Bearer).await,
        Err(IdentityError::BadCredentials)
    ));
}

#[tokio::test]
async fn passwords_follow_the_policy_and_are_never_stored_in_clear() {
    let f = fixture().await;
    for bad in ["short", "qwerty123456", "my name is reception1 ok"] {
        assert!(matches!(
            f.identity.add_user("reception1", Role::Reception, bad, None, None).await,
            Err(IdentityError::Invalid(_))
        ));
    }
    f.identity.add_user("reception1", Role::Reception, PASSWORD, None, None).await.unwrap();
    assert!(matches!(
        f.identity.add_user("RECEPTION1", Role::Reception, PASSWORD, None, None).await,
        Err(IdentityError::Conflict(_))
    ));
    let users = f.records.store().users().await.unwrap();
    assert_eq!(users.len(), 1);
    let u = &users[0];
    assert!(u.password_hash.as_deref().unwrap().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(!u.username_sealed.windows(10).any(|w| w == b"reception1"));
    assert_eq!(f.identity.list_users().await.unwrap()[0].username, "reception1");
}

#[tokio::test]
async fn api_tokens_are_scoped_expire_and_die_with_their_user() {
    let f = fixture().await;
    staff(&f, "admin1", Role::Admin).await;
    assert!(f.identity.create_api_token("admin1", "x", "user/Condition.read", 60_000).await.is_err());
    assert!(f.identity.create_api_token("admin1", "x", "user/*.read", 0).await.is_err());
    let (_, token) = f.identity.create_api_token("admin1", "x", "user/Practitioner.read", 60 * 60_000).await.unwrap();
    let auth = f.identity.authenticate(&token).await.unwrap();
    assert_eq!(auth.principal.role, Role::Admin);
    assert_eq!(auth.principal.scopes.unwrap().to_string(), "user/Practitioner.read");
    f.clock.advance_minutes(61);
    assert!(matches!(f.identity.authenticate(&token).await, Err(IdentityError::Unauthenticated)));
    let (_, token) = f.identity.create_api_token("admin1", "x", "user/*.*", 60 * 60_000).await.unwrap();
    // Both tokens (the expired one too) are revoked.
    assert_eq!(f.identity.revoke_all("admin1").await.unwrap(), 2);
    assert!(matches!(f.identity.authenticate(&token).await, Err(IdentityError::Unauthenticated)));
    assert!(matches!(f.identity.authenticate("cnf_forged").await, Err(IdentityError::Unauthenticated)));
    assert!(matches!(f.identity.authenticate("garbage").await, Err(IdentityError::Unauthenticated)));
}

#[tokio::test]
async fn break_glass_needs_a_reason_and_expires() {
    use confidant_fhir::ResourceType;
    use confidant_policy::Principal;
    use serde_json::json;
    let f = fixture().await;
    let admin = Principal {
        user_id: "console".into(),
        role: Role::Admin,
        practitioner_id: None,
        patient_id: None,
        scopes: None,
        source: None,
        credential: None,
        training: Default::default(),
    };
    let mut clinicians = Vec::new();
    for name in ["One", "Two"] {
        let pr = f
            .records
            .create(
                &admin,
                ResourceType::Practitioner,
                json!({"resourceType": "Practitioner", "name": [{"family": name}]}),
            )
            .await
            .unwrap();
        clinicians.push(Principal {
            user_id: format!("user-{name}"),
            role: Role::Clinician,
            practitioner_id: Some(pr.id),
            patient_id: None,
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        });
    }
    let patient = f
        .records
        .create(
            &clinicians[0],
            ResourceType::Patient,
            json!({"resourceType": "Patient", "name": [{"family": "Laine"}]}),
        )
        .await
        .unwrap();
    let other = &clinicians[1];
    assert!(f.records.read(other, ResourceType::Patient, &patient.id).await.is_err());
    for reason in ["", "   ", "too short"] {
        assert!(f.records.break_glass(other, &patient.id, reason, 60).await.is_err(), "{reason:?}");
    }
    assert!(f.records.break_glass(&admin, &patient.id, "an admin may never break the glass", 60).await.is_err());
    let expires = f.records.break_glass(other, &patient.id, "on call: patient in acute crisis", 60).await.unwrap();
    assert_eq!(expires, f.clock.now_millis() + 60 * 60_000);
    f.records.read(other, ResourceType::Patient, &patient.id).await.unwrap();
    f.clock.advance_minutes(59);
    f.records.read(other, ResourceType::Patient, &patient.id).await.unwrap();
    f.clock.advance_minutes(2);
    assert!(f.records.read(other, ResourceType::Patient, &patient.id).await.is_err(), "break-glass expired");
    // The author's access never lapsed.
    f.records.read(&clinicians[0], ResourceType::Patient, &patient.id).await.unwrap();
}

#[tokio::test]
async fn concurrent_guesses_cannot_slip_past_the_limit() {
    let f = fixture().await;
    staff(&f, "aino", Role::Reception).await;
    let identity = Arc::new(Identity::new(services(&f.records), Settings::default()));
    let mut tasks = Vec::new();
    for i in 0..30 {
        let identity = identity.clone();
        tasks.push(tokio::spawn(async move {
            identity.login("aino", &format!("guess number {i}"), Some("000000"), "10.1.1.1", SessionKind::Bearer).await
        }));
    }
    let mut checked = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(IdentityError::BadCredentials) => checked += 1,
            Err(IdentityError::Throttled { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(checked <= 5, "{checked} passwords were checked; the limit is 5");
}

#[tokio::test]
async fn a_failed_enrolment_does_not_use_up_the_code() {
    let f = fixture().await;
    let code = f.identity.create_enrolment_code(Role::Admin).await.unwrap();
    assert!(matches!(f.identity.enrol(&code, "boss", "qwerty123456").await, Err(IdentityError::Invalid(_))));
    f.identity.enrol(&code, "boss", PASSWORD).await.unwrap();
    assert!(matches!(f.identity.enrol(&code, "boss2", PASSWORD).await, Err(IdentityError::Forbidden(_))));
}

/// Passkey ceremonies (without an authenticator here: the browser test has
/// Chromium's): the options name our site, a ceremony is used once and expires,
/// answers that are not an authenticator's are refused, and an admin's reset
/// of the second factor removes passkeys too.
#[tokio::test]
async fn passkey_ceremonies_expire_are_used_once_and_a_reset_removes_passkeys() {
    let off = fixture().await;
    assert!(!off.identity.passkeys_enabled(), "no public URL: passkeys are off");
    let f = fixture_with(Settings { passkey_site: Some("http://localhost".into()), ..Settings::default() }).await;
    assert!(f.identity.passkeys_enabled());
    let (kaisa, secret) = staff(&f, "kaisa", Role::Reception).await;
    let code = next_code(&f, &secret);
    let login = f.identity.login("kaisa", PASSWORD, Some(&code), "x", SessionKind::Cookie).await.unwrap();
    let auth = f.identity.authenticate(&login.token).await.unwrap();

    // Adding a passkey needs a fresh code from the app: a stolen session alone adds nothing.
    let wrong_code = f.identity.passkey_register_begin(&auth, "000000").await;
    assert!(matches!(wrong_code, Err(IdentityError::Forbidden(m)) if m.contains("wrong authenticator code")));
    let (handle, options) = f.identity.passkey_register_begin(&auth, &next_code(&f, &secret)).await.unwrap();
    assert_eq!(options["publicKey"]["authenticatorSelection"]["residentKey"], "required", "discoverable");
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(options["publicKey"]["user"]["name"], "kaisa");
    assert!(options["publicKey"]["challenge"].as_str().is_some_and(|c| c.len() >= 43), "a 256-bit challenge");
    assert_eq!(options["publicKey"]["authenticatorSelection"]["userVerification"], "required");
    f.clock.advance_minutes(6);
    let late = f.identity.passkey_register_finish(&auth, &handle, &serde_json::json!({}), "laptop").await;
    assert!(matches!(late, Err(IdentityError::Invalid(m)) if m.contains("expired")), "a ceremony lasts five minutes");

    let auth = f.identity.authenticate(&login.token).await.unwrap();
    let (handle, _) = f.identity.passkey_register_begin(&auth, &next_code(&f, &secret)).await.unwrap();
    let forged = serde_json::json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"attestationObject": "o2NmbXRkbm9uZQ", "clientDataJSON": "e30"}});
    let refused = f.identity.passkey_register_finish(&auth, &handle, &forged, "laptop").await;
    assert!(
        matches!(refused, Err(IdentityError::Invalid(m)) if m.contains("not accepted")),
        "not an authenticator's answer"
    );
    let again = f.identity.passkey_register_finish(&auth, &handle, &forged, "laptop").await;
    assert!(matches!(again, Err(IdentityError::Invalid(m)) if m.contains("expired")), "a ceremony is used once");
    assert!(f.identity.passkey_list(&kaisa).await.unwrap().is_empty(), "nothing was stored");

    // Signing in with a passkey: the challenge names no account; the password and the
    // answer are checked together, and whatever is wrong, the answer is the same.
    let (h, options) = f.identity.passkey_challenge().unwrap();
    assert!(options["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty), "{options}");
    let x = SessionKind::Cookie;
    let wrong = f.identity.login_with_passkey("kaisa", "not the password", &h, &forged, "x", x).await;
    assert!(matches!(wrong, Err(IdentityError::BadCredentials)));
    let (h, _) = f.identity.passkey_challenge().unwrap();
    let no_key = f.identity.login_with_passkey("kaisa", PASSWORD, &h, &forged, "x", x).await;
    assert!(matches!(no_key, Err(IdentityError::BadCredentials)), "the right password with no passkey");
    let unknown = f.identity.login_with_passkey("kaisa", PASSWORD, "nohandle", &forged, "x", x).await;
    assert!(matches!(unknown, Err(IdentityError::BadCredentials)), "an unknown ceremony");

    // A stored passkey (sealed to its user) goes with an admin's reset of the second factor.
    let sealed = f.records.seal_secret("Passkey", &kaisa, b"{}").await.unwrap();
    let row = confidant_store::PasskeyRow {
        id: "pk1".into(),
        user_id: kaisa.clone(),
        label: "laptop".into(),
        sealed,
        created_at: f.clock.now_millis(),
        last_used_at: None,
    };
    let mut planted = f.records.store().audited().await.unwrap();
    planted.insert_passkey(&row).await.unwrap();
    planted.commit(&[]).await.unwrap();
    assert_eq!(f.identity.passkey_list(&kaisa).await.unwrap().len(), 1);
    f.identity.reset_mfa("kaisa").await.unwrap();
    assert!(f.identity.passkey_list(&kaisa).await.unwrap().is_empty(), "the reset removed the passkey");
}

/// A sign-in whose audit entry cannot be appended is refused with identity's
/// own `AuditFailed` (which the server answers 503), and so is an
/// administrator's change: no security event goes unrecorded, and none
/// happens without its entry (the change commits with it or not at all).
#[tokio::test]
async fn what_cannot_be_audited_fails_as_audit_failed() {
    use sqlx::Connection as _;
    let f = fixture().await;
    f.identity.add_user("kaisa", Role::Reception, PASSWORD, None, None).await.unwrap();
    let url = format!("sqlite://{}", f._tmp.path().join("t.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let broken = "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log \
                  BEGIN SELECT RAISE(ABORT, 'audit appends broken by the test'); END;";
    sqlx::raw_sql(sqlx::AssertSqlSafe(broken.to_owned())).execute(&mut db).await.unwrap();
    let store = f.records.store();
    let kaisa = f.identity.list_users().await.unwrap().into_iter().find(|u| u.username == "kaisa").unwrap().id;
    let login = f.identity.login("kaisa", PASSWORD, None, "10.0.0.1", SessionKind::Bearer).await;
    assert!(matches!(login, Err(IdentityError::AuditFailed)), "{login:?}");
    assert!(store.live_sessions(&kaisa, 0).await.unwrap().is_empty(), "no session without its login entry");
    assert!(store.last_logins().await.unwrap().is_empty(), "no session row at all");
    let disable = f.identity.disable("kaisa").await;
    assert!(matches!(disable, Err(IdentityError::AuditFailed)), "{disable:?}");
    let user = store.user_by_id(&kaisa).await.unwrap().unwrap();
    assert_eq!(user.disabled_at, None, "not disabled without its entry");
    let token = f.identity.create_api_token("kaisa", "front desk", "user/Patient.read", 60_000).await;
    assert!(matches!(token, Err(IdentityError::AuditFailed)), "{token:?}");
    assert!(store.api_tokens().await.unwrap().is_empty(), "no token without its entry");
    let invite = f.identity.create_enrolment_code(Role::Admin).await;
    assert!(matches!(invite, Err(IdentityError::AuditFailed)), "{invite:?}");
    assert!(IdentityError::AuditFailed.to_string().contains("audit log"));
    db.close().await.unwrap();
}
