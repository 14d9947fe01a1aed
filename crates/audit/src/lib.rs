//! The tamper-evident audit log (DESIGN.md §5) — its Merkle tree first.
//!
//! Entries are the leaves of an append-only Merkle tree hashed as in
//! RFC 6962 / RFC 9162: leaf `SHA-256(0x00 || entry)`, node
//! `SHA-256(0x01 || left || right)`. Signed tree heads, the witness and the
//! `audit verify` command build on this module (issue 4, in progress).
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod merkle;
pub mod verify;
