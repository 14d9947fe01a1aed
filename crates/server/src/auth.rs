//! Bearer-token authentication for the API (a stopgap until the
//! access-control issue brings users, roles and sessions).
//!
//! A token is 256 random bits, shown once; the database keeps only its
//! SHA-256. A high-entropy token needs no slow hash: guessing is hopeless.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{ApiError, AppState};

const TOKEN_PREFIX: &str = "cnf_";

/// A new random API token: `cnf_` and 43 base64url characters.
pub fn new_token() -> Result<String, confidant_vault::VaultError> {
    let mut b = [0u8; 32];
    confidant_vault::random_bytes(&mut b)?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(b)))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    confidant_vault::sha256(token.as_bytes())
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (token.starts_with(TOKEN_PREFIX) && token.len() < 128).then_some(token)
}

/// Middleware: the request carries a live API token, or it gets 401.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(&req) else {
        return ApiError::unauthorized().into_response();
    };
    match state
        .records
        .store()
        .api_token_by_hash(&hash_token(token))
        .await
    {
        Ok(Some(_id)) => next.run(req).await,
        Ok(None) => ApiError::unauthorized().into_response(),
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            ApiError::from(confidant_records::RecordsError::Store(e)).into_response()
        }
    }
}
