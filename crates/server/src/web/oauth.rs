//! The SMART consent page (`/oauth/authorize`, RFC 6749 §4.1.1 with PKCE):
//! the signed-in user (second factor done: [`SignedIn`] sends everyone else
//! to sign in, and back here after it) sees which app asks for what, and
//! what their role lets it have; a yes (a form with the session's CSRF
//! token) sends the browser back to the app with a single-use code.
//!
//! Until the app and its redirect URI are known to match, an error is this
//! page's and is never sent anywhere (§4.1.2.1); after that, errors go back
//! to the app as `error=…&state=…` on its redirect URI.

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confidant_identity::smart::{Grant, OAuthError, is_code_challenge, uri_origin};
use confidant_policy::Role;
use confidant_store::SmartAppRow;
use maud::html;
use serde::Deserialize;

use super::{SignedIn, Visitor, i18n};
use crate::AppState;

/// Longest `state` echoed back to an app (it is the app's own value; a
/// longer one is refused rather than cut).
const MAX_STATE: usize = 512;

/// An authorization request, as the app sends it (GET) and the consent
/// form carries it back (POST).
#[derive(Deserialize, Default, Clone)]
pub(super) struct AuthorizeRequest {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    state: Option<String>,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    aud: String,
}

#[derive(Deserialize)]
pub(super) struct ConsentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(flatten)]
    request: AuthorizeRequest,
}

/// Where the app is sent back to: its redirect URI with `params` added.
fn back_to_app(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    match HeaderValue::from_str(&format!("{redirect_uri}{sep}{query}")) {
        Ok(to) => (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(),
        // Not reachable: registered redirect URIs are printable ASCII, the query is encoded.
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// An error sent back to the app (after its redirect URI is known good), with its `state`.
fn error_to_app(r: &AuthorizeRequest, e: &OAuthError) -> Response {
    let mut params = vec![("error", e.error), ("error_description", e.description.as_str())];
    if let Some(s) = r.state.as_deref().filter(|s| s.len() <= MAX_STATE) {
        params.push(("state", s));
    }
    back_to_app(&r.redirect_uri, &params)
}

/// The checks of a request whose app and redirect URI are good; what the
/// user would give. An error here goes back to the app.
fn check_request(
    state: &AppState,
    me: &SignedIn,
    app: &SmartAppRow,
    r: &AuthorizeRequest,
) -> Result<Grant, OAuthError> {
    let invalid = |why: &str| Err(OAuthError::new("invalid_request", why));
    if r.response_type != "code" {
        return Err(OAuthError::new("unsupported_response_type", "only response_type=code is served"));
    }
    if r.state.as_deref().is_some_and(|s| s.len() > MAX_STATE) {
        return invalid("state is longer than 512 characters");
    }
    if r.code_challenge_method != "S256" {
        return invalid("PKCE is required with code_challenge_method=S256 (plain is refused)");
    }
    if !is_code_challenge(&r.code_challenge) {
        return invalid("code_challenge must be the 43 base64url characters of an S256 challenge");
    }
    let fhir_base = format!("{}/fhir/r4", state.base_url.trim_end_matches('/'));
    if r.aud.trim_end_matches('/') != fhir_base {
        return invalid("aud must be this server's FHIR base URL (see /.well-known/smart-configuration)");
    }
    state.identity.grant_for(&me.auth.principal, app, &r.scope)
}

/// This page's own answer when the app or its redirect URI is not known
/// (never sent to the app): the status and the text.
fn unknown_app(l: super::Lang, e: &OAuthError) -> (StatusCode, &'static str) {
    match e.error {
        "invalid_client" => (StatusCode::BAD_REQUEST, l.t("This app is not registered here. Ask your administrator.")),
        "invalid_request" => (
            StatusCode::BAD_REQUEST,
            l.t("The app asked to send you to an address not registered for it, so it was not sent there."),
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            l.t("Something went wrong; nothing was shown or changed. Try again in a moment."),
        ),
    }
}

/// The signed-in user, or off to sign in and back here.
async fn signed_in(parts: &mut Parts, state: &AppState) -> Result<SignedIn, Response> {
    match SignedIn::from_request_parts(parts, state).await {
        Ok(me) => Ok(me),
        Err(r) if r.headers().get(header::LOCATION).is_some_and(|l| l == "/login") => {
            let here = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or(crate::oauth::AUTHORIZE);
            let next = form_urlencoded::Serializer::new(String::new()).append_pair("next", here).finish();
            match HeaderValue::from_str(&format!("/login?{next}")) {
                Ok(to) => Err((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()),
                Err(_) => Err(r),
            }
        }
        Err(r) => Err(r),
    }
}

pub(super) async fn authorize(
    State(state): State<AppState>,
    mut parts: Parts,
    v: Visitor,
    q: Result<Query<AuthorizeRequest>, QueryRejection>,
) -> Response {
    let l = v.lang;
    let Ok(Query(r)) = q else {
        return v.message(
            StatusCode::BAD_REQUEST,
            l.t("App authorization"),
            l.t("The app's request could not be read (a parameter is missing, repeated or malformed)."),
        );
    };
    // The app and its redirect URI first: a link naming neither leads nowhere, not even to sign in.
    let app = match state.identity.app_for_redirect(&r.client_id, &r.redirect_uri).await {
        Ok(app) => app,
        Err(e) => {
            let (status, text) = unknown_app(l, &e);
            return v.message(status, l.t("App authorization"), text);
        }
    };
    let me = match signed_in(&mut parts, &state).await {
        Ok(me) => me,
        Err(resp) => return resp,
    };
    match check_request(&state, &me, &app, &r) {
        Ok(grant) => consent_page(&me, &app, &r, &grant),
        Err(e) => error_to_app(&r, &e),
    }
}

fn consent_page(me: &SignedIn, app: &SmartAppRow, r: &AuthorizeRequest, grant: &Grant) -> Response {
    let l = me.lang;
    let scopes = grant.granted.to_string();
    let hidden = [
        ("response_type", r.response_type.as_str()),
        ("client_id", r.client_id.as_str()),
        ("redirect_uri", r.redirect_uri.as_str()),
        ("scope", r.scope.as_str()),
        ("code_challenge", r.code_challenge.as_str()),
        ("code_challenge_method", r.code_challenge_method.as_str()),
        ("aud", r.aud.as_str()),
    ];
    let mut resp = me.page(
        l.t("App authorization"),
        html! {
            section.card {
                h2 { (app.name) }
                p { (l.t("This app asks to use Confidant as you, with what your role allows:")) " " strong { (i18n::role_name(l, me.role())) } }
                ul.codes { @for s in scopes.split(' ') { li { code { (s) } } } }
                @if grant.narrowed() || !grant.requested.ignored.is_empty() {
                    p.muted { (l.t("It asked for more than it gets here; the rest is left out.")) }
                }
                p.muted { (l.t("It gets a token that lasts an hour. Every record it opens is in the audit log as opened by you; an administrator can revoke the token.")) }
                form method="post" action=(crate::oauth::AUTHORIZE) {
                    (me.csrf_field())
                    @for (name, value) in hidden { input type="hidden" name=(name) value=(value); }
                    @if let Some(s) = &r.state { input type="hidden" name="state" value=(s); }
                    div.buttons {
                        button type="submit" name="decision" value="allow" { (l.t("Allow")) }
                        button.secondary type="submit" name="decision" value="deny" { (l.t("Deny")) }
                    }
                }
            }
        },
    );
    // The form goes to this server, which sends the browser on to the app:
    // the page's CSP lets a form go there (its registered origin) and nowhere else.
    if let Some(origin) = uri_origin(&r.redirect_uri)
        && let Ok(csp) = HeaderValue::from_str(
            &super::PAGE_CSP.replace("form-action 'self'", &format!("form-action 'self' {origin}")),
        )
    {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    resp
}

pub(super) async fn decide(State(state): State<AppState>, me: SignedIn, Form(f): Form<ConsentForm>) -> Response {
    if let Some(resp) = me.refuse_post(&Role::ALL, &f.csrf, "Nothing was changed.") {
        return resp;
    }
    let r = &f.request;
    let app = match state.identity.app_for_redirect(&r.client_id, &r.redirect_uri).await {
        Ok(app) => app,
        Err(e) => {
            let (status, text) = unknown_app(me.lang, &e);
            return me.message(status, me.lang.t("App authorization"), text);
        }
    };
    let grant = match check_request(&state, &me, &app, r) {
        Ok(g) => g,
        Err(e) => return error_to_app(r, &e),
    };
    if f.decision != "allow" {
        return error_to_app(r, &OAuthError::new("access_denied", "the user did not allow it"));
    }
    match state.identity.issue_code(&me.auth.principal, &app, &r.redirect_uri, &r.code_challenge, &grant).await {
        Ok(code) => {
            let mut params = vec![("code", code.as_str())];
            if let Some(s) = r.state.as_deref() {
                params.push(("state", s));
            }
            back_to_app(&r.redirect_uri, &params)
        }
        Err(e) => error_to_app(r, &e),
    }
}
