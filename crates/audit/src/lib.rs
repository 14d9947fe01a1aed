//! The tamper-evident audit log (DESIGN.md §5): every access to patient data
//! and every security event, as leaves of an append-only Merkle tree.
//!
//! * [`clock`]: the injected source of time ([`Clock`], [`SystemClock`]).
//! * [`entry`]: what an entry says (ids only, never clinical content).
//! * [`merkle`]: RFC 6962 / RFC 9162 hashing and proofs: leaf
//!   `SHA-256(0x00 || entry)`, node `SHA-256(0x01 || left || right)`.
//! * [`checkpoint`]: signed tree heads, one witness line each.
//! * [`log`]: appending with group commit, signing checkpoints, the witness.
//! * [`subscriber`]: who watches committed entries (the detector).
//! * [`verify`]: what `confidant audit verify` checks.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod clock;
pub mod entry;
pub mod log;
pub mod merkle;
pub mod subscriber;
pub mod verify;

pub use clock::{Clock, SystemClock};
pub use entry::{Action, CONSOLE, Entry, Outcome};
pub use log::{AuditError, AuditStatsReading, Auditor, Checkpointer, LATENCY_BUCKETS, Witness};
pub use subscriber::Subscriber;
