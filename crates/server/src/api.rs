//! The management API under `/api/v1`: sessions, second factor, break-glass.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use confidant_fhir::IssueType;
use confidant_identity::{Authenticated, IdentityError, SessionKind};
use confidant_policy::Role;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::SESSION_COOKIE;
use crate::{ApiError, AppState};

/// Routes that need no authentication.
pub(crate) fn public_routes() -> Router<AppState> {
    Router::new().route("/session", post(login)).route("/enrol", post(enrol)).route("/openapi.json", get(openapi))
}

/// Routes behind [`crate::auth::authenticate`].
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/session", delete(logout))
        .route("/me", get(me))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", delete(revoke_session))
        .route("/mfa/totp", post(totp_begin))
        .route("/mfa/totp/confirm", post(totp_confirm))
        .route("/break-glass", post(break_glass))
        .route("/audit/checkpoint", get(audit_checkpoint))
        .route("/audit/proof", get(audit_proof))
        .route("/alerts", get(alerts))
        .route("/alerts/{id}/acknowledge", post(acknowledge_alert))
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported, "method not supported here")
        })
}

/// A JSON request body, or a clear 400/413/415.
fn json_in<T: DeserializeOwned>(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = crate::error::admit_body(headers, body, &["application/json"])?;
    // Field errors name the field, not the value the caller sent.
    serde_json::from_slice(&body).map_err(|e| {
        let what = if e.is_data() { "a field is missing or has the wrong type" } else { "the body is not valid JSON" };
        ApiError::bad_request(format!("{what} (line {}, column {})", e.line(), e.column()))
    })
}

fn session_cookie(value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    crate::auth::cookie_header(SESSION_COOKIE, value, max_age_secs, secure)
}

/// The throttling key of a client address: IPv6 clients usually hold a whole
/// /64, so they are counted per /64, IPv4 per address.
pub(crate) fn throttle_source(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
    /// `cookie` (browsers, the default) or `bearer` (API clients).
    #[serde(default)]
    client: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    crate::client::ClientAddr(peer): crate::client::ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: LoginRequest = json_in(&headers, body)?;
    let kind = match req.client.as_deref() {
        None | Some("cookie") => SessionKind::Cookie,
        Some("bearer") => SessionKind::Bearer,
        Some(_) => return Err(ApiError::bad_request("client must be 'cookie' or 'bearer'")),
    };
    if req.username.len() > 256 || req.password.len() > 1024 {
        return Err(IdentityError::BadCredentials.into());
    }
    let result =
        state.identity.login(&req.username, &req.password, req.code.as_deref(), &throttle_source(peer), kind).await;
    let login = match result {
        Ok(l) => l,
        Err(e @ IdentityError::Throttled { retry_after_secs }) => {
            let mut resp = ApiError::from(e).into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Ok(resp);
        }
        Err(e) => return Err(e.into()),
    };
    let body = json!({ "mfa_enrolment_required": login.mfa_enrolment_required });
    Ok(session_reply(&state, &login, body))
}

/// A reply that hands out a new session: its id and expiry added to `body`,
/// and its token in `body` (bearer) or in a cookie with the CSRF token in
/// `body` (cookie).
fn session_reply(state: &AppState, login: &confidant_identity::Login, mut body: serde_json::Value) -> Response {
    body["session_id"] = json!(login.session_id);
    body["expires_at"] = json!(confidant_fhir::instant(login.expires_at));
    let mut resp_headers = HeaderMap::new();
    match login.kind {
        SessionKind::Bearer => body["token"] = json!(login.token),
        SessionKind::Cookie => {
            body["csrf_token"] = json!(login.csrf_token);
            let max_age = (login.expires_at - state.records.now_millis()) / 1000;
            resp_headers.insert(header::SET_COOKIE, session_cookie(&login.token, max_age, state.secure_cookies));
        }
    }
    (StatusCode::OK, resp_headers, Json(body)).into_response()
}

async fn logout(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
) -> Result<Response, ApiError> {
    let Some(session) = &auth.session else {
        return Err(ApiError::bad_request("an API token is not a session; revoke it with `confidant token revoke`"));
    };
    state.identity.logout(session).await?;
    let mut h = HeaderMap::new();
    h.insert(header::SET_COOKIE, session_cookie("", 0, state.secure_cookies));
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

async fn me(Extension(auth): Extension<Authenticated>) -> Json<serde_json::Value> {
    let p = &auth.principal;
    Json(json!({
        "user_id": p.user_id,
        "role": p.role.as_str(),
        "practitioner_id": p.practitioner_id,
        "patient_id": p.patient_id,
        "scopes": p.scopes.as_ref().map(|s| s.to_string()),
        "mfa_done": auth.session.as_ref().map(|s| s.mfa_done),
    }))
}

#[derive(Deserialize)]
struct SessionsQuery {
    user: Option<String>,
}

async fn sessions(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    axum::extract::Query(q): axum::extract::Query<SessionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = match q.user {
        Some(u) if u != auth.principal.user_id => {
            if auth.principal.role != Role::Admin {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    IssueType::Forbidden,
                    "only an admin may list others' sessions",
                ));
            }
            u
        }
        _ => auth.principal.user_id.clone(),
    };
    let list: Vec<_> = state
        .identity
        .sessions(&user)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id, "kind": s.kind,
                "created": confidant_fhir::instant(s.created_at),
                "last_seen": confidant_fhir::instant(s.last_seen),
                "expires": confidant_fhir::instant(s.expires_at),
                "current": auth.session.as_ref().is_some_and(|c| c.id == s.id),
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": list })))
}

async fn revoke_session(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found("session not found"));
    }
    state.identity.revoke_session(&auth.principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn totp_begin(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if auth.session.is_none() {
        return Err(ApiError::bad_request("enrol a second factor from a login session, not with an API token"));
    }
    let e = state.identity.totp_begin(&auth.principal.user_id).await?;
    Ok(Json(json!({
        "secret": e.secret_base32,
        "otpauth_uri": e.otpauth_uri,
        "qr_svg": e.qr_svg,
        "next": "scan the QR code (or type the secret) into an authenticator app, then POST /api/v1/mfa/totp/confirm {\"code\": \"123456\"}"
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    code: String,
}

async fn totp_confirm(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CodeRequest = json_in(&headers, body)?;
    let done = state.identity.totp_confirm(&auth.principal.user_id, auth.session.as_ref(), &req.code).await?;
    let body = json!({
        "recovery_codes": done.recovery_codes,
        "note": "each recovery code works once, in place of a TOTP code; store them offline, they are not shown again"
    });
    Ok(match &done.session {
        // The enrolment session's token has ended: the new one is in this reply.
        Some(login) => session_reply(&state, login, body),
        None => Json(body).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolRequest {
    code: String,
    username: String,
    password: String,
}

async fn enrol(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: EnrolRequest = json_in(&headers, body)?;
    let id = state.identity.enrol(&req.code, &req.username, &req.password).await?;
    Ok((StatusCode::CREATED, Json(json!({"user_id": id, "next": "log in with POST /api/v1/session, then enrol TOTP"})))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakGlassRequest {
    patient: String,
    reason: String,
}

async fn break_glass(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Break-glass is for a person at work, not for an integration: it needs a
    // login session with the second factor, never an API token.
    if !auth.session.as_ref().is_some_and(|s| s.mfa_done) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "break-glass needs a login session with the second factor, not an API token",
        ));
    }
    let req: BreakGlassRequest = json_in(&headers, body)?;
    let patient = req.patient.strip_prefix("Patient/").unwrap_or(&req.patient);
    let expires = state.records.break_glass(&auth.principal, patient, &req.reason, state.break_glass_minutes).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "patient": format!("Patient/{patient}"),
            "expires_at": confidant_fhir::instant(expires),
            "note": "this access is recorded, will be reviewed, and is shown to the patient"
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    status: Option<String>,
    #[serde(rename = "_count")]
    count: Option<u64>,
}

fn alert_json(a: &confidant_store::AlertRow) -> serde_json::Value {
    json!({
        "id": a.id,
        "rule": a.rule,
        "severity": a.severity,
        "subject": a.subject,
        "summary": a.summary,
        "response": a.action_taken,
        "first_at": confidant_fhir::instant(a.first_at),
        "last_at": confidant_fhir::instant(a.last_at),
        "count": a.count,
        "acknowledged_at": a.acknowledged_at.map(confidant_fhir::instant),
        "acknowledged_by": a.acknowledged_by,
    })
}

/// The detector's alerts, newest first: `?status=open` (default) or `all`.
async fn alerts(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q: AlertsQuery = serde_urlencoded_query(raw.as_deref())
        .map_err(|_| ApiError::bad_request("parameters: status=open|all and _count=N"))?;
    let open_only = match q.status.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(_) => return Err(ApiError::bad_request("status must be open or all")),
    };
    let limit = i64::try_from(q.count.unwrap_or(100)).unwrap_or(1000);
    let list = state.records.alerts(&auth.principal, open_only, limit).await?;
    Ok(Json(json!({"alerts": list.iter().map(alert_json).collect::<Vec<_>>()})))
}

/// Acknowledge an open alert: someone has looked at it. Audited.
async fn acknowledge_alert(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let a = state.records.acknowledge_alert(&auth.principal, &id).await?;
    Ok(Json(alert_json(&a)))
}

/// The audit endpoints are the auditor's.
fn require_auditor(auth: &Authenticated) -> Result<(), ApiError> {
    // The same rule as for AuditEvent: the auditor role, and API tokens need `user/*.read`.
    match confidant_policy::audit_scope(&auth.principal) {
        Ok(confidant_policy::AuditScope::All) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "only an auditor may read the audit log's proofs",
        )),
    }
}

fn checkpointer(
    state: &AppState,
) -> Result<&std::sync::Arc<tokio::sync::Mutex<confidant_audit::Checkpointer>>, ApiError> {
    state.audit.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            "this node does not sign audit checkpoints",
        )
    })
}

/// The latest signed checkpoint (tree head), with the public key to check it.
async fn audit_checkpoint(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_auditor(&auth)?;
    let c = checkpointer(&state)?.lock().await;
    let latest = c.latest().ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))?;
    Ok(Json(json!({
        "checkpoint": latest.to_line(),
        "origin": latest.checkpoint.origin,
        "tree_size": latest.checkpoint.size,
        "root": hex::encode(latest.checkpoint.root),
        "timestamp": latest.checkpoint.timestamp,
        "signature": hex::encode(latest.signature),
        "public_key": hex::encode(c.public_key()),
        "signed_text": "the checkpoint line up to the last space; Ed25519 (RFC 8032)",
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofQuery {
    seq: Option<u64>,
    size: Option<u64>,
    from: Option<u64>,
    to: Option<u64>,
}

/// An inclusion proof (`?seq=N[&size=M]`, with the entry itself) or a
/// consistency proof (`?from=A[&to=B]`); sizes default to the latest checkpoint's.
async fn audit_proof(
    State(state): State<AppState>,
    Extension(auth): Extension<Authenticated>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_auditor(&auth)?;
    let q: ProofQuery = serde_urlencoded_query(raw.as_deref())?;
    let mut c = checkpointer(&state)?.lock().await;
    c.catch_up().await.map_err(|e| {
        tracing::error!(error = %e, "audit log could not be read for a proof");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, "the audit log could not be read")
    })?;
    let latest = c.latest().map(|l| l.checkpoint.size);
    let no_size = || ApiError::not_found("no checkpoint has been signed yet; give the tree size");
    match (q.seq, q.from) {
        (Some(seq), None) => {
            let size = q.size.or(latest).ok_or_else(no_size)?;
            let p = c
                .inclusion(seq, size)
                .ok_or_else(|| ApiError::bad_request(format!("no entry {seq} in a tree of {size} entries")))?;
            drop(c);
            // The entry is returned with its proof: reading it is an access to the log.
            state.records.audit_log_read(&auth.principal, &format!("proof/{seq}")).await?;
            let entry = state
                .records
                .store()
                .audit_entry(seq as i64)
                .await
                .map_err(|e| ApiError::from(confidant_records::RecordsError::from(e)))?;
            let entry = entry.map(|e| String::from_utf8_lossy(&e.row.entry).into_owned());
            Ok(Json(json!({"inclusion": p, "entry": entry})))
        }
        (None, Some(from)) => {
            let to = q.to.or(latest).ok_or_else(no_size)?;
            let p = c.consistency(from, to).ok_or_else(|| {
                ApiError::bad_request(format!("need 0 < from ≤ to ≤ the log's size (got {from} and {to})"))
            })?;
            Ok(Json(json!({"consistency": p})))
        }
        _ => Err(ApiError::bad_request("give seq (an inclusion proof) or from (a consistency proof), not both")),
    }
}

/// Parse a query string into `T`, with a clear 400.
fn serde_urlencoded_query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    let pairs: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| {
            let n = v
                .parse::<u64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| serde_json::Value::String(v.into_owned()));
            (k.into_owned(), n)
        })
        .collect();
    serde_json::from_value(serde_json::Value::Object(pairs))
        .map_err(|_| ApiError::bad_request("parameters must be whole numbers: seq and size, or from and to"))
}

async fn openapi() -> Response {
    let doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "Confidant management API", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/api/v1/session": {
                "post": {"summary": "Log in (username, password, TOTP or recovery code); client cookie|bearer", "responses": {"200": {"description": "session"}, "401": {"description": "invalid credentials"}, "429": {"description": "throttled"}}},
                "delete": {"summary": "Log out", "responses": {"204": {"description": "logged out"}}}
            },
            "/api/v1/me": {"get": {"summary": "Who am I", "responses": {"200": {"description": "principal"}}}},
            "/api/v1/sessions": {"get": {"summary": "My live sessions (admin: ?user=ID)", "responses": {"200": {"description": "sessions"}}}},
            "/api/v1/sessions/{id}": {"delete": {"summary": "Revoke a session (own; admin: any)", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {"204": {"description": "revoked"}, "404": {"description": "no such session"}}}},
            "/api/v1/mfa/totp": {"post": {"summary": "Begin TOTP enrolment", "responses": {"200": {"description": "secret and QR code"}}}},
            "/api/v1/mfa/totp/confirm": {"post": {"summary": "Confirm TOTP with a first code; returns recovery codes and a new session (the enrolment session's token ends)", "responses": {"200": {"description": "recovery codes, and the new session: token (bearer) or csrf_token and cookie"}}}},
            "/api/v1/enrol": {"post": {"summary": "Create an account with an enrolment code", "responses": {"201": {"description": "created"}}}},
            "/api/v1/break-glass": {"post": {"summary": "Open a patient outside one's care teams, with a reason (clinicians)", "responses": {"201": {"description": "opened, time-limited"}}}},
            "/api/v1/alerts": {"get": {"summary": "The detector's alerts, newest first (admins, auditors)", "parameters": [{"name": "status", "in": "query", "schema": {"type": "string", "enum": ["open", "all"]}}, {"name": "_count", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "alerts"}, "403": {"description": "not an admin or auditor"}}}},
            "/api/v1/alerts/{id}/acknowledge": {"post": {"summary": "Acknowledge an open alert (admins, auditors); audited", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {"200": {"description": "the acknowledged alert"}, "404": {"description": "no such open alert"}}}},
            "/api/v1/audit/checkpoint": {"get": {"summary": "The latest signed audit checkpoint and the public key (auditors)", "responses": {"200": {"description": "checkpoint"}, "404": {"description": "none signed yet"}}}},
            "/api/v1/audit/proof": {"get": {"summary": "RFC 9162 inclusion (?seq=N[&size=M]) or consistency (?from=A[&to=B]) proof (auditors)", "parameters": [{"name": "seq", "in": "query", "schema": {"type": "integer"}}, {"name": "size", "in": "query", "schema": {"type": "integer"}}, {"name": "from", "in": "query", "schema": {"type": "integer"}}, {"name": "to", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "proof"}, "400": {"description": "bad sizes"}}}}
        }
    });
    Json(doc).into_response()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    #[test]
    fn ipv6_clients_are_throttled_per_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            super::throttle_source(ip("2001:db8:1:2:aaaa::1")),
            super::throttle_source(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(super::throttle_source(ip("2001:db8:1:2::1")), super::throttle_source(ip("2001:db8:1:3::1")));
        assert_eq!(super::throttle_source(ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(super::throttle_source(ip("::ffff:192.0.2.7")), "192.0.2.7");
    }
}
