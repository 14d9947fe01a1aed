//! Note templates (the clinic's forms, versioned, no PHI), supervision of
//! clinicians in training, and the co-sign requests waiting for a supervisor.
//! Ids only besides a template's definition (see migration 10).

use sqlx::Row;

use crate::{AuditRow, Result, Store, StoreError};

/// One version of a clinic-defined note template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRow {
    pub id: String,
    pub version: i64,
    /// The definition as JSON (name, sections with titles and prompts).
    pub definition: String,
    pub created_at: i64,
    pub created_by: String,
}

/// A signed note of a trainee waiting for (or given) its supervisor's co-signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignRow {
    pub note_id: String,
    pub patient_id: String,
    /// The supervisor's Practitioner id.
    pub supervisor: String,
    pub requested_at: i64,
    pub cosigned_at: Option<i64>,
}

fn template_row(r: &sqlx::any::AnyRow) -> Result<TemplateRow> {
    Ok(TemplateRow {
        id: r.try_get(0)?,
        version: r.try_get(1)?,
        definition: r.try_get(2)?,
        created_at: r.try_get(3)?,
        created_by: r.try_get(4)?,
    })
}

impl Store {
    /// Store the next version of template `id` (1 if it is new), with its audit
    /// entry made by `audit(version)`, in one transaction; the version stored.
    /// `expected`: the version the change was made from (`None` for a new
    /// template); another version saved meanwhile is a [`StoreError::Conflict`].
    pub async fn insert_template_version(
        &self,
        id: &str,
        expected: Option<i64>,
        definition: &str,
        now: i64,
        created_by: &str,
        audit: impl Fn(i64) -> AuditRow,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        let latest: Option<i64> = sqlx::query(self.sql("SELECT MAX(version) FROM note_templates WHERE id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if latest != expected {
            return Err(StoreError::Conflict);
        }
        let version = latest.unwrap_or(0) + 1;
        sqlx::query(self.sql(
            "INSERT INTO note_templates (id, version, definition, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(id)
        .bind(version)
        .bind(definition)
        .bind(now)
        .bind(created_by)
        .execute(&mut *tx)
        .await?;
        self.commit_with_audit(tx, &[audit(version)]).await?;
        Ok(version)
    }

    /// One version of a template (the latest if `version` is `None`).
    pub async fn template_version(&self, id: &str, version: Option<i64>) -> Result<Option<TemplateRow>> {
        const COLUMNS: &str = "SELECT id, version, definition, created_at, created_by FROM note_templates";
        let row = match version {
            Some(v) => {
                sqlx::query(self.sql(format!("{COLUMNS} WHERE id = ? AND version = ?")))
                    .bind(id)
                    .bind(v)
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(self.sql(format!("{COLUMNS} WHERE id = ? ORDER BY version DESC LIMIT 1")))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(template_row).transpose()
    }

    /// The latest version of every clinic-defined template, by id.
    pub async fn latest_templates(&self) -> Result<Vec<TemplateRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT t.id, t.version, t.definition, t.created_at, t.created_by FROM note_templates t
             WHERE t.version = (SELECT MAX(u.version) FROM note_templates u WHERE u.id = t.id) ORDER BY t.id",
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(template_row).collect()
    }

    /// Set (`Some`) or end the supervision of the clinician `trainee` (Practitioner ids),
    /// with its audit entry.
    pub async fn set_supervisor(
        &self,
        trainee: &str,
        supervisor: Option<&str>,
        now: i64,
        audit: &[AuditRow],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(self.sql("DELETE FROM supervisions WHERE trainee = ?")).bind(trainee).execute(&mut *tx).await?;
        if let Some(s) = supervisor {
            sqlx::query(self.sql("INSERT INTO supervisions (trainee, supervisor, set_at) VALUES (?, ?, ?)"))
                .bind(trainee)
                .bind(s)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        self.commit_with_audit(tx, audit).await
    }

    /// The supervisor (Practitioner id) of the clinician `trainee`, if they are in training.
    pub async fn supervisor_of(&self, trainee: &str) -> Result<Option<String>> {
        let row = sqlx::query(self.sql("SELECT supervisor FROM supervisions WHERE trainee = ?"))
            .bind(trainee)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Every supervision, as (trainee, supervisor) Practitioner ids.
    pub async fn supervisions(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(self.sql("SELECT trainee, supervisor FROM supervisions ORDER BY trainee"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Record that note `note_id` waits for `supervisor`'s co-signature (kept if it is there already).
    pub async fn request_cosign(&self, note_id: &str, patient_id: &str, supervisor: &str, now: i64) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO cosign_requests (note_id, patient_id, supervisor, requested_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (note_id) DO NOTHING",
        ))
        .bind(note_id)
        .bind(patient_id)
        .bind(supervisor)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Mark note `note_id`'s co-sign request done.
    pub async fn cosigned(&self, note_id: &str, now: i64) -> Result<()> {
        sqlx::query(self.sql("UPDATE cosign_requests SET cosigned_at = ? WHERE note_id = ? AND cosigned_at IS NULL"))
            .bind(now)
            .bind(note_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The notes waiting for `supervisor`'s co-signature, oldest first.
    pub async fn cosign_requests_for(&self, supervisor: &str) -> Result<Vec<CosignRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT note_id, patient_id, supervisor, requested_at, cosigned_at FROM cosign_requests
             WHERE supervisor = ? AND cosigned_at IS NULL ORDER BY requested_at, note_id",
        ))
        .bind(supervisor)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CosignRow {
                    note_id: r.try_get(0)?,
                    patient_id: r.try_get(1)?,
                    supervisor: r.try_get(2)?,
                    requested_at: r.try_get(3)?,
                    cosigned_at: r.try_get(4)?,
                })
            })
            .collect()
    }
}
