//! Workers: claim due jobs from the database, run them (sends in batches, deadlines one by
//! one), and sleep until the next job is due or a local insert wakes them. A stop signal
//! makes them finish the batch in hand, release their claims and return.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::core::Core;
use crate::store::jobs::{self, Kind};
use crate::{deliver::dispatch, deliver::escalate};

/// Whether a round found work.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    Worked(usize),
    Idle,
}

/// One claim-and-run round; tests call it directly to drain the queue.
pub async fn run_once(core: &Core, worker: &str) -> Result<Round> {
    let now = core.now();
    let lease = core.settings.dispatch.lease.as_millis() as i64;
    let claimed = jobs::claim(
        &core.store,
        worker,
        now,
        lease,
        core.settings.dispatch.batch as i64,
    )
    .await?;
    if claimed.is_empty() {
        return Ok(Round::Idle);
    }
    let n = claimed.len();
    let (sends, others): (Vec<_>, Vec<_>) = claimed
        .into_iter()
        .partition(|j| j.kind == Kind::Send.as_str() || j.kind == Kind::Notice.as_str());
    if !sends.is_empty() {
        dispatch::run(core, sends).await?;
    }
    for job in others {
        match Kind::parse(&job.kind) {
            Some(Kind::Deadline) => escalate::run(core, job).await?,
            _ => {
                tracing::warn!(job.id = job.id, job.kind = %job.kind, "unknown job kind dropped");
                let mut conn = core.store.pool().acquire().await?;
                jobs::delete(&mut conn, &[job.id]).await?;
            }
        }
    }
    Ok(Round::Worked(n))
}

/// A worker loop until `stop` fires.
pub async fn worker(core: Arc<Core>, name: String, stop: CancellationToken) {
    loop {
        let woken = core.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let round = tokio::select! {
            r = run_once(&core, &name) => r,
            _ = stop.cancelled() => break,
        };
        let sleep = match round {
            Ok(Round::Worked(_)) => continue,
            Ok(Round::Idle) => {
                let next = jobs::next_due(core.store.pool()).await.ok().flatten();
                let poll = core.settings.dispatch.poll;
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
    if let Err(e) = jobs::release(core.store.pool(), &name).await {
        tracing::warn!(worker = %name, error = %e, "releasing claims failed; they expire with their lease");
    }
    tracing::info!(worker = %name, "worker stopped");
}
