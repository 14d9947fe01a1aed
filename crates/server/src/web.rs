//! The web UI (first part): sign-in with TOTP enrolment, sign-out, and the
//! clinician's patients, chart and session notes. Server-rendered with maud
//! (every value escaped), no inline script or style (the CSP forbids them),
//! every form carries the session's CSRF token. Pages go through the same
//! records service and policy as the API: a page decides nothing itself.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine as _;
use confidant_fhir::ResourceType;
use confidant_identity::{Authenticated, SessionKind};
use confidant_policy::Role;
use confidant_records::{RecordsError, SearchRequest};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{SESSION_COOKIE, cookie, cookie_header};

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
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/mfa", get(mfa_page).post(mfa_confirm))
        .route("/patients", get(patients))
        .route("/patients/{id}", get(chart))
        .route("/patients/{id}/notes", post(write_note))
        .route("/patients/{id}/appointments", post(book))
        .route("/patients/{id}/break-glass", post(break_glass))
        .route("/register", get(register_page).post(register))
        .route("/schedule", get(schedule))
        .route("/admin", get(admin))
        .route("/audit", get(audit_search))
        .route("/alerts/{id}/acknowledge", post(acknowledge))
        .route("/notes/{id}", get(note))
        .route("/me/access-log", get(access_log))
        .route("/me/data", get(my_data))
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

fn page(title: &str, who: Option<&Authenticated>, csrf: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Confidant" }
                link rel="stylesheet" href="/static/app.css";
                link rel="icon" href="/static/icon.svg";
                @if who.is_some() { script src="/static/app.js" defer {} }
            }
            body data-idle-seconds=[who.and(IDLE_SECONDS.get())] {
                @if who.is_some() {
                    div #timeout-warning.banner.hidden role="alert" {
                        "Your session ends in two minutes unless you continue. "
                        button #stay type="button" { "Stay signed in" }
                    }
                }
                header.top {
                    a.brand href="/" { "Confidant" }
                    @if let Some(a) = who {
                        nav {
                            @if a.principal.role == confidant_policy::Role::Clinician {
                                a href="/patients" { "My patients" }
                                a href="/schedule" { "My schedule" }
                            }
                            @if a.principal.role == confidant_policy::Role::Reception {
                                a href="/patients" { "Patients" }
                                a href="/register" { "Register a patient" }
                            }
                            @if a.principal.role == confidant_policy::Role::Patient { a href="/me/access-log" { "Access log" } }
                            @if a.principal.role == confidant_policy::Role::Admin { a href="/admin" { "Accounts and alerts" } }
                            @if a.principal.role == confidant_policy::Role::Auditor { a href="/audit" { "Audit log and alerts" } }
                        }
                        span.who { (a.principal.role.as_str()) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
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

fn message(status: StatusCode, title: &str, who: Option<&Authenticated>, text: &str) -> Response {
    let mut r = page(title, who, "", html! { p.notice { (text) } p { a href="/" { "Back" } } });
    *r.status_mut() = status;
    r
}

/// The signed-in user of a page request (with the CSRF token its forms carry);
/// without one, the request is sent to sign in (or to finish enrolling the second factor).
struct SignedIn {
    auth: Authenticated,
    csrf: String,
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
        auth.principal.source =
            parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|ConnectInfo(peer)| peer.ip().to_string());
        let csrf = cookie(&parts.headers, CSRF_COOKIE).unwrap_or("").to_owned();
        Ok(SignedIn { auth, csrf })
    }
}

/// The answer to a form post without the session's CSRF token; `unchanged`
/// says what did not happen (e.g. "; nothing was saved").
fn stale_form(who: Option<&Authenticated>, unchanged: &str) -> Response {
    let text = format!("This form has expired. Reload the page and try again{unchanged}.");
    message(StatusCode::FORBIDDEN, "Not allowed", who, &text)
}

/// Refuse a page meant for other roles (the records service refuses the data
/// anyway; this keeps people on the pages made for them).
fn only_for(auth: &Authenticated, roles: &[confidant_policy::Role], page: &str) -> Option<Response> {
    (!roles.contains(&auth.principal.role)).then(|| {
        let text = format!("The {page} page is not for the {} role.", auth.principal.role.as_str());
        message(StatusCode::FORBIDDEN, "Not allowed", Some(auth), &text)
    })
}

/// A form post must carry the session's CSRF token.
fn csrf_ok(auth: &Authenticated, field: &str) -> bool {
    auth.session.as_ref().is_some_and(|s| confidant_identity::Identity::csrf_matches(s, field))
}

fn records_error(e: RecordsError, who: &Authenticated) -> Response {
    match e {
        RecordsError::NotFound(_) => {
            message(StatusCode::NOT_FOUND, "Not found", Some(who), "There is no such record in your care.")
        }
        RecordsError::Forbidden(m) => message(StatusCode::FORBIDDEN, "Not allowed", Some(who), &m),
        RecordsError::Invalid(m) | RecordsError::Unprocessable(m) => {
            message(StatusCode::BAD_REQUEST, "Please check the form", Some(who), &m)
        }
        other => {
            tracing::error!(error = %other, "a page failed");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                Some(who),
                "Something went wrong; nothing was shown or changed. Try again in a moment.",
            )
        }
    }
}

async fn home(SignedIn { auth, csrf }: SignedIn) -> Response {
    use confidant_policy::Role;
    let to = match auth.principal.role {
        Role::Clinician | Role::Reception => "/patients",
        Role::Admin => "/admin",
        Role::Auditor => "/audit",
        Role::Patient => {
            return page(
                "Your records",
                Some(&auth),
                &csrf,
                html! {
                    ul.list {
                        li { a href="/me/access-log" { "Who has looked at my records" } }
                        li { a href="/me/data" download="my-records.json" { "Download my data (FHIR Bundle, JSON)" } }
                    }
                },
            );
        }
    };
    Redirect::to(to).into_response()
}

async fn login_page() -> Response {
    page(
        "Sign in",
        None,
        "",
        html! {
            form.card method="post" action="/login" {
                label for="username" { "Username" }
                input id="username" name="username" autocomplete="username" required;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                label for="code" { "Authenticator code (or a recovery code)" }
                input id="code" name="code" inputmode="numeric" autocomplete="one-time-code";
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    code: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    let code = Some(f.code.trim()).filter(|c| !c.is_empty());
    let source = crate::api::throttle_source(peer.ip());
    match state.identity.login(&f.username, &f.password, code, &source, SessionKind::Cookie).await {
        Ok(l) => {
            let max_age = ((l.expires_at - state.records.now_millis()) / 1000).max(0);
            let to = if l.mfa_enrolment_required { "/mfa" } else { "/" };
            let mut r = Redirect::to(to).into_response();
            let csrf = l.csrf_token.as_deref().unwrap_or("");
            for (name, value) in [(SESSION_COOKIE, l.token.as_str()), (CSRF_COOKIE, csrf)] {
                r.headers_mut().append(header::SET_COOKIE, cookie_header(name, value, max_age, state.secure_cookies));
            }
            r
        }
        Err(confidant_identity::IdentityError::Throttled { .. }) => message(
            StatusCode::TOO_MANY_REQUESTS,
            "Sign in",
            None,
            "Too many attempts. Wait a few minutes, or ask an administrator to unlock the account.",
        ),
        Err(_) => message(StatusCode::UNAUTHORIZED, "Sign in", None, "Wrong username, password or code."),
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && let Ok(auth) = state.identity.authenticate(token).await
        && let Some(s) = &auth.session
    {
        if !csrf_ok(&auth, &f.csrf) {
            return stale_form(None, "");
        }
        let _ = state.identity.logout(s).await;
    }
    let mut r = Redirect::to("/login").into_response();
    for c in [SESSION_COOKIE, CSRF_COOKIE] {
        r.headers_mut().append(header::SET_COOKIE, cookie_header(c, "", 0, state.secure_cookies));
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A signed-in session that has not enrolled its second factor yet.
async fn enrolling(state: &AppState, headers: &HeaderMap) -> Option<Authenticated> {
    let token = cookie(headers, SESSION_COOKIE)?;
    state.identity.authenticate(token).await.ok()
}

async fn mfa_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(auth) = enrolling(&state, &headers).await else { return Redirect::to("/login").into_response() };
    if auth.session.as_ref().is_some_and(|s| s.mfa_done) {
        return Redirect::to("/").into_response();
    }
    let csrf = cookie(&headers, CSRF_COOKIE).unwrap_or("").to_owned();
    match state.identity.totp_begin(&auth.principal.user_id).await {
        Ok(e) => page(
            "Set up your authenticator",
            None,
            &csrf,
            html! {
                p { "Scan this code with an authenticator app, or type the secret, then enter the code it shows." }
                figure.qr { (maud::PreEscaped(e.qr_svg)) }
                p { "Secret: " code #secret { (e.secret_base32) } }
                form.card method="post" action="/mfa" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="code" { "Code from the app" }
                    input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required;
                    button type="submit" { "Confirm" }
                }
            },
        ),
        Err(e) => message(StatusCode::CONFLICT, "Second factor", None, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: String,
    code: String,
}

async fn mfa_confirm(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<CodeForm>) -> Response {
    let Some(auth) = enrolling(&state, &headers).await else { return Redirect::to("/login").into_response() };
    if !csrf_ok(&auth, &f.csrf) {
        return stale_form(None, "");
    }
    match state.identity.totp_confirm(&auth.principal.user_id, auth.session.as_ref(), f.code.trim()).await {
        Ok(codes) => page(
            "Recovery codes",
            None,
            "",
            html! {
                p { "Your authenticator is set up. Keep these one-time recovery codes somewhere safe, apart from your phone: each opens your account once if the phone is lost." }
                ul.codes { @for c in &codes { li { code { (c) } } } }
                p { a.button href="/" { "Continue" } }
            },
        ),
        Err(e) => message(StatusCode::BAD_REQUEST, "Second factor", None, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct PatientQuery {
    q: Option<String>,
}

/// Text of a FHIR HumanName array's first name.
fn name_of(p: &Value) -> String {
    let n = &p["name"][0];
    let given: Vec<&str> =
        n["given"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    format!("{} {}", given.join(" "), n["family"].as_str().unwrap_or("")).trim().to_owned()
}

async fn patients(
    State(state): State<AppState>,
    SignedIn { auth, csrf }: SignedIn,
    Query(q): Query<PatientQuery>,
) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Clinician, Role::Reception], "patients") {
        return r;
    }
    let query = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    // A birth date, an identifier with digits, or else a family name.
    let params = match query {
        Some(v) if v.len() == 10 && v.as_bytes()[4] == b'-' => vec![("birthdate".to_owned(), v.to_owned())],
        Some(v) if v.chars().any(|c| c.is_ascii_digit()) => vec![("identifier".to_owned(), v.to_owned())],
        Some(v) => vec![("family".to_owned(), v.to_owned())],
        None => Vec::new(),
    };
    // A clinician's list is their own care. Anyone else (reception) sees the whole
    // clinic only through a search: nobody browses everyone (and honey records stay
    // out of sight unless someone looks for them by name).
    let browse_all = params.is_empty() && auth.principal.role != confidant_policy::Role::Clinician;
    let found = if browse_all {
        Ok(confidant_records::SearchPage { entries: Vec::new(), total: 0, next_after: None })
    } else {
        let req = SearchRequest { params, count: 50, after: None };
        state.records.search(&auth.principal, ResourceType::Patient, &req).await
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return records_error(e, &auth),
    };
    let title = if auth.principal.role == confidant_policy::Role::Clinician { "My patients" } else { "Patients" };
    page(
        title,
        Some(&auth),
        &csrf,
        html! {
            form.search method="get" action="/patients" role="search" {
                label for="q" { "Find by family name, identifier or birth date (YYYY-MM-DD)" }
                input id="q" name="q" value=(query.unwrap_or(""));
                button type="submit" { "Search" }
            }
            @if browse_all { p { "Search to find a patient." } }
        @else if found.entries.is_empty() { p { "No patients found." } }
            ul.list {
                @for p in &found.entries {
                    li { a href={ "/patients/" (p.id) } { (name_of(&p.resource)) } " " span.muted { (p.resource["birthDate"].as_str().unwrap_or("")) } }
                }
            }
        },
    )
}

fn note_text(doc: &Value) -> String {
    let data = doc["content"][0]["attachment"]["data"].as_str().unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn chart(State(state): State<AppState>, SignedIn { auth, csrf }: SignedIn, Path(id): Path<String>) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Clinician, Role::Reception], "patient") {
        return r;
    }
    let p = match state.records.read(&auth.principal, ResourceType::Patient, &id).await {
        Ok(p) => p,
        // Not in their care (or no such patient: the same answer): a clinician may break the glass.
        Err(RecordsError::NotFound(_)) if auth.principal.role == confidant_policy::Role::Clinician => {
            return break_glass_page(&auth, &csrf, &id, state.break_glass_minutes);
        }
        Err(e) => return records_error(e, &auth),
    };
    if auth.principal.role == confidant_policy::Role::Reception {
        return reception_view(&state, &auth, &csrf, &id, &p.resource).await;
    }
    let by_patient = vec![("patient".to_owned(), id.clone())];
    let notes = state
        .records
        .search(
            &auth.principal,
            ResourceType::DocumentReference,
            &SearchRequest { params: by_patient, count: 100, after: None },
        )
        .await;
    let mut notes = match notes {
        Ok(n) => n.entries,
        Err(e) => return records_error(e, &auth),
    };
    notes.sort_by_key(|n| std::cmp::Reverse(n.last_updated));
    let r = &p.resource;
    page(
        &name_of(r),
        Some(&auth),
        &csrf,
        html! {
            dl.demographics {
                dt { "Born" } dd { (r["birthDate"].as_str().unwrap_or("—")) }
                dt { "Gender" } dd { (r["gender"].as_str().unwrap_or("—")) }
                @if let Some(idf) = r["identifier"][0]["value"].as_str() { dt { "Identifier" } dd { (idf) } }
            }
            section {
                h2 { "New session note" }
                form.card method="post" action={ "/patients/" (id) "/notes" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="text" { "Note" }
                    textarea id="text" name="text" rows="8" required autocomplete="off" {}
                    button type="submit" { "Save note" }
                }
            }
            section {
                h2 { "Notes, newest first" }
                @if notes.is_empty() { p { "No notes yet." } }
                @for n in &notes {
                    article.note {
                        p.muted { a href={ "/notes/" (n.id) } { (readable_time(&confidant_fhir::instant(n.last_updated))) } }
                        p.text { (note_text(&n.resource)) }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct NoteForm {
    #[serde(default)]
    csrf: String,
    text: String,
}

async fn write_note(
    State(state): State<AppState>,
    SignedIn { auth, .. }: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Clinician], "note") {
        return r;
    }
    if !csrf_ok(&auth, &f.csrf) {
        return stale_form(Some(&auth), "; nothing was saved");
    }
    let doc = json!({
        "resourceType": "DocumentReference", "status": "current",
        "type": {"text": "Session note"},
        "subject": {"reference": format!("Patient/{id}")},
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64::engine::general_purpose::STANDARD.encode(f.text.as_bytes())}}]
    });
    match state.records.create(&auth.principal, ResourceType::DocumentReference, doc).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => records_error(e, &auth),
    }
}

async fn note(State(state): State<AppState>, SignedIn { auth, csrf }: SignedIn, Path(id): Path<String>) -> Response {
    match state.records.read(&auth.principal, ResourceType::DocumentReference, &id).await {
        Ok(n) => page(
            "Session note",
            Some(&auth),
            &csrf,
            html! {
                p.muted { (readable_time(&confidant_fhir::instant(n.last_updated))) }
                p.text { (note_text(&n.resource)) }
            },
        ),
        Err(e) => records_error(e, &auth),
    }
}

/// `2026-12-01T20:41:32.857Z` as `2026-12-01 20:41:32 UTC`.
fn readable_time(instant: &str) -> String {
    match instant.get(..19) {
        Some(t) => format!("{} UTC", t.replacen('T', " ", 1)),
        None => instant.to_owned(),
    }
}

/// The patient's access log: who looked at their records, in what role, when and why.
async fn access_log(State(state): State<AppState>, SignedIn { auth, csrf }: SignedIn) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Patient], "access log") {
        return r;
    }
    let q = confidant_records::AuditQuery {
        patient: None,
        agent: None,
        action: None,
        from: None,
        until: None,
        before: None,
        count: 200,
    };
    let events = match state.records.audit_events(&auth.principal, &q).await {
        Ok(p) => p.events,
        Err(e) => return records_error(e, &auth),
    };
    page(
        "Who has looked at my records",
        Some(&auth),
        &csrf,
        html! {
            p { "Every time someone opens, searches or changes your records it is recorded here. Ask your clinic about anything you do not recognise." }
            @if events.is_empty() { p { "Nothing yet." } }
            @else {
                table.log {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Role" } th scope="col" { "What" } th scope="col" { "Why" } } }
                    tbody {
                        @for e in &events {
                            tr {
                                td { (readable_time(e["recorded"].as_str().unwrap_or(""))) }
                                td { (e["agent"][0]["who"]["display"].as_str().unwrap_or("")) }
                                td { (e["agent"][0]["role"][0]["text"].as_str().unwrap_or("")) }
                                td { (e["subtype"][0]["code"].as_str().unwrap_or("")) @if e["outcome"] == "4" { " (refused)" } }
                                td { (e["purposeOfEvent"][0]["text"].as_str().or(e["purposeOfEvent"][0]["coding"][0]["display"].as_str()).unwrap_or("care")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// "Download my data": the patient's own records as a FHIR Bundle (each read audited).
async fn my_data(State(state): State<AppState>, SignedIn { auth, .. }: SignedIn) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Patient], "download") {
        return r;
    }
    let Some(pid) = auth.principal.patient_id.clone() else {
        return message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            Some(&auth),
            "Only a patient account has its own records to download.",
        );
    };
    let mut entries = Vec::new();
    match state.records.read(&auth.principal, ResourceType::Patient, &pid).await {
        Ok(p) => entries.push(p.resource),
        Err(e) => return records_error(e, &auth),
    }
    for rt in [ResourceType::Encounter, ResourceType::DocumentReference, ResourceType::Appointment] {
        let req = SearchRequest { params: vec![("patient".to_owned(), pid.clone())], count: 100, after: None };
        match state.records.search(&auth.principal, rt, &req).await {
            Ok(page) => entries.extend(page.entries.into_iter().map(|s| s.resource)),
            Err(RecordsError::Forbidden(_)) => {}
            Err(e) => return records_error(e, &auth),
        }
    }
    let bundle = json!({
        "resourceType": "Bundle", "type": "collection",
        "timestamp": confidant_fhir::instant(state.records.now_millis()),
        "entry": entries.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
    });
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"my-records.json\"")),
        ],
        serde_json::to_vec_pretty(&bundle).unwrap_or_default(),
    )
        .into_response()
}

// ----- reception and scheduling ------------------------------------------------------

fn demographics(r: &Value) -> Markup {
    html! {
        dl.demographics {
            dt { "Born" } dd { (r["birthDate"].as_str().unwrap_or("—")) }
            dt { "Gender" } dd { (r["gender"].as_str().unwrap_or("—")) }
            @if let Some(idf) = r["identifier"][0]["value"].as_str() { dt { "Identifier" } dd { (idf) } }
            @for t in r["telecom"].as_array().into_iter().flatten() {
                dt { (t["system"].as_str().unwrap_or("contact")) } dd { (t["value"].as_str().unwrap_or("")) }
            }
        }
    }
}

/// The appointment's practitioner reference, if any.
fn practitioner_of(a: &Value) -> Option<&str> {
    a["participant"]
        .as_array()?
        .iter()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .find(|r| r.starts_with("Practitioner/"))
}

fn appointments_list(list: &[confidant_records::Stored], names: &std::collections::HashMap<String, String>) -> Markup {
    html! {
        @if list.is_empty() { p { "No appointments." } }
        ul.list {
            @for a in list {
                li {
                    (readable_time(a.resource["start"].as_str().unwrap_or("")))
                    " · " (a.resource["description"].as_str().unwrap_or("Appointment"))
                    @if let Some(pr) = practitioner_of(&a.resource) { " · " (names.get(pr).map(String::as_str).unwrap_or(pr)) }
                    " · " span.muted { (a.resource["status"].as_str().unwrap_or("")) }
                }
            }
        }
    }
}

/// Practitioners by reference, with their names (the staff directory).
async fn practitioners(state: &AppState, auth: &Authenticated) -> Vec<(String, String)> {
    let req = SearchRequest { params: Vec::new(), count: 100, after: None };
    match state.records.search(&auth.principal, ResourceType::Practitioner, &req).await {
        Ok(p) => p.entries.iter().map(|s| (format!("Practitioner/{}", s.id), name_of(&s.resource))).collect(),
        Err(_) => Vec::new(),
    }
}

async fn sorted_appointments(
    state: &AppState,
    auth: &Authenticated,
    params: Vec<(String, String)>,
) -> Result<Vec<confidant_records::Stored>, RecordsError> {
    let req = SearchRequest { params, count: 100, after: None };
    let mut list = state.records.search(&auth.principal, ResourceType::Appointment, &req).await?.entries;
    list.sort_by(|a, b| a.resource["start"].as_str().cmp(&b.resource["start"].as_str()));
    Ok(list)
}

/// Reception's view of a patient: demographics and appointments; nothing clinical, not even a link.
async fn reception_view(state: &AppState, auth: &Authenticated, csrf: &str, id: &str, r: &Value) -> Response {
    let list = match sorted_appointments(state, auth, vec![("patient".to_owned(), id.to_owned())]).await {
        Ok(l) => l,
        Err(e) => return records_error(e, auth),
    };
    let staff = practitioners(state, auth).await;
    let names: std::collections::HashMap<String, String> = staff.iter().cloned().collect();
    page(
        &name_of(r),
        Some(auth),
        csrf,
        html! {
            (demographics(r))
            section {
                h2 { "Appointments" }
                (appointments_list(&list, &names))
            }
            section {
                h2 { "Book an appointment" }
                form.card method="post" action={ "/patients/" (id) "/appointments" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="practitioner" { "With" }
                    select id="practitioner" name="practitioner" required {
                        @for (reference, name) in &staff { option value=(reference) { (name) } }
                    }
                    label for="date" { "Date" }
                    input id="date" name="date" type="date" required;
                    label for="time" { "Time (UTC)" }
                    input id="time" name="time" type="time" required;
                    button type="submit" { "Book" }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct BookForm {
    #[serde(default)]
    csrf: String,
    practitioner: String,
    date: String,
    time: String,
}

async fn book(
    State(state): State<AppState>,
    SignedIn { auth, .. }: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<BookForm>,
) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Reception, Role::Clinician], "booking") {
        return r;
    }
    if !csrf_ok(&auth, &f.csrf) {
        return stale_form(Some(&auth), "; nothing was booked");
    }
    let valid = f.date.len() == 10 && f.time.len() == 5 && f.practitioner.starts_with("Practitioner/");
    let start = format!("{}T{}:00Z", f.date, f.time);
    let end = time::OffsetDateTime::parse(&start, &time::format_description::well_known::Rfc3339)
        .ok()
        .filter(|_| valid)
        .map(|t| t + time::Duration::minutes(50));
    let Some(end) = end.and_then(|e| e.format(&time::format_description::well_known::Rfc3339).ok()) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Please check the form",
            Some(&auth),
            "Give a date, a time and a practitioner.",
        );
    };
    let appointment = json!({
        "resourceType": "Appointment", "status": "booked", "description": "Psychotherapy session",
        "start": start, "end": end,
        "participant": [
            {"actor": {"reference": format!("Patient/{id}")}, "status": "accepted"},
            {"actor": {"reference": f.practitioner}, "status": "accepted"}
        ]
    });
    match state.records.create(&auth.principal, ResourceType::Appointment, appointment).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => records_error(e, &auth),
    }
}

async fn register_page(SignedIn { auth, csrf }: SignedIn) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Reception, Role::Clinician], "register") {
        return r;
    }
    page(
        "Register a patient",
        Some(&auth),
        &csrf,
        html! {
            form.card method="post" action="/register" {
                input type="hidden" name="csrf" value=(csrf);
                label for="given" { "Given name" }
                input id="given" name="given" required autocomplete="off";
                label for="family" { "Family name" }
                input id="family" name="family" required autocomplete="off";
                label for="birth" { "Birth date" }
                input id="birth" name="birth" type="date" required;
                label for="identifier" { "Personal identity code (optional)" }
                input id="identifier" name="identifier" autocomplete="off";
                label for="phone" { "Phone (optional)" }
                input id="phone" name="phone" type="tel" autocomplete="off";
                button type="submit" { "Register" }
            }
        },
    )
}

#[derive(Deserialize)]
struct RegisterForm {
    #[serde(default)]
    csrf: String,
    given: String,
    family: String,
    birth: String,
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    phone: String,
}

async fn register(
    State(state): State<AppState>,
    SignedIn { auth, .. }: SignedIn,
    Form(f): Form<RegisterForm>,
) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Reception, Role::Clinician], "register") {
        return r;
    }
    if !csrf_ok(&auth, &f.csrf) {
        return stale_form(Some(&auth), "; nothing was saved");
    }
    let mut patient = json!({
        "resourceType": "Patient", "active": true,
        "name": [{"family": f.family.trim(), "given": [f.given.trim()]}],
        "birthDate": f.birth.trim(),
    });
    if !f.identifier.trim().is_empty() {
        patient["identifier"] = json!([{"system": "urn:oid:1.2.246.21", "value": f.identifier.trim()}]);
    }
    if !f.phone.trim().is_empty() {
        patient["telecom"] = json!([{"system": "phone", "value": f.phone.trim()}]);
    }
    match state.records.create(&auth.principal, ResourceType::Patient, patient).await {
        Ok(p) => Redirect::to(&format!("/patients/{}", p.id)).into_response(),
        Err(e) => records_error(e, &auth),
    }
}

/// The clinician's schedule: appointments with them, soonest first.
async fn schedule(State(state): State<AppState>, SignedIn { auth, csrf }: SignedIn) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Clinician], "schedule") {
        return r;
    }
    let list = match sorted_appointments(&state, &auth, Vec::new()).await {
        Ok(l) => l,
        Err(e) => return records_error(e, &auth),
    };
    let mine = auth.principal.practitioner_id.as_ref().map(|p| format!("Practitioner/{p}"));
    let list: Vec<_> = list.into_iter().filter(|a| practitioner_of(&a.resource) == mine.as_deref()).collect();
    let names = std::collections::HashMap::new();
    page("My schedule", Some(&auth), &csrf, html! { (appointments_list(&list, &names)) })
}

// ----- admin and auditor ---------------------------------------------------------------

fn alerts_section(alerts: &[confidant_store::AlertRow], csrf: &str) -> Markup {
    html! {
        section {
            h2 { "Open alerts" }
            @if alerts.is_empty() { p { "No open alerts." } }
            @for a in alerts {
                article.note {
                    p { strong { (a.severity) } " · " (a.rule) " · " span.muted { (readable_time(&confidant_fhir::instant(a.first_at))) @if a.count > 1 { " · " (a.count) " times" } } }
                    p { (a.summary) }
                    form method="post" action={ "/alerts/" (a.id) "/acknowledge" } {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Acknowledge" }
                    }
                }
            }
        }
    }
}

/// The admin's page: accounts and their security state, and open alerts. No clinical content.
async fn admin(State(state): State<AppState>, SignedIn { auth, csrf }: SignedIn) -> Response {
    if let Err(d) = confidant_policy::may_manage_accounts(&auth.principal) {
        return message(StatusCode::FORBIDDEN, "Not allowed", Some(&auth), &d.to_string());
    }
    let users = match state.identity.list_users().await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "accounts could not be listed");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                Some(&auth),
                "The accounts could not be listed.",
            );
        }
    };
    let alerts = match state.records.alerts(&auth.principal, true, 100).await {
        Ok(a) => a,
        Err(e) => return records_error(e, &auth),
    };
    page(
        "Accounts and alerts",
        Some(&auth),
        &csrf,
        html! {
            (alerts_section(&alerts, &csrf))
            section {
                h2 { "Accounts" }
                table.log {
                    thead { tr { th scope="col" { "Username" } th scope="col" { "Role" } th scope="col" { "Second factor" } th scope="col" { "Status" } } }
                    tbody {
                        @for u in &users {
                            tr {
                                td { (u.username) }
                                td { (u.role.as_str()) }
                                td { @if u.mfa_enrolled { "enrolled" } @else if u.role.is_staff() { strong { "not yet" } } @else { "—" } }
                                td { @if u.disabled { "disabled" } @else if u.locked { "locked" } @else { "active" } }
                            }
                        }
                    }
                }
                p.muted { "Accounts are added, disabled and unlocked with `confidant user` at the server for now." }
            }
        },
    )
}

#[derive(Deserialize)]
struct AuditForm {
    patient: Option<String>,
    agent: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The auditor's page: search the audit log; open alerts.
async fn audit_search(
    State(state): State<AppState>,
    SignedIn { auth, csrf }: SignedIn,
    Query(f): Query<AuditForm>,
) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Auditor], "audit") {
        return r;
    }
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let day = |v: &Option<String>, end: bool| {
        text(v).and_then(|d| confidant_fhir::date_range(&d)).and_then(|(a, b)| if end { b } else { a })
    };
    let q = confidant_records::AuditQuery {
        patient: text(&f.patient),
        agent: text(&f.agent),
        action: text(&f.action),
        from: day(&f.from, false),
        until: day(&f.to, true),
        before: None,
        count: 200,
    };
    let events = match state.records.audit_events(&auth.principal, &q).await {
        Ok(p) => p.events,
        Err(e) => return records_error(e, &auth),
    };
    let alerts = state.records.alerts(&auth.principal, true, 100).await.unwrap_or_default();
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    page(
        "Audit log and alerts",
        Some(&auth),
        &csrf,
        html! {
            (alerts_section(&alerts, &csrf))
            section {
                h2 { "Search the audit log" }
                form.card.wide method="get" action="/audit" {
                    div.field { label for="patient" { "Patient id" } input id="patient" name="patient" value=(v(&f.patient)); }
                    div.field { label for="agent" { "User id" } input id="agent" name="agent" value=(v(&f.agent)); }
                    div.field { label for="action" { "Action (read, search-hit, break-glass, …)" } input id="action" name="action" value=(v(&f.action)); }
                    div.field { label for="from" { "From" } input id="from" name="from" type="date" value=(v(&f.from)); }
                    div.field { label for="to" { "To" } input id="to" name="to" type="date" value=(v(&f.to)); }
                    button type="submit" { "Search" }
                }
                table.log {
                    thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Record" } th scope="col" { "From" } } }
                    tbody {
                        @for e in &events {
                            tr {
                                td { (e["id"].as_str().unwrap_or("")) }
                                td { (readable_time(e["recorded"].as_str().unwrap_or(""))) }
                                td.wrap { (e["agent"][0]["who"]["display"].as_str().unwrap_or("")) " " span.muted { (e["agent"][0]["who"]["identifier"]["value"].as_str().unwrap_or("")) } }
                                td { (e["subtype"][0]["code"].as_str().unwrap_or("")) @if e["outcome"] == "4" { " (refused)" } }
                                td.wrap { (e["entity"][0]["what"]["reference"].as_str().or(e["entity"][0]["what"]["display"].as_str()).unwrap_or("")) }
                                td { (e["agent"][0]["network"]["address"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
                p.muted { "The incident report (patients touched, by whom, how often) is `confidant incident report` at the server for now." }
            }
        },
    )
}

async fn acknowledge(
    State(state): State<AppState>,
    SignedIn { auth, .. }: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&auth, &f.csrf) {
        return stale_form(Some(&auth), "");
    }
    match state.records.acknowledge_alert(&auth.principal, &id).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => records_error(e, &auth),
    }
}

// ----- break-glass --------------------------------------------------------------------

fn break_glass_page(auth: &Authenticated, csrf: &str, id: &str, minutes: i64) -> Response {
    let mut r = page(
        "Not in your care",
        Some(auth),
        csrf,
        html! {
            p { "This patient is not in your care, or does not exist." }
            section.card.warning {
                h2 { "Emergency access (break the glass)" }
                p {
                    "Only if this is urgent and nobody in their care team can help. Access lasts " (minutes) " minutes, "
                    "your reason is recorded, reviewed, raises an alert, and is shown to the patient."
                }
                form method="post" action={ "/patients/" (id) "/break-glass" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="reason" { "Reason (at least 10 characters)" }
                    textarea id="reason" name="reason" rows="3" required minlength="10" maxlength="2000" autocomplete="off" {}
                    button type="submit" { "Open the record" }
                }
            }
        },
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

#[derive(Deserialize)]
struct ReasonForm {
    #[serde(default)]
    csrf: String,
    reason: String,
}

async fn break_glass(
    State(state): State<AppState>,
    SignedIn { auth, .. }: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<ReasonForm>,
) -> Response {
    if let Some(r) = only_for(&auth, &[Role::Clinician], "break-glass") {
        return r;
    }
    if !csrf_ok(&auth, &f.csrf) {
        return stale_form(Some(&auth), "; nothing was opened");
    }
    match state.records.break_glass(&auth.principal, &id, &f.reason, state.break_glass_minutes).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => records_error(e, &auth),
    }
}
