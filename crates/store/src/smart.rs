//! SMART App Launch (issue 19): registered apps, authorization codes (by
//! their hash only) and which app a token was given to (see the migration).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Audited, Result, Store};

/// A SMART app registered by an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartAppRow {
    /// Random, public (a public client has no secret).
    pub client_id: String,
    pub name: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The scopes the app may be given at most.
    pub scopes: String,
    pub created_at: i64,
    pub created_by: String,
}

/// An authorization code, as stored (the code itself is not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCodeRow {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    /// The PKCE S256 challenge: BASE64URL(SHA-256(verifier)).
    pub code_challenge: String,
    /// The scopes granted.
    pub scopes: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// The token it was exchanged for.
    pub token_id: Option<String>,
}

/// The app an API token was given to, found by the token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTokenRow {
    pub token_id: String,
    pub user_id: Option<String>,
    /// `None` for a token not made through SMART.
    pub client_id: Option<String>,
    pub revoked_at: Option<i64>,
}

const APP_COLUMNS: &str = "client_id, name, redirect_uris, scopes, created_at, created_by";

fn app_row(r: &AnyRow) -> Result<SmartAppRow> {
    let uris: String = r.try_get(2)?;
    Ok(SmartAppRow {
        client_id: r.try_get(0)?,
        name: r.try_get(1)?,
        redirect_uris: uris.lines().map(str::to_owned).collect(),
        scopes: r.try_get(3)?,
        created_at: r.try_get(4)?,
        created_by: r.try_get(5)?,
    })
}

/// How long a used or expired code is kept (to recognise its replay) before it is deleted.
const CODE_KEPT_MS: i64 = 24 * 3_600_000;

impl Store {
    /// Every registered app, oldest first.
    pub async fn smart_apps(&self) -> Result<Vec<SmartAppRow>> {
        let rows =
            sqlx::query(self.sql(format!("SELECT {APP_COLUMNS} FROM smart_apps ORDER BY created_at, client_id")))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(app_row).collect()
    }

    pub async fn smart_app(&self, client_id: &str) -> Result<Option<SmartAppRow>> {
        let r = sqlx::query(self.sql(format!("SELECT {APP_COLUMNS} FROM smart_apps WHERE client_id = ?")))
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(app_row).transpose()
    }

    /// Store a new code by its hash (no audit entry: a code grants nothing
    /// until it is exchanged, which is audited), and forget old ones.
    pub async fn insert_oauth_code(&self, hash: &[u8], c: &OAuthCodeRow, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(self.sql("DELETE FROM oauth_codes WHERE expires_at < ?"))
            .bind(now - CODE_KEPT_MS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(self.sql(
            "INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, code_challenge, scopes, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(hash)
        .bind(c.client_id.as_str())
        .bind(c.user_id.as_str())
        .bind(c.redirect_uri.as_str())
        .bind(c.code_challenge.as_str())
        .bind(c.scopes.as_str())
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The code with this hash, used or not.
    pub async fn oauth_code(&self, hash: &[u8]) -> Result<Option<OAuthCodeRow>> {
        let r = sqlx::query(self.sql(
            "SELECT client_id, user_id, redirect_uri, code_challenge, scopes, expires_at, used_at, token_id \
             FROM oauth_codes WHERE code_hash = ?",
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(OAuthCodeRow {
                client_id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                redirect_uri: r.try_get(2)?,
                code_challenge: r.try_get(3)?,
                scopes: r.try_get(4)?,
                expires_at: r.try_get(5)?,
                used_at: r.try_get(6)?,
                token_id: r.try_get(7)?,
            })
        })
        .transpose()
    }

    /// The token with this hash and the app it was given to, revoked or not.
    pub async fn app_token_by_hash(&self, hash: &[u8]) -> Result<Option<AppTokenRow>> {
        let r = sqlx::query(self.sql("SELECT id, user_id, client_id, revoked_at FROM api_tokens WHERE token_hash = ?"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| {
            Ok(AppTokenRow {
                token_id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                client_id: r.try_get(2)?,
                revoked_at: r.try_get(3)?,
            })
        })
        .transpose()
    }
}

impl Audited<'_> {
    pub async fn insert_smart_app(&mut self, a: &SmartAppRow) -> Result<()> {
        sqlx::query(self.store.sql(format!("INSERT INTO smart_apps ({APP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)")))
            .bind(a.client_id.as_str())
            .bind(a.name.as_str())
            .bind(a.redirect_uris.join("\n"))
            .bind(a.scopes.as_str())
            .bind(a.created_at)
            .bind(a.created_by.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Use up a live code for `token_id`; false if it was used or has expired
    /// meanwhile (two exchanges of one code: exactly one wins).
    pub async fn use_oauth_code(&mut self, hash: &[u8], token_id: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(self.store.sql(
            "UPDATE oauth_codes SET used_at = ?, token_id = ? \
             WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?",
        ))
        .bind(now)
        .bind(token_id)
        .bind(hash)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Record which app a new token was given to.
    pub async fn set_token_client(&mut self, token_id: &str, client_id: &str) -> Result<()> {
        sqlx::query(self.store.sql("UPDATE api_tokens SET client_id = ? WHERE id = ?"))
            .bind(client_id)
            .bind(token_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}
