//! Answers and evacuation reports as stored: an acknowledgement per call-out, evacuation
//! counts per reporter (a later report supersedes an earlier one), each with its ledger entry.

use anyhow::Result;
use sqlx::{AnyConnection, AnyPool, Row};

use super::jobs::{self, Kind};
use super::ledger;
use super::Backend;

/// Records an answer to a call-out (the caller has decided it is not a duplicate).
#[allow(clippy::too_many_arguments)]
pub async fn record_ack(
    conn: &mut AnyConnection,
    backend: Backend,
    callout_id: i64,
    method: &str,
    late: bool,
    note: Option<&str>,
    actor: Option<&str>,
    inbound_id: Option<i64>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO acks (callout_id, method, at, late, note, actor, inbound_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(callout_id)
    .bind(method)
    .bind(now)
    .bind(late as i64)
    .bind(note)
    .bind(actor)
    .bind(inbound_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE callouts SET state = 'acknowledged', acked_at = $1, ack_late = $2, updated_at = $1 WHERE id = $3")
        .bind(now)
        .bind(late as i64)
        .bind(callout_id)
        .execute(&mut *conn)
        .await?;
    // An answered call-out needs no more sends or deadline checks.
    jobs::delete_for_callouts(conn, &[callout_id], &[Kind::Send, Kind::Deadline]).await?;
    ledger::record(conn, backend, now, "ack.recorded",
            format!("callout:{callout_id}"),
            serde_json::json!({"method": method, "late": late, "note": note, "actor": actor, "inbound": inbound_id}))
    .await
}

pub struct Evacuation<'a> {
    pub incident_id: i64,
    pub callout_id: Option<i64>,
    pub reporter: &'a str,
    pub region_code: &'a str,
    pub moved: i64,
    pub threatened: Option<i64>,
    pub method: &'a str,
}

pub async fn record_evacuation(
    conn: &mut AnyConnection,
    backend: Backend,
    e: &Evacuation<'_>,
    now: i64,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO evacuations (incident_id, callout_id, reporter, region_code, moved, threatened, method, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(e.incident_id)
    .bind(e.callout_id)
    .bind(e.reporter)
    .bind(e.region_code)
    .bind(e.moved)
    .bind(e.threatened)
    .bind(e.method)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    ledger::record(
        conn,
        backend,
        now,
        "evacuation.reported",
        format!("incident:{}", e.incident_id),
        serde_json::json!({"id": id, "callout": e.callout_id, "reporter": e.reporter, "region": e.region_code,
                "moved": e.moved, "threatened": e.threatened, "method": e.method}),
    )
    .await?;
    Ok(id)
}

pub use crate::domain::EvacuationRow;

/// The latest report of each reporter (later reports supersede earlier ones, SPEC §2).
pub async fn latest_evacuations(pool: &AnyPool, incident_id: i64) -> Result<Vec<EvacuationRow>> {
    let rows = sqlx::query(
        "SELECT e.reporter, e.region_code, e.moved, e.threatened, e.at FROM evacuations e
         WHERE e.incident_id = $1 AND e.id = (SELECT MAX(id) FROM evacuations x
                                              WHERE x.incident_id = e.incident_id AND x.reporter = e.reporter)
         ORDER BY e.region_code",
    )
    .bind(incident_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EvacuationRow {
                reporter: r.try_get(0)?,
                region_code: r.try_get(1)?,
                moved: r.try_get(2)?,
                threatened: r.try_get(3)?,
                at: r.try_get(4)?,
            })
        })
        .collect()
}
