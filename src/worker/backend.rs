//! The catalog's connection: SQLite on one machine, PostgreSQL when
//! several machines share the work.
//!
//! The catalog's methods are written once, against the small part of the
//! rusqlite API they use (`execute`, `query_row`, `prepare` + `query_map`,
//! `unchecked_transaction`, `execute_batch`); [`Conn`] offers that API on
//! both databases, so every method keeps its signature and its SQL.
//! For PostgreSQL the SQL is translated where the dialects differ:
//! numbered placeholders, `INSERT OR IGNORE`/`OR REPLACE`, integer and
//! real types, the reserved word `end`, `BEGIN IMMEDIATE`, and the
//! `/*skip locked*/` mark of a job claim. Values pass through a scratch
//! in-memory SQLite connection, which turns rusqlite parameters into plain
//! values and plain values back into rusqlite rows. This is
//! written by hand because no crate bridges rusqlite's API to PostgreSQL.
//!
//! NOTE: the PostgreSQL connection is not encrypted; keep the database on
//! the stations' private network or behind a TLS tunnel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::OnceLock;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use regex::Regex;
use rusqlite::types::Value;
use rusqlite::{Connection, Params, Row};

/// The lock id that serializes `BEGIN IMMEDIATE` transactions and schema
/// creation across PostgreSQL clients, as SQLite's write lock does.
const WRITE_LOCK_ID: i64 = 0x65766964;

pub enum Conn {
    Sqlite(Connection),
    Postgres(Box<Pg>),
}

pub struct Pg {
    client: RefCell<postgres::Client>,
    /// Converts rusqlite parameters and rows to and from plain values.
    scratch: Connection,
    /// Conflict columns of each table, for `INSERT OR REPLACE`.
    keys: HashMap<String, Vec<String>>,
}

impl Conn {
    /// Connects to PostgreSQL and creates the schema, translated.
    pub fn connect_postgres(url: &str, schema: &str) -> rusqlite::Result<Conn> {
        let client = postgres::Client::connect(url, postgres::NoTls).map_err(pg_error)?;
        let pg = Pg {
            client: RefCell::new(client),
            scratch: Connection::open_in_memory()?,
            keys: conflict_keys(schema),
        };
        let translated = postgres_schema(schema);
        {
            // Three round trips: one batch would be one transaction, and the
            // lock would be freed before the tables were committed.
            let mut client = pg.client.borrow_mut();
            client
                .batch_execute(&format!("SELECT pg_advisory_lock({WRITE_LOCK_ID})"))
                .map_err(pg_error)?;
            let created = client.batch_execute(&translated).map_err(pg_error);
            client
                .batch_execute(&format!("SELECT pg_advisory_unlock({WRITE_LOCK_ID})"))
                .map_err(pg_error)?;
            created?;
        }
        Ok(Conn::Postgres(Box::new(pg)))
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        match self {
            Conn::Sqlite(c) => c.execute(sql, params),
            Conn::Postgres(pg) => {
                let values = pg.values(sql, params)?;
                let sql = pg.translate(sql);
                let params: Vec<PgValue<'_>> = values.iter().map(PgValue).collect();
                let changed = pg
                    .client
                    .borrow_mut()
                    .execute(sql.as_str(), &pg_refs(&params))
                    .map_err(pg_error)?;
                Ok(changed as usize)
            }
        }
    }

    pub fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql),
            Conn::Postgres(pg) => pg
                .client
                .borrow_mut()
                .batch_execute(&pg.translate(sql))
                .map_err(pg_error),
        }
    }

    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        match self {
            Conn::Sqlite(c) => c.query_row(sql, params, f),
            Conn::Postgres(pg) => {
                let rows = pg.query(sql, params)?;
                let first = rows
                    .into_iter()
                    .next()
                    .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                pg.with_row(&first, f)
            }
        }
    }

    pub fn prepare(&self, sql: &str) -> rusqlite::Result<Statement<'_>> {
        match self {
            Conn::Sqlite(c) => Ok(Statement::Sqlite(c.prepare(sql)?)),
            Conn::Postgres(pg) => Ok(Statement::Postgres {
                pg,
                sql: sql.to_string(),
            }),
        }
    }

    /// Starts a transaction that rolls back unless committed.
    pub fn unchecked_transaction(&self) -> rusqlite::Result<Transaction<'_>> {
        self.execute_batch("BEGIN")?;
        Ok(Transaction {
            conn: self,
            open: true,
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Postgres(_))
    }
}

pub enum Statement<'c> {
    Sqlite(rusqlite::Statement<'c>),
    Postgres { pg: &'c Pg, sql: String },
}

impl Statement<'_> {
    pub fn query_map<T, P: Params, F: FnMut(&Row<'_>) -> rusqlite::Result<T>>(
        &mut self,
        params: P,
        mut f: F,
    ) -> rusqlite::Result<std::vec::IntoIter<rusqlite::Result<T>>> {
        match self {
            Statement::Sqlite(statement) => {
                let rows: Vec<rusqlite::Result<T>> = statement.query_map(params, f)?.collect();
                Ok(rows.into_iter())
            }
            Statement::Postgres { pg, sql } => {
                let rows = pg.query(sql, params)?;
                let mapped: Vec<rusqlite::Result<T>> = rows
                    .iter()
                    .map(|values| pg.with_row(values, &mut f))
                    .collect();
                Ok(mapped.into_iter())
            }
        }
    }
}

pub struct Transaction<'c> {
    conn: &'c Conn,
    open: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> rusqlite::Result<()> {
        self.open = false;
        self.conn.execute_batch("COMMIT")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

impl Pg {
    /// Converts the parameters to plain values by binding them to
    /// `SELECT ?1, …, ?N` on the scratch connection and reading them back.
    fn values<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<Vec<Value>> {
        let count = placeholder_count(sql);
        if count == 0 {
            return Ok(Vec::new());
        }
        let select = format!(
            "SELECT {}",
            (1..=count)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut statement = self.scratch.prepare_cached(&select)?;
        statement.query_row(params, |row| {
            (0..count).map(|i| row.get::<_, Value>(i)).collect()
        })
    }

    fn query<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<Vec<Vec<Value>>> {
        let values = self.values(sql, params)?;
        let translated = self.translate(sql);
        let params: Vec<PgValue<'_>> = values.iter().map(PgValue).collect();
        let rows = self
            .client
            .borrow_mut()
            .query(translated.as_str(), &pg_refs(&params))
            .map_err(pg_error)?;
        rows.iter().map(row_values).collect()
    }

    /// Presents plain values to `f` as a rusqlite row.
    fn with_row<T>(
        &self,
        values: &[Value],
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        if values.is_empty() {
            return self.scratch.query_row("SELECT NULL", [], f);
        }
        let select = format!(
            "SELECT {}",
            (1..=values.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut statement = self.scratch.prepare_cached(&select)?;
        statement.query_row(rusqlite::params_from_iter(values.iter()), f)
    }

    fn translate(&self, sql: &str) -> String {
        postgres_sql(sql, &self.keys)
    }
}

/// Values of one PostgreSQL row, by each column's type.
fn row_values(row: &postgres::Row) -> rusqlite::Result<Vec<Value>> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)
                .map(|v| v.map(Value::Integer))
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Value::Integer(v.into())))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Value::Integer(v.into())))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Value::Integer(v.into())))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i).map(|v| v.map(Value::Real))
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i)
                .map(|v| v.map(|v| Value::Real(v.into())))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)
                .map(|v| v.map(Value::Blob))
        } else {
            row.try_get::<_, Option<String>>(i)
                .map(|v| v.map(Value::Text))
        };
        values.push(value.map_err(pg_error)?.unwrap_or(Value::Null));
    }
    Ok(values)
}

/// One parameter, converted to whatever type the server expects there.
#[derive(Debug)]
struct PgValue<'a>(&'a Value);

impl ToSql for PgValue<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let text_like = [
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::UNKNOWN,
        ]
        .contains(ty);
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ if text_like => i.to_string().to_sql(&Type::TEXT, out),
                _ => Err(format!("an integer cannot go into a {ty} column").into()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ if text_like => f.to_string().to_sql(&Type::TEXT, out),
                _ => Err(format!("a real number cannot go into a {ty} column").into()),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                Type::FLOAT8 => s.parse::<f64>()?.to_sql(ty, out),
                _ => s.to_sql(&Type::TEXT, out),
            },
            Value::Blob(b) => b.to_sql(&Type::BYTEA, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_refs<'a>(params: &'a [PgValue<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// Converts a PostgreSQL failure to a rusqlite error. Failures that a
/// retry can cure (lost connection, serialization failure, deadlock, lock
/// timeout) get SQLite's busy code, so the catalog's retry rule covers both.
fn pg_error(error: postgres::Error) -> rusqlite::Error {
    use postgres::error::SqlState;
    let transient = error.is_closed()
        || error.code().is_some_and(|code| {
            [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::ADMIN_SHUTDOWN,
            ]
            .contains(code)
                || code.code().starts_with("08")
        });
    let message = match error.as_db_error() {
        Some(db) => format!("PostgreSQL: {}", db.message()),
        None => format!("PostgreSQL: {error}"),
    };
    let code = if transient {
        rusqlite::ffi::SQLITE_BUSY
    } else {
        rusqlite::ffi::SQLITE_ERROR
    };
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(message))
}

/// Counts the parameters of a statement: its highest `?N`, or its bare `?`.
fn placeholder_count(sql: &str) -> usize {
    let mut numbered = 0;
    let mut bare = 0;
    let bytes = sql.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            b'?' if !quoted => {
                let digits: String = sql[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if digits.is_empty() {
                    bare += 1;
                } else {
                    numbered = numbered.max(digits.parse().unwrap_or(0));
                    i += digits.len();
                }
            }
            _ => {}
        }
        i += 1;
    }
    numbered.max(bare)
}

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("the pattern is valid"))
}

/// Translates one statement of the catalog's SQLite dialect.
fn postgres_sql(sql: &str, keys: &HashMap<String, Vec<String>>) -> String {
    static END: OnceLock<Regex> = OnceLock::new();
    static REPLACE: OnceLock<Regex> = OnceLock::new();
    let mut out = String::with_capacity(sql.len() + 32);
    let mut bare = 0;
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    bare += 1;
                    digits = bare.to_string();
                }
                out.push('$');
                out.push_str(&digits);
            }
            _ => out.push(c),
        }
    }
    let mut sql = regex(&END, r"\bend\b")
        .replace_all(&out, "\"end\"")
        .into_owned();
    sql = sql.replace(
        "BEGIN IMMEDIATE",
        &format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_ID})"),
    );
    sql = sql.replace("/*skip locked*/", "FOR UPDATE SKIP LOCKED");
    if sql.contains("INSERT OR IGNORE INTO") {
        sql = format!(
            "{} ON CONFLICT DO NOTHING",
            sql.replace("INSERT OR IGNORE INTO", "INSERT INTO")
                .trim_end()
        );
    }
    let replace = regex(&REPLACE, r"INSERT OR REPLACE INTO\s+(\w+)\s*\(([^)]*)\)");
    if let Some(captures) = replace.captures(&sql) {
        let table = captures[1].to_string();
        let columns: Vec<String> = captures[2]
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .collect();
        let key = keys.get(&table).cloned().unwrap_or_default();
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !key.contains(c))
            .map(|c| format!("\"{c}\" = excluded.\"{c}\""))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_string()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        let quoted_key: Vec<String> = key.iter().map(|k| format!("\"{k}\"")).collect();
        sql = format!(
            "{} ON CONFLICT ({}) DO {action}",
            sql.replace("INSERT OR REPLACE INTO", "INSERT INTO")
                .trim_end(),
            quoted_key.join(", ")
        );
    }
    sql
}

/// Translates the schema: 64-bit integers and reals, serial ids, and
/// composite keys as unique constraints, since PostgreSQL allows no NULL
/// in a primary key and SQLite's catalog has some.
fn postgres_schema(schema: &str) -> String {
    static INTEGER: OnceLock<Regex> = OnceLock::new();
    static REAL: OnceLock<Regex> = OnceLock::new();
    let sql = schema
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("PRIMARY KEY (", "UNIQUE NULLS NOT DISTINCT (");
    let sql = regex(&INTEGER, r"\bINTEGER\b").replace_all(&sql, "BIGINT");
    let sql = regex(&REAL, r"\bREAL\b").replace_all(&sql, "DOUBLE PRECISION");
    postgres_sql(&sql, &HashMap::new())
}

/// Finds the conflict columns of each table: its composite key, else its
/// column declared `PRIMARY KEY`.
fn conflict_keys(schema: &str) -> HashMap<String, Vec<String>> {
    static TABLE: OnceLock<Regex> = OnceLock::new();
    static COMPOSITE: OnceLock<Regex> = OnceLock::new();
    static INLINE: OnceLock<Regex> = OnceLock::new();
    let table = regex(&TABLE, r"(?s)CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);");
    let composite = regex(&COMPOSITE, r"PRIMARY KEY \(([^)]*)\)");
    let inline = regex(&INLINE, r"(?m)^\s*(\w+)\s+\w+[^,\n]*PRIMARY KEY");
    let mut keys = HashMap::new();
    for captures in table.captures_iter(schema) {
        let body = &captures[2];
        let key: Vec<String> = match composite.captures(body) {
            Some(c) => c[1].split(',').map(|k| k.trim().to_string()).collect(),
            None => inline
                .captures(body)
                .map(|c| vec![c[1].to_string()])
                .unwrap_or_default(),
        };
        keys.insert(captures[1].to_string(), key);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_inserts_are_translated() {
        let keys = conflict_keys(
            "CREATE TABLE IF NOT EXISTS fixity_checks (\n    tier TEXT NOT NULL,\n    key TEXT,\n    status TEXT,\n    PRIMARY KEY (tier, key)\n);",
        );
        assert_eq!(keys["fixity_checks"], vec!["tier", "key"]);
        let sql = postgres_sql(
            "INSERT OR REPLACE INTO fixity_checks (tier, key, status) VALUES (?1, ?2, ?3)",
            &keys,
        );
        assert_eq!(
            sql,
            "INSERT INTO fixity_checks (tier, key, status) VALUES ($1, $2, $3) ON CONFLICT (\"tier\", \"key\") DO UPDATE SET \"status\" = excluded.\"status\""
        );
        let sql = postgres_sql("INSERT OR IGNORE INTO s (a) VALUES (?1)", &keys);
        assert_eq!(sql, "INSERT INTO s (a) VALUES ($1) ON CONFLICT DO NOTHING");
        assert_eq!(
            postgres_sql("SELECT start, end FROM gaps WHERE x = '?'", &keys),
            "SELECT start, \"end\" FROM gaps WHERE x = '?'"
        );
    }

    #[test]
    fn schema_types_are_widened() {
        let sql = postgres_schema("CREATE TABLE IF NOT EXISTS t (\n    id INTEGER PRIMARY KEY AUTOINCREMENT,\n    n INTEGER,\n    r REAL,\n    PRIMARY KEY (n)\n);");
        assert!(sql.contains("id BIGSERIAL PRIMARY KEY"));
        assert!(sql.contains("n BIGINT"));
        assert!(sql.contains("r DOUBLE PRECISION"));
        assert!(sql.contains("UNIQUE NULLS NOT DISTINCT (n)"));
    }

    #[test]
    fn placeholder_count_skips_quoted_marks() {
        assert_eq!(placeholder_count("SELECT ?1, ?12 WHERE a = '?'"), 12);
        assert_eq!(placeholder_count("SELECT ?, ?"), 2);
    }
}
