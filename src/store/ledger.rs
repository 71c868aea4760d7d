//! Appending to and re-reading the hash-chained ledger. Entries are appended inside the
//! caller's unit of work, after locking the chain head, so that each change and its record
//! commit together and the chain follows commit order. The chain itself (hashing, checking)
//! is `record::ledger`; this file must not write an entry outside a unit of work, nor ever
//! change one.

use anyhow::{Context, Result};
use sqlx::{AnyConnection, Row};

use super::{insert_rows, Backend, Store, Tx, Val};
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
            .map(|r| (now, r.kind.to_string(), r.subject, r.body.to_string())),
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

/// Every entry, in order (read in pages, so a long ledger is never one huge result).
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
