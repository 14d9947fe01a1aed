//! The patient's appointments: the portal's list with a Cancel button (within
//! the clinic's notice rule), and the public cancel link of a reminder
//! (`/cancel/{token}`): no login, and it shows nothing but the clinic and the
//! time of the one appointment it is bound to. The records service decides
//! (through `confidant_policy::appointments`) and audits.
//!
//! The link's form carries no CSRF token: there is no session to ride on. The
//! 256-bit token in its address is the credential, which a cross-site page
//! cannot know; no cookie is read or set (so SameSite has nothing to protect),
//! and pages are never cached and send no Referer (the security headers).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_policy::Role;
use confidant_records::{Cancelled, LinkState};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Lang, SignedIn, Visitor};
use crate::{AppState, ClinicSettings};

/// `millis` in the clinic's zone: `2026-12-03 15:00 (EET)`, or `3.12.2026 klo 15.00 (EET)`.
pub(super) fn clinic_time(clinic: &ClinicSettings, millis: i64, l: Lang) -> String {
    let Ok(t) = jiff::Timestamp::from_millisecond(millis) else { return String::new() };
    let z = t.to_zoned_datetime(clinic.time_zone.clone());
    let format = match l {
        Lang::Fi => "%-d.%-m.%Y klo %H.%M (%Z)",
        Lang::En => "%Y-%m-%d %H:%M (%Z)",
    };
    z.strftime(format).to_string()
}

fn start_millis(a: &serde_json::Value) -> Option<i64> {
    a["start"].as_str()?.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

fn call_the_clinic(l: Lang, clinic: &ClinicSettings) -> String {
    l.t("Less than {n} hours before the appointment it can no longer be cancelled here: please call the clinic.")
        .replace("{n}", &clinic.cancel_notice_hours.to_string())
}

/// `/me/appointments`: the patient's own upcoming appointments.
pub(super) async fn mine(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Patient]) {
        return r;
    }
    let l = me.lang;
    let list = match state.records.own_appointments(&me.auth.principal).await {
        Ok(list) => list,
        Err(e) => return me.records_error(e),
    };
    let now = state.records.now_millis();
    let notice = i64::from(state.clinic.cancel_notice_hours) * 3_600_000;
    let upcoming: Vec<_> =
        list.iter().filter_map(|a| start_millis(&a.resource).filter(|s| *s > now).map(|s| (a, s))).collect();
    me.page(
        l.t("Your appointments"),
        html! {
            p { (l.t("Your upcoming appointments at {clinic}:").replace("{clinic}", &state.clinic.name)) }
            @if upcoming.is_empty() { p { (l.t("You have no upcoming appointments.")) } }
            @else {
                ul.list.appointments {
                    @for (a, start) in &upcoming {
                        li {
                            span.when { (clinic_time(&state.clinic, *start, l)) }
                            @match a.resource["status"].as_str().unwrap_or("") {
                                "booked" if start - now >= notice => {
                                    form.inline method="post" action={ "/me/appointments/" (a.id) "/cancel" } {
                                        (me.csrf_field())
                                        button.small type="submit" { (l.t("Cancel this appointment")) }
                                    }
                                }
                                "booked" => { span.muted { (call_the_clinic(l, &state.clinic)) } }
                                "cancelled" => { span.muted { (l.t("Cancelled")) } }
                                other => { span.muted { (other) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct CancelForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /me/appointments/{id}/cancel`: the patient cancels their own appointment.
pub(super) async fn cancel_mine(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<CancelForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Patient], &f.csrf, "Nothing was changed.") {
        return r;
    }
    let l = me.lang;
    match state.records.cancel_own(&me.auth.principal, &id, state.clinic.cancel_notice_hours).await {
        Ok(Cancelled::Done) => Redirect::to("/me/appointments").into_response(),
        Ok(Cancelled::TooLate) => {
            me.message(StatusCode::CONFLICT, l.t("Please call the clinic"), &call_the_clinic(l, &state.clinic))
        }
        Ok(Cancelled::Unknown) => me.message(
            StatusCode::NOT_FOUND,
            l.t("Not found"),
            l.t("There is no such upcoming appointment of yours. Nothing was changed."),
        ),
        Err(e) => me.records_error(e),
    }
}

/// The one page of every link that does not work (unknown, used, expired,
/// malformed): it tells nothing about why.
fn dead_link(v: &Visitor) -> Response {
    let l = v.lang;
    v.message(
        StatusCode::NOT_FOUND,
        l.t("This link does not work"),
        l.t("The link has expired or has already been used. To change an appointment, please call the clinic."),
    )
}

fn what(l: Lang, clinic: &ClinicSettings, start: i64) -> Markup {
    html! {
        p.appointment {
            (l.t("Your appointment at {clinic} on {when}.")
                .replace("{clinic}", &clinic.name)
                .replace("{when}", &clinic_time(clinic, start, l)))
        }
    }
}

fn source(addr: &crate::client::ClientAddr) -> String {
    crate::api::throttle_source(addr.0)
}

/// `GET /cancel/{token}`: the appointment of a reminder's link, and "Cancel it?".
pub(super) async fn link_page(
    State(state): State<AppState>,
    v: Visitor,
    addr: crate::client::ClientAddr,
    Path(token): Path<String>,
) -> Response {
    let l = v.lang;
    let clinic = &state.clinic;
    match state.records.cancel_link_state(&token, &source(&addr), clinic.cancel_notice_hours).await {
        Ok(LinkState::Cancellable { start }) => v.page(
            l.t("Cancel your appointment?"),
            html! {
                div.card.cancel {
                    (what(l, clinic, start))
                    form method="post" action={ "/cancel/" (token) } {
                        button type="submit" { (l.t("Cancel the appointment")) }
                    }
                    p.muted { (l.t("If you want to keep the appointment, just close this page.")) }
                }
            },
        ),
        Ok(LinkState::TooLate { start }) => v.page(
            l.t("Please call the clinic"),
            html! { div.card.cancel { (what(l, clinic, start)) p.notice { (call_the_clinic(l, clinic)) } } },
        ),
        Ok(LinkState::Unknown) => dead_link(&v),
        Err(e) => {
            tracing::error!(error = %e, "a cancel link failed");
            super::error_page(&axum::http::HeaderMap::new(), StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// `POST /cancel/{token}`: cancel the link's appointment (once).
pub(super) async fn link_cancel(
    State(state): State<AppState>,
    v: Visitor,
    addr: crate::client::ClientAddr,
    Path(token): Path<String>,
) -> Response {
    let l = v.lang;
    let clinic = &state.clinic;
    match state.records.cancel_by_link(&token, &source(&addr), clinic.cancel_notice_hours).await {
        Ok(Cancelled::Done) => v.page(
            l.t("Appointment cancelled"),
            html! { div.card.done { p { (l.t("Your appointment has been cancelled. You may close this page.")) } } },
        ),
        Ok(Cancelled::TooLate) => {
            v.message(StatusCode::CONFLICT, l.t("Please call the clinic"), &call_the_clinic(l, clinic))
        }
        Ok(Cancelled::Unknown) => dead_link(&v),
        Err(e) => {
            tracing::error!(error = %e, "a cancel link failed");
            super::error_page(&axum::http::HeaderMap::new(), StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}
