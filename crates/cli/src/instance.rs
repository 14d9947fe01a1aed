//! Instance life cycle: init, open, serve; API tokens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use confidant_identity::Identity;
use confidant_policy::Role;
use confidant_records::{Records, SystemClock};
use confidant_server::{AppState, HttpSettings};
use confidant_store::Store;
use confidant_vault::{KeyFile, Vault};

use crate::config::{self, Config, Database, Keys, SQLITE_FILE, Server};

/// The identity service's footing: the same store, keys, audit log, clock
/// and detector as `records`.
pub fn identity_services(records: &Records) -> confidant_identity::Services {
    confidant_identity::Services {
        store: records.store().clone(),
        keyring: records.keyring().clone(),
        auditor: records.auditor().clone(),
        clock: records.clock().clone(),
        subscriber: records.subscriber().cloned(),
    }
}

pub fn now_millis() -> i64 {
    use confidant_records::Clock;
    SystemClock.now_millis()
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

/// What `init` made.
#[derive(Debug)]
pub struct Initialised {
    pub config: Config,
    pub key_file: PathBuf,
    /// The audit signing key's public key (hex).
    pub audit_public_key: String,
    /// One-time code for the first administrator's account.
    pub enrolment_code: String,
}

/// `confidant init`: a new instance in `dir`, its key file outside `dir`.
pub async fn init(dir: &Path, options: InitOptions) -> Result<Initialised> {
    let made = init_with(dir, options).await?;
    println!("Created a Confidant instance in {}", dir.display());
    println!("  instance id:  {}", made.config.instance_id);
    println!(
        "  database:     {}",
        if made.config.database.url.starts_with("sqlite") { "SQLite (embedded)" } else { "PostgreSQL" }
    );
    match made.config.keys.provider.as_str() {
        "pkcs11" => println!(
            "  key:          in the PKCS#11 token '{}' (not extractable)",
            made.config.keys.pkcs11_token.as_deref().unwrap_or("?")
        ),
        _ => println!("  key file:     {} (mode 0600)", made.key_file.display()),
    }
    println!("  audit key:    {}", crate::audit::describe_signing_key(&made.config));
    println!("  audit public key (write it down; `audit verify --public-key` checks against it):");
    println!("                {}", made.audit_public_key);
    println!();
    println!("Next:");
    println!(
        "  1. Back up the key file and the audit key now, apart from the data. Without the key file the data cannot be read."
    );
    println!("  2. Create the first administrator, either here:");
    println!("       confidant user add --dir {} --username NAME --role admin", dir.display());
    println!("     or over the API with this one-time enrolment code (valid 7 days):");
    println!("       {}", made.enrolment_code);
    println!("       POST /api/v1/enrol {{\"code\": \"...\", \"username\": \"...\", \"password\": \"...\"}}");
    println!("  3. Start the server:      confidant serve --dir {}", dir.display());
    println!("  4. Log in (POST /api/v1/session) and enrol the second factor; staff cannot work without it.");
    Ok(made)
}

/// Where a new instance's key-encryption key is made.
pub struct TokenChoice {
    pub module: PathBuf,
    pub token: String,
}

/// What `init` is asked for.
pub struct InitOptions {
    /// Where the key file goes (default: per user, outside DIR).
    pub key_file: Option<PathBuf>,
    /// PostgreSQL instead of the embedded SQLite.
    pub database_url: Option<String>,
    /// Seal the key files with a passphrase.
    pub passphrase: bool,
    /// Keep the keys in a PKCS#11 token.
    pub token: Option<TokenChoice>,
    /// How many honey records to plant.
    pub honey_records: u32,
}

/// Create a new instance in `dir`, printing nothing (`init` prints; `demo` does not).
pub async fn init_with(dir: &Path, options: InitOptions) -> Result<Initialised> {
    let InitOptions { key_file, database_url, passphrase, token, honey_records } = options;
    let dir = absolute(dir)?;
    if Config::path(&dir).exists() {
        bail!("{} already holds a Confidant instance; choose another --dir", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The data folder is the service's alone (the database files inside inherit nothing looser).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to its owner", dir.display()))?;
    }
    let dir = dir.canonicalize()?;
    let instance_id = confidant_vault::random_id()?;
    let key_path = match key_file {
        Some(p) => absolute(&p)?,
        None => config::default_key_file(&instance_id)?,
    };
    // The key must not live next to the data (DESIGN.md §11.4).
    let key_parent = key_path.parent().map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
    if key_parent.as_deref().is_some_and(|p| p.starts_with(&dir)) {
        bail!("the key file must be outside the instance directory {}; pass --key-file elsewhere", dir.display());
    }
    let signing_path = key_path.with_extension("audit-key");
    for p in [&key_path, &signing_path] {
        if p.exists() {
            bail!("{} already exists; a key file is never overwritten. Choose another --key-file", p.display());
        }
    }
    let url = database_url.unwrap_or_else(|| format!("sqlite://{SQLITE_FILE}"));
    let keys = KeyFile::generate(&instance_id)?;
    // Asked for before anything is created: a refused passphrase leaves nothing behind.
    let sealed_with = if passphrase { Some(new_passphrase()?) } else { None };
    // With a token, the key-encryption key is made inside it (and never leaves it).
    let in_token = match &token {
        Some(t) => {
            let pin = pkcs11_pin()?;
            let kek = confidant_vault::pkcs11::Pkcs11Kek::open(&t.module, &t.token, &pin, &instance_id)
                .context("cannot use the PKCS#11 token; nothing was created")?;
            kek.generate_version()?;
            // The audit signing key pair is made in the same token, for the same reason.
            let signer = confidant_vault::pkcs11::Pkcs11Signer::generate(&t.module, &t.token, &pin, &instance_id)
                .context("cannot make the audit signing key in the PKCS#11 token")?;
            Some((kek, signer))
        }
        None => None,
    };
    let check_value = match &in_token {
        Some((k, _)) => k.check_value()?,
        None => keys.check_value(),
    };
    let provider = match (&in_token, passphrase) {
        (Some(_), _) => "pkcs11",
        (None, true) => "passphrase",
        (None, false) => "key-file",
    };
    let config = Config {
        instance_id: instance_id.clone(),
        database: Database { url },
        keys: Keys {
            provider: provider.into(),
            key_file: key_path.clone(),
            check_value,
            pkcs11_module: token.as_ref().map(|t| t.module.clone()),
            pkcs11_token: token.as_ref().map(|t| t.token.clone()),
            rotate_after_days: 365,
        },
        server: Server::default(),
        access: Default::default(),
        audit: config::Audit { signing_key_provider: Some(provider.into()), ..Default::default() },
        retention: Default::default(),
        detection: confidant_detect::Settings { honey_records, ..Default::default() },
        alerts: Default::default(),
    };
    let store = Store::connect(&config.database_url(&dir)?, true).await.context("cannot open the database")?;
    if confidant_records::instance_id(&store).await.ok().flatten().is_some() {
        bail!("the database already belongs to an instance; give an empty database");
    }
    store.migrate().await.context("cannot create the database schema")?;
    // The key folder also holds the witness (and, but for a token, the keys): owner only.
    if let Some(parent) = key_path.parent().filter(|p| !p.exists()) {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // The audit signing key lives where the key-encryption key does.
    type Signer = Box<dyn confidant_vault::signing::Signer>;
    let (provider, signer): (Arc<dyn confidant_vault::KeyProvider>, Signer) = match (in_token, &sealed_with) {
        (Some((kek, signer)), _) => (Arc::new(kek), Box::new(signer)),
        (None, Some(p)) => {
            let signing = confidant_vault::signing::SigningKey::generate()?;
            keys.create_sealed(&key_path, p)?;
            signing.create_sealed_file(&signing_path, &instance_id, p)?;
            (Arc::new(keys), Box::new(signing))
        }
        (None, None) => {
            let signing = confidant_vault::signing::SigningKey::generate()?;
            keys.create(&key_path)?;
            signing.create_file(&signing_path, &instance_id)?;
            (Arc::new(keys), Box::new(signing))
        }
    };
    let audit_public_key = signer.public_key();
    let mut config = config;
    config.audit.public_key = Some(hex::encode(audit_public_key));
    let vault = Vault::new(provider);
    confidant_records::initialise(&store, &vault, &instance_id, now_millis()).await?;
    let records = Arc::new(Records::open(store.clone(), vault, Arc::new(SystemClock)).await?);
    let identity = Identity::new(identity_services(&records), config.access.identity_settings());
    let enrolment_code = identity.create_enrolment_code(Role::Admin).await?;
    crate::honey::plant(&records, honey_records).await.context("cannot plant the honey records")?;
    // A first signed checkpoint: from its first minute, the log has a witness.
    let witness = confidant_audit::Witness::new(config.witness_path(&dir));
    let (mut checkpointer, _) =
        confidant_audit::Checkpointer::open(store.clone(), signer, &instance_id, witness).await?;
    checkpointer.checkpoint(now_millis(), Some(records.auditor())).await?;
    store.close().await;
    config.save_new(&dir)?;
    Ok(Initialised { config, key_file: key_path, audit_public_key: hex::encode(audit_public_key), enrolment_code })
}

/// The key-encryption key, wherever the configuration says it is.
pub enum Kek {
    File(KeyFile),
    Token(confidant_vault::pkcs11::Pkcs11Kek),
}

impl Kek {
    /// Versions, oldest first, with a key check value where one is known.
    pub fn versions(&self) -> Vec<(u32, String)> {
        match self {
            Kek::File(k) => k.versions(),
            Kek::Token(t) => t.versions().into_iter().map(|v| (v, "(in the token)".to_owned())).collect(),
        }
    }

    /// Add a version (appended to the key file, or generated in the token).
    pub fn add_version(&self, config: &Config) -> Result<u32> {
        Ok(match self {
            Kek::File(_) => {
                let passphrase = if config.keys.provider == "passphrase" { Some(passphrase()?) } else { None };
                KeyFile::add_version_with(&config.keys.key_file, passphrase.as_ref().map(|p| p.as_str()))?
            }
            Kek::Token(t) => t.generate_version()?,
        })
    }

    /// Remove a version (from the key file, or destroy it in the token); returns
    /// the key check value that identifies the key from now on.
    pub fn retire(&self, config: &Config, version: u32) -> Result<String> {
        Ok(match self {
            Kek::File(_) => {
                let passphrase = if config.keys.provider == "passphrase" { Some(passphrase()?) } else { None };
                KeyFile::retire_version(&config.keys.key_file, passphrase.as_ref().map(|p| p.as_str()), version)?
            }
            Kek::Token(t) => {
                t.destroy_version(version)?;
                t.check_value()?
            }
        })
    }

    pub fn provider(self) -> Arc<dyn confidant_vault::KeyProvider> {
        match self {
            Kek::File(k) => Arc::new(k),
            Kek::Token(t) => Arc::new(t),
        }
    }
}

/// Load the key named by the config, checking that it is this instance's key.
/// Touches nothing on disk.
pub fn load_key(config: &Config) -> Result<Kek> {
    let sealed = match config.keys.provider.as_str() {
        "key-file" => false,
        "passphrase" => true,
        "pkcs11" => return load_token(config).map(Kek::Token),
        other => {
            bail!("keys.provider '{other}' is not supported by this build (supported: key-file, passphrase, pkcs11)")
        }
    };
    let path = &config.keys.key_file;
    if !path.exists() {
        bail!(
            "the key file {} is missing. Restore it from your key backup (it is kept apart from the data); \
             nothing was changed",
            path.display()
        );
    }
    let passphrase = if sealed { Some(passphrase()?) } else { None };
    let key = KeyFile::load_with(path, passphrase.as_ref().map(|p| p.as_str()))
        .with_context(|| "cannot use the key file; nothing was changed".to_string())?;
    if key.instance_id() != config.instance_id || key.check_value() != config.keys.check_value {
        bail!(
            "the key file {} is not the key of this instance (expected key check value {}, found {}); \
             nothing was changed",
            path.display(),
            config.keys.check_value,
            key.check_value()
        );
    }
    Ok(Kek::File(key))
}

fn load_token(config: &Config) -> Result<confidant_vault::pkcs11::Pkcs11Kek> {
    let (Some(module), Some(token)) = (&config.keys.pkcs11_module, &config.keys.pkcs11_token) else {
        bail!("keys.provider is pkcs11, but keys.pkcs11_module or keys.pkcs11_token is not set");
    };
    let pin = pkcs11_pin()?;
    let kek = confidant_vault::pkcs11::Pkcs11Kek::open(module, token, &pin, &config.instance_id)
        .context("cannot use the PKCS#11 token; nothing was changed")?;
    let check = kek.check_value().context("the token holds no key of this instance; nothing was changed")?;
    if check != config.keys.check_value {
        bail!("the token's key is not the key of this instance (key check value {check}); nothing was changed");
    }
    Ok(kek)
}

type Secret = zeroize::Zeroizing<String>;

/// Read a secret once per process (a descriptor can be read only once).
fn read_once(cell: &'static std::sync::OnceLock<Secret>, var: &str, fd_var: &str, prompt: &str) -> Result<Secret> {
    if let Some(p) = cell.get() {
        return Ok(p.clone());
    }
    let p = read_secret(var, fd_var, prompt)?;
    Ok(cell.get_or_init(|| p).clone())
}

/// The PIN of the PKCS#11 token: from CONFIDANT_PKCS11_PIN, from the descriptor
/// named by CONFIDANT_PKCS11_PIN_FD, or from a prompt.
pub fn pkcs11_pin() -> Result<Secret> {
    static READ: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
    read_once(&READ, "CONFIDANT_PKCS11_PIN", "CONFIDANT_PKCS11_PIN_FD", "PIN of the PKCS#11 token: ")
}

/// The passphrase of a sealed key file: from CONFIDANT_PASSPHRASE, from the
/// descriptor named by CONFIDANT_PASSPHRASE_FD, or from a prompt. Never from the command line.
pub fn passphrase() -> Result<Secret> {
    static READ: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
    read_once(&READ, "CONFIDANT_PASSPHRASE", "CONFIDANT_PASSPHRASE_FD", "Passphrase of the key file: ")
}

/// A secret from the environment variable `var`, from the descriptor named by
/// `fd_var`, or from a prompt — never from the command line.
fn read_secret(var: &str, fd_var: &str, prompt: &str) -> Result<zeroize::Zeroizing<String>> {
    if let Ok(p) = std::env::var(var) {
        return Ok(zeroize::Zeroizing::new(p));
    }
    if let Ok(fd) = std::env::var(fd_var) {
        let fd: u32 = fd.trim().parse().with_context(|| format!("{fd_var} must be a file descriptor number"))?;
        let mut line = zeroize::Zeroizing::new(String::new());
        let f = std::fs::File::open(format!("/dev/fd/{fd}"))
            .with_context(|| format!("cannot read the passphrase from file descriptor {fd}"))?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut line)?;
        return Ok(zeroize::Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned()));
    }
    let p = rpassword::prompt_password(prompt)
        .with_context(|| format!("cannot read the passphrase or PIN: set {var} or {fd_var}, or run from a terminal"))?;
    Ok(zeroize::Zeroizing::new(p))
}

/// A new passphrase for `init --passphrase`: asked twice at a prompt; it must pass the password policy.
fn new_passphrase() -> Result<zeroize::Zeroizing<String>> {
    let p = read_secret(
        "CONFIDANT_PASSPHRASE",
        "CONFIDANT_PASSPHRASE_FD",
        "New passphrase for the key file (at least 12 characters): ",
    )?;
    if std::env::var_os("CONFIDANT_PASSPHRASE").is_none() && std::env::var_os("CONFIDANT_PASSPHRASE_FD").is_none() {
        let again = rpassword::prompt_password("Again: ").context("cannot read the passphrase")?;
        if again != *p {
            bail!("the two passphrases differ; nothing was created");
        }
    }
    confidant_vault::password::check_policy(&p, &["confidant"])
        .map_err(|e| anyhow::anyhow!("passphrase refused: {e}; nothing was created"))?;
    Ok(p)
}

/// Open an instance's store only (no keys): for token management.
pub async fn open_store(dir: &Path) -> Result<(Config, Store)> {
    let config = Config::load(dir)?;
    if let Some(db) = config.sqlite_path(dir)
        && !db.exists()
    {
        bail!("the database {} is missing", db.display());
    }
    let store = Store::connect(&config.database_url(dir)?, false).await.context("cannot open the database")?;
    Ok((config, store))
}

/// Open an instance for serving: key checked first, then database.
pub async fn open(dir: &Path) -> Result<(Config, Records)> {
    let config = Config::load(dir)?;
    let key = load_key(&config)?;
    let (_, store) = open_store(dir).await?;
    store.migrate().await.context("cannot bring the database schema up to date")?;
    match confidant_records::instance_id(&store).await? {
        Some(id) if id == config.instance_id => {}
        Some(_) => bail!("the database belongs to another instance than {}", Config::path(dir).display()),
        None => bail!("the database was never initialised; run `confidant init`"),
    }
    match Records::open(store.clone(), Vault::new(key.provider()), Arc::new(SystemClock)).await {
        Ok(records) => {
            // Rows from before migration 9 are sealed now that the key is at hand.
            if let Err(e) = confidant_identity::seal_plaintext_links(records.store(), records.keyring()).await {
                store.close().await;
                return Err(anyhow::Error::new(e).context("cannot seal account links and token labels"));
            }
            Ok((config, records))
        }
        Err(e) => {
            store.close().await;
            Err(anyhow::Error::new(e).context("cannot open the records; nothing was changed"))
        }
    }
}

/// Run the HTTP server for opened records until Ctrl-C or SIGTERM.
pub async fn run_server(
    config: &Config,
    dir: &Path,
    records: Records,
    listener: tokio::net::TcpListener,
) -> Result<()> {
    // The signal handlers are in place before "listening on" is printed.
    let shutdown = shutdown_signal();
    run_server_until(config, dir, records, listener, shutdown, true).await
}

/// Run the HTTP server for opened records until `shutdown` completes;
/// with `announce`, print "listening on" when it is ready (after start-up checks).
pub async fn run_server_until(
    config: &Config,
    dir: &Path,
    records: Records,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    announce: bool,
) -> Result<()> {
    let addr = listener.local_addr()?;
    refuse_foreign_schema_objects(records.store()).await?;
    let auditor = records.auditor().clone();
    // The detector watches every access from the first request on.
    let honey = records.honey_records().await.context("cannot read the honey records")?;
    let detector = Arc::new(confidant_detect::Detector::new(
        records.store().clone(),
        records.auditor().clone(),
        config.detection.clone(),
        honey,
        config.alerts.sinks(),
    ));
    let records = records.with_subscriber(detector.clone());
    let checkpointer =
        crate::audit::start_checkpointer(config, dir, records.store().clone(), &auditor, &detector).await?;
    let (stop_checkpoints, stopped) = tokio::sync::watch::channel(false);
    let interval = std::time::Duration::from_secs(config.audit.checkpoint_interval_seconds.max(1));
    let webhook = config.audit.witness_webhook.as_deref().map(crate::audit::Webhook::new).transpose()?;
    let checkpoints = tokio::spawn(crate::audit::run_checkpoints(
        checkpointer.clone(),
        auditor,
        detector.clone(),
        interval,
        webhook,
        stopped,
    ));
    let base_url = config.server.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let sinks =
        confidant_detect::sinks::spawn(records.store().clone(), &config.alerts, &config.instance_id, detector.wake())
            .map_err(|e| anyhow::anyhow!("{e} (in [alerts] of {})", Config::path(dir).display()))?;
    let records = Arc::new(records);
    let settings = confidant_identity::Settings {
        passkey_site: config.server.public_url.clone(),
        ..config.access.identity_settings()
    };
    let identity = Arc::new(Identity::new(identity_services(&records), settings));
    // The admin's posture page runs `confidant doctor`'s checks against this running instance.
    let posture = {
        let (config, dir, records, identity) = (config.clone(), dir.to_path_buf(), records.clone(), identity.clone());
        confidant_server::Posture(Arc::new(move || {
            let (config, dir, records, identity) = (config.clone(), dir.clone(), records.clone(), identity.clone());
            Box::pin(async move {
                crate::doctor::for_page(crate::doctor::examine_running(&config, &dir, &records, &identity).await)
            })
        }))
    };
    // The first dummy password check computes its hash; do it before the first login.
    confidant_vault::password::verify_dummy("warm-up");
    let state = AppState {
        records: records.clone(),
        identity,
        secure_cookies: base_url.starts_with("https://"),
        break_glass_minutes: config.access.break_glass_minutes,
        base_url: base_url.trim_end_matches('/').to_owned(),
        audit: Some(checkpointer),
        posture: Some(posture),
        trusted_proxies: config.server.trusted_proxy_addresses()?,
    };
    let router = confidant_server::router(state, &HttpSettings { max_body_bytes: config.server.max_body_bytes });
    if announce {
        println!("listening on http://{addr}");
    }
    tracing::info!(%addr, backend = records.store().backend_name(), "serving");
    confidant_server::serve(listener, router, shutdown).await?;
    // A last checkpoint covers everything this node appended.
    let _ = stop_checkpoints.send(true);
    let _ = checkpoints.await;
    // Undelivered alerts stay queued in the database for the next start.
    for s in sinks {
        s.abort();
    }
    tracing::info!("stopped; closing the database");
    records.store().close().await;
    Ok(())
}

/// Nothing but our own statements may run when a table is written or read:
/// a trigger, rule, view or row policy that the migrations did not create can
/// delete audit entries as they are appended or hide rows from a reader.
async fn refuse_foreign_schema_objects(store: &confidant_store::Store) -> Result<()> {
    let foreign = store.foreign_schema_objects().await.context("cannot list the database's triggers and rules")?;
    if !foreign.is_empty() {
        let list: Vec<String> = foreign.iter().map(ToString::to_string).collect();
        bail!(
            "SECURITY ALERT: the database holds objects Confidant did not create: {}. They can delete or rewrite \
             audit entries and records. Treat this as a security incident: keep a copy of the database, then \
             remove them (DROP TRIGGER / DROP RULE / DROP VIEW / DROP POLICY) and run `confidant audit verify`. \
             Nothing was served",
            list.join(", ")
        );
    }
    Ok(())
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called (not when
/// the future is first polled), so a signal right after "listening on" is
/// never lost to the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt()).ok();
        let term = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! { _ = wait(int) => {}, _ = wait(term) => {} }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `confidant serve`.
pub async fn serve(dir: &Path, listen: Option<String>) -> Result<()> {
    // Both keys are checked before the database is touched.
    crate::audit::load_signing_key(&Config::load(dir)?)?;
    let (config, records) = open(dir).await?;
    let addr = listen.unwrap_or_else(|| config.server.listen.clone());
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    run_server(&config, dir, records, listener).await
}

/// Parse a lifetime such as `90d`, `12h` or `30m` into milliseconds.
pub fn parse_lifetime(s: &str) -> Result<i64> {
    let (num, unit) = s.trim().split_at(s.trim().len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| anyhow::anyhow!("lifetime must look like 90d, 12h or 30m"))?;
    let ms = match unit {
        "d" => n * 86_400_000,
        "h" => n * 3_600_000,
        "m" => n * 60_000,
        _ => bail!("lifetime must look like 90d, 12h or 30m"),
    };
    if n <= 0 || n > 400 * 86_400_000 / (ms / n).max(1) {
        bail!("lifetime must be positive and at most 400 days");
    }
    Ok(ms)
}

/// Open an instance's identity service (needs the key: usernames are sealed).
pub async fn open_identity(dir: &Path) -> Result<(Config, Arc<Records>, Identity)> {
    let (config, records) = open(dir).await?;
    let records = Arc::new(records);
    let identity = Identity::new(identity_services(&records), config.access.identity_settings());
    Ok((config, records, identity))
}

pub async fn token_create(dir: &Path, user: &str, scopes: &str, lifetime: &str, label: &str) -> Result<()> {
    let lifetime = parse_lifetime(lifetime)?;
    let (_, records, identity) = open_identity(dir).await?;
    let result = identity.create_api_token(user, label, scopes, lifetime).await;
    records.store().close().await;
    let (id, token) = result?;
    println!("{token}");
    eprintln!("Token {id} created for {user}. It is shown only this once; store it in the client's secret store.");
    eprintln!(
        "Use it as:  Authorization: Bearer <token>.  Revoke with: confidant token revoke --dir {} --id {id}",
        dir.display()
    );
    Ok(())
}

pub async fn token_list(dir: &Path) -> Result<()> {
    // Labels are sealed: listing them needs the key.
    let (_, records, identity) = open_identity(dir).await?;
    let tokens = identity.list_api_tokens().await;
    records.store().close().await;
    let tokens = tokens?;
    println!("{:<14} {:<8} {:<34} {:<26} {:<26} scopes / label", "id", "status", "user", "created", "expires");
    let now = now_millis();
    for info in tokens {
        let t = &info.token;
        let status = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        println!(
            "{:<14} {:<8} {:<34} {:<26} {:<26} {} / {}",
            t.id,
            status,
            t.user_id.as_deref().unwrap_or("-"),
            confidant_fhir::instant(t.created_at),
            t.expires_at.map(confidant_fhir::instant).unwrap_or_else(|| "-".into()),
            t.scopes.as_deref().unwrap_or("-"),
            info.label
        );
    }
    Ok(())
}

pub async fn token_revoke(dir: &Path, id: &str) -> Result<()> {
    let (_, store) = open_store(dir).await?;
    let revoked = store.revoke_api_token(id, now_millis()).await?;
    if revoked {
        let e = crate::audit::console_entry(confidant_audit::Action::TokenRevoke, id);
        let appended = confidant_audit::Auditor::start(store.clone()).append(&[e]).await;
        if let Err(e) = appended {
            store.close().await;
            bail!("token {id} is revoked, but the audit log could not record it: {e}");
        }
    }
    store.close().await;
    if !revoked {
        bail!("no active token has id {id}; see `confidant token list --dir {}`", dir.display());
    }
    println!("Token {id} revoked.");
    Ok(())
}
