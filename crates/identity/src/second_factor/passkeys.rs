//! Passkeys (WebAuthn): added from a signed-in browser session with a fresh
//! authenticator code, used as the second step of a sign-in, removed by their
//! owner. Ceremonies live in this node's memory between their two requests.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_store::UserRow;
use serde_json::Value;

use crate::sessions::Authenticated;
use crate::{Identity, IdentityError, Result, random_id};

/// A passkey ceremony between its two requests.
pub(crate) enum Ceremony {
    Register { user_id: String, state: confidant_vault::passkey::Registration, expires: i64 },
    SignIn { state: confidant_vault::passkey::Authentication, expires: i64 },
}

impl Ceremony {
    pub(crate) fn expires(&self) -> i64 {
        match self {
            Ceremony::Register { expires, .. } | Ceremony::SignIn { expires, .. } => *expires,
        }
    }
}

/// How long a passkey ceremony may take, and how many may be open at once
/// (a bound on memory: when full, the oldest make way; a user has one
/// registration open at a time).
pub(crate) const CEREMONY_MS: i64 = 5 * 60_000;
pub(crate) const MAX_CEREMONIES: usize = 10_000;

/// A registered passkey, as its owner sees it.
#[derive(Debug, Clone)]
pub struct PasskeyInfo {
    pub id: String,
    pub label: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Identity {
    pub fn passkeys_enabled(&self) -> bool {
        self.passkeys.is_some()
    }

    pub(crate) fn relying_party(&self) -> Result<&confidant_vault::passkey::RelyingParty> {
        self.passkeys.as_ref().ok_or_else(|| {
            IdentityError::Invalid("passkeys are off: set server.public_url to the clinic's https address".into())
        })
    }

    pub(crate) fn open_ceremony(&self, c: Ceremony) -> Result<String> {
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
    pub(crate) fn take_ceremony(&self, handle: &str) -> Option<Ceremony> {
        let now = self.now();
        let mut open = self.ceremonies.lock().ok()?;
        open.remove(handle).filter(|c| c.expires() > now)
    }

    pub(crate) async fn stored_passkeys(
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
        let account_key = self.account_throttle_key(&username);
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
        let target = format!("passkey/{id}");
        let source = auth.principal.source.as_deref();
        let e = self.event(AuditAction::MfaEnrol, Outcome::Success, Some(&user_id), Some(&target), source).await;
        let mut changes = self.store().audited().await?;
        changes.insert_passkey(&row).await?;
        self.commit(changes, e).await?;
        tracing::info!(user = %user_id, passkey = %id, "passkey added");
        Ok(id)
    }

    /// Remove one of the signed-in user's passkeys.
    pub async fn passkey_remove(&self, auth: &Authenticated, id: &str) -> Result<()> {
        let user_id = &auth.principal.user_id;
        if auth.session.is_none() {
            return Err(IdentityError::NotFound("passkey".into()));
        }
        let target = format!("passkey/{id}");
        let source = auth.principal.source.as_deref();
        let e = self.event(AuditAction::MfaReset, Outcome::Success, Some(user_id), Some(&target), source).await;
        let mut changes = self.store().audited().await?;
        if !changes.delete_passkey(user_id, id).await? {
            return Err(IdentityError::NotFound("passkey".into()));
        }
        self.commit(changes, e).await
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
    pub(crate) async fn check_passkey(&self, user: &UserRow, handle: &str, answer: &Value, now: i64) -> Result<bool> {
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
