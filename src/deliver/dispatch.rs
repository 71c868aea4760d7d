//! Sending: a batch of claimed send/notice jobs → messages rendered → sent concurrently
//! through their gateways → one transaction with every attempt, the call-out states, the
//! ledger entries and the jobs finished or rescheduled. Batching is what keeps a 10,000-person
//! fan-out fast with every call-out committed.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;

use crate::answer::token;
use crate::channel::{Outgoing, SendError};
use crate::config::{Policy, Settings};
use crate::core::Core;
use crate::deliver::message::Facts;
use crate::domain::callout::State;
use crate::domain::ChannelKind;
use crate::store::incidents::{self, Callout, Incident};
use crate::store::jobs::{self, Job, Kind};
use crate::store::ledger::Record;
use crate::store::{alloc_ids, insert_rows, ledger, Val};

/// The (channel, gateway, address) hops a call-out may go through, in order: the contact's
/// own channel preference or the policy's, each channel's gateways in config order.
pub fn route(
    settings: &Settings,
    policy_channels: &[ChannelKind],
    c: &Callout,
) -> Vec<(ChannelKind, String, String)> {
    let order = if c.channels.is_empty() {
        policy_channels.to_vec()
    } else {
        c.channels.clone()
    };
    let mut out = Vec::new();
    for ch in order {
        let address = match ch {
            ChannelKind::Sms | ChannelKind::Voice => c.phone.clone(),
            ChannelKind::Email => c.email.clone(),
            ChannelKind::Webhook => Some(c.contact_key.clone()),
        };
        let Some(address) = address else { continue };
        for g in settings.channels.gateways(ch) {
            out.push((ch, g.clone(), address.clone()));
        }
    }
    out
}

/// What follows one attempt (pure).
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Done,
    /// Same hop again at `due_at`.
    Retry {
        due_at: i64,
        attempts: i64,
    },
    /// The next gateway or channel, now.
    Failover {
        hop: usize,
    },
    /// No hop left: the call-out has failed (its deadline still escalates it).
    GiveUp,
}

pub fn next_step(
    result: &Result<String, SendError>,
    attempts_on_hop: i64,
    hop: usize,
    hops: usize,
    backoff: &[Duration],
    now: i64,
) -> Next {
    let failover = || {
        if hop + 1 < hops {
            Next::Failover { hop: hop + 1 }
        } else {
            Next::GiveUp
        }
    };
    match result {
        Ok(_) => Next::Done,
        Err(SendError::Permanent { .. }) => failover(),
        Err(SendError::Transient { retry_after, .. }) => match backoff.get(attempts_on_hop as usize) {
            Some(wait) => {
                let wait = retry_after
                    .map_or(*wait, |r| r.max(*wait))
                    .min(Duration::from_secs(3600));
                Next::Retry {
                    due_at: now + wait.as_millis() as i64,
                    attempts: attempts_on_hop + 1,
                }
            }
            None => failover(),
        },
    }
}

struct Work {
    job: Job,
    callout: Callout,
    hop: usize,
    channel: ChannelKind,
    gateway: String,
    out: Outgoing,
    hops: usize,
}

pub async fn run(core: &Core, jobs: Vec<Job>) -> Result<()> {
    let started = std::time::Instant::now();
    let n = jobs.len();
    let now = core.now();
    let mut conn = core.store.pool().acquire().await?;
    let ids: Vec<i64> = jobs.iter().map(|j| j.callout_id).collect();
    let callouts: HashMap<i64, Callout> = incidents::callouts_by_id(&mut conn, &ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut incident_ids: Vec<i64> = callouts.values().map(|c| c.incident_id).collect();
    incident_ids.sort_unstable();
    incident_ids.dedup();
    let incs: HashMap<i64, (Incident, Policy)> = incidents::incidents_by_id(&mut conn, &incident_ids)
        .await?
        .into_iter()
        .map(|i| (i.id, (i.clone(), i.policy)))
        .collect();

    let mut finished = Vec::new();
    let mut records = Vec::new();
    let mut failed_callouts = Vec::new();
    let mut work = Vec::new();
    for job in jobs {
        let notice = job.kind == Kind::Notice.as_str();
        let (Some(c), Some((inc, policy))) = (
            callouts.get(&job.callout_id),
            callouts
                .get(&job.callout_id)
                .and_then(|c| incs.get(&c.incident_id)),
        ) else {
            finished.push(job.id);
            continue;
        };
        if !notice && !c.state.awaiting() {
            finished.push(job.id); // answered or cancelled meanwhile
            continue;
        }
        let mut hops = route(&core.settings, &policy.channels, c);
        // A `repeat:CHANNEL` ladder step tries that channel first (escalate.rs).
        if let Some(first) = job
            .payload
            .get("channel")
            .and_then(|v| v.as_str())
            .and_then(ChannelKind::parse)
        {
            hops.sort_by_key(|h| h.0 != first);
        }
        let hop = job.payload.get("hop").and_then(|h| h.as_u64()).unwrap_or(0) as usize;
        let Some((channel, gateway, to)) = hops.get(hop).cloned() else {
            finished.push(job.id);
            if !notice {
                failed_callouts.push(c.id);
                records.push(Record::new(
                    "callout.failed",
                    format!("callout:{}", c.id),
                    serde_json::json!({"reason": "no channel reaches this person"}),
                ));
            }
            continue;
        };
        let ttl = core.settings.answer.link_ttl.as_secs() as i64;
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
        };
        let rendered = crate::deliver::message::templates().for_job(
            &facts,
            channel == ChannelKind::Email,
            notice.then_some(&job.payload),
            policy.templates.get("zh").map(String::as_str),
        );
        let out = Outgoing {
            attempt_id: 0,
            kind: channel,
            to,
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        };
        work.push(Work {
            job,
            callout: c.clone(),
            hop,
            channel,
            gateway,
            out,
            hops: hops.len(),
        });
    }
    let attempt_ids = alloc_ids(&mut conn, core.store.backend(), "attempts", work.len()).await?;
    drop(conn);
    for (w, id) in work.iter_mut().zip(&attempt_ids) {
        w.out.attempt_id = *id;
    }

    let concurrency = core.settings.dispatch.batch as usize;
    let loaded = started.elapsed();
    let results: Vec<(Work, Result<String, SendError>, i64, i64)> = futures::stream::iter(work)
        .map(|w| async move {
            let started = core.now();
            let result = match core.gateways.get(&w.gateway) {
                Some(g) => g.send(&w.out).await,
                None => Err(SendError::Permanent {
                    reason: format!("gateway {} is not configured", w.gateway),
                }),
            };
            (w, result, started, core.now())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    let now = core.now();
    let mut sent = Vec::new();
    let mut attempts = Vec::with_capacity(results.len());
    let mut reschedules = Vec::new();
    for (w, result, started, done) in &results {
        let (res, gw_ref, detail) = match result {
            Ok(r) => ("sent", Some(r.clone()), None),
            Err(e @ SendError::Transient { .. }) => ("transient", None, Some(e.to_string())),
            Err(e @ SendError::Permanent { .. }) => ("permanent", None, Some(e.to_string())),
        };
        attempts.push(vec![
            Val::I(w.out.attempt_id),
            Val::I(w.callout.id),
            Val::from(w.channel.as_str()),
            Val::from(w.gateway.as_str()),
            Val::from(w.out.to.as_str()),
            Val::from(w.out.text.as_str()),
            Val::from(gw_ref.clone()),
            Val::from(res),
            Val::from(detail.clone()),
            Val::I(*started),
            Val::I(*done),
        ]);
        let kind = if w.job.kind == Kind::Notice.as_str() {
            "notice"
        } else {
            "attempt"
        };
        records.push(Record::new(
            if res == "sent" { if kind == "notice" { "notice.sent" } else { "attempt.sent" } } else { "attempt.failed" },
            format!("callout:{}", w.callout.id),
            serde_json::json!({"attempt": w.out.attempt_id, "channel": w.channel.as_str(), "gateway": w.gateway,
                "gateway_ref": gw_ref, "detail": detail}),
        ));
        match next_step(
            result,
            w.job.attempts,
            w.hop,
            w.hops,
            &core.settings.dispatch.retry_backoff,
            now,
        ) {
            Next::Done => {
                finished.push(w.job.id);
                if kind == "attempt" {
                    sent.push(w.callout.id);
                }
            }
            // The payload says which notice a notice job sends: keep it.
            Next::Retry { due_at, attempts } => {
                reschedules.push((w.job.id, due_at, attempts, w.job.payload.clone(), detail.clone()))
            }
            Next::Failover { hop } => {
                let mut p = w.job.payload.clone();
                p["hop"] = hop.into();
                reschedules.push((w.job.id, now, 0, p, detail.clone()))
            }
            Next::GiveUp => {
                finished.push(w.job.id);
                if kind == "attempt" {
                    failed_callouts.push(w.callout.id);
                }
            }
        }
    }

    let sent_by = started.elapsed();
    let mut tx = core.store.begin().await?;
    insert_rows(
        &mut tx,
        "attempts",
        &[
            "id",
            "callout_id",
            "channel",
            "gateway",
            "address",
            "body",
            "gateway_ref",
            "result",
            "detail",
            "started_at",
            "finished_at",
        ],
        attempts,
    )
    .await?;
    let marked = incidents::transition(
        &mut tx,
        &sent,
        &[State::Planned, State::Sending, State::Failed],
        State::Sent,
        Some("sent_at"),
        now,
    )
    .await?;
    incidents::sent_after_cancel(&mut tx, &sent, &marked, now).await?;
    incidents::transition(
        &mut tx,
        &failed_callouts,
        &[State::Planned, State::Sending],
        State::Failed,
        None,
        now,
    )
    .await?;
    jobs::delete(&mut tx, &finished).await?;
    for (id, due, attempts, payload, err) in &reschedules {
        jobs::reschedule(&mut tx, *id, *due, *attempts, payload, err.as_deref()).await?;
    }
    ledger::append(&mut tx, core.store.backend(), now, records).await?;
    tx.commit().await?;
    tracing::debug!(
        jobs = n,
        load_ms = loaded.as_millis() as u64,
        send_ms = (sent_by - loaded).as_millis() as u64,
        commit_ms = (started.elapsed() - sent_by).as_millis() as u64,
        "batch dispatched"
    );
    if !reschedules.is_empty() {
        core.wake.notify_waiters();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(20)];

    fn transient(after: Option<u64>) -> Result<String, SendError> {
        Err(SendError::Transient {
            reason: "503".into(),
            retry_after: after.map(Duration::from_secs),
        })
    }

    #[test]
    fn transient_errors_back_off_then_fail_over_then_give_up() {
        assert_eq!(next_step(&Ok("id".into()), 0, 0, 2, &BACKOFF, 0), Next::Done);
        assert_eq!(
            next_step(&transient(None), 0, 0, 2, &BACKOFF, 1000),
            Next::Retry {
                due_at: 6000,
                attempts: 1
            }
        );
        assert_eq!(
            next_step(&transient(Some(60)), 1, 0, 2, &BACKOFF, 0),
            Next::Retry {
                due_at: 60_000,
                attempts: 2
            }
        );
        assert_eq!(
            next_step(&transient(None), 2, 0, 2, &BACKOFF, 0),
            Next::Failover { hop: 1 }
        );
        assert_eq!(next_step(&transient(None), 2, 1, 2, &BACKOFF, 0), Next::GiveUp);
    }

    #[test]
    fn permanent_errors_fail_over_at_once() {
        let e = Err(SendError::Permanent { reason: "400".into() });
        assert_eq!(next_step(&e, 0, 0, 3, &BACKOFF, 0), Next::Failover { hop: 1 });
        assert_eq!(next_step(&e, 0, 2, 3, &BACKOFF, 0), Next::GiveUp);
    }
}
