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
            E::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            E::Conflict(why) => ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, why),
            E::Records(e) => e.into(),
            other => ApiError::from(RecordsError::NotSupported(other.to_string())),
        }
    }
}

impl From<RecordsError> for ApiError {
    fn from(e: RecordsError) -> Self {
        use RecordsError as E;
        match e {
            E::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            E::Invalid(why) => ApiError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, why),
            E::Unprocessable(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::Processing, why),
            E::NotSupported(why) => ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, why),
            E::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, why),
            e @ E::PreconditionFailed { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, IssueType::Conflict, e.to_string())
            }
            e @ E::Conflict => ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, e.to_string()),
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
