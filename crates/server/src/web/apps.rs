//! The administrator's SMART apps page (`/admin/apps`): the apps registered
//! (client id, name, redirect URIs, the scopes each may be given at most) and
//! the form that registers one. Registering goes through the identity
//! service, which checks the role again and commits the audit entry with it.

use axum::Form;
use axum::extract::State;
use axum::response::Response;
use confidant_policy::Role;
use confidant_store::SmartAppRow;
use maud::html;
use serde::Deserialize;

use super::SignedIn;
use super::admin::admin_page;
use crate::AppState;

pub(super) async fn apps(State(state): State<AppState>, me: SignedIn) -> Response {
    if let Some(r) = me.only_for(&[Role::Admin]) {
        return r;
    }
    apps_page(&state, &me, None).await
}

async fn apps_page(state: &AppState, me: &SignedIn, registered: Option<&SmartAppRow>) -> Response {
    let l = me.lang;
    let apps = match state.identity.apps(&me.auth.principal).await {
        Ok(a) => a,
        Err(e) => return me.identity_error(e),
    };
    let base = state.base_url.trim_end_matches('/');
    admin_page(
        me,
        l.t("SMART apps"),
        html! {
            @if let Some(app) = registered {
                section.card.done role="status" {
                    h2 { (l.t("App registered")) }
                    p { (l.t("Give the app its client id and this server's FHIR base URL:")) }
                    p { code #client-id { (app.client_id) } }
                    p { code { (base) "/fhir/r4" } }
                }
            }
            @if apps.is_empty() { p { (l.t("No SMART apps.")) } }
            @else {
                table.log {
                    thead { tr {
                        th scope="col" { (l.t("App")) } th scope="col" { (l.t("Client id")) }
                        th scope="col" { (l.t("Redirect URIs")) } th scope="col" { (l.t("Scopes")) }
                        th scope="col" { (l.t("Registered")) }
                    } }
                    tbody {
                        @for a in &apps {
                            tr {
                                td { (a.name) }
                                td.wrap { code { (a.client_id) } }
                                td.wrap { @for u in &a.redirect_uris { (u) br; } }
                                td.wrap { (a.scopes) }
                                td { (me.time_ms(a.created_at)) }
                            }
                        }
                    }
                }
            }
            section {
                h2 { (l.t("Register an app")) }
                form.card method="post" action="/admin/apps" {
                    (me.csrf_field())
                    label for="name" { (l.t("Name")) }
                    input id="name" name="name" required maxlength="100" autocomplete="off";
                    label for="redirect_uris" { (l.t("Redirect URIs, one per line (https; http only for 127.0.0.1 and localhost)")) }
                    textarea id="redirect_uris" name="redirect_uris" required rows="3" {}
                    label for="scopes" { (l.t("Scopes it may be given at most (e.g. user/Patient.rs user/Appointment.rs)")) }
                    input id="scopes" name="scopes" required autocomplete="off";
                    button type="submit" { (l.t("Register app")) }
                }
                p.muted { (l.t("An app acts for each person who allows it, never with more than their role allows, and its tokens are listed under API tokens, where they can be revoked.")) }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct AppForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    scopes: String,
}

pub(super) async fn register(State(state): State<AppState>, me: SignedIn, Form(f): Form<AppForm>) -> Response {
    if let Some(r) = me.refuse_post(&[Role::Admin], &f.csrf, "Nothing was changed.") {
        return r;
    }
    match state.identity.register_app(&me.auth.principal, &f.name, &f.redirect_uris, &f.scopes).await {
        Ok(app) => apps_page(&state, &me, Some(&app)).await,
        Err(e) => me.identity_error(e),
    }
}
