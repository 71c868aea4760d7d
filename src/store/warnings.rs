//! Warnings as received (verbatim bytes and parsed fields) and refused input.

use anyhow::Result;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{insert_rows, ledger, Backend, Val};
use crate::cap::Classification;
use crate::cap::{Alert, Reference};

pub async fn find(
    conn: &mut AnyConnection,
    sender: &str,
    identifier: &str,
    sent: &str,
) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM warnings WHERE sender = $1 AND identifier = $2 AND sent = $3")
            .bind(sender)
            .bind(identifier)
            .bind(sent)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

pub async fn insert(
    conn: &mut AnyConnection,
    alert: &Alert,
    class: &Classification,
    raw: &[u8],
    source: &str,
    now: i64,
) -> Result<i64> {
    let info = alert.preferred_info();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO warnings (sender, identifier, sent, sent_at, msg_type, status, event, headline, colour, hazard,
            expires_at, source, raw, parsed, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
    )
    .bind(&alert.sender)
    .bind(&alert.identifier)
    .bind(&alert.sent)
    .bind(alert.sent_at.timestamp_millis())
    .bind(alert.msg_type.as_str())
    .bind(alert.status.as_str())
    .bind(info.map(|i| i.event.clone()).unwrap_or_default())
    .bind(info.and_then(|i| i.headline.clone()))
    .bind(class.colour.map(|c| c.as_str().to_string()))
    .bind(&class.hazard)
    .bind(alert.expires_at().map(|t| t.timestamp_millis()))
    .bind(source)
    .bind(raw.to_vec())
    .bind(serde_json::to_string(alert)?)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// A referenced warning as received: its id and the incident it opened or joined.
pub async fn find_ref(conn: &mut AnyConnection, r: &Reference) -> Result<Option<(i64, Option<i64>)>> {
    Ok(sqlx::query_as(
        "SELECT id, incident_id FROM warnings WHERE sender = $1 AND identifier = $2 AND sent = $3",
    )
    .bind(&r.sender)
    .bind(&r.identifier)
    .bind(&r.sent)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Records the incident a warning opened or joined.
pub async fn link(conn: &mut AnyConnection, warning_id: i64, incident_id: i64) -> Result<()> {
    sqlx::query("UPDATE warnings SET incident_id = $1 WHERE id = $2")
        .bind(incident_id)
        .bind(warning_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Keeps references to warnings not received yet (resolved by `waiting_for`).
pub async fn keep_refs(
    conn: &mut AnyConnection,
    warning_id: i64,
    refs: &[Reference],
    now: i64,
) -> Result<()> {
    let rows = refs
        .iter()
        .map(|r| {
            vec![
                Val::I(warning_id),
                Val::from(r.sender.as_str()),
                Val::from(r.identifier.as_str()),
                Val::from(r.sent.as_str()),
                Val::I(now),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "warning_refs",
        &[
            "warning_id",
            "ref_sender",
            "ref_identifier",
            "ref_sent",
            "created_at",
        ],
        rows,
    )
    .await
}

/// Warnings received earlier that wait for this one (an unresolved reference names it), as
/// their ids and parsed alerts, in the order they were sent.
pub async fn waiting_for(
    pool: &AnyPool,
    sender: &str,
    identifier: &str,
    sent: &str,
) -> Result<Vec<(i64, Alert)>> {
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT DISTINCT w.id, w.parsed, w.sent_at FROM warning_refs r JOIN warnings w ON w.id = r.warning_id
         WHERE r.ref_sender = $1 AND r.ref_identifier = $2 AND r.ref_sent = $3 AND r.resolved_at IS NULL
         ORDER BY w.sent_at, w.id",
    )
    .bind(sender)
    .bind(identifier)
    .bind(sent)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, parsed, _)| Ok((id, serde_json::from_str(&parsed)?)))
        .collect()
}

/// Marks a waiting warning's references resolved (it has now been applied).
pub async fn resolve_refs(conn: &mut AnyConnection, warning_id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE warning_refs SET resolved_at = $1 WHERE warning_id = $2 AND resolved_at IS NULL")
        .bind(now)
        .bind(warning_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Keeps refused input verbatim with its reason (SPEC §8), with its ledger entry.
pub async fn reject(
    pool: &AnyPool,
    backend: Backend,
    raw: &[u8],
    source: &str,
    reason: &str,
    now: i64,
) -> Result<i64> {
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO warning_rejects (source, reason, raw, received_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(source)
    .bind(reason)
    .bind(raw.to_vec())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let body = serde_json::json!({"source": source, "reason": reason, "bytes": raw.len()});
    ledger::record(
        &mut tx,
        backend,
        now,
        "warning.rejected",
        format!("reject:{id}"),
        body,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

#[derive(Debug, serde::Serialize)]
pub struct WarningRow {
    pub id: i64,
    pub sender: String,
    pub identifier: String,
    pub sent: String,
    pub msg_type: String,
    pub status: String,
    pub event: String,
    pub headline: Option<String>,
    pub colour: Option<String>,
    pub hazard: String,
    pub expires_at: Option<i64>,
    pub received_at: i64,
    /// The incident it opened or joined (an Update or Cancel joins its reference's).
    pub incident_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parsed: Option<serde_json::Value>,
}

const COLS: &str =
    "id, sender, identifier, sent, msg_type, status, event, headline, colour, hazard, expires_at, received_at, incident_id";

fn row_of(r: &sqlx::any::AnyRow) -> Result<WarningRow> {
    Ok(WarningRow {
        id: r.try_get(0)?,
        sender: r.try_get(1)?,
        identifier: r.try_get(2)?,
        sent: r.try_get(3)?,
        msg_type: r.try_get(4)?,
        status: r.try_get(5)?,
        event: r.try_get(6)?,
        headline: r.try_get(7)?,
        colour: r.try_get(8)?,
        hazard: r.try_get(9)?,
        expires_at: r.try_get(10)?,
        received_at: r.try_get(11)?,
        incident_id: r.try_get(12)?,
        parsed: None,
    })
}

pub async fn list(pool: &AnyPool, limit: i64) -> Result<Vec<WarningRow>> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM warnings ORDER BY id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(row_of).collect()
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<Option<WarningRow>> {
    let row = sqlx::query(&format!("SELECT {COLS}, parsed FROM warnings WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let mut w = row_of(&r)?;
            let parsed: String = r.try_get(13)?;
            w.parsed = serde_json::from_str(&parsed).ok();
            Ok(Some(w))
        }
    }
}
