//! The detector's alerts, as admins and auditors see and acknowledge them.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_policy::Principal;
use confidant_store::AlertRow;

use crate::{Records, RecordsError, Result, Seen};

impl Records {
    /// The detector's alerts, newest first (admins and auditors).
    pub async fn alerts(&self, p: &Principal, open_only: bool, limit: i64) -> Result<Vec<AlertRow>> {
        confidant_policy::may_handle_alerts(p).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        Ok(self.store.alerts(open_only, limit.clamp(1, 1000)).await?)
    }

    /// Acknowledge an open alert (admins and auditors), with its audit entry.
    pub async fn acknowledge_alert(&self, p: &Principal, id: &str) -> Result<AlertRow> {
        confidant_policy::may_handle_alerts(p).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        // Closing an alert is a person's decision: a login session, not an API token.
        confidant_policy::records::may_acknowledge_alerts(p)?;
        let not_found = || RecordsError::NotFound(format!("open alert {id}"));
        if !confidant_fhir::is_valid_id(id) {
            return Err(not_found());
        }
        // Nobody closes an alert about themselves.
        if let Some(a) = self.store.alert(id).await? {
            confidant_policy::records::may_acknowledge_alert_about(p, a.subject.as_deref())?;
        }
        let mut e = self.entry(p, AuditAction::Alert, Outcome::Success, None, Seen::Yes);
        e.target = Some(format!("alert/{id}"));
        e.purpose = Some("acknowledged".into());
        let audit = [e.to_row()];
        if !self.store.acknowledge_alert(id, &p.user_id, e.time, &audit).await? {
            return Err(not_found());
        }
        self.committed(None, &audit).await;
        self.store.alert(id).await?.ok_or_else(not_found)
    }
}
