//! The calendar: a clinician's day or week (their own), or reception's view of
//! one clinician or all, in the clinic's time zone (`clinic.time_zone`, DST
//! included), today's day first. Each entry: time and length, the patient's
//! name linked to their page (the chart for a clinician, the reception view
//! for reception: nothing clinical), the appointment type and status, and
//! forms to cancel, mark a no-show or reschedule (one or the rest of a series).
//! Whose calendar one sees is `policy::schedule`; the records service finds,
//! audits and changes.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_fhir::{APPOINTMENT_TYPE_SYSTEM, ResourceType};
use confidant_policy::Role;
use confidant_records::{CANCEL_REASONS, RecordsError, Stored, Which};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use maud::{Markup, html};
use serde::Deserialize;

use super::{SignedIn, i18n::Lang, name_of};
use crate::AppState;

/// Appointment types offered: (code, English label).
pub(super) const KINDS: &[(&str, &str)] =
    &[("session", "Therapy session"), ("first-visit", "First visit"), ("follow-up", "Follow-up")];

/// A clinic-local date and time as Unix ms (a time in a DST gap moves forward, as clocks do).
pub(super) fn local_ms(tz: &TimeZone, date: Date, time: Time) -> Option<i64> {
    date.to_datetime(time).to_zoned_datetime(tz.clone()).ok().map(|z| z.timestamp().as_millisecond())
}

/// The clinic-local date and time of Unix ms.
pub(super) fn local_of(tz: &TimeZone, ms: i64) -> Option<(Date, Time)> {
    let z = Timestamp::from_millisecond(ms).ok()?.to_zoned_datetime(tz.clone());
    Some((z.date(), z.time()))
}

/// `HH:MM` of Unix ms, clinic-local.
pub(super) fn hm(tz: &TimeZone, ms: i64) -> String {
    local_of(tz, ms).map(|(_, t)| format!("{:02}:{:02}", t.hour(), t.minute())).unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM` of Unix ms, clinic-local.
pub(super) fn local_text(tz: &TimeZone, ms: i64) -> String {
    local_of(tz, ms).map(|(d, t)| format!("{d} {:02}:{:02}", t.hour(), t.minute())).unwrap_or_default()
}

/// A date typed as `YYYY-MM-DD`.
pub(super) fn parse_date(s: &str) -> Option<Date> {
    if s.len() != 10 {
        return None;
    }
    s.parse::<Date>().ok()
}

/// A time typed as `HH:MM`.
pub(super) fn parse_time(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

pub(super) fn add_days(d: Date, days: i64) -> Option<Date> {
    d.checked_add(Span::new().days(days)).ok()
}

fn weekday_name(l: Lang, d: Date) -> &'static str {
    match d.weekday().to_monday_zero_offset() {
        0 => l.t("Monday"),
        1 => l.t("Tuesday"),
        2 => l.t("Wednesday"),
        3 => l.t("Thursday"),
        4 => l.t("Friday"),
        5 => l.t("Saturday"),
        _ => l.t("Sunday"),
    }
}

pub(super) fn kind_label(l: Lang, a: &serde_json::Value) -> &'static str {
    let coding = &a["appointmentType"]["coding"][0];
    let code = (coding["system"].as_str() == Some(APPOINTMENT_TYPE_SYSTEM)).then(|| coding["code"].as_str()).flatten();
    match code {
        Some("first-visit") => l.t("First visit"),
        Some("follow-up") => l.t("Follow-up"),
        Some("session") => l.t("Therapy session"),
        _ => l.t("Appointment"),
    }
}

fn status_label(l: Lang, status: &str) -> &'static str {
    match status {
        "booked" => l.t("booked"),
        "cancelled" => l.t("cancelled"),
        "noshow" => l.t("no-show"),
        "fulfilled" => l.t("attended"),
        _ => l.t("other status"),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct CalendarQuery {
    #[serde(default)]
    view: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    clinician: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Day,
    Week,
}

impl View {
    fn parse(s: &str) -> Option<View> {
        match s {
            "" | "day" => Some(View::Day),
            "week" => Some(View::Week),
            _ => None,
        }
    }

    fn code(self) -> &'static str {
        match self {
            View::Day => "day",
            View::Week => "week",
        }
    }
}

/// Where a calendar link or a change's redirect goes.
fn calendar_href(view: View, date: Date, clinician: &str) -> String {
    let mut href = format!("/calendar?view={}&date={date}", view.code());
    if !clinician.is_empty() {
        href.push_str("&clinician=");
        href.push_str(clinician);
    }
    href
}

/// "My schedule": the clinician's calendar, today (the old address keeps working).
pub(super) async fn schedule(state: State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician]) {
        return r;
    }
    calendar(state, me, Query(CalendarQuery::default())).await
}

pub(super) async fn calendar(State(state): State<AppState>, me: SignedIn, Query(q): Query<CalendarQuery>) -> Response {
    if let Some(r) = me.only_for(&[Role::Clinician, Role::Reception]) {
        return r;
    }
    let l = me.lang;
    let tz = &state.clinic.time_zone;
    let bad = |text: &str| me.message(StatusCode::BAD_REQUEST, l.t("Please check the form"), text);
    let today = local_of(tz, state.records.now_millis()).map(|(d, _)| d).unwrap_or_default();
    let date = if q.date.is_empty() { Some(today) } else { parse_date(&q.date) };
    let (Some(view), Some(date)) = (View::parse(&q.view), date) else {
        return bad(l.t("Give the view as day or week and the date as YYYY-MM-DD."));
    };
    let first = match view {
        View::Day => date,
        View::Week => add_days(date, -i64::from(date.weekday().to_monday_zero_offset())).unwrap_or(date),
    };
    let days = if view == View::Day { 1 } else { 7 };
    let (Some(last), Some(step)) = (add_days(first, days), add_days(date, days)) else {
        return bad(l.t("Give the view as day or week and the date as YYYY-MM-DD."));
    };
    let staff = super::front_desk::clinicians(&state, &me).await;
    let chosen: Vec<String> = match me.role() {
        // A clinician's own calendar; asking for another's is refused by policy.
        Role::Clinician => {
            let own = me.auth.principal.practitioner_id.clone().unwrap_or_default();
            vec![if q.clinician.is_empty() { own } else { q.clinician.clone() }]
        }
        _ if q.clinician.is_empty() => staff.iter().map(|(id, _)| id.clone()).collect(),
        _ if staff.iter().any(|(id, _)| *id == q.clinician) => vec![q.clinician.clone()],
        _ => return bad(l.t("Choose one of the clinic's clinicians.")),
    };
    let (Some(from), Some(until)) = (local_ms(tz, first, Time::midnight()), local_ms(tz, last, Time::midnight()))
    else {
        return bad(l.t("Give the view as day or week and the date as YYYY-MM-DD."));
    };
    let p = &me.auth.principal;
    let list = match state.records.appointments_between(p, &chosen, from, until).await {
        Ok(list) => list,
        Err(e) => return me.records_error(e),
    };
    // The patients' names, as a patient list is read: a search by id (each
    // hit audited, a demographics list for detection, not a chart opened per
    // patient); one not readable shows no name.
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    let mut wanted: Vec<&str> = list.iter().filter_map(|a| patient_in(&a.resource)).collect();
    wanted.sort_unstable();
    wanted.dedup();
    for id in wanted {
        let req =
            confidant_records::SearchRequest { params: vec![("_id".to_owned(), id.to_owned())], count: 1, after: None };
        if let Ok(page) = state.records.search(p, ResourceType::Patient, &req).await {
            for r in page.entries {
                names.insert(r.id.clone(), Some(name_of(&r.resource)));
            }
        }
    }
    let staff_names: HashMap<&str, &str> = staff.iter().map(|(id, n)| (id.as_str(), n.as_str())).collect();
    let hours = super::hours::hours_of(&state, &me, &chosen).await;
    let ctx = Entries {
        me: &me,
        tz,
        names: &names,
        staff: &staff_names,
        view,
        date,
        clinician: &q.clinician,
        now: state.records.now_millis(),
        hours: &hours,
        single: (chosen.len() == 1).then(|| chosen[0].as_str()),
    };
    let title = match me.role() {
        Role::Clinician => l.t("My schedule"),
        _ => l.t("Calendar"),
    };
    let clinician_q = q.clinician.as_str();
    let body = html! {
        nav.calendar-nav aria-label=(l.t("Calendar")) {
            a href=(calendar_href(view, add_days(date, -days).unwrap_or(date), clinician_q)) rel="prev" { "← " (l.t("Previous")) }
            a href=(calendar_href(view, today, clinician_q)) { (l.t("Today")) }
            a href=(calendar_href(view, step, clinician_q)) rel="next" { (l.t("Next")) " →" }
            @if view == View::Day {
                a href=(calendar_href(View::Week, date, clinician_q)) { (l.t("Week")) }
            } @else {
                a href=(calendar_href(View::Day, date, clinician_q)) { (l.t("Day")) }
            }
        }
        @if me.role() == Role::Reception {
            form.calendar-pick method="get" action="/calendar" {
                input type="hidden" name="view" value=(view.code());
                input type="hidden" name="date" value=(date.to_string());
                label for="clinician" { (l.t("Clinician")) }
                select id="clinician" name="clinician" {
                    option value="" { (l.t("All clinicians")) }
                    @for (id, name) in &staff { option value=(id) selected[*id == q.clinician] { (name) } }
                }
                button type="submit" { (l.t("Show")) }
            }
        }
        p.muted { (l.t("Times are in the clinic's time zone:")) " " (tz.iana_name().unwrap_or("UTC")) }
        @match view {
            View::Day => {
                section.calendar-day {
                    h2 { (weekday_name(l, date)) " " (date.to_string()) }
                    (ctx.day_list(&list, date))
                }
            }
            View::Week => {
                div.week {
                    @for i in 0..7 {
                        @let d = add_days(first, i).unwrap_or(first);
                        section.week-day.today[d == today] {
                            h2 { a href=(calendar_href(View::Day, d, clinician_q)) { (weekday_name(l, d)) " " (d.to_string()) } }
                            (ctx.day_list(&list, d))
                        }
                    }
                }
            }
        }
    };
    me.page(title, body)
}

fn patient_in(a: &serde_json::Value) -> Option<&str> {
    a["participant"].as_array()?.iter().find_map(|p| p["actor"]["reference"].as_str()?.strip_prefix("Patient/"))
}

/// What the entries of one calendar page are drawn with.
struct Entries<'a> {
    me: &'a SignedIn,
    tz: &'a TimeZone,
    names: &'a HashMap<String, Option<String>>,
    staff: &'a HashMap<&'a str, &'a str>,
    view: View,
    date: Date,
    clinician: &'a str,
    now: i64,
    /// Working hours by Practitioner id (those with a Schedule).
    hours: &'a HashMap<String, Vec<confidant_fhir::WorkingHours>>,
    /// The one clinician shown, if one.
    single: Option<&'a str>,
}

impl Entries<'_> {
    fn day_list(&self, list: &[Stored], day: Date) -> Markup {
        let l = self.me.lang;
        let on_day: Vec<&Stored> = list
            .iter()
            .filter(|a| {
                confidant_records::span_of(&a.resource)
                    .and_then(|(s, _)| local_of(self.tz, s))
                    .is_some_and(|(d, _)| d == day)
            })
            .collect();
        let weekday = day.weekday().to_monday_zero_offset() as usize;
        let hours: Option<Vec<_>> =
            self.single.and_then(|pr| self.hours.get(pr)).map(|h| h.iter().filter(|h| h.weekday == weekday).collect());
        html! {
            @match &hours {
                Some(h) if h.is_empty() => { p.hours.off-day { (l.t("No working hours this day.")) } }
                Some(h) => {
                    p.hours {
                        (l.t("Working hours")) ": "
                        @for (i, s) in h.iter().enumerate() {
                            @if i > 0 { ", " }
                            (super::hours::minutes_text(s.start)) "–" (super::hours::minutes_text(s.end))
                        }
                    }
                }
                None => {}
            }
            @if on_day.is_empty() { p.muted { (l.t("No appointments.")) } }
            @else {
                ul.appointments {
                    @for a in on_day { (self.entry(a)) }
                }
            }
        }
    }

    fn entry(&self, a: &Stored) -> Markup {
        let l = self.me.lang;
        let r = &a.resource;
        let (start, end) = confidant_records::span_of(r).unwrap_or_default();
        let status = r["status"].as_str().unwrap_or("");
        let patient = patient_in(r).unwrap_or("");
        let name = self.names.get(patient).cloned().flatten();
        let practitioner = confidant_records::practitioner_in(r).unwrap_or("");
        let series = r["identifier"].as_array().is_some_and(|i| !i.is_empty());
        let back = calendar_href(self.view, self.date, self.clinician);
        let outside = self.hours.get(practitioner).is_some_and(|h| !super::hours::inside(self.tz, h, start, end));
        html! {
            li.appt.{ "status-" (status) }.outside-hours[outside] {
                @if outside { p.appt-outside { (l.t("Outside working hours")) } }
                p.appt-when {
                    strong { (hm(self.tz, start)) "–" (hm(self.tz, end)) }
                    " · " ((end - start) / 60_000) " min"
                }
                p.appt-who {
                    @match &name {
                        Some(n) => a href={ "/patients/" (patient) } { (n) },
                        None => span.muted { (l.t("Patient not in your care")) },
                    }
                }
                p.appt-what {
                    (kind_label(l, r)) " · " span.status { (status_label(l, status)) }
                    @if series { " · " (l.t("series")) }
                    @if self.me.role() == Role::Reception && self.clinician.is_empty() {
                        " · " (self.staff.get(practitioner).copied().unwrap_or(""))
                    }
                }
                @if status == "booked" && name.is_some() {
                    details.appt-change {
                        summary { (l.t("Change")) }
                        form method="post" action={ "/appointments/" (a.id) "/cancel" } {
                            (self.me.csrf_field())
                            input type="hidden" name="back" value=(back);
                            label for={ "reason-" (a.id) } { (l.t("Cancellation reason")) }
                            select id={ "reason-" (a.id) } name="reason" {
                                @for (code, _) in CANCEL_REASONS { option value=(code) { (reason_label(l, code)) } }
                            }
                            (self.which(a, "cancel", series))
                            button type="submit" { (l.t("Cancel appointment")) }
                        }
                        form method="post" action={ "/appointments/" (a.id) "/reschedule" } {
                            (self.me.csrf_field())
                            input type="hidden" name="back" value=(back);
                            @let (d, t) = local_of(self.tz, start).unwrap_or_default();
                            label for={ "date-" (a.id) } { (l.t("New date")) }
                            input id={ "date-" (a.id) } name="date" type="date" required value=(d.to_string());
                            label for={ "time-" (a.id) } { (l.t("New time")) }
                            input id={ "time-" (a.id) } name="time" type="time" required value=(format!("{:02}:{:02}", t.hour(), t.minute()));
                            (self.which(a, "reschedule", series))
                            button type="submit" { (l.t("Reschedule")) }
                        }
                        @if start <= self.now {
                            form method="post" action={ "/appointments/" (a.id) "/no-show" } {
                                (self.me.csrf_field())
                                input type="hidden" name="back" value=(back);
                                button.secondary type="submit" { (l.t("Mark as no-show")) }
                            }
                        }
                    }
                }
            }
        }
    }

    fn which(&self, a: &Stored, form: &str, series: bool) -> Markup {
        let l = self.me.lang;
        html! {
            @if series {
                label for={ (form) "-which-" (a.id) } { (l.t("Which")) }
                select id={ (form) "-which-" (a.id) } name="which" {
                    option value="one" { (l.t("This appointment only")) }
                    option value="rest" { (l.t("This and the rest of the series")) }
                }
            }
        }
    }
}

fn reason_label(l: Lang, code: &str) -> &'static str {
    match code {
        "pat" => l.t("The patient cancelled"),
        "prov" => l.t("The clinician cancelled"),
        _ => l.t("Other reason"),
    }
}

#[derive(Deserialize)]
pub(super) struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    which: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    time: String,
}

impl ChangeForm {
    fn which(&self) -> Option<Which> {
        match self.which.as_str() {
            "" | "one" => Some(Which::One),
            "rest" => Some(Which::Rest),
            _ => None,
        }
    }

    /// Back to the calendar the form was on: only a calendar address of ours.
    fn back(&self) -> String {
        let ok = self.back.starts_with("/calendar?")
            && self.back.len() < 200
            && self.back.bytes().all(|b| b.is_ascii_alphanumeric() || b"/?=&-_.".contains(&b));
        if ok { self.back.clone() } else { "/calendar".to_owned() }
    }
}

fn changed(me: &SignedIn, f: &ChangeForm, result: Result<usize, RecordsError>, tz: &TimeZone) -> Response {
    let l = me.lang;
    match result {
        Ok(_) => Redirect::to(&f.back()).into_response(),
        Err(RecordsError::DoubleBooked { at }) => me.message(
            StatusCode::CONFLICT,
            l.t("Double booking"),
            &l.t("The clinician already has an appointment at {time}: nothing was changed.")
                .replace("{time}", &local_text(tz, at)),
        ),
        Err(e) => me.records_error(e),
    }
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<ChangeForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Reception, Role::Clinician], &f.csrf, "Nothing was changed.") {
        return r;
    }
    let Some(which) = f.which() else {
        return me.message(
            StatusCode::BAD_REQUEST,
            me.lang.t("Please check the form"),
            me.lang.t("Choose which appointments."),
        );
    };
    let result = state.records.cancel_appointment(&me.auth.principal, &id, which, &f.reason).await;
    changed(&me, &f, result, &state.clinic.time_zone)
}

pub(super) async fn no_show(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<ChangeForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Reception, Role::Clinician], &f.csrf, "Nothing was changed.") {
        return r;
    }
    let result = state.records.mark_no_show(&me.auth.principal, &id).await.map(|()| 1);
    changed(&me, &f, result, &state.clinic.time_zone)
}

pub(super) async fn reschedule(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<ChangeForm>,
) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Reception, Role::Clinician], &f.csrf, "Nothing was changed.") {
        return r;
    }
    let l = me.lang;
    let (Some(which), Some(date), Some(time)) = (f.which(), parse_date(&f.date), parse_time(&f.time)) else {
        return me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("Give the new date (YYYY-MM-DD) and time (HH:MM), and which appointments."),
        );
    };
    let tz = state.clinic.time_zone.clone();
    // Each moves by as many days as the one chosen, to the new time of day (local: DST kept).
    let to = move |first: i64, this: i64| {
        let (first_day, _) = local_of(&tz, first)?;
        let (day, _) = local_of(&tz, this)?;
        let days = first_day.until(date).ok()?.get_days();
        local_ms(&tz, add_days(day, i64::from(days))?, time)
    };
    let result = state.records.reschedule_appointment(&me.auth.principal, &id, which, &to).await;
    changed(&me, &f, result, &state.clinic.time_zone)
}
