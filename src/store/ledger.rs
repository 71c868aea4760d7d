//! Appending to and re-reading the hash-chained ledger. Entries are appended inside the
//! caller's unit of work, after locking the chain head, so that each change and its record
//! commit together and the chain follows commit order. The chain itself (hashing, checking)
//! is `record::ledger`; this file must not write an entry outside a unit of work, nor ever
//! change one.

use anyhow::{Context, Result};
use sqlx::{AnyConnection, Row};

use super::{insert_rows, Backend, Store, Tx, Val};
use crate::record::checkpoint::{self, Checkpoint};
use crate::record::fold;
use crate::record::ledger::{self, Entry};

/// One thing to record: kind (`callout.sent` …), subject (`callout:42`), body (JSON).
pub struct Record {
    pub kind: &'static str,
    pub subject: String,
    pub body: serde_json::Value,
}

impl Record {
    pub fn new(kind: &'static str, subject: impl Into<String>, body: serde_json::Value) -> Record {
        Record {
            kind,
            subject: subject.into(),
            body,
        }
    }
}

impl Tx {
    /// Appends records, in order, committed with this unit of work: kept, and written by
    /// `Tx::commit` so that the ledger head is the last lock taken (store's lock order).
    pub async fn append(&mut self, records: Vec<Record>, now: i64) -> Result<()> {
        self.defer_ledger(now, records);
        Ok(())
    }

    /// Appends a single record: most changes write one.
    pub async fn record(
        &mut self,
        kind: &'static str,
        subject: String,
        body: serde_json::Value,
        now: i64,
    ) -> Result<()> {
        self.append(vec![Record::new(kind, subject, body)], now).await
    }
}

// TODO(issue 8): deliver/ calls this with its transaction as a bare connection.
pub async fn append(
    conn: &mut AnyConnection,
    backend: Backend,
    now: i64,
    records: Vec<Record>,
) -> Result<()> {
    append_at(conn, backend, records.into_iter().map(|r| (now, r)).collect()).await
}

/// Appends records each with its own time, taking the head once (a group commit's units).
pub async fn append_at(
    conn: &mut AnyConnection,
    backend: Backend,
    records: Vec<(i64, Record)>,
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let lock = match backend {
        Backend::Postgres => "SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE",
        Backend::Sqlite => "SELECT seq, hash FROM ledger_head WHERE id = 1",
    };
    let head = sqlx::query(lock)
        .fetch_one(&mut *conn)
        .await
        .context("reading the ledger head")?;
    let (seq, hash): (i64, String) = (head.try_get(0)?, head.try_get(1)?);
    let entries = ledger::chain(
        &hash,
        seq + 1,
        records
            .into_iter()
            .map(|(at, r)| (at, r.kind.to_string(), r.subject, r.body.to_string())),
    );
    let last = entries
        .last()
        .map(|e| (e.seq, e.hash.clone()))
        .unwrap_or((seq, hash));
    let rows = entries
        .into_iter()
        .map(|e| {
            vec![
                Val::I(e.seq),
                Val::I(e.at),
                Val::T(e.kind),
                Val::T(e.subject),
                Val::T(e.body),
                Val::T(e.prev_hash),
                Val::T(e.hash),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "ledger",
        &["seq", "at", "kind", "subject", "body", "prev_hash", "hash"],
        rows,
    )
    .await?;
    sqlx::query("UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(last.0)
        .bind(last.1)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Appends a single record: most changes write one.
pub async fn record(
    conn: &mut AnyConnection,
    backend: Backend,
    now: i64,
    kind: &'static str,
    subject: String,
    body: serde_json::Value,
) -> Result<()> {
    append(conn, backend, now, vec![Record::new(kind, subject, body)]).await
}

/// Every entry in order, page by page (the ledger may be large).
pub async fn verify(store: &Store) -> Result<Result<usize, ledger::Broken>> {
    let mut conn = store.conn().await?;
    let mut prev = ledger::GENESIS.to_string();
    let mut after = 0i64;
    let mut count = 0usize;
    loop {
        let rows = sqlx::query(
            "SELECT seq, at, kind, subject, body, prev_hash, hash FROM ledger WHERE seq > $1 ORDER BY seq LIMIT 5000",
        )
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            break;
        }
        let entries: Vec<Entry> = rows.iter().map(entry_of).collect::<Result<_>>()?;
        let first_seq = entries[0].seq;
        if first_seq != after + 1 {
            return Ok(Err(ledger::Broken {
                seq: after + 1,
                reason: format!("entry {} is missing", after + 1),
            }));
        }
        let last = entries
            .last()
            .map(|e| (e.seq, e.hash.clone()))
            .unwrap_or_default();
        match ledger::verify(entries, &prev) {
            Ok(n) => count += n,
            Err(b) => return Ok(Err(b)),
        }
        after = last.0;
        prev = last.1;
    }
    let head: (i64, String) = sqlx::query_as("SELECT seq, hash FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    if head.0 != after || head.1 != prev {
        return Ok(Err(ledger::Broken {
            seq: head.0,
            reason: format!("the chain ends at {after} but its head says {}", head.0),
        }));
    }
    Ok(Ok(count))
}

fn entry_of(r: &sqlx::any::AnyRow) -> Result<Entry> {
    Ok(Entry {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        kind: r.try_get(2)?,
        subject: r.try_get(3)?,
        body: r.try_get(4)?,
        prev_hash: r.try_get(5)?,
        hash: r.try_get(6)?,
    })
}

/// The entries about one subject prefix (e.g. an incident's), for reports.
pub async fn entries_for(store: &Store, subjects: &[String]) -> Result<Vec<Entry>> {
    let mut conn = store.conn().await?;
    let mut out = Vec::new();
    for chunk in subjects.chunks(500) {
        let sql = format!(
            "SELECT seq, at, kind, subject, body, prev_hash, hash FROM ledger WHERE subject IN ({}) ORDER BY seq",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for s in chunk {
            q = q.bind(s.clone());
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.push(entry_of(&r)?);
        }
    }
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

/// The chain's head as the database records it: (seq, hash).
pub async fn head(store: &Store) -> Result<(i64, String)> {
    Ok(sqlx::query_as("SELECT seq, hash FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *store.conn().await?)
        .await?)
}

/// What `ledger verify` found: how many entries were checked, the head, and the first
/// problem (none: the record holds).
#[derive(Debug)]
pub struct Verified {
    pub entries: usize,
    pub head_seq: i64,
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The hash chain or its head does not hold.
    Broken(ledger::Broken),
    /// A signed checkpoint the chain does not agree with (truncated or rewritten).
    Checkpoint(String),
    /// An entry a fold cannot read.
    Unreadable(String),
    /// A state row that is not what the ledger says.
    Differs(fold::Differs),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Broken(b) => write!(f, "broken at entry {}: {}", b.seq, b.reason),
            Problem::Checkpoint(s) => write!(f, "checkpoint: {s}"),
            Problem::Unreadable(s) => write!(f, "unreadable entry: {s}"),
            Problem::Differs(d) => write!(f, "differs: {d}"),
        }
    }
}

/// The whole check: replays the chain page by page (each page is checked, folded and
/// dropped, so memory holds the folded state, not the ledger), compares the head with the
/// checkpoints given (their signatures already checked by the caller), then reads the live
/// state tables and compares them with the fold.
pub async fn verify_full(store: &Store, checkpoints: &[Checkpoint]) -> Result<Verified> {
    let mut conn = store.conn().await?;
    let wanted: std::collections::HashMap<i64, ()> = checkpoints.iter().map(|c| (c.seq, ())).collect();
    let mut hash_at: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let mut folded = fold::Tables::default();
    let mut prev = ledger::GENESIS.to_string();
    let mut after = 0i64;
    let mut count = 0usize;
    let done = |problem, count, after| Verified {
        entries: count,
        head_seq: after,
        problem: Some(problem),
    };
    loop {
        let rows = sqlx::query(
            "SELECT seq, at, kind, subject, body, prev_hash, hash FROM ledger WHERE seq > $1 ORDER BY seq LIMIT 5000",
        )
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            break;
        }
        let entries: Vec<Entry> = rows.iter().map(entry_of).collect::<Result<_>>()?;
        drop(rows);
        if entries[0].seq != after + 1 {
            let b = ledger::Broken {
                seq: after + 1,
                reason: format!("entry {} is missing", after + 1),
            };
            return Ok(done(Problem::Broken(b), count, after));
        }
        if let Err(b) = ledger::verify(entries.iter().cloned(), &prev) {
            return Ok(done(Problem::Broken(b), count, after));
        }
        for e in &entries {
            if let Err(s) = folded.apply(e) {
                return Ok(done(Problem::Unreadable(s), count, after));
            }
            if wanted.contains_key(&e.seq) {
                hash_at.insert(e.seq, e.hash.clone());
            }
        }
        count += entries.len();
        let last = entries.last().expect("a page is never empty here");
        after = last.seq;
        prev = last.hash.clone();
    }
    let head: (i64, String) = sqlx::query_as("SELECT seq, hash FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    if head.0 != after || head.1 != prev {
        let b = ledger::Broken {
            seq: head.0,
            reason: format!("the chain ends at {after} but its head says {}", head.0),
        };
        return Ok(done(Problem::Broken(b), count, after));
    }
    for c in checkpoints {
        if let Err(s) = checkpoint::against_chain(c, after, hash_at.get(&c.seq).map(String::as_str)) {
            return Ok(done(Problem::Checkpoint(s), count, after));
        }
    }
    let live = live_tables(&mut conn).await?;
    Ok(Verified {
        entries: count,
        head_seq: after,
        problem: fold::compare(&live, &folded).map(Problem::Differs),
    })
}

/// The live rows of every table the fold covers, in the fold's shape.
async fn live_tables(conn: &mut AnyConnection) -> Result<fold::Tables> {
    use serde_json::Value;
    let mut t = fold::Tables::default();
    let opt_i = |v: Option<i64>| v.map_or(Value::Null, Value::from);
    let opt_t = |v: Option<String>| v.map_or(Value::Null, Value::from);
    for r in sqlx::query("SELECT id, state, colour, closed_at FROM incidents")
        .fetch_all(&mut *conn)
        .await?
    {
        let row = t.row_mut("incidents", r.try_get(0)?);
        row.insert("state", Value::from(r.try_get::<String, _>(1)?));
        row.insert("colour", opt_t(r.try_get(2)?));
        row.insert("closed_at", opt_i(r.try_get(3)?));
    }
    for r in sqlx::query("SELECT id, incident_id, state, acked_at, ack_late FROM callouts")
        .fetch_all(&mut *conn)
        .await?
    {
        let row = t.row_mut("callouts", r.try_get(0)?);
        row.insert("incident_id", Value::from(r.try_get::<i64, _>(1)?));
        row.insert("state", Value::from(r.try_get::<String, _>(2)?));
        row.insert("acked_at", opt_i(r.try_get(3)?));
        row.insert("ack_late", Value::from(r.try_get::<i64, _>(4)?));
    }
    for r in sqlx::query("SELECT callout_id, method, at, late, actor FROM acks")
        .fetch_all(&mut *conn)
        .await?
    {
        let row = t.row_mut("acks", r.try_get(0)?);
        row.insert("method", Value::from(r.try_get::<String, _>(1)?));
        row.insert("at", Value::from(r.try_get::<i64, _>(2)?));
        row.insert("late", Value::from(r.try_get::<i64, _>(3)?));
        row.insert("actor", opt_t(r.try_get(4)?));
    }
    for r in sqlx::query(
        "SELECT id, incident_id, callout_id, reporter, region_code, moved, threatened, method, at FROM evacuations",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let row = t.row_mut("evacuations", r.try_get(0)?);
        row.insert("incident_id", Value::from(r.try_get::<i64, _>(1)?));
        row.insert("callout_id", opt_i(r.try_get(2)?));
        row.insert("reporter", Value::from(r.try_get::<String, _>(3)?));
        row.insert("region_code", Value::from(r.try_get::<String, _>(4)?));
        row.insert("moved", Value::from(r.try_get::<i64, _>(5)?));
        row.insert("threatened", opt_i(r.try_get(6)?));
        row.insert("method", Value::from(r.try_get::<String, _>(7)?));
        row.insert("at", Value::from(r.try_get::<i64, _>(8)?));
    }
    for r in sqlx::query("SELECT id, task_id, callout_id, result, method, at FROM knocks")
        .fetch_all(&mut *conn)
        .await?
    {
        let row = t.row_mut("knocks", r.try_get(0)?);
        row.insert("task_id", Value::from(r.try_get::<i64, _>(1)?));
        row.insert("callout_id", Value::from(r.try_get::<i64, _>(2)?));
        row.insert("result", Value::from(r.try_get::<String, _>(3)?));
        row.insert("method", Value::from(r.try_get::<String, _>(4)?));
        row.insert("at", Value::from(r.try_get::<i64, _>(5)?));
    }
    for r in sqlx::query(
        "SELECT id, hazard, level, regions, incident_id, started_at, until_at, ended_at, ended_by FROM responses",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let id: i64 = r.try_get(0)?;
        let regions: String = r.try_get(3)?;
        let row = t.row_mut("responses", id);
        row.insert("hazard", Value::from(r.try_get::<String, _>(1)?));
        row.insert("level", Value::from(r.try_get::<String, _>(2)?));
        // A JSON column: compared as the JSON it holds (unreadable: as its text, which differs).
        row.insert("regions", serde_json::from_str(&regions).unwrap_or(Value::from(regions)));
        row.insert("incident_id", opt_i(r.try_get(4)?));
        row.insert("started_at", Value::from(r.try_get::<i64, _>(5)?));
        row.insert("until_at", opt_i(r.try_get(6)?));
        row.insert("ended_at", opt_i(r.try_get(7)?));
        row.insert("ended_by", opt_t(r.try_get(8)?));
    }
    // One warning at a time: raw bodies can be large.
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM warnings ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    for id in ids {
        let raw: Vec<u8> = sqlx::query_scalar("SELECT raw FROM warnings WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        t.set("warnings", id, "raw_sha256", Value::from(fold::digest(&raw)));
    }
    Ok(t)
}

/// The state the whole ledger says, folded page by page without checking the chain (that is
/// [`verify_full`]'s job); for reports rebuilt from the ledger.
pub async fn fold_all(store: &Store) -> Result<fold::Tables> {
    let mut conn = store.conn().await?;
    let mut folded = fold::Tables::default();
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT seq, at, kind, subject, body, prev_hash, hash FROM ledger WHERE seq > $1 ORDER BY seq LIMIT 5000",
        )
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get(0)?;
        for r in &rows {
            folded.apply(&entry_of(r)?).map_err(anyhow::Error::msg)?;
        }
    }
    Ok(folded)
}

/// Every entry, in order (read in pages, so a long ledger is never one huge result): the
/// season simulation's table is folded from it.
pub async fn all_entries(store: &Store) -> Result<Vec<Entry>> {
    let mut conn = store.conn().await?;
    let mut out: Vec<Entry> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let rows = sqlx::query(
            "SELECT seq, at, kind, subject, body, prev_hash, hash FROM ledger WHERE seq > $1 ORDER BY seq LIMIT 5000",
        )
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Ok(out);
        }
        for r in &rows {
            out.push(entry_of(r)?);
        }
    }
}
