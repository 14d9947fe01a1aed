//! What identity uses from below it, and the one module that knows where it
//! comes from: the store, the clock, the keyring (sealing and blind indexes),
//! and the audit log with its subscriber (the detector) behind it.
//! Identity depends on none of the services beside it (records).

use std::sync::Arc;

use confidant_audit::{Auditor, Clock, Entry, Subscriber};
use confidant_keyring::{Keyring, KeyringError};
use confidant_policy::Role;
use confidant_store::{Audited, Store};

use crate::{Identity, IdentityError, PATIENT_LINK, Result, Settings, TOKEN_LABEL};

/// What the identity service stands on: the same store, keyring, audit log,
/// clock and subscriber as the records service of the instance.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub auditor: Arc<Auditor>,
    pub clock: Arc<dyn Clock>,
    /// Who watches committed entries (the detector), if anyone.
    pub subscriber: Option<Arc<dyn Subscriber>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Services({:?})", self.store)
    }
}

impl From<KeyringError> for IdentityError {
    /// Key and store failures as identity's own variants; the rest
    /// (integrity, wrong key, not initialised) as the keyring said them.
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::Vault(e) => IdentityError::Vault(e),
            KeyringError::Store(e) => IdentityError::Store(e),
            other => IdentityError::Keys(other),
        }
    }
}

impl Identity {
    pub fn new(services: Services, settings: Settings) -> Identity {
        Identity::with_services(services, settings)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.services.store
    }

    pub(crate) fn now(&self) -> i64 {
        self.services.clock.now_millis()
    }

    /// Seal `secret` of `kind` (`"Totp"`, `"Username"`, …), bound to `owner`.
    pub(crate) async fn seal_secret(&self, kind: &str, owner: &str, secret: &[u8]) -> Result<Vec<u8>> {
        Ok(self.services.keyring.seal_secret(kind, owner, secret).await?)
    }

    /// Open a secret sealed by [`Identity::seal_secret`] with the same `kind` and `owner`.
    pub(crate) async fn open_secret(
        &self,
        kind: &str,
        owner: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(self.services.keyring.open_secret(kind, owner, sealed).await?)
    }

    /// The blind token of `value` of `kind` (`"username"`, `"login-account"`, …).
    pub(crate) fn blind(&self, kind: &str, value: &str) -> Vec<u8> {
        self.services.keyring.blind(kind, value)
    }

    /// [`patient_link_token`] with this instance's blind index.
    pub(crate) fn patient_link(&self, patient_id: &str) -> Vec<u8> {
        patient_link_token(&self.services.keyring, patient_id)
    }

    /// [`recorded_source`] with this instance's blind index.
    pub(crate) fn recorded_source(&self, role: Option<Role>, address: &str) -> String {
        recorded_source(&self.services.keyring, role, address)
    }

    /// Commit `changes` with the entry `e` that records them (one
    /// transaction: neither without the other), then show it to the subscriber.
    pub(crate) async fn commit(&self, changes: Audited<'_>, e: Entry) -> Result<()> {
        changes.commit(std::slice::from_ref(&e.to_row())).await.map_err(|err| {
            tracing::error!(error = %err, "a security event could not be recorded, so nothing was changed");
            IdentityError::AuditFailed
        })?;
        self.services.auditor.appended(1);
        if let Some(s) = &self.services.subscriber {
            s.committed(None, &[e]).await;
        }
        Ok(())
    }

    /// Append `e` to the audit log and wait for its commit, then show it to
    /// the subscriber (failed-login bursts are the detector's to see).
    pub(crate) async fn append_audit(&self, e: Entry) -> Result<()> {
        self.services.auditor.append(std::slice::from_ref(&e)).await.map_err(|err| {
            tracing::error!(error = %err, "audit append of a security event failed");
            IdentityError::AuditFailed
        })?;
        if let Some(s) = &self.services.subscriber {
            s.committed(None, &[e]).await;
        }
        Ok(())
    }
}

/// The blind token of a patient account's link to `patient_id`: how the
/// account is found by its patient (erasure) without the link in the clear.
pub fn patient_link_token(keyring: &Keyring, patient_id: &str) -> Vec<u8> {
    // Hex first: FHIR ids are case-sensitive, and the blind index lower-cases identifiers.
    let hex: String = patient_id.bytes().map(|b| format!("{b:02x}")).collect();
    keyring.blind("user-patient", &hex)
}

/// Where a request came from, as the audit log records it: a staff member's
/// address as it is; a patient's as a blind value (`blind:` and 32 hex
/// digits), so that a copy of the log ties no patient to their addresses (S1),
/// while the same address still compares equal (the detector's rules).
pub fn recorded_source(keyring: &Keyring, role: Option<Role>, address: &str) -> String {
    if !confidant_policy::blinds_source(role) {
        return address.to_owned();
    }
    let token = keyring.blind("audit-source", address);
    let hex: String = token.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("blind:{hex}")
}

/// Seal what instances before migration 9 kept in the clear: patient
/// accounts' Patient ids and API token labels. Run when an instance is opened
/// with its key (SQL alone cannot seal); returns how many rows were moved.
pub async fn seal_plaintext_links(store: &Store, keyring: &Keyring) -> Result<usize> {
    let links = store.plaintext_patient_links().await?;
    for (user_id, patient_id) in &links {
        let sealed = keyring.seal_secret(PATIENT_LINK, user_id, patient_id.as_bytes()).await?;
        store.seal_patient_link(user_id, &sealed, &patient_link_token(keyring, patient_id)).await?;
    }
    let labels = store.plaintext_token_labels().await?;
    for (token_id, label) in &labels {
        let sealed = keyring.seal_secret(TOKEN_LABEL, token_id, label.as_bytes()).await?;
        store.seal_token_label(token_id, &sealed).await?;
    }
    if !links.is_empty() || !labels.is_empty() {
        // SQLite: no copy of the old rows stays in the WAL (old pages are overwritten: secure_delete).
        store.checkpoint_wal().await?;
        tracing::info!(
            accounts = links.len(),
            tokens = labels.len(),
            "sealed plaintext account links and token labels"
        );
    }
    Ok(links.len() + labels.len())
}
