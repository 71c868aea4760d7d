//! Declared response levels (应急响应): writing, ending and reading them. What a response
//! does (its rules, its stand-down) is `target::response` and `respond`; this file only keeps
//! the rows.

use anyhow::{Context, Result};
use sqlx::Row;

use super::{Store, Tx};

use crate::domain::{Level, RegionCode};
use crate::target::response::{Activation, Response};

const SELECT: &str = "SELECT id, hazard, level, regions, note, actor, incident_id, started_at, until_at,
    ended_at, ended_by FROM responses";

fn response_of(r: &sqlx::any::AnyRow) -> Result<Response> {
    let id: i64 = r.try_get(0)?;
    let level: String = r.try_get(2)?;
    let regions: String = r.try_get(3)?;
    Ok(Response {
        id,
        hazard: r.try_get(1)?,
        level: Level::parse(&level).with_context(|| format!("response {id}: level {level:?}"))?,
        regions: serde_json::from_str::<Vec<RegionCode>>(&regions)
            .with_context(|| format!("response {id}: regions {regions:?}"))?,
        note: r.try_get(4)?,
        actor: r.try_get(5)?,
        incident_id: r.try_get(6)?,
        started_at: r.try_get(7)?,
        until_at: r.try_get(8)?,
        ended_at: r.try_get(9)?,
        ended_by: r.try_get(10)?,
    })
}

impl Tx {
    /// Records an activation. Returns its id.
    pub async fn insert_response(&mut self, a: &Activation, actor: &str, now: i64) -> Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO responses (hazard, level, regions, note, actor, started_at, until_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(a.hazard)
        .bind(a.level.as_str())
        .bind(serde_json::to_string(&a.regions)?)
        .bind(&a.note)
        .bind(actor)
        .bind(now)
        .bind(a.until_at)
        .fetch_one(self.conn())
        .await
        .context("recording the response")
    }

    /// The incident an activation opened.
    pub async fn set_response_incident(&mut self, id: i64, incident_id: i64) -> Result<()> {
        sqlx::query("UPDATE responses SET incident_id = $1 WHERE id = $2")
            .bind(incident_id)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Marks the response ended; false when it already was (another instance or request got
    /// there first), so the stand-down happens once.
    pub async fn end_response(&mut self, id: i64, actor: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE responses SET ended_at = $1, ended_by = $2 WHERE id = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(actor)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn response(&mut self, id: i64) -> Result<Option<Response>> {
        let r = sqlx::query(&format!("{SELECT} WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        r.as_ref().map(response_of).transpose()
    }
}

/// Responses in force at `now`: not ended, `until` not passed.
pub async fn active(store: &Store, now: i64) -> Result<Vec<Response>> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE ended_at IS NULL AND (until_at IS NULL OR until_at > $1) ORDER BY id"
    ))
    .bind(now)
    .fetch_all(&mut *store.conn().await?)
    .await?;
    rows.iter().map(response_of).collect()
}

/// Ids of responses whose `until` has passed but that were not ended yet.
pub async fn expired(store: &Store, now: i64) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM responses WHERE ended_at IS NULL AND until_at <= $1 ORDER BY id")
            .bind(now)
            .fetch_all(&mut *store.conn().await?)
            .await?,
    )
}

pub async fn list(store: &Store, limit: i64) -> Result<Vec<Response>> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(&mut *store.conn().await?)
        .await?;
    rows.iter().map(response_of).collect()
}

/// The response levels an incident's activation opened, oldest first (for its report).
pub async fn of_incident(store: &Store, incident_id: i64) -> Result<Vec<Response>> {
    let rows = sqlx::query(&format!("{SELECT} WHERE incident_id = $1 ORDER BY id"))
        .bind(incident_id)
        .fetch_all(&mut *store.conn().await?)
        .await?;
    rows.iter().map(response_of).collect()
}
