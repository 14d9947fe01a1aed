//! Honey records: synthetic patients a copy of the database cannot tell from
//! real ones, planted and kept busy by the honey keeper as the clinic works.
//!
//! The keeper (a task of `serve`, like the reminder sweep) reads the audit log
//! as it grows. Each visit — a run of successful entries of one clinician or
//! receptionist on one real patient, no gap longer than [`VISIT_GAP_MS`] — is
//! replayed, with a small probability, on a honey record: the same actor,
//! role and address, the same actions in the same order and spacing, the same
//! record types, sizes close to the real ones, on the next working day at
//! the same time of day, give or take [`JITTER_MS`] ([`replay_delay`]: the
//! clinic's hours and weekdays, not glued to the real visit). A visit that registers a patient is followed, with
//! probability `[detection] honey_records` / 100, by the registration of a
//! honey patient by the same clinician, who is on its care team like on any
//! patient they register. Any other visit is replayed on one of the actor's
//! honey records with probability (their honey records) / (their real
//! patients): each honey record gets, in expectation, the visits of one of
//! the actor's real patients. Everything goes through the records service's
//! ordinary use cases (`create`, `update`, `read`, `search`,
//! `book_appointments`), authorised and audited as the actor, so notes carry
//! the psychotherapy label and restriction real ones do; only the detector
//! does not watch ([`Records::for_planting`]), so the keeper's own activity
//! raises no alert.
//!
//! Trade-off (see docs/security.md): the audit log says that a real clinician
//! registered, read and wrote a honey record. That is what makes the entries
//! look like the clinic's; the clinician never meets the record (their lists
//! and calendars leave honey records out), and an incident report marks
//! honey records as such. A system actor (the reminder sender) would have
//! kept the clinician's name off them, but no real patient is registered or
//! written by a system actor: one query would find the honey records again.
//!
//! `confidant honey plant` plants some at once, as the clinic's clinicians:
//! for drills and tests; planted together, their time tells them apart.
//!
//! (Over 600 lines: the keeper is one state machine — visits, their replays,
//! sizes, names, appointment days, the lease between nodes — read in one place.)

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use confidant_audit::{Action as AuditAction, Entry, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::{Principal, Role};
use confidant_records::{Booking, Records, SearchRequest};
use confidant_store::VersionRow;
use serde_json::{Value, json};

use crate::console::Console;
use crate::synthetic::{self, NoteKind, below};

/// A pause longer than this ends a visit.
pub const VISIT_GAP_MS: i64 = 30 * 60_000;
/// How far a replayed visit's time of day strays from the real one's.
pub const JITTER_MS: i64 = 10 * 60_000;
const DAY_MS: i64 = 86_400_000;
/// How often `serve`'s keeper reads the log and carries out what is due.
pub const STEP_SECONDS: u64 = 30;
/// One `serve` node at a time replays (several nodes read one log): it holds
/// this lease (`instance_settings`, `<node>:<until ms>`), renewed each step.
const LEASE: &str = "honey_keeper_lease";
const LEASE_MS: i64 = 5 * 60_000;
/// How many audit entries one step reads at most (the rest next step).
const PER_STEP: i64 = 5_000;

/// What one entry of a real visit becomes on a honey record.
#[derive(Debug, Clone)]
enum Act {
    /// A patient registered (body size of the real one).
    Register {
        size: usize,
    },
    /// A record of this type created, `size` bytes like the real one, with its access columns.
    /// `day`: an appointment's UTC day (the real one's).
    Create {
        rt: ResourceType,
        size: usize,
        restricted: bool,
        shared: bool,
        day: Option<i64>,
    },
    Update {
        rt: ResourceType,
        size: usize,
    },
    Read {
        rt: ResourceType,
    },
    Vread {
        rt: ResourceType,
    },
    History {
        rt: ResourceType,
    },
    SearchHit {
        rt: ResourceType,
    },
}

/// Where a real visit's replay goes.
#[derive(Debug, Clone)]
enum Shadow {
    /// Not replayed.
    Skip,
    /// A honey patient to be registered by the visit's first entry (then `Honey`).
    Planting,
    Honey(String),
}

#[derive(Debug)]
struct Visit {
    /// Which replay its entries go to (in [`Keeper::shadows`]).
    id: u64,
    delay: i64,
    last: i64,
}

#[derive(Debug)]
struct Due {
    at: i64,
    /// How many days after the real visit this is (an appointment moves with it).
    shift_days: i64,
    /// The visit's replay (a key of [`Keeper::shadows`]).
    visit: u64,
    actor: Principal,
    act: Act,
}

/// The honey keeper of one `serve` node (see the module's documentation).
pub struct Keeper {
    records: Records,
    detector: Option<Arc<confidant_detect::Detector>>,
    /// This node, for the lease.
    node: String,
    per_100: u32,
    cursor: i64,
    /// user id → (role, Practitioner id).
    staff: HashMap<String, (Role, Option<String>)>,
    /// Open visits: (actor, real patient) → visit.
    visits: HashMap<(String, String), Visit>,
    /// Where each visit's replay goes, while it has steps due.
    shadows: HashMap<u64, Shadow>,
    next_visit: u64,
    due: Vec<Due>,
    /// Envelope and JSON overhead learnt from the keeper's own writes, per type:
    /// stored size minus the free text's size.
    overhead: HashMap<ResourceType, i64>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keeper({} per 100, {} due)", self.per_100, self.due.len())
    }
}

fn chance(numerator: usize, denominator: usize) -> Result<bool> {
    Ok(denominator > 0 && below(denominator)? < numerator)
}

fn rt_of(resource: &str) -> Option<ResourceType> {
    ResourceType::parse(resource.split('/').next().unwrap_or(""))
}

impl Keeper {
    /// A keeper over `records` (a service from [`Records::for_planting`] is
    /// made of it) that replays what is appended to the log from now on.
    /// `detector`: told of each honey record planted.
    pub async fn new(
        records: &Records,
        per_100: u32,
        detector: Option<Arc<confidant_detect::Detector>>,
    ) -> Result<Keeper> {
        let records = records.for_planting();
        let cursor = records.store().audit_size().await?;
        Ok(Keeper {
            records,
            detector,
            node: confidant_vault::random_id()?,
            per_100,
            cursor,
            staff: HashMap::new(),
            visits: HashMap::new(),
            shadows: HashMap::new(),
            next_visit: 0,
            due: Vec::new(),
            overhead: HashMap::new(),
        })
    }

    /// Read what was appended since the last step, decide which visits are
    /// replayed, and carry out the replays that are due by the clock.
    pub async fn step(&mut self) -> Result<()> {
        let honey = self.records.refresh_honey().await?;
        if let Some(d) = &self.detector {
            d.set_honey(honey.clone());
        }
        let now = self.records.now_millis();
        let entries = self.records.store().audit_entries(self.cursor, PER_STEP).await?;
        if let Some(last) = entries.last() {
            self.cursor = last.seq;
        }
        // Nothing new and nothing due: no write (an idle server leaves the database as it is).
        if entries.is_empty() && self.due.is_empty() {
            return Ok(());
        }
        // Another node replays: this one only follows the log (and takes over when its lease lapses).
        if !self.lease(now).await? {
            self.due.clear();
            self.visits.clear();
            self.shadows.clear();
            return Ok(());
        }
        let mut reach: Option<Reach> = None;
        for stored in entries {
            let Some(e) = Entry::parse(&stored.row.entry) else { continue };
            let Some((visit, act)) = self.replayable(&e, &honey).await? else { continue };
            let open = self.visits.get(&visit).is_some_and(|v| e.time - v.last <= VISIT_GAP_MS);
            if !open {
                let shadow = match act {
                    Act::Register { .. } if chance(self.per_100 as usize, 100)? => Shadow::Planting,
                    Act::Register { .. } => Shadow::Skip,
                    _ => {
                        if reach.is_none() {
                            reach = Some(Reach::of(&self.records, now).await?);
                        }
                        let r = reach.as_ref().map(|r| r.of_actor(&visit.0, &self.staff, &honey));
                        match r {
                            Some((mine, real)) if !mine.is_empty() && chance(mine.len(), real.max(mine.len()))? => {
                                Shadow::Honey(mine[below(mine.len())?].clone())
                            }
                            _ => Shadow::Skip,
                        }
                    }
                };
                let delay = replay_delay(e.time)?;
                self.next_visit += 1;
                self.shadows.insert(self.next_visit, shadow);
                self.visits.insert(visit.clone(), Visit { id: self.next_visit, delay, last: e.time });
            }
            let Some(v) = self.visits.get_mut(&visit) else { continue };
            v.last = e.time;
            let (id, at) = (v.id, e.time + v.delay);
            if matches!(self.shadows.get(&id), Some(Shadow::Skip) | None) {
                continue;
            }
            let shift_days = confidant_fhir::day_number(at) - confidant_fhir::day_number(e.time);
            let actor = self.principal(&e)?;
            self.due.push(Due { at, shift_days, visit: id, actor, act });
        }
        // Carry out what is due, oldest first.
        self.due.sort_by_key(|d| d.at);
        let split = self.due.partition_point(|d| d.at <= now);
        let ready: Vec<Due> = self.due.drain(..split).collect();
        for d in ready {
            if let Err(e) = self.replay(&d).await {
                tracing::warn!(error = %e, "a honey record's replayed step failed; the keeper goes on");
            }
        }
        self.visits.retain(|_, v| now - v.last <= VISIT_GAP_MS);
        let (due, visits) = (&self.due, &self.visits);
        self.shadows.retain(|id, _| due.iter().any(|d| d.visit == *id) || visits.values().any(|v| v.id == *id));
        Ok(())
    }

    /// Hold (take, or renew) the replaying node's lease; false if another node holds it.
    async fn lease(&self, now: i64) -> Result<bool> {
        let store = self.records.store();
        let mine = format!("{}:{}", self.node, now + LEASE_MS).into_bytes();
        let Some(held) = store.setting(LEASE).await? else {
            return Ok(store.insert_setting(LEASE, &mine, now).await.is_ok());
        };
        let text = String::from_utf8_lossy(&held);
        let (node, until) = text.split_once(':').unwrap_or(("", "0"));
        let until = until.parse::<i64>().unwrap_or(0);
        if node != self.node && until > now {
            return Ok(false);
        }
        // Renewed when half of it is left (a write per step would be one fsync per step).
        if node == self.node && until - now > LEASE_MS / 2 {
            return Ok(true);
        }
        Ok(store.replace_setting(LEASE, &held, &mine).await?)
    }

    /// The last moment something is due (for a test's clock), if anything is.
    pub fn due_until(&self) -> Option<i64> {
        self.due.iter().map(|d| d.at).max()
    }

    /// The next moment something is due (for a test's clock), if anything is.
    pub fn next_due(&self) -> Option<i64> {
        self.due.iter().map(|d| d.at).min()
    }

    /// Is `e` part of a real visit the keeper replays? Returns the visit
    /// (actor, patient) and what it becomes.
    async fn replayable(
        &mut self,
        e: &Entry,
        honey: &std::collections::HashSet<String>,
    ) -> Result<Option<((String, String), Act)>> {
        let (Some(actor), Some(patient), Some(resource)) = (&e.actor, &e.patient, &e.resource) else {
            return Ok(None);
        };
        if e.outcome != Outcome::Success || e.purpose.is_some() || honey.contains(patient) {
            return Ok(None);
        }
        if !matches!(e.role.as_deref(), Some("clinician") | Some("reception")) {
            return Ok(None);
        }
        let Some(rt) = rt_of(resource) else { return Ok(None) };
        if !matches!(
            rt,
            ResourceType::Patient
                | ResourceType::Encounter
                | ResourceType::Appointment
                | ResourceType::DocumentReference
        ) {
            return Ok(None);
        }
        if !self.staff.contains_key(actor) {
            self.load_staff().await?;
        }
        if !self.staff.contains_key(actor) {
            return Ok(None);
        }
        let id = resource.split_once('/').map(|(_, id)| id).unwrap_or("");
        let row = || self.records.store().read(rt.as_str(), id);
        let act = match (AuditAction::parse(&e.action), rt) {
            (Some(AuditAction::Create), ResourceType::Patient) => {
                Act::Register { size: row().await?.map(|r| r.body.len()).unwrap_or(0) }
            }
            (Some(AuditAction::Create), rt) => match row().await? {
                Some(r) => Act::Create {
                    rt,
                    size: r.body.len(),
                    restricted: r.restricted_to.is_some(),
                    shared: r.patient_visible,
                    day: match rt {
                        ResourceType::Appointment => self.day_of(&r.id, e.time).await?,
                        _ => None,
                    },
                },
                None => return Ok(None),
            },
            (Some(AuditAction::Update), rt) => {
                Act::Update { rt, size: row().await?.map(|r| r.body.len()).unwrap_or(0) }
            }
            (Some(AuditAction::Read), rt) => Act::Read { rt },
            (Some(AuditAction::Vread), rt) => Act::Vread { rt },
            (Some(AuditAction::History), rt) => Act::History { rt },
            (Some(AuditAction::SearchHit), rt) => Act::SearchHit { rt },
            _ => return Ok(None),
        };
        Ok(Some(((actor.clone(), patient.clone()), act)))
    }

    /// The UTC day of a real appointment (`id`), from its blind `practitioner-day`
    /// token: the keeper computes the tokens of each clinician's days from a week
    /// back to four months ahead and asks the store which one the row has (a
    /// few indexed queries; nothing is decrypted, and the day never leaves the
    /// keeper: its honey appointment is booked on it, so that the dump's "same
    /// clinician, same day" counts look like the clinic's).
    async fn day_of(&self, id: &str, now: i64) -> Result<Option<i64>> {
        let today = confidant_fhir::day_number(now);
        let mut practitioners: Vec<&String> = self.staff.values().filter_map(|(_, pr)| pr.as_ref()).collect();
        practitioners.sort();
        practitioners.dedup();
        for pr in practitioners {
            let (mut lo, mut hi) = (today - 7, today + 121);
            if !self.has_day(id, pr, lo..hi).await? {
                continue;
            }
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if self.has_day(id, pr, lo..mid).await? {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return Ok(Some(lo));
        }
        Ok(None)
    }

    /// Does appointment `id` carry the `practitioner-day` token of `pr` for one of `days`?
    async fn has_day(&self, id: &str, pr: &str, days: std::ops::Range<i64>) -> Result<bool> {
        let keyring = self.records.keyring();
        let tokens: Vec<Vec<u8>> = days
            .map(|d| {
                let value = confidant_fhir::practitioner_day(pr, d);
                keyring.search_token(
                    ResourceType::Appointment.as_str(),
                    confidant_fhir::PRACTITIONER_DAY,
                    confidant_vault::BlindKind::Identifier,
                    &value,
                )
            })
            .collect();
        let criteria = [
            confidant_store::Criterion::Id(id.to_owned()),
            confidant_store::Criterion::Token { param: confidant_fhir::PRACTITIONER_DAY, tokens },
        ];
        Ok(self.records.store().search("Appointment", &criteria, None, 1).await?.1 > 0)
    }

    async fn load_staff(&mut self) -> Result<()> {
        self.staff = self
            .records
            .store()
            .users()
            .await?
            .into_iter()
            .filter(|u| u.disabled_at.is_none())
            .filter_map(|u| Some((u.id, (Role::parse(&u.role)?, u.practitioner_id))))
            .collect();
        Ok(())
    }

    fn principal(&self, e: &Entry) -> Result<Principal> {
        let actor = e.actor.clone().unwrap_or_default();
        let Some((role, practitioner)) = self.staff.get(&actor).cloned() else { bail!("an unknown actor") };
        Ok(Principal {
            user_id: actor,
            role,
            practitioner_id: practitioner,
            patient_id: None,
            scopes: None,
            source: e.source.clone(),
            credential: None,
            training: Default::default(),
        })
    }

    /// Carry out one replayed step on its visit's honey record.
    async fn replay(&mut self, d: &Due) -> Result<()> {
        let shadow = self.shadows.get(&d.visit).cloned().unwrap_or(Shadow::Skip);
        let p = &d.actor;
        let honey = match (&shadow, &d.act) {
            (Shadow::Planting, Act::Register { size }) => {
                let id = self.register(p, *size).await?;
                self.shadows.insert(d.visit, Shadow::Honey(id));
                return Ok(());
            }
            (Shadow::Honey(h), _) => h.clone(),
            _ => return Ok(()),
        };
        let pick = |rows: Vec<VersionRow>| -> Result<Option<VersionRow>> {
            if rows.is_empty() {
                return Ok(None);
            }
            let i = below(rows.len())?;
            Ok(rows.into_iter().nth(i))
        };
        match d.act.clone() {
            Act::Register { .. } => {}
            Act::Create { rt, size, restricted, shared, day } => {
                let day = day.map(|day| day + d.shift_days);
                self.create(p, &honey, rt, (size, day), restricted, shared).await?
            }
            Act::Update { rt, size } => {
                if let Some(row) = pick(self.records.honey_resources(&honey, rt).await?)? {
                    self.update(p, row, size).await?;
                }
            }
            Act::Read { rt } => {
                if let Some(row) = pick(self.records.honey_resources(&honey, rt).await?)? {
                    self.records.read(p, rt, &row.id).await?;
                }
            }
            Act::Vread { rt } => {
                if let Some(row) = pick(self.records.honey_resources(&honey, rt).await?)? {
                    let v = 1 + below(row.version_id.max(1) as usize)? as i64;
                    self.records.vread(p, rt, &row.id, v).await?;
                }
            }
            Act::History { rt } => {
                if let Some(row) = pick(self.records.honey_resources(&honey, rt).await?)? {
                    self.records.history(p, rt, &row.id, None, 50).await?;
                }
            }
            Act::SearchHit { rt } => {
                if let Some(row) = pick(self.records.honey_resources(&honey, rt).await?)? {
                    let req = SearchRequest { params: vec![("_id".into(), row.id.clone())], count: 10, after: None };
                    self.records.search(p, rt, &req).await?;
                }
            }
        }
        Ok(())
    }

    /// What the free text adds to the stored size, learnt from the last write of `rt`.
    fn text_for(&self, rt: ResourceType, size: usize, per_char: f64, default_overhead: i64) -> usize {
        let overhead = self.overhead.get(&rt).copied().unwrap_or(default_overhead);
        (((size as i64 - overhead).max(0) as f64) / per_char) as usize
    }

    async fn learn(&mut self, rt: ResourceType, id: &str, text_bytes: f64) -> Result<()> {
        if let Some(row) = self.records.store().read(rt.as_str(), id).await? {
            self.overhead.insert(rt, row.body.len() as i64 - text_bytes as i64);
        }
        Ok(())
    }

    /// Register a honey patient as `p` (a clinician goes on its care team),
    /// about `size` bytes stored like the real registration it follows (0: any).
    async fn register(&mut self, p: &Principal, size: usize) -> Result<String> {
        let n = below(49)?;
        let given_names: Vec<&str> = synthetic::GIVEN_FEMALE.iter().chain(synthetic::GIVEN_MALE).copied().collect();
        let g = self.clinic_name("given", &given_names).await?;
        let f = self.clinic_name("family", synthetic::FAMILY_NAMES).await?;
        let (given, family) = (given_names[g], synthetic::FAMILY_NAMES[f]);
        let name = Some((given, family, g < synthetic::GIVEN_FEMALE.len()));
        let plain = synthetic::patient(n, name, false)?;
        let mut with_address = plain.clone();
        if let Some(a) = synthetic::patient(n, name, true)?.get("address") {
            with_address["address"] = a.clone();
        }
        let base = self.overhead.get(&ResourceType::Patient).copied();
        // The address makes the difference in size: kept if the real one was larger.
        let address = match base {
            Some(b) if size > 0 => size as i64 > b + json_len(&plain) + 40,
            _ => below(2)? == 0,
        };
        let resource = if address { with_address } else { plain };
        let len = json_len(&resource);
        let stored = self.records.create(p, ResourceType::Patient, resource).await?;
        self.records.add_honey_records(std::slice::from_ref(&stored.id)).await?;
        if let Some(d) = &self.detector {
            d.set_honey(self.records.honey_set());
        }
        if let Some(row) = self.records.store().read("Patient", &stored.id).await? {
            self.overhead.insert(ResourceType::Patient, row.body.len() as i64 - len);
        }
        Ok(stored.id)
    }

    /// One of `names` for a honey patient's `param` (`given`, `family`), as the
    /// clinic's own patients carry them: with the probability that a patient
    /// chosen at random has that name (counted by its blind token, nothing
    /// decrypted); when the chosen patient's name is none of these, one that no
    /// patient has yet (as a newcomer's name would be).
    async fn clinic_name(&self, param: &'static str, names: &[&str]) -> Result<usize> {
        let store = self.records.store();
        let mut counts = Vec::with_capacity(names.len());
        for name in names {
            let token = self.records.keyring().search_token(
                ResourceType::Patient.as_str(),
                param,
                confidant_vault::BlindKind::Text,
                name,
            );
            let criteria = [confidant_store::Criterion::Token { param, tokens: vec![token] }];
            counts.push(store.search("Patient", &criteria, None, 1).await?.1.max(0) as usize);
        }
        let (_, patients) = store.search("Patient", &[], None, 1).await?;
        let listed: usize = counts.iter().sum();
        let mut r = below((patients.max(0) as usize).max(listed).max(1))?;
        for (i, c) in counts.iter().enumerate() {
            if r < *c {
                return Ok(i);
            }
            r -= c;
        }
        let unused: Vec<usize> = (0..names.len()).filter(|i| counts[*i] == 0).collect();
        Ok(match unused.is_empty() {
            true => below(names.len())?,
            false => unused[below(unused.len())?],
        })
    }

    /// The practitioner whose care a honey record is in (for a receptionist's booking).
    async fn carer(&self, p: &Principal, honey: &str) -> Result<Option<String>> {
        if let Some(own) = &p.practitioner_id {
            return Ok(Some(own.clone()));
        }
        let pairs = self.records.store().care_team_pairs(self.records.now_millis()).await?;
        Ok(pairs.into_iter().find(|(_, patient)| patient == honey).map(|(pr, _)| pr))
    }

    async fn create(
        &mut self,
        p: &Principal,
        honey: &str,
        rt: ResourceType,
        (size, day): (usize, Option<i64>),
        restricted: bool,
        shared: bool,
    ) -> Result<()> {
        let now = self.records.now_millis();
        match rt {
            ResourceType::Appointment => {
                let Some(practitioner) = self.carer(p, honey).await? else { return Ok(()) };
                // The real appointment's day, at a working hour (another if it clashes);
                // without one, a weekday in the next two weeks.
                for _ in 0..8 {
                    let day = match day {
                        Some(d) => d,
                        None => now / 86_400_000 + 1 + below(14)? as i64,
                    };
                    let start = day * 86_400_000 + (7 + below(9)? as i64) * 3_600_000;
                    // 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays.
                    if (day + 3) % 7 >= 5 && below(10)? > 0 {
                        continue;
                    }
                    let b = Booking {
                        patient: honey.to_owned(),
                        practitioner: practitioner.clone(),
                        times: vec![(start, start + 45 * 60_000)],
                        kind: None,
                    };
                    match self.records.book_appointments(p, &b).await {
                        Err(confidant_records::RecordsError::DoubleBooked { .. }) => continue,
                        r => {
                            r?;
                            break;
                        }
                    }
                }
            }
            ResourceType::Encounter => {
                let Some(practitioner) = self.carer(p, honey).await? else { return Ok(()) };
                let start = now - (now % 3_600_000) - 3_600_000;
                self.records.create(p, rt, synthetic::encounter(honey, &practitioner, start)).await?;
            }
            ResourceType::DocumentReference => {
                let kind = match (restricted, shared) {
                    (true, _) => NoteKind::Psychotherapy,
                    (false, true) => NoteKind::Shared,
                    _ => NoteKind::Ordinary,
                };
                // A note of a clinician only: reception writes none.
                if p.role != Role::Clinician {
                    return Ok(());
                }
                let text = self.text_for(rt, size, 4.0 / 3.0, 700);
                let encounter = self.records.honey_resources(honey, ResourceType::Encounter).await?;
                let latest = encounter.iter().max_by_key(|r| r.last_updated).map(|r| r.id.clone());
                let note = synthetic::note(honey, latest.as_deref(), now, kind, text)?;
                let written = note_text_len(&note);
                let stored = self.records.create(p, rt, note).await?;
                self.learn(rt, &stored.id, written as f64 * 4.0 / 3.0).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn update(&mut self, p: &Principal, row: VersionRow, size: usize) -> Result<()> {
        let rt = ResourceType::parse(&row.resource_type).context("a stored type")?;
        let id = row.id.clone();
        let honey = row.compartment.clone();
        let mut current = self.records.honey_current(row).await?;
        match rt {
            ResourceType::DocumentReference => {
                let text = self.text_for(rt, size, 4.0 / 3.0, 700);
                let kind = NoteKind::Ordinary;
                let fresh = synthetic::note(&honey, None, self.records.now_millis(), kind, text)?;
                current["content"] = fresh["content"].clone();
                let written = note_text_len(&current);
                self.records.update(p, rt, &id, current, None).await?;
                self.learn(rt, &id, written as f64 * 4.0 / 3.0).await?;
            }
            ResourceType::Patient => {
                let phone = format!("+358 50 {:03} {:04}", below(1000)?, below(10_000)?);
                current["telecom"] = json!([{"system": "phone", "value": phone}]);
                self.records.update(p, rt, &id, current, None).await?;
            }
            ResourceType::Appointment | ResourceType::Encounter => {
                self.records.update(p, rt, &id, current, None).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// How long after a real visit at `at` (Unix ms) its replay starts: the next
/// working day (Monday after a Friday or a weekend) at the same time of day,
/// give or take [`JITTER_MS`]. A day later keeps the clinic's hours and
/// weekdays in the honey records' timestamps; a replay minutes later would
/// shift them, and sit right behind the visit it copies.
pub fn replay_delay(at: i64) -> Result<i64> {
    // 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays.
    let days = match (confidant_fhir::day_number(at) + 3) % 7 {
        4 => 3,
        5 => 2,
        _ => 1,
    };
    Ok(days * DAY_MS - JITTER_MS + below((2 * JITTER_MS) as usize)? as i64)
}

fn json_len(v: &Value) -> i64 {
    serde_json::to_vec(v).map(|b| b.len() as i64).unwrap_or(0)
}

fn note_text_len(note: &Value) -> usize {
    note.pointer("/content/0/attachment/data").and_then(Value::as_str).map(|d| d.len() * 3 / 4).unwrap_or(0)
}

/// Whose care holds which patients, at one moment.
struct Reach {
    /// Practitioner id → patients in their care.
    cares: HashMap<String, Vec<String>>,
    /// Every patient (for reception, who reaches them all).
    patients: usize,
}

impl Reach {
    async fn of(records: &Records, now: i64) -> Result<Reach> {
        let mut cares: HashMap<String, Vec<String>> = HashMap::new();
        for (pr, patient) in records.store().care_team_pairs(now).await? {
            cares.entry(pr).or_default().push(patient);
        }
        let (_, patients) = records.store().search("Patient", &[], None, 1).await?;
        Ok(Reach { cares, patients: patients.max(0) as usize })
    }

    /// The honey records `actor` reaches, and how many real patients they reach.
    fn of_actor(
        &self,
        actor: &str,
        staff: &HashMap<String, (Role, Option<String>)>,
        honey: &std::collections::HashSet<String>,
    ) -> (Vec<String>, usize) {
        match staff.get(actor) {
            Some((Role::Clinician, Some(pr))) => {
                let mine = self.cares.get(pr).map(Vec::as_slice).unwrap_or_default();
                let h: Vec<String> = mine.iter().filter(|p| honey.contains(*p)).cloned().collect();
                let real = mine.len() - h.len();
                (h, real)
            }
            Some((Role::Reception, _)) => {
                let mut h: Vec<String> = honey.iter().cloned().collect();
                h.sort();
                (h, self.patients.saturating_sub(honey.len()))
            }
            _ => (Vec::new(), 0),
        }
    }
}

/// `serve`'s honey keeper: a step every `every`, until aborted.
pub fn spawn(mut keeper: Keeper, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = keeper.step().await {
                tracing::warn!(error = %e, "the honey keeper's step failed; it runs again later");
            }
        }
    })
}

/// Plant `count` honey records now, each registered by an active clinician
/// of the clinic (chosen at random) in their care, with a session, its note
/// (a psychotherapy note, restricted to its author) and a booked appointment.
/// Returns their ids. Refused if the clinic has no clinician yet.
pub async fn plant(records: &Records, count: u32) -> Result<Vec<String>> {
    let mut keeper = Keeper::new(records, 0, None).await?;
    keeper.load_staff().await?;
    let mut clinicians: Vec<(String, String)> = keeper
        .staff
        .iter()
        .filter_map(|(id, (role, pr))| (*role == Role::Clinician).then(|| Some((id.clone(), pr.clone()?))).flatten())
        .collect();
    clinicians.sort();
    if clinicians.is_empty() {
        bail!("no clinician yet: honey records are registered by a clinician of the clinic; add one first");
    }
    let mut ids = Vec::new();
    for _ in 0..count {
        let (user, pr) = clinicians[below(clinicians.len())?].clone();
        let p = Principal {
            user_id: user,
            role: Role::Clinician,
            practitioner_id: Some(pr),
            patient_id: None,
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        };
        let h = keeper.register(&p, 0).await.context("cannot register a honey record")?;
        for (rt, size) in [(ResourceType::Encounter, 0), (ResourceType::DocumentReference, 900)] {
            keeper.create(&p, &h, rt, (size, None), true, false).await.context("cannot write a honey record")?;
        }
        keeper.create(&p, &h, ResourceType::Appointment, (0, None), false, false).await?;
        ids.push(h);
    }
    Ok(ids)
}

/// `confidant honey plant`: returns how many honey records there are now in
/// all. The ids are not returned: a terminal's scrollback is no place for them.
pub async fn plant_more(console: &Console, dir: &std::path::Path, count: u32) -> Result<usize> {
    let crate::instance::Instance { records, .. } = crate::instance::Instance::open(console, dir).await?;
    let result = plant(&records, count).await;
    let total = records.honey_records().await.map(|h| h.len());
    records.store().close().await;
    result?;
    Ok(total?)
}
