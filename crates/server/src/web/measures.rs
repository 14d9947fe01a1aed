//! Outcome measures on the pages: the chart's "Measures" section (send a
//! PHQ-9, GAD-7 or CORE-10 to the portal or fill it in now, the risk flags to
//! acknowledge, a trend per measure as server-rendered SVG with the severity
//! bands shaded), the form that answers one (the patient in the portal, the
//! clinician during the session; radio buttons, no script), the patient's
//! list of pending measures, and the flags on the clinician's patients list.
//! The item texts are the instruments' own, in English: we show no
//! translation of a validated instrument that we have not got from its owner.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_fhir::ResourceType;
use confidant_policy::Role;
use confidant_records::measures::{self, INSTRUMENTS, Instrument};
use confidant_records::{RecordsError, SearchRequest, Stored};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::{Lang, SignedIn, readable_time};
use crate::AppState;

fn by_patient(id: &str) -> SearchRequest {
    SearchRequest { params: vec![("patient".to_owned(), id.to_owned())], count: 100, after: None }
}

/// A band's name in the page's language.
fn band_name(l: Lang, code: &str) -> &'static str {
    match code {
        "minimal" => l.t("minimal"),
        "mild" => l.t("mild"),
        "moderate" => l.t("moderate"),
        "moderately-severe" => l.t("moderately severe"),
        "severe" => l.t("severe"),
        "healthy" => l.t("healthy"),
        "low" => l.t("low level"),
        _ => "",
    }
}

/// The instrument whose score this Observation is.
fn instrument_of_score(o: &Value) -> Option<&'static Instrument> {
    let code = o["code"]["coding"][0]["code"].as_str()?;
    INSTRUMENTS.into_iter().find(|i| i.code.1 == code)
}

fn score_of(o: &Value) -> Option<u8> {
    o["valueInteger"].as_u64().and_then(|v| u8::try_from(v).ok())
}

fn when(o: &Value, key: &str) -> String {
    o[key].as_str().map(readable_time).unwrap_or_default()
}

/// "PHQ-9 item 9 answered 'Several days'", for a flagged score.
fn flag_text(l: Lang, o: &Value) -> Option<String> {
    let i = instrument_of_score(o)?;
    let item = i.risk_item?;
    let value = o["component"][0]["valueInteger"].as_u64().and_then(|v| usize::try_from(v).ok())?;
    let answer = i.options.get(value).copied().unwrap_or("");
    Some(format!("{} {} {item}: “{answer}”", i.title, l.t("item")))
}

/// The chart's "Measures" section for patient `id`.
pub(super) async fn chart_section(state: &AppState, me: &SignedIn, id: &str) -> Markup {
    let l = me.lang;
    let p = &me.auth.principal;
    let scores = state.records.search(p, ResourceType::Observation, &by_patient(id)).await;
    let responses = state.records.search(p, ResourceType::QuestionnaireResponse, &by_patient(id)).await;
    let (Ok(scores), Ok(responses)) = (scores, responses) else {
        return html! { section #measures { h2 { (l.t("Measures")) } p.notice { (l.t("The measures could not be shown.")) } } };
    };
    let mut scores = scores.entries;
    scores.sort_by(|a, b| a.resource["effectiveDateTime"].as_str().cmp(&b.resource["effectiveDateTime"].as_str()));
    let pending: Vec<&Stored> = responses.entries.iter().filter(|r| measures::is_pending(&r.resource)).collect();
    let flagged: Vec<&Stored> = scores.iter().filter(|o| measures::needs_attention(&o.resource)).collect();
    html! {
        section #measures {
            h2 { (l.t("Measures")) }
            @for o in &flagged {
                div.flag role="alert" {
                    p {
                        strong { (l.t("Needs attention:")) } " "
                        (flag_text(l, &o.resource).unwrap_or_default())
                        " · " (when(&o.resource, "effectiveDateTime"))
                    }
                    form method="post" action={ "/observations/" (o.id) "/acknowledge" } {
                        (me.csrf_field())
                        input type="hidden" name="version" value=(o.version_id);
                        button type="submit" { (l.t("Acknowledge")) }
                    }
                }
            }
            @for i in INSTRUMENTS {
                @let mine: Vec<&Stored> = scores.iter().filter(|o| instrument_of_score(&o.resource).is_some_and(|x| x.id == i.id)).collect();
                @if !mine.is_empty() { (trend(l, i, &mine)) }
            }
            @if scores.is_empty() { p { (l.t("No measures completed yet.")) } }
            @if !pending.is_empty() {
                h3 { (l.t("Waiting for answers")) }
                ul.list {
                    @for r in &pending {
                        li {
                            (measures::instrument_of(&r.resource).map(|i| i.title).unwrap_or(""))
                            " · " (l.t("sent")) " " (when(&r.resource, "authored")) " · "
                            a href={ "/measures/" (r.id) } { (l.t("Fill in now")) }
                        }
                    }
                }
            }
            form.card method="post" action={ "/patients/" (id) "/measures" } {
                (me.csrf_field())
                fieldset {
                    legend { (l.t("Outcome measure")) }
                    @for (n, i) in INSTRUMENTS.iter().enumerate() {
                        label.radio {
                            @if n == 0 { input type="radio" name="instrument" value=(i.id) checked; }
                            @else { input type="radio" name="instrument" value=(i.id); }
                            " " (i.title)
                        }
                    }
                }
                div.buttons {
                    button type="submit" name="action" value="send" { (l.t("Send to the portal")) }
                    button type="submit" name="action" value="now" { (l.t("Fill in now")) }
                }
            }
        }
    }
}

/// One measure's trend: the scores over time on the severity bands, as SVG
/// (classes from app.css, no script, no style attributes), and the same in text.
fn trend(l: Lang, i: &Instrument, scores: &[&Stored]) -> Markup {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    const LEFT: f64 = 34.0;
    const RIGHT: f64 = 10.0;
    const TOP: f64 = 8.0;
    const BOTTOM: f64 = 8.0;
    let max = f64::from(i.max_total());
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h - v / max * plot_h;
    let n = scores.len() as f64;
    let x = |k: usize| LEFT + (k as f64 + 0.5) * plot_w / n;
    let points: Vec<(f64, f64, &Stored, u8)> = scores
        .iter()
        .enumerate()
        .filter_map(|(k, o)| score_of(&o.resource).map(|s| (x(k), y(f64::from(s)), *o, s)))
        .collect();
    let line: String = points.iter().map(|(px, py, _, _)| format!("{px:.1},{py:.1}")).collect::<Vec<_>>().join(" ");
    let latest = scores.last().and_then(|o| score_of(&o.resource).map(|s| (s, *o)));
    let summary = latest.map(|(s, o)| {
        let band = i.band(s).map(|b| band_name(l, b.code)).unwrap_or("");
        format!(
            "{} {}: {s} / {} ({band}), {}",
            l.t("Latest"),
            i.title,
            i.max_total(),
            when(&o.resource, "effectiveDateTime")
        )
    });
    html! {
        figure.measure {
            figcaption { h3 { (i.title) } }
            p.latest { (summary.clone().unwrap_or_default()) }
            svg.trend xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(summary.unwrap_or_default()) {
                @for b in i.bands {
                    @let top = y((f64::from(b.to) + 1.0).min(max));
                    @let bottom = y(f64::from(b.from));
                    rect class={ "band band-" (b.code) } x=(LEFT) y={ (format!("{top:.1}")) } width=(plot_w) height={ (format!("{:.1}", bottom - top)) } {
                        title { (b.from) "–" (b.to) " " (band_name(l, b.code)) }
                    }
                    text.axis x={ (LEFT - 4.0) } y={ (format!("{:.1}", bottom - 2.0)) } text-anchor="end" { (b.from) }
                }
                text.axis x={ (LEFT - 4.0) } y={ (format!("{:.1}", TOP + 8.0)) } text-anchor="end" { (i.max_total()) }
                @if points.len() > 1 { polyline.line points=(line) {} }
                @for (px, py, o, s) in &points {
                    circle.point cx={ (format!("{px:.1}")) } cy={ (format!("{py:.1}")) } r="5" {
                        title { (when(&o.resource, "effectiveDateTime")) ": " (s) }
                    }
                }
            }
            table.log {
                thead { tr { th scope="col" { (l.t("When")) } th scope="col" { (l.t("Score")) } th scope="col" { (l.t("Severity")) } } }
                tbody {
                    @for o in scores.iter().rev() {
                        tr {
                            td { (when(&o.resource, "effectiveDateTime")) }
                            td { (score_of(&o.resource).map(|s| s.to_string()).unwrap_or_default()) " / " (i.max_total()) }
                            td { (score_of(&o.resource).and_then(|s| i.band(s)).map(|b| band_name(l, b.code)).unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// The flags waiting on a clinician's patients list (their care only: the
/// search sees nothing else). Empty for anyone else.
pub(super) async fn attention_list(state: &AppState, me: &SignedIn) -> Markup {
    let l = me.lang;
    if me.role() != Role::Clinician {
        return html! {};
    }
    let req = SearchRequest { params: Vec::new(), count: 100, after: None };
    let Ok(found) = state.records.search(&me.auth.principal, ResourceType::Observation, &req).await else {
        return html! {};
    };
    let flagged: Vec<&Stored> = found.entries.iter().filter(|o| measures::needs_attention(&o.resource)).collect();
    html! {
        @if !flagged.is_empty() {
            section.attention {
                h2 { (l.t("Needs attention")) }
                ul.list {
                    @for o in &flagged {
                        @let patient = o.resource["subject"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).unwrap_or("");
                        li.flag {
                            a href={ "/patients/" (patient) "#measures" } { (flag_text(l, &o.resource).unwrap_or_default()) }
                            " · " (when(&o.resource, "effectiveDateTime"))
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct SendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    instrument: String,
    #[serde(default)]
    action: String,
}

/// "Send to the portal" or "Fill in now" on the chart.
pub(super) async fn send(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<SendForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Clinician], &f.csrf, "Nothing was sent.") {
        return r;
    }
    let l = me.lang;
    if !matches!(f.action.as_str(), "send" | "now") {
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("Choose to send the measure or to fill it in now."),
        );
    }
    match state.records.send_measure(&me.auth.principal, &id, &f.instrument).await {
        Ok(r) if f.action == "now" => Redirect::to(&format!("/measures/{}", r.id)).into_response(),
        Ok(_) => Redirect::to(&format!("/patients/{id}#measures")).into_response(),
        Err(e) => me.records_error(e),
    }
}

/// The patient's measures waiting for their answers.
pub(super) async fn pending(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Patient]) {
        return r;
    }
    let l = me.lang;
    let Some(pid) = me.auth.principal.patient_id.clone() else {
        return me.message(StatusCode::FORBIDDEN, l.t("Not allowed"), l.t("This page is not for your role."));
    };
    let found =
        match state.records.search(&me.auth.principal, ResourceType::QuestionnaireResponse, &by_patient(&pid)).await {
            Ok(f) => f.entries,
            Err(e) => return me.records_error(e),
        };
    let waiting: Vec<&Stored> = found.iter().filter(|r| measures::is_pending(&r.resource)).collect();
    me.page(
        l.t("Questionnaires from your clinician"),
        html! {
            @if waiting.is_empty() { p { (l.t("Nothing to fill in.")) } }
            @else {
                p { (l.t("Your clinician has asked you to fill in these before your next session.")) }
                ul.list {
                    @for r in &waiting {
                        li {
                            a href={ "/measures/" (r.id) } { (measures::instrument_of(&r.resource).map(|i| i.title).unwrap_or("")) }
                            " · " (l.t("sent")) " " (when(&r.resource, "authored"))
                        }
                    }
                }
            }
        },
    )
}

/// The form answering one pending measure (`typed`: answers kept after an error).
fn answer_form(
    me: &SignedIn,
    r: &Stored,
    i: &Instrument,
    typed: &BTreeMap<usize, u8>,
    error: Option<&str>,
) -> Response {
    let l = me.lang;
    me.page(
        i.title,
        html! {
            @if let Some(e) = error { p.notice #form-error role="alert" { (e) } }
            @if l == Lang::Fi {
                p.muted { (l.t("The questions are shown in English: only an official translation of this questionnaire may be used, and we do not have one yet.")) }
            }
            p lang="en" { (i.stem) }
            form.measure-form method="post" action={ "/measures/" (r.id) } {
                (me.csrf_field())
                @for (n, text) in i.items.iter().enumerate() {
                    @let item = n + 1;
                    fieldset.item {
                        legend lang="en" { (item) ". " (text) }
                        @for (v, option) in i.options.iter().enumerate() {
                            label.radio lang="en" {
                                @if typed.get(&item).is_some_and(|t| usize::from(*t) == v) {
                                    input type="radio" name=(item) value=(v) required checked;
                                } @else {
                                    input type="radio" name=(item) value=(v) required;
                                }
                                " " (option)
                            }
                        }
                    }
                }
                button type="submit" { (l.t("Submit answers")) }
            }
            p.muted lang="en" { (i.copyright) }
        },
    )
}

/// Open a pending measure to answer (the patient it was sent to, or a clinician in their care).
pub(super) async fn form(State(state): State<AppState>, me: SignedIn, Path(id): Path<String>) -> Response {
    if let Some(r) = me.only_for(&[Role::Patient, Role::Clinician]) {
        return r;
    }
    let l = me.lang;
    let r = match state.records.read(&me.auth.principal, ResourceType::QuestionnaireResponse, &id).await {
        Ok(r) => r,
        Err(e) => return me.records_error(e),
    };
    let Some(i) = measures::instrument_of(&r.resource) else { return me.unavailable() };
    if !measures::is_pending(&r.resource) {
        return me.message(
            StatusCode::CONFLICT,
            l.t("Already answered"),
            l.t("This questionnaire has been answered already."),
        );
    }
    answer_form(&me, &r, i, &BTreeMap::new(), None)
}

/// Submit the answers: every item once, a number on its scale, nothing else.
pub(super) async fn answer(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let csrf = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
    if let Some(r) = me.refuse_post(&[Role::Patient, Role::Clinician], csrf, "Nothing was saved.") {
        return r;
    }
    let l = me.lang;
    let bad = |text: &str| me.message(StatusCode::BAD_REQUEST, l.t("Please check the form"), text);
    let mut answers = BTreeMap::new();
    for (k, v) in fields.iter().filter(|(k, _)| k != "csrf") {
        let (Ok(item), Ok(value)) = (k.parse::<usize>(), v.parse::<u8>()) else {
            return bad(l.t("The form has a field this questionnaire does not have. Nothing was saved."));
        };
        if answers.insert(item, value).is_some() {
            return bad(l.t("An item was answered twice. Nothing was saved."));
        }
    }
    match state.records.answer_measure(&me.auth.principal, &id, &answers).await {
        Ok((_, score)) if me.role() == Role::Clinician => {
            let patient =
                score.resource["subject"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).unwrap_or("");
            Redirect::to(&format!("/patients/{patient}#measures")).into_response()
        }
        Ok(_) => me.message(
            StatusCode::OK,
            l.t("Thank you"),
            l.t("Your answers have been saved and sent to your clinician."),
        ),
        Err(RecordsError::Invalid(m)) => {
            // Shown again with what was chosen, and what is wrong.
            match state.records.read(&me.auth.principal, ResourceType::QuestionnaireResponse, &id).await {
                Ok(r) => match measures::instrument_of(&r.resource) {
                    Some(i) => {
                        let mut page = answer_form(&me, &r, i, &answers, Some(&m));
                        *page.status_mut() = StatusCode::BAD_REQUEST;
                        page
                    }
                    None => me.unavailable(),
                },
                Err(e) => me.records_error(e),
            }
        }
        Err(e) => me.records_error(e),
    }
}

#[derive(Deserialize)]
pub(super) struct AcknowledgeForm {
    #[serde(default)]
    csrf: String,
    version: Option<i64>,
}

/// A clinician acknowledges a risk flag (audited as an update of the score).
pub(super) async fn acknowledge(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<AcknowledgeForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Clinician], &f.csrf, "Nothing was saved.") {
        return r;
    }
    let l = me.lang;
    match state.records.acknowledge_measure_flag(&me.auth.principal, &id, f.version).await {
        Ok(o) => {
            let patient =
                o.resource["subject"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).unwrap_or("");
            Redirect::to(&format!("/patients/{patient}#measures")).into_response()
        }
        Err(RecordsError::PreconditionFailed { .. }) => me.message(
            StatusCode::CONFLICT,
            l.t("Not saved"),
            l.t("Someone acknowledged this flag after you opened the page."),
        ),
        Err(e) => me.records_error(e),
    }
}
