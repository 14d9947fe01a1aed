//! Appointment reminders and the patient's own appointments: the sweep that
//! finds booked appointments due a reminder (and the patient's e-mail, phone
//! and language, read for that purpose only), the "reminded" mark, the cancel
//! links of reminders, and the patient's cancellation (portal or link). The
//! decisions are `confidant_policy::appointments`; every read and change is
//! audited here, through the records' audit path.
//!
//! Where things live (the store's `instance_settings`, plaintext names):
//! * `reminder:<appointment id>:<start ms>` — the "reminded" mark: `claimed:<ms>`
//!   before the send, `sent:<ms>` after it, `retry:<ms>` when a claim older
//!   than [`CLAIM_MS`] (a crash between send and mark) is taken over — once.
//!   It tells a database reader that this appointment id got a reminder and
//!   when it starts (the start is also inside the sealed record; the mark
//!   repeats it in the clear, with no patient, clinician or content).
//! * `cancel-link:<hex HMAC of the token>` — the appointment id a cancel link
//!   is bound to; emptied when used. The token itself is never stored: only
//!   its keyed blind index, so a copy of the database cannot produce a link.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use confidant_audit::{Action as AuditAction, Entry, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::appointments::{
    self as rules, AppointmentFacts, CANCEL_LINK_ACTOR, CancelRefused, REMINDER_ACTOR, REMINDER_PURPOSE,
};
use confidant_policy::records::Seen;
use confidant_policy::{Principal, Role};
use confidant_store::{Criterion, StoreError, VersionRow, Write};
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result, Stored};

/// How long a claimed reminder may stay unsent before another sweep may take
/// it over (a crash between the send and its mark): longer than a send takes.
pub const CLAIM_MS: i64 = 10 * 60_000;

/// The blind-index kind of cancel-link tokens.
const LINK_KIND: &str = "cancel-link";

/// A cancel link's token: 256 random bits as 64 lower-case hex characters.
pub const LINK_TOKEN_LEN: usize = 64;

/// How many unknown cancel-link tokens one source may try per window, and the window.
const GUESSES_PER_WINDOW: u32 = 20;
const GUESS_WINDOW_MS: i64 = 15 * 60_000;

/// FHIR's code for "cancelled by the patient".
const CANCELLATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason";

/// A reminder to send: where, when, and in which language; nothing clinical.
#[derive(Debug, Clone)]
pub struct DueReminder {
    pub appointment_id: String,
    pub patient_id: String,
    /// Unix ms.
    pub start: i64,
    pub email: Option<String>,
    /// For SMS: a `sms` or mobile `phone` telecom.
    pub phone: Option<String>,
    /// `fi` or `en` from `Patient.communication`, if the patient gave one.
    pub language: Option<String>,
    mark: String,
    /// The value of the mark this sweep holds (`claimed:` or `retry:`).
    claim: Vec<u8>,
}

/// What a cancel link leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// The appointment can be cancelled with this link (its start, Unix ms).
    Cancellable { start: i64 },
    /// Inside the clinic's notice period: call the clinic (its start, Unix ms).
    TooLate { start: i64 },
    /// No such link, used, expired, or the appointment is gone: one answer for all.
    Unknown,
}

/// The end of a patient's cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    Done,
    TooLate,
    /// Not theirs, not booked, past, or no such appointment: one answer.
    Unknown,
}

fn start_of(a: &Value) -> Option<i64> {
    let s = a.get("start")?.as_str()?;
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

fn facts<'a>(compartment: &'a str, a: &'a Value) -> AppointmentFacts<'a> {
    AppointmentFacts {
        patient: compartment,
        status: a.get("status").and_then(Value::as_str).unwrap_or(""),
        start: start_of(a),
    }
}

/// The e-mail, the phone for text messages, and the language of a Patient resource.
fn contact_of(patient: &Value) -> (Option<String>, Option<String>, Option<String>) {
    let telecom = patient.get("telecom").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    fn value(t: &Value) -> Option<&str> {
        t.get("value").and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty())
    }
    fn system(t: &Value) -> &str {
        t.get("system").and_then(Value::as_str).unwrap_or("")
    }
    let email = telecom.iter().filter(|t| system(t) == "email").find_map(value).map(str::to_owned);
    let phone = telecom
        .iter()
        .filter(|t| system(t) == "sms")
        .chain(
            telecom
                .iter()
                .filter(|t| system(t) == "phone" && t.get("use").and_then(Value::as_str).is_none_or(|u| u == "mobile")),
        )
        .find_map(value)
        .map(str::to_owned);
    let language = patient
        .get("communication")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/language/coding/0/code").and_then(Value::as_str))
        .map(|code| code.split('-').next().unwrap_or("").to_ascii_lowercase())
        .find(|code| code == "fi" || code == "en");
    (email, phone, language)
}

/// A cancel link token as given: exactly 64 lower-case hex characters, else nothing is looked up.
fn well_formed(token: &str) -> bool {
    token.len() == LINK_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Unknown tokens per source: a limit on guessing (each guess is audited as well).
fn guesses() -> &'static Mutex<HashMap<String, (i64, u32)>> {
    static G: OnceLock<Mutex<HashMap<String, (i64, u32)>>> = OnceLock::new();
    G.get_or_init(|| Mutex::new(HashMap::new()))
}

fn over_guess_limit(source: &str, now: i64) -> bool {
    let Ok(g) = guesses().lock() else { return true };
    g.get(source).is_some_and(|(since, n)| now - since < GUESS_WINDOW_MS && *n >= GUESSES_PER_WINDOW)
}

fn count_guess(source: &str, now: i64) {
    if let Ok(mut g) = guesses().lock() {
        if g.len() > 10_000 {
            g.retain(|_, (since, _)| now - *since < GUESS_WINDOW_MS);
        }
        let e = g.entry(source.to_owned()).or_insert((now, 0));
        if now - e.0 >= GUESS_WINDOW_MS {
            *e = (now, 0);
        }
        e.1 += 1;
    }
}

impl Records {
    fn reminder_entry(&self, action: AuditAction, row: &VersionRow) -> Entry {
        let mut e = Entry::new(self.clock.now_millis(), action, Outcome::Success);
        e.actor = Some(REMINDER_ACTOR.to_owned());
        e.role = Some("system".to_owned());
        e.resource = Some(format!("{}/{}", row.resource_type, row.id));
        e.version = Some(row.version_id);
        e.patient = Some(row.compartment.clone());
        e.purpose = Some(REMINDER_PURPOSE.to_owned());
        e
    }

    /// Booked appointments that start within `lead_ms` from now and have no
    /// reminder yet (or whose claim is stale), claimed for this sweep, with
    /// their patients' contact details. Each one's appointment and patient
    /// reads are audited (purpose: appointment reminder) before they are
    /// returned. Appointments are opened to learn their start: only those
    /// acted upon are audited (see README).
    pub async fn due_reminders(&self, lead_ms: i64, limit: usize) -> Result<Vec<DueReminder>> {
        for rt in [ResourceType::Appointment, ResourceType::Patient] {
            rules::reminder_may_read(rt, REMINDER_PURPOSE).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        }
        let now = self.clock.now_millis();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (rows, _) = self.store.search(ResourceType::Appointment.as_str(), &[], after.as_deref(), 200).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.0.id.clone());
            let full = rows.len() == 200;
            for (row, _) in rows {
                if out.len() >= limit {
                    return Ok(out);
                }
                let stored = self.open_record(row.clone()).await?;
                let f = facts(&row.compartment, &stored.resource);
                let Some(start) = f.start else { continue };
                if f.status != "booked" || start <= now || start > now + lead_ms {
                    continue;
                }
                let mark = format!("reminder:{}:{start}", row.id);
                let Some(claim) = self.claim_reminder(&mark, now).await? else { continue };
                let Some(patient_row) = self.store.read(ResourceType::Patient.as_str(), &row.compartment).await? else {
                    continue;
                };
                let entries = [
                    self.reminder_entry(AuditAction::Read, &row),
                    self.reminder_entry(AuditAction::Read, &patient_row),
                ];
                let patient = self.open_record(patient_row).await?;
                let (email, phone, language) = contact_of(&patient.resource);
                self.append_system(&entries, false).await?;
                out.push(DueReminder {
                    appointment_id: row.id.clone(),
                    patient_id: row.compartment.clone(),
                    start,
                    email,
                    phone,
                    language,
                    mark,
                    claim,
                });
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Take the mark of a reminder: a new one, or (once) a claim nobody finished.
    async fn claim_reminder(&self, mark: &str, now: i64) -> Result<Option<Vec<u8>>> {
        let claim = format!("claimed:{now}").into_bytes();
        match self.store.insert_setting(mark, &claim, now).await {
            Ok(()) => return Ok(Some(claim)),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(current) = self.store.setting(mark).await? else { return Ok(None) };
        let text = String::from_utf8_lossy(&current);
        let stale =
            text.strip_prefix("claimed:").and_then(|t| t.parse::<i64>().ok()).is_some_and(|at| now - at > CLAIM_MS);
        if !stale {
            return Ok(None);
        }
        let retry = format!("retry:{now}").into_bytes();
        Ok(self.store.replace_setting(mark, &current, &retry).await?.then_some(retry))
    }

    /// A reminder was sent (`channels`: what carried it, e.g. `email sms`):
    /// its mark says so and the patient's access log shows it.
    pub async fn reminder_sent(&self, due: &DueReminder, channels: &str) -> Result<()> {
        let now = self.clock.now_millis();
        let sent = format!("sent:{now}").into_bytes();
        if !self.store.replace_setting(&due.mark, &due.claim, &sent).await? {
            tracing::warn!(appointment = %due.appointment_id, "a reminder's mark was taken over meanwhile");
        }
        let row = VersionRow {
            resource_type: ResourceType::Appointment.as_str().into(),
            id: due.appointment_id.clone(),
            version_id: 0,
            compartment: due.patient_id.clone(),
            key_version: 0,
            last_updated: 0,
            body: Vec::new(),
            restricted_to: None,
            patient_visible: false,
        };
        let mut e = self.reminder_entry(AuditAction::Export, &row);
        e.version = None;
        e.target = Some(format!("reminder {channels}"));
        self.append_system(&[e], false).await
    }

    /// The patient has no address this clinic sends reminders to: marked, so
    /// that later sweeps do not open their record again; nothing is audited
    /// beyond the reads.
    pub async fn reminder_unreachable(&self, due: &DueReminder) -> Result<()> {
        let done = format!("unreachable:{}", self.clock.now_millis()).into_bytes();
        self.store.replace_setting(&due.mark, &due.claim, &done).await?;
        Ok(())
    }

    /// A reminder could not be sent on any channel: its claim is given back,
    /// so the next sweep tries again.
    pub async fn reminder_failed(&self, due: &DueReminder) -> Result<()> {
        // A claim goes back by being made stale: replaced with a claim at time 0.
        self.store.replace_setting(&due.mark, &due.claim, b"claimed:0").await?;
        Ok(())
    }

    /// Append entries that no session or token made. `watched`: shown to the
    /// detector too (guessed links are; the sweep's reads and the links'
    /// cancellations are not: one actor for every patient would look like a
    /// bulk read and be stopped, which would stop reminders and links).
    async fn append_system(&self, entries: &[Entry], watched: bool) -> Result<()> {
        match self.auditor.append(entries).await {
            Ok(()) => {
                if watched {
                    self.observe(None, entries).await;
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "audit append failed: no reminder is sent");
                Err(RecordsError::AuditFailed)
            }
        }
    }

    /// A new cancel link token for `appointment_id` (stored only as its blind index).
    pub async fn issue_cancel_link(&self, appointment_id: &str) -> Result<String> {
        let token = format!(
            "{}{}",
            confidant_vault::random_id().map_err(RecordsError::Vault)?,
            confidant_vault::random_id().map_err(RecordsError::Vault)?
        );
        let name = format!("{LINK_KIND}:{}", hex::encode(self.blind(LINK_KIND, &token)));
        self.store.insert_setting(&name, appointment_id.as_bytes(), self.clock.now_millis()).await?;
        Ok(token)
    }

    /// The principal a cancel link acts as: the appointment's patient, for this one change.
    fn link_principal(patient: &str, source: Option<&str>) -> Principal {
        Principal {
            user_id: CANCEL_LINK_ACTOR.into(),
            role: Role::Patient,
            practitioner_id: None,
            patient_id: Some(patient.to_owned()),
            scopes: None,
            source: source.map(str::to_owned),
            credential: None,
            training: Default::default(),
        }
    }

    /// The link's appointment (row, opened), or `None` — with the guess audited and counted.
    async fn link_target(&self, token: &str, source: &str) -> Result<Option<(String, VersionRow, Stored)>> {
        let now = self.clock.now_millis();
        if over_guess_limit(source, now) {
            return Ok(None);
        }
        let name = format!("{LINK_KIND}:{}", hex::encode(self.blind(LINK_KIND, token)));
        let bound = if well_formed(token) { self.store.setting(&name).await? } else { None };
        let id = bound.map(|b| String::from_utf8_lossy(&b).into_owned()).filter(|id| !id.is_empty());
        let row = match &id {
            Some(id) => self.store.read(ResourceType::Appointment.as_str(), id).await?,
            None => None,
        };
        let Some(row) = row else {
            count_guess(source, now);
            let mut e = Entry::new(now, AuditAction::Read, Outcome::Denied);
            e.actor = Some(CANCEL_LINK_ACTOR.to_owned());
            e.role = Some("patient".to_owned());
            e.source = Some(source.to_owned());
            e.resource = Some(ResourceType::Appointment.as_str().to_owned());
            e.target = Some("unknown cancel link".to_owned());
            self.append_system(&[e], true).await?;
            return Ok(None);
        };
        let p = Self::link_principal(&row.compartment, Some(source));
        let entry = self.entry(&p, AuditAction::Read, Outcome::Success, Some(&row), Seen::Yes);
        let stored = self.open_record(row.clone()).await?;
        self.append_system(&[entry], false).await?;
        Ok(Some((name, row, stored)))
    }

    /// What the cancel link `token` leads to (its read audited; an unknown one too).
    pub async fn cancel_link_state(&self, token: &str, source: &str, notice_hours: u32) -> Result<LinkState> {
        let Some((_, row, stored)) = self.link_target(token, source).await? else { return Ok(LinkState::Unknown) };
        let f = facts(&row.compartment, &stored.resource);
        let start = f.start.unwrap_or(0);
        Ok(match rules::may_patient_cancel(&row.compartment, &f, self.clock.now_millis(), notice_hours) {
            Ok(()) => LinkState::Cancellable { start },
            Err(CancelRefused::TooLate) => LinkState::TooLate { start },
            Err(_) => LinkState::Unknown,
        })
    }

    /// Cancel the appointment of the link `token` (once: the link dies with it).
    pub async fn cancel_by_link(&self, token: &str, source: &str, notice_hours: u32) -> Result<Cancelled> {
        let Some((name, row, stored)) = self.link_target(token, source).await? else { return Ok(Cancelled::Unknown) };
        let f = facts(&row.compartment, &stored.resource);
        match rules::may_patient_cancel(&row.compartment, &f, self.clock.now_millis(), notice_hours) {
            Ok(()) => {}
            Err(CancelRefused::TooLate) => return Ok(Cancelled::TooLate),
            Err(_) => return Ok(Cancelled::Unknown),
        }
        // The link is spent first: of two submissions, one cancels.
        if !self.store.replace_setting(&name, row.id.as_bytes(), b"").await? {
            return Ok(Cancelled::Unknown);
        }
        let p = Self::link_principal(&row.compartment, Some(source));
        self.write_cancellation(&p, row, stored.resource).await?;
        Ok(Cancelled::Done)
    }

    /// The patient's own appointments, soonest first (each read audited).
    pub async fn own_appointments(&self, p: &Principal) -> Result<Vec<Stored>> {
        let patient = rules::own_appointments(p).map_err(|d| RecordsError::Forbidden(d.to_string()))?.to_owned();
        let (rows, _) = self
            .store
            .search(ResourceType::Appointment.as_str(), &[Criterion::Compartment(patient)], None, 200)
            .await?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut out = Vec::with_capacity(rows.len());
        for (row, _) in rows {
            entries.push(self.entry(p, AuditAction::SearchHit, Outcome::Success, Some(&row), Seen::Yes));
            out.push(self.open_record(row).await?);
        }
        let mut out = self.audited(p, &entries, out).await?;
        out.sort_by_key(|s| start_of(&s.resource).unwrap_or(i64::MAX));
        Ok(out)
    }

    /// The patient cancels their own appointment `id` (portal). Another
    /// patient's, an unknown one and a past one get the same answer.
    pub async fn cancel_own(&self, p: &Principal, id: &str, notice_hours: u32) -> Result<Cancelled> {
        let patient = match rules::own_appointments(p) {
            Ok(id) => id.to_owned(),
            Err(d) => {
                self.audit_denied(p, AuditAction::Update, ResourceType::Appointment, None).await;
                return Err(RecordsError::Forbidden(d.to_string()));
            }
        };
        let row = if confidant_fhir::is_valid_id(id) {
            self.store.read(ResourceType::Appointment.as_str(), id).await?
        } else {
            None
        };
        let Some(row) = row.filter(|r| r.compartment == patient) else {
            self.audit_denied(p, AuditAction::Update, ResourceType::Appointment, None).await;
            return Ok(Cancelled::Unknown);
        };
        let stored = self.open_record(row.clone()).await?;
        let f = facts(&row.compartment, &stored.resource);
        match rules::may_patient_cancel(&patient, &f, self.clock.now_millis(), notice_hours) {
            Ok(()) => {}
            Err(CancelRefused::TooLate) => return Ok(Cancelled::TooLate),
            Err(_) => return Ok(Cancelled::Unknown),
        }
        self.write_cancellation(p, row, stored.resource).await?;
        Ok(Cancelled::Done)
    }

    /// The patient's one change: status `cancelled`, reason `pat`; validated,
    /// sealed and stored with its audit entry in one transaction, as every update.
    async fn write_cancellation(&self, p: &Principal, current: VersionRow, mut resource: Value) -> Result<Stored> {
        if let Value::Object(m) = &mut resource {
            m.insert("status".into(), json!("cancelled"));
            m.insert("cancelationReason".into(), json!({"coding": [{"system": CANCELLATION_SYSTEM, "code": "pat"}]}));
        }
        let rt = ResourceType::Appointment;
        let checked =
            confidant_fhir::validate(rt, &mut resource, self.clock.now_millis()).map_err(RecordsError::Invalid)?;
        let id = current.id.clone();
        let compartment = current.compartment.clone();
        let version = current.version_id + 1;
        let now = self.clock.now_millis();
        Self::stamp(&mut resource, &id, version, now);
        let tokens = self.tokens(rt, &checked.index);
        let mut retried = false;
        loop {
            let key = self.keyring.current_key(&compartment).await?;
            let body = self.seal_body(&key, rt, &id, version, &compartment, &resource)?;
            let row = Self::version_row(rt, &id, version, &compartment, &key, now, body, (None, false));
            let write = Write { row: &row, tokens: &tokens, new_key: None, care_team: None };
            let audit = [self.entry(p, AuditAction::Update, Outcome::Success, Some(&row), Seen::Yes).to_row()];
            match self.store.update(write, current.version_id, &audit).await {
                Ok(()) => {
                    // A link's change is not the detector's to count (see `append_system`); a session's is.
                    let watched = (p.user_id != CANCEL_LINK_ACTOR).then_some(p);
                    self.committed(watched, &audit).await;
                    return Ok(Stored { resource_type: rt, id, version_id: version, last_updated: now, resource });
                }
                Err(StoreError::StaleKey) if !retried => {
                    retried = true;
                    self.keyring.forget_current_key(&compartment);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_details_come_from_telecom_and_communication() {
        let p = json!({
            "resourceType": "Patient",
            "telecom": [
                {"system": "phone", "use": "home", "value": "+358 9 123"},
                {"system": "phone", "use": "mobile", "value": "+358 40 123 4567"},
                {"system": "email", "value": " a@example.fi "}
            ],
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fi-FI"}]}}]
        });
        assert_eq!(contact_of(&p), (Some("a@example.fi".into()), Some("+358 40 123 4567".into()), Some("fi".into())));
        assert_eq!(contact_of(&json!({"resourceType": "Patient"})), (None, None, None));
        let sv = json!({"communication": [{"language": {"coding": [{"code": "sv"}]}}]});
        assert_eq!(contact_of(&sv).2, None, "only Finnish or English");
    }

    #[test]
    fn only_well_formed_tokens_are_looked_up() {
        assert!(well_formed(&"ab".repeat(32)));
        for bad in ["", "../../etc/passwd", &"AB".repeat(32), &"a".repeat(65), &"g".repeat(64), &"a".repeat(10_000)] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn guesses_are_limited_per_source() {
        let now = 1_000_000_000;
        for _ in 0..GUESSES_PER_WINDOW {
            assert!(!over_guess_limit("198.51.100.7", now));
            count_guess("198.51.100.7", now);
        }
        assert!(over_guess_limit("198.51.100.7", now + 1));
        assert!(!over_guess_limit("198.51.100.8", now + 1));
        assert!(!over_guess_limit("198.51.100.7", now + GUESS_WINDOW_MS + 1));
    }
}
