//! The clinician's pages: my patients, the chart, session notes (written,
//! saved as drafts, edited), and the break-glass dialog (my schedule is the
//! calendar, `calendar`).
//!
//! A draft is a note with `docStatus` `preliminary`: it is stored, sealed and
//! audited on the server like every other version, never in the browser (no
//! script touches the text, the form is `autocomplete=off`, pages are `no-store`).
//!
//! Over 600 lines because the note's whole life (form, chart, page, edit, sign, addenda) is one
//! flow sharing its form and helpers; templates, supervision and co-sign live in `templates`.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use confidant_fhir::ResourceType;
use confidant_policy::Role;
use confidant_records::{RecordsError, SearchRequest, Stored, Template};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::front_desk::reception_view;
use super::templates::{cosign_status, note_body, section_fields, template_picker};
use super::{SignedIn, name_of};
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
    let attention = super::measures::attention_list(&state, &me).await;
    let page = me.page(
        title,
        html! {
            (attention)
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

/// Who signed the note (`Practitioner/{id}`), if anyone: a signed note is locked.
fn signer(doc: &Value) -> Option<&str> {
    doc["authenticator"]["reference"].as_str()
}

fn signed_at(doc: &Value) -> Option<&str> {
    doc["extension"].as_array()?.iter().find(|e| e["url"] == confidant_records::SIGNED_AT)?["valueInstant"].as_str()
}

/// The `valueReference.reference` of the note's extension `url`.
pub(super) fn extension_reference<'a>(doc: &'a Value, url: &str) -> Option<&'a str> {
    doc["extension"].as_array()?.iter().find(|e| e["url"] == url)?["valueReference"]["reference"].as_str()
}

/// The session's date (`context.period.start`, as YYYY-MM-DD), if the note has one.
fn session_date(doc: &Value) -> Option<&str> {
    doc["context"]["period"]["start"].as_str().and_then(|d| d.get(..10))
}

/// The note this one appends to (an addendum's original).
fn appends_to(doc: &Value) -> Option<&str> {
    doc["relatesTo"].as_array()?.iter().find(|r| r["code"] == "appends")?["target"]["reference"]
        .as_str()?
        .strip_prefix("DocumentReference/")
}

/// The three kinds a writer chooses between, visibly.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ordinary,
    Psychotherapy,
    Shared,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Ordinary, Kind::Psychotherapy, Kind::Shared];

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "" | "ordinary" => Some(Kind::Ordinary),
            "psychotherapy" => Some(Kind::Psychotherapy),
            "shared" => Some(Kind::Shared),
            _ => None,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Kind::Ordinary => "ordinary",
            Kind::Psychotherapy => "psychotherapy",
            Kind::Shared => "shared",
        }
    }

    fn of(doc: &Value) -> Kind {
        let shared =
            doc["meta"]["tag"].as_array().into_iter().flatten().any(|t| {
                t["system"] == confidant_fhir::SHARING_SYSTEM && t["code"] == confidant_fhir::SHARED_WITH_PATIENT
            });
        if confidant_fhir::is_psychotherapy_note(doc) {
            Kind::Psychotherapy
        } else if shared {
            Kind::Shared
        } else {
            Kind::Ordinary
        }
    }

    fn label(self, l: super::i18n::Lang) -> &'static str {
        match self {
            Kind::Ordinary => l.t("Ordinary (the care team reads it)"),
            Kind::Psychotherapy => l.t("Psychotherapy, PSYTHPN (only you read it)"),
            Kind::Shared => l.t("Shared with the patient (the patient reads it in the portal)"),
        }
    }

    fn badge(self, l: super::i18n::Lang) -> Option<&'static str> {
        match self {
            Kind::Ordinary => None,
            Kind::Psychotherapy => Some(l.t("Psychotherapy note")),
            Kind::Shared => Some(l.t("Shared with the patient")),
        }
    }

    /// Label `doc` as this kind: the PSYTHPN security label, the sharing tag, or neither
    /// (every other label and tag kept).
    fn apply(self, doc: &mut Value) {
        let meta = &doc["meta"];
        let mut security: Vec<Value> = meta["security"].as_array().cloned().unwrap_or_default();
        security.retain(|c| c["code"] != confidant_fhir::PSYCHOTHERAPY_NOTE);
        if self == Kind::Psychotherapy {
            security
                .push(json!({"system": confidant_fhir::ACT_CODE_SYSTEM, "code": confidant_fhir::PSYCHOTHERAPY_NOTE}));
        }
        let mut tags: Vec<Value> = meta["tag"].as_array().cloned().unwrap_or_default();
        tags.retain(|t| t["code"] != confidant_fhir::SHARED_WITH_PATIENT);
        if self == Kind::Shared {
            tags.push(json!({"system": confidant_fhir::SHARING_SYSTEM, "code": confidant_fhir::SHARED_WITH_PATIENT}));
        }
        // Empty arrays (and an empty meta) are left out: FHIR does not allow them.
        let mut m = meta.as_object().cloned().unwrap_or_default();
        for (key, list) in [("security", security), ("tag", tags)] {
            if list.is_empty() {
                m.remove(key);
            } else {
                m.insert(key.into(), Value::Array(list));
            }
        }
        if let Some(doc) = doc.as_object_mut() {
            if m.is_empty() {
                doc.remove("meta");
            } else {
                doc.insert("meta".into(), Value::Object(m));
            }
        }
    }
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

/// What was wrong with a form, field by field (shown next to the field).
#[derive(Default)]
struct FieldErrors(Vec<(&'static str, &'static str)>);

impl FieldErrors {
    fn get(&self, field: &str) -> Option<&'static str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| *m)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message under a field, with the id its input names in `aria-describedby`.
    fn show(&self, field: &str) -> Markup {
        html! { @if let Some(m) = self.get(field) { p.field-error id={ (field) "-error" } { (m) } } }
    }
}

fn described_by(errors: &FieldErrors, field: &str) -> Option<String> {
    errors.get(field).map(|_| format!("{field}-error"))
}

/// The session date, kind and text of a note: the fields of the new-note form
/// and of the edit form, with what was typed and what was wrong with it.
fn note_fields(
    me: &SignedIn,
    f: &NoteForm,
    today: &str,
    errors: &FieldErrors,
    rows: u32,
    template: Option<&Template>,
) -> Markup {
    let l = me.lang;
    let kind = Kind::parse(&f.kind).unwrap_or(Kind::Ordinary);
    let date = f.session_date.as_deref().unwrap_or(today);
    html! {
        label for="session_date" { (l.t("Session date")) }
        input id="session_date" name="session_date" type="date" value=(date) max=(today) required
            aria-invalid=[errors.get("session_date").map(|_| "true")] aria-describedby=[described_by(errors, "session_date")];
        (errors.show("session_date"))
        fieldset.kinds aria-describedby=[described_by(errors, "kind")] {
            legend { (l.t("Kind of note")) }
            @for k in Kind::ALL {
                label.radio {
                    input type="radio" name="kind" value=(k.code()) checked[k == kind];
                    " " (k.label(l))
                }
            }
            (errors.show("kind"))
        }
        @if let Some(t) = template {
            (section_fields(me, t, f, errors.get("text").map(|_| "text-error")))
        } @else {
            label for="text" { (l.t("Note")) }
            textarea id="text" name="text" rows=(rows) required autocomplete="off"
                aria-invalid=[errors.get("text").map(|_| "true")] aria-describedby=[described_by(errors, "text")] { (f.text) }
        }
        (errors.show("text"))
    }
}

/// The template a form is written with (as its fields name it), if any.
async fn form_template(state: &AppState, me: &SignedIn, f: &NoteForm) -> Result<Option<Template>, Response> {
    if f.template.is_empty() {
        return Ok(None);
    }
    match state.records.note_template(&me.auth.principal, &f.template, f.template_version).await {
        Ok(t) => Ok(Some(t)),
        Err(RecordsError::NotFound(_)) => {
            let l = me.lang;
            Err(me.message(StatusCode::BAD_REQUEST, l.t("Please check the form"), l.t("There is no such template.")))
        }
        Err(e) => Err(me.records_error(e)),
    }
}

/// The template a stored note was written with (the version it names), if any.
async fn note_template_of(state: &AppState, me: &SignedIn, n: &Stored) -> Result<Option<Template>, Response> {
    match confidant_records::template_of(&n.resource) {
        Some((id, version)) => {
            let f = NoteForm { template: id, template_version: Some(version), ..NoteForm::default() };
            form_template(state, me, &f).await
        }
        None => Ok(None),
    }
}

/// A note's `content` and template extension from the form.
fn note_content(me: &SignedIn, doc: &mut Value, f: &NoteForm, template: Option<&Template>) {
    match template {
        Some(t) => doc["content"] = Value::Array(confidant_records::sectioned_content(t, &f.sections, me.lang.code())),
        None => doc["content"] = attachment(&f.text),
    }
    confidant_records::set_template(doc, template);
}

/// The clinic's date today (YYYY-MM-DD), in its time zone (`clinic.time_zone`).
fn today(state: &AppState) -> String {
    state.clinic.date_at(state.records.now_millis())
}

#[derive(Deserialize)]
pub(super) struct ChartQuery {
    /// The template to write the new note with (`GET ?template=soap`: works without script).
    template: Option<String>,
}

pub(super) async fn chart(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<ChartQuery>,
) -> Response {
    match q.template.filter(|t| !t.is_empty()) {
        Some(template) => {
            let f = NoteForm { template, ..NoteForm::default() };
            chart_page(&state, &me, &id, Some((&f, &FieldErrors::default()))).await
        }
        None => chart_page(&state, &me, &id, None).await,
    }
}

/// The chart; with `typed`, the new-note form as it was sent, with its errors.
async fn chart_page(state: &AppState, me: &SignedIn, id: &str, typed: Option<(&NoteForm, &FieldErrors)>) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician, Role::Reception]) {
        return r;
    }
    let l = me.lang;
    let p = match state.records.read(&me.auth.principal, ResourceType::Patient, id).await {
        Ok(p) => p,
        // Not in their care (or no such patient: the same answer): a clinician may break the glass.
        Err(RecordsError::NotFound(_)) if me.role() == Role::Clinician => {
            return break_glass_page(me, id, state.break_glass_minutes);
        }
        Err(e) => return me.records_error(e),
    };
    if me.role() == Role::Reception {
        return reception_view(state, me, id, &p.resource).await;
    }
    let by_patient = || SearchRequest { params: vec![("patient".to_owned(), id.to_owned())], count: 100, after: None };
    let found = state.records.search(&me.auth.principal, ResourceType::DocumentReference, &by_patient()).await;
    let all = match found {
        Ok(n) => n.entries,
        Err(e) => return me.records_error(e),
    };
    let (addenda, notes) = by_session(all);
    let encounters = match state.records.search(&me.auth.principal, ResourceType::Encounter, &by_patient()).await {
        Ok(e) => e.entries,
        Err(e) => return me.records_error(e),
    };
    let measures = super::measures::chart_section(state, me, id).await;
    let r = &p.resource;
    let today = today(state);
    let blank = NoteForm::default();
    let none = FieldErrors::default();
    let (form, errors) = typed.unwrap_or((&blank, &none));
    let template = match form_template(state, me, form).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let templates = match state.records.note_templates(&me.auth.principal).await {
        Ok(t) => t,
        Err(e) => return me.records_error(e),
    };
    let mut page = me.page(
        &name_of(r),
        html! {
            (demographics(me, r))
            (measures)
            section {
                h2 { (l.t("New session note")) }
                (template_picker(me, id, &templates, template.as_ref()))
                form.card method="post" action={ "/patients/" (id) "/notes" } {
                    (me.csrf_field())
                    (note_fields(me, form, &today, errors, 8, template.as_ref()))
                    (note_buttons(me))
                }
            }
            section {
                h2 { (l.t("Notes by session date, newest first")) }
                @if notes.is_empty() { p { (l.t("No notes yet.")) } }
                @for n in &notes {
                    article.note {
                        p.muted {
                            a href={ "/notes/" (n.id) } { (session_date(&n.resource).unwrap_or(l.t("no session date"))) }
                            (badges(me, &n.resource))
                            " · " (l.t("saved")) " " (me.time_ms(n.last_updated))
                            @if n.version_id > 1 { " · " (l.t("edited")) }
                            @if signer(&n.resource).is_none() {
                                " · " a href={ "/notes/" (n.id) "/edit" } { (if is_draft(&n.resource) { l.t("Continue writing") } else { l.t("Edit") }) }
                            }
                        }
                        (note_body(me, &n.resource))
                        (addenda_of(me, &addenda, &n.id))
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
    );
    if !errors.is_empty() {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    page
}

/// A patient's notes split into addenda and the notes they append to; the
/// notes by session date, newest first (then by last save), addenda oldest first.
fn by_session(all: Vec<Stored>) -> (Vec<Stored>, Vec<Stored>) {
    let (mut addenda, mut notes): (Vec<Stored>, Vec<Stored>) =
        all.into_iter().partition(|n| appends_to(&n.resource).is_some());
    notes.sort_by(|a, b| {
        let key = |n: &Stored| (session_date(&n.resource).map(str::to_owned), n.last_updated);
        key(b).cmp(&key(a))
    });
    addenda.sort_by_key(|n| n.last_updated);
    (addenda, notes)
}

/// The badges of a note: draft or signed, and its kind.
fn badges(me: &SignedIn, doc: &Value) -> Markup {
    let l = me.lang;
    html! {
        @if is_draft(doc) { " " span.badge { (l.t("Draft")) } }
        @if signer(doc).is_some() { " " span.badge.signed { (l.t("Signed")) } }
        @if let Some(b) = Kind::of(doc).badge(l) { " " span.badge.kind { (b) } }
    }
}

/// The addenda of note `id`, under it.
fn addenda_of(me: &SignedIn, addenda: &[Stored], id: &str) -> Markup {
    let l = me.lang;
    html! {
        @for a in addenda.iter().filter(|a| appends_to(&a.resource) == Some(id)) {
            aside.addendum {
                p.muted {
                    strong { (l.t("Addendum")) } " · " (me.time_ms(a.last_updated))
                    (badges(me, &a.resource))
                }
                p { (l.t("Reason")) ": " (a.resource["description"].as_str().unwrap_or("")) }
                (note_body(me, &a.resource))
            }
        }
    }
}

#[derive(Default)]
pub(super) struct NoteForm {
    csrf: String,
    text: String,
    /// `draft` keeps it a draft; anything else finishes it.
    status: String,
    /// The version the edit started from (a note changed meanwhile is not overwritten).
    version: Option<i64>,
    /// The session's date, YYYY-MM-DD (today if left out).
    session_date: Option<String>,
    /// `ordinary`, `psychotherapy` or `shared`.
    kind: String,
    /// The template the note is written with (its id; empty for a plain note) and its version.
    pub(super) template: String,
    pub(super) template_version: Option<i64>,
    /// The sections' text, by section key (fields `section.{key}`).
    pub(super) sections: Vec<(String, String)>,
}

impl NoteForm {
    /// The form as posted (repeated and unknown fields: the last one counts, unknown ones are ignored).
    pub(super) fn from_pairs(pairs: Vec<(String, String)>) -> NoteForm {
        let mut f = NoteForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "csrf" => f.csrf = v,
                "text" => f.text = v,
                "status" => f.status = v,
                "version" => f.version = v.trim().parse().ok(),
                "session_date" => f.session_date = Some(v),
                "kind" => f.kind = v,
                "template" => f.template = v,
                "template_version" => f.template_version = v.trim().parse().ok(),
                _ => {
                    if let Some(key) = k.strip_prefix("section.") {
                        f.sections.retain(|(s, _)| s != key);
                        f.sections.push((key.to_owned(), v));
                    }
                }
            }
        }
        f
    }

    /// The text of section `key`, as typed.
    pub(super) fn section(&self, key: &str) -> &str {
        self.sections.iter().find(|(k, _)| k == key).map(|(_, t)| t.as_str()).unwrap_or("")
    }

    fn doc_status(&self) -> &'static str {
        if self.status == "draft" { "preliminary" } else { "final" }
    }

    /// What is wrong with the form, field by field (nothing is saved if anything is).
    fn errors(&self, l: super::i18n::Lang, today: &str, template: Option<&Template>) -> FieldErrors {
        let mut e = Vec::new();
        match template {
            Some(t) if t.sections.iter().all(|s| self.section(&s.key).trim().is_empty()) => {
                e.push(("text", l.t("Write at least one section: the note is empty.")));
            }
            Some(_) => {}
            None if self.text.trim().is_empty() => e.push(("text", l.t("Write the note: it is empty."))),
            None => {}
        }
        match self.session_date.as_deref().map(str::trim) {
            None | Some("") => {}
            Some(d) if d.len() != 10 || confidant_fhir::time_range(d).is_none() => {
                e.push(("session_date", l.t("Give the session's date as a date (YYYY-MM-DD).")));
            }
            Some(d) if d > today => e.push(("session_date", l.t("The session's date cannot be in the future."))),
            Some(_) => {}
        }
        if Kind::parse(&self.kind).is_none() {
            e.push(("kind", l.t("Choose the kind of note.")));
        }
        FieldErrors(e)
    }

    /// The session date to store: as given, or today.
    fn date_or(&self, today: &str) -> String {
        self.session_date.as_deref().map(str::trim).filter(|d| !d.is_empty()).unwrap_or(today).to_owned()
    }
}

fn attachment(text: &str) -> Value {
    json!([{"attachment": {"contentType": "text/plain; charset=utf-8",
                           "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())}}])
}

/// The session a note belongs to: its date, and the patient's Encounter on that
/// date if there is one (the first such).
async fn session_context(state: &AppState, me: &SignedIn, patient: &str, date: &str) -> Result<Value, RecordsError> {
    let req = SearchRequest { params: vec![("patient".to_owned(), patient.to_owned())], count: 100, after: None };
    let found = state.records.search(&me.auth.principal, ResourceType::Encounter, &req).await?;
    let on_the_day =
        found.entries.iter().find(|e| e.resource["period"]["start"].as_str().and_then(|s| s.get(..10)) == Some(date));
    let mut context = json!({"period": {"start": date, "end": date}});
    if let Some(e) = on_the_day {
        context["encounter"] = json!([{"reference": format!("Encounter/{}", e.id)}]);
    }
    Ok(context)
}

pub(super) async fn write_note(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = NoteForm::from_pairs(pairs);
    if let Some(r) = me.refuse_post(&[Role::Clinician], &f.csrf, "Nothing was saved.") {
        return r;
    }
    let template = match form_template(&state, &me, &f).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let today = today(&state);
    let errors = f.errors(me.lang, &today, template.as_ref());
    if !errors.is_empty() {
        return chart_page(&state, &me, &id, Some((&f, &errors))).await;
    }
    let context = match session_context(&state, &me, &id, &f.date_or(&today)).await {
        Ok(c) => c,
        Err(e) => return me.records_error(e),
    };
    let mut doc = json!({
        "resourceType": "DocumentReference", "status": "current", "docStatus": f.doc_status(),
        "type": {"text": "Session note"},
        "subject": {"reference": format!("Patient/{id}")},
        "context": context,
    });
    note_content(&me, &mut doc, &f, template.as_ref());
    Kind::parse(&f.kind).unwrap_or(Kind::Ordinary).apply(&mut doc);
    match state.records.create(&me.auth.principal, ResourceType::DocumentReference, doc).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => me.records_error(e),
    }
}

/// The patient a note belongs to.
fn subject_of(n: &Stored) -> &str {
    n.resource["subject"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).unwrap_or("")
}

/// A practitioner's name, for a `Practitioner/{id}` reference (the reference if it cannot be read).
async fn practitioner_name(state: &AppState, me: &SignedIn, reference: &str) -> String {
    let Some(pid) = reference.strip_prefix("Practitioner/") else { return reference.to_owned() };
    match state.records.read(&me.auth.principal, ResourceType::Practitioner, pid).await {
        Ok(pr) => name_of(&pr.resource),
        Err(_) => reference.to_owned(),
    }
}

pub(super) async fn note(State(state): State<AppState>, me: SignedIn, Path(id): Path<String>) -> Response {
    note_page(&state, &me, &id, None).await
}

/// The note page: whose, by whom, which session, its versions, its addenda;
/// signing for its author while unsigned, the addendum form once signed.
async fn note_page(
    state: &AppState,
    me: &SignedIn,
    id: &str,
    typed: Option<(&AddendumForm, &FieldErrors)>,
) -> Response {
    let l = me.lang;
    let pr = &me.auth.principal;
    let n = match state.records.read(pr, ResourceType::DocumentReference, id).await {
        Ok(n) => n,
        Err(e) => return me.records_error(e),
    };
    let patient = match state.records.read(pr, ResourceType::Patient, subject_of(&n)).await {
        Ok(p) => name_of(&p.resource),
        Err(e) => return me.records_error(e),
    };
    let mut authors = Vec::new();
    for a in n.resource["author"].as_array().into_iter().flatten().filter_map(|a| a["reference"].as_str()) {
        authors.push(practitioner_name(state, me, a).await);
    }
    let signed_by = match signer(&n.resource) {
        Some(s) => Some(practitioner_name(state, me, s).await),
        None => None,
    };
    let cosigner = match extension_reference(&n.resource, confidant_records::COSIGN_REQUIRED_BY) {
        Some(s) => Some(practitioner_name(state, me, s).await),
        None => None,
    };
    let cosigned_by = match extension_reference(&n.resource, confidant_records::COSIGNED_BY) {
        Some(s) => Some(practitioner_name(state, me, s).await),
        None => None,
    };
    let template = match note_template_of(state, me, &n).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let req =
        SearchRequest { params: vec![("patient".to_owned(), subject_of(&n).to_owned())], count: 100, after: None };
    let addenda = match state.records.search(pr, ResourceType::DocumentReference, &req).await {
        Ok(found) => by_session(found.entries).0,
        Err(e) => return me.records_error(e),
    };
    let mine = pr.practitioner_id.as_ref().map(|p| format!("Practitioner/{p}"));
    let is_author = mine.as_deref().is_some_and(|m| n.resource["author"][0]["reference"] == m);
    let blank = AddendumForm::default();
    let none = FieldErrors::default();
    let (form, errors) = typed.unwrap_or((&blank, &none));
    let title = if is_draft(&n.resource) { l.t("Session note (draft)") } else { l.t("Session note") };
    let mut page = me.page(
        title,
        html! {
            dl.demographics {
                dt { (l.t("Patient")) } dd { a href={ "/patients/" (subject_of(&n)) } { (patient) } }
                dt { (l.t("Written by")) } dd { (authors.join(", ")) }
                dt { (l.t("Session date")) } dd {
                    (session_date(&n.resource).unwrap_or("—"))
                    @if n.resource["context"]["encounter"][0]["reference"].is_string() { " · " (l.t("recorded visit")) }
                }
                dt { (l.t("Kind of note")) } dd { (Kind::of(&n.resource).label(l)) }
                @if let Some(t) = &template {
                    dt { (l.t("Template")) } dd { (super::templates::template_name(me, t)) " · " (l.t("Version")) " " (t.version) }
                }
                dt { (l.t("Saved")) } dd { (me.time_ms(n.last_updated)) @if n.version_id > 1 { " · " (l.t("edited")) } }
                @if let Some(by) = &signed_by {
                    dt { (l.t("Signed")) } dd { (by) " · " (signed_at(&n.resource).map(super::readable_time).unwrap_or_default()) }
                }
            }
            p { (badges(me, &n.resource)) }
            (cosign_status(me, &n, cosigner.as_deref(), cosigned_by.as_deref()))
            (note_body(me, &n.resource))
            p { a href={ "/notes/" (n.id) "/history" } { (l.t("Versions ({n})").replace("{n}", &n.version_id.to_string())) } }
            @if let Some(original) = appends_to(&n.resource) {
                p { (l.t("Reason")) ": " (n.resource["description"].as_str().unwrap_or("")) }
                p { a href={ "/notes/" (original) } { (l.t("The note this addendum corrects")) } }
            }
            (addenda_of(me, &addenda, &n.id))
            @if me.role() == Role::Clinician {
                @if signer(&n.resource).is_none() {
                    div.buttons {
                        a.button href={ "/notes/" (n.id) "/edit" } { (l.t("Edit")) }
                        @if is_author {
                            form method="post" action={ "/notes/" (n.id) "/sign" } {
                                (me.csrf_field())
                                input type="hidden" name="version" value=(n.version_id);
                                button type="submit" { (l.t("Sign and lock")) }
                            }
                        }
                    }
                    @if is_author { p.muted { (l.t("A signed note cannot be changed; corrections are added as addenda.")) } }
                } @else if appends_to(&n.resource).is_none() {
                    section {
                        h2 { (l.t("Add an addendum")) }
                        p.muted { (l.t("This note is signed and locked. An addendum is added under it, signed by you; the note stays as it is.")) }
                        form.card.full method="post" action={ "/notes/" (n.id) "/addenda" } {
                            (me.csrf_field())
                            label for="reason" { (l.t("Reason for the addendum")) }
                            input id="reason" name="reason" value=(form.reason) required maxlength="500" autocomplete="off"
                                aria-invalid=[errors.get("reason").map(|_| "true")] aria-describedby=[described_by(errors, "reason")];
                            (errors.show("reason"))
                            label for="text" { (l.t("Addendum")) }
                            textarea id="text" name="text" rows="6" required autocomplete="off"
                                aria-invalid=[errors.get("text").map(|_| "true")] aria-describedby=[described_by(errors, "text")] { (form.text) }
                            (errors.show("text"))
                            button type="submit" { (l.t("Add the signed addendum")) }
                        }
                    }
                }
                p { a href={ "/patients/" (subject_of(&n)) } { (l.t("Back to the chart")) } }
            }
        },
    );
    if !errors.is_empty() {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    page
}

/// Every version of a note, newest first (each read audited).
pub(super) async fn note_history(State(state): State<AppState>, me: SignedIn, Path(id): Path<String>) -> Response {
    let l = me.lang;
    let (versions, total) =
        match state.records.history(&me.auth.principal, ResourceType::DocumentReference, &id, None, 100).await {
            Ok(v) => v,
            Err(e) => return me.records_error(e),
        };
    me.page(
        l.t("Versions of the note"),
        html! {
            p.muted { (l.t("Versions ({n})").replace("{n}", &total.to_string())) }
            @for v in &versions {
                article.note {
                    p.muted {
                        strong { (l.t("Version")) " " (v.version_id) } " · " (me.time_ms(v.last_updated))
                        " · " (l.t("Session date")) " " (session_date(&v.resource).unwrap_or("—"))
                        (badges(&me, &v.resource))
                    }
                    (note_body(&me, &v.resource))
                }
            }
            p { a href={ "/notes/" (id) } { (l.t("Back to the note")) } }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct SignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: Option<i64>,
}

/// The note a clinician's form post changes (or appends to): refused for any
/// other role and without the form's CSRF token; read (and audited) as the caller.
async fn note_to_change(
    state: &AppState,
    me: &SignedIn,
    csrf: &str,
    id: &str,
    unchanged: &'static str,
) -> Result<Stored, Response> {
    if let Some(r) = me.refuse_post(&[Role::Clinician], csrf, unchanged) {
        return Err(r);
    }
    state.records.read(&me.auth.principal, ResourceType::DocumentReference, id).await.map_err(|e| me.records_error(e))
}

/// [`note_to_change`], and `Practitioner/{id}` of the clinician who signs.
async fn note_and_signer(
    state: &AppState,
    me: &SignedIn,
    csrf: &str,
    id: &str,
    unchanged: &'static str,
) -> Result<(Stored, String), Response> {
    let n = note_to_change(state, me, csrf, id, unchanged).await?;
    let l = me.lang;
    match me.auth.principal.practitioner_id.as_deref() {
        Some(p) => Ok((n, format!("Practitioner/{p}"))),
        None => Err(me.message(StatusCode::FORBIDDEN, l.t("Not allowed"), l.t("This page is not for your role."))),
    }
}

/// Sign a note: final, `authenticator` the signing clinician, signed-at set by
/// the server; from then on locked (the policy refuses any change).
pub(super) async fn sign_note(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<SignForm>,
) -> Response {
    let l = me.lang;
    let (current, signer) = match note_and_signer(&state, &me, &f.csrf, &id, "Nothing was saved.").await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let mut doc = current.resource.clone();
    doc["authenticator"] = json!({"reference": signer});
    doc["docStatus"] = json!("final");
    let expected = f.version.unwrap_or(current.version_id);
    match state.records.update(&me.auth.principal, ResourceType::DocumentReference, &id, doc, Some(expected)).await {
        Ok(n) => Redirect::to(&format!("/notes/{}", n.id)).into_response(),
        Err(RecordsError::PreconditionFailed { .. }) => me.message(
            StatusCode::CONFLICT,
            l.t("Not signed"),
            l.t("Someone saved this note after you opened it: read it again before you sign it."),
        ),
        Err(e) => me.records_error(e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct AddendumForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    reason: String,
}

/// Add a signed addendum under a signed note: a new note of the same patient
/// and session and kind, appending to the original, with its reason.
pub(super) async fn add_addendum(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<AddendumForm>,
) -> Response {
    let l = me.lang;
    let (original, signer) = match note_and_signer(&state, &me, &f.csrf, &id, "Nothing was saved.").await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let mut errors = Vec::new();
    if f.reason.trim().is_empty() {
        errors.push(("reason", l.t("Give the reason for the addendum.")));
    }
    if f.text.trim().is_empty() {
        errors.push(("text", l.t("Write the addendum: it is empty.")));
    }
    if !errors.is_empty() {
        return note_page(&state, &me, &id, Some((&f, &FieldErrors(errors)))).await;
    }
    let mut doc = json!({
        "resourceType": "DocumentReference", "status": "current", "docStatus": "final",
        "type": {"text": "Addendum"},
        "subject": original.resource["subject"].clone(),
        "authenticator": {"reference": signer},
        "relatesTo": [{"code": "appends", "target": {"reference": format!("DocumentReference/{id}")}}],
        "description": f.reason.trim(),
        "content": attachment(&f.text),
    });
    if original.resource["context"].is_object() {
        doc["context"] = original.resource["context"].clone();
    }
    Kind::of(&original.resource).apply(&mut doc);
    match state.records.create(&me.auth.principal, ResourceType::DocumentReference, doc).await {
        Ok(_) => Redirect::to(&format!("/notes/{id}")).into_response(),
        Err(e) => me.records_error(e),
    }
}

fn edit_form(
    me: &SignedIn,
    n: &Stored,
    f: &NoteForm,
    today: &str,
    errors: &FieldErrors,
    notice: Option<&str>,
    template: Option<&Template>,
) -> Response {
    let l = me.lang;
    me.page(
        if is_draft(&n.resource) { l.t("Continue the draft") } else { l.t("Edit the note") },
        html! {
            @if let Some(m) = notice { p.notice role="alert" { (m) } }
            form.card.full method="post" action={ "/notes/" (n.id) } {
                (me.csrf_field())
                input type="hidden" name="version" value=(n.version_id);
                (note_fields(me, f, today, errors, 14, template))
                p.muted { (l.t("Earlier versions are kept and can be read in the record's history.")) }
                (note_buttons(me))
            }
            p { a href={ "/patients/" (subject_of(n)) } { (l.t("Back to the chart")) } }
        },
    )
}

/// The form as the stored note fills it.
fn form_of(n: &Stored) -> NoteForm {
    let (template, template_version) = confidant_records::template_of(&n.resource).unzip();
    NoteForm {
        text: note_text(&n.resource),
        session_date: session_date(&n.resource).map(str::to_owned),
        kind: Kind::of(&n.resource).code().to_owned(),
        template: template.unwrap_or_default(),
        template_version,
        sections: confidant_records::note_sections(&n.resource)
            .into_iter()
            .filter_map(|s| Some((s.key?, s.text)))
            .collect(),
        ..NoteForm::default()
    }
}

/// A signed note's edit page: locked, pointing to the addendum form.
fn locked(me: &SignedIn, n: &Stored) -> Response {
    let l = me.lang;
    let mut r = me.page(
        l.t("This note is signed"),
        html! {
            p.notice role="alert" { (l.t("This note is signed and locked: it cannot be edited. Add an addendum to correct it.")) }
            p { a.button href={ "/notes/" (n.id) } { (l.t("Add an addendum")) } }
        },
    );
    *r.status_mut() = StatusCode::CONFLICT;
    r
}

pub(super) async fn edit_note(State(state): State<AppState>, me: SignedIn, Path(id): Path<String>) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician]) {
        return r;
    }
    match state.records.read(&me.auth.principal, ResourceType::DocumentReference, &id).await {
        Ok(n) if signer(&n.resource).is_some() => locked(&me, &n),
        Ok(n) => match note_template_of(&state, &me, &n).await {
            Ok(t) => edit_form(&me, &n, &form_of(&n), &today(&state), &FieldErrors::default(), None, t.as_ref()),
            Err(r) => r,
        },
        Err(e) => me.records_error(e),
    }
}

/// Save an edited note (or draft) as a new version, unless someone saved
/// another version since the edit began: then the form comes back with the
/// text as typed and nothing is overwritten. A signed note is not changed.
pub(super) async fn save_note(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = NoteForm::from_pairs(pairs);
    let l = me.lang;
    let current = match note_to_change(&state, &me, &f.csrf, &id, "Nothing was saved.").await {
        Ok(n) => n,
        Err(r) => return r,
    };
    if signer(&current.resource).is_some() {
        return locked(&me, &current);
    }
    // An edit keeps the template (and version) the note was written with.
    let template = match note_template_of(&state, &me, &current).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let today = today(&state);
    let errors = f.errors(l, &today, template.as_ref());
    if !errors.is_empty() {
        let mut r = edit_form(&me, &current, &f, &today, &errors, None, template.as_ref());
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    }
    let mut doc = current.resource.clone();
    note_content(&me, &mut doc, &f, template.as_ref());
    doc["docStatus"] = json!(f.doc_status());
    let date = f.date_or(session_date(&current.resource).unwrap_or(&today));
    doc["context"] = match session_context(&state, &me, subject_of(&current), &date).await {
        Ok(c) => c,
        Err(e) => return me.records_error(e),
    };
    Kind::parse(&f.kind).unwrap_or(Kind::of(&current.resource)).apply(&mut doc);
    let expected = f.version.unwrap_or(current.version_id);
    match state.records.update(&me.auth.principal, ResourceType::DocumentReference, &id, doc, Some(expected)).await {
        Ok(n) => Redirect::to(&format!("/patients/{}", subject_of(&n))).into_response(),
        Err(RecordsError::PreconditionFailed { .. }) => {
            let notice = l.t("Someone saved this note after you opened it. Nothing was overwritten: your text is below; compare it with the saved note, then save again.");
            let mut r = edit_form(&me, &current, &f, &today, &FieldErrors::default(), Some(notice), template.as_ref());
            *r.status_mut() = StatusCode::CONFLICT;
            r
        }
        Err(e) => me.records_error(e),
    }
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
