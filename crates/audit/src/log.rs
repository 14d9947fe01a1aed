//! The running audit log: appending entries (group commit), signing
//! checkpoints, writing them to the witness, serving proofs.
//!
//! * [`Auditor`] appends. Writes of records carry their entries into the
//!   record's own transaction ([`Entry::to_row`]); reads hand theirs to
//!   [`Auditor::append`], which waits until they are committed. Concurrent
//!   appends are batched into one transaction (group commit): one fsync per
//!   batch, not per read. If the batch fails, every caller in it gets the
//!   error, and a read returns its error instead of its data (fail closed).
//! * [`Checkpointer`] follows the log in sequence order, recomputes every
//!   leaf hash, signs the tree head with the audit signing key and appends it
//!   to the witness file, outside the database.
//!
//! A node signs only a tree it can vouch for. Before each signature it checks
//! that every entry it appended itself since the last one is in the log as
//! it wrote it (the store remembers them, [`Store::take_appended`]), and that
//! the newest head another node signed agrees with its own tree. Entries are
//! read once and kept in memory, so a row rewritten after it was read never
//! changes what is signed. On any mismatch it refuses to sign again until
//! restarted, and the caller raises a critical alert: someone with write
//! access to the database rewrote or deleted fresh entries.
//!
//! Over 600 lines with its unit tests (the code is under 600): the appender and the
//! checkpointer share the log's ordering invariants, which the tests check together.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use confidant_store::{AuditRow, Store, StoreError};
use confidant_vault::signing::Signer;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::entry::Entry;
use crate::merkle::{self, Hash, leaf_hash};
use crate::verify::{Problem, Report, StoredEntry, Verifier};

/// Errors of the audit log. Messages name sequence numbers and files, never content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("the audit log could not be written: {0}")]
    Append(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit log failed verification: {0}")]
    Tampered(Problem),
    #[error("witness file {path}: {error}")]
    Witness { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// Entries one group commit takes at most.
const MAX_BATCH_ROWS: usize = 4096;

struct Request {
    rows: Vec<AuditRow>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Upper bounds (seconds) of the audit latency histograms' buckets: from a
/// group commit on a quiet SQLite (well under a millisecond) to a stalled
/// database (seconds). `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Observations per latency bucket (not cumulative), the last one `+Inf`.
#[derive(Debug, Default)]
struct Latencies([AtomicU64; LATENCY_BUCKETS.len() + 1]);

impl Latencies {
    fn observe(&self, micros: u64) {
        let seconds = micros as f64 / 1e6;
        let i = LATENCY_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(LATENCY_BUCKETS.len());
        if let Some(n) = self.0.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn read(&self) -> [u64; LATENCY_BUCKETS.len() + 1] {
        let mut out = [0; LATENCY_BUCKETS.len() + 1];
        for (o, n) in out.iter_mut().zip(&self.0) {
            *o = n.load(Ordering::Relaxed);
        }
        out
    }
}

/// What the appender has done since the process started, for `/metrics`:
/// counts, seconds and latency buckets only.
#[derive(Debug, Default)]
pub struct AuditStats {
    appends: AtomicU64,
    append_micros: AtomicU64,
    append_latency: Latencies,
    group_commits: AtomicU64,
    group_commit_rows: AtomicU64,
    group_commit_micros: AtomicU64,
    group_commit_latency: Latencies,
}

/// A reading of [`AuditStats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditStatsReading {
    /// Appends waited for (each a request's entries), and their total wait.
    pub appends: u64,
    pub append_seconds: f64,
    /// Appends per bucket of [`LATENCY_BUCKETS`] (not cumulative; the last is `+Inf`).
    pub append_buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// Transactions of the group-commit appender, the rows in them, and their total time.
    pub group_commits: u64,
    pub group_commit_rows: u64,
    pub group_commit_seconds: f64,
    /// Group commits per bucket of [`LATENCY_BUCKETS`] (not cumulative; the last is `+Inf`).
    pub group_commit_buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// Entries appended by this process since the last checkpoint.
    pub since_checkpoint: u64,
}

/// Appends audit entries. Cheap to share (`Arc`).
pub struct Auditor {
    stats: Arc<AuditStats>,
    sender: Option<mpsc::UnboundedSender<Request>>,
    /// Entries appended by this process since the last checkpoint.
    pending: Arc<AtomicU64>,
    /// Woken when `pending` reaches `checkpoint_every`.
    checkpoint_due: Arc<Notify>,
    checkpoint_every: AtomicU64,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auditor({})", if self.sender.is_some() { "group commit" } else { "off" })
    }
}

impl Auditor {
    /// Start the group-commit appender on `store` (inside a Tokio runtime).
    pub fn start(store: Store) -> Auditor {
        let (sender, receiver) = mpsc::unbounded_channel();
        let stats = Arc::new(AuditStats::default());
        let auditor = Auditor {
            stats: stats.clone(),
            sender: Some(sender),
            pending: Arc::new(AtomicU64::new(0)),
            checkpoint_due: Arc::new(Notify::new()),
            checkpoint_every: AtomicU64::new(u64::MAX),
        };
        tokio::spawn(group_commit(store, receiver, stats));
        auditor
    }

    /// An auditor that records nothing, for the audited-vs-unaudited read
    /// benchmark only. It exists only in builds with the `bench-switch`
    /// feature; the product never enables it.
    #[cfg(feature = "bench-switch")]
    pub fn off_for_benchmarks() -> Auditor {
        Auditor {
            stats: Arc::new(AuditStats::default()),
            sender: None,
            pending: Arc::new(AtomicU64::new(0)),
            checkpoint_due: Arc::new(Notify::new()),
            checkpoint_every: AtomicU64::new(u64::MAX),
        }
    }

    /// Append `entries` and wait until they are committed. An error means
    /// they were not recorded: the caller must not release the data.
    pub async fn append(&self, entries: &[Entry]) -> Result<(), AuditError> {
        if entries.is_empty() {
            return Ok(());
        }
        let Some(sender) = &self.sender else {
            #[cfg(feature = "bench-switch")]
            return Ok(());
            #[cfg(not(feature = "bench-switch"))]
            return Err(AuditError::Append("no appender".into()));
        };
        let rows: Vec<AuditRow> = entries.iter().map(Entry::to_row).collect();
        let started = std::time::Instant::now();
        let (done, wait) = oneshot::channel();
        sender.send(Request { rows, done }).map_err(|_| AuditError::Append("the appender has stopped".into()))?;
        let result = wait.await.map_err(|_| AuditError::Append("the appender has stopped".into()))?;
        result.map_err(AuditError::Append)?;
        let waited = micros(started);
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        self.stats.append_micros.fetch_add(waited, Ordering::Relaxed);
        self.stats.append_latency.observe(waited);
        self.appended(entries.len() as u64);
        Ok(())
    }

    /// What the appender has done so far.
    pub fn stats(&self) -> AuditStatsReading {
        let s = &self.stats;
        AuditStatsReading {
            appends: s.appends.load(Ordering::Relaxed),
            append_seconds: s.append_micros.load(Ordering::Relaxed) as f64 / 1e6,
            append_buckets: s.append_latency.read(),
            group_commits: s.group_commits.load(Ordering::Relaxed),
            group_commit_rows: s.group_commit_rows.load(Ordering::Relaxed),
            group_commit_seconds: s.group_commit_micros.load(Ordering::Relaxed) as f64 / 1e6,
            group_commit_buckets: s.group_commit_latency.read(),
            since_checkpoint: self.pending.load(Ordering::Relaxed),
        }
    }

    /// Note entries committed by a record write's own transaction.
    pub fn appended(&self, n: u64) {
        let before = self.pending.fetch_add(n, Ordering::Relaxed);
        if before + n >= self.checkpoint_every.load(Ordering::Relaxed) {
            self.checkpoint_due.notify_one();
        }
    }

    /// Ask for a checkpoint after every `n` entries appended here.
    pub fn set_checkpoint_every(&self, n: u64) {
        self.checkpoint_every.store(n.max(1), Ordering::Relaxed);
    }

    /// Resolves when enough entries were appended for a checkpoint.
    pub async fn checkpoint_due(&self) {
        self.checkpoint_due.notified().await;
    }

    fn checkpointed(&self) {
        self.pending.store(0, Ordering::Relaxed);
    }
}

/// The appender task: take every request waiting, commit them together,
/// answer each. One transaction in flight at a time; the next batch gathers
/// while this one commits.
fn micros(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

async fn group_commit(store: Store, mut receiver: mpsc::UnboundedReceiver<Request>, stats: Arc<AuditStats>) {
    while let Some(first) = receiver.recv().await {
        let mut rows = first.rows;
        let mut waiting = vec![first.done];
        while rows.len() < MAX_BATCH_ROWS {
            match receiver.try_recv() {
                Ok(mut r) => {
                    rows.append(&mut r.rows);
                    waiting.push(r.done);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let result = store.append_audit(&rows).await.map_err(|e| {
            tracing::error!(error = %e, entries = rows.len(), "audit append failed; the requests get an error");
            e.to_string()
        });
        stats.group_commits.fetch_add(1, Ordering::Relaxed);
        stats.group_commit_rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
        let took = micros(started);
        stats.group_commit_micros.fetch_add(took, Ordering::Relaxed);
        stats.group_commit_latency.observe(took);
        for w in waiting {
            let _ = w.send(result.clone());
        }
    }
}

/// The witness: an append-only file of signed checkpoint lines.
#[derive(Debug, Clone)]
pub struct Witness {
    path: PathBuf,
}

impl Witness {
    pub fn new(path: impl Into<PathBuf>) -> Witness {
        Witness { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line and sync it. One `write` of a short line with
    /// O_APPEND: lines of several processes do not interleave.
    pub fn append(&self, line: &str) -> Result<(), AuditError> {
        let err = |error| AuditError::Witness { path: self.path.clone(), error };
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&self.path).map_err(err)?;
        f.write_all(format!("{line}\n").as_bytes()).map_err(err)?;
        f.sync_data().map_err(err)?;
        Ok(())
    }

    /// Every checkpoint in the file (missing file: none). A line that is not
    /// a checkpoint is an error naming its number.
    pub fn read(&self) -> Result<Vec<SignedCheckpoint>, AuditError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(AuditError::Witness { path: self.path.clone(), error }),
        };
        parse_witness(&text)
    }
}

/// Parse witness text: one signed checkpoint per non-empty line.
pub fn parse_witness(text: &str) -> Result<Vec<SignedCheckpoint>, AuditError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            SignedCheckpoint::parse(line)
                .ok_or_else(|| AuditError::Invalid(format!("witness line {} is not a signed checkpoint", i + 1)))?,
        );
    }
    Ok(out)
}

/// Rows read per query when following the log.
const PAGE: i64 = 10_000;

/// Read the whole log from `store` in order, checking each entry (sequence,
/// leaf hash, search columns) against `checkpoints`. `progress` is called
/// after every page with the entries checked so far.
pub async fn verify_store(
    store: &Store,
    checkpoints: &[SignedCheckpoint],
    public_key: &[u8; 32],
    origin: &str,
    progress: impl FnMut(u64),
) -> Result<Report, AuditError> {
    verify_store_visiting(store, checkpoints, public_key, origin, progress, |_| {}).await
}

/// [`verify_store`], handing every row read to `visit` before it is checked
/// (so that a caller that needs the rows reads them once, not twice).
async fn verify_store_visiting(
    store: &Store,
    checkpoints: &[SignedCheckpoint],
    public_key: &[u8; 32],
    origin: &str,
    mut progress: impl FnMut(u64),
    mut visit: impl FnMut(&confidant_store::StoredAudit),
) -> Result<Report, AuditError> {
    let mut v = Verifier::new(checkpoints, public_key, origin).map_err(AuditError::Tampered)?;
    // Read the head's size first: entries appended while we read only add rows.
    let size = store.audit_size().await?;
    loop {
        let page = store.audit_entries(v.size() as i64, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for s in &page {
            visit(s);
            let e = stored_entry(s);
            v.push(&e).map_err(AuditError::Tampered)?;
            let ok = Entry::parse(&s.row.entry).is_some_and(|entry| entry.columns_match(&s.row));
            if !ok {
                return Err(AuditError::Tampered(Problem::ColumnsAltered { seq: e.seq }));
            }
        }
        progress(v.size());
    }
    let report = v.finish().map_err(AuditError::Tampered)?;
    // Every row must be one of those read in order (none numbered ≤ 0 or otherwise aside).
    let (rows, min, max) = store.audit_extent().await?;
    let n = report.entries;
    let in_sequence = rows as u64 == n && (n == 0 || (min == Some(1) && max == Some(n as i64)));
    // Rows appended while we read are fine: they extend the sequence past n.
    let appended_meanwhile = rows as u64 > n && min == Some(1) && max == Some(rows);
    if !in_sequence && !appended_meanwhile {
        return Err(AuditError::Tampered(Problem::StrayRows { rows: rows.max(0) as u64, entries: n }));
    }
    // The head says how many entries were appended: fewer rows means the tail was cut.
    if report.entries < size as u64 {
        return Err(AuditError::Tampered(Problem::Truncated { entries: report.entries, checkpoint_size: size as u64 }));
    }
    Ok(report)
}

fn stored_entry(s: &confidant_store::StoredAudit) -> StoredEntry {
    let mut leaf = [0u8; 32];
    if s.row.leaf_hash.len() == 32 {
        leaf.copy_from_slice(&s.row.leaf_hash);
    }
    StoredEntry { seq: s.seq.max(0) as u64, entry: s.row.entry.clone(), leaf_hash: leaf }
}

/// An inclusion proof (RFC 9162 §2.1.3), 0-based leaf index as in the RFC.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InclusionProof {
    pub seq: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub root: String,
    pub audit_path: Vec<String>,
}

/// A consistency proof (RFC 9162 §2.1.4) between two tree sizes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub first_root: String,
    pub second_root: String,
    pub proof: Vec<String>,
}

/// Follows the log, signs checkpoints and serves proofs. It keeps every leaf
/// hash in memory (32 bytes an entry: 32 MB per million).
pub struct Checkpointer {
    store: Store,
    key: Box<dyn Signer>,
    origin: String,
    witness: Witness,
    leaves: Vec<Hash>,
    /// The same leaves, for the root in O(log n) at every checkpoint.
    acc: merkle::Accumulator,
    /// The last sequence number read (equal to the number of leaves unless the
    /// log has a gap, which start-up verification has then reported).
    last_seq: i64,
    /// Where sequence numbers jump (a gap only tampering makes): (position of
    /// the first leaf after the jump, its sequence number). Empty for a sound
    /// log, where the leaf of entry `seq` is at position `seq - 1`.
    runs: Vec<(usize, i64)>,
    latest: Option<SignedCheckpoint>,
    /// Set when the log was found rewritten behind this node's back: it signs
    /// nothing more (a restart, after the incident is handled, clears it).
    refused: Option<Problem>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checkpointer({}, {} entries)", self.origin, self.leaves.len())
    }
}

impl Checkpointer {
    /// Load the log (recomputing every leaf hash) and check it against the
    /// witness. A log that fails is reported as [`AuditError::Tampered`]; the
    /// caller decides (`serve` raises an alert and keeps signing: the
    /// witness keeps the old, contradicting heads, so nothing is hidden).
    pub async fn open(
        store: Store,
        key: Box<dyn Signer>,
        origin: &str,
        witness: Witness,
    ) -> Result<(Checkpointer, Option<AuditError>), AuditError> {
        let checkpoints = witness.read()?;
        // One pass: the leaves are collected while the log is verified.
        let (mut leaves, mut acc, mut last_seq, mut runs) = (Vec::new(), merkle::Accumulator::new(), 0, Vec::new());
        let collect = |s: &confidant_store::StoredAudit| {
            if s.seq != last_seq + 1 {
                runs.push((leaves.len(), s.seq));
            }
            let leaf = leaf_hash(&s.row.entry);
            leaves.push(leaf);
            acc.push(leaf);
            last_seq = s.seq;
        };
        let verified = verify_store_visiting(&store, &checkpoints, &key.public_key(), origin, |_| {}, collect).await;
        let problem = verified.err().and_then(|e| match e {
            AuditError::Tampered(_) => Some(e),
            _ => None,
        });
        let mut c = Checkpointer {
            store,
            key,
            origin: origin.to_owned(),
            witness,
            leaves,
            acc,
            last_seq,
            runs,
            latest: None,
            refused: None,
        };
        c.latest =
            checkpoints.into_iter().filter(|s| s.checkpoint.origin == c.origin).max_by_key(|s| s.checkpoint.size);
        // Rows after a problem (verification stopped there), or appended meanwhile.
        c.catch_up().await?;
        Ok((c, problem))
    }

    /// Read entries appended since the last look (by any node). A gap (which
    /// only tampering makes) is logged and read past: the node keeps signing
    /// what the table holds, and `audit verify` names the gap.
    pub async fn catch_up(&mut self) -> Result<u64, AuditError> {
        loop {
            let page = self.store.audit_entries(self.last_seq, PAGE).await?;
            if page.is_empty() {
                return Ok(self.leaves.len() as u64);
            }
            for s in &page {
                if s.seq != self.last_seq + 1 {
                    tracing::error!(
                        expected = self.last_seq + 1,
                        found = s.seq,
                        "SECURITY ALERT: the audit log has a gap; run `confidant audit verify`"
                    );
                    self.runs.push((self.leaves.len(), s.seq));
                }
                self.last_seq = s.seq;
                // The hash is recomputed, never taken from the table.
                let leaf = leaf_hash(&s.row.entry);
                self.leaves.push(leaf);
                self.acc.push(leaf);
            }
        }
    }

    /// Sign a checkpoint over everything appended so far, if there is
    /// anything new; append it to the witness and the database.
    pub async fn checkpoint(
        &mut self,
        now: i64,
        auditor: Option<&Auditor>,
    ) -> Result<Option<SignedCheckpoint>, AuditError> {
        // Taken before reading: every entry taken is committed, so the read sees it.
        let (own, forgotten) = self.store.take_appended();
        if forgotten > 0 {
            tracing::warn!(forgotten, "entries appended here were not checked before signing (no checkpoint for long)");
        }
        self.catch_up().await?;
        if self.refused.is_none() {
            self.refused = self.own_appends_kept(&own).or(self.agrees_with_other_nodes().await?);
        }
        if let Some(problem) = &self.refused {
            return Err(AuditError::Tampered(problem.clone()));
        }
        let size = self.leaves.len() as u64;
        if self.latest.as_ref().is_some_and(|l| l.checkpoint.size >= size) {
            return Ok(None);
        }
        let c = Checkpoint { origin: self.origin.clone(), size, root: self.acc.root(), timestamp: now };
        let signed = c.sign(self.key.as_ref()).map_err(AuditError::Invalid)?;
        let line = signed.to_line();
        self.witness.append(&line)?;
        self.store.insert_audit_checkpoint(&line, size as i64, now).await?;
        if let Some(a) = auditor {
            a.checkpointed();
        }
        tracing::info!(size, "audit checkpoint signed");
        self.latest = Some(signed.clone());
        Ok(Some(signed))
    }

    /// The first entry this node appended that the log no longer holds as
    /// it was written: rewritten, or deleted with the head moved back.
    fn own_appends_kept(&self, own: &[confidant_store::Appended]) -> Option<Problem> {
        let entries = self.leaves.len() as u64;
        own.iter().find_map(|a| {
            let seq = a.seq.max(0) as u64;
            match self.position_of(a.seq).and_then(|i| self.leaves.get(i)) {
                None => Some(Problem::AppendedMissing { seq, entries }),
                Some(leaf) if leaf.as_slice() != a.leaf_hash.as_slice() => Some(Problem::NotAsAppended { seq }),
                Some(_) => None,
            }
        })
    }

    /// The position of entry `seq`'s leaf, if the log as read holds it.
    fn position_of(&self, seq: i64) -> Option<usize> {
        let (start, first) = self.runs.iter().rev().find(|(_, s)| *s <= seq).copied().unwrap_or((0, 1));
        let pos = start + usize::try_from(seq.checked_sub(first)?).ok()?;
        // Past the end of its run, `seq` is in a gap.
        let end = self.runs.iter().map(|(p, _)| *p).find(|p| *p > start).unwrap_or(self.leaves.len());
        (pos < end).then_some(pos)
    }

    /// Several nodes on one database: the newest head signed by any of them
    /// must be a head of this node's tree. A node that read a row after it
    /// was rewritten disagrees with the node that read it before.
    async fn agrees_with_other_nodes(&self) -> Result<Option<Problem>, AuditError> {
        let Some(line) = self.store.latest_audit_checkpoint().await? else {
            return Ok(None);
        };
        let Some(signed) = SignedCheckpoint::parse(&line)
            .filter(|c| c.checkpoint.origin == self.origin && c.verify(&self.key.public_key()))
        else {
            // Not a checkpoint of this log's key: planted in the table (audit verify names it).
            return Ok(Some(Problem::ForeignCheckpointCopy));
        };
        if self.latest.as_ref().is_some_and(|l| l.checkpoint == signed.checkpoint) {
            return Ok(None); // our own, or one already checked
        }
        let size = signed.checkpoint.size;
        if size == 0 || size > self.leaves.len() as u64 {
            // Signed over entries this node has not read yet: checked at the next round.
            return Ok(None);
        }
        let ours = merkle::root(&self.leaves[..size as usize]);
        Ok((ours != signed.checkpoint.root).then_some(Problem::ConflictingCheckpoints { size }))
    }

    /// Why this node refuses to sign, if it does.
    pub fn refused(&self) -> Option<&Problem> {
        self.refused.as_ref()
    }

    /// The latest checkpoint this node signed or read from the witness.
    pub fn latest(&self) -> Option<&SignedCheckpoint> {
        self.latest.as_ref()
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key()
    }

    /// Inclusion proof of entry `seq` in the tree of `size` entries.
    pub fn inclusion(&self, seq: u64, size: u64) -> Option<InclusionProof> {
        inclusion(&self.leaves, seq, size)
    }

    /// Consistency proof between the trees of `first` and `second` entries.
    pub fn consistency(&self, first: u64, second: u64) -> Option<ConsistencyProof> {
        consistency(&self.leaves, first, second)
    }
}

/// Inclusion proof of entry `seq` (1-based) in the tree of the first `size` leaves.
pub fn inclusion(leaves: &[Hash], seq: u64, size: u64) -> Option<InclusionProof> {
    if seq == 0 || seq > size || size > leaves.len() as u64 {
        return None;
    }
    let tree = &leaves[..size as usize];
    let path = merkle::inclusion_proof(tree, (seq - 1) as usize)?;
    Some(InclusionProof {
        seq,
        leaf_index: seq - 1,
        tree_size: size,
        leaf_hash: hex::encode(tree[(seq - 1) as usize]),
        root: hex::encode(merkle::root(tree)),
        audit_path: path.iter().map(hex::encode).collect(),
    })
}

/// Consistency proof between the trees of the first `first` and `second` leaves.
pub fn consistency(leaves: &[Hash], first: u64, second: u64) -> Option<ConsistencyProof> {
    if first == 0 || first > second || second > leaves.len() as u64 {
        return None;
    }
    let tree = &leaves[..second as usize];
    let proof = merkle::consistency_proof(tree, first as usize)?;
    Some(ConsistencyProof {
        first,
        second,
        first_root: hex::encode(merkle::root(&tree[..first as usize])),
        second_root: hex::encode(merkle::root(tree)),
        proof: proof.iter().map(hex::encode).collect(),
    })
}

/// Every leaf hash of the log, recomputed from the entries.
pub async fn load_leaves(store: &Store) -> Result<Vec<Hash>, AuditError> {
    let mut leaves = Vec::new();
    loop {
        let page = store.audit_entries(leaves.len() as i64, PAGE).await?;
        if page.is_empty() {
            return Ok(leaves);
        }
        leaves.extend(page.iter().map(|s| leaf_hash(&s.row.entry)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Action, Outcome};

    async fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", tmp.path().join("a.db").display());
        let store = Store::connect(&url, true).await.unwrap();
        store.migrate().await.unwrap();
        (tmp, store)
    }

    fn entry(i: i64) -> Entry {
        let mut e = Entry::new(i, Action::Read, Outcome::Success);
        e.actor = Some(format!("user{}", i % 7));
        e
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_keeps_every_entry_in_one_gap_free_sequence() {
        let (_tmp, store) = store().await;
        let auditor = Arc::new(Auditor::start(store.clone()));
        let mut tasks = Vec::new();
        for t in 0..16 {
            let a = auditor.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let batch: Vec<Entry> = (0..(i % 3 + 1)).map(|k| entry(t * 1000 + i * 10 + k)).collect();
                    a.append(&batch).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let expected: i64 = 16 * (0..25).map(|i| i % 3 + 1).sum::<i64>();
        assert_eq!(store.audit_size().await.unwrap(), expected);
        let rows = store.audit_entries(0, 10_000).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=expected).collect::<Vec<_>>());
        // Entries of one append stay together and in order.
        for w in rows.windows(2) {
            let (a, b) = (Entry::parse(&w[0].row.entry).unwrap(), Entry::parse(&w[1].row.entry).unwrap());
            if b.time == a.time + 1 {
                assert_eq!(w[1].seq, w[0].seq + 1);
            }
        }
        // The checkpointer signs them, and the log verifies against its witness.
        let key = Box::new(confidant_vault::signing::SigningKey::generate().unwrap());
        let witness = Witness::new(_tmp.path().join("witness"));
        let (mut c, problem) = Checkpointer::open(store.clone(), key, "inst", witness.clone()).await.unwrap();
        assert!(problem.is_none());
        let signed = c.checkpoint(1, Some(&auditor)).await.unwrap().unwrap();
        assert_eq!(signed.checkpoint.size, expected as u64);
        assert!(c.checkpoint(2, None).await.unwrap().is_none(), "nothing new, nothing signed");
        let pk = c.public_key();
        let report = verify_store(&store, &witness.read().unwrap(), &pk, "inst", |_| {}).await.unwrap();
        assert_eq!(report.entries, expected as u64);
        // A proof from the checkpointer verifies against the signed root.
        let p = c.inclusion(7, expected as u64).unwrap();
        let path: Vec<Hash> = p.audit_path.iter().map(|h| hex::decode(h).unwrap().try_into().unwrap()).collect();
        let leaf: Hash = hex::decode(&p.leaf_hash).unwrap().try_into().unwrap();
        assert!(merkle::verify_inclusion(&leaf, 6, expected as u64, &path, &signed.checkpoint.root));
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_that_cannot_commit_is_an_error() {
        let (_tmp, store) = store().await;
        let auditor = Auditor::start(store.clone());
        auditor.append(&[entry(1)]).await.unwrap();
        store.close().await;
        assert!(auditor.append(&[entry(2)]).await.is_err(), "a closed database must fail the append");
    }

    #[tokio::test]
    async fn own_appends_are_found_by_sequence_number_across_gaps() {
        let (tmp, store) = store().await;
        let key = Box::new(confidant_vault::signing::SigningKey::generate().unwrap());
        let leaves: Vec<Hash> = (1u8..=4).map(|i| leaf_hash(&[i])).collect();
        let mut acc = merkle::Accumulator::new();
        leaves.iter().for_each(|l| acc.push(*l));
        // Entries 1, 2, 4, 5 were read: 3 is missing (positions 0, 1, then 2 = entry 4).
        let c = Checkpointer {
            store: store.clone(),
            key,
            origin: "inst".into(),
            witness: Witness::new(tmp.path().join("w")),
            leaves: leaves.clone(),
            acc,
            last_seq: 5,
            runs: vec![(2, 4)],
            latest: None,
            refused: None,
        };
        let positions: Vec<Option<usize>> = (0..=6).map(|seq| c.position_of(seq)).collect();
        assert_eq!(positions, [None, Some(0), Some(1), None, Some(2), Some(3), None]);
        let own = |seq: i64, leaf: &Hash| confidant_store::Appended { seq, leaf_hash: leaf.to_vec() };
        assert_eq!(c.own_appends_kept(&[own(4, &leaves[2]), own(5, &leaves[3])]), None);
        assert_eq!(c.own_appends_kept(&[own(3, &leaves[2])]), Some(Problem::AppendedMissing { seq: 3, entries: 4 }));
        assert_eq!(c.own_appends_kept(&[own(6, &leaves[3])]), Some(Problem::AppendedMissing { seq: 6, entries: 4 }));
        assert_eq!(c.own_appends_kept(&[own(2, &leaves[0])]), Some(Problem::NotAsAppended { seq: 2 }));
        store.close().await;
    }

    #[test]
    fn proofs_refuse_impossible_sizes_and_witness_lines_are_checked() {
        let leaves: Vec<Hash> = (0u8..10).map(|i| leaf_hash(&[i])).collect();
        for (seq, size) in [(0, 5), (6, 5), (1, 11), (11, 10)] {
            assert!(inclusion(&leaves, seq, size).is_none(), "{seq} in {size}");
        }
        assert!(inclusion(&leaves, 10, 10).is_some());
        for (a, b) in [(0, 5), (6, 5), (3, 11)] {
            assert!(consistency(&leaves, a, b).is_none(), "{a} → {b}");
        }
        assert!(consistency(&leaves, 3, 10).is_some());
        let err = parse_witness("\nnot a checkpoint\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_witness("").unwrap().is_empty());
    }
}
