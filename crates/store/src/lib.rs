//! Storage: where sealed records, wrapped keys and blind tokens are kept.
//!
//! The store sees only ciphertext ([`VersionRow::body`]), wrapped keys and
//! blind tokens, plus the plaintext envelope DESIGN.md §8 allows: resource
//! type, random id, version, owning compartment (a random patient id) and
//! timestamps. It has no way to decrypt anything, and it must stay so.
//!
//! One [`Store`] runs on either backend through the [`Backend`] trait, which
//! holds everything that differs between SQLite and PostgreSQL (connection
//! set-up, DDL types, placeholder syntax). The SQL itself is shared, so both
//! backends run the same statements and the same test suite.
//!
//! Over 600 lines because it is the one statement list of the record tables (versions,
//! heads, tokens, care teams, settings, data keys) and the transactions that write them with
//! their audit rows; the other table families have their own modules.
#![forbid(unsafe_code)]

mod alerts;
mod audit;
mod backend;
mod erasure;
mod identity;
// phishing drills
mod phishing;
mod reindex;
mod rekey;
mod schema;
// SMART App Launch: apps, authorization codes, which app a token was given to.
mod smart;
mod snapshot;
mod templates;
// Staff security training: modules, completions, assignments.
mod training;
// A record read with the caller's relationship to its patient, in one statement.
mod related;

use std::fmt::Write as _;

use std::borrow::Cow;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, AssertSqlSafe, Row, Transaction};

pub use alerts::{AlertRow, Sink};
pub use audit::{Appended, AuditFilter, AuditRow, Audited, StoredAudit};
pub use backend::{Backend, PostgresBackend, SqliteBackend};
pub use erasure::Erased;
pub use identity::{ApiTokenAuth, ApiTokenRow, PasskeyRow, SessionRow, ThrottleRow, UserRow};
// phishing drills
pub use phishing::{PhishCampaignRow, PhishEvent, PhishRecipientRow};
pub use rekey::{Rekeyed, Sealed};
pub use schema::ForeignObject;
pub use smart::{AppTokenRow, OAuthCodeRow, SmartAppRow};
pub use snapshot::{Cell, Column, Kind, SNAPSHOT_MAGIC, Snapshot, TableRows};
pub use templates::{CosignRow, TemplateRow};
pub use training::{TrainingAssignmentRow, TrainingCompletionRow, TrainingModuleRow};

/// Errors from the store. Messages name tables and operations, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The resource changed since the version the caller expected, or already exists.
    #[error("conflict: the resource was changed concurrently")]
    Conflict,
    /// The database could not be reached or refused the operation.
    #[error("database error: {0}")]
    Database(String),
    /// The database schema is newer than this build understands.
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade Confidant")]
    SchemaTooNew { found: i64, supported: i64 },
    /// A write was sealed with a data key that a rotation has replaced; seal
    /// again with the current one. Nothing was written.
    #[error("the data key was rotated meanwhile; nothing was written")]
    StaleKey,
    /// A rotation could not re-seal a row; nothing was changed.
    #[error("a record could not be re-sealed ({0}); nothing was changed")]
    Reseal(String),
    /// An audit entry read back in its own transaction is not what was
    /// written (a trigger or rule in the database deleted or changed it).
    /// Nothing was committed.
    #[error(
        "SECURITY ALERT: the audit log did not keep entry {seq} as written: the database was tampered with (look for triggers or rules on audit_log); nothing was committed"
    )]
    AuditNotKept { seq: i64 },
    /// A restore's target already holds tables. Nothing was changed.
    #[error(
        "the target database already holds {tables} tables: a restore goes only into an empty database or schema (create one, e.g. CREATE DATABASE clinic_restored); nothing was changed"
    )]
    NotEmpty { tables: usize },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error() {
            if db.is_unique_violation() {
                return StoreError::Conflict;
            }
            // Driver messages describe the statement or constraint, never bound values.
            return StoreError::Database(db.message().to_owned());
        }
        StoreError::Database(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One stored version of a resource. `body` is a sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    /// The owning compartment: a patient id, or [`ORGANISATION`].
    pub compartment: String,
    /// The data key version that sealed `body`.
    pub key_version: i64,
    /// Unix time in milliseconds.
    pub last_updated: i64,
    pub body: Vec<u8>,
    /// For an unreleased psychotherapy note: the authoring practitioner's id.
    pub restricted_to: Option<String>,
    /// A note shared with the patient.
    pub patient_visible: bool,
}

/// One write of a resource version, with what must change with it atomically.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub row: &'a VersionRow,
    /// Blind-index tokens of this version (replacing the previous version's).
    pub tokens: &'a [SearchToken],
    /// The data key of a new compartment (a new patient).
    pub new_key: Option<&'a DataKeyRow>,
    /// For a CareTeam: the practitioners it now makes members of the patient's care.
    pub care_team: Option<&'a [CareTeamMember]>,
}

/// One practitioner's membership of a patient's care, from `starts_at`
/// (inclusive) until `ends_at` (exclusive), Unix ms; `None` is open-ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareTeamMember {
    pub practitioner_id: String,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
}

/// A bound `LIMIT`, for every query of the store that has one. Not a bare `?`:
/// SQLite marks a bare bound LIMIT as one that may change the plan, and then
/// prepares the statement again at every execution (measured: two thirds of a
/// search's instructions in SQLite); a cast is a value like any other.
/// PostgreSQL takes both alike.
pub(crate) const LIMIT_BOUND: &str = "CAST(? AS BIGINT)";

/// A membership row that counts at a time bound (as `?`) after it.
// Care-team membership is tested per row with EXISTS on (practitioner_id,
// patient_id), not with `IN (SELECT ...)`, which lists all of a
// practitioner's patients at every search.
const CURRENT_MEMBER: &str = "(c.starts_at IS NULL OR c.starts_at <= ?) AND (c.ends_at IS NULL OR c.ends_at > ?)";

/// The compartment of resources that belong to no patient (e.g. Practitioner).
pub const ORGANISATION: &str = "_organisation";

/// A blind-index entry of the current version of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchToken {
    pub param: &'static str,
    pub token: Vec<u8>,
}

/// One condition of a search. Conditions are ANDed.
#[derive(Debug, Clone)]
pub enum Criterion {
    /// The resource has a token for `param` equal to any of `tokens`.
    Token { param: &'static str, tokens: Vec<Vec<u8>> },
    /// The resource belongs to this compartment (patient).
    Compartment(String),
    /// The resource has this id.
    Id(String),
    /// Access: records of patients on this practitioner's care teams (an
    /// unreleased psychotherapy note only for its author), or under an active
    /// break-glass of this user.
    CareTeam { practitioner_id: String, user_id: String, now: i64 },
    /// Access: this patient's own Patient resource and the notes shared with them.
    OwnRecord { patient_id: String },
}

/// A stored, wrapped data key.
#[derive(Debug, Clone)]
pub struct DataKeyRow {
    pub compartment: String,
    pub version: i64,
    pub kek_version: i64,
    pub wrapped: Vec<u8>,
}

/// Where a page of search results starts: after an id, or (backwards) before one.
#[derive(Debug, Clone, Copy)]
enum Cursor<'a> {
    After(&'a str),
    Before(&'a str),
}

/// The store over one database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: &'static dyn Backend,
    /// Audit entries this process committed, as written, until the
    /// checkpointer takes them ([`Store::take_appended`]).
    appended: std::sync::Arc<std::sync::Mutex<audit::AppendedLog>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend.name())
    }
}

const VERSION_COLUMNS: &str = "resource_type, id, version_id, compartment, key_version, last_updated, body, \
     restricted_to, patient_visible";
const VERSION_COLUMNS_V: &str = "v.resource_type, v.id, v.version_id, v.compartment, v.key_version, v.last_updated, \
     v.body, v.restricted_to, v.patient_visible";

/// `compartment, version, kek_version, wrapped` → a [`DataKeyRow`].
fn data_key_row(r: &AnyRow) -> Result<DataKeyRow> {
    Ok(DataKeyRow {
        compartment: r.try_get(0)?,
        version: r.try_get(1)?,
        kek_version: r.try_get(2)?,
        wrapped: r.try_get(3)?,
    })
}

fn version_row(r: &AnyRow) -> Result<VersionRow> {
    Ok(VersionRow {
        resource_type: r.try_get(0)?,
        id: r.try_get(1)?,
        version_id: r.try_get(2)?,
        compartment: r.try_get(3)?,
        key_version: r.try_get(4)?,
        last_updated: r.try_get(5)?,
        body: r.try_get(6)?,
        restricted_to: r.try_get(7)?,
        patient_visible: r.try_get::<i64, _>(8)? != 0,
    })
}

impl Store {
    /// Connect to `url` (`sqlite://PATH` or `postgres://...`). Does not create
    /// or migrate anything: see [`Store::migrate`].
    pub async fn connect(url: &str, create: bool) -> Result<Store> {
        let backend = backend::for_url(url)?;
        let pool = backend.connect(url, create).await?;
        Ok(Store { pool, backend, appended: Default::default() })
    }

    /// The connection pool: connections open, and of them idle (for `/metrics`).
    pub fn pool_usage(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Which backend this store runs on (`sqlite` or `postgres`).
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The schema version the database is at (0: no schema yet), and the one
    /// this build brings it to.
    pub async fn schema_versions(&self) -> Result<(i64, i64)> {
        schema::versions(&self.pool).await
    }

    /// Bring the schema up to date. Idempotent.
    pub async fn migrate(&self) -> Result<()> {
        schema::migrate(&self.pool, self.backend).await
    }

    /// Triggers, views, rules and row policies the migrations did not create
    /// (an empty list on a sound database). `serve` refuses to start while
    /// there are any; `confidant doctor` lists them.
    pub async fn foreign_schema_objects(&self) -> Result<Vec<ForeignObject>> {
        schema::foreign_objects(&self.pool, self.backend).await
    }

    /// Close every connection (SQLite then checkpoints and removes its WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Every statement is assembled in this crate from constant fragments;
    /// values are always bound, never spliced, which is what makes this assertion true.
    fn sql(&self, q: impl Into<Cow<'static, str>>) -> AssertSqlSafe<Cow<'static, str>> {
        AssertSqlSafe(match q.into() {
            Cow::Borrowed(s) => self.backend.placeholders(s),
            Cow::Owned(s) => Cow::Owned(self.backend.placeholders(&s).into_owned()),
        })
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(self.pool.begin().await?)
    }

    // ----- instance settings and keys -------------------------------------------------

    /// A named instance value (e.g. the instance id, a wrapped instance key).
    pub async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query(self.sql("SELECT value FROM instance_settings WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// When a named instance value was stored (Unix ms).
    pub async fn setting_created(&self, name: &str) -> Result<Option<i64>> {
        let row = sqlx::query(self.sql("SELECT created_at FROM instance_settings WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Store a named instance value once; a second insert is a [`StoreError::Conflict`].
    pub async fn insert_setting(&self, name: &str, value: &[u8], now: i64) -> Result<()> {
        sqlx::query(self.sql("INSERT INTO instance_settings (name, value, created_at) VALUES (?, ?, ?)"))
            .bind(name)
            .bind(value)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest data key of `compartment`.
    pub async fn current_data_key(&self, compartment: &str) -> Result<Option<DataKeyRow>> {
        self.data_key_where("compartment = ? ORDER BY version DESC LIMIT 1", compartment, None).await
    }

    /// A given version of a compartment's data key.
    pub async fn data_key(&self, compartment: &str, version: i64) -> Result<Option<DataKeyRow>> {
        self.data_key_where("compartment = ? AND version = ?", compartment, Some(version)).await
    }

    async fn data_key_where(
        &self,
        condition: &'static str,
        compartment: &str,
        version: Option<i64>,
    ) -> Result<Option<DataKeyRow>> {
        let mut q = sqlx::query(
            self.sql(format!("SELECT compartment, version, kek_version, wrapped FROM data_keys WHERE {condition}")),
        )
        .bind(compartment);
        if let Some(v) = version {
            q = q.bind(v);
        }
        q.fetch_optional(&self.pool).await?.as_ref().map(data_key_row).transpose()
    }

    /// Store a new data key; [`StoreError::Conflict`] if that version exists already.
    pub async fn insert_data_key(&self, key: &DataKeyRow, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        self.insert_data_key_in(&mut tx, key, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_data_key_in(&self, tx: &mut Transaction<'static, Any>, key: &DataKeyRow, now: i64) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO data_keys (compartment, version, kek_version, wrapped, created_at) VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(key.compartment.as_str())
        .bind(key.version)
        .bind(key.kek_version)
        .bind(key.wrapped.as_slice())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// How many data keys each KEK version wraps, oldest version first.
    pub async fn kek_usage(&self) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query("SELECT kek_version, COUNT(*) FROM data_keys GROUP BY kek_version ORDER BY kek_version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Up to `limit` data keys wrapped under a KEK version older than `kek_version`.
    pub async fn data_keys_older_than(&self, kek_version: i64, limit: i64) -> Result<Vec<DataKeyRow>> {
        let rows = sqlx::query(self.sql(format!(
            "SELECT compartment, version, kek_version, wrapped FROM data_keys WHERE kek_version < ? \
             ORDER BY compartment, version LIMIT {LIMIT_BOUND}",
        )))
        .bind(kek_version)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(data_key_row).collect()
    }

    /// Replace a data key's wrapping if it is still `old` (a concurrent
    /// rotation may have done it first); true if this call did.
    pub async fn rewrap_data_key(&self, old: &DataKeyRow, wrapped: &[u8], kek_version: i64) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE data_keys SET wrapped = ?, kek_version = ? WHERE compartment = ? AND version = ? AND wrapped = ?",
        ))
        .bind(wrapped)
        .bind(kek_version)
        .bind(old.compartment.as_str())
        .bind(old.version)
        .bind(old.wrapped.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace a setting's value if it is still `old`; true if this call did.
    pub async fn replace_setting(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        let done = sqlx::query(self.sql("UPDATE instance_settings SET value = ? WHERE name = ? AND value = ?"))
            .bind(new)
            .bind(name)
            .bind(old)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ----- resources ------------------------------------------------------------------

    async fn insert_version(
        tx: &mut Transaction<'static, Any>,
        sql: AssertSqlSafe<Cow<'static, str>>,
        row: &VersionRow,
    ) -> Result<()> {
        sqlx::query(sql)
            .bind(row.resource_type.as_str())
            .bind(row.id.as_str())
            .bind(row.version_id)
            .bind(row.compartment.as_str())
            .bind(row.key_version)
            .bind(row.last_updated)
            .bind(row.body.as_slice())
            .bind(row.restricted_to.as_deref())
            .bind(i64::from(row.patient_visible))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn replace_tokens(
        &self,
        tx: &mut Transaction<'static, Any>,
        row: &VersionRow,
        tokens: &[SearchToken],
    ) -> Result<()> {
        sqlx::query(self.sql("DELETE FROM search_tokens WHERE resource_type = ? AND id = ?"))
            .bind(row.resource_type.as_str())
            .bind(row.id.as_str())
            .execute(&mut **tx)
            .await?;
        self.insert_tokens(tx, row, tokens).await
    }

    async fn insert_tokens(
        &self,
        tx: &mut Transaction<'static, Any>,
        row: &VersionRow,
        tokens: &[SearchToken],
    ) -> Result<()> {
        // Two values of one resource that normalise alike give one token; keep one. ON CONFLICT,
        // not a caught unique violation: on PostgreSQL a failed statement aborts the transaction.
        let insert = self.sql(
            "INSERT INTO search_tokens (resource_type, param, token, id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        );
        for t in tokens {
            sqlx::query(AssertSqlSafe(insert.0.clone()))
                .bind(row.resource_type.as_str())
                .bind(t.param)
                .bind(t.token.as_slice())
                .bind(row.id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The compartment of a current resource, if it exists.
    pub async fn compartment_of(&self, resource_type: &str, id: &str) -> Result<Option<String>> {
        let row = sqlx::query(self.sql("SELECT compartment FROM resource_heads WHERE resource_type = ? AND id = ?"))
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Store version 1 of new resources (each with its search tokens, and the
    /// data key of a new compartment if it comes with one) and their audit
    /// entries in one transaction: all or none.
    pub async fn create_all(&self, writes: &[Write<'_>], audit: &[AuditRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        for w in writes {
            self.create_in(&mut tx, *w).await?;
        }
        self.commit_with_audit(tx, audit).await?;
        Ok(())
    }

    async fn create_in(&self, tx: &mut Transaction<'static, Any>, w: Write<'_>) -> Result<()> {
        let row = w.row;
        // The head is written first so that SQLite takes its write lock at once.
        sqlx::query(self.sql(
            "INSERT INTO resource_heads (resource_type, id, version_id, compartment, last_updated, \
             restricted_to, patient_visible) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(row.resource_type.as_str())
        .bind(row.id.as_str())
        .bind(row.version_id)
        .bind(row.compartment.as_str())
        .bind(row.last_updated)
        .bind(row.restricted_to.as_deref())
        .bind(i64::from(row.patient_visible))
        .execute(&mut **tx)
        .await?;
        match w.new_key {
            Some(key) => self.insert_data_key_in(tx, key, row.last_updated).await?,
            None => self.require_current_key(tx, &row.compartment, row.key_version).await?,
        }
        let insert =
            self.sql(format!("INSERT INTO resource_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
        Self::insert_version(tx, insert, row).await?;
        self.insert_tokens(tx, row, w.tokens).await?;
        self.set_care_team(tx, row, w.care_team).await?;
        Ok(())
    }

    /// Store a new version, with its audit entries, if the current one is still
    /// `expected_version`; otherwise [`StoreError::Conflict`] and nothing changes.
    pub async fn update(&self, w: Write<'_>, expected_version: i64, audit: &[AuditRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        self.update_in(&mut tx, w, expected_version).await?;
        self.commit_with_audit(tx, audit).await?;
        Ok(())
    }

    /// [`Store::update`] and [`Store::create_all`] in one transaction: a new
    /// version of one resource and version 1 of others (a measure's completed
    /// answers and their score), with their audit entries; all or none.
    pub async fn update_and_create(
        &self,
        w: Write<'_>,
        expected_version: i64,
        creates: &[Write<'_>],
        audit: &[AuditRow],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        self.update_in(&mut tx, w, expected_version).await?;
        for c in creates {
            self.create_in(&mut tx, *c).await?;
        }
        self.commit_with_audit(tx, audit).await?;
        Ok(())
    }

    /// Creates (`None`) and updates (`Some(expected version)`), in their order,
    /// with their audit entries in one transaction: all or none (a FHIR
    /// transaction Bundle). A conflict or a stale key anywhere writes nothing.
    pub async fn write_all(&self, writes: &[(Write<'_>, Option<i64>)], audit: &[AuditRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        for (w, expected) in writes {
            match expected {
                None => self.create_in(&mut tx, *w).await?,
                Some(expected) => self.update_in(&mut tx, *w, *expected).await?,
            }
        }
        self.commit_with_audit(tx, audit).await?;
        Ok(())
    }

    async fn update_in(&self, tx: &mut Transaction<'static, Any>, w: Write<'_>, expected_version: i64) -> Result<()> {
        let row = w.row;
        let done = sqlx::query(self.sql(
            "UPDATE resource_heads SET version_id = ?, last_updated = ?, restricted_to = ?, patient_visible = ? \
             WHERE resource_type = ? AND id = ? AND version_id = ? AND compartment = ?",
        ))
        .bind(row.version_id)
        .bind(row.last_updated)
        .bind(row.restricted_to.as_deref())
        .bind(i64::from(row.patient_visible))
        .bind(row.resource_type.as_str())
        .bind(row.id.as_str())
        .bind(expected_version)
        .bind(row.compartment.as_str())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        self.require_current_key(tx, &row.compartment, row.key_version).await?;
        let insert =
            self.sql(format!("INSERT INTO resource_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
        Self::insert_version(tx, insert, row).await?;
        self.replace_tokens(tx, row, w.tokens).await?;
        self.set_care_team(tx, row, w.care_team).await?;
        Ok(())
    }

    /// Replace the membership rows a CareTeam resource defines.
    async fn set_care_team(
        &self,
        tx: &mut Transaction<'static, Any>,
        row: &VersionRow,
        members: Option<&[CareTeamMember]>,
    ) -> Result<()> {
        let Some(members) = members else { return Ok(()) };
        sqlx::query(self.sql("DELETE FROM care_team_members WHERE care_team_id = ?"))
            .bind(row.id.as_str())
            .execute(&mut **tx)
            .await?;
        let insert = self.sql(
            "INSERT INTO care_team_members (care_team_id, seq, patient_id, practitioner_id, starts_at, ends_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        );
        for (seq, m) in members.iter().enumerate() {
            sqlx::query(AssertSqlSafe(insert.0.clone()))
                .bind(row.id.as_str())
                .bind(seq as i64)
                .bind(row.compartment.as_str())
                .bind(m.practitioner_id.as_str())
                .bind(m.starts_at)
                .bind(m.ends_at)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The caller's relationship to a patient at `now`: on a care team of
    /// `practitioner_id` (a membership whose period holds `now`), or under an
    /// active break-glass of `user_id`.
    pub async fn relationship(
        &self,
        practitioner_id: &str,
        user_id: &str,
        patient_id: &str,
        now: i64,
    ) -> Result<(bool, bool)> {
        let r = sqlx::query(self.sql(format!(
            "SELECT \
               (SELECT COUNT(*) FROM care_team_members c WHERE c.practitioner_id = ? AND c.patient_id = ? \
                  AND {CURRENT_MEMBER}), \
               (SELECT COUNT(*) FROM break_glass WHERE user_id = ? AND patient_id = ? AND expires_at > ?)",
        )))
        .bind(practitioner_id)
        .bind(patient_id)
        .bind(now)
        .bind(now)
        .bind(user_id)
        .bind(patient_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok((r.try_get::<i64, _>(0)? > 0, r.try_get::<i64, _>(1)? > 0))
    }

    /// Every (practitioner, patient) pair of a care-team membership current at
    /// `now`, each once, in that order (the honey keeper's count of whose care
    /// holds how many patients).
    pub async fn care_team_pairs(&self, now: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(self.sql(format!(
            "SELECT DISTINCT c.practitioner_id, c.patient_id FROM care_team_members c WHERE {CURRENT_MEMBER} \
             ORDER BY c.practitioner_id, c.patient_id"
        )))
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Record a break-glass access (`reason_sealed` is the sealed reason) with its audit entry.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_break_glass(
        &self,
        id: &str,
        user_id: &str,
        patient_id: &str,
        (reason_sealed, key_version): (&[u8], i64),
        now: i64,
        expires_at: i64,
        audit: &[AuditRow],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(self.sql(
            "INSERT INTO break_glass (id, user_id, patient_id, reason_sealed, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(id)
        .bind(user_id)
        .bind(patient_id)
        .bind(reason_sealed)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        // The reason is sealed under the patient's key: never under one a rotation is deleting.
        self.require_current_key(&mut tx, patient_id, key_version).await?;
        self.commit_with_audit(tx, audit).await?;
        Ok(())
    }

    /// A break-glass record: (user id, patient id, sealed reason).
    pub async fn break_glass(&self, id: &str) -> Result<Option<(String, String, Vec<u8>)>> {
        let row = sqlx::query(self.sql("SELECT user_id, patient_id, reason_sealed FROM break_glass WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).transpose()
    }

    /// The current version of a resource.
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Option<VersionRow>> {
        let q = format!(
            "SELECT {VERSION_COLUMNS_V} FROM resource_heads h JOIN resource_versions v \
               ON v.resource_type = h.resource_type AND v.id = h.id AND v.version_id = h.version_id \
             WHERE h.resource_type = ? AND h.id = ?"
        );
        let row = sqlx::query(self.sql(q)).bind(resource_type).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(version_row).transpose()
    }

    /// The access columns of every version of a resource, oldest first.
    pub async fn version_access(&self, resource_type: &str, id: &str) -> Result<Vec<(Option<String>, bool)>> {
        let rows = sqlx::query(self.sql(
            "SELECT restricted_to, patient_visible FROM resource_versions WHERE resource_type = ? AND id = ? ORDER BY version_id",
        ))
        .bind(resource_type)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? != 0))).collect()
    }

    /// One given version of a resource.
    pub async fn read_version(&self, resource_type: &str, id: &str, version_id: i64) -> Result<Option<VersionRow>> {
        let q = format!(
            "SELECT {VERSION_COLUMNS} FROM resource_versions WHERE resource_type = ? AND id = ? AND version_id = ?"
        );
        let row =
            sqlx::query(self.sql(q)).bind(resource_type).bind(id).bind(version_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(version_row).transpose()
    }

    /// Every version of a resource, newest first, at most `limit`, older than `before` if given.
    pub async fn history(
        &self,
        resource_type: &str,
        id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<VersionRow>> {
        let q = format!(
            "SELECT {VERSION_COLUMNS} FROM resource_versions \
             WHERE resource_type = ? AND id = ? AND version_id < ? ORDER BY version_id DESC LIMIT {LIMIT_BOUND}"
        );
        let rows = sqlx::query(self.sql(q))
            .bind(resource_type)
            .bind(id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(version_row).collect()
    }

    /// Current versions of `resource_type` matching every criterion, ordered
    /// by id, after `after` (exclusive), at most `limit`; and the total count.
    ///
    /// The first token criterion drives the query through the blind-index
    /// table, so a search costs the number of matches, not the number of
    /// resources; the other criteria filter those matches.
    pub async fn search(
        &self,
        resource_type: &str,
        criteria: &[Criterion],
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<(VersionRow, bool)>, i64)> {
        let rows = self.search_query(resource_type, criteria, after.map(Cursor::After), Some(limit)).await?;
        // A first page that is not full is the whole result: no count needed.
        let total = if after.is_none() && (rows.len() as i64) < limit {
            rows.len() as i64
        } else {
            let r = self.search_query(resource_type, criteria, None, None).await?;
            r.first().map(|r| r.try_get::<i64, _>(0)).transpose()?.unwrap_or(0)
        };
        let rows = rows.iter().map(|r| Ok((version_row(r)?, r.try_get::<i64, _>(9)? != 0))).collect::<Result<_>>()?;
        Ok((rows, total))
    }

    /// [`Store::search`] backwards: up to `limit` matches with ids before
    /// `before`, the nearest first (a Bundle's `previous` page), and the total.
    pub async fn search_before(
        &self,
        resource_type: &str,
        criteria: &[Criterion],
        before: &str,
        limit: i64,
    ) -> Result<(Vec<(VersionRow, bool)>, i64)> {
        let rows = self.search_query(resource_type, criteria, Some(Cursor::Before(before)), Some(limit)).await?;
        let r = self.search_query(resource_type, criteria, None, None).await?;
        let total = r.first().map(|r| r.try_get::<i64, _>(0)).transpose()?.unwrap_or(0);
        let rows = rows.iter().map(|r| Ok((version_row(r)?, r.try_get::<i64, _>(9)? != 0))).collect::<Result<_>>()?;
        Ok((rows, total))
    }

    /// With `limit`, the page of rows; without, one row holding the count.
    async fn search_query(
        &self,
        resource_type: &str,
        criteria: &[Criterion],
        cursor: Option<Cursor<'_>>,
        limit: Option<i64>,
    ) -> Result<Vec<AnyRow>> {
        // Ids after the cursor in id order, or before it nearest first.
        let (cmp, order, bound) = match cursor {
            Some(Cursor::Before(id)) => ("<", "DESC", id),
            Some(Cursor::After(id)) => (">", "ASC", id),
            None => (">", "ASC", ""),
        };
        enum Bind<'a> {
            Str(&'a str),
            Bytes(&'a [u8]),
            Int(i64),
        }
        // `s.resource_type = ? AND s.param = ? AND s.token IN (...)`, with its binds.
        fn token_match<'a>(
            sql: &mut String,
            binds: &mut Vec<Bind<'a>>,
            resource_type: &'a str,
            param: &'static str,
            tokens: &'a [Vec<u8>],
        ) {
            let marks = vec!["?"; tokens.len().max(1)].join(", ");
            let _ = write!(sql, "s.resource_type = ? AND s.param = ? AND s.token IN ({marks})");
            binds.push(Bind::Str(resource_type));
            binds.push(Bind::Str(param));
            if tokens.is_empty() {
                binds.push(Bind::Bytes(&[])); // matches nothing
            }
            binds.extend(tokens.iter().map(|t| Bind::Bytes(t.as_slice())));
        }

        let mut from = String::new();
        let mut filter = String::new();
        let mut binds = Vec::new();
        let driver = criteria.iter().position(|c| matches!(c, Criterion::Token { .. }));
        match driver.map(|i| &criteria[i]) {
            Some(Criterion::Token { param, tokens }) => {
                // CROSS JOIN fixes the join order in SQLite (and is a plain
                // join to PostgreSQL): matches first, then their heads.
                let _ = write!(
                    from,
                    "(SELECT DISTINCT s.id AS id FROM search_tokens s {} WHERE ",
                    self.backend.token_index_hint()
                );
                token_match(&mut from, &mut binds, resource_type, param, tokens);
                let _ = write!(from, " AND s.id {cmp} ?) m CROSS JOIN resource_heads h");
                binds.push(Bind::Str(bound));
                filter.push_str(" WHERE h.resource_type = ? AND h.id = m.id");
                binds.push(Bind::Str(resource_type));
            }
            _ => {
                from.push_str("resource_heads h");
                let _ = write!(filter, " WHERE h.resource_type = ? AND h.id {cmp} ?");
                binds.push(Bind::Str(resource_type));
                binds.push(Bind::Str(bound));
            }
        }
        for (i, c) in criteria.iter().enumerate() {
            if Some(i) == driver {
                continue;
            }
            match c {
                Criterion::Token { param, tokens } => {
                    filter.push_str(" AND h.id IN (SELECT s.id FROM search_tokens s WHERE ");
                    token_match(&mut filter, &mut binds, resource_type, param, tokens);
                    filter.push(')');
                }
                Criterion::Compartment(p) => {
                    filter.push_str(" AND h.compartment = ?");
                    binds.push(Bind::Str(p));
                }
                Criterion::Id(id) => {
                    filter.push_str(" AND h.id = ?");
                    binds.push(Bind::Str(id));
                }
                Criterion::CareTeam { practitioner_id, user_id, now } => {
                    let _ = write!(
                        filter,
                        " AND ((EXISTS (SELECT 1 FROM care_team_members c WHERE c.practitioner_id = ? \
                             AND c.patient_id = h.compartment AND {CURRENT_MEMBER}) \
                           AND (h.restricted_to IS NULL OR h.restricted_to = ?)) \
                          OR h.compartment IN (SELECT b.patient_id FROM break_glass b WHERE b.user_id = ? AND b.expires_at > ?))",
                    );
                    binds.push(Bind::Str(practitioner_id));
                    binds.push(Bind::Int(*now));
                    binds.push(Bind::Int(*now));
                    binds.push(Bind::Str(practitioner_id));
                    binds.push(Bind::Str(user_id));
                    binds.push(Bind::Int(*now));
                }
                Criterion::OwnRecord { patient_id } => {
                    filter.push_str(
                        " AND h.compartment = ? AND (h.resource_type = 'Patient' OR (h.patient_visible = 1 AND h.restricted_to IS NULL))",
                    );
                    binds.push(Bind::Str(patient_id));
                }
            }
        }
        let sql = match limit {
            Some(limit) => {
                binds.push(Bind::Int(limit.max(0)));
                // A tenth column: 1 if a care-team principal sees the row only through
                // a break-glass (the audit entry says so). Its binds come first.
                let via_break_glass = match criteria.iter().find_map(|c| match c {
                    Criterion::CareTeam { practitioner_id, now, .. } => Some((practitioner_id, *now)),
                    _ => None,
                }) {
                    Some((practitioner_id, now)) => {
                        for b in
                            [Bind::Str(practitioner_id), Bind::Int(now), Bind::Int(now), Bind::Str(practitioner_id)]
                                .into_iter()
                                .rev()
                        {
                            binds.insert(0, b);
                        }
                        format!(
                            "CASE WHEN EXISTS (SELECT 1 FROM care_team_members c \
                             WHERE c.practitioner_id = ? AND c.patient_id = h.compartment AND {CURRENT_MEMBER}) \
                             AND (h.restricted_to IS NULL OR h.restricted_to = ?) THEN 0 ELSE 1 END"
                        )
                    }
                    None => "0".to_owned(),
                };
                format!(
                    "SELECT {VERSION_COLUMNS_V}, {via_break_glass} \
                     FROM {from} CROSS JOIN resource_versions v{filter} \
                     AND v.resource_type = h.resource_type AND v.id = h.id AND v.version_id = h.version_id \
                     ORDER BY h.id {order} LIMIT {LIMIT_BOUND}"
                )
            }
            None => format!("SELECT COUNT(*) FROM {from}{filter}"),
        };
        let mut q = sqlx::query(self.sql(sql));
        for b in binds {
            q = match b {
                Bind::Str(v) => q.bind(v),
                Bind::Bytes(v) => q.bind(v),
                Bind::Int(v) => q.bind(v),
            };
        }
        Ok(q.fetch_all(&self.pool).await?)
    }
}
