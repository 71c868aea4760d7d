//! Warnings as received (verbatim bytes and parsed fields), the references they wait on, and
//! refused input. This file must not read CAP (that is `cap`) nor decide what a message does
//! to an incident (that is `ingest`).

use anyhow::{anyhow, Result};
use sqlx::{AnyConnection, Row};

use super::{insert_rows, Store, Tx, Val};
use crate::cap::Classification;
use crate::cap::{Alert, Reference};

impl Tx {
    /// The warning with this key, if received.
    pub async fn find_warning(&mut self, sender: &str, identifier: &str, sent: &str) -> Result<Option<i64>> {
        find_in(self.conn(), sender, identifier, sent).await
    }

    /// Stores a warning verbatim and parsed. Returns its id.
    pub async fn insert_warning(
        &mut self,
        alert: &Alert,
        class: &Classification,
        raw: &[u8],
        source: &str,
        now: i64,
    ) -> Result<i64> {
        insert(self.conn(), alert, class, raw, source, now).await
    }

    /// A referenced warning as received: its id and the incident it opened or joined.
    /// The referenced warning: its id, incident and the source it came by (who may revise it).
    pub async fn find_ref(&mut self, r: &Reference) -> Result<Option<(i64, Option<i64>, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, incident_id, source FROM warnings WHERE sender = $1 AND identifier = $2 AND sent = $3",
        )
        .bind(&r.sender)
        .bind(&r.identifier)
        .bind(&r.sent)
        .fetch_optional(self.conn())
        .await?)
    }

    /// Records the incident a warning opened or joined.
    pub async fn link_warning(&mut self, warning_id: i64, incident_id: i64) -> Result<()> {
        sqlx::query("UPDATE warnings SET incident_id = $1 WHERE id = $2")
            .bind(incident_id)
            .bind(warning_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Keeps references to warnings not received yet (resolved by `waiting_for`).
    pub async fn keep_refs(&mut self, warning_id: i64, refs: &[Reference], now: i64) -> Result<()> {
        keep_refs(self.conn(), warning_id, refs, now).await
    }

    /// Marks a waiting warning's references resolved (it has now been applied).
    pub async fn resolve_refs(&mut self, warning_id: i64, now: i64) -> Result<()> {
        sqlx::query("UPDATE warning_refs SET resolved_at = $1 WHERE warning_id = $2 AND resolved_at IS NULL")
            .bind(now)
            .bind(warning_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

/// The warning with this key, if received (outside a unit of work).
pub async fn find(store: &Store, sender: &str, identifier: &str, sent: &str) -> Result<Option<i64>> {
    find_in(&mut *store.conn().await?, sender, identifier, sent).await
}

async fn find_in(
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

async fn insert(
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

async fn keep_refs(conn: &mut AnyConnection, warning_id: i64, refs: &[Reference], now: i64) -> Result<()> {
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
/// their ids, parsed alerts and sources, in the order they were sent.
pub async fn waiting_for(
    store: &Store,
    sender: &str,
    identifier: &str,
    sent: &str,
) -> Result<Vec<(i64, Alert, String)>> {
    let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
        "SELECT DISTINCT w.id, w.parsed, w.sent_at, w.source FROM warning_refs r JOIN warnings w ON w.id = r.warning_id
         WHERE r.ref_sender = $1 AND r.ref_identifier = $2 AND r.ref_sent = $3 AND r.resolved_at IS NULL
         ORDER BY w.sent_at, w.id",
    )
    .bind(sender)
    .bind(identifier)
    .bind(sent)
    .fetch_all(&mut *store.conn().await?)
    .await?;
    rows.into_iter()
        .map(|(id, parsed, _, source)| {
            let alert = serde_json::from_str(&parsed).map_err(|e| anyhow!("warning {id}: parsed: {e}"))?;
            Ok((id, alert, source))
        })
        .collect()
}

/// Keeps refused input verbatim with its reason (SPEC §8), with its ledger entry.
pub async fn reject(store: &Store, raw: &[u8], source: &str, reason: &str, now: i64) -> Result<i64> {
    let mut tx = store.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO warning_rejects (source, reason, raw, received_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(source)
    .bind(reason)
    .bind(raw.to_vec())
    .bind(now)
    .fetch_one(tx.conn())
    .await?;
    let body = serde_json::json!({"source": source, "reason": reason, "bytes": raw.len(),
        "raw_sha256": crate::record::fold::digest(raw)});
    tx.record("warning.rejected", format!("reject:{id}"), body, now)
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

pub async fn list(store: &Store, limit: i64) -> Result<Vec<WarningRow>> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM warnings ORDER BY id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(&mut *store.conn().await?)
        .await?;
    rows.iter().map(row_of).collect()
}

pub async fn get(store: &Store, id: i64) -> Result<Option<WarningRow>> {
    let row = sqlx::query(&format!("SELECT {COLS}, parsed FROM warnings WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *store.conn().await?)
        .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let mut w = row_of(&r)?;
            let parsed: String = r.try_get(13)?;
            w.parsed = Some(serde_json::from_str(&parsed).map_err(|e| anyhow!("warning {id}: parsed: {e}"))?);
            Ok(Some(w))
        }
    }
}
