//! Per-patient data key rotation: every sealed row of a compartment re-sealed
//! under a new data key version, and the old versions deleted, in one
//! transaction with its audit entry. Writers check, inside their own
//! transaction, that they sealed with the compartment's current key
//! ([`Store::require_current_key`]), so no write can land under a key that a
//! rotation is about to delete.

use sqlx::{Any, Row, Transaction};

use crate::{AuditRow, DataKeyRow, Result, Store, StoreError, VERSION_COLUMNS, VersionRow, version_row};

/// A sealed value of a compartment that a rotation re-seals.
#[derive(Debug)]
pub enum Sealed<'a> {
    /// A stored resource version.
    Version(&'a VersionRow),
    /// The sealed reason of a break-glass access (`id`: the break-glass id).
    BreakGlassReason { id: &'a str, sealed: &'a [u8] },
}

/// What a compartment's key rotation re-sealed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rekeyed {
    pub versions: u64,
    pub break_glass: u64,
    /// Old data key versions deleted.
    pub old_keys: u64,
}

impl Store {
    /// Fail with [`StoreError::StaleKey`] unless `version` is the current data
    /// key version of `compartment`. Called inside a write's transaction after
    /// its first write (so SQLite holds the write lock); on PostgreSQL the key
    /// row is share-locked, so a rotation waits for the write, and a write
    /// that waited for a rotation finds its key gone.
    pub(crate) async fn require_current_key(
        &self,
        tx: &mut Transaction<'static, Any>,
        compartment: &str,
        version: i64,
    ) -> Result<()> {
        let lock = if self.backend.single_writer() { "" } else { " FOR SHARE" };
        let current =
            sqlx::query(self.sql(format!(
                "SELECT version FROM data_keys WHERE compartment = ? ORDER BY version DESC LIMIT 1{lock}"
            )))
            .bind(compartment)
            .fetch_optional(&mut **tx)
            .await?;
        match current {
            Some(r) if r.try_get::<i64, _>(0)? == version => Ok(()),
            _ => Err(StoreError::StaleKey),
        }
    }

    /// Every data key version of a compartment, oldest first.
    pub async fn data_keys_of(&self, compartment: &str) -> Result<Vec<DataKeyRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT compartment, version, kek_version, wrapped FROM data_keys WHERE compartment = ? ORDER BY version",
        ))
        .bind(compartment)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::data_key_row).collect()
    }

    /// Add `new_key` to its compartment, re-seal every sealed row of the
    /// compartment with `reseal` (which opens with the old key and seals with
    /// the new one), delete the older key versions and append `audit`: all in
    /// one transaction, so a crash leaves the old key and rows as they were.
    pub async fn rekey_compartment(
        &self,
        new_key: &DataKeyRow,
        mut reseal: impl FnMut(Sealed<'_>) -> std::result::Result<Vec<u8>, String>,
        audit: &[AuditRow],
        now: i64,
    ) -> Result<Rekeyed> {
        let compartment = new_key.compartment.as_str();
        let mut tx = self.begin().await?;
        if !self.backend.single_writer() {
            // Waits for writes that share-locked the current key, and holds off new ones.
            sqlx::query(self.sql("SELECT version FROM data_keys WHERE compartment = ? FOR UPDATE"))
                .bind(compartment)
                .fetch_all(&mut *tx)
                .await?;
        }
        // On SQLite this first write takes the write lock; a rotation racing
        // another finds the version taken (Conflict) and changes nothing.
        self.insert_data_key_in(&mut tx, new_key, now).await?;
        let mut done = Rekeyed::default();
        let rows =
            sqlx::query(self.sql(format!(
                "SELECT {VERSION_COLUMNS} FROM resource_versions WHERE compartment = ? AND key_version < ?"
            )))
            .bind(compartment)
            .bind(new_key.version)
            .fetch_all(&mut *tx)
            .await?;
        let update = self.sql(
            "UPDATE resource_versions SET body = ?, key_version = ? \
             WHERE resource_type = ? AND id = ? AND version_id = ? AND key_version = ?",
        );
        for r in &rows {
            let row = version_row(r)?;
            let body = reseal(Sealed::Version(&row)).map_err(StoreError::Reseal)?;
            let n = sqlx::query(sqlx::AssertSqlSafe(update.0.clone()))
                .bind(body)
                .bind(new_key.version)
                .bind(row.resource_type.as_str())
                .bind(row.id.as_str())
                .bind(row.version_id)
                .bind(row.key_version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            done.versions += n;
        }
        let reasons = sqlx::query(self.sql("SELECT id, reason_sealed FROM break_glass WHERE patient_id = ?"))
            .bind(compartment)
            .fetch_all(&mut *tx)
            .await?;
        for r in &reasons {
            let (id, sealed): (String, Vec<u8>) = (r.try_get(0)?, r.try_get(1)?);
            let resealed = reseal(Sealed::BreakGlassReason { id: &id, sealed: &sealed }).map_err(StoreError::Reseal)?;
            sqlx::query(self.sql("UPDATE break_glass SET reason_sealed = ? WHERE id = ?"))
                .bind(resealed)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            done.break_glass += 1;
        }
        done.old_keys = sqlx::query(self.sql("DELETE FROM data_keys WHERE compartment = ? AND version < ?"))
            .bind(compartment)
            .bind(new_key.version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.commit_with_audit(tx, audit).await?;
        Ok(done)
    }
}
