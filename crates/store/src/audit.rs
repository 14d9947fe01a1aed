//! The audit log's rows. The store appends and reads them; what an entry
//! means, how it is hashed and how the log is verified live in the audit crate.
//!
//! Sequence numbers are assigned so that one append at a time, across every
//! process, gets the next numbers, and the numbers become visible in order:
//! readers never see a gap that fills in later.
//!
//! * PostgreSQL (several nodes): an append first increments the one-row
//!   `audit_head` (`UPDATE … RETURNING`), taking its row lock until commit.
//! * SQLite (one writer at a time by design): each INSERT numbers its rows
//!   after `MAX(seq)`; SQLite holds its write lock from that statement to the
//!   commit, and a trigger keeps `audit_head` in step.
//!
//! Every append reads its rows back in its own transaction before the commit
//! and fails (committing nothing) unless each is there as written: a trigger
//! or rule planted in the database to delete or rewrite new entries makes the
//! read that needed them fail closed instead of returning data unaudited.
//! What was committed is remembered for the checkpointer ([`Store::take_appended`]).

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::LIMIT_BOUND;
use crate::{Result, Store, StoreError};

/// One audit entry to append: its bytes, their RFC 6962 leaf hash, and the
/// fields repeated beside it for searching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub entry: Vec<u8>,
    pub leaf_hash: Vec<u8>,
    /// Unix time in milliseconds.
    pub at: i64,
    /// The acting user's id.
    pub actor: Option<String>,
    /// The patient whose data was touched (a random id).
    pub patient: Option<String>,
    pub action: String,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAudit {
    pub seq: i64,
    pub row: AuditRow,
}

/// Which entries an audit search wants. Conditions are ANDed.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub patient: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// From this time (Unix ms, inclusive).
    pub from: Option<i64>,
    /// Until this time (Unix ms, exclusive).
    pub until: Option<i64>,
    /// Any of these actors (with `actor`: both must hold), if not empty.
    pub actors: Vec<String>,
    /// Any of these actions (with `action`: both must hold), if not empty.
    pub actions: Vec<String>,
    /// Oldest first, the cursor then being the last sequence number seen.
    pub ascending: bool,
}

/// Rows per INSERT statement when appending a batch.
const INSERT_CHUNK: usize = 64;
const AUDIT_COLUMNS: &str = "seq, entry, leaf_hash, at, actor, patient, action";

fn bind_row<'q>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    r: &'q AuditRow,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    q.bind(r.entry.as_slice())
        .bind(r.leaf_hash.as_slice())
        .bind(r.at)
        .bind(r.actor.as_deref())
        .bind(r.patient.as_deref())
        .bind(r.action.as_str())
}

fn stored_audit(r: &AnyRow) -> Result<StoredAudit> {
    Ok(StoredAudit {
        seq: r.try_get(0)?,
        row: AuditRow {
            entry: r.try_get(1)?,
            leaf_hash: r.try_get(2)?,
            at: r.try_get(3)?,
            actor: r.try_get(4)?,
            patient: r.try_get(5)?,
            action: r.try_get(6)?,
        },
    })
}

/// An audit entry this process committed: its sequence number and the leaf
/// hash it was written with. The checkpointer compares these with the log
/// before it signs, so that a row rewritten or deleted in the database after
/// its append is never vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub leaf_hash: Vec<u8>,
}

/// What [`Store::take_appended`] hands over, bounded so that a process with
/// no checkpointer (a benchmark, a long import) does not grow without end.
#[derive(Debug, Default)]
pub(crate) struct AppendedLog {
    entries: Vec<Appended>,
    /// Entries forgotten because nobody took them in time.
    dropped: u64,
}

/// Appended entries kept for the checkpointer at most (40 bytes and a
/// vector each: about 64 MB). A serving node checkpoints long before.
const MAX_APPENDED_KEPT: usize = 1_000_000;

/// Changes that commit together with the audit entries that record them: a
/// security event (a login, an account change, a new token) never commits
/// without its entry, nor its entry without it. Open one with
/// [`Store::audited`], make the changes, then [`Audited::commit`] with the
/// entries; dropped without a commit, nothing happened. Compute everything
/// slow (password hashes, sealing) before opening one: it may hold the
/// database's write lock.
pub struct Audited<'s> {
    pub(crate) store: &'s Store,
    pub(crate) tx: Transaction<'static, Any>,
}

impl std::fmt::Debug for Audited<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Audited({:?})", self.store)
    }
}

impl Audited<'_> {
    /// Append `rows` and commit them with the changes, or commit nothing.
    pub async fn commit(self, rows: &[AuditRow]) -> Result<()> {
        self.store.commit_with_audit(self.tx, rows).await
    }
}

impl Store {
    /// Append `rows` and return once they are committed.
    ///
    /// One transaction (one fsync) for the whole batch. On SQLite the write
    /// lock is taken by the first INSERT, so the numbers it reads and writes
    /// cannot race, and a trigger moves the head along. On PostgreSQL several
    /// nodes append at once, so the head row is locked first (see the module
    /// comment). Either way the rows are read back before the commit.
    pub async fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.begin().await?;
        self.commit_with_audit(tx, rows).await
    }

    /// Begin changes that commit with their audit entries ([`Audited`]).
    pub async fn audited(&self) -> Result<Audited<'_>> {
        Ok(Audited { store: self, tx: self.begin().await? })
    }

    /// Append `rows` inside a caller's transaction and commit it: a record
    /// write and its audit entries commit together or not at all. The entries
    /// are read back first; if the database did not keep them as written
    /// (a trigger deleted or changed them), nothing is committed.
    pub(crate) async fn commit_with_audit(&self, mut tx: Transaction<'static, Any>, rows: &[AuditRow]) -> Result<()> {
        let appended = self.append_audit_in(&mut tx, rows).await?;
        tx.commit().await?;
        self.note_appended(appended);
        Ok(())
    }

    /// Append `rows` in `tx` and check them as stored. Take this lock last in
    /// a transaction: nothing waits for another lock while holding it.
    async fn append_audit_in(&self, tx: &mut Transaction<'static, Any>, rows: &[AuditRow]) -> Result<Vec<Appended>> {
        let mut appended = Vec::with_capacity(rows.len());
        if rows.is_empty() {
            return Ok(appended);
        }
        if self.backend.single_writer() {
            for chunk in rows.chunks(INSERT_CHUNK) {
                let seqs: Vec<i64> = self
                    .sqlite_insert(chunk)
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<std::result::Result<_, _>>()?;
                // A trigger that swallows the insert (RAISE(IGNORE)) returns fewer rows.
                let first = seqs.iter().copied().min().unwrap_or(0);
                if seqs.len() != chunk.len() {
                    return Err(StoreError::AuditNotKept { seq: first });
                }
                appended.extend(self.read_back(tx, first, chunk).await?);
            }
            return Ok(appended);
        }
        let n = rows.len() as i64;
        let size: i64 = sqlx::query(self.sql("UPDATE audit_head SET size = size + ? WHERE id = 1 RETURNING size"))
            .bind(n)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::Database("audit_head is missing its row".into()))?
            .try_get(0)?;
        let first = size - n + 1;
        for (c, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
            let marks = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES {marks}");
            let mut q = sqlx::query(self.sql(sql));
            let chunk_first = first + (c * INSERT_CHUNK) as i64;
            for (i, r) in chunk.iter().enumerate() {
                q = q.bind(chunk_first + i as i64);
                q = bind_row(q, r);
            }
            q.execute(&mut **tx).await?;
            appended.extend(self.read_back(tx, chunk_first, chunk).await?);
        }
        Ok(appended)
    }

    /// Read `rows`, just appended from sequence number `first` on, back in the
    /// same transaction and check that each is there exactly as written.
    async fn read_back(
        &self,
        tx: &mut Transaction<'static, Any>,
        first: i64,
        rows: &[AuditRow],
    ) -> Result<Vec<Appended>> {
        let last = first + rows.len() as i64 - 1;
        let stored = sqlx::query(
            self.sql(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq >= ? AND seq <= ? ORDER BY seq")),
        )
        .bind(first)
        .bind(last)
        .fetch_all(&mut **tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (i, written) in rows.iter().enumerate() {
            let seq = first + i as i64;
            let kept = stored.get(i).map(stored_audit).transpose()?;
            if kept.as_ref().is_none_or(|k| k.seq != seq || k.row != *written) {
                return Err(StoreError::AuditNotKept { seq });
            }
            out.push(Appended { seq, leaf_hash: written.leaf_hash.clone() });
        }
        if stored.len() != rows.len() {
            return Err(StoreError::AuditNotKept { seq: last });
        }
        Ok(out)
    }

    fn note_appended(&self, appended: Vec<Appended>) {
        let mut log = match self.appended.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        log.entries.extend(appended);
        if log.entries.len() > MAX_APPENDED_KEPT {
            let excess = log.entries.len() - MAX_APPENDED_KEPT;
            log.entries.drain(..excess);
            log.dropped += excess as u64;
        }
    }

    /// The entries this process committed since the last call, in commit
    /// order, and how many older ones were forgotten because nobody took them.
    pub fn take_appended(&self) -> (Vec<Appended>, u64) {
        let mut log = match self.appended.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let dropped = std::mem::take(&mut log.dropped);
        (std::mem::take(&mut log.entries), dropped)
    }

    /// SQLite: one INSERT numbering `rows` after the current last entry,
    /// returning the numbers given. The scalar subquery is evaluated once,
    /// before any row is inserted.
    fn sqlite_insert<'q>(&self, rows: &'q [AuditRow]) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
        let values: Vec<String> = (1..=rows.len()).map(|i| format!("({i}, ?, ?, ?, ?, ?, ?)")).collect();
        let sql = format!(
            "INSERT INTO audit_log ({AUDIT_COLUMNS}) \
             SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_log) + v.column1, \
                    v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 \
             FROM (VALUES {}) v RETURNING seq",
            values.join(", ")
        );
        let mut q = sqlx::query(self.sql(sql));
        for r in rows {
            q = bind_row(q, r);
        }
        q
    }

    /// The number of entries the log claims to hold.
    pub async fn audit_size(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT size FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// How many rows the table holds, and their smallest and largest sequence
    /// numbers: `verify` compares them with what it read in order, so that a
    /// row numbered outside 1..=n (which a paged read never meets) is caught.
    pub async fn audit_extent(&self) -> Result<(i64, Option<i64>, Option<i64>)> {
        let r = sqlx::query("SELECT COUNT(*), MIN(seq), MAX(seq) FROM audit_log").fetch_one(&self.pool).await?;
        Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
    }

    /// Entries with `seq > after`, in sequence order, at most `limit`.
    pub async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<StoredAudit>> {
        let rows = sqlx::query(
            self.sql(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT {LIMIT_BOUND}")),
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_audit).collect()
    }

    /// One entry by its sequence number.
    pub async fn audit_entry(&self, seq: i64) -> Result<Option<StoredAudit>> {
        let row = sqlx::query(self.sql(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq = ?")))
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_audit).transpose()
    }

    /// Entries matching `filter`, newest first, with `seq < before`, at most `limit`.
    pub async fn audit_search(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredAudit>> {
        let (cursor, order, start) = if filter.ascending {
            ("seq > ?", "ASC", before.unwrap_or(0))
        } else {
            ("seq < ?", "DESC", before.unwrap_or(i64::MAX))
        };
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > 0 AND {cursor}");
        let mut strs: Vec<&str> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Binds go in this order: every text condition, then every number.
        for (column, value) in [("patient", &filter.patient), ("actor", &filter.actor), ("action", &filter.action)] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                strs.push(v);
            }
        }
        for (column, values) in [("actor", &filter.actors), ("action", &filter.actions)] {
            if !values.is_empty() {
                sql.push_str(&format!(" AND {column} IN ({})", vec!["?"; values.len()].join(", ")));
                strs.extend(values.iter().map(String::as_str));
            }
        }
        for (condition, value) in [(" AND at >= ?", filter.from), (" AND at < ?", filter.until)] {
            if let Some(v) = value {
                sql.push_str(condition);
                ints.push(v);
            }
        }
        sql.push_str(&format!(" ORDER BY seq {order} LIMIT {LIMIT_BOUND}"));
        let mut q = sqlx::query(self.sql(sql)).bind(start);
        for s in strs {
            q = q.bind(s);
        }
        for i in ints {
            q = q.bind(i);
        }
        let rows = q.bind(limit.max(0)).fetch_all(&self.pool).await?;
        rows.iter().map(stored_audit).collect()
    }

    /// Record a signed checkpoint line (the witness file is the authority;
    /// this copy lets any node serve the latest one).
    pub async fn insert_audit_checkpoint(&self, line: &str, size: i64, now: i64) -> Result<()> {
        let r = sqlx::query(self.sql("INSERT INTO audit_checkpoints (line, size, created_at) VALUES (?, ?, ?)"))
            .bind(line)
            .bind(size)
            .bind(now)
            .execute(&self.pool)
            .await;
        match r {
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Every checkpoint line recorded in the database.
    pub async fn audit_checkpoint_lines(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT line FROM audit_checkpoints ORDER BY size").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The signed checkpoint line covering the most entries, if any.
    pub async fn latest_audit_checkpoint(&self) -> Result<Option<String>> {
        let row = sqlx::query("SELECT line FROM audit_checkpoints ORDER BY size DESC, created_at DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(i: u8) -> AuditRow {
        AuditRow {
            entry: vec![b'e', i],
            leaf_hash: vec![i; 32],
            at: i64::from(i),
            actor: Some("u".into()),
            patient: None,
            action: "read".into(),
        }
    }

    async fn sqlite() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", tmp.path().join("a.db").display()), true).await.unwrap();
        store.migrate().await.unwrap();
        (tmp, store)
    }

    #[tokio::test]
    async fn appends_are_read_back_and_remembered_for_the_checkpointer() {
        let (_tmp, store) = sqlite().await;
        store.append_audit(&[row(1), row(2)]).await.unwrap();
        let (taken, forgotten) = store.take_appended();
        assert_eq!(forgotten, 0);
        assert_eq!(taken.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(taken[1].leaf_hash, vec![2; 32]);
        assert!(store.take_appended().0.is_empty(), "taken once");
        // A trigger that deletes new entries: the append fails and commits nothing.
        sqlx::raw_sql(
            "CREATE TRIGGER hide AFTER INSERT ON audit_log BEGIN DELETE FROM audit_log WHERE seq = NEW.seq; END;",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let err = store.append_audit(&[row(3)]).await.unwrap_err();
        assert!(matches!(err, StoreError::AuditNotKept { seq: 3 }), "{err}");
        assert_eq!(store.audit_size().await.unwrap(), 2, "nothing committed");
        assert!(store.take_appended().0.is_empty());
        // One that rewrites them is caught the same way.
        sqlx::raw_sql(
            "DROP TRIGGER hide; CREATE TRIGGER hide AFTER INSERT ON audit_log \
             BEGIN UPDATE audit_log SET actor = 'x' WHERE seq = NEW.seq; END;",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        assert!(matches!(store.append_audit(&[row(3)]).await, Err(StoreError::AuditNotKept { .. })));
        let names: Vec<String> = store.foreign_schema_objects().await.unwrap().iter().map(|o| o.to_string()).collect();
        assert_eq!(names, vec!["trigger hide on audit_log"]);
        store.close().await;
    }
}
