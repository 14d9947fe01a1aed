//! Identity: who is calling. Users and roles, passwords (argon2id), the TOTP
//! second factor and recovery codes, sessions (cookie and bearer), API
//! tokens, login throttling and lockout (DESIGN.md §6).
//!
//! What is decided here is *who*; what they may do is `confidant-policy`'s.
//! Every secret is stored hashed or sealed (see `confidant-store::identity`).
#![forbid(unsafe_code)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confidant_audit::{Action as AuditAction, Entry, Outcome};
use confidant_fhir::ResourceType;
pub use confidant_policy::AccountChange;
use confidant_policy::{AccountDenied, Principal, RevocableSessions, Role, Scopes, TokenIssuer};
use confidant_store::{ApiTokenRow, SessionRow, StoreError, UserRow};
use confidant_vault::{VaultError, password, totp};
use serde_json::Value;

mod services;

use services::{RecordsError, Services};
pub use services::{patient_link_token, recorded_source, seal_plaintext_links};

/// Errors of the identity service. None reveals whether an account exists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Unknown user, wrong password, wrong code, disabled account: one answer for all.
    #[error("invalid username, password or code")]
    BadCredentials,
    /// Too many failures for this account or from this address.
    #[error(
        "too many failed attempts; try again in {retry_after_secs} seconds or ask an administrator to unlock the account"
    )]
    Throttled { retry_after_secs: i64 },
    /// No valid session or token.
    #[error("authentication required")]
    Unauthenticated,
    /// The second factor must be enrolled before anything else.
    #[error("enrol a second factor first: POST /api/v1/mfa/totp then /api/v1/mfa/totp/confirm")]
    MfaEnrolmentRequired,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A key or randomness failure.
    #[error("key error: {0}")]
    Vault(#[from] VaultError),
    /// The event could not be recorded in the audit log, so it did not happen.
    #[error("the access could not be recorded in the audit log, so nothing was returned; try again later")]
    AuditFailed,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A failure below identity that is none of the above (a sealed secret
    /// that fails its integrity check, a wrong key, an uninitialised instance).
    #[error(transparent)]
    Records(RecordsError),
}

impl IdentityError {
    /// A refusal of the policy's: a request that cannot be made (an
    /// invitation for a role linked to a record) is invalid, the rest forbidden.
    fn refused(d: AccountDenied) -> IdentityError {
        match d {
            d @ AccountDenied::LinkedRole(_) => IdentityError::Invalid(d.to_string()),
            d => IdentityError::Forbidden(d.to_string()),
        }
    }
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// Session and throttling settings. Defaults follow OWASP's Session Management
/// and Authentication cheat sheets: short idle timeouts, bounded lifetime,
/// lockout after a handful of failures.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A session (cookie or bearer) ends after this much inactivity.
    pub idle_timeout_ms: i64,
    /// A cookie session ends this long after login, active or not.
    pub absolute_lifetime_ms: i64,
    /// Lifetime of a bearer session token for API clients.
    pub bearer_lifetime_ms: i64,
    /// Failed logins per account within `window_ms` before a lockout.
    pub account_max_failures: i64,
    /// Failed logins per source address within `window_ms` before a lockout.
    pub source_max_failures: i64,
    pub window_ms: i64,
    pub lockout_ms: i64,
    /// Lifetime of an enrolment code.
    pub enrolment_code_ms: i64,
    /// Staff need a second factor (on unless a clinic turns it off, which
    /// `confidant doctor` reports).
    pub require_second_factor: bool,
    /// The clinic's public URL (`server.public_url`): passkeys are for this
    /// site. Without it (or without https, except on localhost) passkeys are off.
    pub passkey_site: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        const MIN: i64 = 60_000;
        Settings {
            idle_timeout_ms: 30 * MIN,
            absolute_lifetime_ms: 12 * 60 * MIN,
            bearer_lifetime_ms: 60 * MIN,
            account_max_failures: 5,
            source_max_failures: 50,
            window_ms: 15 * MIN,
            lockout_ms: 15 * MIN,
            enrolment_code_ms: 7 * 24 * 60 * MIN,
            require_second_factor: true,
            passkey_site: None,
        }
    }
}

/// How a session is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A browser cookie, with a CSRF token for state-changing requests.
    Cookie,
    /// A short-lived bearer token for API clients.
    Bearer,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Cookie => "cookie",
            SessionKind::Bearer => "bearer",
        }
    }

    /// The kind of a stored session (`sessions.kind`).
    fn of(session: &SessionRow) -> SessionKind {
        if session.kind == SessionKind::Bearer.as_str() { SessionKind::Bearer } else { SessionKind::Cookie }
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Login {
    pub session_id: String,
    pub user_id: String,
    /// How the session is carried: the caller hands out the token accordingly.
    pub kind: SessionKind,
    /// The session secret: the cookie value, or the bearer token. Shown once.
    pub token: String,
    /// For cookie sessions: send it back in `X-CSRF-Token` on every change.
    pub csrf_token: Option<String>,
    pub expires_at: i64,
    /// Staff without a second factor must enrol one before anything else.
    pub mfa_enrolment_required: bool,
}

/// An authenticated request's identity.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    /// The session, if the request came with one (not an API token).
    pub session: Option<SessionRow>,
}

/// A user as `user list` shows it.
#[derive(Debug, Clone)]
pub struct UserInfo {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub practitioner_id: Option<String>,
    pub patient_id: Option<String>,
    pub mfa_enrolled: bool,
    pub disabled: bool,
    pub locked: bool,
}

/// An API token as administrators see it (never the token itself).
#[derive(Debug, Clone)]
pub struct ApiTokenInfo {
    pub token: ApiTokenRow,
    /// What it is for (sealed at rest).
    pub label: String,
    /// Its user's username.
    pub username: Option<String>,
}

/// The second step of a sign-in.
enum SecondFactor<'a> {
    /// A TOTP or recovery code (`None`: none given; enough only for accounts without one).
    Code(Option<&'a str>),
    /// A passkey's answer to the ceremony `handle`.
    Passkey { handle: &'a str, answer: &'a Value },
}

/// The throttle counters of a sign-in: its account and its source address.
struct ThrottleKeys {
    account: Vec<u8>,
    source: Vec<u8>,
}

/// Who made a change to an account: the console or a signed-in administrator.
#[derive(Clone, Copy)]
struct Actor<'a> {
    id: &'a str,
    source: Option<&'a str>,
}

impl<'a> Actor<'a> {
    const CONSOLE: Actor<'static> = Actor { id: CONSOLE, source: None };

    fn of(p: &'a Principal) -> Actor<'a> {
        Actor { id: &p.user_id, source: p.source.as_deref() }
    }
}

/// A TOTP enrolment in progress.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// A finished TOTP enrolment.
#[derive(Debug, Clone)]
pub struct TotpConfirmed {
    /// Single-use recovery codes, shown once.
    pub recovery_codes: Vec<String>,
    /// The session that replaces the enrolment session it was confirmed in
    /// (that one is revoked): a new token, so that a token seen before the
    /// second factor never carries its privileges (OWASP Session Management
    /// Cheat Sheet: renew the session ID after any privilege level change).
    pub session: Option<Login>,
}

/// The actor of changes made from the command line (by whoever can run it on the server).
pub use confidant_audit::CONSOLE;
const SESSION_PREFIX: &str = "cns_";
const API_TOKEN_PREFIX: &str = "cnf_";
const RECOVERY_CODES: usize = 10;
/// The kinds under which a patient account's Patient id and a token's label
/// are sealed (bound to the user id and the token id).
const PATIENT_LINK: &str = "UserPatient";
const TOKEN_LABEL: &str = "TokenLabel";

fn random_token(prefix: &str) -> Result<String> {
    let mut b = [0u8; 32];
    confidant_vault::random_bytes(&mut b).map_err(IdentityError::Vault)?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(b)))
}

fn random_id() -> Result<String> {
    Ok(confidant_vault::random_id()?)
}

/// Usernames: 3–64 characters of a–z, 0–9, `.`, `_`, `-`, `@`; compared lower-cased.
pub fn normalise_username(u: &str) -> Result<String> {
    let u = u.trim().to_lowercase();
    let ok = (3..=64).contains(&u.len())
        && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(u)
    } else {
        Err(IdentityError::Invalid("a username is 3–64 characters of a–z, 0–9, '.', '_', '-' and '@'".into()))
    }
}

/// The identity service.
pub struct Identity {
    /// The store, clock, sealing and audit log below identity (`services.rs`).
    services: Services,
    settings: Settings,
    /// The passkey relying party, when passkeys are on.
    passkeys: Option<confidant_vault::passkey::RelyingParty>,
    /// Passkey ceremonies in progress, by handle (this node's memory: both
    /// steps of a ceremony must reach the same node).
    ceremonies: std::sync::Mutex<HashMap<String, Ceremony>>,
}

/// A passkey ceremony between its two requests.
enum Ceremony {
    Register { user_id: String, state: confidant_vault::passkey::Registration, expires: i64 },
    SignIn { state: confidant_vault::passkey::Authentication, expires: i64 },
}

impl Ceremony {
    fn expires(&self) -> i64 {
        match self {
            Ceremony::Register { expires, .. } | Ceremony::SignIn { expires, .. } => *expires,
        }
    }
}

/// How long a passkey ceremony may take, and how many may be open at once
/// (a bound on memory: when full, the oldest make way; a user has one
/// registration open at a time).
const CEREMONY_MS: i64 = 5 * 60_000;
const MAX_CEREMONIES: usize = 10_000;

/// A registered passkey, as its owner sees it.
#[derive(Debug, Clone)]
pub struct PasskeyInfo {
    pub id: String,
    pub label: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

impl Identity {
    /// Identity over `services` (made by [`Identity::new`]).
    fn with_services(services: Services, settings: Settings) -> Identity {
        let passkeys = settings.passkey_site.as_deref().and_then(|site| {
            confidant_vault::passkey::RelyingParty::new(site, "Confidant")
                .map_err(|e| tracing::warn!(error = %e, "passkeys are off"))
                .ok()
        });
        Identity { services, settings, passkeys, ceremonies: std::sync::Mutex::new(HashMap::new()) }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The `source` to put in `p` for a request from `address` ([`recorded_source`]).
    pub fn source_of(&self, p: &Principal, address: &str) -> String {
        self.recorded_source(Some(p.role), address)
    }

    /// Append a security event to the audit log and wait for its commit.
    /// `actor` is a user id, or `console` for the command line.
    async fn audit(
        &self,
        action: AuditAction,
        outcome: Outcome,
        actor: Option<&str>,
        target: Option<&str>,
        source: Option<&str>,
    ) -> Result<()> {
        let mut e = Entry::new(self.now(), action, outcome);
        // Who, with their role (security events are rare: one lookup is cheap).
        e.role = match actor {
            Some(CONSOLE) => Some(Role::Admin.as_str().to_owned()),
            Some(id) => self.store().user_by_id(id).await.ok().flatten().map(|u| u.role),
            None => None,
        };
        e.actor = actor.map(str::to_owned);
        e.target = target.map(str::to_owned);
        let role = e.role.as_deref().and_then(Role::parse);
        e.source = source.map(|s| self.recorded_source(role, s));
        self.append_audit(e).await
    }

    fn hash_token(token: &str) -> Vec<u8> {
        confidant_vault::sha256(token.as_bytes()).to_vec()
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(self.store().user_by_username_token(&self.blind("username", username)).await?)
    }

    /// A user's username (sealed at rest, bound to the user).
    async fn username_of(&self, u: &UserRow) -> Result<String> {
        let name = self.open_secret("Username", &u.id, &u.username_sealed).await?;
        Ok(String::from_utf8_lossy(&name).into_owned())
    }

    /// A patient account's Patient id (sealed at rest, bound to the user).
    async fn patient_of(&self, u: &UserRow) -> Result<Option<String>> {
        let Some(sealed) = &u.patient_sealed else { return Ok(None) };
        let id = self.open_secret(PATIENT_LINK, &u.id, sealed).await?;
        Ok(Some(String::from_utf8_lossy(&id).into_owned()))
    }

    /// A user by username or id.
    pub async fn find_user(&self, name_or_id: &str) -> Result<UserRow> {
        if let Ok(name) = normalise_username(name_or_id)
            && let Some(u) = self.user_by_name(&name).await?
        {
            return Ok(u);
        }
        self.store().user_by_id(name_or_id).await?.ok_or_else(|| IdentityError::NotFound("user".into()))
    }

    // ----- accounts -------------------------------------------------------------------

    /// Create an account. A clinician links to a Practitioner id, a patient to
    /// a Patient id. The password must pass the policy.
    pub async fn add_user(
        &self,
        username: &str,
        role: Role,
        password: &str,
        practitioner_id: Option<&str>,
        patient_id: Option<&str>,
    ) -> Result<String> {
        self.add_user_by(Some(CONSOLE), username, role, password, practitioner_id, patient_id).await
    }

    /// [`Identity::add_user`], recorded as done by `by` (`None`: the new user, enrolling themselves).
    async fn add_user_by(
        &self,
        by: Option<&str>,
        username: &str,
        role: Role,
        password: &str,
        practitioner_id: Option<&str>,
        patient_id: Option<&str>,
    ) -> Result<String> {
        let username = normalise_username(username)?;
        password::check_policy(password, &[&username, "confidant"])
            .map_err(|e| IdentityError::Invalid(e.to_string()))?;
        let (practitioner_id, patient_id) = match confidant_policy::linked_record(role) {
            Some(ResourceType::Practitioner) => {
                let p = practitioner_id.ok_or_else(|| {
                    IdentityError::Invalid("a clinician must be linked to a Practitioner (--practitioner ID)".into())
                })?;
                self.require_resource("Practitioner", p).await?;
                (Some(p.to_owned()), None)
            }
            Some(ResourceType::Patient) => {
                let p = patient_id.ok_or_else(|| {
                    IdentityError::Invalid("a patient account must be linked to a Patient (--patient ID)".into())
                })?;
                self.require_resource("Patient", p).await?;
                (None, Some(p.to_owned()))
            }
            _ if practitioner_id.is_some() || patient_id.is_some() => {
                return Err(IdentityError::Invalid(format!("the {role} role is not linked to a record")));
            }
            _ => (None, None),
        };
        let id = random_id()?;
        let token = self.blind("username", &username);
        if self.store().user_by_username_token(&token).await?.is_some() {
            return Err(IdentityError::Conflict("that username is taken".into()));
        }
        let hash = password::hash(password).map_err(IdentityError::Vault)?;
        let patient_sealed = match &patient_id {
            Some(p) => Some(self.seal_secret(PATIENT_LINK, &id, p.as_bytes()).await?),
            None => None,
        };
        let row = UserRow {
            id: id.clone(),
            username_token: token,
            username_sealed: self.seal_secret("Username", &id, username.as_bytes()).await?,
            role: role.as_str().into(),
            password_hash: Some(hash),
            totp_sealed: None,
            totp_last_step: None,
            mfa_enrolled_at: None,
            practitioner_id,
            patient_token: patient_id.as_deref().map(|p| self.patient_link(p)),
            patient_sealed,
            disabled_at: None,
            created_at: self.now(),
        };
        self.store().insert_user(&row).await.map_err(|e| match e {
            StoreError::Conflict => IdentityError::Conflict("that username is taken".into()),
            other => other.into(),
        })?;
        tracing::info!(user = %id, role = %role, "user added");
        self.audit(AuditAction::UserAdd, Outcome::Success, Some(by.unwrap_or(&id)), Some(&id), None).await?;
        Ok(id)
    }

    async fn require_resource(&self, rt: &str, id: &str) -> Result<()> {
        if !confidant_fhir_id_ok(id) || self.store().compartment_of(rt, id).await?.is_none() {
            return Err(IdentityError::Invalid(format!("no {rt} has id {id}")));
        }
        Ok(())
    }

    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        let now = self.now();
        let mut out = Vec::new();
        for u in self.store().users().await? {
            let username = self.username_of(&u).await?;
            let locked = self
                .store()
                .throttle(&self.blind("login-account", &username))
                .await?
                .and_then(|t| t.locked_until)
                .is_some_and(|l| l > now);
            let patient_id = self.patient_of(&u).await?;
            out.push(UserInfo {
                id: u.id,
                username,
                role: Role::parse(&u.role).unwrap_or(Role::Patient),
                practitioner_id: u.practitioner_id,
                patient_id,
                mfa_enrolled: u.mfa_enrolled_at.is_some(),
                disabled: u.disabled_at.is_some(),
                locked,
            });
        }
        Ok(out)
    }

    /// Disable an account: it can no longer log in, and its sessions and tokens end.
    pub async fn disable(&self, name_or_id: &str) -> Result<()> {
        let u = self.find_user(name_or_id).await?;
        self.apply(Actor::CONSOLE, &u, AccountChange::Disable).await.map(drop)
    }

    pub async fn enable(&self, name_or_id: &str) -> Result<()> {
        let u = self.find_user(name_or_id).await?;
        self.apply(Actor::CONSOLE, &u, AccountChange::Enable).await.map(drop)
    }

    /// Remove a user's second factor and recovery codes; they enrol again at
    /// next login with the one-time code returned here (for the administrator
    /// to hand over), which their password alone does not replace.
    pub async fn reset_mfa(&self, name_or_id: &str) -> Result<String> {
        let u = self.find_user(name_or_id).await?;
        self.apply(Actor::CONSOLE, &u, AccountChange::ResetSecondFactor)
            .await?
            .ok_or_else(|| IdentityError::Conflict("no one-time code was made".into()))
    }

    /// Lift a lockout (an admin's decision); false if there was none.
    pub async fn unlock(&self, username: &str) -> Result<bool> {
        let username = normalise_username(username)?;
        let lifted = self.store().clear_throttle(&self.blind("login-account", &username)).await?;
        let target = self.user_by_name(&username).await?.map(|u| u.id);
        self.audit(AuditAction::Unlock, Outcome::Success, Some(CONSOLE), target.as_deref(), None).await?;
        Ok(lifted)
    }

    /// End every session and API token of a user; returns how many.
    pub async fn revoke_all(&self, name_or_id: &str) -> Result<u64> {
        let u = self.find_user(name_or_id).await?;
        let n = self.store().revoke_user_credentials(&u.id, self.now()).await?;
        self.audit(AuditAction::SessionRevoke, Outcome::Success, Some(CONSOLE), Some(&u.id), None).await?;
        Ok(n)
    }

    /// An administrator's change to an account (the web UI), recorded as
    /// theirs. Nobody disables their own account or resets their own second
    /// factor: that takes a second administrator. A reset returns the one-time
    /// code the user needs to enrol again, shown to the administrator once.
    pub async fn change_account(&self, by: &Principal, user_id: &str, change: AccountChange) -> Result<Option<String>> {
        confidant_policy::may_change_account(by, user_id, change).map_err(IdentityError::refused)?;
        let u = self.store().user_by_id(user_id).await?.ok_or_else(|| IdentityError::NotFound("user".into()))?;
        self.apply(Actor::of(by), &u, change).await
    }

    /// Make `change` to `u`; a second-factor reset returns its one-time code.
    async fn apply(&self, by: Actor<'_>, u: &UserRow, change: AccountChange) -> Result<Option<String>> {
        let now = self.now();
        let mut one_time_code = None;
        let action = match change {
            AccountChange::Disable => {
                self.store().set_user_disabled(&u.id, Some(now)).await?;
                self.store().revoke_user_credentials(&u.id, now).await?;
                tracing::warn!(user = %u.id, "user disabled");
                AuditAction::UserDisable
            }
            AccountChange::Enable => {
                self.store().set_user_disabled(&u.id, None).await?;
                AuditAction::UserEnable
            }
            AccountChange::ResetSecondFactor => {
                self.store().set_totp(&u.id, None, None).await?;
                // The way back in is a single recovery code that only the
                // administrator sees: someone who has the password alone
                // cannot enrol a factor of their own (see `login_unaudited`).
                let code = totp::new_recovery_codes(1)
                    .map_err(IdentityError::Vault)?
                    .pop()
                    .ok_or_else(|| IdentityError::Conflict("no one-time code was made".into()))?;
                let hash = self.blind("recovery-code", &totp::normalise_recovery_code(&code));
                self.store().replace_recovery_codes(&u.id, &[hash]).await?;
                one_time_code = Some(code);
                self.store().revoke_user_credentials(&u.id, now).await?;
                tracing::warn!(user = %u.id, "second factor reset");
                AuditAction::MfaReset
            }
            AccountChange::Unlock => {
                let username = self.username_of(u).await?;
                self.store().clear_throttle(&self.blind("login-account", &username)).await?;
                AuditAction::Unlock
            }
            AccountChange::EndSessions => {
                self.store().revoke_user_credentials(&u.id, now).await?;
                AuditAction::SessionRevoke
            }
        };
        self.audit(action, Outcome::Success, Some(by.id), Some(&u.id), by.source).await?;
        Ok(one_time_code)
    }

    /// Account management is for administrators, signed in (never an API token).
    fn require_admin(by: &Principal) -> Result<()> {
        confidant_policy::may_administer_accounts(by).map_err(IdentityError::refused)
    }

    /// An administrator makes a one-time enrolment code for someone to create
    /// their own account of `role` (roles not linked to a record: admin,
    /// auditor, reception). Recorded as theirs; the code is shown once.
    pub async fn invite(&self, by: &Principal, role: Role) -> Result<String> {
        confidant_policy::may_invite(by, role).map_err(IdentityError::refused)?;
        let code = self.create_enrolment_code(role).await?;
        let target = format!("role/{role}");
        self.audit(AuditAction::Invite, Outcome::Success, Some(&by.user_id), Some(&target), by.source.as_deref())
            .await?;
        Ok(code)
    }

    /// Every API token, with its label and its user's name (administrators).
    pub async fn api_tokens(&self, by: &Principal) -> Result<Vec<ApiTokenInfo>> {
        Self::require_admin(by)?;
        self.list_api_tokens().await
    }

    /// Every API token, with its label and its user's name (the console).
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>> {
        let names: std::collections::HashMap<String, String> =
            self.list_users().await?.into_iter().map(|u| (u.id, u.username)).collect();
        let mut out = Vec::new();
        for token in self.store().api_tokens().await? {
            let label = self.open_secret(TOKEN_LABEL, &token.id, &token.label_sealed).await?;
            let label = String::from_utf8_lossy(&label).into_owned();
            let username = token.user_id.as_ref().and_then(|u| names.get(u).cloned());
            out.push(ApiTokenInfo { token, label, username });
        }
        Ok(out)
    }

    /// An administrator revokes an API token; false if it was not active.
    pub async fn revoke_api_token(&self, by: &Principal, token_id: &str) -> Result<bool> {
        Self::require_admin(by)?;
        let revoked = self.store().revoke_api_token(token_id, self.now()).await?;
        if revoked {
            self.audit(
                AuditAction::TokenRevoke,
                Outcome::Success,
                Some(&by.user_id),
                Some(token_id),
                by.source.as_deref(),
            )
            .await?;
        }
        Ok(revoked)
    }

    /// [`Identity::create_api_token`] by an administrator, recorded as theirs.
    pub async fn create_api_token_by(
        &self,
        by: &Principal,
        user_id: &str,
        label: &str,
        scopes: &str,
        lifetime_ms: i64,
    ) -> Result<(String, String)> {
        Self::require_admin(by)?;
        let user = self.store().user_by_id(user_id).await?.ok_or_else(|| IdentityError::NotFound("user".into()))?;
        self.create_token_as(TokenIssuer::Account(by), &user, label, scopes, lifetime_ms).await
    }

    /// A one-time code with which someone creates their own account of `role`
    /// (`init` prints one for the first admin).
    pub async fn create_enrolment_code(&self, role: Role) -> Result<String> {
        let code = random_token("enrol_")?;
        let expires = self.now() + self.settings.enrolment_code_ms;
        self.store().insert_enrolment_code(&Self::hash_token(&code), role.as_str(), expires).await?;
        Ok(code)
    }

    /// Create an account with an enrolment code (admins and other unlinked roles only).
    /// The username and password are checked before the code is used up.
    pub async fn enrol(&self, code: &str, username: &str, password: &str) -> Result<String> {
        let name = normalise_username(username)?;
        password::check_policy(password, &[&name, "confidant"]).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        // The code first: without a valid one nobody learns whether a username is taken.
        if !self.store().enrolment_code_valid(&Self::hash_token(code.trim()), self.now()).await? {
            return Err(IdentityError::Forbidden("the enrolment code is unknown, used or expired".into()));
        }
        if self.user_by_name(&name).await?.is_some() {
            return Err(IdentityError::Conflict("that username is taken".into()));
        }
        let role = self
            .store()
            .consume_enrolment_code(&Self::hash_token(code.trim()), self.now())
            .await?
            .and_then(|r| Role::parse(&r))
            .ok_or_else(|| IdentityError::Forbidden("the enrolment code is unknown, used or expired".into()))?;
        self.add_user_by(None, &name, role, password, None, None).await
    }

    // ----- login ----------------------------------------------------------------------

    async fn check_throttle(&self, key: &[u8], now: i64) -> Result<()> {
        if let Some(t) = self.store().throttle(key).await?
            && let Some(until) = t.locked_until.filter(|u| *u > now)
        {
            return Err(IdentityError::Throttled { retry_after_secs: (until - now + 999) / 1000 });
        }
        Ok(())
    }

    /// Count one attempt atomically (concurrent attempts cannot slip past the
    /// limit); Throttled if this attempt is over it.
    async fn count_attempt(&self, key: &[u8], max: i64, now: i64) -> Result<()> {
        let t =
            self.store().count_login_attempt(key, now, self.settings.window_ms, max, self.settings.lockout_ms).await?;
        if t.failures > max {
            let until = t.locked_until.unwrap_or(now + self.settings.lockout_ms);
            return Err(IdentityError::Throttled { retry_after_secs: (until - now + 999) / 1000 });
        }
        Ok(())
    }

    /// Log in with username, password and (for staff with MFA) a TOTP or recovery code.
    /// `source` is the client address, for per-source throttling.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        code: Option<&str>,
        source: &str,
        kind: SessionKind,
    ) -> Result<Login> {
        self.sign_in(username, password, SecondFactor::Code(code), source, kind).await
    }

    /// Log in with username, password and a passkey's answer to the ceremony
    /// `handle` (from [`Identity::passkey_challenge`]): one step, so a wrong
    /// password and a wrong passkey get the same answer, counted and audited
    /// like every sign-in.
    pub async fn login_with_passkey(
        &self,
        username: &str,
        password: &str,
        handle: &str,
        answer: &Value,
        source: &str,
        kind: SessionKind,
    ) -> Result<Login> {
        self.sign_in(username, password, SecondFactor::Passkey { handle, answer }, source, kind).await
    }

    async fn sign_in(
        &self,
        username: &str,
        password: &str,
        factor: SecondFactor<'_>,
        source: &str,
        kind: SessionKind,
    ) -> Result<Login> {
        let result = self.login_unaudited(username, password, factor, source, kind).await;
        match &result {
            Ok(l) => {
                let session = l.session_id.as_str();
                self.audit(AuditAction::Login, Outcome::Success, Some(&l.user_id), Some(session), Some(source)).await?;
            }
            // Throttled attempts are recorded (detection counts them); failing to record one changes nothing.
            Err(IdentityError::Throttled { .. }) => {
                self.audit(AuditAction::Lockout, Outcome::Denied, None, None, Some(source)).await.ok();
            }
            Err(_) => {}
        }
        result
    }

    async fn login_unaudited(
        &self,
        username: &str,
        password: &str,
        factor: SecondFactor<'_>,
        source: &str,
        kind: SessionKind,
    ) -> Result<Login> {
        let now = self.now();
        let (user, keys) = self.first_factor(username, password, source, now).await?;
        let role = Role::parse(&user.role).ok_or(IdentityError::BadCredentials)?;
        let mfa_enrolled = user.mfa_enrolled_at.is_some();
        let second_factor_ok = match factor {
            // Not enrolled: the password is enough the first time, but after an
            // administrator's reset the one-time code they were given is needed
            // (once used, it is spent: a new enrolment session needs a new reset).
            SecondFactor::Code(code) if !mfa_enrolled => {
                !self.store().has_recovery_codes(&user.id).await?
                    || match code {
                        Some(c) => self.use_recovery_code(&user, c, now).await?,
                        None => false,
                    }
            }
            SecondFactor::Code(Some(c)) => self.check_second_factor(&user, c, now).await?,
            SecondFactor::Code(None) => false,
            SecondFactor::Passkey { handle, answer } => self.check_passkey(&user, handle, answer, now).await?,
        };
        if !second_factor_ok {
            return Err(self.failed_login(&keys.source, Some(&user.id), source, now).await);
        }
        self.store().clear_throttle(&keys.account).await?;
        let mfa_enrolment_required =
            confidant_policy::must_enrol_second_factor(role, mfa_enrolled, self.settings.require_second_factor);
        let login = self.start_session(&user.id, kind, !mfa_enrolment_required, now).await?;
        tracing::info!(user = %user.id, kind = kind.as_str(), "login");
        Ok(Login { mfa_enrolment_required, ..login })
    }

    /// The password step of every sign-in: throttled per account and per
    /// source, every attempt on an account counted before the password is
    /// checked (a success of the whole sign-in clears the count).
    async fn first_factor(
        &self,
        username: &str,
        password: &str,
        source: &str,
        now: i64,
    ) -> Result<(UserRow, ThrottleKeys)> {
        // Throttle keys are blind tokens: a dump shows no usernames or addresses.
        let name = username.trim().to_lowercase();
        let keys =
            ThrottleKeys { account: self.blind("login-account", &name), source: self.blind("login-source", source) };
        self.check_throttle(&keys.source, now).await?;
        self.check_throttle(&keys.account, now).await?;
        self.count_attempt(&keys.account, self.settings.account_max_failures, now).await?;
        let user = match normalise_username(&name) {
            Ok(n) => self.user_by_name(&n).await?,
            Err(_) => None,
        };
        let verified = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
            Some(hash) => password::verify(password, hash),
            None => {
                // Same work as a real check, so timing does not tell who exists.
                password::verify_dummy(password);
                false
            }
        };
        match user {
            Some(u) if verified && u.disabled_at.is_none() => Ok((u, keys)),
            _ => Err(self.failed_login(&keys.source, user.as_ref().map(|u| u.id.as_str()), source, now).await),
        }
    }

    /// A failed login: counted against its source, recorded (a failure to record
    /// it changes nothing), and answered the same whatever failed.
    async fn failed_login(&self, source_key: &[u8], actor: Option<&str>, source: &str, now: i64) -> IdentityError {
        self.count_attempt(source_key, self.settings.source_max_failures, now).await.ok();
        self.audit(AuditAction::LoginFailed, Outcome::Denied, actor, None, Some(source)).await.ok();
        IdentityError::BadCredentials
    }

    async fn check_second_factor(&self, user: &UserRow, code: &str, now: i64) -> Result<bool> {
        let code = code.trim();
        if code.len() == totp::DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit()) {
            let Some(sealed) = &user.totp_sealed else { return Ok(false) };
            let secret = totp::TotpSecret::from_bytes(&self.open_secret("Totp", &user.id, sealed).await?);
            let last = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
            let unix = u64::try_from(now / 1000).unwrap_or(0);
            return Ok(match totp::verify(&secret, code, unix, last) {
                // The conditional update refuses a replay across server nodes too.
                Some(step) => self.store().advance_totp_step(&user.id, i64::try_from(step).unwrap_or(i64::MAX)).await?,
                None => false,
            });
        }
        self.use_recovery_code(user, code, now).await
    }

    /// Use up one of `user`'s recovery codes; false if `code` is none of them.
    async fn use_recovery_code(&self, user: &UserRow, code: &str, now: i64) -> Result<bool> {
        let normalised = totp::normalise_recovery_code(code.trim());
        Ok(self.store().use_recovery_code(&user.id, &self.blind("recovery-code", &normalised), now).await?)
    }

    async fn start_session(&self, user_id: &str, kind: SessionKind, mfa_done: bool, now: i64) -> Result<Login> {
        let token = random_token(SESSION_PREFIX)?;
        let csrf = match kind {
            SessionKind::Cookie => Some(random_token("")?),
            SessionKind::Bearer => None,
        };
        let lifetime = match kind {
            SessionKind::Cookie => self.settings.absolute_lifetime_ms,
            SessionKind::Bearer => self.settings.bearer_lifetime_ms,
        };
        let row = SessionRow {
            id: random_id()?[..16].to_owned(),
            user_id: user_id.to_owned(),
            kind: kind.as_str().into(),
            csrf_hash: csrf.as_deref().map(Self::hash_token),
            mfa_done,
            created_at: now,
            last_seen: now,
            expires_at: now + lifetime,
            revoked_at: None,
        };
        self.store().insert_session(&row, &Self::hash_token(&token)).await?;
        Ok(Login {
            user_id: row.user_id.clone(),
            kind,
            session_id: row.id,
            token,
            csrf_token: csrf,
            expires_at: row.expires_at,
            mfa_enrolment_required: false,
        })
    }

    async fn principal(&self, user: &UserRow, scopes: Option<Scopes>) -> Result<Principal> {
        Ok(Principal {
            user_id: user.id.clone(),
            role: Role::parse(&user.role).ok_or(IdentityError::Unauthenticated)?,
            practitioner_id: user.practitioner_id.clone(),
            patient_id: self.patient_of(user).await?,
            scopes,
            source: None,
            credential: None,
        })
    }

    /// Who a bearer token or session cookie belongs to. API tokens (`cnf_`)
    /// and session tokens (`cns_`) are both accepted.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated> {
        let now = self.now();
        let hash = Self::hash_token(token);
        if token.starts_with(API_TOKEN_PREFIX) {
            let (t, user) = self.store().api_token_by_hash(&hash).await?.ok_or(IdentityError::Unauthenticated)?;
            if t.expires_at.is_some_and(|e| e <= now) {
                return Err(IdentityError::Unauthenticated);
            }
            if user.disabled_at.is_some() {
                return Err(IdentityError::Unauthenticated);
            }
            let scopes =
                Scopes::parse(t.scopes.as_deref().unwrap_or("")).map_err(|_| IdentityError::Unauthenticated)?;
            let mut principal = self.principal(&user, Some(scopes)).await?;
            principal.credential = Some(format!("token/{}", t.id));
            return Ok(Authenticated { principal, session: None });
        }
        if !token.starts_with(SESSION_PREFIX) {
            return Err(IdentityError::Unauthenticated);
        }
        let s = self.store().session_by_token_hash(&hash).await?.ok_or(IdentityError::Unauthenticated)?;
        // Every kind of session ends when idle: a bearer token left in a
        // script or a shell history dies as a forgotten browser tab does.
        let idle_expired = now - s.last_seen > self.settings.idle_timeout_ms;
        if s.revoked_at.is_some() || s.expires_at <= now || idle_expired {
            return Err(IdentityError::Unauthenticated);
        }
        let user = self.store().user_by_id(&s.user_id).await?.ok_or(IdentityError::Unauthenticated)?;
        if user.disabled_at.is_some() {
            return Err(IdentityError::Unauthenticated);
        }
        // Activity extends an idle timeout; recorded at most once a minute.
        if now - s.last_seen > 60_000 {
            self.store().touch_session(&s.id, now).await?;
        }
        let mut principal = self.principal(&user, None).await?;
        principal.credential = Some(format!("session/{}", s.id));
        Ok(Authenticated { principal, session: Some(s) })
    }

    /// Is `csrf` the CSRF token of `session`? Constant-time.
    pub fn csrf_matches(session: &SessionRow, csrf: &str) -> bool {
        session.csrf_hash.as_deref().is_some_and(|h| confidant_vault::secrets_equal(h, &Self::hash_token(csrf)))
    }

    pub async fn logout(&self, session: &SessionRow) -> Result<()> {
        self.store().revoke_session(&session.id, None, self.now()).await?;
        self.audit(AuditAction::Logout, Outcome::Success, Some(&session.user_id), Some(&session.id), None).await
    }

    /// A user's live sessions.
    pub async fn sessions(&self, user_id: &str) -> Result<Vec<SessionRow>> {
        Ok(self.store().live_sessions(user_id, self.now()).await?)
    }

    /// Revoke a session: one's own, or anyone's for an admin.
    pub async fn revoke_session(&self, by: &Principal, session_id: &str) -> Result<()> {
        let owner = match confidant_policy::revocable_sessions(by) {
            RevocableSessions::Anyone => None,
            RevocableSessions::OwnedBy(user_id) => Some(user_id),
        };
        if self.store().revoke_session(session_id, owner, self.now()).await? {
            let actor = Some(by.user_id.as_str());
            self.audit(AuditAction::SessionRevoke, Outcome::Success, actor, Some(session_id), by.source.as_deref())
                .await
        } else {
            Err(IdentityError::NotFound("session".into()))
        }
    }

    // ----- second factor --------------------------------------------------------------

    /// Start TOTP enrolment: a new secret, stored sealed, not yet active.
    pub async fn totp_begin(&self, user_id: &str) -> Result<TotpEnrolment> {
        let user = self.store().user_by_id(user_id).await?.ok_or(IdentityError::Unauthenticated)?;
        if user.mfa_enrolled_at.is_some() {
            return Err(IdentityError::Conflict(
                "a second factor is already enrolled; an administrator can reset it".into(),
            ));
        }
        let secret = totp::TotpSecret::generate().map_err(IdentityError::Vault)?;
        let sealed = self.seal_secret("Totp", &user.id, secret.as_bytes()).await?;
        self.store().set_totp(&user.id, Some(&sealed), None).await?;
        let uri = totp::otpauth_uri(&secret, "Confidant", &self.username_of(&user).await?);
        Ok(TotpEnrolment { secret_base32: secret.to_base32(), qr_svg: totp::qr_svg(&uri), otpauth_uri: uri })
    }

    /// Finish TOTP enrolment with a first code; returns single-use recovery
    /// codes (shown once, stored as keyed hashes) and, when `session` is given,
    /// the session that replaces it (with a new token; `session` is revoked).
    pub async fn totp_confirm(&self, user_id: &str, session: Option<&SessionRow>, code: &str) -> Result<TotpConfirmed> {
        let user = self.store().user_by_id(user_id).await?.ok_or(IdentityError::Unauthenticated)?;
        let (Some(sealed), None) = (&user.totp_sealed, user.mfa_enrolled_at) else {
            return Err(IdentityError::Conflict("no TOTP enrolment is in progress".into()));
        };
        let now = self.now();
        let secret = totp::TotpSecret::from_bytes(&self.open_secret("Totp", &user.id, sealed).await?);
        let step = totp::verify(&secret, code, u64::try_from(now / 1000).unwrap_or(0), None).ok_or_else(|| {
            IdentityError::Invalid("that code is not valid; check the device's clock and try the next code".into())
        })?;
        let codes = totp::new_recovery_codes(RECOVERY_CODES).map_err(IdentityError::Vault)?;
        let hashes: Vec<Vec<u8>> =
            codes.iter().map(|c| self.blind("recovery-code", &totp::normalise_recovery_code(c))).collect();
        self.store().replace_recovery_codes(&user.id, &hashes).await?;
        self.store().set_totp(&user.id, Some(sealed), Some(now)).await?;
        self.store().advance_totp_step(&user.id, i64::try_from(step).unwrap_or(i64::MAX)).await?;
        let session = match session.filter(|s| s.user_id == user.id) {
            Some(old) => {
                let new = self.start_session(&user.id, SessionKind::of(old), true, now).await?;
                self.store().revoke_session(&old.id, None, now).await?;
                tracing::info!(user = %user.id, old = %old.id, new = %new.session_id, "session renewed after enrolment");
                Some(new)
            }
            None => None,
        };
        tracing::info!(user = %user.id, "second factor enrolled");
        self.audit(AuditAction::MfaEnrol, Outcome::Success, Some(&user.id), Some(&user.id), None).await?;
        Ok(TotpConfirmed { recovery_codes: codes, session })
    }

    // ----- API tokens -----------------------------------------------------------------

    /// A scoped, expiring API token for a user; returns (id, token), the token shown once.
    pub async fn create_api_token(
        &self,
        name_or_id: &str,
        label: &str,
        scopes: &str,
        lifetime_ms: i64,
    ) -> Result<(String, String)> {
        let user = self.find_user(name_or_id).await?;
        self.create_token_as(TokenIssuer::Console, &user, label, scopes, lifetime_ms).await
    }

    /// Make a token; what `issuer` may give to whom is the policy's
    /// ([`confidant_policy::may_issue_token`]).
    async fn create_token_as(
        &self,
        issuer: TokenIssuer<'_>,
        user: &UserRow,
        label: &str,
        scopes: &str,
        lifetime_ms: i64,
    ) -> Result<(String, String)> {
        if user.disabled_at.is_some() {
            return Err(IdentityError::Invalid("the user is disabled".into()));
        }
        let scopes = Scopes::parse(scopes).map_err(IdentityError::Invalid)?;
        let role =
            Role::parse(&user.role).ok_or_else(|| IdentityError::Invalid("the user has no known role".into()))?;
        confidant_policy::may_issue_token(issuer, &user.id, role, &scopes)
            .map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        let by = match issuer {
            TokenIssuer::Console => Actor::CONSOLE,
            TokenIssuer::Account(p) => Actor::of(p),
        };
        if label.len() > 200 || label.chars().any(char::is_control) {
            return Err(IdentityError::Invalid("the label must be at most 200 printable characters".into()));
        }
        if lifetime_ms <= 0 {
            return Err(IdentityError::Invalid("a token must expire: give a positive lifetime".into()));
        }
        let token = random_token(API_TOKEN_PREFIX)?;
        let now = self.now();
        let id = random_id()?[..12].to_owned();
        let row = ApiTokenRow {
            label_sealed: self.seal_secret(TOKEN_LABEL, &id, label.as_bytes()).await?,
            id,
            user_id: Some(user.id.clone()),
            scopes: Some(scopes.to_string()),
            created_at: now,
            expires_at: Some(now + lifetime_ms),
            revoked_at: None,
        };
        self.store().insert_api_token(&row, &Self::hash_token(&token)).await?;
        tracing::info!(user = %user.id, token = %row.id, "API token created");
        self.audit(AuditAction::TokenCreate, Outcome::Success, Some(by.id), Some(&row.id), by.source).await?;
        Ok((row.id, token))
    }
}

fn confidant_fhir_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

// ----- passkeys ---------------------------------------------------------------------------

impl Identity {
    pub fn passkeys_enabled(&self) -> bool {
        self.passkeys.is_some()
    }

    fn relying_party(&self) -> Result<&confidant_vault::passkey::RelyingParty> {
        self.passkeys.as_ref().ok_or_else(|| {
            IdentityError::Invalid("passkeys are off: set server.public_url to the clinic's https address".into())
        })
    }

    fn open_ceremony(&self, c: Ceremony) -> Result<String> {
        let handle = random_id()?;
        let now = self.now();
        let mut open = self.ceremonies.lock().map_err(|_| IdentityError::Invalid("try again".into()))?;
        open.retain(|_, c| c.expires() > now);
        if let Ceremony::Register { user_id, .. } = &c {
            open.retain(|_, o| !matches!(o, Ceremony::Register { user_id: u, .. } if u == user_id));
        }
        while open.len() >= MAX_CEREMONIES {
            let Some(oldest) = open.iter().min_by_key(|(_, c)| c.expires()).map(|(h, _)| h.clone()) else { break };
            open.remove(&oldest);
        }
        open.insert(handle.clone(), c);
        Ok(handle)
    }

    /// Take a ceremony (once: a replayed answer finds nothing).
    fn take_ceremony(&self, handle: &str) -> Option<Ceremony> {
        let now = self.now();
        let mut open = self.ceremonies.lock().ok()?;
        open.remove(handle).filter(|c| c.expires() > now)
    }

    async fn stored_passkeys(
        &self,
        user_id: &str,
    ) -> Result<Vec<(confidant_store::PasskeyRow, confidant_vault::passkey::StoredPasskey)>> {
        let mut out = Vec::new();
        for row in self.store().passkeys(user_id).await? {
            let plain = self.open_secret("Passkey", user_id, &row.sealed).await?;
            let key = confidant_vault::passkey::StoredPasskey::from_json(&plain).map_err(IdentityError::Vault)?;
            out.push((row, key));
        }
        Ok(out)
    }

    /// A user's passkeys.
    pub async fn passkey_list(&self, user_id: &str) -> Result<Vec<PasskeyInfo>> {
        Ok(self
            .store()
            .passkeys(user_id)
            .await?
            .into_iter()
            .map(|r| PasskeyInfo { id: r.id, label: r.label, created_at: r.created_at, last_used_at: r.last_used_at })
            .collect())
    }

    /// A signed-in user (browser session, second factor done) begins adding a
    /// passkey: options for `navigator.credentials.create`, and the handle of
    /// the ceremony. Accounts add passkeys after enrolling the authenticator
    /// app, which stays their way back in.
    pub async fn passkey_register_begin(&self, auth: &Authenticated, code: &str) -> Result<(String, Value)> {
        let rp = self.relying_party()?;
        let session = auth
            .session
            .as_ref()
            .filter(|s| s.mfa_done)
            .ok_or_else(|| IdentityError::Forbidden("add a passkey from a signed-in browser session".into()))?;
        let user = self.store().user_by_id(&session.user_id).await?.ok_or(IdentityError::Unauthenticated)?;
        if user.mfa_enrolled_at.is_none() {
            return Err(IdentityError::Invalid(
                "set up the authenticator app first: it is your way back in if a passkey is lost".into(),
            ));
        }
        let username = self.username_of(&user).await?;
        // A fresh code from the authenticator app: a stolen session alone cannot
        // plant a lasting way in. Wrong codes count against the account like failed sign-ins.
        let now = self.now();
        let account_key = self.blind("login-account", &username);
        self.check_throttle(&account_key, now).await?;
        if !self.check_second_factor(&user, code, now).await? {
            self.count_attempt(&account_key, self.settings.account_max_failures, now).await?;
            let source = auth.principal.source.as_deref();
            self.audit(AuditAction::LoginFailed, Outcome::Denied, Some(&user.id), Some("passkey-add"), source)
                .await
                .ok();
            return Err(IdentityError::Forbidden("wrong authenticator code: no passkey was added".into()));
        }
        let existing: Vec<_> = self.stored_passkeys(&user.id).await?.into_iter().map(|(_, k)| k).collect();
        let (options, state) = rp.start_registration(&user.id, &username, &existing).map_err(IdentityError::Vault)?;
        let expires = self.now() + CEREMONY_MS;
        let handle = self.open_ceremony(Ceremony::Register { user_id: user.id, state, expires })?;
        Ok((handle, options))
    }

    /// Finish adding a passkey with the browser's answer; returns its id.
    pub async fn passkey_register_finish(
        &self,
        auth: &Authenticated,
        handle: &str,
        answer: &Value,
        label: &str,
    ) -> Result<String> {
        let rp = self.relying_party()?;
        let label = label.trim();
        if label.is_empty() || label.len() > 100 || label.chars().any(char::is_control) {
            return Err(IdentityError::Invalid("name the passkey (at most 100 printable characters)".into()));
        }
        let Some(Ceremony::Register { user_id, state, .. }) = self.take_ceremony(handle) else {
            return Err(IdentityError::Invalid("this passkey registration has expired; start again".into()));
        };
        if auth.session.as_ref().map(|s| s.user_id.as_str()) != Some(user_id.as_str()) {
            return Err(IdentityError::Forbidden("this registration belongs to another session".into()));
        }
        let key = rp
            .finish_registration(answer, &state)
            .map_err(|e| IdentityError::Invalid(format!("the passkey was not accepted: {e}")))?;
        let id = random_id()?[..16].to_owned();
        let row = confidant_store::PasskeyRow {
            id: id.clone(),
            user_id: user_id.clone(),
            label: label.to_owned(),
            sealed: self.seal_secret("Passkey", &user_id, &key.to_json()).await?,
            created_at: self.now(),
            last_used_at: None,
        };
        self.store().insert_passkey(&row).await?;
        tracing::info!(user = %user_id, passkey = %id, "passkey added");
        let target = format!("passkey/{id}");
        let source = auth.principal.source.as_deref();
        self.audit(AuditAction::MfaEnrol, Outcome::Success, Some(&user_id), Some(&target), source).await?;
        Ok(id)
    }

    /// Remove one of the signed-in user's passkeys.
    pub async fn passkey_remove(&self, auth: &Authenticated, id: &str) -> Result<()> {
        let user_id = &auth.principal.user_id;
        if auth.session.is_none() || !self.store().delete_passkey(user_id, id).await? {
            return Err(IdentityError::NotFound("passkey".into()));
        }
        let target = format!("passkey/{id}");
        let source = auth.principal.source.as_deref();
        self.audit(AuditAction::MfaReset, Outcome::Success, Some(user_id), Some(&target), source).await
    }

    /// A passkey sign-in begins: options for `navigator.credentials.get` that
    /// name no account (so this step tells nobody anything), and the handle of
    /// the ceremony; [`Identity::login_with_passkey`] finishes it.
    pub fn passkey_challenge(&self) -> Result<(String, Value)> {
        let rp = self.relying_party()?;
        let (options, state) = rp.start_authentication().map_err(IdentityError::Vault)?;
        let handle = self.open_ceremony(Ceremony::SignIn { state, expires: self.now() + CEREMONY_MS })?;
        Ok((handle, options))
    }

    /// The passkey step of a sign-in (the password was right): the ceremony
    /// is used up whatever happens; false for a wrong, replayed or late answer.
    async fn check_passkey(&self, user: &UserRow, handle: &str, answer: &Value, now: i64) -> Result<bool> {
        let rp = self.relying_party()?;
        let Some(Ceremony::SignIn { state, .. }) = self.take_ceremony(handle) else { return Ok(false) };
        let stored = self.stored_passkeys(&user.id).await?;
        let mut keys: Vec<_> = stored.iter().map(|(_, k)| k.clone()).collect();
        match rp.finish_authentication(answer, state, &user.id, &mut keys) {
            Ok(i) => {
                let sealed = self.seal_secret("Passkey", &user.id, &keys[i].to_json()).await?;
                self.store().passkey_used(&stored[i].0.id, &sealed, now).await?;
                Ok(true)
            }
            Err(e) => {
                tracing::info!(user = %user.id, error = %e, "passkey answer refused");
                Ok(false)
            }
        }
    }
}
