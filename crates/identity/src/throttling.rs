//! Throttling: failed sign-ins counted per account and per source address
//! (as blind tokens), and the lockout that follows too many.

use confidant_audit::{Action as AuditAction, Outcome};

use crate::{Identity, IdentityError, Result};

/// The throttle counters of a sign-in: its account and its source address.
pub(crate) struct ThrottleKeys {
    pub(crate) account: Vec<u8>,
    pub(crate) source: Vec<u8>,
}

impl Identity {
    /// The throttle counter of the account `username` (a blind token: a dump
    /// shows no usernames).
    pub(crate) fn account_throttle_key(&self, username: &str) -> Vec<u8> {
        self.blind("login-account", username)
    }

    /// The throttle counters of a sign-in as `username` from `source` (blind
    /// tokens: a dump shows no usernames or addresses).
    pub(crate) fn throttle_keys(&self, username: &str, source: &str) -> ThrottleKeys {
        ThrottleKeys { account: self.account_throttle_key(username), source: self.blind("login-source", source) }
    }

    /// Is the account `username` locked out at `now`?
    pub(crate) async fn locked_out(&self, username: &str, now: i64) -> Result<bool> {
        let throttle = self.store().throttle(&self.account_throttle_key(username)).await?;
        Ok(throttle.and_then(|t| t.locked_until).is_some_and(|l| l > now))
    }

    pub(crate) async fn check_throttle(&self, key: &[u8], now: i64) -> Result<()> {
        if let Some(t) = self.store().throttle(key).await?
            && let Some(until) = t.locked_until.filter(|u| *u > now)
        {
            return Err(IdentityError::Throttled { retry_after_secs: (until - now + 999) / 1000 });
        }
        Ok(())
    }

    /// Count one attempt atomically (concurrent attempts cannot slip past the
    /// limit); Throttled if this attempt is over it.
    pub(crate) async fn count_attempt(&self, key: &[u8], max: i64, now: i64) -> Result<()> {
        let t =
            self.store().count_login_attempt(key, now, self.settings.window_ms, max, self.settings.lockout_ms).await?;
        if t.failures > max {
            let until = t.locked_until.unwrap_or(now + self.settings.lockout_ms);
            return Err(IdentityError::Throttled { retry_after_secs: (until - now + 999) / 1000 });
        }
        Ok(())
    }

    /// A failed login: counted against its source, recorded (a failure to record
    /// it changes nothing), and answered the same whatever failed.
    pub(crate) async fn failed_login(
        &self,
        source_key: &[u8],
        actor: Option<&str>,
        source: &str,
        now: i64,
    ) -> IdentityError {
        self.count_attempt(source_key, self.settings.source_max_failures, now).await.ok();
        self.audit(AuditAction::LoginFailed, Outcome::Denied, actor, None, Some(source)).await.ok();
        IdentityError::BadCredentials
    }
}
