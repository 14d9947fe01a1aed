//! Phishing drills: the drill link (`/p/{id}`: the look-alike sign-in page,
//! then the lesson), "Report phishing" for staff, their own results, and the
//! admin's "Phishing drills" tab (campaigns and results).
//!
//! The look-alike page's form posts to `/p/{id}`, whose handler never
//! extracts the request body: what was typed is dropped unread (never parsed,
//! stored or logged; the request log writes no bodies). An unknown, malformed
//! or over-long id gets the same 404 page as any page that does not exist,
//! and records nothing.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use confidant_identity::phishing::{
    self as drills, CampaignResult, DrillTemplate, DrillVisit, MAX_SPREAD_MS, MyDrill, NewCampaign,
};
use confidant_identity::{IdentityError, Reported};
use confidant_policy::Role;
use maud::{Markup, html};

use super::admin::admin_page;
use super::{Lang, SignedIn, Viewer, i18n, layout};
use crate::AppState;

/// `12 min`, `3 h 5 min`, `2 d 4 h` (the same units in both languages).
fn duration(ms: i64) -> String {
    let minutes = ms / 60_000;
    match minutes {
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} d {} h", m / (24 * 60), (m / 60) % 24),
    }
}

/// The page of an id that is not a drill link: the one 404 page of the site.
fn not_found(headers: &HeaderMap) -> Response {
    super::error_page(headers, StatusCode::NOT_FOUND)
}

fn failed(headers: &HeaderMap, e: &IdentityError) -> Response {
    tracing::error!(error = %e, "a drill link failed");
    super::error_page(headers, StatusCode::SERVICE_UNAVAILABLE)
}

/// The drill's pages are in the recipient's mail language; their language switch leads to the sign-in page.
fn viewer(visit: &DrillVisit) -> Viewer<'static> {
    Viewer { lang: Lang::parse(&visit.language), path: "/login", signed_in: None }
}

/// `GET /p/{id}`: the link of a drill mail. The first visit is a click (recorded)
/// and shows the look-alike sign-in page; later visits show the lesson.
pub(super) async fn link(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let visit = match state.identity.drill_link(&id, false).await {
        Ok(Some(v)) => v,
        Ok(None) => return not_found(&headers),
        Err(e) => return failed(&headers, &e),
    };
    if !visit.first {
        return lesson(&visit, false);
    }
    let l = Lang::parse(&visit.language);
    layout(
        viewer(&visit),
        l.t("Sign in"),
        html! {
            form.card method="post" action={ "/p/" (id) } {
                label for="username" { (l.t("Username")) }
                input id="username" name="username" autocomplete="off" required;
                label for="password" { (l.t("Password")) }
                input id="password" name="password" type="password" autocomplete="off" required;
                div.buttons { button type="submit" { (l.t("Sign in")) } }
            }
        },
    )
}

/// `POST /p/{id}`: the look-alike page was submitted. The body is not
/// extracted: this handler never sees what was typed. Records *that* it was
/// submitted (the first time) and shows the lesson.
pub(super) async fn submitted(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match state.identity.drill_link(&id, true).await {
        Ok(Some(visit)) => lesson(&visit, true),
        Ok(None) => not_found(&headers),
        Err(e) => failed(&headers, &e),
    }
}

/// The clues of a drill mail, in `language`.
fn clues(t: &DrillTemplate, language: &str, l: Lang) -> Markup {
    let text = t.text(language);
    html! {
        p { (l.t("The e-mail:")) " " strong { (text.subject) } " — " (text.sender) }
        h2 { (l.t("The clues in this e-mail")) }
        ul.clues { @for c in &text.clues { li { (c) } } }
    }
}

/// The lesson: this was a drill, nothing typed was kept, the clues, what to do.
fn lesson(visit: &DrillVisit, submitted: bool) -> Response {
    let l = Lang::parse(&visit.language);
    layout(
        viewer(visit),
        l.t("This was a phishing drill"),
        html! {
            div.card.lesson {
                p.notice {
                    (l.t("This e-mail was a drill by your clinic, to practise spotting phishing. No harm was done."))
                    @if submitted { " " (l.t("Nothing you typed was saved, sent or even read.")) }
                }
                (clues(visit.template, &visit.language, l))
                h2 { (l.t("Next time")) }
                p { (l.t("Do not open links or sign in from an unexpected e-mail. Report it with Report phishing in Confidant, or ask a colleague.")) }
                p { a href="/report" { (l.t("Report phishing")) } }
            }
        },
    )
}

// ----- reporting (staff) ----------------------------------------------------------------

fn staff_only(me: &SignedIn) -> Option<Response> {
    (me.role() == Role::Patient).then(|| {
        let text = me.lang.t("This page is not for your role.");
        me.message(StatusCode::FORBIDDEN, me.lang.t("Not allowed"), text)
    })
}

/// `GET /report`: report a suspected phishing mail.
pub(super) async fn report_page(me: SignedIn) -> Response {
    if let Some(r) = staff_only(&me) {
        return r;
    }
    let l = me.lang;
    me.page(
        l.t("Report phishing"),
        html! {
            form.card method="post" action="/report" {
                (me.csrf_field())
                p { (l.t("Got an e-mail that asks you to open a link, sign in, pay or hurry? Paste its link, or the whole e-mail, here. Then delete the e-mail.")) }
                label for="text" { (l.t("The link or the e-mail")) }
                textarea id="text" name="text" rows="8" maxlength=(drills::MAX_REPORT_BYTES) required {}
                div.buttons { button type="submit" { (l.t("Report phishing")) } }
            }
            p.muted { (l.t("The text is only searched for a drill link; it is not stored. A mail that is not a drill is reported to the administrator as a suspected phishing attempt.")) }
        },
    )
}

#[derive(serde::Deserialize)]
pub(super) struct ReportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

/// `POST /report`: a drill mail of this user counts as reported; anything else raises an alert.
pub(super) async fn report(
    State(state): State<AppState>,
    me: SignedIn,
    axum::Form(f): axum::Form<ReportForm>,
) -> Response {
    if let Some(r) = staff_only(&me) {
        return r;
    }
    if !me.csrf_ok(&f.csrf) {
        return me.stale_form("Nothing was reported.");
    }
    let l = me.lang;
    match state.identity.report_phishing(&me.auth.principal, &f.text).await {
        Ok(Reported::Drill { time_to_report_ms, .. }) => me.page(
            l.t("Well spotted: that was a drill"),
            html! {
                div.card.done {
                    p { (l.t("That e-mail was a phishing drill by your clinic, and you reported it. This is exactly what to do with a real one.")) }
                    @if let Some(ms) = time_to_report_ms {
                        p { (l.t("Time to report:")) " " strong { (duration(ms)) } }
                    }
                    p { a href="/me/phishing" { (l.t("My drills")) } }
                }
            },
        ),
        Ok(Reported::Suspected) => me.page(
            l.t("Thank you for reporting"),
            html! {
                div.card.done {
                    p { (l.t("This was not one of your drill mails, so the administrator has been alerted to a suspected phishing e-mail. Do not open its links; delete it once the administrator has seen it.")) }
                }
            },
        ),
        Err(e) => me.identity_error(e),
    }
}

/// `GET /me/phishing`: the signed-in staff member's own drills and their lessons.
pub(super) async fn mine(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = staff_only(&me) {
        return r;
    }
    let l = me.lang;
    let drills: Vec<MyDrill> = match state.identity.my_drills(&me.auth.principal).await {
        Ok(d) => d,
        Err(e) => return me.identity_error(e),
    };
    me.page(
        l.t("My drills"),
        html! {
            p { (l.t("Your clinic sends practice phishing e-mails. Here is what you did with yours; only you see this page with your name on it.")) }
            @if drills.is_empty() { p.muted { (l.t("No drill e-mails yet.")) } }
            @for d in &drills {
                article.note.drill {
                    p {
                        strong { (d.template.text(l.code()).name) } " · "
                        span.muted { (l.t("sent")) " " (me.time_ms(d.sent_at)) }
                    }
                    p {
                        @match (d.reported_at, d.clicked_at) {
                            (Some(r), _) => { (l.t("You reported it")) " (" (duration(r - d.sent_at)) ")." }
                            (None, Some(_)) => { (l.t("You opened its link.")) }
                            (None, None) => { (l.t("Not opened, not reported.")) }
                        }
                        @if d.submitted_at.is_some() { " " (l.t("You typed into the look-alike page.")) }
                    }
                    details {
                        summary { (l.t("The clues in this e-mail")) }
                        (clues(d.template, &d.language, l))
                    }
                }
            }
            p { a href="/report" { (l.t("Report phishing")) } }
        },
    )
}

// ----- the admin's tab ------------------------------------------------------------------

fn rate(c: &CampaignResult) -> String {
    c.reporting_rate().map(|r| format!("{r} %")).unwrap_or_else(|| "–".into())
}

fn results(me: &SignedIn, campaigns: &[CampaignResult], show_names: bool) -> Markup {
    let l = me.lang;
    let cell = |t: Option<i64>| html! { @if let Some(t) = t { (me.time_ms(t)) } @else { "–" } };
    html! {
        section {
            h2 { (l.t("Results")) }
            @if campaigns.is_empty() { p.muted { (l.t("No drills yet.")) } }
            @else {
                p {
                    (l.t("Reporting rate over the drills, oldest first:")) " "
                    strong { @for (i, c) in campaigns.iter().rev().enumerate() { @if i > 0 { " → " } (rate(c)) } }
                }
                div.scroll {
                    table.log.drills {
                        thead { tr {
                            th { (l.t("Drill")) }
                            th { (l.t("Reporting rate")) }
                            th { (l.t("Sent")) }
                            th { (l.t("Clicked")) }
                            th { (l.t("Submitted")) }
                            th { (l.t("Reported")) }
                            th { (l.t("Median time to report")) }
                        } }
                        tbody {
                            @for c in campaigns {
                                tr {
                                    td { (me.time_ms(c.starts_at)) br; span.muted { (c.templates.join(", ")) } }
                                    td data-label=(l.t("Reporting rate")) { strong { (rate(c)) } }
                                    td data-label=(l.t("Sent")) { (c.sent) " / " (c.recipients) }
                                    td data-label=(l.t("Clicked")) { (c.clicked) }
                                    td data-label=(l.t("Submitted")) { (c.submitted) }
                                    td data-label=(l.t("Reported")) { (c.reported) }
                                    td data-label=(l.t("Median time to report")) { @if let Some(ms) = c.median_time_to_report_ms { (duration(ms)) } @else { "–" } }
                                }
                            }
                        }
                    }
                }
            }
            @if show_names {
                p.notice { (l.t("Names are shown (phishing.show_names). Under Finnish law on privacy in working life (laki yksityisyyden suojasta työelämässä) staff must be told beforehand how drill results are used; use them for training, not for discipline.")) }
                @for c in campaigns {
                    @if let Some(people) = &c.people {
                        h3 { (me.time_ms(c.starts_at)) }
                        div.scroll { table.log.drills {
                            thead { tr {
                                th { (l.t("Person")) } th { (l.t("Sent")) } th { (l.t("Clicked")) } th { (l.t("Submitted")) } th { (l.t("Reported")) }
                            } }
                            tbody { @for p in people { tr {
                                td { (p.username) " · " span.muted { (i18n::role_name(l, p.role)) " · " (p.template) } }
                                td data-label=(l.t("Sent")) { (cell(p.sent_at)) }
                                td data-label=(l.t("Clicked")) { (cell(p.clicked_at)) }
                                td data-label=(l.t("Submitted")) { (cell(p.submitted_at)) }
                                td data-label=(l.t("Reported")) { (cell(p.reported_at)) }
                            } } }
                        } }
                    }
                }
            } @else {
                p.muted { (l.t("Results are totals: no one is named. An administrator can show names with phishing.show_names = true, after telling staff (Finland: laki yksityisyyden suojasta työelämässä).")) }
            }
        }
    }
}

async fn admin_tab(state: &AppState, me: &SignedIn) -> Response {
    let l = me.lang;
    let (campaigns, users) =
        match (state.identity.drill_results(&me.auth.principal).await, state.identity.list_users().await) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => return me.identity_error(e),
        };
    let show_names = state.identity.phishing_settings().show_names;
    let staff: Vec<_> = users.iter().filter(|u| u.role.is_staff() && !u.disabled).collect();
    let tomorrow = {
        let now = state.records.now_millis() + 24 * 3_600_000;
        jiff::Timestamp::from_millisecond(now)
            .map(|t| t.to_zoned_datetime(state.clinic.time_zone.clone()).strftime("%Y-%m-%dT09:00").to_string())
            .unwrap_or_default()
    };
    admin_page(
        me,
        l.t("Phishing drills"),
        html! {
            (results(me, &campaigns, show_names))
            section {
                h2 { (l.t("New drill")) }
                form.card method="post" action="/admin/phishing" {
                    (me.csrf_field())
                    fieldset {
                        legend { (l.t("Drill e-mails (each person gets one of them)")) }
                        @for t in drills::templates() {
                            label.check { input type="checkbox" name="templates" value=(t.key); " " (t.text(l.code()).name) }
                        }
                    }
                    fieldset {
                        legend { (l.t("Send to everyone in these roles")) }
                        @for r in [Role::Clinician, Role::Reception, Role::Admin, Role::Auditor] {
                            label.check { input type="checkbox" name="roles" value=(r.as_str()); " " (i18n::role_name(l, r)) }
                        }
                    }
                    fieldset {
                        legend { (l.t("...or to these people")) }
                        @for u in &staff {
                            label.check { input type="checkbox" name="users" value=(u.id); " " (u.username) " · " span.muted { (i18n::role_name(l, u.role)) } }
                        }
                    }
                    label for="start" { (l.t("Start (clinic time)")) }
                    input id="start" name="start" type="datetime-local" value=(tomorrow) required;
                    label for="spread" { (l.t("Spread the e-mails over (hours)")) }
                    input id="spread" name="spread_hours" type="number" min="0" max="720" value="8" required;
                    p.muted { (l.t("Each person gets their e-mail at a random time within the spread, in their own language. Staff need an e-mail address: confidant phishing email.")) }
                    div.buttons { button type="submit" { (l.t("Start the drill")) } }
                }
            }
        },
    )
}

/// `GET /admin/phishing`: results (reporting rate first) and a form for a new drill.
pub(super) async fn admin(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    admin_tab(&state, &me).await
}

/// The new-drill form: repeated fields (checkboxes), so parsed by hand.
struct CampaignForm {
    csrf: String,
    templates: Vec<String>,
    roles: Vec<String>,
    users: Vec<String>,
    start: String,
    spread_hours: String,
}

fn campaign_form(body: &[u8]) -> CampaignForm {
    let mut f = CampaignForm {
        csrf: String::new(),
        templates: Vec::new(),
        roles: Vec::new(),
        users: Vec::new(),
        start: String::new(),
        spread_hours: String::new(),
    };
    for (k, v) in form_urlencoded::parse(body).take(500) {
        let v = v.into_owned();
        match k.as_ref() {
            "csrf" => f.csrf = v,
            "templates" => f.templates.push(v),
            "roles" => f.roles.push(v),
            "users" => f.users.push(v),
            "start" => f.start = v,
            "spread_hours" => f.spread_hours = v,
            _ => {}
        }
    }
    f
}

/// `POST /admin/phishing`: start a drill.
pub(super) async fn create(State(state): State<AppState>, me: SignedIn, body: Bytes) -> Response {
    let f = campaign_form(&body);
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "No drill was started.") {
        return r;
    }
    let l = me.lang;
    let bad = |text: &str| me.message(StatusCode::BAD_REQUEST, l.t("Please check the form"), text);
    let Ok(local) = f.start.trim().parse::<jiff::civil::DateTime>() else {
        return bad(l.t("Give the start as a date and time."));
    };
    let Ok(start) = local.to_zoned_datetime(state.clinic.time_zone.clone()) else {
        return bad(l.t("Give the start as a date and time."));
    };
    let spread_ms = match f.spread_hours.trim().parse::<i64>() {
        Ok(h) if (0..=MAX_SPREAD_MS / 3_600_000).contains(&h) => h * 3_600_000,
        _ => return bad(l.t("The spread is 0 to 720 hours.")),
    };
    let mut roles = Vec::new();
    for r in &f.roles {
        match Role::parse(r) {
            Some(r) => roles.push(r),
            None => return bad(l.t("Choose a role.")),
        }
    }
    let campaign = NewCampaign {
        templates: f.templates,
        roles,
        users: f.users,
        starts_at: start.timestamp().as_millisecond(),
        spread_ms,
    };
    match state.identity.create_campaign(&me.auth.principal, &campaign).await {
        Ok(_) => Redirect::to("/admin/phishing").into_response(),
        Err(e) => me.identity_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_both_languages() {
        assert_eq!(duration(0), "0 min");
        assert_eq!(duration(59 * 60_000), "59 min");
        assert_eq!(duration(185 * 60_000), "3 h 5 min");
        assert_eq!(duration(52 * 3_600_000), "2 d 4 h");
    }

    #[test]
    fn the_new_drill_form_takes_repeated_fields_and_nothing_else() {
        let f = campaign_form(
            b"csrf=c&templates=a&templates=b&roles=clinician&users=u1&start=2026-12-05T09%3A00&spread_hours=8&evil=1",
        );
        assert_eq!((f.csrf.as_str(), f.templates.len(), f.roles.len(), f.users.len()), ("c", 2, 1, 1));
        assert_eq!((f.start.as_str(), f.spread_hours.as_str()), ("2026-12-05T09:00", "8"));
    }
}
