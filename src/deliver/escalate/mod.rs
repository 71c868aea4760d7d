//! Answer deadlines: when one passes without an answer, walk the policy's ladder (call again,
//! perhaps on another channel first; the backup; the superior; whoever holds a duty role on
//! shift now) or mark the call-out unreached. The decision is `callout::on_deadline`; this
//! applies it with its ledger entry. `duty:` steps are resolved when they fire, against the
//! duty roster at that moment.
//!
//! Deadlines are applied in batches like sends (issue 11 §4: ten thousand falling due in the
//! same second): the deadlines claimed together are read, decided and written in one
//! transaction per [`CHUNK`] (or per [`BUDGET`] of time, whichever ends first). A piece of
//! the chunk reads its call-outs, their backups and superiors, and who of those is called
//! already, in three queries; incidents, duty holders and the duty roster are read once per
//! chunk. What the deadlines write is held ([`Held`]) and made together: one UPDATE per state
//! change and per rung, one INSERT of the new call-outs and one of their jobs, one ledger
//! append, one delete of the jobs (about ten statements per deadline before, 1,800 a second);
//! those shared reads and held writes are `chunk`.
//! A join (the person called already has an open call-out) writes what is held first and is
//! made at once. A chunk that fails is rolled back and its deadlines are applied one by one,
//! so that one row that cannot be applied (a poison row) is rescheduled with its error, and
//! parked after [`MAX_TRIES`], instead of failing the whole chunk again at every lease.
//!
//! A deadline job names the rung it is for: if the call-out has moved on (answered, or a
//! deadline of the same rung already ran), it does nothing, so a deadline that runs twice
//! never climbs two rungs. It must not send anything itself: it writes the jobs that do.

use std::collections::HashMap;

use anyhow::Result;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

mod chunk;

use crate::config::Rung;
use crate::core::Core;
use crate::deliver::message;
use crate::domain::callout::{on_deadline, Deadline, State};
use crate::domain::{IncidentState, RegionCode};
use crate::store::callouts::{self, Callout};
use crate::store::incidents;
use crate::store::jobs::{self, Job, NewJob, Task};
use crate::store::ledger::Record;
use crate::store::roster;
use crate::store::Tx;
use crate::target::duty::Duty;
use crate::target::roster::{role_label, Contact};
use chunk::{Held, Pending, Reads, Seen};

/// Whoever a `duty:ROLE` step would call, with the shift that puts them on duty.
type OnDuty = HashMap<String, Vec<(Contact, Option<String>)>>;

/// Deadlines applied in one transaction: large enough that the commit, the ledger head and
/// the job delete are paid once for many, small enough that the SQLite writer (and on
/// PostgreSQL the ledger head's row lock) is never held for long.
pub const CHUNK: usize = 256;

/// Call-outs read in one query within a chunk.
const PIECE: usize = 32;

/// How long one chunk's transaction may run before it commits what it has: SQLite has one
/// connection, and every answer and send waits while a chunk holds it.
pub const BUDGET: std::time::Duration = std::time::Duration::from_millis(100);

/// Tries of a deadline that fails on its own before it is parked (kept, never run, and the
/// ledger says why).
pub const MAX_TRIES: i64 = 5;

/// One deadline (tests, tools); the worker calls [`run_batch`].
pub async fn run(core: &Core, worker: &str, job: Job) -> Result<()> {
    run_batch(core, worker, vec![job], &CancellationToken::new()).await
}

/// Applies claimed deadline jobs, up to [`CHUNK`] to a transaction (fewer when one runs past
/// [`BUDGET`]). A chunk that fails, or one of whose jobs another worker has taken over, is
/// applied again one deadline at a time. A stop ends the batch between two transactions (the
/// worker releases the claims left).
pub async fn run_batch(core: &Core, worker: &str, jobs: Vec<Job>, stop: &CancellationToken) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut rest: &[Job] = &jobs;
    while !rest.is_empty() && !stop.is_cancelled() {
        let chunk = &rest[..rest.len().min(CHUNK)];
        let applied = match apply(core, worker, chunk).await {
            Ok(Some(k)) => k,
            Ok(None) if chunk.len() == 1 => 1,
            Ok(None) => 0,
            Err(e) if chunk.len() == 1 => {
                fail(core, worker, &chunk[0], &e).await?;
                1
            }
            Err(e) => {
                tracing::warn!(jobs = chunk.len(), error = %format!("{e:#}"),
                    "a batch of deadlines failed: applying them one by one");
                0
            }
        };
        let done = match applied {
            0 => {
                for job in chunk {
                    if let Err(e) = apply(core, worker, std::slice::from_ref(job)).await {
                        fail(core, worker, job, &e).await?;
                    }
                }
                chunk.len()
            }
            k => k,
        };
        rest = &rest[done..];
    }
    core.wake.notify_waiters();
    Ok(())
}

/// One transaction for a prefix of `chunk`, ended when [`BUDGET`] has run out: how many
/// deadlines it applied, or None (nothing written) when another worker took one of its jobs
/// over meanwhile.
async fn apply(core: &Core, worker: &str, chunk: &[Job]) -> Result<Option<usize>> {
    // Pacing only (how long this transaction has held the writer), never a time the domain
    // sees: that is `now`, from the one clock.
    let started = std::time::Instant::now();
    let now = core.now();
    let mut tx = core.store.begin().await?;
    // The chunk's incidents first (the store's lock order): another instance's chunk in the
    // same incident waits here, and then reads the call-outs this one made (a township
    // leader whom both would call is called once, and joined by the other).
    let ids: Vec<i64> = chunk.iter().filter_map(|j| j.callout_id).collect();
    let backend = tx.backend();
    incidents::lock_of_callouts(&mut tx, backend, &ids).await?;
    let mut loaded: HashMap<i64, Callout> = HashMap::new();
    let mut seen = Seen::default();
    let mut held = Held::default();
    let mut records = Vec::new();
    let mut applied = 0;
    for (i, job) in chunk.iter().enumerate() {
        if applied > 0 && started.elapsed() > BUDGET {
            break;
        }
        applied += 1;
        // The call-outs are read a piece at a time, so that a chunk the budget cuts short has
        // not read what it will not use.
        if i % PIECE == 0 {
            let ids: Vec<i64> = chunk[i..]
                .iter()
                .take(PIECE)
                .filter_map(|j| j.callout_id)
                .collect();
            let piece = callouts::callouts_by_id(&mut tx, &ids).await?;
            seen.reads.ahead(&mut tx, &piece).await?;
            loaded.extend(piece.into_iter().map(|c| (c.id, c)));
        }
        let Task::Deadline { rung } = job.task else {
            anyhow::bail!("job {} is not a deadline", job.id);
        };
        let Some(id) = job.callout_id else { continue };
        let c = match seen.touched.contains(&id) {
            true => {
                held.flush(&mut tx, &mut records, now).await?;
                callouts::callout(&mut tx, id).await?
            }
            false => loaded.remove(&id),
        };
        let Some(c) = c else { continue };
        seen.touched.insert(id);
        deadline(core, &mut tx, &mut seen, &mut held, &mut records, c, rung, now).await?;
    }
    held.flush(&mut tx, &mut records, now).await?;
    // Kept by the unit of work and written at its commit, after the jobs: the ledger head is
    // the last lock (the store's lock order). Call-outs first, then jobs: the order an answer
    // locks them in.
    tx.append(records, now).await?;
    let job_ids: Vec<i64> = chunk[..applied].iter().map(|j| j.id).collect();
    if jobs::finish_mine(&mut tx, worker, &job_ids).await?.len() < job_ids.len() {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(applied))
}

/// A deadline that failed on its own: put back with its error and a growing delay, parked
/// after [`MAX_TRIES`] with a ledger entry (the ladder stops there, and the record says why).
async fn fail(core: &Core, worker: &str, job: &Job, e: &anyhow::Error) -> Result<()> {
    let now = core.now();
    let tries = job.attempts + 1;
    let error = format!("{e:#}");
    let parked = tries >= MAX_TRIES;
    tracing::error!(job.id = job.id, callout.id = job.callout_id, tries, parked, error = %error,
        "a deadline could not be applied");
    let due = match parked {
        true => jobs::PARKED,
        false => now + (5_000i64 << tries.clamp(0, 6)),
    };
    let mut tx = core.store.begin().await?;
    if jobs::reschedule_mine(&mut tx, worker, job.id, due, tries, &job.task, Some(&error)).await? && parked {
        if let Some(id) = job.callout_id {
            tx.record(
                "callout.failed",
                format!("callout:{id}"),
                serde_json::json!({"reason": format!("the deadline could not be applied after {tries} tries: {error}")}),
                now,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// One deadline of a chunk, in its transaction: its writes held (`held`), or made at once
/// where they must be (a join), with its ledger records.
#[allow(clippy::too_many_arguments)]
async fn deadline(
    core: &Core,
    tx: &mut Tx,
    seen: &mut Seen,
    held: &mut Held,
    records: &mut Vec<Record>,
    c: Callout,
    rung: i64,
    now: i64,
) -> Result<()> {
    if c.rung != rung {
        tracing::debug!(
            callout.id = c.id,
            job.rung = rung,
            callout.rung = c.rung,
            "stale deadline: the call-out moved on"
        );
        return Ok(());
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = seen.incidents.entry(c.incident_id) {
        let read = incidents::incident(tx, c.incident_id)
            .await
            .map_err(|e| format!("{e:#}"));
        slot.insert(read);
    }
    let inc =
        match &seen.incidents[&c.incident_id] {
            Ok(Some(inc)) => inc.clone(),
            Ok(None) => return Ok(()),
            Err(e) => {
                // Not a silent finish: the ladder stops here, and the record says why.
                tracing::error!(incident.id = c.incident_id, callout.id = c.id, error = %e,
                "the incident's stored record does not read: this call-out cannot escalate");
                held.records.push((Pending::Ready(Record::new(
                "callout.failed",
                format!("callout:{}", c.id),
                serde_json::json!({"reason": format!("the incident's stored record does not read: {e}")}),
            )), None));
                return Ok(());
            }
        };
    let policy = &inc.policy;
    let ladder = core.settings.ladder(policy);
    let backup = seen.reads.contact(tx, &c.backup_key).await?;
    let superior = seen.reads.contact(tx, &c.superior_key).await?;
    let mut on_duty = on_duty_ahead(tx, seen, ladder, &c, now).await?;
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
    if let Some(r) = match &decision {
        Deadline::Nothing => None,
        Deadline::Repeat { .. } => Some("callout.repeated"),
        Deadline::Escalate { .. } => Some("callout.escalated"),
        Deadline::Unreached => Some("callout.unreached"),
    } {
        tracing::debug!(kind = r, callout.id = c.id, "deadline passed");
    }
    match decision {
        Deadline::Nothing => {}
        Deadline::Repeat { next_rung, channel } => {
            // The same person again (on `channel` first when the step names one), with a new
            // deadline.
            let (next_rung, deadline_at) = (next_rung as i64, now + deadline_ms);
            held.rungs.push((c.id, next_rung, Some(deadline_at)));
            held.jobs.push(NewJob::send(
                c.id,
                jobs::Send {
                    hop: 0,
                    channel,
                    check: false,
                },
                now,
            ));
            held.jobs.push(NewJob::deadline(c.id, next_rung, deadline_at));
            held.records.push((
                Pending::Ready(Record::new(
                    "callout.repeated",
                    format!("callout:{}", c.id),
                    serde_json::json!({"rung": next_rung, "channel": channel}),
                )),
                None,
            ));
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
            escalate(core, tx, seen, held, records, step, &to, &targets).await?;
        }
        Deadline::Unreached => {
            held.moves.push((c.id, state, State::Unreached));
            held.records.push((
                Pending::Ready(Record::new(
                    "callout.unreached",
                    format!("callout:{}", c.id),
                    serde_json::json!({"rung": c.rung}),
                )),
                Some((c.id, State::Unreached)),
            ));
        }
    }
    Ok(())
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
#[allow(clippy::too_many_arguments)]
async fn escalate(
    core: &Core,
    tx: &mut Tx,
    seen: &mut Seen,
    held: &mut Held,
    records: &mut Vec<Record>,
    s: Step<'_>,
    to: &Rung,
    targets: &[(Contact, String, String)],
) -> Result<()> {
    let c = s.c;
    // One person, one open call-out per incident: someone already waiting for an answer is
    // not called again; this place joins their call-out, and one message names them all.
    // (A door-knock task is a task of its own: it names one door.) Their call-outs are read
    // first, before anything of this step is held.
    let knock = matches!(to, Rung::Knock { .. });
    let mut opens = Vec::with_capacity(targets.len());
    for (target, _, _) in targets {
        opens.push(match knock || !seen.reads.may_be_open(c.incident_id, target.id) {
            true => None,
            false => {
                // What is held may be what this reads (a call-out this chunk made for them).
                held.flush(tx, records, s.now).await?;
                callouts::open_callout_of(tx, c.incident_id, target.id).await?
            }
        });
    }
    held.moves.push((c.id, s.state, State::Escalated));
    held.rungs.push((c.id, s.next_rung, None));
    let from = held.children.len();
    let mut joined = Vec::new();
    for ((target, role, why), open) in targets.iter().zip(opens) {
        if let Some(host) = open {
            let places = callouts::join(tx, &host, c, message::waiting_places, s.now).await?;
            seen.touched.insert(host.id);
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
        if !knock {
            // Whoever is called now has an open call-out: a later escalation to them joins it.
            seen.reads.open.insert((c.incident_id, target.id));
        }
        held.children.push(callouts::NewChild {
            incident_id: c.incident_id,
            contact_id: target.id,
            parent_id: c.id,
            rung: s.next_rung,
            region: c.region_code.as_str().to_string(),
            place: c.place.clone(),
            role: role.clone(),
            reason: why.clone(),
            task: knock.then_some("knock"),
            deadline_at: s.deadline_at,
        });
    }
    held.records.push((
        Pending::Escalated {
            callout: c.id,
            incident: c.incident_id,
            to: to.clone(),
            contacts: targets.iter().map(|t| t.0.key.clone()).collect(),
            joined,
            rung: s.next_rung,
            children: from..held.children.len(),
        },
        Some((c.id, State::Escalated)),
    ));
    Ok(())
}

/// For each `duty:` step still ahead on the ladder, who holds that role now (read inside the
/// transaction: SQLite has one connection, and the roster must be the one this step sees).
async fn on_duty_ahead(
    conn: &mut AnyConnection,
    seen: &mut Seen,
    ladder: &[Rung],
    c: &Callout,
    now: i64,
) -> Result<OnDuty> {
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
    if seen.shifts.is_none() {
        seen.shifts = Some(roster::load_duty_in(conn).await?);
    }
    let duty = Duty::new(seen.shifts.as_deref().unwrap_or_default());
    for role in roles {
        if !on_duty.contains_key(role) {
            let who = duty_holders(
                conn,
                &mut seen.reads,
                &duty,
                role,
                &c.region_code,
                c.contact_id,
                now,
            )
            .await?;
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
    reads: &mut Reads,
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
        let holders = reads.holders(conn, role, &code).await?.to_vec();
        if holders.is_empty() && !duty.has_roster(role, &code) {
            continue;
        }
        // People on shift may hold another role in the contact list: read them by key.
        let mut on_shift: Vec<Contact> = Vec::new();
        for (key, _) in duty.on_shift(role, &code, now) {
            if let Some(c) = reads.contact(conn, &Some(key.to_string())).await? {
                on_shift.push(c);
            }
        }
        let by_key: HashMap<&str, &Contact> = on_shift.iter().map(|c| (c.key.as_str(), c)).collect();
        let refs: Vec<&Contact> = holders.iter().collect();
        let out = duty
            .resolve(role, &code, now, &refs, &|k: &str| by_key.get(k).copied())
            .into_iter()
            .filter(|h| h.contact.id != except)
            .map(|h| (h.contact.clone(), h.shift))
            .collect();
        return Ok(out);
    }
    Ok(Vec::new())
}
