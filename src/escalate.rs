//! Answer deadlines: when one passes without an answer, walk the policy's ladder (call again,
//! the backup, the superior) or mark the call-out unreached. The decision is
//! `callout::on_deadline`; this applies it in one transaction with its ledger entry.

use anyhow::Result;

use crate::app::Core;
use crate::callout::{on_deadline, Deadline, State};
use crate::config::{Policy, Rung};
use crate::roster::role_label;
use crate::store::incidents;
use crate::store::jobs::{self, Job, Kind, NewJob};
use crate::store::ledger::{self, Record};
use crate::store::{now_ms, roster};

pub async fn run(core: &Core, job: Job) -> Result<()> {
    let now = now_ms();
    let backend = core.store.backend;
    let mut tx = core.store.begin().await?;
    let Some(c) = incidents::callout(&mut tx, job.callout_id).await? else {
        jobs::delete(&mut tx, &[job.id]).await?;
        return Ok(tx.commit().await?);
    };
    let inc = incidents::incident(&mut tx, c.incident_id).await?;
    let policy = inc
        .as_ref()
        .and_then(|i| serde_json::from_value::<Policy>(i.policy.clone()).ok());
    let (Some(inc), Some(policy)) = (inc, policy) else {
        jobs::delete(&mut tx, &[job.id]).await?;
        return Ok(tx.commit().await?);
    };
    let backup = match &c.backup_key {
        Some(k) => roster::contact_by_key(&mut tx, k).await?,
        None => None,
    };
    let superior = match &c.superior_key {
        Some(k) => roster::contact_by_key(&mut tx, k).await?,
        None => None,
    };
    let state = State::parse(&c.state).unwrap_or(State::Planned);
    let expired = inc.expires_at.is_some_and(|e| e < now);
    let decision = if inc.state != "active" || expired {
        Deadline::Nothing
    } else {
        on_deadline(
            state,
            c.rung as usize,
            core.settings.ladder(&policy),
            backup.is_some(),
            superior.is_some(),
        )
    };
    jobs::delete(&mut tx, &[job.id]).await?;
    let deadline_ms = policy.deadline.as_millis() as i64;
    let subject = format!("callout:{}", c.id);
    let record = match decision {
        Deadline::Nothing => None,
        Deadline::Repeat { next_rung } => {
            sqlx::query("UPDATE callouts SET rung = $1, deadline_at = $2, updated_at = $3 WHERE id = $4")
                .bind(next_rung as i64)
                .bind(now + deadline_ms)
                .bind(now)
                .bind(c.id)
                .execute(&mut *tx)
                .await?;
            jobs::insert(
                &mut tx,
                vec![
                    NewJob {
                        kind: Kind::Send,
                        callout_id: c.id,
                        payload: serde_json::json!({"hop": 0}),
                        due_at: now,
                    },
                    NewJob {
                        kind: Kind::Deadline,
                        callout_id: c.id,
                        payload: serde_json::json!({}),
                        due_at: now + deadline_ms,
                    },
                ],
                now,
            )
            .await?;
            Some(Record::new(
                "callout.repeated",
                subject,
                serde_json::json!({"rung": next_rung}),
            ))
        }
        Deadline::Escalate { to, next_rung } => {
            let target = match to {
                Rung::Backup => backup,
                _ => superior,
            };
            let target = target.expect("on_deadline only escalates to a target that exists");
            incidents::transition(&mut tx, &[c.id], &[state], State::Escalated, None, now).await?;
            sqlx::query("UPDATE callouts SET rung = $1 WHERE id = $2")
                .bind(next_rung as i64)
                .bind(c.id)
                .execute(&mut *tx)
                .await?;
            let why = match to {
                Rung::Backup => format!("{}（{}）未应答，AB角顶替", c.contact_name, role_label(&c.role)),
                _ => format!("{}（{}）未应答，报上级", c.contact_name, role_label(&c.role)),
            };
            let child = incidents::add_callout(
                &mut tx,
                backend,
                c.incident_id,
                target.id,
                Some(c.id),
                next_rung as i64,
                (&c.region_code, &c.place, &target.role, &why),
                now + deadline_ms,
                now,
            )
            .await?;
            Some(Record::new(
                "callout.escalated",
                subject,
                serde_json::json!({"to": to, "contact": target.key, "new_callout": child, "rung": next_rung}),
            ))
        }
        Deadline::Unreached => {
            incidents::transition(&mut tx, &[c.id], &[state], State::Unreached, None, now).await?;
            Some(Record::new(
                "callout.unreached",
                subject,
                serde_json::json!({"rung": c.rung}),
            ))
        }
    };
    if let Some(r) = record {
        tracing::info!(callout.id = c.id, kind = r.kind, "deadline passed");
        ledger::append(&mut tx, backend, now, vec![r]).await?;
    }
    tx.commit().await?;
    core.wake.notify_waiters();
    Ok(())
}
