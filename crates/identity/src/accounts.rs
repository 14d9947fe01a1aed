//! Accounts: users (add, find, list), an administrator's changes to an
//! account (disable, enable, unlock, second-factor reset, end sessions),
//! invitations and enrolment with a one-time code. Who may do which is
//! `confidant_policy::accounts`'.

use confidant_audit::{Action as AuditAction, Entry, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::{AccountChange, Principal, Role};
use confidant_store::{StoreError, UserRow};
use confidant_vault::{password, totp};

use crate::{
    Actor, CONSOLE, Identity, IdentityError, PATIENT_LINK, Result, normalise_username, random_id, random_token,
};

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

/// An account to create: [`Identity::add_user`]'s arguments.
struct NewAccount<'a> {
    username: &'a str,
    role: Role,
    password: &'a str,
    practitioner_id: Option<&'a str>,
    patient_id: Option<&'a str>,
}

impl Identity {
    pub(crate) async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(self.store().user_by_username_token(&self.blind("username", username)).await?)
    }

    /// A user's username (sealed at rest, bound to the user).
    pub(crate) async fn username_of(&self, u: &UserRow) -> Result<String> {
        let name = self.open_secret("Username", &u.id, &u.username_sealed).await?;
        Ok(String::from_utf8_lossy(&name).into_owned())
    }

    /// A patient account's Patient id (sealed at rest, bound to the user).
    pub(crate) async fn patient_of(&self, u: &UserRow) -> Result<Option<String>> {
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

    /// The principal of an active staff account, as the console acts for it
    /// (`confidant import --as`): its role and links, no token scopes.
    pub async fn principal_of(&self, name_or_id: &str) -> Result<confidant_policy::Principal> {
        let user = self.find_user(name_or_id).await?;
        if user.disabled_at.is_some() {
            return Err(IdentityError::NotFound("user".into()));
        }
        self.principal(&user, None).await
    }

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
        self.add_user_by(NewAccount { username, role, password, practitioner_id, patient_id }, Some(CONSOLE), None)
            .await
    }

    /// [`Identity::add_user`], recorded as done by `by` (`None`: the new user,
    /// enrolling themselves with the enrolment code whose hash is `code`: it is
    /// used up in the same transaction that creates the account).
    async fn add_user_by(&self, new: NewAccount<'_>, by: Option<&str>, code: Option<&[u8]>) -> Result<String> {
        let NewAccount { username, role, password, practitioner_id, patient_id } = new;
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
        let e = self.event(AuditAction::UserAdd, Outcome::Success, Some(by.unwrap_or(&id)), Some(&id), None).await;
        let mut changes = self.store().audited().await?;
        if let Some(code) = code
            && changes.consume_enrolment_code(code, self.now()).await?.as_deref() != Some(role.as_str())
        {
            return Err(IdentityError::Forbidden("the enrolment code is unknown, used or expired".into()));
        }
        changes.insert_user(&row).await.map_err(|e| match e {
            StoreError::Conflict => IdentityError::Conflict("that username is taken".into()),
            other => other.into(),
        })?;
        self.commit(changes, e).await?;
        tracing::info!(user = %id, role = %role, "user added");
        Ok(id)
    }

    pub(crate) async fn require_resource(&self, rt: &str, id: &str) -> Result<()> {
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
            let locked = self.locked_out(&username, now).await?;
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
        let target = self.user_by_name(&username).await?.map(|u| u.id);
        let e = self.event(AuditAction::Unlock, Outcome::Success, Some(CONSOLE), target.as_deref(), None).await;
        let mut changes = self.store().audited().await?;
        let lifted = changes.clear_throttle(&self.account_throttle_key(&username)).await?;
        self.commit(changes, e).await?;
        Ok(lifted)
    }

    /// End every session and API token of a user; returns how many.
    pub async fn revoke_all(&self, name_or_id: &str) -> Result<u64> {
        let u = self.find_user(name_or_id).await?;
        let e = self.event(AuditAction::SessionRevoke, Outcome::Success, Some(CONSOLE), Some(&u.id), None).await;
        let mut changes = self.store().audited().await?;
        let n = changes.revoke_user_credentials(&u.id, self.now()).await?;
        self.commit(changes, e).await?;
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
    pub(crate) async fn apply(&self, by: Actor<'_>, u: &UserRow, change: AccountChange) -> Result<Option<String>> {
        let now = self.now();
        let action = match change {
            AccountChange::Disable => AuditAction::UserDisable,
            AccountChange::Enable => AuditAction::UserEnable,
            AccountChange::ResetSecondFactor => AuditAction::MfaReset,
            AccountChange::Unlock => AuditAction::Unlock,
            AccountChange::EndSessions => AuditAction::SessionRevoke,
        };
        // Everything slow first (lookups, the one-time code): the change and
        // its entry then commit in one short transaction.
        let e = self.event(action, Outcome::Success, Some(by.id), Some(&u.id), by.source).await;
        let throttle = match change {
            AccountChange::Unlock => Some(self.account_throttle_key(&self.username_of(u).await?)),
            _ => None,
        };
        let one_time_code = match change {
            // The way back in is a single recovery code that only the
            // administrator sees: someone who has the password alone
            // cannot enrol a factor of their own (see `check_and_start`).
            AccountChange::ResetSecondFactor => Some(
                totp::new_recovery_codes(1)
                    .map_err(IdentityError::Vault)?
                    .pop()
                    .ok_or_else(|| IdentityError::Conflict("no one-time code was made".into()))?,
            ),
            _ => None,
        };
        let mut changes = self.store().audited().await?;
        match change {
            AccountChange::Disable => {
                changes.set_user_disabled(&u.id, Some(now)).await?;
                changes.revoke_user_credentials(&u.id, now).await?;
            }
            AccountChange::Enable => {
                changes.set_user_disabled(&u.id, None).await?;
            }
            AccountChange::ResetSecondFactor => {
                changes.set_totp(&u.id, None, None).await?;
                if let Some(code) = &one_time_code {
                    let hash = self.blind("recovery-code", &totp::normalise_recovery_code(code));
                    changes.replace_recovery_codes(&u.id, &[hash]).await?;
                }
                changes.revoke_user_credentials(&u.id, now).await?;
            }
            AccountChange::Unlock => {
                if let Some(key) = &throttle {
                    changes.clear_throttle(key).await?;
                }
            }
            AccountChange::EndSessions => {
                changes.revoke_user_credentials(&u.id, now).await?;
            }
        }
        self.commit(changes, e).await?;
        match change {
            AccountChange::Disable => tracing::warn!(user = %u.id, "user disabled"),
            AccountChange::ResetSecondFactor => tracing::warn!(user = %u.id, "second factor reset"),
            _ => {}
        }
        Ok(one_time_code)
    }

    /// Account management is for administrators, signed in (never an API token).
    pub(crate) fn require_admin(by: &Principal) -> Result<()> {
        confidant_policy::may_administer_accounts(by).map_err(IdentityError::refused)
    }

    /// An administrator makes a one-time enrolment code for someone to create
    /// their own account of `role` (roles not linked to a record: admin,
    /// auditor, reception). Recorded as theirs; the code is shown once.
    pub async fn invite(&self, by: &Principal, role: Role) -> Result<String> {
        confidant_policy::may_invite(by, role).map_err(IdentityError::refused)?;
        let target = format!("role/{role}");
        let e =
            self.event(AuditAction::Invite, Outcome::Success, Some(&by.user_id), Some(&target), by.source.as_deref());
        self.enrolment_code(role, e.await).await
    }

    /// A one-time code with which someone creates their own account of `role`
    /// (`init` prints one for the first admin), recorded as made at the console.
    pub async fn create_enrolment_code(&self, role: Role) -> Result<String> {
        let target = format!("role/{role}");
        let e = self.event(AuditAction::Invite, Outcome::Success, Some(CONSOLE), Some(&target), None).await;
        self.enrolment_code(role, e).await
    }

    /// A new enrolment code for `role`, stored with the entry `e` that records who made it.
    async fn enrolment_code(&self, role: Role, e: Entry) -> Result<String> {
        let code = random_token("enrol_")?;
        let expires = self.now() + self.settings.enrolment_code_ms;
        let mut changes = self.store().audited().await?;
        changes.insert_enrolment_code(&Self::hash_token(&code), role.as_str(), expires).await?;
        self.commit(changes, e).await?;
        Ok(code)
    }

    /// Create an account with an enrolment code (admins and other unlinked roles only).
    /// The username and password are checked before the code is used up.
    pub async fn enrol(&self, code: &str, username: &str, password: &str) -> Result<String> {
        let name = normalise_username(username)?;
        password::check_policy(password, &[&name, "confidant"]).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        // The code first: without a valid one nobody learns whether a username is taken.
        let hash = Self::hash_token(code.trim());
        let role = self
            .store()
            .enrolment_code_role(&hash, self.now())
            .await?
            .and_then(|r| Role::parse(&r))
            .ok_or_else(|| IdentityError::Forbidden("the enrolment code is unknown, used or expired".into()))?;
        if self.user_by_name(&name).await?.is_some() {
            return Err(IdentityError::Conflict("that username is taken".into()));
        }
        let new = NewAccount { username: &name, role, password, practitioner_id: None, patient_id: None };
        self.add_user_by(new, None, Some(&hash)).await
    }
}

pub(crate) fn confidant_fhir_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
