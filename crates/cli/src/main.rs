//! `confidant`: the clinic's command line. Thin by design: it parses
//! arguments (this file), calls the application crate (`confidant-app`),
//! and prints what it returns; progress is drawn by `progress`.
//!
//! Over 600 lines because it is the admin's manual: every subcommand's
//! arguments with the `///` doc that is its `--help`, then one dispatch.
#![forbid(unsafe_code)]

mod audit;
mod backup;
mod demo;
mod instance;
mod keys;
mod patient;
mod progress;
mod report;
mod users;
// `confidant import` (issue 19).
mod import;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use confidant_app::Console;
use confidant_app::incident::Window;
use confidant_app::instance::{InitOptions, NewToken, TokenChoice};
use confidant_app::{audit as app_audit, backup as app_backup, patient as app_patient};

use crate::report::{Format, IncidentFormat};

/// Confidant: clinical records for psychotherapy practices, encrypted at rest.
#[derive(Debug, Parser)]
#[command(name = "confidant", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a throwaway instance with synthetic patients, and serve it.
    ///
    /// Everything lives in a temporary folder that is deleted when you press
    /// Ctrl-C. Prints the URL and an API token. Never use it for real patients.
    Demo {
        /// Address to listen on (a free port is chosen if this one is taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Create a new instance in DIR: configuration, database and keys.
    ///
    /// The key-encryption key is written to a key file OUTSIDE DIR (mode 0600),
    /// by default ~/.config/confidant/keys/<instance>.kek. Without that file the
    /// data cannot be read: back it up, apart from the data. An existing key
    /// file is never overwritten.
    Init {
        /// The instance directory (created if missing; must not hold an instance).
        #[arg(long)]
        dir: PathBuf,
        /// Where to create the key file (must be outside DIR and not exist yet).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Seal the key file with a passphrase (argon2id): every command that needs
        /// the key then asks for it. It is read from the CONFIDANT_PASSPHRASE
        /// environment variable, from the file descriptor in CONFIDANT_PASSPHRASE_FD,
        /// or from a prompt — never from the command line.
        #[arg(long, conflicts_with = "pkcs11_module")]
        passphrase: bool,
        /// Keep the key-encryption key in a PKCS#11 token (an HSM) instead of a file:
        /// the module to load, e.g. /usr/lib/softhsm/libsofthsm2.so. The key is made
        /// inside the token and never leaves it. The PIN is read from
        /// CONFIDANT_PKCS11_PIN, from the descriptor in CONFIDANT_PKCS11_PIN_FD, or a prompt.
        #[arg(long, requires = "pkcs11_token")]
        pkcs11_module: Option<PathBuf>,
        /// The label of the token to use (with --pkcs11-module).
        #[arg(long, requires = "pkcs11_module")]
        pkcs11_token: Option<String>,
        /// Use PostgreSQL instead of the embedded SQLite (postgres://user@host/db).
        #[arg(long)]
        database_url: Option<String>,
        /// Honey records per 100 patients registered: synthetic patients that
        /// nobody has a reason to open; any touch raises a critical alert. None
        /// is planted now: `serve` registers each one right after a clinician
        /// registers a real patient, as that clinician, and replays some of
        /// the clinic's visits on them. What still tells them apart in a copy
        /// of the database is in docs/security.md (S1). 0 plants none.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
        honey_records: u32,
    },
    /// Serve the instance in DIR over HTTP, as configured in DIR/confidant.toml.
    ///
    /// Refuses to start, changing nothing, if the key file is missing or is not
    /// this instance's key. Stops cleanly on Ctrl-C or SIGTERM.
    Serve {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on, overriding the configuration (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// A database from an older release is upgraded after an encrypted backup
        /// (DIR/pre-upgrade-*.backup) has been made and verified. With this flag it is
        /// upgraded without one: only after a backup of your own (PostgreSQL: pg_dump)
        #[arg(long)]
        no_backup: bool,
    },
    /// Staff and patient accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// API tokens for integrations: per user, scoped, expiring, revocable.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The tamper-evident audit log: verify it, prove entries, export it.
    ///
    /// Every access to patient data and every security event is an entry of an
    /// append-only Merkle tree (RFC 6962). The server signs its head (a
    /// checkpoint) every N entries or T seconds and appends it to the witness
    /// file; `verify` recomputes the tree and checks it against them.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Review this instance's security posture: each check with its severity,
    /// evidence and fix.
    ///
    /// Checks TLS, where the keys live and who can read them, key age, the
    /// audit witness, second factors, unused accounts, API tokens without
    /// expiry, backups, file permissions, the database connection, honey
    /// records, alert delivery and debug logging. Exits non-zero on any high
    /// finding: run it from cron or a monitor.
    Doctor {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Simulate a breach against a private copy of this instance and report,
    /// step by step, what an attacker got and whether Confidant blocked and
    /// detected it.
    ///
    /// Steps: another local user reading the files; a password without the
    /// second factor; another clinician's patient; a bulk read with a stolen
    /// session (expect a lock and an alert); a honey record (expect an alert);
    /// hostile input to the API; the data folder and a backup searched for the
    /// plaintext of sample records (expect nothing); an edited audit entry
    /// (expect `audit verify` to fail). Real data is never touched: the drill
    /// works on a snapshot in a private temporary folder and deletes it (on
    /// PostgreSQL: one consistent snapshot of every table, copied into a SQLite
    /// file there; the live database is only read). Exits non-zero if a step fails.
    Drill {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Honey records: synthetic patients that nobody should open.
    Honey {
        #[command(subcommand)]
        action: HoneyAction,
    },
    /// Incident response: who was affected, and stopping an account.
    Incident {
        #[command(subcommand)]
        action: IncidentAction,
    },
    /// Erasing a patient (crypto-shredding) and legal holds.
    Patient {
        #[command(subcommand)]
        action: PatientAction,
    },
    /// Encrypted, signed backups: create, verify, restore.
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
    /// The retention policy: erase patients whose records have expired.
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// The key-encryption key: its versions, and rotation to a new one.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Appointment reminders to patients (e-mail, SMS webhook), as configured in [reminders].
    Reminders {
        #[command(subcommand)]
        action: RemindersAction,
    },
    /// Staff security training: bring in a new module pack (docs/training.md).
    Training {
        #[command(subcommand)]
        action: TrainingAction,
    },
    /// Phishing drills for staff: drill mails, their addresses, campaigns and sending ([phishing]).
    Phishing {
        #[command(subcommand)]
        action: PhishingAction,
    },
    /// Import records: FHIR Bundles, NDJSON, CSV of patients or appointments.
    ///
    /// What each FILE holds, by its name:
    ///   *.json    a FHIR Bundle (transaction, collection, searchset or batch: what a FHIR
    ///             search exports), or one resource
    ///   *.ndjson  one resource per line
    ///   *.csv     patients, with the header line
    ///               identifier_system,identifier_value,family,given,birth_date,gender,phone,email
    ///             or appointments, with the header line
    ///               patient_identifier,practitioner,start,end,status
    ///             (patient_identifier: system|value of a patient in this import or stored;
    ///             practitioner: a Practitioner id, see `user list`; start, end: instants
    ///             such as 2027-03-01T09:00:00Z; status: empty for booked)
    ///
    /// All the files of one import are written in ONE transaction: everything or nothing.
    /// Every record is checked first; each line or entry refused is listed (file, line or
    /// entry, why; never its content) and nothing is written. Exported ids and references are
    /// mapped to the new ids; a patient whose identifier is already stored is found, not
    /// created again.
    ///
    /// The import acts as the staff account named by --as, with its rights (a clinician's
    /// patients go on their care team; notes are theirs), from the console; every record is
    /// audited. Run it with --dry-run first: that checks everything and writes nothing.
    #[command(verbatim_doc_comment)]
    Import {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The staff account the import acts as (username): a clinician or reception.
        #[arg(long = "as", value_name = "USERNAME")]
        as_user: String,
        /// Check everything and print what would be created; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The files to import (one transaction for all of them).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TrainingAction {
    /// Import a training module pack: a TOML file of modules (pages in English
    /// and Finnish, questions, a pass mark), with its pages (`page_file`)
    /// next to it. The built-in pack, `training/pack.toml` in Confidant's
    /// source, is the example to start from.
    ///
    /// The whole pack is checked before anything changes: one bad module
    /// refuses all of it, with the module and field named. A module new to
    /// the clinic is added; a module with a higher `version` replaces the old
    /// one, and everyone who passed the old version is asked to complete the
    /// new one (within [training] grace_days). A module whose content changed
    /// but whose version did not is refused: raise its version. Audited.
    /// Safe to run while `serve` runs.
    Import {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The pack file (e.g. clinic-training/pack.toml).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PhishingAction {
    /// Set a staff member's e-mail address for drill mails (stored sealed) and
    /// the language of their mails.
    Email {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The username (or user id).
        #[arg(long)]
        user: String,
        /// Their e-mail address.
        #[arg(long)]
        email: String,
        /// `fi` or `en` (default: [phishing] default_language).
        #[arg(long)]
        language: Option<String>,
    },
    /// Make a drill campaign: each targeted staff member with an e-mail address
    /// gets one of the templates at a random time between the start and the
    /// start plus the spread. Templates: password-reset, kanta-message,
    /// invoice, patient-complaint, shared-document.
    Campaign {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Template keys, comma-separated.
        #[arg(long)]
        templates: String,
        /// Everyone in these roles, comma-separated (clinician, reception, admin, auditor).
        #[arg(long, default_value = "")]
        roles: String,
        /// These users (usernames), comma-separated.
        #[arg(long, default_value = "")]
        users: String,
        /// When sending may begin: an RFC 3339 time (2026-12-07T08:00:00+02:00), or `now`.
        #[arg(long, default_value = "now")]
        start: String,
        /// Spread the mails over this many hours.
        #[arg(long, default_value_t = 8)]
        spread_hours: i64,
    },
    /// Send the drill mails due (through the SMTP server of [alerts]); `serve`
    /// also sends them every [phishing] interval_seconds. Safe to run while it does.
    Send {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Send the mails due by this RFC 3339 time instead of now (to send a
        /// drill early, or in tests).
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RemindersAction {
    /// Send the reminders due now: booked appointments starting within
    /// [reminders] lead_hours that have had none. Each is sent once; safe to run
    /// from cron while `serve` also sends them. Prints what was sent.
    Send {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PatientAction {
    /// Set a legal hold: the patient cannot be erased until it is released.
    Hold {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The Patient id.
        #[arg(long)]
        id: String,
    },
    /// Lift a legal hold.
    Release {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The Patient id.
        #[arg(long)]
        id: String,
    },
    /// Ask for a patient's erasure; prints an approval code for a second person (valid 24 h).
    EraseRequest {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The Patient id.
        #[arg(long)]
        id: String,
        /// Your name (the approver must be someone else).
        #[arg(long)]
        requested_by: String,
        /// Why (stored sealed; write no clinical details).
        #[arg(long)]
        reason: String,
    },
    /// Erase a patient for good: their data keys are destroyed and their records deleted.
    ///
    /// Needs a second person's approval code (from `erase-request`), or --force
    /// with a --reason. Refused while a legal hold is set. The audit log keeps its
    /// entries about the patient (ids only). Older backups still hold the records,
    /// sealed under the destroyed keys: see docs/security.md, "Erasure".
    Erase {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The Patient id.
        #[arg(long)]
        id: String,
        /// The approval code printed by `erase-request`.
        #[arg(long, requires = "approved_by", conflicts_with = "force")]
        approval: Option<String>,
        /// The approver's name (not the requester's).
        #[arg(long)]
        approved_by: Option<String>,
        /// Erase without a second person's approval; needs --reason, which is audited.
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why (stored sealed; write no clinical details).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct BackupKeyArgs {
    /// The instance whose keys open the backup (its backup key and audit key).
    #[arg(long = "keys-from")]
    keys_from: Option<PathBuf>,
    /// The backup key file, instead of --keys-from.
    #[arg(long)]
    backup_key: Option<PathBuf>,
    /// The audit public key (hex, as `init` printed it), instead of --keys-from.
    #[arg(long)]
    public_key: Option<String>,
}

impl BackupKeyArgs {
    fn keys(self) -> app_backup::BackupKeys {
        app_backup::BackupKeys { backup_key: self.backup_key, public_key: self.public_key, dir: self.keys_from }
    }
}

#[derive(Debug, Subcommand)]
enum BackupAction {
    /// Write a backup of the instance in DIR to a new file, while it serves.
    ///
    /// A consistent snapshot — SQLite: the file (VACUUM INTO); PostgreSQL: every
    /// table read in one REPEATABLE READ transaction — sealed whole with the backup
    /// key (AES-256-GCM; created beside the key file on first use — keep it apart
    /// from the backups) and signed with the audit key. The records inside stay
    /// sealed under their own data keys too.
    Create {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The backup file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a backup's signature, seal and database without restoring it.
    Verify {
        /// The backup file.
        file: PathBuf,
        #[command(flatten)]
        keys: BackupKeyArgs,
    },
    /// Restore a backup into a new instance directory, after verifying it.
    ///
    /// The database goes into a new SQLite file in DIR, or with --database-url into
    /// an EMPTY PostgreSQL database you created (one holding any table is
    /// refused; nothing is ever dropped). Either backend's backup restores into
    /// either. The restored audit log is verified before it says it is done.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new instance directory (must not hold an instance).
        #[arg(long)]
        dir: PathBuf,
        /// Restore into this empty database (postgres://…) instead of DIR/confidant.db.
        #[arg(long)]
        database_url: Option<String>,
        #[command(flatten)]
        keys: BackupKeyArgs,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionAction {
    /// Erase every patient whose last encounter is older than the policy in
    /// confidant.toml ([retention] years_after_last_encounter), except those on
    /// legal hold. Try --dry-run first: it lists them and changes nothing.
    Run {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Only list what would be erased.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum HoneyAction {
    /// Plant honey records now, for drills and tests (`serve` plants them by itself).
    ///
    /// Synthetic patients, each registered by a clinician of the clinic (chosen
    /// at random) in their care, with a session, a psychotherapy note and an
    /// appointment; the list of which they are is sealed. Any touch raises a
    /// critical alert. `serve` plants them as the clinic registers patients;
    /// planted together, these share their time and stand out in a copy of
    /// the database. Needs a clinician. Safe while `serve` runs.
    Plant {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// How many.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        count: u32,
    },
}

#[derive(Debug, Subcommand)]
enum IncidentAction {
    /// From the audit log: every patient whose records were touched, by whom,
    /// when and how often — the list a GDPR Art. 33/34 notification needs.
    ///
    /// Narrow it to a time window and one account. Lists patient ids (look each
    /// up in Confidant to reach the person); honey records are marked.
    /// Written to stdout; the report is itself recorded in the audit log.
    Report {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// From this date or instant (2026-11-30, or 2026-11-30T14:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Up to this date (the whole day) or instant.
        #[arg(long)]
        to: Option<String>,
        /// Only this account (username or user id).
        #[arg(long, value_name = "USER")]
        actor: Option<String>,
        /// json or csv.
        #[arg(long, value_enum, default_value = "json")]
        format: IncidentFormat,
    },
    /// Stop an account at once: end all its sessions and API tokens and
    /// disable it. Recorded in the audit log. `user enable` undoes it.
    Contain {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The account (username or user id).
        #[arg(long, value_name = "USER")]
        actor: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Show the key provider, each key version, and how many data keys it wraps.
    Status {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Rotate the key-encryption key: add a new version to the key file and
    /// re-wrap every data key under it.
    ///
    /// Safe while `confidant serve` runs (it picks up the new version); safe to
    /// interrupt: run it again and it resumes. Records are not re-encrypted —
    /// their data keys do not change, only how those are wrapped. Back up the
    /// key file afterwards: it holds the new version.
    ///
    /// With --patient, rotates that patient's data key instead: every version
    /// of their records is re-encrypted under a new data key and the old one is
    /// destroyed, in one transaction (use it when a patient's key may have been
    /// exposed). Safe while `confidant serve` runs.
    Rotate {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Rotate this patient's data key (a Patient id) instead of the key-encryption key.
        #[arg(long, value_name = "ID")]
        patient: Option<String>,
    },
    /// Remove an old key version that no data key is wrapped under any more.
    ///
    /// Afterwards, backups made while that version was in use cannot be opened
    /// with the current key: retiring after a rotation is how old backups (and
    /// erased patients in them) become unreadable. The current version cannot be retired.
    Retire {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The version to retire (see `confidant keys status`).
        #[arg(long)]
        version: u32,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Check the whole log against the signed checkpoints in the witness file.
    ///
    /// Detects edited, deleted, inserted, reordered and truncated entries, and
    /// forged checkpoints. Exits non-zero naming the first bad entry. Needs no
    /// data key; the public key comes from the audit signing key file, or from
    /// --public-key (the value `confidant init` printed) on another machine.
    Verify {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The witness file (default: audit.witness_file of the configuration).
        #[arg(long)]
        witness: Option<PathBuf>,
        /// The audit public key in hex, instead of reading the signing key file.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print an inclusion proof (--seq) or a consistency proof (--from) as JSON.
    ///
    /// Proofs follow RFC 9162: an inclusion proof shows entry SEQ is in the tree
    /// of SIZE entries whose root a checkpoint signed; a consistency proof shows
    /// the tree of FROM entries is a prefix of the tree of TO entries.
    Proof {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The entry (sequence number, from 1) to prove included.
        #[arg(long, conflicts_with = "from")]
        seq: Option<u64>,
        /// Tree size for the inclusion proof (default: the latest checkpoint's).
        #[arg(long, requires = "seq")]
        size: Option<u64>,
        /// The smaller tree size of a consistency proof.
        #[arg(long)]
        from: Option<u64>,
        /// The larger tree size (default: the latest checkpoint's).
        #[arg(long, requires = "from")]
        to: Option<u64>,
    },
    /// Write every entry as one JSON line to stdout (for a SIEM). The export is itself audited.
    Export {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Only entries after this sequence number (to continue an earlier export).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
    /// Sign a checkpoint now and append it to the witness (a running server does this by itself).
    Checkpoint {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Add an account. The password is read from a prompt, or from stdin with
    /// --password-stdin; never from the command line.
    Add {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        username: String,
        /// What the account may do (docs/admin.md, "Who may do what").
        #[arg(long, value_enum)]
        role: users::RoleArg,
        /// For a clinician without --practitioner: their name, to create their Practitioner record.
        #[arg(long)]
        name: Option<String>,
        /// For a clinician: the id of their Practitioner record.
        #[arg(long)]
        practitioner: Option<String>,
        /// For a patient: the id of their Patient record.
        #[arg(long)]
        patient: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts: role, second factor, status (active, locked, disabled).
    List {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Disable an account; its sessions and tokens end at once.
    Disable {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Username or user id.
        #[arg(long)]
        user: String,
    },
    /// Re-enable a disabled account.
    Enable {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        user: String,
    },
    /// Remove a user's second factor (lost phone) and end their sessions; prints a one-time code
    /// to give them, with which (and their password) they enrol a new one at next login.
    ResetMfa {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        user: String,
    },
    /// Lift a lockout after repeated failed logins.
    Unlock {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Username.
        #[arg(long)]
        user: String,
    },
    /// Put a clinician in training under a supervisor (another clinician): the
    /// notes they sign then wait for the supervisor's co-signature. `--none` ends it.
    Supervise {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The clinician in training (username or user id).
        #[arg(long)]
        user: String,
        /// Their supervisor (username or user id).
        #[arg(long, required_unless_present = "none", conflicts_with = "none")]
        supervisor: Option<String>,
        /// End the supervision.
        #[arg(long)]
        none: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token for a user and print it once. Only its hash is stored.
    ///
    /// The token can do no more than the user's role allows, narrowed by its
    /// scopes (SMART on FHIR style: user/Patient.read, user/Encounter.write,
    /// user/*.read, user/*.*), and it expires.
    Create {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Username or user id the token acts as.
        #[arg(long)]
        user: String,
        /// Space-separated scopes, e.g. "user/Patient.read user/Encounter.read".
        #[arg(long)]
        scope: String,
        /// Lifetime: 90d, 12h or 30m (at most 400 days).
        #[arg(long, default_value = "90d")]
        expires_in: String,
        /// A note on what the token is for (e.g. the integrating system's name).
        #[arg(long, default_value = "api")]
        label: String,
    },
    /// List tokens (ids, users, scopes, dates, labels; never the tokens themselves).
    ///
    /// Needs the key: labels are stored sealed.
    List {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Revoke a token by its id (from `token list`); it stops working at once.
    Revoke {
        /// The instance directory (holds confidant.toml).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: String,
    },
}

/// The log goes to standard error, as text or (`[logging] format = "json"`, or
/// `CONFIDANT_LOGGING__FORMAT=json`) as one JSON object a line for a SIEM.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CONFIDANT_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match log_format() {
        confidant_app::config::LogFormat::Json => builder.json().flatten_event(true).init(),
        confidant_app::config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The log's format before anything is logged: the environment's override,
/// else the `[logging]` section of the instance the command names (`--dir`).
fn log_format() -> confidant_app::config::LogFormat {
    use confidant_app::config::{Config, LogFormat};
    match std::env::var("CONFIDANT_LOGGING__FORMAT").ok().as_deref().map(str::trim) {
        Some("json") => return LogFormat::Json,
        Some("text") => return LogFormat::Text,
        _ => {}
    }
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .windows(2)
        .find(|w| w[0] == "--dir")
        .map(|w| w[1].clone())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--dir=").map(str::to_owned)));
    dir.and_then(|d| Config::load(std::path::Path::new(&d)).ok()).map(|c| c.logging.format).unwrap_or_default()
}

/// Panics print where, never what: a payload could carry data (DESIGN.md §11.1).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("confidant: internal error at {at}; please report it (no record content was printed)");
    }));
}

/// Parse the command line. A value a `--format` or `--role` does not accept
/// fails with exit code 1, as it did before they were checked by clap (every
/// other usage error keeps clap's 2).
fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::{ContextKind, ContextValue, ErrorKind};
            let ours = e.kind() == ErrorKind::InvalidValue
                && matches!(e.get(ContextKind::InvalidArg), Some(ContextValue::String(a))
                    if a.starts_with("--format") || a.starts_with("--role"));
            if ours {
                let _ = e.print();
                std::process::exit(1);
            }
            e.exit()
        }
    }
}

fn main() -> ExitCode {
    install_panic_hook();
    let cli = parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The one system clock: everything the console does is stamped with it.
    let console = &Console::default();
    let result = rt.block_on(async {
        match cli.command {
            Command::Demo { listen } => demo::run(console, &listen).await,
            Command::Init { dir, key_file, database_url, passphrase, pkcs11_module, pkcs11_token, honey_records } => {
                let token = pkcs11_module.zip(pkcs11_token).map(|(module, token)| TokenChoice { module, token });
                let options = InitOptions { key_file, database_url, passphrase, token, honey_records };
                instance::init(console, &dir, options).await
            }
            Command::Serve { dir, listen, no_backup } => instance::serve(console, &dir, listen, no_backup).await,
            Command::User { action } => match action {
                UserAction::Add { dir, username, role, name, practitioner, patient, password_stdin } => {
                    users::add(
                        console,
                        &dir,
                        &username,
                        role,
                        name.as_deref(),
                        practitioner.as_deref(),
                        patient.as_deref(),
                        password_stdin,
                    )
                    .await
                }
                UserAction::List { dir } => users::list(console, &dir).await,
                UserAction::Disable { dir, user } => users::change(console, &dir, &user, users::Change::Disable).await,
                UserAction::Enable { dir, user } => users::change(console, &dir, &user, users::Change::Enable).await,
                UserAction::ResetMfa { dir, user } => {
                    users::change(console, &dir, &user, users::Change::ResetMfa).await
                }
                UserAction::Unlock { dir, user } => users::change(console, &dir, &user, users::Change::Unlock).await,
                UserAction::Supervise { dir, user, supervisor, none: _ } => {
                    users::supervise(console, &dir, &user, supervisor.as_deref()).await
                }
            },
            Command::Token { action } => match action {
                TokenAction::Create { dir, user, scope, expires_in, label } => {
                    let new = NewToken { user: &user, scopes: &scope, lifetime: &expires_in, label: &label };
                    instance::token_create(console, &dir, new).await
                }
                TokenAction::List { dir } => instance::token_list(console, &dir).await,
                TokenAction::Revoke { dir, id } => instance::token_revoke(console, &dir, &id).await,
            },
            Command::Doctor { dir, format } => report::doctor(console, &dir, format).await,
            Command::Drill { dir, format } => report::drill(console, &dir, format).await,
            Command::Honey { action: HoneyAction::Plant { dir, count } } => {
                confidant_app::honey::plant_more(console, &dir, count).await.map(|total| {
                    println!(
                        "Planted {count} honey records ({total} in all). A running `confidant serve` watches them within a minute."
                    );
                })
            }
            Command::Incident { action } => match action {
                IncidentAction::Report { dir, from, to, actor, format } => {
                    let window = Window { from: from.as_deref(), to: to.as_deref(), actor: actor.as_deref() };
                    report::incident(console, &dir, window, format).await
                }
                IncidentAction::Contain { dir, actor } => report::contain(console, &dir, &actor).await,
            },
            Command::Audit { action } => match action {
                AuditAction::Verify { dir, witness, public_key } => {
                    audit::verify(&dir, witness.as_deref(), public_key.as_deref()).await
                }
                AuditAction::Proof { dir, seq, size, from, to } => {
                    let request = match (seq, from) {
                        (Some(seq), _) => app_audit::ProofRequest::Inclusion { seq, size },
                        (None, Some(from)) => app_audit::ProofRequest::Consistency { from, to },
                        (None, None) => {
                            return Err(anyhow::anyhow!(
                                "give --seq N (an inclusion proof) or --from N (a consistency proof)"
                            ));
                        }
                    };
                    audit::proof(&dir, request).await
                }
                AuditAction::Export { dir, after } => audit::export(console, &dir, after).await,
                AuditAction::Checkpoint { dir } => audit::checkpoint(console, &dir).await,
            },
            Command::Patient { action } => match action {
                PatientAction::Hold { dir, id } => patient::hold(console, &dir, &id, true).await,
                PatientAction::Release { dir, id } => patient::hold(console, &dir, &id, false).await,
                PatientAction::EraseRequest { dir, id, requested_by, reason } => {
                    patient::request(console, &dir, &id, &requested_by, &reason).await
                }
                PatientAction::Erase { dir, id, approval, approved_by, force, reason } => {
                    let authority = match (approval, force, reason) {
                        (Some(code), _, _) => {
                            app_patient::Authority::Approval { code, approved_by: approved_by.unwrap_or_default() }
                        }
                        (None, true, Some(reason)) => app_patient::Authority::Forced { reason },
                        _ => {
                            return Err(anyhow::anyhow!(
                                "give --approval CODE --approved-by NAME (from `patient erase-request`), \
                                 or --force --reason \"...\"; nothing was changed"
                            ));
                        }
                    };
                    patient::erase(console, &dir, &id, authority).await
                }
            },
            Command::Backup { action } => match action {
                BackupAction::Create { dir, out } => backup::create(console, &dir, &out).await,
                BackupAction::Verify { file, keys } => backup::verify(console, &file, &keys.keys()).await,
                BackupAction::Restore { file, dir, database_url, keys } => {
                    backup::restore(&file, &keys.keys(), &dir, database_url.as_deref()).await
                }
            },
            Command::Retention { action } => match action {
                RetentionAction::Run { dir, dry_run } => patient::retention(console, &dir, dry_run).await,
            },
            Command::Reminders { action: RemindersAction::Send { dir } } => {
                confidant_app::reminders::send(console, &dir).await.map(|r| {
                    println!(
                        "Reminders: {} sent, {} failed (tried again next time), {} patients without an e-mail address or mobile phone.",
                        r.sent, r.failed, r.unreachable
                    );
                })
            }
            Command::Training { action: TrainingAction::Import { dir, file } } => {
                confidant_app::training::import(console, &dir, &file).await.map(|r| {
                    let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
                    println!("Training pack imported from {}.", file.display());
                    println!("  added:     {}", list(&r.added));
                    println!("  new versions (everyone who passed the old one is asked again): {}", list(&r.changed));
                    println!("  unchanged: {}", list(&r.unchanged));
                })
            }
            Command::Phishing { action } => match action {
                PhishingAction::Email { dir, user, email, language } => {
                    confidant_app::phishing::set_email(console, &dir, &user, &email, language.as_deref())
                        .await
                        .map(|()| println!("Drill mails to {user} go to the address given."))
                }
                PhishingAction::Campaign { dir, templates, roles, users, start, spread_hours } => {
                    let campaign = confidant_app::phishing::campaign_request(
                        console,
                        &templates,
                        &roles,
                        &users,
                        &start,
                        spread_hours,
                    );
                    match campaign {
                        Ok(c) => confidant_app::phishing::campaign(console, &dir, &c).await.map(|made| {
                            println!(
                                "Campaign {}: {} recipients ({} targeted staff without an e-mail address left out).",
                                made.id, made.recipients, made.without_address
                            )
                        }),
                        Err(e) => Err(e),
                    }
                }
                PhishingAction::Send { dir, until } => {
                    match until.as_deref().map(confidant_app::phishing::parse_time).transpose() {
                        Ok(until) => confidant_app::phishing::send(console, &dir, until).await.map(|r| {
                            println!("Drill mails: {} sent, {} failed (tried again next time).", r.sent, r.failed)
                        }),
                        Err(e) => Err(e),
                    }
                }
            },
            Command::Keys { action } => match action {
                KeysAction::Status { dir } => keys::status(console, &dir).await,
                KeysAction::Rotate { dir, patient: None } => keys::rotate(console, &dir).await,
                KeysAction::Rotate { dir, patient: Some(id) } => keys::rotate_patient(console, &dir, &id).await,
                KeysAction::Retire { dir, version } => keys::retire(console, &dir, version).await,
            },
            Command::Import { dir, as_user, dry_run, files } => {
                import::run(console, &dir, &files, &as_user, dry_run).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
