//! One function per detection rule: where rule X is decided is `fn x` here.
//!
//! Each rule is a pure function of the audit entry it looks at (with the
//! request's credential, [`Seen`]), the settings, and the sliding window or
//! map it counts in; it returns the firing, if any, and does no I/O. Storing,
//! deduplicating and responding to a firing is the [`Detector`](crate::Detector)'s.
//!
//! | rule | function |
//! |---|---|
//! | `honey-record` | [`honey_record`] |
//! | `bulk-patients` | [`bulk_patients`] (after the commit), [`bulk_patients_cut`] and [`bulk_patients_refused`] (before the response is sent) |
//! | `bulk-search` | [`bulk_search`] |
//! | `outside-care` | [`outside_care`] |
//! | `break-glass` | [`break_glass`] |
//! | `failed-logins` | [`failed_logins`] |
//! | `new-address` | [`new_address`] |
//! | `audit-tamper` | raised by the checks that find it ([`Detector::raise_event`](crate::Detector::raise_event)) |
//! | `integrity` | [`integrity`] |
//! | `suspected-phishing` | [`suspected_phishing`] |

use std::collections::{HashMap, HashSet, VecDeque};

use confidant_audit::{Action, CONSOLE, Entry, Outcome};

use crate::{DETECTOR, Rule, Settings};

/// Events in a sliding window: how many, and how many different items.
#[derive(Default)]
pub(crate) struct Window {
    events: VecDeque<(i64, String)>,
    distinct: HashMap<String, u32>,
}

impl Window {
    /// Add an event at `at`, forget those older than `span`; (events, distinct items).
    fn push(&mut self, at: i64, item: &str, span: i64) -> (usize, usize) {
        self.expire(at, span);
        self.events.push_back((at, item.to_owned()));
        *self.distinct.entry(item.to_owned()).or_default() += 1;
        (self.events.len(), self.distinct.len())
    }

    /// Forget the events older than `span` at `at`.
    fn expire(&mut self, at: i64, span: i64) {
        while let Some((t, _)) = self.events.front()
            && *t <= at - span
        {
            if let Some((_, old)) = self.events.pop_front()
                && let Some(n) = self.distinct.get_mut(&old)
            {
                *n -= 1;
                if *n == 0 {
                    self.distinct.remove(&old);
                }
            }
        }
    }
}

/// Windows per subject; forgotten wholesale beyond this many subjects (a flood
/// of made-up subjects must not exhaust memory).
const MAX_SUBJECTS: usize = 100_000;

#[derive(Default)]
pub(crate) struct Windows(HashMap<String, Window>);

impl Windows {
    fn push(&mut self, subject: &str, at: i64, item: &str, span: i64) -> (usize, usize) {
        if self.0.len() >= MAX_SUBJECTS && !self.0.contains_key(subject) {
            self.0.clear();
        }
        self.0.entry(subject.to_owned()).or_default().push(at, item, span)
    }

    /// The different items of `subject` within `span` before `at`.
    fn distinct(&mut self, subject: &str, at: i64, span: i64) -> Option<&HashMap<String, u32>> {
        let w = self.0.get_mut(subject)?;
        w.expire(at, span);
        Some(&w.distinct)
    }
}

/// What the rules count, per node.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) patients: Windows,
    pub(crate) search_hits: Windows,
    pub(crate) refusals: Windows,
    pub(crate) failed_by_account: Windows,
    pub(crate) failed_by_source: Windows,
    /// Credential → the address it was first used from.
    pub(crate) first_address: HashMap<String, String>,
    /// Dedupe key → (open alert id, when it last fired).
    pub(crate) open: HashMap<String, (String, i64)>,
    /// What `/metrics` shows: counts only, never who or which record.
    pub(crate) counters: crate::Counters,
}

/// A rule that fired.
#[derive(Debug, Clone)]
pub(crate) struct Firing {
    pub(crate) rule: Rule,
    /// What makes two firings the same alert.
    pub(crate) key: String,
    pub(crate) subject: Option<String>,
    pub(crate) summary: String,
    pub(crate) at: i64,
    pub(crate) actor: Option<String>,
    pub(crate) credential: Option<String>,
}

/// One committed audit entry as the rules see it, with the credential of the
/// request that made it (`session/<id>` or `token/<id>`).
pub(crate) struct Seen<'a> {
    pub(crate) entry: &'a Entry,
    pub(crate) credential: Option<&'a str>,
}

impl Seen<'_> {
    /// Entries of the console and of the detector itself are never counted.
    pub(crate) fn is_exempt(&self) -> bool {
        matches!(self.actor(), Some(CONSOLE) | Some(DETECTOR))
    }

    fn actor(&self) -> Option<&str> {
        self.entry.actor.as_deref()
    }

    fn who(&self) -> &str {
        self.actor().unwrap_or("an unknown user")
    }

    fn from(&self) -> &str {
        self.entry.source.as_deref().unwrap_or("an unknown address")
    }

    /// The patient of a record access, if this entry is one.
    fn patient(&self) -> Option<&str> {
        self.entry.patient.as_deref().filter(|_| self.entry.is_record_access())
    }

    /// `about_a_person`: false for a rule about an address, which locks no one's account.
    fn fire(&self, rule: Rule, key: String, subject: Option<&str>, summary: String, about_a_person: bool) -> Firing {
        Firing {
            rule,
            key: format!("{}:{key}", rule.as_str()),
            subject: subject.map(str::to_owned),
            summary,
            at: self.entry.time,
            actor: self.actor().filter(|_| about_a_person).map(str::to_owned),
            credential: self.credential.filter(|_| about_a_person).map(str::to_owned),
        }
    }
}

/// Does this entry disclose a patient's record to its actor? Reads do; so do
/// search hits that carry clinical content (notes, encounters). Writes carry
/// what the caller sent; a patient list (demographics) counts only toward
/// bulk-search.
pub(crate) fn discloses(e: &Entry) -> bool {
    e.outcome == Outcome::Success
        && e.is_record_access()
        && match e.action.as_str() {
            "read" | "vread" | "history" | "export" => true,
            "search-hit" => e.resource.as_deref().is_some_and(|r| !r.starts_with("Patient/")),
            _ => false,
        }
}

/// `honey-record`: anyone touches a honey record, by any path, whatever the outcome.
pub(crate) fn honey_record(seen: &Seen, honey: &HashSet<String>) -> Option<Firing> {
    let patient = seen.patient()?;
    if !honey.contains(patient) {
        return None;
    }
    let (who, from, e) = (seen.who(), seen.from(), seen.entry);
    // The summary does not name the record: that would mark it in the log.
    let summary = format!("a honey record was touched ({}, {:?}) by user {who} from {from}", e.action, e.outcome);
    Some(seen.fire(Rule::HoneyRecord, who.to_owned(), seen.actor(), summary, true))
}

/// `bulk-patients`, after the commit: one user has read more than
/// `max_patients_per_user` different patients' records within the window.
pub(crate) fn bulk_patients(seen: &Seen, patients: &mut Windows, s: &Settings) -> Option<Firing> {
    let patient = seen.patient()?;
    if !discloses(seen.entry) {
        return None;
    }
    let who = seen.who();
    let (_, n) = patients.push(who, seen.entry.time, patient, s.window_ms());
    if n <= s.max_patients_per_user as usize {
        return None;
    }
    let summary = format!(
        "user {who} read {n} different patients' records within {} minutes (from {})",
        s.window_minutes,
        seen.from()
    );
    Some(seen.fire(Rule::BulkPatients, who.to_owned(), seen.actor(), summary, true))
}

/// `bulk-patients`, before a response is sent: where `entries` would take
/// their actor past the threshold of different patients, (time, index of the
/// first entry that may not go out, the patients it would have made). Counts
/// nothing: the entries that do go out are counted by [`bulk_patients`] once
/// they commit.
pub(crate) fn bulk_patients_cut(
    patients: &mut Windows,
    s: &Settings,
    entries: &[Entry],
) -> Option<(i64, usize, usize)> {
    let max = s.max_patients_per_user as usize;
    let span = s.window_ms();
    let mut added: HashSet<&str> = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let (Some(who), Some(patient)) = (e.actor.as_deref(), e.patient.as_deref()) else { continue };
        if matches!(who, CONSOLE | DETECTOR) || !discloses(e) {
            continue;
        }
        let seen = patients.distinct(who, e.time, span);
        let known = seen.is_some_and(|d| d.contains_key(patient)) || added.contains(patient);
        if known {
            continue;
        }
        let before = seen.map_or(0, HashMap::len) + added.len();
        if before + 1 > max {
            return Some((e.time, i, before + 1));
        }
        added.insert(patient);
    }
    None
}

/// `bulk-patients` for a response [`bulk_patients_cut`] stopped at `stopped`
/// (`patients` different patients, at `at`).
pub(crate) fn bulk_patients_refused(
    stopped: &Entry,
    credential: Option<&str>,
    s: &Settings,
    at: i64,
    patients: usize,
) -> Firing {
    let who = stopped.actor.clone().unwrap_or_default();
    let from = stopped.source.as_deref().unwrap_or("an unknown address");
    let summary = format!(
        "user {who} asked for records of {patients} different patients within {} minutes (from {from}); \
         the response was refused before it was sent",
        s.window_minutes
    );
    Firing {
        rule: Rule::BulkPatients,
        key: format!("{}:{who}", Rule::BulkPatients.as_str()),
        subject: Some(who.clone()),
        summary,
        at,
        actor: Some(who),
        credential: credential.map(str::to_owned),
    }
}

/// `bulk-search`: one user's searches returned more than
/// `max_search_hits_per_user` hits within the window.
pub(crate) fn bulk_search(seen: &Seen, hits: &mut Windows, s: &Settings) -> Option<Firing> {
    let patient = seen.patient()?;
    let e = seen.entry;
    if e.outcome != Outcome::Success || e.action != "search-hit" {
        return None;
    }
    let who = seen.who();
    let (n, _) = hits.push(who, e.time, patient, s.window_ms());
    if n <= s.max_search_hits_per_user as usize {
        return None;
    }
    let summary =
        format!("user {who} received {n} search hits within {} minutes (from {})", s.window_minutes, seen.from());
    Some(seen.fire(Rule::BulkSearch, who.to_owned(), seen.actor(), summary, true))
}

/// `break-glass`: someone opened a patient's record by break-glass (one alert
/// per break-glass, keyed by its purpose).
pub(crate) fn break_glass(seen: &Seen) -> Option<Firing> {
    seen.patient()?;
    let e = seen.entry;
    if e.outcome != Outcome::Success || e.action != "break-glass" {
        return None;
    }
    let who = seen.who();
    let key = e.purpose.clone().unwrap_or_else(|| format!("{who}:{}", e.time));
    let summary = format!("user {who} opened a patient's record by break-glass (from {})", seen.from());
    Some(seen.fire(Rule::BreakGlass, key, seen.actor(), summary, true))
}

/// `outside-care`: one user was refused `max_refusals_per_user` times within the window.
pub(crate) fn outside_care(seen: &Seen, refusals: &mut Windows, s: &Settings) -> Option<Firing> {
    let e = seen.entry;
    if e.outcome != Outcome::Denied || !e.is_record_access() {
        return None;
    }
    let who = seen.who();
    let (n, _) = refusals.push(who, e.time, "", s.window_ms());
    if n < s.max_refusals_per_user.max(1) as usize {
        return None;
    }
    let summary = format!(
        "user {who} was refused {n} times within {} minutes: records outside their care (from {})",
        s.window_minutes,
        seen.from()
    );
    Some(seen.fire(Rule::OutsideCare, who.to_owned(), seen.actor(), summary, true))
}

/// `failed-logins`: `max_failed_logins_per_account` failed logins for one
/// account (first), or `max_failed_logins_per_source` from one address
/// (second; about an address, so it locks no one), within the window.
pub(crate) fn failed_logins(
    seen: &Seen,
    by_account: &mut Windows,
    by_source: &mut Windows,
    s: &Settings,
) -> [Option<Firing>; 2] {
    let e = seen.entry;
    if e.action != Action::LoginFailed.as_str() {
        return [None, None];
    }
    let span = s.window_ms();
    let account = seen.actor().and_then(|account| {
        let (n, _) = by_account.push(account, e.time, "", span);
        (n >= s.max_failed_logins_per_account.max(1) as usize).then(|| {
            let summary = format!("{n} failed logins for account {account} within {} minutes", s.window_minutes);
            seen.fire(Rule::FailedLogins, format!("account:{account}"), Some(account), summary, true)
        })
    });
    let source = e.source.as_deref().and_then(|source| {
        let (n, _) = by_source.push(source, e.time, "", span);
        (n >= s.max_failed_logins_per_source.max(1) as usize).then(|| {
            let summary = format!("{n} failed logins from {source} within {} minutes", s.window_minutes);
            seen.fire(Rule::FailedLogins, format!("source:{source}"), Some(source), summary, false)
        })
    });
    [account, source]
}

/// `new-address`: a session or API token is used from another address than its first.
pub(crate) fn new_address(seen: &Seen, first_address: &mut HashMap<String, String>) -> Option<Firing> {
    let (Some(cred), Some(source)) = (seen.credential, seen.entry.source.as_deref()) else { return None };
    if first_address.len() >= MAX_SUBJECTS && !first_address.contains_key(cred) {
        first_address.clear();
    }
    let first = first_address.entry(cred.to_owned()).or_insert_with(|| source.to_owned());
    if first.as_str() == source {
        return None;
    }
    let summary = format!("{cred} of user {} was used from {source}; it was first used from {first}", seen.who());
    Some(seen.fire(Rule::NewAddress, format!("{cred}:{source}"), seen.actor(), summary, true))
}

/// `suspected-phishing`: a staff member reported a mail that is not one of
/// their drill mails (each report its own alert; it locks no one: the
/// reporter did the right thing). The mail itself is not in the log.
pub(crate) fn suspected_phishing(seen: &Seen) -> Option<Firing> {
    let e = seen.entry;
    if e.action != Action::PhishingSuspected.as_str() || e.outcome != Outcome::Success {
        return None;
    }
    let who = seen.who();
    let summary = format!(
        "user {who} reported a suspected phishing e-mail (not a drill, from {}): ask them for the mail and warn the staff",
        seen.from()
    );
    Some(seen.fire(Rule::SuspectedPhishing, format!("{who}:{}", e.time), seen.actor(), summary, false))
}

/// `integrity`: the summary for a stored record (`Type/id`) that failed its
/// integrity check when it was opened.
pub(crate) fn integrity(resource: &str) -> String {
    format!("stored record {resource} failed its integrity check: it was altered in the database")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn entry(at: i64, action: Action, outcome: Outcome, actor: Option<&str>, patient: Option<&str>) -> Entry {
        let mut e = Entry::new(at, action, outcome);
        e.actor = actor.map(str::to_owned);
        e.source = Some("192.0.2.7".into());
        e.patient = patient.map(str::to_owned);
        e
    }

    fn seen(e: &Entry) -> Seen<'_> {
        Seen { entry: e, credential: Some("session/s1") }
    }

    #[test]
    fn honey_record_fires_on_any_outcome_without_naming_the_record() {
        let honey: HashSet<String> = ["h1".to_owned()].into();
        for outcome in [Outcome::Success, Outcome::Denied] {
            let e = entry(T0, Action::Read, outcome, Some("u1"), Some("h1"));
            let f = honey_record(&seen(&e), &honey).unwrap();
            assert_eq!(
                (f.rule, f.key.as_str(), f.actor.as_deref()),
                (Rule::HoneyRecord, "honey-record:u1", Some("u1"))
            );
            assert_eq!(f.credential.as_deref(), Some("session/s1"));
            assert!(!f.summary.contains("h1"), "{}", f.summary);
        }
        let other = entry(T0, Action::Read, Outcome::Success, Some("u1"), Some("p1"));
        assert!(honey_record(&seen(&other), &honey).is_none());
    }

    #[test]
    fn bulk_patients_counts_different_patients_in_the_window() {
        let s = Settings { max_patients_per_user: 2, ..Settings::default() };
        let mut w = Windows::default();
        let read = |at: i64, p: &str| entry(at, Action::Read, Outcome::Success, Some("u1"), Some(p));
        assert!(bulk_patients(&seen(&read(T0, "p1")), &mut w, &s).is_none());
        assert!(bulk_patients(&seen(&read(T0 + 1, "p1")), &mut w, &s).is_none(), "the same patient again");
        assert!(bulk_patients(&seen(&read(T0 + 2, "p2")), &mut w, &s).is_none());
        let f = bulk_patients(&seen(&read(T0 + 3, "p3")), &mut w, &s).unwrap();
        assert_eq!((f.rule, f.at), (Rule::BulkPatients, T0 + 3));
        assert!(f.summary.contains("read 3 different patients"), "{}", f.summary);
        // A refusal discloses nothing; past the window everything is forgotten.
        let denied = entry(T0 + 4, Action::Read, Outcome::Denied, Some("u1"), Some("p4"));
        assert!(bulk_patients(&seen(&denied), &mut w, &s).is_none());
        assert!(bulk_patients(&seen(&read(T0 + s.window_ms() + 3, "p4")), &mut w, &s).is_none());
    }

    #[test]
    fn the_cut_stops_a_response_at_the_first_patient_past_the_threshold() {
        let s = Settings { max_patients_per_user: 2, ..Settings::default() };
        let mut w = Windows::default();
        let read = |p: &str| entry(T0, Action::Read, Outcome::Success, Some("u1"), Some(p));
        let page = [read("p1"), read("p1"), read("p2"), read("p3"), read("p4")];
        assert_eq!(bulk_patients_cut(&mut w, &s, &page), Some((T0, 3, 3)));
        assert_eq!(bulk_patients_cut(&mut w, &s, &page[..3]), None, "it counts nothing itself");
        let f = bulk_patients_refused(&page[3], Some("token/t1"), &s, T0, 3);
        assert_eq!((f.key.as_str(), f.credential.as_deref()), ("bulk-patients:u1", Some("token/t1")));
    }

    #[test]
    fn failed_logins_by_address_lock_no_one() {
        let s = Settings { max_failed_logins_per_account: 2, max_failed_logins_per_source: 3, ..Settings::default() };
        let (mut by_account, mut by_source) = (Windows::default(), Windows::default());
        let failed = entry(T0, Action::LoginFailed, Outcome::Denied, Some("u1"), None);
        let mut fired = Vec::new();
        for _ in 0..3 {
            fired.push(failed_logins(&seen(&failed), &mut by_account, &mut by_source, &s));
        }
        assert!(fired[0].iter().all(Option::is_none));
        let [account, source] = &fired[1];
        assert_eq!(account.as_ref().unwrap().key, "failed-logins:account:u1");
        assert!(source.is_none());
        let source = fired[2][1].as_ref().unwrap();
        assert_eq!(
            (source.key.as_str(), source.subject.as_deref()),
            ("failed-logins:source:192.0.2.7", Some("192.0.2.7"))
        );
        assert_eq!((source.actor.as_deref(), source.credential.as_deref()), (None, None));
    }

    #[test]
    fn new_address_fires_when_a_credential_moves() {
        let mut first = HashMap::new();
        let mut e = entry(T0, Action::Read, Outcome::Success, Some("u1"), Some("p1"));
        assert!(new_address(&seen(&e), &mut first).is_none());
        assert!(new_address(&seen(&e), &mut first).is_none());
        e.source = Some("198.51.100.9".into());
        let f = new_address(&seen(&e), &mut first).unwrap();
        assert_eq!(f.key, "new-address:session/s1:198.51.100.9");
        assert!(f.summary.contains("first used from 192.0.2.7"), "{}", f.summary);
        assert!(new_address(&Seen { entry: &e, credential: None }, &mut first).is_none());
    }

    #[test]
    fn refusals_break_glass_and_search_hits_each_have_their_rule() {
        let s = Settings { max_refusals_per_user: 2, max_search_hits_per_user: 1, ..Settings::default() };
        let mut w = Windows::default();
        let denied = entry(T0, Action::Read, Outcome::Denied, Some("u1"), Some("p1"));
        assert!(outside_care(&seen(&denied), &mut w, &s).is_none());
        assert_eq!(outside_care(&seen(&denied), &mut w, &s).unwrap().rule, Rule::OutsideCare);
        let mut bg = entry(T0, Action::BreakGlass, Outcome::Success, Some("u1"), Some("p1"));
        bg.purpose = Some("bg-1".into());
        assert_eq!(break_glass(&seen(&bg)).unwrap().key, "break-glass:bg-1");
        assert!(break_glass(&seen(&denied)).is_none());
        let mut hits = Windows::default();
        let hit = entry(T0, Action::SearchHit, Outcome::Success, Some("u1"), Some("p1"));
        assert!(bulk_search(&seen(&hit), &mut hits, &s).is_none());
        assert_eq!(bulk_search(&seen(&hit), &mut hits, &s).unwrap().rule, Rule::BulkSearch);
    }

    #[test]
    fn the_console_and_the_detector_are_exempt() {
        for actor in [CONSOLE, DETECTOR] {
            let e = entry(T0, Action::Read, Outcome::Success, Some(actor), Some("p1"));
            assert!(seen(&e).is_exempt());
        }
        assert!(!seen(&entry(T0, Action::Read, Outcome::Success, Some("u1"), None)).is_exempt());
    }

    #[test]
    fn a_window_counts_events_and_distinct_items_and_forgets_old_ones() {
        let mut w = Window::default();
        assert_eq!(w.push(0, "a", 100), (1, 1));
        assert_eq!(w.push(10, "a", 100), (2, 1));
        assert_eq!(w.push(20, "b", 100), (3, 2));
        // At 105 the event at 0 is older than the span; at 120, also 10 and 20.
        assert_eq!(w.push(105, "c", 100), (3, 3));
        assert_eq!(w.push(120, "c", 100), (2, 1));
    }
}
