//! Crypto-shredding a patient: their data keys destroyed and their rows
//! deleted in one transaction, with its audit entry. The audit log keeps its
//! entries (ids only, no content).

use sqlx::Row;

use crate::{AuditRow, Result, Store};

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    pub data_keys: u64,
    pub versions: u64,
    pub resources: u64,
    pub search_tokens: u64,
    pub accounts_disabled: u64,
}

impl Store {
    /// Is a legal hold set on this patient?
    pub async fn legal_hold(&self, patient_id: &str) -> Result<bool> {
        let row = sqlx::query(self.sql("SELECT 1 FROM legal_holds WHERE patient_id = ?"))
            .bind(patient_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Set (`true`) or lift a legal hold, with its audit entry; true if it changed.
    pub async fn set_legal_hold(&self, patient_id: &str, hold: bool, now: i64, audit: &[AuditRow]) -> Result<bool> {
        let mut tx = self.begin().await?;
        let changed = if hold {
            sqlx::query(self.sql(
                "INSERT INTO legal_holds (patient_id, placed_at) VALUES (?, ?) ON CONFLICT (patient_id) DO NOTHING",
            ))
            .bind(patient_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query(self.sql("DELETE FROM legal_holds WHERE patient_id = ?"))
                .bind(patient_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        };
        self.commit_with_audit(tx, audit).await?;
        Ok(changed == 1)
    }

    /// Record an erasure request under the hash of its approval code.
    pub async fn insert_erasure_request(
        &self,
        code_hash: &[u8],
        patient_id: &str,
        requested_by: &str,
        expires_at: i64,
        audit: &[AuditRow],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            self.sql(
                "INSERT INTO erasure_requests (code_hash, patient_id, requested_by, expires_at) VALUES (?, ?, ?, ?)",
            ),
        )
        .bind(code_hash)
        .bind(patient_id)
        .bind(requested_by)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        self.commit_with_audit(tx, audit).await?;
        Ok(())
    }

    /// The unused, unexpired request with this code hash: (patient id, requested by).
    pub async fn erasure_request(&self, code_hash: &[u8], now: i64) -> Result<Option<(String, String)>> {
        let row = sqlx::query(self.sql(
            "SELECT patient_id, requested_by FROM erasure_requests WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?",
        ))
        .bind(code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Erase a patient in one transaction: the approval (if any) used up, every
    /// data key of theirs destroyed, every version, head and search token of their
    /// records deleted, their care-team and break-glass rows deleted, their
    /// account disabled (found by `account_token`, the blind token of its
    /// patient link), and `audit` appended. Nothing if `patient_id` is held.
    pub async fn erase_patient(
        &self,
        patient_id: &str,
        account_token: &[u8],
        approval_hash: Option<&[u8]>,
        now: i64,
        audit: &[AuditRow],
    ) -> Result<Erased> {
        let mut tx = self.begin().await?;
        // The approval first: it takes SQLite's write lock, and a used code fails here.
        if let Some(h) = approval_hash {
            let used = sqlx::query(self.sql(
                "UPDATE erasure_requests SET used_at = ? WHERE code_hash = ? AND patient_id = ? AND used_at IS NULL AND expires_at > ?",
            ))
            .bind(now)
            .bind(h)
            .bind(patient_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if used != 1 {
                return Err(crate::StoreError::Conflict);
            }
        }
        let held = sqlx::query(self.sql("SELECT 1 FROM legal_holds WHERE patient_id = ?"))
            .bind(patient_id)
            .fetch_optional(&mut *tx)
            .await?;
        if held.is_some() {
            return Err(crate::StoreError::Database("a legal hold is set on this patient".into()));
        }
        let mut erased = Erased::default();
        let by_compartment = |table: &'static str| {
            format!(
                "DELETE FROM search_tokens WHERE (resource_type, id) IN \
                 (SELECT resource_type, id FROM {table} WHERE compartment = ?)"
            )
        };
        erased.search_tokens = sqlx::query(self.sql(by_compartment("resource_heads")))
            .bind(patient_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        erased.versions = sqlx::query(self.sql("DELETE FROM resource_versions WHERE compartment = ?"))
            .bind(patient_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        erased.resources = sqlx::query(self.sql("DELETE FROM resource_heads WHERE compartment = ?"))
            .bind(patient_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        erased.data_keys = sqlx::query(self.sql("DELETE FROM data_keys WHERE compartment = ?"))
            .bind(patient_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for sql in [
            "DELETE FROM care_team_members WHERE patient_id = ?",
            "DELETE FROM break_glass WHERE patient_id = ?",
            "DELETE FROM cosign_requests WHERE patient_id = ?",
        ] {
            sqlx::query(self.sql(sql)).bind(patient_id).execute(&mut *tx).await?;
        }
        erased.accounts_disabled = sqlx::query(self.sql(
            "UPDATE users SET disabled_at = ?, patient_id = NULL, patient_sealed = NULL, patient_token = NULL \
             WHERE patient_token = ? OR patient_id = ?",
        ))
        .bind(now)
        .bind(account_token)
        .bind(patient_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.commit_with_audit(tx, audit).await?;
        Ok(erased)
    }

    /// Patients whose last encounter (or, without one, the last change to any of
    /// their records) is before `cutoff` (Unix ms): (patient id, that time), oldest first.
    pub async fn patients_inactive_since(&self, cutoff: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(self.sql(
            "SELECT p.id, COALESCE( \
                 (SELECT MAX(e.last_updated) FROM resource_heads e WHERE e.resource_type = 'Encounter' AND e.compartment = p.id), \
                 (SELECT MAX(r.last_updated) FROM resource_heads r WHERE r.compartment = p.id)) AS last_activity \
             FROM resource_heads p WHERE p.resource_type = 'Patient' \
             AND COALESCE( \
                 (SELECT MAX(e.last_updated) FROM resource_heads e WHERE e.resource_type = 'Encounter' AND e.compartment = p.id), \
                 (SELECT MAX(r.last_updated) FROM resource_heads r WHERE r.compartment = p.id)) < ? \
             ORDER BY last_activity",
        ))
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// SQLite: a consistent copy of the whole database, taken online, into the new
    /// file `path` (`VACUUM INTO`). `None` on PostgreSQL (use `pg_dump`).
    pub async fn snapshot_sqlite(&self, path: &std::path::Path) -> Result<Option<()>> {
        if !self.backend.single_writer() {
            return Ok(None);
        }
        sqlx::query("VACUUM INTO ?").bind(path.to_string_lossy().into_owned()).execute(&self.pool).await?;
        Ok(Some(()))
    }

    /// SQLite's `PRAGMA integrity_check` ("ok", or what is wrong).
    pub async fn sqlite_integrity_check(&self) -> Result<String> {
        let rows = sqlx::query("PRAGMA integrity_check").fetch_all(&self.pool).await?;
        let lines: Vec<String> =
            rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<std::result::Result<_, _>>()?;
        Ok(lines.join("; "))
    }

    /// After an erasure on SQLite: move the WAL into the database file and
    /// truncate it, so that deleted pages (overwritten: `secure_delete`) leave no
    /// copy in the WAL either.
    pub async fn checkpoint_wal(&self) -> Result<()> {
        if self.backend.single_writer() {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        }
        Ok(())
    }
}
