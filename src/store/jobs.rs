//! The durable job table: every piece of time-based work is a row with `due_at` — a send and
//! its retries, an answer deadline, a notice, a response level's expiry, a feed's next poll,
//! a response's next scheduled round, a gateway's next reconciliation.
//! Workers claim due rows under a lease (`claimed_until`), renew it while the work runs, and
//! finish or reschedule only rows whose claim is still theirs; a worker that dies lets its
//! lease run out and another takes the rows over. PostgreSQL instances claim with
//! `FOR UPDATE SKIP LOCKED`; SQLite has one instance and one writer.
//!
//! Kinds and payloads are typed ([`Task`], whose codec is `task`): a row is read into a task
//! once, here. A kind this version does not know (written by a newer one) is never claimed
//! and never deleted; a known kind whose payload does not read is parked with the reason, not
//! run with a default.
//! This module must not decide what a job does: that is `deliver`.

use anyhow::{Context, Result};
use sqlx::{AnyConnection, AnyPool, Row};

pub use super::task::{Kind, Notice, Send, Task};
use super::{insert_rows, placeholders, Backend, Store, Val};

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub callout_id: Option<i64>,
    pub task: Task,
    /// Tries on the current hop so far (retry backoff), or failed polls in a row.
    pub attempts: i64,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub task: Task,
    pub callout_id: Option<i64>,
    pub due_at: i64,
    /// A job that must exist once (a feed's poll, a response's expiry).
    pub dedupe_key: Option<String>,
}

impl NewJob {
    pub fn send(callout_id: i64, send: Send, due_at: i64) -> NewJob {
        NewJob {
            task: Task::Send(send),
            callout_id: Some(callout_id),
            due_at,
            dedupe_key: None,
        }
    }

    pub fn deadline(callout_id: i64, rung: i64, due_at: i64) -> NewJob {
        NewJob {
            task: Task::Deadline { rung },
            callout_id: Some(callout_id),
            due_at,
            dedupe_key: None,
        }
    }

    pub fn notice(callout_id: i64, notice: Notice, due_at: i64) -> NewJob {
        NewJob {
            task: Task::Notice { hop: 0, notice },
            callout_id: Some(callout_id),
            due_at,
            dedupe_key: None,
        }
    }

    pub fn reconcile(gateway: &str, due_at: i64) -> NewJob {
        NewJob {
            task: Task::Reconcile {
                gateway: gateway.to_string(),
            },
            callout_id: None,
            due_at,
            dedupe_key: Some(format!("reconcile:{gateway}")),
        }
    }

    /// The scheduled ledger checkpoint, once whatever the instances (it reschedules itself).
    pub fn checkpoint_schedule(due_at: i64) -> NewJob {
        NewJob {
            task: Task::Checkpoint {
                why: "schedule".into(),
            },
            callout_id: None,
            due_at,
            dedupe_key: Some("ledger-checkpoint".into()),
        }
    }

    /// The checkpoint of an incident's stand-down, taken once after it commits.
    pub fn checkpoint_standdown(incident: i64, due_at: i64) -> NewJob {
        NewJob {
            task: Task::Checkpoint {
                why: format!("standdown:{incident}"),
            },
            callout_id: None,
            due_at,
            dedupe_key: Some(format!("checkpoint:standdown:{incident}")),
        }
    }

    /// Round `round` of a response's scheduled rounds (三调度), once whatever the instances.
    pub fn round(response: i64, round: i64, due_at: i64) -> NewJob {
        NewJob {
            task: Task::Round { response, round },
            callout_id: None,
            due_at,
            dedupe_key: Some(format!("round:{response}:{round}")),
        }
    }

    /// The rest of an incident's plan, once per incident.
    pub fn plan(incident: i64, due_at: i64) -> NewJob {
        NewJob {
            task: Task::Plan { incident },
            callout_id: None,
            due_at,
            dedupe_key: Some(format!("plan:{incident}")),
        }
    }

    pub fn response_expiry(response: i64, due_at: i64) -> NewJob {
        NewJob {
            task: Task::ResponseExpiry { response },
            callout_id: None,
            due_at,
            dedupe_key: Some(format!("response-expiry:{response}")),
        }
    }

    pub fn feed_poll(feed: &str, due_at: i64) -> NewJob {
        NewJob {
            task: Task::FeedPoll {
                feed: feed.to_string(),
            },
            callout_id: None,
            due_at,
            dedupe_key: Some(format!("feed-poll:{feed}")),
        }
    }
}

/// The jobs a new call-out starts with, decided here once for every path that makes one
/// (planning, an escalation, a re-call after a colour rose): send now, and the deadline of
/// the rung it is on.
pub fn first_jobs(callout_id: i64, rung: i64, deadline_at: i64, now: i64) -> [NewJob; 2] {
    [
        NewJob::send(callout_id, Send::default(), now),
        NewJob::deadline(callout_id, rung, deadline_at),
    ]
}

fn row_of(j: NewJob, now: i64) -> Vec<Val> {
    vec![
        Val::from(j.task.kind().as_str()),
        Val::from(j.callout_id),
        Val::T(j.task.payload()),
        Val::I(j.due_at),
        Val::I(now),
        Val::from(j.dedupe_key),
    ]
}

const COLUMNS: [&str; 6] = [
    "kind",
    "callout_id",
    "payload",
    "due_at",
    "created_at",
    "dedupe_key",
];

pub async fn insert(conn: &mut AnyConnection, jobs: Vec<NewJob>, now: i64) -> Result<()> {
    let rows = jobs.into_iter().map(|j| row_of(j, now)).collect();
    insert_rows(conn, "jobs", &COLUMNS, rows).await
}

/// Inserts a job that must exist once (it has a `dedupe_key`); nothing when it exists.
pub async fn insert_once(conn: &mut AnyConnection, job: NewJob, now: i64) -> Result<()> {
    debug_assert!(job.dedupe_key.is_some());
    super::insert_rows_with_suffix(
        conn,
        "jobs",
        &COLUMNS,
        vec![row_of(job, now)],
        " ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
    )
    .await
}

/// Inserts a job already claimed by `worker` until `until`, and returns its id: work the
/// inserting transaction's caller goes on with at once, that another worker takes over only
/// if the claim runs out (a crash).
pub async fn insert_claimed(
    conn: &mut AnyConnection,
    job: NewJob,
    worker: &str,
    until: i64,
    now: i64,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (kind, callout_id, payload, due_at, created_at, dedupe_key, claimed_by, claimed_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(job.task.kind().as_str())
    .bind(job.callout_id)
    .bind(job.task.payload())
    .bind(job.due_at)
    .bind(now)
    .bind(job.dedupe_key)
    .bind(worker)
    .bind(until)
    .fetch_one(&mut *conn)
    .await
    .context("inserting a claimed job")?;
    Ok(id)
}

/// A claimed row: its task, or the reason it does not read (it has been parked).
pub type Claimed = std::result::Result<Job, (i64, String)>;

/// Far in the future: a parked job is kept for an operator to see and never runs.
pub const PARKED: i64 = i64::MAX / 4;

/// The machine's clock stepped by `step_ms` (app's clock watch): every job planned on the old
/// time and not yet due by it (due after `old_now`) moves by the step, and so does every live
/// claim's lease, so that their waits stay what they were in real time. Response expiries are
/// left alone: they are the warning's own instants, not waits. Returns the jobs moved.
pub async fn shift_for_clock_step(conn: &mut AnyConnection, step_ms: i64, old_now: i64) -> Result<u64> {
    let moved = sqlx::query("UPDATE jobs SET due_at = due_at + $1 WHERE due_at > $2 AND kind <> $3")
        .bind(step_ms)
        .bind(old_now)
        .bind(Kind::ResponseExpiry.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query("UPDATE jobs SET claimed_until = claimed_until + $1 WHERE claimed_until > $2")
        .bind(step_ms)
        .bind(old_now)
        .execute(&mut *conn)
        .await?;
    Ok(moved)
}

/// Claims up to `limit` due jobs of the kinds this version knows, for `worker` until
/// `now + lease_ms`. A row whose payload does not read is parked (its `last_error` says why)
/// and returned as an error so the caller can log it.
pub async fn claim(store: &Store, worker: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
    let lock = match store.backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let kinds = Kind::ALL
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = claim_rows(store, &kinds, lock, worker, now, lease_ms, limit)
        .await
        .context("claiming jobs")?;
    let mut out = Vec::with_capacity(rows.len());
    let mut broken = Vec::new();
    for (id, kind, callout_id, payload, attempts) in rows {
        let read = Kind::parse(&kind)
            .ok_or_else(|| format!("unknown kind {kind:?}"))
            .and_then(|k| Task::read(k, &payload));
        match read {
            Ok(task) => out.push(Ok(Job {
                id,
                callout_id,
                task,
                attempts,
            })),
            Err(e) => broken.push((id, e)),
        }
    }
    for (id, e) in &broken {
        sqlx::query(
            "UPDATE jobs SET due_at = $1, last_error = $2, claimed_by = NULL, claimed_until = NULL WHERE id = $3",
        )
        .bind(PARKED)
        .bind(format!("parked: {e}"))
        .bind(id)
        .execute(&store.pool)
        .await?;
    }
    out.extend(broken.into_iter().map(Err));
    out.sort_by_key(|j| match j {
        Ok(j) => j.id,
        Err((id, _)) => *id,
    });
    Ok(out)
}

/// A claimed job's columns: id, kind, call-out, payload, attempts.
type ClaimedRow = (i64, String, Option<i64>, String, i64);

/// The claim itself. The claimed rows come back as one JSON text made by the database: as
/// 512 rows they cost about 10 ms on SQLite's one connection, most of it converting each
/// value of each row on its way through sqlx, against about 2 ms for the statement itself.
/// SQLite cannot aggregate what an UPDATE returns, so there the rows are chosen, read and
/// then marked in one transaction (one writer: nobody claims between the two).
async fn claim_rows(
    store: &Store,
    kinds: &str,
    lock: &str,
    worker: &str,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<ClaimedRow>> {
    let json: Option<String> = match store.backend {
        Backend::Postgres => {
            let sql = format!(
                "WITH c AS (UPDATE jobs SET claimed_by = $1, claimed_until = $2
                            WHERE id IN (SELECT id FROM jobs WHERE kind IN ({kinds}) AND due_at <= $3
                                         AND (claimed_until IS NULL OR claimed_until < $3)
                                         ORDER BY due_at, id LIMIT $4 {lock})
                            RETURNING id, kind, callout_id, payload, attempts)
                 SELECT json_agg(json_build_array(id, kind, callout_id, payload, attempts))::text FROM c"
            );
            sqlx::query_scalar(&sql)
                .bind(worker)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_one(&store.pool)
                .await?
        }
        Backend::Sqlite => {
            // IMMEDIATE: the write lock first, so that a write by another process between
            // the read and the update waits (busy_timeout) instead of failing the claim.
            let mut tx = store.pool.begin_with("BEGIN IMMEDIATE").await?;
            let sql = format!(
                "SELECT json_group_array(json_array(id, kind, callout_id, payload, attempts)) FROM
                   (SELECT id, kind, callout_id, payload, attempts FROM jobs WHERE kind IN ({kinds}) AND due_at <= ?
                    AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY due_at, id LIMIT ?)"
            );
            let json: Option<String> = sqlx::query_scalar(&sql)
                .bind(now)
                .bind(now)
                .bind(limit)
                .fetch_one(&mut *tx)
                .await?;
            let rows = claimed_rows(json)?;
            if !rows.is_empty() {
                let sql = format!(
                    "UPDATE jobs SET claimed_by = ?, claimed_until = ? WHERE id IN ({})",
                    super::anonymous(rows.len())
                );
                let mut q = sqlx::query(&sql).bind(worker).bind(now + lease_ms);
                for r in &rows {
                    q = q.bind(r.0);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            return Ok(rows);
        }
    };
    claimed_rows(json)
}

/// The claimed rows out of their JSON array (none: PostgreSQL's `json_agg` of no rows).
fn claimed_rows(json: Option<String>) -> Result<Vec<ClaimedRow>> {
    match json {
        Some(j) => serde_json::from_str(&j).context("reading the claimed jobs"),
        None => Ok(Vec::new()),
    }
}

/// Extends `worker`'s claim on `ids` to `until` (while their work runs); returns the ids
/// still claimed by it.
pub async fn renew(pool: &AnyPool, worker: &str, ids: &[i64], until: i64) -> Result<usize> {
    let mut n = 0;
    for chunk in ids.chunks(1000) {
        let sql = format!(
            "UPDATE jobs SET claimed_until = $1 WHERE claimed_by = $2 AND id IN ({})",
            placeholders(3, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(until).bind(worker);
        for id in chunk {
            q = q.bind(*id);
        }
        n += q.execute(pool).await?.rows_affected() as usize;
    }
    Ok(n)
}

/// Deletes the jobs of `ids` still claimed by `worker` (its work is done); returns those
/// deleted. The claim is checked in the statement itself, so that a unit of work can leave the
/// jobs table for its last statement: rows are then locked in the order every path uses
/// (call-outs, then their jobs), and an answer racing a send or a deadline on PostgreSQL waits
/// instead of deadlocking.
pub async fn finish_mine(conn: &mut AnyConnection, worker: &str, ids: &[i64]) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let sql = format!(
            "DELETE FROM jobs WHERE claimed_by = $1 AND id IN ({}) RETURNING id",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(worker);
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// As [`finish_mine`], counting the jobs deleted instead of returning them: a send batch
/// needs only the count, and on SQLite 512 returned ids are 512 rows through sqlx.
pub async fn finish_mine_count(conn: &mut AnyConnection, worker: &str, ids: &[i64]) -> Result<usize> {
    let sqlite = conn.backend_name() == "SQLite";
    let mut n = 0;
    for chunk in ids.chunks(1000) {
        let sql = format!(
            "DELETE FROM jobs WHERE claimed_by = {} AND id IN ({})",
            if sqlite { "?" } else { "$1" },
            super::in_list(sqlite, 2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(worker);
        for id in chunk {
            q = q.bind(*id);
        }
        n += q.execute(&mut *conn).await?.rows_affected() as usize;
    }
    Ok(n)
}

/// Puts a job back for later (a retry, the next hop, the next poll), releasing its claim,
/// only while `worker` still holds it; says whether it did.
pub async fn reschedule_mine(
    conn: &mut AnyConnection,
    worker: &str,
    id: i64,
    due_at: i64,
    attempts: i64,
    task: &Task,
    error: Option<&str>,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE jobs SET due_at = $1, attempts = $2, payload = $3, last_error = $4, claimed_by = NULL, claimed_until = NULL
         WHERE id = $5 AND claimed_by = $6",
    )
    .bind(due_at)
    .bind(attempts)
    .bind(task.payload())
    .bind(error)
    .bind(id)
    .bind(worker)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Deletes jobs (of call-outs being cancelled, or ones this worker finished).
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

/// Deletes one singleton job by its key (a response ended by hand needs no expiry).
pub async fn delete_once(conn: &mut AnyConnection, dedupe_key: &str) -> Result<()> {
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1")
        .bind(dedupe_key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// When the next job falls due, of those due before `before` (a sleeping worker wakes then;
/// it sleeps at most its poll, so it asks only about that window).
pub async fn next_due(pool: &AnyPool, before: i64) -> Result<Option<i64>> {
    // A claimed job is due again when its lease runs out; no job is claimed before its due
    // time whatever its lease, so one due after `before` needs no wake before it. The bound lets the
    // `jobs_due` index skip the answer deadlines of a big warning: without it, every idle worker
    // read the whole table (1.1 ms a time with 10,000 deadlines waiting on PostgreSQL, on
    // SQLite holding its one connection).
    Ok(sqlx::query_scalar(
        "SELECT MIN(CASE WHEN claimed_until IS NULL THEN due_at ELSE claimed_until END) FROM jobs WHERE due_at < $1",
    )
    .bind(before.min(PARKED))
    .fetch_one(pool)
    .await?)
}

pub async fn pending(pool: &AnyPool, kind: Kind) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = $1")
        .bind(kind.as_str())
        .fetch_one(pool)
        .await?)
}

/// Jobs of kinds this version does not know (a newer one wrote them): kept, and counted at
/// start so that an operator running mixed versions sees them.
pub async fn unknown_kinds(pool: &AnyPool) -> Result<Vec<(String, i64)>> {
    let known = Kind::ALL
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query(&format!(
        "SELECT kind, COUNT(*) FROM jobs WHERE kind NOT IN ({known}) GROUP BY kind ORDER BY kind"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle worker asks when the next job falls due within its poll: a job due later is
    /// not its concern, a claimed one counts at the end of its lease, and a singleton job
    /// inserted twice (the partial `jobs_dedupe` index of 0014) is there once.
    #[tokio::test]
    async fn next_due_looks_only_within_the_horizon_and_claims_count_at_their_lease() {
        let (store, _dir) = crate::store::temp_sqlite().await;
        let mut conn = store.pool().acquire().await.unwrap();
        insert_once(&mut conn, NewJob::feed_poll("cma", 10_000), 0)
            .await
            .unwrap();
        insert_once(&mut conn, NewJob::feed_poll("cma", 12_000), 0)
            .await
            .unwrap();
        insert(
            &mut conn,
            vec![
                NewJob::deadline(1, 0, 1_000_000),
                NewJob::deadline(2, 0, 1_000_000),
            ],
            0,
        )
        .await
        .unwrap();
        drop(conn);
        assert_eq!(
            pending(store.pool(), Kind::FeedPoll).await.unwrap(),
            1,
            "a singleton twice"
        );
        assert_eq!(
            pending(store.pool(), Kind::Deadline).await.unwrap(),
            2,
            "keyless jobs"
        );

        assert_eq!(next_due(store.pool(), 20_000).await.unwrap(), Some(10_000));
        assert_eq!(
            next_due(store.pool(), 5_000).await.unwrap(),
            None,
            "due after the horizon"
        );
        let claimed = claim(&store, "w", 10_000, 30_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            next_due(store.pool(), 20_000).await.unwrap(),
            Some(40_000),
            "its lease's end"
        );
        assert_eq!(next_due(store.pool(), PARKED).await.unwrap(), Some(40_000));
        finish_mine(
            &mut store.pool().acquire().await.unwrap(),
            "w",
            &[claimed[0].as_ref().unwrap().id],
        )
        .await
        .unwrap();
        assert_eq!(next_due(store.pool(), PARKED).await.unwrap(), Some(1_000_000));
    }
}
