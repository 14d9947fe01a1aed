//! Staff security training (migration 11): the modules in force (JSON, no
//! PHI), each staff member's passes and the modules assigned to them. User
//! ids and module keys only; every change commits with its audit entry.

use sqlx::Row;

use crate::{AuditRow, Result, Store, StoreError};

/// A module at its current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingModuleRow {
    pub module_key: String,
    pub version: i64,
    /// Comma-separated roles (`all`, `clinician,reception`).
    pub roles: String,
    /// The module as JSON (page, questions, pass mark).
    pub definition: String,
    /// Since when this version is the one asked for.
    pub active_since: i64,
    /// `built-in` or `import`.
    pub source: String,
}

/// A pass of one version of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingCompletionRow {
    pub user_id: String,
    pub module_key: String,
    pub version: i64,
    pub score: i64,
    pub out_of: i64,
    pub passed_at: i64,
}

/// A module assigned to a user, due from `assigned_at` whatever they passed before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingAssignmentRow {
    pub user_id: String,
    pub module_key: String,
    pub reason: String,
    pub assigned_at: i64,
}

fn completion(r: &sqlx::any::AnyRow) -> Result<TrainingCompletionRow> {
    Ok(TrainingCompletionRow {
        user_id: r.try_get(0)?,
        module_key: r.try_get(1)?,
        version: r.try_get(2)?,
        score: r.try_get(3)?,
        out_of: r.try_get(4)?,
        passed_at: r.try_get(5)?,
    })
}

fn assignment(r: &sqlx::any::AnyRow) -> Result<TrainingAssignmentRow> {
    Ok(TrainingAssignmentRow {
        user_id: r.try_get(0)?,
        module_key: r.try_get(1)?,
        reason: r.try_get(2)?,
        assigned_at: r.try_get(3)?,
    })
}

const COMPLETIONS: &str = "SELECT user_id, module_key, version, score, out_of, passed_at FROM training_completions";
const ASSIGNMENTS: &str = "SELECT user_id, module_key, reason, assigned_at FROM training_assignments";

impl Store {
    /// The modules in force, by key.
    pub async fn training_modules(&self) -> Result<Vec<TrainingModuleRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT module_key, version, roles, definition, active_since, source FROM training_modules ORDER BY module_key",
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrainingModuleRow {
                    module_key: r.try_get(0)?,
                    version: r.try_get(1)?,
                    roles: r.try_get(2)?,
                    definition: r.try_get(3)?,
                    active_since: r.try_get(4)?,
                    source: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// (key, version, roles, active since) of every module in force: what a
    /// staff member's standing needs, without the modules' pages.
    pub async fn training_module_versions(&self) -> Result<Vec<(String, i64, String, i64)>> {
        let rows = sqlx::query(self.sql("SELECT module_key, version, roles, active_since FROM training_modules"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))).collect()
    }

    /// Put new versions of modules in force, with their audit entries, in one
    /// transaction. Each must be newer than the version stored (or new):
    /// otherwise (another import got there first) [`StoreError::Conflict`]
    /// and nothing changes.
    pub async fn put_training_modules(&self, modules: &[TrainingModuleRow], audit: &[AuditRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        for m in modules {
            let stored: Option<i64> =
                sqlx::query(self.sql("SELECT version FROM training_modules WHERE module_key = ?"))
                    .bind(&m.module_key)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            if stored.is_some_and(|v| v >= m.version) {
                return Err(StoreError::Conflict);
            }
            sqlx::query(self.sql("DELETE FROM training_modules WHERE module_key = ?"))
                .bind(&m.module_key)
                .execute(&mut *tx)
                .await?;
            sqlx::query(self.sql(
                "INSERT INTO training_modules (module_key, version, roles, definition, active_since, source)
                 VALUES (?, ?, ?, ?, ?, ?)",
            ))
            .bind(&m.module_key)
            .bind(m.version)
            .bind(&m.roles)
            .bind(&m.definition)
            .bind(m.active_since)
            .bind(&m.source)
            .execute(&mut *tx)
            .await?;
        }
        self.commit_with_audit(tx, audit).await
    }

    /// Record a pass, with its audit entry, in one transaction.
    pub async fn record_training_pass(&self, pass: &TrainingCompletionRow, audit: &[AuditRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(self.sql(
            "INSERT INTO training_completions (user_id, module_key, version, score, out_of, passed_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, module_key, passed_at) DO NOTHING",
        ))
        .bind(&pass.user_id)
        .bind(&pass.module_key)
        .bind(pass.version)
        .bind(pass.score)
        .bind(pass.out_of)
        .bind(pass.passed_at)
        .execute(&mut *tx)
        .await?;
        self.commit_with_audit(tx, audit).await
    }

    /// Assign a module to a user, with its audit entry, in one transaction.
    pub async fn assign_training(&self, a: &TrainingAssignmentRow, audit: &[AuditRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(self.sql(
            "INSERT INTO training_assignments (user_id, module_key, reason, assigned_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id, module_key, assigned_at) DO NOTHING",
        ))
        .bind(&a.user_id)
        .bind(&a.module_key)
        .bind(&a.reason)
        .bind(a.assigned_at)
        .execute(&mut *tx)
        .await?;
        self.commit_with_audit(tx, audit).await
    }

    /// One user's passes and assignments (every user's with `None`), oldest first.
    pub async fn training_records(
        &self,
        user_id: Option<&str>,
    ) -> Result<(Vec<TrainingCompletionRow>, Vec<TrainingAssignmentRow>)> {
        let (completions, assignments) = match user_id {
            Some(u) => (
                sqlx::query(self.sql(format!("{COMPLETIONS} WHERE user_id = ? ORDER BY passed_at")))
                    .bind(u)
                    .fetch_all(&self.pool)
                    .await?,
                sqlx::query(self.sql(format!("{ASSIGNMENTS} WHERE user_id = ? ORDER BY assigned_at")))
                    .bind(u)
                    .fetch_all(&self.pool)
                    .await?,
            ),
            None => (
                sqlx::query(self.sql(format!("{COMPLETIONS} ORDER BY passed_at"))).fetch_all(&self.pool).await?,
                sqlx::query(self.sql(format!("{ASSIGNMENTS} ORDER BY assigned_at"))).fetch_all(&self.pool).await?,
            ),
        };
        Ok((
            completions.iter().map(completion).collect::<Result<_>>()?,
            assignments.iter().map(assignment).collect::<Result<_>>()?,
        ))
    }
}

impl Store {
    /// What decides `user_id`'s training standing, in one statement (it is
    /// asked on every request of a staff member): the module versions in force
    /// as [`Store::training_module_versions`], and the user's completions and
    /// assignments as [`Store::training_records`] gives them.
    pub async fn training_standing_facts(
        &self,
        user_id: &str,
    ) -> Result<(Vec<(String, i64, String, i64)>, Vec<TrainingCompletionRow>, Vec<TrainingAssignmentRow>)> {
        // Every branch has the same columns: kind, module, text, four numbers.
        let rows = sqlx::query(self.sql(
            "SELECT CAST(0 AS BIGINT) AS kind, module_key, roles AS t, version AS a, active_since AS b, \
                    CAST(0 AS BIGINT) AS c, CAST(0 AS BIGINT) AS d FROM training_modules \
             UNION ALL \
             SELECT CAST(1 AS BIGINT), module_key, user_id, version, score, out_of, passed_at \
               FROM training_completions WHERE user_id = ? \
             UNION ALL \
             SELECT CAST(2 AS BIGINT), module_key, reason, CAST(0 AS BIGINT), CAST(0 AS BIGINT), \
                    CAST(0 AS BIGINT), assigned_at FROM training_assignments WHERE user_id = ? \
             ORDER BY kind, d",
        ))
        .bind(user_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let (mut versions, mut completions, mut assignments) = (Vec::new(), Vec::new(), Vec::new());
        for r in &rows {
            let module_key: String = r.try_get(1)?;
            let text: String = r.try_get(2)?;
            let (a, b, c, d): (i64, i64, i64, i64) = (r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?);
            match r.try_get::<i64, _>(0)? {
                0 => versions.push((module_key, a, text, b)),
                1 => completions.push(TrainingCompletionRow {
                    user_id: text,
                    module_key,
                    version: a,
                    score: b,
                    out_of: c,
                    passed_at: d,
                }),
                _ => assignments.push(TrainingAssignmentRow {
                    user_id: user_id.to_owned(),
                    module_key,
                    reason: text,
                    assigned_at: d,
                }),
            }
        }
        Ok((versions, completions, assignments))
    }
}
