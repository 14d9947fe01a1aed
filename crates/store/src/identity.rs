//! Users, sessions, API tokens, login throttling and enrolment codes.
//!
//! Nothing secret is stored in the clear: usernames as a blind token plus a
//! sealed copy, passwords as argon2id PHC strings, TOTP secrets sealed,
//! recovery codes, session tokens, API tokens and enrolment codes as hashes.
//!
//! Over 600 lines because it is the SQL of six small table families (users, sessions, API
//! tokens, throttles, enrolment codes, passkeys), statements and row mapping only.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Audited, Result, Store};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    /// Blind token of the normalised username (for lookup).
    pub username_token: Vec<u8>,
    /// The username, sealed (for display to admins).
    pub username_sealed: Vec<u8>,
    pub role: String,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    /// The TOTP secret, sealed.
    pub totp_sealed: Option<Vec<u8>>,
    /// The last TOTP time step accepted (no replay).
    pub totp_last_step: Option<i64>,
    pub mfa_enrolled_at: Option<i64>,
    pub practitioner_id: Option<String>,
    /// For patient accounts: their Patient id, sealed and bound to the user
    /// (a dump does not tell which patient an account, and its logins, belong to).
    pub patient_sealed: Option<Vec<u8>>,
    /// Blind token of that Patient id (to find the account when the patient is erased).
    pub patient_token: Option<Vec<u8>>,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
}

/// The plaintext `patient_id` column of migration 2 is no longer read or
/// written: migration 9 added the sealed link, and opening an instance moves
/// old rows over ([`Store::plaintext_patient_links`]).
const USER_COLUMNS: &str = "id, username_token, username_sealed, role, password_hash, totp_sealed, totp_last_step, \
     mfa_enrolled_at, practitioner_id, patient_sealed, patient_token, disabled_at, created_at";

fn user_row(r: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        id: r.try_get(0)?,
        username_token: r.try_get(1)?,
        username_sealed: r.try_get(2)?,
        role: r.try_get(3)?,
        password_hash: r.try_get(4)?,
        totp_sealed: r.try_get(5)?,
        totp_last_step: r.try_get(6)?,
        mfa_enrolled_at: r.try_get(7)?,
        practitioner_id: r.try_get(8)?,
        patient_sealed: r.try_get(9)?,
        patient_token: r.try_get(10)?,
        disabled_at: r.try_get(11)?,
        created_at: r.try_get(12)?,
    })
}

/// A login session (cookie for the UI, short-lived bearer for API clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    /// `cookie` or `bearer`.
    pub kind: String,
    /// Hash of the CSRF token (cookie sessions).
    pub csrf_hash: Option<Vec<u8>>,
    /// Whether the second factor was given (false only while enrolling it).
    pub mfa_done: bool,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

const SESSION_COLUMNS: &str = "id, user_id, kind, csrf_hash, mfa_done, created_at, last_seen, expires_at, revoked_at";

fn session_row(r: &AnyRow) -> Result<SessionRow> {
    Ok(SessionRow {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        csrf_hash: r.try_get(3)?,
        mfa_done: r.try_get::<i64, _>(4)? != 0,
        created_at: r.try_get(5)?,
        last_seen: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
    })
}

/// Failed-login state of one account or source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRow {
    pub failures: i64,
    pub window_start: i64,
    pub locked_until: Option<i64>,
}

/// A registered passkey (sealed; see migration 6).
#[derive(Debug, Clone)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub sealed: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A stored API token (only its hash is kept).
#[derive(Debug, Clone)]
pub struct ApiTokenRow {
    pub id: String,
    /// What it is for, sealed and bound to the token id (the plaintext
    /// `label` column of migration 1 is left empty; see migration 9).
    pub label_sealed: Vec<u8>,
    pub user_id: Option<String>,
    pub scopes: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What a live API token grants.
#[derive(Debug, Clone)]
pub struct ApiTokenAuth {
    pub id: String,
    pub user_id: Option<String>,
    pub scopes: Option<String>,
    pub expires_at: Option<i64>,
}

impl Store {
    // ----- users ----------------------------------------------------------------------

    pub async fn user_by_username_token(&self, token: &[u8]) -> Result<Option<UserRow>> {
        let r = sqlx::query(self.sql(format!("SELECT {USER_COLUMNS} FROM users WHERE username_token = ?")))
            .bind(token)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(user_row).transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        let r = sqlx::query(self.sql(format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(user_row).transpose()
    }

    pub async fn users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(self.sql(format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id")))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_row).collect()
    }

    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool> {
        let r = sqlx::query(self.sql("UPDATE users SET password_hash = ? WHERE id = ?"))
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Record that TOTP step `step` was used; false if it (or a later one)
    /// was used already — a replayed code.
    pub async fn advance_totp_step(&self, id: &str, step: i64) -> Result<bool> {
        let r = sqlx::query(self.sql(
            "UPDATE users SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
        ))
        .bind(step)
        .bind(id)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Use up a recovery code; false if it is unknown or used.
    pub async fn use_recovery_code(&self, user_id: &str, hash: &[u8], now: i64) -> Result<bool> {
        let r = sqlx::query(
            self.sql("UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL"),
        )
        .bind(now)
        .bind(user_id)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Whether the user has been given recovery codes, used or not (before
    /// their first enrolment, none: after an administrator's second-factor
    /// reset, the one-time code they handed over).
    pub async fn has_recovery_codes(&self, user_id: &str) -> Result<bool> {
        let row = sqlx::query(self.sql("SELECT 1 FROM recovery_codes WHERE user_id = ? LIMIT 1"))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    // ----- passkeys -------------------------------------------------------------------

    /// A user's passkeys, oldest first.
    pub async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT id, user_id, label, sealed, created_at, last_used_at FROM passkeys WHERE user_id = ? \
             ORDER BY created_at, id",
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PasskeyRow {
                    id: r.try_get(0)?,
                    user_id: r.try_get(1)?,
                    label: r.try_get(2)?,
                    sealed: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                    last_used_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Store a passkey again after a sign-in (its counter moved).
    pub async fn passkey_used(&self, id: &str, sealed: &[u8], now: i64) -> Result<()> {
        sqlx::query(self.sql("UPDATE passkeys SET sealed = ?, last_used_at = ? WHERE id = ?"))
            .bind(sealed)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----- sessions -------------------------------------------------------------------

    pub async fn session_by_token_hash(&self, hash: &[u8]) -> Result<Option<SessionRow>> {
        let r = sqlx::query(self.sql(format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?")))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(session_row).transpose()
    }

    pub async fn touch_session(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query(self.sql("UPDATE sessions SET last_seen = ? WHERE id = ? AND last_seen < ?"))
            .bind(now)
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// When each user last started a session (logged in), by user id.
    pub async fn last_logins(&self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT user_id, MAX(created_at) FROM sessions GROUP BY user_id").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// A user's sessions that are not revoked and not expired, newest first.
    pub async fn live_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionRow>> {
        let rows = sqlx::query(self.sql(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? \
             ORDER BY created_at DESC"
        )))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_row).collect()
    }

    // ----- login throttling -----------------------------------------------------------

    pub async fn throttle(&self, key: &[u8]) -> Result<Option<ThrottleRow>> {
        let r = sqlx::query(
            self.sql("SELECT failures, window_start, locked_until FROM login_throttle WHERE throttle_key = ?"),
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| Ok(ThrottleRow { failures: r.try_get(0)?, window_start: r.try_get(1)?, locked_until: r.try_get(2)? }))
            .transpose()
    }

    pub async fn put_throttle(&self, key: &[u8], t: ThrottleRow) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO login_throttle (throttle_key, failures, window_start, locked_until) VALUES (?, ?, ?, ?) \
             ON CONFLICT (throttle_key) DO UPDATE SET failures = excluded.failures, \
             window_start = excluded.window_start, locked_until = excluded.locked_until",
        ))
        .bind(key)
        .bind(t.failures)
        .bind(t.window_start)
        .bind(t.locked_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Count one login attempt for `key` in one atomic statement: a new window
    /// after `window_ms`, a lock of `lockout_ms` from the attempt that reaches `max`.
    /// Returns the state after this attempt.
    pub async fn count_login_attempt(
        &self,
        key: &[u8],
        now: i64,
        window_ms: i64,
        max: i64,
        lockout_ms: i64,
    ) -> Result<ThrottleRow> {
        let fresh = "(login_throttle.window_start < ? OR (login_throttle.locked_until IS NOT NULL AND login_throttle.locked_until <= ?))";
        let sql = format!(
            "INSERT INTO login_throttle (throttle_key, failures, window_start, locked_until) \
             VALUES (?, 1, ?, CASE WHEN 1 >= ? THEN ? ELSE NULL END) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
               failures = CASE WHEN {fresh} THEN 1 ELSE login_throttle.failures + 1 END, \
               window_start = CASE WHEN {fresh} THEN ? ELSE login_throttle.window_start END, \
               locked_until = CASE \
                 WHEN {fresh} THEN CASE WHEN 1 >= ? THEN ? ELSE NULL END \
                 WHEN login_throttle.failures + 1 >= ? AND login_throttle.locked_until IS NULL THEN ? \
                 ELSE login_throttle.locked_until END \
             RETURNING failures, window_start, locked_until"
        );
        let cutoff = now - window_ms;
        let until = now + lockout_ms;
        let r = sqlx::query(self.sql(sql))
            .bind(key)
            .bind(now)
            .bind(max)
            .bind(until)
            // failures
            .bind(cutoff)
            .bind(now)
            // window_start
            .bind(cutoff)
            .bind(now)
            .bind(now)
            // locked_until
            .bind(cutoff)
            .bind(now)
            .bind(max)
            .bind(until)
            .bind(max)
            .bind(until)
            .fetch_one(&self.pool)
            .await?;
        Ok(ThrottleRow { failures: r.try_get(0)?, window_start: r.try_get(1)?, locked_until: r.try_get(2)? })
    }

    // ----- enrolment codes ------------------------------------------------------------

    /// The role of this enrolment code if it is unused and unexpired (without using it).
    pub async fn enrolment_code_role(&self, hash: &[u8], now: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            self.sql("SELECT role FROM enrolment_codes WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?"),
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    // ----- API tokens -----------------------------------------------------------------

    /// The live (not revoked) API token with this hash, with its user, in one query.
    pub async fn api_token_by_hash(&self, hash: &[u8]) -> Result<Option<(ApiTokenAuth, UserRow)>> {
        let cols: String = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ");
        let r = sqlx::query(self.sql(format!(
            "SELECT {cols}, t.id, t.user_id, t.scopes, t.expires_at FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = ? AND t.revoked_at IS NULL"
        )))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            let user = user_row(&r)?;
            let token = ApiTokenAuth {
                id: r.try_get(13)?,
                user_id: r.try_get(14)?,
                scopes: r.try_get(15)?,
                expires_at: r.try_get(16)?,
            };
            Ok((token, user))
        })
        .transpose()
    }

    /// Every API token, oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>> {
        let rows = sqlx::query(
            "SELECT id, label_sealed, user_id, scopes, created_at, expires_at, revoked_at FROM api_tokens \
             WHERE label_sealed IS NOT NULL ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiTokenRow {
                    id: r.try_get(0)?,
                    label_sealed: r.try_get(1)?,
                    user_id: r.try_get(2)?,
                    scopes: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                    expires_at: r.try_get(5)?,
                    revoked_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    // ----- sealing what migration 9 sealed ------------------------------------------------

    /// Accounts whose patient link is still in the plaintext column: (user id, patient id).
    pub async fn plaintext_patient_links(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT id, patient_id FROM users WHERE patient_id IS NOT NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Replace an account's plaintext patient link by its sealed copy and blind token.
    pub async fn seal_patient_link(&self, user_id: &str, sealed: &[u8], token: &[u8]) -> Result<()> {
        sqlx::query(self.sql("UPDATE users SET patient_sealed = ?, patient_token = ?, patient_id = NULL WHERE id = ?"))
            .bind(sealed)
            .bind(token)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// API tokens whose label is still only in the plaintext column: (token id, label).
    pub async fn plaintext_token_labels(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT id, label FROM api_tokens WHERE label_sealed IS NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Replace a token's plaintext label by its sealed copy.
    pub async fn seal_token_label(&self, token_id: &str, sealed: &[u8]) -> Result<()> {
        sqlx::query(self.sql("UPDATE api_tokens SET label_sealed = ?, label = '' WHERE id = ?"))
            .bind(sealed)
            .bind(token_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The changes to accounts, sessions, second factors, enrolment codes and API
/// tokens: each commits with the audit entry that records it ([`Audited`]).
impl Audited<'_> {
    pub async fn insert_user(&mut self, u: &UserRow) -> Result<()> {
        sqlx::query(
            self.store
                .sql(format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")),
        )
        .bind(u.id.as_str())
        .bind(u.username_token.as_slice())
        .bind(u.username_sealed.as_slice())
        .bind(u.role.as_str())
        .bind(u.password_hash.as_deref())
        .bind(u.totp_sealed.as_deref())
        .bind(u.totp_last_step)
        .bind(u.mfa_enrolled_at)
        .bind(u.practitioner_id.as_deref())
        .bind(u.patient_sealed.as_deref())
        .bind(u.patient_token.as_deref())
        .bind(u.disabled_at)
        .bind(u.created_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Disable (Some(now)) or enable (None) an account; false if no such user.
    pub async fn set_user_disabled(&mut self, id: &str, disabled_at: Option<i64>) -> Result<bool> {
        let r = sqlx::query(self.store.sql("UPDATE users SET disabled_at = ? WHERE id = ?"))
            .bind(disabled_at)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Set the sealed TOTP secret (enrolled when `enrolled_at` is set), or clear
    /// it with its recovery codes (`None, None`: MFA reset).
    pub async fn set_totp(&mut self, id: &str, sealed: Option<&[u8]>, enrolled_at: Option<i64>) -> Result<bool> {
        let r = sqlx::query(
            self.store.sql("UPDATE users SET totp_sealed = ?, mfa_enrolled_at = ?, totp_last_step = NULL WHERE id = ?"),
        )
        .bind(sealed)
        .bind(enrolled_at)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        if sealed.is_none() {
            // A reset removes every second factor: recovery codes and passkeys too.
            sqlx::query(self.store.sql("DELETE FROM recovery_codes WHERE user_id = ?"))
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
            sqlx::query(self.store.sql("DELETE FROM passkeys WHERE user_id = ?"))
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(r.rows_affected() == 1)
    }

    pub async fn replace_recovery_codes(&mut self, user_id: &str, hashes: &[Vec<u8>]) -> Result<()> {
        sqlx::query(self.store.sql("DELETE FROM recovery_codes WHERE user_id = ?"))
            .bind(user_id)
            .execute(&mut *self.tx)
            .await?;
        for h in hashes {
            sqlx::query(self.store.sql("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)"))
                .bind(user_id)
                .bind(h.as_slice())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    pub async fn insert_passkey(&mut self, p: &PasskeyRow) -> Result<()> {
        sqlx::query(self.store.sql(
            "INSERT INTO passkeys (id, user_id, label, sealed, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(&p.id)
        .bind(&p.user_id)
        .bind(&p.label)
        .bind(p.sealed.as_slice())
        .bind(p.created_at)
        .bind(p.last_used_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Remove one of a user's passkeys; false if they have none by that id.
    pub async fn delete_passkey(&mut self, user_id: &str, id: &str) -> Result<bool> {
        let r = sqlx::query(self.store.sql("DELETE FROM passkeys WHERE user_id = ? AND id = ?"))
            .bind(user_id)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn insert_session(&mut self, s: &SessionRow, token_hash: &[u8]) -> Result<()> {
        sqlx::query(self.store.sql(format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}, token_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(s.id.as_str())
        .bind(s.user_id.as_str())
        .bind(s.kind.as_str())
        .bind(s.csrf_hash.as_deref())
        .bind(i64::from(s.mfa_done))
        .bind(s.created_at)
        .bind(s.last_seen)
        .bind(s.expires_at)
        .bind(s.revoked_at)
        .bind(token_hash)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Revoke one session, of `user_id` if given; false if none was live.
    pub async fn revoke_session(&mut self, id: &str, user_id: Option<&str>, now: i64) -> Result<bool> {
        let r = match user_id {
            Some(u) => {
                sqlx::query(
                    self.store
                        .sql("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL AND user_id = ?"),
                )
                .bind(now)
                .bind(id)
                .bind(u)
                .execute(&mut *self.tx)
                .await?
            }
            None => {
                sqlx::query(self.store.sql("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"))
                    .bind(now)
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?
            }
        };
        Ok(r.rows_affected() == 1)
    }

    /// Revoke every live session and API token of a user; returns how many.
    pub async fn revoke_user_credentials(&mut self, user_id: &str, now: i64) -> Result<u64> {
        let a =
            sqlx::query(self.store.sql("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL"))
                .bind(now)
                .bind(user_id)
                .execute(&mut *self.tx)
                .await?;
        let b = sqlx::query(
            self.store.sql("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL"),
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(a.rows_affected() + b.rows_affected())
    }

    pub async fn clear_throttle(&mut self, key: &[u8]) -> Result<bool> {
        let r = sqlx::query(self.store.sql("DELETE FROM login_throttle WHERE throttle_key = ?"))
            .bind(key)
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn insert_enrolment_code(&mut self, hash: &[u8], role: &str, expires_at: i64) -> Result<()> {
        sqlx::query(self.store.sql("INSERT INTO enrolment_codes (code_hash, role, expires_at) VALUES (?, ?, ?)"))
            .bind(hash)
            .bind(role)
            .bind(expires_at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Use up an enrolment code; its role if it was live.
    pub async fn consume_enrolment_code(&mut self, hash: &[u8], now: i64) -> Result<Option<String>> {
        let r =
            sqlx::query(self.store.sql(
                "UPDATE enrolment_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?",
            ))
            .bind(now)
            .bind(hash)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        let role: String = sqlx::query(self.store.sql("SELECT role FROM enrolment_codes WHERE code_hash = ?"))
            .bind(hash)
            .fetch_one(&mut *self.tx)
            .await?
            .try_get(0)?;
        Ok(Some(role))
    }

    /// Store a new API token by its hash.
    pub async fn insert_api_token(&mut self, t: &ApiTokenRow, hash: &[u8]) -> Result<()> {
        sqlx::query(self.store.sql(
            "INSERT INTO api_tokens (id, token_hash, label, label_sealed, user_id, scopes, created_at, expires_at) \
             VALUES (?, ?, '', ?, ?, ?, ?, ?)",
        ))
        .bind(t.id.as_str())
        .bind(hash)
        .bind(t.label_sealed.as_slice())
        .bind(t.user_id.as_deref())
        .bind(t.scopes.as_deref())
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Revoke a token; false if no live token has this id.
    pub async fn revoke_api_token(&mut self, id: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(self.store.sql("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"))
            .bind(now)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
