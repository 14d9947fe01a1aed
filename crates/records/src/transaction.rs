//! Writes in one store transaction: every create and update is first
//! *prepared* (validated, authorised, refusals audited — nothing stored),
//! then sealed and stored with its audit entries by [`Records::commit_prepared`].
//! A single create or update is a list of one; a FHIR transaction Bundle
//! ([`Records::transaction`]) is a list of many, all or none:
//!
//! * each entry is checked exactly as the single request would be, in order,
//!   and the first refusal fails the whole transaction, naming the entry;
//! * `urn:uuid:` fullUrls become the ids the entries will have (a conditional
//!   create that matches: the match's), so that entries refer to each other;
//! * a patient created by an earlier entry exists for the later ones, with the
//!   care team its creation gives it ([`Pending`]) — nothing else is assumed;
//! * reads (`GET Type/id`) and the matches of conditional creates see the
//!   records as they were before the transaction; their audit entries commit
//!   in the same store transaction as the writes;
//! * a conditional reference (`Patient?identifier=…`) becomes the one stored
//!   record it matches (none: 422; several, or one outside the caller's care: 412).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use confidant_audit::{Action as AuditAction, Entry, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::records::Seen;
use confidant_policy::{self as policy, Action, Principal, Relationship};
use confidant_store::{CareTeamMember, DataKeyRow, SearchToken, StoreError, VersionRow, Write};
use confidant_vault::DataKey;
use serde_json::Value;

use crate::{Records, RecordsError, Result, STOPPED_BY_DETECTION, Stored};

/// A create or update, decided but not yet sealed or stored.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) rt: ResourceType,
    pub(crate) id: String,
    pub(crate) version: i64,
    pub(crate) compartment: String,
    pub(crate) resource: Value,
    pub(crate) tokens: Vec<SearchToken>,
    /// Who the record is restricted to, and whether the patient sees it.
    pub(crate) access: (Option<String>, bool),
    /// For a CareTeam: the memberships it makes.
    pub(crate) members: Vec<CareTeamMember>,
    /// A new patient's care team: this practitioner (the clinician registering them).
    pub(crate) team_of: Option<String>,
    pub(crate) seen: Seen,
    /// `None` for a create; the version an update replaces.
    pub(crate) expected: Option<i64>,
    /// The version the client named (`If-Match`), for the answer to a lost race.
    pub(crate) if_match: Option<i64>,
    pub(crate) now: i64,
}

/// What earlier entries of a transaction create, for the later entries to
/// refer to before any of it is stored: new patients and who is on their care.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    patients: HashMap<String, Vec<String>>,
}

impl Pending {
    /// The practitioners on the care of a patient this transaction creates (`None`: not one of them).
    pub(crate) fn care_team_of(&self, patient: &str) -> Option<&Vec<String>> {
        self.patients.get(patient)
    }

    pub(crate) fn new_patient(&mut self, id: &str, team_of: Option<&str>) {
        self.patients.insert(id.to_owned(), team_of.map(str::to_owned).into_iter().collect());
    }

    /// A CareTeam of a patient this transaction creates adds its members (open-ended ones only:
    /// a period is checked against the clock when it is stored, not assumed here).
    pub(crate) fn add_to_team(&mut self, patient: &str, members: &[CareTeamMember]) {
        if let Some(team) = self.patients.get_mut(patient) {
            team.extend(
                members
                    .iter()
                    .filter(|m| m.starts_at.is_none() && m.ends_at.is_none())
                    .map(|m| m.practitioner_id.clone()),
            );
        }
    }
}

/// One entry of a transaction, as the records service takes it.
#[derive(Debug, Clone)]
pub struct TxEntry {
    /// The `urn:uuid:` (or other fullUrl) other entries refer to this one by.
    pub full_url: Option<String>,
    pub op: TxOp,
}

/// What an entry does.
#[derive(Debug, Clone)]
pub enum TxOp {
    /// Create; with conditions, only if nothing matches them (`ifNoneExist`).
    Create { rt: ResourceType, resource: Value, if_none_exist: Option<Vec<(String, String)>> },
    /// Replace `Type/id`; with `if_match`, only if that is the current version.
    Update { rt: ResourceType, id: String, resource: Value, if_match: Option<i64> },
    /// Read `Type/id` (as it was before the transaction).
    Read { rt: ResourceType, id: String },
}

/// What an entry did.
#[derive(Debug, Clone)]
pub enum TxDone {
    Created(Stored),
    /// A conditional create found this record: nothing was created.
    Existing(Stored),
    Updated(Stored),
    Read(Stored),
}

/// A transaction refused whole: nothing was written. `index` is the entry
/// that failed (none when the commit itself failed).
#[derive(Debug)]
pub struct TxFailed {
    pub index: Option<usize>,
    pub error: RecordsError,
}

/// What an entry would do, found without writing ([`Records::plan_transaction`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxPlan {
    Create(ResourceType),
    /// A conditional create matches this record: nothing would be created.
    Existing(ResourceType, String),
    Update(ResourceType, String),
    Read(ResourceType, String),
}

/// An entry's place in the answer while the transaction is prepared.
enum Slot {
    Written {
        prepared: usize,
        created: bool,
    },
    /// A read, or a conditional create's match (`existing`).
    Shown {
        row: VersionRow,
        existing: bool,
    },
}

/// A transaction checked whole, holding its locks, ready to commit.
struct Checked {
    prepared: Vec<Prepared>,
    reads: Vec<Entry>,
    slots: Vec<Slot>,
    guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

impl TxOp {
    /// The type of the record the entry writes or reads.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            TxOp::Create { rt, .. } | TxOp::Update { rt, .. } | TxOp::Read { rt, .. } => *rt,
        }
    }
}

impl Records {
    /// Does `p` see a patient that this transaction creates, with `team` on their care?
    pub(crate) fn sees_new_patient(&self, p: &Principal, probe: &VersionRow, team: &[String]) -> Seen {
        let visibility = policy::visibility(p, ResourceType::Patient, self.clock.now_millis());
        let care_team = matches!(&visibility, policy::Visibility::CareTeam { practitioner_id, .. }
            if team.contains(practitioner_id));
        Self::seen(
            &visibility,
            &Self::access(ResourceType::Patient, probe),
            Relationship { care_team, break_glass: false },
        )
    }

    /// The `Type/{id}` a conditional reference names: the one record of the type
    /// matching its conditions that `p` sees (its entry, a search hit, joins `hits`);
    /// none is 422, several or one outside the caller's care 412 (as a conditional create).
    async fn conditional_reference(&self, p: &Principal, reference: &str, hits: &mut Vec<Entry>) -> Result<String> {
        let (ty, query) = reference.split_once('?').unwrap_or((reference, ""));
        let rt = ResourceType::parse(ty).ok_or_else(|| {
            RecordsError::Invalid("a conditional reference names a type this server does not store".into())
        })?;
        self.permit(p, rt, Action::Read, AuditAction::SearchHit).await?;
        let criteria = confidant_fhir::parse_conditions(query).map_err(|e| RecordsError::NotSupported(e.message))?;
        match self.conditional_match(p, rt, &criteria, AuditAction::SearchHit).await? {
            Some((row, seen)) => {
                hits.push(self.entry(p, AuditAction::SearchHit, Outcome::Success, Some(&row), seen));
                Ok(format!("{}/{}", rt.as_str(), row.id))
            }
            None => Err(RecordsError::Unprocessable(
                "a conditional reference (Type?parameters) matches no record: nothing was written".into(),
            )),
        }
    }

    /// Seal and store prepared writes, in their order, with their audit entries
    /// (and `reads`, the entries of what the same transaction read) in one store
    /// transaction: all or none. Sealed again, once, if a key rotation replaced
    /// a patient's key meanwhile.
    pub(crate) async fn commit_prepared(
        &self,
        p: &Principal,
        mut list: Vec<Prepared>,
        reads: Vec<Entry>,
    ) -> Result<Vec<Stored>> {
        let mut retried = false;
        let (audit, new_keys) = loop {
            let mut keys: HashMap<String, Arc<DataKey>> = HashMap::new();
            let mut new_keys: Vec<(Arc<DataKey>, DataKeyRow)> = Vec::new();
            let mut rows = Vec::with_capacity(list.len());
            let mut teams = Vec::with_capacity(list.len());
            let mut audit = Vec::with_capacity(list.len() + reads.len());
            for w in &mut list {
                let new_patient = w.rt == ResourceType::Patient && w.expected.is_none();
                let key = match keys.get(&w.compartment) {
                    Some(k) if !new_patient => k.clone(),
                    _ if new_patient => {
                        let (key, row) = self.keyring.new_compartment_key(&w.compartment)?;
                        new_keys.push((key.clone(), row));
                        key
                    }
                    _ => self.keyring.current_key(&w.compartment).await?,
                };
                keys.insert(w.compartment.clone(), key.clone());
                Self::stamp(&mut w.resource, &w.id, w.version, w.now);
                let body = self.seal_body(&key, w.rt, &w.id, w.version, &w.compartment, &w.resource)?;
                let row =
                    Self::version_row(w.rt, &w.id, w.version, &w.compartment, &key, w.now, body, w.access.clone());
                let action = if w.expected.is_none() { AuditAction::Create } else { AuditAction::Update };
                audit.push(self.entry(p, action, Outcome::Success, Some(&row), w.seen).to_row());
                // A clinician who registers a patient is put on that patient's care team,
                // in the same transaction: never a patient that nobody can see.
                let team = match &w.team_of {
                    Some(practitioner) => {
                        let team = self.new_care_team_row(&w.id, practitioner, &key, w.now)?;
                        audit
                            .push(self.entry(p, AuditAction::Create, Outcome::Success, Some(&team.0), w.seen).to_row());
                        Some(team)
                    }
                    None => None,
                };
                rows.push(row);
                teams.push(team);
            }
            audit.extend(reads.iter().map(Entry::to_row));
            let mut writes = Vec::with_capacity(list.len() * 2);
            for ((w, row), team) in list.iter().zip(&rows).zip(&teams) {
                let new_key = new_keys.iter().map(|(_, k)| k).find(|k| k.compartment == w.compartment);
                let new_key = new_key.filter(|_| w.rt == ResourceType::Patient && w.expected.is_none());
                let care_team = (w.rt == ResourceType::CareTeam).then_some(w.members.as_slice());
                writes.push((Write { row, tokens: &w.tokens, new_key, care_team }, w.expected));
                if let Some((team_row, members)) = team {
                    writes.push((Write { row: team_row, tokens: &[], new_key: None, care_team: Some(members) }, None));
                }
            }
            match self.store.write_all(&writes, &audit).await {
                Ok(()) => break (audit, new_keys),
                Err(StoreError::StaleKey) if !retried => {
                    retried = true;
                    for compartment in keys.keys() {
                        self.keyring.forget_current_key(compartment);
                    }
                }
                Err(StoreError::Conflict) => {
                    if let [w] = list.as_slice()
                        && w.if_match.is_some()
                    {
                        let now_at =
                            self.store.read(w.rt.as_str(), &w.id).await?.map(|r| r.version_id).unwrap_or(w.version);
                        return Err(RecordsError::PreconditionFailed { current: now_at });
                    }
                    return Err(RecordsError::Conflict);
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.committed(Some(p), &audit).await;
        for (key, row) in new_keys {
            self.keyring.stored_new_key(&row.compartment, row.version, key);
        }
        for w in list.iter().filter(|w| w.rt == ResourceType::DocumentReference) {
            self.note_saved(&w.id, &w.compartment, &w.resource).await;
        }
        Ok(list
            .into_iter()
            .map(|w| Stored {
                resource_type: w.rt,
                id: w.id,
                version_id: w.version,
                last_updated: w.now,
                resource: w.resource,
            })
            .collect())
    }

    /// A FHIR transaction: every entry or none (see the module). The answers
    /// are in the entries' order.
    pub async fn transaction(
        &self,
        p: &Principal,
        entries: Vec<TxEntry>,
    ) -> std::result::Result<Vec<TxDone>, TxFailed> {
        let Checked { prepared, reads, slots, guards } = self.check_transaction(p, entries).await?;
        // What is read is opened before the commit (an altered record fails the whole transaction)…
        let mut shown = Vec::with_capacity(reads.len());
        for (i, slot) in slots.iter().enumerate() {
            if let Slot::Shown { row, .. } = slot {
                shown.push(self.open_record(row.clone()).await.map_err(|error| TxFailed { index: Some(i), error })?);
            }
        }
        // …and goes out only if the detector admits it (as any read's would).
        if let Some(d) = &self.subscriber
            && !reads.is_empty()
            && d.admit(p.credential.as_deref(), &reads).await < reads.len()
        {
            return Err(TxFailed { index: None, error: RecordsError::Forbidden(STOPPED_BY_DETECTION.into()) });
        }
        let stored = self.commit_prepared(p, prepared, reads).await.map_err(|error| TxFailed { index: None, error })?;
        drop(guards);
        let mut stored: Vec<Option<Stored>> = stored.into_iter().map(Some).collect();
        let mut shown = shown.into_iter();
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let missing = || TxFailed { index: None, error: RecordsError::Integrity };
            out.push(match slot {
                Slot::Written { prepared, created } => {
                    let s = stored.get_mut(prepared).and_then(Option::take).ok_or_else(missing)?;
                    if created { TxDone::Created(s) } else { TxDone::Updated(s) }
                }
                Slot::Shown { existing, .. } => {
                    let s = shown.next().ok_or_else(missing)?;
                    if existing { TxDone::Existing(s) } else { TxDone::Read(s) }
                }
            });
        }
        Ok(out)
    }

    /// [`Records::transaction`] without writing: every entry checked as it
    /// would be (refusals audited), nothing stored, nothing opened or read out.
    /// What each entry would do, in order (an import's dry run).
    pub async fn plan_transaction(
        &self,
        p: &Principal,
        entries: Vec<TxEntry>,
    ) -> std::result::Result<Vec<TxPlan>, TxFailed> {
        let Checked { prepared, slots, .. } = self.check_transaction(p, entries).await?;
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Written { prepared: i, created } => {
                    let (rt, id) =
                        prepared.get(i).map(|w| (w.rt, w.id.clone())).unwrap_or((ResourceType::Patient, String::new()));
                    if created { TxPlan::Create(rt) } else { TxPlan::Update(rt, id) }
                }
                Slot::Shown { row, existing } => {
                    let rt = ResourceType::parse(&row.resource_type).unwrap_or(ResourceType::Patient);
                    if existing { TxPlan::Existing(rt, row.id) } else { TxPlan::Read(rt, row.id) }
                }
            })
            .collect())
    }

    /// Everything a transaction decides before it is stored (see the module);
    /// the locks it holds come with it.
    async fn check_transaction(&self, p: &Principal, entries: Vec<TxEntry>) -> std::result::Result<Checked, TxFailed> {
        let at = |index: usize| move |error: RecordsError| TxFailed { index: Some(index), error };
        // The role matrix first, entry by entry (refusals audited), before anything is looked up.
        for (i, e) in entries.iter().enumerate() {
            let (action, audit) = match &e.op {
                TxOp::Create { .. } => (Action::Write, AuditAction::Create),
                TxOp::Update { .. } => (Action::Write, AuditAction::Update),
                TxOp::Read { .. } => (Action::Read, AuditAction::Read),
            };
            self.permit(p, e.op.resource_type(), action, audit).await.map_err(at(i))?;
        }
        // Conditional writes of a type, one at a time (as single ones are), in one order: no deadlock.
        let conditional: BTreeSet<String> = entries
            .iter()
            .filter_map(|e| match &e.op {
                TxOp::Create { rt, if_none_exist: Some(_), .. } => Some(format!("conditional/{}", rt.as_str())),
                _ => None,
            })
            .collect();
        let mut guards = Vec::new();
        for name in &conditional {
            guards.push(self.bookings.of(name).lock_owned().await);
        }
        // The id each entry has: a conditional create's match, or a new one.
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut written: HashSet<(ResourceType, String)> = HashSet::new();
        let mut matched = Vec::with_capacity(entries.len());
        let mut assigned = Vec::with_capacity(entries.len());
        // Two creates on the same conditions that match nothing would make the duplicate they guard against.
        let mut unmatched: HashSet<(ResourceType, Vec<(String, String)>)> = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            let (id, found) = match &e.op {
                TxOp::Create { rt, if_none_exist: Some(c), .. } => {
                    match self.conditional_match(p, *rt, c, AuditAction::Create).await.map_err(at(i))? {
                        Some((row, seen)) => (row.id.clone(), Some((row, seen))),
                        None => {
                            let mut key = c.clone();
                            key.sort();
                            if !unmatched.insert((*rt, key)) {
                                return Err(at(i)(RecordsError::Invalid(
                                    "two entries create a record on the same conditions (ifNoneExist): keep one".into(),
                                )));
                            }
                            (confidant_vault::random_id().map_err(|e| at(i)(RecordsError::Vault(e)))?, None)
                        }
                    }
                }
                TxOp::Create { .. } => (confidant_vault::random_id().map_err(|e| at(i)(RecordsError::Vault(e)))?, None),
                TxOp::Update { id, .. } | TxOp::Read { id, .. } => (id.clone(), None),
            };
            let writes =
                matches!(e.op, TxOp::Update { .. }) || (matches!(e.op, TxOp::Create { .. }) && found.is_none());
            if writes && !written.insert((e.op.resource_type(), id.clone())) {
                return Err(at(i)(RecordsError::Invalid(
                    "two entries of the transaction write the same resource".into(),
                )));
            }
            if let Some(url) = &e.full_url {
                ids.insert(url.clone(), format!("{}/{id}", e.op.resource_type().as_str()));
            }
            matched.push(found);
            assigned.push(id);
        }
        for (i, e) in entries.iter().enumerate() {
            if let TxOp::Read { rt, id } = &e.op
                && written.contains(&(*rt, id.clone()))
            {
                return Err(at(i)(RecordsError::NotSupported(
                    "a transaction's reads see the records as they were before it: read what it writes afterwards"
                        .into(),
                )));
            }
        }
        // References between entries, and conditional references (`Patient?identifier=…`) to
        // the one stored record they match, resolved before anything is checked.
        let mut entries = entries;
        let mut hits = Vec::new();
        for (i, e) in entries.iter_mut().enumerate() {
            if let TxOp::Create { resource, .. } | TxOp::Update { resource, .. } = &mut e.op {
                confidant_fhir::resolve_references(resource, &ids).map_err(|m| at(i)(RecordsError::Invalid(m)))?;
                let mut found = HashMap::new();
                for reference in confidant_fhir::conditional_references(resource) {
                    let row = self.conditional_reference(p, &reference, &mut hits).await.map_err(at(i))?;
                    found.insert(reference, row);
                }
                confidant_fhir::rewrite_references(resource, &found);
            }
        }
        // One booking at a time per practitioner, as single bookings are (after the conditional locks).
        let practitioners: BTreeSet<String> = entries
            .iter()
            .filter_map(|e| match &e.op {
                TxOp::Create { rt: ResourceType::Appointment, resource, .. }
                | TxOp::Update { rt: ResourceType::Appointment, resource, .. } => {
                    crate::practitioner_in(resource).filter(|pr| confidant_fhir::is_valid_id(pr)).map(str::to_owned)
                }
                _ => None,
            })
            .collect();
        for practitioner in &practitioners {
            guards.push(self.bookings.of(practitioner).lock_owned().await);
        }
        // Each entry, in order, checked as the single request would be.
        let mut pending = Pending::default();
        let mut prepared = Vec::new();
        let mut reads = Vec::new();
        let mut slots = Vec::with_capacity(entries.len());
        let mut bookings = Vec::new();
        for (i, ((e, id), found)) in entries.into_iter().zip(assigned).zip(matched).enumerate() {
            let slot = match (e.op, found) {
                (TxOp::Create { .. }, Some((row, seen))) => {
                    reads.push(self.entry(p, AuditAction::SearchHit, Outcome::Success, Some(&row), seen));
                    Slot::Shown { row, existing: true }
                }
                (TxOp::Create { rt, resource, .. }, None) => {
                    if rt == ResourceType::Appointment {
                        self.check_booking(p, &resource, None, &mut bookings).await.map_err(at(i))?;
                    }
                    let w = self.prepare_create(p, rt, resource, id, None, &mut pending).await.map_err(at(i))?;
                    prepared.push(w);
                    Slot::Written { prepared: prepared.len() - 1, created: true }
                }
                (TxOp::Update { rt, id, resource, if_match }, _) => {
                    if rt == ResourceType::Appointment {
                        self.check_booking(p, &resource, Some(&id), &mut bookings).await.map_err(at(i))?;
                    }
                    prepared.push(self.prepare_update(p, rt, &id, resource, if_match).await.map_err(at(i))?);
                    Slot::Written { prepared: prepared.len() - 1, created: false }
                }
                (TxOp::Read { rt, id }, _) => {
                    let (row, seen) = self.visible_head(p, rt, &id, AuditAction::Read).await.map_err(at(i))?;
                    reads.push(self.entry(p, AuditAction::Read, Outcome::Success, Some(&row), seen));
                    Slot::Shown { row, existing: false }
                }
            };
            slots.push(slot);
        }
        // The conditional references' matches are audited with the rest (as search hits).
        reads.extend(hits);
        Ok(Checked { prepared, reads, slots, guards })
    }
}
