//! The durable job table: every send, retry and answer deadline is a row with `due_at`.
//! Workers claim due rows under a lease (`claimed_until`); a worker that dies simply lets its
//! lease run out and another takes the rows over. PostgreSQL instances claim with
//! `FOR UPDATE SKIP LOCKED`; SQLite has one instance and one writer.

use anyhow::{Context, Result};
use sqlx::{AnyConnection, AnyPool, Row};

use super::{insert_rows, placeholders, Backend, Store, Val};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Send (or resend) a call-out; payload `{"hop": n}` picks the channel/gateway.
    Send,
    /// A call-out's answer deadline.
    Deadline,
    /// An information message to someone already called (stand-down); no answer expected.
    Notice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Send => "send",
            Kind::Deadline => "deadline",
            Kind::Notice => "notice",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Send, Kind::Deadline, Kind::Notice]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub callout_id: i64,
    pub payload: serde_json::Value,
    pub attempts: i64,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: Kind,
    pub callout_id: i64,
    pub payload: serde_json::Value,
    pub due_at: i64,
}

pub async fn insert(conn: &mut AnyConnection, jobs: Vec<NewJob>, now: i64) -> Result<()> {
    let rows = jobs
        .into_iter()
        .map(|j| {
            vec![
                Val::from(j.kind.as_str()),
                Val::I(j.callout_id),
                Val::T(j.payload.to_string()),
                Val::I(j.due_at),
                Val::I(now),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "jobs",
        &["kind", "callout_id", "payload", "due_at", "created_at"],
        rows,
    )
    .await
}

/// Claims up to `limit` due jobs for `worker` until `now + lease_ms`.
pub async fn claim(store: &Store, worker: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Job>> {
    let lock = match store.backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET claimed_by = $1, claimed_until = $2
         WHERE id IN (SELECT id FROM jobs WHERE due_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)
                      ORDER BY due_at, id LIMIT $4 {lock})
         RETURNING id, kind, callout_id, payload, attempts"
    );
    let rows = sqlx::query(&sql)
        .bind(worker)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&store.pool)
        .await
        .context("claiming jobs")?;
    let mut jobs = rows
        .iter()
        .map(|r| {
            let payload: String = r.try_get(3)?;
            Ok(Job {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                callout_id: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                attempts: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

pub async fn delete(conn: &mut AnyConnection, ids: &[i64]) -> Result<()> {
    for chunk in ids.chunks(1000) {
        let sql = format!("DELETE FROM jobs WHERE id IN ({})", placeholders(1, chunk.len()));
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Puts a job back for later (a retry or the next hop), releasing its claim.
pub async fn reschedule(
    conn: &mut AnyConnection,
    id: i64,
    due_at: i64,
    attempts: i64,
    payload: &serde_json::Value,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET due_at = $1, attempts = $2, payload = $3, last_error = $4, claimed_by = NULL, claimed_until = NULL
         WHERE id = $5",
    )
    .bind(due_at)
    .bind(attempts)
    .bind(payload.to_string())
    .bind(error)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Drops the claims of a worker that stops (graceful stop), so others need not wait a lease.
pub async fn release(pool: &AnyPool, worker: &str) -> Result<()> {
    sqlx::query("UPDATE jobs SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1")
        .bind(worker)
        .execute(pool)
        .await?;
    Ok(())
}

/// Cancels the pending jobs of call-outs (stand-down).
pub async fn delete_for_callouts(conn: &mut AnyConnection, callouts: &[i64], kinds: &[Kind]) -> Result<()> {
    for chunk in callouts.chunks(1000) {
        let kinds_sql = kinds
            .iter()
            .map(|k| format!("'{}'", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "DELETE FROM jobs WHERE kind IN ({kinds_sql}) AND callout_id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// When the next job falls due (a sleeping worker wakes then).
pub async fn next_due(pool: &AnyPool) -> Result<Option<i64>> {
    // A claimed job is due again when its lease runs out.
    Ok(sqlx::query_scalar(
        "SELECT MIN(CASE WHEN claimed_until IS NULL THEN due_at ELSE claimed_until END) FROM jobs",
    )
    .fetch_one(pool)
    .await?)
}

pub async fn pending(pool: &AnyPool, kind: Kind) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = $1")
        .bind(kind.as_str())
        .fetch_one(pool)
        .await?)
}
