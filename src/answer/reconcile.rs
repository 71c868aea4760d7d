//! Receipts that never came: Aliyun and Tencent sign none of their pushes and may lose some, so
//! each gateway whose kind has a query API (`config::Gateway::reconciles`) has one job in the
//! queue (kind `reconcile`, one per gateway across instances by its `dedupe_key`) that every
//! `limits.reconcile_every` lists that gateway's sends still without a receipt, asks the
//! provider (`Channel::reconcile`) and hands what it says to `inbound::heard`, the one function
//! that acts on events: a receipt pushed as well as found is then a replay and changes nothing.
//! It reads and records; it must not send a message.

use anyhow::Result;

use super::inbound;
use crate::channel::event::Unconfirmed;
use crate::core::Core;
use crate::store::attempts;
use crate::store::jobs::{self, NewJob};

/// How far back a send is still asked about (the providers keep details for days; a receipt
/// a day late no longer matters to a call-out).
const WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Sends asked about per run, oldest first: a bound on one run's queries.
pub const BATCH: i64 = 500;

/// Before serving: each reconciling gateway's job exists, first due one interval from now.
pub async fn ensure_jobs(core: &Core) -> Result<()> {
    let now = core.now();
    let mut conn = core.store.pool().acquire().await?;
    for (name, g) in &core.settings.gateways {
        if !g.reconciles() {
            continue;
        }
        let every = g.limits().reconcile_every.as_millis() as i64;
        jobs::insert_once(&mut conn, NewJob::reconcile(name, now + every), now).await?;
    }
    Ok(())
}

/// A `reconcile` job has come: asks the gateway about its unconfirmed sends and says when the
/// job is due next; `None` when no reconciling gateway has that name any more (the job ends).
pub async fn run_job(core: &Core, gateway: &str) -> Option<i64> {
    let g = core.settings.gateways.get(gateway).filter(|g| g.reconciles())?;
    let every = g.limits().reconcile_every.as_millis() as i64;
    match run_once(core, gateway).await {
        Ok(n) if n > 0 => tracing::info!(
            gateway,
            receipts = n,
            "reconciliation found receipts that were not pushed"
        ),
        Ok(_) => {}
        // The schedule goes on: the next run asks again.
        Err(e) => tracing::warn!(gateway, error = %format!("{e:#}"), "reconciliation failed"),
    }
    Some(core.now() + every)
}

/// One reconciliation of `gateway`, now; returns the events the provider reported.
pub async fn run_once(core: &Core, gateway: &str) -> Result<usize> {
    let Some(channel) = core.gateways.get(gateway) else {
        return Ok(0);
    };
    let now = core.now();
    let sends: Vec<Unconfirmed> = {
        let mut conn = core.store.pool().acquire().await?;
        attempts::unreceipted(&mut conn, gateway, now - WINDOW_MS, BATCH)
            .await?
            .into_iter()
            .map(|a| Unconfirmed {
                key: a.message_key,
                provider_id: a.gateway_ref.filter(|r| !r.is_empty()),
                to: a.address,
                sent_at: a.started_at,
            })
            .collect()
    };
    if sends.is_empty() {
        return Ok(0);
    }
    let events = channel.reconcile(&sends).await;
    if events.is_empty() {
        return Ok(0);
    }
    inbound::heard(core, gateway, &events).await?;
    Ok(events.len())
}
