//! Sessions: sign-in (password, then a code or a passkey), the session it
//! starts (cookie or bearer), authentication of every request by session or
//! API token, idle and absolute timeouts, logout and revocation.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_policy::{Principal, RevocableSessions, Role, Scopes};
use confidant_store::{Audited, SessionRow, UserRow};
use confidant_vault::password;
use serde_json::Value;

use crate::throttling::ThrottleKeys;
use crate::tokens::API_TOKEN_PREFIX;
use crate::{Identity, IdentityError, Result, normalise_username, random_id, random_token};

/// How a session token begins.
const SESSION_PREFIX: &str = "cns_";

/// How a session is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A browser cookie, with a CSRF token for state-changing requests.
    Cookie,
    /// A short-lived bearer token for API clients.
    Bearer,
}

impl SessionKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionKind::Cookie => "cookie",
            SessionKind::Bearer => "bearer",
        }
    }

    /// The kind of a stored session (`sessions.kind`).
    pub(crate) fn of(session: &SessionRow) -> SessionKind {
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

/// The second step of a sign-in.
pub(crate) enum SecondFactor<'a> {
    /// A TOTP or recovery code (`None`: none given; enough only for accounts without one).
    Code(Option<&'a str>),
    /// A passkey's answer to the ceremony `handle`.
    Passkey { handle: &'a str, answer: &'a Value },
}

impl Identity {
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

    pub(crate) async fn sign_in(
        &self,
        username: &str,
        password: &str,
        factor: SecondFactor<'_>,
        source: &str,
        kind: SessionKind,
    ) -> Result<Login> {
        let result = self.check_and_start(username, password, factor, source, kind).await;
        // Throttled attempts are recorded (detection counts them); failing to record one changes nothing.
        if let Err(IdentityError::Throttled { .. }) = &result {
            self.audit(AuditAction::Lockout, Outcome::Denied, None, None, Some(source)).await.ok();
        }
        result
    }

    /// Check both factors and start the session: the session, the cleared
    /// failure count and the `login` entry commit together.
    async fn check_and_start(
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
        let mfa_enrolment_required =
            confidant_policy::must_enrol_second_factor(role, mfa_enrolled, self.settings.require_second_factor);
        let mut e = self.event(AuditAction::Login, Outcome::Success, Some(&user.id), None, Some(source)).await;
        let mut changes = self.store().audited().await?;
        changes.clear_throttle(&keys.account).await?;
        let login = self.start_session(&mut changes, &user.id, kind, !mfa_enrolment_required, now).await?;
        e.target = Some(login.session_id.clone());
        self.commit(changes, e).await?;
        tracing::info!(user = %user.id, kind = kind.as_str(), "login");
        Ok(Login { mfa_enrolment_required, ..login })
    }

    /// The password step of every sign-in: throttled per account and per
    /// source, every attempt on an account counted before the password is
    /// checked (a success of the whole sign-in clears the count).
    pub(crate) async fn first_factor(
        &self,
        username: &str,
        password: &str,
        source: &str,
        now: i64,
    ) -> Result<(UserRow, ThrottleKeys)> {
        // Throttle keys are blind tokens: a dump shows no usernames or addresses.
        let name = username.trim().to_lowercase();
        let keys = self.throttle_keys(&name, source);
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

    /// A new session, inserted with `changes` (the caller commits them with
    /// the entry that says why).
    pub(crate) async fn start_session(
        &self,
        changes: &mut Audited<'_>,
        user_id: &str,
        kind: SessionKind,
        mfa_done: bool,
        now: i64,
    ) -> Result<Login> {
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
        changes.insert_session(&row, &Self::hash_token(&token)).await?;
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

    /// The principal of `user`: their role and links, and where they stand
    /// with their security training (policy refuses patient data to training
    /// overdue under `enforce = "block"`, for sessions and tokens alike).
    pub(crate) async fn principal(&self, user: &UserRow, scopes: Option<Scopes>) -> Result<Principal> {
        let role = Role::parse(&user.role).ok_or(IdentityError::Unauthenticated)?;
        Ok(Principal {
            user_id: user.id.clone(),
            role,
            practitioner_id: user.practitioner_id.clone(),
            patient_id: self.patient_of(user).await?,
            scopes,
            source: None,
            credential: None,
            training: self.training_standing(user, role).await?,
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
        let e =
            self.event(AuditAction::Logout, Outcome::Success, Some(&session.user_id), Some(&session.id), None).await;
        let mut changes = self.store().audited().await?;
        changes.revoke_session(&session.id, None, self.now()).await?;
        self.commit(changes, e).await
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
        let actor = Some(by.user_id.as_str());
        let e = self
            .event(AuditAction::SessionRevoke, Outcome::Success, actor, Some(session_id), by.source.as_deref())
            .await;
        let mut changes = self.store().audited().await?;
        if changes.revoke_session(session_id, owner, self.now()).await? {
            self.commit(changes, e).await
        } else {
            Err(IdentityError::NotFound("session".into()))
        }
    }
}
