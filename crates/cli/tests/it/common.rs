//! Test harness: real `confidant` processes on real databases.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection, Executor};

pub const BIN: &str = env!("CARGO_BIN_EXE_confidant");
pub const PG_ENV: &str = "CONFIDANT_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs a test body against SQLite and against PostgreSQL. The PostgreSQL
/// variant reads its server URL from CONFIDANT_TEST_POSTGRES_URL and says
/// loudly when it is not set.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::pg_url().is_none() {
                    assert!(
                        std::env::var("CI").ok().as_deref() != Some("true"),
                        "{} must be set in CI: the PostgreSQL suite may not be skipped there",
                        $crate::common::PG_ENV
                    );
                    eprintln!(
                        "\n*** SKIPPED {}::postgres: set {} (e.g. postgres://postgres@127.0.0.1:5432/test) to run it ***\n",
                        module_path!(),
                        $crate::common::PG_ENV
                    );
                    return;
                }
                super::$name($crate::common::Db::Postgres).await;
            }
        }
    };
}

pub fn pg_url() -> Option<String> {
    std::env::var(PG_ENV).ok().filter(|s| !s.is_empty())
}

pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    confidant_vault::random_bytes(&mut b).unwrap();
    hex::encode(b)
}

/// A fresh instance: its directory, key file, database, and an API token.
pub struct Instance {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub key_file: PathBuf,
    pub db: Db,
    /// For PostgreSQL: the instance's own database URL, and the admin URL to drop it.
    pub pg: Option<(String, String, String)>,
    /// An API token of a clinician (`clin1`, scope user/*.*).
    pub token: String,
    /// An API token of an admin (`admin1`, scope user/*.*).
    pub admin_token: String,
}

pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env("CONFIDANT_LOG", "info").output().unwrap()
}

/// Run the binary with `input` on standard input.
pub fn run_stdin(args: &[&str], input: &str) -> std::process::Output {
    run_stdin_env(args, input, &[])
}

/// [`run_stdin`] with extra environment variables.
pub fn run_stdin_env(args: &[&str], input: &str, env: &[(&str, &str)]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("CONFIDANT_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery staple 7";

/// `confidant user add` with the test password; panics on failure.
pub fn add_user(dir: &Path, username: &str, role: &str, extra: &[&str]) {
    let mut args =
        vec!["user", "add", "--dir", dir.to_str().unwrap(), "--username", username, "--role", role, "--password-stdin"];
    args.extend_from_slice(extra);
    let out = run_stdin(&args, &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "user add {username}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `confidant token create`; returns the token.
pub fn create_token(dir: &Path, user: &str, scope: &str) -> String {
    let out = run(&[
        "token",
        "create",
        "--dir",
        dir.to_str().unwrap(),
        "--user",
        user,
        "--scope",
        scope,
        "--expires-in",
        "1d",
    ]);
    assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn pg_database_url(admin: &str, name: &str) -> String {
    // Replace the database name (the path) of the admin URL.
    let (base, query) = admin.split_once('?').map(|(b, q)| (b, format!("?{q}"))).unwrap_or((admin, String::new()));
    let cut = base.rfind('/').unwrap();
    format!("{}/{name}{query}", &base[..cut])
}

impl Instance {
    pub async fn new(db: Db) -> Instance {
        let tmp = tempfile::Builder::new().prefix("confidant-it-").tempdir().unwrap();
        let dir = tmp.path().join("data");
        let key_file = tmp.path().join("keys").join("kek");
        std::fs::create_dir_all(tmp.path().join("logs")).unwrap();
        let mut pg = None;
        let mut args: Vec<String> = vec![
            "init".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--key-file".into(),
            key_file.display().to_string(),
        ];
        if db == Db::Postgres {
            let admin = pg_url().unwrap();
            let name = format!("confidant_it_{}", random_hex(6));
            sqlx::any::install_default_drivers();
            let mut conn = AnyConnection::connect(&admin).await.unwrap();
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
            conn.close().await.unwrap();
            let url = pg_database_url(&admin, &name);
            args.push("--database-url".into());
            args.push(url.clone());
            pg = Some((url, admin, name));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        add_user(&dir, "admin1", "admin", &[]);
        add_user(&dir, "clin1", "clinician", &["--name", "Test Clinician"]);
        let token = create_token(&dir, "clin1", "user/*.*");
        let admin_token = create_token(&dir, "admin1", "user/*.*");
        Instance { tmp, dir, key_file, db, pg, token, admin_token }
    }

    /// Change `confidant.toml` (e.g. a detection threshold), as an admin would.
    pub fn configure(&self, change: impl FnOnce(&mut toml::Table)) {
        let path = self.dir.join("confidant.toml");
        let mut t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        change(&mut t);
        std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    }

    /// Set `key` in `[section]` of the configuration table.
    pub fn set(t: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
        let s = t.entry(section).or_insert(toml::Value::Table(Default::default()));
        s.as_table_mut().unwrap().insert(key.into(), value);
    }

    /// For tests that read many patients on purpose (bulk checks, crash and
    /// load tests): the detector alerts but locks nothing.
    pub fn detector_locks_nothing(&self) {
        self.configure(|t| Instance::set(t, "detection", "lock_session_on", toml::Value::Array(Vec::new())));
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.tmp.path().join("logs")
    }

    /// The database URL, for tests that reach behind the server's back.
    pub fn database_url(&self) -> String {
        match &self.pg {
            Some((url, _, _)) => url.clone(),
            None => format!("sqlite://{}", self.dir.join("confidant.db").display()),
        }
    }

    pub async fn db(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.database_url()).await.unwrap()
    }

    pub fn start(&self) -> Server {
        Server::start(self, &[])
    }

    /// An instance made outside [`Instance::new`] (another key provider, a restore),
    /// with `token` for both API tokens.
    pub fn existing(tmp: tempfile::TempDir, dir: PathBuf, key_file: PathBuf, token: String) -> Instance {
        let inst = Instance { tmp, dir, key_file, db: Db::Sqlite, pg: None, token: token.clone(), admin_token: token };
        std::fs::create_dir_all(inst.logs_dir()).unwrap();
        inst
    }

    /// The stored (sealed) body of a resource's version 1, from the database.
    pub async fn stored_body(&self, id: &str) -> Vec<u8> {
        use sqlx::Row;
        let mut db = self.db().await;
        let q = if self.db == Db::Postgres {
            "SELECT body FROM resource_versions WHERE id = $1 AND version_id = 1"
        } else {
            "SELECT body FROM resource_versions WHERE id = ? AND version_id = 1"
        };
        let b: Vec<u8> = sqlx::query(q).bind(id).fetch_one(&mut db).await.unwrap().get(0);
        db.close().await.unwrap();
        b
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some((_, admin, name)) = self.pg.take() {
            // Best effort: a leftover test database is harmless.
            let _ = Command::new("psql")
                .args([admin.as_str(), "-q", "-c", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                .output();
        }
    }
}

/// A running `confidant serve`, its output captured to files.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub admin_token: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub http: Client,
}

static SERVER_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Server {
    pub fn start(inst: &Instance, extra: &[&str]) -> Server {
        Server::start_env(inst, extra, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_env(inst: &Instance, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let n = SERVER_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stdout = inst.logs_dir().join(format!("serve-{n}.out"));
        let stderr = inst.logs_dir().join(format!("serve-{n}.err"));
        let mut child = Command::new(BIN)
            .args(["serve", "--dir", inst.dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("CONFIDANT_LOG", "debug,sqlx=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        // Copy stdout to its file (the canary scan reads it) and hand over the
        // line announcing the address: the test waits on that line, not on a clock.
        let pipe = child.stdout.take().unwrap();
        let mut file = std::fs::File::create(&stdout).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
                if let Some(url) = line.strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx.recv().unwrap_or_else(|_| {
            panic!("server exited before listening: {}", std::fs::read_to_string(&stderr).unwrap_or_default())
        });
        Server {
            child,
            url,
            token: inst.token.clone(),
            admin_token: inst.admin_token.clone(),
            stdout,
            stderr,
            http: Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        }
    }

    pub fn fhir(&self, path: &str) -> String {
        format!("{}/fhir/r4/{}", self.url, path.trim_start_matches('/'))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.fhir(path)).bearer_auth(&self.token).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.get(path).await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, rt: &str, body: &Value) -> Response {
        self.http
            .post(self.fhir(rt))
            .bearer_auth(&self.token)
            .header("content-type", "application/fhir+json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// Create (as the clinician) and return the stored resource; panics unless 201.
    pub async fn create(&self, body: &Value) -> Value {
        self.create_as(&self.token, body).await
    }

    /// Create with `token`; panics unless 201.
    pub async fn create_as(&self, token: &str, body: &Value) -> Value {
        let rt = body["resourceType"].as_str().unwrap();
        let r = self
            .http
            .post(self.fhir(rt))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "create {rt}: {v}");
        v
    }

    pub async fn put(&self, path: &str, body: &Value, if_match: Option<&str>) -> Response {
        let mut req = self
            .http
            .put(self.fhir(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/fhir+json")
            .body(serde_json::to_vec(body).unwrap());
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        req.send().await.unwrap()
    }

    /// Stop with SIGTERM and wait.
    pub fn stop(mut self) -> (PathBuf, PathBuf) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "server did not stop cleanly: {status}\n{}",
            std::fs::read_to_string(&self.stderr)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        );
        (self.stdout.clone(), self.stderr.clone())
    }

    pub fn output(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn patient(family: &str, given: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "birthDate": "1980-02-01"})
}

pub fn note(patient_id: &str, text: &str) -> Value {
    use base64::Engine as _;
    json!({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": format!("Patient/{patient_id}")},
        "content": [{"attachment": {"contentType": "text/plain", "data": base64::engine::general_purpose::STANDARD.encode(text)}}]
    })
}

pub fn encounter(patient_id: &str) -> Value {
    json!({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{patient_id}")}
    })
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// (path, content) of every file under `dir`, for before/after comparisons.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let c = std::fs::read(&p).unwrap_or_default();
            (p, c)
        })
        .collect()
}

/// Number of resource versions and heads in the database.
pub async fn row_counts(inst: &Instance) -> (i64, i64, i64) {
    use sqlx::Row;
    let mut db = inst.db().await;
    let v: i64 = sqlx::query("SELECT COUNT(*) FROM resource_versions").fetch_one(&mut db).await.unwrap().get(0);
    let h: i64 = sqlx::query("SELECT COUNT(*) FROM resource_heads").fetch_one(&mut db).await.unwrap().get(0);
    let t: i64 = sqlx::query("SELECT COUNT(*) FROM search_tokens").fetch_one(&mut db).await.unwrap().get(0);
    db.close().await.unwrap();
    (v, h, t)
}

/// The browser tests' folder (tests/e2e), if Chromium, Node and playwright-core
/// are here; in CI they must be (the test fails), elsewhere `test` is skipped, loudly.
pub fn e2e_ready(test: &str) -> Option<PathBuf> {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
    let ready = Path::new("/usr/bin/chromium").exists()
        && e2e.join("node_modules/playwright-core").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if ready {
        return Some(e2e);
    }
    assert!(
        std::env::var("CI").ok().as_deref() != Some("true"),
        "Chromium and playwright-core must be installed in CI"
    );
    eprintln!("\n*** SKIPPED {test}: install chromium and run `npm ci` in tests/e2e ***\n");
    None
}

/// [`e2e_ready`] with fhir-kit-client (npm) installed too: the folder to run
/// a FHIR client script in, or `None` (said loudly; a failure under CI).
pub fn fhir_client_ready(test: &str) -> Option<PathBuf> {
    let e2e = e2e_ready(test)?;
    if e2e.join("node_modules/fhir-kit-client").exists() {
        return Some(e2e);
    }
    assert!(std::env::var("CI").ok().as_deref() != Some("true"), "fhir-kit-client must be installed in CI");
    eprintln!("\n*** SKIPPED {test}: run `npm ci` in tests/e2e ***\n");
    None
}

// --- FHIR validation by two independent validators (issue 19) ---

/// What one validator said of a set of resources: `None` if it is not installed here.
fn validator_report(name: &str, mut cmd: Command, docs: &[Value]) -> Option<(bool, String)> {
    use std::io::Write;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    child.stdin.take().unwrap().write_all(&serde_json::to_vec(docs).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{name}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ok = out.status.success() && report.contains(&format!("validated {} resources, 0 invalid", docs.len()));
    Some((ok, report))
}

/// The reports of both validators on `docs`: `fhir.resources` (Python,
/// crates/cli/tests/fhir_validate.py) and Medplum's `validateResource`, which
/// also checks the invariants (tests/e2e/fhir_validate.mjs). One that is not
/// installed is skipped, loudly; in CI both must be there.
pub fn fhir_validators(test: &str, docs: &[Value]) -> Vec<(bool, String)> {
    let mut reports = Vec::new();
    let in_ci = std::env::var("CI").ok().as_deref() == Some("true");
    match std::env::var_os("CONFIDANT_FHIR_VALIDATOR_PATH") {
        Some(pythonpath) => {
            let mut cmd = Command::new("python3");
            cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fhir_validate.py")).env("PYTHONPATH", pythonpath);
            reports.extend(validator_report("fhir.resources", cmd, docs));
        }
        None => {
            assert!(!in_ci, "CONFIDANT_FHIR_VALIDATOR_PATH must be set in CI (.ci/run installs the validator)");
            eprintln!("\n*** SKIPPED fhir.resources validation in {test}: set CONFIDANT_FHIR_VALIDATOR_PATH ***\n");
        }
    }
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
    if e2e.join("node_modules/@medplum/core").exists() {
        let mut cmd = Command::new("node");
        cmd.arg(e2e.join("fhir_validate.mjs")).current_dir(&e2e);
        reports.extend(validator_report("medplum", cmd, docs));
    } else {
        assert!(!in_ci, "@medplum/core must be installed in CI (npm ci in tests/e2e)");
        eprintln!("\n*** SKIPPED Medplum validation in {test}: run `npm ci` in tests/e2e ***\n");
    }
    reports
}

/// `docs` are valid FHIR R4, invariants included, by every validator installed (see [`fhir_validators`]).
pub fn validate_fhir(test: &str, docs: &[Value]) {
    for (ok, report) in fhir_validators(test, docs) {
        assert!(ok, "{report}");
    }
}
