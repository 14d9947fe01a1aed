//! The calendar's use cases: book one appointment or a series, find a
//! clinician's appointments between two instants, cancel, mark a no-show,
//! reschedule (one, or this and the rest of its series), and refuse a double
//! booking. Every read and write goes through the records paths (policy,
//! audit); whose calendar a principal keeps is [`policy::schedule`].
//!
//! Appointments are sealed with their patient's key, so "this clinician's
//! Tuesday" is found by blind tokens (`practitioner-day`: one per practitioner
//! and UTC day an appointment touches, see `confidant_fhir::day_number`) and
//! then filtered after decryption. Cost: a day view opens the appointments of
//! that clinician's one or two UTC days, a week view eight; a booking opens
//! those of the days it touches. Only what is shown (or the one clashing
//! appointment whose time a refusal names) is audited, as search hits: what is
//! opened and dropped leaves the server in no form.
//!
//! Double bookings: the check and the writes run under a lock per practitioner
//! (a Tokio mutex in this process), so two concurrent bookings in one server
//! are serialised and the second sees the first. Several `serve` nodes on one
//! PostgreSQL do not share it: there the check can race (see the README).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_fhir::{
    APPOINTMENT_TYPE_SYSTEM, CANCELLATION_REASON_SYSTEM, PRACTITIONER_DAY, ResourceType, SERIES_SYSTEM, day_number,
    instant, practitioner_day,
};
use confidant_policy::records::Seen;
use confidant_policy::{self as policy, Action, Principal};
use confidant_store::Criterion;
use confidant_vault::BlindKind;
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result, SearchRequest, Stored};

/// The most appointments one series books (a year of weekly sessions).
pub const MAX_SERIES: usize = 52;
/// The longest stretch a calendar query covers, in days.
const MAX_QUERY_DAYS: i64 = 42;
/// The most appointments one calendar query opens.
const MAX_OPENED: usize = 2000;
/// HL7 cancellation reasons offered: (code, display).
pub const CANCEL_REASONS: &[(&str, &str)] = &[("pat", "Patient"), ("prov", "Provider"), ("other", "Other")];
/// Statuses that do not hold the practitioner's time.
const FREE: &[&str] = &["cancelled", "noshow", "entered-in-error"];

/// One booking (a single appointment or a series): who, with whom, when.
#[derive(Debug, Clone)]
pub struct Booking {
    /// The Patient id.
    pub patient: String,
    /// The Practitioner id.
    pub practitioner: String,
    /// `[start, end)` of each appointment, Unix ms.
    pub times: Vec<(i64, i64)>,
    /// The appointment type: a code of [`APPOINTMENT_TYPE_SYSTEM`] (codes only:
    /// free text stays out of what reception reads).
    pub kind: Option<String>,
}

/// Which appointments a change applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// This one.
    One,
    /// This one and the later ones of its series.
    Rest,
}

/// One lock per practitioner: bookings with them are checked and written one at a time.
#[derive(Default)]
pub(crate) struct BookingLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl BookingLocks {
    pub(crate) fn of(&self, practitioner: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(practitioner.to_owned()).or_default().clone()
    }
}

/// `[start, end)` of an appointment, Unix ms.
pub fn span_of(a: &Value) -> Option<(i64, i64)> {
    let at = |k: &str| a[k].as_str().and_then(confidant_fhir::time_range).map(|r| r.0);
    Some((at("start")?, at("end")?))
}

/// The Practitioner id taking part in an appointment.
pub fn practitioner_in(a: &Value) -> Option<&str> {
    a["participant"].as_array()?.iter().find_map(|p| p["actor"]["reference"].as_str()?.strip_prefix("Practitioner/"))
}

/// The series an appointment belongs to, if any.
fn series_of(a: &Value) -> Option<&str> {
    a["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"].as_str() == Some(SERIES_SYSTEM))
        .and_then(|i| i["value"].as_str())
}

fn holds_time(a: &Value) -> bool {
    !FREE.contains(&a["status"].as_str().unwrap_or(""))
}

impl Records {
    fn calendar_of(&self, p: &Principal, practitioner: &str) -> std::result::Result<(), policy::records::Refused> {
        policy::schedule::may_keep_calendar_of(p, practitioner)
    }

    async fn refuse_calendar(&self, p: &Principal, practitioner: &str, audit: AuditAction) -> Result<()> {
        if let Err(r) = self.calendar_of(p, practitioner) {
            self.audit_denied(p, audit, ResourceType::Appointment, None).await;
            return Err(r.into());
        }
        Ok(())
    }

    /// The visible appointments of `practitioners` on UTC days `days` that
    /// `keep` retains, opened; each kept one with its audit entry (not yet appended).
    async fn on_days(
        &self,
        p: &Principal,
        practitioners: &[String],
        days: &BTreeSet<i64>,
        keep: impl Fn(&Stored) -> bool,
    ) -> Result<Vec<(confidant_audit::Entry, Stored)>> {
        let rt = ResourceType::Appointment;
        let mut tokens = Vec::new();
        for pr in practitioners {
            for day in days {
                let value = practitioner_day(pr, *day);
                tokens.push(self.keyring.search_token(rt.as_str(), PRACTITIONER_DAY, BlindKind::Identifier, &value));
            }
        }
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let mut criteria: Vec<Criterion> =
            Self::visibility_criterion(p, rt, self.clock.now_millis()).into_iter().collect();
        criteria.push(Criterion::Token { param: PRACTITIONER_DAY, tokens });
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        let mut opened = 0;
        loop {
            let (rows, _) = self.store.search(rt.as_str(), &criteria, after.as_deref(), 101).await?;
            let more = rows.len() > 100;
            for (row, via_break_glass) in rows.into_iter().take(100) {
                opened += 1;
                after = Some(row.id.clone());
                // A honey record's appointments are in no calendar (`honey`).
                if self.hides_from_calendar(&row) {
                    continue;
                }
                let seen = if via_break_glass { Seen::ByBreakGlass } else { Seen::Yes };
                let entry = self.entry(p, AuditAction::SearchHit, Outcome::Success, Some(&row), seen);
                match self.open_record(row).await {
                    Ok(stored) if keep(&stored) => out.push((entry, stored)),
                    Ok(_) | Err(RecordsError::Integrity) => {}
                    Err(e) => return Err(e),
                }
            }
            if !more {
                break;
            }
            if opened >= MAX_OPENED {
                return Err(RecordsError::Invalid(format!(
                    "more than {MAX_OPENED} appointments in this stretch: choose a shorter one or one clinician"
                )));
            }
        }
        Ok(out)
    }

    /// The appointments of `practitioners` (Practitioner ids) overlapping
    /// `[from, until)` (Unix ms), soonest first, each audited as a search hit.
    pub async fn appointments_between(
        &self,
        p: &Principal,
        practitioners: &[String],
        from: i64,
        until: i64,
    ) -> Result<Vec<Stored>> {
        self.permit(p, ResourceType::Appointment, Action::Read, AuditAction::SearchHit).await?;
        for pr in practitioners {
            self.refuse_calendar(p, pr, AuditAction::SearchHit).await?;
        }
        if until <= from || day_number(until - 1) - day_number(from) >= MAX_QUERY_DAYS {
            return Err(RecordsError::Invalid(format!("a calendar covers between one and {MAX_QUERY_DAYS} days")));
        }
        let days: BTreeSet<i64> = (day_number(from)..=day_number(until - 1)).collect();
        let found = self
            .on_days(p, practitioners, &days, |s| span_of(&s.resource).is_some_and(|(st, en)| st < until && from < en))
            .await?;
        let (entries, mut list): (Vec<_>, Vec<_>) = found.into_iter().unzip();
        list.sort_by_key(|s| span_of(&s.resource).map(|(st, _)| st));
        self.audited(p, &entries, list).await
    }

    /// FHIR search `Appointment?practitioner=..&date=ge..&date=lt..`: the
    /// appointments of those practitioners overlapping the range (both ends
    /// given, at most six weeks), soonest first; no other parameters, one page.
    pub(crate) async fn appointments_by_date(&self, p: &Principal, req: &SearchRequest) -> Result<crate::SearchPage> {
        let needs = "a search by date takes practitioner and two dates, e.g. \
             practitioner=Practitioner/{id}&date=ge2027-03-01&date=lt2027-03-08";
        let mut practitioners = Vec::new();
        let (mut from, mut until) = (None::<i64>, None::<i64>);
        for (name, value) in &req.params {
            match name.as_str() {
                "practitioner" => practitioners.extend(
                    value.split(',').map(|v| v.trim().strip_prefix("Practitioner/").unwrap_or(v.trim()).to_owned()),
                ),
                "date" => {
                    let (f, u) =
                        confidant_fhir::date_range(value).ok_or_else(|| RecordsError::Invalid(needs.into()))?;
                    from = f.map_or(from, |f| Some(from.map_or(f, |x: i64| x.max(f))));
                    until = u.map_or(until, |u| Some(until.map_or(u, |x: i64| x.min(u))));
                }
                _ => return Err(RecordsError::NotSupported(needs.into())),
            }
        }
        let (Some(from), Some(until)) = (from, until) else { return Err(RecordsError::Invalid(needs.into())) };
        if practitioners.is_empty() || practitioners.iter().any(|pr| !confidant_fhir::is_valid_id(pr)) {
            return Err(RecordsError::Invalid(needs.into()));
        }
        let list = self.appointments_between(p, &practitioners, from, until).await?;
        let count = req.count.clamp(1, 100) as usize;
        if list.len() > count {
            return Err(RecordsError::Invalid(format!(
                "more than {count} appointments in this range: choose a shorter one or a larger _count (at most 100)"
            )));
        }
        Ok(crate::SearchPage { total: list.len() as i64, entries: list, next_after: None, previous_before: None })
    }

    /// The start of a booked appointment of `practitioner` overlapping any of
    /// `times`, other than those in `except` (ids). The clashing appointment is
    /// audited (its time is told); the others opened are not shown.
    async fn clash(
        &self,
        p: &Principal,
        practitioner: &str,
        times: &[(i64, i64)],
        except: &[String],
    ) -> Result<Option<i64>> {
        let days: BTreeSet<i64> =
            times.iter().flat_map(|(s, e)| day_number(*s)..=day_number((*e - 1).max(*s))).collect();
        let overlaps = |s: &Stored| {
            !except.contains(&s.id)
                && holds_time(&s.resource)
                && span_of(&s.resource).is_some_and(|(st, en)| times.iter().any(|(a, b)| st < *b && *a < en))
        };
        let mut found = self.on_days(p, &[practitioner.to_owned()], &days, overlaps).await?;
        found.sort_by_key(|(_, s)| span_of(&s.resource).map(|(st, _)| st));
        match found.into_iter().next() {
            Some((entry, s)) => {
                let at = span_of(&s.resource).map(|(st, _)| st).unwrap_or_default();
                self.audited(p, &[entry], Some(at)).await
            }
            None => Ok(None),
        }
    }

    /// Book one appointment or a series with `b.practitioner`: refused whole
    /// ([`RecordsError::DoubleBooked`], naming the clash's time, never the
    /// other patient) if any of them overlaps a booked appointment. A
    /// practitioner not yet on the patient's care team is put on it (intake).
    pub async fn book_appointments(&self, p: &Principal, b: &Booking) -> Result<Vec<Stored>> {
        self.permit(p, ResourceType::Appointment, Action::Write, AuditAction::Create).await?;
        self.refuse_calendar(p, &b.practitioner, AuditAction::Create).await?;
        if b.times.is_empty() || b.times.len() > MAX_SERIES {
            return Err(RecordsError::Invalid(format!("a booking is 1 to {MAX_SERIES} appointments")));
        }
        if b.times.iter().any(|(s, e)| e <= s || e - s > 8 * 3_600_000) {
            return Err(RecordsError::Invalid("an appointment ends after it starts, within eight hours".into()));
        }
        for (i, (s, e)) in b.times.iter().enumerate() {
            if b.times[..i].iter().any(|(a, z)| a < e && s < z) {
                return Err(RecordsError::Invalid("the appointments of a series must not overlap".into()));
            }
        }
        if !confidant_fhir::is_valid_id(&b.practitioner) {
            return Err(RecordsError::Invalid("practitioner must be a Practitioner id".into()));
        }
        let needs_team = self.check_booking_care_team(p, &b.patient, &b.practitioner).await?;
        let lock = self.bookings.of(&b.practitioner);
        let guard = lock.lock().await;
        if let Some(at) = self.clash(p, &b.practitioner, &b.times, &[]).await? {
            return Err(RecordsError::DoubleBooked { at });
        }
        let series =
            if b.times.len() > 1 { Some(confidant_vault::random_id().map_err(RecordsError::Vault)?) } else { None };
        let mut booked = Vec::with_capacity(b.times.len());
        for (start, end) in &b.times {
            let mut a = json!({
                "resourceType": "Appointment", "status": "booked",
                "start": instant(*start), "end": instant(*end),
                "minutesDuration": (end - start) / 60_000,
                "created": instant(self.clock.now_millis()),
                "participant": [
                    {"actor": {"reference": format!("Patient/{}", b.patient)}, "status": "accepted"},
                    {"actor": {"reference": format!("Practitioner/{}", b.practitioner)}, "status": "accepted"}
                ]
            });
            if let Some(code) = &b.kind {
                a["appointmentType"] = json!({"coding": [{"system": APPOINTMENT_TYPE_SYSTEM, "code": code}]});
            }
            if let Some(series) = &series {
                a["identifier"] = json!([{"system": SERIES_SYSTEM, "value": series}]);
            }
            booked.push(self.create(p, ResourceType::Appointment, a).await?);
        }
        drop(guard);
        if needs_team {
            self.book_onto_care_team(p, &b.patient, &b.practitioner).await?;
        }
        Ok(booked)
    }

    /// A FHIR create (`id` none) or update of an Appointment: one that holds
    /// its practitioner's time (a start, an end, not cancelled) is written under
    /// their lock, and refused ([`RecordsError::DoubleBooked`]) if it overlaps
    /// another of their booked appointments that `p` sees.
    pub async fn write_appointment(
        &self,
        p: &Principal,
        id: Option<&str>,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<Stored> {
        let rt = ResourceType::Appointment;
        let audit = if id.is_some() { AuditAction::Update } else { AuditAction::Create };
        self.permit(p, rt, Action::Write, audit).await?;
        let write = |resource: Value| async move {
            match id {
                None => self.create(p, rt, resource).await,
                Some(id) => self.update(p, rt, id, resource, if_match).await,
            }
        };
        let practitioner = practitioner_in(&resource).filter(|pr| confidant_fhir::is_valid_id(pr)).map(str::to_owned);
        let (Some(practitioner), Some(span), true) = (practitioner, span_of(&resource), holds_time(&resource)) else {
            return write(resource).await;
        };
        if span.1 <= span.0 {
            return write(resource).await;
        }
        let lock = self.bookings.of(&practitioner);
        let _guard = lock.lock().await;
        let except: Vec<String> = id.map(str::to_owned).into_iter().collect();
        if let Some(at) = self.clash(p, &practitioner, &[span], &except).await? {
            return Err(RecordsError::DoubleBooked { at });
        }
        write(resource).await
    }

    /// The double-booking check of [`Records::write_appointment`] for one entry of a
    /// transaction: against the practitioner's stored bookings (except `id`, the
    /// one it replaces) and the transaction's earlier ones (`booked`, which it joins).
    /// The caller holds the practitioner's booking lock.
    pub(crate) async fn check_booking(
        &self,
        p: &Principal,
        resource: &Value,
        id: Option<&str>,
        booked: &mut Vec<(String, (i64, i64))>,
    ) -> Result<()> {
        let practitioner = practitioner_in(resource).filter(|pr| confidant_fhir::is_valid_id(pr));
        let (Some(practitioner), Some(span), true) = (practitioner, span_of(resource), holds_time(resource)) else {
            return Ok(());
        };
        if span.1 <= span.0 {
            return Ok(());
        }
        if booked.iter().any(|(pr, (s, e))| pr == practitioner && *s < span.1 && span.0 < *e) {
            return Err(RecordsError::DoubleBooked { at: span.0 });
        }
        let except: Vec<String> = id.map(str::to_owned).into_iter().collect();
        if let Some(at) = self.clash(p, practitioner, &[span], &except).await? {
            return Err(RecordsError::DoubleBooked { at });
        }
        booked.push((practitioner.to_owned(), span));
        Ok(())
    }

    /// A booked appointment `p` may change, and what `which` takes with it:
    /// this one, or this and the later booked ones of its series (soonest first).
    async fn changing(&self, p: &Principal, id: &str, which: Which) -> Result<(String, Vec<Stored>)> {
        self.permit(p, ResourceType::Appointment, Action::Write, AuditAction::Update).await?;
        let target = self.read(p, ResourceType::Appointment, id).await?;
        let practitioner = practitioner_in(&target.resource)
            .ok_or_else(|| RecordsError::Unprocessable("this appointment has no practitioner".into()))?
            .to_owned();
        self.refuse_calendar(p, &practitioner, AuditAction::Update).await?;
        if target.resource["status"].as_str() != Some("booked") {
            return Err(RecordsError::Unprocessable("only a booked appointment can be changed".into()));
        }
        let Some((start, _)) = span_of(&target.resource) else {
            return Err(RecordsError::Unprocessable("this appointment has no start and end".into()));
        };
        let series = series_of(&target.resource).map(str::to_owned);
        let (Which::Rest, Some(series)) = (which, series) else { return Ok((practitioner, vec![target])) };
        let mut rest = Vec::new();
        let mut after = None;
        loop {
            let req = SearchRequest {
                params: vec![("identifier".into(), format!("{SERIES_SYSTEM}|{series}"))],
                count: 100,
                after,
            };
            let page = self.search(p, ResourceType::Appointment, &req).await?;
            rest.extend(page.entries.into_iter().filter(|a| {
                a.resource["status"].as_str() == Some("booked")
                    && practitioner_in(&a.resource) == Some(practitioner.as_str())
                    && span_of(&a.resource).is_some_and(|(s, _)| s >= start)
            }));
            match page.next_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        rest.sort_by_key(|a| span_of(&a.resource).map(|(s, _)| s));
        Ok((practitioner, rest))
    }

    async fn save_all(&self, p: &Principal, list: Vec<(Stored, Value)>) -> Result<usize> {
        let n = list.len();
        for (old, new) in list {
            self.update(p, ResourceType::Appointment, &old.id, new, Some(old.version_id)).await?;
        }
        Ok(n)
    }

    /// Cancel a booked appointment (or it and the rest of its series) for a
    /// coded reason ([`CANCEL_REASONS`]). How many were cancelled.
    pub async fn cancel_appointment(&self, p: &Principal, id: &str, which: Which, reason: &str) -> Result<usize> {
        let Some((code, _)) = CANCEL_REASONS.iter().find(|(c, _)| *c == reason) else {
            return Err(RecordsError::Invalid("choose a cancellation reason: pat, prov or other".into()));
        };
        let (_, list) = self.changing(p, id, which).await?;
        let changed = list
            .into_iter()
            .map(|a| {
                let mut r = a.resource.clone();
                r["status"] = json!("cancelled");
                r["cancelationReason"] = json!({"coding": [{"system": CANCELLATION_REASON_SYSTEM, "code": code}]});
                (a, r)
            })
            .collect();
        self.save_all(p, changed).await
    }

    /// Mark a booked appointment that has started as a no-show.
    pub async fn mark_no_show(&self, p: &Principal, id: &str) -> Result<()> {
        let (_, list) = self.changing(p, id, Which::One).await?;
        let mut changed = Vec::new();
        for a in list {
            if span_of(&a.resource).is_some_and(|(s, _)| s > self.clock.now_millis()) {
                return Err(RecordsError::Unprocessable(
                    "an appointment that has not started cannot be a no-show".into(),
                ));
            }
            let mut r = a.resource.clone();
            r["status"] = json!("noshow");
            changed.push((a, r));
        }
        self.save_all(p, changed).await.map(|_| ())
    }

    /// Move a booked appointment (or it and the rest of its series): `to`
    /// gives each one's new start from (the old start of the one chosen, its
    /// own old start), Unix ms; lengths are kept. Refused whole if a new time
    /// overlaps another booked appointment.
    pub async fn reschedule_appointment(
        &self,
        p: &Principal,
        id: &str,
        which: Which,
        to: &(dyn Fn(i64, i64) -> Option<i64> + Send + Sync),
    ) -> Result<usize> {
        let (practitioner, list) = self.changing(p, id, which).await?;
        let first = list.first().and_then(|a| span_of(&a.resource)).map(|(s, _)| s).unwrap_or_default();
        let mut moved = Vec::with_capacity(list.len());
        for a in list {
            let (s, e) = span_of(&a.resource).unwrap_or_default();
            let ns =
                to(first, s).ok_or_else(|| RecordsError::Invalid("the new time is not a time of the clinic".into()))?;
            moved.push((a, (ns, ns + (e - s))));
        }
        let lock = self.bookings.of(&practitioner);
        let _guard = lock.lock().await;
        let except: Vec<String> = moved.iter().map(|(a, _)| a.id.clone()).collect();
        let times: Vec<(i64, i64)> = moved.iter().map(|(_, t)| *t).collect();
        if let Some(at) = self.clash(p, &practitioner, &times, &except).await? {
            return Err(RecordsError::DoubleBooked { at });
        }
        let changed = moved
            .into_iter()
            .map(|(a, (s, e))| {
                let mut r = a.resource.clone();
                r["start"] = json!(instant(s));
                r["end"] = json!(instant(e));
                (a, r)
            })
            .collect();
        self.save_all(p, changed).await
    }
}
