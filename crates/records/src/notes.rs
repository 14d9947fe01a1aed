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
/// Who must co-sign a trainee's signed note (`valueReference` to their
/// supervisor's Practitioner; set by the server at signing, never by a client).
pub const COSIGN_REQUIRED_BY: &str = "urn:confidant:cosign-required-by";
/// Who co-signed the note (`valueReference`) and when (`valueInstant`; the server's time).
pub const COSIGNED_BY: &str = "urn:confidant:cosigned-by";
pub const COSIGNED_AT: &str = "urn:confidant:cosigned-at";

/// The extensions only the server sets: whatever a client sends of them is dropped.
const SERVER_EXTENSIONS: [&str; 4] = [SIGNED_AT, COSIGN_REQUIRED_BY, COSIGNED_BY, COSIGNED_AT];

/// The `valueReference.reference` of the note's extension `url`, if it has one.
pub(crate) fn reference_extension(resource: &Value, url: &str) -> Option<String> {
    resource
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))?
        .pointer("/valueReference/reference")?
        .as_str()
        .map(str::to_owned)
}

fn push_extension(resource: &mut Value, ext: Value) {
    let Value::Object(m) = resource else { return };
    match m.get_mut("extension") {
        Some(Value::Array(list)) => list.push(ext),
        _ => {
            m.insert("extension".into(), json!([ext]));
        }
    }
}

/// `resource` without what a co-signature adds and what the server stamps on every version.
fn without_cosignature(resource: &Value) -> Value {
    let mut r = resource.clone();
    if let Value::Object(m) = &mut r {
        if let Some(Value::Object(meta)) = m.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
        }
        if let Some(Value::Array(ext)) = m.get_mut("extension") {
            ext.retain(|e| {
                let url = e.get("url").and_then(Value::as_str);
                url != Some(COSIGNED_BY) && url != Some(COSIGNED_AT)
            });
            if ext.is_empty() {
                m.remove("extension");
            }
        }
    }
    r
}

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
    /// signs the note; never what a client sent. A signed note is final. A
    /// trainee's signed note names the supervisor who must co-sign it
    /// (`cosigner`, `Practitioner/{id}`).
    pub(crate) fn stamp_signature(&self, resource: &mut Value, signs: bool, cosigner: Option<String>) {
        let Value::Object(m) = resource else { return };
        if let Some(Value::Array(ext)) = m.get_mut("extension") {
            ext.retain(|e| !e.get("url").and_then(Value::as_str).is_some_and(|u| SERVER_EXTENSIONS.contains(&u)));
            if ext.is_empty() {
                m.remove("extension");
            }
        }
        if signs {
            m.insert("docStatus".into(), json!("final"));
            let at = json!({"url": SIGNED_AT, "valueInstant": confidant_fhir::instant(self.clock.now_millis())});
            push_extension(resource, at);
            if let Some(c) = cosigner {
                push_extension(resource, json!({"url": COSIGN_REQUIRED_BY, "valueReference": {"reference": c}}));
            }
        }
    }

    /// The supervisor who must co-sign what `p` signs (`Practitioner/{id}`), if
    /// `p` is in training. A psychotherapy note is its author's alone to read
    /// (nobody else may, a supervisor neither), so it asks for no co-signature.
    async fn cosigner_for(&self, p: &Principal, psychotherapy: bool) -> Result<Option<String>> {
        let Some(me) = p.practitioner_id.as_deref() else { return Ok(None) };
        if psychotherapy {
            return Ok(None);
        }
        Ok(self.store.supervisor_of(me).await?.map(|s| format!("Practitioner/{s}")))
    }

    /// Does `proposed` add a co-signature that `stored` does not have (a co-sign request)?
    pub(crate) fn adds_cosignature(stored: &Value, proposed: &Value) -> bool {
        reference_extension(proposed, COSIGNED_BY).is_some() && reference_extension(stored, COSIGNED_BY).is_none()
    }

    /// Is `proposed` the note `stored` with nothing but a co-signature added?
    pub(crate) fn is_cosignature(stored: &Value, proposed: &Value) -> bool {
        Self::adds_cosignature(stored, proposed) && without_cosignature(stored) == without_cosignature(proposed)
    }

    /// The co-signature of `p` (after `policy::may_cosign`): in their own name, at the server's time.
    pub(crate) fn stamp_cosignature(&self, p: &Principal, resource: &mut Value) {
        *resource = without_cosignature(resource);
        let me = p.practitioner_id.as_deref().map(|id| format!("Practitioner/{id}")).unwrap_or_default();
        push_extension(resource, json!({"url": COSIGNED_BY, "valueReference": {"reference": me}}));
        let at = json!({"url": COSIGNED_AT, "valueInstant": confidant_fhir::instant(self.clock.now_millis())});
        push_extension(resource, at);
    }

    /// After a note version is committed: a trainee's note waiting for its
    /// co-signature goes on the supervisor's list, a co-signed one comes off it
    /// (the list is a convenience: the note itself says what it waits for).
    pub(crate) async fn note_saved(&self, id: &str, patient: &str, resource: &Value) {
        let done = reference_extension(resource, COSIGNED_BY).is_some();
        let waiting = reference_extension(resource, COSIGN_REQUIRED_BY);
        let r = match (done, waiting.as_deref().and_then(|w| w.strip_prefix("Practitioner/"))) {
            (true, _) => self.store.cosigned(id, self.clock.now_millis()).await,
            (false, Some(s)) => self.store.request_cosign(id, patient, s, self.clock.now_millis()).await,
            (false, None) => Ok(()),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, note = id, "the co-sign list could not be updated");
        }
    }

    /// The signed notes waiting for `p`'s co-signature (as `p` reads them: each read audited;
    /// one `p` may no longer read is left out).
    pub async fn notes_to_cosign(&self, p: &Principal) -> Result<Vec<crate::Stored>> {
        let Some(me) = p.practitioner_id.as_deref() else { return Ok(Vec::new()) };
        if p.role != confidant_policy::Role::Clinician {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for row in self.store.cosign_requests_for(me).await? {
            match self.read(p, ResourceType::DocumentReference, &row.note_id).await {
                Ok(n) if reference_extension(&n.resource, COSIGNED_BY).is_none() => out.push(n),
                Ok(_) | Err(RecordsError::NotFound(_)) | Err(RecordsError::Forbidden(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The supervisor (Practitioner id) of the clinician `trainee`, if any.
    pub async fn supervisor_of(&self, trainee: &str) -> Result<Option<String>> {
        Ok(self.store.supervisor_of(trainee).await?)
    }

    /// Every supervision, as (trainee, supervisor) Practitioner ids.
    pub async fn supervisions(&self, p: &Principal) -> Result<Vec<(String, String)>> {
        policy::may_manage_templates(p).map_err(refused)?;
        Ok(self.store.supervisions().await?)
    }

    /// Put the clinician `trainee` in training under `supervisor` (Practitioner
    /// ids; `None` ends it), audited as an update of `Supervision/{trainee}`.
    /// Admins only, and nobody supervises themselves.
    pub async fn set_supervisor(&self, p: &Principal, trainee: &str, supervisor: Option<&str>) -> Result<()> {
        policy::may_manage_templates(p).map_err(refused)?;
        if supervisor == Some(trainee) {
            return Err(RecordsError::Invalid("a clinician cannot supervise themselves".into()));
        }
        let mut e =
            self.entry(p, AuditAction::Update, confidant_audit::Outcome::Success, None, policy::records::Seen::Yes);
        e.resource = Some(format!("Supervision/{trainee}"));
        self.store.set_supervisor(trainee, supervisor, self.clock.now_millis(), &[e.to_row()]).await?;
        self.auditor.appended(1);
        Ok(())
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
        let cosigner = match facts.signed_by {
            Some(_) => self.cosigner_for(p, checked.psychotherapy_note).await?,
            None => None,
        };
        self.stamp_signature(resource, facts.signed_by.is_some(), cosigner);
        Ok(())
    }

    /// The next version of a note (after `policy::may_change_note`): not empty,
    /// still appending to what it appended to, stamped if this version signs it.
    pub(crate) async fn require_note_version(
        &self,
        p: &Principal,
        stored: &Value,
        resource: &mut Value,
        psychotherapy: bool,
    ) -> Result<()> {
        Self::require_note_text(resource)?;
        if relates_to(stored) != relates_to(resource) {
            return Err(RecordsError::Unprocessable(
                "relatesTo cannot change: an addendum stays with the note it appends to".into(),
            ));
        }
        let signs = resource.pointer("/authenticator/reference").is_some();
        let cosigner = if signs { self.cosigner_for(p, psychotherapy).await? } else { None };
        self.stamp_signature(resource, signs, cosigner);
        Ok(())
    }
}
