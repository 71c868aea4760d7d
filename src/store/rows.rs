//! Statements built from rows: the values bound into them ([`Val`]), multi-row INSERTs chunked
//! below each backend's parameter limit, `IN (…)` lists and blocks of fresh ids. The rest of
//! the store writes its batched statements through these; this file must not know any table.

use anyhow::{Context, Result};
use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments};

use super::Backend;

/// A value bound into a dynamically built statement.
#[derive(Debug, Clone)]
pub enum Val {
    I(i64),
    F(f64),
    T(String),
    B(Vec<u8>),
    NullI,
    NullF,
    NullT,
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::I(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::F(v)
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::T(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::T(v.to_string())
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Val {
        v.map_or(Val::NullI, Val::I)
    }
}
impl From<Option<f64>> for Val {
    fn from(v: Option<f64>) -> Val {
        v.map_or(Val::NullF, Val::F)
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Val {
        v.map_or(Val::NullT, Val::T)
    }
}

pub fn bind_all(vals: Vec<Val>) -> Result<AnyArguments<'static>> {
    let mut args = AnyArguments::default();
    for v in vals {
        let r = match v {
            Val::I(i) => args.add(i),
            Val::F(f) => args.add(f),
            Val::T(s) => args.add(s),
            Val::B(b) => args.add(b),
            Val::NullI => args.add(None::<i64>),
            // sqlx 0.8 hands a NULL `f64` to PostgreSQL as `float4` (its Any driver swaps
            // `Real` and `Double` for NULLs only) and a number as `float8`. A statement kept
            // prepared from a chunk whose value was NULL then refuses the next chunk's number
            // ("incorrect binary data format"). A NULL `f32` arrives as `float8`, like the
            // numbers. Tested by `import::regions_with_and_without_coordinates_postgres`.
            Val::NullF => args.add(None::<f32>),
            Val::NullT => args.add(None::<String>),
        };
        r.map_err(|e| anyhow::anyhow!("binding a value: {e}"))?;
    }
    Ok(args)
}

/// Most parameters one statement may carry on either backend (SQLite allows 32,766).
const MAX_PARAMS: usize = 30_000;

/// Parameters per INSERT on PostgreSQL (see [`insert_rows_with_suffix`]).
const MAX_PARAMS_PG: usize = 4_000;

/// Parameters from which a statement is not kept prepared (see [`insert_rows_with_suffix`]).
const LARGE: usize = 1_000;

/// `n` fresh ids for `table`, for batched inserts that must know ids up front.
pub async fn alloc_ids(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    n: usize,
) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    match backend {
        Backend::Sqlite => {
            // Stepped to the end, not `fetch_one`: on its own (outside a unit of work) the
            // statement commits when it finishes, and a commit refused there (a full disk)
            // must be an error, not ids handed out twice.
            let next: Vec<i64> =
                sqlx::query_scalar("UPDATE id_counters SET next = next + $1 WHERE name = $2 RETURNING next")
                    .bind(n as i64)
                    .bind(table)
                    .fetch_all(&mut *conn)
                    .await
                    .with_context(|| format!("allocating ids for {table}"))?;
            let next = *next
                .first()
                .with_context(|| format!("allocating ids for {table}: no counter row"))?;
            Ok(((next - n as i64)..next).collect())
        }
        Backend::Postgres => {
            let sql = format!("SELECT nextval('{table}_id_seq') FROM generate_series(1, $1)");
            let ids: Vec<i64> = sqlx::query_scalar(&sql)
                .bind(n as i64)
                .fetch_all(&mut *conn)
                .await
                .with_context(|| format!("allocating ids for {table}"))?;
            Ok(ids)
        }
    }
}

/// Multi-row `INSERT`, chunked below the parameter limit.
pub async fn insert_rows(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
) -> Result<()> {
    insert_rows_with_suffix(conn, table, columns, rows, "").await
}

/// As [`insert_rows`], with a clause after the VALUES list (`ON CONFLICT …`).
pub async fn insert_rows_with_suffix(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
    suffix: &str,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    // SQLite keeps named parameters (`$N`, and `?NNN` too) in a list that it scans for each
    // one bound, which is quadratic in a 30,000-parameter INSERT: seconds per 10,000 rows.
    // Anonymous `?` are bound in order with no lookup. PostgreSQL only knows `$N`.
    let anonymous = conn.backend_name() == "SQLite";
    // PostgreSQL gets smaller statements: each is encoded whole into the connection's write
    // buffer, which keeps its size afterwards, on every connection of the pool that ever sent
    // one (a slice of 4,096 call-outs in statements of 30,000 parameters held 15 MiB at peak).
    let max = if anonymous { MAX_PARAMS } else { MAX_PARAMS_PG };
    let per_chunk = (max / columns.len()).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(per_chunk).collect();
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let n = values(&mut sql, &chunk, columns.len(), anonymous);
        sql.push_str(suffix);
        let full = chunk.len() == per_chunk;
        let args = bind_all(chunk.into_iter().flatten().collect())?;
        // A large statement is prepared, run and let go, not kept in the connection's
        // statement cache: its row count changes from batch to batch, so each size would be
        // kept apart (up to 100 of them), each a program of tens of thousands of parameters.
        // On PostgreSQL a full chunk is always the same statement, and cheap to keep (the
        // plan is the server's): it is kept.
        sqlx::query_with(&sql, args)
            .persistent(n < LARGE || (full && !anonymous))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("inserting into {table}"))?;
    }
    Ok(())
}

/// Appends `(…), (…)`, one parameter per value, to `sql`; returns the parameters written.
fn values(sql: &mut String, rows: &[Vec<Val>], width: usize, anonymous: bool) -> usize {
    let mut n = 0;
    for (i, row) in rows.iter().enumerate() {
        debug_assert_eq!(row.len(), width);
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for j in 0..row.len() {
            n += 1;
            if j > 0 {
                sql.push_str(", ");
            }
            if anonymous {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
        }
        sql.push(')');
    }
    n
}

/// Multi-row `UPDATE`: each row is `key` then the values of `columns`, set on the row of
/// `table` with that key when `condition` (SQL over `table`'s own columns) holds. Returns
/// the rows changed. Only what changes is sent, where an upsert of the whole row sent every
/// column again (an attempt's whole message text, for four columns that change).
pub async fn update_rows(
    conn: &mut AnyConnection,
    table: &str,
    key: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
    condition: &str,
) -> Result<u64> {
    let anonymous = conn.backend_name() == "SQLite";
    let width = columns.len() + 1;
    let max = if anonymous { MAX_PARAMS } else { MAX_PARAMS_PG };
    let per_chunk = (max / width).max(1);
    let set = columns
        .iter()
        .map(|c| format!("{c} = v.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut changed = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(per_chunk).collect();
        let mut sql = format!("WITH v ({key}, {}) AS (VALUES ", columns.join(", "));
        let n = values(&mut sql, &chunk, width, anonymous);
        sql.push_str(&format!(
            ") UPDATE {table} SET {set} FROM v WHERE {table}.{key} = v.{key} AND ({condition})"
        ));
        let full = chunk.len() == per_chunk;
        let args = bind_all(chunk.into_iter().flatten().collect())?;
        changed += sqlx::query_with(&sql, args)
            .persistent(n < LARGE || (full && !anonymous))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("updating {table}"))?
            .rows_affected();
    }
    Ok(changed)
}

/// `?, ?, …`: `n` anonymous parameters, for SQLite only, and only in a statement whose
/// parameters are all anonymous (sqlx binds them in order, counted apart from any `$N`).
/// SQLite finds a named parameter by scanning its list of names, so a statement of 512 `$N`
/// costs it 512 × 256 steps to bind; `?` costs none.
pub fn anonymous(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        s.push_str(if i == 0 { "?" } else { ", ?" });
    }
    s
}

/// An `IN (…)` list of `n` parameters: `?, …` on SQLite (see [`anonymous`]: every other
/// parameter of the statement must then be `?` too), `$first, …` on PostgreSQL.
pub fn in_list(sqlite: bool, first: usize, n: usize) -> String {
    match sqlite {
        true => anonymous(n),
        false => placeholders(first, n),
    }
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values (callers keep `n` in the
/// thousands: see the note on SQLite in [`insert_rows_with_suffix`]).
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
