//! Identity: who is calling. Users and roles, passwords (argon2id), the TOTP
//! second factor and recovery codes, sessions (cookie and bearer), API
//! tokens, login throttling and lockout (DESIGN.md §6).
//!
//! What is decided here is *who*; what they may do is `confidant-policy`'s.
//! Every secret is stored hashed or sealed (see `confidant-store::identity`).
//!
//! One module per use case: `accounts` (users, invitations, enrolment, an
//! administrator's changes), `sessions` (sign-in, authentication, logout),
//! `tokens` (API tokens), `throttling` (failed sign-ins and lockout),
//! `second_factor` (TOTP, recovery codes, passkeys). What identity uses from
//! below it (store, clock, sealing, audit log) is reached through `services`
//! alone.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confidant_audit::{Action as AuditAction, Entry, Outcome};
pub use confidant_policy::AccountChange;
use confidant_policy::{AccountDenied, Principal, Role};
use confidant_store::StoreError;
use confidant_vault::VaultError;

mod accounts;
// phishing drills
pub mod phishing;
mod second_factor;
mod services;
mod sessions;
// SMART App Launch: apps, authorization codes with PKCE, app tokens.
pub mod smart;
mod throttling;
mod tokens;
// Staff security training: standing, taking a module, assigning, importing, coverage.
mod training;

pub use accounts::UserInfo;
// phishing drills
pub use phishing::{PhishingSettings, Reported};
pub use second_factor::{PasskeyInfo, TotpConfirmed, TotpEnrolment};
pub use services::{patient_link_token, recorded_source, seal_plaintext_links};
pub use sessions::{Authenticated, Login, SessionKind};
pub use tokens::ApiTokenInfo;
pub use training::{Coverage, ImportReport, MyModule, PersonCoverage, TrainingSettings};

use confidant_keyring::KeyringError;
use second_factor::Ceremony;
pub use services::Services;

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
    /// A failure of the keys that is none of the above (a sealed secret
    /// that fails its integrity check, a wrong key, an uninitialised instance).
    #[error(transparent)]
    Keys(KeyringError),
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
    /// `[training]`: staff security training's enforcement and rules.
    pub training: training::TrainingSettings,
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
            training: Default::default(),
        }
    }
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

/// The actor of changes made from the command line (by whoever can run it on the server).
pub use confidant_audit::CONSOLE;
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
    /// `[phishing]`: whether drill results name people, the default mail language.
    phishing: phishing::PhishingSettings,
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
        Identity {
            services,
            settings,
            passkeys,
            ceremonies: std::sync::Mutex::new(HashMap::new()),
            phishing: Default::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The `source` to put in `p` for a request from `address` ([`recorded_source`]).
    pub fn source_of(&self, p: &Principal, address: &str) -> String {
        self.recorded_source(Some(p.role), address)
    }

    /// The audit entry of a security event: what, by whom (with their role),
    /// on what, from where. `actor` is a user id, or `console` for the
    /// command line.
    async fn event(
        &self,
        action: AuditAction,
        outcome: Outcome,
        actor: Option<&str>,
        target: Option<&str>,
        source: Option<&str>,
    ) -> Entry {
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
        e
    }

    /// Append a security event that changes nothing (a failed sign-in, a
    /// lockout) to the audit log and wait for its commit.
    async fn audit(
        &self,
        action: AuditAction,
        outcome: Outcome,
        actor: Option<&str>,
        target: Option<&str>,
        source: Option<&str>,
    ) -> Result<()> {
        let e = self.event(action, outcome, actor, target, source).await;
        self.append_audit(e).await
    }

    fn hash_token(token: &str) -> Vec<u8> {
        confidant_vault::sha256(token.as_bytes()).to_vec()
    }
}
