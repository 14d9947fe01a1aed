//! The audit log's rows. The store appends and reads them; what an entry
//! means, how it is hashed and how the log is verified live in the audit crate.
//!
//! Sequence numbers are assigned so that one append at a time, across every
//! process, gets the next numbers, and the numbers become visible in order:
//! readers never see a gap that fills in later.
//!
//! * PostgreSQL (several nodes): an append first increments the one-row
//!   `audit_head` (`UPDATE … RETURNING`), taking its row lock until commit.
//! * SQLite (one writer at a time by design): the append is a single INSERT
//!   that numbers its rows after `MAX(seq)`; SQLite holds its write lock for
//!   the whole statement, and a trigger keeps `audit_head` in step.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

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

impl Store {
    /// Append `rows` and return once they are committed.
    ///
    /// On SQLite this is one statement in its own implicit transaction (one
    /// round trip, one fsync): SQLite takes its single write lock when the
    /// statement starts, so the numbers it reads and writes cannot race, and
    /// a trigger moves the head along. On PostgreSQL several nodes append at
    /// once, so the head row is locked first (see the module comment).
    pub async fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.backend.single_writer() {
            for chunk in rows.chunks(INSERT_CHUNK) {
                self.sqlite_insert(chunk).execute(&self.pool).await?;
            }
            return Ok(());
        }
        let mut tx = self.begin().await?;
        self.append_audit_in(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Append `rows` inside a caller's transaction (a record write and its
    /// audit entries commit together or not at all). Take this lock last in
    /// a transaction: nothing waits for another lock while holding it.
    pub(crate) async fn append_audit_in(&self, tx: &mut Transaction<'static, Any>, rows: &[AuditRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.backend.single_writer() {
            for chunk in rows.chunks(INSERT_CHUNK) {
                self.sqlite_insert(chunk).execute(&mut **tx).await?;
            }
            return Ok(());
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
            for (i, r) in chunk.iter().enumerate() {
                q = q.bind(first + (c * INSERT_CHUNK + i) as i64);
                q = bind_row(q, r);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// SQLite: one INSERT numbering `rows` after the current last entry.
    /// The scalar subquery is evaluated once, before any row is inserted.
    fn sqlite_insert<'q>(&self, rows: &'q [AuditRow]) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
        let values: Vec<String> = (1..=rows.len()).map(|i| format!("({i}, ?, ?, ?, ?, ?, ?)")).collect();
        let sql = format!(
            "INSERT INTO audit_log ({AUDIT_COLUMNS}) \
             SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_log) + v.column1, \
                    v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 \
             FROM (VALUES {}) v",
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
        let rows =
            sqlx::query(self.sql(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?")))
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
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > 0 AND seq < ?");
        let mut strs: Vec<&str> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Binds go in this order: every text condition, then every number.
        for (column, value) in [("patient", &filter.patient), ("actor", &filter.actor), ("action", &filter.action)] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                strs.push(v);
            }
        }
        for (condition, value) in [(" AND at >= ?", filter.from), (" AND at < ?", filter.until)] {
            if let Some(v) = value {
                sql.push_str(condition);
                ints.push(v);
            }
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        let mut q = sqlx::query(self.sql(sql)).bind(before.unwrap_or(i64::MAX));
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
