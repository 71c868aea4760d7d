//! Answer deadlines: when one passes without an answer, walk the policy's ladder (call again,
//! perhaps on another channel first; the backup; the superior; whoever holds a duty role on
//! shift now) or mark the call-out unreached. The decision is `callout::on_deadline`; this
//! applies it in one transaction with its ledger entry. `duty:` steps are resolved when they
//! fire, against the duty roster at that moment.

use std::collections::HashMap;

use anyhow::Result;
use sqlx::AnyConnection;

use crate::config::Rung;
use crate::core::Core;
use crate::domain::callout::{on_deadline, Deadline, State};
use crate::domain::{IncidentState, RegionCode};
use crate::store::incidents;
use crate::store::jobs::{self, Job, Kind, NewJob};
use crate::store::ledger::{self, Record};
use crate::store::roster;
use crate::target::duty::Duty;
use crate::target::roster::{role_label, Contact, DutyShift};

pub async fn run(core: &Core, job: Job) -> Result<()> {
    let now = core.now();
    // Read through the pool before the transaction (SQLite has one connection).
    let shifts = duty_shifts_if_needed(core, job.callout_id).await?;
    let backend = core.store.backend();
    let mut tx = core.store.begin().await?;
    let Some(c) = incidents::callout(&mut tx, job.callout_id).await? else {
        jobs::delete(&mut tx, &[job.id]).await?;
        return tx.commit().await;
    };
    let inc = incidents::incident(&mut tx, c.incident_id).await?;
    let policy = inc.as_ref().map(|i| i.policy.clone());
    let (Some(inc), Some(policy)) = (inc, policy) else {
        jobs::delete(&mut tx, &[job.id]).await?;
        return tx.commit().await;
    };
    let backup = match &c.backup_key {
        Some(k) => roster::contact_by_key(&mut tx, k).await?,
        None => None,
    };
    let superior = match &c.superior_key {
        Some(k) => roster::contact_by_key(&mut tx, k).await?,
        None => None,
    };
    let ladder = core.settings.ladder(&policy);
    let mut on_duty: HashMap<String, Vec<(Contact, Option<String>)>> = HashMap::new();
    for step in ladder.iter().skip(c.rung as usize) {
        if let Rung::Duty { role } = step {
            if !on_duty.contains_key(role) {
                let who =
                    duty_holders(&mut tx, &shifts, role, c.region_code.as_str(), c.contact_id, now).await?;
                on_duty.insert(role.clone(), who);
            }
        }
    }
    let state = c.state;
    let expired = inc.expires_at.is_some_and(|e| e < now);
    let decision = if inc.state != IncidentState::Active || expired {
        Deadline::Nothing
    } else {
        on_deadline(state, c.rung as usize, ladder, |step| match step {
            Rung::Backup => backup.is_some(),
            Rung::Superior => superior.is_some(),
            Rung::Duty { role } => on_duty.get(role).is_some_and(|w| !w.is_empty()),
            Rung::Repeat { .. } => true,
        })
    };
    jobs::delete(&mut tx, &[job.id]).await?;
    let deadline_ms = policy.deadline.as_millis() as i64;
    let subject = format!("callout:{}", c.id);
    let record = match decision {
        Deadline::Nothing => None,
        Deadline::Repeat { next_rung, channel } => {
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
                        // dispatch tries `channel` first when the step names one.
                        payload: match channel {
                            Some(ch) => serde_json::json!({"hop": 0, "channel": ch.as_str()}),
                            None => serde_json::json!({"hop": 0}),
                        },
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
                serde_json::json!({"rung": next_rung, "channel": channel}),
            ))
        }
        Deadline::Escalate { to, next_rung } => {
            let who = format!("{}（{}）未应答", c.contact_name, role_label(&c.role));
            let targets: Vec<(Contact, String, String)> = match &to {
                Rung::Backup => backup
                    .into_iter()
                    .map(|t| (t.clone(), t.role.clone(), format!("{who}，AB角顶替")))
                    .collect(),
                Rung::Duty { role } => on_duty
                    .remove(role)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, shift)| {
                        let why = format!("{who}，报{}", role_label(role));
                        let why = shift.map_or(why.clone(), |s| format!("{why}；{s}"));
                        (t, role.clone(), why)
                    })
                    .collect(),
                _ => superior
                    .into_iter()
                    .map(|t| (t.clone(), t.role.clone(), format!("{who}，报上级")))
                    .collect(),
            };
            incidents::transition(&mut tx, &[c.id], &[state], State::Escalated, None, now).await?;
            sqlx::query("UPDATE callouts SET rung = $1 WHERE id = $2")
                .bind(next_rung as i64)
                .bind(c.id)
                .execute(&mut *tx)
                .await?;
            let mut children = Vec::new();
            for (target, role, why) in &targets {
                let child = incidents::add_callout(
                    &mut tx,
                    backend,
                    c.incident_id,
                    target.id,
                    Some(c.id),
                    next_rung as i64,
                    (c.region_code.as_str(), &c.place, role, why),
                    now + deadline_ms,
                    now,
                )
                .await?;
                children.push(child);
            }
            let contacts: Vec<&str> = targets.iter().map(|t| t.0.key.as_str()).collect();
            Some(Record::new(
                "callout.escalated",
                subject,
                serde_json::json!({"to": to, "contact": contacts.first(), "contacts": contacts,
                    "new_callout": children.first(), "new_callouts": children, "rung": next_rung}),
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
        tracing::debug!(callout.id = c.id, kind = r.kind, "deadline passed");
        ledger::append(&mut tx, backend, now, vec![r]).await?;
    }
    tx.commit().await?;
    core.wake.notify_waiters();
    Ok(())
}

/// The duty shifts, read only when the call-out's ladder has a `duty:` step still ahead.
async fn duty_shifts_if_needed(core: &Core, callout_id: i64) -> Result<Vec<DutyShift>> {
    let mut conn = core.store.pool().acquire().await?;
    let Some(c) = incidents::callout(&mut conn, callout_id).await? else {
        return Ok(Vec::new());
    };
    let policy = incidents::incident(&mut conn, c.incident_id)
        .await?
        .map(|i| i.policy);
    drop(conn);
    let needed = policy.is_some_and(|p| {
        core.settings
            .ladder(&p)
            .iter()
            .skip(c.rung as usize)
            .any(|r| matches!(r, Rung::Duty { .. }))
    });
    if needed {
        roster::load_duty(&core.store).await
    } else {
        Ok(Vec::new())
    }
}

/// Whoever holds `role` over `region` now: the nearest enclosing region (the region itself,
/// its township, its county) where someone holds the role or a duty roster names it; the
/// people on shift there, else every holder. The unanswered person is never their own step.
async fn duty_holders(
    conn: &mut AnyConnection,
    shifts: &[DutyShift],
    role: &str,
    region: &str,
    except: i64,
    now: i64,
) -> Result<Vec<(Contact, Option<String>)>> {
    let Ok(region) = RegionCode::parse(region) else {
        return Ok(Vec::new());
    };
    let duty = Duty::new(shifts);
    let mut levels = vec![region.clone()];
    levels.extend(region.township());
    levels.extend(region.county());
    levels.dedup();
    for code in levels {
        let rows = sqlx::query(
            "SELECT id, key, name, phone, email, role, region_code, backup_key, superior_key, channels
             FROM contacts WHERE role = $1 AND region_code = $2 ORDER BY id",
        )
        .bind(role)
        .bind(code.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let holders: Vec<Contact> = rows.iter().map(roster::contact_of).collect::<Result<_>>()?;
        if holders.is_empty() && !duty.has_roster(role, &code) {
            continue;
        }
        // People on shift may hold another role in the contact list: read them by key.
        let mut on_shift: Vec<Contact> = Vec::new();
        for (key, _) in duty.on_shift(role, &code, now) {
            if let Some(c) = roster::contact_by_key(conn, key).await? {
                on_shift.push(c);
            }
        }
        let by_key: HashMap<&str, &Contact> = on_shift.iter().map(|c| (c.key.as_str(), c)).collect();
        let refs: Vec<&Contact> = holders.iter().collect();
        let out = duty
            .resolve(role, &code, now, &refs, &by_key)
            .into_iter()
            .filter(|h| h.contact.id != except)
            .map(|h| (h.contact.clone(), h.shift))
            .collect();
        return Ok(out);
    }
    Ok(Vec::new())
}
