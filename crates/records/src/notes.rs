//! A note's lock and its addenda. Signing (`authenticator`, in the signer's
//! own name) makes a note final and locks it; the server stamps when it was
//! signed. A correction of a signed note is an addendum: a new note whose
//! `relatesTo` appends to the original (same patient, signed, visible to the
//! writer) and whose `description` gives the reason. The decisions are
//! `policy::notes`'; this module gathers the facts and applies them.

use base64::Engine as _;
use confidant_audit::Action as AuditAction;
use confidant_fhir::ResourceType;
use confidant_policy::{self as policy, Denied, Principal};
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result};

/// The extension that says when a note was signed (set by the server only).
pub const SIGNED_AT: &str = "urn:confidant:signed-at";

fn refused(d: Denied) -> RecordsError {
    RecordsError::Forbidden(d.to_string())
}

/// The `relatesTo` a note carries, as given (compared on update: an addendum
/// stays with the note it appends to).
fn relates_to(resource: &Value) -> Value {
    resource.get("relatesTo").cloned().unwrap_or(Value::Null)
}

impl Records {
    /// Refused if every attachment of the note is inline text with nothing but
    /// whitespace in it: an empty note says nothing and locks nothing.
    pub(crate) fn require_note_text(resource: &Value) -> Result<()> {
        let content = resource.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let empty = content.iter().all(|c| {
            c.pointer("/attachment/data").and_then(Value::as_str).is_some_and(|d| {
                base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .is_ok_and(|b| String::from_utf8_lossy(&b).trim().is_empty())
            })
        });
        if empty && !content.is_empty() {
            return Err(RecordsError::Invalid("content: the note is empty (only whitespace); write the note".into()));
        }
        Ok(())
    }

    /// Set (or clear) the server's signed-at time: now, on the version that
    /// signs the note; never what a client sent. A signed note is final.
    pub(crate) fn stamp_signature(&self, resource: &mut Value, signs: bool) {
        let Value::Object(m) = resource else { return };
        if let Some(Value::Array(ext)) = m.get_mut("extension") {
            ext.retain(|e| e.get("url").and_then(Value::as_str) != Some(SIGNED_AT));
            if ext.is_empty() {
                m.remove("extension");
            }
        }
        if signs {
            let at = json!({"url": SIGNED_AT, "valueInstant": confidant_fhir::instant(self.clock.now_millis())});
            match m.get_mut("extension") {
                Some(Value::Array(ext)) => ext.push(at),
                _ => {
                    m.insert("extension".into(), json!([at]));
                }
            }
            m.insert("docStatus".into(), json!("final"));
        }
    }

    /// A new note in `patient`'s record: not empty, signed (if at all) by its
    /// writer, and an addendum only to a signed note of the same patient that
    /// the writer may read (looked up as a read: a refusal is audited).
    pub(crate) async fn require_new_note_allowed(
        &self,
        p: &Principal,
        patient: &str,
        resource: &mut Value,
        checked: &confidant_fhir::Validated,
    ) -> Result<()> {
        Self::require_note_text(resource)?;
        let facts = Self::note_facts(resource, checked.psychotherapy_note);
        policy::signer_of_new_note(p, facts.signed_by.as_deref()).map_err(refused)?;
        let relations = resource.get("relatesTo").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, r) in relations.iter().enumerate() {
            if r.get("code").and_then(Value::as_str) != Some("appends") {
                return Err(RecordsError::Unprocessable(format!(
                    "relatesTo[{i}].code: only 'appends' (an addendum to a signed note) is supported"
                )));
            }
            let target = r.pointer("/target/reference").and_then(Value::as_str).unwrap_or("");
            let Some(id) = target.strip_prefix("DocumentReference/") else {
                return Err(RecordsError::Unprocessable(format!(
                    "relatesTo[{i}].target must be DocumentReference/{{id}} (the note this one appends to)"
                )));
            };
            let no_such = || {
                RecordsError::Unprocessable(format!(
                    "relatesTo[{i}].target refers to a note that does not exist or is not in your care"
                ))
            };
            let (row, _) = match self.visible_head(p, ResourceType::DocumentReference, id, AuditAction::Read).await {
                Ok(found) => found,
                Err(RecordsError::NotFound(_)) => return Err(no_such()),
                Err(e) => return Err(e),
            };
            let same_patient = row.compartment == patient;
            let original = self.open_record(row).await?;
            let was = Self::note_facts(&original.resource, confidant_fhir::is_psychotherapy_note(&original.resource));
            let reason = resource.get("description").and_then(Value::as_str).is_some_and(|d| !d.trim().is_empty());
            policy::may_append(p, &was, same_patient, &facts, reason).map_err(refused)?;
        }
        self.stamp_signature(resource, facts.signed_by.is_some());
        Ok(())
    }

    /// The next version of a note (after `policy::may_change_note`): not empty,
    /// still appending to what it appended to, stamped if this version signs it.
    pub(crate) fn require_note_version(&self, stored: &Value, resource: &mut Value) -> Result<()> {
        Self::require_note_text(resource)?;
        if relates_to(stored) != relates_to(resource) {
            return Err(RecordsError::Unprocessable(
                "relatesTo cannot change: an addendum stays with the note it appends to".into(),
            ));
        }
        let signs = resource.pointer("/authenticator/reference").is_some();
        self.stamp_signature(resource, signs);
        Ok(())
    }
}
