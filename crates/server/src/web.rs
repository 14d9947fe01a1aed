//! The web UI: server-rendered with maud (every value escaped), no inline
//! script or style (the CSP forbids them), every form carries the session's
//! CSRF token. Pages go through the same records service, identity service and
//! policy as the API: a page decides nothing itself.
//!
//! This file holds what every page shares: the routes, the layout, the
//! signed-in extractor and the refusals. The pages are in `web/`:
//! `sign_in` (password, TOTP enrolment, sign-out, enrolment codes), `clinical`
//! (patients, chart, notes, break-glass), `front_desk` (register), `booking`
//! (book one or a series), `calendar` (day and week, cancel, no-show,
//! reschedule), `hours` (working hours), `portal` (the patient's access log and data), `admin` (accounts,
//! tokens, care teams, keys, posture, alerts) and `audit` (audit search,
//! incident report). Texts are English, or Finnish from `i18n`.

mod admin;
mod appointments;
// SMART App Launch: the apps page (admins).
mod apps;
mod audit;
mod booking;
mod calendar;
mod clinical;
mod front_desk;
mod hours;
pub(crate) mod i18n;
mod measures;
// SMART App Launch: the consent page.
mod oauth;
mod passkeys;
// phishing drills
mod phishing;
mod portal;
mod sign_in;
mod templates;
// Staff security training.
mod training;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use confidant_identity::Authenticated;
use confidant_policy::Role;
use confidant_records::RecordsError;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{SESSION_COOKIE, cookie, cookie_header};
pub(crate) use i18n::Lang;

/// The cookie that carries the session's CSRF token to the server-rendered forms.
const CSRF_COOKIE: &str = "confidant_csrf";
/// The page CSP: our own origin only; no inline script or style, no framing.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The idle timeout of browser sessions, in seconds, for the page's warning
/// (a server setting, fixed when the router is built).
static IDLE_SECONDS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let _ = IDLE_SECONDS.set(state.identity.settings().idle_timeout_ms / 1000);
    Router::new()
        .route("/", get(home))
        .route("/static/app.css", get(css))
        .route("/static/icon.svg", get(icon))
        .route("/static/app.js", get(js))
        .route("/lang", get(set_language))
        .route("/login", get(sign_in::login_page).post(sign_in::login))
        .route("/logout", post(sign_in::logout))
        .route("/mfa", get(sign_in::mfa_page).post(sign_in::mfa_confirm))
        .route("/enrol", get(sign_in::enrol_page).post(sign_in::enrol))
        .route(SCRIPT_ENDPOINTS[0], post(passkeys::login_begin))
        .route(SCRIPT_ENDPOINTS[1], post(passkeys::login_finish))
        .route("/me/passkeys", get(passkeys::page))
        .route(SCRIPT_ENDPOINTS[2], post(passkeys::register_begin))
        .route(SCRIPT_ENDPOINTS[3], post(passkeys::register_finish))
        .route("/me/passkeys/{id}/remove", post(passkeys::remove))
        .route("/patients", get(clinical::patients))
        .route("/patients/{id}", get(clinical::chart))
        .route("/patients/{id}/notes", post(clinical::write_note))
        .route("/patients/{id}/break-glass", post(clinical::break_glass))
        .route("/notes/{id}", get(clinical::note).post(clinical::save_note))
        .route("/notes/{id}/edit", get(clinical::edit_note))
        .route("/notes/{id}/history", get(clinical::note_history))
        .route("/notes/{id}/sign", post(clinical::sign_note))
        .route("/notes/{id}/addenda", post(clinical::add_addendum))
        .route("/schedule", get(calendar::schedule))
        .route("/calendar", get(calendar::calendar))
        .route("/appointments/{id}/cancel", post(calendar::cancel))
        .route("/appointments/{id}/no-show", post(calendar::no_show))
        .route("/appointments/{id}/reschedule", post(calendar::reschedule))
        .route("/patients/{id}/appointments", post(booking::book))
        .route("/register", get(front_desk::register_page).post(front_desk::register))
        .route("/admin", get(admin::alerts))
        .route("/admin/accounts", get(admin::accounts).post(admin::invite))
        .route("/admin/accounts/{id}", post(admin::change_account))
        .route("/admin/tokens", get(admin::tokens).post(admin::create_token))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/admin/care-teams", get(admin::care_teams).post(admin::add_to_care_team))
        .route("/admin/care-teams/{id}/remove", post(admin::remove_from_care_team))
        .route("/admin/hours", get(hours::page).post(hours::save))
        .route("/admin/keys", get(admin::keys))
        .route("/admin/posture", get(admin::posture))
        .route("/alerts/{id}/acknowledge", post(admin::acknowledge))
        // --- note templates, supervision, co-sign ---
        .route("/admin/templates", get(templates::templates_page).post(templates::create_template))
        .route("/admin/templates/{id}", get(templates::edit_template).post(templates::save_template))
        .route("/admin/supervision", get(templates::supervision_page).post(templates::set_supervision))
        .route("/cosign", get(templates::to_cosign))
        .route("/notes/{id}/cosign", post(templates::cosign))
        .route("/audit", get(audit::search))
        .route("/audit/incident", get(audit::incident_page))
        .route("/audit/incident/report", get(audit::incident_report))
        .route("/me/access-log", get(portal::access_log))
        .route("/me/data", get(portal::my_data))
        .route("/me/appointments", get(appointments::mine))
        .route("/me/appointments/{id}/cancel", post(appointments::cancel_mine))
        .route("/cancel/{token}", get(appointments::link_page).post(appointments::link_cancel))
        // --- outcome measures ---
        .route("/me/measures", get(measures::pending))
        .route("/patients/{id}/measures", post(measures::send))
        .route("/measures/{id}", get(measures::form).post(measures::answer))
        .route("/observations/{id}/acknowledge", post(measures::acknowledge))
        // --- staff security training ---
        .route("/training", get(training::mine))
        .route("/training/{key}", get(training::module).post(training::answer))
        .route("/admin/training", get(training::coverage))
        .route("/admin/training.csv", get(training::coverage_csv))
        .route("/admin/training/evidence", get(training::evidence))
        // --- phishing drills ---
        .route("/p/{id}", get(phishing::link).post(phishing::submitted))
        .route("/report", get(phishing::report_page).post(phishing::report))
        .route("/me/phishing", get(phishing::mine))
        .route("/admin/phishing", get(phishing::admin).post(phishing::create))
        // --- SMART App Launch ---
        .route(crate::oauth::AUTHORIZE, get(oauth::authorize).post(oauth::decide))
        .route("/admin/apps", get(apps::apps).post(apps::register))
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("web/app.css")).into_response()
}

async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("web/app.js")).into_response()
}

async fn icon() -> Response {
    const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#1f5f8b\"/><path d=\"M4 8h8M8 4v8\" stroke=\"#fff\" stroke-width=\"2\"/></svg>";
    ([(header::CONTENT_TYPE, "image/svg+xml")], SVG).into_response()
}

#[derive(Deserialize)]
struct LanguageChoice {
    to: String,
    #[serde(default)]
    back: String,
}

/// Switch the page language (a cookie; English unless it says otherwise) and
/// go back to the page the switch was on: a path of ours, never another site.
async fn set_language(State(state): State<AppState>, Query(q): Query<LanguageChoice>) -> Response {
    let lang = Lang::parse(&q.to);
    let local = q.back.starts_with('/')
        && !q.back.starts_with("//")
        && q.back.len() < 200
        && q.back.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    let mut r = Redirect::to(if local { &q.back } else { "/" }).into_response();
    let year = 365 * 24 * 3600;
    r.headers_mut()
        .append(header::SET_COOKIE, cookie_header(i18n::LANG_COOKIE, lang.code(), year, state.secure_cookies));
    r
}

/// Who a page is drawn for: their language and the path (for the language
/// switch), and when signed in, the account and the CSRF token of its forms.
#[derive(Clone, Copy)]
pub(crate) struct Viewer<'a> {
    lang: Lang,
    path: &'a str,
    signed_in: Option<(&'a Authenticated, &'a str)>,
}

fn layout(v: Viewer<'_>, title: &str, body: Markup) -> Response {
    let l = v.lang;
    let who = v.signed_in.map(|(a, _)| a);
    let role = who.map(|a| a.principal.role);
    let (other, other_name) = match l {
        Lang::En => (Lang::Fi, "Suomeksi"),
        Lang::Fi => (Lang::En, "In English"),
    };
    let markup = html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Confidant" }
                link rel="stylesheet" href="/static/app.css";
                link rel="icon" href="/static/icon.svg";
                script src="/static/app.js" defer {}
            }
            body data-idle-seconds=[who.and(IDLE_SECONDS.get())] {
                @if who.is_some() {
                    div #timeout-warning.banner.hidden role="alert" {
                        (l.t("Your session ends in two minutes unless you continue.")) " "
                        button #stay type="button" { (l.t("Stay signed in")) }
                    }
                }
                @if let Some(a) = who.filter(|a| a.principal.training.shows_banner() && !v.path.starts_with("/training")) {
                    (training::banner(l, a.principal.training == confidant_policy::TrainingStanding::Blocked))
                }
                header.top {
                    a.brand href="/" { "Confidant" }
                    nav aria-label=(l.t("Main")) {
                        @match role {
                            Some(Role::Clinician) => {
                                a href="/patients" { (l.t("My patients")) }
                                a href="/calendar" { (l.t("My schedule")) }
                                a href="/cosign" { (l.t("To co-sign")) }
                                a href="/register" { (l.t("Register a patient")) }
                            }
                            Some(Role::Reception) => {
                                a href="/patients" { (l.t("Patients")) }
                                a href="/calendar" { (l.t("Calendar")) }
                                a href="/register" { (l.t("Register a patient")) }
                                a href="/admin/care-teams" { (l.t("Care teams")) }
                            }
                            Some(Role::Patient) => {
                                a href="/me/appointments" { (l.t("Appointments")) }
                                a href="/me/access-log" { (l.t("Access log")) }
                            }
                            Some(Role::Admin) => {
                                a href="/admin" { (l.t("Administration")) }
                                a href="/admin/hours" { (l.t("Working hours")) }
                            }
                            Some(Role::Auditor) => {
                                a href="/audit" { (l.t("Audit log")) }
                                a href="/audit/incident" { (l.t("Incident report")) }
                            }
                            None => {}
                        }
                    }
                    a.lang href={ "/lang?to=" (other.code()) "&back=" (v.path) } lang=(other.code()) hreflang=(other.code()) { (other_name) }
                    @if let Some((a, csrf)) = v.signed_in {
                        @if a.principal.role.is_staff() { a href="/training" { (l.t("Training")) } a href="/me/passkeys" { (l.t("Passkeys")) } }
                        @if a.principal.role.is_staff() { a href="/report" { (l.t("Report phishing")) } a href="/me/phishing" { (l.t("My drills")) } }
                        span.who { (i18n::role_name(l, a.principal.role)) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { (l.t("Sign out")) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], markup.into_string())
        .into_response()
}

/// The endpoints the page's script calls with JSON (the passkey ceremonies):
/// their errors are `{"error": text}`, which the script shows.
const SCRIPT_ENDPOINTS: [&str; 4] =
    ["/login/passkey/begin", "/login/passkey/finish", "/me/passkeys/begin", "/me/passkeys/finish"];

pub(crate) fn is_script_endpoint(path: &str) -> bool {
    SCRIPT_ENDPOINTS.contains(&path)
}

/// The HTML error page for a request the pages could not take (one that did
/// not parse, or no such page), in the visitor's language, with a fixed text.
pub(crate) fn error_page(headers: &HeaderMap, status: StatusCode) -> Response {
    let l = Lang::from_headers(headers);
    let (title, text) = match status {
        StatusCode::NOT_FOUND => (l.t("Not found"), l.t("This page does not exist.")),
        StatusCode::FORBIDDEN => (l.t("Not allowed"), l.t("This page is not for your role.")),
        s if s.is_server_error() => {
            (l.t("Try again"), l.t("Something went wrong; nothing was shown or changed. Try again in a moment."))
        }
        _ => (l.t("Please check the form"), l.t("The address or the form could not be read. Go back and try again.")),
    };
    message_page(Viewer { lang: l, path: "/", signed_in: None }, status, title, text)
}

fn message_page(v: Viewer<'_>, status: StatusCode, title: &str, text: &str) -> Response {
    let mut r = layout(v, title, html! { p.notice { (text) } p { a href="/" { (v.lang.t("Back")) } } });
    *r.status_mut() = status;
    r
}

/// A page for someone not signed in (or not finished signing in).
pub(crate) struct Visitor {
    lang: Lang,
    path: String,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Visitor { lang: Lang::from_headers(&parts.headers), path: parts.uri.path().to_owned() })
    }
}

impl Visitor {
    fn viewer(&self) -> Viewer<'_> {
        Viewer { lang: self.lang, path: &self.path, signed_in: None }
    }

    fn page(&self, title: &str, body: Markup) -> Response {
        layout(self.viewer(), title, body)
    }

    fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        message_page(self.viewer(), status, title, text)
    }
}

/// The signed-in user of a page request (with the CSRF token its forms carry);
/// without one, the request is sent to sign in (or to finish enrolling the second factor).
pub(crate) struct SignedIn {
    auth: Authenticated,
    csrf: String,
    lang: Lang,
    path: String,
    /// The clinic's time zone: every time on the pages is shown in it.
    tz: jiff::tz::TimeZone,
}

impl axum::extract::FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| t.starts_with("cns_")) else {
            return Err(Redirect::to("/login").into_response());
        };
        let mut auth = state.identity.authenticate(token).await.map_err(|_| Redirect::to("/login").into_response())?;
        if auth.session.as_ref().is_some_and(|s| !s.mfa_done) {
            return Err(Redirect::to("/mfa").into_response());
        }
        auth.principal.source = parts
            .extensions
            .get::<crate::client::ClientAddr>()
            .map(|c| state.identity.source_of(&auth.principal, &c.0.to_string()));
        let csrf = cookie(&parts.headers, CSRF_COOKIE).unwrap_or("").to_owned();
        Ok(SignedIn {
            auth,
            csrf,
            lang: Lang::from_headers(&parts.headers),
            path: parts.uri.path().to_owned(),
            tz: state.clinic.time_zone.clone(),
        })
    }
}

impl SignedIn {
    /// A FHIR instant as the clinic reads it: `2026-12-03 16:58:09 EET`, in
    /// the clinic's time zone (`[clinic] time_zone`), the zone named.
    pub(super) fn time(&self, instant: &str) -> String {
        match instant.parse::<jiff::Timestamp>() {
            Ok(t) => {
                let z = t.to_zoned_datetime(self.tz.clone());
                let abbreviation = self.tz.to_offset_info(t).abbreviation().to_string();
                format!("{} {:02}:{:02}:{:02} {abbreviation}", z.date(), z.hour(), z.minute(), z.second())
            }
            Err(_) => readable_time(instant),
        }
    }

    /// [`SignedIn::time`] of Unix milliseconds.
    pub(super) fn time_ms(&self, ms: i64) -> String {
        self.time(&confidant_fhir::instant(ms))
    }

    fn viewer(&self) -> Viewer<'_> {
        Viewer { lang: self.lang, path: &self.path, signed_in: Some((&self.auth, &self.csrf)) }
    }

    fn role(&self) -> Role {
        self.auth.principal.role
    }

    fn page(&self, title: &str, body: Markup) -> Response {
        layout(self.viewer(), title, body)
    }

    fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        message_page(self.viewer(), status, title, text)
    }

    /// The hidden field every form of this session carries.
    fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// A form post must carry the session's CSRF token.
    fn csrf_ok(&self, field: &str) -> bool {
        self.auth.session.as_ref().is_some_and(|s| confidant_identity::Identity::csrf_matches(s, field))
    }

    /// The answer to a form post without the session's CSRF token; `unchanged`
    /// says what did not happen ("Nothing was saved.").
    fn stale_form(&self, unchanged: &'static str) -> Response {
        let text = format!(
            "{} {}",
            self.lang.t("This form has expired. Reload the page and try again."),
            self.lang.t(unchanged)
        );
        self.message(StatusCode::FORBIDDEN, self.lang.t("Not allowed"), text.trim())
    }

    /// A form post: refused unless it is for this role and carries the
    /// session's CSRF token (`unchanged` says what did not happen).
    fn refuse_post(&self, roles: &[Role], csrf: &str, unchanged: &'static str) -> Option<Response> {
        self.only_for(roles).or_else(|| (!self.csrf_ok(csrf)).then(|| self.stale_form(unchanged)))
    }

    /// Refuse a page meant for other roles (the services refuse the data
    /// anyway; this keeps people on the pages made for them).
    fn only_for(&self, roles: &[Role]) -> Option<Response> {
        (!roles.contains(&self.role())).then(|| {
            let text = self.lang.t("This page is not for your role.");
            self.message(StatusCode::FORBIDDEN, self.lang.t("Not allowed"), text)
        })
    }

    fn records_error(&self, e: RecordsError) -> Response {
        let l = self.lang;
        match e {
            RecordsError::NotFound(_) => {
                self.message(StatusCode::NOT_FOUND, l.t("Not found"), l.t("There is no such record in your care."))
            }
            RecordsError::Forbidden(m) => self.message(StatusCode::FORBIDDEN, l.t("Not allowed"), &m),
            e @ RecordsError::DoubleBooked { .. } => {
                self.message(StatusCode::CONFLICT, l.t("Double booking"), &e.to_string())
            }
            RecordsError::Invalid(m) | RecordsError::Unprocessable(m) => {
                self.message(StatusCode::BAD_REQUEST, l.t("Please check the form"), &m)
            }
            other => {
                tracing::error!(error = %other, "a page failed");
                self.unavailable()
            }
        }
    }

    fn identity_error(&self, e: confidant_identity::IdentityError) -> Response {
        use confidant_identity::IdentityError as E;
        let l = self.lang;
        match e {
            E::NotFound(_) => self.message(StatusCode::NOT_FOUND, l.t("Not found"), l.t("There is no such account.")),
            E::Forbidden(m) => self.message(StatusCode::FORBIDDEN, l.t("Not allowed"), &m),
            E::Invalid(m) | E::Conflict(m) => self.message(StatusCode::BAD_REQUEST, l.t("Please check the form"), &m),
            E::Keys(k) => self.records_error(confidant_records::RecordsError::from(k)),
            other => {
                tracing::error!(error = %other, "a page failed");
                self.unavailable()
            }
        }
    }

    fn unavailable(&self) -> Response {
        let l = self.lang;
        self.message(
            StatusCode::SERVICE_UNAVAILABLE,
            l.t("Try again"),
            l.t("Something went wrong; nothing was shown or changed. Try again in a moment."),
        )
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn home(me: SignedIn) -> Response {
    let to = match me.role() {
        Role::Clinician | Role::Reception => "/patients",
        Role::Admin => "/admin",
        Role::Auditor => "/audit",
        Role::Patient => return portal::home(&me),
    };
    Redirect::to(to).into_response()
}

/// `2026-12-01T20:41:32.857Z` as `2026-12-01 20:41:32 UTC`: the fallback for
/// a time that is not an instant (pages use [`SignedIn::time`], in clinic time).
fn readable_time(instant: &str) -> String {
    match instant.get(..19) {
        Some(t) => format!("{} UTC", t.replacen('T', " ", 1)),
        None => instant.to_owned(),
    }
}

/// Text of a FHIR HumanName array's first name.
fn name_of(p: &serde_json::Value) -> String {
    let n = &p["name"][0];
    let given: Vec<&str> =
        n["given"].as_array().map(|g| g.iter().filter_map(serde_json::Value::as_str).collect()).unwrap_or_default();
    format!("{} {}", given.join(" "), n["family"].as_str().unwrap_or("")).trim().to_owned()
}

/// The signed-in session behind a request's cookie, finished signing in or not.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Authenticated> {
    let token = cookie(headers, SESSION_COOKIE)?;
    state.identity.authenticate(token).await.ok()
}
