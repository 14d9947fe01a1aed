//! Reception's pages: register a patient, see their appointments and book
//! one. Nothing clinical, not even a link to it.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_fhir::ResourceType;
use confidant_policy::Role;
use confidant_records::{RecordsError, SearchRequest, Stored};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{SignedIn, name_of, readable_time};
use crate::AppState;

/// The appointment's practitioner reference, if any.
pub(super) fn practitioner_of(a: &Value) -> Option<&str> {
    a["participant"]
        .as_array()?
        .iter()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .find(|r| r.starts_with("Practitioner/"))
}

pub(super) fn appointments_list(me: &SignedIn, list: &[Stored], names: &HashMap<String, String>) -> Markup {
    let l = me.lang;
    html! {
        @if list.is_empty() { p { (l.t("No appointments.")) } }
        ul.list {
            @for a in list {
                li {
                    (readable_time(a.resource["start"].as_str().unwrap_or("")))
                    " · " (l.t("Appointment"))
                    @if let Some(pr) = practitioner_of(&a.resource) { " · " (names.get(pr).map(String::as_str).unwrap_or(pr)) }
                    " · " span.muted { (a.resource["status"].as_str().unwrap_or("")) }
                }
            }
        }
    }
}

/// Practitioners by reference, with their names (the staff directory).
pub(super) async fn practitioners(state: &AppState, me: &SignedIn) -> Vec<(String, String)> {
    let req = SearchRequest { params: Vec::new(), count: 100, after: None };
    match state.records.search(&me.auth.principal, ResourceType::Practitioner, &req).await {
        Ok(p) => p.entries.iter().map(|s| (format!("Practitioner/{}", s.id), name_of(&s.resource))).collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) async fn sorted_appointments(
    state: &AppState,
    me: &SignedIn,
    params: Vec<(String, String)>,
) -> Result<Vec<Stored>, RecordsError> {
    let req = SearchRequest { params, count: 100, after: None };
    let mut list = state.records.search(&me.auth.principal, ResourceType::Appointment, &req).await?.entries;
    list.sort_by(|a, b| a.resource["start"].as_str().cmp(&b.resource["start"].as_str()));
    Ok(list)
}

/// Reception's view of a patient: demographics and appointments; nothing clinical, not even a link.
pub(super) async fn reception_view(state: &AppState, me: &SignedIn, id: &str, r: &Value) -> Response {
    let l = me.lang;
    let list = match sorted_appointments(state, me, vec![("patient".to_owned(), id.to_owned())]).await {
        Ok(l) => l,
        Err(e) => return me.records_error(e),
    };
    let staff = practitioners(state, me).await;
    let names: HashMap<String, String> = staff.iter().cloned().collect();
    me.page(
        &name_of(r),
        html! {
            (super::clinical::demographics(me, r))
            section {
                h2 { (l.t("Appointments")) }
                (appointments_list(me, &list, &names))
            }
            section {
                h2 { (l.t("Book an appointment")) }
                form.card method="post" action={ "/patients/" (id) "/appointments" } {
                    (me.csrf_field())
                    label for="practitioner" { (l.t("With")) }
                    select id="practitioner" name="practitioner" required {
                        @for (reference, name) in &staff { option value=(reference) { (name) } }
                    }
                    label for="date" { (l.t("Date")) }
                    input id="date" name="date" type="date" required;
                    label for="time" { (l.t("Time (UTC)")) }
                    input id="time" name="time" type="time" required;
                    button type="submit" { (l.t("Book")) }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct BookForm {
    #[serde(default)]
    csrf: String,
    practitioner: String,
    date: String,
    time: String,
}

pub(super) async fn book(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<BookForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Reception, Role::Clinician], &f.csrf, "Nothing was booked.") {
        return r;
    }
    let l = me.lang;
    let valid = f.date.len() == 10 && f.time.len() == 5 && f.practitioner.starts_with("Practitioner/");
    let start = format!("{}T{}:00Z", f.date, f.time);
    let end = time::OffsetDateTime::parse(&start, &time::format_description::well_known::Rfc3339)
        .ok()
        .filter(|_| valid)
        .map(|t| t + time::Duration::minutes(50));
    let Some(end) = end.and_then(|e| e.format(&time::format_description::well_known::Rfc3339).ok()) else {
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("Give a date, a time and a practitioner."),
        );
    };
    let appointment = json!({
        "resourceType": "Appointment", "status": "booked",
        "start": start, "end": end,
        "participant": [
            {"actor": {"reference": format!("Patient/{id}")}, "status": "accepted"},
            {"actor": {"reference": f.practitioner}, "status": "accepted"}
        ]
    });
    match state.records.create(&me.auth.principal, ResourceType::Appointment, appointment).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => me.records_error(e),
    }
}

pub(super) async fn register_page(me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Reception, Role::Clinician]) {
        return r;
    }
    let l = me.lang;
    me.page(
        l.t("Register a patient"),
        html! {
            form.card method="post" action="/register" {
                (me.csrf_field())
                label for="given" { (l.t("Given name")) }
                input id="given" name="given" required autocomplete="off";
                label for="family" { (l.t("Family name")) }
                input id="family" name="family" required autocomplete="off";
                label for="birth" { (l.t("Birth date")) }
                input id="birth" name="birth" type="date" required;
                label for="identifier" { (l.t("Personal identity code (optional)")) }
                input id="identifier" name="identifier" autocomplete="off";
                label for="phone" { (l.t("Phone (optional)")) }
                input id="phone" name="phone" type="tel" autocomplete="off";
                button type="submit" { (l.t("Register")) }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct RegisterForm {
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

pub(super) async fn register(State(state): State<AppState>, me: SignedIn, Form(f): Form<RegisterForm>) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Reception, Role::Clinician], &f.csrf, "Nothing was saved.") {
        return r;
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
    match state.records.create(&me.auth.principal, ResourceType::Patient, patient).await {
        Ok(p) => Redirect::to(&format!("/patients/{}", p.id)).into_response(),
        Err(e) => me.records_error(e),
    }
}
