//! The clinician's pages: my patients, the chart, session notes (written,
//! saved as drafts, edited), my schedule, and the break-glass dialog.
//!
//! A draft is a note with `docStatus` `preliminary`: it is stored, sealed and
//! audited on the server like every other version, never in the browser (no
//! script touches the text, the form is `autocomplete=off`, pages are `no-store`).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use confidant_fhir::ResourceType;
use confidant_policy::Role;
use confidant_records::{RecordsError, SearchRequest, Stored};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::front_desk::{appointments_list, practitioner_of, reception_view, sorted_appointments};
use super::{SignedIn, name_of, readable_millis};
use crate::AppState;

#[derive(Deserialize)]
pub(super) struct PatientQuery {
    q: Option<String>,
}

pub(super) async fn patients(State(state): State<AppState>, me: SignedIn, Query(q): Query<PatientQuery>) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician, Role::Reception]) {
        return r;
    }
    let l = me.lang;
    let query = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    // A birth date, an identifier with digits, or else the start of a family or given name.
    let params = match query {
        Some(v) if v.len() == 10 && v.as_bytes()[4] == b'-' => vec![("birthdate".to_owned(), v.to_owned())],
        Some(v) if v.chars().any(|c| c.is_ascii_digit()) => vec![("identifier".to_owned(), v.to_owned())],
        Some(v) => vec![("name".to_owned(), v.to_owned())],
        None => Vec::new(),
    };
    // Too short a name: said next to the box, the typed value kept, nothing searched.
    let too_short = query
        .is_some_and(|v| params.first().is_some_and(|(p, _)| p == "name") && confidant_fhir::search_prefix(v).is_err());
    // A clinician's list is their own care. Anyone else (reception) sees the whole
    // clinic only through a search: nobody browses everyone (and honey records stay
    // out of sight unless someone looks for them by name).
    let browse_all = params.is_empty() && me.role() != Role::Clinician;
    let found = if browse_all || too_short {
        Vec::new()
    } else {
        let req = SearchRequest { params, count: 50, after: None };
        match state.records.search(&me.auth.principal, ResourceType::Patient, &req).await {
            Ok(f) => f.entries,
            Err(e) => return me.records_error(e),
        }
    };
    let title = if me.role() == Role::Clinician { l.t("My patients") } else { l.t("Patients") };
    let page = me.page(
        title,
        html! {
            form.search method="get" action="/patients" role="search" {
                label for="q" {
                    (l.t("Find by family name or given name (at least 3 letters), identifier or birth date (YYYY-MM-DD)"))
                }
                @if too_short {
                    input id="q" name="q" value=(query.unwrap_or("")) aria-invalid="true" aria-describedby="q-error";
                } @else {
                    input id="q" name="q" value=(query.unwrap_or(""));
                }
                button type="submit" { (l.t("Search")) }
                @if too_short {
                    p.notice #q-error role="alert" { (l.t("Type at least 3 letters of the name.")) }
                }
            }
            @if browse_all { p { (l.t("Search to find a patient.")) } }
            @else if too_short {}
            @else if found.is_empty() { p { (l.t("No patients found.")) } }
            ul.list {
                @for p in &found {
                    li { a href={ "/patients/" (p.id) } { (name_of(&p.resource)) } " " span.muted { (p.resource["birthDate"].as_str().unwrap_or("")) } }
                }
            }
        },
    );
    if too_short { (StatusCode::BAD_REQUEST, page).into_response() } else { page }
}

fn note_text(doc: &Value) -> String {
    let data = doc["content"][0]["attachment"]["data"].as_str().unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn is_draft(doc: &Value) -> bool {
    doc["docStatus"] == "preliminary"
}

/// The demographics every chart starts with.
pub(super) fn demographics(me: &SignedIn, r: &Value) -> Markup {
    let l = me.lang;
    html! {
        dl.demographics {
            dt { (l.t("Born")) } dd { (r["birthDate"].as_str().unwrap_or("—")) }
            dt { (l.t("Gender")) } dd { (r["gender"].as_str().unwrap_or("—")) }
            @if let Some(idf) = r["identifier"][0]["value"].as_str() { dt { (l.t("Identifier")) } dd { (idf) } }
            @for t in r["telecom"].as_array().into_iter().flatten() {
                dt { @if t["system"] == "phone" { (l.t("Phone")) } @else { (t["system"].as_str().unwrap_or("")) } }
                dd { (t["value"].as_str().unwrap_or("")) }
            }
        }
    }
}

/// The note form's two ways out: a draft, kept on the server until finished,
/// or the finished note.
fn note_buttons(me: &SignedIn) -> Markup {
    let l = me.lang;
    html! {
        div.buttons {
            button type="submit" name="status" value="final" { (l.t("Save note")) }
            button.secondary type="submit" name="status" value="draft" { (l.t("Save as draft")) }
        }
    }
}

pub(super) async fn chart(State(state): State<AppState>, me: SignedIn, Path(id): Path<String>) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician, Role::Reception]) {
        return r;
    }
    let l = me.lang;
    let p = match state.records.read(&me.auth.principal, ResourceType::Patient, &id).await {
        Ok(p) => p,
        // Not in their care (or no such patient: the same answer): a clinician may break the glass.
        Err(RecordsError::NotFound(_)) if me.role() == Role::Clinician => {
            return break_glass_page(&me, &id, state.break_glass_minutes);
        }
        Err(e) => return me.records_error(e),
    };
    if me.role() == Role::Reception {
        return reception_view(&state, &me, &id, &p.resource).await;
    }
    let by_patient = || SearchRequest { params: vec![("patient".to_owned(), id.clone())], count: 100, after: None };
    let found = state.records.search(&me.auth.principal, ResourceType::DocumentReference, &by_patient()).await;
    let mut notes = match found {
        Ok(n) => n.entries,
        Err(e) => return me.records_error(e),
    };
    notes.sort_by_key(|n| std::cmp::Reverse(n.last_updated));
    let encounters = match state.records.search(&me.auth.principal, ResourceType::Encounter, &by_patient()).await {
        Ok(e) => e.entries,
        Err(e) => return me.records_error(e),
    };
    let r = &p.resource;
    me.page(
        &name_of(r),
        html! {
            (demographics(&me, r))
            section {
                h2 { (l.t("New session note")) }
                form.card method="post" action={ "/patients/" (id) "/notes" } {
                    (me.csrf_field())
                    label for="text" { (l.t("Note")) }
                    textarea id="text" name="text" rows="8" required autocomplete="off" {}
                    (note_buttons(&me))
                }
            }
            section {
                h2 { (l.t("Notes, newest first")) }
                @if notes.is_empty() { p { (l.t("No notes yet.")) } }
                @for n in &notes {
                    article.note {
                        p.muted {
                            a href={ "/notes/" (n.id) } { (readable_millis(n.last_updated)) }
                            @if is_draft(&n.resource) { " " span.badge { (l.t("Draft")) } }
                            @if n.version_id > 1 { " · " (l.t("edited")) }
                            " · " a href={ "/notes/" (n.id) "/edit" } { (if is_draft(&n.resource) { l.t("Continue writing") } else { l.t("Edit") }) }
                        }
                        p.text { (note_text(&n.resource)) }
                    }
                }
            }
            @if !encounters.is_empty() {
                section {
                    h2 { (l.t("Encounters")) }
                    ul.list {
                        @for e in &encounters {
                            li {
                                (e.resource["period"]["start"].as_str().map(super::readable_time).unwrap_or_default())
                                " · " (e.resource["class"]["display"].as_str().or(e.resource["class"]["code"].as_str()).unwrap_or(""))
                                " · " span.muted { (e.resource["status"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct NoteForm {
    #[serde(default)]
    csrf: String,
    text: String,
    /// `draft` keeps it a draft; anything else finishes it.
    #[serde(default)]
    status: String,
    /// The version the edit started from (a note changed meanwhile is not overwritten).
    #[serde(default)]
    version: Option<i64>,
}

impl NoteForm {
    fn doc_status(&self) -> &'static str {
        if self.status == "draft" { "preliminary" } else { "final" }
    }
}

fn attachment(text: &str) -> Value {
    json!([{"attachment": {"contentType": "text/plain; charset=utf-8",
                           "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())}}])
}

pub(super) async fn write_note(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Clinician], &f.csrf, "Nothing was saved.") {
        return r;
    }
    let doc = json!({
        "resourceType": "DocumentReference", "status": "current", "docStatus": f.doc_status(),
        "type": {"text": "Session note"},
        "subject": {"reference": format!("Patient/{id}")},
        "content": attachment(&f.text),
    });
    match state.records.create(&me.auth.principal, ResourceType::DocumentReference, doc).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => me.records_error(e),
    }
}

/// The patient a note belongs to.
fn subject_of(n: &Stored) -> &str {
    n.resource["subject"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).unwrap_or("")
}

pub(super) async fn note(State(state): State<AppState>, me: SignedIn, Path(id): Path<String>) -> Response {
    let l = me.lang;
    match state.records.read(&me.auth.principal, ResourceType::DocumentReference, &id).await {
        Ok(n) => me.page(
            if is_draft(&n.resource) { l.t("Session note (draft)") } else { l.t("Session note") },
            html! {
                p.muted { (readable_millis(n.last_updated)) @if n.version_id > 1 { " · " (l.t("edited")) } }
                p.text { (note_text(&n.resource)) }
                @if me.role() == Role::Clinician {
                    p {
                        a.button href={ "/notes/" (n.id) "/edit" } { (l.t("Edit")) } " "
                        a href={ "/patients/" (subject_of(&n)) } { (l.t("Back to the chart")) }
                    }
                }
            },
        ),
        Err(e) => me.records_error(e),
    }
}

fn edit_form(me: &SignedIn, n: &Stored, text: &str, notice: Option<&str>) -> Response {
    let l = me.lang;
    me.page(
        if is_draft(&n.resource) { l.t("Continue the draft") } else { l.t("Edit the note") },
        html! {
            @if let Some(m) = notice { p.notice role="alert" { (m) } }
            form.card.full method="post" action={ "/notes/" (n.id) } {
                (me.csrf_field())
                input type="hidden" name="version" value=(n.version_id);
                label for="text" { (l.t("Note")) }
                textarea id="text" name="text" rows="14" required autocomplete="off" { (text) }
                p.muted { (l.t("Earlier versions are kept and can be read in the record's history.")) }
                (note_buttons(me))
            }
            p { a href={ "/patients/" (subject_of(n)) } { (l.t("Back to the chart")) } }
        },
    )
}

pub(super) async fn edit_note(State(state): State<AppState>, me: SignedIn, Path(id): Path<String>) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician]) {
        return r;
    }
    match state.records.read(&me.auth.principal, ResourceType::DocumentReference, &id).await {
        Ok(n) => edit_form(&me, &n, &note_text(&n.resource), None),
        Err(e) => me.records_error(e),
    }
}

/// Save an edited note (or draft) as a new version, unless someone saved
/// another version since the edit began: then the form comes back with the
/// text as typed and nothing is overwritten.
pub(super) async fn save_note(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Clinician], &f.csrf, "Nothing was saved.") {
        return r;
    }
    let l = me.lang;
    let p = &me.auth.principal;
    let current = match state.records.read(p, ResourceType::DocumentReference, &id).await {
        Ok(n) => n,
        Err(e) => return me.records_error(e),
    };
    let mut doc = current.resource.clone();
    doc["content"] = attachment(&f.text);
    doc["docStatus"] = json!(f.doc_status());
    let expected = f.version.unwrap_or(current.version_id);
    match state.records.update(p, ResourceType::DocumentReference, &id, doc, Some(expected)).await {
        Ok(n) => Redirect::to(&format!("/patients/{}", subject_of(&n))).into_response(),
        Err(RecordsError::PreconditionFailed { .. }) => {
            let notice = l.t("Someone saved this note after you opened it. Nothing was overwritten: your text is below; compare it with the saved note, then save again.");
            let mut r = edit_form(&me, &current, &f.text, Some(notice));
            *r.status_mut() = StatusCode::CONFLICT;
            r
        }
        Err(e) => me.records_error(e),
    }
}

/// The clinician's schedule: appointments with them, soonest first.
pub(super) async fn schedule(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician]) {
        return r;
    }
    let list = match sorted_appointments(&state, &me, Vec::new()).await {
        Ok(l) => l,
        Err(e) => return me.records_error(e),
    };
    let mine = me.auth.principal.practitioner_id.as_ref().map(|p| format!("Practitioner/{p}"));
    let list: Vec<_> = list.into_iter().filter(|a| practitioner_of(&a.resource) == mine.as_deref()).collect();
    let names = std::collections::HashMap::new();
    me.page(me.lang.t("My schedule"), appointments_list(&me, &list, &names))
}

// ----- break-glass --------------------------------------------------------------------

fn break_glass_page(me: &SignedIn, id: &str, minutes: i64) -> Response {
    let l = me.lang;
    let mut r = me.page(
        l.t("Not in your care"),
        html! {
            p { (l.t("This patient is not in your care, or does not exist.")) }
            section.card.warning {
                h2 { (l.t("Emergency access (break the glass)")) }
                p { (l.t("Only if this is urgent and nobody in their care team can help. Access lasts {minutes} minutes, your reason is recorded, reviewed, raises an alert, and is shown to the patient.").replace("{minutes}", &minutes.to_string())) }
                form method="post" action={ "/patients/" (id) "/break-glass" } {
                    (me.csrf_field())
                    label for="reason" { (l.t("Reason (at least 10 characters)")) }
                    textarea id="reason" name="reason" rows="3" required minlength="10" maxlength="2000" autocomplete="off" {}
                    button type="submit" { (l.t("Open the record")) }
                }
            }
        },
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

#[derive(Deserialize)]
pub(super) struct ReasonForm {
    #[serde(default)]
    csrf: String,
    reason: String,
}

pub(super) async fn break_glass(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<ReasonForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Clinician], &f.csrf, "Nothing was opened.") {
        return r;
    }
    match state.records.break_glass(&me.auth.principal, &id, &f.reason, state.break_glass_minutes).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => me.records_error(e),
    }
}
