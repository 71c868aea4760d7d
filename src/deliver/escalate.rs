//! Answer deadlines: when one passes without an answer, walk the policy's ladder (call again,
//! perhaps on another channel first; the backup; the superior; whoever holds a duty role on
//! shift now) or mark the call-out unreached. The decision is `callout::on_deadline`; this
//! applies it in one transaction with its ledger entry. `duty:` steps are resolved when they
//! fire, against the duty roster at that moment.
//!
//! A deadline job names the rung it is for: if the call-out has moved on (answered, or a
//! deadline of the same rung already ran), it does nothing, so a deadline that runs twice
//! never climbs two rungs. It must not send anything itself: it writes the jobs that do.

use std::collections::HashMap;

use anyhow::Result;
use sqlx::AnyConnection;

use crate::config::Rung;
use crate::core::Core;
use crate::deliver::message;
use crate::domain::callout::{on_deadline, Deadline, State};
use crate::domain::{ChannelKind, IncidentState, RegionCode};
use crate::store::callouts::{self, Callout};
use crate::store::incidents;
use crate::store::jobs::{self, Job, NewJob, Task};
use crate::store::ledger::{self, Record};
use crate::store::roster;
use crate::target::duty::Duty;
use crate::target::roster::{role_label, Contact};

/// Whoever a `duty:ROLE` step would call, with the shift that puts them on duty.
type OnDuty = HashMap<String, Vec<(Contact, Option<String>)>>;

pub async fn run(core: &Core, worker: &str, job: Job) -> Result<()> {
    let Task::Deadline { rung } = job.task else {
        anyhow::bail!("job {} is not a deadline", job.id);
    };
    let now = core.now();
    let backend = core.store.backend();
    let mut tx = core.store.begin().await?;
    let Some(c) = (match job.callout_id {
        Some(id) => callouts::callout(&mut tx, id).await?,
        None => None,
    }) else {
        return done(tx, worker, job.id).await;
    };
    if c.rung != rung {
        tracing::debug!(
            callout.id = c.id,
            job.rung = rung,
            callout.rung = c.rung,
            "stale deadline: the call-out moved on"
        );
        return done(tx, worker, job.id).await;
    }
    let inc = match incidents::incident(&mut tx, c.incident_id).await {
        Ok(Some(inc)) => inc,
        Ok(None) => return done(tx, worker, job.id).await,
        Err(e) => {
            // Not a silent finish: the ladder stops here, and the record says why.
            tracing::error!(incident.id = c.incident_id, callout.id = c.id, error = %format!("{e:#}"),
                "the incident's stored record does not read: this call-out cannot escalate");
            ledger::record(
                &mut tx,
                backend,
                now,
                "callout.failed",
                format!("callout:{}", c.id),
                serde_json::json!({"reason": format!("the incident's stored record does not read: {e:#}")}),
            )
            .await?;
            return done(tx, worker, job.id).await;
        }
    };
    let policy = &inc.policy;
    let ladder = core.settings.ladder(policy);
    let backup = match &c.backup_key {
        Some(k) => roster::contact_by_key(&mut tx, k).await?,
        None => None,
    };
    let superior = match &c.superior_key {
        Some(k) => roster::contact_by_key(&mut tx, k).await?,
        None => None,
    };
    let mut on_duty = on_duty_ahead(&mut tx, ladder, &c, now).await?;
    let state = c.state;
    let expired = inc.expires_at.is_some_and(|e| e < now);
    let decision = if inc.state != IncidentState::Active || expired {
        Deadline::Nothing
    } else {
        on_deadline(state, c.rung as usize, ladder, |step| match step {
            Rung::Backup => backup.is_some(),
            Rung::Superior => superior.is_some(),
            Rung::Duty { role } => on_duty.get(role).is_some_and(|w| !w.is_empty()),
            Rung::Knock { role } => superior.is_some() || on_duty.get(role).is_some_and(|w| !w.is_empty()),
            Rung::Repeat { .. } => true,
        })
    };
    let deadline_ms = policy.deadline.as_millis() as i64;
    let records = match decision {
        Deadline::Nothing => Vec::new(),
        Deadline::Repeat { next_rung, channel } => {
            vec![repeat(&mut tx, &c, next_rung as i64, channel, now, now + deadline_ms).await?]
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
                // The one who knocks: the information officer over the region, else the
                // superior; told whose door, with the number that did not answer.
                Rung::Knock { role } => {
                    let phone = c.phone.as_deref().unwrap_or("无电话");
                    let why = format!(
                        "上门叫应：{}（{}，{phone}）未应答",
                        c.contact_name,
                        role_label(&c.role)
                    );
                    let knockers: Vec<Contact> = on_duty
                        .remove(role)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(t, _)| t)
                        .collect();
                    let knockers = if knockers.is_empty() {
                        superior.into_iter().collect()
                    } else {
                        knockers
                    };
                    knockers
                        .into_iter()
                        .map(|t| (t.clone(), t.role.clone(), why.clone()))
                        .collect()
                }
                _ => superior
                    .into_iter()
                    .map(|t| (t.clone(), t.role.clone(), format!("{who}，报上级")))
                    .collect(),
            };
            let step = Step {
                c: &c,
                state,
                next_rung: next_rung as i64,
                now,
                deadline_at: now + deadline_ms,
            };
            escalate(core, &mut tx, step, &to, &targets).await?
        }
        Deadline::Unreached => {
            let changed =
                callouts::transition(&mut tx, &[c.id], &[state], State::Unreached, None, now).await?;
            let mut r = vec![Record::new(
                "callout.unreached",
                format!("callout:{}", c.id),
                serde_json::json!({"rung": c.rung}),
            )];
            r.extend(callouts::state_record(&changed, State::Unreached));
            r
        }
    };
    if let Some(r) = records.first() {
        tracing::debug!(callout.id = c.id, kind = r.kind, "deadline passed");
        ledger::append(&mut tx, backend, now, records).await?;
    }
    done(tx, worker, job.id).await?;
    core.wake.notify_waiters();
    Ok(())
}

/// Ends the deadline job in the same unit of work, as its last statement (call-outs first,
/// then jobs: the order an answer locks them in). If another worker took the job over, this
/// one's work is rolled back and left to it.
async fn done(mut tx: crate::store::Tx, worker: &str, job: i64) -> Result<()> {
    if jobs::finish_mine(&mut tx, worker, &[job]).await?.is_empty() {
        tx.rollback().await?;
        return Ok(());
    }
    tx.commit().await
}

/// The same person again (on `channel` first when the step names one), with a new deadline.
async fn repeat(
    tx: &mut AnyConnection,
    c: &Callout,
    next_rung: i64,
    channel: Option<ChannelKind>,
    now: i64,
    deadline_at: i64,
) -> Result<Record> {
    callouts::set_rung(tx, c.id, next_rung, Some(deadline_at), now).await?;
    jobs::insert(
        tx,
        vec![
            NewJob::send(
                c.id,
                jobs::Send {
                    hop: 0,
                    channel,
                    check: false,
                },
                now,
            ),
            NewJob::deadline(c.id, next_rung, deadline_at),
        ],
        now,
    )
    .await?;
    Ok(Record::new(
        "callout.repeated",
        format!("callout:{}", c.id),
        serde_json::json!({"rung": next_rung, "channel": channel}),
    ))
}

/// What an escalation step is applied to.
struct Step<'a> {
    c: &'a Callout,
    state: State,
    next_rung: i64,
    now: i64,
    deadline_at: i64,
}

/// The backup, the superior or the duty holders get call-outs of their own (children of
/// this one), or join the one they already have open; this one becomes `escalated`.
async fn escalate(
    core: &Core,
    tx: &mut AnyConnection,
    s: Step<'_>,
    to: &Rung,
    targets: &[(Contact, String, String)],
) -> Result<Vec<Record>> {
    let c = s.c;
    let changed = callouts::transition(tx, &[c.id], &[s.state], State::Escalated, None, s.now).await?;
    callouts::set_rung(tx, c.id, s.next_rung, None, s.now).await?;
    let mut children = Vec::new();
    let mut joined = Vec::new();
    for (target, role, why) in targets {
        // One person, one open call-out per incident: someone already waiting for an answer is
        // not called again; this place joins their call-out, and one message names them all.
        // (A door-knock task is a task of its own: it names one door.)
        let knock = matches!(to, Rung::Knock { .. });
        let open = match knock {
            true => None,
            false => callouts::open_callout_of(tx, c.incident_id, target.id).await?,
        };
        if let Some(host) = open {
            let places = callouts::join(tx, &host, c, message::waiting_places, s.now).await?;
            // Well inside the answer deadline, whatever the configured window.
            let window =
                (core.settings.escalation.bundle_window.as_millis() as i64).min((s.deadline_at - s.now) / 4);
            // Someone already given up on is not called again: the place is listed with theirs
            // for the operator who phones them.
            if host.state.awaiting() {
                jobs::insert_once(
                    tx,
                    NewJob {
                        task: Task::Send(jobs::Send::default()),
                        callout_id: Some(host.id),
                        due_at: s.now + window,
                        dedupe_key: Some(format!("bundle:{}", host.id)),
                    },
                    s.now,
                )
                .await?;
            }
            tracing::debug!(
                callout.id = c.id,
                host = host.id,
                places = places.len(),
                "escalation joined an open call-out"
            );
            joined.push(host.id);
            continue;
        }
        let child = callouts::add_callout(
            tx,
            core.store.backend(),
            c.incident_id,
            target.id,
            Some(c.id),
            s.next_rung,
            (c.region_code.as_str(), &c.place, role, why),
            knock.then_some("knock"),
            s.deadline_at,
            s.now,
        )
        .await?;
        callouts::inherit_places(tx, c.id, child, s.now).await?;
        children.push(child);
    }
    let contacts: Vec<&str> = targets.iter().map(|t| t.0.key.as_str()).collect();
    let mut records = vec![Record::new(
        "callout.escalated",
        format!("callout:{}", c.id),
        serde_json::json!({"to": to, "contact": contacts.first(), "contacts": contacts,
            "new_callout": children.first(), "new_callouts": children, "joined": joined, "rung": s.next_rung,
            "incident": c.incident_id}),
    )];
    records.extend(callouts::state_record(&changed, State::Escalated));
    Ok(records)
}

/// For each `duty:` step still ahead on the ladder, who holds that role now (read inside the
/// transaction: SQLite has one connection, and the roster must be the one this step sees).
async fn on_duty_ahead(conn: &mut AnyConnection, ladder: &[Rung], c: &Callout, now: i64) -> Result<OnDuty> {
    let mut on_duty = OnDuty::new();
    let roles: Vec<&String> = ladder
        .iter()
        .skip(c.rung as usize)
        .filter_map(|r| match r {
            Rung::Duty { role } | Rung::Knock { role } => Some(role),
            _ => None,
        })
        .collect();
    if roles.is_empty() {
        return Ok(on_duty);
    }
    let shifts = roster::load_duty_in(conn).await?;
    let duty = Duty::new(&shifts);
    for role in roles {
        if !on_duty.contains_key(role) {
            let who = duty_holders(conn, &duty, role, &c.region_code, c.contact_id, now).await?;
            on_duty.insert(role.clone(), who);
        }
    }
    Ok(on_duty)
}

/// Whoever holds `role` over `region` now: the nearest enclosing region (the region itself,
/// its township, its county) where someone holds the role or a duty roster names it; the
/// people on shift there, else every holder. The unanswered person is never their own step.
async fn duty_holders(
    conn: &mut AnyConnection,
    duty: &Duty<'_>,
    role: &str,
    region: &RegionCode,
    except: i64,
    now: i64,
) -> Result<Vec<(Contact, Option<String>)>> {
    let mut levels = vec![region.clone()];
    levels.extend(region.township());
    levels.extend(region.county());
    levels.dedup();
    for code in levels {
        let holders = roster::contacts_with_role(conn, role, &code).await?;
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
