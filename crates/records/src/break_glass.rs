//! Break-glass: a clinician opens a patient's record outside their care
//! teams, for a stated reason (sealed with the patient's key), for a while.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::records::Seen;
use confidant_policy::{self as policy, Principal};
use confidant_store::StoreError;

use crate::{Records, RecordsError, Result, visible_len, visible_text};

impl Records {
    /// Open a patient's record outside one's care teams, for a stated reason,
    /// for `minutes`. Clinicians only. Returns when it expires (Unix ms).
    pub async fn break_glass(&self, p: &Principal, patient_id: &str, reason: &str, minutes: i64) -> Result<i64> {
        if let Err(refused) = policy::records::may_break_glass(p) {
            self.audit_denied(p, AuditAction::BreakGlass, ResourceType::Patient, None).await;
            return Err(refused.into());
        }
        // Stored as it will be shown: invisible and bidi-control characters
        // neither count towards the reason nor reach the patient's page.
        let reason = visible_text(reason);
        if visible_len(&reason) < 10 {
            return Err(RecordsError::Invalid(
                "break-glass needs a reason of at least 10 visible characters: say why this patient's record must be opened"
                    .into(),
            ));
        }
        if reason.len() > 2000 {
            return Err(RecordsError::Invalid("the reason is too long (at most 2000 bytes)".into()));
        }
        if !confidant_fhir::is_valid_id(patient_id) || self.store.compartment_of("Patient", patient_id).await?.is_none()
        {
            return Err(RecordsError::NotFound(format!("Patient/{patient_id}")));
        }
        let now = self.clock.now_millis();
        let expires = now + minutes.clamp(1, 24 * 60) * 60_000;
        let id = confidant_vault::random_id().map_err(RecordsError::Vault)?;
        let mut entry = self.entry(p, AuditAction::BreakGlass, Outcome::Success, None, Seen::Yes);
        entry.patient = Some(patient_id.to_owned());
        entry.resource = Some(format!("Patient/{patient_id}"));
        entry.purpose = Some(format!("break-glass/{id}"));
        let audit = [entry.to_row()];
        // Sealed again, once, if a key rotation replaced the patient's key meanwhile.
        let mut retried = false;
        loop {
            let (sealed, key_version) = self.keyring.seal_break_glass(&id, patient_id, reason.as_bytes()).await?;
            let sealed = (sealed.as_slice(), key_version);
            match self.store.insert_break_glass(&id, &p.user_id, patient_id, sealed, now, expires, &audit).await {
                Ok(()) => break,
                Err(StoreError::StaleKey) if !retried => {
                    retried = true;
                    self.keyring.forget_current_key(patient_id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.committed(Some(p), &audit).await;
        tracing::warn!(user = %p.user_id, patient = %patient_id, break_glass = %id, "break-glass access opened");
        Ok(expires)
    }
}
