//! Warnings as received (verbatim bytes and parsed fields) and refused input.

use anyhow::Result;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{ledger, Backend};
use crate::cap::Alert;
use crate::cap::Classification;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parsed: Option<serde_json::Value>,
}

const COLS: &str = "id, sender, identifier, sent, msg_type, status, event, headline, colour, hazard, expires_at, received_at";

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
            let parsed: String = r.try_get(12)?;
            w.parsed = serde_json::from_str(&parsed).ok();
            Ok(Some(w))
        }
    }
}
