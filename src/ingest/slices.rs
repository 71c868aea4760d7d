//! A large plan written in slices (issue 11 §2): the ingest transaction commits the incident
//! with the first call-outs of its plan, their send jobs and ledger entries, a
//! `planning` record (how far it got) and a `plan` job claimed by the ingest itself; the
//! senders start on that slice at once while the rest is decided on a thread of its own and
//! written here as it comes, a slice a transaction, each moving the cursor in the same
//! transaction; neither side holds more than a slice or two (issue 11 §3). A crash between two slices
//! leaves the `plan` job to run out its claim; a worker then takes it and [`resume`]s: the
//! same plan decided again (the stored warning, colour and instant, the roster as now) minus
//! whoever the incident has called already, so nobody is lost and nobody is planned twice.
//!
//! This file must not decide who is called (that is `target::plan`) nor hold SQL (that is
//! `store::planning`).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cap::{Alert, Classification};
use crate::core::Core;
use crate::deliver::lease;
use crate::domain::IncidentState;
use crate::store::callouts::{self, Added};
use crate::store::jobs::{self, Job};
use crate::store::ledger::Record;
use crate::store::planning::{self, Piece, Pieces, Started};
use crate::store::warnings;
use crate::target::plan::{matched, Planned};

use super::Roster;

/// Call-outs in the ingest transaction (`[dispatch] plan_first`, 64): small, so the first
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
pub async fn write_rest(core: &Core, worker: &str, s: Started, rest: Pieces) -> Result<usize> {
    lease::renewing(core, worker, &[s.job], slices(core, worker, s, rest)).await
}

/// The rest of a plan decided on a blocking thread, a slice of `plan_slice` at a time, while
/// it is written (at most one slice ahead of the writer), leaving out whoever is in `skip`
/// (the first slice). Returns how many people the whole plan calls, counted before the first
/// slice is decided (the POST answers with it), and the slices.
pub async fn decide_rest(
    core: &Core,
    alert: Alert,
    class: Classification,
    roster: Roster,
    now: i64,
    skip: HashSet<i64>,
) -> Result<(usize, Pieces)> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let (total_tx, total) = tokio::sync::oneshot::channel();
    let settings = core.settings.clone();
    let size = slice(core);
    // Off the runtime's threads: deciding 200,000 people takes a second of CPU, and the
    // senders of the first slice must not wait for it (on 2 cores the runtime has 2 threads).
    tokio::task::spawn_blocking(move || {
        let Some(info) = alert.preferred_info() else {
            let _ = total_tx.send(0);
            let _ = tx.blocking_send(Piece::End);
            return;
        };
        let m = matched(&settings, info, &class, None, &roster, now);
        let _ = total_tx.send(m.count());
        let all = m.each(size, |mut planned| {
            planned.retain(|p| !skip.contains(&p.contact_id));
            // A writer that stopped (the incident closed, a stop) lets go of its end.
            tx.blocking_send(Piece::Slice(planned)).is_ok()
        });
        if all {
            let _ = tx.blocking_send(Piece::End);
        }
    });
    let total = total
        .await
        .map_err(|_| anyhow::anyhow!("deciding the rest of the plan stopped before counting it"))?;
    Ok((total, rx))
}

/// A rest already decided whole (a plan that was not cut short), as slices.
pub fn handed(core: &Core, rest: Vec<Planned>) -> Pieces {
    let mut rest = rest.into_iter().peekable();
    let mut slices = Vec::new();
    while rest.peek().is_some() {
        slices.push(Piece::Slice(rest.by_ref().take(slice(core)).collect()));
    }
    slices.push(Piece::End);
    let (tx, rx) = tokio::sync::mpsc::channel(slices.len());
    for s in slices {
        tx.try_send(s).expect("the channel holds every slice");
    }
    rx
}

/// The next slice, `None` at the end, an error when deciding stopped without finishing.
async fn next(rest: &mut Pieces) -> Result<Option<Vec<Planned>>> {
    match rest.recv().await {
        Some(Piece::Slice(p)) => Ok(Some(p)),
        Some(Piece::End) => Ok(None),
        None => anyhow::bail!("deciding the rest of the plan stopped before its end"),
    }
}

async fn slices(core: &Core, worker: &str, s: Started, mut rest: Pieces) -> Result<usize> {
    let started = std::time::Instant::now();
    let mut done = s.done;
    let mut written = 0;
    let mut ahead = next(&mut rest).await?;
    if ahead.is_none() {
        end(core, worker, s, done, "no one left to plan").await?;
        return Ok(0);
    }
    while let Some(chunk) = ahead {
        // One slice ahead, so the last one is known and ends the job in its own transaction.
        ahead = next(&mut rest).await?;
        let last = ahead.is_none();
        if chunk.is_empty() && !last {
            continue;
        }
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
            .into_iter()
            .filter(|c| !called.contains(&c.contact_id))
            .collect();
        let made = match slice.is_empty() {
            true => Vec::new(),
            false => {
                tx.add_callouts(s.incident, &slice, &Added::default(), s.deadline_at, now)
                    .await?
            }
        };
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
    if alert.preferred_info().is_none() {
        return end(core, worker, s, p.done, "the warning has no info block").await;
    }
    let roster = core.roster().await?;
    let class = Classification {
        colour: p.colour,
        ..alert.classify()
    };
    // `write_rest` skips whoever a slice finds called already, so the whole plan goes in: the
    // cursor only says how far the old planner got, the call-outs say who has one.
    let (total, planned) = decide_rest(core, alert, class, roster, p.planned_at, HashSet::new()).await?;
    tracing::warn!(
        incident.id = incident,
        written = p.done,
        planned = total,
        "resuming a plan cut off (a crash or a stop): whoever is not called yet is written now"
    );
    write_rest(core, worker, s, planned).await.map(|_| ())
}
