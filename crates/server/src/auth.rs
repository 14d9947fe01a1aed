//! Authentication middleware: who is calling, and is a cookie-borne change
//! really theirs (CSRF). Puts an [`Authenticated`] into the request.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use confidant_fhir::IssueType;
use confidant_identity::{Authenticated, Identity, IdentityError};

use crate::{ApiError, AppState};

/// The session cookie's name. `__Host-` would pin it to HTTPS; the name is
/// kept plain so that a loopback HTTP demo works, and `Secure` is set when
/// the server is reached over HTTPS.
pub const SESSION_COOKIE: &str = "confidant_session";
/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A `Set-Cookie` value as every cookie of ours is set: whole site, script
/// cannot read it, never sent cross-site, `Secure` behind HTTPS. Max-Age 0 deletes.
pub(crate) fn cookie_header(name: &str, value: &str, max_age_secs: i64, secure: bool) -> axum::http::HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    axum::http::HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or(axum::http::HeaderValue::from_static("invalid=1"))
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty() && t.len() < 200)
}

pub(crate) fn cookie<'a>(req: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    req.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() < 200)
}

/// Paths a session may use before its second factor is enrolled.
fn enrolment_path(path: &str) -> bool {
    path.starts_with("/api/v1/mfa/") || path == "/api/v1/session" || path == "/api/v1/me"
}

/// Middleware: authenticate, enforce MFA enrolment and CSRF, or refuse.
pub(crate) async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (token, via_cookie) = match bearer(&req) {
        Some(t) => (t.to_owned(), false),
        // The cookie carries login sessions only: an API token there would
        // dodge the CSRF check below.
        None => match cookie(req.headers(), SESSION_COOKIE).filter(|t| t.starts_with("cns_")) {
            Some(t) => (t.to_owned(), true),
            None => return ApiError::unauthorized().into_response(),
        },
    };
    let mut auth: Authenticated = match state.identity.authenticate(&token).await {
        Ok(a) => a,
        Err(IdentityError::Unauthenticated) => return ApiError::unauthorized().into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Some(session) = &auth.session {
        // Inside a nested router the URI is shortened; the original is whole.
        let path = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|| req.uri().path().to_owned());
        if !session.mfa_done && !enrolment_path(&path) {
            return ApiError::from(IdentityError::MfaEnrolmentRequired).into_response();
        }
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if via_cookie && !safe {
            let csrf = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !Identity::csrf_matches(session, csrf) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    IssueType::Security,
                    "missing or wrong CSRF token: send the session's token in the X-CSRF-Token header",
                )
                .into_response();
            }
        }
    }
    // "From where", for the audit log.
    auth.principal.source = req
        .extensions()
        .get::<crate::client::ClientAddr>()
        .map(|c| state.identity.source_of(&auth.principal, &c.0.to_string()));
    req.extensions_mut().insert(auth);
    next.run(req).await
}
