//! Verifying an audit log against its signed checkpoints: the heart of
//! `confidant audit verify` (S5: someone with write access to the database
//! edits, deletes, inserts, reorders or truncates entries).
//!
//! The entries are streamed in sequence order through an [`Accumulator`];
//! at every checkpoint size the recomputed root must equal the signed root.
//! A forger who rewrites the table and recomputes every hash still cannot
//! produce a signature for the new roots without the signing key.

use std::collections::BTreeMap;

use crate::checkpoint::SignedCheckpoint;
use crate::merkle::{Accumulator, Hash, leaf_hash};

/// What verification found wrong, the earliest problem first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A checkpoint's signature is not valid for the audit public key (or names another log).
    BadCheckpoint { line: usize },
    /// Two checkpoints claim different roots for the same size.
    ConflictingCheckpoints { size: u64 },
    /// Sequence numbers are not 1, 2, 3, …: an entry was deleted, inserted or reordered.
    Sequence { expected: u64, found: u64 },
    /// An entry's stored leaf hash does not match its content: it was edited.
    EntryAltered { seq: u64 },
    /// The recomputed root differs from a signed checkpoint: an entry at or before
    /// `size` (and after the previous good checkpoint) was altered, added, removed or moved.
    RootMismatch { size: u64, after: u64 },
    /// The log ends before a signed checkpoint: entries were cut off the tail.
    Truncated { entries: u64, checkpoint_size: u64 },
    /// The search columns stored beside an entry disagree with the entry (edited to hide it from searches).
    ColumnsAltered { seq: u64 },
    /// The table holds rows outside the sequence 1..=entries (numbered zero, negative, or
    /// beyond a gap-free read): inserted where an in-order read never meets them.
    StrayRows { rows: u64, entries: u64 },
    /// An entry this node appended reads back as something else: it was
    /// rewritten in the database after it was committed.
    NotAsAppended { seq: u64 },
    /// An entry this node appended is no longer in the log (deleted, and the
    /// head moved back to hide it).
    AppendedMissing { seq: u64, entries: u64 },
    /// The newest checkpoint copy in the database is not signed by this log's key.
    ForeignCheckpointCopy,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::BadCheckpoint { line } => {
                write!(f, "checkpoint {line} has an invalid signature or belongs to another log")
            }
            Problem::ConflictingCheckpoints { size } => {
                write!(f, "two signed checkpoints disagree about the tree of {size} entries (a fork)")
            }
            Problem::Sequence { expected, found } => {
                write!(f, "entry {expected} is missing or out of order (found entry {found} in its place)")
            }
            Problem::EntryAltered { seq } => write!(f, "entry {seq} was altered: its content does not match its hash"),
            Problem::RootMismatch { size, after } => write!(
                f,
                "the log does not match the signed checkpoint at {size} entries: an entry between {} and {size} was altered, inserted, removed or moved",
                after + 1
            ),
            Problem::StrayRows { rows, entries } => write!(
                f,
                "the log table holds {rows} rows but only {entries} form the sequence 1..{entries}: rows were inserted out of sequence"
            ),
            Problem::NotAsAppended { seq } => {
                write!(f, "entry {seq} is not the entry this server appended: it was rewritten in the database")
            }
            Problem::AppendedMissing { seq, entries } => write!(
                f,
                "entry {seq}, appended by this server, is gone: the log holds only {entries} entries (deleted in the database)"
            ),
            Problem::ForeignCheckpointCopy => write!(
                f,
                "a checkpoint copy in the database (table audit_checkpoints) is not signed by this instance's audit key"
            ),
            Problem::ColumnsAltered { seq } => {
                write!(f, "entry {seq} was altered: the columns stored beside it disagree with its content")
            }
            Problem::Truncated { entries, checkpoint_size } => {
                write!(
                    f,
                    "the log ends at entry {entries}, but a signed checkpoint covers {checkpoint_size} entries: the tail was removed"
                )
            }
        }
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: u64,
    pub checkpoints: usize,
    /// The size of the largest checkpoint (entries after it are not yet covered by a signature).
    pub last_checkpoint: u64,
    /// The root over all entries (beyond the last checkpoint too).
    pub root: Hash,
}

/// One stored entry: its sequence number, its bytes, and the leaf hash stored beside it.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: u64,
    pub entry: Vec<u8>,
    pub leaf_hash: Hash,
}

/// Verify `entries` (in stored order) against `checkpoints` (witness lines,
/// in any order) signed by `public_key` for log `origin`.
pub fn verify(
    entries: impl IntoIterator<Item = StoredEntry>,
    checkpoints: &[SignedCheckpoint],
    public_key: &[u8; 32],
    origin: &str,
) -> Result<Report, Problem> {
    let mut v = Verifier::new(checkpoints, public_key, origin)?;
    for e in entries {
        v.push(&e)?;
    }
    v.finish()
}

/// Verification one entry at a time, for logs streamed from a database.
#[derive(Debug)]
pub struct Verifier {
    by_size: BTreeMap<u64, Hash>,
    acc: Accumulator,
    last_good: u64,
}

impl Verifier {
    /// Check the checkpoints' signatures, origin and agreement.
    pub fn new(checkpoints: &[SignedCheckpoint], public_key: &[u8; 32], origin: &str) -> Result<Verifier, Problem> {
        let mut by_size: BTreeMap<u64, Hash> = BTreeMap::new();
        for (i, c) in checkpoints.iter().enumerate() {
            if c.checkpoint.origin != origin || !c.verify(public_key) {
                return Err(Problem::BadCheckpoint { line: i + 1 });
            }
            match by_size.insert(c.checkpoint.size, c.checkpoint.root) {
                Some(other) if other != c.checkpoint.root => {
                    return Err(Problem::ConflictingCheckpoints { size: c.checkpoint.size });
                }
                _ => {}
            }
        }
        let acc = Accumulator::new();
        if let Some(root) = by_size.get(&0)
            && *root != acc.root()
        {
            return Err(Problem::RootMismatch { size: 0, after: 0 });
        }
        Ok(Verifier { by_size, acc, last_good: 0 })
    }

    /// Entries checked so far.
    pub fn size(&self) -> u64 {
        self.acc.size()
    }

    /// Check the next entry.
    pub fn push(&mut self, e: &StoredEntry) -> Result<(), Problem> {
        let expected = self.acc.size() + 1;
        if e.seq != expected {
            return Err(Problem::Sequence { expected, found: e.seq });
        }
        let leaf = leaf_hash(&e.entry);
        if leaf != e.leaf_hash {
            return Err(Problem::EntryAltered { seq: e.seq });
        }
        self.acc.push(leaf);
        if let Some(root) = self.by_size.get(&self.acc.size()) {
            if *root != self.acc.root() {
                return Err(Problem::RootMismatch { size: self.acc.size(), after: self.last_good });
            }
            self.last_good = self.acc.size();
        }
        Ok(())
    }

    /// After the last entry: no checkpoint may lie beyond it.
    pub fn finish(self) -> Result<Report, Problem> {
        if let Some((&size, _)) = self.by_size.range(self.acc.size() + 1..).next() {
            return Err(Problem::Truncated { entries: self.acc.size(), checkpoint_size: size });
        }
        Ok(Report {
            entries: self.acc.size(),
            checkpoints: self.by_size.len(),
            last_checkpoint: self.last_good,
            root: self.acc.root(),
        })
    }
}

#[cfg(test)]
mod tests {
    use confidant_vault::signing::SigningKey;

    use super::*;
    use crate::checkpoint::Checkpoint;

    fn log(n: u64) -> Vec<StoredEntry> {
        (1..=n)
            .map(|seq| {
                let entry = format!("{{\"seq\":{seq},\"action\":\"read\"}}").into_bytes();
                StoredEntry { seq, leaf_hash: leaf_hash(&entry), entry }
            })
            .collect()
    }

    /// Checkpoints every `every` entries over `entries`, signed by `key`.
    fn checkpoints(entries: &[StoredEntry], every: usize, key: &SigningKey) -> Vec<SignedCheckpoint> {
        let mut acc = Accumulator::new();
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            acc.push(e.leaf_hash);
            if (i + 1) % every == 0 {
                let c = Checkpoint { origin: "inst".into(), size: acc.size(), root: acc.root(), timestamp: i as i64 };
                out.push(c.sign(key).unwrap());
            }
        }
        out
    }

    fn rehash(e: &mut StoredEntry) {
        e.leaf_hash = leaf_hash(&e.entry);
    }

    #[test]
    fn an_intact_log_verifies() {
        let key = SigningKey::generate().unwrap();
        let l = log(100);
        let c = checkpoints(&l, 10, &key);
        let r = verify(l, &c, &key.public_key(), "inst").unwrap();
        assert_eq!((r.entries, r.checkpoints), (100, 10));
    }

    #[test]
    fn every_kind_of_tampering_is_detected() {
        let key = SigningKey::generate().unwrap();
        let pk = key.public_key();
        let l = log(100);
        let c = checkpoints(&l, 10, &key);

        // One byte changed, hash left alone.
        let mut t = l.clone();
        t[41].entry[3] ^= 1;
        assert_eq!(verify(t, &c, &pk, "inst"), Err(Problem::EntryAltered { seq: 42 }));
        // One byte changed and its leaf hash recomputed: the checkpoint catches it.
        let mut t = l.clone();
        t[41].entry[3] ^= 1;
        rehash(&mut t[41]);
        assert_eq!(verify(t, &c, &pk, "inst"), Err(Problem::RootMismatch { size: 50, after: 40 }));
        // One entry deleted.
        let mut t = l.clone();
        t.remove(41);
        assert_eq!(verify(t, &c, &pk, "inst"), Err(Problem::Sequence { expected: 42, found: 43 }));
        // Deleted and renumbered.
        let mut t = l.clone();
        t.remove(41);
        for (i, e) in t.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        assert_eq!(verify(t, &c, &pk, "inst"), Err(Problem::RootMismatch { size: 50, after: 40 }));
        // Two entries swapped (their numbers swapped too).
        let mut t = l.clone();
        t.swap(41, 42);
        t[41].seq = 42;
        t[42].seq = 43;
        assert_eq!(verify(t, &c, &pk, "inst"), Err(Problem::RootMismatch { size: 50, after: 40 }));
        // An entry inserted.
        let mut t = l.clone();
        let extra = b"{\"forged\":true}".to_vec();
        t.insert(41, StoredEntry { seq: 42, leaf_hash: leaf_hash(&extra), entry: extra });
        for (i, e) in t.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        assert_eq!(verify(t, &c, &pk, "inst"), Err(Problem::RootMismatch { size: 50, after: 40 }));
        // The tail truncated below the last checkpoint.
        let t: Vec<_> = l.iter().take(95).cloned().collect();
        assert_eq!(verify(t, &c, &pk, "inst"), Err(Problem::Truncated { entries: 95, checkpoint_size: 100 }));
        // A whole forged log, re-hashed, with checkpoints signed by another key.
        let mut forged = log(100);
        forged[10].entry = b"{\"seq\":11,\"action\":\"nothing to see\"}".to_vec();
        rehash(&mut forged[10]);
        let other = SigningKey::generate().unwrap();
        let fc = checkpoints(&forged, 10, &other);
        assert_eq!(verify(forged.clone(), &fc, &pk, "inst"), Err(Problem::BadCheckpoint { line: 1 }));
        // ... or with the real checkpoints: the roots differ.
        assert_eq!(verify(forged, &c, &pk, "inst"), Err(Problem::RootMismatch { size: 20, after: 10 }));
        // Checkpoints of another log are refused.
        assert_eq!(verify(l.clone(), &c, &pk, "other"), Err(Problem::BadCheckpoint { line: 1 }));
        // Two signed heads for one size that disagree: a fork.
        let mut c2 = c.clone();
        let fork = Checkpoint { origin: "inst".into(), size: 10, root: [0u8; 32], timestamp: 0 }.sign(&key).unwrap();
        c2.push(fork);
        assert_eq!(verify(l, &c2, &pk, "inst"), Err(Problem::ConflictingCheckpoints { size: 10 }));
    }
}
