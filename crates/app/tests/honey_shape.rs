#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Honey records a stolen database cannot tell apart (issue 18).
//!
//! A clinic works for six weeks of a controlled clock — clinicians register
//! patients, open their lists, hold sessions (encounter, note, sometimes a
//! corrected note), book appointments; reception reads patients and books —
//! while the honey keeper (`confidant_app::honey::Keeper`) watches the log
//! and replays some visits on honey records. Then the database is read as a
//! thief reads it, with plain SQL and no key: every per-patient feature the
//! dump offers (rows and versions per type, ciphertext sizes, timestamps and
//! gaps, care-team rows and their members, audit entries per action, actors,
//! roles, addresses and purposes, search tokens and how many patients share
//! them, data keys, every nullable column). A decision stump — the best
//! threshold on one feature, either way round — is fitted on each feature.
//!
//! The chance bound: with n patients and best-of-many thresholds over many
//! features, even random labels are "separated" better than the base rate. So
//! the labels are permuted 2,000 times and the same best-stump-over-every-
//! feature accuracy is computed each time; the real labels must not do better
//! than the second best of those (about the 99.9th percentile: a false failure
//! one run in a thousand). The control plants honey records as before this
//! change (at once, by the console, in no care team, notes unrestricted) into
//! the same clinic, and the same test must find them (it does: perfectly).
//!
//! Both backends (PostgreSQL with CONFIDANT_TEST_POSTGRES_URL; the control on
//! SQLite only: it checks the test's power, not SQL).
//!
//! (Over 600 lines: the clinic it simulates, the thief's features and the
//! statistics are one argument, read together.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use confidant_app::honey::Keeper;
use confidant_audit::{Action as AuditAction, Entry};
use confidant_fhir::ResourceType;
use confidant_identity::Identity;
use confidant_policy::{Principal, Role};
use confidant_records::{Booking, Clock, Records, SearchRequest};
use confidant_store::{Store, VersionRow, Write};
use confidant_vault::{KeyFile, Vault};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, Row};

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Monday 2026-03-02 00:00 UTC.
const START: i64 = 1_772_409_600_000;
const WEEKS: i64 = 6;
/// Honey records per 100 registrations (high, so that the sample holds enough of them).
const PER_100: u32 = 25;
const PERMUTATIONS: usize = 2000;

fn below(n: usize) -> usize {
    let mut b = [0u8; 8];
    confidant_vault::random_bytes(&mut b).unwrap();
    (u64::from_le_bytes(b) % n.max(1) as u64) as usize
}

fn who(id: &str, role: Role, practitioner: Option<&str>) -> Principal {
    Principal {
        user_id: id.into(),
        role,
        practitioner_id: practitioner.map(str::to_owned),
        patient_id: None,
        scopes: None,
        // Staff work from the clinic's network.
        source: Some(format!("10.0.0.{}", 10 + below(3))),
        credential: None,
        training: Default::default(),
    }
}

/// The clinic's own patients: not the keeper's generator.
const GIVEN: &[&str] = &["Aino", "Eero", "Helmi", "Onni", "Sofia", "Väinö", "Lumi", "Veeti", "Aada", "Niilo", "Emilia"];
const FAMILY: &[&str] = &[
    "Virtanen",
    "Korhonen",
    "Mäkinen",
    "Nieminen",
    "Hämäläinen",
    "Laine",
    "Heikkinen",
    "Koskinen",
    "Järvinen",
    "Lehtonen",
    "Salminen",
    "Turunen",
];
const WORDS: &[&str] = &[
    "Client",
    "described",
    "the",
    "week",
    "as",
    "heavy",
    "sleep",
    "improved",
    "we",
    "worked",
    "on",
    "values",
    "exposure",
    "homework",
    "reviewed",
    "anxiety",
    "family",
    "conflict",
    "plan",
    "continue",
    "next",
    "session",
];

fn real_patient(n: usize) -> Value {
    let given = GIVEN[below(GIVEN.len())];
    let family = FAMILY[below(FAMILY.len())];
    let birth = format!("{}-{:02}-{:02}", 1950 + below(55), 1 + below(12), 1 + below(28));
    let mut p = json!({
        "resourceType": "Patient", "active": true,
        "identifier": [{"system": "urn:oid:1.2.246.21", "value": confidant_app::synthetic::synthetic_hetu(&birth, n % 99)}],
        "name": [{"family": family, "given": [given]}],
        "gender": if below(2) == 0 { "female" } else { "male" }, "birthDate": birth,
        "telecom": [
            {"system": "phone", "value": format!("+358 40 {:03} {:04}", below(1000), below(10_000))},
            {"system": "email", "value": format!("{}.{}@example.invalid", given.to_lowercase(), family.to_lowercase())}
        ]
    });
    if below(2) == 0 {
        p["address"] =
            json!([{"line": [format!("Testikatu {}", 1 + below(80))], "postalCode": "00100", "city": "Helsinki"}]);
    }
    p
}

fn text(len: usize) -> String {
    let mut t = String::new();
    while t.len() < len {
        t.push_str(WORDS[below(WORDS.len())]);
        t.push(' ');
    }
    t
}

fn real_note(patient: &str, encounter: &str, at: i64) -> Value {
    let meta = match below(10) {
        0..=6 => {
            json!({"security": [{"system": confidant_fhir::ACT_CODE_SYSTEM, "code": confidant_fhir::PSYCHOTHERAPY_NOTE}]})
        }
        7 | 8 => {
            json!({"tag": [{"system": confidant_fhir::SHARING_SYSTEM, "code": confidant_fhir::SHARED_WITH_PATIENT}]})
        }
        _ => json!({}),
    };
    let mut note = json!({
        "resourceType": "DocumentReference", "status": "current", "meta": meta,
        "type": {"text": "Session note"},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": confidant_fhir::instant(at),
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
            "data": base64::engine::general_purpose::STANDARD.encode(text(150 + below(2400)))}}],
        "context": {"encounter": [{"reference": format!("Encounter/{encounter}")}]}
    });
    if note["meta"].as_object().is_some_and(|m| m.is_empty()) {
        note.as_object_mut().unwrap().remove("meta");
    }
    note
}

struct Clinic {
    records: Records,
    clock: Arc<TestClock>,
    clinicians: Vec<Principal>,
    desk: Principal,
    /// Real patients per clinician.
    care: Vec<Vec<String>>,
    keeper: Option<Keeper>,
}

impl Clinic {
    /// Move the clock to `at`, carrying out the keeper's replays due on the way at their time.
    async fn until(&mut self, at: i64) {
        if let Some(k) = &mut self.keeper {
            k.step().await.unwrap();
            while let Some(due) = k.next_due().filter(|d| *d <= at) {
                self.clock.0.store(due.max(self.clock.now_millis()), Ordering::SeqCst);
                k.step().await.unwrap();
            }
        }
        self.clock.0.store(at.max(self.clock.now_millis()), Ordering::SeqCst);
    }

    async fn at(&mut self, at: i64) -> &Records {
        self.until(at).await;
        &self.records
    }

    async fn book(&mut self, by: &Principal, patient: &str, practitioner: &str, now: i64) {
        for _ in 0..5 {
            let day = now / DAY + 1 + below(14) as i64;
            if (day + 3) % 7 >= 5 {
                continue;
            }
            let start = day * DAY + (8 + below(8) as i64) * HOUR;
            let b = Booking {
                patient: patient.into(),
                practitioner: practitioner.into(),
                times: vec![(start, start + 45 * MINUTE)],
                kind: None,
            };
            match self.at(now).await.book_appointments(by, &b).await {
                Err(confidant_records::RecordsError::DoubleBooked { .. }) => continue,
                r => {
                    r.unwrap();
                    return;
                }
            }
        }
    }

    /// One clinician's working day.
    async fn clinician_day(&mut self, c: usize, day: i64) {
        let me = self.clinicians[c].clone();
        let pr = me.practitioner_id.clone().unwrap();
        let morning = START + day * DAY + 8 * HOUR + below(20) as i64 * MINUTE;
        // The list of one's patients, first thing.
        let all = SearchRequest { params: vec![], count: 100, after: None };
        self.at(morning).await.search(&me, ResourceType::Patient, &all).await.unwrap();
        // New patients: many in the first weeks, fewer later.
        let registrations = if day < 10 { below(3) } else { usize::from(below(3) == 0) };
        let mut t = morning + 10 * MINUTE;
        for _ in 0..registrations {
            let n = self.care.iter().map(Vec::len).sum::<usize>();
            let p = self.at(t).await.create(&me, ResourceType::Patient, real_patient(n)).await.unwrap().id;
            self.care[c].push(p.clone());
            t += (2 + below(5) as i64) * MINUTE;
            self.book(&me, &p, &pr, t).await;
            t += (5 + below(10) as i64) * MINUTE;
        }
        // Sessions: up to four, each a visit of several steps minutes apart.
        for slot in 0..4 {
            if self.care[c].is_empty() || below(5) == 0 {
                continue;
            }
            let patient = self.care[c][below(self.care[c].len())].clone();
            let mut t = START + day * DAY + (9 + 2 * slot) * HOUR + below(30) as i64 * MINUTE;
            self.at(t).await.read(&me, ResourceType::Patient, &patient).await.unwrap();
            t += (1 + below(3) as i64) * MINUTE;
            let enc = confidant_app::synthetic::encounter(&patient, &pr, t - 50 * MINUTE);
            let enc = self.at(t).await.create(&me, ResourceType::Encounter, enc).await.unwrap().id;
            t += (3 + below(8) as i64) * MINUTE;
            let note =
                self.at(t).await.create(&me, ResourceType::DocumentReference, real_note(&patient, &enc, t)).await;
            let note = note.unwrap();
            if below(5) == 0 {
                t += (2 + below(6) as i64) * MINUTE;
                let mut changed = real_note(&patient, &enc, t);
                changed["id"] = json!(note.id);
                changed["meta"] = note.resource["meta"].clone();
                if let Some(m) = changed["meta"].as_object_mut() {
                    m.remove("versionId");
                    m.remove("lastUpdated");
                }
                if changed["meta"].as_object().is_none_or(|m| m.is_empty()) {
                    changed.as_object_mut().unwrap().remove("meta");
                }
                self.at(t).await.update(&me, ResourceType::DocumentReference, &note.id, changed, None).await.unwrap();
            }
            if below(2) == 0 {
                t += (1 + below(4) as i64) * MINUTE;
                self.book(&me, &patient, &pr, t).await;
            }
        }
    }

    /// Reception's day: a few patients looked up and booked.
    async fn reception_day(&mut self, day: i64) {
        let desk = self.desk.clone();
        let mut t = START + day * DAY + 12 * HOUR + below(40) as i64 * MINUTE;
        for _ in 0..3 {
            let c = below(self.clinicians.len());
            if self.care[c].is_empty() {
                continue;
            }
            let patient = self.care[c][below(self.care[c].len())].clone();
            let pr = self.clinicians[c].practitioner_id.clone().unwrap();
            self.at(t).await.read(&desk, ResourceType::Patient, &patient).await.unwrap();
            t += (1 + below(3) as i64) * MINUTE;
            if below(2) == 0 {
                self.book(&desk, &patient, &pr, t).await;
            }
            t += (5 + below(20) as i64) * MINUTE;
        }
    }

    async fn run(&mut self) {
        for day in 0..WEEKS * 7 {
            if day % 7 >= 5 {
                continue;
            }
            for c in 0..self.clinicians.len() {
                self.clinician_day(c, day).await;
            }
            self.reception_day(day).await;
            self.until(START + day * DAY + 20 * HOUR).await;
        }
        // The keeper replays a day later: what is still due is done at its time.
        let last = self.keeper.as_ref().and_then(|k| k.due_until());
        if let Some(last) = last {
            self.until(last).await;
        }
    }
}

async fn database(pg: bool) -> (String, Option<tempfile::TempDir>) {
    if !pg {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", tmp.path().join("clinic.db").display());
        return (url, Some(tmp));
    }
    let admin = std::env::var("CONFIDANT_TEST_POSTGRES_URL").unwrap();
    let name = format!("confidant_honey_{}", &confidant_vault::random_id().unwrap()[..10].to_lowercase());
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    conn.close().await.unwrap();
    let (base, query) =
        admin.split_once('?').map(|(b, q)| (b, format!("?{q}"))).unwrap_or((admin.as_str(), String::new()));
    let cut = base.rfind('/').unwrap();
    (format!("{}/{name}{query}", &base[..cut]), None)
}

/// A clinic with four clinicians and a receptionist, the keeper watching (or not).
async fn clinic(url: &str, keeper: bool) -> Clinic {
    let store = Store::connect(url, true).await.unwrap();
    store.migrate().await.unwrap();
    let vault = Vault::new(Arc::new(KeyFile::generate("honey-test").unwrap()));
    confidant_records::initialise(&store, &vault, "honey-test", START).await.unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(START)));
    let records = Records::open(store.clone(), vault, clock.clone()).await.unwrap();
    // The detector watches the clinic as in `serve` (thresholds as shipped).
    let detector = Arc::new(confidant_detect::Detector::new(
        store,
        records.auditor().clone(),
        Default::default(),
        Default::default(),
        Vec::new(),
    ));
    let records = records.with_subscriber(detector.clone());
    let identity = Identity::new(confidant_app::instance::identity_services(&records), Default::default());
    let admin = who("console", Role::Admin, None);
    let mut clinicians = Vec::new();
    for (i, family) in ["Lindqvist", "Salo", "Heikkinen", "Aalto"].iter().enumerate() {
        let pr = records
            .create(
                &admin,
                ResourceType::Practitioner,
                json!({"resourceType": "Practitioner", "name": [{"family": family}]}),
            )
            .await
            .unwrap()
            .id;
        let user = identity
            .add_user(&format!("clin{i}"), Role::Clinician, "correct horse battery staple 7", Some(&pr), None)
            .await
            .unwrap();
        clinicians.push(who(&user, Role::Clinician, Some(&pr)));
    }
    let desk = identity.add_user("desk", Role::Reception, "correct horse battery staple 7", None, None).await.unwrap();
    let keeper = if keeper { Some(Keeper::new(&records, PER_100, Some(detector)).await.unwrap()) } else { None };
    let care = vec![Vec::new(); clinicians.len()];
    Clinic { records, clock, clinicians, desk: who(&desk, Role::Reception, None), care, keeper }
}

/// Honey records as they were planted before issue 18: at once, by the
/// console, in no care team, sessions and unrestricted notes (the old
/// `Records::plant`, through the store as it wrote them).
async fn plant_the_old_way(records: &Records, count: usize) {
    let now = records.now_millis();
    let mut ids = Vec::new();
    for n in 0..count {
        let (patient, related) = confidant_app::synthetic::synthetic_patient(n).unwrap();
        let pid = confidant_vault::random_id().unwrap();
        let (key, key_row) = records.keyring().new_compartment_key(&pid).unwrap();
        let mut items = vec![(ResourceType::Patient, patient, pid.clone())];
        for (rt, mut v) in related {
            v["subject"] = json!({"reference": format!("Patient/{pid}")});
            items.push((rt, v, confidant_vault::random_id().unwrap()));
        }
        let mut rows = Vec::new();
        for (rt, v, id) in items {
            let body = records
                .keyring()
                .seal_version(&key, rt.as_str(), &id, 1, &pid, &serde_json::to_vec(&v).unwrap())
                .unwrap();
            rows.push(VersionRow {
                resource_type: rt.as_str().into(),
                id,
                version_id: 1,
                compartment: pid.clone(),
                key_version: i64::from(key.version()),
                last_updated: now,
                body,
                restricted_to: None,
                patient_visible: false,
            });
        }
        let writes: Vec<Write<'_>> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| Write { row, tokens: &[], new_key: (i == 0).then_some(&key_row), care_team: None })
            .collect();
        let audit: Vec<_> = rows
            .iter()
            .map(|row| {
                let mut e = Entry::by_console(now, AuditAction::Create);
                e.resource = Some(format!("{}/{}", row.resource_type, row.id));
                e.version = Some(1);
                e.patient = Some(pid.clone());
                e.to_row()
            })
            .collect();
        records.store().create_all(&writes, &audit).await.unwrap();
        ids.push(pid);
    }
    records.add_honey_records(&ids).await.unwrap();
}

// ----- the thief's view: plain SQL, no key ------------------------------------------------

type Features = BTreeMap<String, HashMap<String, f64>>;
/// One audit entry as the dump holds it: when, who, what, and the entry itself.
type LogEntry = (i64, Option<String>, String, Value);

fn add(f: &mut Features, patient: &str, name: &str, v: f64) {
    *f.entry(name.to_owned()).or_default().entry(patient.to_owned()).or_default() += v;
}

fn set(f: &mut Features, patient: &str, name: &str, v: f64) {
    f.entry(name.to_owned()).or_default().insert(patient.to_owned(), v);
}

fn hour(ms: i64) -> f64 {
    ((ms.rem_euclid(DAY)) / HOUR) as f64
}

fn gaps(mut times: Vec<i64>) -> Vec<f64> {
    times.sort_unstable();
    times.windows(2).map(|w| (w[1] - w[0]) as f64).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return -1.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Every per-patient feature of the dump at `url`.
async fn features(url: &str) -> (Vec<String>, Features) {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut f = Features::new();
    // Patients and their registration time.
    let versions = sqlx::query(
        "SELECT resource_type, id, version_id, compartment, CAST(LENGTH(body) AS BIGINT), last_updated, key_version, \
         restricted_to, patient_visible FROM resource_versions",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut created: HashMap<String, i64> = HashMap::new();
    for r in &versions {
        let (rt, compartment, at): (String, String, i64) = (r.get(0), r.get(3), r.get(5));
        if rt == "Patient" {
            let c = created.entry(compartment).or_insert(at);
            *c = (*c).min(at);
        }
    }
    let mut patients: Vec<String> = created.keys().cloned().collect();
    patients.sort();
    let mut order: Vec<(i64, String)> = created.iter().map(|(p, t)| (*t, p.clone())).collect();
    order.sort();
    for (rank, (t, p)) in order.iter().enumerate() {
        set(&mut f, p, "patient.registration_rank", rank as f64 / order.len() as f64);
        set(&mut f, p, "patient.registration_hour", hour(*t));
        set(&mut f, p, "patient.registration_minute_of_hour", ((t % HOUR) / MINUTE) as f64);
    }
    let mut times: HashMap<String, Vec<i64>> = HashMap::new();
    let mut ids: HashMap<(String, String), i64> = HashMap::new();
    for r in &versions {
        let (rt, id, version, compartment): (String, String, i64, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        if !created.contains_key(&compartment) {
            continue;
        }
        let (len, at, key_version): (i64, i64, i64) = (r.get(4), r.get(5), r.get(6));
        let restricted: Option<String> = r.get(7);
        let visible: i64 = r.get(8);
        add(&mut f, &compartment, &format!("{rt}.versions"), 1.0);
        add(&mut f, &compartment, &format!("{rt}.bytes"), len as f64);
        add(&mut f, &compartment, &format!("{rt}.restricted_to_set"), f64::from(restricted.is_some()));
        add(&mut f, &compartment, &format!("{rt}.patient_visible"), visible as f64);
        add(&mut f, &compartment, "versions.key_version_sum", key_version as f64);
        add(&mut f, &compartment, &format!("{rt}.hour_sum"), hour(at));
        if version > 1 {
            add(&mut f, &compartment, &format!("{rt}.later_versions"), 1.0);
        }
        *ids.entry((compartment.clone(), rt)).or_default() += 1;
        let _ = id;
        times.entry(compartment).or_default().push(at);
    }
    for ((compartment, rt), n) in &ids {
        let bytes = f[&format!("{rt}.bytes")][compartment];
        set(&mut f, compartment, &format!("{rt}.mean_bytes"), bytes / *n as f64);
        let hours = f[&format!("{rt}.hour_sum")][compartment];
        set(&mut f, compartment, &format!("{rt}.mean_hour"), hours / *n as f64);
    }
    for (p, t) in &times {
        let g = gaps(t.clone());
        set(&mut f, p, "versions.min_gap", g.iter().copied().fold(f64::MAX, f64::min));
        set(&mut f, p, "versions.median_gap", median(g));
        let last = t.iter().max().copied().unwrap_or(0);
        set(&mut f, p, "versions.active_span", (last - created[p]) as f64);
    }
    // Current versions, their access columns.
    for r in
        sqlx::query("SELECT resource_type, compartment, version_id, restricted_to, patient_visible FROM resource_heads")
            .fetch_all(&mut db)
            .await
            .unwrap()
    {
        let (rt, compartment, version): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        if !created.contains_key(&compartment) {
            continue;
        }
        let restricted: Option<String> = r.get(3);
        add(&mut f, &compartment, &format!("{rt}.resources"), 1.0);
        add(&mut f, &compartment, &format!("{rt}.head_version_sum"), version as f64);
        add(&mut f, &compartment, &format!("{rt}.head_restricted"), f64::from(restricted.is_some()));
        add(&mut f, &compartment, &format!("{rt}.head_patient_visible"), r.get::<i64, _>(4) as f64);
    }
    // Care teams: rows, members, periods, and how large each member's care is.
    let members =
        sqlx::query("SELECT care_team_id, patient_id, practitioner_id, starts_at, ends_at FROM care_team_members")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let mut care_size: HashMap<String, f64> = HashMap::new();
    for r in &members {
        *care_size.entry(r.get::<String, _>(2)).or_default() += 1.0;
    }
    for r in &members {
        let (patient, practitioner): (String, String) = (r.get(1), r.get(2));
        let (starts, ends): (Option<i64>, Option<i64>) = (r.get(3), r.get(4));
        add(&mut f, &patient, "care.rows", 1.0);
        add(&mut f, &patient, "care.starts_at_set", f64::from(starts.is_some()));
        add(&mut f, &patient, "care.ends_at_set", f64::from(ends.is_some()));
        add(&mut f, &patient, "care.member_care_size", care_size[&practitioner]);
    }
    // Data keys.
    for r in sqlx::query("SELECT compartment, version, created_at FROM data_keys").fetch_all(&mut db).await.unwrap() {
        let (compartment, created_at): (String, i64) = (r.get(0), r.get(2));
        if let Some(c) = created.get(&compartment) {
            add(&mut f, &compartment, "keys.count", 1.0);
            add(&mut f, &compartment, "keys.created_after_patient", (created_at - c) as f64);
        }
    }
    // Search tokens: how many, and how many other patients share each.
    let owner: HashMap<(String, String), String> =
        versions.iter().map(|r| ((r.get::<String, _>(0), r.get::<String, _>(1)), r.get::<String, _>(3))).collect();
    let tokens =
        sqlx::query("SELECT resource_type, param, token, id FROM search_tokens").fetch_all(&mut db).await.unwrap();
    let mut sharing: HashMap<(String, String, Vec<u8>), HashSet<String>> = HashMap::new();
    for r in &tokens {
        let key = (r.get::<String, _>(0), r.get::<String, _>(1), r.get::<Vec<u8>, _>(2));
        if let Some(c) = owner.get(&(key.0.clone(), r.get::<String, _>(3))) {
            sharing.entry(key).or_default().insert(c.clone());
        }
    }
    for r in &tokens {
        let (rt, param, token, id): (String, String, Vec<u8>, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let Some(c) = owner.get(&(rt.clone(), id)) else { continue };
        if !created.contains_key(c) {
            continue;
        }
        let shared = sharing[&(rt.clone(), param.clone(), token)].len() as f64 - 1.0;
        add(&mut f, c, &format!("tokens.{rt}.{param}"), 1.0);
        add(&mut f, c, &format!("tokens.{rt}.{param}.shared"), shared);
    }
    // The audit log: per patient, entries by action, actors, roles, addresses, purposes, times.
    let log = sqlx::query("SELECT at, actor, patient, action, entry FROM audit_log").fetch_all(&mut db).await.unwrap();
    let mut by_patient: HashMap<String, Vec<LogEntry>> = HashMap::new();
    for r in &log {
        let patient: Option<String> = r.get(2);
        let Some(patient) = patient.filter(|p| created.contains_key(p)) else { continue };
        let entry: Value = serde_json::from_slice(&r.get::<Vec<u8>, _>(4)).unwrap();
        by_patient.entry(patient).or_default().push((r.get(0), r.get(1), r.get(3), entry));
    }
    for (p, list) in &by_patient {
        let mut actors: HashMap<String, usize> = HashMap::new();
        for (at, actor, action, e) in list {
            add(&mut f, p, "audit.entries", 1.0);
            add(&mut f, p, &format!("audit.{action}"), 1.0);
            add(&mut f, p, &format!("audit.role.{}", e["role"].as_str().unwrap_or("none")), 1.0);
            add(&mut f, p, "audit.source_set", f64::from(e.get("source").is_some()));
            add(&mut f, p, "audit.purpose_set", f64::from(e.get("purpose").is_some()));
            add(&mut f, p, "audit.outcome_denied", f64::from(e["outcome"] == "denied"));
            add(&mut f, p, "audit.hour_sum", hour(*at));
            *actors.entry(actor.clone().unwrap_or_default()).or_default() += 1;
        }
        set(&mut f, p, "audit.actors", actors.len() as f64);
        let top = actors.values().max().copied().unwrap_or(0);
        set(&mut f, p, "audit.top_actor_share", top as f64 / list.len() as f64);
        let mean_hour = f["audit.hour_sum"][p] / list.len() as f64;
        set(&mut f, p, "audit.mean_hour", mean_hour);
        let g = gaps(list.iter().map(|(at, ..)| *at).collect());
        set(&mut f, p, "audit.min_gap", g.iter().copied().fold(f64::MAX, f64::min));
        set(&mut f, p, "audit.median_gap", median(g));
        let first = list.iter().map(|(at, ..)| *at).min().unwrap_or(0);
        set(&mut f, p, "audit.first_after_registration", (first - created[p]) as f64);
    }
    // Every other table that names a patient.
    for (table, column) in
        [("break_glass", "patient_id"), ("legal_holds", "patient_id"), ("cosign_requests", "patient_id")]
    {
        let q = format!("SELECT {column} FROM {table}");
        for r in sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(&mut db).await.unwrap() {
            let p: String = r.get(0);
            add(&mut f, &p, &format!("{table}.rows"), 1.0);
        }
    }
    db.close().await.unwrap();
    // A patient a feature does not mention has zero of it.
    for values in f.values_mut() {
        for p in &patients {
            values.entry(p.clone()).or_insert(0.0);
        }
    }
    (patients, f)
}

/// The best accuracy of one threshold on `x` (either way round), labels `y`.
fn best_stump(sorted: &[(f64, usize)], y: &[bool]) -> f64 {
    let n = y.len() as f64;
    let positives = y.iter().filter(|h| **h).count() as f64;
    // "Honey iff x > t": t below everything first, then after each distinct value.
    let (mut below_pos, mut below_neg) = (0.0, 0.0);
    let acc = |bp: f64, bn: f64| {
        let right = bn + (positives - bp);
        (right / n).max(1.0 - right / n)
    };
    let mut best = acc(0.0, 0.0);
    for (i, (x, idx)) in sorted.iter().enumerate() {
        if y[*idx] {
            below_pos += 1.0;
        } else {
            below_neg += 1.0;
        }
        if sorted.get(i + 1).is_none_or(|(next, _)| next > x) {
            best = best.max(acc(below_pos, below_neg));
        }
    }
    best
}

struct Separation {
    /// (feature, best stump accuracy) on the real labels, best first.
    by_feature: Vec<(String, f64)>,
    /// The accuracy no permutation of the labels but one reaches.
    chance_bound: f64,
    base_rate: f64,
    n: usize,
    honey: usize,
}

fn separation(patients: &[String], f: &Features, honey: &HashSet<String>) -> Separation {
    let y: Vec<bool> = patients.iter().map(|p| honey.contains(p)).collect();
    let sorted: Vec<(String, Vec<(f64, usize)>)> = f
        .iter()
        .map(|(name, values)| {
            let mut s: Vec<(f64, usize)> = patients.iter().enumerate().map(|(i, p)| (values[p], i)).collect();
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
            (name.clone(), s)
        })
        .collect();
    let mut by_feature: Vec<(String, f64)> = sorted.iter().map(|(name, s)| (name.clone(), best_stump(s, &y))).collect();
    by_feature.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut maxima = Vec::with_capacity(PERMUTATIONS);
    let mut perm = y.clone();
    for _ in 0..PERMUTATIONS {
        for i in (1..perm.len()).rev() {
            perm.swap(i, below(i + 1));
        }
        maxima.push(sorted.iter().map(|(_, s)| best_stump(s, &perm)).fold(0.0, f64::max));
    }
    maxima.sort_by(f64::total_cmp);
    let honey_n = y.iter().filter(|h| **h).count();
    let base = (honey_n as f64 / y.len() as f64).max(1.0 - honey_n as f64 / y.len() as f64);
    Separation { by_feature, chance_bound: maxima[PERMUTATIONS - 2], base_rate: base, n: y.len(), honey: honey_n }
}

fn report(label: &str, s: &Separation) {
    // The one-threshold bound a single fixed rule would have (binomial, z = 3.09: 99.9 %).
    let binomial = s.base_rate + 3.09 * (s.base_rate * (1.0 - s.base_rate) / s.n as f64).sqrt();
    eprintln!(
        "{label}: {} patients, {} honey; base rate {:.3}; single-rule binomial bound {:.3}; \
         best-stump chance bound over {} features ({PERMUTATIONS} permutations) {:.3}",
        s.n,
        s.honey,
        s.base_rate,
        binomial,
        s.by_feature.len(),
        s.chance_bound
    );
    for (name, acc) in s.by_feature.iter().take(12) {
        eprintln!("  {acc:.3}  {name}");
    }
}

async fn honey_records_are_shaped_like_the_clinics(pg: bool) {
    let (url, _tmp) = database(pg).await;
    let mut clinic = clinic(&url, true).await;
    clinic.run().await;
    let honey = clinic.records.honey_records().await.unwrap();
    let real: usize = clinic.care.iter().map(Vec::len).sum();
    assert!(honey.len() >= 5, "the keeper planted too few to judge: {} among {real}", honey.len());
    // The thief's view.
    let (patients, f) = features(&url).await;
    assert_eq!(patients.len(), real + honey.len(), "every patient is in the dump");
    let s = separation(&patients, &f, &honey);
    report(if pg { "keeper (PostgreSQL)" } else { "keeper (SQLite)" }, &s);
    // Six weeks of the clinic and of the keeper's replays: no alert. The
    // clinicians never met their honey records; the keeper is not watched.
    let alerts = clinic.records.store().alerts(false, 100).await.unwrap();
    assert!(alerts.is_empty(), "{:?}", alerts.iter().map(|a| &a.rule).collect::<Vec<_>>());
    // But the detector knows every one the keeper planted: a touch alerts.
    let first = honey.iter().min().unwrap().clone();
    let desk = clinic.desk.clone();
    clinic.records.read(&desk, ResourceType::Patient, &first).await.unwrap();
    let alerts = clinic.records.store().alerts(false, 100).await.unwrap();
    assert_eq!(alerts.iter().map(|a| a.rule.as_str()).collect::<Vec<_>>(), ["honey-record"]);
    clinic.records.store().close().await;
    let (feature, best) = &s.by_feature[0];
    assert!(
        *best <= s.chance_bound,
        "{feature} separates honey from real patients better than chance: {best:.3} > {:.3}",
        s.chance_bound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honey_records_are_shaped_like_the_clinics_sqlite() {
    honey_records_are_shaped_like_the_clinics(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honey_records_are_shaped_like_the_clinics_postgres() {
    if std::env::var("CONFIDANT_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty()).is_none() {
        assert!(std::env::var("CI").ok().as_deref() != Some("true"), "CONFIDANT_TEST_POSTGRES_URL must be set in CI");
        eprintln!("CONFIDANT_TEST_POSTGRES_URL is not set: the PostgreSQL run is skipped");
        return;
    }
    honey_records_are_shaped_like_the_clinics(true).await;
}

/// The control: the old planting is found by the same test (so it can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_planting_is_found_by_the_same_test() {
    let (url, _tmp) = database(false).await;
    let mut clinic = clinic(&url, false).await;
    plant_the_old_way(&clinic.records, 12).await;
    clinic.run().await;
    let honey = clinic.records.honey_records().await.unwrap();
    clinic.records.store().close().await;
    let (patients, f) = features(&url).await;
    let s = separation(&patients, &f, &honey);
    report("planted at init, as before", &s);
    assert!(s.by_feature[0].1 > s.chance_bound, "the test must find the old planting");
    let care_rows = s.by_feature.iter().find(|(n, _)| n == "care.rows").unwrap().1;
    assert_eq!(care_rows, 1.0, "no care-team row: one query finds them all");
}
