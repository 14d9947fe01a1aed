//! SMART App Launch 2 (issue 19): apps an administrator registers, the
//! authorization code flow with PKCE (S256 only), and the token an app gets,
//! which is an API token of the user who said yes (`tokens.rs` stores it:
//! by its hash, label sealed), with the scopes the policy grants
//! ([`confidant_policy::smart::granted`]). A code is stored by its hash,
//! lives [`CODE_LIFETIME_MS`], is bound to its app, user, redirect URI and
//! PKCE challenge, and is used once; one that comes back revokes its token
//! (RFC 6749 §4.1.2). Registrations and tokens are security events
//! committed with their change.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confidant_audit::{Action as AuditAction, Outcome};
use confidant_policy::smart::{self as policy, Requested};
use confidant_policy::{Principal, Role, Scopes};
use confidant_store::{ApiTokenRow, OAuthCodeRow, SmartAppRow};

use crate::tokens::API_TOKEN_PREFIX;
use crate::{Identity, IdentityError, Result, TOKEN_LABEL, random_id, random_token};

/// How long an authorization code lives: long enough for an app to exchange
/// it right away, short enough that a leaked one is stale (RFC 6749 §4.1.2
/// recommends at most 10 minutes).
pub const CODE_LIFETIME_MS: i64 = 60_000;
/// How an authorization code begins.
const CODE_PREFIX: &str = "cnc_";
/// Most redirect URIs one app registers, and the longest one.
const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_LEN: usize = 512;

/// An OAuth error as RFC 6749 §4.1.2.1 and §5.2 name it (`error`), with a
/// text for the app's developer (`error_description`) that never repeats
/// a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError { error, description: description.into() }
    }

    fn grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_grant", description)
    }

    /// A failure of ours (store, keys, audit log): logged, and told as a server error.
    fn internal(e: IdentityError) -> OAuthError {
        match e {
            IdentityError::AuditFailed => OAuthError::new(
                "temporarily_unavailable",
                "the token could not be recorded in the audit log; try again",
            ),
            e => {
                tracing::error!(error = %e, "an OAuth request failed");
                OAuthError::new("server_error", "internal error; the event is logged for the administrator")
            }
        }
    }
}

/// A token handed to an app.
#[derive(Debug, Clone)]
pub struct AppToken {
    pub access_token: String,
    pub token_id: String,
    pub expires_in_secs: i64,
    /// The scopes granted, space-separated.
    pub scope: String,
    /// The launch context: the patient's own id when a patient signed in
    /// (the token reaches only their record), for the token response's `patient`.
    pub patient: Option<String>,
}

/// What an app asked for and what it gets, for the consent page.
#[derive(Debug, Clone)]
pub struct Grant {
    pub requested: Requested,
    pub granted: Scopes,
}

impl Grant {
    /// Does the grant hold less than the resource scopes asked for?
    pub fn narrowed(&self) -> bool {
        self.granted.to_string() != self.requested.resources.to_string()
    }
}

/// Is `uri` a redirect URI an app may register? `https` with a host, or
/// `http` on the loopback interface only (RFC 8252 §7.3: native apps and
/// tests); printable ASCII, no fragment, no user info. Compared exactly.
pub fn check_redirect_uri(uri: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("redirect URI {why}"));
    if uri.is_empty() || uri.len() > MAX_URI_LEN {
        return bad(&format!("must be 1 to {MAX_URI_LEN} characters"));
    }
    if !uri.bytes().all(|b| (0x21..=0x7e).contains(&b)) || uri.contains(['#', '<', '>', '"', '\\', '`']) {
        return bad("must be printable ASCII without spaces, quotes or a #fragment");
    }
    let Some((scheme, authority, _)) = split_uri(uri) else {
        return bad(
            "must be an absolute https:// URL (or http://127.0.0.1, http://localhost for apps on this machine)",
        );
    };
    if authority.is_empty()
        || !authority.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        || authority.starts_with(['.', '-', ':'])
    {
        return bad("needs a plain host name (and port), without user info");
    }
    let host = authority.rsplit_once(':').filter(|(h, p)| !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()));
    let host = host.map_or(authority, |(h, _)| h);
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "127.0.0.1" | "localhost" | "[::1]") => Ok(()),
        _ => bad("must use https (http only for 127.0.0.1 and localhost)"),
    }
}

/// `scheme://authority` of an absolute http(s) URI (for a page's CSP
/// `form-action`); `None` for anything else.
pub fn uri_origin(uri: &str) -> Option<String> {
    split_uri(uri).map(|(scheme, authority, _)| format!("{scheme}://{authority}"))
}

fn split_uri(uri: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some((scheme, &rest[..end], &rest[end..]))
}

/// A PKCE code challenge (S256): 43 characters of unpadded base64url.
pub fn is_code_challenge(c: &str) -> bool {
    c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A PKCE code verifier (RFC 7636 §4.1): 43 to 128 unreserved characters.
fn is_code_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

impl Identity {
    /// An administrator registers a SMART app: a name, its redirect URIs
    /// (one per line), the scopes it may be given at most. Audited with it.
    pub async fn register_app(
        &self,
        by: &Principal,
        name: &str,
        redirect_uris: &str,
        scopes: &str,
    ) -> Result<SmartAppRow> {
        policy::may_register_apps(by).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(IdentityError::Invalid("an app's name is 1 to 100 printable characters".into()));
        }
        let uris: Vec<String> = redirect_uris.split_whitespace().map(str::to_owned).collect();
        if uris.is_empty() || uris.len() > MAX_REDIRECT_URIS {
            return Err(IdentityError::Invalid(format!("give 1 to {MAX_REDIRECT_URIS} redirect URIs, one per line")));
        }
        for u in &uris {
            check_redirect_uri(u).map_err(IdentityError::Invalid)?;
        }
        let scopes = Scopes::parse(scopes).map_err(IdentityError::Invalid)?;
        let app = SmartAppRow {
            client_id: random_id()?,
            name: name.to_owned(),
            redirect_uris: uris,
            scopes: scopes.to_string(),
            created_at: self.now(),
            created_by: by.user_id.clone(),
        };
        let source = by.source.as_deref();
        let e = self
            .event(AuditAction::AppRegister, Outcome::Success, Some(&by.user_id), Some(&app.client_id), source)
            .await;
        let mut changes = self.store().audited().await?;
        changes.insert_smart_app(&app).await?;
        self.commit(changes, e).await?;
        tracing::info!(client_id = %app.client_id, "SMART app registered");
        Ok(app)
    }

    /// Every registered app (administrators).
    pub async fn apps(&self, by: &Principal) -> Result<Vec<SmartAppRow>> {
        policy::may_register_apps(by).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        Ok(self.store().smart_apps().await?)
    }

    /// The app of an authorization request, if `client_id` is registered and
    /// `redirect_uri` is exactly one of its own. Until both hold, an error is
    /// shown to the user and never sent to the redirect URI (RFC 6749 §4.1.2.1).
    pub async fn app_for_redirect(&self, client_id: &str, redirect_uri: &str) -> Result<SmartAppRow, OAuthError> {
        let app = self.app(client_id).await?;
        if !app.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(OAuthError::new("invalid_request", "redirect_uri is not one registered for this app"));
        }
        Ok(app)
    }

    async fn app(&self, client_id: &str) -> Result<SmartAppRow, OAuthError> {
        let unknown = || OAuthError::new("invalid_client", "unknown client_id: an administrator registers apps");
        if client_id.is_empty() || client_id.len() > 64 || !client_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        self.store().smart_app(client_id).await.map_err(|e| OAuthError::internal(e.into()))?.ok_or_else(unknown)
    }

    /// What `user` would give `app` for `scope`: what the request, the app's
    /// registration and the user's role all allow.
    pub fn grant_for(&self, user: &Principal, app: &SmartAppRow, scope: &str) -> Result<Grant, OAuthError> {
        policy::may_authorize_app(user).map_err(|d| OAuthError::new("access_denied", d.to_string()))?;
        let requested =
            policy::parse_requested(scope, user.role).map_err(|why| OAuthError::new("invalid_scope", why))?;
        let allowed = Scopes::parse(&app.scopes).map_err(|why| OAuthError::new("invalid_scope", why))?;
        let granted = policy::granted(user.role, &requested.resources, &allowed).ok_or_else(|| {
            OAuthError::new(
                "invalid_scope",
                format!(
                    "none of the scopes asked for is both registered for this app and allowed to the {} role",
                    user.role
                ),
            )
        })?;
        Ok(Grant { requested, granted })
    }

    /// The user said yes: a code for `app` to exchange at the token endpoint
    /// with the verifier of `code_challenge` (S256), within [`CODE_LIFETIME_MS`].
    pub async fn issue_code(
        &self,
        user: &Principal,
        app: &SmartAppRow,
        redirect_uri: &str,
        code_challenge: &str,
        grant: &Grant,
    ) -> Result<String, OAuthError> {
        policy::may_authorize_app(user).map_err(|d| OAuthError::new("access_denied", d.to_string()))?;
        if !is_code_challenge(code_challenge) {
            return Err(OAuthError::new("invalid_request", "code_challenge must be 43 characters of base64url (S256)"));
        }
        let code = random_token(CODE_PREFIX).map_err(OAuthError::internal)?;
        let now = self.now();
        let row = OAuthCodeRow {
            client_id: app.client_id.clone(),
            user_id: user.user_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: code_challenge.to_owned(),
            scopes: grant.granted.to_string(),
            expires_at: now + CODE_LIFETIME_MS,
            used_at: None,
            token_id: None,
        };
        self.store()
            .insert_oauth_code(&Self::hash_token(&code), &row, now)
            .await
            .map_err(|e| OAuthError::internal(e.into()))?;
        Ok(code)
    }

    /// The token endpoint's `authorization_code` grant (RFC 6749 §4.1.3 with
    /// RFC 7636 §4.6): the code, its app, its redirect URI and the PKCE
    /// verifier must all match; the code is used up with the token's
    /// creation and its audit entry, in one transaction. `source`: the
    /// client's address.
    pub async fn exchange_code(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        source: &str,
    ) -> Result<AppToken, OAuthError> {
        let app = self.app(client_id).await?;
        if !is_code_verifier(code_verifier) {
            return Err(OAuthError::new("invalid_request", "code_verifier must be 43 to 128 unreserved characters"));
        }
        let hash = Self::hash_token(code);
        let unknown = || OAuthError::grant("the code is unknown or has expired: authorize again");
        if !code.starts_with(CODE_PREFIX) || code.len() > 100 {
            return Err(unknown());
        }
        let row =
            self.store().oauth_code(&hash).await.map_err(|e| OAuthError::internal(e.into()))?.ok_or_else(unknown)?;
        let now = self.now();
        if row.used_at.is_some() {
            // A code presented twice was stolen or replayed: what it gave is taken back.
            if let Some(token_id) = &row.token_id {
                self.revoke_app_token_id(&row.user_id, token_id, Some(source)).await.map_err(OAuthError::internal)?;
            }
            return Err(OAuthError::grant("the code was used already; the token it gave is revoked"));
        }
        if row.client_id != app.client_id {
            return Err(OAuthError::grant("the code was issued to another client"));
        }
        if row.expires_at <= now {
            return Err(OAuthError::grant("the code has expired (a code lives 60 seconds): authorize again"));
        }
        if row.redirect_uri != redirect_uri {
            return Err(OAuthError::grant("redirect_uri is not the one the code was issued for"));
        }
        let challenge = URL_SAFE_NO_PAD.encode(confidant_vault::sha256(code_verifier.as_bytes()));
        if !confidant_vault::secrets_equal(challenge.as_bytes(), row.code_challenge.as_bytes()) {
            return Err(OAuthError::grant("code_verifier does not match the code_challenge"));
        }
        let user = self.store().user_by_id(&row.user_id).await.map_err(|e| OAuthError::internal(e.into()))?;
        let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
            return Err(OAuthError::grant("the account that authorized the app is disabled"));
        };
        // The role may have changed since the consent: grant again, never more.
        let role = Role::parse(&user.role).ok_or_else(|| OAuthError::grant("the account has no known role"))?;
        let scopes = Scopes::parse(&row.scopes).map_err(OAuthError::grant)?;
        let app_scopes = Scopes::parse(&app.scopes).map_err(OAuthError::grant)?;
        let scopes = policy::granted(role, &scopes, &app_scopes)
            .ok_or_else(|| OAuthError::grant("the account's role no longer allows what was granted"))?;
        let token = random_token(API_TOKEN_PREFIX).map_err(OAuthError::internal)?;
        let lifetime = self.settings.bearer_lifetime_ms;
        let id = random_id().map_err(OAuthError::internal)?[..12].to_owned();
        let label = format!("SMART app: {}", app.name);
        let sealed = self.seal_secret(TOKEN_LABEL, &id, label.as_bytes()).await.map_err(OAuthError::internal)?;
        let t = ApiTokenRow {
            id,
            label_sealed: sealed,
            user_id: Some(user.id.clone()),
            scopes: Some(scopes.to_string()),
            created_at: now,
            expires_at: Some(now + lifetime),
            revoked_at: None,
        };
        let e = self.event(AuditAction::TokenCreate, Outcome::Success, Some(&user.id), Some(&t.id), Some(source)).await;
        let stored = async {
            let mut changes = self.store().audited().await?;
            if !changes.use_oauth_code(&hash, &t.id, now).await? {
                return Ok(false);
            }
            changes.insert_api_token(&t, &Self::hash_token(&token)).await?;
            changes.set_token_client(&t.id, &app.client_id).await?;
            self.commit(changes, e).await?;
            Ok::<_, IdentityError>(true)
        };
        if !stored.await.map_err(OAuthError::internal)? {
            // Another exchange of the same code won the race.
            return Err(OAuthError::grant("the code was used already"));
        }
        tracing::info!(user = %user.id, token = %t.id, client_id = %app.client_id, "SMART app token issued");
        let patient = if role == Role::Patient {
            self.principal(&user, None).await.map_err(OAuthError::internal)?.patient_id
        } else {
            None
        };
        Ok(AppToken {
            access_token: token,
            token_id: t.id,
            expires_in_secs: lifetime / 1000,
            scope: scopes.to_string(),
            patient,
        })
    }

    /// Token revocation (RFC 7009): an app revokes a token it was given. A
    /// token that is unknown, already revoked or not an API token is no
    /// error (§2.2); one given to another app is refused.
    pub async fn revoke_by_app(&self, client_id: &str, token: &str, source: &str) -> Result<(), OAuthError> {
        let app = self.app(client_id).await?;
        if !token.starts_with(API_TOKEN_PREFIX) || token.len() > 200 {
            return Ok(());
        }
        let found = self
            .store()
            .app_token_by_hash(&Self::hash_token(token))
            .await
            .map_err(|e| OAuthError::internal(e.into()))?;
        let Some(t) = found.filter(|t| t.revoked_at.is_none()) else { return Ok(()) };
        if t.client_id.as_deref() != Some(app.client_id.as_str()) {
            return Err(OAuthError::new("invalid_request", "this token was not issued to this client"));
        }
        let user = t.user_id.as_deref().unwrap_or_default();
        self.revoke_app_token_id(user, &t.token_id, Some(source)).await.map_err(OAuthError::internal)
    }

    /// Revoke an app's token, recorded as done by its user (their app acted for them).
    async fn revoke_app_token_id(&self, user_id: &str, token_id: &str, source: Option<&str>) -> Result<()> {
        let e = self.event(AuditAction::TokenRevoke, Outcome::Success, Some(user_id), Some(token_id), source).await;
        let mut changes = self.store().audited().await?;
        if changes.revoke_api_token(token_id, self.now()).await? {
            self.commit(changes, e).await?;
            tracing::info!(token = %token_id, "SMART app token revoked");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_or_loopback_and_plain() {
        for ok in [
            "https://app.example/callback",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1:8080/callback",
            "http://localhost/cb",
            "http://[::1]:9000/cb",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "http://app.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "javascript:alert(1)",
            "https://app.example/cb#frag",
            "https://user@app.example/cb",
            "https://app.example/c b",
            "https://app.example/cb\r\nSet-Cookie: x=1",
            "https:///cb",
            "ftp://app.example/cb",
            "https://app.example/\"><script>",
            &format!("https://app.example/{}", "a".repeat(600)),
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad:?}");
        }
        assert_eq!(uri_origin("https://app.example:8443/cb?x").as_deref(), Some("https://app.example:8443"));
    }

    #[test]
    fn pkce_values_have_their_rfc_shapes() {
        assert!(is_code_challenge(&URL_SAFE_NO_PAD.encode([7u8; 32])));
        assert!(!is_code_challenge("plain-verifier"));
        assert!(is_code_verifier(&"a".repeat(43)) && !is_code_verifier(&"a".repeat(42)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
    }
}
