//! The HTTP face of Confidant: the FHIR R4 API under `/fhir/r4`, the
//! management API under `/api/v1`, the web UI at `/`, and `/healthz`.
//!
//! Requests flow one way: [`auth`] (session cookie with CSRF check, session
//! bearer or API token → a `Principal`) → handler → records service, which
//! asks the policy crate. No handler decides access itself.
//! Nothing here touches keys or SQL; nothing here logs request content
//! (the request log holds method, route template, status and duration only).
#![forbid(unsafe_code)]

mod api;
mod auth;
mod client;
mod error;
mod fhir;
// Patient/{id}/$everything and the entries of _include (issue 19).
mod fhir_everything;
pub mod metrics;
// SMART App Launch: discovery, the token and revocation endpoints.
mod oauth;
pub mod tls;
mod web;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use confidant_records::Records;
use serde_json::Value;

pub use auth::SESSION_COOKIE;
pub use error::ApiError;
/// The FHIR search query parser, public only so that the fuzz targets (`fuzz/`) reach it.
#[doc(hidden)]
pub use fhir::{Query as SearchQuery, parse_query as parse_search_query};

/// Shared state of a running server.
#[derive(Debug, Clone)]
pub struct AppState {
    pub records: Arc<Records>,
    pub identity: Arc<confidant_identity::Identity>,
    /// Mark cookies `Secure` (when clients reach the server over HTTPS).
    pub secure_cookies: bool,
    /// How long a break-glass access lasts.
    pub break_glass_minutes: i64,
    /// The public base URL, e.g. `https://records.clinic.example`; links in
    /// Bundles are built from it, never from the request's Host header.
    pub base_url: String,
    /// This node's audit checkpointer (signed heads and proofs), if it signs.
    pub audit: Option<Arc<tokio::sync::Mutex<confidant_audit::Checkpointer>>>,
    /// The security posture checks (`confidant doctor`) for the admin's page.
    pub posture: Option<Posture>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (`server.trusted_proxies`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The practice: its name, time zone and cancellation rule (`[clinic]`).
    pub clinic: ClinicSettings,
    /// Requests counted and timed for `/metrics` (route templates only).
    pub metrics: Arc<metrics::HttpMetrics>,
}

/// The practice, as the HTTP layer needs it (`[clinic]` in the configuration).
#[derive(Debug, Clone)]
pub struct ClinicSettings {
    pub name: String,
    /// Calendars, "today" and reminders are in this zone, never in UTC.
    pub time_zone: jiff::tz::TimeZone,
    /// Patients may cancel themselves up to this many hours before the start.
    pub cancel_notice_hours: u32,
}

impl ClinicSettings {
    /// The clinic's date at `millis` (Unix milliseconds), `YYYY-MM-DD`.
    pub fn date_at(&self, millis: i64) -> String {
        match jiff::Timestamp::from_millisecond(millis) {
            Ok(t) => t.to_zoned_datetime(self.time_zone.clone()).date().to_string(),
            Err(_) => String::new(),
        }
    }
}

impl Default for ClinicSettings {
    fn default() -> Self {
        ClinicSettings { name: "Confidant clinic".into(), time_zone: jiff::tz::TimeZone::UTC, cancel_notice_hours: 24 }
    }
}

/// One result of the security posture checks, as the admin's page shows it.
#[derive(Debug, Clone)]
pub struct PostureFinding {
    pub check: String,
    /// `None`: the check passed; else `high`, `medium` or `low`.
    pub severity: Option<String>,
    pub title: String,
    pub evidence: String,
    pub fix: String,
}

/// Runs the posture checks on demand. The application crate provides them
/// (it knows the configuration and the files the checks look at); the server
/// only asks, and never reaches up into the layers above it.
#[derive(Clone)]
pub struct Posture(pub Arc<dyn Fn() -> PostureFuture + Send + Sync>);

/// The posture checks, as the layer above the server implements them.
pub trait PostureChecks: Send + Sync + 'static {
    /// Run every check against the running instance.
    fn examine(&self) -> PostureFuture;
}

impl Posture {
    /// The hook that runs `checks`.
    pub fn new(checks: impl PostureChecks) -> Posture {
        let checks = Arc::new(checks);
        Posture(Arc::new(move || checks.examine()))
    }
}

/// The posture checks' results, when they are done.
pub type PostureFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<PostureFinding>> + Send>>;

impl std::fmt::Debug for Posture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Posture")
    }
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
}

/// The complete router.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let fhir = fhir::routes()
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .route("/metadata", get(fhir::metadata))
        // Only FHIR JSON: other formats get 406 (issue 19), before authentication.
        .layer(middleware::from_fn(fhir::formats))
        // SMART discovery under the FHIR base, without authentication (a plain JSON document).
        .route("/.well-known/smart-configuration", get(oauth::configuration));
    // The same base with a trailing slash, behind the same layers (transaction and batch Bundles).
    let base = fhir::base_with_slash()
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(middleware::from_fn(fhir::formats));
    let api = api::routes()
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .merge(api::public_routes());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/fhir/r4", fhir)
        .merge(base)
        .nest("/api/v1", api)
        .route("/.well-known/smart-configuration", get(oauth::configuration))
        .route(oauth::TOKEN, axum::routing::post(oauth::token))
        .route(oauth::REVOKE, axum::routing::post(oauth::revoke))
        .merge(web::routes(&state))
        // No such endpoint: an empty 404 that `uniform_errors` gives its surface's shape.
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(middleware::from_fn(error::uniform_errors))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
        .layer(middleware::from_fn_with_state(state.clone(), request_log))
        .layer(middleware::from_fn_with_state(state.clone(), client::client_address))
        .with_state(state)
}

/// A FHIR JSON response body with its content type.
pub(crate) fn fhir_json(v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8"))], body).into_response()
}

/// Headers every response carries: nothing is cached, sniffed or framed.
async fn security_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // Reached over HTTPS (a TLS proxy in front): browsers must never fall back to HTTP.
    if state.secure_cookies {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Pages get their own policy (our stylesheet, nothing inline); everything else none at all.
    let is_page = h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let csp = if is_page { web::PAGE_CSP } else { "default-src 'none'; frame-ancestors 'none'" };
    // A page may bring a stricter variant of its own (the SMART consent page
    // names the one app origin its form may be sent on to).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// The request log: method, route template, status, duration. Never the
/// query string (search values are PHI), never bodies.
async fn request_log(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let route = route.as_deref().unwrap_or("(unmatched)");
    state.metrics.observe(method.as_str(), route, status.as_u16(), started.elapsed());
    if status.is_server_error() {
        tracing::warn!(%method, route, status = status.as_u16(), ms, "request");
    } else {
        tracing::info!(%method, route, status = status.as_u16(), ms, "request");
    }
    resp
}

/// Serve `router` on `listener` until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address feeds per-source login throttling.
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serve `router` over HTTPS: TLS connections from `listener` (see [`tls`]).
pub async fn serve_tls(
    listener: tls::TlsListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // `tap_io` only so that axum hands the peer address over as for TCP.
    axum::serve(listener.tap_io(|_| ()), router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// A plain-HTTP listener that only redirects to the HTTPS `base_url` (308,
/// method and body kept): nothing is served over HTTP.
pub async fn serve_redirect(
    listener: tokio::net::TcpListener,
    base_url: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let base = base_url.trim_end_matches('/').to_owned();
    let redirect = move |uri: axum::http::Uri| {
        let base = base.clone();
        async move {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            match HeaderValue::from_str(&format!("{base}{path}")) {
                Ok(to) => (axum::http::StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to)]).into_response(),
                Err(_) => axum::http::StatusCode::BAD_REQUEST.into_response(),
            }
        }
    };
    let app = Router::new().fallback(redirect);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod clinic_tests {
    use super::ClinicSettings;

    #[test]
    fn the_clinics_date_is_in_its_own_time_zone() {
        // 2026-12-02 23:30 UTC is already 3 December in Helsinki (UTC+2 in winter).
        let millis = 1_796_254_200_000;
        let utc = ClinicSettings::default();
        let helsinki = ClinicSettings {
            time_zone: jiff::tz::TimeZone::get("Europe/Helsinki").unwrap(),
            ..ClinicSettings::default()
        };
        assert_eq!(utc.date_at(millis), "2026-12-02");
        assert_eq!(helsinki.date_at(millis), "2026-12-03");
    }
}
