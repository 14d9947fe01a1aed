//! Signing in (password and a second factor), enrolling the authenticator
//! (QR code and recovery codes), creating an account with an enrolment code,
//! and signing out.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use confidant_identity::SessionKind;
use maud::html;
use serde::Deserialize;

use super::{CSRF_COOKIE, CsrfForm, Visitor, session_of};
use crate::AppState;
use crate::auth::{SESSION_COOKIE, cookie, cookie_header};

/// The cookie that ties the sign-in form to the browser that loaded it
/// (double submit): a page on another site cannot sign a victim's browser
/// into the attacker's account (login CSRF).
const LOGIN_COOKIE: &str = "confidant_login";

/// Where a sign-in continues: only the SMART consent page (an app's request
/// waiting for it), a path of ours in printable ASCII; anywhere else is `/`.
fn next_after_sign_in(next: &str) -> Option<&str> {
    (next.starts_with(&format!("{}?", crate::oauth::AUTHORIZE))
        && next.len() <= 8192
        && next.bytes().all(|b| (0x21..=0x7e).contains(&b)))
    .then_some(next)
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: String,
}

pub(super) async fn login_page(
    State(state): State<AppState>,
    v: Visitor,
    next: Result<axum::extract::Query<NextQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = next.ok().and_then(|q| next_after_sign_in(&q.next).map(str::to_owned));
    let l = v.lang;
    let passkeys = state.identity.passkeys_enabled();
    let Ok(token) = confidant_vault::random_id() else {
        return v.message(StatusCode::SERVICE_UNAVAILABLE, l.t("Try again"), l.t("Try again"));
    };
    let mut r = v.page(
        l.t("Sign in"),
        html! {
            form.card method="post" action="/login" {
                input type="hidden" name="form" value=(token);
                @if let Some(next) = &next { input type="hidden" name="next" value=(next); }
                label for="username" { (l.t("Username")) }
                input id="username" name="username" autocomplete="username" required;
                label for="password" { (l.t("Password")) }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                label for="code" { (l.t("Authenticator code (or a recovery code)")) }
                input id="code" name="code" inputmode="numeric" autocomplete="one-time-code";
                div.buttons {
                    button type="submit" { (l.t("Sign in")) }
                    @if passkeys { button #passkey-login.secondary.hidden type="button" { (l.t("Sign in with a passkey instead of the code")) } }
                }
            }
            p #passkey-status.notice.hidden role="alert" {}
            p.muted { (l.t("New here with an enrolment code from your administrator?")) " " a href="/enrol" { (l.t("Create your account")) } }
        },
    );
    r.headers_mut().append(header::SET_COOKIE, cookie_header(LOGIN_COOKIE, &token, 3600, state.secure_cookies));
    r
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    /// The token of the form, the same as the browser's `confidant_login` cookie.
    #[serde(default)]
    form: String,
    username: String,
    password: String,
    #[serde(default)]
    code: String,
    /// Where to continue ([`next_after_sign_in`]).
    #[serde(default)]
    next: String,
}

pub(super) async fn login(
    State(state): State<AppState>,
    crate::client::ClientAddr(peer): crate::client::ClientAddr,
    headers: HeaderMap,
    v: Visitor,
    Form(f): Form<LoginForm>,
) -> Response {
    let l = v.lang;
    let same_browser =
        cookie(&headers, LOGIN_COOKIE).is_some_and(|c| confidant_vault::secrets_equal(c.as_bytes(), f.form.as_bytes()));
    if !same_browser {
        // Not counted as a failed sign-in: no password was tried.
        return v.message(
            StatusCode::FORBIDDEN,
            l.t("Sign in"),
            l.t("This form has expired. Reload the page and try again."),
        );
    }
    let code = Some(f.code.trim()).filter(|c| !c.is_empty());
    let source = crate::api::throttle_source(peer);
    match state.identity.login(&f.username, &f.password, code, &source, SessionKind::Cookie).await {
        Ok(login) => {
            let to = if login.mfa_enrolment_required { "/mfa" } else { next_after_sign_in(&f.next).unwrap_or("/") };
            let mut r = Redirect::to(to).into_response();
            set_session_cookies(&mut r, &state, &login);
            r.headers_mut().append(header::SET_COOKIE, cookie_header(LOGIN_COOKIE, "", 0, state.secure_cookies));
            r
        }
        Err(confidant_identity::IdentityError::Throttled { .. }) => v.message(
            StatusCode::TOO_MANY_REQUESTS,
            l.t("Sign in"),
            l.t("Too many attempts. Wait a few minutes, or ask an administrator to unlock the account."),
        ),
        Err(_) => v.message(StatusCode::UNAUTHORIZED, l.t("Sign in"), l.t("Wrong username, password or code.")),
    }
}

/// Hand the browser a new session: its token and CSRF cookies.
fn set_session_cookies(r: &mut Response, state: &AppState, login: &confidant_identity::Login) {
    let max_age = ((login.expires_at - state.records.now_millis()) / 1000).max(0);
    let csrf = login.csrf_token.as_deref().unwrap_or("");
    for (name, value) in [(SESSION_COOKIE, login.token.as_str()), (CSRF_COOKIE, csrf)] {
        r.headers_mut().append(header::SET_COOKIE, cookie_header(name, value, max_age, state.secure_cookies));
    }
}

pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    v: Visitor,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(auth) = session_of(&state, &headers).await
        && let Some(s) = &auth.session
    {
        if !confidant_identity::Identity::csrf_matches(s, &f.csrf) {
            let l = v.lang;
            return v.message(
                StatusCode::FORBIDDEN,
                l.t("Not allowed"),
                l.t("This form has expired. Reload the page and try again."),
            );
        }
        let _ = state.identity.logout(s).await;
    }
    let mut r = Redirect::to("/login").into_response();
    for c in [SESSION_COOKIE, CSRF_COOKIE] {
        r.headers_mut().append(header::SET_COOKIE, cookie_header(c, "", 0, state.secure_cookies));
    }
    r
}

pub(super) async fn mfa_page(State(state): State<AppState>, headers: HeaderMap, v: Visitor) -> Response {
    let l = v.lang;
    let Some(auth) = session_of(&state, &headers).await else { return Redirect::to("/login").into_response() };
    if auth.session.as_ref().is_some_and(|s| s.mfa_done) {
        return Redirect::to("/").into_response();
    }
    let csrf = cookie(&headers, CSRF_COOKIE).unwrap_or("").to_owned();
    match state.identity.totp_begin(&auth.principal.user_id).await {
        Ok(e) => v.page(
            l.t("Set up your authenticator"),
            html! {
                p { (l.t("Scan this code with an authenticator app, or type the secret, then enter the code it shows.")) }
                figure.qr { (maud::PreEscaped(e.qr_svg)) }
                p { (l.t("Secret:")) " " code #secret { (e.secret_base32) } }
                form.card method="post" action="/mfa" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="code" { (l.t("Code from the app")) }
                    input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required;
                    button type="submit" { (l.t("Confirm")) }
                }
            },
        ),
        Err(e) => v.message(StatusCode::CONFLICT, l.t("Second factor"), &e.to_string()),
    }
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    csrf: String,
    code: String,
}

pub(super) async fn mfa_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    v: Visitor,
    Form(f): Form<CodeForm>,
) -> Response {
    let l = v.lang;
    let Some(auth) = session_of(&state, &headers).await else { return Redirect::to("/login").into_response() };
    if !auth.session.as_ref().is_some_and(|s| confidant_identity::Identity::csrf_matches(s, &f.csrf)) {
        return v.message(
            StatusCode::FORBIDDEN,
            l.t("Not allowed"),
            l.t("This form has expired. Reload the page and try again."),
        );
    }
    match state.identity.totp_confirm(&auth.principal.user_id, auth.session.as_ref(), f.code.trim()).await {
        Ok(done) => {
            let mut r = v.page(
                l.t("Recovery codes"),
                html! {
                    p { (l.t("Your authenticator is set up. Keep these one-time recovery codes somewhere safe, apart from your phone: each opens your account once if the phone is lost.")) }
                    ul.codes { @for c in &done.recovery_codes { li { code { (c) } } } }
                    p { a.button href="/" { (l.t("Continue")) } }
                },
            );
            // The enrolment session has ended; the browser carries on with a new one.
            if let Some(login) = &done.session {
                set_session_cookies(&mut r, &state, login);
            }
            r
        }
        Err(e) => v.message(StatusCode::BAD_REQUEST, l.t("Second factor"), &e.to_string()),
    }
}

/// Create an account with a one-time enrolment code from an administrator.
/// Needs no session (the code is the authority); the username and password
/// are checked before the code is used up.
pub(super) async fn enrol_page(v: Visitor) -> Response {
    let l = v.lang;
    v.page(
        l.t("Create your account"),
        html! {
            form.card method="post" action="/enrol" {
                label for="code" { (l.t("Enrolment code")) }
                input id="code" name="code" required autocomplete="off";
                label for="username" { (l.t("Choose a username")) }
                input id="username" name="username" autocomplete="username" required;
                label for="password" { (l.t("Choose a password (at least 12 characters)")) }
                input id="password" name="password" type="password" autocomplete="new-password" required minlength="12";
                button type="submit" { (l.t("Create account")) }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct EnrolForm {
    code: String,
    username: String,
    password: String,
}

pub(super) async fn enrol(State(state): State<AppState>, v: Visitor, Form(f): Form<EnrolForm>) -> Response {
    let l = v.lang;
    match state.identity.enrol(&f.code, &f.username, &f.password).await {
        Ok(_) => v.page(
            l.t("Account created"),
            html! {
                p { (l.t("Your account is ready. Sign in, then set up your authenticator app.")) }
                p { a.button href="/login" { (l.t("Sign in")) } }
            },
        ),
        Err(confidant_identity::IdentityError::Invalid(m) | confidant_identity::IdentityError::Conflict(m)) => {
            v.message(StatusCode::BAD_REQUEST, l.t("Please check the form"), &m)
        }
        Err(confidant_identity::IdentityError::Forbidden(_)) => v.message(
            StatusCode::FORBIDDEN,
            l.t("Create your account"),
            l.t("The enrolment code is unknown, used or expired. Ask your administrator for a new one."),
        ),
        Err(e) => {
            tracing::error!(error = %e, "enrolment failed");
            v.message(
                StatusCode::SERVICE_UNAVAILABLE,
                l.t("Try again"),
                l.t("Something went wrong; nothing was shown or changed. Try again in a moment."),
            )
        }
    }
}
