//! Reception's pages: register a patient, see their appointments and book
//! one. Nothing clinical, not even a link to it.

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use confidant_fhir::ResourceType;
use confidant_policy::Role;
use confidant_records::{RecordsError, SearchRequest, Stored};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{SignedIn, name_of};
use crate::AppState;

/// The appointment's practitioner reference, if any.
pub(super) fn practitioner_of(a: &Value) -> Option<&str> {
    a["participant"]
        .as_array()?
        .iter()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .find(|r| r.starts_with("Practitioner/"))
}

pub(super) fn appointments_list(
    me: &SignedIn,
    tz: &jiff::tz::TimeZone,
    list: &[Stored],
    names: &HashMap<String, String>,
) -> Markup {
    let l = me.lang;
    // In the clinic's time zone, like the calendar.
    let when = |a: &Value| {
        let start = a["start"].as_str().unwrap_or("");
        match start.parse::<jiff::Timestamp>() {
            Ok(t) => super::calendar::local_text(tz, t.as_millisecond()),
            Err(_) => me.time(start),
        }
    };
    html! {
        @if list.is_empty() { p { (l.t("No appointments.")) } }
        ul.list {
            @for a in list {
                li {
                    (when(&a.resource))
                    " · " (l.t("Appointment"))
                    @if let Some(pr) = practitioner_of(&a.resource) { " · " (names.get(pr).map(String::as_str).unwrap_or(pr)) }
                    " · " span.muted { (a.resource["status"].as_str().unwrap_or("")) }
                }
            }
        }
    }
}

/// Practitioners by reference, with their names (the staff directory).
pub(super) async fn practitioners(state: &AppState, me: &SignedIn) -> Vec<(String, String)> {
    let req = SearchRequest { params: Vec::new(), count: 100, after: None };
    match state.records.search(&me.auth.principal, ResourceType::Practitioner, &req).await {
        Ok(p) => p.entries.iter().map(|s| (format!("Practitioner/{}", s.id), name_of(&s.resource))).collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) async fn sorted_appointments(
    state: &AppState,
    me: &SignedIn,
    params: Vec<(String, String)>,
) -> Result<Vec<Stored>, RecordsError> {
    let req = SearchRequest { params, count: 100, after: None };
    let mut list = state.records.search(&me.auth.principal, ResourceType::Appointment, &req).await?.entries;
    list.sort_by(|a, b| a.resource["start"].as_str().cmp(&b.resource["start"].as_str()));
    Ok(list)
}

/// Reception's view of a patient: demographics and appointments; nothing clinical, not even a link.
pub(super) async fn reception_view(state: &AppState, me: &SignedIn, id: &str, r: &Value) -> Response {
    reception_view_with(state, me, id, r, &super::booking::BookForm::default(), &Vec::new()).await
}

/// [`reception_view`] with the booking form's typed values and errors.
pub(super) async fn reception_view_with(
    state: &AppState,
    me: &SignedIn,
    id: &str,
    r: &Value,
    form: &super::booking::BookForm,
    errors: &super::booking::Errors,
) -> Response {
    let l = me.lang;
    let list = match sorted_appointments(state, me, vec![("patient".to_owned(), id.to_owned())]).await {
        Ok(l) => l,
        Err(e) => return me.records_error(e),
    };
    let staff = practitioners(state, me).await;
    let names: HashMap<String, String> = staff.iter().cloned().collect();
    // Booked only with a clinician (who joins the care team if not on it yet).
    let bookable = clinicians(state, me).await;
    me.page(
        &name_of(r),
        html! {
            (super::clinical::demographics(me, r))
            section {
                h2 { (l.t("Appointments")) }
                (appointments_list(me, &state.clinic.time_zone, &list, &names))
            }
            section {
                h2 { (l.t("Book an appointment")) }
                (super::booking::form(me, id, &bookable, form, errors))
            }
        },
    )
}

// ----- registration -----------------------------------------------------------------

/// A field error's text: English, shown in the page's language (the i18n
/// test finds these like the texts of `Lang::t`).
const fn field_text(en: &'static str) -> &'static str {
    en
}

/// The longest name, phone or e-mail a registration takes (characters).
const MAX_FIELD: usize = 100;

/// What a personal identity code looks like (for the error).
#[rustfmt::skip]
const HETU_SHAPE: &str = field_text("A personal identity code is 11 characters: DDMMYY, a century sign, three digits and a check character.");

/// The control characters of a Finnish personal identity code, by remainder mod 31.
const HETU_CONTROL: &[u8; 31] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";

/// A Finnish personal identity code (DDMMYYCZZZQ) with a valid century sign and
/// control character: the birth date it encodes (YYYY-MM-DD), or why not.
pub(super) fn hetu_birth_date(code: &str) -> Result<String, &'static str> {
    let b = code.as_bytes();
    if b.len() != 11 || !code.is_ascii() {
        return Err(HETU_SHAPE);
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !digits(0..6) || !digits(7..10) {
        return Err(HETU_SHAPE);
    }
    let century = match b[6] {
        b'+' => 1800,
        b'-' | b'U' | b'V' | b'W' | b'X' | b'Y' => 1900,
        b'A' | b'B' | b'C' | b'D' | b'E' | b'F' => 2000,
        _ => return Err(field_text("The century sign of a personal identity code is +, -, A–F or U–Y.")),
    };
    let number: u64 = format!("{}{}", &code[0..6], &code[7..10]).parse().unwrap_or(0);
    if HETU_CONTROL[(number % 31) as usize] != b[10] {
        return Err(field_text("This personal identity code's check character does not match: check the code."));
    }
    let year = century + code[4..6].parse::<i32>().unwrap_or(0);
    let date = format!("{year:04}-{}-{}", &code[2..4], &code[0..2]);
    if parse_date(&date).is_none() {
        return Err(field_text("This personal identity code does not hold a real date."));
    }
    Ok(date)
}

fn parse_date(s: &str) -> Option<time::Date> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// A birth date (YYYY-MM-DD) not in the future and not before 1900.
pub(super) fn check_birth_date(s: &str, today: time::Date) -> Result<(), &'static str> {
    let Some(d) = parse_date(s).filter(|_| s.len() == 10) else {
        return Err(field_text("Give the birth date as a date (YYYY-MM-DD)."));
    };
    if d > today {
        return Err(field_text("A birth date cannot be in the future."));
    }
    if d.year() < 1900 {
        return Err(field_text("A birth date before 1900 is not taken."));
    }
    Ok(())
}

/// A phone number: digits, spaces, +, - only, at least 5 digits.
pub(super) fn check_phone(s: &str) -> Result<(), &'static str> {
    let shape = s.chars().all(|c| c.is_ascii_digit() || " +-".contains(c));
    if !shape || s.chars().filter(char::is_ascii_digit).count() < 5 || s.len() > 30 {
        return Err(field_text("A phone number has digits, spaces, + and - only, and at least 5 digits."));
    }
    Ok(())
}

/// An e-mail address of the ordinary shape: name@domain.tld, no spaces.
pub(super) fn check_email(s: &str) -> Result<(), &'static str> {
    let ok = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"(),;:[]\\".contains(c))
        }
        None => false,
    };
    if !ok || s.len() > MAX_FIELD {
        return Err(field_text("Give an e-mail address like name@example.fi, or leave it empty."));
    }
    Ok(())
}

/// What a receptionist typed (trimmed): the register form's values.
#[derive(Deserialize, Default, Clone)]
pub(super) struct RegisterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    given: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    birth: String,
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    /// A Practitioner id, or empty for nobody yet.
    #[serde(default)]
    clinician: String,
    /// "yes": register although a patient of the same name and birth date exists.
    #[serde(default)]
    confirm: String,
}

impl RegisterForm {
    fn trimmed(mut self) -> Self {
        for f in [
            &mut self.given,
            &mut self.family,
            &mut self.birth,
            &mut self.identifier,
            &mut self.phone,
            &mut self.email,
            &mut self.clinician,
        ] {
            *f = f.trim().to_owned();
        }
        self.identifier = self.identifier.to_uppercase();
        self
    }
}

/// The field errors of a registration (field name, text), none if it may be saved.
pub(super) fn register_errors(f: &RegisterForm, today: time::Date) -> Vec<(&'static str, &'static str)> {
    let mut errors = Vec::new();
    for (field, value) in [("given", &f.given), ("family", &f.family)] {
        if value.is_empty() {
            errors.push((field, field_text("Required.")));
        } else if value.chars().count() > MAX_FIELD || value.chars().any(char::is_control) {
            errors.push((field, field_text("At most 100 characters, on one line.")));
        }
    }
    if let Err(e) = check_birth_date(&f.birth, today) {
        errors.push(("birth", e));
    }
    if !f.identifier.is_empty() {
        match hetu_birth_date(&f.identifier) {
            Err(e) => errors.push(("identifier", e)),
            Ok(d) if parse_date(&f.birth).is_some() && d != f.birth => {
                errors
                    .push(("identifier", field_text("The date in the personal identity code is not the birth date.")));
            }
            Ok(_) => {}
        }
    }
    if !f.phone.is_empty()
        && let Err(e) = check_phone(&f.phone)
    {
        errors.push(("phone", e));
    }
    if !f.email.is_empty()
        && let Err(e) = check_email(&f.email)
    {
        errors.push(("email", e));
    }
    errors
}

/// A patient already registered that a new registration would duplicate.
enum Duplicate {
    /// Same identity code: refused.
    IdentityCode(String),
    /// Same family name, given name and birth date: registered only if confirmed.
    NameAndBirth(String),
}

/// The clinicians intake may put on a care team: (Practitioner id, name).
pub(super) async fn clinicians(state: &AppState, me: &SignedIn) -> Vec<(String, String)> {
    let ids = state.records.clinician_practitioners().await.unwrap_or_default();
    practitioners(state, me)
        .await
        .into_iter()
        .filter_map(|(reference, name)| {
            let id = reference.strip_prefix("Practitioner/")?.to_owned();
            ids.contains(&id).then_some((id, name))
        })
        .collect()
}

fn field_error(me: &SignedIn, errors: &[(&str, &'static str)], field: &str) -> Markup {
    html! {
        @for (_, e) in errors.iter().filter(|(f, _)| *f == field) {
            p.field-error id={ (field) "-error" } { (me.lang.t(e)) }
        }
    }
}

fn register_form(
    me: &SignedIn,
    f: &RegisterForm,
    errors: &[(&str, &'static str)],
    staff: &[(String, String)],
    duplicate: Option<&Duplicate>,
) -> Markup {
    let l = me.lang;
    let invalid = |field: &str| errors.iter().any(|(f, _)| *f == field).then_some("true");
    let described = |field: &str| errors.iter().any(|(f, _)| *f == field).then(|| format!("{field}-error"));
    let preselected = if f.clinician.is_empty() && f.csrf.is_empty() {
        me.auth.principal.practitioner_id.clone().unwrap_or_default()
    } else {
        f.clinician.clone()
    };
    html! {
        @if !errors.is_empty() { p.notice role="alert" { (l.t("Please check the marked fields: nothing was saved.")) } }
        @match duplicate {
            Some(Duplicate::IdentityCode(id)) => {
                section.card.warning.duplicate role="alert" {
                    p { (l.t("A patient with this personal identity code is already registered: nothing was saved.")) }
                    p { a href={ "/patients/" (id) } { (l.t("Open the existing record")) } }
                }
            }
            Some(Duplicate::NameAndBirth(id)) => {
                section.card.warning.duplicate role="alert" {
                    p { (l.t("A patient with the same name and birth date is already registered: nothing was saved yet.")) }
                    p { a href={ "/patients/" (id) } { (l.t("Open the existing record")) } }
                    p { (l.t("If this is a different person, register anyway.")) }
                }
            }
            None => {}
        }
        form.card method="post" action="/register" novalidate {
            (me.csrf_field())
            label for="given" { (l.t("Given name")) }
            input id="given" name="given" required autocomplete="off" maxlength="100" value=(f.given)
                aria-invalid=[invalid("given")] aria-describedby=[described("given")];
            (field_error(me, errors, "given"))
            label for="family" { (l.t("Family name")) }
            input id="family" name="family" required autocomplete="off" maxlength="100" value=(f.family)
                aria-invalid=[invalid("family")] aria-describedby=[described("family")];
            (field_error(me, errors, "family"))
            label for="birth" { (l.t("Birth date")) }
            input id="birth" name="birth" type="date" required min="1900-01-01" value=(f.birth)
                aria-invalid=[invalid("birth")] aria-describedby=[described("birth")];
            (field_error(me, errors, "birth"))
            label for="identifier" { (l.t("Personal identity code (optional)")) }
            input id="identifier" name="identifier" autocomplete="off" maxlength="11" value=(f.identifier)
                aria-invalid=[invalid("identifier")] aria-describedby=[described("identifier")];
            (field_error(me, errors, "identifier"))
            label for="phone" { (l.t("Phone (optional)")) }
            input id="phone" name="phone" type="tel" autocomplete="off" maxlength="30" value=(f.phone)
                aria-invalid=[invalid("phone")] aria-describedby=[described("phone")];
            (field_error(me, errors, "phone"))
            label for="email" { (l.t("E-mail (optional)")) }
            input id="email" name="email" type="email" autocomplete="off" maxlength="100" value=(f.email)
                aria-invalid=[invalid("email")] aria-describedby=[described("email")];
            (field_error(me, errors, "email"))
            label for="clinician" { (l.t("Clinician (care team)")) }
            select id="clinician" name="clinician" aria-invalid=[invalid("clinician")] aria-describedby=[described("clinician")] {
                @if me.role() != Role::Clinician { option value="" { (l.t("Nobody yet")) } }
                @for (id, name) in staff { option value=(id) selected[*id == preselected] { (name) } }
            }
            (field_error(me, errors, "clinician"))
            button type="submit" { (l.t("Register")) }
            @if matches!(duplicate, Some(Duplicate::NameAndBirth(_))) {
                button.secondary type="submit" name="confirm" value="yes" { (l.t("Register anyway")) }
            }
        }
    }
}

pub(super) async fn register_page(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Reception, Role::Clinician]) {
        return r;
    }
    let staff = clinicians(&state, &me).await;
    me.page(me.lang.t("Register a patient"), register_form(&me, &RegisterForm::default(), &[], &staff, None))
}

/// A patient already registered with the same identity code, or (unless
/// confirmed) the same names (whole names, not their starts) and birth date,
/// among those `me` may see.
async fn duplicate_of(state: &AppState, me: &SignedIn, f: &RegisterForm) -> Result<Option<Duplicate>, RecordsError> {
    let p = &me.auth.principal;
    let find = |params: Vec<(&str, &str)>| {
        let params = params.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        async move {
            let req = SearchRequest { params, count: 1, after: None };
            state.records.search(p, ResourceType::Patient, &req).await.map(|page| page.entries.into_iter().next())
        }
    };
    if !f.identifier.is_empty()
        && let Some(found) = find(vec![("identifier", &f.identifier)]).await?
    {
        return Ok(Some(Duplicate::IdentityCode(found.id)));
    }
    if f.confirm != "yes"
        && let Some(found) =
            find(vec![("family:exact", &f.family), ("given:exact", &f.given), ("birthdate", &f.birth)]).await?
    {
        return Ok(Some(Duplicate::NameAndBirth(found.id)));
    }
    Ok(None)
}

pub(super) async fn register(State(state): State<AppState>, me: SignedIn, Form(f): Form<RegisterForm>) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Reception, Role::Clinician], &f.csrf, "Nothing was saved.") {
        return r;
    }
    let f = f.trimmed();
    let today = time::OffsetDateTime::from_unix_timestamp(state.records.now_millis() / 1000)
        .map(time::OffsetDateTime::date)
        .unwrap_or(time::Date::MIN);
    let staff = clinicians(&state, &me).await;
    let mut errors = register_errors(&f, today);
    if !f.clinician.is_empty() && !staff.iter().any(|(id, _)| *id == f.clinician) {
        errors.push(("clinician", field_text("Choose one of the clinic's clinicians.")));
    }
    let title = me.lang.t("Register a patient");
    let again = |errors: &[(&str, &'static str)], duplicate: Option<&Duplicate>, status: StatusCode| {
        let mut r = me.page(title, register_form(&me, &f, errors, &staff, duplicate));
        *r.status_mut() = status;
        r
    };
    if !errors.is_empty() {
        return again(&errors, None, StatusCode::BAD_REQUEST);
    }
    match duplicate_of(&state, &me, &f).await {
        Err(e) => return me.records_error(e),
        Ok(Some(d)) => return again(&[], Some(&d), StatusCode::CONFLICT),
        Ok(None) => {}
    }
    let mut patient = json!({
        "resourceType": "Patient", "active": true,
        "name": [{"family": f.family, "given": [f.given]}],
        "birthDate": f.birth,
    });
    if !f.identifier.is_empty() {
        patient["identifier"] = json!([{"system": "urn:oid:1.2.246.21", "value": f.identifier}]);
    }
    let mut telecom = Vec::new();
    if !f.phone.is_empty() {
        telecom.push(json!({"system": "phone", "value": f.phone}));
    }
    if !f.email.is_empty() {
        telecom.push(json!({"system": "email", "value": f.email}));
    }
    if !telecom.is_empty() {
        patient["telecom"] = Value::Array(telecom);
    }
    let p = &me.auth.principal;
    let created = if f.clinician.is_empty() {
        state.records.create(p, ResourceType::Patient, patient).await
    } else {
        state.records.register_with_clinician(p, patient, &f.clinician).await
    };
    match created {
        Ok(p) => Redirect::to(&format!("/patients/{}", p.id)).into_response(),
        Err(e) => me.records_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid code for `ddmmyy`, century `sign`, number `zzz`.
    fn code(ddmmyy: &str, sign: char, zzz: &str) -> String {
        let n: u64 = format!("{ddmmyy}{zzz}").parse().unwrap();
        format!("{ddmmyy}{sign}{zzz}{}", HETU_CONTROL[(n % 31) as usize] as char)
    }

    #[test]
    fn identity_codes_check_their_control_character_and_century() {
        // The Digital and Population Data Services Agency's examples.
        assert_eq!(hetu_birth_date("131052-308T"), Ok("1952-10-13".to_owned()));
        assert_eq!(hetu_birth_date("010594Y9021"), Ok("1994-05-01".to_owned()));
        assert_eq!(hetu_birth_date("020502E902X"), Ok("2002-05-02".to_owned()));
        for (sign, year) in [
            ('+', "1852"),
            ('-', "1952"),
            ('U', "1952"),
            ('V', "1952"),
            ('W', "1952"),
            ('X', "1952"),
            ('Y', "1952"),
            ('A', "2052"),
            ('B', "2052"),
            ('C', "2052"),
            ('D', "2052"),
            ('E', "2052"),
            ('F', "2052"),
        ] {
            assert_eq!(hetu_birth_date(&code("131052", sign, "308")), Ok(format!("{year}-10-13")), "{sign}");
        }
        assert!(hetu_birth_date("131052-308U").is_err(), "wrong control character");
        assert!(hetu_birth_date("131052G308T").is_err(), "G is no century sign");
        assert!(hetu_birth_date(&code("310252", '-', "308")).is_err(), "31 February");
        assert!(hetu_birth_date("131052-308").is_err(), "too short");
        assert!(hetu_birth_date("13105a-308T").is_err(), "a letter in the date");
        assert!(hetu_birth_date("131052-3ä8T").is_err(), "not ASCII");
    }

    #[test]
    fn birth_dates_phones_and_emails_have_their_shapes() {
        let today = time::macros::date!(2026 - 12 - 03);
        assert!(check_birth_date("2026-12-03", today).is_ok());
        assert!(check_birth_date("2026-12-04", today).is_err());
        assert!(check_birth_date("1900-01-01", today).is_ok());
        assert!(check_birth_date("1899-12-31", today).is_err());
        assert!(check_birth_date("1990-02-30", today).is_err());
        assert!(check_birth_date("", today).is_err());
        for ok in ["+358 40 123 4567", "040-1234567", "12345"] {
            assert!(check_phone(ok).is_ok(), "{ok}");
        }
        for bad in ["1234", "040 123 456a", "(040) 123456", "<b>12345</b>"] {
            assert!(check_phone(bad).is_err(), "{bad}");
        }
        for ok in ["maija@example.fi", "a.b+c@mail.example.com"] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in ["maija", "maija@", "@example.fi", "maija@example", "ma ija@example.fi", "a@b@c.fi", "a@.fi"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_registration_reports_each_field_and_the_code_must_match_the_birth_date() {
        let today = time::macros::date!(2026 - 12 - 03);
        let form = |birth: &str, identifier: &str| RegisterForm {
            given: "Maija".into(),
            family: "Meikäläinen".into(),
            birth: birth.into(),
            identifier: identifier.into(),
            ..RegisterForm::default()
        };
        assert!(register_errors(&form("1952-10-13", "131052-308T"), today).is_empty());
        assert_eq!(register_errors(&form("1952-10-14", "131052-308T"), today)[0].0, "identifier");
        assert_eq!(
            register_errors(&form("2030-01-01", ""), today),
            vec![("birth", "A birth date cannot be in the future.")]
        );
        let empty = RegisterForm::default();
        let fields: Vec<&str> = register_errors(&empty, today).iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["given", "family", "birth"]);
        let long = RegisterForm { given: "x".repeat(101), ..form("1952-10-13", "") };
        assert_eq!(register_errors(&long, today)[0].0, "given");
    }
}
