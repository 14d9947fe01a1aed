//! A fresh store per test on either backend, and the rows the tests write.

use std::sync::atomic::{AtomicU32, Ordering};

use confidant_store::{AuditRow, DataKeyRow, SearchToken, Store, VersionRow, Write};
use sqlx::{AnyConnection, AssertSqlSafe, Connection};

pub const PG_ENV: &str = "CONFIDANT_TEST_POSTGRES_URL";

/// A time in Unix ms (2027-01-15).
pub const T0: i64 = 1_800_000_000_000;

/// A migrated, empty store and how to reach its database directly.
pub struct Db {
    pub store: Store,
    pub url: String,
    _tmp: Option<tempfile::TempDir>,
    pg: Option<DropDatabase>,
}

/// Drops a test's PostgreSQL database, also when the test panicked.
struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        // Best effort: a leftover test database is harmless.
        let _ = std::process::Command::new("psql")
            .args([self.admin.as_str(), "-q", "-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

/// A database name no other test (in this or another process) uses.
#[allow(clippy::disallowed_methods)] // uniqueness across processes, not a time of record
fn unique_name() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("confidant_store_{}_{}_{nanos}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

impl Db {
    pub async fn sqlite() -> Db {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", tmp.path().join("store.db").display());
        let store = Store::connect(&url, true).await.unwrap();
        store.migrate().await.unwrap();
        Db { store, url, _tmp: Some(tmp), pg: None }
    }

    /// `None` (after saying so) when CONFIDANT_TEST_POSTGRES_URL is not set.
    pub async fn postgres(test: &str) -> Option<Db> {
        let Some(admin) = std::env::var(PG_ENV).ok().filter(|s| !s.is_empty()) else {
            assert!(
                std::env::var("CI").ok().as_deref() != Some("true"),
                "{PG_ENV} must be set in CI: the PostgreSQL half may not be skipped there"
            );
            eprintln!("\n*** {test}::postgres SKIPPED: {PG_ENV} not set ***\n");
            return None;
        };
        let name = unique_name();
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let guard = DropDatabase { admin: admin.clone(), name: name.clone() };
        // Replace the database name (the URL's path) of the admin URL.
        let (base, query) = admin.split_once('?').map(|(b, q)| (b, format!("?{q}"))).unwrap_or((&admin, String::new()));
        let url = format!("{}/{name}{query}", &base[..base.rfind('/').unwrap()]);
        let store = Store::connect(&url, true).await.unwrap();
        store.migrate().await.unwrap();
        Some(Db { store, url, _tmp: None, pg: Some(guard) })
    }

    pub fn is_sqlite(&self) -> bool {
        self.store.backend_name() == "sqlite"
    }

    /// Run SQL on a connection of its own, as someone with database access would.
    pub async fn raw(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    pub async fn finish(mut self) {
        self.store.close().await;
        drop(self.pg.take());
    }
}

/// A data key row; its "wrapped" bytes name it.
pub fn key(compartment: &str, version: i64, kek_version: i64) -> DataKeyRow {
    DataKeyRow {
        compartment: compartment.into(),
        version,
        kek_version,
        wrapped: format!("wrapped {compartment} v{version}").into_bytes(),
    }
}

/// A resource version in `compartment` sealed (so to speak) under data key 1.
pub fn version(resource_type: &str, id: &str, version_id: i64, compartment: &str) -> VersionRow {
    VersionRow {
        resource_type: resource_type.into(),
        id: id.into(),
        version_id,
        compartment: compartment.into(),
        key_version: 1,
        last_updated: T0 + version_id,
        body: format!("sealed {resource_type}/{id} v{version_id}").into_bytes(),
        restricted_to: None,
        patient_visible: false,
    }
}

/// A write of `row` with its tokens and nothing else.
pub fn write<'a>(row: &'a VersionRow, tokens: &'a [SearchToken]) -> Write<'a> {
    Write { row, tokens, new_key: None, care_team: None }
}

pub fn token(param: &'static str, value: &str) -> SearchToken {
    SearchToken { param, token: value.as_bytes().to_vec() }
}

/// An audit row; `i` makes its bytes unique.
pub fn audit(i: i64, action: &str, actor: Option<&str>, patient: Option<&str>) -> AuditRow {
    AuditRow {
        entry: format!("entry {i}").into_bytes(),
        leaf_hash: vec![i as u8; 32],
        at: T0 + i,
        actor: actor.map(str::to_owned),
        patient: patient.map(str::to_owned),
        action: action.into(),
    }
}

/// A new patient: its data key and its Patient resource, in one write.
pub async fn patient(store: &Store, id: &str, tokens: &[SearchToken]) -> VersionRow {
    let row = version("Patient", id, 1, id);
    let k = key(id, 1, 1);
    store.create_all(&[Write { new_key: Some(&k), ..write(&row, tokens) }], &[]).await.unwrap();
    row
}
