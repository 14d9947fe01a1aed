//! Passkeys (WebAuthn) as the stronger second factor: signing in with one
//! (password, then the passkey instead of the authenticator code), and a page
//! where staff add and remove theirs. The ceremonies need a little script
//! (`/static/app.js` calls `navigator.credentials`); without it, or without
//! passkeys, the password and authenticator code work as before.
//!
//! The JSON endpoints accept `application/json` only, so a cross-site form
//! cannot reach them (a browser sends JSON cross-site only after a CORS
//! preflight, which we never answer); the registration ones also need the
//! session's CSRF token.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use confidant_identity::{IdentityError, SessionKind};
use confidant_policy::Role;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CSRF_COOKIE, CsrfForm, Lang, SignedIn, Visitor};
use crate::AppState;
use crate::auth::{SESSION_COOKIE, cookie_header};

/// Passkeys are a second factor: for the accounts that have one (staff).
const STAFF: &[Role] = &[Role::Clinician, Role::Reception, Role::Admin, Role::Auditor];

/// A JSON refusal the page's script shows as it is.
fn refusal(lang: Lang, e: &IdentityError) -> Response {
    let (status, text) = match e {
        IdentityError::Invalid(m) | IdentityError::Conflict(m) => (StatusCode::BAD_REQUEST, m.clone()),
        IdentityError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
        IdentityError::Throttled { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            lang.t("Too many attempts. Wait a few minutes, or ask an administrator to unlock the account.").to_owned(),
        ),
        IdentityError::BadCredentials => {
            (StatusCode::UNAUTHORIZED, lang.t("Wrong username, password or passkey.").to_owned())
        }
        other => {
            tracing::error!(error = %other, "a passkey step failed");
            (StatusCode::SERVICE_UNAVAILABLE, lang.t("Try again").to_owned())
        }
    };
    (status, Json(json!({ "error": text }))).into_response()
}

/// A passkey sign-in begins: options naming no account. The body is an
/// empty JSON object (JSON, so no cross-site form can post here).
pub(super) async fn login_begin(State(state): State<AppState>, v: Visitor, Json(_): Json<Value>) -> Response {
    match state.identity.passkey_challenge() {
        Ok((handle, options)) => Json(json!({ "handle": handle, "options": options })).into_response(),
        Err(e) => refusal(v.lang, &e),
    }
}

#[derive(Deserialize)]
pub(super) struct LoginFinish {
    handle: String,
    answer: Value,
    username: String,
    password: String,
}

/// The password and the passkey's answer together, in one step: a wrong
/// password and a wrong passkey get the same answer.
pub(super) async fn login_finish(
    State(state): State<AppState>,
    crate::client::ClientAddr(peer): crate::client::ClientAddr,
    v: Visitor,
    Json(b): Json<LoginFinish>,
) -> Response {
    let source = crate::api::throttle_source(peer);
    let signed_in =
        state.identity.login_with_passkey(&b.username, &b.password, &b.handle, &b.answer, &source, SessionKind::Cookie);
    match signed_in.await {
        Ok(login) => {
            let max_age = ((login.expires_at - state.records.now_millis()) / 1000).max(0);
            let mut r = Json(json!({ "next": "/" })).into_response();
            let csrf = login.csrf_token.as_deref().unwrap_or("");
            for (name, value) in [(SESSION_COOKIE, login.token.as_str()), (CSRF_COOKIE, csrf)] {
                r.headers_mut().append(header::SET_COOKIE, cookie_header(name, value, max_age, state.secure_cookies));
            }
            r
        }
        Err(e) => refusal(v.lang, &e),
    }
}

/// The signed-in user's passkeys: add one, remove one.
pub(super) async fn page(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(STAFF) {
        return r;
    }
    let l = me.lang;
    let list = match state.identity.passkey_list(&me.auth.principal.user_id).await {
        Ok(list) => list,
        Err(e) => return me.identity_error(e),
    };
    me.page(
        l.t("Passkeys"),
        html! {
            p { (l.t("A passkey on this device or a security key signs you in instead of the authenticator code: nothing to type, and it works only on this site. Keep the authenticator app: it is your way back in if a passkey is lost.")) }
            @if list.is_empty() { p { (l.t("No passkeys yet.")) } }
            @else {
                table.log {
                    thead { tr {
                        th scope="col" { (l.t("Name")) } th scope="col" { (l.t("Added")) }
                        th scope="col" { (l.t("Last used")) } th scope="col" { (l.t("Actions")) }
                    } }
                    tbody {
                        @for k in &list {
                            tr {
                                td { (k.label) }
                                td { (me.time_ms(k.created_at)) }
                                td { (k.last_used_at.map(|ms| me.time_ms(ms)).unwrap_or_else(|| "—".to_owned())) }
                                td.actions {
                                    form.inline method="post" action={ "/me/passkeys/" (k.id) "/remove" } {
                                        (me.csrf_field())
                                        button.small type="submit" aria-label={ (l.t("Remove")) " " (k.label) } { (l.t("Remove")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if state.identity.passkeys_enabled() {
                section {
                    h2 { (l.t("Add a passkey")) }
                    form.card #passkey-form {
                        (me.csrf_field())
                        label for="passkey-label" { (l.t("Name it (e.g. work laptop)")) }
                        input id="passkey-label" name="label" maxlength="100" required autocomplete="off";
                        label for="passkey-code" { (l.t("Code from your authenticator app (or a recovery code)")) }
                        input id="passkey-code" name="code" inputmode="numeric" autocomplete="one-time-code" required;
                        button #passkey-add.hidden type="button" { (l.t("Add a passkey")) }
                        p.muted.js-only { (l.t("Adding a passkey needs JavaScript and a browser that supports passkeys.")) }
                    }
                    p #passkey-status.notice.hidden role="alert" {}
                }
            } @else {
                p.muted { (l.t("Passkeys are off on this server: the administrator sets server.public_url to the clinic's https address.")) }
            }
        },
    )
}

/// Registration is for staff, from their signed-in page (its CSRF token).
fn refuse_json(me: &SignedIn, csrf: &str) -> Option<Response> {
    if let Some(r) = me.only_for(STAFF) {
        return Some(r);
    }
    let text = me.lang.t("This form has expired. Reload the page and try again.");
    (!me.csrf_ok(csrf)).then(|| (StatusCode::FORBIDDEN, Json(json!({ "error": text }))).into_response())
}

#[derive(Deserialize)]
pub(super) struct RegisterBegin {
    #[serde(default)]
    csrf: String,
    /// A fresh code from the authenticator app (or a recovery code).
    #[serde(default)]
    code: String,
}

pub(super) async fn register_begin(
    State(state): State<AppState>,
    me: SignedIn,
    Json(b): Json<RegisterBegin>,
) -> Response {
    if let Some(r) = refuse_json(&me, &b.csrf) {
        return r;
    }
    match state.identity.passkey_register_begin(&me.auth, &b.code).await {
        Ok((handle, options)) => Json(json!({ "handle": handle, "options": options })).into_response(),
        Err(e) => refusal(me.lang, &e),
    }
}

#[derive(Deserialize)]
pub(super) struct RegisterFinish {
    #[serde(default)]
    csrf: String,
    handle: String,
    label: String,
    answer: Value,
}

pub(super) async fn register_finish(
    State(state): State<AppState>,
    me: SignedIn,
    Json(b): Json<RegisterFinish>,
) -> Response {
    if let Some(r) = refuse_json(&me, &b.csrf) {
        return r;
    }
    match state.identity.passkey_register_finish(&me.auth, &b.handle, &b.answer, &b.label).await {
        Ok(id) => Json(json!({ "id": id, "next": "/me/passkeys" })).into_response(),
        Err(e) => refusal(me.lang, &e),
    }
}

pub(super) async fn remove(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(r) = me.refuse_post(STAFF, &f.csrf, "Nothing was changed.") {
        return r;
    }
    match state.identity.passkey_remove(&me.auth, &id).await {
        Ok(()) => Redirect::to("/me/passkeys").into_response(),
        Err(e) => me.identity_error(e),
    }
}
