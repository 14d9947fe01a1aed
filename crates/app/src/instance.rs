//! An instance's life cycle: init, open, serve — the one-way wiring of store,
//! records, identity, detector, checkpointer and HTTP server; and API tokens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use confidant_identity::Identity;
use confidant_policy::Role;
use confidant_records::Records;
use confidant_server::{AppState, HttpSettings};
use confidant_store::Store;
use confidant_vault::{KeyFile, Vault};

use crate::config::{self, Config, Database, KeyProvider, Keys, Server, SigningKeyProvider};
use crate::console::Console;
use crate::secrets::{new_passphrase, pkcs11_pin};

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

/// `confidant init`: a new instance in `dir`, its key file outside `dir`.
pub async fn init(console: &Console, dir: &Path, options: InitOptions) -> Result<Initialised> {
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
    let database = match database_url {
        Some(url) => Database::parse(&url)?,
        None => Database::embedded(),
    };
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
    let provider = match (&token, passphrase) {
        (Some(t), _) => KeyProvider::Pkcs11 { module: t.module.clone(), token: t.token.clone() },
        (None, true) => KeyProvider::Passphrase,
        (None, false) => KeyProvider::File,
    };
    let signing_provider = SigningKeyProvider::from(&provider);
    let config = Config {
        instance_id: instance_id.clone(),
        database,
        keys: Keys { provider, key_file: key_path.clone(), check_value, rotate_after_days: 365 },
        server: Server::default(),
        access: Default::default(),
        audit: config::Audit { signing_key_provider: Some(signing_provider), ..Default::default() },
        retention: Default::default(),
        detection: confidant_detect::Settings { honey_records, ..Default::default() },
        alerts: Default::default(),
        clinic: config::Clinic::for_this_machine(),
        metrics: Default::default(),
        logging: Default::default(),
        reminders: Default::default(),
        training: Default::default(),
        phishing: Default::default(),
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
    confidant_records::initialise(&store, &vault, &instance_id, console.now()).await?;
    let records = Arc::new(Records::open(store.clone(), vault, console.clock()).await?);
    let identity = Identity::new(identity_services(&records), config.identity_settings());
    let enrolment_code = identity.create_enrolment_code(Role::Admin).await?;
    // No honey record yet: `serve`'s keeper plants them among the patients the
    // clinic registers (`[detection] honey_records` per 100), as they are registered.
    // A first signed checkpoint: from its first minute, the log has a witness.
    let witness = confidant_audit::Witness::new(config.witness_path(&dir));
    let (mut checkpointer, _) =
        confidant_audit::Checkpointer::open(store.clone(), signer, &instance_id, witness).await?;
    checkpointer.checkpoint(console.now(), Some(records.auditor())).await?;
    store.close().await;
    config.save_new(&dir)?;
    Ok(Initialised { config, key_file: key_path, audit_public_key: hex::encode(audit_public_key), enrolment_code })
}

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

/// What opening a database from an older release may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Change nothing; say how to upgrade (every command but `serve`).
    Refuse,
    /// Make an encrypted backup, verify it, then upgrade (`serve`).
    BackupFirst,
    /// Upgrade without a backup: the admin made one (`serve --no-backup`).
    NoBackup,
}

/// Before the schema of `dir`'s database goes from `versions.0` to `versions.1`:
/// refuse, or make and verify the backup a failed upgrade would need.
async fn before_upgrade(
    console: &Console,
    dir: &Path,
    upgrade: Upgrade,
    (found, supported): (i64, i64),
    progress: &dyn crate::progress::Progress,
) -> Result<()> {
    match upgrade {
        Upgrade::Refuse => bail!(
            "the database's schema is version {found}, from an older release; this confidant uses version {supported}. \
             Run `confidant serve --dir {}` once: it makes a verified backup, then upgrades \
             (`serve --no-backup` after a backup of your own). Nothing was changed",
            dir.display()
        ),
        Upgrade::NoBackup => {
            progress
                .note(&format!("Upgrading the database schema {found} → {supported} without a backup (--no-backup)."));
            Ok(())
        }
        Upgrade::BackupFirst => {
            let stamp = confidant_fhir::instant(console.now()).replace([':', '-', '.'], "");
            let out = dir.join(format!("pre-upgrade-schema-{found}-to-{supported}-{stamp}.backup"));
            progress.note(&format!(
                "The database's schema is version {found}; this release uses {supported}. Backing up first: {}",
                out.display()
            ));
            crate::backup::create(console, dir, &out, progress)
                .await
                .context("the backup before the upgrade failed; nothing was upgraded")?;
            let keys = crate::backup::BackupKeys { backup_key: None, public_key: None, dir: Some(dir.to_path_buf()) };
            crate::backup::verify(console, &out, &keys, progress)
                .await
                .context("the backup before the upgrade does not verify; nothing was upgraded")?;
            progress.note(&format!("Backup verified ({}); upgrading the schema {found} → {supported}.", out.display()));
            Ok(())
        }
    }
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

/// An opened instance: its directory and configuration, and the records and
/// identity services over its store. The wiring goes one way — store, vault,
/// records, identity, then (to serve) the detector, the checkpointer and the
/// HTTP server — and nothing below calls back up.
pub struct Instance {
    pub dir: PathBuf,
    pub config: Config,
    pub records: Arc<Records>,
    /// Identity as the console uses it (the server makes its own, with passkeys).
    pub identity: Arc<Identity>,
}

impl Instance {
    /// Open the instance in `dir`: the key is checked first, then the
    /// database (its schema brought up to date, its instance id checked).
    pub async fn open(console: &Console, dir: &Path) -> Result<Instance> {
        Self::open_upgrading(console, dir, Upgrade::Refuse, &crate::progress::Quiet).await
    }

    /// [`Instance::open`], bringing a database from an older release up to
    /// this one's schema as `upgrade` says: after a verified backup (SQLite),
    /// or without one when the admin says so; [`Upgrade::Refuse`] changes nothing.
    pub async fn open_upgrading(
        console: &Console,
        dir: &Path,
        upgrade: Upgrade,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Instance> {
        let config = Config::load(dir)?;
        let key = crate::keys::load_key(&config)?;
        let (_, store) = open_store(dir).await?;
        let (found, supported) = store.schema_versions().await.context("cannot read the database's schema version")?;
        if found > 0 && found < supported {
            if let Err(e) = before_upgrade(console, dir, upgrade, (found, supported), progress).await {
                store.close().await;
                return Err(e);
            }
            tracing::warn!(from = found, to = supported, backup = ?upgrade, "upgrading the database schema");
        }
        store.migrate().await.context("cannot bring the database schema up to date")?;
        match confidant_records::instance_id(&store).await? {
            Some(id) if id == config.instance_id => {}
            Some(_) => bail!("the database belongs to another instance than {}", Config::path(dir).display()),
            None => bail!("the database was never initialised; run `confidant init`"),
        }
        let records = match Records::open(store.clone(), Vault::new(key), console.clock()).await {
            Ok(records) => records,
            Err(e) => {
                store.close().await;
                return Err(anyhow::Error::new(e).context("cannot open the records; nothing was changed"));
            }
        };
        // Rows from before migration 9 are sealed now that the key is at hand.
        if let Err(e) = confidant_identity::seal_plaintext_links(records.store(), records.keyring()).await {
            store.close().await;
            return Err(anyhow::Error::new(e).context("cannot seal account links and token labels"));
        }
        // Names stored before prefix search get their prefix tokens (once).
        if let Err(e) = records.reindex_names().await {
            store.close().await;
            return Err(anyhow::Error::new(e).context("cannot index the names of existing records"));
        }
        let records = Arc::new(records);
        let phishing = match config.phishing.settings() {
            Ok(p) => p,
            Err(e) => {
                store.close().await;
                return Err(e.context(format!("in [phishing] of {}", Config::path(dir).display())));
            }
        };
        let identity =
            Arc::new(Identity::new(identity_services(&records), config.identity_settings()).with_phishing(phishing));
        // A release with new versions of the built-in training modules brings them in.
        if let Err(e) = crate::training::bring_in_built_in(&identity).await {
            store.close().await;
            return Err(e);
        }
        Ok(Instance { dir: dir.to_path_buf(), config, records, identity })
    }

    /// Serve over HTTP until Ctrl-C or SIGTERM; `ready` is called with the
    /// address once it serves (after the start-up checks).
    pub async fn serve(
        self,
        console: &Console,
        listener: tokio::net::TcpListener,
        ready: impl FnOnce(&str),
    ) -> Result<()> {
        // The signal handlers are in place before `ready` announces the server.
        let shutdown = shutdown_signal();
        self.serve_until(console, listener, shutdown, ready).await
    }

    /// Serve over HTTP (or HTTPS, with `server.tls_cert_file`) until `shutdown`
    /// completes; `ready` is called with the URL it listens on (`https://addr`
    /// or `http://addr`) once it serves, after the start-up checks.
    pub async fn serve_until(
        self,
        console: &Console,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        ready: impl FnOnce(&str),
    ) -> Result<()> {
        let Instance { dir, config, records, identity: _ } = self;
        let (config, dir) = (&config, dir.as_path());
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
        let records = Arc::new(records.with_subscriber(detector.clone()));
        let checkpointer =
            crate::audit::start_checkpointer(console, config, dir, records.store().clone(), &auditor, &detector)
                .await?;
        let (stop_checkpoints, stopped) = tokio::sync::watch::channel(false);
        let interval = std::time::Duration::from_secs(config.audit.checkpoint_interval_seconds.max(1));
        let webhook = config.audit.witness_webhook.as_deref().map(crate::audit::Webhook::new).transpose()?;
        let checkpoints = tokio::spawn(crate::audit::run_checkpoints(
            console.clone(),
            checkpointer.clone(),
            auditor,
            detector.clone(),
            interval,
            webhook,
            stopped,
        ));
        let tls = config.server.tls_files()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = config.server.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
        let sinks = confidant_detect::sinks::spawn(
            records.store().clone(),
            &config.alerts,
            &config.instance_id,
            detector.wake(),
            console.clock(),
        )
        .map_err(|e| anyhow::anyhow!("{e} (in [alerts] of {})", Config::path(dir).display()))?;
        // Appointment reminders, every `[reminders] interval_seconds`, when enabled.
        let reminders = if config.reminders.enabled {
            let out = crate::reminders::Outbound::new(config)
                .with_context(|| format!("in [reminders] of {}", Config::path(dir).display()))?;
            let every = std::time::Duration::from_secs(config.reminders.interval_seconds.max(10));
            Some(crate::reminders::spawn(records.clone(), out, every))
        } else {
            None
        };
        let settings = confidant_identity::Settings {
            passkey_site: config.server.public_url.clone(),
            ..config.identity_settings()
        };
        let identity = Arc::new(Identity::new(identity_services(&records), settings).with_phishing(
            config.phishing.settings().with_context(|| format!("in [phishing] of {}", Config::path(dir).display()))?,
        ));
        // The honey keeper replays some of the clinic's visits on honey records (`honey`).
        let keeper = if config.detection.honey_records > 0 {
            let keeper = crate::honey::Keeper::new(&records, config.detection.honey_records, Some(detector.clone()))
                .await
                .context("cannot start the honey keeper")?;
            Some(crate::honey::spawn(keeper, std::time::Duration::from_secs(crate::honey::STEP_SECONDS)))
        } else {
            None
        };
        // Phishing drill mails, every `[phishing] interval_seconds`, when enabled.
        let drills = if config.phishing.enabled {
            let out = crate::phishing::Outbound::new(config)
                .with_context(|| format!("in [phishing] of {}", Config::path(dir).display()))?;
            let every = std::time::Duration::from_secs(config.phishing.interval_seconds.max(10));
            Some(crate::phishing::spawn(identity.clone(), out, every))
        } else {
            None
        };
        // The admin's posture page runs `confidant doctor`'s checks against this running instance.
        let posture = confidant_server::Posture::new(crate::doctor::Running {
            console: console.clone(),
            config: config.clone(),
            dir: dir.to_path_buf(),
            records: records.clone(),
            identity: identity.clone(),
        });
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
            clinic: config.clinic.settings()?,
            metrics: Arc::new(confidant_server::metrics::HttpMetrics::default()),
        };
        let http_metrics = state.metrics.clone();
        let router = confidant_server::router(state, &HttpSettings { max_body_bytes: config.server.max_body_bytes });
        // A certificate that cannot be used stops the start, before anything is announced.
        let tls_config = tls.as_ref().map(confidant_server::tls::server_config).transpose().map_err(|e| {
            anyhow::anyhow!("{e} (server.tls_cert_file / tls_key_file in {})", Config::path(dir).display())
        })?;
        // One shutdown for every listener.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let stopped_by = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let redirect = match (&tls, &config.server.redirect_http_listen) {
            (Some(_), Some(at)) => {
                let plain = tokio::net::TcpListener::bind(at.as_str())
                    .await
                    .with_context(|| format!("cannot listen on {at} (server.redirect_http_listen)"))?;
                let to = base_url.clone();
                tracing::info!(addr = %plain.local_addr()?, to = %to, "redirecting plain HTTP to HTTPS");
                Some(tokio::spawn(confidant_server::serve_redirect(plain, to, stopped_by(stopping.clone()))))
            }
            _ => None,
        };
        let metrics = match &config.metrics.listen {
            Some(at) => {
                let token = config.metrics.token()?;
                let plain = tokio::net::TcpListener::bind(at.as_str())
                    .await
                    .with_context(|| format!("cannot listen on {at} (metrics.listen)"))?;
                tracing::info!(addr = %plain.local_addr()?, token = token.is_some(), "serving /metrics");
                let source = Arc::new(crate::metrics::Source { records: records.clone(), detector: detector.clone() });
                let router = confidant_server::metrics::router(http_metrics, source, token);
                Some(tokio::spawn(confidant_server::metrics::serve(plain, router, stopped_by(stopping.clone()))))
            }
            None => None,
        };
        ready(&format!("{scheme}://{addr}"));
        tracing::info!(%addr, backend = records.store().backend_name(), tls = tls.is_some(), "serving");
        match tls_config {
            Some(tls_config) => {
                let listener = confidant_server::tls::TlsListener::new(listener, tls_config)?;
                confidant_server::serve_tls(listener, router, stopped_by(stopping)).await?;
            }
            None => confidant_server::serve(listener, router, stopped_by(stopping)).await?,
        }
        for listener in [redirect, metrics].into_iter().flatten() {
            let _ = listener.await;
        }
        // A last checkpoint covers everything this node appended.
        let _ = stop_checkpoints.send(true);
        let _ = checkpoints.await;
        // Undelivered alerts stay queued in the database for the next start.
        for s in sinks {
            s.abort();
        }
        if let Some(r) = reminders {
            r.abort();
        }
        if let Some(d) = drills {
            d.abort();
        }
        if let Some(k) = keeper {
            k.abort();
        }
        tracing::info!("stopped; closing the database");
        records.store().close().await;
        Ok(())
    }
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

/// `confidant serve`: `ready` is called with the address once it serves.
pub async fn serve(
    console: &Console,
    dir: &Path,
    listen: Option<String>,
    upgrade: Upgrade,
    progress: &dyn crate::progress::Progress,
    ready: impl FnOnce(&str),
) -> Result<()> {
    // Both keys are checked before the database is touched.
    crate::audit::load_signing_key(&Config::load(dir)?)?;
    let instance = Instance::open_upgrading(console, dir, upgrade, progress).await?;
    let addr = listen.unwrap_or_else(|| instance.config.server.listen.clone());
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    instance.serve(console, listener, ready).await
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

/// What `token create` is asked for.
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    /// Username or user id the token acts as.
    pub user: &'a str,
    /// Space-separated SMART-style scopes.
    pub scopes: &'a str,
    /// `90d`, `12h` or `30m`.
    pub lifetime: &'a str,
    pub label: &'a str,
}

/// A new API token: its id and the token itself (shown once; only its hash is stored).
pub async fn token_create(console: &Console, dir: &Path, new: NewToken<'_>) -> Result<(String, String)> {
    let lifetime = parse_lifetime(new.lifetime)?;
    let Instance { records, identity, .. } = Instance::open(console, dir).await?;
    let result = identity.create_api_token(new.user, new.label, new.scopes, lifetime).await;
    records.store().close().await;
    Ok(result?)
}

/// One API token as `token list` shows it.
#[derive(Debug)]
pub struct TokenLine {
    pub id: String,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    pub user_id: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub scopes: Option<String>,
    pub label: String,
}

/// Every API token (needs the key: labels are stored sealed).
pub async fn token_list(console: &Console, dir: &Path) -> Result<Vec<TokenLine>> {
    let Instance { records, identity, .. } = Instance::open(console, dir).await?;
    let tokens = identity.list_api_tokens().await;
    records.store().close().await;
    let now = console.now();
    Ok(tokens?
        .into_iter()
        .map(|info| {
            let t = info.token;
            let status = if t.revoked_at.is_some() {
                "revoked"
            } else if t.expires_at.is_some_and(|e| e <= now) {
                "expired"
            } else {
                "active"
            };
            TokenLine {
                id: t.id,
                status,
                user_id: t.user_id,
                created_at: t.created_at,
                expires_at: t.expires_at,
                scopes: t.scopes,
                label: info.label,
            }
        })
        .collect())
}

/// Revoke an API token; audited.
pub async fn token_revoke(console: &Console, dir: &Path, id: &str) -> Result<()> {
    let (_, store) = open_store(dir).await?;
    // The revocation and its entry commit together.
    let e = console.entry(confidant_audit::Action::TokenRevoke, id);
    let mut changes = store.audited().await?;
    let revoked = changes.revoke_api_token(id, console.now()).await?;
    // Not revoked: dropped, so nothing changes (and the store can close).
    let committed = if revoked {
        changes.commit(&[e.to_row()]).await
    } else {
        drop(changes);
        Ok(())
    };
    store.close().await;
    committed.context("the audit log could not record the revocation, so the token was not revoked")?;
    if !revoked {
        bail!("no active token has id {id}; see `confidant token list --dir {}`", dir.display());
    }
    Ok(())
}
