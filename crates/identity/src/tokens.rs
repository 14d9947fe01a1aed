//! API tokens: scoped, expiring, made at the console or by an administrator
//! (what for whom is `confidant_policy::may_issue_token`), listed and revoked.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_policy::{Principal, Role, Scopes, TokenIssuer};
use confidant_store::{ApiTokenRow, UserRow};

use crate::{Actor, Identity, IdentityError, Result, TOKEN_LABEL, random_id, random_token};

/// How an API token begins.
pub(crate) const API_TOKEN_PREFIX: &str = "cnf_";

/// An API token as administrators see it (never the token itself).
#[derive(Debug, Clone)]
pub struct ApiTokenInfo {
    pub token: ApiTokenRow,
    /// What it is for (sealed at rest).
    pub label: String,
    /// Its user's username.
    pub username: Option<String>,
}

impl Identity {
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
        let source = by.source.as_deref();
        let e = self.event(AuditAction::TokenRevoke, Outcome::Success, Some(&by.user_id), Some(token_id), source).await;
        let mut changes = self.store().audited().await?;
        let revoked = changes.revoke_api_token(token_id, self.now()).await?;
        if revoked {
            self.commit(changes, e).await?;
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
    pub(crate) async fn create_token_as(
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
        let e = self.event(AuditAction::TokenCreate, Outcome::Success, Some(by.id), Some(&row.id), by.source).await;
        let mut changes = self.store().audited().await?;
        changes.insert_api_token(&row, &Self::hash_token(&token)).await?;
        self.commit(changes, e).await?;
        tracing::info!(user = %user.id, token = %row.id, "API token created");
        Ok((row.id, token))
    }
}
