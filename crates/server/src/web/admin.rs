//! The administrator's pages: alerts, accounts (and invitations), API tokens,
//! care teams, keys and the security posture. No clinical content: accounts
//! are names and roles, care teams are patient ids and practitioners, keys are
//! versions and counts. Every change goes through the identity or records
//! service, which checks the role again and writes the audit entry.
//!
//! Over 600 lines because it holds every admin page with its form handler (alerts, accounts,
//! tokens, care teams, keys, posture), each short; a page that grows moves to its own file.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_fhir::ResourceType;
use confidant_identity::AccountChange;
use confidant_policy::Role;
use confidant_records::SearchRequest;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::front_desk::practitioners;
use super::{CsrfForm, SignedIn, i18n};
use crate::AppState;

/// The admin pages' own navigation.
fn tabs(me: &SignedIn) -> Markup {
    let l = me.lang;
    let here = me.path.as_str();
    let tab = |href: &'static str, text: &'static str| {
        html! { a href=(href) aria-current=[(here == href).then_some("page")] { (l.t(text)) } }
    };
    html! {
        nav.tabs aria-label=(l.t("Administration")) {
            (tab("/admin", "Alerts"))
            (tab("/admin/accounts", "Accounts"))
            (tab("/admin/tokens", "API tokens"))
            (tab("/admin/care-teams", "Care teams"))
            (tab("/admin/keys", "Keys"))
            (tab("/admin/posture", "Security posture"))
            (tab("/admin/templates", "Note templates"))
            (tab("/admin/supervision", "Supervision"))
            (tab("/admin/training", "Training"))
            (tab("/admin/phishing", "Phishing drills"))
            (tab("/admin/apps", "SMART apps"))
        }
    }
}

pub(super) fn admin_page(me: &SignedIn, title: &str, body: Markup) -> Response {
    me.page(title, html! { (tabs(me)) (body) })
}

pub(super) fn alerts_section(me: &SignedIn, alerts: &[confidant_store::AlertRow]) -> Markup {
    let l = me.lang;
    html! {
        section {
            h2 { (l.t("Open alerts")) }
            @if alerts.is_empty() { p { (l.t("No open alerts.")) } }
            @for a in alerts {
                article.note.alert {
                    p {
                        strong { (i18n::severity_name(l, &a.severity)) } " · " (a.rule) " · "
                        span.muted { (me.time_ms(a.first_at)) @if a.count > 1 { " · " (l.t("{n} times").replace("{n}", &a.count.to_string())) } }
                    }
                    p { (a.summary) }
                    form method="post" action={ "/alerts/" (a.id) "/acknowledge" } {
                        (me.csrf_field())
                        button type="submit" { (l.t("Acknowledge")) }
                    }
                }
            }
        }
    }
}

/// The admin's first page: open alerts.
pub(super) async fn alerts(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    let alerts = match state.records.alerts(&me.auth.principal, true, 100).await {
        Ok(a) => a,
        Err(e) => return me.records_error(e),
    };
    admin_page(&me, me.lang.t("Alerts"), alerts_section(&me, &alerts))
}

pub(super) async fn acknowledge(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return me.stale_form("");
    }
    match state.records.acknowledge_alert(&me.auth.principal, &id).await {
        Ok(_) => Redirect::to(if me.role() == Role::Admin { "/admin" } else { "/audit" }).into_response(),
        Err(e) => me.records_error(e),
    }
}

// ----- accounts -------------------------------------------------------------------------

/// One change to one account; its accessible name says whose ("Disable desk").
fn account_button(me: &SignedIn, u: &confidant_identity::UserInfo, change: &'static str, text: &'static str) -> Markup {
    let label = format!("{} {}", me.lang.t(text), u.username);
    html! {
        form.inline method="post" action={ "/admin/accounts/" (u.id) } {
            (me.csrf_field())
            input type="hidden" name="change" value=(change);
            button.small type="submit" aria-label=(label) { (me.lang.t(text)) }
        }
    }
}

/// A one-time code the accounts page shows its administrator, once.
enum ShownCode {
    /// For someone to create their own account of this role.
    Enrolment(Role, String),
    /// For the user (named) whose second factor was reset, to enrol again.
    Reset(String, String),
}

async fn accounts_page(state: &AppState, me: &SignedIn, shown_code: Option<ShownCode>) -> Response {
    let l = me.lang;
    let users = match state.identity.list_users().await {
        Ok(u) => u,
        Err(e) => return me.identity_error(e),
    };
    admin_page(
        me,
        l.t("Accounts"),
        html! {
            @if let Some(ShownCode::Enrolment(role, code)) = &shown_code {
                section.card.done role="status" {
                    h2 { (l.t("Enrolment code")) }
                    p { (l.t("Give this one-time code to the new {role} in person or by phone; it is shown only now. They create their account at /enrol.").replace("{role}", i18n::role_name(l, *role))) }
                    p { code #enrolment-code { (code) } }
                }
            }
            @if let Some(ShownCode::Reset(username, code)) = &shown_code {
                section.card.done role="status" {
                    h2 { (l.t("Second factor reset")) }
                    p { (l.t("Give this one-time code to {user} in person or by phone; it is shown only now. They sign in with their password and this code, then set up their authenticator again.").replace("{user}", username)) }
                    p { code #reset-code { (code) } }
                }
            }
            table.log {
                thead { tr {
                    th scope="col" { (l.t("Username")) } th scope="col" { (l.t("Role")) }
                    th scope="col" { (l.t("Second factor")) } th scope="col" { (l.t("Status")) } th scope="col" { (l.t("Actions")) }
                } }
                tbody {
                    @for u in &users {
                        tr {
                            td { (u.username) }
                            td { (i18n::role_name(l, u.role)) }
                            td { @if u.mfa_enrolled { (l.t("enrolled")) } @else if u.role.is_staff() { strong { (l.t("not yet")) } } @else { "—" } }
                            td { @if u.disabled { (l.t("disabled")) } @else if u.locked { strong { (l.t("locked")) } } @else { (l.t("active")) } }
                            td.actions {
                                @if u.id != me.auth.principal.user_id {
                                    @if u.disabled { (account_button(me, u, "enable", "Enable")) }
                                    @else { (account_button(me, u, "disable", "Disable")) }
                                    @if u.mfa_enrolled { (account_button(me, u, "reset-second-factor", "Reset second factor")) }
                                }
                                @if u.locked { (account_button(me, u, "unlock", "Unlock")) }
                                (account_button(me, u, "end-sessions", "End sessions"))
                            }
                        }
                    }
                }
            }
            section {
                h2 { (l.t("Invite someone")) }
                form.card method="post" action="/admin/accounts" {
                    (me.csrf_field())
                    label for="role" { (l.t("Role")) }
                    select id="role" name="role" {
                        @for r in [Role::Reception, Role::Auditor, Role::Admin] { option value=(r.as_str()) { (i18n::role_name(l, r)) } }
                    }
                    button type="submit" { (l.t("Make an enrolment code")) }
                }
                p.muted { (l.t("Clinician and patient accounts are linked to a record: create them at the server with `confidant user add`.")) }
            }
        },
    )
}

pub(super) async fn accounts(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    accounts_page(&state, &me, None).await
}

#[derive(Deserialize)]
pub(super) struct InviteForm {
    #[serde(default)]
    csrf: String,
    role: String,
}

pub(super) async fn invite(State(state): State<AppState>, me: SignedIn, Form(f): Form<InviteForm>) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "Nothing was changed.") {
        return r;
    }
    let Some(role) = Role::parse(&f.role) else {
        return me.message(StatusCode::BAD_REQUEST, me.lang.t("Please check the form"), me.lang.t("Choose a role."));
    };
    match state.identity.invite(&me.auth.principal, role).await {
        Ok(code) => accounts_page(&state, &me, Some(ShownCode::Enrolment(role, code))).await,
        Err(e) => me.identity_error(e),
    }
}

#[derive(Deserialize)]
pub(super) struct ChangeForm {
    #[serde(default)]
    csrf: String,
    change: String,
}

pub(super) async fn change_account(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<ChangeForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "Nothing was changed.") {
        return r;
    }
    let Some(change) = AccountChange::parse(&f.change) else {
        return me.message(StatusCode::BAD_REQUEST, me.lang.t("Please check the form"), me.lang.t("Unknown change."));
    };
    match state.identity.change_account(&me.auth.principal, &id, change).await {
        Ok(None) => Redirect::to("/admin/accounts").into_response(),
        Ok(Some(code)) => {
            let username = match state.identity.list_users().await {
                Ok(users) => users.into_iter().find(|u| u.id == id).map(|u| u.username).unwrap_or_default(),
                Err(e) => return me.identity_error(e),
            };
            accounts_page(&state, &me, Some(ShownCode::Reset(username, code))).await
        }
        Err(e) => me.identity_error(e),
    }
}

// ----- API tokens -----------------------------------------------------------------------

async fn tokens_page(state: &AppState, me: &SignedIn, shown: Option<(String, String)>) -> Response {
    let l = me.lang;
    let (tokens, users) = match (state.identity.api_tokens(&me.auth.principal).await, state.identity.list_users().await)
    {
        (Ok(t), Ok(u)) => (t, u),
        (Err(e), _) | (_, Err(e)) => return me.identity_error(e),
    };
    let now = state.records.now_millis();
    admin_page(
        me,
        l.t("API tokens"),
        html! {
            @if let Some((id, token)) = &shown {
                section.card.done role="status" {
                    h2 { (l.t("New token")) " " (id) }
                    p { (l.t("Copy it into the client's secret store now: it is shown only this once.")) }
                    p { code #new-token { (token) } }
                }
            }
            @if tokens.is_empty() { p { (l.t("No API tokens.")) } }
            @else {
                table.log {
                    thead { tr {
                        th scope="col" { (l.t("Token")) } th scope="col" { (l.t("User")) } th scope="col" { (l.t("Scopes")) }
                        th scope="col" { (l.t("Expires")) } th scope="col" { (l.t("Status")) } th scope="col" { (l.t("Actions")) }
                    } }
                    tbody {
                        @for info in &tokens {
                            @let t = &info.token;
                            @let active = t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now);
                            tr {
                                td.wrap { (t.id) " " span.muted { (info.label) } }
                                td { (info.username.as_deref().or(t.user_id.as_deref()).unwrap_or("—")) }
                                td.wrap { (t.scopes.as_deref().unwrap_or("—")) }
                                td { (t.expires_at.map(|ms| me.time_ms(ms)).unwrap_or_default()) }
                                td { @if t.revoked_at.is_some() { (l.t("revoked")) } @else if active { (l.t("active")) } @else { (l.t("expired")) } }
                                td.actions {
                                    @if active {
                                        form.inline method="post" action={ "/admin/tokens/" (t.id) "/revoke" } {
                                            (me.csrf_field())
                                            button.small type="submit" aria-label={ (l.t("Revoke")) " " (t.id) } { (l.t("Revoke")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { (l.t("Create a token")) }
                form.card method="post" action="/admin/tokens" {
                    (me.csrf_field())
                    label for="user" { (l.t("For")) }
                    select id="user" name="user" required {
                        @for u in users.iter().filter(|u| !u.disabled && (u.role == Role::Reception || u.id == me.auth.principal.user_id)) {
                            option value=(u.id) { (u.username) " (" (i18n::role_name(l, u.role)) ")" }
                        }
                    }
                    label for="label" { (l.t("What it is for")) }
                    input id="label" name="label" required maxlength="200" autocomplete="off";
                    label for="scopes" { (l.t("Scopes (e.g. user/Appointment.write user/Practitioner.read)")) }
                    input id="scopes" name="scopes" required autocomplete="off";
                    label for="days" { (l.t("Valid for (days)")) }
                    input id="days" name="days" type="number" min="1" max="365" value="30" required;
                    button type="submit" { (l.t("Create token")) }
                }
                p.muted { (l.t("Tokens act as their account: here they are made for reception accounts and your own, and a reception token reads nothing an administrator may not (no patients, no appointments; it may write them). Others are made at the server with `confidant token create`.")) }
            }
        },
    )
}

pub(super) async fn tokens(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    tokens_page(&state, &me, None).await
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    csrf: String,
    user: String,
    label: String,
    scopes: String,
    days: String,
}

pub(super) async fn create_token(State(state): State<AppState>, me: SignedIn, Form(f): Form<TokenForm>) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "Nothing was changed.") {
        return r;
    }
    let Some(days) = f.days.trim().parse::<i64>().ok().filter(|d| (1..=365).contains(d)) else {
        let l = me.lang;
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("A token is valid for 1 to 365 days."),
        );
    };
    let lifetime = days * 24 * 3_600_000;
    match state.identity.create_api_token_by(&me.auth.principal, &f.user, f.label.trim(), &f.scopes, lifetime).await {
        Ok(shown) => tokens_page(&state, &me, Some(shown)).await,
        Err(e) => me.identity_error(e),
    }
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "Nothing was changed.") {
        return r;
    }
    match state.identity.revoke_api_token(&me.auth.principal, &id).await {
        Ok(true) => Redirect::to("/admin/tokens").into_response(),
        Ok(false) => {
            me.message(StatusCode::NOT_FOUND, me.lang.t("Not found"), me.lang.t("No active token has that id."))
        }
        Err(e) => me.identity_error(e),
    }
}

// ----- care teams -----------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct CareTeamQuery {
    patient: Option<String>,
    /// A patient search (reception): the start of a name, identity code or birth date.
    q: Option<String>,
}

/// The patient search of the care-team page, as on the patients page: a birth
/// date, an identity code (it has digits) or else the start of a family or given name.
fn patient_search_params(q: &str) -> Vec<(String, String)> {
    let key = if q.len() == 10 && q.as_bytes()[4] == b'-' {
        "birthdate"
    } else if q.chars().any(|c| c.is_ascii_digit()) {
        "identifier"
    } else {
        "name"
    };
    let value = if key == "identifier" { q.to_uppercase() } else { q.to_owned() };
    vec![(key.to_owned(), value)]
}

/// A patient's care team. Reception finds the patient by a search and picks
/// them; an admin (who sees no demographics) looks one up by the id reception
/// or their clinician gives. Nobody lists who is in therapy.
pub(super) async fn care_teams(
    State(state): State<AppState>,
    me: SignedIn,
    Query(q): Query<CareTeamQuery>,
) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin, Role::Reception]) {
        return r;
    }
    let l = me.lang;
    let reception = me.role() == Role::Reception;
    let patient = q.patient.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let query = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if query.is_some_and(|s| s.chars().count() > 100) {
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("A search is at most 100 characters."),
        );
    }
    let staff = practitioners(&state, &me).await;
    // Only clinicians are offered for a care team (a practitioner without a clinician's account opens nothing).
    let clinicians = state.records.clinician_practitioners().await.unwrap_or_default();
    let is_clinician = |reference: &str| clinicians.iter().any(|c| reference.strip_prefix("Practitioner/") == Some(c));
    let found = match query {
        Some(s) if reception => {
            let req = SearchRequest { params: patient_search_params(s), count: 20, after: None };
            match state.records.search(&me.auth.principal, ResourceType::Patient, &req).await {
                Ok(page) => page.entries,
                Err(e) => return me.records_error(e),
            }
        }
        _ => Vec::new(),
    };
    let (team, picked) = match patient {
        Some(p) if !confidant_fhir::is_valid_id(p) => {
            return me.message(
                StatusCode::BAD_REQUEST,
                l.t("Please check the form"),
                l.t("A patient id has letters, digits, '-' and '.' only."),
            );
        }
        Some(p) => {
            let team = match care_team_of(&state, &me, p).await {
                Ok(t) => t,
                Err(e) => return me.records_error(e),
            };
            // Reception sees whose team it is by name (an admin by id).
            let picked = if reception {
                match state.records.read(&me.auth.principal, ResourceType::Patient, p).await {
                    Ok(s) => Some(super::name_of(&s.resource)),
                    Err(e) => return me.records_error(e),
                }
            } else {
                None
            };
            (team, picked)
        }
        None => (None, None),
    };
    let name = |reference: &str| {
        staff.iter().find(|(r, _)| r == reference).map(|(_, n)| n.clone()).unwrap_or(reference.to_owned())
    };
    let body = html! {
        @if reception {
            p { (l.t("Who may open a patient's records is their care team. Find the patient, then add or remove clinicians.")) }
            form.search method="get" action="/admin/care-teams" role="search" {
                label for="q" {
                    (l.t("Find by family name or given name (at least 3 letters), identifier or birth date (YYYY-MM-DD)"))
                }
                input id="q" name="q" value=(query.unwrap_or("")) maxlength="100" autocomplete="off";
                button type="submit" { (l.t("Search")) }
            }
            @if query.is_some() {
                @if found.is_empty() { p { (l.t("No patients found.")) } }
                ul.list.picks {
                    @for f in &found {
                        li {
                            a href={ "/admin/care-teams?patient=" (f.id) } {
                                (super::name_of(&f.resource)) " " span.muted { (f.resource["birthDate"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        } @else {
            p { (l.t("Who may open a patient's records is their care team. Look a patient up by the id reception or their clinician gives you.")) }
            p.muted { (l.t("Reception finds patients by name or identity code on this page; administrators see no demographics.")) }
            form.search method="get" action="/admin/care-teams" role="search" {
                label for="patient" { (l.t("Patient id")) }
                input id="patient" name="patient" value=(patient.unwrap_or("")) autocomplete="off";
                button type="submit" { (l.t("Look up")) }
            }
        }
        @if let Some(p) = patient {
            h2 {
                (l.t("Care team of patient")) " "
                @if let Some(n) = &picked { (n) } @else { code { (p) } }
            }
            @let members = team.as_ref().map(|t| members_of(&t.resource)).unwrap_or_default();
            @if members.is_empty() { p { (l.t("Nobody is in this patient's care team.")) } }
            ul.list {
                @for m in &members {
                    li {
                        (name(m)) " "
                        form.inline method="post" action={ "/admin/care-teams/" (p) "/remove" } {
                            (me.csrf_field())
                            input type="hidden" name="practitioner" value=(m);
                            button.small type="submit" aria-label={ (l.t("Remove")) " " (name(m)) } { (l.t("Remove")) }
                        }
                    }
                }
            }
            form.card method="post" action="/admin/care-teams" {
                (me.csrf_field())
                input type="hidden" name="patient" value=(p);
                label for="practitioner" { (l.t("Add a clinician")) }
                select id="practitioner" name="practitioner" required {
                    @for (reference, n) in staff.iter().filter(|(r, _)| !members.contains(r) && is_clinician(r)) { option value=(reference) { (n) } }
                }
                button type="submit" { (l.t("Add to the care team")) }
            }
        }
    };
    if reception { me.page(l.t("Care teams"), body) } else { admin_page(&me, l.t("Care teams"), body) }
}

fn members_of(team: &Value) -> Vec<String> {
    team["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["member"]["reference"].as_str().map(str::to_owned))
        .collect()
}

async fn care_team_of(
    state: &AppState,
    me: &SignedIn,
    patient: &str,
) -> Result<Option<confidant_records::Stored>, confidant_records::RecordsError> {
    let req = SearchRequest { params: vec![("patient".to_owned(), patient.to_owned())], count: 10, after: None };
    let found = state.records.search(&me.auth.principal, ResourceType::CareTeam, &req).await?;
    Ok(found.entries.into_iter().find(|t| matches!(t.resource["status"].as_str(), None | Some("active"))))
}

#[derive(Deserialize)]
pub(super) struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    patient: String,
    practitioner: String,
}

async fn change_team(state: &AppState, me: &SignedIn, patient: &str, practitioner: &str, add: bool) -> Response {
    let l = me.lang;
    if !confidant_fhir::is_valid_id(patient) || !practitioner.starts_with("Practitioner/") {
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("Give a patient id and a clinician."),
        );
    }
    let p = &me.auth.principal;
    let result = match care_team_of(state, me, patient).await {
        Err(e) => Err(e),
        Ok(None) if add => {
            let team = json!({
                "resourceType": "CareTeam", "status": "active",
                "subject": {"reference": format!("Patient/{patient}")},
                "participant": [{"member": {"reference": practitioner}}],
            });
            state.records.create(p, ResourceType::CareTeam, team).await.map(|_| ())
        }
        Ok(None) => Ok(()),
        Ok(Some(t)) => {
            let mut members = members_of(&t.resource);
            members.retain(|m| m != practitioner);
            if add {
                members.push(practitioner.to_owned());
            }
            let mut team = t.resource.clone();
            team["participant"] = members.iter().map(|m| json!({"member": {"reference": m}})).collect();
            state.records.update(p, ResourceType::CareTeam, &t.id, team, Some(t.version_id)).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Redirect::to(&format!("/admin/care-teams?patient={patient}")).into_response(),
        Err(e) => me.records_error(e),
    }
}

pub(super) async fn add_to_care_team(
    State(state): State<AppState>,
    me: SignedIn,
    Form(f): Form<MemberForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin, Role::Reception], &f.csrf, "Nothing was changed.") {
        return r;
    }
    change_team(&state, &me, f.patient.trim(), &f.practitioner, true).await
}

pub(super) async fn remove_from_care_team(
    State(state): State<AppState>,
    me: SignedIn,
    Path(patient): Path<String>,
    Form(f): Form<MemberForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin, Role::Reception], &f.csrf, "Nothing was changed.") {
        return r;
    }
    change_team(&state, &me, &patient, &f.practitioner, false).await
}

// ----- keys and posture -----------------------------------------------------------------

pub(super) async fn keys(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    let l = me.lang;
    let status = match state.records.key_status(&me.auth.principal).await {
        Ok(s) => s,
        Err(e) => return me.records_error(e),
    };
    let now = state.records.now_millis();
    admin_page(
        &me,
        l.t("Keys"),
        html! {
            p { (l.t("Key-encryption key:")) " " (status.provider) }
            table.log {
                thead { tr {
                    th scope="col" { (l.t("Version")) } th scope="col" { (l.t("Made")) } th scope="col" { (l.t("Age (days)")) }
                    th scope="col" { (l.t("Data keys it wraps")) } th scope="col" { (l.t("Notes")) }
                } }
                tbody {
                    @for v in &status.versions {
                        tr {
                            td { (v.version) }
                            td { (v.created_at.map(|ms| me.time_ms(ms)).unwrap_or_default()) }
                            td { (v.created_at.map(|c| ((now - c) / 86_400_000).to_string()).unwrap_or_default()) }
                            td { (v.data_keys) }
                            td {
                                @if v.version == status.current { (l.t("current: new keys are wrapped with it")) }
                                @else if v.data_keys == 0 { (l.t("unused: can be retired")) }
                            }
                        }
                    }
                }
            }
            p.muted { (l.t("Keys are rotated and retired at the server: `confidant keys rotate` and `confidant keys retire`; both are audited.")) }
        },
    )
}

pub(super) async fn posture(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    let l = me.lang;
    let Some(check) = &state.posture else {
        return admin_page(
            &me,
            l.t("Security posture"),
            html! { p { (l.t("This server was started without its posture checks; run `confidant doctor` at the server.")) } },
        );
    };
    let mut findings = (check.0)().await;
    // The worst first; passes last.
    let rank = |f: &crate::PostureFinding| match f.severity.as_deref() {
        Some("high") => 0,
        Some("medium") => 1,
        Some(_) => 2,
        None => 3,
    };
    findings.sort_by_key(rank);
    let high = findings.iter().filter(|f| f.severity.as_deref() == Some("high")).count();
    admin_page(
        &me,
        l.t("Security posture"),
        html! {
            @if high > 0 { p.notice role="alert" { (l.t("{n} high-severity findings: fix these first.").replace("{n}", &high.to_string())) } }
            @else { p.ok { (l.t("No high-severity findings.")) } }
            @for f in &findings {
                article.finding.(f.severity.as_deref().unwrap_or("pass")) {
                    p {
                        strong { (f.severity.as_deref().map(|s| i18n::severity_name(l, s)).unwrap_or(l.t("pass"))) }
                        " · " code { (f.check) } " · " (f.title)
                    }
                    p.muted { (f.evidence) }
                    @if !f.fix.is_empty() { p { (l.t("Fix:")) " " (f.fix) } }
                }
            }
            p.muted { (l.t("The same checks as `confidant doctor` at the server; `confidant drill` tries the attacks.")) }
        },
    )
}
