//! How far an incident's plan has been written (`planning`, migration 0013): a warning for
//! tens of thousands of people commits its incident and a first slice of call-outs at once,
//! and the rest slice by slice, each slice in its own transaction with the cursor moved in
//! it, so a crash between two slices loses nobody and a restart plans nobody twice.
//! This file must not decide the plan (that is `target::plan`) nor when to write a slice
//! (that is `ingest::slices`).

use std::collections::HashSet;

use anyhow::{Context, Result};
use sqlx::Row;

use super::{Backend, Store, Tx};
use crate::domain::{Colour, IncidentState};

/// What a restart needs to decide the same plan again, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planning {
    pub incident_id: i64,
    pub warning_id: i64,
    /// The colour planned at (after any response level raised it).
    pub colour: Option<Colour>,
    /// The instant the plan was decided at (duty shifts and quiet hours depend on it).
    pub planned_at: i64,
    /// The answer deadline of every call-out of this plan.
    pub deadline_at: i64,
    pub total: i64,
    /// Call-outs written so far, in plan order (the cursor).
    pub done: i64,
    pub finished_at: Option<i64>,
}

/// A plan whose first slice is committed, as its planner holds it: the rest is written under
/// the claimed `plan` job (`ingest::slices::write_rest`).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub incident: i64,
    pub job: i64,
    pub deadline_at: i64,
    /// Call-outs written so far (the first slice).
    pub done: i64,
}

/// The rest of a plan handed from the request that wrote its first slice to the daemon's
/// planner task (`Core::detach`).
#[derive(Debug)]
pub struct PlanRest {
    pub started: Started,
    /// The plan after its first slice, as it is decided (`ingest::slices::decide_rest`).
    pub planned: Pieces,
}

/// A plan's slices as they are decided, in plan order, then [`Piece::End`]; a slice still
/// skips whoever the incident has a call-out for by the time it is written. At most one
/// slice waits, so a plan of any size holds a few slices, not itself (issue 11 §3).
pub type Pieces = tokio::sync::mpsc::Receiver<Piece>;

/// What a plan's decider hands its writer.
#[derive(Debug)]
pub enum Piece {
    Slice(Vec<crate::target::plan::Planned>),
    /// Every slice was handed over: a channel closed without it means deciding stopped.
    End,
}

fn planning_of(r: &sqlx::any::AnyRow) -> Result<Planning> {
    let incident_id: i64 = r.try_get(0)?;
    let colour: Option<String> = r.try_get(2)?;
    Ok(Planning {
        incident_id,
        warning_id: r.try_get(1)?,
        colour: colour
            .map(|c| {
                Colour::parse(&c).with_context(|| format!("planning of incident {incident_id}: colour {c:?}"))
            })
            .transpose()?,
        planned_at: r.try_get(3)?,
        deadline_at: r.try_get(4)?,
        total: r.try_get(5)?,
        done: r.try_get(6)?,
        finished_at: r.try_get(7)?,
    })
}

const COLS: &str = "incident_id, warning_id, colour, planned_at, deadline_at, total, done, finished_at";

impl Tx {
    /// Starts the record of a plan written in slices (in the transaction of its first slice).
    pub async fn start_planning(&mut self, p: &Planning) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO planning ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(p.incident_id)
        .bind(p.warning_id)
        .bind(p.colour.map(|c| c.as_str().to_string()))
        .bind(p.planned_at)
        .bind(p.deadline_at)
        .bind(p.total)
        .bind(p.done)
        .bind(p.finished_at)
        .execute(self.conn())
        .await
        .context("recording the planning of an incident")?;
        Ok(())
    }

    /// The plan's record and its incident's row, locked until this unit of work ends
    /// (PostgreSQL; SQLite has one writer), with the incident's state: the slice about to be
    /// written checks both.
    pub async fn lock_planning(&mut self, incident_id: i64) -> Result<Option<(Planning, IncidentState)>> {
        let lock = match self.backend {
            // The incident too: a chunk of deadlines reading who is called already, and this
            // slice reading the same, must not both call one person (`lock_of_callouts`).
            Backend::Postgres => " FOR UPDATE OF p FOR NO KEY UPDATE OF i",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT p.incident_id, p.warning_id, p.colour, p.planned_at, p.deadline_at, p.total, p.done,
                p.finished_at, i.state FROM planning p JOIN incidents i ON i.id = p.incident_id
             WHERE p.incident_id = $1{lock}"
        );
        let Some(r) = sqlx::query(&sql)
            .bind(incident_id)
            .fetch_optional(self.conn())
            .await?
        else {
            return Ok(None);
        };
        let state: String = r.try_get(8)?;
        let state = IncidentState::parse(&state)
            .with_context(|| format!("incident {incident_id}: unknown state {state:?}"))?;
        Ok(Some((planning_of(&r)?, state)))
    }

    /// Moves the cursor to `done`; `finished` ends the plan. `total` grows with the cursor:
    /// a plan whose first people were decided alone starts with only them counted.
    pub async fn advance_planning(
        &mut self,
        incident_id: i64,
        done: i64,
        finished: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE planning SET done = $1, finished_at = $2, total = CASE WHEN total < $1 THEN $1 ELSE total END
             WHERE incident_id = $3",
        )
            .bind(done)
            .bind(finished)
            .bind(incident_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Those of these people the incident has a call-out for already (an Update that came
    /// in while the plan was being written called them; a slice skips them).
    pub async fn called_among(&mut self, incident_id: i64, contacts: &[i64]) -> Result<HashSet<i64>> {
        let mut out = HashSet::new();
        for chunk in contacts.chunks(5000) {
            // Anonymous parameters on SQLite: see `insert_rows_with_suffix`.
            let list = match self.backend {
                Backend::Sqlite => vec!["?"; chunk.len()].join(", "),
                Backend::Postgres => super::placeholders(2, chunk.len()),
            };
            let first = match self.backend {
                Backend::Sqlite => "?",
                Backend::Postgres => "$1",
            };
            let sql = format!(
                "SELECT DISTINCT contact_id FROM callouts WHERE incident_id = {first} AND contact_id IN ({list})"
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(incident_id);
            for c in chunk {
                q = q.bind(*c);
            }
            out.extend(q.fetch_all(self.conn()).await?);
        }
        Ok(out)
    }
}

/// An incident's plan record (tests and reports).
pub async fn planning(store: &Store, incident_id: i64) -> Result<Option<Planning>> {
    let r = sqlx::query(&format!("SELECT {COLS} FROM planning WHERE incident_id = $1"))
        .bind(incident_id)
        .fetch_optional(&mut *store.conn().await?)
        .await?;
    r.as_ref().map(planning_of).transpose()
}
