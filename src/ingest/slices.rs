//! A large plan written in slices (issue 11 §2): the ingest transaction commits the incident
//! with the first call-outs of its plan, their send jobs and ledger entries, a
//! `planning` record (how far it got) and a `plan` job claimed by the ingest itself; the
//! senders start on that slice at once while the rest is written here, a slice a
//! transaction, each moving the cursor in the same transaction. A crash between two slices
//! leaves the `plan` job to run out its claim; a worker then takes it and [`resume`]s: the
//! same plan decided again (the stored warning, colour and instant, the roster as now) minus
//! whoever the incident has called already, so nobody is lost and nobody is planned twice.
//!
//! This file must not decide who is called (that is `target::plan`) nor hold SQL (that is
//! `store::planning`).

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cap::Alert;
use crate::core::Core;
use crate::deliver::lease;
use crate::domain::IncidentState;
use crate::store::callouts::{self, Added};
use crate::store::jobs::{self, Job};
use crate::store::ledger::Record;
use crate::store::planning::{self, Started};
use crate::store::warnings;
use crate::target::plan::{decide, Planned};

/// Call-outs in the ingest transaction (`[dispatch] plan_first`, 256): small, so the first
/// person's message leaves within milliseconds of the POST whatever the size of the plan.
pub(super) fn first(core: &Core) -> usize {
    (core.settings.dispatch.plan_first as usize).max(1)
}

/// Call-outs per later transaction (`plan_slice`, 4096): large enough that a slice costs
/// little more than its rows, small enough that SQLite's one writer is never held long from
/// the senders.
fn slice(core: &Core) -> usize {
    (core.settings.dispatch.plan_slice as usize).max(1)
}

/// The claim name under which the ingest that opened `incident` writes the rest of its plan.
pub fn planner(incident: i64) -> String {
    format!("planner-{}-i{incident}", std::process::id())
}

/// Writes `rest` slice by slice under the `plan` job's claim (renewed while it runs), then
/// finishes the job with the last slice. Returns the call-outs written.
pub async fn write_rest(core: &Core, worker: &str, s: Started, rest: Vec<Planned>) -> Result<usize> {
    lease::renewing(core, worker, &[s.job], slices(core, worker, s, rest)).await
}

async fn slices(core: &Core, worker: &str, s: Started, rest: Vec<Planned>) -> Result<usize> {
    let started = std::time::Instant::now();
    let mut done = s.done;
    let mut written = 0;
    let mut chunks = rest.chunks(slice(core)).peekable();
    if chunks.peek().is_none() {
        end(core, worker, s, done, "no one left to plan").await?;
        return Ok(0);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let now = core.now();
        let mut tx = core.store.begin().await?;
        let Some((p, state)) = tx.lock_planning(s.incident).await? else {
            tx.rollback().await?;
            anyhow::bail!("incident {}: its planning record is gone", s.incident);
        };
        if p.finished_at.is_some() || p.done != done {
            // Another planner (a claim that ran out under a stalled one) moved it on.
            tx.rollback().await?;
            tracing::warn!(
                incident.id = s.incident,
                at = done,
                now_at = p.done,
                "the plan was moved on by another planner: this one stops"
            );
            return Ok(written);
        }
        if state != IncidentState::Active {
            tx.rollback().await?;
            end(
                core,
                worker,
                s,
                done,
                "the incident was closed before its plan was written",
            )
            .await?;
            return Ok(written);
        }
        let ids: Vec<i64> = chunk.iter().map(|c| c.contact_id).collect();
        let called = tx.called_among(s.incident, &ids).await?;
        let slice: Vec<Planned> = chunk
            .iter()
            .filter(|c| !called.contains(&c.contact_id))
            .cloned()
            .collect();
        let made = tx
            .add_callouts(s.incident, &slice, &Added::default(), s.deadline_at, now)
            .await?;
        let mut records = callouts::planned_records(s.incident, &slice, &made, s.deadline_at);
        done += made.len() as i64;
        if last {
            records.push(finished_record(s.incident, done, None));
            jobs::finish_mine(&mut tx, worker, &[s.job]).await?;
        }
        tx.append(records, now).await?;
        tx.advance_planning(s.incident, done, last.then_some(now)).await?;
        tx.commit().await?;
        written += made.len();
        core.wake.notify_waiters();
    }
    tracing::info!(
        incident.id = s.incident,
        callouts = done,
        ms = started.elapsed().as_millis() as u64,
        "plan written"
    );
    Ok(written)
}

fn finished_record(incident: i64, done: i64, note: Option<&str>) -> Record {
    Record::new(
        "incident.planned",
        format!("incident:{incident}"),
        serde_json::json!({"callouts": done, "note": note}),
    )
}

/// Ends the plan where it is (nothing left, or the incident closed).
async fn end(core: &Core, worker: &str, s: Started, done: i64, why: &str) -> Result<()> {
    let now = core.now();
    let mut tx = core.store.begin().await?;
    if let Some((p, _)) = tx.lock_planning(s.incident).await? {
        if p.finished_at.is_none() {
            tx.advance_planning(s.incident, done, Some(now)).await?;
            tx.append(vec![finished_record(s.incident, done, Some(why))], now)
                .await?;
        }
    }
    jobs::finish_mine(&mut tx, worker, &[s.job]).await?;
    tx.commit().await
}

/// A `plan` job taken over after its planner stopped (a crash, a kill): decides the plan
/// again as it was decided and writes whoever is not called yet.
pub async fn resume(core: &Arc<Core>, worker: &str, job: Job) -> Result<()> {
    let jobs::Task::Plan { incident } = job.task else {
        anyhow::bail!("job {} is not a plan", job.id);
    };
    let Some(p) = planning::planning(&core.store, incident).await? else {
        anyhow::bail!("plan job {}: incident {incident} has no planning record", job.id);
    };
    let s = Started {
        incident,
        job: job.id,
        deadline_at: p.deadline_at,
        done: p.done,
    };
    if p.finished_at.is_some() {
        return end(core, worker, s, p.done, "already written").await;
    }
    let row = warnings::get(&core.store, p.warning_id)
        .await?
        .with_context(|| format!("incident {incident}: warning {} is missing", p.warning_id))?;
    let alert: Alert = serde_json::from_value(row.parsed.context("the warning has no parsed form")?)
        .with_context(|| format!("warning {}: parsed form does not read", p.warning_id))?;
    let Some(info) = alert.preferred_info() else {
        return end(core, worker, s, p.done, "the warning has no info block").await;
    };
    let roster = core.roster().await?;
    let class = crate::cap::Classification {
        colour: p.colour,
        ..alert.classify()
    };
    let d = decide(&core.settings, info, &class, None, &roster, p.planned_at);
    let planned: Vec<Planned> = d.calls.into_iter().map(|c| c.planned).collect();
    tracing::warn!(
        incident.id = incident,
        written = p.done,
        planned = planned.len(),
        "resuming a plan cut off (a crash or a stop): whoever is not called yet is written now"
    );
    // `write_rest` skips whoever a slice finds called already, so the whole plan goes in: the
    // cursor only says how far the old planner got, the call-outs say who has one.
    write_rest(core, worker, s, planned).await.map(|_| ())
}
