//! SMART App Launch 2 (issue 19), the parts an app's code calls: discovery
//! (`/.well-known/smart-configuration`, also under the FHIR base), the token
//! endpoint (`POST /oauth/token`, the authorization code grant with PKCE)
//! and revocation (`POST /oauth/revoke`, RFC 7009). The user's part (the
//! consent page, `/oauth/authorize`) is a web page: `web/oauth.rs`. What is
//! decided is the identity service's and the policy's; errors are RFC 6749's
//! JSON (`error`, `error_description`), never an echo of what was sent.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confidant_fhir::ResourceType;
use confidant_identity::smart::OAuthError;
use serde_json::{Value, json};

use crate::AppState;
use crate::client::ClientAddr;

/// The endpoints, relative to the server's base URL.
pub(crate) const AUTHORIZE: &str = "/oauth/authorize";
pub(crate) const TOKEN: &str = "/oauth/token";
pub(crate) const REVOKE: &str = "/oauth/revoke";

/// The discovery document (SMART App Launch 2.0 §2.1): what an app needs to
/// start the flow, and exactly what is served (no refresh tokens, no
/// OpenID Connect, no launch context, public clients with PKCE S256).
pub(crate) async fn configuration(State(state): State<AppState>) -> Response {
    let base = state.base_url.trim_end_matches('/');
    let mut scopes: Vec<String> = [
        "user/*.rs",
        "user/*.cu",
        "user/*.read",
        "user/*.write",
        "user/*.*",
        "patient/*.rs",
        "patient/*.read",
        "launch/patient",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for rt in ResourceType::ALL {
        scopes.push(format!("user/{}.rs", rt.as_str()));
        scopes.push(format!("patient/{}.rs", rt.as_str()));
        if !rt.written_by_server() {
            scopes.push(format!("user/{}.cu", rt.as_str()));
        }
    }
    let doc = json!({
        "authorization_endpoint": format!("{base}{AUTHORIZE}"),
        "token_endpoint": format!("{base}{TOKEN}"),
        "revocation_endpoint": format!("{base}{REVOKE}"),
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["authorization_code"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "capabilities": ["launch-standalone", "client-public", "context-standalone-patient", "permission-v1", "permission-v2", "permission-user", "permission-patient"],
    });
    json_response(StatusCode::OK, &doc)
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// An OAuth error response (RFC 6749 §5.2): 401 for an unknown client, 5xx
/// for our own failures, else 400.
pub(crate) fn error_response(e: &OAuthError) -> Response {
    let status = match e.error {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut r = json_response(status, &json!({"error": e.error, "error_description": e.description}));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"confidant\""));
    }
    r
}

/// The parameters of a form-encoded request: each at most once (RFC 6749
/// §3.2), the media type right, within the body limit.
fn form(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<std::collections::HashMap<String, String>, OAuthError> {
    let invalid = |why: &str| OAuthError::new("invalid_request", why);
    let body = body.map_err(|_| invalid("the request body could not be read (or is too large)"))?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(invalid("send the parameters as application/x-www-form-urlencoded"));
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(OAuthError::new(
            "invalid_client",
            "apps here are public clients: send client_id in the body and no client secret",
        ));
    }
    let mut out = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(invalid("a parameter is given more than once"));
        }
    }
    Ok(out)
}

fn required<'a>(
    params: &'a std::collections::HashMap<String, String>,
    name: &'static str,
) -> Result<&'a str, OAuthError> {
    params.get(name).map(String::as_str).filter(|v| !v.is_empty()).ok_or_else(|| {
        let error = if name == "client_id" { "invalid_client" } else { "invalid_request" };
        OAuthError::new(error, format!("{name} is required"))
    })
}

/// `POST /oauth/token`: the authorization code grant (RFC 6749 §4.1.3,
/// RFC 7636 §4.5). The token is an API token of the user who said yes.
pub(crate) async fn token(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let p = form(&headers, body)?;
        match required(&p, "grant_type")? {
            "authorization_code" => {}
            _ => {
                return Err(OAuthError::new(
                    "unsupported_grant_type",
                    "only grant_type=authorization_code is served (no refresh tokens: authorize again)",
                ));
            }
        }
        let client_id = required(&p, "client_id")?;
        let code = required(&p, "code")?;
        let redirect_uri = required(&p, "redirect_uri")?;
        let verifier = required(&p, "code_verifier")?;
        state.identity.exchange_code(client_id, code, redirect_uri, verifier, &peer.to_string()).await
    };
    match result.await {
        Ok(t) => {
            let mut doc = json!({
                "access_token": t.access_token,
                "token_type": "Bearer",
                "expires_in": t.expires_in_secs,
                "scope": t.scope,
            });
            // A patient's own app: the launch context is the signed-in patient.
            if let Some(patient) = t.patient {
                doc["patient"] = Value::String(patient);
            }
            let mut r = json_response(StatusCode::OK, &doc);
            r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => error_response(&e),
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 for a revoked, unknown or already
/// revoked token; an error for a token another app was given.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let p = form(&headers, body)?;
        let token = required(&p, "token")?;
        let client_id = required(&p, "client_id")?;
        state.identity.revoke_by_app(client_id, token, &peer.to_string()).await
    };
    match result.await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_response(&e),
    }
}
