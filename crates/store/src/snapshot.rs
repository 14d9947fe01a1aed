//! A logical, transaction-consistent copy of every table: what a backup of a
//! PostgreSQL instance holds (and what moves an instance between backends,
//! since both run the same schema).
//!
//! [`Store::logical_snapshot`] reads every table of the database (PostgreSQL:
//! of its current schema) in one read-only transaction — `REPEATABLE READ` on
//! PostgreSQL, SQLite's read transaction — rows in primary-key order, values
//! as they are stored: integers, text (random ids, the plaintext envelope) and
//! bytes (ciphertexts, wrapped keys, blind tokens). Nothing is decrypted: the
//! store has no key.
//!
//! [`Store::load_snapshot`] loads one into an EMPTY database or schema only
//! (it refuses one holding any table, and drops nothing): it creates the
//! schema at the snapshot's version, loads every row in one transaction, and
//! brings the schema up to date.
//!
//! [`Snapshot::encode`] / [`Snapshot::decode`] are its byte form (length-prefixed,
//! big-endian); the backup seals and signs those bytes. `decode` refuses
//! anything malformed or trailing, and never panics.

use sqlx::{AssertSqlSafe, Row};

use crate::{Result, Store, StoreError, schema};

/// The first bytes of an encoded snapshot.
pub const SNAPSHOT_MAGIC: &[u8] = b"confidant-logical 1\n";

/// Every table of a database, as of one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The schema version (migrations applied) the rows belong to.
    pub schema_version: i64,
    /// Tables by name (sorted), `schema_migrations` left out (it is `schema_version`).
    pub tables: Vec<TableRows>,
}

/// One table's columns and rows (in primary-key order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub name: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

/// The three kinds of value the schema stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Integer,
    Text,
    Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Integer(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Snapshot {
    /// Rows per table, for a manifest and for progress.
    pub fn row_counts(&self) -> Vec<(String, usize)> {
        self.tables.iter().map(|t| (t.name.clone(), t.rows.len())).collect()
    }

    /// The byte form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        put_len(&mut out, self.tables.len());
        for t in &self.tables {
            put_bytes(&mut out, t.name.as_bytes());
            put_len(&mut out, t.columns.len());
            for c in &t.columns {
                put_bytes(&mut out, c.name.as_bytes());
                out.push(kind_tag(c.kind));
            }
            out.extend_from_slice(&(t.rows.len() as u64).to_be_bytes());
            for row in &t.rows {
                for cell in row {
                    match cell {
                        Cell::Null => out.push(0),
                        Cell::Integer(i) => {
                            out.push(kind_tag(Kind::Integer));
                            out.extend_from_slice(&i.to_be_bytes());
                        }
                        Cell::Text(s) => {
                            out.push(kind_tag(Kind::Text));
                            put_bytes(&mut out, s.as_bytes());
                        }
                        Cell::Bytes(b) => {
                            out.push(kind_tag(Kind::Bytes));
                            put_bytes(&mut out, b);
                        }
                    }
                }
            }
        }
        out
    }

    /// Read the byte form back; `None` for anything malformed, truncated or
    /// followed by more bytes, or a value of another kind than its column's.
    pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let mut r = Reader(bytes.strip_prefix(SNAPSHOT_MAGIC)?);
        let schema_version = i64::from_be_bytes(r.array()?);
        let n_tables = r.count()?;
        let mut tables = Vec::new();
        for _ in 0..n_tables {
            let name = r.text()?;
            let n_cols = r.count()?;
            let mut columns = Vec::new();
            for _ in 0..n_cols {
                let name = r.text()?;
                let kind = tag_kind(r.byte()?)?;
                columns.push(Column { name, kind });
            }
            let n_rows = u64::from_be_bytes(r.array()?);
            if columns.is_empty() && n_rows > 0 {
                return None;
            }
            let mut rows = Vec::new();
            for _ in 0..n_rows {
                // Each row takes at least one byte per column: a count beyond what is left is a lie.
                if r.0.len() < columns.len() {
                    return None;
                }
                let mut row = Vec::with_capacity(columns.len());
                for c in &columns {
                    let tag = r.byte()?;
                    row.push(match tag {
                        0 => Cell::Null,
                        t if tag_kind(t)? != c.kind => return None,
                        _ => match c.kind {
                            Kind::Integer => Cell::Integer(i64::from_be_bytes(r.array()?)),
                            Kind::Text => Cell::Text(r.text()?),
                            Kind::Bytes => Cell::Bytes(r.bytes()?.to_vec()),
                        },
                    });
                }
                rows.push(row);
            }
            tables.push(TableRows { name, columns, rows });
        }
        r.0.is_empty().then_some(Snapshot { schema_version, tables })
    }
}

fn kind_tag(k: Kind) -> u8 {
    match k {
        Kind::Integer => 1,
        Kind::Text => 2,
        Kind::Bytes => 3,
    }
}

fn tag_kind(t: u8) -> Option<Kind> {
    match t {
        1 => Some(Kind::Integer),
        2 => Some(Kind::Text),
        3 => Some(Kind::Bytes),
        _ => None,
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    fn count(&mut self) -> Option<usize> {
        usize::try_from(u32::from_be_bytes(self.array()?)).ok()
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }
    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

/// A table or column name as the schema spells them; anything else is refused
/// before it is written into a statement.
fn identifier(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(StoreError::Database("a table or column name is not one of ours".into()))
    }
}

fn kind_of(declared: &str) -> Option<Kind> {
    match declared.to_ascii_lowercase().as_str() {
        "bigint" | "integer" | "int8" => Some(Kind::Integer),
        "text" => Some(Kind::Text),
        "blob" | "bytea" => Some(Kind::Bytes),
        _ => None,
    }
}

/// The table the migrations keep their own record in (the snapshot's `schema_version`).
const MIGRATIONS_TABLE: &str = "schema_migrations";

impl Store {
    /// Every table of the database (PostgreSQL: of its current schema), by name.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(self.backend.tables_query()).fetch_all(&self.pool).await?;
        let mut names = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<std::result::Result<Vec<_>, _>>()?;
        names.sort();
        Ok(names)
    }

    /// A table's columns (in table order) and its primary key (in key order).
    async fn columns<'e, E>(&self, conn: E, table: &str) -> Result<(Vec<Column>, Vec<String>)>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let rows = sqlx::query(AssertSqlSafe(self.backend.placeholders(self.backend.columns_query()).into_owned()))
            .bind(table)
            .fetch_all(conn)
            .await?;
        let mut columns = Vec::new();
        let mut key = Vec::new();
        for r in &rows {
            let (name, declared, pk): (String, String, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let kind = kind_of(&declared).ok_or_else(|| {
                StoreError::Database(format!("column {table}.{name} has type {declared}, which a snapshot cannot hold"))
            })?;
            if pk > 0 {
                key.push((pk, name.clone()));
            }
            columns.push(Column { name, kind });
        }
        key.sort();
        Ok((columns, key.into_iter().map(|(_, n)| n).collect()))
    }

    /// Every table's rows, as of one moment (see the module documentation).
    pub async fn logical_snapshot(&self) -> Result<Snapshot> {
        let mut tx = self.pool.begin().await?;
        if let Some(sql) = self.backend.snapshot_isolation() {
            // The first statement of the transaction: every read below sees one snapshot.
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
        }
        let schema_version: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(self.backend.tables_query()).fetch_all(&mut *tx).await?;
        let mut names = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<std::result::Result<Vec<_>, _>>()?;
        names.sort();
        let mut tables = Vec::new();
        for name in names.into_iter().filter(|n| n != MIGRATIONS_TABLE) {
            let (columns, key) = self.columns(&mut *tx, &name).await?;
            let list = columns.iter().map(|c| identifier(&c.name)).collect::<Result<Vec<_>>>()?.join(", ");
            let order = if key.is_empty() {
                (1..=columns.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            } else {
                key.iter().map(|k| identifier(k)).collect::<Result<Vec<_>>>()?.join(", ")
            };
            let sql = format!("SELECT {list} FROM {} ORDER BY {order}", identifier(&name)?);
            let fetched = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
            let mut rows = Vec::with_capacity(fetched.len());
            for r in &fetched {
                let mut row = Vec::with_capacity(columns.len());
                for (i, c) in columns.iter().enumerate() {
                    row.push(match c.kind {
                        Kind::Integer => r.try_get::<Option<i64>, _>(i)?.map_or(Cell::Null, Cell::Integer),
                        Kind::Text => r.try_get::<Option<String>, _>(i)?.map_or(Cell::Null, Cell::Text),
                        Kind::Bytes => r.try_get::<Option<Vec<u8>>, _>(i)?.map_or(Cell::Null, Cell::Bytes),
                    });
                }
                rows.push(row);
            }
            tables.push(TableRows { name, columns, rows });
        }
        tx.commit().await?;
        Ok(Snapshot { schema_version, tables })
    }

    /// Load `snap` into this database, which must hold no table at all: the
    /// schema is created at the snapshot's version, every row loaded in one
    /// transaction (`loaded` is told each table and its rows as it is done),
    /// then the schema migrated to this build's version.
    pub async fn load_snapshot(&self, snap: &Snapshot, loaded: &(dyn Fn(&str, usize) + Sync)) -> Result<()> {
        let existing = self.table_names().await?;
        if !existing.is_empty() {
            return Err(StoreError::NotEmpty { tables: existing.len() });
        }
        schema::migrate_to(&self.pool, self.backend, snap.schema_version).await?;
        let known = self.table_names().await?;
        let mut tx = self.pool.begin().await?;
        for t in &snap.tables {
            if !known.contains(&t.name) {
                return Err(StoreError::Database(format!(
                    "the snapshot holds a table ({}) that schema version {} does not have",
                    t.name, snap.schema_version
                )));
            }
            let (columns, _) = self.columns(&mut *tx, &t.name).await?;
            let mut ours: Vec<_> = columns.iter().map(|c| (c.name.as_str(), c.kind)).collect();
            let mut theirs: Vec<_> = t.columns.iter().map(|c| (c.name.as_str(), c.kind)).collect();
            ours.sort();
            theirs.sort();
            if ours != theirs {
                return Err(StoreError::Database(format!(
                    "the snapshot's table {} has other columns than schema version {} gives it",
                    t.name, snap.schema_version
                )));
            }
            let table = identifier(&t.name)?;
            // Rows the migrations put in (the audit head's first row) make way for the snapshot's.
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut *tx).await?;
            let list = t.columns.iter().map(|c| identifier(&c.name)).collect::<Result<Vec<_>>>()?.join(", ");
            let marks = vec!["?"; t.columns.len()].join(", ");
            let sql: std::sync::Arc<str> =
                self.backend.placeholders(&format!("INSERT INTO {table} ({list}) VALUES ({marks})")).into();
            for row in &t.rows {
                let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                for (cell, c) in row.iter().zip(&t.columns) {
                    q = match (cell, c.kind) {
                        (Cell::Null, Kind::Integer) => q.bind(None::<i64>),
                        (Cell::Null, Kind::Text) => q.bind(None::<String>),
                        (Cell::Null, Kind::Bytes) => q.bind(None::<Vec<u8>>),
                        (Cell::Integer(i), _) => q.bind(*i),
                        (Cell::Text(s), _) => q.bind(s.as_str()),
                        (Cell::Bytes(b), _) => q.bind(b.as_slice()),
                    };
                }
                q.execute(&mut *tx).await?;
            }
            loaded(&t.name, t.rows.len());
        }
        tx.commit().await?;
        schema::migrate(&self.pool, self.backend).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            schema_version: 10,
            tables: vec![
                TableRows {
                    name: "audit_head".into(),
                    columns: vec![
                        Column { name: "id".into(), kind: Kind::Integer },
                        Column { name: "size".into(), kind: Kind::Integer },
                    ],
                    rows: vec![vec![Cell::Integer(1), Cell::Integer(-7)]],
                },
                TableRows {
                    name: "users".into(),
                    columns: vec![
                        Column { name: "id".into(), kind: Kind::Text },
                        Column { name: "sealed".into(), kind: Kind::Bytes },
                    ],
                    rows: vec![
                        vec![Cell::Text("a".into()), Cell::Bytes(vec![0, 1, 2, 255])],
                        vec![Cell::Text("ä\n".into()), Cell::Null],
                    ],
                },
                TableRows { name: "empty".into(), columns: vec![], rows: vec![] },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(Snapshot::decode(&s.encode()), Some(s));
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert_eq!(Snapshot::decode(&bytes[..n]), None, "cut at {n}");
        }
        let mut more = bytes.clone();
        more.push(0);
        assert_eq!(Snapshot::decode(&more), None);
    }

    #[test]
    fn a_value_of_another_kind_than_its_column_is_refused() {
        let mut s = sample();
        s.tables[0].rows[0][0] = Cell::Text("1".into());
        assert_eq!(Snapshot::decode(&s.encode()), None);
    }

    #[test]
    fn a_huge_row_count_is_refused_without_allocating() {
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        bytes.extend_from_slice(&1i64.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.push(b't');
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.push(b'c');
        bytes.push(1);
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(Snapshot::decode(&bytes), None);
    }

    #[test]
    fn only_our_identifiers_reach_a_statement() {
        assert_eq!(identifier("audit_log").unwrap(), "\"audit_log\"");
        for bad in ["", "a\"; DROP TABLE x; --", "Users", "1a", "a b"] {
            assert!(identifier(bad).is_err(), "{bad}");
        }
    }
}
