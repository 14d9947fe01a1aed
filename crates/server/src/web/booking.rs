//! Booking on the reception patient view: with whom, the first date and time
//! (clinic-local), the appointment type and length, and a repeat (weekly or
//! every two weeks, so many times or until a date). Errors are shown next to
//! their fields with the typed values kept; a double booking is refused with
//! the clash's time (never the other patient). The records service books.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_fhir::ResourceType;
use confidant_policy::Role;
use confidant_records::{Booking, MAX_SERIES, RecordsError};
use jiff::civil::Date;
use maud::{Markup, html};
use serde::Deserialize;

use super::SignedIn;
use super::calendar::{KINDS, add_days, local_ms, local_text, parse_date, parse_time};
use crate::AppState;

/// What a booking form holds (as typed).
#[derive(Deserialize, Default, Clone)]
pub(super) struct BookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    practitioner: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    time: String,
    /// An appointment type code (`KINDS`); empty: a therapy session.
    #[serde(default)]
    kind: String,
    /// Minutes: 45, 60 or 90; empty: 60.
    #[serde(default)]
    length: String,
    /// `none`, `weekly` or `biweekly`; empty: none.
    #[serde(default)]
    repeat: String,
    #[serde(default)]
    count: String,
    #[serde(default)]
    until: String,
    /// `yes`: book although it is outside the clinician's working hours.
    #[serde(default)]
    confirm: String,
}

/// Field errors: (field, text in the page's language).
pub(super) type Errors = Vec<(&'static str, String)>;

const LENGTHS: &[&str] = &["45", "60", "90"];

impl BookForm {
    fn trimmed(mut self) -> Self {
        for f in [&mut self.date, &mut self.time, &mut self.count, &mut self.until, &mut self.repeat] {
            *f = f.trim().to_owned();
        }
        self
    }

    /// The appointments this form books (`[start, end)`, Unix ms), or its field errors.
    fn times(&self, me: &SignedIn, tz: &jiff::tz::TimeZone) -> Result<Vec<(i64, i64)>, Errors> {
        let l = me.lang;
        let mut errors: Errors = Vec::new();
        let practitioner = self.practitioner.strip_prefix("Practitioner/").unwrap_or("");
        if !confidant_fhir::is_valid_id(practitioner) {
            errors.push(("practitioner", l.t("Choose one of the clinic's clinicians.").to_owned()));
        }
        let date = parse_date(&self.date);
        if date.is_none() {
            errors.push(("date", l.t("Give the date as a date (YYYY-MM-DD).").to_owned()));
        }
        let time = parse_time(&self.time);
        if time.is_none() {
            errors.push(("time", l.t("Give the time as hours and minutes (HH:MM).").to_owned()));
        }
        if !self.kind.is_empty() && !KINDS.iter().any(|(c, _)| *c == self.kind) {
            errors.push(("kind", l.t("Choose an appointment type.").to_owned()));
        }
        let minutes: i64 = match self.length.as_str() {
            "" => 60,
            m if LENGTHS.contains(&m) => m.parse().unwrap_or(60),
            _ => {
                errors.push(("length", l.t("Choose a length: 45, 60 or 90 minutes.").to_owned()));
                60
            }
        };
        let step = match self.repeat.as_str() {
            "" | "none" => None,
            "weekly" => Some(7),
            "biweekly" => Some(14),
            _ => {
                errors.push(("repeat", l.t("Choose how it repeats.").to_owned()));
                None
            }
        };
        let too_many = || l.t("A series is 1 to 52 appointments.").to_owned();
        let mut dates: Vec<Date> = Vec::new();
        if let (Some(step), Some(first)) = (step, date) {
            if !self.count.is_empty() {
                match self.count.parse::<usize>() {
                    Ok(n) if (1..=MAX_SERIES).contains(&n) => {
                        dates = (0..n).filter_map(|i| add_days(first, step * i as i64)).collect();
                    }
                    _ => errors.push(("count", too_many())),
                }
            } else if !self.until.is_empty() {
                match parse_date(&self.until) {
                    Some(until) if until >= first => {
                        let mut d = first;
                        while d <= until && dates.len() <= MAX_SERIES {
                            dates.push(d);
                            d = add_days(d, step).unwrap_or(Date::MAX);
                        }
                        if dates.len() > MAX_SERIES {
                            errors.push(("until", too_many()));
                        }
                    }
                    _ => errors.push(("until", l.t("Give an end date on or after the first date.").to_owned())),
                }
            } else {
                errors.push(("count", l.t("Give how many times, or the date of the last one.").to_owned()));
            }
        } else if let Some(first) = date {
            dates.push(first);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let Some(time) = time else { return Err(errors) };
        let times: Option<Vec<(i64, i64)>> =
            dates.into_iter().map(|d| local_ms(tz, d, time).map(|s| (s, s + minutes * 60_000))).collect();
        times.ok_or_else(|| vec![("date", l.t("Give the date as a date (YYYY-MM-DD).").to_owned())])
    }
}

/// The "field" of the outside-working-hours warning.
const OUTSIDE_HOURS: &str = "hours";

fn field_error(errors: &Errors, field: &str) -> Markup {
    html! {
        @for (_, e) in errors.iter().filter(|(f, _)| *f == field) {
            p.field-error id={ (field) "-error" } { (e) }
        }
    }
}

/// The booking form of patient `id`, with `f`'s values and `errors` next to their fields.
pub(super) fn form(me: &SignedIn, id: &str, bookable: &[(String, String)], f: &BookForm, errors: &Errors) -> Markup {
    let l = me.lang;
    let invalid = |field: &str| errors.iter().any(|(f, _)| *f == field).then_some("true");
    let described = |field: &str| errors.iter().any(|(f, _)| *f == field).then(|| format!("{field}-error"));
    let length = if f.length.is_empty() { "60" } else { f.length.as_str() };
    let kind = if f.kind.is_empty() { "session" } else { f.kind.as_str() };
    html! {
        @let warning = errors.iter().find(|(f, _)| *f == OUTSIDE_HOURS);
        @if let Some((_, text)) = warning {
            section.card.warning role="alert" { p { (text) } }
        } @else if !errors.is_empty() {
            p.notice role="alert" { (l.t("Please check the marked fields: nothing was booked.")) }
        }
        form.card.booking method="post" action={ "/patients/" (id) "/appointments" } novalidate {
            (me.csrf_field())
            label for="practitioner" { (l.t("With")) }
            select id="practitioner" name="practitioner" required aria-invalid=[invalid("practitioner")] aria-describedby=[described("practitioner")] {
                @for (pid, name) in bookable {
                    @let value = format!("Practitioner/{pid}");
                    option value=(value) selected[value == f.practitioner] { (name) }
                }
            }
            (field_error(errors, "practitioner"))
            label for="date" { (l.t("Date")) }
            input id="date" name="date" type="date" required value=(f.date) aria-invalid=[invalid("date")] aria-describedby=[described("date")];
            (field_error(errors, "date"))
            label for="time" { (l.t("Time (clinic time)")) }
            input id="time" name="time" type="time" required value=(f.time) aria-invalid=[invalid("time")] aria-describedby=[described("time")];
            (field_error(errors, "time"))
            label for="kind" { (l.t("Appointment type")) }
            select id="kind" name="kind" aria-invalid=[invalid("kind")] aria-describedby=[described("kind")] {
                @for (code, label) in KINDS { option value=(code) selected[*code == kind] { (l.t(label)) } }
            }
            (field_error(errors, "kind"))
            label for="length" { (l.t("Length")) }
            select id="length" name="length" aria-invalid=[invalid("length")] aria-describedby=[described("length")] {
                @for m in LENGTHS { option value=(m) selected[*m == length] { (m) " min" } }
            }
            (field_error(errors, "length"))
            label for="repeat" { (l.t("Repeat")) }
            select id="repeat" name="repeat" aria-invalid=[invalid("repeat")] aria-describedby=[described("repeat")] {
                option value="none" selected[f.repeat.is_empty() || f.repeat == "none"] { (l.t("Does not repeat")) }
                option value="weekly" selected[f.repeat == "weekly"] { (l.t("Weekly")) }
                option value="biweekly" selected[f.repeat == "biweekly"] { (l.t("Every two weeks")) }
            }
            (field_error(errors, "repeat"))
            label for="count" { (l.t("How many times (if it repeats)")) }
            input id="count" name="count" type="number" min="1" max=(MAX_SERIES) value=(f.count) aria-invalid=[invalid("count")] aria-describedby=[described("count")];
            (field_error(errors, "count"))
            label for="until" { (l.t("Or until (last date)")) }
            input id="until" name="until" type="date" value=(f.until) aria-invalid=[invalid("until")] aria-describedby=[described("until")];
            (field_error(errors, "until"))
            button type="submit" { (l.t("Book")) }
            @if warning.is_some() {
                button.secondary type="submit" name="confirm" value="yes" { (l.t("Book anyway")) }
            }
        }
    }
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
    let f = f.trimmed();
    let tz = &state.clinic.time_zone;
    let times = match f.times(&me, tz) {
        Ok(t) => t,
        Err(errors) => return again(&state, &me, &id, &f, errors, StatusCode::BAD_REQUEST).await,
    };
    // Outside the clinician's working hours: shown, and booked only when confirmed.
    let practitioner = f.practitioner.trim_start_matches("Practitioner/").to_owned();
    if f.confirm != "yes"
        && let Some(hours) =
            super::hours::hours_of(&state, &me, std::slice::from_ref(&practitioner)).await.get(&practitioner)
        && let Some((s, _)) = times.iter().find(|(s, e)| !super::hours::inside(tz, hours, *s, *e))
    {
        let text = me
            .lang
            .t("{time} is outside this clinician's working hours. Book anyway, or choose another time.")
            .replace("{time}", &local_text(tz, *s));
        return again(&state, &me, &id, &f, vec![(OUTSIDE_HOURS, text)], StatusCode::OK).await;
    }
    let kind = KINDS.iter().find(|(c, _)| *c == if f.kind.is_empty() { "session" } else { f.kind.as_str() });
    let booking = Booking { patient: id.clone(), practitioner, times, kind: kind.map(|(c, _)| (*c).to_owned()) };
    match state.records.book_appointments(&me.auth.principal, &booking).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(RecordsError::DoubleBooked { at }) => {
            let text = me
                .lang
                .t("The clinician already has an appointment at {time}: nothing was booked.")
                .replace("{time}", &local_text(tz, at));
            again(&state, &me, &id, &f, vec![("time", text)], StatusCode::CONFLICT).await
        }
        Err(e) => me.records_error(e),
    }
}

/// The form again, with its errors: on the reception patient view (a
/// clinician posting gets the errors as a message).
async fn again(
    state: &AppState,
    me: &SignedIn,
    id: &str,
    f: &BookForm,
    errors: Errors,
    status: StatusCode,
) -> Response {
    match state.records.read(&me.auth.principal, ResourceType::Patient, id).await {
        Ok(p) if me.role() == Role::Reception => {
            let mut r = super::front_desk::reception_view_with(state, me, id, &p.resource, f, &errors).await;
            *r.status_mut() = status;
            r
        }
        Ok(_) => {
            let text: Vec<String> = errors.into_iter().map(|(_, e)| e).collect();
            me.message(status, me.lang.t("Please check the form"), &text.join(" "))
        }
        Err(e) => me.records_error(e),
    }
}
