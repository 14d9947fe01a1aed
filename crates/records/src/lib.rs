//! The records service: where FHIR resources are validated, sealed, stored,
//! found and opened. The one place that joins the vault and the store.
//!
//! * Where is a record encrypted, decrypted, blinded? In the keyring
//!   ([`confidant_keyring`]), reached through [`Records::keyring`].
//!
//! The access-control and audit issues hook in here: every read, search hit
//! and write of a patient's data passes through one method of [`Records`].
#![forbid(unsafe_code)]

mod alerts;
mod audit_view;
mod honey;
mod incident;
mod key_status;
pub mod rotation;
mod text;

pub use audit_view::{ACTION_SYSTEM, AuditPage, AuditQuery};
pub use incident::{Accesses, IncidentQuery, IncidentReport};
pub use key_status::{KekVersion, KeyStatus, kek_made_at, kek_made_setting};
pub use text::{visible_len, visible_text};

use std::sync::Arc;

use confidant_audit::{Action as AuditAction, Auditor, Entry, Outcome};
use confidant_fhir::{ResourceType, SearchParam, ValueKind, search_params};
use confidant_keyring::{InstanceKeys, Keyring, KeyringError};
use confidant_policy::records::{Refused, Seen};
use confidant_policy::{self as policy, Action, NoteFacts, Principal, RecordAccess, Relationship, Visibility};
use confidant_store::{
    AuditRow, CareTeamMember, Criterion, ORGANISATION, SearchToken, Store, StoreError, VersionRow, Write,
};
use confidant_vault::{BlindKind, DataKey, Vault, VaultError};
use serde_json::Value;

/// Errors of the records service. Messages name ids and elements, never content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but against a rule of the server (e.g. a subject that does not exist).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotSupported(String),
    /// The principal's role or token scope does not allow this action.
    #[error("{0}")]
    Forbidden(String),
    #[error("version conflict: the resource is at version {current}, not the version in If-Match")]
    PreconditionFailed { current: i64 },
    #[error("conflict: the resource was changed concurrently; read it again and retry")]
    Conflict,
    #[error("stored data failed its integrity check")]
    Integrity,
    #[error("the key-encryption key does not match this instance's data")]
    WrongKey,
    #[error("instance is not initialised: {0}")]
    NotInitialised(&'static str),
    /// The access could not be recorded in the audit log, so it was not given.
    #[error("the access could not be recorded in the audit log, so nothing was returned; try again later")]
    AuditFailed,
    #[error(transparent)]
    Store(StoreError),
    #[error("key error: {0}")]
    Vault(VaultError),
}

/// What a request stopped by breach detection is told (the same for every such request).
pub const STOPPED_BY_DETECTION: &str = "stopped by breach detection: this account opened more patients' records \
     than the clinic allows within a short time, so its sessions and tokens were ended and the clinic's \
     administrators alerted; ask them to check and unlock it";

impl From<StoreError> for RecordsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => RecordsError::Conflict,
            other => RecordsError::Store(other),
        }
    }
}

impl From<Refused> for RecordsError {
    fn from(r: Refused) -> Self {
        RecordsError::Forbidden(r.to_string())
    }
}

impl From<KeyringError> for RecordsError {
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::Integrity => RecordsError::Integrity,
            KeyringError::WrongKey => RecordsError::WrongKey,
            KeyringError::NotInitialised(what) => RecordsError::NotInitialised(what),
            KeyringError::Store(e) => e.into(),
            KeyringError::Vault(e) => RecordsError::Vault(e),
        }
    }
}

pub type Result<T, E = RecordsError> = std::result::Result<T, E>;

/// The source of time (defined by the audit log, which stamps every entry with it).
pub use confidant_audit::{Clock, SystemClock};

/// A resource as the API returns it (decrypted, in memory only).
#[derive(Debug, Clone)]
pub struct Stored {
    pub resource_type: ResourceType,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub resource: Value,
}

/// A search: `(parameter, value)` pairs ANDed (commas within a value OR),
/// at most `count` results after the opaque cursor `after`.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub params: Vec<(String, String)>,
    pub count: i64,
    pub after: Option<String>,
}

/// One page of search results.
#[derive(Debug)]
pub struct SearchPage {
    pub entries: Vec<Stored>,
    pub total: i64,
    /// The cursor for the next page, if there is one.
    pub next_after: Option<String>,
}

/// One answer for "no such patient" and "not your patient": ids are not probed.
const NOT_IN_CARE: &str = "subject refers to a Patient that does not exist or is not in your care";

const MAX_SEARCH_PARAMS: usize = 20;
const MAX_SEARCH_VALUES: usize = 100;

const SETTING_INSTANCE_ID: &str = "instance_id";

/// The records service.
pub struct Records {
    store: Store,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    auditor: Arc<Auditor>,
    detector: std::sync::OnceLock<Arc<confidant_detect::Detector>>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Records({:?}, {:?})", self.store, self.keyring.vault())
    }
}

fn blind_kind(kind: ValueKind) -> BlindKind {
    match kind {
        ValueKind::Text => BlindKind::Text,
        ValueKind::Identifier => BlindKind::Identifier,
        ValueKind::Date => BlindKind::Date,
        ValueKind::Email => BlindKind::Email,
        ValueKind::Phone => BlindKind::Phone,
    }
}

/// The instance id recorded in a store, if it has been initialised.
pub async fn instance_id(store: &Store) -> Result<Option<String>> {
    Ok(store.setting(SETTING_INSTANCE_ID).await?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Set up a new, empty, migrated store for `instance_id`: the blind-index key
/// and the organisation's data key, both wrapped by the vault's KEK.
pub async fn initialise(store: &Store, vault: &Vault, instance_id: &str, now: i64) -> Result<()> {
    let keys = InstanceKeys::new(vault)?;
    store.insert_setting(SETTING_INSTANCE_ID, instance_id.as_bytes(), now).await?;
    keys.store(store, now).await?;
    Ok(())
}

impl Records {
    /// Open the records of an initialised store. Fails with
    /// [`RecordsError::WrongKey`] if the vault's KEK is not this instance's.
    /// Starts the audit log's group-commit appender (inside a Tokio runtime).
    pub async fn open(store: Store, vault: Vault, clock: Arc<dyn Clock>) -> Result<Records> {
        let auditor = Arc::new(Auditor::start(store.clone()));
        Records::open_with_auditor(store, vault, clock, auditor).await
    }

    /// [`Records::open`] with a given auditor.
    pub async fn open_with_auditor(
        store: Store,
        vault: Vault,
        clock: Arc<dyn Clock>,
        auditor: Arc<Auditor>,
    ) -> Result<Records> {
        let keyring = Arc::new(Keyring::open(store.clone(), vault).await?);
        Ok(Records { store, keyring, clock, auditor, detector: std::sync::OnceLock::new() })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The audit log's appender (the identity service records security events through it).
    pub fn auditor(&self) -> &Arc<Auditor> {
        &self.auditor
    }

    pub fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    /// Where envelopes are sealed and opened and values blinded (the identity
    /// service's secrets too).
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    // ----- sealing --------------------------------------------------------------------

    /// One resource version, serialised and sealed by the keyring.
    fn seal_body(
        &self,
        key: &DataKey,
        rt: ResourceType,
        id: &str,
        version: i64,
        compartment: &str,
        resource: &Value,
    ) -> Result<Vec<u8>> {
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(resource).map_err(|_| RecordsError::Integrity)?);
        Ok(self.keyring.seal_version(key, rt.as_str(), id, version, compartment, &plaintext)?)
    }

    /// Decrypt one stored version (the keyring opens it). A record
    /// that fails its integrity check is a security event: logged by id (never
    /// content) and raised as an alert.
    async fn open_record(&self, row: VersionRow) -> Result<Stored> {
        let resource = format!("{}/{}", row.resource_type, row.id);
        let opened = self.open_record_unchecked(row).await;
        if matches!(opened, Err(RecordsError::Integrity))
            && let Some(d) = self.detector.get()
        {
            d.integrity_failure(self.clock.now_millis(), &resource).await;
        }
        opened
    }

    async fn open_record_unchecked(&self, row: VersionRow) -> Result<Stored> {
        let rt = ResourceType::parse(&row.resource_type).ok_or(RecordsError::Integrity)?;
        let plaintext = self.keyring.open_version(&row).await?;
        let resource: Value = serde_json::from_slice(&plaintext).map_err(|_| RecordsError::Integrity)?;
        Ok(Stored {
            resource_type: rt,
            id: row.id,
            version_id: row.version_id,
            last_updated: row.last_updated,
            resource,
        })
    }

    /// Blind tokens for the validated search values of a resource.
    fn tokens(&self, rt: ResourceType, index: &[(&'static str, ValueKind, String)]) -> Vec<SearchToken> {
        self.keyring
            .tokens(rt.as_str(), index.iter().map(|(param, kind, value)| (*param, blind_kind(*kind), value.as_str())))
    }

    fn stamp(resource: &mut Value, id: &str, version: i64, now: i64) {
        if let Value::Object(m) = resource {
            m.insert("id".into(), Value::String(id.to_owned()));
            let meta = m.entry("meta").or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(meta) = meta {
                meta.insert("versionId".into(), Value::String(version.to_string()));
                meta.insert("lastUpdated".into(), Value::String(confidant_fhir::instant(now)));
            }
        }
    }

    async fn compartment_for(&self, rt: ResourceType, id: &str, subject: Option<&str>) -> Result<String> {
        match (rt, subject) {
            (ResourceType::Patient, _) => Ok(id.to_owned()),
            (ResourceType::Practitioner, _) => Ok(ORGANISATION.to_owned()),
            // Whether the patient exists is checked with the caller's relationship
            // to them (`create`), so that both refusals take the same path.
            (_, Some(patient)) => Ok(patient.to_owned()),
            (_, None) => Err(RecordsError::Invalid("subject is required".into())),
        }
    }

    // ----- access --------------------------------------------------------------------

    /// Check the role/scope matrix, or [`RecordsError::Forbidden`].
    fn allow(p: &Principal, rt: ResourceType, action: Action) -> Result<()> {
        policy::allowed(p, rt, action).map_err(|d| RecordsError::Forbidden(d.to_string()))
    }

    /// Does `p` see this stored record? The one place a single record's
    /// visibility is decided (searches get the same rule as SQL).
    async fn sees(&self, p: &Principal, row: &VersionRow) -> Result<Seen> {
        let rt = ResourceType::parse(&row.resource_type).ok_or(RecordsError::Integrity)?;
        let visibility = policy::visibility(p, rt, self.clock.now_millis());
        let rel = self.relationship(&visibility, &row.compartment).await?;
        Ok(Self::seen(&visibility, &Self::access(rt, row), rel))
    }

    fn seen(visibility: &Visibility, access: &RecordAccess<'_>, rel: Relationship) -> Seen {
        policy::records::seen(visibility, access, rel)
    }

    /// The caller's relationship to the patient owning `compartment` (consulted
    /// only for care-team visibility).
    async fn relationship(&self, visibility: &Visibility, compartment: &str) -> Result<Relationship> {
        Ok(match visibility {
            Visibility::CareTeam { practitioner_id, user_id, now } if compartment != ORGANISATION => {
                let (care_team, break_glass) =
                    self.store.relationship(practitioner_id, user_id, compartment, *now).await?;
                Relationship { care_team, break_glass }
            }
            _ => Relationship { care_team: false, break_glass: false },
        })
    }

    fn access(rt: ResourceType, row: &VersionRow) -> RecordAccess<'_> {
        RecordAccess {
            resource_type: rt,
            patient: (row.compartment != ORGANISATION).then_some(row.compartment.as_str()),
            restricted_to: row.restricted_to.as_deref(),
            patient_visible: row.patient_visible,
        }
    }

    fn visibility_criterion(p: &Principal, rt: ResourceType, now: i64) -> Option<Criterion> {
        match policy::visibility(p, rt, now) {
            Visibility::All => None,
            Visibility::CareTeam { practitioner_id, user_id, now } => {
                Some(Criterion::CareTeam { practitioner_id, user_id, now })
            }
            Visibility::OwnRecord { patient_id } => Some(Criterion::OwnRecord { patient_id }),
        }
    }

    /// For a write: who a note is restricted to (a psychotherapy note: its one
    /// author), and whether the patient sees it.
    fn access_of(
        p: &Principal,
        rt: ResourceType,
        checked: &confidant_fhir::Validated,
        resource: &Value,
    ) -> Result<(Option<String>, bool)> {
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
    async fn require_care_team_for_care_team_change(
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
    fn note_facts(resource: &Value, psychotherapy: bool) -> NoteFacts {
        fn items(v: Option<&Value>) -> &[Value] {
            v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
        }
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        NoteFacts {
            authors: items(resource.get("author"))
                .iter()
                .filter_map(|r| r.get("reference").and_then(Value::as_str).map(str::to_owned))
                .collect(),
            labels: items(resource.get("meta").and_then(|m| m.get("security")))
                .iter()
                .map(|c| (text(c, "system"), text(c, "code")))
                .collect(),
            psychotherapy,
        }
    }

    /// A new note's author is the clinician writing it (the policy refuses any other).
    fn set_author_of_new_note(p: &Principal, resource: &mut Value) -> Result<()> {
        let requested = Self::note_facts(resource, false).authors;
        let own = policy::author_of_new_note(p, &requested).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        if let Value::Object(m) = resource {
            m.insert("author".into(), serde_json::json!([{"reference": own}]));
        }
        Ok(())
    }

    /// May `p` make `resource` the next version of the note `current`? Its
    /// authors and labels are its author's to change (a psychotherapy note,
    /// all of it). An update that leaves `author` out keeps the note's authors.
    async fn require_note_change_allowed(
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
        let proposed = Self::note_facts(resource, checked.psychotherapy_note);
        policy::may_change_note(p, &was, &proposed).map_err(|d| RecordsError::Forbidden(d.to_string()))
    }

    // ----- audit ----------------------------------------------------------------------

    /// The audit entry of `p` doing `action` on `row`: ids only (DESIGN.md §5).
    fn entry(
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

    /// Append the entries of an access and wait for their commit; only then
    /// is `value` released. No audit entry, no data (fail closed).
    /// Before that, the detector counts the response's patients: one that
    /// would take a stolen session past the bulk-patients threshold is
    /// refused whole, and the user's sessions and tokens are locked, before
    /// any of it leaves.
    async fn audited<T>(&self, p: &Principal, entries: &[Entry], value: T) -> Result<T> {
        if let Some(d) = self.detector.get()
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
    async fn audit_denied(&self, p: &Principal, action: AuditAction, rt: ResourceType, row: Option<&VersionRow>) {
        let mut e = self.entry(p, action, Outcome::Denied, row, Seen::Yes);
        e.resource.get_or_insert_with(|| rt.as_str().to_owned());
        match self.auditor.append(std::slice::from_ref(&e)).await {
            Ok(()) => self.observe(p.credential.as_deref(), &[e]).await,
            Err(err) => tracing::error!(error = %err, "audit append of a refused access failed"),
        }
    }

    /// The role/scope check of [`Records::allow`], with refusals audited.
    async fn permit(&self, p: &Principal, rt: ResourceType, action: Action, audit: AuditAction) -> Result<()> {
        let r = Self::allow(p, rt, action);
        if r.is_err() {
            self.audit_denied(p, audit, rt, None).await;
        }
        r
    }

    /// Note entries committed inside a record write's transaction (and show
    /// them to the detector).
    async fn committed(&self, p: Option<&Principal>, audit: &[AuditRow]) {
        self.auditor.appended(audit.len() as u64);
        if let (Some(p), Some(_)) = (p, self.detector.get()) {
            let entries: Vec<Entry> = audit.iter().filter_map(|r| Entry::parse(&r.entry)).collect();
            self.observe(p.credential.as_deref(), &entries).await;
        }
    }

    /// Show committed entries to the detector, if one watches (`credential`:
    /// the session or token of the request, for rules that lock it).
    pub async fn observe(&self, credential: Option<&str>, entries: &[Entry]) {
        if let Some(d) = self.detector.get() {
            d.observe(credential, entries).await;
        }
    }

    /// Let `detector` watch every access from now on (once).
    pub fn set_detector(&self, detector: Arc<confidant_detect::Detector>) {
        let _ = self.detector.set(detector);
    }

    // ----- operations -----------------------------------------------------------------

    /// Create a resource with a new random id (FHIR create).
    pub async fn create(&self, p: &Principal, rt: ResourceType, mut resource: Value) -> Result<Stored> {
        self.permit(p, rt, Action::Write, AuditAction::Create).await?;
        let checked =
            confidant_fhir::validate(rt, &mut resource, self.clock.now_millis()).map_err(RecordsError::Invalid)?;
        if rt == ResourceType::DocumentReference {
            Self::set_author_of_new_note(p, &mut resource)?;
        }
        let id = confidant_vault::random_id().map_err(RecordsError::Vault)?;
        let compartment = self.compartment_for(rt, &id, checked.subject_patient.as_deref()).await?;
        // Writing into a patient's record needs the same relationship as reading it.
        let mut seen = Seen::Yes;
        if rt.has_subject() {
            let probe = VersionRow {
                resource_type: ResourceType::Patient.as_str().into(),
                id: compartment.clone(),
                version_id: 0,
                compartment: compartment.clone(),
                key_version: 0,
                last_updated: 0,
                body: Vec::new(),
                restricted_to: None,
                patient_visible: false,
            };
            // A patient who does not exist and one outside the caller's care are
            // refused alike: looked up, related, audited (timing tells nothing).
            let exists = self.store.compartment_of("Patient", &compartment).await?.is_some();
            seen = self.sees(p, &probe).await?;
            if !exists || seen == Seen::No {
                // The refusal names the patient: it belongs in their access log (if they exist).
                let owner = if exists { compartment.clone() } else { ORGANISATION.to_owned() };
                let target =
                    VersionRow { resource_type: rt.as_str().into(), id: String::new(), compartment: owner, ..probe };
                self.audit_denied(p, AuditAction::Create, rt, Some(&target)).await;
                return Err(RecordsError::Unprocessable(NOT_IN_CARE.into()));
            }
            self.require_care_team_for_care_team_change(p, rt, &compartment).await?;
        }
        // A clinician's new patient gets a care team: the token must allow writing one.
        if policy::records::care_team_of_new_record(p, rt).is_some() {
            Self::allow(p, ResourceType::CareTeam, Action::Write)?;
        }
        let (restricted_to, patient_visible) = Self::access_of(p, rt, &checked, &resource)?;
        let now = self.clock.now_millis();
        let members = Self::members(&checked);
        // Sealed again, once, if a key rotation replaced the patient's key meanwhile.
        let mut retried = false;
        let (key, new_key, audit) = loop {
            let (key, new_key) = if rt == ResourceType::Patient {
                let (key, row) = self.keyring.new_compartment_key(&compartment)?;
                (key, Some(row))
            } else {
                (self.keyring.current_key(&compartment).await?, None)
            };
            Self::stamp(&mut resource, &id, 1, now);
            let body = self.seal_body(&key, rt, &id, 1, &compartment, &resource)?;
            let row =
                Self::version_row(rt, &id, 1, &compartment, &key, now, body, (restricted_to.clone(), patient_visible));
            let care_team = (rt == ResourceType::CareTeam).then_some(members.as_slice());
            let tokens = self.tokens(rt, &checked.index);
            let write = Write { row: &row, tokens: &tokens, new_key: new_key.as_ref(), care_team };
            // A clinician who registers a patient is put on that patient's care team,
            // in the same transaction: never a patient that nobody can see.
            let team = match policy::records::care_team_of_new_record(p, rt) {
                Some(practitioner) => Some(self.new_care_team_row(&id, practitioner, &key, now)?),
                None => None,
            };
            let mut audit = vec![self.entry(p, AuditAction::Create, Outcome::Success, Some(&row), seen).to_row()];
            let stored = match &team {
                Some((team_row, members)) => {
                    audit.push(self.entry(p, AuditAction::Create, Outcome::Success, Some(team_row), seen).to_row());
                    let team_write = Write { row: team_row, tokens: &[], new_key: None, care_team: Some(members) };
                    self.store.create_all(&[write, team_write], &audit).await
                }
                None => self.store.create_all(&[write], &audit).await,
            };
            match stored {
                Ok(()) => break (key, new_key, audit),
                Err(StoreError::StaleKey) if !retried => {
                    retried = true;
                    self.keyring.forget_current_key(&compartment);
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.committed(Some(p), &audit).await;
        if let Some(k) = new_key {
            self.keyring.stored_new_key(&compartment, k.version, key);
        }
        Ok(Stored { resource_type: rt, id, version_id: 1, last_updated: now, resource })
    }

    /// The stored form of one sealed version.
    #[allow(clippy::too_many_arguments)]
    fn version_row(
        rt: ResourceType,
        id: &str,
        version: i64,
        compartment: &str,
        key: &DataKey,
        now: i64,
        body: Vec<u8>,
        (restricted_to, patient_visible): (Option<String>, bool),
    ) -> VersionRow {
        VersionRow {
            resource_type: rt.as_str().into(),
            id: id.to_owned(),
            version_id: version,
            compartment: compartment.to_owned(),
            key_version: i64::from(key.version()),
            last_updated: now,
            body,
            restricted_to,
            patient_visible,
        }
    }

    /// The CareTeam (sealed, ready to store) that puts `practitioner` on a new patient's care.
    fn new_care_team_row(
        &self,
        patient: &str,
        practitioner: &str,
        key: &DataKey,
        now: i64,
    ) -> Result<(VersionRow, Vec<CareTeamMember>)> {
        let mut team = serde_json::json!({
            "resourceType": "CareTeam", "status": "active",
            "subject": {"reference": format!("Patient/{patient}")},
            "participant": [{"member": {"reference": format!("Practitioner/{practitioner}")}}]
        });
        let checked =
            confidant_fhir::validate(ResourceType::CareTeam, &mut team, now).map_err(RecordsError::Invalid)?;
        let id = confidant_vault::random_id().map_err(RecordsError::Vault)?;
        Self::stamp(&mut team, &id, 1, now);
        let body = self.seal_body(key, ResourceType::CareTeam, &id, 1, patient, &team)?;
        let row = Self::version_row(ResourceType::CareTeam, &id, 1, patient, key, now, body, (None, false));
        Ok((row, Self::members(&checked)))
    }

    /// The memberships a validated CareTeam makes, as the store keeps them.
    fn members(checked: &confidant_fhir::Validated) -> Vec<CareTeamMember> {
        checked
            .care_team_members
            .iter()
            .map(|m| CareTeamMember { practitioner_id: m.practitioner_id.clone(), starts_at: m.from, ends_at: m.until })
            .collect()
    }

    /// Replace a resource with a new version (FHIR update). With `if_match`,
    /// only if the current version is that one.
    pub async fn update(
        &self,
        p: &Principal,
        rt: ResourceType,
        id: &str,
        mut resource: Value,
        if_match: Option<i64>,
    ) -> Result<Stored> {
        self.permit(p, rt, Action::Write, AuditAction::Update).await?;
        let not_found = || RecordsError::NotFound(format!("{}/{id}", rt.as_str()));
        if !confidant_fhir::is_valid_id(id) {
            return Err(not_found());
        }
        let checked =
            confidant_fhir::validate(rt, &mut resource, self.clock.now_millis()).map_err(RecordsError::Invalid)?;
        // FHIR update: the body names the resource it replaces.
        match resource.get("id").and_then(Value::as_str) {
            Some(body_id) if body_id == id => {}
            Some(_) => {
                return Err(RecordsError::Invalid("the id in the body must match the id in the URL".into()));
            }
            None => {
                return Err(RecordsError::Invalid(
                    "id is required in the body of an update (the id in the URL)".into(),
                ));
            }
        }
        let (current, seen) = self.visible_head(p, rt, id, AuditAction::Update).await?;
        self.require_care_team_for_care_team_change(p, rt, &current.compartment).await?;
        if rt == ResourceType::DocumentReference {
            self.require_note_change_allowed(p, &current, &mut resource, &checked).await?;
        }
        if let Some(expected) = if_match
            && expected != current.version_id
        {
            return Err(RecordsError::PreconditionFailed { current: current.version_id });
        }
        let compartment = match rt {
            ResourceType::Patient => id.to_owned(),
            ResourceType::Practitioner => ORGANISATION.to_owned(),
            _ => {
                if checked.subject_patient.as_deref() != Some(current.compartment.as_str()) {
                    return Err(RecordsError::Unprocessable(
                        "subject cannot change: a record stays with its patient".into(),
                    ));
                }
                current.compartment.clone()
            }
        };
        let (restricted_to, patient_visible) = Self::access_of(p, rt, &checked, &resource)?;
        let version = current.version_id + 1;
        let now = self.clock.now_millis();
        Self::stamp(&mut resource, id, version, now);
        let members = Self::members(&checked);
        let care_team = (rt == ResourceType::CareTeam).then_some(members.as_slice());
        let tokens = self.tokens(rt, &checked.index);
        // Sealed again, once, if a key rotation replaced the patient's key meanwhile.
        let mut retried = false;
        loop {
            let key = self.keyring.current_key(&compartment).await?;
            let body = self.seal_body(&key, rt, id, version, &compartment, &resource)?;
            let row = Self::version_row(
                rt,
                id,
                version,
                &compartment,
                &key,
                now,
                body,
                (restricted_to.clone(), patient_visible),
            );
            let write = Write { row: &row, tokens: &tokens, new_key: None, care_team };
            let audit = [self.entry(p, AuditAction::Update, Outcome::Success, Some(&row), seen).to_row()];
            match self.store.update(write, current.version_id, &audit).await {
                Ok(()) => {
                    self.committed(Some(p), &audit).await;
                    return Ok(Stored {
                        resource_type: rt,
                        id: id.to_owned(),
                        version_id: version,
                        last_updated: now,
                        resource,
                    });
                }
                Err(StoreError::StaleKey) if !retried => {
                    retried = true;
                    self.keyring.forget_current_key(&compartment);
                }
                Err(StoreError::Conflict) if if_match.is_some() => {
                    let now_at = self.store.read(rt.as_str(), id).await?.map(|r| r.version_id).unwrap_or(version);
                    return Err(RecordsError::PreconditionFailed { current: now_at });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The current version of a resource (FHIR read).
    pub async fn read(&self, p: &Principal, rt: ResourceType, id: &str) -> Result<Stored> {
        self.permit(p, rt, Action::Read, AuditAction::Read).await?;
        let (row, seen) = self.visible_head(p, rt, id, AuditAction::Read).await?;
        let entry = self.entry(p, AuditAction::Read, Outcome::Success, Some(&row), seen);
        let stored = self.open_record(row).await?;
        self.audited(p, &[entry], stored).await
    }

    /// The current row of a resource the principal may see, else NotFound.
    /// A refusal is audited as `action`.
    async fn visible_head(
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
        // An unknown id takes the same path as a record outside one's care: the
        // relationship is looked up and the refusal audited either way, so the
        // 404 tells nothing by its timing. Nothing is decrypted before access is decided.
        let found = self.store.read(rt.as_str(), id).await?;
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
        let (row, seen) = match found {
            Some(row) => {
                let seen = self.sees(p, &row).await?;
                (row, seen)
            }
            None => {
                // The id in the place of a patient: a lookup that finds no relationship.
                self.sees(p, &absent(id)).await?;
                // Audited without a patient: there is none.
                (absent(ORGANISATION), Seen::No)
            }
        };
        if seen == Seen::No {
            self.audit_denied(p, action, rt, Some(&row)).await;
            return Err(not_found());
        }
        Ok((row, seen))
    }

    /// One version of a resource (FHIR vread). Visible if the current version is.
    pub async fn vread(&self, p: &Principal, rt: ResourceType, id: &str, version: i64) -> Result<Stored> {
        self.permit(p, rt, Action::Read, AuditAction::Vread).await?;
        self.visible_head(p, rt, id, AuditAction::Vread).await?;
        let row = self
            .store
            .read_version(rt.as_str(), id, version)
            .await?
            .ok_or_else(|| RecordsError::NotFound(format!("{}/{id}/_history/{version}", rt.as_str())))?;
        let seen = self.sees(p, &row).await?;
        if seen == Seen::No {
            self.audit_denied(p, AuditAction::Vread, rt, Some(&row)).await;
            return Err(RecordsError::NotFound(format!("{}/{id}/_history/{version}", rt.as_str())));
        }
        let entry = self.entry(p, AuditAction::Vread, Outcome::Success, Some(&row), seen);
        let stored = self.open_record(row).await?;
        self.audited(p, &[entry], stored).await
    }

    /// Versions of a resource, newest first (FHIR history-instance), with the
    /// total number of versions. Versions the principal may not see (say, before
    /// a note was shared) are left out.
    pub async fn history(
        &self,
        p: &Principal,
        rt: ResourceType,
        id: &str,
        before: Option<i64>,
        count: i64,
    ) -> Result<(Vec<Stored>, i64)> {
        self.permit(p, rt, Action::Read, AuditAction::History).await?;
        let count = count.clamp(1, 100);
        let (head, _) = self.visible_head(p, rt, id, AuditAction::History).await?;
        let visibility = policy::visibility(p, rt, self.clock.now_millis());
        let rel = self.relationship(&visibility, &head.compartment).await?;
        // The total counts only versions the caller may see (a note's versions
        // from before it was shared stay uncounted as well as unshown).
        let mut total = 0;
        let base = VersionRow { body: Vec::new(), ..head };
        for (restricted_to, patient_visible) in self.store.version_access(rt.as_str(), id).await? {
            let row = VersionRow { restricted_to, patient_visible, ..base.clone() };
            total += i64::from(policy::sees(&visibility, &Self::access(rt, &row), rel));
        }
        let rows = self.store.history(rt.as_str(), id, before, count).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let seen = Self::seen(&visibility, &Self::access(rt, &row), rel);
            if seen != Seen::No {
                entries.push(self.entry(p, AuditAction::History, Outcome::Success, Some(&row), seen));
                out.push(self.open_record(row).await?);
            }
        }
        self.audited(p, &entries, (out, total)).await
    }

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

    // ----- small secrets of the identity service ----------------------------------------

    /// Seal a small secret of the organisation (see [`Keyring::seal_secret`]).
    pub async fn seal_secret(&self, kind: &str, owner: &str, secret: &[u8]) -> Result<Vec<u8>> {
        Ok(self.keyring.seal_secret(kind, owner, secret).await?)
    }

    /// Open a secret sealed by [`Records::seal_secret`].
    pub async fn open_secret(&self, kind: &str, owner: &str, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(self.keyring.open_secret(kind, owner, sealed).await?)
    }

    /// A keyed, one-way token of a value (see [`Keyring::blind`]).
    pub fn blind(&self, kind: &str, value: &str) -> Vec<u8> {
        self.keyring.blind(kind, value)
    }

    /// Find current resources of `rt` (FHIR search-type). Exact match only.
    pub async fn search(&self, p: &Principal, rt: ResourceType, req: &SearchRequest) -> Result<SearchPage> {
        self.permit(p, rt, Action::Read, AuditAction::SearchHit).await?;
        let now = self.clock.now_millis();
        if req.params.is_empty() && policy::search_needs_criterion(&policy::visibility(p, rt, now), rt) {
            let names: Vec<&str> = search_params(rt).iter().map(SearchParam::name).collect();
            return Err(RecordsError::Invalid(format!(
                "a {} search needs at least one search parameter: {}",
                rt.as_str(),
                names.join(", ")
            )));
        }
        let mut criteria = Vec::new();
        // Access first: results and totals hold only what the principal may see.
        criteria.extend(Self::visibility_criterion(p, rt, now));
        // Bounded work per request: a search is a handful of exact matches.
        if req.params.len() > MAX_SEARCH_PARAMS {
            return Err(RecordsError::Invalid(format!("at most {MAX_SEARCH_PARAMS} search parameters per request")));
        }
        for (name, value) in &req.params {
            let (base, modifier) = match name.split_once(':') {
                Some((b, m)) => (b, Some(m)),
                None => (name.as_str(), None),
            };
            let param = search_params(rt).iter().find(|p| p.name() == base).ok_or_else(|| {
                RecordsError::Invalid(format!("{} has no search parameter '{}'", rt.as_str(), base.escape_default()))
            })?;
            if let Some(m) = modifier
                && (m != "exact" || !matches!(param, SearchParam::Blind { .. }))
            {
                return Err(RecordsError::NotSupported(format!(
                    "modifier ':{}' is not supported; search is exact-match",
                    m.escape_default()
                )));
            }
            let values: Vec<&str> = value.split(',').map(str::trim).collect();
            if values.len() > MAX_SEARCH_VALUES {
                return Err(RecordsError::Invalid(format!(
                    "at most {MAX_SEARCH_VALUES} comma-separated values per parameter"
                )));
            }
            if values.iter().any(|v| v.is_empty()) {
                return Err(RecordsError::Invalid(format!("search parameter '{base}' needs a value")));
            }
            criteria.push(self.criterion(rt, param, &values)?);
        }
        // At least one: every match counted in the total is one that could be returned and audited.
        let count = req.count.clamp(1, 100);
        // Fetch one extra row to learn whether a next page exists.
        let (rows, total) = self.store.search(rt.as_str(), &criteria, req.after.as_deref(), count + 1).await?;
        let more = rows.len() as i64 > count;
        let mut entries = Vec::with_capacity(rows.len());
        let mut audit = Vec::with_capacity(rows.len());
        let mut last_id = None;
        let mut skipped = 0;
        for (row, via_break_glass) in rows.into_iter().take(count as usize) {
            let seen = if via_break_glass { Seen::ByBreakGlass } else { Seen::Yes };
            // One entry per hit: each names the patient whose record was returned.
            let entry = self.entry(p, AuditAction::SearchHit, Outcome::Success, Some(&row), seen);
            last_id = Some(row.id.clone());
            match self.open_record(row).await {
                Ok(stored) => {
                    audit.push(entry);
                    entries.push(stored);
                }
                // One altered row does not take the others down with it: it is
                // left out (logged by id and alerted by `open_record`), the rest answered.
                Err(RecordsError::Integrity) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        let next_after = if more { last_id } else { None };
        let total = (total - skipped).max(0);
        self.audited(p, &audit, SearchPage { entries, total, next_after }).await
    }

    fn criterion(&self, rt: ResourceType, param: &SearchParam, values: &[&str]) -> Result<Criterion> {
        match param {
            SearchParam::Id => {
                if values.len() != 1 {
                    return Err(RecordsError::NotSupported("_id takes one value".into()));
                }
                Ok(Criterion::Id(values[0].to_owned()))
            }
            SearchParam::Patient { name } => {
                if values.len() != 1 {
                    return Err(RecordsError::NotSupported(format!("{name} takes one value")));
                }
                let id = values[0].strip_prefix("Patient/").unwrap_or(values[0]);
                if !confidant_fhir::is_valid_id(id) {
                    return Err(RecordsError::Invalid(format!("{name} must be Patient/{{id}} or {{id}}")));
                }
                Ok(Criterion::Compartment(id.to_owned()))
            }
            SearchParam::Blind { name, kind, .. } => {
                let mut tokens = Vec::with_capacity(values.len());
                for v in values {
                    let v = match kind {
                        ValueKind::Date => {
                            let v = v.strip_prefix("eq").unwrap_or(v);
                            if v.starts_with(|c: char| c.is_ascii_alphabetic()) {
                                return Err(RecordsError::NotSupported(
                                    "birthdate supports exact dates only (no ge/le ranges): it is blind-indexed".into(),
                                ));
                            }
                            v
                        }
                        ValueKind::Identifier => match v.split_once('|') {
                            Some(("", value)) => value,
                            Some((_, "")) => {
                                return Err(RecordsError::NotSupported(
                                    "identifier=system| (any value of a system) is not supported: identifiers are blind-indexed".into(),
                                ));
                            }
                            _ => v,
                        },
                        _ => v,
                    };
                    tokens.push(self.keyring.search_token(rt.as_str(), name, blind_kind(*kind), v));
                }
                Ok(Criterion::Token { param: name, tokens })
            }
        }
    }
}
