//! The patient portal: who has looked at my records (who, role, when, what,
//! why), and "download my data" as a FHIR Bundle.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confidant_policy::Role;
use maud::html;

use super::{SignedIn, i18n};
use crate::AppState;

pub(super) fn home(me: &SignedIn) -> Response {
    let l = me.lang;
    me.page(
        l.t("Your records"),
        html! {
            ul.list {
                li { a href="/me/appointments" { (l.t("Your appointments")) } }
                li { a href="/me/measures" { (l.t("Questionnaires from your clinician")) } }
                li { a href="/me/access-log" { (l.t("Who has looked at my records")) } }
                li { a href="/me/data" download="my-records.json" { (l.t("Download my data (FHIR Bundle, JSON)")) } }
            }
        },
    )
}

/// The patient's access log: who looked at their records, in what role, when and why.
pub(super) async fn access_log(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Patient]) {
        return r;
    }
    let l = me.lang;
    let q = confidant_records::AuditQuery {
        patient: None,
        agent: None,
        action: None,
        from: None,
        until: None,
        before: None,
        count: 200,
    };
    let events = match state.records.audit_events(&me.auth.principal, &q).await {
        Ok(p) => p.events,
        Err(e) => return me.records_error(e),
    };
    me.page(
        l.t("Who has looked at my records"),
        html! {
            p { (l.t("Every time someone opens, searches or changes your records it is recorded here. Ask your clinic about anything you do not recognise.")) }
            @if events.is_empty() { p { (l.t("Nothing yet.")) } }
            @else {
                table.log {
                    thead { tr {
                        th scope="col" { (l.t("When")) } th scope="col" { (l.t("Who")) } th scope="col" { (l.t("Role")) }
                        th scope="col" { (l.t("What")) } th scope="col" { (l.t("Why")) }
                    } }
                    tbody {
                        @for e in &events {
                            tr {
                                td { (me.time(e["recorded"].as_str().unwrap_or(""))) }
                                td { (e["agent"][0]["who"]["display"].as_str().unwrap_or("")) }
                                td { (i18n::role_code_name(l, e["agent"][0]["role"][0]["text"].as_str().unwrap_or(""))) }
                                td { (i18n::action_name(l, e["subtype"][0]["code"].as_str().unwrap_or(""))) @if e["outcome"] == "4" { " " (l.t("(refused)")) } }
                                td { (e["purposeOfEvent"][0]["text"].as_str().or(e["purposeOfEvent"][0]["coding"][0]["display"].as_str()).unwrap_or(l.t("care"))) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// "Download my data": the patient's own records as the FHIR searchset Bundle of
/// `Patient/{id}/$everything` (each resource audited as a read).
pub(super) async fn my_data(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Patient]) {
        return r;
    }
    let Some(pid) = me.auth.principal.patient_id.clone() else {
        let l = me.lang;
        return me.message(
            StatusCode::FORBIDDEN,
            l.t("Not allowed"),
            l.t("Only a patient account has its own records to download."),
        );
    };
    // The export is the patient's `Patient/{id}/$everything`, every page of it (each resource audited as a read).
    let bundle = match crate::fhir_everything::everything_bundle(&state, &me.auth.principal, &pid).await {
        Ok(b) => b,
        Err(e) => return me.records_error(e),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"my-records.json\"")),
        ],
        serde_json::to_vec_pretty(&bundle).unwrap_or_default(),
    )
        .into_response()
}
