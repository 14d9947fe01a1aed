//! The one mapping from errors to HTTP responses. Every error a client sees
//! is an OperationOutcome; none carries internals or record content.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confidant_fhir::{IssueType, operation_outcome};
use confidant_identity::IdentityError;
use confidant_records::RecordsError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: IssueType,
    pub diagnostics: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> Self {
        ApiError { status, code, diagnostics: diagnostics.into() }
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueType::NotFound, diagnostics)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            IssueType::Login,
            "authentication required: log in (POST /api/v1/session) or send 'Authorization: Bearer <token>'",
        )
    }
}

/// A 404 that names what kind of thing was not found ("Patient not found"),
/// never the id the client sent: `what` is `Type/id...` or a fixed word.
fn not_found(what: &str) -> ApiError {
    match what.split('/').next().filter(|kind| !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphabetic())) {
        Some(kind) => ApiError::not_found(format!("{kind} not found")),
        None => ApiError::not_found("not found"),
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        use IdentityError as E;
        match e {
            e @ E::BadCredentials => ApiError::new(StatusCode::UNAUTHORIZED, IssueType::Login, e.to_string()),
            E::Unauthenticated => ApiError::unauthorized(),
            e @ E::Throttled { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, IssueType::Throttled, e.to_string())
            }
            e @ E::MfaEnrolmentRequired => ApiError::new(StatusCode::FORBIDDEN, IssueType::Security, e.to_string()),
            E::Invalid(why) => ApiError::bad_request(why),
            E::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, why),
            E::NotFound(what) => not_found(&what),
            E::Conflict(why) => ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, why),
            E::Store(e) => RecordsError::from(e).into(),
            E::Vault(e) => RecordsError::Vault(e).into(),
            E::AuditFailed => RecordsError::AuditFailed.into(),
            E::Keys(e) => RecordsError::from(e).into(),
            other => ApiError::from(RecordsError::NotSupported(other.to_string())),
        }
    }
}

impl From<RecordsError> for ApiError {
    fn from(e: RecordsError) -> Self {
        use RecordsError as E;
        match e {
            E::NotFound(what) => not_found(&what),
            E::Invalid(why) => ApiError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, why),
            E::Unprocessable(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::Processing, why),
            E::NotSupported(why) => ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, why),
            E::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, why),
            e @ E::PreconditionFailed { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, IssueType::Conflict, e.to_string())
            }
            E::ConditionFailed(why) => ApiError::new(StatusCode::PRECONDITION_FAILED, IssueType::Conflict, why),
            e @ E::Conflict => ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, e.to_string()),
            e @ E::DoubleBooked { .. } => ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, e.to_string()),
            e @ E::AuditFailed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, e.to_string()),
            E::Integrity => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "the stored record failed its integrity check (it was altered or moved); \
                 the event is logged for the administrator",
            ),
            other => {
                // Details go to the log (they hold no content); the client gets none.
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IssueType::Exception,
                    "internal error; the event is logged for the administrator",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = operation_outcome(self.code, &self.diagnostics);
        let mut resp = (self.status, crate::fhir_json(&body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"confidant\""));
        }
        resp
    }
}

/// A request body within the size limit, with the media type one of `accepted`:
/// the one place bodies are admitted (413 and 415 as OperationOutcome).
pub(crate) fn admit_body(
    headers: &axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    accepted: &[&str],
) -> Result<axum::body::Bytes, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueType::TooCostly,
                "request body is larger than this server accepts",
            )
        } else {
            ApiError::bad_request("could not read the request body")
        }
    })?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !accepted.contains(&mime.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!("send Content-Type: {}", accepted.first().copied().unwrap_or("application/json")),
        ));
    }
    Ok(body)
}

/// Longest request target (path and query) served, in bytes. Longer ones get a
/// uniform 414 here. Above 64 KiB the HTTP library (hyper) answers a bare 414
/// itself, before any of our code runs: a proxy in front should cap URIs lower
/// (nginx allows 8 KiB by default). 32 KiB leaves room for long searches, which
/// get their own clear 400 when they ask too much.
const MAX_URI_BYTES: usize = 32 * 1024;

/// Who a request is for, and so the shape of its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Surface {
    /// `/fhir/r4` and `/api/v1`: an OperationOutcome ([`ApiError`]).
    Api,
    /// The web UI's JSON endpoints (passkey ceremonies): `{"error": text}`.
    PageScript,
    /// Web pages: the HTML error page.
    Page,
}

impl Surface {
    fn of(path: &str) -> Surface {
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        if under("/fhir/r4") || under("/api/v1") {
            Surface::Api
        } else if crate::web::is_script_endpoint(path) {
            Surface::PageScript
        } else {
            Surface::Page
        }
    }
}

/// A fixed text for an error status: it never repeats what the client sent.
fn fixed_text(status: StatusCode) -> (IssueType, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => (
            IssueType::Invalid,
            "the request could not be read: check its path, query and body against the API description",
        ),
        StatusCode::UNAUTHORIZED => (IssueType::Login, "authentication required"),
        StatusCode::FORBIDDEN => (IssueType::Forbidden, "not allowed"),
        StatusCode::NOT_FOUND => (IssueType::NotFound, "not found"),
        StatusCode::METHOD_NOT_ALLOWED => (IssueType::NotSupported, "method not supported here"),
        StatusCode::PAYLOAD_TOO_LARGE => (IssueType::TooCostly, "request body is larger than this server accepts"),
        StatusCode::URI_TOO_LONG => (IssueType::TooCostly, "the request URI is longer than this server accepts"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (IssueType::NotSupported, "unsupported Content-Type for this request"),
        StatusCode::UNPROCESSABLE_ENTITY => (IssueType::Processing, "the request could not be processed"),
        StatusCode::TOO_MANY_REQUESTS => (IssueType::Throttled, "too many requests; try again later"),
        s if s.is_client_error() => (IssueType::Invalid, "the request was refused"),
        _ => (IssueType::Exception, "internal error; the event is logged for the administrator"),
    }
}

/// The error response of `surface` for `status`, with a fixed text.
fn uniform(surface: Surface, status: StatusCode, headers: &axum::http::HeaderMap) -> Response {
    match surface {
        Surface::Api => {
            let (code, text) = fixed_text(status);
            ApiError::new(status, code, text).into_response()
        }
        Surface::PageScript => {
            (status, axum::Json(serde_json::json!({ "error": fixed_text(status).1 }))).into_response()
        }
        Surface::Page => crate::web::error_page(headers, status),
    }
}

/// Whether a response already has one of our shapes (OperationOutcome,
/// JSON, HTML page); the framework's own refusals (a body, path or query that
/// does not parse, a wrong media type) are plain text that may quote the input.
fn shaped(resp: &Response) -> bool {
    resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim();
        matches!(mime, "application/fhir+json" | "application/json" | "text/html")
    })
}

/// The one place every error leaves in its surface's shape: a URI that is too
/// long, and any error response not already shaped (the framework's
/// rejections), become the uniform error with a fixed text; the headers that
/// tell a client what to do (`Allow`, `Retry-After`, `WWW-Authenticate`) stay.
pub(crate) async fn uniform_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let surface = Surface::of(req.uri().path());
    let headers = req.headers().clone();
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > MAX_URI_BYTES {
        return uniform(surface, StatusCode::URI_TOO_LONG, &headers);
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || shaped(&resp) {
        return resp;
    }
    let mut fresh = uniform(surface, status, &headers);
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = resp.headers().get(&name) {
            fresh.headers_mut().insert(name, v.clone());
        }
    }
    fresh
}
