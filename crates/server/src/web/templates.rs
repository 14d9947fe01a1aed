//! Note templates (the admin's page: the built-in ones, the clinic's own,
//! created and changed, each change a new version), supervision of
//! clinicians in training (the admin's page), and co-signing (the
//! supervisor's list of notes to co-sign, and the co-sign button's post).
//! What is allowed is decided in `confidant_policy`, through the records
//! service; the pages decide nothing.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_fhir::ResourceType;
use confidant_policy::Role;
use confidant_records::{RecordsError, Template, TemplateDraft};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::front_desk::practitioners;
use super::{SignedIn, name_of};
use crate::AppState;

/// A template's name in the reader's language.
pub(super) fn template_name<'a>(me: &SignedIn, t: &'a Template) -> &'a str {
    t.name.get(me.lang.code())
}

#[derive(Deserialize, Default)]
pub(super) struct TemplateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// One section a line: `Title | prompt` (the prompt may be left out).
    #[serde(default)]
    sections: String,
    /// The version the change was made from.
    #[serde(default)]
    version: Option<i64>,
}

impl TemplateForm {
    fn draft(&self) -> TemplateDraft {
        TemplateDraft {
            name: self.name.clone(),
            sections: self
                .sections
                .lines()
                .map(|line| match line.split_once('|') {
                    Some((t, p)) => (t.to_owned(), p.to_owned()),
                    None => (line.to_owned(), String::new()),
                })
                .collect(),
        }
    }

    fn of(t: &Template) -> TemplateForm {
        let lines: Vec<String> =
            t.sections
                .iter()
                .map(|s| {
                    if s.prompt.en.is_empty() {
                        s.title.en.clone()
                    } else {
                        format!("{} | {}", s.title.en, s.prompt.en)
                    }
                })
                .collect();
        TemplateForm {
            name: t.name.en.clone(),
            sections: lines.join("\n"),
            version: Some(t.version),
            ..Default::default()
        }
    }
}

/// The name and sections fields of the new-template and edit forms.
fn template_fields(me: &SignedIn, f: &TemplateForm, error: Option<&str>) -> Markup {
    let l = me.lang;
    html! {
        @if let Some(e) = error { p.notice #template-error role="alert" { (e) } }
        label for="name" { (l.t("Template name")) }
        input id="name" name="name" value=(f.name) required maxlength="100" autocomplete="off"
            aria-describedby=[error.map(|_| "template-error")];
        label for="sections" { (l.t("Sections, one a line: title | prompt")) }
        textarea id="sections" name="sections" rows="8" required autocomplete="off" { (f.sections) }
        p.muted { (l.t("At most 30 sections; a title at most 100 characters, a prompt at most 500.")) }
    }
}

pub(super) async fn templates_page(State(state): State<AppState>, me: SignedIn) -> Response {
    list_page(&state, &me, None).await
}

async fn list_page(state: &AppState, me: &SignedIn, typed: Option<(&TemplateForm, &str)>) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    let l = me.lang;
    let all = match state.records.note_templates(&me.auth.principal).await {
        Ok(t) => t,
        Err(e) => return me.records_error(e),
    };
    let blank = TemplateForm::default();
    let (form, error) = match typed {
        Some((f, e)) => (f, Some(e)),
        None => (&blank, None),
    };
    let mut r = super::admin::admin_page(
        me,
        l.t("Note templates"),
        html! {
            section {
                ul.list.templates {
                    @for t in &all {
                        li {
                            strong { (template_name(me, t)) }
                            " · " span.muted { (l.t("{n} sections").replace("{n}", &t.sections.len().to_string())) }
                            @if t.built_in { " " span.badge { (l.t("Built in")) } }
                            @else {
                                " · " span.muted { (l.t("Version")) " " (t.version) }
                                " · " a href={ "/admin/templates/" (t.id) } { (l.t("Edit")) }
                            }
                        }
                    }
                }
            }
            section {
                h2 { (l.t("New template")) }
                form.card method="post" action="/admin/templates" {
                    (me.csrf_field())
                    (template_fields(me, form, error))
                    button type="submit" { (l.t("Create the template")) }
                }
            }
        },
    );
    if error.is_some() {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

pub(super) async fn create_template(
    State(state): State<AppState>,
    me: SignedIn,
    Form(f): Form<TemplateForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "Nothing was saved.") {
        return r;
    }
    match state.records.save_note_template(&me.auth.principal, None, None, &f.draft()).await {
        Ok(_) => Redirect::to("/admin/templates").into_response(),
        Err(RecordsError::Invalid(m)) => list_page(&state, &me, Some((&f, &m))).await,
        Err(e) => me.records_error(e),
    }
}

pub(super) async fn edit_template(State(state): State<AppState>, me: SignedIn, Path(id): Path<String>) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    match state.records.note_template(&me.auth.principal, &id, None).await {
        Ok(t) if t.built_in => me.message(
            StatusCode::CONFLICT,
            me.lang.t("Built in"),
            me.lang.t("A built-in template cannot be changed; create a template of your own."),
        ),
        Ok(t) => edit_page(&me, &t, &TemplateForm::of(&t), None),
        Err(e) => me.records_error(e),
    }
}

fn edit_page(me: &SignedIn, t: &Template, f: &TemplateForm, error: Option<&str>) -> Response {
    let l = me.lang;
    let mut r = super::admin::admin_page(
        me,
        l.t("Edit the template"),
        html! {
            p.muted { (l.t("Version")) " " (t.version) " · " (l.t("Saving makes a new version; notes keep the version they were written with.")) }
            form.card method="post" action={ "/admin/templates/" (t.id) } {
                (me.csrf_field())
                input type="hidden" name="version" value=(f.version.unwrap_or(t.version));
                (template_fields(me, f, error))
                button type="submit" { (l.t("Save a new version")) }
            }
            p { a href="/admin/templates" { (l.t("Back to the templates")) } }
        },
    );
    if error.is_some() {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

pub(super) async fn save_template(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<TemplateForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "Nothing was saved.") {
        return r;
    }
    let l = me.lang;
    match state.records.save_note_template(&me.auth.principal, Some(&id), f.version, &f.draft()).await {
        Ok(_) => Redirect::to("/admin/templates").into_response(),
        Err(RecordsError::Invalid(m)) => match state.records.note_template(&me.auth.principal, &id, None).await {
            Ok(t) => edit_page(&me, &t, &f, Some(&m)),
            Err(e) => me.records_error(e),
        },
        Err(RecordsError::Conflict) => me.message(
            StatusCode::CONFLICT,
            l.t("Not saved"),
            l.t("Someone saved this template after you opened it: open it again and repeat your change."),
        ),
        Err(e) => me.records_error(e),
    }
}

// ----- supervision ---------------------------------------------------------------------

pub(super) async fn supervision_page(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    let l = me.lang;
    let current = match state.records.supervisions(&me.auth.principal).await {
        Ok(s) => s,
        Err(e) => return me.records_error(e),
    };
    let staff = practitioners(&state, &me).await;
    let clinicians = state.records.clinician_practitioners().await.unwrap_or_default();
    let name = |id: &str| {
        let r = format!("Practitioner/{id}");
        staff.iter().find(|(s, _)| *s == r).map(|(_, n)| n.clone()).unwrap_or(r)
    };
    super::admin::admin_page(
        &me,
        l.t("Supervision"),
        html! {
            p { (l.t("A clinician in training signs their notes; their supervisor then co-signs them.")) }
            section {
                h2 { (l.t("In training")) }
                @if current.is_empty() { p { (l.t("Nobody is in training.")) } }
                ul.list {
                    @for (trainee, supervisor) in &current {
                        li {
                            (name(trainee)) " · " (l.t("supervised by")) " " (name(supervisor))
                            form.inline method="post" action="/admin/supervision" {
                                (me.csrf_field())
                                input type="hidden" name="trainee" value=(trainee);
                                input type="hidden" name="supervisor" value="";
                                button.secondary type="submit" { (l.t("End the supervision")) }
                            }
                        }
                    }
                }
            }
            section {
                h2 { (l.t("Set a supervisor")) }
                form.card method="post" action="/admin/supervision" {
                    (me.csrf_field())
                    label for="trainee" { (l.t("Clinician in training")) }
                    select id="trainee" name="trainee" required {
                        @for c in &clinicians { option value=(c) { (name(c)) } }
                    }
                    label for="supervisor" { (l.t("Supervisor")) }
                    select id="supervisor" name="supervisor" required {
                        @for c in &clinicians { option value=(c) { (name(c)) } }
                    }
                    button type="submit" { (l.t("Save")) }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct SupervisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    trainee: String,
    #[serde(default)]
    supervisor: String,
}

pub(super) async fn set_supervision(
    State(state): State<AppState>,
    me: SignedIn,
    Form(f): Form<SupervisionForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "Nothing was saved.") {
        return r;
    }
    let l = me.lang;
    let clinicians = state.records.clinician_practitioners().await.unwrap_or_default();
    let known = |id: &str| clinicians.iter().any(|c| c == id);
    let supervisor = Some(f.supervisor.as_str()).filter(|s| !s.is_empty());
    if !known(&f.trainee) || supervisor.is_some_and(|s| !known(s)) {
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("Choose clinicians from the list."),
        );
    }
    match state.records.set_supervisor(&me.auth.principal, &f.trainee, supervisor).await {
        Ok(()) => Redirect::to("/admin/supervision").into_response(),
        Err(e) => me.records_error(e),
    }
}

// ----- co-signing ----------------------------------------------------------------------

/// The supervisor's list: signed notes of their trainees waiting for a co-signature.
pub(super) async fn to_cosign(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician]) {
        return r;
    }
    let l = me.lang;
    let notes = match state.records.notes_to_cosign(&me.auth.principal).await {
        Ok(n) => n,
        Err(e) => return me.records_error(e),
    };
    let mut rows = Vec::new();
    for n in &notes {
        let patient =
            n.resource["subject"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).unwrap_or("");
        let name = match state.records.read(&me.auth.principal, ResourceType::Patient, patient).await {
            Ok(p) => name_of(&p.resource),
            Err(_) => patient.to_owned(),
        };
        let date =
            n.resource["context"]["period"]["start"].as_str().and_then(|d| d.get(..10)).unwrap_or("—").to_owned();
        rows.push((n.id.clone(), name, date));
    }
    me.page(
        l.t("To co-sign"),
        html! {
            @if rows.is_empty() { p { (l.t("No notes are waiting for your co-signature.")) } }
            ul.list {
                @for (id, name, date) in &rows {
                    li { a href={ "/notes/" (id) } { (name) " · " (l.t("Session date")) " " (date) } }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct CosignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: Option<i64>,
}

/// Co-sign a signed note of a trainee: the note as it is, with the
/// co-signer added (the records service stamps when; the policy decides who).
pub(super) async fn cosign(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<CosignForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Clinician], &f.csrf, "Nothing was saved.") {
        return r;
    }
    let l = me.lang;
    let pr = &me.auth.principal;
    let current = match state.records.read(pr, ResourceType::DocumentReference, &id).await {
        Ok(n) => n,
        Err(e) => return me.records_error(e),
    };
    let me_ref = pr.practitioner_id.as_deref().map(|p| format!("Practitioner/{p}")).unwrap_or_default();
    let mut doc = current.resource.clone();
    let ext = json!({"url": confidant_records::COSIGNED_BY, "valueReference": {"reference": me_ref}});
    match doc["extension"].as_array_mut() {
        Some(list) => list.push(ext),
        None => doc["extension"] = json!([ext]),
    }
    let expected = f.version.unwrap_or(current.version_id);
    match state.records.update(pr, ResourceType::DocumentReference, &id, doc, Some(expected)).await {
        Ok(_) => Redirect::to(&format!("/notes/{id}")).into_response(),
        Err(RecordsError::PreconditionFailed { .. }) => me.message(
            StatusCode::CONFLICT,
            l.t("Not saved"),
            l.t("Someone saved this note after you opened it: read it again before you co-sign it."),
        ),
        Err(e) => me.records_error(e),
    }
}

// ----- notes written with a template ----------------------------------------------------

/// The chart's template picker: a GET form (works without script) that shows
/// the new-note form again with the chosen template's sections.
pub(super) fn template_picker(me: &SignedIn, patient: &str, all: &[Template], current: Option<&Template>) -> Markup {
    let l = me.lang;
    html! {
        form.template-picker method="get" action={ "/patients/" (patient) } {
            label for="template" { (l.t("Template")) }
            select id="template" name="template" {
                option value="" { (l.t("Plain note (no template)")) }
                @for t in all {
                    option value=(t.id) selected[current.is_some_and(|c| c.id == t.id)] { (template_name(me, t)) }
                }
            }
            button.secondary type="submit" { (l.t("Use this template")) }
        }
    }
}

/// A labelled textarea with its prompt for each section of `t`, as typed in `f`.
pub(super) fn section_fields(
    me: &SignedIn,
    t: &Template,
    f: &super::clinical::NoteForm,
    error: Option<&str>,
) -> Markup {
    let lang = me.lang.code();
    html! {
        input type="hidden" name="template" value=(t.id);
        input type="hidden" name="template_version" value=(t.version);
        @for s in &t.sections {
            div.section-field {
                label for={ "section-" (s.key) } { (s.title.get(lang)) }
                @if !s.prompt.get(lang).is_empty() { p.muted.prompt id={ "prompt-" (s.key) } { (s.prompt.get(lang)) } }
                textarea id={ "section-" (s.key) } name={ "section." (s.key) } rows="4" autocomplete="off"
                    aria-invalid=[error.map(|_| "true")]
                    aria-describedby={ "prompt-" (s.key) @if let Some(e) = error { " " (e) } } { (f.section(&s.key)) }
            }
        }
    }
}

/// A note's text: its sections under their headings (a built-in template's
/// titles in the reader's language), or the one text of a plain note.
pub(super) fn note_body(me: &SignedIn, doc: &serde_json::Value) -> Markup {
    let sections = confidant_records::note_sections(doc);
    let built_in = confidant_records::template_of(doc).and_then(|(id, _)| confidant_records::built_in_template(&id));
    let title_of = |s: &confidant_records::NoteSection| -> Option<String> {
        let localised = built_in.as_ref().and_then(|t| {
            let key = s.key.as_deref()?;
            t.sections.iter().find(|ts| ts.key == key).map(|ts| ts.title.get(me.lang.code()).to_owned())
        });
        localised.or_else(|| s.title.clone())
    };
    html! {
        @if sections.iter().all(|s| s.title.is_none()) {
            @for s in &sections { p.text { (s.text) } }
        } @else {
            div.sections {
                @for s in &sections {
                    @if let Some(t) = title_of(s) { h3 { (t) } }
                    p.text { (s.text) }
                }
            }
        }
    }
}

/// Whether a trainee's signed note waits for its co-signature, or who co-signed it;
/// the co-sign button for the supervisor it names.
pub(super) fn cosign_status(
    me: &SignedIn,
    n: &confidant_records::Stored,
    cosigner: Option<&str>,
    cosigned_by: Option<&str>,
) -> Markup {
    let l = me.lang;
    let mine = me.auth.principal.practitioner_id.as_deref().map(|p| format!("Practitioner/{p}"));
    let required = super::clinical::extension_reference(&n.resource, confidant_records::COSIGN_REQUIRED_BY);
    let cosigned_at = n.resource["extension"]
        .as_array()
        .and_then(|ext| ext.iter().find(|e| e["url"] == confidant_records::COSIGNED_AT)?["valueInstant"].as_str());
    html! {
        @if let Some(by) = cosigned_by {
            p.cosigned { (l.t("Co-signed by")) " " strong { (by) } " · " (cosigned_at.map(super::readable_time).unwrap_or_default()) }
        } @else if let Some(by) = cosigner {
            p.notice { (l.t("Awaiting co-sign by")) " " strong { (by) } }
            @if mine.is_some() && required == mine.as_deref() {
                form method="post" action={ "/notes/" (n.id) "/cosign" } {
                    (me.csrf_field())
                    input type="hidden" name="version" value=(n.version_id);
                    button type="submit" { (l.t("Co-sign")) }
                }
            }
        }
    }
}
