//! Second factors: the TOTP authenticator app and its enrolment, single-use
//! recovery codes, and passkeys (`passkeys`).

mod passkeys;

pub(crate) use passkeys::Ceremony;
pub use passkeys::PasskeyInfo;

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_store::{SessionRow, UserRow};
use confidant_vault::totp;

use crate::sessions::{Login, SessionKind};
use crate::{Identity, IdentityError, Result};

/// How many recovery codes an enrolment gives.
const RECOVERY_CODES: usize = 10;

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

impl Identity {
    pub(crate) async fn check_second_factor(&self, user: &UserRow, code: &str, now: i64) -> Result<bool> {
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
    pub(crate) async fn use_recovery_code(&self, user: &UserRow, code: &str, now: i64) -> Result<bool> {
        let normalised = totp::normalise_recovery_code(code.trim());
        Ok(self.store().use_recovery_code(&user.id, &self.blind("recovery-code", &normalised), now).await?)
    }

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
        // Not yet a second factor (nothing to audit): the confirmation is the enrolment.
        let mut changes = self.store().audited().await?;
        changes.set_totp(&user.id, Some(&sealed), None).await?;
        changes.commit(&[]).await?;
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
        self.store().advance_totp_step(&user.id, i64::try_from(step).unwrap_or(i64::MAX)).await?;
        // The factor, its recovery codes, the renewed session and the entry commit together.
        let e = self.event(AuditAction::MfaEnrol, Outcome::Success, Some(&user.id), Some(&user.id), None).await;
        let mut changes = self.store().audited().await?;
        changes.replace_recovery_codes(&user.id, &hashes).await?;
        changes.set_totp(&user.id, Some(sealed), Some(now)).await?;
        let session = match session.filter(|s| s.user_id == user.id) {
            Some(old) => {
                let new = self.start_session(&mut changes, &user.id, SessionKind::of(old), true, now).await?;
                changes.revoke_session(&old.id, None, now).await?;
                Some((old.id.clone(), new))
            }
            None => None,
        };
        self.commit(changes, e).await?;
        tracing::info!(user = %user.id, "second factor enrolled");
        let session = session.map(|(old, new)| {
            tracing::info!(user = %user.id, old = %old, new = %new.session_id, "session renewed after enrolment");
            new
        });
        Ok(TotpConfirmed { recovery_codes: codes, session })
    }
}
