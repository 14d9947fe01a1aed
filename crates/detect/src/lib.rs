//! Breach detection (DESIGN.md §7): rules over the audit stream, evaluated on
//! the request path as each request's entries commit, so that a rule that
//! locks a session does so before the attacker's next request.
//!
//! The rules (thresholds in `[detection]` of the configuration):
//!
//! | rule | fires when | severity |
//! |---|---|---|
//! | `honey-record` | anyone touches a honey record, by any path | critical |
//! | `bulk-patients` | one user reads more than N different patients' records within the window | high |
//! | `bulk-search` | one user's searches return more than N hits within the window | high |
//! | `outside-care` | one user is refused N times (records outside their care) within the window | high |
//! | `break-glass` | someone opens a record by break-glass | high |
//! | `failed-logins` | N failed logins for one account, or M from one address, within the window | high |
//! | `new-address` | a session or API token is used from another address than its first | medium |
//! | `audit-tamper` | the audit log was rewritten in the database: a fresh entry changed or vanished, a planted trigger, a fork ([`Detector::raise_event`]) | critical |
//! | `integrity` | a stored record fails its integrity check (altered or moved ciphertext) | high |
//!
//! An alert is stored (with its own audit entry, in one transaction), logged,
//! and delivered by the sinks ([`sinks`]); the same rule firing again for the
//! same subject while the alert is open counts up that alert instead. A rule
//! may also lock the session (or API token) that triggered it, or the account.
//!
//! Each node counts what it serves: behind a load balancer, windows are per
//! node (use sticky sessions, or lower thresholds).

mod rules;
pub mod sinks;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use confidant_audit::subscriber::Pending;
use confidant_audit::{Action, Auditor, Entry, Outcome, Subscriber};
use confidant_store::{AlertRow, Sink, Store, StoreError};
use serde::{Deserialize, Serialize};

use rules::{Firing, Seen, State};

/// The actor of what the detector itself does (lock a session, raise an alert).
pub const DETECTOR: &str = "detector";

/// A detection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    HoneyRecord,
    BulkPatients,
    BulkSearch,
    OutsideCare,
    BreakGlass,
    FailedLogins,
    NewAddress,
    AuditTamper,
    Integrity,
    /// A staff member reported a mail that is not a drill (phishing drills).
    SuspectedPhishing,
}

impl Rule {
    pub const ALL: &[Rule] = &[
        Rule::HoneyRecord,
        Rule::BulkPatients,
        Rule::BulkSearch,
        Rule::OutsideCare,
        Rule::BreakGlass,
        Rule::FailedLogins,
        Rule::NewAddress,
        Rule::AuditTamper,
        Rule::Integrity,
        Rule::SuspectedPhishing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::HoneyRecord => "honey-record",
            Rule::BulkPatients => "bulk-patients",
            Rule::BulkSearch => "bulk-search",
            Rule::OutsideCare => "outside-care",
            Rule::BreakGlass => "break-glass",
            Rule::FailedLogins => "failed-logins",
            Rule::NewAddress => "new-address",
            Rule::AuditTamper => "audit-tamper",
            Rule::Integrity => "integrity",
            Rule::SuspectedPhishing => "suspected-phishing",
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            Rule::HoneyRecord | Rule::AuditTamper => "critical",
            Rule::NewAddress => "medium",
            _ => "high",
        }
    }
}

/// `[detection]` in the configuration. Windows and thresholds are per user
/// (or per address for failed logins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Honey records (synthetic patients nobody should ever open) per 100
    /// patients the clinic registers: `serve`'s honey keeper plants each one
    /// right after a clinician registers a real patient, in that clinician's
    /// care (`confidant_app::honey`). 0: none.
    pub honey_records: u32,
    pub window_minutes: u32,
    /// More different patients' records opened than this within the window fires `bulk-patients`.
    pub max_patients_per_user: u32,
    /// More search hits than this within the window fires `bulk-search`.
    pub max_search_hits_per_user: u32,
    /// This many refusals within the window fires `outside-care`.
    pub max_refusals_per_user: u32,
    /// This many failed logins for one account within the window fires `failed-logins`...
    pub max_failed_logins_per_account: u32,
    /// ...and this many from one address.
    pub max_failed_logins_per_source: u32,
    /// Rules that also lock the session or API token that set them off.
    pub lock_session_on: Vec<Rule>,
    /// Rules that also disable the account (an admin enables it again).
    pub lock_account_on: Vec<Rule>,
    /// An open alert absorbs the same rule firing again for this long.
    pub dedupe_minutes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            honey_records: 3,
            window_minutes: 10,
            max_patients_per_user: 30,
            max_search_hits_per_user: 300,
            max_refusals_per_user: 10,
            max_failed_logins_per_account: 5,
            max_failed_logins_per_source: 20,
            lock_session_on: vec![Rule::BulkPatients, Rule::BulkSearch],
            lock_account_on: Vec::new(),
            dedupe_minutes: 60,
        }
    }
}

impl Settings {
    fn window_ms(&self) -> i64 {
        i64::from(self.window_minutes.max(1)) * 60_000
    }

    fn response(&self, rule: Rule) -> Option<&'static str> {
        if self.lock_account_on.contains(&rule) {
            Some("lock-account")
        } else if self.lock_session_on.contains(&rule) {
            Some("lock-session")
        } else {
            None
        }
    }
}

/// The detector of one serving node.
pub struct Detector {
    store: Store,
    auditor: Arc<Auditor>,
    settings: Settings,
    /// The honey records' patient ids (replaced as the keeper plants more).
    honey: std::sync::RwLock<Arc<HashSet<String>>>,
    state: Mutex<State>,
    /// Sinks that deliver alerts (the others are marked done at once).
    sinks: Vec<Sink>,
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Detector({} honey records)", self.honey_set().len())
    }
}

/// The detector watches what the services commit: they publish to it as a
/// [`Subscriber`] given at their construction, on the request path.
/// What the detector has seen and done since the process started, for
/// `/metrics`: counts by action, outcome, rule and lock, and nothing that
/// names a person, a record or an address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// (action, outcome) → committed audit entries, e.g. `("login-failed", "failure")`.
    pub entries: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    /// Rule → times it fired (repeats of an open alert included).
    pub fired: std::collections::BTreeMap<&'static str, u64>,
    /// `lock-session` / `lock-account` → locks taken.
    pub locks: std::collections::BTreeMap<&'static str, u64>,
}

impl Subscriber for Detector {
    fn admit<'a>(&'a self, credential: Option<&'a str>, entries: &'a [Entry]) -> Pending<'a, usize> {
        Box::pin(Detector::admit(self, credential, entries))
    }

    fn committed<'a>(&'a self, credential: Option<&'a str>, entries: &'a [Entry]) -> Pending<'a, ()> {
        Box::pin(Detector::observe(self, credential, entries))
    }

    fn integrity_failure<'a>(&'a self, at: i64, resource: &'a str) -> Pending<'a, ()> {
        Box::pin(Detector::integrity_failure(self, at, resource))
    }
}

impl Detector {
    /// A detector over `store`'s log. `honey`: the honey records' patient ids;
    /// `sinks`: the sinks configured (their workers are started by [`sinks::spawn`]).
    pub fn new(
        store: Store,
        auditor: Arc<Auditor>,
        settings: Settings,
        honey: HashSet<String>,
        sinks: Vec<Sink>,
    ) -> Detector {
        Detector {
            store,
            auditor,
            settings,
            honey: std::sync::RwLock::new(Arc::new(honey)),
            state: Mutex::new(State::default()),
            sinks,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The honey records it alerts on.
    fn honey_set(&self) -> Arc<HashSet<String>> {
        match self.honey.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Alert on these honey records from now on (the keeper planted more, here or on another node).
    pub fn set_honey(&self, honey: Arc<HashSet<String>>) {
        match self.honey.write() {
            Ok(mut h) => *h = honey,
            Err(poisoned) => *poisoned.into_inner() = honey,
        }
    }

    /// Woken whenever an alert is raised (the sinks' workers wait on it).
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Entries of one request that were just committed to the log.
    /// `credential`: `session/<id>` or `token/<id>`, if the request had one.
    /// Cheap unless a rule fires; then the alert is stored and the response
    /// taken before this returns.
    pub async fn observe(&self, credential: Option<&str>, entries: &[Entry]) {
        let fired: Vec<Firing> = {
            let mut state = self.state();
            for e in entries {
                let outcome = match e.outcome {
                    Outcome::Success => "success",
                    Outcome::Denied => "denied",
                };
                if let Some(action) = Action::parse(&e.action) {
                    *state.counters.entries.entry((action.as_str(), outcome)).or_default() += 1;
                }
            }
            entries.iter().flat_map(|e| self.check(&mut state, e, credential)).collect()
        };
        for f in fired {
            self.raise(f).await;
        }
    }

    /// Every rule over one committed entry, in this order (one function per
    /// rule in [`rules`]).
    fn check(&self, st: &mut State, e: &Entry, credential: Option<&str>) -> Vec<Firing> {
        let seen = Seen { entry: e, credential };
        if seen.is_exempt() {
            return Vec::new();
        }
        let s = &self.settings;
        let honey = self.honey_set();
        let [by_account, by_source] =
            rules::failed_logins(&seen, &mut st.failed_by_account, &mut st.failed_by_source, s);
        [
            rules::honey_record(&seen, &honey),
            rules::bulk_patients(&seen, &mut st.patients, s),
            rules::bulk_search(&seen, &mut st.search_hits, s),
            rules::break_glass(&seen),
            rules::outside_care(&seen, &mut st.refusals, s),
            by_account,
            by_source,
            rules::new_address(&seen, &mut st.first_address),
            rules::suspected_phishing(&seen),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Before a response is sent: how many of its `entries` (in order) may
    /// go out. Where the bulk-patients rule locks (`lock_session_on` or
    /// `lock_account_on`), a response that would take its user past the
    /// threshold of different patients is cut there, the rule fires and its
    /// lock is taken before the data leaves: a stolen session gets at most
    /// the threshold, not a page of a hundred. Where the rule only alerts,
    /// everything goes out and is counted after the commit as before.
    pub async fn admit(&self, credential: Option<&str>, entries: &[Entry]) -> usize {
        let s = &self.settings;
        if s.response(Rule::BulkPatients).is_none() {
            return entries.len();
        }
        let cut = rules::bulk_patients_cut(&mut self.state().patients, s, entries);
        let Some((at, e, patients)) = cut else {
            return entries.len();
        };
        let Some(stopped) = entries.get(e) else { return entries.len() };
        self.raise(rules::bulk_patients_refused(stopped, credential, s, at, patients)).await;
        e
    }

    /// A security event about a thing, not a person: `subject` is a check's
    /// name or a record's `Type/id`. Stored, logged and delivered like any
    /// alert; it locks no one.
    pub async fn raise_event(&self, rule: Rule, subject: &str, summary: String, at: i64) {
        let key = format!("{}:{subject}", rule.as_str());
        self.raise(Firing { rule, key, subject: Some(subject.to_owned()), summary, at, actor: None, credential: None })
            .await;
    }

    /// A stored record (`Type/id`) failed its integrity check when it was
    /// opened: someone with write access to the database altered it. Raised
    /// whoever met it; it locks no one (the reader did nothing wrong).
    pub async fn integrity_failure(&self, at: i64, resource: &str) {
        self.raise_event(Rule::Integrity, resource, rules::integrity(resource), at).await;
    }

    /// What the detector has seen and done so far.
    pub fn counters(&self) -> Counters {
        self.state().counters.clone()
    }

    /// Store (or count up) the alert, log it, wake the sinks, take the response.
    async fn raise(&self, f: Firing) {
        *self.state().counters.fired.entry(f.rule.as_str()).or_default() += 1;
        let response = self.settings.response(f.rule);
        let dedupe_ms = i64::from(self.settings.dedupe_minutes) * 60_000;
        let open = self.state().open.get(&f.key).filter(|(_, last)| f.at - last < dedupe_ms).cloned();
        let repeated = match open {
            Some((id, _)) => match self.store.repeat_alert(&id, f.at, &f.summary).await {
                Ok(true) => Some(id),
                Ok(false) => None,
                Err(e) => {
                    tracing::error!(error = %e, alert = %id, "an alert could not be counted up");
                    Some(id)
                }
            },
            None => None,
        };
        let repeated_id_is_new = repeated.is_none();
        let id = match repeated {
            Some(id) => id,
            None => match self.store_new(&f, response).await {
                Some(id) => id,
                None => return self.respond(&f, response, "unrecorded").await,
            },
        };
        // The dedupe window runs from the alert's first firing: a rule that keeps firing
        // raises a fresh alert (and notifies again) once the window has passed.
        if repeated_id_is_new {
            self.state().open.insert(f.key.clone(), (id.clone(), f.at));
        }
        // The structured log is a sink of its own: ids and counts only. Like
        // the other sinks it hears of an alert once per dedupe window (its
        // first firing; the same rule firing once the window has passed is a
        // new alert): the repeats are counted in the store, not logged again.
        if repeated_id_is_new {
            tracing::error!(
                alert = %id, rule = f.rule.as_str(), severity = f.rule.severity(), subject = f.subject.as_deref().unwrap_or("-"),
                response = response.unwrap_or("alert"), summary = %f.summary, "SECURITY ALERT"
            );
        } else {
            tracing::debug!(alert = %id, rule = f.rule.as_str(), "alert counted up");
        }
        self.respond(&f, response, &id).await;
    }

    async fn store_new(&self, f: &Firing, response: Option<&str>) -> Option<String> {
        let id = match confidant_vault::random_id() {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "no random id for an alert");
                return None;
            }
        };
        let row = AlertRow {
            id: id.clone(),
            rule: f.rule.as_str().to_owned(),
            severity: f.rule.severity().to_owned(),
            subject: f.subject.clone(),
            summary: f.summary.clone(),
            action_taken: response.map(str::to_owned),
            first_at: f.at,
            last_at: f.at,
            count: 1,
            acknowledged_at: None,
            acknowledged_by: None,
        };
        let mut e = Entry::new(f.at, Action::Alert, Outcome::Success);
        e.actor = Some(DETECTOR.into());
        e.target = Some(format!("alert/{id}"));
        e.purpose = Some(f.rule.as_str().to_owned());
        let skip: Vec<Sink> = [Sink::Webhook, Sink::Email].into_iter().filter(|s| !self.sinks.contains(s)).collect();
        match self.store.insert_alert(&row, &[e.to_row()], &skip).await {
            Ok(()) => {
                self.auditor.appended(1);
                self.wake.notify_waiters();
                self.wake.notify_one();
                Some(id)
            }
            Err(err) => {
                tracing::error!(
                    error = %err, rule = f.rule.as_str(), summary = %f.summary,
                    "SECURITY ALERT (could not be stored)"
                );
                None
            }
        }
    }

    /// Lock what the configuration says to lock: the lock and its audit
    /// entry commit together (a lock is never unrecorded, nor recorded undone).
    async fn respond(&self, f: &Firing, response: Option<&str>, alert: &str) {
        match self.lock(f, response, alert).await {
            Ok(Some(target)) => {
                if let Some(kind) = response {
                    let kind = if kind == "lock-account" { "lock-account" } else { "lock-session" };
                    *self.state().counters.locks.entry(kind).or_default() += 1;
                }
                self.auditor.appended(1);
                tracing::warn!(alert, rule = f.rule.as_str(), target = %target, "locked by the detector");
            }
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, alert, "the detector could not lock what the rule says"),
        }
    }

    /// [`Detector::respond`]'s change; what was locked, if anything was.
    async fn lock(&self, f: &Firing, response: Option<&str>, alert: &str) -> Result<Option<String>, StoreError> {
        let now = f.at;
        let mut changes = self.store.audited().await?;
        let locked = match (response, f.credential.as_deref(), f.actor.as_deref()) {
            // A flagged user's other credentials are as stolen as the one that
            // set the rule off: every session and API token of theirs ends.
            (Some("lock-session"), _, Some(user)) => (changes.revoke_user_credentials(user, now).await? > 0)
                .then(|| (Action::SessionRevoke, format!("user/{user}"))),
            (Some("lock-session"), Some(cred), None) => {
                let done = match cred.split_once('/') {
                    Some(("session", id)) => changes.revoke_session(id, None, now).await?,
                    Some(("token", id)) => changes.revoke_api_token(id, now).await?,
                    _ => false,
                };
                done.then(|| (Action::SessionRevoke, cred.to_owned()))
            }
            (Some("lock-account"), _, Some(user)) => {
                changes.set_user_disabled(user, Some(now)).await?;
                changes.revoke_user_credentials(user, now).await?;
                Some((Action::UserDisable, user.to_owned()))
            }
            _ => None,
        };
        let Some((action, target)) = locked else { return Ok(None) };
        let mut e = Entry::new(now, action, Outcome::Success);
        e.actor = Some(DETECTOR.into());
        e.target = Some(target.clone());
        e.purpose = Some(format!("alert/{alert}"));
        changes.commit(&[e.to_row()]).await?;
        Ok(Some(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_stable_and_parse_from_the_configuration() {
        for r in Rule::ALL {
            let toml = format!("\"{}\"", r.as_str());
            let parsed: Rule = serde_json::from_str(&toml).unwrap();
            assert_eq!(parsed, *r);
        }
        assert!(serde_json::from_str::<Rule>("\"bulk\"").is_err());
    }
}
