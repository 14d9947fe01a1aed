//! SMART App Launch 2 (issue 19), over HTTP on SQLite and PostgreSQL: the
//! discovery document and the CapabilityStatement's OAuth URIs; the whole
//! authorization code flow with PKCE driven by a real OAuth client library
//! (Authlib, `crates/cli/tests/smart_client.py`) through the consent page,
//! the token working on FHIR until `/oauth/revoke`; and every refusal: a
//! wrong PKCE verifier, plain PKCE, a reused code (its token revoked), an
//! expired code (its stored expiry moved back: the server's clock is the
//! system's), a wrong redirect URI, an unregistered client, scope escalation
//! (reception asking for notes), unknown and patient/ scopes, no session
//! (sign in, then back to the consent), a missing CSRF token, the wrong role
//! registering an app, the wrong patient, hostile input (a huge state, bad
//! redirect URIs, header injection, malformed token requests); every
//! registration, token issue and revocation in the audit log.
//!
//! Over 600 lines because it holds the four flows' tests with the small
//! helpers they share (PKCE pairs, the consent round trip, token requests).

use reqwest::StatusCode as S;
use serde_json::Value;
use sqlx::Row;

use crate::common::{Db, Instance, Server, add_user, create_token, patient};
use crate::ui::Browser;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A PKCE pair: a verifier and its S256 challenge.
fn pkce() -> (String, String) {
    use base64::Engine as _;
    let verifier = crate::common::random_hex(32);
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(confidant_vault::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

fn query(params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    q.finish()
}

/// The parameters of `url`'s query.
fn params_of(url: &str) -> std::collections::HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// A good authorization request of `client_id` for `scope`.
fn request(s: &Server, client_id: &str, scope: &str, challenge: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", client_id.into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", scope.into()),
        ("state", "st-123".into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
        ("aud", s.fhir("")),
    ]
}

fn borrowed<'a>(p: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    p.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn with(p: &[(&'static str, String)], key: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut p: Vec<_> = p.iter().filter(|(k, _)| *k != key).cloned().collect();
    p.push((key, value.to_owned()));
    p
}

async fn authorize(b: &Browser, p: &[(&'static str, String)]) -> reqwest::Response {
    b.get(&format!("/oauth/authorize?{}", query(&borrowed(p)))).await
}

/// The hidden fields of the consent page's form (the page's sign-out form carries the CSRF token too: once).
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once('"').unwrap();
            let value = rest.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
            let value = value.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
            (name.to_owned(), value)
        })
        .filter(|(name, _)| seen.insert(name.clone()))
        .collect()
}

/// Through the consent page with `decision`: where the browser is sent.
async fn consent(b: &Browser, p: &[(&'static str, String)], decision: &str) -> String {
    let page = authorize(b, p).await;
    assert_eq!(page.status(), S::OK, "the consent page");
    let mut fields = hidden_fields(&page.text().await.unwrap());
    fields.push(("decision".into(), decision.into()));
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    let r = b.post_raw("/oauth/authorize", &body).await;
    assert_eq!(r.status(), S::SEE_OTHER, "the consent is answered");
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn token_request(s: &Server, form: &[(&str, &str)]) -> (S, Value) {
    let r = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query(form))
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("no-store"));
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn exchange(s: &Server, client_id: &str, code: &str, verifier: &str) -> (S, Value) {
    token_request(
        s,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A code for `scope` from `b`'s consent, with its verifier.
async fn code_for(s: &Server, b: &Browser, client_id: &str, scope: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let to = consent(b, &request(s, client_id, scope, &challenge), "allow").await;
    assert!(to.starts_with(&format!("{REDIRECT}?")), "{to}");
    let p = params_of(&to);
    assert_eq!(p["state"], "st-123", "state is echoed");
    (p["code"].clone(), verifier)
}

/// Register an app as the signed-in admin `admin`; its client id.
async fn register(admin: &Browser, name: &str, uris: &str, scopes: &str) -> reqwest::Response {
    admin.post("/admin/apps", &query(&[("name", name), ("redirect_uris", uris), ("scopes", scopes)])).await
}

async fn registered(admin: &Browser, scopes: &str) -> String {
    let r = register(admin, "Mood diary", &format!("{REDIRECT}\nhttps://app.example/cb"), scopes).await;
    assert_eq!(r.status(), S::OK);
    let page = r.text().await.unwrap();
    page.split("<code id=\"client-id\">").nth(1).unwrap().split('<').next().unwrap().to_owned()
}

async fn scalar(inst: &Instance, sql: &str) -> i64 {
    let mut db = inst.db().await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut db).await.unwrap().get(0)
}

/// The audit log's entries, in order.
async fn entries(inst: &Instance) -> Vec<Value> {
    let mut db = inst.db().await;
    let rows = sqlx::query("SELECT entry FROM audit_log ORDER BY seq").fetch_all(&mut db).await.unwrap();
    rows.iter().map(|r| serde_json::from_slice(&r.get::<Vec<u8>, _>(0)).unwrap()).collect()
}

fn logged(entries: &[Value], action: &str, target: &str) -> Vec<Value> {
    entries.iter().filter(|e| e["action"] == action && e["target"] == target).cloned().collect()
}

/// The id and user of the token the app `client_id` was given last.
async fn app_token(inst: &Instance, client_id: &str) -> (String, String) {
    let mut db = inst.db().await;
    let q = if inst.db == Db::Postgres {
        "SELECT id, user_id FROM api_tokens WHERE client_id = $1 ORDER BY created_at DESC, id"
    } else {
        "SELECT id, user_id FROM api_tokens WHERE client_id = ? ORDER BY created_at DESC, id"
    };
    let r = sqlx::query(q).bind(client_id).fetch_one(&mut db).await.unwrap();
    (r.get(0), r.get(1))
}

async fn fhir_get(s: &Server, token: &str, path: &str) -> S {
    s.http.get(s.fhir(path)).bearer_auth(token).send().await.unwrap().status()
}

async fn discovery_and_capability_statement(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    for path in ["/.well-known/smart-configuration", "/fhir/r4/.well-known/smart-configuration"] {
        let r = s.http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), S::OK, "{path} needs no authentication");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let c: Value = r.json().await.unwrap();
        assert_eq!(c["authorization_endpoint"], format!("{}/oauth/authorize", s.url));
        assert_eq!(c["token_endpoint"], format!("{}/oauth/token", s.url));
        assert_eq!(c["revocation_endpoint"], format!("{}/oauth/revoke", s.url));
        assert_eq!(c["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(c["grant_types_supported"], serde_json::json!(["authorization_code"]));
        assert_eq!(c["token_endpoint_auth_methods_supported"], serde_json::json!(["none"]));
        let caps: Vec<&str> = c["capabilities"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for needed in [
            "launch-standalone",
            "client-public",
            "context-standalone-patient",
            "permission-v2",
            "permission-user",
            "permission-patient",
        ] {
            assert!(caps.contains(&needed), "{needed} in {caps:?}");
        }
        for absent in ["client-confidential-symmetric", "sso-openid-connect", "launch-ehr"] {
            assert!(!caps.contains(&absent), "{absent} is not served");
        }
        let scopes = c["scopes_supported"].as_array().unwrap();
        assert!(scopes.contains(&Value::from("user/Patient.rs")) && scopes.contains(&Value::from("user/*.read")));
        assert!(scopes.contains(&Value::from("patient/*.rs")) && scopes.contains(&Value::from("launch/patient")));
    }
    let (status, meta) = s.get_json("metadata").await;
    assert_eq!(status, S::OK);
    let sec = &meta["rest"][0]["security"];
    assert_eq!(sec["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let ext = &sec["extension"][0];
    assert_eq!(ext["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
    let uri = |name: &str| {
        ext["extension"].as_array().unwrap().iter().find(|e| e["url"] == name).unwrap()["valueUri"].clone()
    };
    assert_eq!(uri("authorize"), format!("{}/oauth/authorize", s.url));
    assert_eq!(uri("token"), format!("{}/oauth/token", s.url));
    assert_eq!(uri("revoke"), format!("{}/oauth/revoke", s.url));
    crate::common::validate_fhir("smart discovery", &[meta]);
    s.stop();
}
crate::both_backends!(discovery_and_capability_statement);

/// The flow as a real client library runs it (Authlib), through the consent page.
async fn a_client_library_runs_the_flow(db: Db) {
    let Some(client_path) = std::env::var_os("CONFIDANT_SMART_CLIENT_PATH") else {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "CONFIDANT_SMART_CLIENT_PATH must be set in CI (.ci/run installs Authlib)"
        );
        eprintln!("\n*** SKIPPED smart::a_client_library_runs_the_flow: set CONFIDANT_SMART_CLIENT_PATH ***\n");
        return;
    };
    let inst = Instance::new(db).await;
    let s = inst.start();
    let pid = id_of(&s.create(&patient("Lehtonen", "Sari")).await);
    let admin = Browser::sign_in(&s, "admin1").await;
    let client_id = registered(&admin, "user/Patient.rs user/DocumentReference.rs").await;
    let clin = Browser::sign_in(&s, "clin1").await;
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smart_client.py"))
        .env("PYTHONPATH", client_path)
        .env("AUTHLIB_INSECURE_TRANSPORT", "1")
        .env("CONFIDANT_URL", &s.url)
        .env("CONFIDANT_COOKIE", clin.cookie_header())
        .env("CLIENT_ID", &client_id)
        .env("REDIRECT_URI", REDIRECT)
        .env("SCOPE", "openid fhirUser user/Patient.rs user/Encounter.rs")
        .env("PATIENT_ID", &pid)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["token_type"], "Bearer");
    // Encounter is not registered for the app, openid and fhirUser grant nothing here.
    assert_eq!(r["scope"], "user/Patient.read");
    assert_eq!(r["expires_in"], 3600);
    assert_eq!(r["read_status"], 200);
    assert_eq!(r["read_id"], pid.as_str());
    assert_eq!(r["revoke_status"], 200);
    assert_eq!(r["after_revoke_status"], 401, "a revoked token opens nothing");
    let csp = r["consent_page_csp"].as_str().unwrap();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:9;"), "{csp}");

    // Audited: the registration, the token's issue, its use (the read, as the clinician) and its revocation.
    let (token_id, user_id) = app_token(&inst, &client_id).await;
    let log = entries(&inst).await;
    let reg = logged(&log, "app-register", &client_id);
    assert_eq!(reg.len(), 1, "one app-register entry");
    assert_eq!(reg[0]["role"], "admin");
    for action in ["token-create", "token-revoke"] {
        let e = logged(&log, action, &token_id);
        assert_eq!(e.len(), 1, "{action}");
        assert_eq!(e[0]["actor"], user_id.as_str(), "{action} by the user the app acts for");
    }
    let issued = log.iter().position(|e| e["action"] == "token-create" && e["target"] == token_id.as_str()).unwrap();
    let revoked = log.iter().position(|e| e["action"] == "token-revoke" && e["target"] == token_id.as_str()).unwrap();
    let read = log
        .iter()
        .position(|e| {
            e["action"] == "read" && e["resource"] == format!("Patient/{pid}") && e["actor"] == user_id.as_str()
        })
        .unwrap();
    assert!(issued < read && read < revoked, "issue, use, revoke in that order");
    // The app's token is an API token: listed on the admin's page, where it can be revoked.
    let tokens = admin.get("/admin/tokens").await.text().await.unwrap();
    assert!(tokens.contains(&token_id) && tokens.contains("SMART app: Mood diary"));
    s.stop();
}
crate::both_backends!(a_client_library_runs_the_flow);

/// PKCE, codes, redirect URIs, clients: each refusal, and what it leaves.
async fn codes_and_clients_are_refused_as_they_must(db: Db) {
    let inst = Instance::new(db).await;
    let s = inst.start();
    let pid = id_of(&s.create(&patient("Nieminen", "Outi")).await);
    let admin = Browser::sign_in(&s, "admin1").await;
    let client_id = registered(&admin, "user/*.*").await;
    let other_client = registered(&admin, "user/*.*").await;
    let clin = Browser::sign_in(&s, "clin1").await;

    // A wrong verifier: refused, and the code still works with the right one.
    let (code, verifier) = code_for(&s, &clin, &client_id, "user/Patient.rs").await;
    let (st, e) = exchange(&s, &client_id, &code, &"x".repeat(64)).await;
    assert_eq!((st, e["error"].as_str()), (S::BAD_REQUEST, Some("invalid_grant")), "{e}");
    // Another client, another redirect URI: refused.
    let (st, e) = exchange(&s, &other_client, &code, &verifier).await;
    assert_eq!((st, e["error"].as_str()), (S::BAD_REQUEST, Some("invalid_grant")), "{e}");
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/cb"),
        ("code_verifier", verifier.as_str()),
    ];
    let (st, e) = token_request(&s, &form).await;
    assert_eq!((st, e["error"].as_str()), (S::BAD_REQUEST, Some("invalid_grant")), "{e}");
    // An unregistered client.
    let (st, e) = exchange(&s, &"ab".repeat(16), &code, &verifier).await;
    assert_eq!((st, e["error"].as_str()), (S::UNAUTHORIZED, Some("invalid_client")), "{e}");
    // The right exchange works once.
    let (st, t) = exchange(&s, &client_id, &code, &verifier).await;
    assert_eq!(st, S::OK, "{t}");
    assert_eq!((t["token_type"].as_str(), t["scope"].as_str()), (Some("Bearer"), Some("user/Patient.read")));
    let token = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(fhir_get(&s, &token, &format!("Patient/{pid}")).await, S::OK);
    // The token is narrowed to its scope: no notes, no writes.
    assert_eq!(fhir_get(&s, &token, &format!("DocumentReference?patient={pid}")).await, S::FORBIDDEN);
    // A reused code: refused, and the token it gave is revoked.
    let (token_id, _) = app_token(&inst, &client_id).await;
    let (st, e) = exchange(&s, &client_id, &code, &verifier).await;
    assert_eq!((st, e["error"].as_str()), (S::BAD_REQUEST, Some("invalid_grant")), "{e}");
    assert!(e["error_description"].as_str().unwrap().contains("revoked"));
    assert_eq!(fhir_get(&s, &token, &format!("Patient/{pid}")).await, S::UNAUTHORIZED);
    assert_eq!(logged(&entries(&inst).await, "token-revoke", &token_id).len(), 1);

    // An expired code (its stored expiry moved back).
    let (code, verifier) = code_for(&s, &clin, &client_id, "user/Patient.rs").await;
    let tokens_before = scalar(&inst, "SELECT COUNT(*) FROM api_tokens").await;
    let mut db = inst.db().await;
    sqlx::query("UPDATE oauth_codes SET expires_at = 1 WHERE used_at IS NULL").execute(&mut db).await.unwrap();
    let (st, e) = exchange(&s, &client_id, &code, &verifier).await;
    assert_eq!((st, e["error"].as_str()), (S::BAD_REQUEST, Some("invalid_grant")), "{e}");
    assert!(e["error_description"].as_str().unwrap().contains("expired"), "{e}");
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM api_tokens").await, tokens_before, "no token made");
    // Codes are stored by their hash only.
    let codes: Vec<Vec<u8>> = sqlx::query("SELECT code_hash FROM oauth_codes")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(codes.iter().all(|h| h.len() == 32 && !String::from_utf8_lossy(h).contains("cnc_")));

    // Plain PKCE, no PKCE, a bad challenge, no aud: sent back to the app with the error and its state.
    let (_, challenge) = pkce();
    let good = request(&s, &client_id, "user/Patient.rs", &challenge);
    for (key, value, says) in [
        ("code_challenge_method", "plain", "S256"),
        ("code_challenge_method", "", "S256"),
        ("code_challenge", "short", "code_challenge"),
        ("aud", "https://elsewhere.example/fhir", "aud"),
        ("response_type", "token", "response_type"),
    ] {
        let r = authorize(&clin, &with(&good, key, value)).await;
        assert_eq!(r.status(), S::SEE_OTHER, "{key}={value}");
        let to = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(to.starts_with(&format!("{REDIRECT}?")), "{to}");
        let p = params_of(&to);
        assert!(matches!(p["error"].as_str(), "invalid_request" | "unsupported_response_type"), "{to}");
        assert!(p["error_description"].contains(says), "{to}");
        assert_eq!(p["state"], "st-123");
        assert!(!p.contains_key("code"));
    }
    // An unregistered client or redirect URI: an error page here, never a redirect.
    for (key, value) in [
        ("client_id", "ab".repeat(16)),
        ("client_id", String::new()),
        ("redirect_uri", "https://evil.example/cb".into()),
        ("redirect_uri", format!("{REDIRECT}/")),
        ("redirect_uri", format!("{REDIRECT}\r\nSet-Cookie: a=b")),
    ] {
        let r = authorize(&clin, &with(&good, key, &value)).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{key}={value:?}");
        assert!(r.headers().get("location").is_none() && r.headers().get("set-cookie").is_none());
    }
    // A repeated parameter: an error page.
    let twice = format!("/oauth/authorize?{}&client_id={other_client}", query(&borrowed(&good)));
    assert_eq!(clin.get(&twice).await.status(), S::BAD_REQUEST);
    // The user says no: access_denied, with the state.
    let to = consent(&clin, &good, "deny").await;
    let p = params_of(&to);
    assert_eq!((p["error"].as_str(), p["state"].as_str()), ("access_denied", "st-123"));
    assert!(!p.contains_key("code"));

    // Malformed token requests.
    let (st, e) = token_request(&s, &[("grant_type", "refresh_token"), ("refresh_token", "x")]).await;
    assert_eq!((st, e["error"].as_str()), (S::BAD_REQUEST, Some("unsupported_grant_type")));
    let (st, e) = token_request(&s, &[("grant_type", "authorization_code"), ("client_id", &client_id)]).await;
    assert_eq!((st, e["error"].as_str()), (S::BAD_REQUEST, Some("invalid_request")));
    form[3].1 = REDIRECT;
    let big = format!("cnc_{}", "A".repeat(5000));
    form[2].1 = &big;
    let (st, e) = token_request(&s, &form).await;
    assert_eq!((st, e["error"].as_str()), (S::BAD_REQUEST, Some("invalid_grant")));
    let r = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .json(&serde_json::json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let body = format!("{}&grant_type=authorization_code", query(&form));
    let r = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request", "a repeated parameter");
    let r = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .basic_auth(&client_id, Some("secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = s.http.get(format!("{}/oauth/token", s.url)).send().await.unwrap();
    assert_eq!(r.status(), S::METHOD_NOT_ALLOWED);

    // Revocation: unknown tokens are no error; another app's token is not this app's to revoke.
    let (code, verifier) = code_for(&s, &clin, &client_id, "user/Patient.rs").await;
    let token = exchange(&s, &client_id, &code, &verifier).await.1["access_token"].as_str().unwrap().to_owned();
    let revoke = |client: String, token: String| {
        let http = s.http.clone();
        let url = format!("{}/oauth/revoke", s.url);
        let body = query(&[("client_id", &client), ("token", &token)]);
        async move {
            http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap()
        }
    };
    assert_eq!(revoke(client_id.clone(), "cnf_unknown".into()).await.status(), S::OK);
    let r = revoke(other_client.clone(), token.clone()).await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    assert_eq!(fhir_get(&s, &token, &format!("Patient/{pid}")).await, S::OK, "still live");
    assert_eq!(revoke(client_id.clone(), inst.token.clone()).await.status(), S::BAD_REQUEST, "not an app's token");
    assert_eq!(fhir_get(&s, &inst.token, &format!("Patient/{pid}")).await, S::OK);
    assert_eq!(revoke(client_id.clone(), token.clone()).await.status(), S::OK);
    assert_eq!(fhir_get(&s, &token, &format!("Patient/{pid}")).await, S::UNAUTHORIZED);
    assert_eq!(revoke(client_id.clone(), token.clone()).await.status(), S::OK, "twice is no error");
    s.stop();
}
crate::both_backends!(codes_and_clients_are_refused_as_they_must);

/// Scopes narrowed to the role, the wrong patient, no session, CSRF, the wrong role registering.
async fn scopes_roles_sessions_and_registration(db: Db) {
    let inst = Instance::new(db).await;
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Other Clinician"]);
    let s = inst.start();
    let clin2 = create_token(&inst.dir, "clin2", "user/*.*");
    let mine = id_of(&s.create(&patient("Salo", "Anni")).await);
    let theirs = id_of(&s.create_as(&clin2, &patient("Koski", "Veli")).await);
    add_user(&inst.dir, "pat1", "patient", &["--patient", &mine]);
    let admin = Browser::sign_in(&s, "admin1").await;
    let client_id = registered(&admin, "user/*.*").await;

    // Reception asking for notes gets what reception reads, and never notes.
    let desk = Browser::sign_in(&s, "desk").await;
    let (code, verifier) = code_for(&s, &desk, &client_id, "user/Patient.rs user/DocumentReference.rs").await;
    let (st, t) = exchange(&s, &client_id, &code, &verifier).await;
    assert_eq!(st, S::OK, "{t}");
    assert_eq!(t["scope"], "user/Patient.read");
    let token = t["access_token"].as_str().unwrap();
    assert_eq!(fhir_get(&s, token, &format!("Patient/{mine}")).await, S::OK);
    assert_eq!(fhir_get(&s, token, &format!("DocumentReference?patient={mine}")).await, S::FORBIDDEN);
    // Asking for notes alone: nothing to grant.
    let (_, challenge) = pkce();
    for (scope, says) in [
        ("user/DocumentReference.rs", "reception"),
        ("user/Condition.rs", "is not a scope"),
        ("patient/*.read", "patient/ scopes"),
        ("user/*.cruds", "delete"),
        ("openid fhirUser", "at least one resource scope"),
    ] {
        let r = authorize(&desk, &request(&s, &client_id, scope, &challenge)).await;
        assert_eq!(r.status(), S::SEE_OTHER, "{scope}");
        let p = params_of(r.headers()["location"].to_str().unwrap());
        assert_eq!(p["error"], "invalid_scope", "{scope}");
        assert!(p["error_description"].contains(says), "{scope}: {p:?}");
    }
    // An administrator reads no clinical content, so an app gets nothing of it from them.
    let r = authorize(&admin, &request(&s, &client_id, "user/Patient.rs", &challenge)).await;
    let p = params_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(p["error"], "invalid_scope");
    assert!(p["error_description"].contains("admin role"), "{p:?}");
    // An app registered for less gets less.
    let narrow = registered(&admin, "user/Patient.rs").await;
    let clin = Browser::sign_in(&s, "clin1").await;
    let (code, verifier) = code_for(&s, &clin, &narrow, "user/*.*").await;
    let t = exchange(&s, &narrow, &code, &verifier).await.1;
    assert_eq!(t["scope"], "user/Patient.read");
    // The wrong patient: a clinician's app sees only the clinician's patients.
    let (code, verifier) = code_for(&s, &clin, &client_id, "user/*.rs").await;
    let t = exchange(&s, &client_id, &code, &verifier).await.1;
    assert!(t.get("patient").is_none(), "a clinician's token has no patient context: {t}");
    let token = t["access_token"].as_str().unwrap();
    assert_eq!(fhir_get(&s, token, &format!("Patient/{mine}")).await, S::OK);
    assert_eq!(fhir_get(&s, token, &format!("Patient/{theirs}")).await, S::NOT_FOUND);

    // A patient's own app: patient/ scopes, the signed-in patient as the launch context.
    let pat = Browser::sign_in(&s, "pat1").await;
    let (code, verifier) = code_for(&s, &pat, &client_id, "launch/patient patient/*.rs").await;
    let (st, t) = exchange(&s, &client_id, &code, &verifier).await;
    assert_eq!(st, S::OK, "{t}");
    assert_eq!(t["patient"], mine.as_str(), "the token response names the patient: {t}");
    let token = t["access_token"].as_str().unwrap();
    assert_eq!(fhir_get(&s, token, &format!("Patient/{mine}")).await, S::OK);
    assert_eq!(fhir_get(&s, token, &format!("Patient/{theirs}")).await, S::NOT_FOUND);

    // No session: sign in, then back to the consent (a patient: no second factor to enrol).
    let (_, challenge) = pkce();
    let good = request(&s, &client_id, "user/Patient.rs", &challenge);
    let anon = Browser::anonymous(&s).await;
    let r = authorize(&anon, &good).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.starts_with("/login?next=%2Foauth%2Fauthorize%3F"), "{to}");
    let next = params_of(&to)["next"].clone();
    let login = anon.get(&to).await.text().await.unwrap();
    assert!(login.contains("name=\"next\""), "the sign-in form carries where to go back");
    let body =
        format!("username=pat1&password={}&{}", crate::common::PASSWORD.replace(' ', "+"), query(&[("next", &next)]));
    let r = anon.login(&body).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    assert_eq!(r.headers()["location"], next.as_str(), "back to the consent");
    // Anywhere else is not followed.
    let r = anon
        .login(&format!(
            "username=pat1&password={}&next=https%3A%2F%2Fevil.example%2F",
            crate::common::PASSWORD.replace(' ', "+")
        ))
        .await;
    assert_eq!(r.headers()["location"], "/");
    // Without a session, the consent form's post changes nothing.
    let codes = scalar(&inst, "SELECT COUNT(*) FROM oauth_codes").await;
    let mut fields: Vec<(String, String)> = good.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    fields.push(("decision".into(), "allow".into()));
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    let r = anon.post_raw("/oauth/authorize", &body).await;
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (S::SEE_OTHER, "/login"));
    // Signed in without the CSRF token: refused, no code.
    let r = clin.post_raw("/oauth/authorize", &body).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    let r = clin.post_raw("/oauth/authorize", &format!("csrf=wrong&{body}")).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM oauth_codes").await, codes, "no code made");

    // A huge state: refused (sent back without it), nothing made.
    let r = authorize(&clin, &with(&good, "state", &"s".repeat(10_000))).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let p = params_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(p["error"], "invalid_request");
    assert!(!p.contains_key("state"));
    // A state with markup and line breaks is escaped on the page and encoded on the way back.
    let hostile = "<script>alert(1)</script>\r\nSet-Cookie: a=b";
    let page = authorize(&clin, &with(&good, "state", hostile)).await.text().await.unwrap();
    assert!(!page.contains("<script>alert(1)"));
    let to = consent(&clin, &with(&good, "state", hostile), "allow").await;
    assert!(!to.contains(['\r', '\n', '<']), "{to}");
    assert_eq!(params_of(&to)["state"], hostile);

    // Registering: admins only, good redirect URIs only; audited.
    let apps = scalar(&inst, "SELECT COUNT(*) FROM smart_apps").await;
    for (uris, scopes) in [
        ("http://app.example/cb", "user/*.read"),
        ("javascript:alert(1)", "user/*.read"),
        ("https://app.example/cb#x", "user/*.read"),
        ("https://user@app.example/cb", "user/*.read"),
        ("https://app.example/cb\r\nSet-Cookie: x=1", "user/*.read"),
        ("https://app.example/\"><script>", "user/*.read"),
        (REDIRECT, "user/Condition.read"),
        (REDIRECT, "patient/*.read"),
        ("", "user/*.read"),
    ] {
        let r = register(&admin, "Bad", uris, scopes).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{uris} {scopes}");
    }
    let r = register(&admin, &"n".repeat(101), REDIRECT, "user/*.read").await;
    assert_eq!(r.status(), S::BAD_REQUEST);
    let r = admin
        .post_raw("/admin/apps", &query(&[("name", "x"), ("redirect_uris", REDIRECT), ("scopes", "user/*.read")]))
        .await;
    assert_eq!(r.status(), S::FORBIDDEN, "no CSRF token");
    for who in [&clin, &desk] {
        assert_eq!(register(who, "Mine", REDIRECT, "user/*.read").await.status(), S::FORBIDDEN);
        assert_eq!(who.get("/admin/apps").await.status(), S::FORBIDDEN);
    }
    let r = anon
        .post_raw("/admin/apps", &query(&[("name", "x"), ("redirect_uris", REDIRECT), ("scopes", "user/*.read")]))
        .await;
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (S::SEE_OTHER, "/login"));
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM smart_apps").await, apps, "nothing registered");
    let page = admin.get("/admin/apps").await.text().await.unwrap();
    assert!(page.contains(&client_id) && page.contains("https://app.example/cb"));
    let log = entries(&inst).await;
    assert_eq!(log.iter().filter(|e| e["action"] == "app-register").count() as i64, apps);
    let t = logged(&log, "token-create", &app_token(&inst, &client_id).await.0);
    assert_eq!(t.len(), 1);
    s.stop();
}
crate::both_backends!(scopes_roles_sessions_and_registration);
