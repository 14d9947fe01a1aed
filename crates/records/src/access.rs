//! Access: who sees which record (the policy decides, from the caller's
//! relationship to the patient), and the audit entries of every access.
//!
//! * Where is a read audited? [`Records::entry`] builds every record access's
//!   entry; [`Records::audited`] commits it before the data is released.

use std::sync::Arc;

use confidant_audit::{Action as AuditAction, Entry, Outcome, Subscriber};
use confidant_fhir::ResourceType;
use confidant_policy::records::Seen;
use confidant_policy::{self as policy, Action, NoteFacts, Principal, RecordAccess, Relationship, Visibility};
use confidant_store::{AuditRow, ORGANISATION, VersionRow};
use serde_json::Value;

use crate::{Records, RecordsError, Result, STOPPED_BY_DETECTION};

impl Records {
    /// Check the role/scope matrix, or [`RecordsError::Forbidden`].
    pub(crate) fn allow(p: &Principal, rt: ResourceType, action: Action) -> Result<()> {
        policy::allowed(p, rt, action).map_err(|d| RecordsError::Forbidden(d.to_string()))
    }

    /// Does `p` see this stored record? The one place a single record's
    /// visibility is decided (searches get the same rule as SQL).
    pub(crate) async fn sees(&self, p: &Principal, row: &VersionRow) -> Result<Seen> {
        let rt = ResourceType::parse(&row.resource_type).ok_or(RecordsError::Integrity)?;
        let visibility = policy::visibility(p, rt, self.clock.now_millis());
        let rel = self.relationship(&visibility, &row.compartment).await?;
        Ok(Self::seen(&visibility, &Self::access(rt, row), rel))
    }

    pub(crate) fn seen(visibility: &Visibility, access: &RecordAccess<'_>, rel: Relationship) -> Seen {
        policy::records::seen(visibility, access, rel)
    }

    /// The caller's relationship to the patient owning `compartment` (consulted
    /// only for care-team visibility).
    pub(crate) async fn relationship(&self, visibility: &Visibility, compartment: &str) -> Result<Relationship> {
        Ok(match visibility {
            Visibility::CareTeam { practitioner_id, user_id, now } if compartment != ORGANISATION => {
                let (care_team, break_glass) =
                    self.store.relationship(practitioner_id, user_id, compartment, *now).await?;
                Relationship { care_team, break_glass }
            }
            _ => Relationship { care_team: false, break_glass: false },
        })
    }

    pub(crate) fn access(rt: ResourceType, row: &VersionRow) -> RecordAccess<'_> {
        RecordAccess {
            resource_type: rt,
            patient: (row.compartment != ORGANISATION).then_some(row.compartment.as_str()),
            restricted_to: row.restricted_to.as_deref(),
            patient_visible: row.patient_visible,
        }
    }

    /// The current row of a resource the principal may see, else NotFound.
    /// A refusal is audited as `action`.
    pub(crate) async fn visible_head(
        &self,
        p: &Principal,
        rt: ResourceType,
        id: &str,
        action: AuditAction,
    ) -> Result<(VersionRow, Seen)> {
        let not_found = || RecordsError::NotFound(format!("{}/{id}", rt.as_str()));
        if !confidant_fhir::is_valid_id(id) {
            return Err(not_found());
        }
        let absent = |compartment: &str| VersionRow {
            resource_type: rt.as_str().into(),
            id: id.to_owned(),
            version_id: 0,
            compartment: compartment.to_owned(),
            key_version: 0,
            last_updated: 0,
            body: Vec::new(),
            restricted_to: None,
            patient_visible: false,
        };
        // An unknown id takes the same path as a record outside one's care: the
        // relationship is looked up and the refusal audited either way, so the
        // 404 tells nothing by its timing. Nothing is decrypted before access is decided.
        // For care-team visibility the record and the relationship come in one
        // statement (`Store::read_related`), found or not.
        let visibility = policy::visibility(p, rt, self.clock.now_millis());
        let (found, related) = match &visibility {
            Visibility::CareTeam { practitioner_id, user_id, now } => {
                let (row, (care_team, break_glass)) =
                    self.store.read_related(rt.as_str(), id, practitioner_id, user_id, *now).await?;
                (row, Relationship { care_team, break_glass })
            }
            _ => (self.store.read(rt.as_str(), id).await?, Relationship { care_team: false, break_glass: false }),
        };
        let (row, seen) = match found {
            Some(row) => {
                if row.resource_type != rt.as_str() {
                    return Err(RecordsError::Integrity);
                }
                // As `relationship`: organisation records have no patient to be related to.
                let rel = if row.compartment == ORGANISATION {
                    Relationship { care_team: false, break_glass: false }
                } else {
                    related
                };
                let seen = Self::seen(&visibility, &Self::access(rt, &row), rel);
                (row, seen)
            }
            // Audited without a patient: there is none.
            None => (absent(ORGANISATION), Seen::No),
        };
        if seen == Seen::No {
            self.audit_denied(p, action, rt, Some(&row)).await;
            return Err(not_found());
        }
        Ok((row, seen))
    }

    /// For a write: who a note is restricted to (a psychotherapy note: its one
    /// author), and whether the patient sees it.
    pub(crate) fn access_of(
        p: &Principal,
        rt: ResourceType,
        checked: &confidant_fhir::Validated,
        resource: &Value,
    ) -> Result<(Option<String>, bool)> {
        // A measure's answers and score are the patient's to read (their portal, their data).
        if rt.written_by_server() {
            return Ok((None, true));
        }
        if rt != ResourceType::DocumentReference {
            return Ok((None, false));
        }
        if checked.psychotherapy_note {
            policy::records::may_write_psychotherapy_note(p)?;
            let authors = Self::note_facts(resource, true).authors;
            let author = match authors.iter().collect::<Vec<_>>().as_slice() {
                [one] => one.strip_prefix("Practitioner/").filter(|id| confidant_fhir::is_valid_id(id)),
                _ => None,
            };
            let Some(author) = author else {
                return Err(RecordsError::Unprocessable(
                    "a psychotherapy note's author must be one Practitioner".into(),
                ));
            };
            let restricted = (!checked.released_to_care_team).then(|| author.to_owned());
            // A psychotherapy note never appears in the patient portal.
            return Ok((restricted, false));
        }
        Ok((None, checked.shared_with_patient))
    }

    /// Care-team membership grants access, so a clinician may change a patient's
    /// care teams only as a member of one — never on the strength of a break-glass,
    /// which would turn a one-hour exception into permanent access.
    pub(crate) async fn require_care_team_for_care_team_change(
        &self,
        p: &Principal,
        rt: ResourceType,
        patient: &str,
    ) -> Result<()> {
        if !policy::records::care_team_change_needs_membership(p, rt) {
            return Ok(());
        }
        let practitioner = p.practitioner_id.as_deref().unwrap_or("");
        let (care_team, _) =
            self.store.relationship(practitioner, &p.user_id, patient, self.clock.now_millis()).await?;
        Ok(policy::records::may_change_care_teams(p, rt, care_team)?)
    }

    /// What of a note decides who reads it (authors, security labels), for the policy.
    pub(crate) fn note_facts(resource: &Value, psychotherapy: bool) -> NoteFacts {
        fn items(v: Option<&Value>) -> &[Value] {
            v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
        }
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        NoteFacts {
            authors: items(resource.get("author"))
                .iter()
                .filter_map(|r| r.get("reference").and_then(Value::as_str).map(str::to_owned))
                .collect(),
            // Security labels, and the sharing tags (shared with the patient, released
            // to the care team): both decide who reads the note.
            labels: items(resource.get("meta").and_then(|m| m.get("security")))
                .iter()
                .chain(
                    items(resource.get("meta").and_then(|m| m.get("tag")))
                        .iter()
                        .filter(|t| t.get("system").and_then(Value::as_str) == Some(confidant_fhir::SHARING_SYSTEM)),
                )
                .map(|c| (text(c, "system"), text(c, "code")))
                .collect(),
            psychotherapy,
            signed_by: resource.pointer("/authenticator/reference").and_then(Value::as_str).map(str::to_owned),
            cosigner: crate::notes::reference_extension(resource, crate::notes::COSIGN_REQUIRED_BY),
            cosigned_by: crate::notes::reference_extension(resource, crate::notes::COSIGNED_BY),
        }
    }

    /// A new note's author is the clinician writing it (the policy refuses any other).
    pub(crate) fn set_author_of_new_note(p: &Principal, resource: &mut Value) -> Result<()> {
        let requested = Self::note_facts(resource, false).authors;
        let own = policy::author_of_new_note(p, &requested).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        if let Value::Object(m) = resource {
            m.insert("author".into(), serde_json::json!([{"reference": own}]));
        }
        Ok(())
    }

    /// May `p` make `resource` the next version of the note `current`? A
    /// signed note is locked; its authors and labels are its author's to
    /// change (a psychotherapy note, all of it). An update that leaves `author` out keeps the note's authors.
    pub(crate) async fn require_note_change_allowed(
        &self,
        p: &Principal,
        current: &VersionRow,
        resource: &mut Value,
        checked: &confidant_fhir::Validated,
    ) -> Result<()> {
        let stored = self.open_record(current.clone()).await?;
        let was = Self::note_facts(&stored.resource, confidant_fhir::is_psychotherapy_note(&stored.resource));
        if let (Value::Object(m), Some(authors)) = (&mut *resource, stored.resource.get("author"))
            && !m.contains_key("author")
        {
            m.insert("author".into(), authors.clone());
        }
        // A co-signature: the signed note as it is, with only the co-signer added.
        if Self::adds_cosignature(&stored.resource, resource) {
            policy::may_cosign(p, &was).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
            if !Self::is_cosignature(&stored.resource, resource) {
                return Err(RecordsError::Unprocessable(
                    "a co-signature changes nothing else of the note: send the note as it is with the co-signer added"
                        .into(),
                ));
            }
            self.stamp_cosignature(p, resource);
            return Ok(());
        }
        let proposed = Self::note_facts(resource, checked.psychotherapy_note);
        policy::may_change_note(p, &was, &proposed).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        self.require_note_version(p, &stored.resource, resource, checked.psychotherapy_note).await
    }

    /// The audit entry of `p` doing `action` on `row`: ids only (DESIGN.md §5).
    pub(crate) fn entry(
        &self,
        p: &Principal,
        action: AuditAction,
        outcome: Outcome,
        row: Option<&VersionRow>,
        seen: Seen,
    ) -> Entry {
        let mut e = Entry::new(self.clock.now_millis(), action, outcome);
        e.actor = Some(p.user_id.clone());
        e.role = Some(p.role.as_str().to_owned());
        e.source = p.source.clone();
        if let Some(row) = row {
            // A refused create has no id yet: the type alone.
            e.resource = Some(if row.id.is_empty() {
                row.resource_type.clone()
            } else {
                format!("{}/{}", row.resource_type, row.id)
            });
            e.version = (row.version_id > 0).then_some(row.version_id);
            e.patient = (row.compartment != ORGANISATION).then(|| row.compartment.clone());
        }
        if seen == Seen::ByBreakGlass {
            e.purpose = Some("break-glass".into());
        }
        e
    }

    /// Open the rows found for `p`, each with its audit entry of `action`
    /// (`via_break_glass` marks it so), to be committed by [`Records::audited`]
    /// before release. An altered row is left out (logged by id and alerted
    /// by `open_record`): how many were is the third value.
    pub(crate) async fn open_found(
        &self,
        p: &Principal,
        action: AuditAction,
        rows: Vec<(VersionRow, bool)>,
    ) -> Result<(Vec<crate::Stored>, Vec<Entry>, i64)> {
        let (mut opened, mut audit, mut skipped) = (Vec::with_capacity(rows.len()), Vec::new(), 0);
        for (row, via_break_glass) in rows {
            let seen = if via_break_glass { Seen::ByBreakGlass } else { Seen::Yes };
            let entry = self.entry(p, action, Outcome::Success, Some(&row), seen);
            match self.open_record(row).await {
                Ok(stored) => {
                    audit.push(entry);
                    opened.push(stored);
                }
                Err(RecordsError::Integrity) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((opened, audit, skipped))
    }

    /// Append the entries of an access and wait for their commit; only then
    /// is `value` released. No audit entry, no data (fail closed).
    /// Before that, the detector counts the response's patients: one that
    /// would take a stolen session past the bulk-patients threshold is
    /// refused whole, and the user's sessions and tokens are locked, before
    /// any of it leaves.
    pub(crate) async fn audited<T>(&self, p: &Principal, entries: &[Entry], value: T) -> Result<T> {
        if let Some(d) = &self.subscriber
            && d.admit(p.credential.as_deref(), entries).await < entries.len()
        {
            return Err(RecordsError::Forbidden(STOPPED_BY_DETECTION.into()));
        }
        match self.auditor.append(entries).await {
            Ok(()) => {
                self.observe(p.credential.as_deref(), entries).await;
                Ok(value)
            }
            Err(e) => {
                tracing::error!(error = %e, "audit append failed: the requested data is withheld");
                Err(RecordsError::AuditFailed)
            }
        }
    }

    /// Record a refused access. The caller returns its own error either way.
    pub(crate) async fn audit_denied(
        &self,
        p: &Principal,
        action: AuditAction,
        rt: ResourceType,
        row: Option<&VersionRow>,
    ) {
        let mut e = self.entry(p, action, Outcome::Denied, row, Seen::Yes);
        e.resource.get_or_insert_with(|| rt.as_str().to_owned());
        match self.auditor.append(std::slice::from_ref(&e)).await {
            Ok(()) => self.observe(p.credential.as_deref(), &[e]).await,
            Err(err) => tracing::error!(error = %err, "audit append of a refused access failed"),
        }
    }

    /// The role/scope check of [`Records::allow`], with refusals audited.
    pub(crate) async fn permit(
        &self,
        p: &Principal,
        rt: ResourceType,
        action: Action,
        audit: AuditAction,
    ) -> Result<()> {
        let r = Self::allow(p, rt, action);
        if r.is_err() {
            self.audit_denied(p, audit, rt, None).await;
        }
        r
    }

    /// Note entries committed inside a record write's transaction (and show
    /// them to the detector).
    pub(crate) async fn committed(&self, p: Option<&Principal>, audit: &[AuditRow]) {
        self.auditor.appended(audit.len() as u64);
        if let (Some(p), Some(_)) = (p, &self.subscriber) {
            let entries: Vec<Entry> = audit.iter().filter_map(|r| Entry::parse(&r.entry)).collect();
            self.observe(p.credential.as_deref(), &entries).await;
        }
    }

    /// Publish committed entries to the subscriber (the detector), if one
    /// watches (`credential`: the session or token of the request, for rules
    /// that lock it). Awaited: a lock holds for the very next request.
    pub async fn observe(&self, credential: Option<&str>, entries: &[Entry]) {
        if let Some(d) = &self.subscriber {
            d.committed(credential, entries).await;
        }
    }

    /// A records service on the same store, keyring (and its key cache),
    /// clock and audit log as this one, with `subscriber` (the detector)
    /// watching every access made through it. Given at construction: there is
    /// no later registration and no reference back from the detector.
    pub fn with_subscriber(&self, subscriber: Arc<dyn Subscriber>) -> Records {
        Records {
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            clock: self.clock.clone(),
            auditor: self.auditor.clone(),
            subscriber: Some(subscriber),
            bookings: self.bookings.clone(),
            honey: self.honey.clone(),
            shows_honey: self.shows_honey,
        }
    }
}
