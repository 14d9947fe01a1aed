//! What identity uses from below it, and the one module that knows where it
//! comes from: the store, the clock, sealing and blind indexes (today
//! through `confidant-records`), and the audit log with the detector behind
//! it. No other identity file names `confidant_records`.
//!
//! Swapping records for a keyring, a store, an auditor and a clock (issue 20)
//! is a change of this module: [`Services`], the helpers on [`Identity`]
//! below, the constructor and the three public functions that take
//! `&Records` today.

use std::sync::Arc;

use confidant_audit::Entry;
use confidant_policy::Role;
use confidant_records::Records;
pub(crate) use confidant_records::RecordsError;
use confidant_store::Store;

use crate::{Identity, IdentityError, PATIENT_LINK, Result, Settings, TOKEN_LABEL};

/// Identity's handle on the services below it.
pub(crate) struct Services {
    records: Arc<Records>,
}

impl From<RecordsError> for IdentityError {
    /// Key, audit and store failures as identity's own variants; the rest
    /// (integrity, wrong key, not initialised) as they came.
    fn from(e: RecordsError) -> Self {
        match e {
            RecordsError::Vault(e) => IdentityError::Vault(e),
            RecordsError::AuditFailed => IdentityError::AuditFailed,
            RecordsError::Store(e) => IdentityError::Store(e),
            other => IdentityError::Records(other),
        }
    }
}

impl Identity {
    pub fn new(records: Arc<Records>, settings: Settings) -> Identity {
        Identity::with_services(Services { records }, settings)
    }

    pub(crate) fn store(&self) -> &Store {
        self.services.records.store()
    }

    pub(crate) fn now(&self) -> i64 {
        self.services.records.now_millis()
    }

    /// Seal `secret` of `kind` (`"Totp"`, `"Username"`, …), bound to `owner`.
    pub(crate) async fn seal_secret(&self, kind: &str, owner: &str, secret: &[u8]) -> Result<Vec<u8>> {
        Ok(self.services.records.seal_secret(kind, owner, secret).await?)
    }

    /// Open a secret sealed by [`Identity::seal_secret`] with the same `kind` and `owner`.
    pub(crate) async fn open_secret(
        &self,
        kind: &str,
        owner: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(self.services.records.open_secret(kind, owner, sealed).await?)
    }

    /// The blind token of `value` of `kind` (`"username"`, `"login-account"`, …).
    pub(crate) fn blind(&self, kind: &str, value: &str) -> Vec<u8> {
        self.services.records.blind(kind, value)
    }

    /// [`patient_link_token`] with this instance's blind index.
    pub(crate) fn patient_link(&self, patient_id: &str) -> Vec<u8> {
        patient_link_token(&self.services.records, patient_id)
    }

    /// [`recorded_source`] with this instance's blind index.
    pub(crate) fn recorded_source(&self, role: Option<Role>, address: &str) -> String {
        recorded_source(&self.services.records, role, address)
    }

    /// Append `e` to the audit log and wait for its commit, then show it to
    /// the detector (failed-login bursts are the detector's to see).
    pub(crate) async fn append_audit(&self, e: Entry) -> Result<()> {
        self.services.records.auditor().append(std::slice::from_ref(&e)).await.map_err(|err| {
            tracing::error!(error = %err, "audit append of a security event failed");
            IdentityError::AuditFailed
        })?;
        self.services.records.observe(None, &[e]).await;
        Ok(())
    }
}

/// The blind token of a patient account's link to `patient_id`: how the
/// account is found by its patient (erasure) without the link in the clear.
pub fn patient_link_token(records: &Records, patient_id: &str) -> Vec<u8> {
    // Hex first: FHIR ids are case-sensitive, and the blind index lower-cases identifiers.
    let hex: String = patient_id.bytes().map(|b| format!("{b:02x}")).collect();
    records.blind("user-patient", &hex)
}

/// Where a request came from, as the audit log records it: a staff member's
/// address as it is; a patient's as a blind value (`blind:` and 32 hex
/// digits), so that a copy of the log ties no patient to their addresses (S1),
/// while the same address still compares equal (the detector's rules).
pub fn recorded_source(records: &Records, role: Option<Role>, address: &str) -> String {
    if !confidant_policy::blinds_source(role) {
        return address.to_owned();
    }
    let token = records.blind("audit-source", address);
    let hex: String = token.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("blind:{hex}")
}

/// Seal what instances before migration 9 kept in the clear: patient
/// accounts' Patient ids and API token labels. Run when an instance is opened
/// with its key (SQL alone cannot seal); returns how many rows were moved.
pub async fn seal_plaintext_links(records: &Records) -> Result<usize> {
    let store = records.store();
    let links = store.plaintext_patient_links().await?;
    for (user_id, patient_id) in &links {
        let sealed = records.seal_secret(PATIENT_LINK, user_id, patient_id.as_bytes()).await?;
        store.seal_patient_link(user_id, &sealed, &patient_link_token(records, patient_id)).await?;
    }
    let labels = store.plaintext_token_labels().await?;
    for (token_id, label) in &labels {
        let sealed = records.seal_secret(TOKEN_LABEL, token_id, label.as_bytes()).await?;
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
