//! Staff security training (issue 16): a staff member's modules (due,
//! overdue, done and until when), taking one (its page, its questions as
//! radio buttons, answers posted, feedback per question and pass or fail; no
//! script), and the clinic's coverage for admins and auditors with its
//! evidence as CSV and as a printable page. The identity service grades,
//! records and audits; policy decides who sees what.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confidant_identity::{Coverage, IdentityError};
use confidant_policy::Role;
use confidant_training::{Answers, ModuleState, ModuleStatus};
use maud::{Markup, PreEscaped, html};

use super::{Lang, SignedIn};
use crate::AppState;

/// A form of answers has at most this many fields (10 questions, the CSRF
/// token, the version): more is not a form of ours.
const MAX_FIELDS: usize = 20;
const STAFF: &[Role] = &[Role::Clinician, Role::Reception, Role::Admin, Role::Auditor];

/// The day of Unix milliseconds, in the clinic's time zone.
fn day(me: &SignedIn, ms: i64) -> String {
    me.time_ms(ms).chars().take(10).collect()
}

fn state_text(l: Lang, s: &ModuleStatus) -> &'static str {
    match (&s.state, s.overdue) {
        (ModuleState::Done { .. }, _) if s.due_soon => l.t("done, expires soon"),
        (ModuleState::Done { .. }, _) => l.t("done"),
        (ModuleState::Assigned { .. }, false) => l.t("assigned to you"),
        (_, true) => l.t("overdue"),
        (ModuleState::Changed, _) => l.t("updated: complete it again"),
        (ModuleState::Expired, _) => l.t("expired"),
        _ => l.t("due"),
    }
}

/// A code of the coverage view in words.
fn code_text(l: Lang, code: &str) -> &'static str {
    match code {
        "done" => l.t("done"),
        "overdue" => l.t("overdue"),
        "assigned" => l.t("assigned"),
        _ => l.t("due"),
    }
}

/// The banner every page shows a staff member whose training is due (see `web::layout`).
pub(super) fn banner(l: Lang, blocked: bool) -> Markup {
    html! {
        div.banner.training role="status" {
            @if blocked {
                strong { (l.t("Your security training is overdue: patient records stay closed until you complete it.")) }
            } @else {
                (l.t("You have security training to complete."))
            }
            " " a href="/training" { (l.t("Go to your training")) }
        }
    }
}

fn training_error(me: &SignedIn, e: IdentityError) -> Response {
    match e {
        IdentityError::NotFound(_) => {
            me.message(StatusCode::NOT_FOUND, me.lang.t("Not found"), me.lang.t("There is no such training module."))
        }
        e => me.identity_error(e),
    }
}

/// `/training`: my modules.
pub(super) async fn mine(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(STAFF) {
        return r;
    }
    let l = me.lang;
    let modules = match state.identity.my_training(&me.auth.principal).await {
        Ok(m) => m,
        Err(e) => return training_error(&me, e),
    };
    let rules = state.identity.training_settings().rules;
    me.page(
        l.t("Security training"),
        html! {
            p { (l.t("Short modules on keeping patients' data safe. Read each page, answer its questions and pass to complete it. A pass counts for {n} months.").replace("{n}", &rules.valid_months.to_string())) }
            @if modules.is_empty() { p { (l.t("Nothing is required of your role yet.")) } }
            table.log.training {
                thead { tr {
                    th scope="col" { (l.t("Module")) } th scope="col" { (l.t("Status")) } th scope="col" { (l.t("Date")) } th scope="col" {}
                } }
                tbody {
                    @for m in &modules {
                        tr {
                            td { (m.module.title.get(l.code())) }
                            td { span class={ "state " (m.status.code()) } { (state_text(l, &m.status)) } }
                            td {
                                @match &m.status.state {
                                    ModuleState::Done { expires_at, .. } => { (l.t("expires on")) " " (day(&me, *expires_at)) }
                                    _ if m.status.overdue => { (l.t("due since")) " " (day(&me, m.status.due_since)) }
                                    _ => { (l.t("due by")) " " (day(&me, m.status.due_since + i64::from(rules.grace_days) * 86_400_000)) }
                                }
                            }
                            td { a href={ "/training/" (m.module.key) } { @if m.status.is_done() { (l.t("Take again")) } @else { (l.t("Start")) } } }
                        }
                    }
                }
            }
        },
    )
}

/// `/training/{key}`: a module's page and its questions.
pub(super) async fn module(State(state): State<AppState>, me: SignedIn, Path(key): Path<String>) -> Response {
    if let Some(r) = me.only_for(STAFF) {
        return r;
    }
    let l = me.lang;
    let m = match state.identity.training_module(&me.auth.principal, &key).await {
        Ok(m) => m,
        Err(e) => return training_error(&me, e),
    };
    let lang = l.code();
    me.page(
        m.title.get(lang),
        html! {
            article.card.full.training-page { (PreEscaped(confidant_training::render_markdown(m.page.get(lang)))) }
            form.card.full.measure-form method="post" action={ "/training/" (m.key) } {
                (me.csrf_field())
                input type="hidden" name="version" value=(m.version);
                h2 { (l.t("Questions")) }
                p.muted { (l.t("{n} correct answers are needed to pass.").replace("{n}", &m.pass_mark.to_string())) }
                @for (i, q) in m.questions.iter().enumerate() {
                    fieldset.item {
                        legend { (i + 1) ". " (q.text.get(lang)) }
                        @for (j, c) in q.choices.iter().enumerate() {
                            label.radio { input type="radio" name={ "q" (i) } value=(j) required; " " (c.text.get(lang)) }
                        }
                    }
                }
                button type="submit" { (l.t("Submit answers")) }
            }
        },
    )
}

/// POST `/training/{key}`: grade, record, show the feedback.
pub(super) async fn answer(
    State(state): State<AppState>,
    me: SignedIn,
    Path(key): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let csrf = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
    if let Some(r) = me.refuse_post(STAFF, csrf, "Nothing was saved.") {
        return r;
    }
    let l = me.lang;
    let unreadable = || {
        me.message(
            StatusCode::BAD_REQUEST,
            l.t("Please check the form"),
            l.t("The answers could not be read. Nothing was saved."),
        )
    };
    if fields.len() > MAX_FIELDS || fields.iter().any(|(k, v)| k.len() > 20 || (v.len() > 20 && k != "csrf")) {
        return unreadable();
    }
    let Some(version) = fields.iter().find(|(k, _)| k == "version").and_then(|(_, v)| v.parse::<i64>().ok()) else {
        return unreadable();
    };
    let Ok(answers) = Answers::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))) else {
        return unreadable();
    };
    let m = match state.identity.training_module(&me.auth.principal, &key).await {
        Ok(m) => m,
        Err(e) => return training_error(&me, e),
    };
    let graded = match state.identity.submit_training(&me.auth.principal, &key, version, &answers).await {
        Ok(g) => g,
        Err(IdentityError::Invalid(_)) => {
            return me.message(
                StatusCode::BAD_REQUEST,
                l.t("Please check the form"),
                l.t("Answer every question with one of its choices. Nothing was saved."),
            );
        }
        Err(IdentityError::Conflict(_)) => {
            return me.message(
                StatusCode::CONFLICT,
                l.t("Please check the form"),
                l.t("This module was updated while you were answering. Open it again. Nothing was saved."),
            );
        }
        Err(e) => return training_error(&me, e),
    };
    let lang = l.code();
    let score = l
        .t("{score} of {n} correct")
        .replace("{score}", &graded.score.to_string())
        .replace("{n}", &graded.out_of.to_string());
    me.page(
        m.title.get(lang),
        html! {
            @if graded.passed {
                p.ok { strong { (l.t("Passed.")) } " " (score) "." }
            } @else {
                p.notice { strong { (l.t("Not passed yet.")) } " " (score) ". " (l.t("Read the feedback, then try again.")) }
            }
            @for r in &graded.results {
                @if let Some(q) = m.questions.get(r.question) {
                    article.card.full.feedback.{ @if r.correct { "correct" } @else { "wrong" } } {
                        h2 { (r.question + 1) ". " (q.text.get(lang)) }
                        @if let Some(c) = q.choices.get(r.chosen) {
                            p { (l.t("Your answer:")) " " strong { (c.text.get(lang)) } " — " @if r.correct { (l.t("correct")) } @else { (l.t("not correct")) } }
                            p { (c.feedback.get(lang)) }
                        }
                    }
                }
            }
            p {
                @if graded.passed { a href="/training" { (l.t("Back to your training")) } }
                @else { a href={ "/training/" (m.key) } { (l.t("Try again")) } " · " a href="/training" { (l.t("Back to your training")) } }
            }
        },
    )
}

async fn coverage_of(state: &AppState, me: &SignedIn) -> Result<Coverage, Response> {
    if let Some(r) = me.only_for(&[Role::Admin, Role::Auditor]) {
        return Err(r);
    }
    state.identity.training_coverage(&me.auth.principal).await.map_err(|e| me.identity_error(e))
}

fn coverage_table(me: &SignedIn, c: &Coverage) -> Markup {
    let l = me.lang;
    let lang = l.code();
    html! {
        figure.measure {
            table.log.coverage {
                thead { tr {
                    th scope="col" { (l.t("Person")) } th scope="col" { (l.t("Role")) }
                    @for m in &c.modules { th scope="col" { (m.title.get(lang)) " " span.muted { "v" (m.version) } } }
                } }
                tbody {
                    @for p in &c.people {
                        tr {
                            th scope="row" { (p.username) }
                            td { (super::i18n::role_name(l, p.role)) }
                            @for s in &p.statuses {
                                td {
                                    @match s {
                                        Some(s) => {
                                            span class={ "state " (s.code()) } { (code_text(l, s.code())) }
                                            @if let ModuleState::Done { passed_at, .. } = s.state { " " span.muted { (day(me, passed_at)) } }
                                        }
                                        None => { span.muted { "—" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `/admin/training`: coverage per person and module, with the evidence to export.
pub(super) async fn coverage(State(state): State<AppState>, me: SignedIn) -> Response {
    let c = match coverage_of(&state, &me).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let l = me.lang;
    let (current, staff) = c.current();
    let (done, due, overdue, assigned) = c.counts();
    let body = html! {
        p {
            (l.t("{current} of {n} staff have completed everything required of them.").replace("{current}", &current.to_string()).replace("{n}", &staff.to_string()))
            " " span.muted { (l.t("Done")) " " (done) " · " (l.t("Due")) " " (due) " · " (l.t("Overdue")) " " (overdue) " · " (l.t("Assigned")) " " (assigned) }
        }
        p.muted { (l.t("Enforcement:")) " " code { "training.enforce = \"" (c.enforce.as_str()) "\"" } ". " (l.t("A new module pack is imported at the server with")) " " code { "confidant training import" } "." }
        p { a href="/admin/training.csv" { (l.t("Download the evidence (CSV)")) } " · " a href="/admin/training/evidence" { (l.t("Printable evidence")) } }
        (coverage_table(&me, &c))
    };
    if me.role() == Role::Admin {
        super::admin::admin_page(&me, l.t("Training"), body)
    } else {
        me.page(l.t("Training"), body)
    }
}

/// A CSV cell: quoted, and never read as a formula by a spreadsheet.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `/admin/training.csv`: one row per person and required module.
pub(super) async fn coverage_csv(State(state): State<AppState>, me: SignedIn) -> Response {
    let c = match coverage_of(&state, &me).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut out =
        String::from("username,user_id,role,module,version,status,due_since,passed_at,expires_at,score,out_of\r\n");
    for p in &c.people {
        for (m, s) in c.modules.iter().zip(&p.statuses) {
            let Some(s) = s else { continue };
            let pass =
                p.passes.iter().filter(|x| x.module_key == m.key && x.version == m.version).max_by_key(|x| x.passed_at);
            let (passed, expires) = match s.state {
                ModuleState::Done { passed_at, expires_at } => {
                    (confidant_fhir::instant(passed_at), confidant_fhir::instant(expires_at))
                }
                _ => (String::new(), String::new()),
            };
            let row = [
                cell(&p.username),
                cell(&p.user_id),
                cell(p.role.as_str()),
                cell(&m.key),
                m.version.to_string(),
                cell(s.code()),
                cell(&if s.is_done() { String::new() } else { confidant_fhir::instant(s.due_since) }),
                cell(&passed),
                cell(&expires),
                pass.map(|x| x.score.to_string()).unwrap_or_default(),
                pass.map(|x| x.out_of.to_string()).unwrap_or_default(),
            ];
            out.push_str(&row.join(","));
            out.push_str("\r\n");
        }
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"training-evidence.csv\"")),
        ],
        out,
    )
        .into_response()
}

/// `/admin/training/evidence`: the same, as a page to print for the clinic's self-monitoring plan.
pub(super) async fn evidence(State(state): State<AppState>, me: SignedIn) -> Response {
    let c = match coverage_of(&state, &me).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let l = me.lang;
    let lang = l.code();
    let (current, staff) = c.current();
    me.page(
        l.t("Security training: evidence"),
        html! {
            p { (l.t("Printed from Confidant on")) " " (me.time_ms(c.at)) ". "
                (l.t("{current} of {n} staff have completed everything required of them.").replace("{current}", &current.to_string()).replace("{n}", &staff.to_string())) }
            p.muted { (l.t("A pass counts for {n} months.").replace("{n}", &c.rules.valid_months.to_string())) " "
                (l.t("Modules:")) " " @for (i, m) in c.modules.iter().enumerate() { @if i > 0 { ", " } (m.title.get(lang)) " (v" (m.version) ")" } }
            (coverage_table(&me, &c))
            h2 { (l.t("Completions")) }
            figure.measure { table.log {
                thead { tr { th scope="col" { (l.t("Person")) } th scope="col" { (l.t("Module")) } th scope="col" { (l.t("Passed")) } th scope="col" { (l.t("Score")) } } }
                tbody {
                    @for p in &c.people {
                        @for x in p.passes.iter().rev() {
                            tr {
                                td { (p.username) }
                                td { (c.modules.iter().find(|m| m.key == x.module_key).map(|m| m.title.get(lang)).unwrap_or(&x.module_key)) " v" (x.version) }
                                td { (me.time_ms(x.passed_at)) }
                                td { (x.score) " / " (x.out_of) }
                            }
                        }
                    }
                }
            } }
            p.noprint { a href="/admin/training" { (l.t("Back")) } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(cell("desk"), "\"desk\"");
        assert_eq!(cell("a\"b"), "\"a\"\"b\"");
        for f in ["=HYPERLINK(\"x\")", "+1", "-1", "@sum"] {
            assert!(cell(f).starts_with("\"'"), "{f}");
        }
    }
}
