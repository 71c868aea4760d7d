//! Sending: a batch of claimed send/notice jobs → messages rendered → each attempt written as
//! `sending` (one short transaction) → sent concurrently through their gateways while the
//! claims are renewed → one transaction with every attempt completed, the call-out states, the
//! ledger entries and the jobs (still ours) finished or rescheduled. Batching is what keeps a
//! 10,000-person fan-out fast with every call-out committed; writing the attempt first is what
//! lets a restart tell a send that may have gone out from one that never did.
//!
//! Which routes a message may take and what follows each try are decided in `route`.
//!
//! Every request carries the message key (`ref`, SPEC §5): the call-out and the job that sends
//! this step of its ladder, the same on every try, so a gateway can drop a repeat.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;

use super::route::{next_step, route, Next, Retries};
use super::{caps, lease};
use crate::answer::token;
use crate::channel::event::Lookup;
use crate::channel::{Outgoing, SendError};
use crate::core::Core;
use crate::deliver::message::{self, Facts};
use crate::domain::callout::State;
use crate::domain::ChannelKind;
use crate::store::attempts::{self, Attempt, Outcome};
use crate::store::callouts::{self, Callout};
use crate::store::incidents::{self, Incident};
use crate::store::jobs::{self, Job, Task};
use crate::store::ledger::Record;
use crate::store::{alloc_ids, ledger};

/// One message on its way: the job, the hop it goes by, the message, and the attempt written
/// (which names the call-out and the gateway).
struct Work {
    job: Job,
    notice: bool,
    hop: usize,
    hops: usize,
    out: Outgoing,
    attempt: Attempt,
    /// The last try's answer was lost: ask the gateway before sending again.
    check: bool,
    /// A per-recipient cap this send would break: not sent, fails over.
    capped: Option<String>,
    /// The gateway had it already (found by asking): not sent again.
    found: bool,
}

/// What loading a batch decided before anything is sent.
#[derive(Default)]
struct Batch {
    work: Vec<Work>,
    /// Jobs with nothing to send (answered or cancelled meanwhile, no route left).
    finished: Vec<i64>,
    /// Call-outs that can never be sent (no route, an unreadable policy).
    failed: Vec<i64>,
    records: Vec<Record>,
}

impl Batch {
    /// A job that can never send: it ends, and a call-out (not a notice) fails with the reason.
    fn give_up(&mut self, job: &Job, callout_id: i64, notice: bool, reason: String) {
        self.finished.push(job.id);
        if !notice {
            self.failed.push(callout_id);
            self.records.push(Record::new(
                "callout.failed",
                format!("callout:{callout_id}"),
                serde_json::json!({ "reason": reason }),
            ));
        }
    }
}

/// The message key of SPEC §5: this call-out's message sent by this job (one ladder step,
/// one notice), the same on every retry and failover of it.
pub fn message_key(callout_id: i64, job_id: i64) -> String {
    format!("c{callout_id}-j{job_id}")
}

pub async fn run(core: &Core, worker: &str, jobs: Vec<Job>) -> Result<()> {
    let started = Instant::now();
    let n = jobs.len();
    let mut batch = load(core, jobs).await?;
    let loaded = started.elapsed();
    begin(core, worker, &mut batch).await?;
    let ids: Vec<i64> = batch.work.iter().map(|w| w.job.id).collect();
    let work = std::mem::take(&mut batch.work);
    let results = lease::renewing(core, worker, &ids, send(core, work)).await;
    let sent_by = started.elapsed();
    record(core, worker, batch, results).await?;
    tracing::debug!(
        jobs = n,
        load_ms = loaded.as_millis() as u64,
        send_ms = (sent_by - loaded).as_millis() as u64,
        commit_ms = (started.elapsed() - sent_by).as_millis() as u64,
        "batch dispatched"
    );
    Ok(())
}

/// Reads the call-outs and incidents of a batch and decides, for each job, the hop and the
/// words; nothing is written.
async fn load(core: &Core, jobs: Vec<Job>) -> Result<Batch> {
    let now = core.now();
    let mut conn = core.store.pool().acquire().await?;
    let ids: Vec<i64> = jobs.iter().filter_map(|j| j.callout_id).collect();
    let callouts: HashMap<i64, Callout> = callouts::callouts_by_id(&mut conn, &ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut incident_ids: Vec<i64> = callouts.values().map(|c| c.incident_id).collect();
    incident_ids.sort_unstable();
    incident_ids.dedup();
    // A row that does not read must not hold up the batch: read one by one to find it.
    let incs: HashMap<i64, Result<Incident, String>> =
        match incidents::incidents_by_id(&mut conn, &incident_ids).await {
            Ok(all) => all.into_iter().map(|i| (i.id, Ok(i))).collect(),
            Err(_) => {
                let mut one_by_one = HashMap::new();
                for id in &incident_ids {
                    match incidents::incident(&mut conn, *id).await {
                        Ok(Some(i)) => one_by_one.insert(*id, Ok(i)),
                        Ok(None) => None,
                        Err(e) => one_by_one.insert(*id, Err(format!("{e:#}"))),
                    };
                }
                one_by_one
            }
        };
    // The attempts' ids on the same connection: on SQLite every acquire waits behind the
    // other workers' and the planner's transactions.
    let ids = alloc_ids(&mut conn, core.store.backend(), "attempts", jobs.len()).await?;
    drop(conn);

    let mut b = Batch::default();
    let ttl = core.settings.answer.link_ttl.as_secs() as i64;
    let mut unreadable: HashMap<i64, String> = HashMap::new();
    for (job, attempt_id) in jobs.into_iter().zip(ids) {
        let notice = matches!(job.task, Task::Notice { .. });
        let found = job
            .callout_id
            .and_then(|id| callouts.get(&id))
            .and_then(|c| incs.get(&c.incident_id).map(|i| (c, i)));
        let Some((c, inc)) = found else {
            b.finished.push(job.id); // the call-out is gone
            continue;
        };
        let inc = match inc {
            Ok(i) => i,
            Err(e) => {
                // Not a silent finish: the person is not called, and the record says why.
                tracing::error!(incident.id = c.incident_id, callout.id = c.id, error = %e,
                    "the incident's stored record does not read: this call-out cannot be sent");
                unreadable.entry(c.incident_id).or_insert_with(|| e.clone());
                b.give_up(
                    &job,
                    c.id,
                    notice,
                    format!("the incident's stored record does not read: {e}"),
                );
                continue;
            }
        };
        let policy = &inc.policy;
        if !notice && !c.state.awaiting() {
            b.finished.push(job.id); // answered or cancelled meanwhile
            continue;
        }
        let mut hops = route(&core.settings, &policy.channels, c);
        // A `repeat:CHANNEL` ladder step tries that channel first (escalate.rs).
        if let Task::Send(jobs::Send {
            channel: Some(first), ..
        }) = &job.task
        {
            hops.sort_by_key(|h| h.0 != *first);
        }
        let hop = job.task.hop();
        let Some((channel, gateway, to)) = hops.get(hop).cloned() else {
            b.give_up(&job, c.id, notice, "no channel reaches this person".into());
            continue;
        };
        let facts = Facts {
            signature: core.settings.messages.signature.clone(),
            event: inc.event.clone(),
            headline: inc.title.clone(),
            description: inc.description.clone(),
            instruction: inc.instruction.clone(),
            place: c.place.clone(),
            link: format!(
                "{}/a/{}",
                core.settings.http.public_url.trim_end_matches('/'),
                token::sign(&core.token_key, c.id, now / 1000 + ttl)
            ),
            code: inc.code.clone(),
            drill: inc.drill,
            evacuation: policy.evacuation,
            change: c.upgrade.clone(),
            knock: c.knock.then(|| c.reason.clone()),
            round: c.round,
        };
        let notice_kind = match &job.task {
            Task::Notice { notice, .. } => Some(notice),
            _ => None,
        };
        let rendered = message::templates().for_job(
            &facts,
            channel == ChannelKind::Email,
            notice_kind,
            policy.templates.get("zh").map(String::as_str),
        );
        let key = message_key(c.id, job.id);
        let out = Outgoing {
            attempt_id,
            key: key.clone(),
            kind: channel,
            to,
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            facts: Arc::new(facts),
            last_route: hop + 1 >= hops.len(),
        };
        let attempt = Attempt {
            id: attempt_id,
            callout_id: c.id,
            job_id: job.id,
            message_key: key,
            channel: channel.as_str(),
            gateway,
            address: out.to.clone(),
            body: out.text.clone(),
            started_at: now,
        };
        let check = matches!(&job.task, Task::Send(s) if s.check);
        b.work.push(Work {
            notice,
            hop,
            hops: hops.len(),
            out,
            attempt,
            job,
            check,
            capped: None,
            found: false,
        });
    }
    for (incident, e) in unreadable {
        b.records.push(Record::new(
            "incident.unreadable",
            format!("incident:{incident}"),
            serde_json::json!({"reason": format!("the stored record does not read: {e}")}),
        ));
    }
    Ok(b)
}

/// Writes every attempt as `sending` before any network call (a short transaction): after a
/// crash, what was in flight is known. Attempts of the same jobs left `sending` by a crash
/// become `lost`. (The call-outs keep their state until the batch is recorded: moving each
/// to `sending` here as well cost PostgreSQL's fan-out a tenth of its rate.)
async fn begin(core: &Core, worker: &str, b: &mut Batch) -> Result<()> {
    let Err(e) = begin_some(core, &mut b.work).await else {
        return Ok(());
    };
    // As in `record`: one attempt that cannot be written must not keep the whole batch from
    // being sent, lease after lease. Each is begun alone; the ones that fail are set aside.
    tracing::warn!(worker, sends = b.work.len(), error = %format!("{e:#}"),
        "starting a batch failed: starting its sends one by one");
    let mut kept = Vec::with_capacity(b.work.len());
    for w in std::mem::take(&mut b.work) {
        let mut one = vec![w];
        match begin_some(core, &mut one).await {
            Ok(()) => kept.append(&mut one),
            Err(e) => set_aside(core, worker, &one[0].job, &format!("{e:#}")).await,
        }
    }
    b.work = kept;
    Ok(())
}

async fn begin_some(core: &Core, work: &mut [Work]) -> Result<()> {
    if work.is_empty() {
        return Ok(());
    }
    let now = core.now();
    let mut tx = core.store.begin().await?;
    let job_ids: Vec<i64> = work.iter().map(|w| w.job.id).collect();
    let lost = attempts::lose_in_flight(&mut tx, &job_ids, now).await?;
    if !lost.is_empty() {
        tracing::warn!(
            attempts = lost.len(),
            "sends cut off by a crash go again under the same ref, after asking their gateway"
        );
        for w in work.iter_mut().filter(|w| lost.contains(&w.job.id)) {
            w.check = true;
        }
    }
    apply_caps(core, &mut tx, work, now).await?;
    let started: Vec<Attempt> = work.iter().map(|w| w.attempt.clone()).collect();
    attempts::start(&mut tx, &started).await?;
    tx.commit().await?;
    Ok(())
}

/// Marks the sends that would break a gateway's per-recipient cap (`caps`).
async fn apply_caps(core: &Core, conn: &mut sqlx::AnyConnection, work: &mut [Work], now: i64) -> Result<()> {
    let sends: Vec<(&str, &str)> = work
        .iter()
        .map(|w| (w.attempt.gateway.as_str(), w.attempt.address.as_str()))
        .collect();
    let verdicts = caps::capped(&core.gateways, conn, &sends, now).await?;
    for (w, reason) in work.iter_mut().zip(verdicts) {
        w.capped = reason;
    }
    Ok(())
}

/// Sends every message of the batch, concurrently up to the batch size.
async fn send(core: &Core, work: Vec<Work>) -> Vec<(Work, Result<String, SendError>, i64)> {
    let concurrency = core.settings.dispatch.batch as usize;
    futures::stream::iter(work)
        .map(|mut w| async move {
            let result = match (core.gateways.get(&w.attempt.gateway), &w.capped) {
                (_, Some(reason)) => Err(SendError::Capped {
                    reason: reason.clone(),
                }),
                (Some(g), None) => {
                    // A send whose answer was lost: the gateway may have it (SPEC §5 allows
                    // that one duplicate; asking first makes it rare).
                    let known = match w.check {
                        true => g.lookup(&w.out).await,
                        false => Lookup::Unknown,
                    };
                    match known {
                        Lookup::Accepted(id) => {
                            w.found = true;
                            Ok(id)
                        }
                        Lookup::Absent | Lookup::Unknown => g.send(&w.out).await,
                        // The gateway may have it and could not be asked: a resend now could be
                        // the 3 a.m. double. Asked again after the backoff; past the last try
                        // the call-out fails over or fails, and its deadline escalates.
                        Lookup::Failed(reason) => Err(SendError::Unanswered {
                            reason: format!("not sent again: could not ask the gateway whether it has the message ({reason})"),
                        }),
                    }
                }
                (None, None) => Err(SendError::Permanent {
                    reason: format!("gateway {} is not configured", w.attempt.gateway),
                }),
            };
            (w, result, core.now())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// One transaction: attempts completed, call-out states, ledger, and the jobs whose claim is
/// still this worker's finished or rescheduled (a job whose lease another worker took over is
/// left to that worker).
async fn record(core: &Core, worker: &str, b: Batch, results: Vec<Sent>) -> Result<()> {
    let copy = |r: &Record| Record::new(r.kind, r.subject.clone(), r.body.clone());
    let whole = Batch {
        work: Vec::new(),
        finished: b.finished.clone(),
        failed: b.failed.clone(),
        records: b.records.iter().map(copy).collect(),
    };
    let Err(e) = record_some(core, worker, whole, &results).await else {
        return Ok(());
    };
    if results.is_empty() {
        return Err(e);
    }
    // One row that cannot be written must not undo the batch: the messages are out, and a
    // batch left unrecorded is claimed again at the end of its lease and sent again, every
    // lease, for ever. Each send is recorded on its own, so the others complete once and the
    // bad one is set aside with a backoff of its own (`set_aside`).
    tracing::warn!(worker, sends = results.len(), error = %format!("{e:#}"),
        "recording a batch failed: recording its sends one by one");
    if let Err(e) = record_some(core, worker, b, &[]).await {
        tracing::error!(worker, error = %format!("{e:#}"), "the batch's own records (jobs with nothing to send) failed");
    }
    for one in results {
        let one = [one];
        if let Err(e) = record_some(core, worker, Batch::default(), &one).await {
            set_aside(core, worker, &one[0].0.job, &format!("{e:#}")).await;
        }
    }
    Ok(())
}

/// A send as it came back: the work, the gateway's answer, when.
type Sent = (Work, Result<String, SendError>, i64);

/// A job whose outcome cannot be recorded (or whose attempt cannot be written): retried with
/// its own backoff (`dispatch.retry_backoff`, asking the gateway first whether it has the
/// message), and past the last step ended, with a ledger entry saying so. Errors here are
/// logged: the claim then lapses and the job comes back with its lease, as before.
async fn set_aside(core: &Core, worker: &str, job: &Job, error: &str) {
    let now = core.now();
    let backoff = &core.settings.dispatch.retry_backoff;
    let result = async {
        let mut tx = core.store.begin().await?;
        match backoff.get(job.attempts as usize) {
            Some(wait) => {
                let due = now + wait.as_millis() as i64;
                let detail = format!("not recorded: {error}");
                jobs::reschedule_mine(
                    &mut tx,
                    worker,
                    job.id,
                    due,
                    job.attempts + 1,
                    &job.task.checked(),
                    Some(&detail),
                )
                .await?;
            }
            None => {
                jobs::finish_mine(&mut tx, worker, &[job.id]).await?;
                let subject = job
                    .callout_id
                    .map_or(format!("job:{}", job.id), |c| format!("callout:{c}"));
                ledger::append(
                    &mut tx,
                    core.store.backend(),
                    now,
                    vec![Record::new(
                        "job.given_up",
                        subject,
                        serde_json::json!({"job": job.id, "attempts": job.attempts, "reason": error}),
                    )],
                )
                .await?;
            }
        }
        tx.commit().await?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            tracing::error!(job.id = job.id, callout.id = ?job.callout_id, attempts = job.attempts, error,
            "a send could not be recorded: set aside from its batch")
        }
        Err(e) => {
            tracing::error!(job.id = job.id, error = %format!("{e:#}"), "setting a job aside failed; it comes back with its lease")
        }
    }
}

async fn record_some(core: &Core, worker: &str, mut b: Batch, results: &[Sent]) -> Result<()> {
    let now = core.now();
    let mut sent = Vec::new();
    let mut done = Vec::with_capacity(results.len());
    let mut reschedules = Vec::new();
    for (w, result, finished_at) in results {
        let finished_at = *finished_at;
        let (res, gw_ref, detail) = match &result {
            Ok(r) if w.found => (
                "sent",
                Some(r.clone()),
                Some("the gateway had it already (asked after a lost answer): not sent again".to_string()),
            ),
            Ok(r) => ("sent", Some(r.clone()), None),
            Err(e @ SendError::Transient { .. }) => ("transient", None, Some(e.to_string())),
            Err(e @ SendError::Unanswered { .. }) => ("unanswered", None, Some(e.to_string())),
            Err(e @ SendError::Capped { .. }) => ("capped", None, Some(e.to_string())),
            Err(e @ SendError::CircuitOpen { .. }) => ("circuit-open", None, Some(e.to_string())),
            Err(e @ SendError::Permanent { .. }) => ("permanent", None, Some(e.to_string())),
        };
        b.records.push(Record::new(
            match (res, w.notice) {
                ("sent", true) => "notice.sent",
                ("sent", false) => "attempt.sent",
                _ => "attempt.failed",
            },
            format!("callout:{}", w.attempt.callout_id),
            serde_json::json!({"attempt": w.attempt.id, "channel": w.attempt.channel, "gateway": w.attempt.gateway,
                "gateway_ref": gw_ref, "detail": detail, "ref": w.attempt.message_key}),
        ));
        match next_step(
            result,
            w.job.attempts,
            w.hop,
            w.hops,
            Retries {
                backoff: &core.settings.dispatch.retry_backoff,
                max_tries: i64::from(core.settings.dispatch.max_tries),
            },
            now,
        ) {
            Next::Done => {
                b.finished.push(w.job.id);
                if !w.notice {
                    sent.push(w.attempt.callout_id);
                }
            }
            Next::Retry { due_at, attempts } => {
                let task = match &result {
                    Err(SendError::Unanswered { .. }) => w.job.task.checked(),
                    _ => w.job.task.clone(),
                };
                reschedules.push((w.job.id, due_at, attempts, task, detail.clone()))
            }
            Next::Failover { hop } => {
                reschedules.push((w.job.id, now, 0, w.job.task.at_hop(hop), detail.clone()))
            }
            Next::GiveUp => {
                b.finished.push(w.job.id);
                if !w.notice {
                    b.failed.push(w.attempt.callout_id);
                }
            }
        }
        done.push((
            w.attempt.clone(),
            Outcome {
                result: res,
                gateway_ref: gw_ref,
                detail,
                finished_at,
            },
        ));
    }

    let mut tx = core.store.begin().await?;
    attempts::finish(&mut tx, &done).await?;
    // Every call-out this transaction may touch, locked in id order before any is changed
    // (store's lock order: attempts, then call-outs, then jobs, then the ledger head).
    let mut touched: Vec<i64> = done.iter().map(|(a, _)| a.callout_id).collect();
    touched.extend(&b.failed);
    callouts::lock(&mut tx, core.store.backend(), &touched).await?;
    let marked = callouts::transition(
        &mut tx,
        &sent,
        &[State::Planned, State::Sending, State::Failed],
        State::Sent,
        Some("sent_at"),
        now,
    )
    .await?;
    callouts::sent_after_cancel(&mut tx, &sent, &marked, now).await?;
    let failed = callouts::transition(
        &mut tx,
        &b.failed,
        &[State::Planned, State::Sending],
        State::Failed,
        None,
        now,
    )
    .await?;
    b.records.extend(callouts::state_record(&marked, State::Sent));
    b.records.extend(callouts::state_record(&failed, State::Failed));
    // The jobs last, and only those still ours: see `jobs::finish_mine`.
    let ended = jobs::finish_mine_count(&mut tx, worker, &b.finished).await?;
    let mut kept = 0;
    for (id, due, attempts, task, err) in &reschedules {
        kept += usize::from(
            jobs::reschedule_mine(&mut tx, worker, *id, *due, *attempts, task, err.as_deref()).await?,
        );
    }
    if ended + kept < b.finished.len() + reschedules.len() {
        tracing::warn!(
            worker,
            lost = b.finished.len() + reschedules.len() - ended - kept,
            "claims taken over by another worker: their jobs are left to it"
        );
    }
    ledger::append(&mut tx, core.store.backend(), now, b.records).await?;
    tx.commit().await?;
    if kept > 0 {
        core.wake.notify_waiters();
    }
    Ok(())
}
