//! The job workers: claim due jobs from the one queue (`store::jobs`), hand each kind to its
//! stage — sends and notices to `deliver::dispatch` in batches, deadlines to
//! `deliver::escalate`, response expiries to `respond`, feed polls to `ingest::feed`,
//! reconciliations to `answer::reconcile` — and
//! sleep until the next job is due or a local insert wakes them. It lives in `app` because it
//! is the one place that knows every stage; it decides nothing a stage decides.
//!
//! A stop lets the round in hand finish (its sends are written, sent and recorded) before the
//! worker releases its claims and returns: a graceful stop sends nothing twice.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::answer::reconcile;
use crate::core::Core;
use crate::deliver::{dispatch, escalate, lease};
use crate::ingest::feed;
use crate::store::jobs::{self, Job, Task};

/// Whether a round found work.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    Worked(usize),
    Idle,
}

/// One claim-and-run round; tests call it (or [`drain`]) to run the queue themselves. Feed
/// polls and reconciliations run inline here.
pub async fn run_once(core: &Arc<Core>, worker: &str) -> Result<Round> {
    let batch = core.settings.dispatch.batch as i64;
    round(core, worker, &CancellationToken::new(), None, batch).await
}

/// How many jobs a worker's next round claims: a few after an idle spell, so that the first
/// people of a warning are loaded, begun and sent in a few milliseconds while the next are
/// claimed, then twice as many after each full round up to `[dispatch] batch` (TCP's slow
/// start, for the same reason: nothing is known yet about the load coming).
#[derive(Debug)]
struct Ramp {
    next: i64,
    first: i64,
    max: i64,
}

impl Ramp {
    fn new(first: u32, max: u32) -> Ramp {
        let (first, max) = (i64::from(first.clamp(1, max.max(1))), i64::from(max.max(1)));
        Ramp {
            next: first,
            first,
            max,
        }
    }

    /// A round claimed `claimed` of the `next` it asked for.
    fn after(&mut self, claimed: usize) {
        self.next = match claimed as i64 {
            0 => self.first,
            n if n >= self.next => (self.next * 2).min(self.max),
            _ => self.next,
        };
    }
}

/// A round: the sends claimed go out as one batch (finished even when `stop` fires meanwhile),
/// and so do the deadlines (`escalate::run_batch`, a transaction per chunk, a stop ending it
/// between two); expiries run one by one, each its own transaction, and a stop ends the round
/// between two of them (the claims left are released by the worker). Feed polls and
/// reconciliations, which wait on other people's servers, run in tasks of their own in `polls`
/// (when given) so that a slow source never holds up a call-out.
async fn round(
    core: &Arc<Core>,
    worker: &str,
    stop: &CancellationToken,
    mut polls: Option<&mut tokio::task::JoinSet<()>>,
    limit: i64,
) -> Result<Round> {
    let now = core.now();
    let lease_ms = core.settings.dispatch.lease.as_millis() as i64;
    let claimed = jobs::claim(&core.store, worker, now, lease_ms, limit).await?;
    if claimed.is_empty() {
        return Ok(Round::Idle);
    }
    let n = claimed.len();
    let mut sends = Vec::new();
    let mut deadlines = Vec::new();
    let mut others = Vec::new();
    for c in claimed {
        match c {
            Ok(job) if matches!(job.task, Task::Send(_) | Task::Notice { .. }) => sends.push(job),
            Ok(job) if matches!(job.task, Task::Deadline { .. }) => deadlines.push(job),
            Ok(job) => others.push(job),
            Err((id, e)) => tracing::error!(job.id = id, error = %e, "a job does not read: parked, not run"),
        }
    }
    // A stage that fails does not hold up the others' jobs: a send batch that cannot be
    // begun must not leave the deadlines claimed with it waiting out their lease (on a
    // frozen test clock, for ever). Failed jobs keep their claim and come back with its lease.
    let mut failed: Option<anyhow::Error> = None;
    // The first error is the round's (the worker logs it and pauses); later ones are logged here.
    let mut note = |e: anyhow::Error| match &failed {
        None => failed = Some(e),
        Some(_) => {
            tracing::error!(worker, error = %format!("{e:#}"), "a job stage failed too; its jobs come back with their lease")
        }
    };
    if !sends.is_empty() {
        if let Err(e) = dispatch::run(core, worker, sends).await {
            note(e.context("sending a batch"));
        }
    }
    if let Err(e) = escalate::run_batch(core, worker, deadlines, stop).await {
        note(e.context("applying deadlines"));
    }
    for job in others {
        if stop.is_cancelled() {
            break;
        }
        if let Err(e) = other(core, worker, job, polls.as_deref_mut()).await {
            note(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(Round::Worked(n)),
    }
}

/// Runs one job that is neither a send nor a deadline.
async fn other(
    core: &Arc<Core>,
    worker: &str,
    job: Job,
    polls: Option<&mut tokio::task::JoinSet<()>>,
) -> Result<()> {
    match &job.task {
        Task::Deadline { .. } => unreachable!("applied in the batch above"),
        Task::ResponseExpiry { response } => {
            let response = *response;
            lease::renewing(core, worker, &[job.id], crate::respond::lapse(core, response))
                .await
                .map_err(|e| anyhow::anyhow!("ending response {response} at its until: {e}"))?;
            finish(core, worker, &job, None).await?;
        }
        Task::Round { response, round } => {
            let (response, round) = (*response, *round);
            lease::renewing(
                core,
                worker,
                &[job.id],
                crate::respond::round(core, response, round),
            )
            .await
            .map_err(|e| anyhow::anyhow!("round {round} of response {response}: {e}"))?;
            finish(core, worker, &job, None).await?;
        }
        Task::Checkpoint { .. } => {
            let next = crate::audit::run_job(&core.store, &core.settings, &job.task, core.now()).await;
            // A failed checkpoint (disk full, a bad key file) is logged and tried again next
            // period; it never stops the queue.
            let next = next.unwrap_or_else(|e| {
                tracing::error!(error = %format!("{e:#}"), "ledger checkpoint failed");
                Some(core.now() + 60_000)
            });
            finish(core, worker, &job, next).await?;
        }
        Task::FeedPoll { .. } | Task::Reconcile { .. } => match polls {
            Some(set) => {
                let (core, worker) = (core.clone(), worker.to_string());
                set.spawn(async move {
                    if let Err(e) = poll(&core, &worker, job).await {
                        tracing::error!(worker = %worker, error = %format!("{e:#}"), "poll job failed");
                    }
                });
            }
            None => poll(core, worker, job).await?,
        },
        Task::Plan { .. } => crate::ingest::slices::resume(core, worker, job).await?,
        Task::Send(_) | Task::Notice { .. } => unreachable!("sent in the batch above"),
    }
    Ok(())
}

/// Polls a feed, or asks a gateway for its missing receipts, under the job's lease and puts
/// the job back at its next time.
async fn poll(core: &Core, worker: &str, job: Job) -> Result<()> {
    let next = match &job.task {
        Task::FeedPoll { feed } => {
            let next = lease::renewing(core, worker, &[job.id], feed::run_job(core, feed)).await;
            if next.is_none() {
                tracing::info!(feed = %feed, "no [[feed]] of that name any more: its poll job ends");
            }
            next
        }
        Task::Reconcile { gateway } => {
            let next = lease::renewing(core, worker, &[job.id], reconcile::run_job(core, gateway)).await;
            if next.is_none() {
                tracing::info!(gateway = %gateway, "no reconciling gateway of that name any more: its job ends");
            }
            next
        }
        _ => anyhow::bail!("job {} is not a poll", job.id),
    };
    finish(core, worker, &job, next).await
}

/// Ends a job run by this worker, or puts it back at `next`, if its claim is still ours.
async fn finish(core: &Core, worker: &str, job: &Job, next: Option<i64>) -> Result<()> {
    let mut tx = core.store.begin().await?;
    match next {
        Some(due) => {
            jobs::reschedule_mine(&mut tx, worker, job.id, due, 0, &job.task, None).await?;
        }
        None => {
            jobs::finish_mine(&mut tx, worker, &[job.id]).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Runs rounds until no job is due (tests and tools drive the queue with it).
pub async fn drain(core: &Arc<Core>, worker: &str) -> Result<usize> {
    let mut n = 0;
    while let Round::Worked(k) = run_once(core, worker).await? {
        n += k;
    }
    Ok(n)
}

/// A worker loop until `stop` fires. The stop is looked at between rounds only, never inside
/// one: a round's sends are bounded by the gateways' time-outs, and dropping it after its
/// sends and before its commit is what used to send people the same call-out twice.
pub async fn worker(core: Arc<Core>, name: String, stop: CancellationToken) {
    let mut polls = tokio::task::JoinSet::new();
    let d = &core.settings.dispatch;
    let mut ramp = Ramp::new(d.first_batch, d.batch);
    while !stop.is_cancelled() {
        while polls.try_join_next().is_some() {}
        let woken = core.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let result = round(&core, &name, &stop, Some(&mut polls), ramp.next).await;
        ramp.after(match &result {
            Ok(Round::Worked(n)) => *n,
            _ => 0,
        });
        let sleep = match result {
            Ok(Round::Worked(_)) => continue,
            Ok(Round::Idle) => {
                let poll = core.settings.dispatch.poll;
                let horizon = core.now() + poll.as_millis() as i64;
                let next = jobs::next_due(core.store.pool(), horizon).await.ok().flatten();
                next.map(|due| {
                    Duration::from_millis((due - core.now()).clamp(0, poll.as_millis() as i64) as u64)
                })
                .unwrap_or(poll)
            }
            Err(e) => {
                tracing::error!(worker = %name, error = %format!("{e:#}"), "job round failed; retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.cancelled() => break,
        }
    }
    // A poll in flight is dropped: what it ingested is committed, the rest stays unseen.
    polls.shutdown().await;
    if let Err(e) = jobs::release(core.store.pool(), &name).await {
        tracing::warn!(worker = %name, error = %e, "releasing claims failed; they expire with their lease");
    }
    tracing::info!(worker = %name, "worker stopped");
}

#[cfg(test)]
mod tests {
    use super::Ramp;

    #[test]
    fn a_worker_starts_small_after_idling_and_doubles_while_rounds_are_full() {
        let mut r = Ramp::new(16, 512);
        let mut asked = Vec::new();
        for _ in 0..7 {
            asked.push(r.next);
            r.after(r.next as usize);
        }
        assert_eq!(asked, [16, 32, 64, 128, 256, 512, 512]);
        r.after(100);
        assert_eq!(r.next, 512, "a round that was not full keeps the size");
        r.after(0);
        assert_eq!(r.next, 16, "an idle round starts again small");
        assert_eq!(Ramp::new(64, 10).next, 10, "never more than the batch");
        assert_eq!(Ramp::new(0, 10).next, 1, "never nothing");
    }
}
