//! Working hours: the admin sets each clinician's weekly hours (a FHIR
//! Schedule per practitioner, not patient data, stored like Practitioner);
//! the calendar shades what is outside them and booking outside them asks
//! for a confirmation. Slots are not stored: they follow from the hours and
//! the appointments.

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_fhir::{ResourceType, WEEKDAYS, WORKING_HOURS_URL, WorkingHours, working_hours};
use confidant_policy::Role;
use confidant_records::{SearchRequest, Stored};
use maud::{Markup, html};
use serde_json::json;

use super::SignedIn;
use super::i18n::Lang;
use crate::AppState;

pub(super) fn day_label(l: Lang, weekday: usize) -> &'static str {
    match weekday {
        0 => l.t("Monday"),
        1 => l.t("Tuesday"),
        2 => l.t("Wednesday"),
        3 => l.t("Thursday"),
        4 => l.t("Friday"),
        5 => l.t("Saturday"),
        _ => l.t("Sunday"),
    }
}

pub(super) fn minutes_text(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// The Schedules of `practitioners` that `me` may read, by Practitioner id.
pub(super) async fn schedules_of(state: &AppState, me: &SignedIn, practitioners: &[String]) -> HashMap<String, Stored> {
    if practitioners.is_empty() {
        return HashMap::new();
    }
    let req = SearchRequest { params: vec![("actor".into(), practitioners.join(","))], count: 100, after: None };
    let found = match state.records.search(&me.auth.principal, ResourceType::Schedule, &req).await {
        Ok(page) => page.entries,
        Err(_) => Vec::new(),
    };
    found
        .into_iter()
        .filter_map(|s| {
            let pr = s.resource["actor"][0]["reference"].as_str()?.strip_prefix("Practitioner/")?.to_owned();
            Some((pr, s))
        })
        .collect()
}

/// The working hours of `practitioners` that have a Schedule (none: hours unknown).
pub(super) async fn hours_of(
    state: &AppState,
    me: &SignedIn,
    practitioners: &[String],
) -> HashMap<String, Vec<WorkingHours>> {
    schedules_of(state, me, practitioners).await.into_iter().map(|(pr, s)| (pr, working_hours(&s.resource))).collect()
}

/// Whether `[start, end)` minutes of `weekday` fall within `hours`.
fn within(hours: &[WorkingHours], weekday: usize, start: u32, end: u32) -> bool {
    hours.iter().any(|h| h.weekday == weekday && h.start <= start && end <= h.end)
}

/// Whether `[start, end)` (Unix ms) falls within `hours`, clinic-local, on one day.
pub(super) fn inside(tz: &jiff::tz::TimeZone, hours: &[WorkingHours], start: i64, end: i64) -> bool {
    let at = |ms: i64| super::calendar::local_of(tz, ms);
    let minutes = |t: jiff::civil::Time| t.hour() as u32 * 60 + t.minute() as u32;
    match (at(start), at(end - 1)) {
        (Some((d, s)), Some((d2, e))) if d == d2 => {
            within(hours, d.weekday().to_monday_zero_offset() as usize, minutes(s), minutes(e) + 1)
        }
        _ => false,
    }
}

fn hours_form(me: &SignedIn, id: &str, name: &str, hours: &[WorkingHours]) -> Markup {
    let l = me.lang;
    html! {
        form.card.hours method="post" action="/admin/hours" {
            (me.csrf_field())
            h2 { (name) }
            input type="hidden" name="practitioner" value=(id);
            @for (i, day) in WEEKDAYS.iter().enumerate() {
                @let h = hours.iter().find(|h| h.weekday == i);
                fieldset.hours-day {
                    legend { (day_label(l, i)) }
                    label for={ (id) "-" (day) "-start" } { (l.t("From")) }
                    input id={ (id) "-" (day) "-start" } name={ (day) "_start" } type="time" value=[h.map(|h| minutes_text(h.start))];
                    label for={ (id) "-" (day) "-end" } { (l.t("To")) }
                    input id={ (id) "-" (day) "-end" } name={ (day) "_end" } type="time" value=[h.map(|h| minutes_text(h.end))];
                }
            }
            button type="submit" { (l.t("Save working hours")) }
        }
    }
}

pub(super) async fn page(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    let l = me.lang;
    let staff = super::front_desk::clinicians(&state, &me).await;
    let ids: Vec<String> = staff.iter().map(|(id, _)| id.clone()).collect();
    let hours = hours_of(&state, &me, &ids).await;
    me.page(
        l.t("Working hours"),
        html! {
            p.muted { (l.t("Each clinician's weekly hours, in the clinic's time zone. Leave a day empty if they do not work then. The calendar shades the time outside them, and booking outside them asks for a confirmation.")) }
            @for (id, name) in &staff {
                (hours_form(&me, id, name, hours.get(id).map(Vec::as_slice).unwrap_or_default()))
            }
        },
    )
}

pub(super) async fn save(
    State(state): State<AppState>,
    me: SignedIn,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let csrf = f.get("csrf").cloned().unwrap_or_default();
    if let Some(r) = me.refuse_post(&[Role::Admin], &csrf, "Nothing was saved.") {
        return r;
    }
    let l = me.lang;
    let bad = || {
        me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("Give each day's hours as HH:MM, the end after the start, or leave both empty. Nothing was saved."),
        )
    };
    let practitioner = f.get("practitioner").cloned().unwrap_or_default();
    let staff = super::front_desk::clinicians(&state, &me).await;
    if !staff.iter().any(|(id, _)| *id == practitioner) {
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("Choose one of the clinic's clinicians."),
        );
    }
    let mut stretches = Vec::new();
    for day in WEEKDAYS {
        let get = |k: &str| f.get(&format!("{day}_{k}")).map(|v| v.trim().to_owned()).unwrap_or_default();
        let (start, end) = (get("start"), get("end"));
        match (start.is_empty(), end.is_empty()) {
            (true, true) => continue,
            (false, false) => {}
            _ => return bad(),
        }
        let (Some(s), Some(e)) = (super::calendar::parse_time(&start), super::calendar::parse_time(&end)) else {
            return bad();
        };
        if e <= s {
            return bad();
        }
        let time = |t: jiff::civil::Time| format!("{:02}:{:02}:00", t.hour(), t.minute());
        stretches.push(json!({"url": WORKING_HOURS_URL, "extension": [
            {"url": "day", "valueCode": day},
            {"url": "start", "valueTime": time(s)},
            {"url": "end", "valueTime": time(e)},
        ]}));
    }
    let mut schedule = json!({
        "resourceType": "Schedule", "active": true,
        "actor": [{"reference": format!("Practitioner/{practitioner}")}],
    });
    if !stretches.is_empty() {
        schedule["extension"] = json!(stretches);
    }
    let p = &me.auth.principal;
    let existing = schedules_of(&state, &me, std::slice::from_ref(&practitioner)).await.remove(&practitioner);
    let saved = match existing {
        Some(s) => {
            schedule["id"] = json!(s.id);
            state.records.update(p, ResourceType::Schedule, &s.id, schedule, Some(s.version_id)).await
        }
        None => state.records.create(p, ResourceType::Schedule, schedule).await,
    };
    match saved {
        Ok(_) => Redirect::to("/admin/hours").into_response(),
        Err(e) => me.records_error(e),
    }
}
