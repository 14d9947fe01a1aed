//! What differs between SQLite and PostgreSQL, behind one trait.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

use crate::{Result, StoreError};

/// A database backend: how to connect, how to spell types and placeholders.
pub trait Backend: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn name(&self) -> &'static str;
    /// The column type for opaque bytes (ciphertexts, wrapped keys, tokens).
    fn blob_type(&self) -> &'static str;
    /// Text placed after `search_tokens s` in searches to make the planner look
    /// tokens up by value (the primary key) rather than scan by id.
    fn token_index_hint(&self) -> &'static str;
    /// Does the database let one writer at a time in (SQLite), so that a single
    /// statement may read and extend the audit log without an explicit lock?
    fn single_writer(&self) -> bool;
    /// DDL that keeps `audit_head` in step with single-statement appends (SQLite).
    fn audit_head_trigger(&self) -> &'static str;
    /// A query listing every trigger, view, rule and row policy of the
    /// database as (kind, name, table, definition): what runs besides our
    /// statements when a table is written or read.
    fn schema_objects_query(&self) -> &'static str;
    /// A query listing every table of the database (PostgreSQL: of the current schema) by name.
    fn tables_query(&self) -> &'static str;
    /// A query (one `?`: the table) listing a table's columns in order as
    /// (name, declared type, position in the primary key or 0).
    fn columns_query(&self) -> &'static str;
    /// The statement that makes a just-begun transaction read one consistent
    /// snapshot, where `BEGIN` alone does not.
    fn snapshot_isolation(&self) -> Option<&'static str>;
    /// Rewrite `?` placeholders into this backend's syntax.
    fn placeholders<'a>(&self, sql: &'a str) -> Cow<'a, str>;
    /// Open a connection pool; with `create`, create the database file if missing.
    fn connect<'a>(&'a self, url: &'a str, create: bool) -> futures_like::BoxFuture<'a, Result<AnyPool>>;
}

/// Minimal boxed-future alias, to keep the trait object-safe.
pub mod futures_like {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// The embedded default: one file, WAL journal, fsync on every commit.
pub struct SqliteBackend;
/// PostgreSQL, for several server nodes on one database.
pub struct PostgresBackend;

pub(crate) fn for_url(url: &str) -> Result<&'static dyn Backend> {
    sqlx::any::install_default_drivers();
    if url.starts_with("sqlite:") {
        Ok(&SqliteBackend)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(&PostgresBackend)
    } else {
        Err(StoreError::Database("database.url must start with sqlite:// or postgres://".into()))
    }
}

/// Per-connection SQLite settings. Why each:
/// - `synchronous = FULL`: a commit is on disk before it is acknowledged, so a
///   crash or power cut loses no committed write (DESIGN.md §11.5).
/// - `temp_store = MEMORY`: sorts and temporary tables never spill to temp files.
/// - `secure_delete = ON`: deleted rows are overwritten, not left in free pages.
/// - `foreign_keys = ON`, `busy_timeout`: integrity, and waiting for the writer lock.
const SQLITE_PRAGMAS: &str = "PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY; \
     PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn blob_type(&self) -> &'static str {
        "BLOB"
    }

    fn single_writer(&self) -> bool {
        true
    }

    fn audit_head_trigger(&self) -> &'static str {
        "CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_log \
         BEGIN UPDATE audit_head SET size = NEW.seq WHERE id = 1 AND size < NEW.seq; END;"
    }

    fn schema_objects_query(&self) -> &'static str {
        "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master \
         WHERE type IN ('trigger', 'view') ORDER BY type, name"
    }

    fn token_index_hint(&self) -> &'static str {
        // Without statistics SQLite prefers the id-ordered index for `id > ?`;
        // the primary key (resource_type, param, token, id) is the selective one.
        "INDEXED BY sqlite_autoindex_search_tokens_1"
    }

    fn tables_query(&self) -> &'static str {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    }

    fn columns_query(&self) -> &'static str {
        "SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid"
    }

    fn snapshot_isolation(&self) -> Option<&'static str> {
        // In WAL mode a read transaction sees the database as of its first read.
        None
    }

    fn placeholders<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(sql)
    }

    fn connect<'a>(&'a self, url: &'a str, create: bool) -> futures_like::BoxFuture<'a, Result<AnyPool>> {
        Box::pin(async move {
            let sep = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{sep}mode={}", if create { "rwc" } else { "rw" });
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await?;
            // WAL is a property of the database file; setting it again is a no-op.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
            Ok(pool)
        })
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn blob_type(&self) -> &'static str {
        "BYTEA"
    }

    fn single_writer(&self) -> bool {
        false
    }

    fn audit_head_trigger(&self) -> &'static str {
        // Appends move the head themselves, under its row lock.
        ""
    }

    fn schema_objects_query(&self) -> &'static str {
        // Triggers, rules, row policies and views of the schema our tables are
        // in, and event triggers (database-wide). Names are cast to text: the
        // `name` type does not decode as a string.
        "SELECT 'trigger', t.tgname::text, c.relname::text, pg_get_triggerdef(t.oid) \
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE NOT t.tgisinternal AND n.nspname = current_schema() \
         UNION ALL SELECT 'rule', rulename::text, tablename::text, definition \
           FROM pg_rules WHERE schemaname = current_schema() \
         UNION ALL SELECT 'policy', policyname::text, tablename::text, COALESCE(qual, '') \
           FROM pg_policies WHERE schemaname = current_schema() \
         UNION ALL SELECT 'view', viewname::text, viewname::text, definition \
           FROM pg_views WHERE schemaname = current_schema() \
         UNION ALL SELECT 'materialized view', matviewname::text, matviewname::text, definition \
           FROM pg_matviews WHERE schemaname = current_schema() \
         UNION ALL SELECT 'event trigger', evtname::text, '', evtevent::text FROM pg_event_trigger \
         ORDER BY 1, 2"
    }

    fn token_index_hint(&self) -> &'static str {
        // PostgreSQL's planner uses its statistics; it takes no hints.
        ""
    }

    fn tables_query(&self) -> &'static str {
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    }

    fn columns_query(&self) -> &'static str {
        "SELECT c.column_name::text, c.data_type::text, \
                COALESCE((SELECT array_position(i.indkey::int2[], a.attnum)::bigint \
                            FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                           WHERE i.indisprimary AND a.attname = c.column_name::text \
                             AND i.indrelid = (quote_ident(current_schema()) || '.' || quote_ident(c.table_name::text))::regclass), 0) \
           FROM information_schema.columns c \
          WHERE c.table_schema = current_schema() AND c.table_name = ? ORDER BY c.ordinal_position"
    }

    fn snapshot_isolation(&self) -> Option<&'static str> {
        // One snapshot for the whole transaction, and no write can slip in through it.
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    }

    fn placeholders<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        if !sql.contains('?') {
            return Cow::Borrowed(sql);
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    fn connect<'a>(&'a self, url: &'a str, _create: bool) -> futures_like::BoxFuture<'a, Result<AnyPool>> {
        Box::pin(async move {
            Ok(AnyPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect(url).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(PostgresBackend.placeholders("a = ? AND b IN (?, ?)"), "a = $1 AND b IN ($2, $3)");
        assert_eq!(SqliteBackend.placeholders("a = ?"), "a = ?");
    }
}
