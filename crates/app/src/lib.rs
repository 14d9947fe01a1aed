//! The application under the `confidant` command line (kanidm's `server/core`
//! is the model): the typed configuration, key loading through the vault's
//! provider trait, the instance's one-way wiring (store → records → identity →
//! detector → server), the audit checkpointer and witness, and every
//! operation an administrator runs at the server's console.
//!
//! Nothing here prints. Operations return reports (plain data) for the CLI
//! to print, and long ones report progress through [`Progress`], which the
//! CLI draws. Everything done at the console is audited through [`Console`],
//! as the console principal.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | `confidant.toml`, typed: key provider, signing key provider, storage backend |
//! | [`secrets`] | passphrases and PINs: from the environment, a descriptor or a prompt |
//! | [`keys`] | loading the key-encryption key; key status, rotation, retirement |
//! | [`instance`] | init, open, serve (the wiring); API tokens |
//! | [`audit`] | the signing key, the checkpointer and witness, verify, proofs, export |
//! | [`console`] | the one audit path for console actions |
//! | [`backup`] | create, verify, restore |
//! | [`patient`] | legal hold, erasure, retention |
//! | [`doctor`] | the posture checks (also the server's posture page) |
//! | [`drill`] | the breach drill |
//! | [`honey`] | planting honey records |
//! | [`synthetic`] | synthetic patients (honey records and the demo) |
//! | [`incident`] | the incident report and containment |
//! | [`reminders`] | appointment reminders: the sweep, e-mail and the SMS webhook |
//! | [`phishing`] | phishing drills: the sender of drill mails, campaigns at the console |
//! | [`progress`] | the progress callbacks the CLI implements |
//! | [`training`] | staff security training: assign, import a pack, the doctor check |
#![forbid(unsafe_code)]

pub mod audit;
pub mod backup;
pub mod config;
pub mod console;
pub mod doctor;
pub mod drill;
pub mod honey;
pub mod incident;
// `confidant import` (issue 19): Bundles, NDJSON, CSV through the transaction path.
pub mod import;
pub mod instance;
pub mod keys;
pub mod metrics;
pub mod patient;
// phishing drills
pub mod phishing;
pub mod progress;
pub mod reminders;
pub mod secrets;
pub mod synthetic;
// Staff security training (issue 16).
pub mod training;

pub use config::Config;
pub use console::Console;
pub use progress::{Counter, Progress, Quiet, Unit};
