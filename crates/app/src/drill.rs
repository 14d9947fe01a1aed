//! `confidant drill`: a breach simulated against a copy of this instance,
//! step by step: what an attacker got, and whether Confidant blocked and
//! detected it.
//!
//! The drill never touches real data. It takes a consistent snapshot of the
//! database into a private temporary folder (SQLite: `VACUUM INTO`; PostgreSQL:
//! every table read in one `REPEATABLE READ` transaction and loaded into a new
//! SQLite file there — the live database is only read), serves that copy in-process on a
//! loopback port (same key-encryption key, read only; its own throwaway audit
//! signing key, witness and no alert sinks), creates its own synthetic staff
//! and patients there, attacks it, and deletes the folder. The real instance
//! gets one audit entry (`audit-access`, target `drill`), and its files and
//! witness are only read.
//!
//! Over 600 lines because each step is an attack written out in full, with
//! the evidence it reports; splitting them would scatter one story.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use confidant_audit::Action;
use confidant_policy::Role;
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, Database, KeyProvider, SQLITE_FILE, SigningKeyProvider};
use crate::console::Console;
use crate::instance::open_store;
use crate::progress::Progress;

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub title: &'static str,
    pub passed: bool,
    pub evidence: String,
}

fn step(step: &'static str, title: &'static str, passed: bool, evidence: impl Into<String>) -> Step {
    Step { step, title, passed, evidence: evidence.into() }
}

/// Random hex, for canaries and passwords.
fn random() -> Result<String> {
    Ok(confidant_vault::random_id()?)
}

/// Could another local user read the data or the keys? (Read only.)
fn permissions(config: &Config, dir: &Path) -> Step {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut paths = vec![dir.to_path_buf(), config.signing_key_path(), config.witness_path(dir)];
        if !matches!(config.keys.provider, KeyProvider::Pkcs11 { .. }) {
            paths.push(config.keys.key_file.clone());
        }
        if let Some(folder) = config.keys.key_file.parent() {
            paths.push(folder.to_path_buf());
        }
        let open: Vec<String> = paths
            .iter()
            .filter_map(|p| {
                let m = std::fs::metadata(p).ok()?.permissions().mode() & 0o777;
                // The witness may be world-readable (it is public by design); nothing else.
                let limit = if *p == config.witness_path(dir) { 0o022 } else { 0o077 };
                (m & limit != 0).then(|| format!("{} (mode {m:o})", p.display()))
            })
            .collect();
        if open.is_empty() {
            step(
                "file-permissions",
                "another local user reads the data folder or the keys",
                true,
                format!("blocked: {} paths are their owner's alone", paths.len()),
            )
        } else {
            step(
                "file-permissions",
                "another local user reads the data folder or the keys",
                false,
                format!("open to others: {}", open.join(", ")),
            )
        }
    }
    #[cfg(not(unix))]
    step(
        "file-permissions",
        "another local user reads the data folder or the keys",
        true,
        "not checked on this platform",
    )
}

struct Drill {
    http: reqwest::Client,
    base: String,
}

impl Drill {
    async fn call(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("/api/") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/fhir/r4/{path}", self.base)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            let ct = if path.starts_with("/api/") { "application/json" } else { "application/fhir+json" };
            req = req.header("content-type", ct).body(b);
        }
        match req.send().await {
            Ok(r) => {
                let st = r.status();
                (st, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
        }
    }

    async fn get(&self, token: &str, path: &str) -> StatusCode {
        self.call(Some(token), reqwest::Method::GET, path, None).await.0
    }

    async fn create(&self, token: &str, body: &Value) -> Result<String> {
        let (st, b) = self
            .call(
                Some(token),
                reqwest::Method::POST,
                body["resourceType"].as_str().unwrap_or(""),
                Some(serde_json::to_vec(body)?),
            )
            .await;
        if st != StatusCode::CREATED {
            bail!("the drill could not create its own {} ({st})", body["resourceType"]);
        }
        Ok(b["id"].as_str().unwrap_or_default().to_owned())
    }

    async fn login(&self, username: &str, password: &str, code: Option<&str>) -> (StatusCode, Value) {
        let body = json!({"username": username, "password": password, "code": code, "client": "bearer"});
        self.call(None, reqwest::Method::POST, "/api/v1/session", Some(serde_json::to_vec(&body).unwrap_or_default()))
            .await
    }
}

/// A drill account with a second factor, logged in: its session token.
struct Staff {
    username: String,
    password: String,
    recovery: Vec<String>,
}

async fn staff(
    console: &Console,
    identity: &confidant_identity::Identity,
    records: &confidant_records::Records,
    role: Role,
    mfa: bool,
) -> Result<Staff> {
    let username = format!("drill-{}", &random()?[..10]);
    let password = format!("drill {} {}", random()?, random()?);
    let practitioner = if role == Role::Clinician {
        let p = records
            .create(&Console::principal(), confidant_fhir::ResourceType::Practitioner,
                json!({"resourceType": "Practitioner", "active": true, "name": [{"family": "Drill", "given": ["Synthetic"]}]}))
            .await?;
        Some(p.id)
    } else {
        None
    };
    let id = identity.add_user(&username, role, &password, practitioner.as_deref(), None).await?;
    let mut recovery = Vec::new();
    if mfa {
        let e = identity.totp_begin(&id).await?;
        let secret = confidant_vault::totp::TotpSecret::from_bytes(
            &data_encoding::BASE32_NOPAD.decode(e.secret_base32.as_bytes()).context("TOTP secret")?,
        );
        let now = u64::try_from(console.now() / 1000).unwrap_or(0);
        recovery =
            identity.totp_confirm(&id, None, &confidant_vault::totp::code_at(&secret, now)).await?.recovery_codes;
    }
    Ok(Staff { username, password, recovery })
}

impl Staff {
    /// A fresh session with the second factor (a recovery code each time: a TOTP step may not be replayed).
    async fn session(&mut self, d: &Drill) -> Result<String> {
        let code = self.recovery.pop().context("the drill ran out of recovery codes")?;
        let (st, b) = d.login(&self.username, &self.password, Some(&code)).await;
        if st != StatusCode::OK {
            bail!("the drill's own login failed ({st})");
        }
        Ok(b["token"].as_str().unwrap_or_default().to_owned())
    }
}

fn patient(family: &str, given: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "birthDate": "1979-04-12"})
}

fn note(pid: &str, text: &str) -> Value {
    use base64::Engine as _;
    json!({"resourceType": "DocumentReference", "status": "current",
           "subject": {"reference": format!("Patient/{pid}")},
           "content": [{"attachment": {"contentType": "text/plain", "data": base64::engine::general_purpose::STANDARD.encode(text)}}]})
}

/// Every file under `root`.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() { stack.push(path) } else { out.push(path) }
            }
        }
    }
    out
}

/// What the drill found.
#[derive(Debug)]
pub struct Report {
    pub instance_id: String,
    pub ran_at: i64,
    pub steps: Vec<Step>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.steps.iter().filter(|s| !s.passed).count()
    }
}

/// `confidant drill`: the steps, each passed or failed (the caller fails on any failure).
pub async fn run(console: &Console, dir: &Path, progress: &dyn Progress) -> Result<Report> {
    let config = Config::load(dir)?;
    let steps = simulate(console, &config, dir, progress).await?;
    Ok(Report { instance_id: config.instance_id, ran_at: console.now(), steps })
}

async fn simulate(console: &Console, config: &Config, dir: &Path, progress: &dyn Progress) -> Result<Vec<Step>> {
    let mut steps = vec![permissions(config, dir)];
    // A private copy: the database (a consistent snapshot), a configuration pointing
    // at it, a throwaway audit key and witness, no alert sinks.
    let tmp = tempfile::Builder::new().prefix("confidant-drill-").tempdir()?;
    let copy = tmp.path().join("data");
    let keys = tmp.path().join("keys");
    for d in [&copy, &keys] {
        std::fs::create_dir_all(d)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let (_, store) = open_store(dir).await?;
    let e = console.entry(Action::AuditAccess, "drill");
    let recorded = console.record(&store, e).await;
    let copied = if recorded.is_ok() { copy_database(&store, &copy.join(SQLITE_FILE), progress).await } else { Ok(()) };
    store.close().await;
    recorded.context("cannot record the drill in the audit log; nothing was done")?;
    copied.context("the drill could not copy the database")?;
    let real_witness = config.witness_path(dir);
    let real_checkpoints = confidant_audit::Witness::new(real_witness).read().unwrap_or_default();
    let real_public_key = crate::audit::instance_public_key(config)?;
    let throwaway = confidant_vault::signing::SigningKey::generate()?;
    throwaway.create_file(&keys.join("drill.audit-key"), &config.instance_id)?;
    let mut c = config.clone();
    c.database = Database::embedded();
    c.server.listen = "127.0.0.1:0".into();
    c.server.public_url = None;
    c.alerts = Default::default();
    c.audit.signing_key_provider = Some(SigningKeyProvider::File);
    c.audit.signing_key_file = Some(keys.join("drill.audit-key"));
    c.audit.public_key = Some(hex::encode(throwaway.public_key()));
    c.audit.witness_file = Some(keys.join("drill.witness"));
    c.audit.witness_webhook = None;
    // Checkpoints at start and stop only: the live-rewrite step knows when the
    // server signs (or refuses to).
    c.audit.checkpoint_interval_seconds = 86_400;
    c.audit.checkpoint_every_entries = u64::MAX / 2;
    c.save_new(&copy)?;
    // The copy holds the real accounts: none of their sessions or tokens may open it.
    lock_out_real_accounts(console, &copy).await?;

    let instance = crate::instance::Instance::open(console, &copy).await?;
    let (c, records, identity) = (instance.config.clone(), instance.records.clone(), instance.identity.clone());
    let mut clin_a = staff(console, &identity, &records, Role::Clinician, true).await?;
    let mut clin_b = staff(console, &identity, &records, Role::Clinician, true).await?;
    let mut desk = staff(console, &identity, &records, Role::Reception, true).await?;
    let newcomer = staff(console, &identity, &records, Role::Clinician, false).await?;
    let lure = phishing_lure(console, &identity, &desk.username).await?;
    // A young clinic may have none planted yet: the copy gets one (when honey records are on).
    let mut honey: Vec<String> = records.honey_records().await?.into_iter().collect();
    if honey.is_empty() && c.detection.honey_records > 0 {
        honey = crate::honey::plant(&records, 1).await?;
    }
    drop((identity, records));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let console = console.clone();
        tokio::spawn(async move {
            let stop = async {
                let _ = stopped.await;
            };
            instance.serve_until(&console, listener, stop, |_| {}).await
        })
    };
    let d = Drill { http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?, base };
    let attack = attack(&d, &c, &copy, &mut clin_a, &mut clin_b, &mut desk, &newcomer, &honey, &lure).await;
    let _ = stop.send(());
    server.await.context("the drill's server")??;
    let (mut attack_steps, canaries, rewritten) = attack?;
    steps.append(&mut attack_steps);
    steps.push(live_rewrite(&c.database_url(&copy)?, &c.witness_path(&copy), &rewritten).await?);
    steps.push(stolen_files(console, &copy, tmp.path(), &canaries, progress).await?);
    steps.push(tamper(&copy, &config.instance_id, &real_checkpoints, &real_public_key).await?);
    drop(tmp);
    Ok(steps)
}

/// The drill's private copy of the database, as a new SQLite file at `to`:
/// SQLite's own snapshot, or (PostgreSQL) one consistent snapshot of every
/// table loaded into the file. The live database is only read.
async fn copy_database(store: &confidant_store::Store, to: &Path, progress: &dyn Progress) -> Result<()> {
    if store.snapshot_sqlite(to).await?.is_some() {
        return Ok(());
    }
    progress.note(
        "PostgreSQL: copying every table (one REPEATABLE READ snapshot, read only) into the drill's private SQLite file…",
    );
    let snapshot = store.logical_snapshot().await?;
    let copy = confidant_store::Store::connect(&format!("sqlite://{}", to.display()), true).await?;
    let loaded = copy.load_snapshot(&snapshot, &|_, _| {}).await;
    copy.close().await;
    Ok(loaded?)
}

#[allow(clippy::too_many_arguments)]
async fn attack(
    d: &Drill,
    c: &Config,
    copy: &Path,
    clin_a: &mut Staff,
    clin_b: &mut Staff,
    desk: &mut Staff,
    newcomer: &Staff,
    honey: &[String],
    lure: &str,
) -> Result<(Vec<Step>, Vec<String>, Rewritten)> {
    let mut steps = Vec::new();
    let a = clin_a.session(d).await?;
    let b = clin_b.session(d).await?;
    // Sample records with canaries: what a thief would look for in the files.
    let canary = format!("DRILLCANARY{}", &random()?[..12]);
    let canaries = vec![format!("{canary}FAMILY"), format!("{canary} note text")];
    let b_patient = d.create(&b, &patient(&canaries[0], "Drill")).await?;
    d.create(&b, &note(&b_patient, &canaries[1])).await?;
    let threshold = c.detection.max_patients_per_user as usize;
    let mut a_patients = Vec::new();
    // One past the threshold fires the rule; the one after shows whether the session was locked.
    for i in 0..threshold + 2 {
        a_patients.push(d.create(&a, &patient(&format!("Drillpatient{i}"), "Synthetic")).await?);
    }

    // 1. A known password without the second factor.
    let (st, _) = d.login(&clin_a.username, &clin_a.password, None).await;
    let (st2, body) = d.login(&newcomer.username, &newcomer.password, None).await;
    let token = body["token"].as_str().unwrap_or_default().to_owned();
    let got_in = d.get(&token, "Patient?_count=1").await;
    let blocked = st == StatusCode::UNAUTHORIZED && (st2 != StatusCode::OK || got_in == StatusCode::FORBIDDEN);
    steps.push(step(
        "password-only",
        "log in with a known password but no second factor",
        blocked,
        format!(
            "with a second factor enrolled: {st}; a staff account without one: login {st2}, records {got_in}{}",
            if blocked { " (blocked)" } else { ": a password alone opened the records" }
        ),
    ));

    // 2. Another clinician's patient.
    let st = d.get(&a, &format!("Patient/{b_patient}")).await;
    let (_, search) = d.call(Some(&a), reqwest::Method::GET, &format!("Patient?family={}", canaries[0]), None).await;
    let found = search["total"].as_i64().unwrap_or(-1);
    let blocked = st == StatusCode::NOT_FOUND && found == 0;
    steps.push(step(
        "other-clinician",
        "read another clinician's patient",
        blocked,
        format!("read: {st}; search by name: {found} found"),
    ));

    // 3. Bulk reading with a stolen session.
    let mut read = 0;
    let mut stopped_at = None;
    for pid in &a_patients {
        match d.get(&a, &format!("Patient/{pid}")).await {
            StatusCode::OK => read += 1,
            st => {
                stopped_at = Some(st);
                break;
            }
        }
    }
    let store = confidant_store::Store::connect(&c.database_url(copy)?, false).await?;
    let alerts = store.alerts(false, 100).await?;
    let bulk_alert = alerts.iter().any(|a| a.rule == "bulk-patients");
    // The read past the threshold is refused before it is sent, and the session ends.
    let after = d.get(&a, "Patient?_count=1").await;
    let locked = stopped_at == Some(StatusCode::FORBIDDEN) && read == threshold && after == StatusCode::UNAUTHORIZED;
    steps.push(step(
        "bulk-read",
        "bulk-read patients with a stolen session",
        locked && bulk_alert,
        format!(
            "{read} of {} read (threshold {threshold}) before {}; the session afterwards: {after}; alert raised: {bulk_alert}",
            a_patients.len(),
            stopped_at
                .map(|s| format!("the next was refused ({s})"))
                .unwrap_or_else(|| "the end: never stopped".into())
        ),
    ));

    // 4. A honey record.
    let desk_session = desk.session(d).await?;
    let touched = match honey.first() {
        Some(h) => Some(d.get(&desk_session, &format!("Patient/{h}")).await),
        None => None,
    };
    let alerts = store.alerts(false, 100).await?;
    let honey_alert = alerts.iter().any(|a| a.rule == "honey-record");
    steps.push(step(
        "honey-record",
        "touch a honey record",
        touched.is_some() && honey_alert,
        match touched {
            None => "no honey records are planted: nothing to touch, nothing detected".to_owned(),
            Some(st) => format!("read {st}; critical alert raised: {honey_alert}"),
        },
    ));

    // 5. Hostile input.
    let mut problems = Vec::new();
    let hostile_gets = [
        "Patient?family=%27%20OR%201%3D1--",
        "Patient?family=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "Patient/..%2F..%2Fetc%2Fpasswd",
        "Patient?unknown_param=1",
        "Patient?_count=-1",
        "DocumentReference?patient=Patient/%00",
    ];
    for path in hostile_gets {
        let (st, body) = d.call(Some(&b), reqwest::Method::GET, path, None).await;
        let leaked = body.to_string().contains(&canaries[0]);
        if st.is_server_error() || leaked || (st == StatusCode::OK && body["total"].as_i64().unwrap_or(0) > 0) {
            problems.push(format!("GET {path}: {st}{}", if leaked { " and it leaked a record" } else { "" }));
        }
    }
    let big = vec![b'x'; c.server.max_body_bytes + 1];
    for (what, body) in [
        ("oversized body", big),
        ("malformed JSON", b"{\"resourceType\": \"Patient\",".to_vec()),
        ("not an object", b"[1,2,3]".to_vec()),
    ] {
        let (st, _) = d.call(Some(&b), reqwest::Method::POST, "Patient", Some(body)).await;
        if !st.is_client_error() {
            problems.push(format!("{what}: {st}"));
        }
    }
    let script = "<script>alert('drill')</script>";
    let (st, created) =
        d.call(Some(&b), reqwest::Method::POST, "Patient", Some(serde_json::to_vec(&patient(script, "X"))?)).await;
    if st == StatusCode::CREATED {
        let resp = d
            .http
            .get(format!("{}/fhir/r4/Patient/{}", d.base, created["id"].as_str().unwrap_or("")))
            .bearer_auth(&b)
            .send()
            .await?;
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let nosniff = resp.headers().get("x-content-type-options").is_some();
        if !ct.contains("json") || !nosniff {
            problems.push(format!("a stored <script> comes back as {ct} (nosniff: {nosniff})"));
        }
    }
    steps.push(step(
        "hostile-input",
        "send hostile input to the API",
        problems.is_empty(),
        if problems.is_empty() {
            format!(
                "{} hostile requests: each refused with a clear 4xx or answered as data; no 5xx, no leak",
                hostile_gets.len() + 4
            )
        } else {
            problems.join("; ")
        },
    ));
    // 5b. The phishing drill's look-alike sign-in page must capture nothing.
    let (phish, mut phish_canaries) = phishing_lookalike(d, &store, lure).await?;
    steps.push(phish);
    let mut canaries = canaries;
    canaries.append(&mut phish_canaries);
    // 6. A trigger planted to delete every read's audit entry as it is appended.
    steps.push(hiding_trigger(d, &store, &c.database_url(copy)?, &b, &b_patient, &canaries[0]).await?);
    // 7. The newest entry rewritten while the server runs (checked when it stops:
    // its last checkpoint must be refused).
    let rewritten = rewrite_newest_entry(d, &c.database_url(copy)?, &b, &b_patient).await?;
    store.close().await;
    Ok((steps, canaries, rewritten))
}

/// A drill mail of the copy's own phishing drill for the reception account
/// `username` (no mail is sent: the link id is taken as the sender would mail it).
async fn phishing_lure(console: &Console, identity: &confidant_identity::Identity, username: &str) -> Result<String> {
    let admin = Console::principal();
    identity.set_staff_email(&admin, username, "drill@example.invalid", None).await?;
    let now = console.now();
    let campaign = confidant_identity::phishing::NewCampaign {
        templates: vec!["password-reset".into()],
        roles: Vec::new(),
        users: vec![username.to_owned()],
        starts_at: now,
        spread_ms: 0,
    };
    identity.create_campaign(&admin, &campaign).await?;
    let user = identity.find_user(username).await?;
    let mut lure = None;
    for m in identity.due_drill_mails(now, 100_000).await? {
        identity.drill_mail_sent(&m).await?;
        if m.user_id == user.id {
            lure = Some(m.link_id);
        }
    }
    lure.context("the drill's own drill mail was not due")
}

/// Submit canaries on the look-alike sign-in page: the submit is recorded,
/// the lesson shown, and the canaries are returned to be searched for in the
/// files (the stolen-files step) — nothing typed there may be kept.
async fn phishing_lookalike(d: &Drill, store: &confidant_store::Store, lure: &str) -> Result<(Step, Vec<String>)> {
    let canary = format!("PHISHCANARY{}", &random()?[..12]);
    let (user, password) = (format!("{canary}user"), format!("{canary}password"));
    let url = format!("{}/p/{lure}", d.base);
    let landing = d.http.get(&url).send().await?;
    let landing_ok = landing.status() == StatusCode::OK;
    // The canaries are letters and digits: the form body needs no escaping.
    let form = |body: String| d.http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body);
    let r = form(format!("username={user}&password={password}")).send().await?;
    let st = r.status();
    let page = r.text().await.unwrap_or_default();
    let echoed = page.contains(&canary);
    let recorded = store.phish_campaigns().await?;
    let mut submitted = false;
    for c in &recorded {
        submitted |= store.phish_recipients(&c.id).await?.iter().any(|r| r.submitted_at.is_some());
    }
    let forged = d
        .http
        .post(format!("{}/p/{}", d.base, "A".repeat(43)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("password={password}"))
        .send()
        .await?;
    let passed = landing_ok && st == StatusCode::OK && !echoed && submitted && forged.status() == StatusCode::NOT_FOUND;
    Ok((
        step(
            "phishing-lookalike",
            "type a username and password into the phishing drill's look-alike sign-in page",
            passed,
            format!(
                "look-alike page {}; submit {st}, recorded: {submitted}, typed text shown back: {echoed}; a forged link: {}",
                if landing_ok { "shown" } else { "missing" },
                forged.status()
            ),
        ),
        vec![user, password],
    ))
}

/// A live attacker's trigger: each read's entry deleted as it is appended, the
/// head kept in step. The read must fail closed, and the trigger be listed.
async fn hiding_trigger(
    d: &Drill,
    store: &confidant_store::Store,
    url: &str,
    token: &str,
    patient: &str,
    canary: &str,
) -> Result<Step> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    sqlx::raw_sql(
        "CREATE TRIGGER drill_hide_reads AFTER INSERT ON audit_log WHEN NEW.action IN ('read', 'search-hit') BEGIN \
           DELETE FROM audit_log WHERE seq = NEW.seq; UPDATE audit_head SET size = NEW.seq - 1 WHERE id = 1; END;",
    )
    .execute(&mut conn)
    .await?;
    let (st, body) = d.call(Some(token), reqwest::Method::GET, &format!("Patient/{patient}"), None).await;
    let listed = store.foreign_schema_objects().await.map(|f| f.iter().any(|o| o.name == "drill_hide_reads"));
    sqlx::raw_sql("DROP TRIGGER drill_hide_reads").execute(&mut conn).await?;
    conn.close().await?;
    let leaked = body.to_string().contains(canary);
    let listed = listed?;
    let passed = st == StatusCode::SERVICE_UNAVAILABLE && !leaked && listed;
    Ok(step(
        "audit-trigger",
        "plant a trigger that deletes each read's audit entry",
        passed,
        format!(
            "the read under the trigger: {st}{}; listed for `serve` and `doctor`: {listed}",
            if leaked { ", and it returned the record" } else { ", nothing returned" }
        ),
    ))
}

/// Rewrite the newest audit entry (a read just made), re-hashed and
/// self-consistent, while the server runs. Returns the witness size then.
async fn rewrite_newest_entry(d: &Drill, url: &str, token: &str, patient: &str) -> Result<Rewritten> {
    use sqlx::{Connection, Row};
    let st = d.get(token, &format!("Patient/{patient}")).await;
    if st != StatusCode::OK {
        bail!("the drill could not read its own patient ({st})");
    }
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let row = sqlx::query("SELECT seq, entry FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_one(&mut conn).await?;
    let (seq, entry): (i64, Vec<u8>) = (row.try_get(0)?, row.try_get(1)?);
    let mut json: Value = serde_json::from_slice(&entry)?;
    json["actor"] = Value::String("drill-forged-actor".into());
    let forged = serde_json::to_vec(&json)?;
    let leaf = confidant_audit::merkle::leaf_hash(&forged);
    sqlx::query("UPDATE audit_log SET entry = ?, leaf_hash = ?, actor = 'drill-forged-actor' WHERE seq = ?")
        .bind(forged.as_slice())
        .bind(leaf.as_slice())
        .bind(seq)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(Rewritten { seq })
}

/// What [`rewrite_newest_entry`] did, for the check after the server stops.
struct Rewritten {
    seq: i64,
}

/// After the drill's server stopped: its last checkpoint must not cover the
/// rewritten entry, and a critical alert must say why.
async fn live_rewrite(url: &str, witness: &Path, rewritten: &Rewritten) -> Result<Step> {
    let signed = confidant_audit::Witness::new(witness).read()?;
    let covered = signed.iter().map(|s| s.checkpoint.size).max().unwrap_or(0);
    let store = confidant_store::Store::connect(url, false).await?;
    let alerts = store.alerts(false, 100).await;
    store.close().await;
    let alerted = alerts?.iter().any(|a| a.rule == "audit-tamper" && a.severity == "critical");
    let passed = covered < rewritten.seq as u64 && alerted;
    Ok(step(
        "audit-live-rewrite",
        "rewrite the newest audit entry while the server runs",
        passed,
        format!(
            "entry {} rewritten and re-hashed; signed checkpoints cover {covered} entries{}; critical alert: {alerted}",
            rewritten.seq,
            if covered >= rewritten.seq as u64 { ": the server signed the forgery" } else { ", not the forgery" }
        ),
    ))
}

/// Copy the data folder and a backup of it, and search them for the samples' plaintext.
async fn stolen_files(
    console: &Console,
    copy: &Path,
    tmp: &Path,
    canaries: &[String],
    progress: &dyn Progress,
) -> Result<Step> {
    let backup = tmp.join("stolen.backup");
    crate::backup::create_with(console, copy, &backup, &tmp.join("keys").join("drill.backup-key"), progress)
        .await
        .context("the drill could not back up its copy")?;
    let mut files = files_under(copy);
    files.push(backup);
    let mut bytes = 0usize;
    let mut found = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_default();
        bytes += data.len();
        for c in canaries {
            if data.windows(c.len()).any(|w| w == c.as_bytes()) {
                found.push(format!("{} holds {c:?}", f.display()));
            }
        }
    }
    Ok(step(
        "stolen-files",
        "copy the data folder and a backup, search them for sample records",
        found.is_empty(),
        if found.is_empty() {
            format!("{} files, {} bytes: no plaintext of the sample records", files.len(), bytes)
        } else {
            found.join("; ")
        },
    ))
}

/// Edit an audit entry as a careful attacker with write access would (re-hashing
/// it), and see whether the real witness catches it.
async fn tamper(
    copy: &Path,
    origin: &str,
    checkpoints: &[confidant_audit::checkpoint::SignedCheckpoint],
    public_key: &[u8; 32],
) -> Result<Step> {
    let url = format!("sqlite://{}", copy.join(SQLITE_FILE).display());
    let store = confidant_store::Store::connect(&url, false).await?;
    let before = confidant_audit::log::verify_store(&store, checkpoints, public_key, origin, |_| {}).await;
    store.close().await;
    if let Err(e) = before {
        return Ok(step(
            "audit-tamper",
            "edit an audit entry",
            false,
            format!("the log already fails verification before the edit: {e}"),
        ));
    }
    // An attacker with the database: drop the guard, change the first entry, fix its hash.
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    let row = sqlx::query("SELECT entry FROM audit_log WHERE seq = 1").fetch_one(&mut conn).await?;
    let mut entry: Vec<u8> = row.try_get(0)?;
    let text = String::from_utf8_lossy(&entry).replace("\"outcome\":\"success\"", "\"outcome\":\"denied\"");
    entry = if text.as_bytes() != entry.as_slice() {
        text.into_bytes()
    } else {
        entry.iter().map(|b| if *b == b'1' { b'2' } else { *b }).collect()
    };
    let leaf = confidant_audit::merkle::leaf_hash(&entry);
    let triggers = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'")
        .fetch_all(&mut conn)
        .await?;
    for t in triggers {
        let name: String = t.try_get(0)?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER \"{}\"", name.replace('"', ""))))
            .execute(&mut conn)
            .await?;
    }
    sqlx::query("UPDATE audit_log SET entry = ?, leaf_hash = ? WHERE seq = 1")
        .bind(entry.as_slice())
        .bind(leaf.as_slice())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let store = confidant_store::Store::connect(&url, false).await?;
    let after = confidant_audit::log::verify_store(&store, checkpoints, public_key, origin, |_| {}).await;
    store.close().await;
    Ok(match after {
        Err(e) => step(
            "audit-tamper",
            "edit an audit entry (and re-hash it)",
            true,
            format!("detected by `audit verify` against the witness: {e}"),
        ),
        Ok(r) => step(
            "audit-tamper",
            "edit an audit entry (and re-hash it)",
            false,
            format!(
                "the edit went unnoticed: {} signed checkpoints in the witness cover {} of {} entries",
                r.checkpoints, r.last_checkpoint, r.entries
            ),
        ),
    })
}

/// In the drill's copy, end every real session and API token and disable every
/// real account, before the copy is served: only the drill's own accounts work there.
/// The real key's checkpoint copies go too: the copy signs with a throwaway key.
async fn lock_out_real_accounts(console: &Console, copy: &Path) -> Result<()> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", copy.join(SQLITE_FILE).display());
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    let now = console.now();
    for sql in [
        "UPDATE sessions SET revoked_at = ? WHERE revoked_at IS NULL",
        "UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL",
        "UPDATE users SET disabled_at = ? WHERE disabled_at IS NULL",
    ] {
        sqlx::query(sql).bind(now).execute(&mut conn).await?;
    }
    // The copy is signed with a throwaway key: the real key's checkpoint copies
    // are not its own (the real witness is checked in the audit-tamper step).
    sqlx::query("DELETE FROM audit_checkpoints").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}
