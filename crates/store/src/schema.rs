//! Schema migrations, shared by both backends. Each migration runs once, in
//! its own transaction, recorded in `schema_migrations`.

use sqlx::Row;
use sqlx::{AnyPool, AssertSqlSafe};

use crate::backend::Backend;
use crate::{Result, StoreError};

/// Migrations in order. `{blob}` becomes the backend's byte-string type.
/// Only ciphertext, wrapped keys, blind tokens and the plaintext envelope
/// (type, random ids, versions, timestamps) are ever stored: no column here
/// may hold clinical content in the clear.
const MIGRATIONS: &[&str] = &[
    // 1: records core
    "CREATE TABLE instance_settings (
        name TEXT PRIMARY KEY,
        value {blob} NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE data_keys (
        compartment TEXT NOT NULL,
        version BIGINT NOT NULL,
        kek_version BIGINT NOT NULL,
        wrapped {blob} NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (compartment, version)
    );
    CREATE TABLE resource_heads (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version_id BIGINT NOT NULL,
        compartment TEXT NOT NULL,
        last_updated BIGINT NOT NULL,
        PRIMARY KEY (resource_type, id)
    );
    CREATE INDEX resource_heads_by_compartment ON resource_heads (resource_type, compartment, id);
    CREATE TABLE resource_versions (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version_id BIGINT NOT NULL,
        compartment TEXT NOT NULL,
        key_version BIGINT NOT NULL,
        last_updated BIGINT NOT NULL,
        body {blob} NOT NULL,
        PRIMARY KEY (resource_type, id, version_id)
    );
    CREATE TABLE search_tokens (
        resource_type TEXT NOT NULL,
        param TEXT NOT NULL,
        token {blob} NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (resource_type, param, token, id)
    );
    CREATE INDEX search_tokens_by_resource ON search_tokens (resource_type, id);
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        token_hash {blob} NOT NULL UNIQUE,
        label TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    );",
    // 2: identity and access control
    "ALTER TABLE resource_heads ADD COLUMN restricted_to TEXT;
    ALTER TABLE resource_heads ADD COLUMN patient_visible BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE resource_versions ADD COLUMN restricted_to TEXT;
    ALTER TABLE resource_versions ADD COLUMN patient_visible BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE care_team_members (
        care_team_id TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        practitioner_id TEXT NOT NULL,
        PRIMARY KEY (care_team_id, practitioner_id)
    );
    CREATE INDEX care_team_members_by_practitioner ON care_team_members (practitioner_id, patient_id);
    CREATE TABLE break_glass (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        reason_sealed {blob} NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX break_glass_by_user ON break_glass (user_id, patient_id, expires_at);
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username_token {blob} NOT NULL UNIQUE,
        username_sealed {blob} NOT NULL,
        role TEXT NOT NULL,
        password_hash TEXT,
        totp_sealed {blob},
        totp_last_step BIGINT,
        mfa_enrolled_at BIGINT,
        practitioner_id TEXT,
        patient_id TEXT,
        disabled_at BIGINT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL,
        code_hash {blob} NOT NULL,
        used_at BIGINT,
        PRIMARY KEY (user_id, code_hash)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        token_hash {blob} NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        csrf_hash {blob},
        mfa_done BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE TABLE login_throttle (
        throttle_key {blob} PRIMARY KEY,
        failures BIGINT NOT NULL,
        window_start BIGINT NOT NULL,
        locked_until BIGINT
    );
    CREATE TABLE enrolment_codes (
        code_hash {blob} PRIMARY KEY,
        role TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT
    );
    ALTER TABLE api_tokens ADD COLUMN user_id TEXT;
    ALTER TABLE api_tokens ADD COLUMN scopes TEXT;
    ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;",
    // 3: the audit log. `audit_head` is one row: the log's size, and the lock
    // every append takes (a row lock in PostgreSQL, the write lock in SQLite),
    // so that sequence numbers are assigned and committed in order by every
    // node: no gaps, no forks. `entry` holds ids and blind values only; the
    // columns beside it repeat what is in it, for searching (verify checks them).
    "CREATE TABLE audit_head (
        id BIGINT PRIMARY KEY,
        size BIGINT NOT NULL
    );
    INSERT INTO audit_head (id, size) VALUES (1, 0);
    CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY NOT NULL CHECK (seq > 0),
        entry {blob} NOT NULL,
        leaf_hash {blob} NOT NULL,
        at BIGINT NOT NULL,
        actor TEXT,
        patient TEXT,
        action TEXT NOT NULL
    );
    CREATE INDEX audit_log_by_patient ON audit_log (patient, seq);
    CREATE INDEX audit_log_by_actor ON audit_log (actor, seq);
    CREATE TABLE audit_checkpoints (
        line TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX audit_checkpoints_by_size ON audit_checkpoints (size);
    {audit_head_trigger}",
    // 4: erasure. A legal hold stops a patient's erasure; an erasure request
    // waits for a second person's approval code (stored as a hash).
    "CREATE TABLE legal_holds (
        patient_id TEXT PRIMARY KEY,
        placed_at BIGINT NOT NULL
    );
    CREATE TABLE erasure_requests (
        code_hash {blob} PRIMARY KEY,
        patient_id TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT
    );",
    // 5: alerts of the detector. `summary` holds ids and counts only; each
    // sink marks when it delivered the alert (the table is their queue).
    "CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL,
        subject TEXT,
        summary TEXT NOT NULL,
        action_taken TEXT,
        first_at BIGINT NOT NULL,
        last_at BIGINT NOT NULL,
        count BIGINT NOT NULL,
        acknowledged_at BIGINT,
        acknowledged_by TEXT,
        webhook_done_at BIGINT,
        email_done_at BIGINT
    );
    CREATE INDEX alerts_by_time ON alerts (first_at);",
    // 6: passkeys (WebAuthn second factor). `sealed` is the credential
    // (public key, id, counter) sealed under the organisation key and bound
    // to its user: nobody adds a passkey to an account by writing here.
    "CREATE TABLE passkeys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        label TEXT NOT NULL,
        sealed {blob} NOT NULL,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT
    );
    CREATE INDEX passkeys_by_user ON passkeys (user_id);",
    // 7: one node at a time delivers an alert to a sink: a node claims it
    // until the time given (a lease; a node that dies mid-send lets it lapse).
    "ALTER TABLE alerts ADD COLUMN webhook_claimed_until BIGINT;
    ALTER TABLE alerts ADD COLUMN email_claimed_until BIGINT;",
    // 8: a care-team membership counts only within its period (the team's and
    // the participant's, intersected), checked against the clock at each
    // access; one practitioner may hold several participations of one team.
    // Rows from before keep an open period.
    "CREATE TABLE care_team_members_new (
        care_team_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        patient_id TEXT NOT NULL,
        practitioner_id TEXT NOT NULL,
        starts_at BIGINT,
        ends_at BIGINT,
        PRIMARY KEY (care_team_id, seq)
    );
    INSERT INTO care_team_members_new (care_team_id, seq, patient_id, practitioner_id)
        SELECT care_team_id, ROW_NUMBER() OVER (PARTITION BY care_team_id ORDER BY practitioner_id), patient_id, practitioner_id
        FROM care_team_members;
    DROP TABLE care_team_members;
    ALTER TABLE care_team_members_new RENAME TO care_team_members;
    CREATE INDEX care_team_members_by_practitioner ON care_team_members (practitioner_id, patient_id);",
    // 9: a dump tells neither which patient a portal account (and so its
    // logins' addresses) belongs to, nor what an API token is for. The patient
    // link is sealed under the organisation key, bound to the user, with a
    // blind token to find the account by patient (erasure); the token label is
    // sealed, bound to the token. Sealing needs the key, which SQL has not:
    // opening the instance moves existing rows over and empties the plaintext
    // columns (`users.patient_id`, `api_tokens.label`), which stay unused.
    "ALTER TABLE users ADD COLUMN patient_sealed {blob};
    ALTER TABLE users ADD COLUMN patient_token {blob};
    CREATE INDEX users_by_patient_token ON users (patient_token);
    ALTER TABLE api_tokens ADD COLUMN label_sealed {blob};",
    // 10: note templates and supervision. A template's definition (its name,
    // section titles and prompts) is the clinic's form, not anyone's record:
    // no PHI, so it is stored as JSON in the clear, one row per version (old
    // versions stay: a note names the id and version it was written with).
    // A supervision names, by Practitioner id, a clinician in training and
    // their supervisor; a co-sign request is a signed note of a trainee
    // waiting for that supervisor (ids only, like the audit log's columns).
    "CREATE TABLE note_templates (
        id TEXT NOT NULL,
        version BIGINT NOT NULL,
        definition TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (id, version)
    );
    CREATE TABLE supervisions (
        trainee TEXT PRIMARY KEY,
        supervisor TEXT NOT NULL,
        set_at BIGINT NOT NULL
    );
    CREATE TABLE cosign_requests (
        note_id TEXT PRIMARY KEY,
        patient_id TEXT NOT NULL,
        supervisor TEXT NOT NULL,
        requested_at BIGINT NOT NULL,
        cosigned_at BIGINT
    );
    CREATE INDEX cosign_requests_by_supervisor ON cosign_requests (supervisor, cosigned_at);",
    // 11: staff security training (issue 16). A module (the clinic's training
    // material: no PHI) is JSON in the clear, one row per key at its current
    // version, with the roles it is for and since when that version is
    // current. Completions and assignments name users by id and modules by
    // key (like the audit log's columns); an assignment's reason is a short
    // code such as `phishing-drill/<campaign id>`, never free text.
    "CREATE TABLE training_modules (
        module_key TEXT PRIMARY KEY,
        version BIGINT NOT NULL,
        roles TEXT NOT NULL,
        definition TEXT NOT NULL,
        active_since BIGINT NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE training_completions (
        user_id TEXT NOT NULL,
        module_key TEXT NOT NULL,
        version BIGINT NOT NULL,
        score BIGINT NOT NULL,
        out_of BIGINT NOT NULL,
        passed_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, module_key, passed_at)
    );
    CREATE TABLE training_assignments (
        user_id TEXT NOT NULL,
        module_key TEXT NOT NULL,
        reason TEXT NOT NULL,
        assigned_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, module_key, assigned_at)
    );",
    // 12: phishing drills. A campaign names templates (keys of the drill
    // mails compiled into the binary), a start and a spread; a recipient is
    // one staff member's mail (user id, template, language, its send time and
    // when it was sent, clicked, submitted, reported). The link id is random
    // and never stored: only its SHA-256. Nothing typed into the look-alike
    // page is ever stored. A staff member's e-mail address is sealed under the
    // organisation key, bound to the user, like usernames (migration 1).
    "CREATE TABLE phishing_campaigns (
        id TEXT PRIMARY KEY,
        templates TEXT NOT NULL,
        starts_at BIGINT NOT NULL,
        spread_ms BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE phishing_recipients (
        id TEXT PRIMARY KEY,
        campaign_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        template TEXT NOT NULL,
        language TEXT NOT NULL,
        send_at BIGINT NOT NULL,
        claimed_at BIGINT,
        link_hash {blob} UNIQUE,
        sent_at BIGINT,
        clicked_at BIGINT,
        submitted_at BIGINT,
        reported_at BIGINT
    );
    CREATE INDEX phishing_recipients_due ON phishing_recipients (sent_at, send_at);
    CREATE INDEX phishing_recipients_by_campaign ON phishing_recipients (campaign_id);
    CREATE INDEX phishing_recipients_by_user ON phishing_recipients (user_id);
    CREATE TABLE staff_contacts (
        user_id TEXT PRIMARY KEY,
        email_sealed {blob} NOT NULL,
        language TEXT NOT NULL,
        set_at BIGINT NOT NULL
    );",
    // 13: SMART apps and authorization codes.
    // SMART App Launch (issue 19). An app (a client registered by an
    // administrator: its random client id, name, exact redirect URIs one per
    // line, the scopes it may be given) holds no PHI. An authorization code
    // is stored only as its SHA-256, bound to its app, user, redirect URI and
    // PKCE challenge, used once; `token_id` is the token it was exchanged for
    // (revoked if the code comes back). A token an app got names its app.
    "CREATE TABLE smart_apps (
        client_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        redirect_uris TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE oauth_codes (
        code_hash {blob} PRIMARY KEY,
        client_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        scopes TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        token_id TEXT
    );
    ALTER TABLE api_tokens ADD COLUMN client_id TEXT;",
];

/// (the database's schema version, this build's); 0 where there is no schema yet.
pub(crate) async fn versions(pool: &AnyPool) -> Result<(i64, i64)> {
    let supported = MIGRATIONS.len() as i64;
    let found = match sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(pool).await {
        Ok(row) => row.try_get(0)?,
        // No table: a database no migration ever touched.
        Err(_) => 0,
    };
    Ok((found, supported))
}

pub(crate) async fn migrate(pool: &AnyPool, backend: &dyn Backend) -> Result<()> {
    migrate_to(pool, backend, MIGRATIONS.len() as i64).await
}

/// Bring the schema up to version `target` (at most this build's), no further:
/// a restore loads a snapshot's rows into the schema they were taken from.
pub(crate) async fn migrate_to(pool: &AnyPool, backend: &dyn Backend, target: i64) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let current: i64 =
        sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(pool).await?.try_get(0)?;
    let supported = MIGRATIONS.len() as i64;
    if current > supported || target > supported {
        return Err(StoreError::SchemaTooNew { found: current.max(target), supported });
    }
    let wanted = usize::try_from(target).unwrap_or(0);
    for (i, ddl) in MIGRATIONS.iter().enumerate().take(wanted).skip(current as usize) {
        let version = i as i64 + 1;
        let mut tx = pool.begin().await?;
        let ddl =
            ddl.replace("{blob}", backend.blob_type()).replace("{audit_head_trigger}", backend.audit_head_trigger());
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
        // A concurrent migrator inserts the same version: the loser's unique
        // violation rolls its whole transaction back.
        sqlx::query(AssertSqlSafe(
            backend.placeholders("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"),
        ))
        .bind(version)
        .bind(0_i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}

/// A trigger, view, rule or row policy in the database that the migrations
/// did not create. Nothing but our own statements may run when the audit log
/// (or any table) is written or read: such an object can delete entries as
/// they are appended, or hide rows from a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignObject {
    /// `trigger`, `view`, `rule`, `policy`, `materialized view` or `event trigger`.
    pub kind: String,
    pub name: String,
    /// The table it is on (a view's own name).
    pub table: String,
}

impl std::fmt::Display for ForeignObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.table.is_empty() || self.table == self.name {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {} on {}", self.kind, self.name, self.table)
        }
    }
}

/// White space folded and a final `;` dropped, to compare definitions.
fn folded(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ").trim_end_matches(';').trim_end().to_owned()
}

pub(crate) async fn foreign_objects(pool: &AnyPool, backend: &dyn Backend) -> Result<Vec<ForeignObject>> {
    let ours = folded(backend.audit_head_trigger());
    let rows = sqlx::query(backend.schema_objects_query()).fetch_all(pool).await?;
    let mut out = Vec::new();
    for r in &rows {
        let (kind, name, table, definition): (String, String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        // Ours is known by its whole definition, not its name: a replacement
        // under the same name is foreign too.
        if !ours.is_empty() && kind == "trigger" && folded(&definition) == ours {
            continue;
        }
        out.push(ForeignObject { kind, name, table });
    }
    Ok(out)
}
