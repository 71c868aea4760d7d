//! Standing an incident down (解除): it is closed, its call-outs still awaiting an answer are
//! cancelled with their pending sends and deadlines, everyone already called hears the
//! stand-down once, and the ledger says who did it. The one function every path calls: the
//! operator's close (`POST /api/v1/incidents/ID/close`), a CAP Cancel (`ingest`), and the end
//! of a response level, by hand or when its `until` passes (`respond`).
//!
//! An incident that is not active any more is left alone: standing it down again sends
//! nothing. Answered call-outs keep their answer. This file writes the notices as jobs; it
//! must not send anything itself (that is `dispatch`).

use std::collections::HashMap;

use anyhow::Result;

use crate::core::Core;
use crate::domain::Callout;
use crate::store::Tx;

/// What standing an incident down did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandDown {
    /// Closed now: `cancelled` call-outs stopped, `notified` people told.
    Closed { cancelled: usize, notified: usize },
    /// It was closed already (or is no incident): nothing changed, nobody told.
    AlreadyClosed,
}

impl StandDown {
    pub fn cancelled(self) -> usize {
        match self {
            StandDown::Closed { cancelled, .. } => cancelled,
            StandDown::AlreadyClosed => 0,
        }
    }
}

/// Stands the incident down inside the caller's unit of work (which commits it); `actor` is
/// who or what did (`http:NAME`, `warning:ID`, `until` …).
pub async fn within(tx: &mut Tx, incident_id: i64, actor: &str, now: i64) -> Result<StandDown> {
    if !tx.close_incident(incident_id, now).await? {
        return Ok(StandDown::AlreadyClosed);
    }
    let (open, tell) = targets(&tx.callouts_of_incident(incident_id).await?);
    let cancelled = tx.cancel_unanswered(&open, now).await?;
    tx.notify(&tell, crate::store::jobs::Notice::Standdown, now)
        .await?;
    // A signed checkpoint of the ledger once this commits (the job runs after the commit, so
    // its head includes the close).
    crate::store::jobs::insert_once(
        tx,
        crate::store::jobs::NewJob::checkpoint_standdown(incident_id, now),
        now,
    )
    .await?;
    tx.record(
        "incident.closed",
        format!("incident:{incident_id}"),
        serde_json::json!({"actor": actor, "cancelled": cancelled.len(), "notified": tell.len()}),
        now,
    )
    .await?;
    Ok(StandDown::Closed {
        cancelled: cancelled.len(),
        notified: tell.len(),
    })
}

/// Stands the incident down in a unit of work of its own and wakes the senders. None: no such
/// incident.
pub async fn stand_down(core: &Core, incident_id: i64, actor: &str) -> Result<Option<StandDown>> {
    let mut tx = core.store.begin().await?;
    if tx.incident(incident_id).await?.is_none() {
        tx.rollback().await?;
        return Ok(None);
    }
    let done = within(&mut tx, incident_id, actor, core.now()).await?;
    tx.commit().await?;
    if done != StandDown::AlreadyClosed {
        core.wake.notify_waiters();
    }
    Ok(Some(done))
}

/// Pure: the call-outs a stand-down cancels (those still awaiting an answer), and those whose
/// person hears it: everyone already sent a call-out, once, through their newest one (a person
/// called again after an upgrade has two).
pub fn targets(callouts: &[Callout]) -> (Vec<i64>, Vec<i64>) {
    let open = callouts
        .iter()
        .filter(|c| c.state.awaiting())
        .map(|c| c.id)
        .collect();
    let mut newest: HashMap<i64, i64> = HashMap::new();
    for c in callouts.iter().filter(|c| c.sent_at.is_some()) {
        let id = newest.entry(c.contact_id).or_insert(c.id);
        *id = (*id).max(c.id);
    }
    let mut tell: Vec<i64> = newest.into_values().collect();
    tell.sort_unstable();
    (open, tell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RegionCode, State};

    fn callout(id: i64, contact_id: i64, state: State, sent: bool) -> Callout {
        Callout {
            id,
            incident_id: 1,
            contact_id,
            parent_id: None,
            rung: 0,
            region_code: RegionCode::parse("450921").unwrap(),
            place: String::new(),
            role: String::new(),
            reason: String::new(),
            state,
            deadline_at: 0,
            created_at: 0,
            sent_at: sent.then_some(1),
            delivered_at: None,
            acked_at: None,
            ack_late: false,
            contact_key: format!("k{contact_id}"),
            contact_name: String::new(),
            phone: None,
            email: None,
            channels: Vec::new(),
            backup_key: None,
            superior_key: None,
            ack_method: None,
            upgrade: None,
            knock: false,
            round: None,
        }
    }

    #[test]
    fn awaiting_call_outs_are_cancelled_and_everyone_sent_one_is_told_once() {
        let callouts = [
            callout(1, 10, State::Acknowledged, true),
            // Called again after an upgrade: the first one cancelled, the second awaiting.
            callout(2, 11, State::Cancelled, true),
            callout(7, 11, State::Sent, true),
            callout(3, 12, State::Planned, false),
            callout(4, 13, State::Failed, false),
            callout(5, 14, State::Escalated, true),
            callout(6, 15, State::Delivered, true),
        ];
        let (open, tell) = targets(&callouts);
        assert_eq!(open, [7, 3, 4, 6]);
        assert_eq!(
            tell,
            [1, 5, 6, 7],
            "never sent: not told; twice called: told once"
        );
    }
}
