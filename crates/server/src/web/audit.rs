//! The auditor's pages: search the audit log, open alerts, and the incident
//! report (whose records were touched, by whom) to download as JSON or CSV.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confidant_policy::Role;
use confidant_records::IncidentQuery;
use maud::html;
use serde::Deserialize;

use super::{SignedIn, i18n};
use crate::AppState;

fn text(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A day (`2026-11-30`) or instant as Unix ms: its start, or its end.
fn day(v: &Option<String>, end: bool) -> Option<i64> {
    text(v).and_then(|d| confidant_fhir::date_range(&d)).and_then(|(a, b)| if end { b } else { a })
}

/// What an AuditEvent was about: a record, a patient, or another object (a user, a token, a report).
fn entity(e: &serde_json::Value) -> String {
    let what = &e["entity"][0]["what"];
    what["reference"]
        .as_str()
        .or(what["display"].as_str())
        .or(what["identifier"]["value"].as_str())
        .unwrap_or("")
        .to_owned()
}

#[derive(Deserialize)]
pub(super) struct AuditForm {
    patient: Option<String>,
    agent: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The auditor's page: search the audit log; open alerts.
pub(super) async fn search(State(state): State<AppState>, me: SignedIn, Query(f): Query<AuditForm>) -> Response {
    if let Some(r) = me.only_for(&[Role::Auditor]) {
        return r;
    }
    let l = me.lang;
    let q = confidant_records::AuditQuery {
        patient: text(&f.patient),
        agent: text(&f.agent),
        action: text(&f.action),
        from: day(&f.from, false),
        until: day(&f.to, true),
        before: None,
        count: 200,
    };
    let events = match state.records.audit_events(&me.auth.principal, &q).await {
        Ok(p) => p.events,
        Err(e) => return me.records_error(e),
    };
    let alerts = state.records.alerts(&me.auth.principal, true, 100).await.unwrap_or_default();
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    me.page(
        l.t("Audit log and alerts"),
        html! {
            (super::admin::alerts_section(&me, &alerts))
            section {
                h2 { (l.t("Search the audit log")) }
                form.card.wide method="get" action="/audit" {
                    div.field { label for="patient" { (l.t("Patient id")) } input id="patient" name="patient" value=(v(&f.patient)); }
                    div.field { label for="agent" { (l.t("User id")) } input id="agent" name="agent" value=(v(&f.agent)); }
                    div.field { label for="action" { (l.t("Action (read, search-hit, break-glass, …)")) } input id="action" name="action" value=(v(&f.action)); }
                    div.field { label for="from" { (l.t("From")) } input id="from" name="from" type="date" value=(v(&f.from)); }
                    div.field { label for="to" { (l.t("To")) } input id="to" name="to" type="date" value=(v(&f.to)); }
                    button type="submit" { (l.t("Search")) }
                }
                table.log {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { (l.t("When")) } th scope="col" { (l.t("Who")) }
                        th scope="col" { (l.t("Action")) } th scope="col" { (l.t("Record")) } th scope="col" { (l.t("From")) }
                    } }
                    tbody {
                        @for e in &events {
                            tr {
                                td { (e["id"].as_str().unwrap_or("")) }
                                td { (me.time(e["recorded"].as_str().unwrap_or(""))) }
                                td.wrap { (e["agent"][0]["who"]["display"].as_str().unwrap_or("")) " " span.muted { (e["agent"][0]["who"]["identifier"]["value"].as_str().unwrap_or("")) } }
                                td { (i18n::action_name(l, e["subtype"][0]["code"].as_str().unwrap_or(""))) @if e["outcome"] == "4" { " " (l.t("(refused)")) } }
                                td.wrap { (entity(e)) }
                                td { (e["agent"][0]["network"]["address"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct IncidentForm {
    from: Option<String>,
    to: Option<String>,
    actor: Option<String>,
    #[serde(default)]
    format: String,
}

/// The incident report's form.
pub(super) async fn incident_page(me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Auditor]) {
        return r;
    }
    let l = me.lang;
    me.page(
        l.t("Incident report"),
        html! {
            p { (l.t("Which patients' records were opened, by whom, how often and when, read from the audit log: the list a data breach notification (GDPR Art. 33 and 34) needs. Patient ids only; honey records are marked (synthetic: nobody to notify). Making the report is itself recorded.")) }
            form.card.wide method="get" action="/audit/incident/report" {
                div.field { label for="from" { (l.t("From")) } input id="from" name="from" type="date"; }
                div.field { label for="to" { (l.t("To")) } input id="to" name="to" type="date"; }
                div.field { label for="actor" { (l.t("Only this user (user id, optional)")) } input id="actor" name="actor" autocomplete="off"; }
                div.field {
                    label for="format" { (l.t("Format")) }
                    select id="format" name="format" { option value="json" { "JSON" } option value="csv" { "CSV" } }
                }
                button type="submit" { (l.t("Download the report")) }
            }
        },
    )
}

/// The incident report as a download.
pub(super) async fn incident_report(
    State(state): State<AppState>,
    me: SignedIn,
    Query(f): Query<IncidentForm>,
) -> Response {
    if let Some(r) = me.only_for(&[Role::Auditor]) {
        return r;
    }
    let l = me.lang;
    let bad_date = |v: &Option<String>| text(v).is_some_and(|d| confidant_fhir::date_range(&d).is_none());
    if bad_date(&f.from) || bad_date(&f.to) || !matches!(f.format.as_str(), "" | "json" | "csv") {
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("Give dates as YYYY-MM-DD, and JSON or CSV."),
        );
    }
    let q = IncidentQuery { from: day(&f.from, false), until: day(&f.to, true), actor: text(&f.actor) };
    let report = match state.records.incident_report(Some(&me.auth.principal), &q).await {
        Ok(r) => r,
        Err(e) => return me.records_error(e),
    };
    let instance = confidant_records::instance_id(state.records.store()).await.ok().flatten().unwrap_or_default();
    let (kind, name, body) = if f.format == "csv" {
        ("text/csv; charset=utf-8", "incident-report.csv", report.to_csv().into_bytes())
    } else {
        let json = serde_json::to_vec_pretty(&report.to_json(&instance)).unwrap_or_default();
        ("application/json", "incident-report.json", json)
    };
    let disposition = format!("attachment; filename=\"{name}\"");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        body,
    )
        .into_response()
}
